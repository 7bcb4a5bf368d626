// Issue [7/8]: the clinical routes of the router over real stores — a Synthea transaction
// Bundle posted by a care client, then read, history, search (Condition by patient,
// clinical-status and code; Observation with home readings and clinical ones, paged), and
// Patient/$everything paged to the end; another hospital is refused. Every answer passes
// fhir-validate.
#include <catch2/catch.hpp>

#include <fstream>
#include <set>
#include <sstream>

#include <rapidjson/document.h>

#include "../auth/test_signer.h"
#include "telehub/auth/token_service.h"
#include "telehub/clinical/resource_store.h"
#include "telehub/fhir/router.h"
#include "telehub/privacy/care_relations.h"
#include "telehub/storage/store.h"
#include "test_support.h"

using namespace telehub;

namespace {

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

rapidjson::Document parse(const std::string& body) {
  rapidjson::Document d;
  d.Parse(body.c_str());
  REQUIRE_FALSE(d.HasParseError());
  return d;
}

std::string next_link(const rapidjson::Document& bundle) {
  if (!bundle.HasMember("link")) return {};
  for (const auto& l : bundle["link"].GetArray())
    if (std::string(l["relation"].GetString()) == "next") return l["url"].GetString();
  return {};
}

struct Fixture {
  testing::TempDir dir;
  privacy::Kek kek = *privacy::Kek::from_hex(std::string(64, 'd'));
  std::unique_ptr<storage::Store> store;
  std::shared_ptr<auth::TokenService> tokens;
  fhir::RouterOptions options;
  std::unique_ptr<fhir::Router> router;
  std::vector<std::string> bodies;

  Fixture() {
    auto s = storage::open_sqlite_store({dir.path() / "telehub.db"}, core::system_clock());
    REQUIRE(s);
    store = std::move(*s);
    auto ts = auth::TokenService::open(dir.path() / "auth.db", core::system_clock());
    REQUIRE(ts);
    tokens = std::move(*ts);
    auto care = privacy::CareRelations::open(dir.path() / "care.db");
    REQUIRE(care);
    auto vault = privacy::IdentityVault::open(dir.path() / "identity.db", dir.path() / "vault.key", kek);
    REQUIRE(vault);
    auto audit = privacy::AuditLog::open(dir.path() / "audit.db");
    REQUIRE(audit);
    auto clinical = clinical::ResourceStore::open(dir.path() / "clinical.db", core::system_clock());
    REQUIRE(clinical);
    options.base_url = "https://hub.test/fhir";
    options.privacy.vault = std::move(*vault);
    options.privacy.audit = std::move(*audit);
    options.privacy.pseudonymiser = std::move(*privacy::Pseudonymiser::from_key(core::Bytes(32, 5)));
    options.auth.tokens = tokens;
    options.auth.token_url = "https://hub.test/auth/token";
    options.auth.care_relations = std::move(*care);
    options.clinical = std::move(*clinical);
    router = std::make_unique<fhir::Router>(*store, options);
  }

  std::string api_token(const std::string& name, const std::string& organisation) {
    // A SMART client per organisation, with a token from the token service directly.
    auto key = t_key();
    REQUIRE(tokens->register_client({name, auth::test::jwks_json({auth::test::jwk_json(key, "k")}),
                                     "system/*.cruds", "care", organisation}));
    const std::string claims = R"({"iss":")" + name + R"(","sub":")" + name +
                               R"(","aud":"https://hub.test/auth/token","jti":"j-)" + name + R"(","exp":)" +
                               std::to_string(core::to_unix_millis(core::system_clock().now()) / 1000 + 200) + "}";
    auto issued = tokens->issue({{"grant_type", "client_credentials"},
                                 {"scope", "system/*.cruds"},
                                 {"client_assertion_type", std::string(auth::kJwtBearerAssertionType)},
                                 {"client_assertion", auth::test::sign_jws(key, R"({"alg":"ES384","kid":"k"})", claims)}},
                                "https://hub.test/auth/token");
    REQUIRE(issued);
    return issued->access_token;
  }
  static const auth::test::Pkey& t_key() { return auth::test::shared_ec(); }

  fhir::Response call(const std::string& method, const std::string& target, const std::string& token,
                      const std::string& body = "") {
    fhir::Request r{method, target, {{"Authorization", "Bearer " + token}}, body, "192.0.2.20:1234", false};
    auto response = router->handle(r);
    if (response.content_type.find("json") != std::string::npos) bodies.push_back(response.body);
    return response;
  }
  // A next link of the router, as a target.
  static std::string target_of(const std::string& url) { return url.substr(std::string("https://hub.test").size()); }
};

}  // namespace

TEST_CASE("a Synthea Bundle posted by a care client reads back, searches, pages and is in $everything", "[fhir][clinical]") {
  Fixture f;
  const std::string token = f.api_token("hospital-a", "org-a");
  const std::string bundle = slurp(std::string(TELEHUB_SHARED_DIR) + "/synthea/Kirsten_Witting_a09212a3-af3e-4194-b1d1-3f0a543222f6.json");
  auto posted = f.call("POST", "/fhir", token, bundle);
  INFO(posted.body.substr(0, 2000));
  REQUIRE(posted.status == 200);
  auto response = parse(posted.body);
  CHECK(std::string(response["type"].GetString()) == "transaction-response");
  REQUIRE(response["entry"].Size() == 308);
  std::string patient, condition;
  for (const auto& e : response["entry"].GetArray()) {
    const std::string location = e["response"]["location"].GetString();
    if (location.starts_with("Patient/")) patient = location.substr(8, 32);
    if (location.starts_with("Condition/") && condition.empty()) condition = location.substr(10, location.find('/', 10) - 10);
  }
  REQUIRE(patient.size() == 32);
  REQUIRE_FALSE(condition.empty());

  // Read with ETag, history.
  auto read = f.call("GET", "/fhir/Condition/" + condition, token);
  CHECK(read.status == 200);
  CHECK(read.body.find("\"Patient/" + patient + "\"") != std::string::npos);
  auto history = f.call("GET", "/fhir/Condition/" + condition + "/_history", token);
  CHECK(history.status == 200);
  CHECK(history.body.find("\"history\"") != std::string::npos);
  CHECK(f.call("GET", "/fhir/Condition/" + condition + "/_history/1", token).status == 200);
  CHECK(f.call("GET", "/fhir/Condition/" + condition + "/_history/2", token).status == 404);

  // Condition search by patient and clinical status; _summary=count.
  auto conditions = parse(f.call("GET", "/fhir/Condition?patient=" + patient + "&clinical-status=active", token).body);
  REQUIRE(conditions.HasMember("entry"));
  CHECK(conditions["entry"].Size() >= 1);
  auto counted = parse(f.call("GET", "/fhir/Condition?patient=" + patient + "&_summary=count", token).body);
  CHECK(counted["total"].GetInt() == 9);

  // Observation search over the clinical Observations, paged to the end: 179, none repeated.
  std::set<std::string> seen;
  std::string target = "/fhir/Observation?patient=" + patient + "&_count=50";
  int pages = 0;
  while (!target.empty() && pages < 20) {
    auto page = parse(f.call("GET", target, token).body);
    ++pages;
    if (page.HasMember("entry"))
      for (const auto& e : page["entry"].GetArray()) seen.insert(e["fullUrl"].GetString());
    target = next_link(page).empty() ? "" : Fixture::target_of(next_link(page));
  }
  CHECK(seen.size() == 179);
  CHECK(pages == 4);

  // $everything, paged: the Patient, and every clinical resource of the subject.
  std::set<std::string> everything;
  target = "/fhir/Patient/" + patient + "/$everything?_count=100";
  pages = 0;
  while (!target.empty() && pages < 20) {
    auto r = f.call("GET", target, token);
    INFO(r.body.substr(0, 500));
    REQUIRE(r.status == 200);
    auto page = parse(r.body);
    ++pages;
    if (page.HasMember("entry"))
      for (const auto& e : page["entry"].GetArray()) everything.insert(e["fullUrl"].GetString());
    target = next_link(page).empty() ? "" : Fixture::target_of(next_link(page));
  }
  CHECK(everything.count("https://hub.test/fhir/Patient/" + patient) == 1);
  CHECK(everything.size() >= 300);  // the Patient plus the subject's records (Organization/Practitioner have none)

  // The International Patient Summary of the same patient: a document Bundle, Composition first.
  auto ips = f.call("GET", "/fhir/Patient/" + patient + "/$summary", token);
  INFO(ips.body.substr(0, 500));
  REQUIRE(ips.status == 200);
  auto document = parse(ips.body);
  CHECK(std::string(document["type"].GetString()) == "document");
  CHECK(std::string(document["entry"][0]["resource"]["resourceType"].GetString()) == "Composition");

  // The CapabilityStatement names the clinical types, transaction/batch and $everything.
  auto cs = f.call("GET", "/fhir/metadata", token);
  CHECK(cs.body.find("\"type\":\"Condition\"") != std::string::npos);
  CHECK(cs.body.find("Patient-everything") != std::string::npos);
  CHECK(cs.body.find("\"transaction\"") != std::string::npos);

  // Another hospital sees nothing of this patient.
  const std::string other = f.api_token("hospital-b", "org-b");
  CHECK(f.call("GET", "/fhir/Condition/" + condition, other).status == 403);
  CHECK(f.call("GET", "/fhir/Condition?patient=" + patient, other).status == 403);
  CHECK(f.call("GET", "/fhir/Patient/" + patient + "/$everything", other).status == 403);
  CHECK(f.call("GET", "/fhir/Patient/" + patient + "/$summary", other).status == 403);

  std::vector<std::string> sample(f.bodies.begin() + 1, f.bodies.end());  // the big response Bundle is checked by the import tests
  auto validated = testing::fhir_validate(sample);
  INFO(validated.output.substr(0, 3000));
  CHECK(validated.exit_code == 0);
}
