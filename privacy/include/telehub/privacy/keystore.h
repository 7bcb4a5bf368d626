// The key-encryption key (KEK) and key wrapping: how telehub keeps device keys and the
// pseudonymisation key encrypted at rest, never beside the data.
//
// A Kek is 32 bytes (AES-256). It comes from outside the data directory: the environment
// variable TELEHUB_KEK (64 hex characters), or a file (32 raw bytes or 64 hex characters,
// mode 0600 or stricter, not inside the data directory). `telehub` resolves it as
// --kek-file PATH, else TELEHUB_KEK, else the development default ~/.config/telehub/kek
// (created on first use); see docs/operations.md, "Keys".
//
// wrap() seals a key with AES-256-GCM (NIST SP 800-38D) under the KEK. The blob is
//   version (1 byte, 0x01) | nonce (12 random bytes) | ciphertext | tag (16 bytes)
// and is bound to associated data "telehub-key-v1|<purpose>|<id>" (key_ad()), so a blob
// moved to another device, key id or purpose does not unwrap.
//
// Error policy: Result, never throws. Stable reasons: no_kek (nothing configured),
// bad_kek (malformed, unreadable or too widely readable KEK), kek_inside_data (the KEK file
// lies in the data directory), unwrap_failed (wrong KEK, wrong associated data or damaged
// blob). Messages never contain key bytes.
// Thread-safety: a Kek is immutable after creation; wrap()/unwrap() may be called from any
// thread. Lifetime: the key bytes are wiped when the Kek is destroyed.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "telehub/core/bytes.h"
#include "telehub/core/error.h"

namespace telehub::privacy {

// "telehub-key-v1|<purpose>|<id>": the associated data a wrapped key is bound to.
std::string key_ad(std::string_view purpose, std::string_view id);
// The associated data of a device key: key_ad("device", "<device id>#<key id>").
std::string device_key_ad(std::string_view device_id, std::uint32_t key_id);

class Kek {
 public:
  static constexpr std::size_t kSize = 32;
  static constexpr std::uint8_t kBlobVersion = 0x01;
  static constexpr std::size_t kNonceSize = 12;
  static constexpr std::size_t kTagSize = 16;
  static constexpr const char* kEnvVar = "TELEHUB_KEK";

  Kek(const Kek& other) = default;
  Kek& operator=(const Kek& other) = default;
  ~Kek();

  // From 64 hex characters (either case; surrounding whitespace ignored).
  // Fails with invalid_argument/bad_kek otherwise.
  [[nodiscard]] static Result<Kek> from_hex(std::string_view hex);
  // From 32 raw bytes. Fails with invalid_argument/bad_kek otherwise.
  [[nodiscard]] static Result<Kek> from_bytes(std::span<const std::uint8_t> bytes);

  // From the environment variable TELEHUB_KEK. Fails with not_found/no_kek when it is unset or
  // empty, invalid_argument/bad_kek when it is not 64 hex characters.
  [[nodiscard]] static Result<Kek> from_env();

  // From a file holding 32 raw bytes or 64 hex characters (a trailing newline is allowed).
  // `data_dir` is the data directory the KEK protects (may be empty: no check).
  // Fails with failed_precondition/kek_inside_data when the file lies inside data_dir,
  // not_found/no_kek when it does not exist, permission_denied/bad_kek when group or others
  // have any permission on it, invalid_argument/bad_kek when its content is not a key,
  // unavailable/bad_kek when it cannot be read.
  [[nodiscard]] static Result<Kek> from_file(const std::filesystem::path& path, const std::filesystem::path& data_dir);

  // Like from_file(), but first creates the file with a fresh random key (64 hex characters,
  // mode 0600; missing parent directory created with mode 0700) when it does not exist.
  // Development default only (docs/operations.md). Extra failure: unavailable/bad_kek when
  // it cannot be created.
  [[nodiscard]] static Result<Kek> open_or_create_file(const std::filesystem::path& path,
                                                       const std::filesystem::path& data_dir);

  // $HOME/.config/telehub/kek. Fails with not_found/no_kek when HOME is unset.
  [[nodiscard]] static Result<std::filesystem::path> default_dev_path();

  // The resolution order of the telehub commands: `file` when non-empty (from_file), else
  // TELEHUB_KEK when set (from_env), else the development default (open_or_create_file at
  // default_dev_path()). `data_dir` as for from_file().
  [[nodiscard]] static Result<Kek> resolve(const std::filesystem::path& file, const std::filesystem::path& data_dir);

  // Wraps `key` under the KEK, bound to `ad`. Fails with unavailable/no_entropy when no random
  // nonce can be drawn, internal/wrap_failed if OpenSSL fails.
  [[nodiscard]] Result<core::Bytes> wrap(std::span<const std::uint8_t> key, std::string_view ad) const;
  // Unwraps a blob made by wrap() with the same KEK and `ad`. Fails with
  // data_loss/unwrap_failed when the KEK or `ad` differ or the blob is damaged or truncated.
  [[nodiscard]] Result<core::Bytes> unwrap(std::span<const std::uint8_t> blob, std::string_view ad) const;

 private:
  Kek() = default;
  std::array<std::uint8_t, kSize> key_{};
};

// A key file holding a `size`-byte secret wrapped under `kek` with associated data `ad` (the
// pseudonym key, the research key): read and unwrapped, or, when the file does not exist,
// created with fresh random bytes (mode 0600, parent directories created; O_EXCL, so two
// processes creating it at once end up with the same key). `what` names the key in messages
// ("pseudonym key"). Fails with unavailable/key_file on I/O errors, data_loss/bad_key_file when
// the file is empty or holds exactly `size` bytes (an unwrapped key, written before keys were
// wrapped), data_loss/unwrap_failed when it does not unwrap under `kek` with `ad`.
[[nodiscard]] Result<core::Bytes> open_or_create_wrapped_key(const std::filesystem::path& path, const Kek& kek,
                                                             std::string_view ad, std::size_t size, std::string_view what);

}  // namespace telehub::privacy
