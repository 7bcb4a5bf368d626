// Unit conversion to the canonical UCUM unit of each code; see include/telehub/formats/units.h.
//
// Every conversion is one row of kConversions: canonical = (value + offset) * factor; a value in
// the canonical unit itself is returned unchanged, without a row. The
// factors come from the UCUM definitions (The Unified Code for Units of Measure, version 2.1,
// http://unitsofmeasure.org/ucum.html, and its ucum-essence.xml), because every unit telehub
// accepts is a UCUM code:
//   [lb_av]  = 7000 [gr], [gr] = 64.79891 mg          -> 1 [lb_av] = 0.45359237 kg exactly
//   [oz_av]  = 1/16 [lb_av]                            -> 1 [oz_av] = 0.028349523125 kg exactly
//   [degF]   = 5/9 K with zero at 459.67 [degF] below 0 K -> Cel = ([degF] - 32) * 5/9
//   Cel      = K with zero at 273.15 K                 -> Cel = K - 273.15
//   m[Hg]    = 133.3220 kPa                            -> 1 mm[Hg] = 133.3220 Pa
// UCUM's mm[Hg] (133.3220 Pa) differs from the conventional 133.322387415 Pa (BIPM SI
// brochure, table 8) by 3 ppm, far below what any blood-pressure cuff resolves; we follow UCUM
// because the unit codes are UCUM's. So 1 kPa = 1000 / 133.3220 = 7.500637 mm[Hg].
//   Glucose: molar mass 180.156 g/mol (kGlucoseMolarMass; C6H12O6 from IUPAC standard atomic
//   weights), so 1 mmol/L = 180.156 mg/L = 18.0156 mg/dL. This conversion holds for glucose
//   only, so its rows are restricted to the two glucose codes.
//   %, /min, /d: UCUM annotations ({ratio}, {beats}, {steps}, {count}) are unity, so
//   {beats}/min = /min and {steps}/d = /d; "1" (a fraction) is 100 %; /s is 60 /min; a bare
//   count ("1", "{count}") for steps is taken as the day's count (41950-7 is "in 24 hour").
#include "telehub/formats/units.h"

#include <array>
#include <cmath>
#include <string>

#include "telehub/core/codes.h"

namespace telehub::formats {
namespace {

struct Conversion {
  std::string_view canonical;  // the canonical unit of the code (core::CodeInfo::ucum)
  std::string_view from;       // the unit the value arrives in
  double factor;               // canonical = (value + offset) * factor
  double offset;
  std::string_view only_code;  // when not empty, the row applies to this code only
};

constexpr double kMmHgPa = 133.3220;               // UCUM: m[Hg] = 133.3220 kPa
constexpr double kLbKg = 7000 * 64.79891e-6;       // UCUM: [lb_av] = 7000 [gr], [gr] = 64.79891 mg
constexpr double kGlucoseMgDlPerMmolL = kGlucoseMolarMass / 10;  // mg/dL per mmol/L: 18.0156

constexpr std::array<Conversion, 18> kConversions{{
    // Mass (29463-7).
    {"kg", "g", 1e-3, 0, {}},
    {"kg", "[lb_av]", kLbKg, 0, {}},
    {"kg", "[oz_av]", kLbKg / 16, 0, {}},
    // Temperature (8310-5).
    {"Cel", "[degF]", 5.0 / 9.0, -32, {}},
    {"Cel", "K", 1, -273.15, {}},
    // Pressure (8480-6, 8462-4).
    {"mm[Hg]", "kPa", 1000 / kMmHgPa, 0, {}},
    {"mm[Hg]", "hPa", 100 / kMmHgPa, 0, {}},
    {"mm[Hg]", "Pa", 1 / kMmHgPa, 0, {}},
    // Glucose: molar <-> mass concentration, glucose only.
    {"mmol/L", "mg/dL", 1 / kGlucoseMgDlPerMmolL, 0, core::loinc::kGlucoseMolar},
    {"mg/dL", "mmol/L", kGlucoseMgDlPerMmolL, 0, core::loinc::kGlucoseMass},
    // Fractions (SpO2, perfusion index).
    {"%", "1", 100, 0, {}},
    {"%", "{ratio}", 100, 0, {}},
    // Rates (heart rate, respiratory rate).
    {"/min", "{beats}/min", 1, 0, {}},
    {"/min", "{breaths}/min", 1, 0, {}},
    {"/min", "/s", 60, 0, {}},
    // Counts per day (steps).
    {"/d", "{steps}/d", 1, 0, {}},
    {"/d", "{count}", 1, 0, {}},
    {"/d", "1", 1, 0, {}},
}};

// A unit or code from a payload, quoted for an error message only when it is a short token of
// printable ASCII without spaces (as UCUM units are); errors are logged, so arbitrary payload
// bytes never go into them.
std::string quoted(std::string_view s) {
  constexpr std::size_t kMax = 32;
  bool printable = !s.empty() && s.size() <= kMax;
  for (const char c : s)
    if (c <= 0x20 || c > 0x7e || c == '"' || c == '\\') printable = false;
  if (printable) return "\"" + std::string(s) + "\"";
  if (s.empty()) return "\"\"";
  return "(" + std::to_string(s.size()) + " bytes, not a short printable token)";
}

const Conversion* find_conversion(const core::CodeInfo& info, std::string_view unit) {
  for (const auto& c : kConversions)
    if (c.canonical == info.ucum && c.from == unit && (c.only_code.empty() || c.only_code == info.loinc)) return &c;
  return nullptr;
}

// `where` names the unit in messages ("unit", "readings[2].unit").
Result<double> convert(const core::CodeInfo& info, double value, std::string_view unit, const std::string& where) {
  if (info.panel)
    return core::fail(core::Code::kInvalidArgument, "bad_reading",
                      where + ": " + std::string(info.loinc) + " is a panel and has no value of its own");
  if (!std::isfinite(value))
    return core::fail(core::Code::kInvalidArgument, "bad_reading", where + ": the value is not a finite number");
  double out = value;
  if (unit != info.ucum) {
    const Conversion* c = find_conversion(info, unit);
    if (!c)
      return core::fail(core::Code::kInvalidArgument, "bad_unit",
                        where + " " + quoted(unit) + " cannot be converted to \"" + std::string(info.ucum) + "\" (" +
                            std::string(info.loinc) + ")");
    out = (value + c->offset) * c->factor;
  }
  if (!std::isfinite(out))
    return core::fail(core::Code::kInvalidArgument, "bad_reading",
                      where + ": the value is out of range in \"" + std::string(info.ucum) + "\" (" +
                          std::string(info.loinc) + ")");
  return out;
}

Result<const core::CodeInfo*> known(std::string_view code, const std::string& where) {
  const core::CodeInfo* info = core::find_code(code);
  if (!info)
    return core::fail(core::Code::kInvalidArgument, "unknown_code", where + " " + quoted(code) + " is not a known code");
  return info;
}

}  // namespace

Result<double> to_canonical(std::string_view code, double value, std::string_view unit) {
  auto info = known(code, "code");
  if (!info) return tl::unexpected(std::move(info.error()));
  return convert(**info, value, unit, "unit");
}

Status normalise(std::vector<core::Reading>& readings) {
  // Converted into a copy and swapped in at the end, so on failure `readings` is unchanged.
  std::vector<core::Reading> out = readings;
  for (std::size_t i = 0; i < out.size(); ++i) {
    core::Reading& r = out[i];
    const std::string where = "readings[" + std::to_string(i) + "]";
    auto info = known(r.code, where + ".code");
    if (!info) return tl::unexpected(std::move(info.error()));
    if ((*info)->panel) {
      if (r.value || !r.unit.empty())
        return core::fail(core::Code::kInvalidArgument, "bad_reading",
                          where + ": " + std::string((*info)->loinc) +
                              " is a panel: it has no value or unit of its own");
      for (std::size_t j = 0; j < r.components.size(); ++j) {
        core::Component& c = r.components[j];
        const std::string cw = where + ".components[" + std::to_string(j) + "]";
        auto ci = known(c.code, cw + ".code");
        if (!ci) return tl::unexpected(std::move(ci.error()));
        auto v = convert(**ci, c.value, c.unit, cw + ".unit");
        if (!v) return tl::unexpected(std::move(v.error()));
        c.value = *v;
        c.unit = std::string((*ci)->ucum);
      }
      continue;
    }
    if (!r.value || !r.components.empty())
      return core::fail(core::Code::kInvalidArgument, "bad_reading", where + ": needs a value and no components");
    auto v = convert(**info, *r.value, r.unit, where + ".unit");
    if (!v) return tl::unexpected(std::move(v.error()));
    r.value = *v;
    r.unit = std::string((*info)->ucum);
  }
  readings = std::move(out);
  return {};
}

}  // namespace telehub::formats
