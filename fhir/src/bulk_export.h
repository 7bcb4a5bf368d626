// FHIR Bulk Data export jobs (HL7 FHIR Bulk Data Access IG v2,
// https://hl7.org/fhir/uv/bulkdata/export.html), as a library the router calls: one call per
// route (kick-off, status, file download, cancel). docs/bulk-export.md describes the HTTP side.
//
// A job exports a list of subjects (the router decides which: all, one, or a care relation
// cohort) to NDJSON files (application/fhir+ndjson, one complete resource per line), one file
// per resource type under <options.dir>/<job id>/<Type>.ndjson, created with mode 0600 (they
// hold identified data when ExportRequest::identified is set). Per subject, in this order:
//   Patient      identified_patient_json (identified, when the vault knows the pseudonym) or
//                patient_json (pseudonymous: id and active only);
//   Device       the subject's telehub devices (device_json), never a key;
//   Observation  the home readings (observation_json), paged from the measurement store;
//   clinical     the subject's clinical resources (ResourceStore::of_subject), each into the
//                file of its own type (clinical Observations join the home readings).
// Subjects the measurement store's registry does not know are skipped (nothing is written for
// them). With ExportRequest::include_shared, resources of the clinical store without a subject
// (Organization, Practitioner, Location, ...) follow, once for the whole job.
//
// _since (ExportRequest::since): clinical resources whose meta.lastUpdated >= since; home
// readings *received* (stored) at or after since, whatever their effective time, so a reading a
// device delivered late is not missed by an incremental export; Patient and Device carry no
// update time in telehub and are always exported (a superset, never a gap). transactionTime in
// the manifest is the kick-off time; a client's next incremental export passes it as _since.
//
// Memory stays bounded: a job streams page by page (500 resources) and never holds a whole
// subject or export in memory. Jobs are in memory only: the files of a job live until its
// time-to-live passes after completion (then they are deleted), or until it is cancelled;
// start() deletes whatever an earlier process left under options.dir, and stop() deletes the
// files of every job (a restarted hub knows no job, so their status URLs are gone anyway).
// Expired jobs are swept on each call of kick_off/status/file/cancel.
//
// Error policy: Result/Status, never throws. Methods fail with: invalid_argument/bad_export
// (a request that cannot run: no requester, a subject or type that is not a FHIR id / type
// name), failed_precondition/no_vault (identified without a vault),
// resource_exhausted/too_many_exports (options.max_concurrent_jobs already in progress),
// not_found/no_export (unknown job, expired, cancelled, or started by another requester: the
// answer does not tell which), not_found/no_file (a file name the job did not write, such as
// "../x"). A job that cannot finish (a store or file failure) ends kFailed; its
// OperationOutcome names the error code and reason only, never an identifier; its partial files
// are deleted. Messages never contain identifiers.
//
// Thread-safety: every method may be called from any thread. Each running job has its own
// worker thread (at most max_concurrent_jobs); stop() (and the destructor) cancels and joins
// them. Lifetimes: the stores, vault and clock in BulkExportOptions must outlive the
// BulkExports; a path returned by file() stays valid until the job expires or is cancelled
// (a download already streaming from an open descriptor is not disturbed by the deletion).
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "telehub/clinical/resource_store.h"
#include "telehub/core/error.h"
#include "telehub/core/time.h"
#include "telehub/formats/plausibility.h"
#include "telehub/privacy/identity_vault.h"
#include "telehub/storage/store.h"

namespace telehub::fhir {

struct ExportRequest {
  // The subject pseudonyms to export; duplicates are exported once. The router decides the
  // cohort (all: Registry::subjects; one; or a care relation's). REQUIRES: each a FHIR id.
  std::vector<std::string> subjects;
  // _type: the resource types to export. Default: empty = Patient, Device, Observation and every
  // clinical type. REQUIRES: each a resource type name ([A-Z][A-Za-z]{0,63}).
  std::vector<std::string> types;
  // _since: see the file comment (clinical lastUpdated, readings received). Default: none.
  std::optional<core::TimePoint> since;
  // Patient resources re-identified from the vault (care role) or pseudonymous (research).
  // REQUIRES (when true): BulkExportOptions::vault. Default: false.
  bool identified = false;
  // Also the clinical resources without a subject (Organization, Practitioner, ...), of the
  // requested types; for system-level exports. Default: false.
  bool include_shared = false;
  // The client that started the job: only it may poll, download and cancel. REQUIRES: non-empty.
  std::string requester;
  // The kick-off URL, echoed as the manifest's "request". Default: "".
  std::string request_url;
  // Instead of the subject walk above: a producer that writes the resources itself by calling
  // `write(type, resource JSON)` once per resource (a research study export, docs/research.md);
  // `subjects`, `since`, `identified` and `include_shared` are then unused. The producer runs on
  // the job's thread; `write` fails with cancelled when the job was cancelled (the producer
  // passes that on). Default: empty.
  using WriteFn = std::function<Status(std::string_view type, std::string_view json)>;
  std::function<Status(const WriteFn& write)> producer;
};

struct BulkExportOptions {
  // Where job directories are created (<dir>/<job id>/). Created (mode 0700) when missing;
  // anything already inside is deleted by start(). REQUIRES: non-empty, used by nothing else.
  std::filesystem::path dir;
  // The FHIR base URL without a trailing '/' ("https://hub.example/fhir"); output URLs are
  // <base_url>/$export-files/<job>/<file>. Default: "".
  std::string base_url;
  // The measurement store (registry and readings). REQUIRES: non-null.
  storage::Store* store = nullptr;
  // The clinical store; null: no clinical resources are exported. Default: null.
  clinical::ResourceStore* clinical = nullptr;
  // The identity vault, for identified exports. Default: null (identified refused).
  privacy::IdentityVault* vault = nullptr;
  // Plausibility rules for the Observation interpretation. Default: formats::Plausibility::defaults().
  formats::Plausibility rules = formats::Plausibility::defaults();
  // Jobs in progress at one time. REQUIRES: >= 1. Default: 2.
  std::size_t max_concurrent_jobs = 2;
  // How long a finished (complete or failed) job and its files are kept. Default: 24 hours.
  std::chrono::seconds time_to_live = std::chrono::hours(24);
  // Source of transactionTime and expiry. Default: core::system_clock().
  const core::Clock* clock = &core::system_clock();
};

struct ExportStatus {
  enum class State { kInProgress, kComplete, kFailed };
  State state = State::kInProgress;
  // kInProgress: "n of m patients" (the X-Progress header). Otherwise "".
  std::string progress;
  // kComplete: the manifest JSON (200); kFailed: an OperationOutcome JSON (500).
  std::string body;
};

class BulkExports {
 public:
  // Creates options.dir (0700) when missing and deletes its contents. Fails with
  // invalid_argument/bad_options (no dir, no store, max_concurrent_jobs 0, no clock),
  // unavailable/export_io when the directory cannot be prepared.
  [[nodiscard]] static Result<std::unique_ptr<BulkExports>> start(BulkExportOptions options);
  virtual ~BulkExports() = default;

  // Starts a job; returns its id (32 random hex), for the status URL. Fails as in the file
  // comment (bad_export, no_vault, too_many_exports).
  [[nodiscard]] virtual Result<std::string> kick_off(ExportRequest request) = 0;
  // The job's state for its requester. Fails with not_found/no_export.
  [[nodiscard]] virtual Result<ExportStatus> status(std::string_view job_id, std::string_view requester) = 0;
  // The path of one output file of a complete job ("Observation.ndjson"), to stream as
  // application/fhir+ndjson. Fails with not_found/no_export, not_found/no_file for any name the
  // job did not write (so no path traversal), failed_precondition/not_complete while running.
  [[nodiscard]] virtual Result<std::filesystem::path> file(std::string_view job_id, std::string_view file_name,
                                                           std::string_view requester) = 0;
  // Cancels a job, running or finished (DELETE on the status URL: 202): stops its worker,
  // deletes its files, forgets it. Fails with not_found/no_export.
  [[nodiscard]] virtual Status cancel(std::string_view job_id, std::string_view requester) = 0;
  // Cancels every running job, joins the workers and deletes every job's files; further
  // kick-offs fail with unavailable/stopped. Idempotent; the destructor calls it.
  virtual void stop() = 0;
};

}  // namespace telehub::fhir
