// Issue [7/8] end to end with the real binary: `telehub import` of two Synthea Bundles puts the
// Patients in the identity vault and everything else in <data>/clinical.db, audits each Patient,
// records care relations, is idempotent, and reports usage errors and failed files.
#include <catch2/catch.hpp>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "telehub/clinical/resource_store.h"
#include "telehub/privacy/audit_log.h"
#include "telehub/privacy/care_relations.h"
#include "test_support.h"

using namespace telehub;

namespace {

const std::string kKekHex(64, 'a');

testing::CommandResult run(const std::string& args) {
  return testing::run_command("TELEHUB_KEK=" + kKekHex + " " + std::string(TELEHUB_BINARY_DIR) + "/apps/telehub " +
                              args);
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> pseudonyms(const std::string& output) {
  std::vector<std::string> out;
  std::regex re("patient: Patient/([0-9a-f]{32})");
  for (auto it = std::sregex_iterator(output.begin(), output.end(), re); it != std::sregex_iterator(); ++it)
    out.push_back((*it)[1].str());
  return out;
}

}  // namespace

TEST_CASE("telehub import stores two Synthea Bundles by pseudonym, audited, idempotent", "[e2e][import]") {
  testing::TempDir dir;
  const auto data = dir.path() / "data";
  const auto synthea = testing::shared_dir() / "synthea";
  const std::string a = (synthea / "Laurie_McCullough_8a417ce8-b525-42ab-a2be-651291f73c8c.json").string();
  const std::string b = (synthea / "Martina_Murazik_9e4fc9b4-aaad-4bcf-a24a-d665f3aa99ec.json").string();

  auto first = run("import " + a + " " + b + " --data " + data.string() + " --organisation org-cardio");
  INFO(first.output);
  REQUIRE(first.exit_code == 0);
  CHECK(first.output.find("148 entries: 148 stored, 0 existing, 0 failed") != std::string::npos);
  CHECK(first.output.find("255 entries: 255 stored, 0 existing, 0 failed") != std::string::npos);
  const auto ps = pseudonyms(first.output);
  REQUIRE(ps.size() == 2);

  // The clinical store has the records by pseudonym; no Patient id or name.
  {
    auto store = clinical::ResourceStore::open(data / "clinical.db", core::system_clock());
    REQUIRE(store);
    for (const auto& p : ps) {
      auto page = (*store)->of_subject(p, {"Encounter"}, std::nullopt, "", 10);
      REQUIRE(page);
      CHECK(!page->resources.empty());
    }
  }
  const std::string bytes = read_file(data / "clinical.db") + read_file(data / "clinical.db-wal");
  for (const char* secret : {"McCullough", "Murazik", "8a417ce8-b525-42ab-a2be-651291f73c8c",
                             "9e4fc9b4-aaad-4bcf-a24a-d665f3aa99ec"})
    CHECK(bytes.find(secret) == std::string::npos);

  // Audited, and the care relations recorded.
  {
    auto log = privacy::AuditLog::open(data / "audit.db");
    REQUIRE(log);
    for (const auto& p : ps) {
      auto records = (*log)->for_subject(p);
      REQUIRE(records);
      std::set<std::string> events;
      for (const auto& r : *records) events.insert(r.event_type);
      CHECK(events.count("subject.register") == 1);
      CHECK(events.count("care.add") == 1);
    }
    auto care = privacy::CareRelations::open(data / "care.db");
    REQUIRE(care);
    for (const auto& p : ps) {
      auto active = (*care)->active(p, "org-cardio", core::system_clock().now());
      REQUIRE(active);
      CHECK(*active);
    }
  }

  // Again: nothing new, same pseudonyms.
  auto again = run("import " + a + " --data " + data.string());
  INFO(again.output);
  REQUIRE(again.exit_code == 0);
  CHECK(again.output.find("148 entries: 0 stored, 148 existing, 0 failed") != std::string::npos);
  CHECK(pseudonyms(again.output) == std::vector<std::string>{ps[0]});

  // A failed file: exit 1, the good one still imported; usage errors: exit 2.
  const auto bad = dir.path() / "bad.json";
  std::ofstream(bad) << R"({"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Observation","subject":{"reference":"urn:uuid:0000"}},"request":{"method":"POST","url":"Observation"}}]})";
  auto mixed = run("import " + bad.string() + " " + a + " --data " + data.string());
  INFO(mixed.output);
  CHECK(mixed.exit_code == 1);
  CHECK(mixed.output.find("entry[0].resource.subject.reference") != std::string::npos);
  CHECK(mixed.output.find("148 entries: 0 stored, 148 existing, 0 failed") != std::string::npos);
  CHECK(run("import --data " + data.string()).exit_code == 2);

  // GDPR erasure removes the imported records too (every version) and the vault document.
  auto erase = run("subject erase --patient " + ps[1] + " --yes --data " + data.string());
  INFO(erase.output);
  REQUIRE(erase.exit_code == 0);
  // 255 entries: the Patient (vault) and two without a subject (Organization, Practitioner) are not hers.
  CHECK(erase.output.find("clinical:     252 imported clinical record(s) deleted") != std::string::npos);
  {
    auto store = clinical::ResourceStore::open(data / "clinical.db", core::system_clock());
    REQUIRE(store);
    auto gone = (*store)->of_subject(ps[1], {}, std::nullopt, "", 10);
    REQUIRE(gone);
    CHECK(gone->resources.empty());
    auto kept = (*store)->of_subject(ps[0], {}, std::nullopt, "", 10);
    REQUIRE(kept);
    CHECK(!kept->resources.empty());
  }
  CHECK(run("import " + a + " --bogus x --data " + data.string()).exit_code == 2);
}
