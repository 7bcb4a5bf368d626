// Payload v1 (docs/protocol.md, "Payload v1"): compact JSON via RapidJSON, strict on shape,
// ignoring unknown members. Error messages name a JSON path, never a value.
#include "telehub/envelope/payload.h"

#include "telehub/envelope/json.h"

#include <rapidjson/document.h>
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
  rapidjson::Document doc;
  if (auto parsed = parse_json(text, doc); !parsed) return tl::unexpected(parsed.error());
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
