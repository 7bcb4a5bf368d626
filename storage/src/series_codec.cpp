// Byte formats of the measurement store; see series_codec.h and docs/storage.md.
#include "series_codec.h"

#include <bit>
#include <cmath>
#include <cstring>

namespace telehub::storage::codec {
namespace {

constexpr std::uint8_t kLogVersion = 1;
constexpr std::uint8_t kChunkVersion = 1;
constexpr double kPow10[kMaxScale + 1] = {1, 10, 100, 1000, 10000, 100000, 1000000};
constexpr double kMaxExact = 9007199254740992.0;  // 2^53

// ---------------------------------------------------------------- primitive writers

void put_varint(core::Bytes& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<std::uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<std::uint8_t>(v));
}
std::uint64_t zigzag(std::int64_t v) {
  return (static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63);
}
std::int64_t unzigzag(std::uint64_t v) { return static_cast<std::int64_t>((v >> 1) ^ (~(v & 1) + 1)); }
void put_signed(core::Bytes& out, std::int64_t v) { put_varint(out, zigzag(v)); }
void put_string(core::Bytes& out, const std::string& s) {
  put_varint(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}
void put_double(core::Bytes& out, double d) {
  const auto bits = std::bit_cast<std::uint64_t>(d);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(bits >> (8 * i)));
}
// Wrapping arithmetic: corrupt or extreme input must not be undefined behaviour.
std::int64_t wsub(std::int64_t a, std::int64_t b) {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) - static_cast<std::uint64_t>(b));
}
std::int64_t wadd(std::int64_t a, std::int64_t b) {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) + static_cast<std::uint64_t>(b));
}

// ---------------------------------------------------------------- bounds-checked reader

class Reader {
 public:
  explicit Reader(std::span<const std::uint8_t> in) : in_(in) {}
  bool ok() const { return ok_; }
  bool done() const { return pos_ == in_.size(); }
  std::size_t pos() const { return pos_; }

  std::uint8_t byte() {
    if (pos_ >= in_.size()) return fail();
    return in_[pos_++];
  }
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= in_.size()) return fail();
      const std::uint8_t b = in_[pos_++];
      v |= static_cast<std::uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return v;
    }
    return fail();
  }
  std::int64_t signed_varint() { return unzigzag(varint()); }
  std::string string() {
    const auto n = varint();
    if (!ok_ || n > in_.size() - pos_) return fail(), std::string();
    std::string s(reinterpret_cast<const char*>(in_.data() + pos_), static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return s;
  }
  double float64() {
    if (in_.size() - pos_ < 8) return static_cast<double>(fail());
    std::uint64_t bits = 0;
    for (int i = 0; i < 8; ++i) bits |= static_cast<std::uint64_t>(in_[pos_ + static_cast<std::size_t>(i)]) << (8 * i);
    pos_ += 8;
    return std::bit_cast<double>(bits);
  }
  // A count that cannot exceed what is left (each item takes at least min_bytes).
  std::size_t count(std::size_t min_bytes) {
    const auto n = varint();
    if (!ok_ || n > (in_.size() - pos_) / min_bytes) return fail();
    return static_cast<std::size_t>(n);
  }

 private:
  std::uint8_t fail() {
    ok_ = false;
    pos_ = in_.size();
    return 0;
  }
  std::span<const std::uint8_t> in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

void put_shape(core::Bytes& out, const Shape& s) {
  put_string(out, s.unit);
  out.push_back(s.has_value ? 1 : 0);
  put_varint(out, s.components.size());
  for (const auto& [code, unit] : s.components) {
    put_string(out, code);
    put_string(out, unit);
  }
}
bool read_shape(Reader& in, Shape& s) {
  s.unit = in.string();
  const auto flag = in.byte();
  if (flag > 1) return false;
  s.has_value = flag == 1;
  const auto n = in.count(2);
  s.components.clear();
  for (std::size_t i = 0; i < n && in.ok(); ++i) {
    auto code = in.string();
    auto unit = in.string();
    s.components.emplace_back(std::move(code), std::move(unit));
  }
  return in.ok();
}

std::size_t shape_size(const Shape& s) {
  core::Bytes b;
  put_shape(b, s);
  return b.size();
}

// value * 10^scale as an exact integer, or std::nullopt.
std::optional<std::int64_t> scaled(double value, std::uint8_t scale) {
  const double x = value * kPow10[scale];
  if (!(std::fabs(x) < kMaxExact)) return std::nullopt;  // also NaN
  const double r = std::nearbyint(x);
  if (r / kPow10[scale] != value) return std::nullopt;
  return static_cast<std::int64_t>(r);
}

}  // namespace

// ---------------------------------------------------------------- shapes

Shape shape_of(const core::Reading& r) {
  Shape s;
  s.unit = r.unit;
  s.has_value = r.value.has_value();
  s.components.reserve(r.components.size());
  for (const auto& c : r.components) s.components.emplace_back(c.code, c.unit);
  return s;
}

void append_values(const core::Reading& r, std::vector<double>& out) {
  if (r.value) out.push_back(*r.value);
  for (const auto& c : r.components) out.push_back(c.value);
}

void fill_reading(const Shape& shape, const double* values, core::Reading& r) {
  r.unit = shape.unit;
  std::size_t i = 0;
  if (shape.has_value) r.value = values[i++];
  else r.value.reset();
  r.components.clear();
  r.components.reserve(shape.components.size());
  for (const auto& [code, unit] : shape.components) r.components.push_back({code, values[i++], unit});
}

// ---------------------------------------------------------------- log entries

core::Bytes encode_log(const std::vector<const core::Reading*>& readings) {
  core::Bytes out;
  out.reserve(8 + readings.size() * 40);
  out.push_back(kLogVersion);
  put_varint(out, readings.size());
  for (const auto* r : readings) {
    put_string(out, r->code);
    put_shape(out, shape_of(*r));
    put_signed(out, core::to_unix_millis(r->time));
    if (r->value) put_double(out, *r->value);
    for (const auto& c : r->components) put_double(out, c.value);
  }
  return out;
}

bool decode_log(std::span<const std::uint8_t> blob, std::vector<LogReading>& out) {
  out.clear();
  Reader in(blob);
  if (in.byte() != kLogVersion) return false;
  const auto n = in.count(4);
  out.resize(n);
  for (auto& r : out) {
    r.code = in.string();
    if (!read_shape(in, r.shape)) return false;
    r.time_ms = in.signed_varint();
    r.values.resize(r.shape.slots());
    for (auto& v : r.values) v = in.float64();
    if (!in.ok()) return false;
  }
  return in.ok() && in.done();
}

// ---------------------------------------------------------------- chunks

std::uint8_t scale_for(double value) {
  for (std::uint8_t s = 0; s <= kMaxScale; ++s)
    if (scaled(value, s)) return s;
  return kRawScale;
}

ChunkBuilder::ChunkBuilder(Shape shape, std::uint8_t scale) : shape_(std::move(shape)), scale_(scale) {
  shape_bytes_ = shape_size(shape_);
  last_scaled_.assign(shape_.slots(), 0);
}

bool ChunkBuilder::append(std::int64_t time_ms, std::int64_t id, std::span<const double> values) {
  // Scale every value first: a value that is not exact at this scale leaves the chunk as it was.
  if (scale_ != kRawScale) {
    scratch_.resize(values.size());
    for (std::size_t i = 0; i < values.size(); ++i) {
      auto s = scaled(values[i], scale_);
      if (!s) return false;
      scratch_[i] = *s;
    }
  }
  if (n_ == 0) {
    base_time_ = last_time_ = time_ms;
    last_delta_ = 0;
    base_id_ = last_id_ = wsub(id, 1);
  }
  const std::int64_t delta = wsub(time_ms, last_time_);
  put_signed(body_, wsub(delta, last_delta_));
  put_signed(body_, wsub(wsub(id, last_id_), 1));
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (scale_ == kRawScale) {
      put_double(body_, values[i]);
    } else {
      put_signed(body_, wsub(scratch_[i], last_scaled_[i]));
      last_scaled_[i] = scratch_[i];
    }
  }
  last_time_ = time_ms;
  last_delta_ = delta;
  last_id_ = id;
  ++n_;
  return true;
}

core::Bytes ChunkBuilder::finish() const {
  core::Bytes out;
  out.reserve(encoded_size());
  out.push_back(kChunkVersion);
  out.push_back(scale_);
  put_shape(out, shape_);
  put_varint(out, n_);
  put_signed(out, base_time_);
  put_signed(out, base_id_);
  put_signed(out, last_time_);
  put_signed(out, last_delta_);
  put_signed(out, last_id_);
  if (scale_ != kRawScale)
    for (auto v : last_scaled_) put_signed(out, v);
  out.insert(out.end(), body_.begin(), body_.end());
  return out;
}

namespace {

struct Header {
  std::uint8_t scale = 0;
  Shape shape;
  std::uint32_t n = 0;
  std::int64_t base_time = 0, base_id = 0, last_time = 0, last_delta = 0, last_id = 0;
  std::vector<std::int64_t> last_scaled;
  std::size_t body_offset = 0;
};

bool read_header(std::span<const std::uint8_t> blob, Header& h) {
  Reader in(blob);
  if (in.byte() != kChunkVersion) return false;
  h.scale = in.byte();
  if (h.scale > kMaxScale && h.scale != kRawScale) return false;
  if (!read_shape(in, h.shape)) return false;
  const auto n = in.varint();
  if (n > 0xFFFFFFFFu) return false;
  h.n = static_cast<std::uint32_t>(n);
  h.base_time = in.signed_varint();
  h.base_id = in.signed_varint();
  h.last_time = in.signed_varint();
  h.last_delta = in.signed_varint();
  h.last_id = in.signed_varint();
  h.last_scaled.assign(h.shape.slots(), 0);
  if (h.scale != kRawScale)
    for (auto& v : h.last_scaled) v = in.signed_varint();
  h.body_offset = in.pos();
  return in.ok();
}

}  // namespace

std::optional<ChunkBuilder> ChunkBuilder::resume(std::span<const std::uint8_t> blob) {
  Header h;
  if (!read_header(blob, h)) return std::nullopt;
  ChunkBuilder b;
  b.scale_ = h.scale;
  b.shape_ = std::move(h.shape);
  b.shape_bytes_ = shape_size(b.shape_);
  b.n_ = h.n;
  b.base_time_ = h.base_time;
  b.base_id_ = h.base_id;
  b.last_time_ = h.last_time;
  b.last_delta_ = h.last_delta;
  b.last_id_ = h.last_id;
  b.last_scaled_ = std::move(h.last_scaled);
  b.body_.assign(blob.begin() + static_cast<std::ptrdiff_t>(h.body_offset), blob.end());
  return b;
}

bool decode_chunk(std::span<const std::uint8_t> blob, DecodedChunk& out) {
  Header h;
  if (!read_header(blob, h)) return false;
  Reader in(blob.subspan(h.body_offset));
  const std::size_t slots = h.shape.slots();
  // Every point takes at least two bytes: refuse counts the body cannot hold.
  if (h.n > (blob.size() - h.body_offset) / 2) return false;
  out.times.resize(h.n);
  out.ids.resize(h.n);
  out.values.resize(static_cast<std::size_t>(h.n) * slots);
  // The state a chunk starts from (ChunkBuilder::append with n_ == 0).
  std::int64_t time = h.base_time, delta = 0, id = h.base_id;
  std::int64_t last[16] = {};
  std::vector<std::int64_t> last_heap;
  std::int64_t* lastp = last;
  if (slots > 16) {
    last_heap.assign(slots, 0);
    lastp = last_heap.data();
  }
  const bool raw = h.scale == kRawScale;
  const double divisor = raw ? 1 : kPow10[h.scale];
  for (std::uint32_t p = 0; p < h.n; ++p) {
    delta = wadd(delta, in.signed_varint());
    time = wadd(time, delta);
    id = wadd(wadd(id, in.signed_varint()), 1);
    out.times[p] = time;
    out.ids[p] = id;
    double* v = out.values.data() + static_cast<std::size_t>(p) * slots;
    for (std::size_t i = 0; i < slots; ++i) {
      if (raw) {
        v[i] = in.float64();
      } else {
        lastp[i] = wadd(lastp[i], in.signed_varint());
        v[i] = static_cast<double>(lastp[i]) / divisor;
      }
    }
    if (!in.ok()) return false;
  }
  if (!in.ok() || !in.done() || time != h.last_time || id != h.last_id) return false;
  out.shape = std::move(h.shape);
  return true;
}

}  // namespace telehub::storage::codec
