// research::ResearchKey: the key behind per-study pseudonyms and date shifts
// (docs/research.md, "What was done to protect the participants").
//
// 32 random bytes in <data>/keys/research.key, wrapped under the KEK (privacy::Kek::wrap with
// associated data key_ad("research", "study")), apart from the hub's pseudonym key, so a
// study pseudonym cannot be computed from the hub's pseudonyms without it.
//   study pseudonym = first 32 lower-case hex of HMAC-SHA-256(key, "study|<study id>|<subject pseudonym>")
//   date shift      = from HMAC-SHA-256(key, "shift|<study id>|<subject pseudonym>"): the first
//                     8 bytes (big-endian) v give 1 + v mod 182 days, byte 8's low bit the sign
//                     (1: earlier), so a shift is a whole number of days in -182..-1, 1..182.
// Both are stable for a study and the key, and unrelated between two studies (HMAC outputs
// for different messages).
//
// Error policy: Result, never throws; messages never contain key bytes.
// Thread-safety: immutable after creation; safe to share. Lifetime: the key bytes are wiped
// when the object is destroyed.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "telehub/core/bytes.h"
#include "telehub/core/error.h"
#include "telehub/privacy/keystore.h"

namespace telehub::research {

class ResearchKey {
 public:
  static constexpr std::size_t kKeySize = 32;
  static constexpr int kMaxShiftDays = 182;

  ResearchKey(const ResearchKey&) = default;
  ResearchKey& operator=(const ResearchKey&) = default;
  ~ResearchKey();

  // From 32 raw bytes. Fails with invalid_argument/bad_key otherwise.
  [[nodiscard]] static Result<ResearchKey> from_key(std::span<const std::uint8_t> key);
  // Reads the wrapped key file, creating it (mode 0600, O_EXCL, parent directories created)
  // with a fresh random key when it does not exist. Fails with unavailable/key_file on I/O
  // errors, data_loss/bad_key_file when it is empty, data_loss/unwrap_failed when it does not
  // unwrap under `kek`.
  [[nodiscard]] static Result<ResearchKey> open_wrapped_key_file(const std::filesystem::path& path,
                                                                 const privacy::Kek& kek);
  // key_ad("research", "study").
  static std::string key_ad();

  // The subject's pseudonym in the study (32 lower-case hex).
  std::string study_pseudonym(std::string_view study_id, std::string_view subject_pseudonym) const;
  // The subject's date shift in the study, in days: -182..-1 or 1..182.
  int shift_days(std::string_view study_id, std::string_view subject_pseudonym) const;

 private:
  ResearchKey() = default;
  core::Bytes key_;
};

}  // namespace telehub::research
