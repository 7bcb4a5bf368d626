// fhir::Router over a real SQLite store: every route, every search parameter and every error
// path, with everything the router returns checked by the independent validator
// (../shared/tools/fhir-validate, including its vital-signs layer).
#include <catch2/catch.hpp>

#include <rapidjson/document.h>

#include <algorithm>
#include <map>
#include <set>

#include "telehub/core/codes.h"
#include "telehub/fhir/router.h"
#include "telehub/storage/store.h"
#include "test_support.h"

using namespace telehub;

namespace {

constexpr const char* kBase = "http://fhir.test/fhir";

core::TimePoint at(const char* rfc3339) { return *core::parse_rfc3339(rfc3339); }

core::Reading reading(std::string code, std::optional<double> value, std::string unit, const char* time) {
  core::Reading r;
  r.code = std::move(code);
  r.value = value;
  r.unit = std::move(unit);
  r.time = at(time);
  return r;
}

core::Reading bp_panel(double systolic, double diastolic, const char* time) {
  core::Reading r = reading(std::string(core::loinc::kBloodPressurePanel), std::nullopt, "", time);
  r.components = {{std::string(core::loinc::kSystolic), systolic, "mm[Hg]"},
                  {std::string(core::loinc::kDiastolic), diastolic, "mm[Hg]"}};
  return r;
}

struct Fixture {
  testing::TempDir dir;
  std::unique_ptr<storage::Store> store;
  std::unique_ptr<privacy::Pseudonymiser> pseudonymiser;
  std::string p1, p2;  // subject pseudonyms
  std::vector<std::string> bodies;  // everything the router returned, for the validator
  std::uint64_t sequence = 0;

  explicit Fixture(fhir::RouterOptions options = {}) : options_(std::move(options)) {
    auto s = storage::open_sqlite_store({dir.path() / "telehub.db"}, core::system_clock());
    REQUIRE(s);
    store = std::move(*s);
    pseudonymiser = std::move(*privacy::Pseudonymiser::from_key(core::Bytes(32, 7)));
    const auto s1 = pseudonymiser->subject("patient-1");
    const auto s2 = pseudonymiser->subject("patient-2");
    p1 = s1.str();
    p2 = s2.str();
    add_device("dev-bp-1", s1, true);
    add_device("dev-ox-1", s1, false);
    add_device("dev_2", s2, true);  // a device id with '_': valid for telehub, not a FHIR id

    // Patient 1, ten observations (in time order):
    //   2026-10-31T23:59:59.999Z weight          2026-11-20T07:00Z glucose (laboratory)
    //   2026-11-01T00:00Z        respiratory     2026-11-20T23:00Z steps (activity)
    //   2026-11-01T08:00Z        BP panel + HR   2026-12-01T00:00Z temperature
    //   2026-11-15T12:30Z        SpO2 + HR       2026-12-01T00:00:00.500Z unknown code 2710-2
    append("dev-bp-1", s1, {bp_panel(128, 82, "2026-11-01T08:00:00Z"), reading("8867-4", 72, "/min", "2026-11-01T08:00:00Z")});
    append("dev-ox-1", s1, {reading("59408-5", 97, "%", "2026-11-15T12:30:00Z"), reading("8867-4", 80, "/min", "2026-11-15T12:30:00Z")});
    append("dev-bp-1", s1, {reading("29463-7", 80.5, "kg", "2026-10-31T23:59:59.999Z")});
    append("dev-bp-1", s1, {reading("8310-5", 37.1, "Cel", "2026-12-01T00:00:00Z")});
    append("dev-ox-1", s1, {reading("9279-1", 16, "/min", "2026-11-01T00:00:00Z")});
    append("dev-bp-1", s1, {reading("15074-8", 5.6, "mmol/L", "2026-11-20T07:00:00Z")});
    append("dev-bp-1", s1, {reading("41950-7", 8123, "/d", "2026-11-20T23:00:00Z")});
    append("dev-ox-1", s1, {reading("2710-2", 95, "%", "2026-12-01T00:00:00.500Z")});
    // Patient 2, one observation.
    append("dev_2", s2, {reading("8867-4", 65, "/min", "2026-11-10T10:00:00Z")});
  }

  void add_device(const std::string& id, const privacy::SubjectPseudonym& subject, bool active) {
    storage::DeviceRecord d;
    d.id = id;
    d.subject = subject.str();
    d.wrapped_key = core::Bytes(61, 0xAB);  // opaque to storage and fhir
    d.enrolled_at = at("2026-10-01T00:00:00Z");
    d.active = active;
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
    REQUIRE(*outcome == storage::AppendOutcome::kStored);
  }

  fhir::Response call(const std::string& method, const std::string& target) {
    fhir::Router router(*store, options_);
    fhir::Response r = router.handle({method, target, {}, "", "", false});
    bodies.push_back(r.body);
    return r;
  }
  fhir::Response get(const std::string& target) { return call("GET", target); }

  // GET and parse; REQUIREs the status.
  rapidjson::Document get_json(const std::string& target, int status = 200) {
    auto r = get(target);
    INFO(target << " -> " << r.body);
    REQUIRE(r.status == status);
    REQUIRE(r.content_type.rfind("application/fhir+json", 0) == 0);
    rapidjson::Document d;
    d.Parse(r.body.c_str());
    REQUIRE_FALSE(d.HasParseError());
    return d;
  }

  void validate_all() {
    auto result = testing::fhir_validate(bodies);
    INFO(result.output);
    REQUIRE(result.exit_code == 0);
    // The summary line, for the test log.
    const auto pos = result.output.rfind("resources checked");
    if (pos != std::string::npos) {
      const auto start = result.output.rfind('\n', pos);
      WARN(result.output.substr(start == std::string::npos ? 0 : start + 1));
    }
  }

  std::string search(const std::string& query) { return "/fhir/Observation?" + query; }

  fhir::RouterOptions options_;
};

fhir::RouterOptions test_options() {
  fhir::RouterOptions o;
  o.base_url = kBase;
  return o;
}

// Match entries of a searchset: "<effectiveDateTime> <first LOINC code>" each.
std::vector<std::string> matches(const rapidjson::Document& bundle) {
  std::vector<std::string> out;
  if (!bundle.HasMember("entry")) return out;
  for (const auto& e : bundle["entry"].GetArray()) {
    if (std::string(e["search"]["mode"].GetString()) != "match") continue;
    const auto& res = e["resource"];
    const auto& coding = res["code"]["coding"];
    std::string code = coding[0]["code"].GetString();
    if (code == "2708-6") code = coding[1]["code"].GetString();  // SpO2: the stored code is the second coding
    out.push_back(std::string(res["effectiveDateTime"].GetString()) + " " + code);
  }
  return out;
}

std::vector<std::string> ids(const rapidjson::Document& bundle) {
  std::vector<std::string> out;
  if (!bundle.HasMember("entry")) return out;
  for (const auto& e : bundle["entry"].GetArray())
    if (std::string(e["search"]["mode"].GetString()) == "match") out.push_back(e["resource"]["id"].GetString());
  return out;
}

std::optional<std::string> link(const rapidjson::Document& bundle, const std::string& relation) {
  for (const auto& l : bundle["link"].GetArray())
    if (relation == l["relation"].GetString()) return std::string(l["url"].GetString());
  return std::nullopt;
}

// Issue code of an OperationOutcome body.
std::string issue_code(const rapidjson::Document& outcome) {
  REQUIRE(std::string(outcome["resourceType"].GetString()) == "OperationOutcome");
  REQUIRE(std::string(outcome["issue"][0]["severity"].GetString()) == "error");
  return outcome["issue"][0]["code"].GetString();
}

bool has_coding(const rapidjson::Value& cc, const std::string& system, const std::string& code) {
  for (const auto& c : cc["coding"].GetArray())
    if (system == c["system"].GetString() && code == c["code"].GetString()) return true;
  return false;
}

const std::vector<std::string> kAllP1 = {
    "2026-10-31T23:59:59.999Z 29463-7", "2026-11-01T00:00:00.000Z 9279-1", "2026-11-01T08:00:00.000Z 85354-9",
    "2026-11-01T08:00:00.000Z 8867-4",  "2026-11-15T12:30:00.000Z 59408-5", "2026-11-15T12:30:00.000Z 8867-4",
    "2026-11-20T07:00:00.000Z 15074-8", "2026-11-20T23:00:00.000Z 41950-7", "2026-12-01T00:00:00.000Z 8310-5",
    "2026-12-01T00:00:00.500Z 2710-2"};

std::vector<std::string> slice(std::size_t from, std::size_t to) {
  return {kAllP1.begin() + static_cast<std::ptrdiff_t>(from), kAllP1.begin() + static_cast<std::ptrdiff_t>(to)};
}

}  // namespace

TEST_CASE("metadata and reads", "[fhir]") {
  Fixture f(test_options());

  auto cs = f.get_json("/fhir/metadata");
  CHECK(std::string(cs["resourceType"].GetString()) == "CapabilityStatement");
  CHECK(std::string(cs["fhirVersion"].GetString()) == "4.0.1");
  CHECK(std::string(cs["kind"].GetString()) == "instance");
  CHECK(std::string(cs["implementation"]["url"].GetString()) == kBase);
  std::map<std::string, std::set<std::string>> interactions;
  std::map<std::string, std::set<std::string>> params;
  for (const auto& r : cs["rest"][0]["resource"].GetArray()) {
    for (const auto& i : r["interaction"].GetArray()) interactions[r["type"].GetString()].insert(i["code"].GetString());
    if (r.HasMember("searchParam"))
      for (const auto& p : r["searchParam"].GetArray()) params[r["type"].GetString()].insert(p["name"].GetString());
  }
  // Exactly what this router serves (no clinical store here: no clinical types, no $everything).
  CHECK(interactions["Observation"] == std::set<std::string>{"read", "search-type"});
  CHECK(interactions["Patient"] == std::set<std::string>{"read", "search-type", "create", "update"});
  CHECK(interactions["Device"] == std::set<std::string>{"read"});
  CHECK(interactions["Consent"] == std::set<std::string>{"create"});
  CHECK(interactions["AuditEvent"] == std::set<std::string>{"search-type"});
  CHECK(interactions.size() == 5);
  CHECK(params["Observation"] == std::set<std::string>{"patient", "subject", "code", "date", "_count", "_aggregate"});
  CHECK(params["Patient"] == std::set<std::string>{"identifier"});
  CHECK(cs["rest"][0]["resource"][1].HasMember("operation") == false);  // $everything needs the clinical store
  CHECK_FALSE(cs["rest"][0].HasMember("interaction"));

  // Find each observation's id through a search.
  auto all = f.get_json(f.search("patient=" + f.p1 + "&_count=100"));
  REQUIRE(matches(all) == kAllP1);
  const auto all_ids = ids(all);
  auto id_of = [&](const std::string& code) {
    for (std::size_t i = 0; i < kAllP1.size(); ++i)
      if (kAllP1[i].ends_with(" " + code)) return all_ids[i];
    FAIL("no " << code);
    return std::string();
  };

  // SpO2: 2708-6 (vital-signs profile) and 59408-5 (as measured) and the MDC code.
  auto spo2 = f.get_json("/fhir/Observation/" + id_of("59408-5"));
  CHECK(std::string(spo2["resourceType"].GetString()) == "Observation");
  CHECK(std::string(spo2["id"].GetString()) == id_of("59408-5"));
  CHECK(std::string(spo2["status"].GetString()) == "final");
  CHECK(has_coding(spo2["code"], "http://loinc.org", "2708-6"));
  CHECK(has_coding(spo2["code"], "http://loinc.org", "59408-5"));
  CHECK(has_coding(spo2["code"], "urn:iso:std:iso:11073:10101", "150456"));
  CHECK(has_coding(spo2["category"][0], "http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs"));
  CHECK(std::string(spo2["subject"]["reference"].GetString()) == "Patient/" + f.p1);
  CHECK(std::string(spo2["device"]["reference"].GetString()) == "Device/dev-ox-1");
  CHECK(std::string(spo2["effectiveDateTime"].GetString()) == "2026-11-15T12:30:00.000Z");
  CHECK(std::string(spo2["meta"]["lastUpdated"].GetString()) == "2026-12-02T09:00:00.000Z");
  CHECK(spo2["valueQuantity"]["value"].GetDouble() == 97);
  CHECK(std::string(spo2["valueQuantity"]["code"].GetString()) == "%");
  CHECK(std::string(spo2["valueQuantity"]["system"].GetString()) == "http://unitsofmeasure.org");

  // Heart rate: unit text from the code table, UCUM code as stored.
  auto hr = f.get_json("/fhir/Observation/" + all_ids[3]);
  CHECK(std::string(hr["valueQuantity"]["unit"].GetString()) == "beats/minute");
  CHECK(std::string(hr["valueQuantity"]["code"].GetString()) == "/min");

  // Blood pressure panel: no value, systolic and diastolic components.
  auto bp = f.get_json("/fhir/Observation/" + id_of("85354-9"));
  CHECK_FALSE(bp.HasMember("valueQuantity"));
  REQUIRE(bp["component"].Size() == 2);
  CHECK(has_coding(bp["component"][0]["code"], "http://loinc.org", "8480-6"));
  CHECK(bp["component"][0]["valueQuantity"]["value"].GetDouble() == 128);
  CHECK(std::string(bp["component"][0]["valueQuantity"]["code"].GetString()) == "mm[Hg]");
  CHECK(has_coding(bp["component"][1]["code"], "http://loinc.org", "8462-4"));
  CHECK(bp["component"][1]["valueQuantity"]["value"].GetDouble() == 82);

  // Categories beyond vital signs; an unknown code renders with no category.
  auto glucose = f.get_json("/fhir/Observation/" + id_of("15074-8"));
  CHECK(has_coding(glucose["category"][0], "http://terminology.hl7.org/CodeSystem/observation-category", "laboratory"));
  auto steps = f.get_json("/fhir/Observation/" + id_of("41950-7"));
  CHECK(has_coding(steps["category"][0], "http://terminology.hl7.org/CodeSystem/observation-category", "activity"));
  auto unknown = f.get_json("/fhir/Observation/" + id_of("2710-2"));
  CHECK_FALSE(unknown.HasMember("category"));
  CHECK(has_coding(unknown["code"], "http://loinc.org", "2710-2"));
  CHECK(std::string(unknown["valueQuantity"]["code"].GetString()) == "%");
  for (const char* code : {"29463-7", "8310-5", "9279-1"}) f.get_json("/fhir/Observation/" + id_of(code));

  // Observation ids that name nothing.
  CHECK(issue_code(f.get_json("/fhir/Observation/999999", 404)) == "not-found");
  CHECK(issue_code(f.get_json("/fhir/Observation/abc", 404)) == "not-found");
  CHECK(issue_code(f.get_json("/fhir/Observation/0", 404)) == "not-found");
  CHECK(issue_code(f.get_json("/fhir/Observation/-1", 404)) == "not-found");
  CHECK(issue_code(f.get_json("/fhir/Observation/99999999999999999999999", 404)) == "not-found");

  // Patient: pseudonymous, only for known subjects.
  auto patient = f.get_json("/fhir/Patient/" + f.p1);
  CHECK(std::string(patient["resourceType"].GetString()) == "Patient");
  CHECK(std::string(patient["id"].GetString()) == f.p1);
  CHECK(patient["active"].GetBool());
  CHECK_FALSE(patient.HasMember("name"));
  CHECK_FALSE(patient.HasMember("identifier"));
  CHECK(issue_code(f.get_json("/fhir/Patient/" + f.pseudonymiser->subject("nobody").str(), 404)) == "not-found");
  CHECK(issue_code(f.get_json("/fhir/Patient/patient-1", 404)) == "not-found");

  // Device: status and patient, never the key.
  auto device = f.get_json("/fhir/Device/dev-bp-1");
  CHECK(std::string(device["resourceType"].GetString()) == "Device");
  CHECK(std::string(device["id"].GetString()) == "dev-bp-1");
  CHECK(std::string(device["status"].GetString()) == "active");
  CHECK(std::string(device["patient"]["reference"].GetString()) == "Patient/" + f.p1);
  auto inactive = f.get_json("/fhir/Device/dev-ox-1");
  CHECK(std::string(inactive["status"].GetString()) == "inactive");
  for (const auto& body : f.bodies) {
    CHECK(body.find("abababab") == std::string::npos);
    CHECK(body.find("q6ur") == std::string::npos);  // base64 of 0xAB 0xAB 0xAB
    CHECK(body.find("\"key") == std::string::npos);
  }
  CHECK(issue_code(f.get_json("/fhir/Device/dev-unknown", 404)) == "not-found");
  CHECK(issue_code(f.get_json("/fhir/Device/dev_2", 404)) == "not-found");  // not addressable as a FHIR id

  f.validate_all();
}

TEST_CASE("search by patient and code", "[fhir]") {
  Fixture f(test_options());

  for (const std::string& p : {f.p1, "Patient/" + f.p1, std::string(kBase) + "/Patient/" + f.p1}) {
    CHECK(matches(f.get_json(f.search("patient=" + p))) == kAllP1);
    CHECK(matches(f.get_json(f.search("subject=" + p))) == kAllP1);
  }
  CHECK(matches(f.get_json(f.search("subject:Patient=" + f.p1))) == kAllP1);
  auto p2 = f.get_json(f.search("patient=" + f.p2));
  CHECK(matches(p2) == std::vector<std::string>{"2026-11-10T10:00:00.000Z 8867-4"});
  // Its device id is not a FHIR id: a logical reference (http://hl7.org/fhir/R4/references.html#logical).
  const auto& device = p2["entry"][0]["resource"]["device"];
  CHECK_FALSE(device.HasMember("reference"));
  CHECK(std::string(device["type"].GetString()) == "Device");
  CHECK(std::string(device["identifier"]["value"].GetString()) == "dev_2");

  // Entries: fullUrl, search mode; self link.
  auto bundle = f.get_json(f.search("patient=" + f.p1 + "&code=8867-4"));
  CHECK(std::string(bundle["resourceType"].GetString()) == "Bundle");
  CHECK(std::string(bundle["type"].GetString()) == "searchset");
  for (const auto& e : bundle["entry"].GetArray()) {
    CHECK(std::string(e["fullUrl"].GetString()) == std::string(kBase) + "/Observation/" + e["resource"]["id"].GetString());
    CHECK(std::string(e["search"]["mode"].GetString()) == "match");
  }
  CHECK(link(bundle, "self") == std::string(kBase) + "/Observation?patient=" + f.p1 + "&code=8867-4&_count=50");
  CHECK_FALSE(link(bundle, "next"));

  // Not a pseudonym, another resource type, or an unknown patient: an empty Bundle.
  for (const std::string& p : {std::string("patient-1"), std::string("Device/dev-bp-1"), f.pseudonymiser->subject("x").str()}) {
    auto empty = f.get_json(f.search("patient=" + p));
    CHECK(std::string(empty["type"].GetString()) == "searchset");
    CHECK_FALSE(empty.HasMember("entry"));
  }
  // Two different patients (AND) match nothing.
  CHECK(matches(f.get_json(f.search("patient=" + f.p1 + "&subject=" + f.p2))).empty());

  const std::vector<std::string> heart_rates = {kAllP1[3], kAllP1[5]};
  CHECK(matches(f.get_json(f.search("patient=" + f.p1 + "&code=8867-4"))) == heart_rates);
  CHECK(matches(f.get_json(f.search("patient=" + f.p1 + "&code=http://loinc.org|8867-4"))) == heart_rates);
  CHECK(matches(f.get_json(f.search("patient=" + f.p1 + "&code=http%3A%2F%2Floinc.org%7C8867-4"))) == heart_rates);
  CHECK(matches(f.get_json(f.search("patient=" + f.p1 + "&code=urn:iso:std:iso:11073:10101|149546"))) == heart_rates);
  CHECK(matches(f.get_json(f.search("patient=" + f.p1 + "&code=http://snomed.info/sct|8867-4"))).empty());
  CHECK(matches(f.get_json(f.search("patient=" + f.p1 + "&code=|8867-4"))).empty());
  // 2708-6 is carried by SpO2 readings stored as 59408-5.
  CHECK(matches(f.get_json(f.search("patient=" + f.p1 + "&code=http://loinc.org|2708-6"))) == std::vector{kAllP1[4]});
  CHECK(matches(f.get_json(f.search("patient=" + f.p1 + "&code=59408-5"))) == std::vector{kAllP1[4]});
  CHECK(matches(f.get_json(f.search("patient=" + f.p1 + "&code=85354-9"))) == std::vector{kAllP1[2]});
  // Comma: OR; repeated: AND.
  CHECK(matches(f.get_json(f.search("patient=" + f.p1 + "&code=8867-4,29463-7"))) ==
        std::vector{kAllP1[0], kAllP1[3], kAllP1[5]});
  CHECK(matches(f.get_json(f.search("patient=" + f.p1 + "&code=8867-4&code=29463-7"))).empty());
  CHECK(matches(f.get_json(f.search("patient=" + f.p1 + "&code=8867-4&code=http://loinc.org|8867-4"))) == heart_rates);

  // Unknown parameters are ignored and reported in an outcome entry; _sort=-date is applied.
  auto lenient = f.get_json(f.search("patient=" + f.p1 + "&code=8867-4&_sort=-date&foo=bar"));
  CHECK(matches(lenient) == std::vector<std::string>(heart_rates.rbegin(), heart_rates.rend()));
  bool outcome_seen = false;
  for (const auto& e : lenient["entry"].GetArray()) {
    if (std::string(e["search"]["mode"].GetString()) != "outcome") continue;
    outcome_seen = true;
    CHECK(std::string(e["resource"]["resourceType"].GetString()) == "OperationOutcome");
    CHECK(std::string(e["resource"]["issue"][0]["severity"].GetString()) == "warning");
    const std::string diagnostics = e["resource"]["issue"][0]["diagnostics"].GetString();
    CHECK(diagnostics.find("_sort") == std::string::npos);
    CHECK(diagnostics.find("foo") != std::string::npos);
  }
  CHECK(outcome_seen);
  CHECK(link(lenient, "self")->find("foo") == std::string::npos);

  f.validate_all();
}

TEST_CASE("search by date: prefixes and precision", "[fhir]") {
  Fixture f(test_options());
  auto dates = [&](const std::string& query) { return matches(f.get_json(f.search("patient=" + f.p1 + "&" + query))); };

  // Year, month, day: the value is a range (http://hl7.org/fhir/R4/search.html#date).
  CHECK(dates("date=2026") == kAllP1);
  CHECK(dates("date=2025").empty());
  CHECK(dates("date=2026-11") == slice(1, 8));
  CHECK(dates("date=eq2026-11") == slice(1, 8));
  CHECK(dates("date=2026-10") == slice(0, 1));
  CHECK(dates("date=2026-11-01") == slice(1, 4));
  CHECK(dates("date=eq2026-11-01") == slice(1, 4));
  CHECK(dates("date=ge2026-11-01") == slice(1, 10));
  CHECK(dates("date=gt2026-11-01") == slice(4, 10));
  CHECK(dates("date=lt2026-11-01") == slice(0, 1));
  CHECK(dates("date=le2026-11-01") == slice(0, 4));
  CHECK(dates("date=gt2026-11") == slice(8, 10));
  CHECK(dates("date=lt2026-12") == slice(0, 8));
  CHECK(dates("date=le2026") == kAllP1);
  CHECK(dates("date=gt2026").empty());

  // Repeated: AND, e.g. a month as two bounds.
  CHECK(dates("date=ge2026-11-01&date=lt2026-12-01") == slice(1, 8));
  CHECK(dates("date=ge2026-11-15&date=le2026-11-20") == slice(4, 8));
  CHECK(dates("date=gt2026-12-01&date=lt2026-11-01").empty());

  // Minute, second and millisecond precision; zones.
  CHECK(dates("date=2026-11-01T08:00Z") == slice(2, 4));
  CHECK(dates("date=2026-12-01T00:00:00Z") == slice(8, 10));
  CHECK(dates("date=2026-12-01T00:00:00.000Z") == slice(8, 9));
  CHECK(dates("date=2026-12-01T00:00:00.5Z") == slice(9, 10));
  CHECK(dates("date=gt2026-12-01T00:00:00Z").empty());
  CHECK(dates("date=ge2026-12-01T00:00:00Z") == slice(8, 10));
  CHECK(dates("date=lt2026-11-01T00:00:00Z") == slice(0, 1));
  CHECK(dates("date=le2026-11-01T00:00:00Z") == slice(0, 2));
  CHECK(dates("date=ge2026-12-01T01:00:00%2B01:00") == slice(8, 10));
  CHECK(dates("date=ge2026-12-01T01:00:00+01:00") == slice(8, 10));  // an unescaped '+' is not a space
  CHECK(dates("date=lt2026-10-31T19:00:00-05:00") == slice(0, 1));
  CHECK(dates("date=2026-11-01T08:00:00") == slice(2, 4));  // no zone: the server's, UTC

  // Dates combined with patient and code.
  CHECK(dates("code=8867-4&date=ge2026-11-10") == std::vector{kAllP1[5]});

  // Refused: unsupported prefixes and malformed values.
  for (const char* q : {"date=ne2026-11-01", "date=sa2026-11-01", "date=eb2026-11-01", "date=ap2026-11-01",
                        "date=2026-11-01,2026-11-02"}) {
    INFO(q);
    CHECK(issue_code(f.get_json(f.search("patient=" + f.p1 + "&" + q), 400)) == "not-supported");
  }
  for (const char* q : {"date=2026-13", "date=2026-02-30", "date=xx2026", "date=26-11-01", "date=2026-11-01T25:00:00Z",
                        "date=2026-11-01T08:00:00+1:00", "date=2026-11-01T08", "date=2026-11-01 08:00:00Z",
                        "date=2026-11-01T08:00:00Zjunk", "date=ge"}) {
    INFO(q);
    CHECK(issue_code(f.get_json(f.search("patient=" + f.p1 + "&" + q), 400)) == "value");
  }

  f.validate_all();
}

TEST_CASE("paging with _count and next links", "[fhir]") {
  fhir::RouterOptions options = test_options();
  options.max_count = 4;
  Fixture f(options);

  auto follow = [&](const std::string& first) {
    std::vector<std::string> seen;
    std::string target = first;
    for (int pages = 0; pages < 50; ++pages) {
      auto page = f.get_json(target);
      const auto m = matches(page);
      CHECK(m.size() <= 3);
      seen.insert(seen.end(), m.begin(), m.end());
      auto next = link(page, "next");
      if (!next) break;
      CHECK(next->find("_cursor=") != std::string::npos);
      REQUIRE(next->rfind(kBase, 0) == 0);
      target = "/fhir" + next->substr(std::string(kBase).size());
    }
    return seen;
  };

  // Ten observations in pages of three: every one exactly once, in order.
  CHECK(follow(f.search("patient=" + f.p1 + "&_count=3")) == kAllP1);
  // Pages of three over a code set (several stored codes) and a date range.
  CHECK(follow(f.search("patient=" + f.p1 + "&code=8867-4,29463-7,59408-5,85354-9&_count=3")) ==
        std::vector{kAllP1[0], kAllP1[2], kAllP1[3], kAllP1[4], kAllP1[5]});
  CHECK(follow(f.search("patient=" + f.p1 + "&date=ge2026-11-01&date=lt2026-12&_count=3")) == slice(1, 8));
  CHECK(follow(f.search("patient=" + f.p1 + "&code=2708-6&_count=1")) == std::vector{kAllP1[4]});

  // The next link keeps the search parameters.
  auto first = f.get_json(f.search("patient=Patient/" + f.p1 + "&code=http://loinc.org|8867-4,29463-7&_count=2"));
  CHECK(matches(first) == std::vector{kAllP1[0], kAllP1[3]});
  const auto next = *link(first, "next");
  CHECK(next.find("patient=Patient/" + f.p1) != std::string::npos);
  CHECK(next.find("code=http://loinc.org%7C8867-4%2C29463-7") != std::string::npos);
  CHECK(next.find("_count=2") != std::string::npos);

  // Above the maximum: clamped; the default is clamped too.
  auto clamped = f.get_json(f.search("patient=" + f.p1 + "&_count=100"));
  CHECK(ids(clamped).size() == 4);
  CHECK(link(clamped, "self")->find("_count=4") != std::string::npos);
  CHECK(ids(f.get_json(f.search("patient=" + f.p1 + "&_count=99999999999999999999"))).size() == 4);
  CHECK(ids(f.get_json(f.search("patient=" + f.p1))).size() == 4);
  CHECK(ids(f.get_json(f.search("patient=" + f.p1 + "&_count=007"))).size() == 4);

  // Bad _count and _cursor values.
  for (const char* q : {"_count=0", "_count=000", "_count=abc", "_count=-1", "_count=1.5", "_count=2&_count=3",
                        "_cursor=junk", "_cursor=1", "_cursor=1.x", "_cursor=1.0"}) {
    INFO(q);
    CHECK(issue_code(f.get_json(f.search("patient=" + f.p1 + "&" + q), 400)) == "value");
  }

  f.validate_all();
}

TEST_CASE("errors are OperationOutcomes with the right status", "[fhir]") {
  Fixture f(test_options());

  // Missing patient/subject.
  CHECK(issue_code(f.get_json("/fhir/Observation", 400)) == "required");
  CHECK(issue_code(f.get_json(f.search("code=8867-4"), 400)) == "required");
  CHECK(issue_code(f.get_json(f.search("patient="), 400)) == "required");
  // OR-lists of patients and modifiers are not supported.
  CHECK(issue_code(f.get_json(f.search("patient=" + f.p1 + "," + f.p2), 400)) == "not-supported");
  CHECK(issue_code(f.get_json(f.search("patient=" + f.p1 + "&code:text=pulse"), 400)) == "not-supported");
  CHECK(issue_code(f.get_json(f.search("patient=" + f.p1 + "&code=http://loinc.org|"), 400)) == "value");
  // Bad percent-encoding.
  CHECK(issue_code(f.get_json(f.search("patient=%zz"), 400)) == "value");

  // Unknown routes.
  for (const char* target : {"/fhir/Unknown", "/fhir/Unknown/1", "/other", "/", "/fhirx/metadata", "/fhir",
                             "/fhir/", "/fhir/metadata/x", "/fhir/Observation/1/_history/1",
                             "/fhir/Observation/%zz"}) {
    INFO(target);
    CHECK(issue_code(f.get_json(target, 404)) == "not-found");
  }

  // Patient search is for the care role: 403 without authentication.
  CHECK(issue_code(f.get_json("/fhir/Patient", 403)) == "forbidden");

  // HEAD is answered as GET (the HTTP server drops the body); other methods: 405 with Allow.
  for (const std::string& target : std::vector<std::string>{"/fhir/metadata", "/fhir/Observation?patient=" + f.p1, "/fhir/Patient/" + f.p1}) {
    INFO(target);
    auto get = f.call("GET", target);
    auto head = f.call("HEAD", target);
    CHECK(get.status == 200);
    CHECK(head.status == get.status);
    CHECK(head.body.size() == get.body.size());
    CHECK(head.content_type == get.content_type);
  }
  CHECK(f.call("HEAD", "/fhir/$export").status == 405);  // HEAD must not start an export
  for (const char* method : {"POST", "PUT", "DELETE", "PATCH"}) {
    for (const std::string& target : std::vector<std::string>{"/fhir/metadata", "/fhir/Observation", "/fhir/Patient/" + f.p1}) {
      INFO(method << " " << target);
      auto r = f.call(method, target);
      CHECK(r.status == 405);
      CHECK(std::find(r.headers.begin(), r.headers.end(), std::pair<std::string, std::string>{"Allow", "GET, HEAD"}) !=
            r.headers.end());
      rapidjson::Document d;
      d.Parse(r.body.c_str());
      CHECK(issue_code(d) == "not-supported");
    }
  }
  // An unknown route stays 404 whatever the method.
  CHECK(f.call("POST", "/fhir/Unknown").status == 404);

  f.validate_all();
}

namespace {

// Fault injection around the real store (STYLE: leveldb's fault_injection_test): every read
// fails as SQLite would under a broken disk.
class FailingObservations final : public storage::ObservationStore {
 public:
  Result<storage::AppendOutcome> append(storage::MessageBatch) override { return fail(); }
  Result<storage::ObservationPage> search(const storage::ObservationQuery&) override { return fail(); }
  Result<std::optional<storage::StoredObservation>> get(std::int64_t) override { return fail(); }
  Result<std::int64_t> count() override { return fail(); }
  Result<std::vector<storage::AggregateBucket>> aggregate(const storage::AggregateQuery&) override { return fail(); }
  Result<std::vector<storage::StoredObservation>> latest(std::string_view, const std::vector<std::string>&,
                                                         std::size_t) override { return fail(); }

 private:
  static tl::unexpected<core::Error> fail() { return core::fail(core::Code::kInternal, "db_error", "disk I/O error at /secret/path"); }
};

class FailingRegistry final : public storage::Registry {
 public:
  Status add_subject(const privacy::SubjectPseudonym&) override { return fail(); }
  Result<bool> subject_exists(std::string_view) override { return fail(); }
  Result<std::vector<std::string>> subjects(std::string_view, std::size_t) override { return fail(); }
  Status add_device(const storage::DeviceRecord&) override { return fail(); }
  Result<std::optional<storage::DeviceRecord>> find_device(std::string_view) override { return fail(); }
  Result<std::vector<storage::DeviceRecord>> devices_of(std::string_view) override { return fail(); }
  Status update_device_info(const storage::DeviceInfoUpdate&) override { return fail(); }
  Status rotate_key(const storage::KeyRotation&) override { return fail(); }
  Status revoke_device(std::string_view, core::TimePoint) override { return fail(); }
  Result<std::vector<std::string>> inactive_device_ids() override { return fail(); }

 private:
  static tl::unexpected<core::Error> fail() { return core::fail(core::Code::kUnavailable, "db_busy", "database is locked /secret/path"); }
};

class FailingStore final : public storage::Store {
 public:
  explicit FailingStore(storage::Store& real) : real_(real) {}
  storage::ObservationStore& observations() override { return observations_; }
  storage::Registry& registry() override { return registry_; }
  storage::Quarantine& quarantine() override { return real_.quarantine(); }
  Status sync() override { return real_.sync(); }
  Result<std::int64_t> compact() override { return real_.compact(); }
  Result<std::int64_t> purge_readings_before(core::TimePoint t) override { return real_.purge_readings_before(t); }
  void close() override { real_.close(); }

 private:
  storage::Store& real_;
  FailingObservations observations_;
  FailingRegistry registry_;
};

}  // namespace

TEST_CASE("a storage failure is a 500 without details", "[fhir]") {
  Fixture f(test_options());
  FailingStore failing(*f.store);
  fhir::Router router(failing, test_options());
  for (const std::string& target : std::vector<std::string>{"/fhir/Observation?patient=" + f.p1, "/fhir/Observation/1",
                                                           "/fhir/Patient/" + f.p1, "/fhir/Device/dev-bp-1"}) {
    INFO(target);
    auto r = router.handle({"GET", target, {}, "", "", false});
    CHECK(r.status == 500);
    rapidjson::Document d;
    d.Parse(r.body.c_str());
    CHECK(issue_code(d) == "exception");
    CHECK(std::string(d["issue"][0]["diagnostics"].GetString()) == "internal error");
    CHECK(r.body.find("secret") == std::string::npos);
    f.bodies.push_back(r.body);
  }
  // The metadata needs no store.
  CHECK(router.handle({"GET", "/fhir/metadata", {}, "", "", false}).status == 200);
  f.validate_all();
}

TEST_CASE("routes of the home-reading views: Observation/$lastn and _aggregate", "[fhir]") {
  Fixture f;
  // Patient 1 has two heart rates (72 on 2026-11-01, 80 on 2026-11-15): $lastn max=1 is the later.
  auto lastn = f.get_json("/fhir/Observation/$lastn?patient=" + f.p1 + "&code=8867-4&max=1");
  REQUIRE(lastn["entry"].Size() == 1);
  CHECK(lastn["entry"][0]["resource"]["valueQuantity"]["value"].GetDouble() == 80);
  // Every code's latest: one entry per stored code of the patient.
  auto all = f.get_json("/fhir/Observation/$lastn?patient=" + f.p1);
  CHECK(all["entry"].Size() >= 8);
  CHECK(f.get("/fhir/Observation/$lastn?code=8867-4").status == 400);  // patient is required
  // Daily aggregates of the heart rate: two days with readings.
  auto daily = f.get_json("/fhir/Observation?patient=" + f.p1 + "&code=8867-4&_aggregate=day&date=ge2026-10-01&date=lt2026-12-01");
  REQUIRE(daily["entry"].Size() == 2);
  CHECK(daily["entry"][0]["resource"]["effectivePeriod"]["start"].GetString() == std::string("2026-11-01T00:00:00.000Z"));
  CHECK(f.get("/fhir/Observation?patient=" + f.p1 + "&_aggregate=week&code=8867-4").status == 400);
  f.validate_all();
}

TEST_CASE("Observation search with _include of the subject and the devices", "[fhir]") {
  Fixture f;
  auto bundle = f.get_json(f.search("patient=" + f.p1 + "&code=8867-4&_include=Observation:subject&_include=Observation:device"));
  std::map<std::string, int> modes;
  std::set<std::string> included;
  for (const auto& e : bundle["entry"].GetArray()) {
    modes[e["search"]["mode"].GetString()]++;
    if (std::string(e["search"]["mode"].GetString()) == "include") included.insert(e["fullUrl"].GetString());
  }
  CHECK(modes["match"] == 2);  // the two heart rates
  const std::string base = "http://127.0.0.1:8080/fhir";  // the router's default base URL
  CHECK(included == std::set<std::string>{base + "/Patient/" + f.p1, base + "/Device/dev-bp-1", base + "/Device/dev-ox-1"});
  // The links keep the _include parameters.
  CHECK(std::string(bundle["link"][0]["url"].GetString()).find("_include=Observation:subject") != std::string::npos);
  CHECK(f.get(f.search("patient=" + f.p1 + "&_include=Observation:performer")).status == 400);
  f.validate_all();
}

TEST_CASE("_elements keeps the asked and the mandatory elements and tags the resources SUBSETTED", "[fhir]") {
  Fixture f;
  auto bundle = f.get_json(f.search("patient=" + f.p1 + "&code=8867-4&_elements=status"));
  REQUIRE(bundle["entry"].Size() == 2);
  for (const auto& e : bundle["entry"].GetArray()) {
    const auto& o = e["resource"];
    CHECK(o.HasMember("status"));
    CHECK(o.HasMember("code"));        // mandatory
    CHECK_FALSE(o.HasMember("device"));  // not asked for
    CHECK(std::string(o["meta"]["tag"][o["meta"]["tag"].Size() - 1]["code"].GetString()) == "SUBSETTED");
  }
  // A read too; _elements is not a search parameter the route sees (no "ignored" outcome).
  auto device = f.get_json("/fhir/Device/dev-bp-1?_elements=status");
  CHECK(device.HasMember("status"));
  CHECK_FALSE(device.HasMember("patient"));
  f.validate_all();
}

TEST_CASE("unknown search parameters: ignored and reported, or 400 with Prefer handling=strict", "[fhir]") {
  Fixture f;
  fhir::RouterOptions options;
  fhir::Router router(*f.store, options);
  const std::string target = "/fhir/Observation?patient=" + f.p1 + "&foo=bar";
  auto lenient = router.handle({"GET", target, {}, "", "", false});
  CHECK(lenient.status == 200);
  CHECK(lenient.body.find("parameters not supported and ignored: foo") != std::string::npos);
  auto strict = router.handle({"GET", target, {{"Prefer", "handling=strict"}}, "", "", false});
  CHECK(strict.status == 400);
  CHECK(strict.body.find("handling=strict") != std::string::npos);
}
