// Hostile clients against fhir::Router over real SQLite files (issue [6/8]): SQL injection and
// odd bytes in every search parameter of GET Observation and GET AuditEvent and in the
// identifier of PUT Patient, path traversal in the request target, and JSON nesting and size
// limits of Patient and Consent bodies. Each answer must be a 400/404 OperationOutcome or a
// normal answer that returns nothing the same request without the payload would not, and the
// databases must be unchanged afterwards (docs/security.md, "Injection, traversal and parsing
// limits").
#include <catch2/catch.hpp>

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <sqlite3.h>

#include <algorithm>
#include <set>

#include "telehub/core/codes.h"
#include "telehub/fhir/router.h"
#include "telehub/storage/store.h"
#include "test_support.h"

using namespace telehub;

namespace {

core::TimePoint at(const char* rfc3339) { return *core::parse_rfc3339(rfc3339); }

core::Reading reading(std::string code, double value, std::string unit, const char* time) {
  core::Reading r;
  r.code = std::move(code);
  r.value = value;
  r.unit = std::move(unit);
  r.time = at(time);
  return r;
}

constexpr const char* kPatient = R"({"resourceType":"Patient",
  "identifier":[{"system":"https://hospital.example.org/mrn","value":"MRN-1"}],
  "name":[{"family":"Jansen","given":["Anna"]}],"gender":"female","birthDate":"1951-04-12"})";

// Every row of every table of an SQLite file, as text (tables by name, rows sorted), plus the
// result of PRAGMA integrity_check. Read through its own read-only connection.
struct Dump {
  std::string integrity;
  std::vector<std::string> rows;  // "table|v1|v2|..."
};

Dump dump(const std::filesystem::path& file) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  auto query = [db](const std::string& sql, std::vector<std::string>& out, const std::string& prefix) {
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
    int rc = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      std::string row = prefix;
      for (int i = 0; i < sqlite3_column_count(st); ++i) {
        row += '|';
        switch (sqlite3_column_type(st, i)) {
          case SQLITE_NULL: row += "NULL"; break;
          case SQLITE_INTEGER: row += "i" + std::to_string(sqlite3_column_int64(st, i)); break;
          case SQLITE_FLOAT: row += "f" + std::to_string(sqlite3_column_double(st, i)); break;
          default: {
            const auto* p = static_cast<const char*>(sqlite3_column_blob(st, i));
            row += "b" + std::string(p ? p : "", static_cast<std::size_t>(sqlite3_column_bytes(st, i)));
          }
        }
      }
      out.push_back(std::move(row));
    }
    CHECK(rc == SQLITE_DONE);
    sqlite3_finalize(st);
  };
  Dump d;
  std::vector<std::string> tables;
  query("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name", tables, "");
  std::vector<std::string> integrity;
  query("PRAGMA integrity_check", integrity, "");
  for (const auto& t : integrity) d.integrity += t;
  for (auto name : tables) {
    name.erase(0, 2);  // "|b"
    std::vector<std::string> rows;
    // Test code: the table names come from sqlite_master, quoted.
    query("SELECT * FROM \"" + name + "\"", rows, name);
    std::sort(rows.begin(), rows.end());
    d.rows.insert(d.rows.end(), rows.begin(), rows.end());
  }
  sqlite3_close(db);
  return d;
}

struct Fixture {
  testing::TempDir dir;
  std::unique_ptr<storage::Store> store;
  fhir::RouterOptions options;
  std::unique_ptr<fhir::Router> router;
  std::string p1, p2;
  std::string first_patient;  // target of the Patient registered by the fixture (MRN-1)
  std::uint64_t sequence = 0;

  Fixture() {
    storage::StoreOptions so;
    so.path = dir.path() / "telehub.db";
    so.compact_after_readings = 0;  // no background compaction between the digests
    auto s = storage::open_sqlite_store(so, core::system_clock());
    REQUIRE(s);
    store = std::move(*s);
    auto vault = privacy::IdentityVault::open(dir.path() / "identity.db", dir.path() / "vault.key",
                                              *privacy::Kek::from_hex(std::string(64, 'c')));
    REQUIRE(vault);
    auto audit = privacy::AuditLog::open(dir.path() / "audit.db");
    REQUIRE(audit);
    auto consent = privacy::ConsentStore::open(dir.path() / "consent.db");
    REQUIRE(consent);
    options.base_url = "http://fhir.test/fhir";
    options.privacy.vault = std::move(*vault);
    options.privacy.audit = std::move(*audit);
    options.privacy.consent = std::move(*consent);
    options.privacy.pseudonymiser = std::move(*privacy::Pseudonymiser::from_key(core::Bytes(32, 9)));
    options.privacy.care_local = true;
    router = std::make_unique<fhir::Router>(*store, options);

    const auto s1 = options.privacy.pseudonymiser->subject("patient-1");
    const auto s2 = options.privacy.pseudonymiser->subject("patient-2");
    p1 = s1.str();
    p2 = s2.str();
    add_device("dev-1", s1);
    add_device("dev-2", s2);
    append("dev-1", s1, {reading("8867-4", 72, "/min", "2026-11-01T08:00:00Z"), reading("59408-5", 97, "%", "2026-11-01T08:00:00Z")});
    append("dev-1", s1, {reading("29463-7", 80.5, "kg", "2026-11-02T08:00:00Z")});
    REQUIRE(store->compact());  // some readings in chunks, the rest in the log: both read paths
    append("dev-1", s1, {reading("8867-4", 75, "/min", "2026-11-03T08:00:00Z")});
    append("dev-2", s2, {reading("8867-4", 65, "/min", "2026-11-03T09:00:00Z")});
    // A registered person and an audit trail, so the vault and the audit log have rows too.
    const auto created = call("POST", "/fhir/Patient", kPatient);
    REQUIRE(created.status == 201);
    for (const auto& [name, value] : created.headers)
      if (name == "Location") first_patient = "/fhir/Patient/" + value.substr(value.rfind('/') + 1);
    REQUIRE_FALSE(first_patient.empty());
    REQUIRE(call("GET", "/fhir/AuditEvent").status == 200);
  }

  void add_device(const std::string& id, const privacy::SubjectPseudonym& subject) {
    storage::DeviceRecord d;
    d.id = id;
    d.subject = subject.str();
    d.wrapped_key = core::Bytes(61, 0xAB);
    d.enrolled_at = at("2026-10-01T00:00:00Z");
    d.active = true;
    REQUIRE(store->registry().add_device(d));
  }

  void append(const std::string& device, const privacy::SubjectPseudonym& subject, std::vector<core::Reading> readings) {
    storage::MessageBatch b;
    b.device_id = device;
    b.sequence = ++sequence;
    b.content_hash = "hash-" + std::to_string(sequence);
    b.received_at = at("2026-12-02T09:00:00Z");
    for (auto& r : readings) {
      r.device = device;
      r.sequence = sequence;
      b.readings.push_back(privacy::PseudonymousReading::bind(r, subject));
    }
    auto outcome = store->observations().append(std::move(b));
    REQUIRE(outcome);
  }

  fhir::Response call(const std::string& method, const std::string& target, const std::string& body = "") {
    fhir::Request r{method, target, {}, body, "127.0.0.1:50000", true};
    return router->handle(r);
  }

  // Dumps of the three databases no read may change, and the audit log (which every
  // care-context request appends to).
  struct State {
    Dump telehub, identity, consent, audit;
  };
  State state() {
    return {dump(dir.path() / "telehub.db"), dump(dir.path() / "identity.db"), dump(dir.path() / "consent.db"),
            dump(dir.path() / "audit.db")};
  }
};

// The same as State before, except that the audit log may have gained rows (it only appends),
// and every file passes integrity_check.
void check_unchanged(const Fixture::State& before, const Fixture::State& after, Fixture& f) {
  for (const Dump* d : {&after.telehub, &after.identity, &after.consent, &after.audit}) CHECK(d->integrity == "|bok");
  CHECK(after.telehub.rows == before.telehub.rows);
  CHECK(after.identity.rows == before.identity.rows);
  CHECK(after.consent.rows == before.consent.rows);
  std::set<std::string> kept(after.audit.rows.begin(), after.audit.rows.end());
  for (const auto& row : before.audit.rows) {
    // Rows of the audit table are kept as they were; only new ones are added.
    if (row.starts_with("sqlite_sequence|")) continue;
    CHECK(kept.count(row) == 1);
  }
  auto verified = f.options.privacy.audit->verify();
  REQUIRE(verified);
  CHECK(verified->ok);
}

std::string percent_encode_all(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    const bool keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                      c == '.' || c == '_' || c == '~';
    if (keep) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// The payloads, as the decoded text a client means.
std::vector<std::string> payloads() {
  std::vector<std::string> p = {
      "' OR '1'='1",
      "1; DROP TABLE readings; --",
      "x'); DROP TABLE chunks; --",
      "'; DELETE FROM log; --",
      "\") OR 1=1 --",
      "%27%20OR%201%3D1",
      "' UNION SELECT name, sql FROM sqlite_master --",
      "1 UNION ALL SELECT * FROM persons",
      "%00",
      std::string("a\0b", 3),
      std::string(1, '\0'),
      "%FF%FE",
      "\xFF\xFE",
      "\xC0\xAF",
      "%0d%0a",
      "\r\nX-Injected: 1",
      "{\"$gt\":\"\"}",
      "\"]},{\"resourceType\":\"Bundle\"",
      "*",
      "%",
      "_",
      "%25",
      "a%",
      "_%",
      "..",
      "../../etc/passwd",
      "Patient/*",
      "?1",
      ":1",
      std::string(100'000, 'A'),
      std::string(100'000, '\''),
  };
  return p;
}

// A response that must be either 400 with an OperationOutcome, or 200 with a Bundle whose
// entries (fullUrl) are all in `allowed`. The body must be valid JSON and valid UTF-8.
void check_answer(const fhir::Response& r, const std::set<std::string>& allowed) {
  rapidjson::Document d;
  d.Parse<rapidjson::kParseValidateEncodingFlag>(r.body.c_str(), r.body.size());
  INFO("status " << r.status << ", body " << r.body.substr(0, 400));
  REQUIRE_FALSE(d.HasParseError());
  REQUIRE(d.IsObject());
  REQUIRE(d.HasMember("resourceType"));
  const std::string type = d["resourceType"].GetString();
  if (r.status == 400) {
    CHECK(type == "OperationOutcome");
    return;
  }
  REQUIRE(r.status == 200);
  REQUIRE(type == "Bundle");
  if (!d.HasMember("entry")) return;
  for (const auto& e : d["entry"].GetArray()) {
    if (e.HasMember("fullUrl")) {
      CHECK(allowed.count(e["fullUrl"].GetString()) == 1);
    } else {  // the warning about parameters that were not understood (search.mode outcome)
      REQUIRE(e.HasMember("resource"));
      CHECK(std::string(e["resource"]["resourceType"].GetString()) == "OperationOutcome");
    }
  }
}

std::set<std::string> entries(const fhir::Response& r) {
  REQUIRE(r.status == 200);
  rapidjson::Document d;
  d.Parse(r.body.c_str(), r.body.size());
  REQUIRE_FALSE(d.HasParseError());
  std::set<std::string> out;
  if (d.HasMember("entry"))
    for (const auto& e : d["entry"].GetArray())
      if (e.HasMember("fullUrl")) out.insert(e["fullUrl"].GetString());
  return out;
}

// A JSON body that nests `depth` arrays inside a Patient's "extension" member (the Patient
// object itself is level 1).
std::string nested_patient(std::size_t depth) {
  return R"({"resourceType":"Patient","extension":)" + std::string(depth - 1, '[') + std::string(depth - 1, ']') + "}";
}

}  // namespace

TEST_CASE("injection payloads in every Observation search parameter change nothing and widen nothing", "[fhir][security]") {
  Fixture f;
  const std::string everything = "/fhir/Observation?patient=" + f.p1 + "&_count=1000";
  const auto baseline = entries(f.call("GET", everything));
  REQUIRE(baseline.size() == 4);
  const auto before = f.state();

  // name -> a valid value the payload is also appended to.
  const std::vector<std::pair<std::string, std::string>> params = {
      {"patient", f.p1}, {"subject", "Patient/" + f.p1}, {"patient:Patient", f.p1}, {"code", "8867-4"},
      {"code", "http://loinc.org|8867-4"}, {"date", "ge2026-11-01"}, {"_count", "5"}, {"_cursor", "0.1"},
      {"_sort", "date"}, {"_id", "1"}};
  std::size_t requests = 0;
  for (const auto& payload : payloads()) {
    for (const auto& [name, valid] : params) {
      const bool reference = name.starts_with("patient") || name == "subject";
      for (const std::string& value : {payload, valid + payload}) {
        // As the client means it (percent-encoded), and pasted raw into the target.
        for (const std::string& text : {percent_encode_all(value), value}) {
          // The payload alone in the reference parameter: no other patient restricts it, and
          // it names no patient, so nothing may come back.
          if (reference) {
            check_answer(f.call("GET", "/fhir/Observation?" + name + "=" + text + "&_count=1000"), {});
            ++requests;
          }
          check_answer(f.call("GET", everything + "&" + name + "=" + text), baseline);
          ++requests;
        }
      }
    }
  }
  // The payload as a parameter name, too.
  for (const auto& payload : payloads()) {
    for (const std::string& text : {percent_encode_all(payload), payload}) {
      check_answer(f.call("GET", everything + "&" + text + "=1"), baseline);
      ++requests;
    }
  }
  INFO(requests << " requests");
  check_unchanged(before, f.state(), f);
  CHECK(entries(f.call("GET", everything)) == baseline);
}

TEST_CASE("injection payloads in AuditEvent patient and entity change nothing and widen nothing", "[fhir][security]") {
  Fixture f;
  const auto before = f.state();
  for (const auto& payload : payloads()) {
    for (const std::string name : {"patient", "entity"}) {
      for (const std::string& value : {payload, f.p1 + payload, "Patient/" + payload}) {
        for (const std::string& text : {percent_encode_all(value), value}) {
          const auto r = f.call("GET", "/fhir/AuditEvent?" + name + "=" + text);
          // Whatever a payload selects must be in the unfiltered trail (which has grown since).
          const auto all = entries(f.call("GET", "/fhir/AuditEvent"));
          check_answer(r, all);
          if (r.status == 200) CHECK(entries(r).size() < all.size());
        }
      }
    }
  }
  check_unchanged(before, f.state(), f);
}

TEST_CASE("an injection payload in the PUT Patient identifier is refused or updates only that body's person", "[fhir][security]") {
  Fixture f;
  // A second person, who must never be touched.
  const std::string other = R"({"resourceType":"Patient",
    "identifier":[{"system":"https://hospital.example.org/mrn","value":"MRN-2"}],
    "name":[{"family":"de Vries"}],"gender":"male","birthDate":"1940-01-01"})";
  const auto created = f.call("POST", "/fhir/Patient", other);
  REQUIRE(created.status == 201);
  const auto location = std::find_if(created.headers.begin(), created.headers.end(),
                                     [](const auto& h) { return h.first == "Location"; });
  REQUIRE(location != created.headers.end());
  const std::string other_target = "/fhir/Patient/" + location->second.substr(location->second.rfind('/') + 1);
  const std::string other_before = f.call("GET", other_target).body;
  const std::string first_before = f.call("GET", f.first_patient).body;
  const auto before = f.state();
  auto count = [](const Dump& d, const std::string& table) {
    return std::count_if(d.rows.begin(), d.rows.end(), [&](const std::string& r) { return r.starts_with(table + "|"); });
  };

  for (const auto& payload : payloads()) {
    for (const std::string& value :
         {payload, "https://hospital.example.org/mrn|" + payload, "https://hospital.example.org/mrn|MRN-1" + payload}) {
      for (const std::string& text : {percent_encode_all(value), value}) {
        const auto r = f.call("PUT", "/fhir/Patient?identifier=" + text, kPatient);
        INFO("status " << r.status << ", body " << r.body.substr(0, 300));
        // 200: the conditional update of MRN-1 (the body's own person); nothing created.
        CHECK((r.status == 400 || r.status == 200));
        if (r.status == 200) {
          CHECK(r.body.find("MRN-1") != std::string::npos);
          CHECK(r.body.find("MRN-2") == std::string::npos);
        } else {
          CHECK(r.body.find("OperationOutcome") != std::string::npos);
        }
      }
    }
  }
  // Updates re-seal the person's fields, so the vault's bytes change; its people do not.
  const auto after = f.state();
  for (const std::string table : {"persons", "blind", "fields"})
    CHECK(count(after.identity, table) == count(before.identity, table));
  CHECK(after.identity.integrity == "|bok");
  CHECK(after.telehub.rows == before.telehub.rows);
  CHECK(after.consent.rows == before.consent.rows);
  CHECK(f.call("GET", other_target).body == other_before);
  CHECK(f.call("GET", f.first_patient).body == first_before);
}

TEST_CASE("path traversal and odd request targets answer 400 or 404, never a file", "[fhir][security]") {
  Fixture f;
  const auto before = f.state();
  std::vector<std::string> targets = {
      "/fhir/../etc/passwd",
      "/fhir/%2e%2e/%2e%2e/etc/passwd",
      "/fhir/%2E%2E/%2E%2E/etc/passwd",
      "/fhir/Patient/..%2F..%2Fetc%2Fpasswd",
      "/fhir/Patient/../../etc/passwd",
      "/fhir/Observation/%2e%2e",
      "/fhir/Observation/..",
      "/fhir/Observation/.",
      "/fhir//Patient",
      "/fhir//metadata",
      "/fhir/Patient/",
      "/fhir/Patient/%00",
      "/fhir/Patient/%00" + f.p1,
      "/fhir/Patient/" + f.p1 + "%00",
      "/fhir/Patient/" + f.p1 + "/../" + f.p1,
      "/fhir/%5c..%5c",
      "/fhir/%5c..%5cetc%5cpasswd",
      "/fhir/..\\..\\etc\\passwd",
      "/../fhir/metadata",
      "/./fhir/metadata",
      "//fhir/metadata",
      "/fhir/./metadata",
      "/fhir/metadata/..",
      "/fhir/Device/..%252f..",
      "/fhir/Device/..%252f..%252fetc%252fpasswd",
      "/fhir/Device/%2e%2e%2f%2e%2e",
      "/fhir/Device/..%c0%af..",
      "/fhir/Observation/1%2f..%2f2",
      "/fhir/Observation/1;DROP TABLE chunks",
      "/fhir/Observation/1%27%20OR%20%271%27%3D%271",
      "/fhir/Observation/-1",
      "/fhir/Observation/99999999999999999999999",
      "/fhir/Observation/%FF%FE",
      "/fhir/%0d%0aSet-Cookie:%20x=1",
      "/fhir/Patient/%",
      "/fhir/Patient/%zz",
      "/fhir/Patient/*",
      "/fhir/file:%2f%2f%2fetc%2fpasswd",
      "/etc/passwd",
      "/fhir",
      "fhir/metadata",
      "",
      "/fhir/" + std::string(100'000, 'A'),
      "/fhir/Patient/" + std::string(100'000, '.'),
      "/fhir/" + [] {
        std::string s;
        for (int i = 0; i < 10'000; ++i) s += "../";
        return s;
      }() + "etc/passwd",
  };
  for (const auto& target : targets) {
    for (const std::string method : {"GET", "POST", "PUT", "DELETE"}) {
      const auto r = f.call(method, target, method == "GET" ? "" : kPatient);
      INFO(method << " " << target.substr(0, 200) << " -> " << r.status << " " << r.body.substr(0, 300));
      CHECK((r.status == 400 || r.status == 404 || r.status == 405));
      CHECK(r.body.find("\"resourceType\":\"OperationOutcome\"") != std::string::npos);
      CHECK(r.body.find("root:") == std::string::npos);
    }
  }
  // Sanity: the same router serves the real routes.
  CHECK(f.call("GET", "/fhir/metadata").status == 200);
  CHECK(f.call("GET", "/fhir/Patient/" + f.p1).status == 200);
  check_unchanged(before, f.state(), f);
}

TEST_CASE("FHIR bodies nested deeper than the JSON depth limit are refused with the limit named", "[fhir][security]") {
  Fixture f;
  const auto before = f.state();
  // Patient: 16 levels (the limit, envelope::kMaxJsonDepth) are parsed; "extension" is not
  // mapped, so the Patient registers as the same person.
  const auto ok = f.call("PUT", "/fhir/Patient?identifier=https://hospital.example.org/mrn|MRN-1",
                         nested_patient(16).insert(1, R"("identifier":[{"system":"https://hospital.example.org/mrn","value":"MRN-1"}],)"));
  INFO(ok.body);
  CHECK(ok.status == 200);
  for (std::size_t depth : {17u, 64u, 65u, 1000u, 100'000u}) {
    const auto r = f.call("POST", "/fhir/Patient", nested_patient(depth));
    INFO("depth " << depth << ": " << r.body);
    CHECK(r.status == 400);
    CHECK(r.body.find("nesting deeper than 16") != std::string::npos);
  }
  // A million '[' and nothing else (1 MB, under the body limit): refused without recursion.
  const std::string brackets(1'000'000, '[');
  for (const std::string target : {"/fhir/Patient", "/fhir/Consent"}) {
    const auto r = f.call("POST", target, brackets);
    INFO(target << ": " << r.body.substr(0, 300));
    CHECK(r.status == 400);
    CHECK(r.body.find("nesting deeper than 16") != std::string::npos);
  }
  // Consent: the same limit, inside an otherwise plausible resource.
  const std::string consent = R"({"resourceType":"Consent","status":"active","patient":{"reference":"Patient/)" + f.p1 +
                              R"("},"dateTime":"2026-11-01T10:00:00Z","extension":)";
  const auto deep = f.call("POST", "/fhir/Consent", consent + std::string(64, '[') + std::string(64, ']') + "}");
  CHECK(deep.status == 400);
  CHECK(deep.body.find("nesting deeper than 16") != std::string::npos);
  // Larger than 1 MiB: refused before parsing (even when the HTTP server's limit is raised).
  const std::string huge = R"({"resourceType":"Patient","gender":")" + std::string(1 << 20, 'x') + "\"}";
  const auto big = f.call("POST", "/fhir/Patient", huge);
  CHECK(big.status == 400);
  CHECK(big.body.find("larger than 1 MiB") != std::string::npos);
  const auto big_consent = f.call("POST", "/fhir/Consent", consent + "\"" + std::string(1 << 20, 'x') + "\"}");
  CHECK(big_consent.status == 400);
  CHECK(big_consent.body.find("larger than 1 MiB") != std::string::npos);
  const auto after = f.state();
  CHECK(after.consent.rows == before.consent.rows);
  CHECK(after.telehub.rows == before.telehub.rows);
}
