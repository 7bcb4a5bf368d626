// libFuzzer harness: the input as payload v1 JSON (decode_payload, then the encode/decode
// round trip). Invariants: tests/fuzz/fuzz_checks.h. Build and run: tests/fuzz/run.sh
// (docs/fuzzing.md).
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "fuzz_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string why = telehub::fuzz::check_payload({data, size});
  if (!why.empty()) {
    std::fprintf(stderr, "fuzz_payload_decode: invariant violated: %s\n", why.c_str());
    std::abort();
  }
  return 0;
}
