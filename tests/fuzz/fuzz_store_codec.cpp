// libFuzzer harness: the input as a stored chunk and as a log entry of the measurement store
// (storage/src/series_codec.h). A corrupt database must give an error, never a read past a
// buffer. Invariants: a chunk that decodes resumes too, with the same points, and encoding its
// points again (when they are in order and exact at its scale) decodes to the same points, bit
// for bit; a log entry that decodes, re-encoded, decodes to the same readings. Build and run:
// FUZZ_TARGETS=store_codec tests/fuzz/run.sh (docs/fuzzing.md).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "series_codec.h"

using namespace telehub::storage::codec;

namespace {

[[noreturn]] void violated(const std::string& why) {
  std::fprintf(stderr, "fuzz_store_codec: invariant violated: %s\n", why.c_str());
  std::abort();
}

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::bit_cast<std::uint64_t>(a[i]) != std::bit_cast<std::uint64_t>(b[i])) return false;
  return true;
}

void check_chunk(std::span<const std::uint8_t> in) {
  DecodedChunk c;
  if (!decode_chunk(in, c)) return;
  auto b = ChunkBuilder::resume(in);
  if (!b) violated("a chunk decodes but does not resume");
  if (b->size() != c.times.size() || (!c.times.empty() && b->last_time() != c.times.back()))
    violated("resume disagrees with decode");
  const std::size_t slots = c.shape.slots();
  ChunkBuilder again(c.shape, b->scale());
  for (std::size_t i = 0; i < c.times.size(); ++i) {
    if (i > 0 && c.times[i] < c.times[i - 1]) return;  // not something the encoder writes
    if (!again.append(c.times[i], c.ids[i], {c.values.data() + i * slots, slots})) return;
  }
  if (c.times.empty()) return;
  DecodedChunk d;
  const auto bytes = again.finish();
  if (!decode_chunk(bytes, d)) violated("a re-encoded chunk does not decode");
  if (d.times != c.times || d.ids != c.ids || !(d.shape == c.shape)) violated("times, ids or shape changed");
  // Values: the scaled form keeps decimals exact; -0.0 may come back as 0.
  for (std::size_t i = 0; i < c.values.size(); ++i)
    if (!(d.values[i] == c.values[i]) && !(std::isnan(d.values[i]) && std::isnan(c.values[i])))
      violated("a value changed");
  if (b->scale() == kRawScale && !same_bits(d.values, c.values)) violated("a raw value changed bits");
}

void check_log(std::span<const std::uint8_t> in) {
  std::vector<LogReading> readings;
  if (!decode_log(in, readings)) return;
  std::vector<telehub::core::Reading> rs(readings.size());
  std::vector<const telehub::core::Reading*> ptrs;
  for (std::size_t i = 0; i < readings.size(); ++i) {
    rs[i].code = readings[i].code;
    rs[i].time = telehub::core::from_unix_millis(readings[i].time_ms);
    fill_reading(readings[i].shape, readings[i].values.data(), rs[i]);
    ptrs.push_back(&rs[i]);
  }
  // Re-encoded (canonically), it decodes to the same readings, values bit for bit.
  std::vector<LogReading> again;
  if (!decode_log(encode_log(ptrs), again) || again.size() != readings.size()) violated("a re-encoded log entry does not decode");
  for (std::size_t i = 0; i < again.size(); ++i)
    if (again[i].code != readings[i].code || !(again[i].shape == readings[i].shape) ||
        again[i].time_ms != readings[i].time_ms || !same_bits(again[i].values, readings[i].values))
      violated("a log entry changed on re-encoding");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  check_chunk({data, size});
  check_log({data, size});
  return 0;
}
