// The care-context routes of issue [5/8] over real stores (measurement store, identity vault,
// audit log, consent store in a temp dir): registration by POST/PUT Patient, re-identification
// on read, AuditEvent search, Consent import; every access audited first, refused without the
// local care setting or when the audit record cannot be written. Everything returned is checked
// by the independent FHIR validator.
#include <catch2/catch.hpp>

#include <sqlite3.h>

#include "telehub/fhir/router.h"
#include "telehub/storage/store.h"
#include "test_support.h"

using namespace telehub;

namespace {

constexpr const char* kPatient = R"({"resourceType":"Patient",
  "identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"111222333"},
                {"system":"https://hospital.example.org/mrn","value":"MRN-77"}],
  "name":[{"family":"Jansen","given":["Anna","Maria"]}],
  "telecom":[{"system":"phone","value":"+31612345678"},{"system":"email","value":"anna@example.org"}],
  "gender":"female","birthDate":"1951-04-12",
  "address":[{"line":["Kerkstraat 1"],"city":"Utrecht","postalCode":"3511 AB"}]})";

struct Fixture {
  testing::TempDir dir;
  privacy::Kek kek = *privacy::Kek::from_hex(std::string(64, 'b'));
  std::unique_ptr<storage::Store> store;
  fhir::RouterOptions options;
  std::unique_ptr<fhir::Router> router;
  std::vector<std::string> bodies;

  explicit Fixture(bool care_local = true) {
    auto s = storage::open_sqlite_store({dir.path() / "telehub.db"}, core::system_clock());
    REQUIRE(s);
    store = std::move(*s);
    auto vault = privacy::IdentityVault::open(dir.path() / "identity.db", dir.path() / "vault.key", kek);
    REQUIRE(vault);
    auto audit = privacy::AuditLog::open(dir.path() / "audit.db");
    REQUIRE(audit);
    auto consent = privacy::ConsentStore::open(dir.path() / "consent.db");
    REQUIRE(consent);
    options.base_url = "http://fhir.test/fhir";
    options.privacy.vault = std::move(*vault);
    options.privacy.audit = std::move(*audit);
    options.privacy.consent = std::move(*consent);
    options.privacy.pseudonymiser = std::move(*privacy::Pseudonymiser::from_key(core::Bytes(32, 4)));
    options.privacy.care_local = care_local;
    router = std::make_unique<fhir::Router>(*store, options);
  }

  fhir::Response call(const std::string& method, const std::string& target, const std::string& body = "",
                      bool loopback = true) {
    fhir::Request r{method, target, {}, body, "", false};
    r.remote_address = loopback ? "127.0.0.1:50000" : "192.0.2.7:50000";
    r.remote_loopback = loopback;
    auto response = router->handle(r);
    bodies.push_back(response.body);
    return response;
  }

  std::vector<privacy::AuditRecord> trail() {
    auto r = options.privacy.audit->recent(1000);
    REQUIRE(r);
    return *r;
  }
};

}  // namespace

TEST_CASE("care context: register a Patient, read it re-identified, every access audited", "[fhir][privacy]") {
  Fixture f;
  auto created = f.call("POST", "/fhir/Patient", kPatient);
  INFO(created.body);
  REQUIRE(created.status == 201);
  CHECK(created.body.find("\"http://fhir.nl/fhir/NamingSystem/bsn\"") != std::string::npos);
  const auto location = std::find_if(created.headers.begin(), created.headers.end(),
                                     [](const auto& h) { return h.first == "Location"; });
  REQUIRE(location != created.headers.end());
  const std::string pseudonym = location->second.substr(location->second.rfind('/') + 1);
  REQUIRE(pseudonym.size() == 32);

  // Conditional update by identifier: the same person (record number), a new phone number.
  std::string update = kPatient;
  update.replace(update.find("+31612345678"), 12, "+31687654321");
  auto updated = f.call("PUT", "/fhir/Patient?identifier=https://hospital.example.org/mrn|MRN-77", update);
  CHECK(updated.status == 200);
  CHECK(updated.body.find(pseudonym) != std::string::npos);
  CHECK(f.call("PUT", "/fhir/Patient", update).status == 400);  // needs ?identifier=

  auto read = f.call("GET", "/fhir/Patient/" + pseudonym);
  CHECK(read.status == 200);
  CHECK(read.body.find("Jansen") != std::string::npos);
  CHECK(read.body.find("+31687654321") != std::string::npos);

  auto bad_bsn = f.call("POST", "/fhir/Patient",
                        R"({"resourceType":"Patient","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"123456789"}]})");
  CHECK(bad_bsn.status == 400);
  CHECK(bad_bsn.body.find("11-test") != std::string::npos);
  CHECK(bad_bsn.body.find("123456789") == std::string::npos);

  // Consent as FHIR, then the audit trail as AuditEvents.
  const std::string consent = R"({"resourceType":"Consent","id":"c1","status":"active",
    "scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"research"}]},
    "category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],
    "patient":{"reference":"Patient/)" + pseudonym + R"("},"dateTime":"2026-11-01T10:00:00Z",
    "policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]},
    "provision":{"type":"permit","period":{"start":"2026-11-01T10:00:00Z"},
      "purpose":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"HRESCH"}]}})";
  auto consented = f.call("POST", "/fhir/Consent", consent);
  INFO(consented.body);
  CHECK(consented.status == 201);
  auto permitted = f.options.privacy.consent->permitted(pseudonym, "research", core::system_clock().now());
  REQUIRE(permitted);
  CHECK(*permitted);

  auto events = f.call("GET", "/fhir/AuditEvent?patient=" + pseudonym);
  INFO(events.body);
  CHECK(events.status == 200);
  CHECK(events.body.find("\"resourceType\":\"AuditEvent\"") != std::string::npos);

  // The trail: register (C), update (U), read (R), consent (C), audit read (R); all success.
  std::vector<std::string> kinds;
  for (const auto& a : f.trail()) kinds.push_back(a.event_type + " " + a.action + " " + a.outcome);
  CHECK(std::count(kinds.begin(), kinds.end(), "subject.register C success") == 1);
  CHECK(std::count(kinds.begin(), kinds.end(), "subject.register U success") == 1);
  CHECK(std::count(kinds.begin(), kinds.end(), "patient.read R success") == 1);
  CHECK(std::count(kinds.begin(), kinds.end(), "consent.update C success") == 1);
  CHECK(std::count(kinds.begin(), kinds.end(), "audit.read R success") == 1);
  for (const auto& a : f.trail()) {
    CHECK(a.access_point == "127.0.0.1:50000");
    CHECK(a.subject.find("Jansen") == std::string::npos);
  }
  auto v = f.options.privacy.audit->verify();
  REQUIRE(v);
  CHECK(v->ok);

  auto validated = testing::fhir_validate({created.body, updated.body, read.body, events.body, consented.body});
  INFO(validated.output);
  CHECK(validated.exit_code == 0);
}

TEST_CASE("identified data is refused outside the local care setting, and the attempt is audited", "[fhir][privacy]") {
  Fixture off(false);
  auto r = off.call("POST", "/fhir/Patient", kPatient);
  CHECK(r.status == 403);
  CHECK(off.call("GET", "/fhir/AuditEvent").status == 403);

  Fixture on(true);
  auto created = on.call("POST", "/fhir/Patient", kPatient);
  REQUIRE(created.status == 201);
  const std::string pseudonym = created.body.substr(created.body.find("\"id\":\"") + 6, 32);
  // From another machine: 403 for writes, and the Patient stays pseudonymous.
  CHECK(on.call("POST", "/fhir/Patient", kPatient, false).status == 403);
  auto remote = on.call("GET", "/fhir/Patient/" + pseudonym, "", false);
  CHECK(remote.body.find("Jansen") == std::string::npos);
  bool denied = false;
  for (const auto& a : on.trail()) denied = denied || (a.outcome == "denied" && a.access_point == "192.0.2.7:50000");
  CHECK(denied);
  auto validated = testing::fhir_validate({r.body, remote.body});
  INFO(validated.output);
  CHECK(validated.exit_code == 0);
}

TEST_CASE("no audit, no access: a Patient read is refused when the audit record cannot be written", "[fhir][privacy]") {
  Fixture f;
  auto created = f.call("POST", "/fhir/Patient", kPatient);
  REQUIRE(created.status == 201);
  const std::string pseudonym = created.body.substr(created.body.find("\"id\":\"") + 6, 32);
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open((f.dir.path() / "audit.db").c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr) == SQLITE_OK);
  auto refused = f.call("GET", "/fhir/Patient/" + pseudonym);
  CHECK(refused.status == 503);
  CHECK(refused.body.find("Jansen") == std::string::npos);
  CHECK(refused.body.find("OperationOutcome") != std::string::npos);
  sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  CHECK(f.call("GET", "/fhir/Patient/" + pseudonym).status == 200);
}
