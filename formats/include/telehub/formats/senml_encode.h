// SenML (RFC 8428) JSON encoding of readings, for gateways (and `telehub simulate`) whose
// devices speak SenML. The output is what decode_senml() reads back to the same readings
// (docs/payloads.md, "SenML"):
//
//   [{"bn":"urn:dev:telehub:dev-1a2b:","bt":1764320100,"n":"8867-4","u":"beat/min","v":72},
//    {"n":"8480-6","u":"mmHg","v":128},{"n":"8462-4","u":"mmHg","v":82},...]
//
// Each record is named by its code (the decoder accepts codes of the code table as names); the
// base time is the first reading's time in whole seconds and every other record carries its
// offset `t` (so milliseconds are lost: SenML times here are whole seconds); a panel becomes one
// record per component at the panel's time. Units are written as SenML units where the registry
// has one ("%", "Cel", "kg", "beat/min") and as documented aliases otherwise ("mmHg", "mmol/l",
// "mg/dl", "count" for steps per day).
//
// Error policy: Result; fails with invalid_argument/bad_payload for an empty list, more than
// kMaxReadings records, a non-finite value, or a unit with no SenML spelling.
// Thread-safety: stateless.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "telehub/core/error.h"
#include "telehub/core/reading.h"

namespace telehub::formats {

[[nodiscard]] Result<std::string> encode_senml(std::span<const core::Reading> readings, std::string_view base_name);

}  // namespace telehub::formats
