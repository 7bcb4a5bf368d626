// Issue [8/8] end to end with the real binary: `telehub research export` over a data directory
// built with the real stores writes a dataset the independent checker accepts, audits it,
// refuses a non-empty output directory and reports usage errors.
#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

#include "telehub/clinical/resource_store.h"
#include "telehub/privacy/audit_log.h"
#include "telehub/privacy/consent.h"
#include "telehub/privacy/identity_vault.h"
#include "telehub/privacy/pseudonym.h"
#include "telehub/storage/store.h"
#include "test_support.h"

using namespace telehub;

namespace {

const std::string kKekHex(64, 'a');

testing::CommandResult run(const std::string& args) {
  return testing::run_command("TELEHUB_KEK=" + kKekHex + " " + std::string(TELEHUB_BINARY_DIR) + "/apps/telehub " +
                              args);
}

core::TimePoint t(std::string_view text) { return *core::parse_rfc3339(text); }

std::string bsn(int n) {
  for (long base = 20000000L + n * 104729L;; ++base) {
    const std::string d = std::to_string(base).substr(0, 8);
    int sum = 0;
    for (int k = 0; k < 8; ++k) sum += (9 - k) * (d[static_cast<std::size_t>(k)] - '0');
    for (int last = 0; last <= 9; ++last)
      if ((sum - last) % 11 == 0) return d + std::to_string(last);
  }
}

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

// 12 consenting subjects with heart failure, one without consent (marker 177.77 in its data).
std::vector<std::string> populate(const std::filesystem::path& data) {
  std::vector<std::string> forbidden;
  std::filesystem::create_directories(data / "keys");
  auto kek = privacy::Kek::from_hex(kKekHex);
  REQUIRE(kek);
  auto vault = privacy::IdentityVault::open(data / "identity.db", data / "keys" / "vault.key", *kek);
  auto consent = privacy::ConsentStore::open(data / "consent.db");
  auto store = storage::open_sqlite_store({data / "telehub.db"}, core::system_clock());
  auto clinical = clinical::ResourceStore::open(data / "clinical.db", core::system_clock());
  auto ps = privacy::Pseudonymiser::open_wrapped_key_file(data / "keys" / "pseudonym.key", *kek);
  REQUIRE((vault && consent && store && clinical && ps));
  for (int n = 0; n < 13; ++n) {
    privacy::Person p;
    p.bsn = bsn(n);
    p.given_name = "Xandrijn" + std::to_string(n);
    p.family_name = "Opperdoezer" + std::to_string(n);
    p.birth_date = std::to_string(1950 + n) + "-06-15";
    p.sex = n % 2 ? "male" : "female";
    p.postcode = "3511 Q" + std::string(1, static_cast<char>('A' + n));
    auto reg = (*vault)->register_person(p);
    REQUIRE(reg);
    const auto pseudonym = (*ps)->subject(reg->subject_id);
    REQUIRE((*vault)->link_pseudonym(reg->subject_id, pseudonym.str()));
    storage::DeviceRecord d;
    d.id = "dev-cli-" + std::to_string(n);
    d.subject = pseudonym.str();
    d.wrapped_key = {1};
    d.enrolled_at = t("2026-03-01T10:00:00Z");
    REQUIRE((*store)->registry().add_device(d));
    for (const auto& s : {p.bsn, p.given_name, p.family_name, p.birth_date, p.postcode, pseudonym.str(), d.id,
                          reg->subject_id})
      forbidden.push_back(s);
    if (n < 12) {
      privacy::ConsentRecord c;
      c.subject = pseudonym.str();
      c.scope = "research:cli-hf";
      c.from = t("2026-01-01T00:00:00Z");
      c.source = "test";
      REQUIRE((*consent)->record(c));
    }
    clinical::ResourceWrite w;
    w.type = "Condition";
    w.json = R"({"resourceType":"Condition","subject":{"reference":"Patient/)" + pseudonym.str() +
             R"("},"code":{"coding":[{"system":"http://snomed.info/sct","code":"84114007"}]}})";
    REQUIRE((*clinical)->write(w));
    storage::MessageBatch b;
    b.device_id = d.id;
    b.sequence = 1;
    b.content_hash = d.id + "#1";
    b.received_at = d.enrolled_at;
    for (int i = 0; i < 5; ++i) {
      core::Reading r;
      r.device = d.id;
      r.code = "29463-7";
      r.value = n == 12 && i == 0 ? 177.77 : 70.0 + n + i;
      r.unit = "kg";
      r.time = d.enrolled_at + std::chrono::hours(24 * i + 1);
      b.readings.push_back(privacy::PseudonymousReading::bind(r, pseudonym));
    }
    REQUIRE((*store)->observations().append(std::move(b)));
  }
  return forbidden;
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE("telehub research export writes a checked, audited dataset and reports usage errors", "[e2e][research]") {
  testing::TempDir dir;
  const auto data = dir.path() / "data";
  const auto forbidden = populate(data);
  const auto study = dir.path() / "study.json";
  std::ofstream(study) << R"({"id":"cli-hf","inclusion":{"conditions":[{"code":"84114007"}]},
    "variables":[{"code":"29463-7","aggregation":"raw"}],
    "quasi_identifiers":{"age_band_years":5,"sex":true},"k":5})";
  const auto out = dir.path() / "out";
  const std::string common = " --data " + data.string() + " --study " + study.string();

  auto r = run("research export --format csv --out " + out.string() + common + " --user researcher-7");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("study cli-hf: 12 included, 0 suppressed (classes below k=5), 1 excluded for lack of consent, "
                      "0 not meeting the inclusion, of 13 subjects; 60 rows") != std::string::npos);
  for (const char* f : {"data.csv", "subjects.csv", "manifest.json"}) CHECK(std::filesystem::exists(out / f));
  CHECK(read_file(out / "manifest.json").find("\"included\": 12") != std::string::npos);

  // The independent checker accepts it.
  std::string expect = R"({"outputs":[{"name":"cli","dir":)" + quoted(out.string()) + R"(,"k":5}],"forbidden":[)";
  for (std::size_t i = 0; i < forbidden.size(); ++i) expect += (i ? "," : "") + quoted(forbidden[i]);
  expect += R"(],"markers":["177.77"]})";
  std::ofstream(dir.path() / "expect.json") << expect;
  auto checked = testing::run_command("node " + (testing::source_dir() / "tests" / "research" / "checker.mjs").string() +
                                      " " + (dir.path() / "expect.json").string());
  INFO(checked.output);
  CHECK(checked.exit_code == 0);

  // Audited, by the given user, naming no subject.
  {
    auto log = privacy::AuditLog::open(data / "audit.db");
    REQUIRE(log);
    auto recent = (*log)->recent(1);
    REQUIRE(recent);
    REQUIRE(recent->size() == 1);
    CHECK(recent->front().event_type == "research.export");
    CHECK(recent->front().user_id == "researcher-7");
    CHECK(recent->front().purpose == "research");
    CHECK(recent->front().subject.empty());
    CHECK(recent->front().query.find("included=12") != std::string::npos);
  }

  // A non-empty output directory is refused (exit 1); usage errors exit 2.
  auto again = run("research export --format csv --out " + out.string() + common);
  CHECK(again.exit_code == 1);
  CHECK(again.output.find("out_not_empty") != std::string::npos);
  CHECK(run("research").exit_code == 2);
  CHECK(run("research frobnicate").exit_code == 2);
  CHECK(run("research export --format csv --out " + (dir.path() / "x").string() + " --data " + data.string()).exit_code == 2);
  CHECK(run("research export --format xml --out " + (dir.path() / "x").string() + common).exit_code == 2);
  CHECK(run("research export --format csv" + common).exit_code == 2);
  CHECK(run("research export --format csv --bogus 1 --out " + (dir.path() / "x").string() + common).exit_code == 2);
  CHECK(run("research export --help").exit_code == 0);

  // A bad study file: exit 1, naming the member.
  const auto bad = dir.path() / "bad.json";
  std::ofstream(bad) << R"({"id":"cli-hf","variables":[{"code":"29463-7","aggregation":"weekly"}]})";
  auto refused = run("research export --format csv --out " + (dir.path() / "y").string() + " --data " + data.string() +
                     " --study " + bad.string());
  CHECK(refused.exit_code == 1);
  CHECK(refused.output.find("variables[0].aggregation") != std::string::npos);
  CHECK(!std::filesystem::exists(dir.path() / "y"));
}

TEST_CASE("telehub research query prints a suppressed aggregate table, and exports join exposures from telehub env import",
          "[e2e][research]") {
  testing::TempDir dir;
  const auto data = dir.path() / "data";
  const auto forbidden = populate(data);
  // Environment for area 3511 (every subject's home) over the readings' hours: pm25 = 10 + hour.
  std::string csv = "area,time,pm25\n";
  for (int day = 0; day < 6; ++day)
    for (int h = 0; h < 24; ++h) {
      const std::string dd = std::to_string(1 + day), hh = (h < 10 ? "0" : "") + std::to_string(h);
      csv += "3511,2026-03-0" + dd + "T" + hh + ":00:00Z," + std::to_string(10 + h) + "\n";
    }
  std::ofstream(dir.path() / "env.csv") << csv;
  auto imported = run("env import --data " + data.string() + " " + (dir.path() / "env.csv").string());
  INFO(imported.output);
  REQUIRE(imported.exit_code == 0);
  CHECK(imported.output.find("144 rows, 144 values stored (0 replaced), 1 areas") != std::string::npos);

  const auto study = dir.path() / "study.json";
  std::ofstream(study) << R"({"id":"cli-hf","inclusion":{"conditions":[{"code":"84114007"}]},
    "variables":[{"code":"29463-7","aggregation":"raw"}],"environment":["pm25"],
    "quasi_identifiers":{"age_band_years":5,"sex":true},"k":5})";
  const std::string common = " --data " + data.string() + " --study " + study.string();

  // The export joins the exposure of the reading's true hour: every reading is at 11:00 UTC
  // (enrolment 10:00 + 24 h * i + 1 h), so pm25 = 10 + 11; no row lacks it.
  auto exported = run("research export --format ndjson --out " + (dir.path() / "out").string() + common);
  INFO(exported.output);
  REQUIRE(exported.exit_code == 0);
  const std::string rows = read_file(dir.path() / "out" / "data.ndjson");
  INFO(rows.substr(0, 600));
  CHECK(rows.find("\"env_pm25\":21") != std::string::npos);
  CHECK(rows.find("\"env_pm25\":null") == std::string::npos);

  // The aggregate table: by sex, all periods; JSON by default, CSV on request.
  auto table = run("research query --code 29463-7 --group-by sex --period all" + common);
  INFO(table.output);
  REQUIRE(table.exit_code == 0);
  CHECK(table.output.find("\"min_subjects\":5") != std::string::npos);
  CHECK(table.output.find("177.77") == std::string::npos);  // the subject without consent
  for (const auto& s : forbidden) CHECK(table.output.find(s) == std::string::npos);
  std::ofstream(dir.path() / "table.json") << table.output;
  auto checked = testing::run_command("node " + (testing::source_dir() / "tests" / "research" / "aggregate_checker.mjs").string() +
                                      " " + (dir.path() / "table.json").string() + " 2>&1");
  INFO(checked.output);
  CHECK(checked.exit_code == 0);
  auto as_csv = run("research query --code 29463-7 --group-by sex --period all --format csv --min-subjects 7" + common);
  REQUIRE(as_csv.exit_code == 0);
  CHECK(as_csv.output.starts_with("group,period,subjects,readings,mean,min,max,p10,p25,p50,p75,p90\n"));
  // 6 women and 6 men: below 7, both groups suppressed, the total (12) shown.
  CHECK(as_csv.output.find("female,*,suppressed") != std::string::npos);
  CHECK(as_csv.output.find("*,*,12,60,") != std::string::npos);

  // Audited: one research.query record per query, with the parameters.
  auto audit = privacy::AuditLog::open(data / "audit.db");
  REQUIRE(audit);
  auto recent = (*audit)->recent(50);
  REQUIRE(recent);
  int queries = 0;
  for (const auto& r : *recent)
    if (r.event_type == "research.query" && r.objects == "Group/cli-hf" && r.query.starts_with("code=29463-7")) ++queries;
  CHECK(queries == 2);

  // Usage errors: exit 2 with a message.
  for (const std::string& bad : std::vector<std::string>{"research query --code 29463-7 --data x", "research query --study s.json",
                                 "research query --code x --period fortnight --study s.json",
                                 "research query --code x --format xml --study s.json"}) {
    INFO(bad);
    auto r = run(bad);
    CHECK(r.exit_code == 2);
    CHECK(r.output.find("telehub: ") != std::string::npos);
  }
  // A group-by the study does not keep: exit 1, named.
  auto region = run("research query --code 29463-7 --group-by region" + common);
  CHECK(region.exit_code == 1);
  CHECK(region.output.find("region") != std::string::npos);
}
