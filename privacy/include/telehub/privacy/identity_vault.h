// The identity vault: who a subject is, kept apart from everything about their health
// (docs/privacy.md). A separate SQLite file (<data>/identity.db), never the measurement store.
//
// Every identifying field is encrypted on its own with AES-256-GCM under the vault's data key
// (associated data: subject id and field name, so a ciphertext cannot be moved to another row or
// field). The data key and the blind-index key are 32 random bytes each, kept in
// <data>/keys/vault.key wrapped under the KEK (keystore.h), which is not stored beside the data.
// Look-up by BSN or by a hospital record number goes through a blind index: HMAC-SHA-256 under
// the blind-index key of the normalised identifier ("bsn|123456782", "<system>|<value>"), so
// the file holds no identifier in clear. Normalisation: the BSN as given (digits only, nothing
// stripped); record-number system and value trimmed of surrounding spaces, otherwise as given
// (case-sensitive). The file layout is described at the top of src/identity_vault.cpp.
//
// The internal subject id is created here ("s-" + 32 random hex); the subject's pseudonym is
// Pseudonymiser::subject(subject id), computed outside the vault.
//
// BSN: exactly 9 digits passing the 11-test (9*d1 + 8*d2 + ... + 2*d8 - 1*d9, divisible by 11,
// not all zeros); anything else is refused with invalid_argument/bad_bsn and a message saying
// which rule failed, without echoing the number.
//
// Error policy: Result, never throws. Storage errors: unavailable/vault_io; a field that does
// not decrypt: data_loss/vault_corrupt. Thread-safety: one IdentityVault per process; its
// methods are serialised internally (safe from several threads).
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "telehub/core/error.h"
#include "telehub/core/time.h"
#include "telehub/privacy/keystore.h"

namespace telehub::privacy {

// A hospital (or other) record number: FHIR Identifier.system + value. REQUIRES: both non-empty
// after trimming surrounding spaces, at most 256 bytes each, and no '|' in the system (FHIR
// token syntax "system|value"; a URI cannot hold it unescaped).
struct RecordNumber {
  std::string system;
  std::string value;
  bool operator==(const RecordNumber&) const = default;
};

// What the vault holds about a person. Every field but subject_id is optional (empty = unknown);
// each field, and each record-number system and value, is at most 256 bytes.
struct Person {
  std::string subject_id;       // set by register_person(); ignored on input
  std::string bsn;              // 9 digits, 11-test
  std::vector<RecordNumber> record_numbers;
  std::string given_name;       // given names, space separated
  std::string family_name;
  std::string birth_date;       // YYYY-MM-DD
  std::string sex;              // FHIR administrative gender: male | female | other | unknown
  std::string address_line;
  std::string postcode;         // Dutch postcode "1234 AB" (stored as given, upper-cased)
  std::string city;
  std::string phone;
  std::string email;
  bool operator==(const Person&) const = default;
};

// True when `bsn` is 9 digits passing the 11-test.
bool valid_bsn(std::string_view bsn);
// Why `bsn` is not valid ("must be 9 digits", "fails the 11-test"), or empty when it is.
std::string bsn_problem(std::string_view bsn);

class IdentityVault {
 public:
  // Opens (creating when missing) the vault file and its key file (wrapped under `kek`;
  // created with fresh random keys when missing, mode 0600). Fails with unavailable/vault_io,
  // data_loss/unwrap_failed (the wrong KEK or a damaged key file).
  [[nodiscard]] static Result<std::unique_ptr<IdentityVault>> open(const std::filesystem::path& vault_file,
                                                                   const std::filesystem::path& key_file,
                                                                   const Kek& kek);
  virtual ~IdentityVault() = default;

  // Registers a person, or updates the one already found by BSN or by any of the record
  // numbers ("conditional update by identifier"). Returns the subject id and whether it was
  // created. An update replaces the fields given non-empty, keeps the others, adds the BSN when
  // the subject had none, and adds new record numbers after the existing ones (record numbers
  // are never dropped). One transaction: on any failure nothing changes.
  // Fails with invalid_argument/bad_bsn, invalid_argument/bad_person (no BSN and no record
  // number; a record number without system or value, or with '|' in the system; a birth date
  // that is not a calendar date YYYY-MM-DD; a sex outside male|female|other|unknown; a field
  // over 256 bytes), failed_precondition/identifier_conflict (the identifiers belong to two
  // different subjects, or a record number belongs to a subject with another BSN),
  // unavailable/vault_io.
  struct Registration {
    std::string subject_id;
    bool created = false;
  };
  [[nodiscard]] virtual Result<Registration> register_person(const Person& person) = 0;

  // The subject id for a BSN / a record number, or nullopt. Fails with invalid_argument/bad_bsn
  // for an invalid BSN, invalid_argument/bad_person for a record number without system or value.
  [[nodiscard]] virtual Result<std::optional<std::string>> find_by_bsn(std::string_view bsn) = 0;
  [[nodiscard]] virtual Result<std::optional<std::string>> find_by_record_number(const RecordNumber& id) = 0;

  // Decrypts a person (re-identification: callers audit it). nullopt when unknown or erased.
  // Record numbers come back in registration order. Fails with data_loss/vault_corrupt when a
  // field does not decrypt (damaged, or moved to another subject or field).
  [[nodiscard]] virtual Result<std::optional<Person>> get(std::string_view subject_id) = 0;

  // Erases a person: every field, every blind-index entry and the subject row are deleted in
  // one transaction (secure_delete on: SQLite zeroes the freed cells), then the WAL is
  // checkpointed and truncated so no older page image keeps the ciphertexts. Returns false
  // when unknown. The identifiers are free afterwards: registering them creates a new subject.
  [[nodiscard]] virtual Result<bool> erase(std::string_view subject_id) = 0;

  // Every subject id, sorted, for tests and erasure checks.
  [[nodiscard]] virtual Result<std::vector<std::string>> subject_ids() = 0;

  // The link from a subject's pseudonym (Pseudonymiser::subject(subject id), computed outside
  // the vault) back to the subject, so the care context can go from Patient/<pseudonym> to the
  // person. Kept in the blind index (HMAC of "ps|" + pseudonym), so erase() deletes it with the
  // rest. link_pseudonym fails with not_found/no_subject for an unknown subject; linking again
  // is harmless.
  [[nodiscard]] virtual Status link_pseudonym(std::string_view subject_id, std::string_view pseudonym) = 0;
  [[nodiscard]] virtual Result<std::optional<std::string>> find_by_pseudonym(std::string_view pseudonym) = 0;

  // Documents about a subject kept whole, such as the original FHIR Patient resource of an
  // imported Bundle ("patient"; docs/clinical.md), since it holds identifiers the Person fields
  // do not (other names, identifiers, extensions). Encrypted like the fields (AES-256-GCM under
  // the data key; associated data: subject id + '\0' + "document:" + name), in their own
  // table; erase() deletes them with the rest.
  //
  // put_document stores or replaces the document `name` ([a-z0-9_-]{1,32}) of a subject. Fails
  // with invalid_argument/bad_document (bad name, or more than 16 MiB), not_found/no_subject,
  // unavailable/vault_io. document() gives it back, or nullopt when the subject or the
  // document is unknown; data_loss/vault_corrupt when it does not decrypt.
  [[nodiscard]] virtual Status put_document(std::string_view subject_id, std::string_view name,
                                            std::string_view bytes) = 0;
  [[nodiscard]] virtual Result<std::optional<std::string>> document(std::string_view subject_id,
                                                                    std::string_view name) = 0;
};

}  // namespace telehub::privacy
