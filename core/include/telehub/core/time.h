// UTC time with millisecond precision, RFC 3339 text in and out, and the injectable Clock.
//
// telehub stores and compares instants as milliseconds since the Unix epoch (UTC). Text is
// RFC 3339 (a profile of ISO 8601): parsing accepts any offset ("Z", "+01:00") and up to nine
// fraction digits (truncated to milliseconds); formatting always writes UTC with exactly three
// fraction digits and "Z", e.g. "2026-11-28T10:15:00.000Z", which is also a valid FHIR
// dateTime and instant.
//
// Thread-safety: the free functions are pure. SystemClock is safe to share.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "telehub/core/error.h"

namespace telehub::core {

using Millis = std::chrono::milliseconds;
using TimePoint = std::chrono::sys_time<Millis>;

// Milliseconds since 1970-01-01T00:00:00Z.
inline std::int64_t to_unix_millis(TimePoint t) { return t.time_since_epoch().count(); }
inline TimePoint from_unix_millis(std::int64_t ms) { return TimePoint(Millis(ms)); }

// "2026-11-28T10:15:00.000Z". Years outside 0000..9999 are clamped by the caller's data;
// plausibility checks reject them earlier.
std::string format_rfc3339(TimePoint t);

// Parses an RFC 3339 date-time (section 5.6): "YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)".
// Lower-case 't'/'z' are accepted as the RFC allows. Fails with invalid_argument/bad_time
// when the text is not a full date-time with offset or names an impossible date.
[[nodiscard]] Result<TimePoint> parse_rfc3339(std::string_view text);

// Source of "now". Inject it so tests can control time (STYLE: leveldb's Env).
class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint now() const = 0;
};

// The real wall clock, truncated to milliseconds.
class SystemClock final : public Clock {
 public:
  TimePoint now() const override;
};

// A process-wide SystemClock instance.
const Clock& system_clock();

}  // namespace telehub::core
