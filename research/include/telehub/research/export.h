// research::export_dataset: a study's dataset as files a researcher can take away
// (docs/research.md, "The output").
//
// Writes into a new directory (`out_dir`, which must not exist or be empty):
//   data.csv | data.ndjson  one row per reading (raw) or bucket (hourly, daily): study
//                           pseudonym, shifted time (RFC 3339, "Z") or days since enrolment,
//                           code, aggregation, n, values (a panel: one column/field per
//                           component), exposures env_<component>;
//   subjects.csv            study pseudonym and the generalised quasi-identifiers;
//   manifest.json           study, time, k, format, dates mode, generalisation levels reached,
//                           counts, equivalence classes and the re-identification risk.
// The cohort is build_cohort() (cohort.h); rows are for_each_row(). Nothing the hub uses to
// identify anyone is written: no hub pseudonym, device id, serial, vault field or birth date,
// no true date in shift mode.
//
// Publication: every file is written to a temporary directory beside `out_dir` and fsynced;
// then one audit record (event "research.export", action E, role "research", purpose
// "research", object "Study/<id>", the counts in `query`; no subject, no identifier) is
// appended; only when it is written is the temporary directory renamed to `out_dir` (and the
// parent directory fsynced). So a failed export leaves nothing at `out_dir`, and no dataset is
// published without its audit record ("no audit, no access").
//
// Error policy: Result, never throws. Failures: failed_precondition/out_not_empty (out_dir
// exists and is not an empty directory), unavailable/export_io (cannot write), the audit log's
// and the stores' errors unchanged. The temporary directory is removed on any failure.
// Thread-safety: one export at a time per out_dir; otherwise as cohort.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "telehub/core/error.h"
#include "telehub/core/time.h"
#include "telehub/privacy/audit_log.h"
#include "telehub/research/cohort.h"
#include "telehub/research/study.h"

namespace telehub::research {

enum class Format { kCsv, kNdjson };

struct ExportOptions {
  // The directory to create. REQUIRES: non-empty. Default: none.
  std::filesystem::path out_dir;
  // Default: csv.
  Format format = Format::kCsv;
  // The export's time: consent is decided, and readings are read, up to it. Default: epoch
  // (REQUIRES a real time).
  core::TimePoint now{};
  // Who exports (audit user_id), e.g. "local:alice". REQUIRES: non-empty.
  std::string user_id;
  // Where from (audit access_point). Default: "cli".
  std::string access_point = "cli";
};

struct Risk {
  double threshold = 0;       // 1/k
  double prosecutor_max = 0;  // 1 / smallest class size (0 when nobody is included)
  double average = 0;         // classes / included (0 when nobody is included)
  double records_at_risk = 0; // share of included subjects whose 1/class size exceeds 1/k
};

struct Manifest {
  std::string study_id;
  core::TimePoint created{};
  Format format = Format::kCsv;
  DatesMode dates = DatesMode::kShift;
  std::size_t k = 0;
  std::vector<std::string> qi_names;
  std::vector<std::string> qi_levels;
  CohortCounts counts;
  std::int64_t rows = 0;
  std::vector<privacy::EquivalenceClass> classes;
  Risk risk;
  std::vector<std::string> columns;  // data file columns (CSV) or fields (NDJSON)
};

// "csv" / "ndjson".
std::string_view format_name(Format f);

// Exports as described at the top and returns the manifest written.
[[nodiscard]] Result<Manifest> export_dataset(const Sources& sources, const Study& study, privacy::AuditLog& audit,
                                              const ExportOptions& options);

}  // namespace telehub::research
