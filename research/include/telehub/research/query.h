// Study-level outputs for the research role beyond the file export (docs/research.md):
// aggregate tables of a study variable, and the study's dataset as FHIR R4 resources for the
// research Bulk Data export (Group/<study id>/$export).
//
// Both start from build_cohort() (cohort.h): consented, included, k-anonymous subjects under
// their study pseudonyms, with the study's generalised quasi-identifiers. Neither writes the
// audit log: their callers (the CLI, the router) do, before anything is shown.
//
// Error policy: Result, never throws; invalid_argument/bad_query for a bad query (the message
// names the parameter and may be shown to the client), store errors passed on.
// Thread-safety: reentrant; the stores must outlive each call.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "telehub/core/error.h"
#include "telehub/core/time.h"
#include "telehub/research/aggregate.h"
#include "telehub/research/cohort.h"
#include "telehub/research/study.h"

namespace telehub::research {

struct StudyQuery {
  // The variable: a study variable's code, or the code of a member of a panel variable
  // (8480-6 of 85354-9). REQUIRES: non-empty.
  std::string code;
  // Quasi-identifiers to group by, each one the study keeps (Cohort::qi_names: age_band, sex,
  // region). Default: none (one group).
  std::vector<std::string> group_by;
  // Columns: calendar periods of the true times. Default: month.
  Period period = Period::kMonth;
  // Default: 10, 25, 50, 75, 90.
  std::vector<double> percentiles = {10, 25, 50, 75, 90};
  // The small-cell threshold in subjects; 0 or anything below the study's k means k.
  std::int64_t min_subjects = 0;
};

// From query parameters (the HTTP route; the CLI passes its options the same way): code,
// group-by (comma-separated), period, percentiles (comma-separated numbers), min-subjects.
// Unknown parameters and repeated ones are refused (bad_query).
[[nodiscard]] Result<StudyQuery> parse_study_query(const std::vector<std::pair<std::string, std::string>>& params);

// The aggregate table of `query` over the study's cohort at `now` (aggregate.h suppression
// with min_subjects = max(query.min_subjects, study.k)). Fails with bad_query when the code is
// not a study variable (nor a member of one) or a group-by name is not a quasi-identifier the
// study keeps.
[[nodiscard]] Result<AggregateTable> aggregate_study(const Sources& sources, const Study& study, const StudyQuery& query,
                                                     core::TimePoint now);

// The study's dataset as FHIR R4 resources (docs/research.md, "Bulk Data export"), each passed
// to `write(type, json)`:
//   Patient      id = the study pseudonym; gender when the study keeps sex and it is known;
//                the generalised age band and region as extensions; meta.tag "pseudonymised";
//   Observation  one per row: id "<first 16 hex of the pseudonym>-<n>", the variable's code,
//                subject Patient/<study pseudonym>, the shifted time (effectiveDateTime for a
//                reading, effectivePeriod for an hourly or daily row; with dates "relative" the
//                time counted from a nominal enrolment at 2000-01-01T00:00:00Z), valueQuantity
//                (the reading, or the bucket mean with the count in a note) or, for a panel,
//                components.
// Exposures are not in it (they are columns of the file export). `types`: empty = both, else
// the ones named (Patient, Observation); others are refused with bad_query.
using WriteFn = std::function<Status(std::string_view type, std::string_view json)>;
[[nodiscard]] Status write_fhir_dataset(const Sources& sources, const Study& study, core::TimePoint now,
                                        const std::vector<std::string>& types, const WriteFn& write);

}  // namespace telehub::research
