// Issue [5/8] end to end with the real binaries: a demo run (serve + simulate, whose patients
// are registered in the identity vault) leaves no identifier in the measurement store or in
// the vault file; the subject, audit and consent commands; the audit log catches tampering;
// no audit, no access.
#include <catch2/catch.hpp>

#include <sqlite3.h>
#include <sys/stat.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "telehub/privacy/identity_vault.h"
#include "telehub/privacy/keystore.h"
#include "telehub/storage/store.h"
#include "test_support.h"

using namespace telehub;
using namespace std::chrono_literals;

namespace {

const std::string kKekHex(64, 'a');

std::string telehub_cmd(const std::string& args) {
  return "TELEHUB_KEK=" + kKekHex + " " + std::string(TELEHUB_BINARY_DIR) + "/apps/telehub " + args;
}

testing::CommandResult run(const std::string& args) { return testing::run_command(telehub_cmd(args)); }

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool passes_11_test(const std::string& d) {
  int sum = 0;
  for (int k = 0; k < 8; ++k) sum += (9 - k) * (d[k] - '0');
  sum -= d[8] - '0';
  return d != "000000000" && sum % 11 == 0;
}

// 9-digit numbers passing the 11-test that stand alone (no digit or letter right before or
// after), as a BSN would in any text; runs of digits inside hex strings or longer numbers are
// not BSNs.
std::vector<std::string> bsn_like(const std::string& bytes) {
  std::vector<std::string> out;
  auto alnum = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
  for (std::size_t i = 0; i + 9 <= bytes.size(); ++i) {
    if (i > 0 && alnum(bytes[i - 1])) continue;
    bool digits = true;
    for (std::size_t k = 0; k < 9 && digits; ++k) digits = std::isdigit(static_cast<unsigned char>(bytes[i + k])) != 0;
    if (!digits) continue;
    if (i + 9 < bytes.size() && alnum(bytes[i + 9])) continue;
    const std::string d = bytes.substr(i, 9);
    if (passes_11_test(d)) out.push_back(d);
  }
  return out;
}

std::string field(const std::string& output, const std::string& label) {
  std::smatch m;
  if (!std::regex_search(output, m, std::regex(label + R"(\s+(\S+))"))) return {};
  return m[1].str();
}

}  // namespace

TEST_CASE("after a demo run no vault identifier and no BSN is in the measurement store, and none in clear in the vault",
          "[e2e][privacy]") {
  testing::TempDir dir;
  const auto data = dir.path() / "data";
  // The demo: serve with its embedded broker (in the demo's development mode, plain HTTP on
  // loopback with the token-less care role), then simulated patients (registered in the vault).
  const std::string serve = telehub_cmd("serve --data " + data.string() + " --http-port 0 --insecure-http --care-local");
  auto server = testing::run_command("(" + serve + " > " + (dir.path() / "serve.log").string() + " 2>&1 & echo $! > " +
                                     (dir.path() / "serve.pid").string() + ")");
  REQUIRE(server.exit_code == 0);
  for (int i = 0; i < 200 && read_file(dir.path() / "serve.log").find("telehub: serving") == std::string::npos; ++i)
    std::this_thread::sleep_for(100ms);
  REQUIRE(read_file(dir.path() / "serve.log").find("telehub: serving") != std::string::npos);
  auto sim = run("simulate --data " + data.string() + " --patients 4 --history-hours 3 --duration-s 2 --interval-ms 500");
  INFO(sim.output);
  CHECK(sim.exit_code == 0);
  std::this_thread::sleep_for(1s);
  testing::run_command("kill -TERM $(cat " + (dir.path() / "serve.pid").string() + ")");
  for (int i = 0; i < 100 && testing::run_command("kill -0 $(cat " + (dir.path() / "serve.pid").string() + ") 2>/dev/null").exit_code == 0; ++i)
    std::this_thread::sleep_for(100ms);

  // Every identifier the vault holds, read through the vault itself.
  auto kek = privacy::Kek::from_hex(kKekHex);
  REQUIRE(kek);
  std::vector<std::string> identifiers;
  {
    auto vault = privacy::IdentityVault::open(data / "identity.db", data / "keys" / "vault.key", *kek);
    REQUIRE(vault);
    auto ids = (*vault)->subject_ids();
    REQUIRE(ids);
    REQUIRE(ids->size() == 4);
    for (const auto& id : *ids) {
      auto person = (*vault)->get(id);
      REQUIRE(person);
      REQUIRE(person->has_value());
      const auto& p = **person;
      CHECK(privacy::valid_bsn(p.bsn));
      for (const auto* s : {&p.bsn, &p.given_name, &p.family_name, &p.birth_date, &p.address_line, &p.postcode, &p.phone,
                            &p.email})
        if (!s->empty()) identifiers.push_back(*s);
      for (const auto& rn : p.record_numbers) identifiers.push_back(rn.value);
    }
  }
  REQUIRE(identifiers.size() >= 4 * 9);

  // The measurement store (database and WAL) and the vault file.
  std::string store;
  for (const char* suffix : {"", "-wal"}) store += read_file(data / (std::string("telehub.db") + suffix));
  REQUIRE(store.size() > 4096);
  std::string vault;
  for (const char* suffix : {"", "-wal"}) vault += read_file(data / (std::string("identity.db") + suffix));
  REQUIRE(vault.size() > 0);
  for (const auto& id : identifiers) {
    INFO("identifier " << id);
    CHECK(store.find(id) == std::string::npos);
    CHECK(vault.find(id) == std::string::npos);
  }
  CHECK(bsn_like(store).empty());
  CHECK(bsn_like(vault).empty());
  // The readings did arrive (the scan looked at a store with data in it).
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2((data / "telehub.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT coalesce(sum(readings),0) FROM messages", -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  CHECK(sqlite3_column_int64(st, 0) > 100);
  sqlite3_finalize(st);
  sqlite3_close(db);
}

TEST_CASE("subject register, show and erase, audit show and verify, consent grant and withdraw, on the command line",
          "[e2e][privacy][cli]") {
  testing::TempDir dir;
  const std::string d = " --data " + (dir.path() / "data").string();

  auto bad = run("subject register --bsn 123456789 --family Test" + d);
  CHECK(bad.exit_code == 2);
  CHECK(bad.output.find("11-test") != std::string::npos);
  CHECK(bad.output.find("123456789") == std::string::npos);

  auto reg = run("subject register --bsn 111222333 --given Anna --family Jansen --birth-date 1951-04-12 "
                 "--record 'https://hospital.example.org/mrn|MRN-42' --email anna.jansen@example.org" + d);
  INFO(reg.output);
  REQUIRE(reg.exit_code == 0);
  const std::string subject = field(reg.output, "registered:");
  const std::string patient = field(reg.output, "patient:").substr(std::string("Patient/").size());
  REQUIRE(subject.starts_with("s-"));
  REQUIRE(patient.size() == 32);
  auto again = run("subject register --record 'https://hospital.example.org/mrn|MRN-42' --phone +31612345678" + d);
  CHECK(again.output.find("updated:") != std::string::npos);
  CHECK(field(again.output, "updated:") == subject);

  auto enrol = run("device enroll --bsn 111222333 --broker tcp://127.0.0.1:1" + d);
  INFO(enrol.output);
  CHECK(enrol.exit_code == 0);
  CHECK(enrol.output.find("Patient/" + patient) != std::string::npos);

  auto show = run("subject show --patient " + patient + d);
  CHECK(show.exit_code == 0);
  CHECK(show.output.find("Jansen") != std::string::npos);
  CHECK(show.output.find("+31612345678") != std::string::npos);

  CHECK(run("consent grant --patient " + patient + " --scope research:heart-2027" + d).exit_code == 0);
  auto consents = run("consent show --patient " + patient + d);
  CHECK(consents.output.find("permit research:heart-2027") != std::string::npos);
  auto withdraw = run("consent withdraw --patient " + patient + " --scope research" + d);
  CHECK(withdraw.exit_code == 0);
  CHECK(withdraw.output.find("withdrawn: 1") != std::string::npos);

  // Who looked: registration, the re-identification, the consent changes.
  auto trail = run("audit show --patient " + patient + d);
  INFO(trail.output);
  CHECK(trail.output.find("subject.register C") != std::string::npos);
  CHECK(trail.output.find("patient.read R success") != std::string::npos);
  CHECK(trail.output.find("consent.withdraw U") != std::string::npos);
  auto verify = run("audit verify" + d);
  CHECK(verify.exit_code == 0);
  CHECK(verify.output.find("intact") != std::string::npos);
  auto head = run("audit head" + d);
  const std::string anchor = head.output.substr(0, head.output.find('\n'));

  // Erasure: the person is gone from the vault, the pseudonym no longer resolves.
  CHECK(run("subject erase --patient " + patient + d).exit_code == 2);  // needs --yes
  auto erase = run("subject erase --patient " + patient + " --yes" + d);
  INFO(erase.output);
  CHECK(erase.exit_code == 0);
  CHECK(erase.output.find("devices:      1 revoked") != std::string::npos);
  CHECK(run("subject show --bsn 111222333" + d).exit_code == 1);
  const std::string vault = read_file(dir.path() / "data" / "identity.db") + read_file(dir.path() / "data" / "identity.db-wal");
  CHECK(vault.find("Jansen") == std::string::npos);
  auto after = run("audit show --patient " + patient + d);
  CHECK(after.output.find("subject.erase D") != std::string::npos);
  CHECK(run("audit verify --anchor " + anchor + d).exit_code == 0);

  // Tampering: an edited record is named by `audit verify`.
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open((dir.path() / "data" / "audit.db").c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "UPDATE audit SET user_id='someone-else' WHERE sequence=2", nullptr, nullptr, nullptr) ==
            SQLITE_OK);
    sqlite3_close(db);
  }
  auto broken = run("audit verify" + d);
  INFO(broken.output);
  CHECK(broken.exit_code == 1);
  CHECK(broken.output.find("record 2") != std::string::npos);
}

TEST_CASE("no audit, no access: with the audit log unwritable, re-identification is refused", "[e2e][privacy][cli]") {
  testing::TempDir dir;
  const auto data = dir.path() / "data";
  const std::string d = " --data " + data.string();
  auto reg = run("subject register --bsn 123456782 --family Visser" + d);
  REQUIRE(reg.exit_code == 0);
  const std::string patient = field(reg.output, "patient:").substr(std::string("Patient/").size());
  // Another process holds the audit log's write lock: no record can be written.
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open((data / "audit.db").c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr) == SQLITE_OK);
  auto show = run("subject show --patient " + patient + d);
  INFO(show.output);
  CHECK(show.exit_code != 0);
  CHECK(show.output.find("access refused") != std::string::npos);
  CHECK(show.output.find("Visser") == std::string::npos);
  sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  auto ok = run("subject show --patient " + patient + d);
  CHECK(ok.exit_code == 0);
  CHECK(ok.output.find("Visser") != std::string::npos);
}

TEST_CASE("retention apply deletes quarantine entries older than the configured days, and refuses a bad config",
          "[e2e][privacy][cli]") {
  testing::TempDir dir;
  const auto data = dir.path() / "data";
  std::filesystem::create_directories(data);
  {
    auto store = storage::open_sqlite_store({data / "telehub.db"}, core::system_clock());
    REQUIRE(store);
    for (int days : {400, 100, 10, 1}) {
      storage::QuarantineEntry e;
      e.received_at = core::system_clock().now() - std::chrono::hours(24 * days);
      e.topic = "t";
      e.reason = "bad_seal";
      e.detail = "d";
      e.payload = core::Bytes{1, 2, 3};
      REQUIRE((*store)->quarantine().put(e));
    }
  }
  testing::TempDir config;
  std::ofstream(config.path() / "retention.json") << R"({"quarantine_days": 30})";
  auto r = run("retention apply --config " + config.path().string() + " --data " + data.string());
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("2 entries") != std::string::npos);
  CHECK(r.output.find("readings:     kept") != std::string::npos);
  auto store = storage::open_sqlite_store({data / "telehub.db"}, core::system_clock());
  REQUIRE(store);
  CHECK(*(*store)->quarantine().count() == 2);

  std::ofstream(config.path() / "retention.json", std::ios::trunc) << R"({"quarantine_days": 30, "audit_days": 5})";
  auto bad = run("retention apply --config " + config.path().string() + " --data " + data.string());
  CHECK(bad.exit_code != 0);
  CHECK(bad.output.find("audit_days") != std::string::npos);
  // The shipped configuration parses.
  CHECK(run("retention apply --data " + data.string()).exit_code == 0);
}
