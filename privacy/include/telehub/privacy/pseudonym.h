// Keyed pseudonyms and the reading type storage accepts.
//
// A subject pseudonym is HMAC-SHA-256(pseudonym key, "subject:" || subject id), written as the
// first 32 lower-case hex characters (128 bits). It is stable for a key, and cannot be turned
// back into the subject id without the key and the identity vault. The pseudonym key is 32
// random bytes, kept in a key file under the data directory (mode 0600) wrapped under the
// key-encryption key (keystore.h), so the file alone does not reveal it.
//
// PseudonymousReading is the only reading type storage takes: it can only be made through
// Pseudonymiser (or parsed back from stored text), so a reading that still carries an
// identifier cannot reach storage by accident.
//
// Error policy: Result, never throws. Thread-safety: Pseudonymiser is immutable after
// creation and safe to share between threads.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "telehub/core/bytes.h"
#include "telehub/core/error.h"
#include "telehub/core/reading.h"
#include "telehub/privacy/keystore.h"

namespace telehub::privacy {

class Pseudonymiser;

// A subject pseudonym: 32 lower-case hex characters.
class SubjectPseudonym {
 public:
  const std::string& str() const { return value_; }
  bool operator==(const SubjectPseudonym&) const = default;

  // Accepts text that is already a pseudonym (as stored, or from a FHIR Patient id).
  // Fails with invalid_argument/bad_pseudonym when it is not 32 lower-case hex characters.
  [[nodiscard]] static Result<SubjectPseudonym> parse(std::string_view text);

 private:
  explicit SubjectPseudonym(std::string v) : value_(std::move(v)) {}
  friend class Pseudonymiser;
  std::string value_;
};

// A reading whose subject is a pseudonym and which carries no other identifier.
class PseudonymousReading {
 public:
  const SubjectPseudonym& subject() const { return subject_; }
  // The reading; its `subject` field equals subject().str().
  const core::Reading& reading() const { return reading_; }

  // Wraps a reading already attributed to a pseudonym (for example one bound through a device
  // enrolled to that pseudonym): sets reading.subject to the pseudonym.
  static PseudonymousReading bind(core::Reading reading, const SubjectPseudonym& subject);

 private:
  PseudonymousReading(SubjectPseudonym s, core::Reading r) : subject_(std::move(s)), reading_(std::move(r)) {}
  SubjectPseudonym subject_;
  core::Reading reading_;
};

class Pseudonymiser {
 public:
  static constexpr std::size_t kKeySize = 32;

  // From raw key bytes. Fails with invalid_argument/bad_key unless 32 bytes.
  [[nodiscard]] static Result<std::unique_ptr<Pseudonymiser>> from_key(std::span<const std::uint8_t> key);

  // Reads a key file holding the key wrapped under `kek` (Kek::wrap, associated data
  // kPseudonymKeyAd), creating it with a fresh random key (mode 0600, parent directories
  // created) when it does not exist. Fails with unavailable/key_file on I/O errors,
  // data_loss/bad_key_file when the file holds an unwrapped 32-byte key (written before keys
  // were wrapped) or is empty, data_loss/unwrap_failed when it does not unwrap under `kek`
  // (wrong KEK or damaged file).
  [[nodiscard]] static Result<std::unique_ptr<Pseudonymiser>> open_wrapped_key_file(const std::filesystem::path& path,
                                                                                  const Kek& kek);

  // Reads an UNWRAPPED key file (32 raw bytes), creating it when it does not exist. For tests
  // and tools only: the hub keeps its key wrapped (open_wrapped_key_file). Fails with
  // unavailable/key_file on I/O errors and data_loss/bad_key_file when the file exists but is
  // not a 32-byte key.
  [[nodiscard]] static Result<std::unique_ptr<Pseudonymiser>> open_key_file(const std::filesystem::path& path);

  // The associated data the pseudonym key is wrapped with: key_ad("pseudonym", "subject").
  static std::string pseudonym_key_ad();

  // The pseudonym of an internal subject id.
  SubjectPseudonym subject(std::string_view subject_id) const;
  // The pseudonym of a device serial number reported in a payload: HMAC-SHA-256(key,
  // "serial:" || serial), the first 32 lower-case hex characters. Stored and served instead of
  // the serial (docs/payloads.md, "No identifiers stored").
  std::string device_serial(std::string_view serial) const;

 private:
  explicit Pseudonymiser(core::Bytes key) : key_(std::move(key)) {}
  core::Bytes key_;
};

}  // namespace telehub::privacy
