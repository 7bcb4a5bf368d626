// libFuzzer harness: the input as a SenML pack (formats::resolve_senml and decode_senml,
// RFC 8428). Build and run: FUZZ_TARGETS=senml_decode tests/fuzz/run.sh (docs/fuzzing.md);
// seeds: tests/fuzz/corpus/senml/.
//
// check_senml() holds the invariants; tests/formats/senml_test.cpp includes this file with
// TELEHUB_FUZZ_NO_ENTRY defined and replays the seeds and saved inputs through the same check
// in the normal build. Invariants (formats/include/telehub/formats/senml.h):
//   - neither function crashes; on failure the code is invalid_argument, the reason is
//     bad_payload, unknown_code or bad_unit, and the message starts with "senml" (or
//     "payload:" for the JSON parser's refusals);
//   - decode_senml() succeeds only if resolve_senml() does; every resolved record has a name
//     valid under RFC 8428 section 4.5.1, finite times and values;
//   - on success there are 1..kMaxReadings readings, each with a code of the code table, a
//     time within the years 0000..9999 and no subject/device/sequence; a single-value reading
//     has a finite value and a unit unless its code's unit is "1"; a panel is 85354-9 with 1..3
//     components (systolic, diastolic, irregular heartbeat in that order) with finite values;
//   - decoding is deterministic (a second decode gives the same result).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>

#include "telehub/core/codes.h"
#include "telehub/formats/senml.h"

namespace telehub::fuzz {

// The receive time the harness passes as `now` (2023-11-14T22:13:20Z).
inline const core::TimePoint kSenmlFuzzNow = core::from_unix_millis(1'700'000'000'000);

inline std::string check_senml(std::span<const std::uint8_t> data) {
  const auto error_ok = [](const core::Error& e) {
    if (e.code != core::Code::kInvalidArgument) return false;
    if (e.reason != "bad_payload" && e.reason != "unknown_code" && e.reason != "bad_unit") return false;
    return e.message.rfind("senml", 0) == 0 || e.message.rfind("payload:", 0) == 0;
  };
  const auto resolved = formats::resolve_senml(data, kSenmlFuzzNow);
  if (!resolved && !error_ok(resolved.error())) return "resolve_senml: unexpected error: " + resolved.error().to_string();
  if (resolved) {
    if (resolved->size() > formats::kMaxSenmlRecords) return "resolve_senml: too many records";
    for (const auto& r : *resolved) {
      if (r.name.empty() || !std::isfinite(r.time)) return "resolve_senml: empty name or non-finite time";
      const char c = r.name.front();
      if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return "resolve_senml: bad name";
      if ((r.value && !std::isfinite(*r.value)) || (r.sum && !std::isfinite(*r.sum))) return "resolve_senml: non-finite value";
      const int values = int(r.value.has_value()) + int(r.string_value.has_value()) + int(r.bool_value.has_value()) +
                         int(r.data_value.has_value());
      if (values > 1 || (values == 0 && !r.sum)) return "resolve_senml: record without exactly one value or a sum";
    }
  }

  const auto decoded = formats::decode_senml(data, kSenmlFuzzNow);
  if (!decoded) {
    if (!error_ok(decoded.error())) return "decode_senml: unexpected error: " + decoded.error().to_string();
    return {};
  }
  if (!resolved) return "decode_senml succeeded where resolve_senml failed";
  const auto& readings = decoded->readings;
  if (readings.empty() || readings.size() > formats::kMaxReadings) return "decode_senml: reading count out of range";
  const std::int64_t min_ms = -62167219200000, max_ms = 253402300799999;
  for (const auto& r : readings) {
    if (!r.subject.empty() || !r.device.empty() || r.sequence != 0) return "reading has subject/device/sequence";
    const core::CodeInfo* info = core::find_code(r.code);
    if (info == nullptr) return "reading has an unknown code";
    const std::int64_t ms = core::to_unix_millis(r.time);
    if (ms < min_ms || ms > max_ms) return "reading time outside the years 0000..9999";
    if (info->panel) {
      if (r.code != core::loinc::kBloodPressurePanel || r.value || !r.unit.empty()) return "malformed panel";
      if (r.components.empty() || r.components.size() > 3) return "panel with 0 or more than 3 components";
      for (const auto& c : r.components) {
        const core::CodeInfo* ci = core::find_code(c.code);
        if (ci == nullptr || !std::isfinite(c.value)) return "panel component with unknown code or non-finite value";
        if (c.unit.empty()) return "panel component without a unit";
      }
      continue;
    }
    if (!r.components.empty() || !r.value || !std::isfinite(*r.value)) return "single reading without a finite value";
    if (r.unit.empty() && info->ucum != "1") return "single reading without a unit";
  }
  const auto again = formats::decode_senml(data, kSenmlFuzzNow);
  if (!again || again->readings != readings || !(again->device == decoded->device)) return "decode_senml is not deterministic";
  return {};
}

}  // namespace telehub::fuzz

#ifndef TELEHUB_FUZZ_NO_ENTRY
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string why = telehub::fuzz::check_senml({data, size});
  if (!why.empty()) {
    std::fprintf(stderr, "fuzz_senml_decode: invariant violated: %s\n", why.c_str());
    std::abort();
  }
  return 0;
}
#endif
