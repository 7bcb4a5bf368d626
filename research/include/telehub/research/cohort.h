// research cohort: which subjects a study gets, how they are seen in it, and their rows
// (docs/research.md). Shared by the dataset export (export.h) and aggregate queries.
//
// build_cohort() takes every subject the hub knows (storage Registry) and, in this order:
//   1. drops those without consent for the study's scope at `now` (ConsentStore::permitted
//      rules: a study record outranks the overall "research" one) — excluded_no_consent; nothing
//      else about them is read;
//   2. drops those outside the inclusion — excluded_inclusion: enrolment (the earliest
//      enrolled_at of the subject's devices; no device: not enrolled) outside
//      [enrolled_from, enrolled_to), or, when the study names Condition codes, no Condition of the
//      subject in the clinical store with any of them (any clinical status);
//   3. reads the quasi-identifiers from the identity vault (age at enrolment from birth_date, sex,
//      PC4 of the postcode; a subject without a vault record has them unknown: "*"), and makes the
//      cohort k-anonymous (privacy/k_anonymity.h: ladders age_band, sex, region in that order, as
//      the study keeps them) — suppressed: subjects of classes below k.
// candidates = included + suppressed + excluded_no_consent + excluded_inclusion.
//
// for_each_row() yields one subject's rows, variable by variable (the study's order), each in
// time order: raw readings (ObservationStore::search pages) or hourly/daily buckets
// (ObservationStore::aggregate), every row with the subject's exposure per requested component
// at the true area and hour (raw: the reading's hour; hourly: the bucket's hour; daily: the
// mean of the day's hourly values that exist, UTC day). Rows are read up to `now` (exclusive).
//
// Error policy: Result, never throws; errors of the stores are passed on unchanged. Nothing
// here writes or logs. Thread-safety: the functions are reentrant; the stores must be safe to
// call (they are). Lifetime: Sources holds references; the stores must outlive every call.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "telehub/clinical/resource_store.h"
#include "telehub/core/error.h"
#include "telehub/core/time.h"
#include "telehub/environment/env_store.h"
#include "telehub/privacy/consent.h"
#include "telehub/privacy/identity_vault.h"
#include "telehub/privacy/k_anonymity.h"
#include "telehub/research/research_key.h"
#include "telehub/research/study.h"
#include "telehub/storage/store.h"

namespace telehub::research {

// The environmental exposure of a PC4 area for one component and hour (start of the UTC hour):
// the value, nullopt when there is none, or an error that stops the export.
using ExposureFn =
    std::function<Result<std::optional<double>>(std::string_view area, environment::Component, core::TimePoint hour)>;

// An ExposureFn over an EnvStore (EnvStore::value_at). `store` must outlive it.
ExposureFn env_store_exposure(environment::EnvStore& store);

// "1234" from a Dutch postcode ("1234 AB", "1234AB", "1234"); "" when it does not start with 4
// digits, the first not 0 (the rule of environment::pc4_of_postcode).
std::string pc4_area(std::string_view postcode);

// Where a study's data comes from.
struct Sources {
  storage::ObservationStore& observations;
  storage::Registry& registry;
  privacy::IdentityVault& vault;
  privacy::ConsentStore& consent;
  clinical::ResourceStore& clinical;
  const ResearchKey& key;
  // The exposure join; empty: every exposure value is empty.
  ExposureFn exposure;
};

struct CohortSubject {
  std::string subject;            // the hub's subject pseudonym: internal, never output
  std::string study_pseudonym;    // 32 hex, per study (ResearchKey::study_pseudonym)
  std::vector<std::string> quasi_identifiers;  // generalised values, in Cohort::qi_names order
  std::string class_key;          // the values joined by '|' (the equivalence class)
  core::TimePoint enrolled_at{};  // true enrolment time (earliest device enrolled_at)
  std::string area;               // true PC4, "" unknown: internal, never output
  int shift_days = 0;             // the study's date shift for this subject
};

struct CohortCounts {
  std::int64_t candidates = 0;
  std::int64_t excluded_no_consent = 0;
  std::int64_t excluded_inclusion = 0;
  std::int64_t suppressed = 0;
  std::int64_t included = 0;
};

struct Cohort {
  std::vector<std::string> qi_names;     // "age_band", "sex", "region" as the study keeps them
  std::vector<std::string> qi_levels;    // the level reached per name ("20 years", "pc2", "kept", "*")
  std::vector<CohortSubject> subjects;   // included, sorted by study pseudonym
  std::vector<privacy::EquivalenceClass> classes;  // sizes of the kept classes, by key
  CohortCounts counts;
};

// The cohort of `study` at `now`, as described at the top.
[[nodiscard]] Result<Cohort> build_cohort(const Sources& sources, const Study& study, core::TimePoint now);

// One numeric value of a row: a reading's value or a panel component (code = the component's
// code); for buckets the statistics of the slot (value = mean).
struct RowValue {
  std::string code;
  std::string unit;
  double value = 0;  // the reading's value, or the bucket mean
  double min = 0;    // raw: = value
  double max = 0;    // raw: = value
  std::int64_t count = 1;
};

struct Row {
  std::string code;                      // the variable's code
  Aggregation aggregation = Aggregation::kRaw;
  core::TimePoint time{};                // TRUE time: the reading's, or the bucket start: internal
  core::TimePoint shifted{};             // time + shift_days
  double days_since_enrolment = 0;       // (time - enrolled_at) in days, fractional
  std::int64_t count = 1;                // readings in the row
  std::vector<RowValue> values;
  std::vector<std::optional<double>> exposure;  // per Study::environment, in its order
};

// Calls `sink` with every row of `subject` (see the top); stops at the first failure of a store,
// the exposure function or the sink, and returns it.
[[nodiscard]] Status for_each_row(const Sources& sources, const Study& study, const CohortSubject& subject,
                                  core::TimePoint now, const std::function<Status(const Row&)>& sink);

}  // namespace telehub::research
