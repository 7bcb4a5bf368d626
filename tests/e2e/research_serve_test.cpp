// Issue [8/8] end to end: the research role against the real `telehub serve` over HTTP on
// loopback — the study list, an aggregate table (checked by the independent aggregate
// checker), and a pseudonymised Bulk Data export of a study (Group/<study>/$export), whose
// NDJSON passes fhir-validate and holds no identifier. The research role reads no patient
// route, other roles no research route, and every research access is in the audit log.
#include <catch2/catch.hpp>

#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <rapidjson/document.h>

#include "../research/research_fixture.h"
#include "serve_process.h"
#include "telehub/privacy/audit_log.h"
#include "test_support.h"

using namespace telehub;
using namespace telehub::research_test;

namespace {

std::string bin() { return std::string(TELEHUB_BINARY_DIR) + "/apps/telehub"; }

const std::string kStudy = R"({
  "id": "hf-serve",
  "inclusion": {"conditions": [{"system": "http://snomed.info/sct", "code": "84114007"}]},
  "variables": [{"code": "8867-4", "aggregation": "raw"}, {"code": "29463-7", "aggregation": "daily"}],
  "quasi_identifiers": {"age_band_years": 10, "sex": true, "region": "pc2"},
  "k": 5
})";

struct Http {
  int status = 0;
  std::string headers;
  std::string body;
};

Http curl(const std::string& args) {
  auto r = testing::run_command("curl -s -i --max-time 30 " + args);
  Http h;
  const auto split = r.output.find("\r\n\r\n");
  h.headers = r.output.substr(0, split);
  h.body = split == std::string::npos ? "" : r.output.substr(split + 4);
  std::smatch m;
  if (std::regex_search(h.headers, m, std::regex("^HTTP/1.1 ([0-9]{3})"))) h.status = std::stoi(m[1]);
  return h;
}

std::string header(const Http& h, const std::string& name) {
  std::smatch m;
  if (std::regex_search(h.headers, m, std::regex(name + ": ([^\r\n]+)", std::regex::icase))) return m[1];
  return "";
}

std::string token(const std::filesystem::path& data, const std::string& name, const std::string& role) {
  auto r = testing::run_command("TELEHUB_KEK=" + kKekHex + " " + bin() + " token create --data " + data.string() + " --name " +
                                name + " --role " + role + " --scopes system/Observation.rs 2>&1");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  return r.output.substr(0, r.output.find('\n'));
}

}  // namespace

TEST_CASE("the research role gets study aggregates and a pseudonymised study export from telehub serve, audited",
          "[e2e][research]") {
  testing::TempDir dir;
  const auto data = dir.path() / "data";
  std::vector<std::string> forbidden;
  {
    ResearchData d(data);
    for (int i = 0; i < 20; ++i) {
      ResearchData::Spec s;
      s.birth_date = std::to_string(1950 + i % 8) + "-06-01";
      s.sex = i % 2 ? "female" : "male";
      s.area = kAreas[static_cast<std::size_t>(i % 3)];
      s.enrolled = t("2026-02-01T08:00:00Z") + std::chrono::days(i);
      d.add(s);
    }
    ResearchData::Spec w;
    w.consent = ResearchData::Consent::kWithdrawn;
    w.marker = 173.37;
    d.add(w);
    forbidden = d.forbidden;
    d.close();
  }
  std::filesystem::create_directories(data / "studies");
  std::ofstream(data / "studies" / "hf-serve.json") << kStudy;
  const std::string researcher = token(data, "lab-1", "research");
  const std::string operator_token = token(data, "ops-1", "operator");

  testing::ServeProcess serve(bin(), kKekHex, data, dir.path() / "serve.log", {"--insecure-http"});
  INFO(serve.log());
  REQUIRE(serve.base().rfind("http://127.0.0.1:", 0) == 0);
  const std::string base = serve.base();
  const std::string origin = base.substr(0, base.size() - 5);
  const std::string as_researcher = "-H 'Authorization: Bearer " + researcher + "' ";

  // The study list and an aggregate table.
  auto studies = curl(as_researcher + origin + "/research/studies");
  CHECK(studies.status == 200);
  CHECK(studies.body == R"({"studies":["hf-serve"]})");
  auto table = curl(as_researcher + "'" + origin + "/research/studies/hf-serve/aggregate?code=8867-4&group-by=sex&period=week'");
  INFO(table.body.substr(0, 1000));
  REQUIRE(table.status == 200);
  CHECK(header(table, "Content-Type").starts_with("application/json"));
  std::ofstream(dir.path() / "table.json") << table.body;
  auto checked = testing::run_command("node " + (testing::source_dir() / "tests" / "research" / "aggregate_checker.mjs").string() +
                                      " " + (dir.path() / "table.json").string() + " 2>&1");
  INFO(checked.output);
  CHECK(checked.exit_code == 0);
  CHECK(table.body.find("\"suppressed\"") != std::string::npos);  // small weekly cells exist
  CHECK(curl(as_researcher + "'" + origin + "/research/studies/hf-serve/aggregate?code=8867-4&group-by=postcode'").status == 400);
  CHECK(curl(as_researcher + "'" + origin + "/research/studies/nope/aggregate?code=8867-4'").status == 404);

  // The study as a Bulk Data export.
  auto kick = curl(as_researcher + "-H 'Prefer: respond-async' '" + base + "/Group/hf-serve/$export'");
  INFO(kick.body);
  REQUIRE(kick.status == 202);
  const std::string status_url = header(kick, "Content-Location");
  REQUIRE_FALSE(status_url.empty());
  Http done;
  for (int i = 0; i < 200; ++i) {
    done = curl(as_researcher + "'" + status_url + "'");
    if (done.status != 202) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  INFO(done.body);
  REQUIRE(done.status == 200);
  rapidjson::Document manifest;
  manifest.Parse(done.body.c_str());
  REQUIRE_FALSE(manifest.HasParseError());
  std::map<std::string, std::int64_t> counts;
  std::string all;
  std::vector<std::string> sample;
  for (const auto& o : manifest["output"].GetArray()) {
    const std::string type = o["type"].GetString();
    counts[type] = o["count"].GetInt64();
    auto file = curl(as_researcher + "'" + std::string(o["url"].GetString()) + "'");
    REQUIRE(file.status == 200);
    CHECK(header(file, "Content-Type").starts_with("application/fhir+ndjson"));
    all += file.body;
    std::istringstream lines(file.body);
    int n = 0;
    for (std::string line; std::getline(lines, line);)
      if (n++ % 25 == 0) sample.push_back(line);
  }
  CHECK(counts["Patient"] == 20);
  CHECK(counts["Observation"] > 20 * 12);
  for (const auto& s : forbidden) {
    INFO(s);
    CHECK(all.find(s) == std::string::npos);
  }
  CHECK(all.find("173.37") == std::string::npos);
  auto validated = testing::fhir_validate(sample);
  INFO(validated.output.substr(0, 3000));
  CHECK(validated.exit_code == 0);

  // The research role reads no patient route and starts no identified export; other roles no
  // research route.
  CHECK(curl(as_researcher + base + "/Observation?patient=0123456789abcdef0123456789abcdef").status == 403);
  CHECK(curl(as_researcher + "-H 'Prefer: respond-async' '" + base + "/$export'").status == 403);
  CHECK(curl("-H 'Authorization: Bearer " + operator_token + "' " + origin + "/research/studies").status == 403);
  CHECK(curl(origin + "/research/studies").status == 401);
  CHECK(serve.stop() == 0);

  // Every research access is in the audit log, by its user, with the study.
  auto audit = privacy::AuditLog::open(data / "audit.db");
  REQUIRE(audit);
  auto recent = (*audit)->recent(200);
  REQUIRE(recent);
  int queries = 0, exports = 0, refused = 0;
  for (const auto& r : *recent) {
    if (r.event_type == "research.query" && r.user_id == "lab-1" && r.outcome == "success") ++queries;
    if (r.event_type == "research.export" && r.user_id == "lab-1" && r.objects == "Group/hf-serve") ++exports;
    if (r.event_type == "research.query" && r.outcome == "denied") ++refused;
  }
  CHECK(queries >= 2);  // the list and the table
  CHECK(exports == 1);
  CHECK(refused >= 2);  // the unknown study, the operator (and the anonymous request)
}
