// Issue [7/8] item 3: Patient/<id>/$summary, the IPS document Bundle (fhir/src/ips.h), over real
// stores: a Synthea Bundle imported with fhir::import_bundle plus home readings. Every document
// passes fhir-validate; the sections, their entries and the self-containment are checked against
// the stores.
#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <rapidjson/document.h>

#include "bundle_import.h"
#include "ips.h"
#include "resources.h"
#include "telehub/clinical/resource_store.h"
#include "telehub/privacy/identity_vault.h"
#include "telehub/storage/store.h"
#include "test_support.h"

using namespace telehub;

namespace {

constexpr const char* kBase = "https://hub.test/fhir";
constexpr const char* kLoinc = "http://loinc.org";

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

core::TimePoint at(const char* rfc3339) { return *core::parse_rfc3339(rfc3339); }

core::Reading reading(std::string code, double value, std::string unit, const char* time) {
  core::Reading r;
  r.code = std::move(code);
  r.value = value;
  r.unit = std::move(unit);
  r.time = at(time);
  return r;
}

// Every "reference" string anywhere in `v`.
void collect_references(const rapidjson::Value& v, std::vector<std::string>& out) {
  if (v.IsArray()) {
    for (const auto& item : v.GetArray()) collect_references(item, out);
  } else if (v.IsObject()) {
    for (const auto& m : v.GetObject()) {
      if (std::string(m.name.GetString()) == "reference" && m.value.IsString()) out.emplace_back(m.value.GetString());
      else collect_references(m.value, out);
    }
  }
}

// The section of the Composition with this LOINC code, or nullptr.
const rapidjson::Value* section(const rapidjson::Value& composition, const std::string& code) {
  for (const auto& s : composition["section"].GetArray())
    for (const auto& c : s["code"]["coding"].GetArray())
      if (std::string(c["system"].GetString()) == kLoinc && std::string(c["code"].GetString()) == code) return &s;
  return nullptr;
}

std::set<std::string> section_references(const rapidjson::Value& s) {
  std::set<std::string> refs;
  if (s.HasMember("entry"))
    for (const auto& e : s["entry"].GetArray()) refs.insert(e["reference"].GetString());
  return refs;
}

std::string empty_reason(const rapidjson::Value& s) {
  if (!s.HasMember("emptyReason")) return {};
  return s["emptyReason"]["coding"][0]["code"].GetString();
}

struct Fixture {
  testing::TempDir dir;
  privacy::Kek kek = *privacy::Kek::from_hex(std::string(64, 'e'));
  std::unique_ptr<storage::Store> measurements;
  std::unique_ptr<privacy::IdentityVault> vault;
  std::unique_ptr<privacy::Pseudonymiser> pseudonymiser;
  std::unique_ptr<clinical::ResourceStore> store;
  std::uint64_t sequence = 0;

  Fixture() {
    auto s = storage::open_sqlite_store({dir.path() / "telehub.db"}, core::system_clock());
    REQUIRE(s);
    measurements = std::move(*s);
    auto v = privacy::IdentityVault::open(dir.path() / "identity.db", dir.path() / "vault.key", kek);
    REQUIRE(v);
    vault = std::move(*v);
    pseudonymiser = std::move(*privacy::Pseudonymiser::from_key(core::Bytes(32, 9)));
    auto c = clinical::ResourceStore::open(dir.path() / "clinical.db", core::system_clock());
    REQUIRE(c);
    store = std::move(*c);
  }

  // Imports a Synthea Bundle; returns the subject pseudonym.
  std::string import_synthea(const std::string& file) {
    const std::string bundle = slurp(testing::shared_dir() / "synthea" / file);
    auto imported = fhir::import_bundle(bundle, fhir::ImportContext{*vault, *pseudonymiser, measurements->registry(), *store, kBase});
    REQUIRE(imported);
    REQUIRE(imported->patients.size() == 1);
    return imported->patients[0].pseudonym;
  }

  void add_device(const std::string& id, const std::string& subject) {
    storage::DeviceRecord d;
    d.id = id;
    d.subject = subject;
    d.wrapped_key = core::Bytes(61, 0xAB);
    d.enrolled_at = at("2026-10-01T00:00:00Z");
    REQUIRE(measurements->registry().add_device(d));
  }

  void append(const std::string& device, const std::string& subject, std::vector<core::Reading> readings) {
    auto pseudonym = privacy::SubjectPseudonym::parse(subject);
    REQUIRE(pseudonym);
    storage::MessageBatch b;
    b.device_id = device;
    b.sequence = ++sequence;
    b.content_hash = "hash-" + std::to_string(sequence);
    b.received_at = at("2026-11-20T09:00:00Z");
    for (auto& r : readings) {
      r.device = device;
      r.sequence = sequence;
      b.readings.push_back(privacy::PseudonymousReading::bind(r, *pseudonym));
    }
    auto outcome = measurements->observations().append(std::move(b));
    REQUIRE(outcome);
    REQUIRE(*outcome == storage::AppendOutcome::kStored);
  }

  fhir::SummaryInput input(const std::string& subject, bool with_clinical = true) {
    fhir::SummaryInput in;
    in.base_url = kBase;
    in.subject = subject;
    in.patient_json = fhir::patient_json(subject);
    in.clinical = with_clinical ? store.get() : nullptr;
    auto latest = measurements->observations().latest(subject, {}, 1);
    REQUIRE(latest);
    in.home_readings = *latest;
    auto devices = measurements->registry().devices_of(subject);
    REQUIRE(devices);
    in.devices = *devices;
    in.now = at("2026-11-21T10:00:00Z");
    return in;
  }

  std::string summary(const fhir::SummaryInput& in) {
    auto json = fhir::summary_bundle_json(in);
    if (!json) FAIL(json.error().to_string());
    return *json;
  }
};

void check_valid(const std::string& document) {
  auto validated = testing::fhir_validate({document});
  INFO(validated.output.substr(0, 3000));
  CHECK(validated.exit_code == 0);
}

// Every reference of the document resolves to an entry's fullUrl (relative ones against the
// base), and fullUrls are unique (bdl-7).
void check_self_contained(const rapidjson::Document& bundle) {
  std::set<std::string> full_urls;
  for (const auto& e : bundle["entry"].GetArray()) CHECK(full_urls.insert(e["fullUrl"].GetString()).second);
  std::vector<std::string> refs;
  collect_references(bundle, refs);
  CHECK_FALSE(refs.empty());
  for (const auto& ref : refs) {
    if (ref.starts_with("#")) continue;
    const std::string absolute = ref.starts_with("http") || ref.starts_with("urn:") ? ref : std::string(kBase) + "/" + ref;
    INFO(ref);
    CHECK(full_urls.count(absolute) == 1);
  }
}

}  // namespace

TEST_CASE("the summary of a Synthea patient with home readings is a valid self-contained IPS document", "[fhir][ips]") {
  Fixture f;
  const std::string subject = f.import_synthea("Kirsten_Witting_a09212a3-af3e-4194-b1d1-3f0a543222f6.json");
  f.add_device("dev-hr-1", subject);
  f.append("dev-hr-1", subject, {reading("8867-4", 72, "/min", "2026-11-01T08:00:00Z")});
  f.append("dev-hr-1", subject, {reading("8867-4", 81, "/min", "2026-11-19T08:00:00Z"),
                                 reading("29463-7", 70.5, "kg", "2026-11-19T08:00:00Z")});
  f.append("dev-hr-1", subject, {reading("15074-8", 5.6, "mmol/L", "2026-11-19T07:00:00Z")});

  const auto in = f.input(subject);
  const std::string document = f.summary(in);
  auto bundle = parse(document);

  check_valid(document);
  CHECK(std::string(bundle["type"].GetString()) == "document");
  CHECK(std::string(bundle["identifier"]["system"].GetString()) == "urn:ietf:rfc:3986");
  CHECK(std::string(bundle["identifier"]["value"].GetString()).starts_with("urn:uuid:"));
  CHECK(std::string(bundle["timestamp"].GetString()) == "2026-11-21T10:00:00.000Z");

  // The Composition first, then the Patient.
  const auto& composition = bundle["entry"][0]["resource"];
  REQUIRE(std::string(composition["resourceType"].GetString()) == "Composition");
  CHECK(std::string(composition["type"]["coding"][0]["code"].GetString()) == "60591-5");
  CHECK(std::string(composition["status"].GetString()) == "final");
  CHECK(std::string(composition["subject"]["reference"].GetString()) == "Patient/" + subject);
  CHECK(std::string(composition["title"].GetString()) == "Patient Summary");
  CHECK(std::string(bundle["entry"][1]["fullUrl"].GetString()) == std::string(kBase) + "/Patient/" + subject);

  const auto* problems = section(composition, "11450-4");
  const auto* allergies = section(composition, "48765-2");
  const auto* medications = section(composition, "10160-0");
  const auto* vitals = section(composition, "8716-3");
  REQUIRE(problems);
  REQUIRE(allergies);
  REQUIRE(medications);
  REQUIRE(vitals);
  for (const auto* s : {problems, allergies, medications, vitals}) {
    CHECK(std::string((*s)["text"]["status"].GetString()) == "generated");
    CHECK(std::string((*s)["text"]["div"].GetString()).starts_with("<div xmlns=\"http://www.w3.org/1999/xhtml\">"));
  }

  // Problems: exactly the subject's active Conditions, as the clinical store finds them.
  clinical::Query q;
  q.type = "Condition";
  q.subject = subject;
  q.limit = 1000;
  for (const char* status : {"active", "recurrence", "relapse"}) q.tokens.push_back({"clinical-status", "", status});
  auto active = f.store->search(q);
  REQUIRE(active);
  std::set<std::string> expected;
  for (const auto& r : active->resources) expected.insert("Condition/" + r.id);
  CHECK(expected.size() == 5);
  CHECK(section_references(*problems) == expected);

  // Medications: the active MedicationRequests.
  clinical::Query m;
  m.type = "MedicationRequest";
  m.subject = subject;
  m.limit = 1000;
  auto requests = f.store->search(m);
  REQUIRE(requests);
  std::size_t active_requests = 0;
  for (const auto& r : requests->resources)
    if (r.json.find("\"status\":\"active\"") != std::string::npos) ++active_requests;
  CHECK(active_requests > 0);
  CHECK(section_references(*medications).size() == active_requests);

  // Kirsten has no AllergyIntolerance: the section is there, empty, "nil known".
  CHECK(section_references(*allergies).empty());
  CHECK(empty_reason(*allergies) == "nilknown");

  // Vital signs: the latest home heart rate (81, not 72), its weight, and clinical vital signs.
  std::string latest_hr, latest_glucose;
  for (const auto& o : in.home_readings) {
    if (o.reading.code == "8867-4") latest_hr = "Observation/" + std::to_string(o.id);
    if (o.reading.code == "15074-8") latest_glucose = "Observation/" + std::to_string(o.id);
  }
  REQUIRE_FALSE(latest_hr.empty());
  const auto vital_refs = section_references(*vitals);
  CHECK(vital_refs.count(latest_hr) == 1);
  CHECK(vital_refs.size() > 2);  // home readings and the clinical ones
  INFO((*vitals)["text"]["div"].GetString());
  CHECK(std::string((*vitals)["text"]["div"].GetString()).find("Heart rate: 81 ") != std::string::npos);
  // The home glucose is a laboratory result.
  const auto* results = section(composition, "30954-2");
  REQUIRE(results);
  CHECK(section_references(*results).count(latest_glucose) == 1);

  // Immunizations and procedures: every completed Immunization and every completed Procedure
  // of the subject, as the clinical store holds them.
  auto completed = [&](const std::string& type) {
    clinical::Query all;
    all.type = type;
    all.subject = subject;
    all.limit = 1000;
    auto found = f.store->search(all);
    REQUIRE(found);
    std::set<std::string> refs;
    for (const auto& r : found->resources)
      if (r.json.find("\"status\":\"completed\"") != std::string::npos) refs.insert(type + "/" + r.id);
    return refs;
  };
  const auto immunizations = completed("Immunization");
  const auto procedures = completed("Procedure");
  CHECK(immunizations.size() > 0);
  CHECK(procedures.size() > 0);
  const auto* immunization_section = section(composition, "11369-6");
  const auto* procedure_section = section(composition, "47519-4");
  REQUIRE(immunization_section);
  REQUIRE(procedure_section);
  CHECK(section_references(*immunization_section) == immunizations);
  CHECK(section_references(*procedure_section) == procedures);
  CHECK(std::string((*immunization_section)["text"]["div"].GetString()).find("<li>") != std::string::npos);

  // Self-contained: the readings' Device, the Conditions' Encounters and their Practitioner
  // and Organization are all entries.
  check_self_contained(bundle);
  std::set<std::string> types;
  for (const auto& e : bundle["entry"].GetArray()) types.insert(e["resource"]["resourceType"].GetString());
  CHECK(types.count("Device") == 1);
  CHECK(types.count("Encounter") == 1);
  CHECK(types.count("Practitioner") == 1);
  CHECK(types.count("Organization") == 1);
}

TEST_CASE("a subject without clinical records gets the required sections empty with emptyReason", "[fhir][ips]") {
  Fixture f;
  f.import_synthea("Kirsten_Witting_a09212a3-af3e-4194-b1d1-3f0a543222f6.json");  // another subject
  const std::string subject = f.pseudonymiser->subject("home-only").str();
  REQUIRE(f.measurements->registry().add_subject(*privacy::SubjectPseudonym::parse(subject)));
  f.add_device("dev-hr-2", subject);
  f.append("dev-hr-2", subject, {reading("8867-4", 66, "/min", "2026-11-19T08:00:00Z")});

  for (const bool with_clinical : {true, false}) {
    INFO("clinical store: " << with_clinical);
    const std::string document = f.summary(f.input(subject, with_clinical));
    check_valid(document);
    auto bundle = parse(document);
    const auto& composition = bundle["entry"][0]["resource"];
    for (const char* code : {"11450-4", "48765-2", "10160-0"}) {
      INFO(code);
      const auto* s = section(composition, code);
      REQUIRE(s);
      CHECK_FALSE(s->HasMember("entry"));
      CHECK(empty_reason(*s) == "unavailable");
      CHECK(std::string((*s)["text"]["div"].GetString()).find("There is no information") != std::string::npos);
    }
    CHECK(section(composition, "8716-3"));
    CHECK_FALSE(section(composition, "30954-2"));
    CHECK_FALSE(section(composition, "11369-6"));  // optional sections only with entries
    CHECK_FALSE(section(composition, "47519-4"));
    // Only this subject's data: the Composition, the Patient, the Device and the reading.
    CHECK(bundle["entry"].Size() == 4);
    check_self_contained(bundle);
  }
}

TEST_CASE("references that cannot be followed are cut to a display and narrative text is escaped", "[fhir][ips]") {
  Fixture f;
  const std::string subject = f.pseudonymiser->subject("escaped").str();
  const std::string other = f.pseudonymiser->subject("someone-else").str();
  // An active Condition whose text needs escaping, referring to a missing Practitioner,
  // another subject's Condition and a conditional reference.
  auto other_condition = f.store->write({clinical::ResourceWrite::Mode::kCreate, "Condition", "",
                                         R"({"resourceType":"Condition","subject":{"reference":"Patient/)" + other + R"("}})"});
  REQUIRE(other_condition);
  const std::string json =
      R"({"resourceType":"Condition","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"recurrence"}]},)"
      R"("code":{"text":"Pain <script>alert(1)</script> & \"fever\""},"subject":{"reference":"Patient/)" + subject +
      R"("},"asserter":{"reference":"Practitioner/missing"},"evidence":[{"detail":[{"reference":"Condition/)" +
      other_condition->id + R"("},{"reference":"Observation?code=1234"}]}]})";
  auto written = f.store->write({clinical::ResourceWrite::Mode::kCreate, "Condition", "", json});
  REQUIRE(written);

  auto in = f.input(subject);
  in.patient_json = R"({"resourceType":"Patient","id":"hospital-id","active":true,"generalPractitioner":[{"reference":"Practitioner/missing"}]})";
  const std::string document = f.summary(in);
  check_valid(document);
  auto bundle = parse(document);
  check_self_contained(bundle);
  CHECK(document.find(other) == std::string::npos);  // never another subject's data
  CHECK(document.find("hospital-id") == std::string::npos);
  CHECK(document.find("Not included") != std::string::npos);
  CHECK(document.find("Practitioner (not included)") != std::string::npos);

  const auto& composition = bundle["entry"][0]["resource"];
  const auto* problems = section(composition, "11450-4");
  REQUIRE(problems);
  CHECK(section_references(*problems) == std::set<std::string>{"Condition/" + written->id});
  const std::string div = (*problems)["text"]["div"].GetString();
  CHECK(div.find("Pain &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;fever&quot;") != std::string::npos);
  CHECK(div.find("<script>") == std::string::npos);
  // The store holds records of the subject, none of these kinds: "nil known".
  CHECK(empty_reason(*section(composition, "48765-2")) == "nilknown");
}

TEST_CASE("a bad summary input is refused", "[fhir][ips]") {
  fhir::SummaryInput in;
  in.base_url = kBase;
  in.subject = "abc";
  in.patient_json = R"({"resourceType":"Observation"})";
  auto refused = fhir::summary_bundle_json(in);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().reason == "bad_patient");
  in.patient_json = fhir::patient_json("abc");
  in.subject = "not a FHIR id";
  refused = fhir::summary_bundle_json(in);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().reason == "bad_summary");
}
