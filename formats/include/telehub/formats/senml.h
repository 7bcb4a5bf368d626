// SenML (RFC 8428) JSON packs: resolution and conversion to telehub readings.
//
// resolve_senml() implements RFC 8428 section 4.6 ("Resolved Records"): base name, base time,
// base unit, base value and base sum are applied to the records that follow them, relative
// times (values below 2^28, section 4.5.3) are taken relative to `now`, a record without a
// time gets the base time (or `now`), and a record without any value field that is not a
// base-only record is refused. Base version (`bver`) above 10 is refused. Fields: bn, bt, bu,
// bv, bs, bver, n, u, v, vs, vb, vd, s, t, ut. Unknown fields are ignored, except that a field
// whose name ends in "_" (must-understand, section 4.4) is refused.
//
// decode_senml() resolves a pack and turns it into readings (docs/payloads.md, "SenML"):
//  - The measurement is named by the record's own name `n` (or, without one, the part of the
//    resolved name after the last ':' or '/'): either a code of the code table itself
//    ("8867-4") or one of the documented names (senml_names(): "heart-rate", "spo2",
//    "systolic", ...). Anything else is refused with unknown_code, naming the measurement.
//  - `v` (or `s`, the sum, when there is no `v`) is the value; the unit is mapped from the
//    SenML unit registry to UCUM (units::senml_to_ucum) but not yet converted to the code's
//    canonical unit (units::normalise does that).
//  - Systolic and diastolic records with the same time (and an irregular-heartbeat `vb` record
//    with that time, if any) become one blood-pressure panel 85354-9 with components in the
//    order systolic, diastolic, irregular heartbeat.
//  - `vs` records named "manufacturer", "model" or "serial" fill DeviceInfo; `vb` records are
//    accepted only for flag codes; any other `vs`, `vb` or `vd` record is refused (a value telehub
//    cannot store is never silently dropped).
//
// Error policy: returns Result; never throws. Reasons: bad_payload (not SenML, with the record
// index in the message: "senml[3].t: must be a number"), unknown_code, bad_unit (a SenML unit
// with no UCUM mapping). Messages never quote string values from the payload.
//
// Thread-safety: stateless functions.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "telehub/core/error.h"
#include "telehub/core/time.h"
#include "telehub/formats/decoded.h"

namespace telehub::formats {

// One resolved SenML record (RFC 8428 section 4.6).
struct SenmlRecord {
  std::string name;            // base name + name
  std::string unit;            // base unit when the record has none; may be empty
  double time = 0;             // absolute, seconds since the Unix epoch (fractions allowed)
  double update_time = 0;      // `ut`, 0 when absent
  std::optional<double> value;         // v (+ base value)
  std::optional<double> sum;           // s (+ base sum)
  std::optional<std::string> string_value;  // vs
  std::optional<bool> bool_value;           // vb
  std::optional<std::string> data_value;    // vd (base64url text as sent)
  std::string own_name;        // the record's own `n` (without the base name), may be empty

  bool operator==(const SenmlRecord&) const = default;
};

// Most records in one pack.
inline constexpr std::size_t kMaxSenmlRecords = 4000;

// `now`: the time the message was received, for relative times and records without a time.
[[nodiscard]] Result<std::vector<SenmlRecord>> resolve_senml(std::span<const std::uint8_t> json, core::TimePoint now);

[[nodiscard]] Result<Decoded> decode_senml(std::span<const std::uint8_t> json, core::TimePoint now);

// The documented measurement names and the code each stands for, e.g. {"heart-rate", "8867-4"}.
struct SenmlName {
  std::string_view name;
  std::string_view code;
};
std::span<const SenmlName> senml_names();

}  // namespace telehub::formats
