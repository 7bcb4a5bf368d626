// Plaintext payload v1 (the JSON document inside a sealed envelope), shared by the hub and
// the gateway. Normative definition in docs/protocol.md, "Payload v1".
//
//   {"v":1,"readings":[
//     {"code":"8867-4","value":72,"unit":"/min","time":"2026-11-28T10:15:00.000Z"},
//     {"code":"85354-9","time":"2026-11-28T10:15:00.000Z","components":[
//        {"code":"8480-6","value":128,"unit":"mm[Hg]"},{"code":"8462-4","value":82,"unit":"mm[Hg]"}]}]}
//
// decode() checks structure only (types, required members, RFC 3339 time, finite numbers,
// 1..1000 readings); whether a code/unit is known is the hub's validation, not the codec's.
//
// Error policy: returns Result; never throws. Reasons: bad_payload (not JSON / wrong shape),
// with a message naming the JSON path (e.g. "readings[2].time"), never the values.
//
// Thread-safety: stateless functions.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "telehub/core/error.h"
#include "telehub/core/reading.h"

namespace telehub::envelope {

inline constexpr std::size_t kMaxReadingsPerPayload = 1000;

// Encodes readings (code, value, unit, time, components; subject/device/sequence are not part
// of the payload) as compact payload v1 JSON. Fails with invalid_argument/bad_payload if there
// are no or more than 1000 readings, or a reading decode_payload() would refuse (empty code or
// unit, non-finite value, value and components together, neither, invalid UTF-8, a time
// outside the years 0000..9999); the message names the path, e.g. "readings[3].value".
[[nodiscard]] Result<std::string> encode_payload(std::span<const core::Reading> readings);

// Decodes payload v1 JSON into readings with subject, device and sequence left empty.
// decode_payload(*encode_payload(x)) == x. Unknown members are ignored; JSON nested deeper than
// 16 arrays/objects is refused before it is parsed. Numbers are correctly rounded to double;
// a number longer than 1100 characters, beyond the double range, or non-zero but rounding to
// zero is refused, as is a string or member name that is not valid UTF-8 once its escapes are
// decoded (an unpaired surrogate escape such as "\udc00"); these use the path "payload".
[[nodiscard]] Result<std::vector<core::Reading>> decode_payload(std::span<const std::uint8_t> json);

}  // namespace telehub::envelope
