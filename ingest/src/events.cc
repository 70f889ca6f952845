#include "tagcache/ingest/events.h"

#include <cstdint>
#include <string>
#include <string_view>

#include "tagcache/common/tag_name.h"

namespace tagcache::ingest {
namespace {

using client::Event;
using client::TagOp;

// The event object counts as one level: {"x": [[...]]} is depth 3. Bounds
// the recursion of SkipValue, so a hostile line cannot exhaust the stack.
constexpr int kMaxDepth = 32;

// Bytes of offending input quoted in a message, at most.
constexpr size_t kMaxQuoted = 40;

bool IsJsonSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Printable excerpt of input for a message: control and non-ASCII bytes as
// \xNN, long text cut with "...".
std::string Quote(std::string_view text) {
  std::string out;
  const size_t n = text.size() < kMaxQuoted ? text.size() : kMaxQuoted;
  for (size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7F) {
      out.push_back(static_cast<char>(c));
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    }
  }
  if (n < text.size()) out += "...";
  return out;
}

enum class Key { kUser, kTag, kOp, kTs, kOther };

Key Classify(std::string_view key) {
  switch (key.size()) {
    case 2:
      if (key == "ts") return Key::kTs;
      if (key == "op") return Key::kOp;
      break;
    case 3:
      if (key == "tag") return Key::kTag;
      break;
    case 4:
      if (key == "user") return Key::kUser;
      break;
    default:
      break;
  }
  return Key::kOther;
}

// A single-pass recursive-descent reader over one line. Every access goes
// through pos_ < end_ checks, so no input can make it read past the view.
class Decoder {
 public:
  explicit Decoder(std::string_view line)
      : p_(line.data()), begin_(line.data()), end_(line.data() + line.size()) {}

  Result<Event> Decode() {
    SkipSpace();
    if (p_ == end_) return Status::BadRequest("empty line");
    if (*p_ != '{') return Error("expected '{' to start the event object");
    ++p_;
    Event event;
    bool have_user = false, have_tag = false, have_op = false, have_ts = false;
    SkipSpace();
    if (p_ < end_ && *p_ == '}') {
      ++p_;
    } else {
      while (true) {
        SkipSpace();
        if (p_ == end_) return Error("unterminated object: expected a key");
        if (*p_ != '"') return Error("expected '\"' to start a key");
        const char* key_start = p_;
        std::string_view key;
        if (!ReadString(&key)) return std::move(error_);
        SkipSpace();
        if (p_ == end_ || *p_ != ':') return Error("expected ':' after key");
        ++p_;
        SkipSpace();
        if (p_ == end_) return Error("expected a value");
        const Key which = Classify(key);
        bool* seen = nullptr;
        switch (which) {
          case Key::kUser:
            seen = &have_user;
            break;
          case Key::kTag:
            seen = &have_tag;
            break;
          case Key::kOp:
            seen = &have_op;
            break;
          case Key::kTs:
            seen = &have_ts;
            break;
          case Key::kOther:
            break;
        }
        if (seen != nullptr) {
          if (*seen) {
            return ErrorAt(key_start, "duplicate key \"" + std::string(key) + "\"");
          }
          *seen = true;
        }
        switch (which) {
          case Key::kUser:
            if (!ReadUint64("user", &event.user)) return std::move(error_);
            break;
          case Key::kTs: {
            const char* at = p_;
            if (!ReadUint64("ts", &event.ts)) return std::move(error_);
            if (event.ts == 0) return ErrorAt(at, "ts must be >= 1");
            break;
          }
          case Key::kTag: {
            const char* at = p_;
            if (*p_ != '"') return Error("tag must be a string");
            std::string_view tag;
            if (!ReadString(&tag)) return std::move(error_);
            if (!IsValidTagName(tag)) {
              return ErrorAt(
                  at, "invalid tag name '" + Quote(tag) + "' (1-128 bytes of [A-Za-z0-9_.:-])");
            }
            event.tag.assign(tag.data(), tag.size());
            break;
          }
          case Key::kOp: {
            const char* at = p_;
            if (*p_ != '"') return Error("op must be the string \"set\" or \"clear\"");
            std::string_view op;
            if (!ReadString(&op)) return std::move(error_);
            if (op == "set") {
              event.op = TagOp::kSet;
            } else if (op == "clear") {
              event.op = TagOp::kClear;
            } else {
              return ErrorAt(at, "op must be \"set\" or \"clear\", not \"" + Quote(op) + "\"");
            }
            break;
          }
          case Key::kOther:
            if (!SkipValue(2)) return std::move(error_);
            break;
        }
        SkipSpace();
        if (p_ == end_) return Error("unterminated object: expected ',' or '}'");
        if (*p_ == '}') {
          ++p_;
          break;
        }
        if (*p_ != ',') return Error("expected ',' or '}' after a value");
        ++p_;
      }
    }
    SkipSpace();
    if (p_ != end_) return Error("unexpected '" + Quote(Rest()) + "' after the event object");
    if (!have_user) return Status::BadRequest("missing \"user\"");
    if (!have_tag) return Status::BadRequest("missing \"tag\"");
    if (!have_ts) return Status::BadRequest("missing \"ts\"");
    return event;
  }

 private:
  size_t Column(const char* at) const { return static_cast<size_t>(at - begin_) + 1; }
  std::string_view Rest() const { return {p_, static_cast<size_t>(end_ - p_)}; }
  // The bare word at p_, up to the next delimiter: what a message quotes.
  std::string_view Token() const {
    const char* q = p_;
    while (q < end_ && !IsJsonSpace(*q) && *q != ',' && *q != '}' && *q != ']' && *q != ':') ++q;
    if (q == p_ && q < end_) ++q;
    return {p_, static_cast<size_t>(q - p_)};
  }

  Status ErrorAt(const char* at, const std::string& what) const {
    return Status::BadRequest("column " + std::to_string(Column(at)) + ": " + what);
  }
  Status Error(const std::string& what) const { return ErrorAt(p_, what); }
  // For the bool-returning readers: records the error, returns false.
  bool Fail(const char* at, const std::string& what) {
    error_ = ErrorAt(at, what);
    return false;
  }

  void SkipSpace() {
    while (p_ < end_ && IsJsonSpace(*p_)) ++p_;
  }

  // Reads 4 hex digits at p_ (after "\u"); -1 when they are not all there.
  int32_t ReadHex4() {
    if (end_ - p_ < 4) return -1;
    int32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const int h = HexValue(p_[i]);
      if (h < 0) return -1;
      v = v << 4 | h;
    }
    p_ += 4;
    return v;
  }

  // Checks one UTF-8 sequence starting at p_ (a byte >= 0x80) and steps
  // over it: RFC 8259 text is UTF-8, and overlong forms or encoded
  // surrogates would let one tag or key have two spellings.
  bool SkipUtf8() {
    const auto b0 = static_cast<unsigned char>(*p_);
    int len;
    uint32_t min;
    uint32_t cp;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      len = 2, min = 0x80, cp = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      len = 3, min = 0x800, cp = b0 & 0x0F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      len = 4, min = 0x10000, cp = b0 & 0x07;
    } else {
      return Fail(p_, "invalid UTF-8 byte \\x" + Quote(std::string_view(p_, 1)).substr(2));
    }
    if (end_ - p_ < len) return Fail(p_, "truncated UTF-8 sequence");
    for (int i = 1; i < len; ++i) {
      const auto b = static_cast<unsigned char>(p_[i]);
      if ((b & 0xC0) != 0x80) return Fail(p_, "invalid UTF-8 sequence");
      cp = cp << 6 | (b & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return Fail(p_, "invalid UTF-8 sequence");
    }
    p_ += len;
    return true;
  }

  // Reads a string at p_ (which is '"'). Without escapes `out` views the
  // line itself; with escapes it views scratch_, valid until the next call.
  bool ReadString(std::string_view* out) {
    const char* open = p_;
    ++p_;
    const char* start = p_;
    // Fast path: plain ASCII up to the closing quote needs no copy.
    while (p_ < end_) {
      const auto c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        *out = std::string_view(start, static_cast<size_t>(p_ - start));
        ++p_;
        return true;
      }
      if (c == '\\' || c < 0x20 || c >= 0x80) break;
      ++p_;
    }
    scratch_.assign(start, static_cast<size_t>(p_ - start));
    while (p_ < end_) {
      const auto c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        *out = scratch_;
        ++p_;
        return true;
      }
      if (c < 0x20) return Fail(p_, "control character in a string (escape it)");
      if (c >= 0x80) {
        const char* at = p_;
        if (!SkipUtf8()) return false;
        scratch_.append(at, static_cast<size_t>(p_ - at));
        continue;
      }
      if (c != '\\') {
        scratch_.push_back(static_cast<char>(c));
        ++p_;
        continue;
      }
      const char* esc = p_;
      ++p_;
      if (p_ == end_) break;
      switch (*p_++) {
        case '"':
          scratch_.push_back('"');
          break;
        case '\\':
          scratch_.push_back('\\');
          break;
        case '/':
          scratch_.push_back('/');
          break;
        case 'b':
          scratch_.push_back('\b');
          break;
        case 'f':
          scratch_.push_back('\f');
          break;
        case 'n':
          scratch_.push_back('\n');
          break;
        case 'r':
          scratch_.push_back('\r');
          break;
        case 't':
          scratch_.push_back('\t');
          break;
        case 'u': {
          int32_t cp = ReadHex4();
          if (cp < 0) return Fail(esc, "\\u must be followed by 4 hex digits");
          if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return Fail(esc, "unpaired low surrogate in \\u escape");
          }
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') {
              return Fail(esc, "high surrogate \\u escape not followed by a low surrogate");
            }
            p_ += 2;
            const int32_t low = ReadHex4();
            if (low < 0) return Fail(p_ - 2, "\\u must be followed by 4 hex digits");
            if (low < 0xDC00 || low > 0xDFFF) {
              return Fail(esc, "high surrogate \\u escape not followed by a low surrogate");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          AppendUtf8(static_cast<uint32_t>(cp), &scratch_);
          break;
        }
        default:
          return Fail(esc, "invalid escape '\\" + Quote(std::string_view(p_ - 1, 1)) + "'");
      }
    }
    return Fail(open, "unterminated string");
  }

  // Checks a JSON number at p_ and steps over it. Sets the flags the
  // integer reader needs to name what is wrong.
  bool ScanNumber(bool* negative, bool* fraction_or_exponent) {
    const char* start = p_;
    *negative = false;
    *fraction_or_exponent = false;
    if (*p_ == '-') {
      *negative = true;
      ++p_;
    }
    if (p_ == end_ || !IsDigit(*p_)) return Fail(start, "invalid number");
    if (*p_ == '0') {
      ++p_;
      if (p_ < end_ && IsDigit(*p_)) return Fail(start, "invalid number: leading zero");
    } else {
      while (p_ < end_ && IsDigit(*p_)) ++p_;
    }
    if (p_ < end_ && *p_ == '.') {
      *fraction_or_exponent = true;
      ++p_;
      if (p_ == end_ || !IsDigit(*p_))
        return Fail(start, "invalid number: digit expected after '.'");
      while (p_ < end_ && IsDigit(*p_)) ++p_;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      *fraction_or_exponent = true;
      ++p_;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (p_ == end_ || !IsDigit(*p_)) {
        return Fail(start, "invalid number: digit expected in the exponent");
      }
      while (p_ < end_ && IsDigit(*p_)) ++p_;
    }
    return true;
  }

  // user and ts: a plain non-negative JSON integer that fits 64 bits.
  // 1e3 or 5.0 are refused, not converted: a producer sending them has a
  // bug (or floats that already lost precision above 2^53).
  bool ReadUint64(const char* name, uint64_t* out) {
    const char* start = p_;
    const std::string must = std::string(name) + " must be an unsigned 64-bit integer";
    if (*p_ != '-' && !IsDigit(*p_)) {
      const char* what = *p_ == '"'   ? "a string"
                         : *p_ == '[' ? "an array"
                         : *p_ == '{' ? "an object"
                                      : nullptr;
      return Fail(start, must + ", not " + (what ? what : "'" + Quote(Token()) + "'"));
    }
    bool negative, frac;
    if (!ScanNumber(&negative, &frac)) return false;
    const std::string_view text(start, static_cast<size_t>(p_ - start));
    if (negative) return Fail(start, must + ", not negative (" + Quote(text) + ")");
    if (frac) {
      return Fail(start, must + " without fraction or exponent (" + Quote(text) + ")");
    }
    uint64_t v = 0;
    for (char c : text) {
      const auto d = static_cast<uint64_t>(c - '0');
      if (v > (UINT64_MAX - d) / 10) {
        return Fail(start, must + ", " + Quote(text) + " is out of range");
      }
      v = v * 10 + d;
    }
    *out = v;
    return true;
  }

  bool Literal(std::string_view word) {
    if (static_cast<size_t>(end_ - p_) < word.size() || std::string_view(p_, word.size()) != word) {
      return Fail(p_, "invalid value '" + Quote(Token()) + "'");
    }
    p_ += word.size();
    return true;
  }

  // Steps over any JSON value at p_ (not whitespace), checking it.
  // `depth` is the nesting level an object or array here would have.
  bool SkipValue(int depth) {
    if (p_ == end_) return Fail(p_, "expected a value");
    switch (*p_) {
      case '"': {
        std::string_view ignored;
        return ReadString(&ignored);
      }
      case '{':
      case '[': {
        if (depth > kMaxDepth) {
          return Fail(p_, "nesting deeper than " + std::to_string(kMaxDepth) + " levels");
        }
        const char close = *p_ == '{' ? '}' : ']';
        const bool object = close == '}';
        const char* open = p_;
        ++p_;
        SkipSpace();
        if (p_ < end_ && *p_ == close) {
          ++p_;
          return true;
        }
        while (true) {
          SkipSpace();
          if (p_ == end_) break;
          if (object) {
            if (*p_ != '"') return Fail(p_, "expected '\"' to start a key");
            std::string_view ignored;
            if (!ReadString(&ignored)) return false;
            SkipSpace();
            if (p_ == end_) break;
            if (*p_ != ':') return Fail(p_, "expected ':' after key");
            ++p_;
            SkipSpace();
          }
          if (!SkipValue(depth + 1)) return false;
          SkipSpace();
          if (p_ == end_) break;
          if (*p_ == close) {
            ++p_;
            return true;
          }
          if (*p_ != ',') {
            return Fail(p_, std::string("expected ',' or '") + close + "'");
          }
          ++p_;
        }
        return Fail(open, object ? "unterminated object" : "unterminated array");
      }
      case 't':
        return Literal("true");
      case 'f':
        return Literal("false");
      case 'n':
        return Literal("null");
      default: {
        if (*p_ != '-' && !IsDigit(*p_)) return Fail(p_, "invalid value '" + Quote(Token()) + "'");
        bool negative, frac;
        return ScanNumber(&negative, &frac);
      }
    }
  }

  const char* p_;
  const char* const begin_;
  const char* const end_;
  std::string scratch_;
  Status error_;
};

}  // namespace

Result<Event> DecodeEventJson(std::string_view line) { return Decoder(line).Decode(); }

bool IsBlankLine(std::string_view line) {
  for (char c : line) {
    if (!IsJsonSpace(c)) return false;
  }
  return true;
}

}  // namespace tagcache::ingest
