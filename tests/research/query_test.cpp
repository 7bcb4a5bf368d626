// research: aggregate queries over a study's cohort and the study's FHIR dataset (the research
// Bulk Data export), on real stores. Tables go through the independent aggregate checker, FHIR
// resources through fhir-validate; neither carries an identifier or a withdrawn subject's value.
#include <catch2/catch.hpp>

#include <fstream>
#include <set>

#include <rapidjson/document.h>

#include "research_fixture.h"
#include "telehub/research/query.h"
#include "telehub/research/research_key.h"

using namespace telehub;
using namespace telehub::research_test;

namespace {

const std::string kStudy = R"({
  "id": "hf-agg",
  "inclusion": {"conditions": [{"system": "http://snomed.info/sct", "code": "84114007"}]},
  "variables": [{"code": "8867-4", "aggregation": "raw"}, {"code": "85354-9", "aggregation": "raw"},
                {"code": "29463-7", "aggregation": "daily"}],
  "quasi_identifiers": {"age_band_years": 10, "sex": true, "region": "pc2"},
  "k": 5
})";

constexpr double kWithdrawnMarker = 173.37;

struct Fixture {
  testing::TempDir dir;
  ResearchData data{dir.path()};
  research::ResearchKey key = *research::ResearchKey::from_key(core::Bytes(32, 7));
  research::Study study = *research::parse_study(kStudy);
  const core::TimePoint now = t("2026-07-01T00:00:00Z");

  Fixture() {
    // 24 consented heart-failure subjects in three areas, and one who withdrew (with a marker
    // value no table may show).
    for (int i = 0; i < 24; ++i) {
      ResearchData::Spec s;
      s.birth_date = std::to_string(1950 + i % 12) + "-06-01";
      s.sex = i % 3 ? "female" : "male";
      s.area = kAreas[static_cast<std::size_t>(i % 3)];
      s.enrolled = t("2026-02-01T08:00:00Z") + std::chrono::days(i * 3);
      data.add(s);
    }
    ResearchData::Spec w;
    w.consent = ResearchData::Consent::kWithdrawn;
    w.marker = kWithdrawnMarker;
    data.add(w);
  }
  research::Sources sources() { return data.sources(key); }
};

std::string table_file(const research::AggregateTable& table, const testing::TempDir& dir, const std::string& name) {
  const auto file = dir.path() / (name + ".json");
  std::ofstream(file) << research::to_json(table);
  return file.string();
}

}  // namespace

TEST_CASE("aggregate queries of a study: grouped by its quasi-identifiers, per month, suppressed, checked independently",
          "[research][query]") {
  Fixture f;
  const auto sources = f.sources();
  auto cohort = research::build_cohort(sources, f.study, f.now);
  REQUIRE(cohort);
  REQUIRE(cohort->counts.included > 0);

  research::StudyQuery q;
  q.code = "8867-4";
  q.group_by = {"sex"};
  q.period = research::Period::kMonth;
  auto table = research::aggregate_study(sources, f.study, q, f.now);
  REQUIRE(table);
  CHECK(table->min_subjects == 5);
  CHECK(table->periods == std::vector<std::string>{"2026-02", "2026-03", "2026-04"});
  const auto& grand = table->at(table->groups.size(), table->periods.size());
  CHECK_FALSE(grand.suppressed);
  CHECK(grand.subjects == cohort->counts.included);
  CHECK(grand.max < kWithdrawnMarker);  // the withdrawn subject is not in it
  for (const auto& c : table->cells)
    if (!c.suppressed) CHECK((c.subjects == 0 || c.subjects >= 5));

  // A finer table: age band x sex x region per week, with a higher threshold: many small cells,
  // so suppression (primary and complementary) is exercised.
  research::StudyQuery fine;
  fine.code = "8480-6";  // the systolic member of the blood-pressure panel
  fine.group_by = {"age_band", "sex", "region"};
  fine.period = research::Period::kWeek;
  fine.min_subjects = 6;
  auto fine_table = research::aggregate_study(sources, f.study, fine, f.now);
  REQUIRE(fine_table);
  CHECK(fine_table->min_subjects == 6);
  std::size_t suppressed = 0;
  for (const auto& c : fine_table->cells) suppressed += c.suppressed;
  CHECK(suppressed > 0);

  // The independent checker on both tables.
  auto checked = testing::run_command("node " + (testing::source_dir() / "tests" / "research" / "aggregate_checker.mjs").string() +
                                      " " + table_file(*table, f.dir, "month") + " " + table_file(*fine_table, f.dir, "week") +
                                      " 2>&1");
  INFO(checked.output);
  CHECK(checked.exit_code == 0);
  // No identifier in the published tables.
  for (const auto* t : {&*table, &*fine_table}) {
    const std::string json = research::to_json(*t);
    for (const auto& s : f.data.forbidden) {
      INFO(s);
      CHECK(json.find(s) == std::string::npos);
    }
  }

  // A threshold below k is raised to k.
  q.min_subjects = 2;
  CHECK(research::aggregate_study(sources, f.study, q, f.now)->min_subjects == 5);

  // Refusals: a code the study does not have, a quasi-identifier it does not keep.
  research::StudyQuery other;
  other.code = "59408-5";
  auto refused = research::aggregate_study(sources, f.study, other, f.now);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().reason == "bad_query");
  other.code = "8867-4";
  other.group_by = {"postcode"};
  refused = research::aggregate_study(sources, f.study, other, f.now);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().message.find("postcode") != std::string::npos);

  // Query parameters as the HTTP route passes them.
  auto parsed = research::parse_study_query({{"code", "8867-4"}, {"group-by", "sex,age_band"}, {"period", "week"},
                                             {"percentiles", "50,95"}, {"min-subjects", "7"}});
  REQUIRE(parsed);
  CHECK(parsed->group_by == std::vector<std::string>{"sex", "age_band"});
  CHECK(parsed->period == research::Period::kWeek);
  CHECK(parsed->percentiles == std::vector<double>{50, 95});
  CHECK(parsed->min_subjects == 7);
  CHECK_FALSE(research::parse_study_query({{"group-by", "sex"}}));                   // no code
  CHECK_FALSE(research::parse_study_query({{"code", "x"}, {"code", "y"}}));          // twice
  CHECK_FALSE(research::parse_study_query({{"code", "x"}, {"percentiles", "150"}}));  // out of range
  CHECK_FALSE(research::parse_study_query({{"code", "x"}, {"min-subjects", "1"}}));
  CHECK_FALSE(research::parse_study_query({{"code", "x"}, {"subject", "y"}}));       // unknown
}

TEST_CASE("the FHIR dataset of a study: pseudonymised Patients and Observations that validate and carry no identifier",
          "[research][query]") {
  Fixture f;
  const auto sources = f.sources();
  auto cohort = research::build_cohort(sources, f.study, f.now);
  REQUIRE(cohort);
  std::vector<std::string> patients, observations;
  auto status = research::write_fhir_dataset(sources, f.study, f.now, {}, [&](std::string_view type, std::string_view json) -> Status {
    (type == "Patient" ? patients : observations).emplace_back(json);
    return {};
  });
  REQUIRE(status);
  CHECK(static_cast<std::int64_t>(patients.size()) == cohort->counts.included);
  CHECK(observations.size() > patients.size() * 12);

  // Patient ids are the study pseudonyms; Observations refer to them; no hub pseudonym, no
  // vault value, no device id or serial anywhere; the withdrawn subject's marker is absent.
  std::set<std::string> ids;
  for (const auto& s : cohort->subjects) ids.insert(s.study_pseudonym);
  for (const auto& p : patients) {
    rapidjson::Document d;
    d.Parse(p.c_str());
    REQUIRE_FALSE(d.HasParseError());
    CHECK(ids.count(d["id"].GetString()) == 1);
  }
  std::size_t days = 0;
  for (const auto& o : observations) {
    rapidjson::Document d;
    d.Parse(o.c_str());
    REQUIRE_FALSE(d.HasParseError());
    const std::string ref = d["subject"]["reference"].GetString();
    CHECK(ids.count(ref.substr(8)) == 1);
    if (d.HasMember("effectivePeriod")) ++days;
  }
  CHECK(days > 0);  // the daily weight
  std::string all;
  for (const auto& v : {patients, observations})
    for (const auto& line : v) all += line + "\n";
  for (const auto& s : f.data.forbidden) {
    INFO(s);
    CHECK(all.find(s) == std::string::npos);
  }
  CHECK(all.find("173.37") == std::string::npos);

  // Only Patients when asked; unknown types refused.
  std::size_t n = 0;
  REQUIRE(research::write_fhir_dataset(sources, f.study, f.now, {"Patient"}, [&](std::string_view type, std::string_view) -> Status {
    CHECK(type == "Patient");
    ++n;
    return {};
  }));
  CHECK(n == patients.size());
  CHECK_FALSE(research::write_fhir_dataset(sources, f.study, f.now, {"Condition"},
                                           [](std::string_view, std::string_view) -> Status { return {}; }));

  // The validator: every Patient and a sample of each kind of Observation.
  std::vector<std::string> sample(patients.begin(), patients.end());
  for (std::size_t i = 0; i < observations.size(); i += 17) sample.push_back(observations[i]);
  auto validated = testing::fhir_validate(sample);
  INFO(validated.output.substr(0, 3000));
  CHECK(validated.exit_code == 0);
}
