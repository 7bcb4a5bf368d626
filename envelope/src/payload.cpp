// Payload v1 (docs/protocol.md, "Payload v1"): compact JSON via RapidJSON, strict on shape,
// ignoring unknown members. Error messages name a JSON path, never a value.
#include "telehub/envelope/payload.h"

#include <rapidjson/document.h>
#include <rapidjson/encodedstream.h>
#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <system_error>

namespace telehub::envelope {
namespace {

// The UTC instants that RFC 3339 text with a four-digit year can carry, 0000-01-01T00:00:00.000Z
// to 9999-12-31T23:59:59.999Z (the proleptic Gregorian calendar; year 0 is a leap year).
const core::TimePoint kFirstWritable = core::from_unix_millis(-62'167'219'200'000);
const core::TimePoint kLastWritable = core::from_unix_millis(253'402'300'799'999);

using core::Code;
using rapidjson::Value;

constexpr std::size_t kMaxDepth = 16;
// Numbers reach DecodingHandler::RawNumber as text and are converted there with
// std::from_chars, not by RapidJSON 1.1.0: its kParseFullPrecisionFlag conversion reads out
// of bounds for tiny exponents, misreads zero mantissas with an exponent and misses overflow
// (docs/fuzzing.md, "Findings, fixed").
constexpr unsigned kParseFlags =
    rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag | rapidjson::kParseNumbersAsStringsFlag;
// Longest number literal accepted. The exact decimal expansion of any double fits (at most
// 1077 characters, e.g. 2^-1074 written out in full), so no correct writer is refused.
constexpr std::size_t kMaxNumberLength = 1100;
using Writer = rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>, rapidjson::UTF8<>,
                                 rapidjson::CrtAllocator, rapidjson::kWriteValidateEncodingFlag>;

tl::unexpected<core::Error> bad(std::string_view path, std::string_view problem) {
  std::string message(path);
  message += ": ";
  message += problem;
  return core::fail(Code::kInvalidArgument, "bad_payload", std::move(message));
}

std::string index_path(std::string_view base, std::size_t i) {
  return std::string(base) + "[" + std::to_string(i) + "]";
}

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

const Value* find(const Value& object, const char* name) {
  auto it = object.FindMember(name);
  return it == object.MemberEnd() ? nullptr : &it->value;
}

Result<std::string> get_string(const Value& object, const char* name, const std::string& path) {
  const std::string where = path + "." + name;
  const Value* v = find(object, name);
  if (!v) return bad(where, "missing");
  if (!v->IsString()) return bad(where, "must be a string");
  if (v->GetStringLength() == 0) return bad(where, "must not be empty");
  return std::string(v->GetString(), v->GetStringLength());
}

Result<double> get_number(const Value& object, const char* name, const std::string& path) {
  const std::string where = path + "." + name;
  const Value* v = find(object, name);
  if (!v) return bad(where, "missing");
  if (!v->IsNumber()) return bad(where, "must be a number");
  const double d = v->GetDouble();
  if (!std::isfinite(d)) return bad(where, "must be finite");
  return d;
}

Result<core::Component> decode_component(const Value& v, const std::string& path) {
  if (!v.IsObject()) return bad(path, "must be an object");
  auto code = get_string(v, "code", path);
  if (!code) return tl::unexpected(code.error());
  auto value = get_number(v, "value", path);
  if (!value) return tl::unexpected(value.error());
  auto unit = get_string(v, "unit", path);
  if (!unit) return tl::unexpected(unit.error());
  return core::Component{std::move(*code), *value, std::move(*unit)};
}

Result<core::Reading> decode_reading(const Value& v, const std::string& path) {
  if (!v.IsObject()) return bad(path, "must be an object");
  core::Reading r;
  auto code = get_string(v, "code", path);
  if (!code) return tl::unexpected(code.error());
  r.code = std::move(*code);

  auto time_text = get_string(v, "time", path);
  if (!time_text) return tl::unexpected(time_text.error());
  auto time = core::parse_rfc3339(*time_text);
  if (!time) return bad(path + ".time", "must be an RFC 3339 date-time with offset");
  // An offset can move a time at the edge of the range outside it in UTC ("0000-01-01T00:00:00+01:00"
  // is in the year -1), where it could not be written back; refuse it like the encoder does.
  if (*time < kFirstWritable || *time > kLastWritable) return bad(path + ".time", "outside the years 0000..9999 in UTC");
  r.time = *time;

  if (const Value* components = find(v, "components")) {
    const std::string where = path + ".components";
    if (find(v, "value")) return bad(path + ".value", "not allowed in a reading with components");
    if (find(v, "unit")) return bad(path + ".unit", "not allowed in a reading with components");
    if (!components->IsArray()) return bad(where, "must be an array");
    if (components->Empty()) return bad(where, "must not be empty");
    for (rapidjson::SizeType i = 0; i < components->Size(); ++i) {
      auto c = decode_component((*components)[i], index_path(where, i));
      if (!c) return tl::unexpected(c.error());
      r.components.push_back(std::move(*c));
    }
    return r;
  }
  auto value = get_number(v, "value", path);
  if (!value) return tl::unexpected(value.error());
  r.value = *value;
  auto unit = get_string(v, "unit", path);
  if (!unit) return tl::unexpected(unit.error());
  r.unit = std::move(*unit);
  return r;
}

// Integral values within the exactly representable range are written without ".0" ("72", as
// in the protocol examples); everything else in RapidJSON's shortest round-trip form.
// REQUIRES: d is finite (check_reading).
void write_number(Writer& w, double d) {
  constexpr double kExactInt = 9007199254740992.0;  // 2^53
  if (d == std::trunc(d) && std::fabs(d) <= kExactInt && !(d == 0 && std::signbit(d)))
    w.Int64(static_cast<std::int64_t>(d));
  else
    w.Double(d);
}

bool write_string(Writer& w, const std::string& s) {
  return w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}

// Checks a reading against the rules decode_payload() enforces, so the encoder never emits
// a payload the hub would refuse.
Status check_reading(const core::Reading& r, const std::string& path) {
  if (r.code.empty()) return bad(path + ".code", "must not be empty");
  if (r.time < kFirstWritable || r.time > kLastWritable) return bad(path + ".time", "outside the years 0000..9999");
  if (!r.components.empty()) {
    if (r.value) return bad(path + ".value", "not allowed in a reading with components");
    if (!r.unit.empty()) return bad(path + ".unit", "not allowed in a reading with components");
    for (std::size_t i = 0; i < r.components.size(); ++i) {
      const auto& c = r.components[i];
      const std::string where = index_path(path + ".components", i);
      if (c.code.empty()) return bad(where + ".code", "must not be empty");
      if (!std::isfinite(c.value)) return bad(where + ".value", "must be finite");
      if (c.unit.empty()) return bad(where + ".unit", "must not be empty");
    }
    return {};
  }
  if (!r.value) return bad(path + ".value", "missing (a reading needs a value or components)");
  if (!std::isfinite(*r.value)) return bad(path + ".value", "must be finite");
  if (r.unit.empty()) return bad(path + ".unit", "must not be empty");
  return {};
}

}  // namespace

Result<std::string> encode_payload(std::span<const core::Reading> readings) {
  if (readings.empty()) return bad("readings", "must not be empty");
  if (readings.size() > kMaxReadingsPerPayload) return bad("readings", "more than 1000 readings");

  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  w.Key("v");
  w.Int(1);
  w.Key("readings");
  w.StartArray();
  for (std::size_t i = 0; i < readings.size(); ++i) {
    const core::Reading& r = readings[i];
    const std::string path = index_path("readings", i);
    if (auto ok = check_reading(r, path); !ok) return tl::unexpected(ok.error());
    // Member order: code, [value, unit], time, [components] (any order is valid JSON).
    w.StartObject();
    w.Key("code");
    if (!write_string(w, r.code)) return bad(path + ".code", "not valid UTF-8");
    if (r.value) {
      w.Key("value");
      write_number(w, *r.value);
      w.Key("unit");
      if (!write_string(w, r.unit)) return bad(path + ".unit", "not valid UTF-8");
    }
    w.Key("time");
    write_string(w, core::format_rfc3339(r.time));
    if (!r.components.empty()) {
      w.Key("components");
      w.StartArray();
      for (std::size_t j = 0; j < r.components.size(); ++j) {
        const core::Component& c = r.components[j];
        const std::string where = index_path(path + ".components", j);
        w.StartObject();
        w.Key("code");
        if (!write_string(w, c.code)) return bad(where + ".code", "not valid UTF-8");
        w.Key("value");
        write_number(w, c.value);
        w.Key("unit");
        if (!write_string(w, c.unit)) return bad(where + ".unit", "not valid UTF-8");
        w.EndObject();
      }
      w.EndArray();
    }
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return std::string(buffer.GetString(), buffer.GetSize());
}

Result<std::vector<core::Reading>> decode_payload(std::span<const std::uint8_t> json) {
  const std::string_view text(reinterpret_cast<const char*>(json.data()), json.size());
  if (too_deep(text)) return bad("payload", "JSON nesting deeper than 16");

  rapidjson::Document doc;
  const char* problem = nullptr;
  const rapidjson::ParseResult parsed = parse(text, doc, problem);
  if (parsed.IsError() && problem)
    return bad("payload", std::string(problem) + " at byte " + std::to_string(parsed.Offset()));
  if (parsed.IsError())
    return bad("payload", std::string("not valid JSON (") + rapidjson::GetParseError_En(parsed.Code()) +
                              " at byte " + std::to_string(parsed.Offset()) + ")");
  if (!doc.IsObject()) return bad("payload", "must be a JSON object");

  const Value* v = find(doc, "v");
  if (!v) return bad("v", "missing");
  if (!v->IsInt() || v->GetInt() != 1) return bad("v", "must be the number 1");

  const Value* list = find(doc, "readings");
  if (!list) return bad("readings", "missing");
  if (!list->IsArray()) return bad("readings", "must be an array");
  if (list->Empty()) return bad("readings", "must not be empty");
  if (list->Size() > kMaxReadingsPerPayload) return bad("readings", "more than 1000 readings");

  std::vector<core::Reading> out;
  out.reserve(list->Size());
  for (rapidjson::SizeType i = 0; i < list->Size(); ++i) {
    auto r = decode_reading((*list)[i], index_path("readings", i));
    if (!r) return tl::unexpected(r.error());
    out.push_back(std::move(*r));
  }
  return out;
}

}  // namespace telehub::envelope
