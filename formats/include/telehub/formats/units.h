// Units: every stored reading is in the canonical UCUM unit of its code (core::CodeInfo::ucum).
// docs/payloads.md, "Units", lists every conversion; src/units.cpp states each factor and its
// source (the UCUM definitions, e.g. [lb_av] = 7000 [gr] = 0.45359237 kg, m[Hg] = 133.3220 kPa).
//
// to_canonical() converts a value given in `unit` (a UCUM code, case-sensitive) to the canonical
// unit of `code`:
//   kg      from kg, g, [lb_av], [oz_av]
//   Cel     from Cel, [degF], K
//   mm[Hg]  from mm[Hg], kPa, Pa, hPa
//   mmol/L  from mmol/L, mg/dL (glucose 15074-8: molar mass of glucose 180.156 g/mol, so
//           1 mmol/L = 18.0156 mg/dL); mg/dL (2339-0) from mg/dL and mmol/L the same way
//   %       from %, 1 and {ratio} (a fraction 0..1 times 100)
//   /min    from /min, {beats}/min, {breaths}/min, /s (times 60)
//   /d      from /d, {steps}/d, 1 and {count} (a day's count)
//   1       (flags) from 1
// The canonical unit itself converts to itself exactly. Any other pair fails.
//
// senml_to_ucum() maps a SenML unit (RFC 8428 section 12.1 registry and the aliases that
// docs/payloads.md lists, e.g. "beat/min" -> "/min", "mmHg" -> "mm[Hg]", "%" -> "%",
// "/" -> "1", "count" -> "{count}", "lb" -> "[lb_av]", "degF" -> "[degF]") to UCUM; an empty
// SenML unit maps to the empty string; an unknown one to std::nullopt.
//
// normalise() converts every reading and component of `readings` in place, and sets the unit
// to the canonical one. A panel (core::CodeInfo::panel) keeps no value and an empty unit; its
// components are converted by their own codes. On failure `readings` is left unchanged.
//
// Error policy: Result, never throws. Failures, all with code invalid_argument:
//  - bad_unit: no conversion from the unit to the canonical one; the message names the unit,
//    the canonical unit and the code: `readings[2].unit "kPa" cannot be converted to "kg"
//    (29463-7)` (to_canonical() says `unit` instead of the path). A unit from the payload is
//    quoted only when it is a short printable token, never as raw bytes.
//  - unknown_code: the code (of a reading or a component) is not in the code table.
//  - bad_reading: the value is not finite, or its conversion is not
//    (`readings[0].components[1].unit: ...`); a panel with a value or unit of its own; a
//    reading that is not a panel without a value or with components; to_canonical() of a panel.
//
// Thread-safety: stateless functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "telehub/core/error.h"
#include "telehub/core/reading.h"

namespace telehub::formats {

inline constexpr double kGlucoseMolarMass = 180.156;  // g/mol; 1 mmol/L = 18.0156 mg/dL

[[nodiscard]] Result<double> to_canonical(std::string_view code, double value, std::string_view unit);

std::optional<std::string> senml_to_ucum(std::string_view senml_unit);

[[nodiscard]] Status normalise(std::vector<core::Reading>& readings);

}  // namespace telehub::formats
