// DecodeEventJson: the accepted shapes of an NDJSON event line, and every
// class of error with its message; truncations of valid lines at every byte
// must fail cleanly (ASan builds catch any read past the view).
#include "tagcache/ingest/events.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "tagcache/common/tag_name.h"

namespace tagcache::ingest {
namespace {

using client::Event;
using client::TagOp;

Event MustDecode(std::string_view line) {
  Result<Event> r = DecodeEventJson(line);
  EXPECT_TRUE(r.ok()) << "line: " << line << "\nerror: " << r.status().ToString();
  return r.ok() ? *r : Event{};
}

// The error message of a line that must not decode.
std::string ErrorOf(std::string_view line) {
  Result<Event> r = DecodeEventJson(line);
  EXPECT_FALSE(r.ok()) << "decoded: " << line;
  if (r.ok()) return "";
  EXPECT_TRUE(r.status().IsBadRequest()) << r.status().ToString();
  return r.status().message();
}

#define EXPECT_ERROR_HAS(line, fragment)                                            \
  do {                                                                              \
    const std::string msg_ = ErrorOf(line);                                         \
    EXPECT_NE(msg_.find(fragment), std::string::npos) << "line: " << (line) << "\n" \
                                                      << "message: " << msg_;       \
  } while (0)

TEST(EventsDecode, CanonicalLine) {
  Event e = MustDecode(R"({"user": 42, "tag": "apple_fan", "op": "set", "ts": 1732400000000})");
  EXPECT_EQ(e.user, 42u);
  EXPECT_EQ(e.tag, "apple_fan");
  EXPECT_EQ(e.op, TagOp::kSet);
  EXPECT_EQ(e.ts, 1732400000000u);
}

TEST(EventsDecode, ClearAndDefaultOp) {
  EXPECT_EQ(MustDecode(R"({"user":1,"tag":"t","op":"clear","ts":5})").op, TagOp::kClear);
  Event e = MustDecode(R"({"user":1,"tag":"t","ts":5})");
  EXPECT_EQ(e.op, TagOp::kSet);
}

TEST(EventsDecode, AnyKeyOrderAndWhitespace) {
  const std::vector<std::string> lines = {
      R"({"ts":7,"op":"clear","tag":"x.y:z-1","user":9})",
      R"({"tag":"x.y:z-1","ts":7,"user":9,"op":"clear"})",
      " \t{ \"op\" : \"clear\" ,\t\"user\"\t:\t9 , \"tag\":\"x.y:z-1\",\"ts\":7 }  \t",
      "{\"user\":9,\"tag\":\"x.y:z-1\",\"op\":\"clear\",\"ts\":7}\r",
      "{\"user\":9,\"tag\":\"x.y:z-1\",\"op\":\"clear\",\"ts\":7}\r\n",
      "{\n\"user\":9,\r\n\"tag\":\"x.y:z-1\",\"op\":\"clear\",\"ts\":7}",
  };
  for (const std::string& line : lines) {
    Event e = MustDecode(line);
    EXPECT_EQ(e.user, 9u) << line;
    EXPECT_EQ(e.tag, "x.y:z-1") << line;
    EXPECT_EQ(e.op, TagOp::kClear) << line;
    EXPECT_EQ(e.ts, 7u) << line;
  }
}

TEST(EventsDecode, UnknownKeysOfEveryKindAreSkipped) {
  Event e = MustDecode(
      R"({"source":"crm","user":3,"meta":{"a":[1,2.5e-3,{"b":null}],"c":{}},"list":[],)"
      R"("t":true,"f":false,"n":null,"neg":-0.5E+10,"zero":0,"tag":"t","s":"a\"b\\c\/\b\f\n\r\t\u00e9\ud83d\ude00",)"
      R"("ts":11,"deep":[[[[[[[[]]]]]]]],"utf8":"héllo €𝄞"})");
  EXPECT_EQ(e.user, 3u);
  EXPECT_EQ(e.tag, "t");
  EXPECT_EQ(e.ts, 11u);
}

TEST(EventsDecode, EscapesInKnownStrings) {
  // \u0061 is 'a'; '\/' is '/', which is not a tag character.
  EXPECT_EQ(MustDecode(R"({"user":1,"tag":"\u0061pple\u005F\u0066an","ts":1})").tag, "apple_fan");
  // Escaped key names are the same keys.
  Event e = MustDecode(R"({"\u0075ser":5,"t\u0061g":"x","\u006fp":"\u0063lear","ts":2})");
  EXPECT_EQ(e.user, 5u);
  EXPECT_EQ(e.tag, "x");
  EXPECT_EQ(e.op, TagOp::kClear);
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"a\/b","ts":1})", "invalid tag name 'a/b'");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"a\nb","ts":1})", "invalid tag name 'a\\x0ab'");
  // A surrogate pair decodes to one 4-byte character, which no tag may hold.
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"\ud83d\ude00","ts":1})",
                   "invalid tag name '\\xf0\\x9f\\x98\\x80'");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"a b","ts":1})", "column 17: invalid tag name 'a b'");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"","ts":1})", "invalid tag name ''");
  EXPECT_EQ(MustDecode(R"({"user":1,"tag":")" + std::string(128, 'a') + R"(","ts":1})").tag,
            std::string(128, 'a'));
  EXPECT_ERROR_HAS(R"({"user":1,"tag":")" + std::string(129, 'a') + R"(","ts":1})",
                   "invalid tag name");
}

TEST(EventsDecode, IntegerLimits) {
  EXPECT_EQ(MustDecode(R"({"user":18446744073709551615,"tag":"t","ts":18446744073709551615})").user,
            UINT64_MAX);
  EXPECT_EQ(MustDecode(R"({"user":0,"tag":"t","ts":1})").user, 0u);
  EXPECT_ERROR_HAS(R"({"user":18446744073709551616,"tag":"t","ts":1})",
                   "column 9: user must be an unsigned 64-bit integer, 18446744073709551616 is "
                   "out of range");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":99999999999999999999})", "ts must be an unsigned");
  EXPECT_ERROR_HAS(R"({"user":-1,"tag":"t","ts":1})", "not negative (-1)");
  EXPECT_ERROR_HAS(R"({"user":-0,"tag":"t","ts":1})", "not negative");
  EXPECT_ERROR_HAS(R"({"user":1e3,"tag":"t","ts":1})", "without fraction or exponent (1e3)");
  EXPECT_ERROR_HAS(R"({"user":1.5,"tag":"t","ts":1})", "without fraction or exponent (1.5)");
  EXPECT_ERROR_HAS(R"({"user":1.0,"tag":"t","ts":1})", "without fraction or exponent");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":2E2})", "ts must be an unsigned 64-bit integer");
  EXPECT_ERROR_HAS(R"({"user":"42","tag":"t","ts":1})",
                   "user must be an unsigned 64-bit integer, not a string");
  EXPECT_ERROR_HAS(R"({"user":null,"tag":"t","ts":1})", "not 'null'");
  EXPECT_ERROR_HAS(R"({"user":{},"tag":"t","ts":1})", "not an object");
  EXPECT_ERROR_HAS(R"({"user":true,"tag":"t","ts":1})", "not 'true'");
  EXPECT_ERROR_HAS(R"({"user":[1],"tag":"t","ts":1})", "not an array");
  EXPECT_ERROR_HAS(R"({"user":01,"tag":"t","ts":1})", "leading zero");
  EXPECT_ERROR_HAS(R"({"user":+1,"tag":"t","ts":1})", "user must be an unsigned 64-bit integer");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":0})", "column 26: ts must be >= 1");
  EXPECT_ERROR_HAS(R"({"user":12ab,"tag":"t","ts":1})", "column 11: expected ',' or '}'");
}

TEST(EventsDecode, MissingAndDuplicateKeys) {
  EXPECT_ERROR_HAS(R"({"tag":"t","ts":1})", "missing \"user\"");
  EXPECT_ERROR_HAS(R"({"user":1,"ts":1})", "missing \"tag\"");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t"})", "missing \"ts\"");
  EXPECT_ERROR_HAS("{}", "missing \"user\"");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"user":2})", "column 28: duplicate key \"user\"");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"ts":1})", "duplicate key \"ts\"");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","op":"set","ts":1,"op":"set"})", "duplicate key \"op\"");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"t\u0061g":"u"})", "duplicate key \"tag\"");
  // Unknown keys may repeat: they are not looked at.
  EXPECT_EQ(MustDecode(R"({"x":1,"x":2,"user":1,"tag":"t","ts":1})").user, 1u);
}

TEST(EventsDecode, BadOp) {
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","op":"delete","ts":1})",
                   "column 26: op must be \"set\" or \"clear\", not \"delete\"");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","op":"SET","ts":1})", "not \"SET\"");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","op":1,"ts":1})", "op must be the string");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","op":null,"ts":1})", "op must be the string");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":7,"ts":1})", "tag must be a string");
}

TEST(EventsDecode, SyntaxErrors) {
  EXPECT_ERROR_HAS("", "empty line");
  EXPECT_ERROR_HAS("  \r", "empty line");
  EXPECT_ERROR_HAS("[1]", "column 1: expected '{'");
  EXPECT_ERROR_HAS(R"(  "user")", "column 3: expected '{'");
  EXPECT_ERROR_HAS(R"({"user" 1,"tag":"t","ts":1})", "column 9: expected ':'");
  EXPECT_ERROR_HAS(R"({user:1,"tag":"t","ts":1})", "column 2: expected '\"' to start a key");
  EXPECT_ERROR_HAS(R"({"user":1 "tag":"t","ts":1})", "column 11: expected ',' or '}'");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,})", "column 28: expected '\"' to start a key");
  EXPECT_ERROR_HAS(R"({"user":1,,"tag":"t","ts":1})", "column 11: expected '\"'");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1})"
                   "x",
                   "column 28: unexpected 'x' after the event object");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1}{"user":2})", "after the event object");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1} ,)", "column 29: unexpected ','");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"x":})", "column 32: invalid value '}'");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"x":tru})", "invalid value 'tru'");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"x":NaN})", "invalid value 'NaN'");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"x":'a'})", "invalid value ''a''");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"x":[1,]})", "invalid value ']'");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"x":[1 2]})", "expected ',' or ']'");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"x":{"a" 1}})", "expected ':' after key");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"x":{1:2}})", "expected '\"' to start a key");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"x":-})", "invalid number");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"x":1.})", "digit expected after '.'");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"x":1e+})", "digit expected in the exponent");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"x":.5})", "invalid value '.5'");
}

TEST(EventsDecode, StringErrors) {
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"x":"a\qb"})", "column 34: invalid escape '\\q'");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"x":"\u12"})", "\\u must be followed by 4 hex");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"x":"\u12g4"})", "\\u must be followed by 4 hex");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"x":"\ud83d"})",
                   "not followed by a low surrogate");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"x":"\ud83dx"})",
                   "not followed by a low surrogate");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"x":"\ud83d\u0041"})",
                   "not followed by a low surrogate");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"x":"\ud83d\u00"})", "4 hex digits");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"x":"\ude00"})", "unpaired low surrogate");
  EXPECT_ERROR_HAS(std::string(R"({"user":1,"tag":"t","ts":1,"x":"a)") + '\t' + "\"}",
                   "column 34: control character in a string");
  EXPECT_ERROR_HAS(std::string(R"({"user":1,"tag":"t","ts":1,"x":"a)") + '\0' + "\"}",
                   "control character");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"x":"abc})", "column 32: unterminated string");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"abc)", "column 17: unterminated string");
  // Invalid UTF-8: a lone continuation byte, an overlong '/', an encoded
  // surrogate, a truncated sequence, a code point above U+10FFFF.
  for (const std::string bad :
       {"\x80", "\xC0\xAF", "\xED\xA0\x80", "\xE2\x82", "\xF4\x90\x80\x80", "\xFF"}) {
    EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"x":")" + bad + "\"}", "UTF-8");
  }
}

TEST(EventsDecode, NestingDepthIsBounded) {
  // The event object is level 1, so 31 nested arrays in a value still fit.
  auto nested = [](int levels) {
    return R"({"user":1,"tag":"t","ts":1,"x":)" + std::string(levels, '[') +
           std::string(levels, ']') + "}";
  };
  EXPECT_EQ(MustDecode(nested(31)).user, 1u);
  EXPECT_ERROR_HAS(nested(32), "column 63: nesting deeper than 32 levels");
  EXPECT_ERROR_HAS(nested(100000), "nesting deeper than 32 levels");
  std::string objects = R"({"user":1,"tag":"t","ts":1,"x":)";
  for (int i = 0; i < 40; ++i) objects += R"({"a":)";
  objects += "1" + std::string(40, '}') + "}";
  EXPECT_ERROR_HAS(objects, "nesting deeper than 32 levels");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"x":[[[]})", "expected ',' or ']'");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"x":[[[)", "unterminated array");
  EXPECT_ERROR_HAS(R"({"user":1,"tag":"t","ts":1,"x":{"a":{)", "unterminated object");
}

// Every proper prefix of a valid line is an error, and decoding it reads
// nothing beyond it: each prefix lives in its own exactly-sized heap block,
// so an over-read is an ASan report.
TEST(EventsDecode, EveryTruncationFailsCleanly) {
  const std::vector<std::string> lines = {
      R"({"user": 18446744073709551615, "tag": "apple_fan", "op": "clear", "ts": 1732400000000})",
      R"({"src":{"a":[1,-2.5e+7,true,false,null,"\ud83d\ude00\"\\"]},"user":3,"tag":"t\u005f1","ts":9})",
      R"({"tag":"x","n":{},"m":[],"user":0,"s":"é€𝄞","ts":1})",
  };
  for (const std::string& line : lines) {
    ASSERT_TRUE(DecodeEventJson(line).ok()) << line;
    for (size_t n = 0; n < line.size(); ++n) {
      std::unique_ptr<char[]> copy(new char[n == 0 ? 1 : n]);
      std::memcpy(copy.get(), line.data(), n);
      Result<Event> r = DecodeEventJson(std::string_view(copy.get(), n));
      EXPECT_FALSE(r.ok()) << "prefix of " << n << " bytes decoded: " << line.substr(0, n);
      if (!r.ok()) {
        EXPECT_TRUE(r.status().IsBadRequest());
        EXPECT_FALSE(r.status().message().empty());
      }
    }
  }
}

// Random byte edits of valid lines (a cheap stand-in until the fuzzer runs):
// every result is a decoded event or a BAD_REQUEST, never a crash or an
// over-read, and whatever decodes holds a valid tag and a ts >= 1.
TEST(EventsDecode, RandomEditsNeverCrash) {
  const std::vector<std::string> seeds = {
      R"({"user": 18446744073709551615, "tag": "apple_fan", "op": "clear", "ts": 17})",
      R"({"x":{"a":[1,-2.5e+7,true,null,"\ud83d\ude00"]},"user":3,"tag":"t\u005f1","ts":9})",
  };
  const std::string alphabet = "{}[]\":,.-+eE0123456789 \t\r\nu\\abcdeftnrsulx\x80\xC3\xA9\xFF";
  std::mt19937 rng(12345);
  size_t decoded = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::string line = seeds[iter % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !line.empty(); ++e) {
      const size_t at = rng() % line.size();
      const char c = alphabet[rng() % alphabet.size()];
      switch (rng() % 3) {
        case 0:
          line[at] = c;
          break;
        case 1:
          line.insert(line.begin() + static_cast<std::ptrdiff_t>(at), c);
          break;
        default:
          line.erase(at, 1);
          break;
      }
    }
    std::unique_ptr<char[]> copy(new char[line.size() + 1]);
    std::memcpy(copy.get(), line.data(), line.size());
    Result<Event> r = DecodeEventJson(std::string_view(copy.get(), line.size()));
    if (r.ok()) {
      ++decoded;
      EXPECT_TRUE(IsValidTagName(r->tag)) << line;
      EXPECT_GE(r->ts, 1u) << line;
    } else {
      EXPECT_TRUE(r.status().IsBadRequest()) << line;
    }
  }
  EXPECT_GT(decoded, 0u);  // some edits (in unknown values, whitespace) keep a line valid
}

TEST(EventsDecode, BlankLines) {
  EXPECT_TRUE(IsBlankLine(""));
  EXPECT_TRUE(IsBlankLine(" \t\r"));
  EXPECT_TRUE(IsBlankLine("\n"));
  EXPECT_FALSE(IsBlankLine(" x "));
  EXPECT_FALSE(IsBlankLine("{}"));
}

}  // namespace
}  // namespace tagcache::ingest
