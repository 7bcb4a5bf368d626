#include "telehub/research/cohort.h"

#include <algorithm>
#include <map>
#include <set>

namespace telehub::research {
namespace {

// Whole years between a birth date "YYYY-MM-DD" and `at`; nullopt when the date is unusable.
std::optional<int> age_at(std::string_view birth_date, core::TimePoint at) {
  if (birth_date.size() != 10 || birth_date[4] != '-' || birth_date[7] != '-') return std::nullopt;
  for (std::size_t i : {0u, 1u, 2u, 3u, 5u, 6u, 8u, 9u})
    if (birth_date[i] < '0' || birth_date[i] > '9') return std::nullopt;
  const int by = std::stoi(std::string(birth_date.substr(0, 4)));
  const int bm = std::stoi(std::string(birth_date.substr(5, 2)));
  const int bd = std::stoi(std::string(birth_date.substr(8, 2)));
  const std::chrono::year_month_day now{std::chrono::floor<std::chrono::days>(at)};
  int age = static_cast<int>(now.year()) - by;
  const int nm = static_cast<int>(static_cast<unsigned>(now.month()));
  const int nd = static_cast<int>(static_cast<unsigned>(now.day()));
  if (nm < bm || (nm == bm && nd < bd)) --age;
  if (age < 0 || age > 150) return std::nullopt;
  return age;
}

struct Candidate {
  std::string subject;
  core::TimePoint enrolled_at{};
  std::string area;
  std::vector<std::string> raw;  // raw quasi-identifier values
};

Result<bool> has_condition(const Sources& s, const Study& study, const std::string& subject) {
  clinical::Query q;
  q.type = "Condition";
  q.subject = subject;
  q.limit = 1;
  for (const auto& c : study.conditions) q.tokens.push_back({"code", c.system, c.code});
  auto page = s.clinical.search(q);
  if (!page) return tl::unexpected(page.error());
  return !page->resources.empty();
}

core::TimePoint hour_of(core::TimePoint t) { return std::chrono::floor<std::chrono::hours>(t); }

// Cache of the last hour looked up per component, for runs of raw readings in one hour.
class ExposureLookup {
 public:
  ExposureLookup(const Sources& s, const Study& study, std::string area)
      : s_(s), study_(study), area_(std::move(area)), last_(study.environment.size()) {}

  Result<std::vector<std::optional<double>>> at_hour(core::TimePoint hour) {
    std::vector<std::optional<double>> out(study_.environment.size());
    for (std::size_t i = 0; i < out.size(); ++i) {
      auto v = value(i, hour);
      if (!v) return tl::unexpected(v.error());
      out[i] = *v;
    }
    return out;
  }

  // The mean of the hourly values of the UTC day starting at `day` that exist.
  Result<std::vector<std::optional<double>>> day_mean(core::TimePoint day) {
    std::vector<std::optional<double>> out(study_.environment.size());
    for (std::size_t i = 0; i < out.size(); ++i) {
      double sum = 0;
      int n = 0;
      for (int h = 0; h < 24; ++h) {
        auto v = value(i, day + std::chrono::hours(h));
        if (!v) return tl::unexpected(v.error());
        if (*v) {
          sum += **v;
          ++n;
        }
      }
      if (n > 0) out[i] = sum / n;
    }
    return out;
  }

 private:
  Result<std::optional<double>> value(std::size_t i, core::TimePoint hour) {
    if (!s_.exposure || area_.empty()) return std::optional<double>{};
    if (last_[i] && last_[i]->first == hour) return last_[i]->second;
    auto v = s_.exposure(area_, study_.environment[i], hour);
    if (!v) return tl::unexpected(v.error());
    last_[i] = std::make_pair(hour, *v);
    return *v;
  }

  const Sources& s_;
  const Study& study_;
  std::string area_;
  std::vector<std::optional<std::pair<core::TimePoint, std::optional<double>>>> last_;
};

double days_between(core::TimePoint from, core::TimePoint to) {
  return static_cast<double>(core::to_unix_millis(to) - core::to_unix_millis(from)) / 86'400'000.0;
}

}  // namespace

ExposureFn env_store_exposure(environment::EnvStore& store) {
  return [&store](std::string_view area, environment::Component c, core::TimePoint hour) {
    return store.value_at(area, c, hour);
  };
}

std::string pc4_area(std::string_view postcode) { return environment::pc4_of_postcode(postcode); }

Result<Cohort> build_cohort(const Sources& s, const Study& study, core::TimePoint now) {
  Cohort cohort;
  auto permitted = s.consent.permitted_subjects(study.consent_scope, now);
  if (!permitted) return tl::unexpected(permitted.error());
  const std::set<std::string> consenting(permitted->begin(), permitted->end());

  std::vector<privacy::Ladder> ladders;
  const auto& q = study.quasi_identifiers;
  if (q.age_band_years > 0) ladders.push_back(privacy::age_ladder(q.age_band_years));
  if (q.sex) ladders.push_back(privacy::sex_ladder());
  if (q.region_digits > 0) ladders.push_back(privacy::region_ladder(q.region_digits));

  std::vector<Candidate> candidates;
  std::string after;
  for (;;) {
    auto page = s.registry.subjects(after, 1000);
    if (!page) return tl::unexpected(page.error());
    for (const auto& subject : *page) {
      ++cohort.counts.candidates;
      if (!consenting.count(subject)) {
        ++cohort.counts.excluded_no_consent;
        continue;
      }
      auto devices = s.registry.devices_of(subject);
      if (!devices) return tl::unexpected(devices.error());
      if (devices->empty()) {
        ++cohort.counts.excluded_inclusion;
        continue;
      }
      core::TimePoint enrolled = devices->front().enrolled_at;
      for (const auto& d : *devices) enrolled = std::min(enrolled, d.enrolled_at);
      if ((study.enrolled_from && enrolled < *study.enrolled_from) || (study.enrolled_to && enrolled >= *study.enrolled_to)) {
        ++cohort.counts.excluded_inclusion;
        continue;
      }
      if (!study.conditions.empty()) {
        auto has = has_condition(s, study, subject);
        if (!has) return tl::unexpected(has.error());
        if (!*has) {
          ++cohort.counts.excluded_inclusion;
          continue;
        }
      }
      Candidate c{subject, enrolled, "", {}};
      std::optional<privacy::Person> person;
      auto id = s.vault.find_by_pseudonym(subject);
      if (!id) return tl::unexpected(id.error());
      if (*id) {
        auto p = s.vault.get(**id);
        if (!p) return tl::unexpected(p.error());
        person = std::move(*p);
      }
      if (person) c.area = pc4_area(person->postcode);
      if (q.age_band_years > 0) {
        auto age = person ? age_at(person->birth_date, enrolled) : std::nullopt;
        c.raw.push_back(age ? std::to_string(*age) : "");
      }
      if (q.sex) c.raw.push_back(person ? person->sex : "");
      if (q.region_digits > 0) c.raw.push_back(c.area);
      candidates.push_back(std::move(c));
    }
    if (page->size() < 1000) break;
    after = page->back();
  }

  std::vector<std::vector<std::string>> records;
  records.reserve(candidates.size());
  for (const auto& c : candidates) records.push_back(c.raw);
  auto k = privacy::k_anonymise(records, ladders, {study.k, study.max_suppression});
  if (!k) return tl::unexpected(k.error());

  for (std::size_t j = 0; j < ladders.size(); ++j) {
    cohort.qi_names.push_back(ladders[j].name);
    cohort.qi_levels.push_back(ladders[j].describe(k->levels[j]));
  }
  cohort.classes = k->classes;
  cohort.counts.suppressed = static_cast<std::int64_t>(k->suppressed_count);
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    if (k->suppressed[i]) continue;
    CohortSubject cs;
    cs.subject = candidates[i].subject;
    cs.study_pseudonym = s.key.study_pseudonym(study.id, cs.subject);
    cs.quasi_identifiers = k->keys[i];
    for (std::size_t j = 0; j < cs.quasi_identifiers.size(); ++j)
      cs.class_key += (j ? "|" : "") + cs.quasi_identifiers[j];
    cs.enrolled_at = candidates[i].enrolled_at;
    cs.area = candidates[i].area;
    cs.shift_days = s.key.shift_days(study.id, cs.subject);
    cohort.subjects.push_back(std::move(cs));
  }
  std::sort(cohort.subjects.begin(), cohort.subjects.end(),
            [](const CohortSubject& a, const CohortSubject& b) { return a.study_pseudonym < b.study_pseudonym; });
  cohort.counts.included = static_cast<std::int64_t>(cohort.subjects.size());
  return cohort;
}

Status for_each_row(const Sources& s, const Study& study, const CohortSubject& subject, core::TimePoint now,
                    const std::function<Status(const Row&)>& sink) {
  ExposureLookup exposure(s, study, subject.area);
  const auto shift = std::chrono::days(subject.shift_days);
  for (const auto& var : study.variables) {
    if (var.aggregation == Aggregation::kRaw) {
      storage::ObservationQuery q;
      q.subject = subject.subject;
      q.code = var.code;
      q.to = now;
      q.limit = 1000;
      for (;;) {
        auto page = s.observations.search(q);
        if (!page) return tl::unexpected(page.error());
        for (const auto& o : page->items) {
          const core::Reading& r = o.reading;
          Row row;
          row.code = var.code;
          row.aggregation = var.aggregation;
          row.time = r.time;
          row.shifted = r.time + shift;
          row.days_since_enrolment = days_between(subject.enrolled_at, r.time);
          if (r.value) row.values.push_back({r.code, r.unit, *r.value, *r.value, *r.value, 1});
          for (const auto& c : r.components) row.values.push_back({c.code, c.unit, c.value, c.value, c.value, 1});
          auto e = exposure.at_hour(hour_of(r.time));
          if (!e) return tl::unexpected(e.error());
          row.exposure = std::move(*e);
          if (auto st = sink(row); !st) return st;
        }
        if (!page->next) break;
        q.after = page->next;
      }
      continue;
    }
    storage::AggregateQuery q;
    q.subject = subject.subject;
    q.code = var.code;
    q.bucket = var.aggregation == Aggregation::kHourly ? storage::BucketSize::kHour : storage::BucketSize::kDay;
    q.to = now;
    auto buckets = s.observations.aggregate(q);
    if (!buckets) return tl::unexpected(buckets.error());
    for (const auto& b : *buckets) {
      Row row;
      row.code = var.code;
      row.aggregation = var.aggregation;
      row.time = b.start;
      row.shifted = b.start + shift;
      row.days_since_enrolment = days_between(subject.enrolled_at, b.start);
      row.count = b.count;
      for (const auto& slot : b.slots) row.values.push_back({slot.code, slot.unit, slot.mean, slot.min, slot.max, slot.count});
      auto e = var.aggregation == Aggregation::kHourly ? exposure.at_hour(b.start) : exposure.day_mean(b.start);
      if (!e) return tl::unexpected(e.error());
      row.exposure = std::move(*e);
      if (auto st = sink(row); !st) return st;
    }
  }
  return {};
}

}  // namespace telehub::research
