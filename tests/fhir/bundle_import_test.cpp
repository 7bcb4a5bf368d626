#include "bundle_import.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <fstream>
#include <iterator>
#include <map>
#include <set>

#include "telehub/clinical/resource_store.h"
#include "telehub/privacy/identity_vault.h"
#include "telehub/privacy/pseudonym.h"
#include "telehub/storage/store.h"
#include "test_support.h"

using namespace telehub;
using rapidjson::Value;

namespace {

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::vector<std::filesystem::path> synthea_files() {
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::directory_iterator(testing::shared_dir() / "synthea"))
    if (e.path().extension() == ".json") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::string json_of(const Value& v) {
  rapidjson::StringBuffer b;
  rapidjson::Writer<rapidjson::StringBuffer> w(b);
  v.Accept(w);
  return std::string(b.GetString(), b.GetSize());
}

// Removes a member keeping the order of the others (RemoveMember moves the last one into its place).
void erase(Value& v, const char* name) {
  if (auto it = v.FindMember(name); it != v.MemberEnd()) v.EraseMember(it);
}

struct Fixture {
  testing::TempDir dir;
  privacy::Kek kek = *privacy::Kek::from_hex(std::string(64, 'c'));
  std::unique_ptr<storage::Store> measurements;
  std::unique_ptr<privacy::IdentityVault> vault;
  std::unique_ptr<privacy::Pseudonymiser> pseudonymiser;
  std::unique_ptr<clinical::ResourceStore> store;

  Fixture() {
    auto s = storage::open_sqlite_store({dir.path() / "telehub.db"}, core::system_clock());
    REQUIRE(s);
    measurements = std::move(*s);
    auto v = privacy::IdentityVault::open(dir.path() / "identity.db", dir.path() / "vault.key", kek);
    REQUIRE(v);
    vault = std::move(*v);
    pseudonymiser = std::move(*privacy::Pseudonymiser::from_key(core::Bytes(32, 5)));
    auto c = clinical::ResourceStore::open(dir.path() / "clinical.db", core::system_clock());
    REQUIRE(c);
    store = std::move(*c);
  }
  fhir::ImportContext context() {
    return fhir::ImportContext{*vault, *pseudonymiser, measurements->registry(), *store, "http://fhir.test/fhir"};
  }
  Result<fhir::ImportResult> import(const std::string& json) { return fhir::import_bundle(json, context()); }
  std::int64_t total() {
    auto counts = store->count_by_type();
    REQUIRE(counts);
    std::int64_t n = 0;
    for (const auto& [type, count] : *counts) n += count;
    return n;
  }
  std::string clinical_bytes() {
    return slurp(dir.path() / "clinical.db") + slurp(dir.path() / "clinical.db-wal");
  }
};

// Replaces every "reference" under v through `map` (unmapped ones stay).
void map_references(Value& v, const std::map<std::string, std::string>& map, rapidjson::Document::AllocatorType& a) {
  if (v.IsObject()) {
    for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
      if (std::string_view(it->name.GetString()) == "reference" && it->value.IsString()) {
        auto found = map.find(it->value.GetString());
        if (found != map.end()) it->value.SetString(found->second.c_str(), a);
      } else {
        map_references(it->value, map, a);
      }
    }
  } else if (v.IsArray()) {
    for (auto& e : v.GetArray()) map_references(e, map, a);
  }
}

std::string small_bundle(const std::string& type, const std::string& bad_reference) {
  return R"({"resourceType":"Bundle","type":")" + type + R"(","entry":[
    {"fullUrl":"urn:uuid:11111111-1111-1111-1111-111111111111","resource":{"resourceType":"Patient","id":"hosp-42",
      "identifier":[{"system":"http://hospital.example/mrn","value":"MRN-424242"}],"name":[{"family":"Smallbundlefamily"}]},
      "request":{"method":"POST","url":"Patient"}},
    {"fullUrl":"urn:uuid:22222222-2222-2222-2222-222222222222","resource":{"resourceType":"Observation","status":"final",
      "code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]},"subject":{"reference":"urn:uuid:11111111-1111-1111-1111-111111111111"},
      "effectiveDateTime":"2020-01-01T10:00:00Z","valueQuantity":{"value":80,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}},
      "request":{"method":"POST","url":"Observation"}},
    {"fullUrl":"urn:uuid:33333333-3333-3333-3333-333333333333","resource":{"resourceType":"Observation","status":"final",
      "code":{"coding":[{"system":"http://loinc.org","code":"8302-2"}]},"subject":{"reference":"Patient/hosp-42"},
      "encounter":{"reference":")" + bad_reference + R"("},
      "effectiveDateTime":"2020-01-01T10:00:00Z","valueQuantity":{"value":180,"unit":"cm","system":"http://unitsofmeasure.org","code":"cm"}},
      "request":{"method":"POST","url":"Observation"}}]})";
}

}  // namespace

TEST_CASE("bundle import: every Synthea Bundle imports and reads back equal in meaning", "[fhir][import]") {
  Fixture f;
  std::vector<std::string> to_validate;
  for (const auto& file : synthea_files()) {
    INFO(file.filename().string());
    const std::string text = slurp(file);
    const auto start = std::chrono::steady_clock::now();
    auto r = f.import(text);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    REQUIRE(r);
    WARN(file.filename().string() << ": " << r->entries.size() << " entries imported in " << ms.count() << " ms");
    CHECK(r->failed() == 0);
    REQUIRE(r->patients.size() == 1);
    CHECK(r->patients[0].created);
    const std::string pseudonym = r->patients[0].pseudonym;
    if (to_validate.empty()) to_validate.push_back(fhir::response_bundle_json(*r, "http://fhir.test/fhir"));

    rapidjson::Document source;
    source.Parse<rapidjson::kParseFullPrecisionFlag>(text.c_str());
    REQUIRE(source.IsObject());
    auto& entries = source["entry"];
    REQUIRE(r->entries.size() == entries.Size());
    std::map<std::string, std::string> refs;
    for (rapidjson::SizeType i = 0; i < entries.Size(); ++i) {
      const auto& e = r->entries[i];
      REQUIRE(!e.id.empty());
      refs[entries[i]["fullUrl"].GetString()] = e.resource_type + "/" + e.id;
    }
    std::set<std::string> validated_types;
    for (rapidjson::SizeType i = 0; i < entries.Size(); ++i) {
      Value& resource = entries[i]["resource"];
      const std::string type = resource["resourceType"].GetString();
      if (type == "Patient") {
        CHECK(r->entries[i].id == pseudonym);
        auto subject = f.vault->find_by_pseudonym(pseudonym);
        REQUIRE(subject);
        REQUIRE(*subject);
        auto doc = f.vault->document(**subject, "patient");
        REQUIRE(doc);
        REQUIRE(*doc);
        rapidjson::Document back;
        back.Parse<rapidjson::kParseFullPrecisionFlag>((*doc)->c_str());
        CHECK(back == resource);
        auto person = f.vault->get(**subject);
        REQUIRE(person);
        REQUIRE(*person);
        CHECK((*person)->record_numbers.size() >= 2);
        continue;
      }
      auto stored = f.store->read(type, r->entries[i].id);
      REQUIRE(stored);
      REQUIRE(*stored);
      rapidjson::Document got;
      got.Parse<rapidjson::kParseFullPrecisionFlag>((*stored)->json.c_str());
      REQUIRE(got.IsObject());
      erase(got, "id");
      erase(got, "meta");
      rapidjson::Document want;
      want.CopyFrom(resource, want.GetAllocator());
      erase(want, "id");
      erase(want, "meta");
      map_references(want, refs, want.GetAllocator());
      INFO(type << " entry " << i);
      CHECK(json_of(got) == json_of(want));
      CHECK(got == want);
      if (validated_types.insert(type).second && to_validate.size() < 40) to_validate.push_back((*stored)->json);
    }

    // No identifier of the Patient anywhere in clinical.db.
    const Value& patient = entries[0]["resource"];
    REQUIRE(std::string(patient["resourceType"].GetString()) == "Patient");
    std::vector<std::string> secrets = {patient["id"].GetString(), patient["name"][0]["family"].GetString(),
                                        patient["name"][0]["given"][0].GetString(),
                                        patient["telecom"][0]["value"].GetString(),
                                        patient["address"][0]["line"][0].GetString()};
    for (const auto& id : patient["identifier"].GetArray()) secrets.push_back(id["value"].GetString());
    const std::string bytes = f.clinical_bytes();
    for (const auto& s : secrets) {
      INFO("identifier of length " << s.size());
      CHECK(bytes.find(s) == std::string::npos);
    }
  }
  const auto before = f.total();
  CHECK(before > 2000);

  // Re-import: nothing new, everything "200 OK".
  for (const auto& file : synthea_files()) {
    auto r = f.import(slurp(file));
    REQUIRE(r);
    CHECK(r->stored() == 0);
    CHECK(r->failed() == 0);
    CHECK(r->existing() == r->entries.size());
    CHECK(!r->patients[0].created);
  }
  CHECK(f.total() == before);
  auto subjects = f.vault->subject_ids();
  REQUIRE(subjects);
  CHECK(subjects->size() == 6);

  auto validation = testing::fhir_validate(to_validate);
  INFO(validation.output);
  CHECK(validation.exit_code == 0);
}

TEST_CASE("bundle import: a transaction with one bad entry stores nothing", "[fhir][import]") {
  Fixture f;
  auto r = f.import(small_bundle("transaction", "urn:uuid:99999999-9999-9999-9999-999999999999"));
  REQUIRE(!r);
  CHECK(r.error().code == core::Code::kInvalidArgument);
  CHECK(r.error().message.find("entry[2].resource.encounter.reference") != std::string::npos);
  CHECK(r.error().message.find("9999") == std::string::npos);
  CHECK(f.total() == 0);
  // The same Bundle without the bad reference imports.
  auto ok = f.import(small_bundle("transaction", "#local"));
  REQUIRE(ok);
  CHECK(ok->stored() == 3);  // the Patient (vault) and two Observations
  CHECK(f.total() == 2);
  CHECK(f.clinical_bytes().find("hosp-42") == std::string::npos);
  CHECK(f.clinical_bytes().find("MRN-424242") == std::string::npos);
}

TEST_CASE("bundle import: a batch stores the good entries and reports the bad one", "[fhir][import]") {
  Fixture f;
  auto r = f.import(small_bundle("batch", "urn:uuid:99999999-9999-9999-9999-999999999999"));
  REQUIRE(r);
  CHECK(r->failed() == 1);
  CHECK(r->stored() == 2);
  CHECK(r->entries[0].status == "201 Created");
  CHECK(r->entries[1].status == "201 Created");
  CHECK(r->entries[2].status == "400 Bad Request");
  REQUIRE(r->entries[2].error);
  CHECK(f.total() == 1);
  const auto response = fhir::response_bundle_json(*r, "http://fhir.test/fhir");
  CHECK(response.find("batch-response") != std::string::npos);
  CHECK(response.find("OperationOutcome") != std::string::npos);
  auto validation = testing::fhir_validate({response});
  INFO(validation.output);
  CHECK(validation.exit_code == 0);
}

TEST_CASE("bundle import: references without a Patient entry, PUT, conditional create and limits",
          "[fhir][import]") {
  Fixture f;
  auto first = f.import(small_bundle("transaction", "#x"));
  REQUIRE(first);
  const std::string ps = first->patients[0].pseudonym;
  auto obs = [](const std::string& subject, const std::string& code) {
    return R"({"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":")" +
           code + R"("}]},"subject":{"reference":")" + subject + R"("},"identifier":[{"system":"urn:x","value":"obs-)" + code + R"("}]})";
  };
  auto bundle = [](const std::string& entries) {
    return R"({"resourceType":"Bundle","type":"transaction","entry":[)" + entries + "]}";
  };
  // Known pseudonym and conditional reference.
  auto ok = f.import(bundle(R"({"resource":)" + obs("Patient/" + ps, "1") +
                            R"(,"request":{"method":"POST","url":"Observation"}},{"resource":)" +
                            obs("Patient?identifier=http://hospital.example/mrn|MRN-424242", "2") +
                            R"(,"request":{"method":"PUT","url":"Observation/put-1"}})"));
  REQUIRE(ok);
  CHECK(ok->stored() == 2);
  CHECK(ok->entries[1].location == "Observation/put-1/_history/1");
  auto put = f.store->read("Observation", "put-1");
  REQUIRE(put);
  REQUIRE(*put);
  CHECK((*put)->subject == ps);
  // Unknown Patient references are refused.
  CHECK(!f.import(bundle(R"({"resource":)" + obs("Patient/hosp-99", "3") +
                         R"(,"request":{"method":"POST","url":"Observation"}})")));
  CHECK(!f.import(bundle(R"({"resource":)" + obs("Patient?identifier=http://hospital.example/mrn|nobody", "3") +
                         R"(,"request":{"method":"POST","url":"Observation"}})")));
  // Conditional create: the identifier exists → 200 OK, nothing new.
  auto cond = f.import(bundle(R"({"resource":)" + obs("Patient/" + ps, "1") +
                              R"(,"request":{"method":"POST","url":"Observation","ifNoneExist":"identifier=urn:x|obs-1"}})"));
  REQUIRE(cond);
  CHECK(cond->entries[0].status == "200 OK");
  CHECK(cond->stored() == 0);
  // A PUT again with other content makes version 2.
  auto v2 = f.import(bundle(R"({"resource":)" + obs("Patient/" + ps, "9") +
                            R"(,"request":{"method":"PUT","url":"Observation/put-1"}})"));
  REQUIRE(v2);
  CHECK(v2->entries[0].location == "Observation/put-1/_history/2");
  CHECK(v2->entries[0].etag == "W/\"2\"");
  // Limits and shape.
  std::string many = R"({"resourceType":"Bundle","type":"batch","entry":[)";
  for (int i = 0; i < 10001; ++i) many += std::string(i ? "," : "") + "{}";
  many += "]}";
  auto too_many = f.import(many);
  REQUIRE(!too_many);
  CHECK(too_many.error().message.find("10000") != std::string::npos);
  CHECK(f.import(R"({"resourceType":"Bundle","type":"collection"})").error().reason == "bad_bundle");
  CHECK(f.import("[").error().reason == "bad_bundle");
  auto del = f.import(R"({"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Observation"},"request":{"method":"DELETE","url":"Observation/x"}}]})");
  REQUIRE(!del);
  CHECK(del.error().message.find("entry[0].request.method") != std::string::npos);
}

TEST_CASE("bundle import: entries that refer to each other in a cycle get ids and resolved references",
          "[fhir][import]") {
  Fixture f;
  auto first = f.import(small_bundle("transaction", "#x"));
  REQUIRE(first);
  const std::string ps = first->patients[0].pseudonym;
  const std::string bundle = R"({"resourceType":"Bundle","type":"transaction","entry":[
    {"fullUrl":"urn:uuid:aaaaaaaa-0000-0000-0000-000000000001","resource":{"resourceType":"Encounter","status":"finished",
      "class":{"code":"AMB"},"subject":{"reference":"Patient/)" + ps + R"("},
      "reasonReference":[{"reference":"urn:uuid:aaaaaaaa-0000-0000-0000-000000000002"}]},"request":{"method":"POST","url":"Encounter"}},
    {"fullUrl":"urn:uuid:aaaaaaaa-0000-0000-0000-000000000002","resource":{"resourceType":"Condition",
      "subject":{"reference":"Patient/)" + ps + R"("},
      "encounter":{"reference":"urn:uuid:aaaaaaaa-0000-0000-0000-000000000001"}},"request":{"method":"POST","url":"Condition"}}]})";
  auto r = f.import(bundle);
  REQUIRE(r);
  REQUIRE(r->stored() == 2);
  auto enc = f.store->read("Encounter", r->entries[0].id);
  auto cond = f.store->read("Condition", r->entries[1].id);
  REQUIRE(enc);
  REQUIRE(cond);
  REQUIRE(*enc);
  REQUIRE(*cond);
  CHECK((*enc)->json.find("\"Condition/" + r->entries[1].id + "\"") != std::string::npos);
  CHECK((*cond)->json.find("\"Encounter/" + r->entries[0].id + "\"") != std::string::npos);
  CHECK((*cond)->json.find("urn:uuid") == std::string::npos);
}
