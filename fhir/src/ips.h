// Patient/<id>/$summary: the International Patient Summary of one subject as a FHIR R4
// document Bundle (http://hl7.org/fhir/uv/ips/, "Structure of the IPS document";
// http://hl7.org/fhir/R4/documents.html). docs/ips.md says what goes into which section.
//
// The Bundle (type "document", identifier urn:ietf:rfc:3986 urn:uuid:<random>, timestamp)
// starts with a Composition (status final, type LOINC 60591-5 "Patient summary Document",
// subject Patient/<pseudonym>, author display "telehub", title "Patient Summary",
// confidentiality N) whose sections each carry a code, a generated XHTML narrative and entry
// references (or an emptyReason from
// http://terminology.hl7.org/CodeSystem/list-empty-reason). Then the Patient and every
// resource a section refers to, each with fullUrl <base>/<Type>/<id>.
//
// Self-contained (http://hl7.org/fhir/R4/documents.html#content): every reference in every
// included resource ("Type/id", or <base>/Type/id) is followed, transitively, and the target
// is included (read from the clinical store, or a Device of `devices`); references are
// rewritten to the relative "Type/id" of the entry. A reference that cannot be followed (not
// found, another subject's Patient, a conditional or external reference, or past
// kMaxSummaryEntries) loses its "reference" and keeps (or gets) a display, so no reference
// in the document dangles. Local "#id" references to contained resources are kept.
//
// The caller chooses the Patient resource (identified or pseudonymous, docs/privacy.md) and
// reads the home readings; this function only reads the clinical store.
//
// Error policy: Result, never throws. An empty base URL or a subject that is not a FHIR id:
// invalid_argument/bad_summary. A Patient JSON that is not a Patient object:
// invalid_argument/bad_patient. A clinical store failure: its own error (reason clinical_io).
// Random id failure: the core::random_bytes error. Messages never quote identifiers.
//
// Thread-safety: a pure function over its input, as thread-safe as the store it is given.
// Lifetime: SummaryInput only refers to the store and the rules for the call.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "telehub/clinical/resource_store.h"
#include "telehub/core/error.h"
#include "telehub/core/time.h"
#include "telehub/formats/plausibility.h"
#include "telehub/storage/store.h"

namespace telehub::fhir {

// At most this many entries (Composition, Patient and referenced resources) are placed in a
// summary; references beyond it are cut as described above.
inline constexpr std::size_t kMaxSummaryEntries = 2000;

struct SummaryInput {
  // This server's FHIR base ("https://hub.example/fhir"), without a trailing '/'.
  // REQUIRES: non-empty. Default: "".
  std::string base_url;
  // The subject pseudonym. REQUIRES: a FHIR id. Default: "".
  std::string subject;
  // The Patient resource (identified or pseudonymous, chosen by the caller). Its id is set to
  // `subject` in the document. REQUIRES: a JSON object with resourceType "Patient".
  std::string patient_json;
  // The clinical records (Conditions, AllergyIntolerances, MedicationRequests and
  // MedicationStatements, Observations). Default: nullptr (no clinical records: the required
  // sections are empty with emptyReason "unavailable").
  clinical::ResourceStore* clinical = nullptr;
  // The latest home readings per code (storage::ObservationStore::latest(subject, {}, 1)).
  // Vital signs go to the vital signs section, laboratory codes to the results section, other
  // codes (activity) are left out. Default: empty.
  std::vector<storage::StoredObservation> home_readings;
  // The subject's devices, for the readings' Device references. Default: empty (the references
  // are cut to a display).
  std::vector<storage::DeviceRecord> devices;
  // Plausibility rules for Observation.interpretation of home readings.
  // Default: nullptr (formats::Plausibility::defaults()).
  const formats::Plausibility* rules = nullptr;
  // Composition.date and Bundle.timestamp. Default: the epoch (callers pass Clock::now()).
  core::TimePoint now{};
  // Composition.author display. Default: "telehub".
  std::string author = "telehub";
};

// The IPS document Bundle of `in.subject`, as compact JSON. Fails as described at the top.
[[nodiscard]] Result<std::string> summary_bundle_json(const SummaryInput& in);

}  // namespace telehub::fhir
