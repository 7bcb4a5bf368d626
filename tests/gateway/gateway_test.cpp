// Gateway against a real Mosquitto (EmbeddedBroker on a free loopback port); the receiving side
// is the independent mosquitto_sub client, so what is checked is what went over the wire.
#include <catch2/catch.hpp>

#include <chrono>
#include <fstream>
#include <sstream>

#include "telehub/broker/embedded_broker.h"
#include "telehub/core/bytes.h"
#include "telehub/core/time.h"
#include "telehub/envelope/envelope.h"
#include "telehub/envelope/payload.h"
#include "telehub/gateway/gateway.h"
#include "test_support.h"

namespace telehub::gateway {
namespace {

using telehub::testing::run_command;
using telehub::testing::TempDir;

struct Fixture {
  TempDir dir;
  std::unique_ptr<broker::EmbeddedBroker> broker;
  Provisioning prov;

  explicit Fixture(const std::string& device_id = "dev-gw-test") {
    start_broker(0);
    prov.device_id = device_id;
    prov.key_id = 3;
    prov.key = *core::random_bytes(32);
    prov.broker_uri = broker->uri();
    prov.readings_topic = readings_topic_for(device_id);
  }

  void start_broker(std::uint16_t port) {
    broker::BrokerOptions o;
    o.dir = dir.path() / "broker";
    o.port = port;
    auto b = broker::EmbeddedBroker::start(o);
    INFO((b ? std::string() : b.error().to_string()));
    REQUIRE(b);
    broker = std::move(*b);
  }

  std::filesystem::path seq_file() const { return dir.path() / "dev.json.seq"; }

  GatewayOptions options() const {
    GatewayOptions o;
    o.sequence_file = seq_file();
    o.publish_timeout = std::chrono::seconds(5);
    return o;
  }

  std::unique_ptr<Gateway> connect() const {
    auto gw = Gateway::connect(prov, options());
    INFO((gw ? std::string() : gw.error().to_string()));
    REQUIRE(gw);
    return std::move(*gw);
  }

  std::string sub_args(const std::string& client_id) const {
    return "mosquitto_sub -h 127.0.0.1 -p " + std::to_string(broker->port()) + " -V mqttv5 -c -x 600 -i " +
           client_id + " -q 1 -t '" + prov.readings_topic + "'";
  }

  // A durable session (clean start off, session expiry) receives QoS 1 messages published while
  // it is not connected, so the CLI subscriber needs no background process.
  void register_subscriber(const std::string& client_id = "telehub-test-sub") const {
    REQUIRE(run_command(sub_args(client_id) + " -E").exit_code == 0);
  }

  std::vector<core::Bytes> receive(int n, const std::string& client_id = "telehub-test-sub") const {
    auto r = run_command(sub_args(client_id) + " -C " + std::to_string(n) + " -W 10 -F %x");
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    std::vector<core::Bytes> out;
    std::istringstream lines(r.output);
    for (std::string line; std::getline(lines, line);) {
      auto bytes = core::from_hex(line);
      REQUIRE(bytes);
      out.push_back(std::move(*bytes));
    }
    return out;
  }
};

std::vector<core::Reading> some_readings() {
  VitalsSimulator sim(5);
  return sim.sample(*core::parse_rfc3339("2026-11-28T10:15:00.000Z"));
}

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("published readings arrive sealed and open to the same readings", "[gateway]") {
  Fixture f;
  f.register_subscriber();
  auto gw = f.connect();
  CHECK(gw->last_sequence() == 0);

  const auto readings = some_readings();
  auto seq = gw->publish(readings);
  INFO((seq ? std::string() : seq.error().to_string()));
  REQUIRE(seq);
  CHECK(*seq == 1);
  CHECK(gw->last_sequence() == 1);

  auto messages = f.receive(1);
  REQUIRE(messages.size() == 1);
  auto header = envelope::peek(messages[0]);
  REQUIRE(header);
  CHECK(header->version == envelope::kVersion);
  CHECK(header->device_id == f.prov.device_id);
  CHECK(header->key_id == f.prov.key_id);
  CHECK(header->sequence == 1);

  auto plaintext = envelope::open(messages[0], f.prov.key);
  INFO((plaintext ? std::string() : plaintext.error().to_string()));
  REQUIRE(plaintext);
  auto decoded = envelope::decode_payload(*plaintext);
  REQUIRE(decoded);
  // Exact: the payload codec writes shortest round-trip numbers and parses at full precision.
  CHECK(*decoded == readings);

  auto wrong_key = *core::random_bytes(32);
  CHECK_FALSE(envelope::open(messages[0], wrong_key));
}

TEST_CASE("publish_raw sends the bytes unchanged", "[gateway]") {
  Fixture f;
  f.register_subscriber();
  auto gw = f.connect();
  const core::Bytes garbage = {0x54, 0x48, 0x02, 0x00, 0xff, 0x10};
  REQUIRE(gw->publish_raw(garbage));
  CHECK(gw->last_sequence() == 0);
  auto messages = f.receive(1);
  REQUIRE(messages.size() == 1);
  CHECK(messages[0] == garbage);
}

TEST_CASE("the sequence survives a new Gateway for the same device", "[gateway]") {
  Fixture f;
  f.register_subscriber();
  const auto readings = some_readings();
  {
    auto gw = f.connect();
    REQUIRE(gw->publish(readings) == 1u);
    REQUIRE(gw->publish(readings) == 2u);
    CHECK(read_text(f.seq_file()) == "2\n");

    SECTION("a second Gateway on the same sequence file is refused while the first runs") {
      auto other = Gateway::connect(f.prov, f.options());
      REQUIRE_FALSE(other);
      CHECK(other.error().reason == "sequence_state");
    }
  }
  auto gw = f.connect();
  CHECK(gw->last_sequence() == 2);
  // No hub answered with receipts, so the new Gateway first resends 1 and 2 from its outbox.
  CHECK(gw->pending() == 2);
  REQUIRE(gw->publish(readings) == 3u);
  CHECK(read_text(f.seq_file()) == "3\n");
  CHECK(gw->pending() == 3);

  auto messages = f.receive(5);
  REQUIRE(messages.size() == 5);
  const std::uint64_t expected[] = {1, 2, 1, 2, 3};
  for (std::size_t i = 0; i < 5; ++i) CHECK(envelope::peek(messages[i])->sequence == expected[i]);
  CHECK(messages[0] == messages[2]);  // a resend is the same bytes
}

TEST_CASE("an unreadable sequence file stops the gateway", "[gateway]") {
  Fixture f;
  for (const char* garbage : {"", "abc\n", "12x\n", "-1\n", "99999999999999999999999\n"}) {
    INFO("contents '" << garbage << "'");
    std::ofstream(f.seq_file(), std::ios::trunc) << garbage;
    auto gw = Gateway::connect(f.prov, f.options());
    REQUIRE_FALSE(gw);
    CHECK(gw.error().reason == "sequence_state");
  }
  std::ofstream(f.seq_file(), std::ios::trunc) << "41\n";
  auto gw = f.connect();
  CHECK(gw->last_sequence() == 41);
  CHECK(gw->publish(some_readings()) == 42u);
}

TEST_CASE("nothing to publish does not use up a sequence number", "[gateway]") {
  Fixture f;
  auto gw = f.connect();
  auto seq = gw->publish({});
  REQUIRE_FALSE(seq);
  CHECK(seq.error().reason == "bad_payload");
  CHECK(gw->last_sequence() == 0);
  CHECK_FALSE(std::filesystem::exists(f.seq_file()));
}

TEST_CASE("broker problems become mqtt_connect / mqtt_publish errors", "[gateway]") {
  Fixture f;
  SECTION("nothing listens at the broker address") {
    auto port = broker::find_free_port();
    REQUIRE(port);
    f.prov.broker_uri = "tcp://127.0.0.1:" + std::to_string(*port);
    auto gw = Gateway::connect(f.prov, f.options());
    REQUIRE_FALSE(gw);
    CHECK(gw.error().reason == "mqtt_connect");
    CHECK(gw.error().code == core::Code::kUnavailable);
  }
  SECTION("a malformed broker URI") {
    f.prov.broker_uri = "nonsense";
    auto gw = Gateway::connect(f.prov, f.options());
    REQUIRE_FALSE(gw);
    CHECK(gw.error().reason == "mqtt_connect");
  }
  SECTION("the broker goes away: publish times out, and the sequence stays used") {
    auto options = f.options();
    options.publish_timeout = std::chrono::milliseconds(500);
    auto gw = Gateway::connect(f.prov, options);
    REQUIRE(gw);
    f.broker->stop();
    const auto t0 = std::chrono::steady_clock::now();
    auto seq = (*gw)->publish(some_readings());
    REQUIRE_FALSE(seq);
    CHECK(seq.error().reason == "mqtt_publish");
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(3));
    CHECK((*gw)->last_sequence() == 1);
  }
  SECTION("after disconnect() publish fails at once") {
    auto gw = f.connect();
    gw->disconnect();
    auto seq = gw->publish(some_readings());
    REQUIRE_FALSE(seq);
    CHECK(seq.error().reason == "mqtt_publish");
    CHECK(gw->last_sequence() == 0);
  }
}

TEST_CASE("the gateway reconnects by itself after a broker restart", "[gateway]") {
  Fixture f;
  f.register_subscriber();
  auto options = f.options();
  options.publish_timeout = std::chrono::seconds(20);
  auto connected = Gateway::connect(f.prov, options);
  REQUIRE(connected);
  auto gw = std::move(*connected);
  REQUIRE(gw->publish(some_readings()) == 1u);
  const auto port = f.broker->port();
  f.broker->stop();
  f.start_broker(port);  // same directory: the persisted sessions come back
  // Paho reconnects within a few seconds (1 s minimum retry, plus detection); until then the
  // message waits in its buffer, and publish() waits for it.
  auto seq = gw->publish(some_readings());
  INFO((seq ? std::string() : seq.error().to_string()));
  REQUIRE(seq);
  CHECK(*seq == 2);
  auto messages = f.receive(2);
  REQUIRE(messages.size() == 2);
  CHECK(envelope::peek(messages[0])->sequence == 1);
  CHECK(envelope::peek(messages[1])->sequence == 2);
}

TEST_CASE("the broker keeps the gateway's session after it disconnects", "[gateway]") {
  // Session expiry must reach the broker (a Paho C++ 1.2.0 bug can silently drop the CONNECT
  // properties). Mosquitto persists only sessions that outlive their connection, so after a
  // clean disconnect and a broker stop the client id is in mosquitto.db only if it was kept.
  Fixture f("dev-session-kept");
  auto gw = f.connect();
  REQUIRE(gw->publish(some_readings()) == 1u);
  gw->disconnect();
  f.broker->stop();
  const auto db = read_text(f.dir.path() / "broker" / "mosquitto.db");
  REQUIRE_FALSE(db.empty());
  CHECK(db.find("dev-session-kept") != std::string::npos);
}

}  // namespace telehub::gateway
