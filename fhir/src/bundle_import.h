// Import of FHIR R4 transaction and batch Bundles from hospital systems (docs/clinical.md),
// split by the privacy rule (docs/privacy.md): a Patient goes to the identity vault (its Person
// fields, and the whole resource as the encrypted document "patient"), everything else to the
// clinical::ResourceStore with every reference to the Patient rewritten to
// "Patient/<pseudonym>". clinical.db never holds the Patient, its identifiers or its original id.
//
// Semantics (http://hl7.org/fhir/R4/http.html#transaction):
//   - Bundle.type "transaction": all or nothing. Any entry error fails the whole import (the
//     error names the entry index and the element) and nothing is stored in the clinical
//     store. "batch": each entry on its own; a failed entry is reported in its result.
//   - entry.request.method POST (the server assigns a new id, 32 random hex; the resource's own
//     id is ignored), PUT Type/id (create-or-update with that id), POST with
//     request.ifNoneExist "identifier=[system|]value" (conditional create: no match → create,
//     one → 200 OK with it, several → 412). Other methods are refused for that entry.
//   - Patient entries (POST or PUT, with or without ifNoneExist) register the person
//     (IdentityVault::register_person matches an existing person by BSN or record number, else
//     creates), link the pseudonym, keep the resource as the vault document "patient" and add
//     the pseudonym to the measurement store's registry. Their location is
//     "Patient/<pseudonym>".
//   - References ("reference" members anywhere in a resource, contained ones included): a
//     fullUrl of an entry (urn:uuid:, urn:oid: or absolute), or "Type/id" of an entry with that
//     resource id → "Type/<stored id>"; the Patient's fullUrl or "Patient/<its id>" →
//     "Patient/<pseudonym>"; "Patient?identifier=[system|]value" → the vault's match;
//     "Patient/<pseudonym>" of a known subject is kept. Unresolved: a urn:uuid:/urn:oid:
//     reference, a reference to a failed entry, any other "Patient/..." or "Patient?..." (so no
//     hospital Patient id reaches clinical.db). Local "#..." and all other references are kept.
//     References to this server's base URL are taken as relative.
//   - Idempotence: a POST whose content (after reference rewriting, ignoring id and meta)
//     equals a stored resource is answered "200 OK" with the stored one, not stored again
//     (ResourceStore dedupe). Entries are written in reference order (an entry after those it
//     refers to), so re-importing a whole Bundle stores nothing new. Entries that refer to each
//     other in a cycle get fresh ids first and are not deduped. The dedupe check runs before the
//     write transaction, so two imports of the same Bundle running at the same time may both
//     store it; importers of one hospital feed should run one at a time.
//   - The vault is updated before the clinical store: when a transaction fails after the
//     checks (store failure, or a conditional create matching several resources), the Patient
//     stays registered, as it would after PUT Patient.
//   - Limits: at most kMaxBundleEntries entries and kMaxBundleBytes bytes; JSON is parsed by
//     envelope::parse_json (nesting depth 16, enough for Synthea's Claim and
//     ExplanationOfBenefit at 11).
//
// Error policy: Result, never throws. A Bundle that cannot be imported at all (bad JSON, not a
// transaction/batch Bundle, over a limit, any entry error in a transaction):
// invalid_argument/bad_bundle (or the entry's own code: failed_precondition for a 412,
// already_exists, or the store's unavailable/clinical_io) with a message naming the entry index
// and element, never quoting identifiers or values. Entry errors of a batch are in the result.
//
// Thread-safety: import_bundle is stateless; it is as thread-safe as the stores it is given
// (all of them are). Lifetimes: ImportContext only refers to the stores, for the call.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "telehub/clinical/resource_store.h"
#include "telehub/core/error.h"
#include "telehub/privacy/identity_vault.h"
#include "telehub/privacy/pseudonym.h"
#include "telehub/storage/store.h"

namespace telehub::fhir {

inline constexpr std::size_t kMaxBundleEntries = 10'000;
inline constexpr std::size_t kMaxBundleBytes = std::size_t{64} << 20;

struct ImportContext {
  privacy::IdentityVault& vault;
  const privacy::Pseudonymiser& pseudonymiser;
  // The measurement store's registry: Registry::add_subject for each imported Patient.
  storage::Registry& registry;
  clinical::ResourceStore& store;
  // This server's FHIR base ("https://hub.example/fhir"), without a trailing '/'. References
  // starting with it are taken as relative. Default: "" (none).
  std::string base_url;
};

struct ImportEntry {
  enum class Outcome { kCreated, kUpdated, kExisting, kUnchanged, kFailed };
  std::size_t index = 0;       // position in Bundle.entry
  std::string resource_type;   // "" when the entry has none
  std::string id;              // the stored id (the pseudonym for a Patient); "" when failed
  Outcome outcome = Outcome::kFailed;
  std::string status;          // "201 Created", "200 OK", "400 Bad Request", "412 Precondition Failed", ...
  std::string location;        // "Observation/<id>/_history/<v>"; "Patient/<pseudonym>"
  std::string etag;            // W/"<v>" ("" for a Patient)
  std::string last_modified;   // RFC 3339 ("" for a Patient)
  std::optional<core::Error> error;  // set when failed
};

struct ImportedPatient {
  std::string pseudonym;
  bool created = false;  // a new subject in the vault (false: matched an existing one)
};

struct ImportResult {
  bool transaction = true;  // false: batch
  std::vector<ImportEntry> entries;  // one per Bundle entry, in order
  std::vector<ImportedPatient> patients;  // distinct, in Bundle order

  // Entries stored (created or updated), found existing (deduped, conditional match, unchanged),
  // failed.
  std::size_t stored() const;
  std::size_t existing() const;
  std::size_t failed() const;
};

[[nodiscard]] Result<ImportResult> import_bundle(std::string_view bundle_json, const ImportContext& context);

// The transaction-response or batch-response Bundle (http://hl7.org/fhir/R4/bundle.html),
// one entry per result entry with response.status, location, etag, lastModified, and an
// OperationOutcome (response.outcome) for each failed entry.
std::string response_bundle_json(const ImportResult& result, std::string_view base_url);

}  // namespace telehub::fhir
