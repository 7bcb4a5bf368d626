// Issue [4/8] end to end: devices enrolled with SenML and with each shipped vendor mapping
// template publish sealed payloads through a real Mosquitto; the hub normalises units, catches
// implausible values, keeps device metadata (serial pseudonymised), and serves FHIR that the
// independent validator accepts. Afterwards the bytes of every SQLite file are searched for
// the identifiers the vendor payloads carried.
#include <catch2/catch.hpp>

#include <rapidjson/document.h>

#include <algorithm>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "telehub/broker/embedded_broker.h"
#include "telehub/fhir/http_server.h"
#include "telehub/fhir/router.h"
#include "telehub/formats/mapping.h"
#include "telehub/gateway/gateway.h"
#include "telehub/ingest/mqtt_subscriber.h"
#include "telehub/ingest/pipeline.h"
#include "test_support.h"

using namespace telehub;
using namespace std::chrono_literals;

namespace {

template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds timeout = 20s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::span<const std::uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// String values in a vendor sample under member names that say "identifier" (name, BSN, MRN,
// birth date, e-mail, phone, address), at any depth.
void collect_identifiers(const rapidjson::Value& v, const std::string& key, std::set<std::string>& out) {
  static const std::regex identifying("name|bsn|mrn|birth|dob|email|mail|phone|address|street|postcode|zip|patient",
                                      std::regex::icase);
  if (v.IsObject()) {
    for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it)
      collect_identifiers(it->value, it->name.GetString(), out);
  } else if (v.IsArray()) {
    for (const auto& e : v.GetArray()) collect_identifiers(e, key, out);
  } else if (v.IsString() && v.GetStringLength() >= 6 && std::regex_search(key, identifying)) {
    out.insert(v.GetString());
  }
}

struct Hub {
  testing::TempDir dir;
  privacy::Kek kek = *privacy::Kek::from_hex(std::string(64, 'd'));
  std::unique_ptr<broker::EmbeddedBroker> broker;
  std::unique_ptr<storage::Store> store;
  std::shared_ptr<formats::MappingSet> mappings;
  std::unique_ptr<ingest::Pipeline> pipeline;
  std::unique_ptr<ingest::MqttSubscriber> subscriber;
  std::unique_ptr<fhir::Router> router;
  std::unique_ptr<fhir::HttpServer> http;
  std::shared_ptr<privacy::Pseudonymiser> pseudonymiser;

  Hub() {
    broker::BrokerOptions bo;
    bo.dir = dir.path() / "broker";
    auto b = broker::EmbeddedBroker::start(bo);
    REQUIRE(b);
    broker = std::move(*b);
    auto s = storage::open_sqlite_store({dir.path() / "telehub.db"}, core::system_clock());
    REQUIRE(s);
    store = std::move(*s);
    auto set = formats::MappingSet::load_dir(testing::source_dir() / "config" / "mappings");
    INFO((set ? "" : set.error().to_string()));
    REQUIRE(set);
    mappings = std::make_shared<formats::MappingSet>(std::move(*set));
    pseudonymiser = std::shared_ptr<privacy::Pseudonymiser>(std::move(*privacy::Pseudonymiser::from_key(core::Bytes(32, 5))));
    ingest::PipelineOptions po;
    po.mappings = mappings;
    po.pseudonymiser = pseudonymiser;
    // The vendor samples carry fixed dates: the replay and clock windows are not under test here.
    po.max_reading_age = core::Millis(0);
    po.max_clock_skew = std::chrono::hours(24 * 365 * 20);
    pipeline = std::make_unique<ingest::Pipeline>(*store, core::system_clock(), kek, po);
    ingest::SubscriberOptions so;
    so.server_uri = broker->uri();
    so.client_id = "telehub-e2e-formats";
    auto sub = ingest::MqttSubscriber::start(so, *pipeline);
    REQUIRE(sub);
    subscriber = std::move(*sub);
    router = std::make_unique<fhir::Router>(*store, fhir::RouterOptions{});
    fhir::HttpServerOptions ho;
    ho.port = 0;
    auto h = fhir::HttpServer::start(ho, *router);
    REQUIRE(h);
    http = std::move(*h);
  }

  gateway::Provisioning enrol(const std::string& device_id, const std::string& subject_id, const std::string& format) {
    storage::DeviceRecord d;
    d.id = device_id;
    d.subject = pseudonymiser->subject(subject_id).str();
    const auto key = *core::random_bytes(32);
    d.key_id = 1;
    d.wrapped_key = *kek.wrap(key, privacy::device_key_ad(d.id, d.key_id));
    d.payload_format = format;
    REQUIRE(store->registry().add_device(d));
    gateway::Provisioning p;
    p.device_id = d.id;
    p.key_id = d.key_id;
    p.key = key;
    p.broker_uri = broker->uri();
    p.readings_topic = gateway::readings_topic_for(d.id);
    return p;
  }

  std::string get(const std::string& path_and_query) const {
    auto r = testing::run_command("curl -s -g 'http://127.0.0.1:" + std::to_string(http->port()) + path_and_query + "'");
    REQUIRE(r.exit_code == 0);
    return r.output;
  }

  std::uint64_t settled() const {
    auto c = pipeline->counters();
    return c.stored_messages + c.quarantined + c.duplicates;
  }
};

std::unique_ptr<gateway::Gateway> connect(const gateway::Provisioning& p) {
  auto gw = gateway::Gateway::connect(p, gateway::GatewayOptions{});
  REQUIRE(gw);
  return std::move(*gw);
}

std::string senml_time(core::TimePoint t) { return std::to_string(core::to_unix_millis(t) / 1000); }

}  // namespace

TEST_CASE("SenML and every vendor template travel through Mosquitto into FHIR, with no identifier stored",
          "[e2e][mqtt][formats]") {
  Hub hub;
  std::vector<std::string> documents;  // every FHIR response, for the validator
  std::set<std::string> identifiers;
  std::uint64_t published = 0;

  // --- SenML: a blood-pressure cuff with an irregular-heartbeat flag, a scale in pounds,
  // device metadata with a serial number.
  auto senml_prov = hub.enrol("dev-senml-1", "patient-senml", "senml");
  auto senml_gw = connect(senml_prov);
  const auto t = testing::minutes_ago(30);
  const std::string pack = R"([{"bn":"urn:dev:mac:0024befffe804ff1:","bt":)" + senml_time(t) +
                           R"(,"n":"systolic","u":"mmHg","v":131},{"n":"diastolic","u":"mmHg","v":84},)"
                           R"({"n":"irregular-heartbeat","vb":true},{"n":"heart-rate","u":"beat/min","v":71},)"
                           R"({"n":"weight","u":"lb","v":154.3,"t":60},)"
                           R"({"n":"manufacturer","vs":"Acme Medical"},{"n":"model","vs":"BP-7"},)"
                           R"({"n":"serial","vs":"SN-SENML-99887766"}])";
  identifiers.insert("SN-SENML-99887766");
  REQUIRE(senml_gw->publish_payload(bytes_of(pack)));
  ++published;

  // Impossible (SpO2 140 %): quarantined with the value and the rule. Extreme but possible
  // (SpO2 80 %): stored and flagged. An unknown unit: quarantined.
  REQUIRE(senml_gw->publish_payload(bytes_of(R"([{"bt":)" + senml_time(t) + R"(,"n":"spo2","u":"%","v":140}])")));
  REQUIRE(senml_gw->publish_payload(bytes_of(R"([{"bt":)" + senml_time(t) + R"(,"n":"spo2","u":"%","v":80}])")));
  REQUIRE(senml_gw->publish_payload(bytes_of(R"([{"bt":)" + senml_time(t) + R"(,"n":"weight","u":"stone","v":11}])")));
  // Two different readings of one code at one time from one device: both kept.
  REQUIRE(senml_gw->publish_payload(bytes_of(R"([{"bt":)" + senml_time(t) + R"(,"n":"heart-rate","u":"/min","v":72}])")));
  REQUIRE(senml_gw->publish_payload(bytes_of(R"([{"bt":)" + senml_time(t) + R"(,"n":"heart-rate","u":"/min","v":75}])")));
  published += 5;

  // --- Every shipped template, with its vendor sample (identifier-bearing).
  const auto vendor_dir = testing::source_dir() / "tests" / "formats" / "data" / "vendor";
  std::map<std::string, std::string> device_of_template;
  int n = 0;
  for (const auto& name : hub.mappings->names()) {
    // Every sample of the template (acme-bp-cuff.json, acme-bp-cuff-kpa.json, ...).
    std::vector<std::filesystem::path> samples;
    for (const auto& e : std::filesystem::directory_iterator(vendor_dir)) {
      const auto stem = e.path().stem().string();
      if (e.path().extension() == ".json" && (stem == name || stem.starts_with(name + "-"))) samples.push_back(e.path());
    }
    INFO("template " << name);
    REQUIRE(!samples.empty());
    const std::string device = "dev-tpl-" + std::to_string(++n);
    device_of_template[name] = device;
    auto prov = hub.enrol(device, "patient-" + name, "template:" + name);
    auto gw = connect(prov);
    for (const auto& sample : samples) {
      const std::string text = read_file(sample);
      rapidjson::Document doc;
      doc.Parse(text.c_str());
      REQUIRE(!doc.HasParseError());
      collect_identifiers(doc, "", identifiers);
      auto decoded = hub.mappings->find(name)->apply(bytes_of(text), core::system_clock().now());
      REQUIRE(decoded);
      if (!decoded->device.serial.empty()) identifiers.insert(decoded->device.serial);
      REQUIRE(gw->publish_payload(bytes_of(text)));
      ++published;
    }
  }
  REQUIRE(identifiers.size() >= 4);
  // The samples do carry what a vendor payload carries: a BSN (9 digits) and an e-mail address.
  CHECK(std::any_of(identifiers.begin(), identifiers.end(),
                    [](const std::string& id) { return std::regex_match(id, std::regex("[0-9]{9}")); }));
  CHECK(std::any_of(identifiers.begin(), identifiers.end(),
                    [](const std::string& id) { return id.find('@') != std::string::npos; }));

  REQUIRE(wait_until([&] { return hub.settled() == published; }));
  auto c = hub.pipeline->counters();
  INFO("quarantined: " << c.quarantined);
  CHECK(c.quarantined_by_reason["implausible_value"] == 1);
  CHECK(c.quarantined_by_reason["bad_unit"] == 1);
  CHECK(c.quarantined == 2);
  CHECK(c.flagged_by_code["59408-5"] == 1);
  CHECK(c.stored_messages == published - 2);
  auto implausible = hub.store->quarantine().list(10);
  REQUIRE(implausible);
  bool saw_rule = false;
  for (const auto& q : *implausible)
    if (q.reason == "implausible_value") saw_rule = q.detail.find("140") != std::string::npos && q.detail.find("59408-5") != std::string::npos;
  CHECK(saw_rule);

  // --- FHIR: SenML patient.
  const std::string senml_patient = hub.pseudonymiser->subject("patient-senml").str();
  auto bp = hub.get("/fhir/Observation?patient=" + senml_patient + "&code=85354-9");
  CHECK(bp.find("\"8480-6\"") != std::string::npos);
  CHECK(bp.find("\"valueBoolean\":true") != std::string::npos);
  CHECK(bp.find("irregular-heartbeat") != std::string::npos);
  auto weight = hub.get("/fhir/Observation?patient=" + senml_patient + "&code=29463-7");
  CHECK(weight.find("\"code\":\"kg\"") != std::string::npos);
  CHECK(weight.find("69.98") != std::string::npos);  // 154.3 [lb_av] = 69.989... kg
  auto spo2 = hub.get("/fhir/Observation?patient=" + senml_patient + "&code=59408-5");
  CHECK(spo2.find("\"LL\"") != std::string::npos);
  CHECK(spo2.find("\"value\":140") == std::string::npos);
  auto hr = hub.get("/fhir/Observation?patient=" + senml_patient + "&code=8867-4");
  CHECK(hr.find("\"value\":72") != std::string::npos);
  CHECK(hr.find("\"value\":75") != std::string::npos);
  CHECK(hr.find("\"value\":71") != std::string::npos);
  CHECK(hr.find("urn:iso:std:iso:11073:10101") != std::string::npos);  // MDC coding beside LOINC
  auto device = hub.get("/fhir/Device/dev-senml-1");
  CHECK(device.find("\"manufacturer\":\"Acme Medical\"") != std::string::npos);
  CHECK(device.find("\"modelNumber\":\"BP-7\"") != std::string::npos);
  CHECK(device.find("SN-SENML") == std::string::npos);
  CHECK(device.find(hub.pseudonymiser->device_serial("SN-SENML-99887766")) != std::string::npos);
  documents.insert(documents.end(), {bp, weight, spo2, hr, device});

  // --- FHIR: one patient per template; every template stored something.
  for (const auto& [name, dev] : device_of_template) {
    INFO("template " << name);
    const std::string patient = hub.pseudonymiser->subject("patient-" + name).str();
    auto bundle = hub.get("/fhir/Observation?patient=" + patient + "&_count=1000");
    CHECK(bundle.find("\"resourceType\":\"Observation\"") != std::string::npos);
    documents.push_back(bundle);
    documents.push_back(hub.get("/fhir/Device/" + dev));
  }
  auto validated = testing::fhir_validate(documents);
  INFO(validated.output);
  CHECK(validated.exit_code == 0);

  // --- No identifier in any SQLite file (database, WAL, shared memory) after a checkpoint
  // and after the store is closed.
  hub.subscriber.reset();
  hub.http.reset();
  hub.store->close();
  std::size_t files = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(hub.dir.path())) {
    if (!e.is_regular_file()) continue;
    const auto name = e.path().filename().string();
    if (name.find(".db") == std::string::npos) continue;
    ++files;
    const std::string bytes = read_file(e.path());
    for (const auto& id : identifiers) {
      INFO(e.path().string() << " holds identifier " << id);
      CHECK(bytes.find(id) == std::string::npos);
    }
  }
  CHECK(files >= 1);
}
