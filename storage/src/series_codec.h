// Internal to telehub_storage: the byte formats of the measurement store (docs/storage.md).
//
// - A log entry holds every reading of one message as appended (exact doubles, any order).
// - A chunk holds points of one series (subject, code) of one shape (unit, value or not,
//   component codes and units), sorted by (time, id), compressed: per point the
//   delta-of-delta of its time, the difference of its id to the previous id plus one, and per
//   value slot the difference of the value scaled to an integer by 10^scale (one scale per
//   chunk; "raw" chunks keep 8-byte doubles instead). Regular minute series of whole or
//   one-decimal values cost about 3 bytes a point. The header carries the encoder's state at
//   the end of the chunk, so appending needs no decoding.
//
// Decoders check every length and return false on a corrupt blob; they never read out of
// bounds. Thread-safety: plain values and functions.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "telehub/core/bytes.h"
#include "telehub/core/reading.h"

namespace telehub::storage::codec {

// Everything of a reading but its time, id and numbers.
struct Shape {
  std::string unit;
  bool has_value = false;
  std::vector<std::pair<std::string, std::string>> components;  // (code, unit), payload order

  std::size_t slots() const { return (has_value ? 1 : 0) + components.size(); }
  bool operator==(const Shape&) const = default;
};

Shape shape_of(const core::Reading& r);
// The reading's numbers in slot order (value first when it has one, then components).
void append_values(const core::Reading& r, std::vector<double>& out);
// Fills r's unit, value and components from a shape and its slot values.
void fill_reading(const Shape& shape, const double* values, core::Reading& r);

// ---------------------------------------------------------------- log entries

struct LogReading {
  std::string code;
  Shape shape;
  std::int64_t time_ms = 0;
  std::vector<double> values;  // shape.slots() numbers
};

core::Bytes encode_log(const std::vector<const core::Reading*>& readings);
[[nodiscard]] bool decode_log(std::span<const std::uint8_t> blob, std::vector<LogReading>& out);

// ---------------------------------------------------------------- chunks

inline constexpr std::uint8_t kMaxScale = 6;      // decimal digits kept exactly
inline constexpr std::uint8_t kRawScale = 0xFF;  // 8-byte doubles

// The smallest scale at which value is exact, or kRawScale.
std::uint8_t scale_for(double value);
// max(a, b) with kRawScale above every decimal scale.
inline std::uint8_t wider_scale(std::uint8_t a, std::uint8_t b) { return a > b ? a : b; }

class ChunkBuilder {
 public:
  ChunkBuilder(Shape shape, std::uint8_t scale);
  // Continues a stored chunk; std::nullopt when the blob is corrupt.
  static std::optional<ChunkBuilder> resume(std::span<const std::uint8_t> blob);

  const Shape& shape() const { return shape_; }
  std::uint8_t scale() const { return scale_; }
  std::uint32_t size() const { return n_; }
  std::int64_t first_time() const { return base_time_; }
  std::int64_t last_time() const { return last_time_; }
  // Bytes finish() would return now (upper bound of the header by a few bytes).
  std::size_t encoded_size() const { return body_.size() + 64 + shape_bytes_; }

  // Appends a point. REQUIRES: values.size() == shape().slots(), time >= last_time() when
  // size() > 0. Returns false (and appends nothing) when a value is not exact at scale().
  bool append(std::int64_t time_ms, std::int64_t id, std::span<const double> values);
  core::Bytes finish() const;

 private:
  ChunkBuilder() = default;
  Shape shape_;
  std::uint8_t scale_ = 0;
  std::size_t shape_bytes_ = 0;
  std::uint32_t n_ = 0;
  std::int64_t base_time_ = 0;
  std::int64_t base_id_ = 0;
  std::int64_t last_time_ = 0;
  std::int64_t last_delta_ = 0;
  std::int64_t last_id_ = 0;
  std::vector<std::int64_t> last_scaled_;
  std::vector<std::int64_t> scratch_;  // append()'s scaled values, reused
  core::Bytes body_;
};

struct DecodedChunk {
  Shape shape;
  std::vector<std::int64_t> times;
  std::vector<std::int64_t> ids;
  std::vector<double> values;  // times.size() x shape.slots(), point after point
};
[[nodiscard]] bool decode_chunk(std::span<const std::uint8_t> blob, DecodedChunk& out);

}  // namespace telehub::storage::codec
