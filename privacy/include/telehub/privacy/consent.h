// Consent: per-subject records of what the patient agreed to (docs/privacy.md, "Consent").
// Kept by pseudonym (no identifier) in <data>/consent.db, so research code can check consent
// without the identity vault.
//
// Scopes: "care" (home monitoring for the care team), "research" (any study), and
// "research:<study id>" (one study), the study id matching [A-Za-z0-9._-]{1,64}. A record
// permits or denies a scope from a date; a later withdrawal (withdraw()) ends a permit from its
// date. Records are never changed otherwise, and withdrawn ones are kept (the audit trail).
//
// The decision for a subject, scope S and time `at` (permitted()):
//   1. the candidates are the subject's records for exactly S with from <= at; when S is
//      "research:<study>" and there is none, the records for "research" with from <= at;
//   2. the newest candidate decides (largest `from`, ties broken by later insertion): a deny
//      denies; a permit permits unless it was withdrawn at or before `at`;
//   3. no candidate: not permitted (opt-in).
// So a study record always outranks the overall research one, even an older study record: a
// subject who withdrew from study S (or denied it) stays out of S under an overall research
// permit. "research" and "care" fall back to nothing; a study permit is not overall research
// consent.
//
// from_fhir_consent() reads an R4 Consent resource (http://hl7.org/fhir/R4/consent.html). Only
// the top-level provision is read (nested provision.provision rules are not modelled).
//   - resourceType must be "Consent"; Consent.id, when present, must be a FHIR id and gives
//     source "fhir:Consent/<id>", else source is "fhir:Consent".
//   - subject: Consent.patient.reference "Patient/<pseudonym>" (SubjectPseudonym::parse).
//   - permit/deny (Consent.status, http://hl7.org/fhir/R4/valueset-consent-state-codes.html):
//     active → provision.type (permit | deny; absent = permit); inactive, rejected and
//     entered-in-error → deny (a Consent no longer in force never permits); draft and proposed
//     are refused (not in force yet).
//   - from: provision.period.start, else Consent.dateTime. A full date-time needs its offset; a
//     date (YYYY-MM-DD) is taken as 00:00 UTC; year or year-month alone is refused.
//   - withdrawn: provision.period.end, for a permit only (the permit ends then); a deny ignores
//     it. end before start is refused.
//   - scope: provision.purpose codings, system http://terminology.hl7.org/CodeSystem/v3-ActReason:
//     TREAT, CAREMGT → "care"; HRESCH, CLINTRCH → "research"; any other code or system, or care
//     and research mixed, is refused. Without provision.purpose: Consent.scope coding of
//     http://terminology.hl7.org/CodeSystem/consentscope "treatment" → "care", "research" →
//     "research"; anything else (e.g. "patient-privacy") is refused.
//   - study: a Consent.identifier with system https://telehub.example.org/fhir/NamingSystem/study
//     turns "research" into "research:<identifier.value>"; on a care Consent, with a value that
//     is not a study id, or twice, it is refused.
// Every refusal is invalid_argument/bad_consent whose message names the FHIR element path
// (e.g. "Consent.provision.purpose[1] ...") and never quotes the document's values.
//
// Error policy: Result, never throws. Database failures: reason consent_io, keeping the
// wrapper's code (unavailable when the file cannot be opened or is busy, internal otherwise).
// Bad subject or scope arguments: invalid_argument/bad_consent.
//
// Thread-safety: safe from several threads (one connection, serialised by a mutex inside).
#pragma once

#include <cstdint>
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
  std::optional<core::TimePoint> withdrawn;  // set by withdraw() (or a FHIR permit period end)
  std::string source;               // "cli", "fhir:Consent/<id>", ...
};

class ConsentStore {
 public:
  // Opens or creates the database file (WAL, synchronous=FULL) and its schema: table consent
  // with an index on (subject, scope). Fails with consent_io (unavailable when it cannot open).
  [[nodiscard]] static Result<std::unique_ptr<ConsentStore>> open(const std::filesystem::path& file);
  virtual ~ConsentStore() = default;

  // Stores a record as given (record.id is ignored; record.withdrawn is stored when set);
  // returns its id. Fails with bad_consent (subject not a pseudonym, empty or malformed scope).
  [[nodiscard]] virtual Result<std::int64_t> record(ConsentRecord record) = 0;
  // Withdraws every permit of `subject` for `scope` (and, for "research", every
  // "research:<study>" permit) effective `at`: sets `withdrawn` to `at` on each such permit not
  // withdrawn yet or withdrawn later than `at`. Deny records are untouched; nothing is deleted.
  // Returns how many records it changed. Fails with bad_consent for a bad subject or scope.
  [[nodiscard]] virtual Result<int> withdraw(std::string_view subject, std::string_view scope, core::TimePoint at) = 0;
  // The decision described above. Fails with bad_consent for a bad subject or scope.
  [[nodiscard]] virtual Result<bool> permitted(std::string_view subject, std::string_view scope, core::TimePoint at) = 0;
  // Subjects for which permitted(subject, scope, at) is true (for research exports), sorted;
  // a subject whose permit was withdrawn at or before `at` is not in it.
  [[nodiscard]] virtual Result<std::vector<std::string>> permitted_subjects(std::string_view scope, core::TimePoint at) = 0;
  // All records of a subject, oldest first (by from, then insertion). bad_consent for a bad subject.
  [[nodiscard]] virtual Result<std::vector<ConsentRecord>> of_subject(std::string_view subject) = 0;
  // Deletes every record of a subject (erasure, including withdrawn ones). Returns how many.
  // bad_consent for a bad subject.
  [[nodiscard]] virtual Result<int> erase_subject(std::string_view subject) = 0;
};

// Reads a FHIR R4 Consent (JSON) into a record as described above (id unset; withdrawn set
// only from a permit's provision.period.end).
[[nodiscard]] Result<ConsentRecord> from_fhir_consent(std::string_view json);

}  // namespace telehub::privacy
