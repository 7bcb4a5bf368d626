#include "telehub/formats/senml_encode.h"

#include <array>
#include <charconv>
#include <cmath>
#include <utility>

#include "telehub/formats/decoded.h"

namespace telehub::formats {
namespace {

// UCUM (canonical units of the code table) -> SenML unit (RFC 8428 section 12.1 where the
// registry has one, the aliases of docs/payloads.md otherwise).
constexpr std::array<std::pair<std::string_view, std::string_view>, 9> kUnits{{
    {"/min", "beat/min"},
    {"%", "%"},
    {"Cel", "Cel"},
    {"kg", "kg"},
    {"mm[Hg]", "mmHg"},
    {"mmol/L", "mmol/l"},
    {"mg/dL", "mg/dl"},
    {"/d", "count"},
    {"1", "/"},
}};

tl::unexpected<core::Error> bad(std::string message) {
  return core::fail(core::Code::kInvalidArgument, "bad_payload", std::move(message));
}

void append_number(std::string& out, double v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_string(std::string& out, std::string_view s) {
  // Names are codes and base names are device URNs: no characters that need escaping. Anything
  // else is refused by the caller's checks before it gets here.
  out += '"';
  out += s;
  out += '"';
}

bool plain(std::string_view s) {
  for (char c : s)
    if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) return false;
  return true;
}

}  // namespace

Result<std::string> encode_senml(std::span<const core::Reading> readings, std::string_view base_name) {
  if (readings.empty()) return bad("senml: no readings");
  if (!plain(base_name)) return bad("senml: base name with characters JSON would need to escape");
  const auto base_ms = core::to_unix_millis(readings.front().time);
  const auto base_s = base_ms / 1000 - (base_ms % 1000 < 0 ? 1 : 0);
  std::string out = "[";
  std::size_t records = 0;
  auto record = [&](std::string_view code, double value, std::string_view unit, core::TimePoint t) -> Status {
    if (!std::isfinite(value)) return bad("senml: value of " + std::string(code) + " is not finite");
    if (!plain(code)) return bad("senml: code with characters JSON would need to escape");
    std::string_view senml_unit;
    bool found = false;
    for (const auto& [ucum, s] : kUnits)
      if (ucum == unit) senml_unit = s, found = true;
    if (!found) return bad("senml: unit " + std::string(unit) + " has no SenML spelling");
    if (unit == "/min" && code == "9279-1") senml_unit = "1/min";  // breaths, not beats
    if (++records > kMaxReadings) return bad("senml: more than 1000 records");
    if (records > 1) out += ',';
    out += '{';
    if (records == 1) {
      out += "\"bn\":";
      append_string(out, base_name);
      out += ",\"bt\":";
      out += std::to_string(base_s);
      out += ',';
    }
    out += "\"n\":";
    append_string(out, code);
    out += ",\"u\":";
    append_string(out, senml_unit);
    out += ",\"v\":";
    append_number(out, value);
    const auto offset = core::to_unix_millis(t) / 1000 - base_s;
    if (offset != 0) {
      out += ",\"t\":";
      out += std::to_string(offset);
    }
    out += '}';
    return {};
  };
  for (const auto& r : readings) {
    if (!r.components.empty()) {
      for (const auto& c : r.components)
        if (auto s = record(c.code, c.value, c.unit, r.time); !s) return tl::unexpected(s.error());
    } else if (r.value) {
      if (auto s = record(r.code, *r.value, r.unit, r.time); !s) return tl::unexpected(s.error());
    } else {
      return bad("senml: a reading with neither value nor components");
    }
  }
  out += ']';
  return out;
}

}  // namespace telehub::formats
