// research: cohort (consent, inclusion, k-anonymity, per-study pseudonyms, date shifts) and the
// dataset export, confirmed by the independent checker (tests/research/checker.mjs), which reads
// only the output files.
#include <catch2/catch.hpp>

#include <fstream>
#include <set>
#include <sstream>

#include "research_fixture.h"
#include "telehub/research/export.h"
#include "telehub/research/study.h"

using namespace telehub;
using namespace telehub::research_test;

namespace {

constexpr const char* kNoConsentMarker = "181.11";
constexpr const char* kWithdrawnMarker = "173.37";

const std::string kHfStudy = R"({
  "id": "hf-2026",
  "title": "Heart failure at home, 2026",
  "inclusion": {"conditions": [{"system": "http://snomed.info/sct", "code": "84114007"}],
                "enrolled_from": "2026-01-01", "enrolled_to": "2026-03-31"},
  "variables": [{"code": "8867-4", "aggregation": "raw"},
                {"code": "29463-7", "aggregation": "daily"},
                {"code": "85354-9", "aggregation": "hourly"}],
  "environment": ["pm25", "no2"],
  "quasi_identifiers": {"age_band_years": 10, "sex": true, "region": "pc3"},
  "k": 5
})";

const std::string kBroadStudy = R"({
  "id": "env-broad",
  "consent_scope": "research",
  "variables": [{"code": "8867-4", "aggregation": "hourly"}],
  "environment": ["pm25"],
  "quasi_identifiers": {"age_band_years": 10, "sex": true, "region": "pc2"},
  "k": 11
})";

const core::TimePoint kNow = t("2026-07-01T00:00:00Z");

struct Population {
  std::vector<Person> hf;  // 30 included in the HF study (heart failure, enrolled in Q1, consent)
  Person no_consent, withdrawn, study_deny, copd1, copd2, early, outlier;
};

// 37 subjects: see the counts in the tests.
Population populate(ResearchData& d) {
  Population p;
  for (int i = 0; i < 30; ++i) {
    ResearchData::Spec s;
    s.birth_date = std::to_string(1947 + i % 20) + "-01-01";  // 60..79 at enrolment
    s.sex = i % 2 ? "male" : "female";
    s.area = kAreas[static_cast<std::size_t>(i % 3)];
    s.enrolled = t("2026-01-10T08:30:00Z") + std::chrono::days(i * 2);
    p.hf.push_back(d.add(s));
  }
  ResearchData::Spec s;
  s.birth_date = "1955-03-03";
  s.consent = ResearchData::Consent::kNone;
  s.marker = 181.11;
  p.no_consent = d.add(s);
  s.consent = ResearchData::Consent::kWithdrawn;
  s.marker = 173.37;
  p.withdrawn = d.add(s);
  s.marker = 0;
  s.consent = ResearchData::Consent::kStudyDeny;
  s.deny_study = "hf-2026";
  p.study_deny = d.add(s);
  s.consent = ResearchData::Consent::kResearch;
  s.condition = kCopd;
  p.copd1 = d.add(s);
  s.sex = "male";
  p.copd2 = d.add(s);
  s.condition = kHeartFailure;
  s.enrolled = t("2025-10-01T10:00:00Z");  // before the HF study's enrolment period
  p.early = d.add(s);
  s.enrolled = t("2026-02-20T10:00:00Z");
  s.birth_date = "1927-02-02";  // 98: alone in any class below "*"
  s.area = "1011";
  p.outlier = d.add(s);
  return p;
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

testing::CommandResult run_checker(const std::filesystem::path& dir, const std::string& expectations) {
  const auto file = dir / ("expect-" + std::to_string(std::hash<std::string>{}(expectations)) + ".json");
  std::ofstream(file) << expectations;
  return testing::run_command("node " + (testing::source_dir() / "tests" / "research" / "checker.mjs").string() + " " +
                              file.string());
}

struct Out {
  std::string name;
  std::filesystem::path dir;
  int k;
};

std::string expectations(const std::vector<Out>& outs, const std::vector<std::string>& forbidden,
                         const std::string& extra) {
  std::string e = "{\"outputs\":[";
  for (std::size_t i = 0; i < outs.size(); ++i)
    e += (i ? "," : "") + std::string("{\"name\":") + json_string(outs[i].name) + ",\"dir\":" +
         json_string(outs[i].dir.string()) + ",\"k\":" + std::to_string(outs[i].k) + "}";
  e += "],\"forbidden\":" + json_strings(forbidden);
  e += ",\"markers\":[\"" + std::string(kNoConsentMarker) + "\",\"" + kWithdrawnMarker + "\"]";
  e += R"(,"exposure":[{"column":"env_pm25","base":10,"per_hour":1,"per_region_digit":100,"missing_hours":[)" +
       std::to_string(kMissingHour) + "]}]";
  return e + extra + "}";
}

// An audit log whose every append fails, as a full or unwritable audit.db would.
class FailingAudit final : public privacy::AuditLog {
 public:
  Result<privacy::AuditRecord> append(privacy::AuditRecord) override {
    ++attempts;
    return core::fail(core::Code::kUnavailable, "audit_io", "cannot write the audit record");
  }
  Result<privacy::VerifyResult> verify(const std::optional<privacy::AuditHead>&) override { return privacy::VerifyResult{}; }
  Result<std::vector<privacy::AuditRecord>> for_subject(std::string_view) override { return std::vector<privacy::AuditRecord>{}; }
  Result<std::vector<privacy::AuditRecord>> recent(std::size_t) override { return std::vector<privacy::AuditRecord>{}; }
  Result<privacy::AuditHead> head() override { return privacy::AuditHead{}; }
  int attempts = 0;
};

research::ExportOptions options(const std::filesystem::path& out, research::Format f) {
  research::ExportOptions o;
  o.out_dir = out;
  o.format = f;
  o.now = kNow;
  o.user_id = "local:researcher";
  return o;
}

}  // namespace

TEST_CASE("the cohort keeps consented, included subjects, k-anonymous, with per-study pseudonyms", "[research][cohort]") {
  testing::TempDir tmp;
  ResearchData d(tmp.path() / "data");
  const Population pop = populate(d);
  auto key = research::ResearchKey::open_wrapped_key_file(d.dir() / "keys" / "research.key", d.kek());
  REQUIRE(key);
  const auto sources = d.sources(*key);
  auto hf = research::parse_study(kHfStudy);
  REQUIRE(hf);

  auto cohort = research::build_cohort(sources, *hf, kNow);
  REQUIRE(cohort);
  const auto& c = cohort->counts;
  CHECK(c.candidates == 37);
  CHECK(c.excluded_no_consent == 3);  // no consent, withdrawn, denied this study
  CHECK(c.excluded_inclusion == 3);   // two without heart failure, one enrolled before the period
  CHECK(c.suppressed == 1);           // the outlier
  CHECK(c.included == 30);
  CHECK(cohort->qi_names == std::vector<std::string>{"age_band", "sex", "region"});
  CHECK(cohort->qi_levels == std::vector<std::string>{"20 years", "kept", "pc3"});
  std::set<std::string> hub;
  for (const auto& s : cohort->subjects) {
    hub.insert(s.subject);
    CHECK(s.study_pseudonym.size() == 32);
    CHECK(s.study_pseudonym != s.subject);
    CHECK(std::abs(s.shift_days) >= 1);
    CHECK(std::abs(s.shift_days) <= 182);
    CHECK(s.class_key == s.quasi_identifiers[0] + "|" + s.quasi_identifiers[1] + "|" + s.quasi_identifiers[2]);
  }
  for (const auto& p : pop.hf) CHECK(hub.count(p.pseudonym) == 1);
  for (const auto* p : {&pop.no_consent, &pop.withdrawn, &pop.study_deny, &pop.copd1, &pop.copd2, &pop.early, &pop.outlier})
    CHECK(hub.count(p->pseudonym) == 0);
  for (const auto& cls : cohort->classes) CHECK(cls.size >= 5);

  SECTION("the same study again: the same pseudonyms and shifts; another study: none shared") {
    auto again = research::build_cohort(sources, *hf, kNow + std::chrono::hours(24 * 30));
    REQUIRE(again);
    REQUIRE(again->subjects.size() == cohort->subjects.size());
    for (std::size_t i = 0; i < again->subjects.size(); ++i) {
      CHECK(again->subjects[i].study_pseudonym == cohort->subjects[i].study_pseudonym);
      CHECK(again->subjects[i].shift_days == cohort->subjects[i].shift_days);
    }
    auto broad = research::parse_study(kBroadStudy);
    REQUIRE(broad);
    auto other = research::build_cohort(sources, *broad, kNow);
    REQUIRE(other);
    CHECK(other->counts.candidates == 37);
    CHECK(other->counts.excluded_no_consent == 2);  // the study deny is about hf-2026 only
    CHECK(other->counts.excluded_inclusion == 0);
    CHECK(other->counts.included + other->counts.suppressed == 35);
    for (const auto& cls : other->classes) CHECK(cls.size >= 11);
    std::set<std::string> first;
    for (const auto& s : cohort->subjects) first.insert(s.study_pseudonym);
    int shared_subjects = 0;
    for (const auto& s : other->subjects) {
      CHECK(first.count(s.study_pseudonym) == 0);
      shared_subjects += hub.count(s.subject) ? 1 : 0;
    }
    CHECK(shared_subjects >= 20);  // the same people, unlinkable
  }

  SECTION("rows: shifted by whole days (intervals and hour of day kept), exposure at the true area and hour") {
    const auto& s = cohort->subjects.front();
    std::vector<research::Row> rows;
    REQUIRE(research::for_each_row(sources, *hf, s, kNow, [&](const research::Row& r) -> Status {
      rows.push_back(r);
      return {};
    }));
    CHECK(rows.size() == 24 + 12 + 12);  // 24 heart rates, 12 daily weights, 12 hourly panels
    for (const auto& r : rows) {
      CHECK(r.shifted - r.time == std::chrono::days(s.shift_days));
      REQUIRE(r.exposure.size() == 2);
      CHECK(!r.exposure[1]);  // no no2 in the table
      const int hod = static_cast<int>((core::to_unix_millis(r.time) / 3'600'000) % 24);
      if (r.aggregation == research::Aggregation::kDaily) {
        REQUIRE(r.exposure[0]);
        double sum = 0;
        for (int h = 0; h < 24; ++h)
          if (h != kMissingHour) sum += pm25(s.area, h);
        CHECK(*r.exposure[0] == Approx(sum / 23));
      } else if (hod == kMissingHour) {
        CHECK(!r.exposure[0]);
      } else {
        REQUIRE(r.exposure[0]);
        CHECK(*r.exposure[0] == pm25(s.area, hod));
      }
      if (r.code == "85354-9") {
        REQUIRE(r.values.size() == 2);
        CHECK(r.values[0].code == "8480-6");
        CHECK(r.values[1].code == "8462-4");
      }
    }
  }
}

TEST_CASE("exports of two studies pass the independent checker: k, no identifiers, consent, unlinkable, exposure",
          "[research][export][checker]") {
  testing::TempDir tmp;
  ResearchData d(tmp.path() / "data");
  populate(d);
  auto key = research::ResearchKey::open_wrapped_key_file(d.dir() / "keys" / "research.key", d.kek());
  REQUIRE(key);
  const auto sources = d.sources(*key);
  auto hf = research::parse_study(kHfStudy);
  auto broad = research::parse_study(kBroadStudy);
  REQUIRE(hf);
  REQUIRE(broad);

  const auto a = tmp.path() / "hf-a";
  const auto a2 = tmp.path() / "hf-a2";
  const auto b = tmp.path() / "broad";
  auto ma = research::export_dataset(sources, *hf, d.audit(), options(a, research::Format::kCsv));
  REQUIRE(ma);
  CHECK(ma->counts.included == 30);
  CHECK(ma->rows == 30 * 48);
  CHECK(ma->risk.prosecutor_max == Approx(1.0 / 5));
  // A second export a month later (ndjson): the same pseudonyms.
  auto later = options(a2, research::Format::kNdjson);
  later.now = kNow + std::chrono::hours(24 * 30);
  auto ma2 = research::export_dataset(sources, *hf, d.audit(), later);
  REQUIRE(ma2);
  auto mb = research::export_dataset(sources, *broad, d.audit(), options(b, research::Format::kNdjson));
  REQUIRE(mb);
  CHECK(mb->k == 11);

  const std::string header = read_file(a / "data.csv").substr(0, read_file(a / "data.csv").find('\n'));
  CHECK(header ==
        "pseudonym,time,code,aggregation,n,29463-7,29463-7_min,29463-7_max,29463-7_unit,8462-4,8462-4_min,8462-4_max,"
        "8462-4_unit,8480-6,8480-6_min,8480-6_max,8480-6_unit,8867-4,8867-4_min,8867-4_max,8867-4_unit,env_pm25,env_no2");
  CHECK(read_file(a / "subjects.csv").rfind("pseudonym,age_band,sex,region\n", 0) == 0);

  auto result = run_checker(tmp.path(), expectations({{"a", a, 5}, {"a2", a2, 5}, {"b", b, 11}}, d.forbidden,
                                                     R"(,"same_study":[["a","a2"]],"different_studies":[["a","b"],["a2","b"]],"min_exposure_checked":1000)"));
  INFO(result.output);
  CHECK(result.exit_code == 0);
  CHECK(result.output.find("ok: 3 output(s)") != std::string::npos);

  // Each export is audited, without an identifier.
  auto records = d.audit().recent(10);
  REQUIRE(records);
  REQUIRE(records->size() == 3);
  CHECK((*records)[0].event_type == "research.export");
  CHECK((*records)[0].objects == "Study/hf-2026");
  CHECK((*records)[0].query.find("included=30 suppressed=1 excluded_no_consent=3 excluded_inclusion=3") != std::string::npos);
  CHECK((*records)[0].subject.empty());
  for (const auto& r : *records)
    for (const auto& f : d.forbidden) CHECK(privacy::canonical_form(r).find(f) == std::string::npos);
}

TEST_CASE("the checker fails on broken outputs, so it cannot pass vacuously", "[research][checker]") {
  testing::TempDir tmp;
  ResearchData d(tmp.path() / "data");
  populate(d);
  auto key = research::ResearchKey::open_wrapped_key_file(d.dir() / "keys" / "research.key", d.kek());
  REQUIRE(key);
  const auto sources = d.sources(*key);
  auto hf = research::parse_study(kHfStudy);
  REQUIRE(hf);
  const auto good = tmp.path() / "good";
  REQUIRE(research::export_dataset(sources, *hf, d.audit(), options(good, research::Format::kCsv)));
  REQUIRE(run_checker(tmp.path(), expectations({{"g", good, 5}}, d.forbidden, "")).exit_code == 0);

  auto broken_copy = [&](const std::string& name) {
    const auto dir = tmp.path() / name;
    std::filesystem::copy(good, dir, std::filesystem::copy_options::recursive);
    return dir;
  };
  SECTION("a BSN in the data") {
    const auto dir = broken_copy("bsn");
    std::ofstream(dir / "data.csv", std::ios::app) << "note," << make_bsn(4242) << "\n";
    auto r = run_checker(tmp.path(), expectations({{"x", dir, 5}}, {}, ""));
    INFO(r.output);
    CHECK(r.exit_code == 1);
    CHECK(r.output.find("11-test") != std::string::npos);
  }
  SECTION("a class below k in subjects.csv") {
    const auto dir = broken_copy("small-class");
    std::ofstream(dir / "subjects.csv", std::ios::app) << "0123456789abcdef0123456789abcdef,80-99,male,999\n";
    auto r = run_checker(tmp.path(), expectations({{"x", dir, 5}}, {}, ""));
    INFO(r.output);
    CHECK(r.exit_code == 1);
    CHECK(r.output.find("k-anonymity broken") != std::string::npos);
    CHECK(r.output.find("manifest included") != std::string::npos);
  }
  SECTION("an identifier, a withdrawn subject's value and a wrong exposure") {
    const auto dir = broken_copy("leak");
    std::string data = read_file(dir / "data.csv");
    const auto first_row = data.find('\n') + 1;
    const auto eol = data.find('\n', first_row);
    std::string line = data.substr(first_row, eol - first_row);
    // The last two fields are env_pm25 and env_no2: a wrong exposure and a vault value.
    auto cut = line.rfind(',');
    cut = line.rfind(',', cut - 1);
    line = line.substr(0, cut) + ",9999," + d.forbidden.front();
    data = data.substr(0, first_row) + line + data.substr(eol);
    std::ofstream(dir / "data.csv", std::ios::trunc) << data;
    std::ofstream(dir / "extra.txt") << "value 173.37\n";
    auto r = run_checker(tmp.path(), expectations({{"x", dir, 5}}, d.forbidden, ""));
    INFO(r.output);
    CHECK(r.exit_code == 1);
    CHECK(r.output.find("forbidden identifier") != std::string::npos);
    CHECK(r.output.find("marker value 173.37") != std::string::npos);
    CHECK(r.output.find("env_pm25") != std::string::npos);
  }
  SECTION("two studies sharing pseudonyms") {
    const auto dir = broken_copy("same");
    auto r = run_checker(tmp.path(), expectations({{"g", good, 5}, {"x", dir, 5}}, {}, R"(,"different_studies":[["g","x"]])"));
    INFO(r.output);
    CHECK(r.exit_code == 1);
    CHECK(r.output.find("linkable") != std::string::npos);
  }
}

TEST_CASE("relative dates, the output directory rule, and no export without its audit record", "[research][export]") {
  testing::TempDir tmp;
  ResearchData d(tmp.path() / "data");
  populate(d);
  auto key = research::ResearchKey::open_wrapped_key_file(d.dir() / "keys" / "research.key", d.kek());
  REQUIRE(key);
  const auto sources = d.sources(*key);
  std::string text = kHfStudy;
  text.replace(text.find("\"k\": 5"), 6, "\"k\": 5, \"dates\": \"relative\"");
  auto study = research::parse_study(text);
  REQUIRE(study);

  const auto rel = tmp.path() / "rel";
  REQUIRE(research::export_dataset(sources, *study, d.audit(), options(rel, research::Format::kCsv)));
  const std::string data = read_file(rel / "data.csv");
  CHECK(data.rfind("pseudonym,day,code,", 0) == 0);
  CHECK(data.find("2026-") == std::string::npos);  // no date at all
  // Day 0 holds readings from before the enrolment time of day: negative offsets.
  CHECK(data.find(",-0.") != std::string::npos);
  auto checked = run_checker(tmp.path(), expectations({{"r", rel, 5}}, d.forbidden, ""));
  INFO(checked.output);
  CHECK(checked.exit_code == 0);

  // An existing, non-empty directory is refused; an empty one is used.
  auto again = research::export_dataset(sources, *study, d.audit(), options(rel, research::Format::kCsv));
  REQUIRE(!again);
  CHECK(again.error().reason == "out_not_empty");
  const auto empty = tmp.path() / "empty";
  std::filesystem::create_directory(empty);
  CHECK(research::export_dataset(sources, *study, d.audit(), options(empty, research::Format::kNdjson)));
  CHECK(std::filesystem::exists(empty / "data.ndjson"));

  // No audit, no export: when the audit record cannot be written nothing is published.
  FailingAudit failing;
  const auto out = tmp.path() / "unaudited";
  auto refused = research::export_dataset(sources, *study, failing, options(out, research::Format::kCsv));
  REQUIRE(!refused);
  CHECK(refused.error().reason == "audit_io");
  CHECK(failing.attempts == 1);
  CHECK(!std::filesystem::exists(out));
  for (const auto& e : std::filesystem::directory_iterator(tmp.path()))
    CHECK(e.path().filename().string().find(".partial-") == std::string::npos);
}
