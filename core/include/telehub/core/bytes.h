// Byte helpers: hex and base64 (RFC 4648) text, and random bytes from the OS.
//
// Thread-safety: pure functions; random_bytes reads /dev/urandom through getrandom(2).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "telehub/core/error.h"

namespace telehub::core {

using Bytes = std::vector<std::uint8_t>;

// Lower-case hex.
std::string to_hex(std::span<const std::uint8_t> bytes);
// Accepts upper or lower case; fails with invalid_argument/bad_hex on odd length or other characters.
[[nodiscard]] Result<Bytes> from_hex(std::string_view hex);

// Standard base64 with padding (RFC 4648 section 4).
std::string to_base64(std::span<const std::uint8_t> bytes);
// Fails with invalid_argument/bad_base64 on characters outside the alphabet or bad padding.
[[nodiscard]] Result<Bytes> from_base64(std::string_view text);

// n bytes from the kernel CSPRNG. Fails with unavailable/no_entropy only if getrandom fails.
[[nodiscard]] Result<Bytes> random_bytes(std::size_t n);

inline std::span<const std::uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace telehub::core
