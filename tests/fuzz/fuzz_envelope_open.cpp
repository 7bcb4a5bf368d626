// libFuzzer harness: the input as a sealed envelope (peek + open with a fixed key) and as a
// plaintext sealed with a fixed header/key, so fuzzing reaches the code after authentication.
// Invariants: tests/fuzz/fuzz_checks.h. Build and run: tests/fuzz/run.sh (docs/fuzzing.md).
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "fuzz_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string why = telehub::fuzz::check_envelope({data, size});
  if (!why.empty()) {
    std::fprintf(stderr, "fuzz_envelope_open: invariant violated: %s\n", why.c_str());
    std::abort();
  }
  return 0;
}
