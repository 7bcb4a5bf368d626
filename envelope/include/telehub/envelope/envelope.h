// Sealed envelope v1: how a gateway seals readings for the hub, and how the hub opens them.
// The normative byte layout, nonce and associated-data rules, and test vectors are in
// docs/protocol.md; this header is the C++ contract for it, shared by the hub and the gateway.
//
// Summary: AES-256-GCM under a per-device 256-bit key. The 12-byte nonce is key_id (4 bytes,
// big-endian) || sequence (8 bytes, big-endian), so it never repeats under one key as long as
// the gateway never reuses a sequence number for a key id. The whole cleartext header (magic,
// version, device id, key id, sequence) is the GCM associated data.
//
// Error policy: functions return Result; they never throw. Reasons (stable tokens):
//   not_envelope         too short or wrong magic bytes
//   unsupported_version  version byte is not 1
//   bad_header           device id empty/too long/bad characters, sequence 0
//   bad_seal             authentication failed (wrong key, tampered bytes)
//   bad_key              key is not 32 bytes (seal/open)
//   crypto               OpenSSL itself failed (out of memory)
// Codes: bad_seal is unauthenticated, crypto is internal, all others invalid_argument.
// Messages never contain key, identifier or payload bytes. The checks run in the order listed
// in docs/protocol.md ("Opening"), so every implementation reports the same reason.
//
// Thread-safety: stateless functions; safe from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "telehub/core/bytes.h"
#include "telehub/core/error.h"

namespace telehub::envelope {

inline constexpr std::uint8_t kVersion = 1;
inline constexpr std::size_t kKeySize = 32;
inline constexpr std::size_t kNonceSize = 12;
inline constexpr std::size_t kTagSize = 16;
inline constexpr std::size_t kMaxDeviceIdLength = 64;

// The cleartext header of an envelope.
struct Header {
  std::uint8_t version = kVersion;
  std::string device_id;      // 1..64 chars of [A-Za-z0-9.-]
  std::uint32_t key_id = 0;   // which of the device's keys sealed it
  std::uint64_t sequence = 0; // >= 1, strictly increasing per device

  bool operator==(const Header&) const = default;
};

// True when `id` is a valid device id (1..64 chars of [A-Za-z0-9.-]): the character set of a
// FHIR id (http://hl7.org/fhir/R4/datatypes.html#id), so a device id is also its Device id.
bool valid_device_id(std::string_view id);

// Seals `plaintext` under `key` (32 bytes): returns header || ciphertext || tag. Fails with
// bad_key, unsupported_version (header.version is not 1) or bad_header. The caller owns the
// sequence rules: a (key_id, sequence) pair must never be sealed twice under one key.
[[nodiscard]] Result<core::Bytes> seal(const Header& header, std::span<const std::uint8_t> key,
                                       std::span<const std::uint8_t> plaintext);

// Parses the cleartext header without a key (to find which device key to use).
// Fails with not_envelope, unsupported_version or bad_header. Does not authenticate anything.
[[nodiscard]] Result<Header> peek(std::span<const std::uint8_t> sealed);

// Authenticates and decrypts. On success returns the plaintext; the header it was sealed with
// is what peek() returns. Fails with bad_key (checked first), as peek() does, or with bad_seal;
// no decrypted byte is returned unless the tag verifies.
[[nodiscard]] Result<core::Bytes> open(std::span<const std::uint8_t> sealed, std::span<const std::uint8_t> key);

// The 12-byte nonce for (key_id, sequence), as docs/protocol.md defines it.
std::array<std::uint8_t, kNonceSize> nonce_for(std::uint32_t key_id, std::uint64_t sequence);

}  // namespace telehub::envelope
