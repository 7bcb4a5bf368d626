// Consent: per-subject records of what the patient agreed to (docs/privacy.md, "Consent").
// Kept by pseudonym (no identifier) in <data>/consent.db, so research code can check consent
// without the identity vault.
//
// Scopes: "care" (home monitoring for the care team), "research" (any study), and
// "research:<study id>" (one study). A record permits or denies a scope from a date; a later
// withdrawal (withdraw()) ends a permit from its date. The decision for a subject, scope and
// time: the newest record (by `from`, then by insertion) covering it — for "research:S", a
// record for "research:S" if any, else one for "research" — that is not withdrawn at that
// time; no record = not permitted (opt-in).
//
// from_fhir_consent() reads an R4 Consent resource (http://hl7.org/fhir/R4/consent.html):
// status active → the provision's type (permit | deny) from provision.period.start (or
// dateTime); status inactive / rejected → deny; the scope from the provision's purpose codes
// (HL7 v3 ActReason: TREAT/HMARKT → "care", HRESCH → "research") and, for one study, a
// provision.data / extension naming it — the exact mapping is in docs/privacy.md. The subject
// comes from Consent.patient as "Patient/<pseudonym>".
//
// Error policy: Result, never throws. unavailable/consent_io; invalid_argument/bad_consent with
// the FHIR element path. Thread-safety: safe from several threads (serialised inside).
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "telehub/core/error.h"
#include "telehub/core/time.h"

namespace telehub::privacy {

struct ConsentRecord {
  std::int64_t id = 0;              // set by record()
  std::string subject;              // pseudonym (32 hex)
  std::string scope;                // care | research | research:<study id>
  bool permit = true;               // permit or deny
  core::TimePoint from{};           // effective from
  std::optional<core::TimePoint> withdrawn;  // set by withdraw()
  std::string source;               // "cli", "fhir:Consent/<id>", ...
};

class ConsentStore {
 public:
  [[nodiscard]] static Result<std::unique_ptr<ConsentStore>> open(const std::filesystem::path& file);
  virtual ~ConsentStore() = default;

  // Stores a record; returns its id. Fails with bad_consent (subject not a pseudonym, empty or
  // malformed scope).
  [[nodiscard]] virtual Result<std::int64_t> record(ConsentRecord record) = 0;
  // Withdraws every permit of `subject` for `scope` (and, for "research", every
  // "research:<study>" permit) effective `at`. Returns how many records it ended.
  [[nodiscard]] virtual Result<int> withdraw(std::string_view subject, std::string_view scope, core::TimePoint at) = 0;
  // The decision described above.
  [[nodiscard]] virtual Result<bool> permitted(std::string_view subject, std::string_view scope, core::TimePoint at) = 0;
  // Subjects permitted for `scope` at `at` (for research exports), sorted.
  [[nodiscard]] virtual Result<std::vector<std::string>> permitted_subjects(std::string_view scope, core::TimePoint at) = 0;
  // All records of a subject, oldest first.
  [[nodiscard]] virtual Result<std::vector<ConsentRecord>> of_subject(std::string_view subject) = 0;
  // Deletes every record of a subject (erasure). Returns how many.
  [[nodiscard]] virtual Result<int> erase_subject(std::string_view subject) = 0;
};

// Reads a FHIR R4 Consent (JSON) into a record as described above (id and withdrawn unset).
[[nodiscard]] Result<ConsentRecord> from_fhir_consent(std::string_view json);

}  // namespace telehub::privacy
