#include "message_decoder.h"

#include "tagcache/ingest/events.h"

namespace tagcache::kafka {

DecodedMessage DecodeMessage(std::string_view value) {
  struct Line {
    size_t number;
    std::string_view text;
  };
  std::vector<Line> lines;
  size_t start = 0, number = 0;
  while (start < value.size()) {
    size_t end = value.find('\n', start);
    if (end == std::string_view::npos) end = value.size();
    ++number;
    std::string_view text = value.substr(start, end - start);
    if (!ingest::IsBlankLine(text)) lines.push_back({number, text});
    start = end + 1;
  }

  DecodedMessage out;
  out.events.reserve(lines.size());
  for (const Line& line : lines) {
    Result<client::Event> event = ingest::DecodeEventJson(line.text);
    if (event.ok()) {
      out.events.push_back(std::move(event).value());
    } else if (lines.size() > 1) {
      out.errors.push_back("line " + std::to_string(line.number) + ": " + event.status().message());
    } else {
      out.errors.push_back(event.status().message());
    }
  }
  return out;
}

}  // namespace tagcache::kafka
