// Issue [6/8]: who may use which endpoint. Every role × every endpoint through the real router
// with a real token service, care relations, identity vault and audit log (SQLite files), and
// the audit record each access leaves. The token endpoint's refusals (alg none, key confusion,
// unregistered key, exp too far, reused jti, wrong aud, expired token, scope outside the grant)
// are checked through POST /auth/token here too; the library-level cases are in tests/auth.
#include <catch2/catch.hpp>

#include <cctype>
#include <map>

#include <rapidjson/document.h>

#include "../auth/test_signer.h"
#include "telehub/auth/token_service.h"
#include "telehub/fhir/router.h"
#include "telehub/privacy/care_relations.h"
#include "telehub/storage/store.h"
#include "test_support.h"

using namespace telehub;
namespace t = telehub::auth::test;

namespace {

constexpr const char* kTokenUrl = "https://hub.test/auth/token";

class ManualClock final : public core::Clock {
 public:
  core::TimePoint now() const override { return now_; }
  void set(core::TimePoint t) { now_ = t; }
  std::int64_t seconds() const { return core::to_unix_millis(now_) / 1000; }

 private:
  core::TimePoint now_ = core::system_clock().now();
};

std::string patient_json(const std::string& bsn, const std::string& mrn, const std::string& family) {
  return R"({"resourceType":"Patient","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":")" + bsn +
         R"("},{"system":"https://hospital.example.org/mrn","value":")" + mrn + R"("}],"name":[{"family":")" + family +
         R"(","given":["Anna"]}],"gender":"female","birthDate":"1951-04-12"})";
}

std::string consent_json(const std::string& pseudonym) {
  return R"({"resourceType":"Consent","status":"active",
    "scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"research"}]},
    "category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],
    "patient":{"reference":"Patient/)" + pseudonym + R"("},"dateTime":"2026-11-01T10:00:00Z",
    "provision":{"type":"permit","period":{"start":"2026-11-01T10:00:00Z"},
      "purpose":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"HRESCH"}]}})";
}

std::string header(const fhir::Response& r, const std::string& name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return {};
}

struct Fixture {
  testing::TempDir dir;
  ManualClock clock;
  privacy::Kek kek = *privacy::Kek::from_hex(std::string(64, 'c'));
  std::unique_ptr<storage::Store> store;
  std::shared_ptr<auth::TokenService> tokens;
  fhir::RouterOptions options;
  std::unique_ptr<fhir::Router> router;
  int next_jti = 0;

  Fixture() {
    auto s = storage::open_sqlite_store({dir.path() / "telehub.db"}, core::system_clock());
    REQUIRE(s);
    store = std::move(*s);
    auto ts = auth::TokenService::open(dir.path() / "auth.db", clock);
    REQUIRE(ts);
    tokens = std::move(*ts);
    auto care = privacy::CareRelations::open(dir.path() / "care.db");
    REQUIRE(care);
    auto vault = privacy::IdentityVault::open(dir.path() / "identity.db", dir.path() / "vault.key", kek);
    REQUIRE(vault);
    auto audit = privacy::AuditLog::open(dir.path() / "audit.db");
    REQUIRE(audit);
    auto consent = privacy::ConsentStore::open(dir.path() / "consent.db");
    REQUIRE(consent);
    options.base_url = "https://hub.test/fhir";
    options.privacy.vault = std::move(*vault);
    options.privacy.audit = std::move(*audit);
    options.privacy.consent = std::move(*consent);
    options.privacy.pseudonymiser = std::move(*privacy::Pseudonymiser::from_key(core::Bytes(32, 9)));
    options.auth.tokens = tokens;
    options.auth.token_url = kTokenUrl;
    options.auth.care_relations = std::move(*care);
    options.metrics = [] { return std::string("telehub_up 1\n"); };
    router = std::make_unique<fhir::Router>(*store, options);

    const std::string scopes = "system/Observation.rs system/Patient.cruds system/Device.rs system/Consent.c";
    REQUIRE(tokens->register_client({"hospital-a", t::jwks_json({t::jwk_json(t::shared_ec(), "a-1")}), scopes, "care",
                                     "org-a"}));
    REQUIRE(tokens->register_client({"hospital-b", t::jwks_json({t::jwk_json(t::shared_rsa(), "b-1")}), scopes, "care",
                                     "org-b"}));
  }

  fhir::Response call(const std::string& method, const std::string& target, const std::string& token,
                      const std::string& body = "", std::vector<std::pair<std::string, std::string>> headers = {}) {
    fhir::Request r{method, target, std::move(headers), body, "192.0.2.10:40000", false};
    if (!token.empty()) r.headers.emplace_back("Authorization", "Bearer " + token);
    return router->handle(r);
  }

  std::string assertion(const std::string& client, const std::string& kid, const t::Pkey& key,
                        const std::string& aud = kTokenUrl, std::int64_t exp_in = 240, std::string jti = {},
                        const std::string& alg = "") {
    const std::string a = alg.empty() ? (EVP_PKEY_is_a(key.get(), "RSA") ? "RS384" : "ES384") : alg;
    const std::string h = R"({"alg":")" + a + R"(","kid":")" + kid + R"(","typ":"JWT"})";
    const std::string c = R"({"iss":")" + client + R"(","sub":")" + client + R"(","aud":")" + aud + R"(","jti":")" +
                          (jti.empty() ? "jti-" + std::to_string(++next_jti) : jti) + R"(","exp":)" +
                          std::to_string(clock.seconds() + exp_in) + "}";
    return t::sign_jws(key, h, c);
  }

  static std::string form(const std::string& jws, const std::string& scope) {
    auto enc = [](const std::string& s) {
      static const char* hex = "0123456789ABCDEF";
      std::string out;
      for (const unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') out += static_cast<char>(c);
        else out += std::string("%") + hex[c >> 4] + hex[c & 15];
      }
      return out;
    };
    return "grant_type=client_credentials&scope=" + enc(scope) +
           "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=" +
           enc(jws);
  }

  fhir::Response token_request(const std::string& jws, const std::string& scope) {
    return call("POST", "/auth/token", "", form(jws, scope), {{"Content-Type", "application/x-www-form-urlencoded"}});
  }

  // An access token of a SMART client through POST /auth/token.
  std::string access_token(const std::string& client, const std::string& kid, const t::Pkey& key,
                           const std::string& scope) {
    auto r = token_request(assertion(client, kid, key), scope);
    INFO(r.body);
    REQUIRE(r.status == 200);
    CHECK(header(r, "Cache-Control") == "no-store");
    rapidjson::Document d;
    d.Parse(r.body.c_str());
    REQUIRE(d.IsObject());
    CHECK(std::string(d["token_type"].GetString()) == "bearer");
    CHECK(d["expires_in"].GetInt() <= 300);
    return d["access_token"].GetString();
  }

  std::vector<privacy::AuditRecord> trail() {
    auto r = options.privacy.audit->recent(100000);
    REQUIRE(r);
    return *r;
  }
};

}  // namespace

TEST_CASE("every role against every endpoint: allowed or denied as specified, with audit records", "[fhir][auth]") {
  Fixture f;
  const std::string care_a = f.access_token("hospital-a", "a-1", t::shared_ec(),
                                            "system/Observation.rs system/Patient.cruds system/Device.rs system/Consent.c");
  const std::string care_b = f.access_token("hospital-b", "b-1", t::shared_rsa(),
                                            "system/Observation.rs system/Patient.cruds system/Device.rs system/Consent.c");
  auto research = f.tokens->create_api_token("study-team", "research", "system/Observation.rs system/Patient.rs");
  auto enrolment = f.tokens->create_api_token("enrol-desk", "enrolment", "system/Device.rs system/Patient.rs");
  auto op = f.tokens->create_api_token("ops", "operator", "system/AuditEvent.rs system/Observation.rs");
  REQUIRE(research);
  REQUIRE(enrolment);
  REQUIRE(op);

  // hospital-a registers the patient (which declares its care relation), then the hub stores a
  // reading from the patient's device.
  auto created = f.call("POST", "/fhir/Patient", care_a, patient_json("111222333", "MRN-1", "Jansen"));
  INFO(created.body);
  REQUIRE(created.status == 201);
  const std::string location = header(created, "Location");
  const std::string p = location.substr(location.rfind('/') + 1);
  REQUIRE(p.size() == 32);
  const auto subject = *privacy::SubjectPseudonym::parse(p);
  storage::DeviceRecord device;
  device.id = "dev-a1";
  device.subject = p;
  device.wrapped_key = core::Bytes(61, 1);
  device.enrolled_at = core::system_clock().now();
  REQUIRE(f.store->registry().add_device(device));
  core::Reading reading;
  reading.code = "8867-4";
  reading.value = 71;
  reading.unit = "/min";
  reading.time = *core::parse_rfc3339("2026-11-20T08:00:00Z");
  reading.device = "dev-a1";
  reading.sequence = 1;
  storage::MessageBatch batch;
  batch.device_id = "dev-a1";
  batch.sequence = 1;
  batch.content_hash = "h1";
  batch.received_at = reading.time;
  batch.readings.push_back(privacy::PseudonymousReading::bind(reading, subject));
  REQUIRE(f.store->observations().append(std::move(batch)));
  storage::ObservationQuery query;
  query.subject = subject.str();
  query.limit = 10;
  auto page = f.store->observations().search(query);
  REQUIRE(page);
  REQUIRE(page->items.size() == 1);
  const std::string obs = std::to_string(page->items[0].id);

  struct Who {
    std::string name, token, audit_user;
  };
  const std::vector<Who> who = {{"care-related", care_a, "hospital-a"},   {"care-unrelated", care_b, "hospital-b"},
                                {"research", *research, "study-team"},    {"enrolment", *enrolment, "enrol-desk"},
                                {"operator", *op, "ops"},                 {"no-token", "", "anonymous"},
                                {"bad-token", std::string(43, 'A'), "anonymous"}};
  struct Endpoint {
    std::string method, target, body, event;  // event: the audit event type; empty = not audited
    std::map<std::string, int> expected;      // status per principal
  };
  const std::string patient_b = patient_json("123456782", "MRN-2", "de Vries");
  const std::map<std::string, int> care_only = {{"care-related", 200}, {"care-unrelated", 403}, {"research", 403},
                                                {"enrolment", 403},    {"operator", 403},       {"no-token", 401},
                                                {"bad-token", 401}};
  // A Patient search by a care client without a relation answers an empty Bundle (not 403: the
  // answer must not tell whether the person is known), audited as denied.
  std::map<std::string, int> care_only_search = care_only;
  care_only_search["care-unrelated"] = 200;
  std::vector<Endpoint> endpoints = {
      {"GET", "/fhir/metadata", "", "", {{"care-related", 200}, {"care-unrelated", 200}, {"research", 200},
                                         {"enrolment", 200}, {"operator", 200}, {"no-token", 200}, {"bad-token", 200}}},
      {"GET", "/fhir/Observation?patient=" + p, "", "observation.search", care_only},
      {"GET", "/fhir/Observation/" + obs, "", "observation.read", care_only},
      {"GET", "/fhir/Patient/" + p, "", "patient.read", care_only},
      {"GET", "/fhir/Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|111222333", "", "patient.search",
       care_only_search},
      {"GET", "/fhir/Device/dev-a1", "", "device.read",
       {{"care-related", 200}, {"care-unrelated", 403}, {"research", 403}, {"enrolment", 200}, {"operator", 403},
        {"no-token", 401}, {"bad-token", 401}}},
      {"GET", "/fhir/AuditEvent?patient=" + p, "", "audit.read",
       {{"care-related", 403}, {"care-unrelated", 403}, {"research", 403}, {"enrolment", 403}, {"operator", 200},
        {"no-token", 401}, {"bad-token", 401}}},
      {"POST", "/fhir/Consent", consent_json(p), "consent.update",
       {{"care-related", 201}, {"care-unrelated", 403}, {"research", 403}, {"enrolment", 403}, {"operator", 403},
        {"no-token", 401}, {"bad-token", 401}}},
      {"GET", "/metrics", "", "",
       {{"care-related", 403}, {"care-unrelated", 403}, {"research", 403}, {"enrolment", 403}, {"operator", 200},
        {"no-token", 401}, {"bad-token", 401}}},
      // Last: registering declares a care relation, so hospital-b is related afterwards.
      {"PUT", "/fhir/Patient?identifier=https://hospital.example.org/mrn|MRN-2", patient_b, "subject.register",
       {{"care-related", 201}, {"care-unrelated", 200}, {"research", 403}, {"enrolment", 403}, {"operator", 403},
        {"no-token", 401}, {"bad-token", 401}}},
  };

  for (const auto& e : endpoints) {
    for (const auto& w : who) {
      const auto before = f.trail().size();
      auto r = f.call(e.method, e.target, w.token, e.body);
      INFO(w.name << " " << e.method << " " << e.target << " -> " << r.status << " " << r.body);
      CHECK(r.status == e.expected.at(w.name));
      if (r.status == 401) CHECK(header(r, "WWW-Authenticate").starts_with("Bearer realm=\"telehub\""));
      if (r.status >= 400) CHECK(r.body.find("\"OperationOutcome\"") != std::string::npos);
      const auto after = f.trail();
      if (e.event.empty()) {
        CHECK(after.size() == before);
        continue;
      }
      REQUIRE(after.size() == before + 1);
      const auto& a = after.back();  // oldest first
      CHECK(a.event_type == e.event);
      const bool empty_search = e.event == "patient.search" && w.name == "care-unrelated";
      CHECK(a.outcome == (r.status < 300 && !empty_search ? "success" : "denied"));
      if (e.event == "patient.search") {
        CHECK(a.query.find("111222333") == std::string::npos);  // never a BSN in the audit log
        CHECK((r.body.find("Jansen") != std::string::npos) == (w.name == "care-related"));
      }
      CHECK(a.user_id == w.audit_user);
      CHECK(a.access_point == "192.0.2.10:40000");
      if (r.status < 300 && !empty_search && e.event != "audit.read" && e.event != "subject.register")
        CHECK(a.subject == p);
    }
  }

  // Only the related care client saw the person's name.
  auto identified = f.call("GET", "/fhir/Patient/" + p, care_a);
  CHECK(identified.body.find("Jansen") != std::string::npos);
  CHECK(identified.body.find("111222333") != std::string::npos);
  auto refused = f.call("GET", "/fhir/Patient/" + p, care_b);
  CHECK(refused.body.find("Jansen") == std::string::npos);
  // The research role sees no clinical endpoint, even with clinical scopes.
  CHECK(f.call("GET", "/fhir/Observation?patient=" + p, *research).body.find("8867-4") == std::string::npos);
  // A relation that ended no longer grants access.
  REQUIRE(f.options.auth.care_relations->end(p, "org-a", core::system_clock().now()));
  CHECK(f.call("GET", "/fhir/Patient/" + p, care_a).status == 403);
}

TEST_CASE("a token outside its grant: missing scope answers 403 insufficient_scope and is audited", "[fhir][auth]") {
  Fixture f;
  const std::string only_observations = f.access_token("hospital-a", "a-1", t::shared_ec(), "system/Observation.rs");
  REQUIRE(f.options.auth.care_relations->add(std::string(32, 'a'), "org-a", core::system_clock().now(), "test"));
  auto r = f.call("GET", "/fhir/Patient/" + std::string(32, 'a'), only_observations);
  CHECK(r.status == 403);
  CHECK(header(r, "WWW-Authenticate").find("error=\"insufficient_scope\"") != std::string::npos);
  CHECK(header(r, "WWW-Authenticate").find("scope=\"system/Patient.r\"") != std::string::npos);
  auto trail = f.trail();
  REQUIRE_FALSE(trail.empty());
  CHECK(trail.back().outcome == "denied");
  CHECK(trail.back().event_type == "patient.read");
  // Asking the token endpoint for more than the registration allows: invalid_scope.
  auto wider = f.token_request(f.assertion("hospital-a", "a-1", t::shared_ec()), "system/AuditEvent.rs");
  CHECK(wider.status == 400);
  CHECK(wider.body.find("\"invalid_scope\"") != std::string::npos);
  // v1 read scope reads, but does not write.
  const std::string read_only = f.access_token("hospital-a", "a-1", t::shared_ec(), "system/Patient.read");
  CHECK(f.call("POST", "/fhir/Patient", read_only, patient_json("111222333", "MRN-1", "Jansen")).status == 403);
}

TEST_CASE("the token endpoint refuses forged, replayed and mis-addressed assertions", "[fhir][auth]") {
  Fixture f;
  const std::string scope = "system/Observation.rs";
  auto refused = [&](const std::string& jws, const char* error) {
    auto r = f.token_request(jws, scope);
    INFO(r.body);
    CHECK((r.status == 400 || r.status == 401));
    CHECK(r.body.find(std::string("\"") + error + "\"") != std::string::npos);
    CHECK(r.body.find("access_token") == std::string::npos);
    CHECK(header(r, "Cache-Control") == "no-store");
  };
  const std::string claims = R"({"iss":"hospital-a","sub":"hospital-a","aud":")" + std::string(kTokenUrl) +
                             R"(","jti":"x-1","exp":)" + std::to_string(f.clock.seconds() + 200) + "}";
  // alg none: no signature at all.
  refused(t::b64(R"({"alg":"none","kid":"a-1"})") + "." + t::b64(claims) + ".", "invalid_client");
  // Key confusion: HS256 with the registered public key as the HMAC secret.
  refused(t::sign_hs256(t::public_pem(t::shared_ec()), R"({"alg":"HS256","kid":"a-1"})", claims), "invalid_client");
  // Signed with a key that is not registered (under the registered kid).
  const t::Pkey stranger = t::ec_key();
  refused(f.assertion("hospital-a", "a-1", stranger), "invalid_client");
  // exp too far ahead (an hour).
  refused(f.assertion("hospital-a", "a-1", t::shared_ec(), kTokenUrl, 3600), "invalid_client");
  // Wrong audience.
  refused(f.assertion("hospital-a", "a-1", t::shared_ec(), "https://other.test/auth/token"), "invalid_client");
  // A reused jti: the first use succeeds, the replay does not.
  const std::string once = f.assertion("hospital-a", "a-1", t::shared_ec(), kTokenUrl, 240, "jti-once");
  CHECK(f.token_request(once, scope).status == 200);
  refused(once, "invalid_client");
  // Not a form body.
  auto json = f.call("POST", "/auth/token", "", "{}", {{"Content-Type", "application/json"}});
  CHECK(json.status == 400);
  CHECK(json.body.find("invalid_request") != std::string::npos);
  CHECK(f.call("GET", "/auth/token", "").status == 405);

  // An expired access token: valid now, refused 301 s later.
  const std::string token = f.access_token("hospital-a", "a-1", t::shared_ec(), scope);
  REQUIRE(f.options.auth.care_relations->add(std::string(32, 'b'), "org-a", core::system_clock().now(), "test"));
  const std::string target = "/fhir/Observation?patient=" + std::string(32, 'b');
  CHECK(f.call("GET", target, token).status == 200);
  f.clock.set(f.clock.now() + std::chrono::seconds(301));
  auto expired = f.call("GET", target, token);
  CHECK(expired.status == 401);
  CHECK(header(expired, "WWW-Authenticate").find("error=\"invalid_token\"") != std::string::npos);
}

TEST_CASE("mutual TLS: a registered client certificate authenticates as that client, an unknown one does not", "[fhir][auth]") {
  Fixture f;
  REQUIRE(f.options.auth.care_relations->add(std::string(32, 'c'), "org-a", core::system_clock().now(), "test"));
  fhir::Request r{"GET", "/fhir/Observation?patient=" + std::string(32, 'c'), {}, "", "192.0.2.10:40000", false};
  r.client_certificate = "hospital-a";
  CHECK(f.router->handle(r).status == 200);
  r.client_certificate = "hospital-b";  // registered, but no care relation
  CHECK(f.router->handle(r).status == 403);
  r.client_certificate = "someone-else";
  CHECK(f.router->handle(r).status == 401);
  auto trail = f.trail();
  REQUIRE(trail.size() == 3);
  CHECK(trail[0].user_id == "hospital-a");
  CHECK(trail[0].outcome == "success");
  CHECK(trail[1].user_id == "hospital-b");
  CHECK(trail[1].outcome == "denied");
  CHECK(trail[2].user_id == "anonymous");
  CHECK(trail[2].outcome == "denied");
}

TEST_CASE("the SMART configuration names the token endpoint and the supported methods", "[fhir][auth]") {
  Fixture f;
  auto r = f.call("GET", "/fhir/.well-known/smart-configuration", "");
  REQUIRE(r.status == 200);
  rapidjson::Document d;
  d.Parse(r.body.c_str());
  REQUIRE(d.IsObject());
  CHECK(std::string(d["token_endpoint"].GetString()) == kTokenUrl);
  CHECK(r.body.find("private_key_jwt") != std::string::npos);
  CHECK(r.body.find("ES384") != std::string::npos);
  // The CapabilityStatement says the same, and stays valid FHIR.
  auto metadata = f.call("GET", "/fhir/metadata", "");
  REQUIRE(metadata.status == 200);
  CHECK(metadata.body.find("\"SMART-on-FHIR\"") != std::string::npos);
  CHECK(metadata.body.find(kTokenUrl) != std::string::npos);
  auto validated = testing::fhir_validate({metadata.body});
  INFO(validated.output);
  CHECK(validated.exit_code == 0);
}
