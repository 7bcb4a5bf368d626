// End to end over real parts: a Mosquitto child on a free loopback port, a real SQLite file,
// the Paho subscriber, the reference gateway publishing sealed readings, and the FHIR API
// over HTTP on loopback, whose output the independent validator checks.
#include <catch2/catch.hpp>

#include <signal.h>

#include <thread>

#include "telehub/broker/embedded_broker.h"
#include "telehub/envelope/envelope.h"
#include "telehub/envelope/payload.h"
#include "telehub/fhir/http_server.h"
#include "telehub/fhir/router.h"
#include "telehub/gateway/gateway.h"
#include "telehub/ingest/mqtt_subscriber.h"
#include "telehub/ingest/pipeline.h"
#include "test_support.h"

using namespace telehub;
using namespace std::chrono_literals;

namespace {

template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds timeout = 15s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

core::Reading hr(double v, core::TimePoint t) {
  core::Reading r;
  r.code = "8867-4";
  r.value = v;
  r.unit = "/min";
  r.time = t;
  return r;
}

struct Hub {
  testing::TempDir dir;
  privacy::Kek kek = *privacy::Kek::from_hex(std::string(64, 'c'));  // outlives the pipeline
  std::unique_ptr<broker::EmbeddedBroker> broker;
  std::unique_ptr<storage::Store> store;
  std::unique_ptr<ingest::Pipeline> pipeline;
  std::unique_ptr<ingest::MqttSubscriber> subscriber;
  std::unique_ptr<fhir::Router> router;
  std::unique_ptr<fhir::HttpServer> http;
  std::unique_ptr<privacy::Pseudonymiser> pseudonymiser;

  Hub() {
    broker::BrokerOptions bo;
    bo.dir = dir.path() / "broker";
    auto b = broker::EmbeddedBroker::start(bo);
    REQUIRE(b);
    broker = std::move(*b);
    auto s = storage::open_sqlite_store({dir.path() / "telehub.db"}, core::system_clock());
    REQUIRE(s);
    store = std::move(*s);
    pipeline = std::make_unique<ingest::Pipeline>(*store, core::system_clock(), kek);
    start_subscriber();
    router = std::make_unique<fhir::Router>(*store, fhir::RouterOptions{});
    fhir::HttpServerOptions ho;
    ho.port = 0;
    auto h = fhir::HttpServer::start(ho, *router);
    REQUIRE(h);
    http = std::move(*h);
    pseudonymiser = std::move(*privacy::Pseudonymiser::from_key(core::Bytes(32, 3)));
  }

  void start_subscriber() {
    ingest::SubscriberOptions so;
    so.server_uri = broker->uri();
    so.client_id = "telehub-e2e";
    auto sub = ingest::MqttSubscriber::start(so, *pipeline);
    REQUIRE(sub);
    subscriber = std::move(*sub);
  }

  gateway::Provisioning enrol(const std::string& device_id, const std::string& subject_id) {
    storage::DeviceRecord d;
    d.id = device_id;
    d.subject = pseudonymiser->subject(subject_id).str();
    const auto key = *core::random_bytes(32);
    d.key_id = 1;
    d.wrapped_key = *kek.wrap(key, privacy::device_key_ad(d.id, d.key_id));
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

  std::int64_t stored() const { return *store->observations().count(); }
};

std::unique_ptr<gateway::Gateway> connect(const gateway::Provisioning& p) {
  gateway::GatewayOptions go;
  auto gw = gateway::Gateway::connect(p, go);
  REQUIRE(gw);
  return std::move(*gw);
}

}  // namespace

TEST_CASE("sealed readings travel gateway -> Mosquitto -> SQLite -> FHIR, bad ones go to quarantine",
          "[e2e][mqtt]") {
  Hub hub;
  auto prov = hub.enrol("dev-e2e-1", "patient-1");
  const std::string patient = hub.pseudonymiser->subject("patient-1").str();
  auto gw = connect(prov);

  const auto t0 = testing::minutes_ago(120);
  std::vector<core::Reading> readings;
  for (int i = 0; i < 5; ++i) readings.push_back(hr(60 + i, t0 + std::chrono::minutes(i)));
  core::Reading bp;
  bp.code = "85354-9";
  bp.time = t0;
  bp.components = {{"8480-6", 131, "mm[Hg]"}, {"8462-4", 84, "mm[Hg]"}};
  readings.push_back(bp);
  REQUIRE(gw->publish(std::span(readings).first(3)));
  REQUIRE(gw->publish(std::span(readings).subspan(3)));
  REQUIRE(wait_until([&] { return hub.stored() == 6; }));

  // Found through the FHIR search, over HTTP.
  auto bundle = hub.get("/fhir/Observation?patient=" + patient + "&code=http://loinc.org|8867-4&_count=3");
  CHECK(bundle.find("\"searchset\"") != std::string::npos);
  CHECK(bundle.find("\"next\"") != std::string::npos);
  CHECK(bundle.find("\"value\":60") != std::string::npos);
  auto page2 = hub.get("/fhir/Observation?patient=" + patient + "&code=8867-4&date=ge" +
                        core::format_rfc3339(t0 + std::chrono::minutes(3)));
  CHECK(page2.find("\"value\":63") != std::string::npos);
  CHECK(page2.find("\"value\":64") != std::string::npos);
  CHECK(page2.find("\"value\":62") == std::string::npos);
  auto panel = hub.get("/fhir/Observation?patient=" + patient + "&code=85354-9");
  CHECK(panel.find("8480-6") != std::string::npos);
  auto metadata = hub.get("/fhir/metadata");
  auto patient_json = hub.get("/fhir/Patient/" + patient);
  auto missing = hub.get("/fhir/Observation/999999");
  CHECK(missing.find("OperationOutcome") != std::string::npos);
  auto validated = testing::fhir_validate({bundle, page2, panel, metadata, patient_json, missing});
  INFO(validated.output);
  CHECK(validated.exit_code == 0);

  // A bit flipped in transit: quarantined as bad_seal.
  auto json = envelope::encode_payload(std::vector<core::Reading>{hr(99, t0)});
  REQUIRE(json);
  auto sealed = envelope::seal({1, prov.device_id, 1, 1000}, prov.key, core::as_bytes(*json));
  REQUIRE(sealed);
  auto flipped = *sealed;
  flipped[flipped.size() / 2] ^= 0x08;
  REQUIRE(gw->publish_raw(flipped));
  REQUIRE(wait_until([&] { return *hub.store->quarantine().count("bad_seal") == 1; }));

  // A device nobody enrolled: quarantined as unknown_device.
  gateway::Provisioning stranger;
  stranger.device_id = "dev-stranger";
  stranger.key_id = 1;
  stranger.key = *core::random_bytes(32);
  stranger.broker_uri = hub.broker->uri();
  stranger.readings_topic = gateway::readings_topic_for("dev-stranger");
  auto gw2 = connect(stranger);
  REQUIRE(gw2->publish(std::vector<core::Reading>{hr(80, t0)}));
  REQUIRE(wait_until([&] { return *hub.store->quarantine().count("unknown_device") == 1; }));

  // A redelivered message (same bytes again) stores nothing new.
  REQUIRE(gw->publish_raw(*sealed));
  REQUIRE(wait_until([&] { return hub.stored() == 7; }));
  REQUIRE(gw->publish_raw(*sealed));
  REQUIRE(wait_until([&] { return hub.pipeline->counters().duplicates == 1; }));

  // Nothing else was affected.
  CHECK(hub.stored() == 7);
  CHECK(*hub.store->quarantine().count() == 2);
  auto c = hub.pipeline->counters();
  CHECK(c.quarantined_by_reason["bad_seal"] == 1);
  CHECK(c.quarantined_by_reason["unknown_device"] == 1);
  CHECK(hub.subscriber->connected());
}

TEST_CASE("readings published while the hub is away arrive when it comes back", "[e2e][mqtt]") {
  Hub hub;
  auto prov = hub.enrol("dev-e2e-2", "patient-2");
  auto gw = connect(prov);
  const auto t0 = testing::minutes_ago(24 * 60);
  REQUIRE(gw->publish(std::vector<core::Reading>{hr(70, t0)}));
  REQUIRE(wait_until([&] { return hub.stored() == 1; }));

  hub.subscriber->stop();
  hub.subscriber.reset();
  for (int i = 1; i <= 20; ++i)
    REQUIRE(gw->publish(std::vector<core::Reading>{hr(70 + i, t0 + std::chrono::minutes(i))}));
  CHECK(hub.stored() == 1);

  hub.start_subscriber();  // same client id: the broker kept the session and queued the messages
  REQUIRE(wait_until([&] { return hub.stored() == 21; }));
  CHECK(hub.pipeline->counters().quarantined == 0);
}

// ---------------------------------------------------------------- receipts

namespace {

std::size_t files_in(const std::filesystem::path& dir, const std::string& ext = ".env") {
  std::size_t n = 0;
  std::error_code ec;
  for (const auto& f : std::filesystem::directory_iterator(dir, ec))
    if (f.is_regular_file() && f.path().extension() == ext) ++n;
  return n;
}

}  // namespace

TEST_CASE("receipts empty the gateway's outbox, and a refused message gets a rejected receipt", "[e2e][mqtt][receipts]") {
  Hub hub;
  auto prov = hub.enrol("dev-receipts", "patient-r");
  gateway::GatewayOptions go;
  go.outbox_dir = hub.dir.path() / "outbox";
  auto gw = gateway::Gateway::connect(prov, go);
  REQUIRE(gw);
  const auto t0 = testing::minutes_ago(24 * 60);
  for (int i = 0; i < 3; ++i) REQUIRE((*gw)->publish(std::vector<core::Reading>{hr(70 + i, t0 + std::chrono::minutes(i))}));
  core::Reading unknown = hr(70, t0);
  unknown.code = "1234-5";
  REQUIRE((*gw)->publish(std::vector<core::Reading>{unknown}));
  CHECK((*gw)->wait_for_receipts(15s));
  CHECK((*gw)->pending() == 0);
  CHECK((*gw)->rejected() == 1);
  CHECK(files_in(go.outbox_dir) == 0);
  CHECK(files_in(go.outbox_dir / "rejected") == 1);
  CHECK(hub.stored() == 3);
}

TEST_CASE("a gateway's outbox is emptied only by receipts, not by the broker's acknowledgement", "[e2e][mqtt][receipts]") {
  Hub hub;
  auto prov = hub.enrol("dev-offline", "patient-o");
  gateway::GatewayOptions go;
  go.outbox_dir = hub.dir.path() / "outbox";
  auto gw = gateway::Gateway::connect(prov, go);
  REQUIRE(gw);
  hub.subscriber->stop();  // the hub is away: the broker acknowledges and queues
  hub.subscriber.reset();
  const auto t0 = testing::minutes_ago(24 * 60);
  for (int i = 0; i < 10; ++i) REQUIRE((*gw)->publish(std::vector<core::Reading>{hr(60 + i, t0 + std::chrono::minutes(i))}));
  std::this_thread::sleep_for(300ms);
  CHECK((*gw)->pending() == 10);
  CHECK(files_in(go.outbox_dir) == 10);
  hub.start_subscriber();
  CHECK((*gw)->wait_for_receipts(20s));
  CHECK(files_in(go.outbox_dir) == 0);
  CHECK(hub.stored() == 10);
}

TEST_CASE("broker killed with messages only in its memory: the gateway resends, nothing lost or doubled",
          "[e2e][mqtt][receipts]") {
  Hub hub;
  auto prov = hub.enrol("dev-brokercrash", "patient-b");
  gateway::GatewayOptions go;
  go.outbox_dir = hub.dir.path() / "outbox";
  go.receipt_timeout = 500ms;
  go.publish_timeout = 3s;
  auto gw = gateway::Gateway::connect(prov, go);
  REQUIRE(gw);
  hub.subscriber->stop();
  hub.subscriber.reset();
  const auto t0 = testing::minutes_ago(24 * 60);
  constexpr int kMessages = 50;
  for (int i = 0; i < kMessages; ++i)
    REQUIRE((*gw)->publish(std::vector<core::Reading>{hr(60 + i % 40, t0 + std::chrono::minutes(i))}));

  // kill -9: whatever the broker had not yet autosaved is gone with it.
  const auto port = hub.broker->port();
  REQUIRE(::kill(hub.broker->pid(), SIGKILL) == 0);
  hub.broker->stop();  // reaps the child
  broker::BrokerOptions bo;
  bo.dir = hub.dir.path() / "broker";
  bo.port = port;
  auto restarted = broker::EmbeddedBroker::start(bo);
  REQUIRE(restarted);
  hub.broker = std::move(*restarted);
  hub.start_subscriber();

  CHECK((*gw)->wait_for_receipts(60s));
  CHECK(hub.stored() == kMessages);  // 0 lost, 0 duplicated
  CHECK(hub.pipeline->counters().quarantined == 0);
}
