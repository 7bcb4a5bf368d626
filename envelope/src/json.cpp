// The strict JSON parser of telehub/envelope/json.h.
#include "telehub/envelope/json.h"

#include <rapidjson/encodedstream.h>
#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <system_error>

namespace telehub::envelope {
namespace {

constexpr std::size_t kMaxDepth = kMaxJsonDepth;
// Numbers reach DecodingHandler::RawNumber as text and are converted there with
// std::from_chars, not by RapidJSON 1.1.0: its kParseFullPrecisionFlag conversion reads out
// of bounds for tiny exponents, misreads zero mantissas with an exponent and misses overflow
// (docs/fuzzing.md, "Findings, fixed").
constexpr unsigned kParseFlags =
    rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag | rapidjson::kParseNumbersAsStringsFlag;
// Longest number literal accepted. The exact decimal expansion of any double fits (at most
// 1077 characters, e.g. 2^-1074 written out in full), so no correct writer is refused.
constexpr std::size_t kMaxNumberLength = 1100;

// True when arrays/objects in `text` nest deeper than kMaxDepth (brackets in strings don't count).
// Checked before parsing, so a hostile document costs no more than one linear scan.
bool too_deep(std::string_view text) {
  std::size_t depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

// True when s[0..n) is UTF-8 by the same check the writer applies (kWriteValidateEncodingFlag),
// so decode never accepts a string encode_payload() would refuse.
bool valid_utf8(const char* s, std::size_t n) {
  struct Discard {
    void Put(char) {}
  } discard;
  rapidjson::MemoryStream in(s, n);
  while (in.Tell() < n) {
    if (!rapidjson::UTF8<>::Validate(in, discard)) return false;
  }
  return true;
}

// SAX handler that builds `doc` like Document::Parse() would, except that:
//  - numbers arrive as text (kParseNumbersAsStringsFlag) and are converted here: an integer
//    literal that fits 64 bits becomes an integer value (so "v":1 is IsInt(), "v":1.0 is not,
//    as before); every other literal becomes the correctly rounded double (std::from_chars).
//    Refused: a literal longer than kMaxNumberLength, and one whose rounded value is infinite
//    or zero although the literal is not (RFC 8259 section 6 lets a parser limit the range).
//  - every decoded string and member name must be valid UTF-8. The reader validates raw bytes,
//    but decodes a \uDC00..\uDFFF escape that follows no high surrogate into the bytes of a
//    lone surrogate (RFC 3629 section 3 forbids them); those are refused here.
// On refusal it returns false (the reader stops with kParseErrorTermination) and problem()
// says why.
class DecodingHandler {
 public:
  explicit DecodingHandler(rapidjson::Document& doc) : doc_(doc) {}

  bool Null() { return doc_.Null(); }
  bool Bool(bool b) { return doc_.Bool(b); }
  // The reader calls these only without kParseNumbersAsStringsFlag; kept for the Handler concept.
  bool Int(int i) { return doc_.Int(i); }
  bool Uint(unsigned u) { return doc_.Uint(u); }
  bool Int64(std::int64_t i) { return doc_.Int64(i); }
  bool Uint64(std::uint64_t u) { return doc_.Uint64(u); }
  bool Double(double d) { return doc_.Double(d); }

  // `text` is a literal the reader has checked against the JSON number grammar.
  bool RawNumber(const char* text, rapidjson::SizeType length, bool /*copy*/) {
    static_assert(kMaxNumberLength == 1100, "the message below states the limit");
    if (length > kMaxNumberLength) return refuse("number longer than 1100 characters");
    const char* const end = text + length;
    if (std::string_view(text, length).find_first_of(".eE") == std::string_view::npos) {
      if (text[0] == '-') {
        std::int64_t i = 0;
        if (const auto r = std::from_chars(text, end, i); r.ec == std::errc() && r.ptr == end) return doc_.Int64(i);
      } else {
        std::uint64_t u = 0;
        if (const auto r = std::from_chars(text, end, u); r.ec == std::errc() && r.ptr == end) return doc_.Uint64(u);
      }
      // Beyond 64 bits: a double, as RapidJSON does.
    }
    double d = 0;
    const auto r = std::from_chars(text, end, d);
    // libstdc++ reports result_out_of_range both for overflow and for a non-zero literal that
    // rounds to zero; a literal that rounds to a subnormal is accepted.
    if (r.ec == std::errc::result_out_of_range)
      return refuse("number out of range (beyond the largest double, or non-zero but rounding to zero)");
    if (r.ec != std::errc() || r.ptr != end || !std::isfinite(d)) return refuse("number not convertible");
    return doc_.Double(d);
  }

  bool String(const char* s, rapidjson::SizeType length, bool copy) {
    if (!valid_utf8(s, length)) return refuse("string not valid Unicode (unpaired surrogate escape)");
    return doc_.String(s, length, copy);
  }
  bool Key(const char* s, rapidjson::SizeType length, bool copy) {
    if (!valid_utf8(s, length)) return refuse("member name not valid Unicode (unpaired surrogate escape)");
    return doc_.Key(s, length, copy);
  }
  bool StartObject() { return doc_.StartObject(); }
  bool EndObject(rapidjson::SizeType members) { return doc_.EndObject(members); }
  bool StartArray() { return doc_.StartArray(); }
  bool EndArray(rapidjson::SizeType elements) { return doc_.EndArray(elements); }

  // Why the handler stopped the parse; nullptr if it did not.
  const char* problem() const { return problem_; }

 private:
  bool refuse(const char* problem) {
    problem_ = problem;
    return false;
  }

  rapidjson::Document& doc_;
  const char* problem_ = nullptr;
};

// Parses `text` into `doc` through DecodingHandler. Returns the reader's result; when the
// handler stopped it, `problem` says why.
rapidjson::ParseResult parse(std::string_view text, rapidjson::Document& doc, const char*& problem) {
  rapidjson::ParseResult result;
  auto generate = [&](rapidjson::Document& target) {
    rapidjson::MemoryStream bytes(text.data(), text.size());
    rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> in(bytes);  // skips a BOM
    DecodingHandler handler(target);
    rapidjson::Reader reader;
    result = reader.Parse<kParseFlags>(in, handler);
    problem = handler.problem();
    return !result.IsError();
  };
  doc.Populate(generate);
  return result;
}


tl::unexpected<core::Error> bad(std::string problem) {
  return core::fail(core::Code::kInvalidArgument, "bad_payload", "payload: " + std::move(problem));
}

}  // namespace

Status parse_json(std::string_view text, rapidjson::Document& doc) {
  static_assert(kMaxJsonDepth == 16, "the message below states the limit");
  if (too_deep(text)) return bad("JSON nesting deeper than 16");
  const char* problem = nullptr;
  const rapidjson::ParseResult parsed = parse(text, doc, problem);
  if (parsed.IsError() && problem) return bad(std::string(problem) + " at byte " + std::to_string(parsed.Offset()));
  if (parsed.IsError())
    return bad(std::string("not valid JSON (") + rapidjson::GetParseError_En(parsed.Code()) + " at byte " +
               std::to_string(parsed.Offset()) + ")");
  return {};
}

}  // namespace telehub::envelope
