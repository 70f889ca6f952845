// Text inputs stream through LineReader chunk by chunk; Roaring inputs are
// read whole (they are compressed bitmaps already). Either way a file is
// read into a SnapshotSet of its own, merged into the caller's only when
// the whole file was read, so a file refused halfway adds nothing.
//
// The CSV/TSV hot path handles the common line, `digits<delim>tag` with the
// same tag as the line before, without building any string; anything else
// (quotes, spaces, a header, errors) takes the slow path, which parses
// fields properly and names the problem.
#include "tagcache/ingest/snapshot_input.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <optional>
#include <string_view>
#include <system_error>

#include "file_source.h"
#include "line_reader.h"
#include "roaring_file.h"
#include "tagcache/common/tag_name.h"

namespace tagcache::ingest {
namespace {

namespace fs = std::filesystem;
using internal::FileSource;
using internal::LineReader;

constexpr std::string_view kTagRule = "1-128 bytes of [A-Za-z0-9_.:-]";
constexpr std::string_view kUtf8Bom = "\xEF\xBB\xBF";
// A message quotes at most this much of the offending text.
constexpr size_t kQuoteBytes = 64;

std::string N(uint64_t v) { return std::to_string(v); }

// `text` in single quotes for a message: control and non-ASCII bytes as
// \xNN, and cut after kQuoteBytes.
std::string Quote(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "'";
  for (size_t i = 0; i < text.size() && i < kQuoteBytes; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c >= 0x7f || c == '\'' || c == '\\') {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  out += text.size() > kQuoteBytes ? "'..." : "'";
  return out;
}

bool IsBlank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t'; });
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

std::string_view StripBom(std::string_view line) {
  if (line.substr(0, kUtf8Bom.size()) == kUtf8Bom) line.remove_prefix(kUtf8Bom.size());
  return line;
}

// A decimal unsigned 64-bit user id, or why `text` is not one.
struct ParsedId {
  uint64_t value = 0;
  std::optional<std::string> error;
};

ParsedId ParseUserId(std::string_view text) {
  ParsedId id;
  if (text.empty()) {
    id.error = "missing user id";
    return id;
  }
  for (char c : text) {
    if (c < '0' || c > '9') {
      id.error = "user id " + Quote(text) + " is not a decimal number";
      return id;
    }
  }
  for (char c : text) {
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (id.value > (UINT64_MAX - digit) / 10) {
      std::string shown(text.substr(0, kQuoteBytes));
      if (text.size() > kQuoteBytes) shown += "... (" + N(text.size()) + " digits)";
      id.error = "user id " + shown + " is out of range (the largest is 18446744073709551615)";
      return id;
    }
    id.value = id.value * 10 + digit;
  }
  return id;
}

// Up to two fields of a CSV/TSV line (how many there were is counted), or
// why the line cannot be split. Double quotes around a field are removed,
// and the spaces around it; a doubled quote inside stays as it is (no valid
// user id or tag contains one).
struct Fields {
  std::string_view field[2];
  size_t count = 0;
  std::string error;
};

Fields SplitFields(std::string_view line, char delimiter) {
  Fields f;
  const size_t n = line.size();
  auto is_space = [delimiter](char c) { return c == ' ' || (c == '\t' && delimiter != '\t'); };
  size_t pos = 0;
  for (;;) {
    while (pos < n && is_space(line[pos])) ++pos;
    std::string_view field;
    if (pos < n && line[pos] == '"') {
      size_t close = pos + 1;
      for (;; ++close) {
        if (close >= n) {
          f.error = "field " + N(f.count + 1) + ": unterminated quoted field";
          return f;
        }
        if (line[close] != '"') continue;
        if (close + 1 < n && line[close + 1] == '"') {
          ++close;
          continue;
        }
        break;
      }
      field = line.substr(pos + 1, close - pos - 1);
      pos = close + 1;
      while (pos < n && is_space(line[pos])) ++pos;
      if (pos < n && line[pos] != delimiter) {
        f.error = "field " + N(f.count + 1) + ": characters after the closing quote";
        return f;
      }
    } else {
      size_t stop = line.find(delimiter, pos);
      if (stop == std::string_view::npos) stop = n;
      size_t last = stop;
      while (last > pos && is_space(line[last - 1])) --last;
      field = line.substr(pos, last - pos);
      pos = stop;
    }
    if (f.count < 2) f.field[f.count] = field;
    ++f.count;
    if (pos >= n) return f;
    ++pos;  // past the delimiter; one at the very end starts an empty field
  }
}

// The errors of one file, counted all and kept up to the limit.
class ErrorLog {
 public:
  ErrorLog(const std::string& file, size_t max_kept, FileReadResult* result)
      : file_(file), max_kept_(max_kept), result_(result) {}

  void Line(uint64_t line, std::string message) {
    ++result_->error_count;
    if (result_->errors.size() < max_kept_) {
      result_->errors.push_back(InputError{file_, line, std::move(message)});
    }
  }

 private:
  const std::string& file_;
  size_t max_kept_;
  FileReadResult* result_;
};

// The hot path of both text formats: the leading digits of a line, at most
// 19 of them (they cannot overflow a u64). Returns where they end (== p:
// none); anything longer or odd takes the full parser.
inline const char* ScanShortId(const char* p, const char* end, uint64_t* user) {
  const char* digits_end = p + std::min<ptrdiff_t>(end - p, 19);
  const char* q = p;
  uint64_t v = 0;
  while (q < digits_end && static_cast<unsigned char>(*q - '0') < 10) {
    v = v * 10 + static_cast<uint64_t>(*q - '0');
    ++q;
  }
  *user = v;
  return q;
}

// Publishes the pairs accepted so far in steps of 65,536 (ReadLimits::pairs_progress).
class PairProgress {
 public:
  explicit PairProgress(std::atomic<uint64_t>* out) : out_(out) {}
  ~PairProgress() {
    if (out_ != nullptr) out_->fetch_add(pending_, std::memory_order_relaxed);
  }
  void One() {
    if (++pending_ == kStep && out_ != nullptr) {
      out_->fetch_add(kStep, std::memory_order_relaxed);
      pending_ = 0;
    }
  }

 private:
  static constexpr uint64_t kStep = 65536;
  std::atomic<uint64_t>* out_;
  uint64_t pending_ = 0;
};

// CSV (delimiter ',') or TSV ('\t'): `user_id<delimiter>tag` per line.
Status ReadPairs(LineReader& lines, char delimiter, SnapshotSet& set, ErrorLog& log,
                 FileReadResult& result, PairProgress& progress) {
  const std::string expected = delimiter == ',' ? "(user_id,tag)" : "(user_id<TAB>tag)";
  std::string last_tag;  // a tag already found valid
  uint64_t pairs = 0;
  while (std::optional<std::string_view> next = lines.Next()) {
    const std::string_view line = *next;
    // Hot path: up to 19 digits (they cannot overflow), the delimiter, a tag.
    const char* p = line.data();
    const char* end = p + line.size();
    uint64_t user = 0;
    const char* q = ScanShortId(p, end, &user);
    if (q != p && q != end && *q == delimiter) {
      const std::string_view tag(q + 1, static_cast<size_t>(end - q - 1));
      if (tag == last_tag || IsValidTagName(tag)) {
        if (tag != last_tag) last_tag.assign(tag);
        set.Add(tag, user);
        ++pairs;
        progress.One();
        continue;
      }
    }

    const uint64_t number = lines.line_number();
    const std::string_view text = number == 1 ? StripBom(line) : line;
    if (IsBlank(text)) continue;
    Fields fields = SplitFields(text, delimiter);
    // A header: line 1 whose first field is not a number ("user_id,tag").
    if (number == 1 && fields.count >= 1 && !fields.field[0].empty() &&
        (fields.field[0][0] < '0' || fields.field[0][0] > '9')) {
      continue;
    }
    if (!fields.error.empty()) {
      log.Line(number, std::move(fields.error));
      continue;
    }
    if (fields.count != 2) {
      log.Line(number, "expected 2 fields " + expected + ", got " + N(fields.count));
      continue;
    }
    ParsedId id = ParseUserId(fields.field[0]);
    if (id.error) {
      log.Line(number, std::move(*id.error));
      continue;
    }
    const std::string_view tag = fields.field[1];
    if (!IsValidTagName(tag)) {
      log.Line(number, tag.empty()
                           ? std::string("missing tag")
                           : "invalid tag name " + Quote(tag) + " (" + std::string(kTagRule) + ")");
      continue;
    }
    set.Add(tag, id.value);
    ++pairs;
    progress.One();
  }
  result.lines = lines.line_number();
  result.pairs = pairs;
  return lines.status();
}

// One user id per line; blank lines and '#' comments skipped.
Status ReadIdList(LineReader& lines, const std::string& tag, SnapshotSet& set, ErrorLog& log,
                  FileReadResult& result, PairProgress& progress) {
  set.AddTag(tag);
  uint64_t pairs = 0;
  while (std::optional<std::string_view> next = lines.Next()) {
    const std::string_view line = *next;
    const char* p = line.data();
    const char* end = p + line.size();
    uint64_t user = 0;
    const char* q = ScanShortId(p, end, &user);
    if (q != p && q == end) {
      set.Add(tag, user);
      ++pairs;
      progress.One();
      continue;
    }
    const uint64_t number = lines.line_number();
    const std::string_view text = Trim(number == 1 ? StripBom(line) : line);
    if (text.empty() || text[0] == '#') continue;
    ParsedId id = ParseUserId(text);
    if (id.error) {
      log.Line(number, std::move(*id.error));
      continue;
    }
    set.Add(tag, id.value);
    ++pairs;
    progress.One();
  }
  result.lines = lines.line_number();
  result.pairs = pairs;
  return lines.status();
}

Result<std::string> ReadAll(FileSource& source) {
  std::string data;
  if (!source.gzip()) data.reserve(source.file_size());
  for (;;) {
    const size_t have = data.size();
    data.resize(have + FileSource::kChunkBytes);
    Result<size_t> got = source.Read(data.data() + have, FileSource::kChunkBytes);
    if (!got.ok()) return got.status();
    data.resize(have + *got);
    if (*got == 0) return data;
  }
}

std::string FileName(std::string_view path) {
  const size_t slash = path.find_last_of('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

bool EndsWithNoCase(std::string_view s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  return std::equal(suffix.begin(), suffix.end(), s.end() - suffix.size(), [](char a, char b) {
    return std::tolower(static_cast<unsigned char>(a)) ==
           std::tolower(static_cast<unsigned char>(b));
  });
}

// The name without ".gz".
std::string WithoutGz(std::string_view path) {
  std::string name = FileName(path);
  if (EndsWithNoCase(name, ".gz") && name.size() > 3) name.resize(name.size() - 3);
  return name;
}

InputFormat FormatFromName(std::string_view path) {
  const std::string name = WithoutGz(path);
  const size_t dot = name.find_last_of('.');
  if (dot == std::string::npos) return InputFormat::kIdList;
  std::string ext = name.substr(dot + 1);
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (ext == "csv") return InputFormat::kCsv;
  if (ext == "tsv") return InputFormat::kTsv;
  if (ext == "roaring" || ext == "bin" || ext == "rb") return InputFormat::kRoaring;
  if (ext == "roaring64" || ext == "r64") return InputFormat::kRoaring64;
  return InputFormat::kIdList;
}

// "apple_fan.ids.gz" -> "apple_fan"; a leading dot is not an extension.
std::string Stem(std::string_view path) {
  std::string name = WithoutGz(path);
  const size_t dot = name.find_last_of('.');
  if (dot != std::string::npos && dot > 0) name.resize(dot);
  return name;
}

// The tag of an id-list or Roaring file, or why there is none.
Result<std::string> FileTag(const std::string& path, const InputOptions& options) {
  if (!options.tag.empty()) {
    if (IsValidTagName(options.tag)) return options.tag;
    return Status::BadRequest("tag " + Quote(options.tag) + " (--tag) is not a valid tag name (" +
                              std::string(kTagRule) + ")");
  }
  std::string stem = Stem(path);
  if (IsValidTagName(stem)) return stem;
  return Status::BadRequest("tag " + Quote(stem) +
                            " taken from the file name is not a valid tag name (" +
                            std::string(kTagRule) + "); rename the file or give --tag");
}

// Spark's and Hadoop's markers beside the data files of an output directory.
bool SkippedEntry(const std::string& name) {
  return name.empty() || name[0] == '.' || name == "_SUCCESS" || EndsWithNoCase(name, ".crc");
}

}  // namespace

const char* InputFormatName(InputFormat format) {
  switch (format) {
    case InputFormat::kAuto:
      return "auto";
    case InputFormat::kCsv:
      return "csv";
    case InputFormat::kTsv:
      return "tsv";
    case InputFormat::kIdList:
      return "ids";
    case InputFormat::kRoaring:
      return "roaring";
    case InputFormat::kRoaring32:
      return "roaring32";
    case InputFormat::kRoaring64:
      return "roaring64";
  }
  return "?";
}

Result<InputFormat> ParseInputFormat(std::string_view name) {
  for (InputFormat format :
       {InputFormat::kAuto, InputFormat::kCsv, InputFormat::kTsv, InputFormat::kIdList,
        InputFormat::kRoaring, InputFormat::kRoaring32, InputFormat::kRoaring64}) {
    if (name == InputFormatName(format)) return format;
  }
  return Status::BadRequest("unknown input format " + Quote(name) +
                            " (expected auto, csv, tsv, ids, roaring, roaring32 or roaring64)");
}

std::string InputError::ToString() const {
  if (line == 0) return file + ": " + message;
  return file + ":" + N(line) + ": " + message;
}

Result<std::vector<InputFile>> ExpandInputs(const std::vector<std::string>& paths) {
  std::vector<InputFile> files;
  for (const std::string& path : paths) {
    std::error_code ec;
    const fs::file_status status = fs::status(path, ec);
    if (status.type() == fs::file_type::not_found) {
      return Status::IoError("input " + path + " does not exist");
    }
    if (ec) return Status::IoError("cannot access input " + path + ": " + ec.message());
    if (fs::is_regular_file(status)) {
      const uintmax_t size = fs::file_size(path, ec);
      files.push_back(InputFile{path, ec ? 0 : static_cast<uint64_t>(size)});
      continue;
    }
    if (!fs::is_directory(status)) {
      return Status::BadRequest("input " + path + " is neither a regular file nor a directory");
    }
    std::vector<InputFile> found;
    fs::recursive_directory_iterator it(path, ec);
    for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      const fs::directory_entry& entry = *it;
      if (SkippedEntry(entry.path().filename().string())) {
        if (entry.is_directory(ec)) it.disable_recursion_pending();
        ec.clear();
        continue;
      }
      // Follows a symlink to a file; symlinks to directories are not entered.
      if (!entry.is_regular_file(ec)) {
        ec.clear();
        continue;
      }
      const uintmax_t size = entry.file_size(ec);
      found.push_back(InputFile{entry.path().string(), ec ? 0 : static_cast<uint64_t>(size)});
      ec.clear();
    }
    if (ec) return Status::IoError("cannot list input directory " + path + ": " + ec.message());
    if (found.empty()) {
      return Status::BadRequest("input directory " + path +
                                " holds no input files (hidden files, _SUCCESS and *.crc are "
                                "skipped)");
    }
    std::sort(found.begin(), found.end(),
              [](const InputFile& a, const InputFile& b) { return a.path < b.path; });
    files.insert(files.end(), std::make_move_iterator(found.begin()),
                 std::make_move_iterator(found.end()));
  }
  return files;
}

FileReadResult ReadSnapshotFile(const std::string& path, const InputOptions& options,
                                SnapshotSet* out, std::atomic<uint64_t>* bytes_done,
                                ReadLimits limits) {
  FileReadResult result;
  ErrorLog log(path, limits.max_errors_kept, &result);
  const InputFormat format =
      options.format == InputFormat::kAuto ? FormatFromName(path) : options.format;

  std::unique_ptr<FileSource> source;
  SnapshotSet local(out->shard_bits());
  const Status status = [&]() -> Status {
    Result<std::unique_ptr<FileSource>> opened = FileSource::Open(path, bytes_done);
    if (!opened.ok()) return opened.status();
    source = std::move(*opened);
    if (format == InputFormat::kCsv || format == InputFormat::kTsv) {
      LineReader lines(source.get());
      PairProgress progress(limits.pairs_progress);
      return ReadPairs(lines, format == InputFormat::kCsv ? ',' : '\t', local, log, result,
                       progress);
    }
    Result<std::string> tag = FileTag(path, options);
    if (!tag.ok()) return tag.status();
    if (format == InputFormat::kIdList) {
      LineReader lines(source.get());
      PairProgress progress(limits.pairs_progress);
      return ReadIdList(lines, *tag, local, log, result, progress);
    }
    Result<std::string> data = ReadAll(*source);
    if (!data.ok()) return data.status();
    Result<uint64_t> users = internal::ReadRoaring(*data, format, *tag, &local);
    if (!users.ok()) return users.status();
    result.pairs = *users;
    if (limits.pairs_progress != nullptr) limits.pairs_progress->fetch_add(*users);
    return Status::Ok();
  }();

  // A file stopped early still counts whole once it is done with.
  if (bytes_done != nullptr) {
    std::error_code ec;
    const uint64_t size = source != nullptr ? source->file_size() : fs::file_size(path, ec);
    const uint64_t read = source != nullptr ? source->disk_bytes_read() : 0;
    if (!ec && size > read) bytes_done->fetch_add(size - read, std::memory_order_relaxed);
  }

  if (!status.ok()) {
    // Lines reported so far belong to a file that contributes nothing.
    result.error_count = 1;
    result.errors.clear();
    result.pairs = 0;
    result.file_refused = true;
    if (limits.max_errors_kept > 0) result.errors.push_back(InputError{path, 0, status.message()});
    return result;
  }
  out->MergeFrom(std::move(local));
  return result;
}

}  // namespace tagcache::ingest
