// Issue [7/8]: the clinical routes of the router over real stores — a Synthea transaction
// Bundle posted by a care client, then read, history, search (Condition by patient,
// clinical-status and code; Observation with home readings and clinical ones, paged), and
// Patient/$everything paged to the end; another hospital is refused. Every answer passes
// fhir-validate.
#include <catch2/catch.hpp>

#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "../auth/test_signer.h"
#include "telehub/auth/token_service.h"
#include "telehub/clinical/resource_store.h"
#include "telehub/environment/env_store.h"
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
    auto env = environment::EnvStore::open(dir.path() / "environment.db");
    REQUIRE(env);
    options.environment = std::move(*env);
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

namespace {

// The date an Observation entry sorts by: effectiveDateTime, effectivePeriod.start or issued,
// in Unix ms (the router's merge order; these Synthea and home Observations have one).
std::int64_t entry_date(const rapidjson::Value& entry) {
  const auto& o = entry["resource"];
  std::string text;
  if (o.HasMember("effectiveDateTime")) text = o["effectiveDateTime"].GetString();
  else if (o.HasMember("effectivePeriod")) text = o["effectivePeriod"]["start"].GetString();
  else if (o.HasMember("issued")) text = o["issued"].GetString();
  auto range = clinical::fhir_date_range(text);
  REQUIRE(range);
  return range->from_ms;
}

// Stores one heart rate of `subject` as message `sequence` of `device`.
void append_heart_rate(Fixture& f, const std::string& subject, const std::string& device, std::uint64_t sequence,
                       core::TimePoint time, double value) {
  storage::MessageBatch b;
  b.device_id = device;
  b.sequence = sequence;
  b.content_hash = device + "#" + std::to_string(sequence);
  b.received_at = core::system_clock().now();
  core::Reading r;
  r.device = device;
  r.code = "8867-4";
  r.value = value;
  r.unit = "/min";
  r.time = time;
  r.sequence = sequence;
  b.readings.push_back(privacy::PseudonymousReading::bind(std::move(r), *privacy::SubjectPseudonym::parse(subject)));
  REQUIRE(f.store->observations().append(std::move(b)));
}

// Imports the Synthea patient and gives them 60 home heart-rate readings from 2012 to 2021,
// between the clinical Observations' dates. Returns the patient's pseudonym.
std::string synthea_with_home_readings(Fixture& f, const std::string& token) {
  const std::string bundle = slurp(std::string(TELEHUB_SHARED_DIR) + "/synthea/Kirsten_Witting_a09212a3-af3e-4194-b1d1-3f0a543222f6.json");
  auto posted = f.call("POST", "/fhir", token, bundle);
  REQUIRE(posted.status == 200);
  std::string patient;
  for (const auto& e : parse(posted.body)["entry"].GetArray()) {
    const std::string location = e["response"]["location"].GetString();
    if (location.starts_with("Patient/")) patient = location.substr(8, 32);
  }
  REQUIRE(patient.size() == 32);
  const std::int64_t t0 = 1'328'000'000'000;  // 2012-01-31
  for (std::uint64_t i = 0; i < 60; ++i)  // every ~58 days
    append_heart_rate(f, patient, "dev-sort", i + 1, core::from_unix_millis(t0 + static_cast<std::int64_t>(i) * 5'000'000'000),
                      60 + static_cast<double>(i % 30));
  return patient;
}

// Walks an Observation search to its last page; returns the entries' fullUrls and dates.
std::vector<std::pair<std::string, std::int64_t>> walk(Fixture& f, const std::string& token, std::string target,
                                                       const std::function<void(int)>& after_page = {}) {
  std::vector<std::pair<std::string, std::int64_t>> out;
  for (int pages = 0; !target.empty() && pages < 100; ++pages) {
    auto response = f.call("GET", target, token);
    INFO(target << "\n" << response.body.substr(0, 600));
    REQUIRE(response.status == 200);
    auto page = parse(response.body);
    if (page.HasMember("entry"))
      for (const auto& e : page["entry"].GetArray()) out.emplace_back(e["fullUrl"].GetString(), entry_date(e));
    target = next_link(page).empty() ? "" : Fixture::target_of(next_link(page));
    if (after_page) after_page(pages);
  }
  REQUIRE(target.empty());
  return out;
}

}  // namespace

TEST_CASE("Observation _sort=date and -date merge home readings and clinical Observations by date, paging each once",
          "[fhir][clinical]") {
  Fixture f;
  const std::string token = f.api_token("hospital-a", "org-a");
  const std::string patient = synthea_with_home_readings(f, token);

  const auto ascending = walk(f, token, "/fhir/Observation?patient=" + patient + "&_sort=date&_count=7");
  REQUIRE(ascending.size() == 179 + 60);
  std::set<std::string> ids;
  for (const auto& [url, date] : ascending) ids.insert(url);
  CHECK(ids.size() == ascending.size());
  bool ordered = true;
  for (std::size_t i = 1; i < ascending.size(); ++i) ordered = ordered && ascending[i - 1].second <= ascending[i].second;
  CHECK(ordered);
  // Home readings really are interleaved with clinical ones (Synthea's come in clusters per
  // encounter), not in one block; home reading ids are short numbers, clinical ids 32 hex.
  auto is_home = [](const std::string& url) { return url.size() - url.rfind('/') - 1 < 32; };
  std::size_t switches = 0;
  for (std::size_t i = 1; i < ascending.size(); ++i) switches += is_home(ascending[i - 1].first) != is_home(ascending[i].first);
  CHECK(switches > 10);

  // Newest first, while a newer reading arrives in the middle of the walk: it is not shown (it
  // sorts before the position already reached), nothing repeats, nothing is lost.
  const auto descending = walk(f, token, "/fhir/Observation?patient=" + patient + "&_sort=-date&_count=13", [&](int page) {
    // 2023: newer than everything.
    if (page == 3) append_heart_rate(f, patient, "dev-sort", 1000, core::from_unix_millis(1'700'000'000'000), 77);
  });
  REQUIRE(descending.size() == ascending.size());
  ordered = true;
  for (std::size_t i = 1; i < descending.size(); ++i) ordered = ordered && descending[i - 1].second >= descending[i].second;
  CHECK(ordered);
  std::set<std::string> desc_ids;
  for (const auto& [url, date] : descending) desc_ids.insert(url);
  CHECK(desc_ids == ids);

  // Refusals: another sort, a cursor of the unsorted search, a damaged merged cursor.
  CHECK(f.call("GET", "/fhir/Observation?patient=" + patient + "&_sort=code", token).status == 400);
  CHECK(f.call("GET", "/fhir/Observation?patient=" + patient + "&_sort=-date&_cursor=c:00", token).status == 400);
  CHECK(f.call("GET", "/fhir/Observation?patient=" + patient + "&_sort=-date&_cursor=m:nonsense", token).status == 400);
  CHECK(f.call("GET", "/fhir/Observation?patient=" + patient + "&_cursor=m:x~x", token).status == 400);

  auto validated = testing::fhir_validate({f.bodies.begin() + 1, f.bodies.begin() + 6});
  INFO(validated.output.substr(0, 3000));
  CHECK(validated.exit_code == 0);
}

TEST_CASE("Observation $lastn groups home readings and clinical Observations by their LOINC coding", "[fhir][clinical]") {
  Fixture f;
  const std::string token = f.api_token("hospital-a", "org-a");
  const std::string patient = synthea_with_home_readings(f, token);
  // A hospital heart rate carrying a local coding first and LOINC second, newer than every
  // home reading: it must join the 8867-4 group.
  const std::string local_hr = R"({"resourceType":"Observation","status":"final",
    "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
    "code":{"coding":[{"system":"urn:oid:2.16.840.1.113883.2.4.3.11.999","code":"HR-1"},{"system":"http://loinc.org","code":"8867-4"}]},
    "subject":{"reference":"Patient/)" + patient + R"("},"effectiveDateTime":"2022-06-01T10:00:00Z",
    "valueQuantity":{"value":88,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}})";
  auto created = f.call("POST", "/fhir/Observation", token, local_hr);
  if (created.status == 404 || created.status == 405) {
    // No plain create route: send it in a batch Bundle.
    created = f.call("POST", "/fhir", token,
                     R"({"resourceType":"Bundle","type":"batch","entry":[{"resource":)" + local_hr +
                         R"(,"request":{"method":"POST","url":"Observation"}}]})");
  }
  INFO(created.body.substr(0, 1000));
  REQUIRE(created.status < 300);

  auto response = f.call("GET", "/fhir/Observation/$lastn?patient=" + patient + "&code=http://loinc.org|8867-4&max=3", token);
  INFO(response.body.substr(0, 2000));
  REQUIRE(response.status == 200);
  auto bundle = parse(response.body);
  REQUIRE(bundle["entry"].Size() == 3);
  // Newest first: the hospital's 2022 reading, then the two newest home readings (2021).
  CHECK(bundle["entry"][0]["resource"]["valueQuantity"]["value"].GetDouble() == 88);
  CHECK(std::string(bundle["entry"][0]["resource"]["code"]["coding"][0]["code"].GetString()) == "HR-1");
  CHECK(entry_date(bundle["entry"][0]) > entry_date(bundle["entry"][1]));
  CHECK(entry_date(bundle["entry"][1]) > entry_date(bundle["entry"][2]));
  const std::string home_url = bundle["entry"][1]["fullUrl"].GetString();
  CHECK(home_url.size() - home_url.rfind('/') - 1 < 32);  // a home reading id

  // Every code: one per group; the Synthea body weight (29463-7) and the heart rate group each
  // appear once, and each group's member is its newest.
  auto all = parse(f.call("GET", "/fhir/Observation/$lastn?patient=" + patient, token).body);
  std::map<std::string, int> per_group;
  std::string heart_rate_value;
  for (const auto& e : all["entry"].GetArray()) {
    const auto& codings = e["resource"]["code"]["coding"];
    std::string group;
    for (const auto& c : codings.GetArray())
      if (std::string(c["system"].GetString()) == "http://loinc.org" && group.empty()) group = c["code"].GetString();
    if (group.empty()) group = codings[0]["code"].GetString();
    ++per_group[group];
    if (group == "8867-4") heart_rate_value = std::to_string(e["resource"]["valueQuantity"]["value"].GetDouble());
  }
  CHECK(per_group["29463-7"] == 1);
  CHECK(per_group["8867-4"] == 1);
  CHECK(heart_rate_value.starts_with("88"));
  for (const auto& [group, n] : per_group) {
    INFO(group);
    CHECK(n == 1);
  }

  auto validated = testing::fhir_validate({f.bodies.back(), response.body});
  INFO(validated.output.substr(0, 3000));
  CHECK(validated.exit_code == 0);
}

TEST_CASE("Patient $everything start and end select clinical records by their care date", "[fhir][clinical]") {
  Fixture f;
  const std::string token = f.api_token("hospital-a", "org-a");
  const std::string patient = synthea_with_home_readings(f, token);
  auto collect = [&](const std::string& query) {
    std::vector<std::string> bodies;
    std::string target = "/fhir/Patient/" + patient + "/$everything?_count=200" + query;
    for (int pages = 0; !target.empty() && pages < 20; ++pages) {
      auto r = f.call("GET", target, token);
      REQUIRE(r.status == 200);
      auto page = parse(r.body);
      if (page.HasMember("entry"))
        for (const auto& e : page["entry"].GetArray()) {
          rapidjson::StringBuffer b;
          rapidjson::Writer<rapidjson::StringBuffer> w(b);
          e["resource"].Accept(w);
          bodies.emplace_back(b.GetString());
        }
      target = next_link(page).empty() ? "" : Fixture::target_of(next_link(page));
    }
    return bodies;
  };
  const auto all = collect("");
  const auto in_2015 = collect("&start=2015-01-01&end=2015-12-31");
  CHECK(in_2015.size() < all.size());
  // Every dated clinical record and home reading in the answer touches 2015; the Patient is in.
  const std::int64_t from = clinical::fhir_date_range("2015")->from_ms, to = clinical::fhir_date_range("2015")->to_ms;
  int dated = 0;
  bool patient_seen = false;
  for (const auto& body : in_2015) {
    auto d = parse(body);
    const std::string type = d["resourceType"].GetString();
    if (type == "Patient") patient_seen = true;
    for (const char* member : {"effectiveDateTime", "onsetDateTime", "performedDateTime", "occurrenceDateTime", "authoredOn"}) {
      if (!d.HasMember(member)) continue;
      auto range = clinical::fhir_date_range(d[member].GetString());
      REQUIRE(range);
      INFO(type << " " << member << " " << d[member].GetString());
      CHECK((range->from_ms < to && range->to_ms > from));
      ++dated;
    }
  }
  CHECK(patient_seen);
  CHECK(dated > 5);
  // Everything 2015 holds, the unfiltered dossier holds too.
  std::set<std::string> all_set(all.begin(), all.end());
  for (const auto& body : in_2015) CHECK(all_set.count(body) == 1);
}

TEST_CASE("Patient $everything includes the environment of the patient's home area over the period, paged", "[fhir][clinical]") {
  Fixture f;
  const std::string token = f.api_token("hospital-a", "org-a");
  const std::string patient_json = R"({"resourceType":"Patient",
    "identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"111222333"}],
    "name":[{"family":"Jansen","given":["Anna"]}],"gender":"female","birthDate":"1951-04-12",
    "address":[{"line":["Kerkstraat 1"],"postalCode":"3511 AB","city":"Utrecht"}]})";
  auto created = f.call("POST", "/fhir/Patient", token, patient_json);
  INFO(created.body);
  REQUIRE(created.status == 201);
  std::string patient;
  for (const auto& [k, v] : created.headers)
    if (k == "Location") patient = v.substr(v.find("/Patient/") + 9, 32);
  REQUIRE(patient.size() == 32);
  // Home readings from 10:20 to 13:40 on 2026-03-01.
  for (std::uint64_t i = 0; i < 3; ++i)
    append_heart_rate(f, patient, "dev-env", i + 1, *core::parse_rfc3339("2026-03-01T10:20:00Z") + std::chrono::minutes(100 * i), 70);
  // Environment: three components every hour of the day in 3511, and another area.
  std::string csv = "area,time,pm25,no2,temperature\n";
  for (int h = 0; h < 24; ++h) {
    const std::string hh = (h < 10 ? "0" : "") + std::to_string(h);
    csv += "3511,2026-03-01T" + hh + ":00:00Z,8,20," + std::to_string(h % 10) + "\n";
    csv += "3512,2026-03-01T" + hh + ":00:00Z,99,99,9\n";
  }
  REQUIRE(f.options.environment->import_csv(csv, "t.csv"));

  auto environment_of = [&](const std::string& query) {
    std::vector<std::string> ids;
    std::vector<std::string> bodies;
    std::string target = "/fhir/Patient/" + patient + "/$everything?_count=4" + query;
    for (int pages = 0; !target.empty() && pages < 50; ++pages) {
      auto r = f.call("GET", target, token);
      INFO(r.body.substr(0, 600));
      REQUIRE(r.status == 200);
      auto page = parse(r.body);
      if (page.HasMember("entry"))
        for (const auto& e : page["entry"].GetArray()) {
          const std::string url = e["fullUrl"].GetString();
          if (url.find("/Observation/env-") == std::string::npos) continue;
          ids.push_back(url.substr(url.rfind('/') + 1));
          CHECK(e["resource"]["valueQuantity"]["value"].GetDouble() < 99);  // never the other area
        }
      bodies.push_back(r.body);
      target = next_link(page).empty() ? "" : Fixture::target_of(next_link(page));
    }
    REQUIRE(target.empty());
    return std::pair(ids, bodies);
  };
  // Without start/end: the hours of the home readings, 10:00 to 14:00 (4 hours x 3 components).
  auto [ids, bodies] = environment_of("");
  CHECK(ids.size() == 12);
  CHECK(std::set<std::string>(ids.begin(), ids.end()).size() == ids.size());
  CHECK(ids.front().starts_with("env-3511-pm25-"));
  // With start and end: the whole requested period.
  auto [day, day_bodies] = environment_of("&start=2026-03-01T00:00:00Z&end=2026-03-01T05:59:59Z");
  CHECK(day.size() == 6 * 3);
  // Only Devices and Patient asked: no environment.
  CHECK(environment_of("&_type=Patient,Device").first.empty());

  auto validated = testing::fhir_validate(bodies);
  INFO(validated.output.substr(0, 3000));
  CHECK(validated.exit_code == 0);
}
