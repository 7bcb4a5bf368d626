// SenML (RFC 8428) JSON packs: resolution and conversion to telehub readings.
//
// resolve_senml() implements RFC 8428 section 4.6 ("Resolved Records"). The text is parsed by
// envelope::parse_json() (its depth, UTF-8 and number limits apply) and must be a JSON array
// of at most kMaxSenmlRecords objects (section 5). Then, record by record, in pack order:
//  - Labels (section 5, Table 2): bn, bt, bu, bv, bs, bver, n, u, v, vs, vb, vd, s, t, ut, each
//    with its JSON type; a label given twice in one record is refused. Unknown labels are
//    ignored, except that one whose name ends in "_" (must-understand, section 4.4) is refused.
//  - Base fields apply to the record that carries them and to every later record until a
//    record sets them again (section 4.1). bver must be an integer 1..10 (section 4.4: a
//    newer version MUST NOT be used) and the same wherever it is given.
//  - name = bn + n; it must be non-empty and follow section 4.5.1 ([A-Za-z0-9] then
//    [A-Za-z0-9:./_-]*). unit = u, else bu (section 4.5.2), possibly empty.
//  - value = bv + v, only when the record has v; sum = bs + s when either is present
//    (section 4.5.4: the missing one counts as zero).
//  - time = bt + t (a missing one counts as zero); when that is below 2^28 it is relative to
//    `now` (section 4.5.3), so a record with neither gets `now`. ut is copied as given.
//  - A record carries exactly one of v, vs, vb, vd, or none of them and an s (section 4.2; s
//    may accompany a value). A record with no value and no s is refused, unless it has only
//    base fields (like the first record of section 5.1.7): such a record yields no resolved
//    record. vd must be base64url without padding (section 5).
//  - Values, sums and times that overflow to infinity are refused.
// Resolved records keep pack order (they are not sorted by time).
//
// decode_senml() resolves a pack and turns it into readings:
//  - The measurement key is the record's own name `n` if non-empty, else the part of the
//    resolved name after its last ':' or '/' (the whole name if it has neither). The key is a
//    code of the code table itself ("8867-4") or one of the documented names (senml_names():
//    heart-rate, hr, pulse -> 8867-4; spo2 -> 59408-5; resp-rate -> 9279-1; body-temp ->
//    8310-5; weight -> 29463-7; systolic, sys -> 8480-6; diastolic, dia -> 8462-4; glucose ->
//    15074-8; steps -> 41950-7; perfusion-index; irregular-heartbeat). Keys are
//    case-sensitive. Anything else is refused with unknown_code; the message names the record
//    index but not the key (a name may be a device identifier).
//  - `vs` records whose key is "manufacturer", "model" or "serial" fill Decoded::device (at
//    most 128 bytes each, each at most once). Any other `vs`, any `vd`, a `vb` for a code that
//    is not a flag, a flag without `vb`, or a value for the panel code 85354-9 is refused with
//    bad_payload (a value telehub cannot store is never silently dropped).
//  - The value is `v`, or the sum `s` when there is no `v`. The unit is the resolved SenML
//    unit mapped by senml_to_ucum() (units.h) but not converted to the code's canonical unit
//    (units::normalise does that). A unit with no mapping is refused with bad_unit, and so is
//    an empty unit unless the code's canonical unit is "1".
//  - The time is rounded to the nearest millisecond; times outside the years 0000..9999 are
//    refused.
//  - Systolic (8480-6) and diastolic (8462-4) records become one blood-pressure panel 85354-9
//    per time (equal to the millisecond), with components in the order systolic, diastolic,
//    irregular heartbeat; a `vb` irregular-heartbeat record adds that component (1 or 0, unit
//    "1") to the panel at its time. A lone systolic or diastolic makes a panel of one (or,
//    with the flag, two) components. Two values for one component at one time, or a flag
//    with no systolic or diastolic at its time, are refused with bad_payload. A panel takes
//    the position of its first member record; all other readings keep pack order.
//  - A pack that yields no reading, or more than kMaxReadings, is refused with bad_payload.
//
// Error policy: returns Result; never throws. Every failure has code invalid_argument and one
// of the reasons bad_payload (not SenML, or a value telehub cannot take; the message names the
// record and field: "senml[3].t: must be a number"; parse_json's own messages start
// "payload:"), unknown_code, bad_unit. Messages never quote names, units or values from the
// payload.
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
