// Transport security end to end (issue [2/8] item 1): a development CA (pki::DevCa), the
// embedded Mosquitto in TLS mode with its ACL, the reference gateway over mutual TLS, and the
// independent mosquitto_sub / mosquitto_pub / openssl s_client programs as the hub and as
// attackers. What is checked is what the broker lets through.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <thread>

#include "telehub/broker/embedded_broker.h"
#include "telehub/core/bytes.h"
#include "telehub/core/time.h"
#include "telehub/gateway/gateway.h"
#include "telehub/gateway/provisioning.h"
#include "telehub/pki/dev_ca.h"
#include "test_support.h"

namespace telehub::gateway {
namespace {

using telehub::testing::run_command;
using telehub::testing::TempDir;

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string quote(const std::filesystem::path& p) { return "'" + p.string() + "'"; }

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(line);
  return out;
}

struct TlsFixture {
  TempDir dir;
  std::optional<pki::DevCa> ca;
  std::unique_ptr<broker::EmbeddedBroker> broker;

  TlsFixture() {
    auto c = pki::DevCa::open_or_create(dir.path() / "ca");
    INFO((c ? std::string() : c.error().to_string()));
    REQUIRE(c);
    ca.emplace(std::move(*c));
    auto server = ca->issue("telehub-broker", pki::CertKind::kServer);
    REQUIRE(server);
    auto server_files = pki::write_identity(dir.path() / "tls", "broker", *server);
    REQUIRE(server_files);
    identity("telehub-hub");
    identity("dev-a");
    identity("dev-b");

    broker::BrokerOptions o;
    o.dir = dir.path() / "broker";
    o.ca_file = ca->ca_file();
    o.cert_file = server_files->cert;
    o.key_file = server_files->key;
    auto b = broker::EmbeddedBroker::start(o);
    INFO((b ? std::string() : b.error().to_string()));
    REQUIRE(b);
    broker = std::move(*b);
  }

  // Issues a client certificate for `name` (once) and writes it under dir/tls.
  void identity(const std::string& name) {
    auto id = ca->issue(name, pki::CertKind::kClient);
    REQUIRE(id);
    REQUIRE(pki::write_identity(dir.path() / "tls", name, *id));
  }

  std::filesystem::path cert(const std::string& name) const { return dir.path() / "tls" / (name + ".pem"); }
  std::filesystem::path key(const std::string& name) const { return dir.path() / "tls" / (name + ".key"); }

  // mosquitto_sub/_pub connection arguments for a client certificate; an empty name connects
  // with no certificate at all.
  std::string conn(const std::string& name, const std::filesystem::path& cafile = {}) const {
    std::string s = " -h 127.0.0.1 -p " + std::to_string(broker->port()) + " -V mqttv5 --cafile " +
                    quote(cafile.empty() ? ca->ca_file() : cafile);
    if (!name.empty()) s += " --cert " + quote(cert(name)) + " --key " + quote(key(name));
    return s + " ";
  }

  // The hub's durable session (client id = certificate identity), as the hub has it.
  std::string hub_sub() const {
    return "mosquitto_sub" + conn("telehub-hub") + "-c -x 600 -i telehub-hub -q 1 -t 'telehub/v1/devices/+/readings'";
  }
  void register_hub() const {
    auto r = run_command(hub_sub() + " -E");
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
  }
  // Topics of the messages queued for the hub's session, waiting `seconds` for more.
  std::vector<std::string> hub_received(int seconds) const {
    // stderr (a "Timed out" note when -W expires) is not a topic.
    auto r = run_command("(" + hub_sub() + " -W " + std::to_string(seconds) + " -F %t 2>/dev/null)");
    return lines_of(r.output);
  }

  Provisioning provisioning(const std::string& device_id) const {
    Provisioning p;
    p.device_id = device_id;
    p.key = *core::random_bytes(32);
    p.broker_uri = broker->uri();
    p.readings_topic = readings_topic_for(device_id);
    p.ca_pem = ca->ca_pem();
    p.cert_pem = read_text(cert(device_id));
    p.key_pem = read_text(key(device_id));
    return p;
  }

  GatewayOptions gateway_options(const std::string& name) const {
    GatewayOptions o;
    o.sequence_file = dir.path() / (name + ".json.seq");
    o.publish_timeout = std::chrono::seconds(5);
    return o;
  }
};

std::vector<core::Reading> some_readings() {
  VitalsSimulator sim(7);
  return sim.sample(*core::parse_rfc3339("2026-11-28T10:15:00.000Z"));
}

}  // namespace

TEST_CASE("the TLS broker configuration and ACL are as specified", "[gateway][tls]") {
  TlsFixture f;
  CHECK(f.broker->tls());
  CHECK(f.broker->uri() == "ssl://127.0.0.1:" + std::to_string(f.broker->port()));
  CHECK(f.broker->plaintext_port() == 0);
  const auto conf = read_text(f.dir.path() / "broker" / "mosquitto.conf");
  INFO(conf);
  for (const char* line : {"require_certificate true\n", "use_identity_as_username true\n",
                           "use_username_as_clientid true\n", "allow_anonymous false\n", "tls_version tlsv1.2\n",
                           "ciphers_tls1.3 TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256\n"})
    CHECK(conf.find(line) != std::string::npos);
  CHECK(conf.find("allow_anonymous true") == std::string::npos);
  CHECK(conf.find("CBC") == std::string::npos);
  // Exactly one listener: no plaintext one unless configured.
  CHECK(conf.find("listener ") == conf.rfind("listener "));
  const auto acl = read_text(f.dir.path() / "broker" / "acl");
  CHECK(acl.find("user telehub-hub\ntopic read telehub/v1/devices/+/readings\n"
                 "topic write telehub/v1/devices/+/receipts\n") != std::string::npos);
  CHECK(acl.find("pattern write telehub/v1/devices/%u/readings\n") != std::string::npos);
  CHECK(acl.find("pattern read telehub/v1/devices/%u/receipts\n") != std::string::npos);
}

TEST_CASE("a gateway publishes over mutual TLS, the hub identity receives it and its receipt comes back",
          "[gateway][tls]") {
  TlsFixture f;
  f.register_hub();
  auto gw = Gateway::connect(f.provisioning("dev-a"), f.gateway_options("dev-a"));
  INFO((gw ? std::string() : gw.error().to_string()));
  REQUIRE(gw);
  auto readings = some_readings();
  auto seq = (*gw)->publish(readings);
  INFO((seq ? std::string() : seq.error().to_string()));
  REQUIRE(seq);
  CHECK((*gw)->pending() == 1);

  auto topics = f.hub_received(2);
  INFO(::Catch::Detail::stringify(topics));
  REQUIRE(topics.size() == 1);
  CHECK(topics[0] == "telehub/v1/devices/dev-a/readings");

  // The hub identity may write dev-a's receipts, and dev-a reads them.
  const std::string receipt =
      "{\"v\":1,\"device\":\"dev-a\",\"sequence\":" + std::to_string(*seq) + ",\"status\":\"stored\"}";
  auto pub = run_command("mosquitto_pub" + f.conn("telehub-hub") + "-q 1 -t telehub/v1/devices/dev-a/receipts -m '" +
                         receipt + "'");
  INFO(pub.output);
  REQUIRE(pub.exit_code == 0);
  CHECK((*gw)->wait_for_receipts(std::chrono::seconds(5)));
}

TEST_CASE("the hub identity may use the shared subscription", "[gateway][tls]") {
  TlsFixture f;
  const auto out = f.dir.path() / "shared.out";
  run_command("mosquitto_sub" + f.conn("telehub-hub") + "-q 1 -t '$share/telehub/telehub/v1/devices/+/readings' -W 3 -F %t > " +
              quote(out) + " 2>/dev/null & sleep 1; mosquitto_pub" + f.conn("dev-a") +
              "-q 1 -t telehub/v1/devices/dev-a/readings -m x; wait");
  CHECK(lines_of(read_text(out)) == std::vector<std::string>{"telehub/v1/devices/dev-a/readings"});
}

TEST_CASE("a device cannot publish on another device's topic or forge receipts", "[gateway][tls]") {
  TlsFixture f;
  f.register_hub();
  // dev-a's gateway, pointed at dev-b's topic. Mosquitto refuses the PUBLISH (MQTT 5 PUBACK
  // "not authorized"), whatever the client then reports.
  auto p = f.provisioning("dev-a");
  p.readings_topic = readings_topic_for("dev-b");
  auto gw = Gateway::connect(p, f.gateway_options("dev-a"));
  REQUIRE(gw);
  const std::uint8_t bytes[] = {'T', 'H', 1, 5, 'd', 'e', 'v', '-', 'b'};
  (void)(*gw)->publish_raw(bytes);
  (*gw)->disconnect();
  // The CLI as dev-a, too, on dev-b's topic and on the hub-wide wildcard-looking topics.
  run_command("mosquitto_pub" + f.conn("dev-a") + "-q 1 -t telehub/v1/devices/dev-b/readings -m x");
  run_command("mosquitto_pub" + f.conn("dev-a") + "-q 1 -t telehub/v1/devices/telehub-hub/readings -m x");
  // A control message that is allowed, so "nothing arrived" is not just a broken hub session.
  REQUIRE(run_command("mosquitto_pub" + f.conn("dev-b") + "-q 1 -t telehub/v1/devices/dev-b/readings -m ok")
              .exit_code == 0);
  auto topics = f.hub_received(2);
  REQUIRE(topics.size() == 1);
  CHECK(topics[0] == "telehub/v1/devices/dev-b/readings");

  // A device cannot write receipts, not even its own. dev-b's durable session listens (the
  // broker forces client id = certificate identity, so dev-b's own publisher resumes that same
  // session instead of opening a second one); dev-a, dev-b and the hub publish.
  const std::string b_sub =
      "mosquitto_sub" + f.conn("dev-b") + "-c -x 600 -i dev-b -q 1 -t telehub/v1/devices/dev-b/receipts";
  REQUIRE(run_command(b_sub + " -E").exit_code == 0);
  run_command("mosquitto_pub" + f.conn("dev-a") + "-q 1 -t telehub/v1/devices/dev-b/receipts -m forged-by-a");
  run_command("mosquitto_pub" + f.conn("dev-b") + "-c -x 600 -i dev-b -q 1 -t telehub/v1/devices/dev-b/receipts -m forged-by-b");
  REQUIRE(run_command("mosquitto_pub" + f.conn("telehub-hub") + "-q 1 -t telehub/v1/devices/dev-b/receipts -m from-hub")
              .exit_code == 0);
  auto b = run_command("(" + b_sub + " -W 2 -F %p 2>/dev/null)");
  // Only the hub's receipt arrives (which also shows dev-b's subscription worked).
  CHECK(lines_of(b.output) == std::vector<std::string>{"from-hub"});
}

TEST_CASE("a denied (revoked) identity can neither publish nor read, on its open connection too",
          "[gateway][tls]") {
  TlsFixture f;
  f.register_hub();
  // dev-a's durable session listens for its receipts; deny dev-a while it is subscribed.
  const std::string a_sub =
      "mosquitto_sub" + f.conn("dev-a") + "-c -x 600 -i dev-a -q 1 -t telehub/v1/devices/dev-a/receipts";
  REQUIRE(run_command(a_sub + " -E").exit_code == 0);
  auto gw = Gateway::connect(f.provisioning("dev-a"), f.gateway_options("dev-a"));
  REQUIRE(gw);
  REQUIRE((*gw)->publish(some_readings()));
  REQUIRE(f.hub_received(2) == std::vector<std::string>{"telehub/v1/devices/dev-a/readings"});

  const auto port = f.broker->port();
  REQUIRE(f.broker->deny_identities({"dev-a"}));
  CHECK(f.broker->port() == port);
  CHECK(read_text(f.dir.path() / "broker" / "acl").find("user dev-a\ntopic deny #\n") != std::string::npos);
  // The gateway connected before the denial and reconnects by itself; its next publish must not
  // arrive.
  (void)(*gw)->publish(some_readings());
  run_command("mosquitto_pub" + f.conn("dev-a") + "-q 1 -t telehub/v1/devices/dev-a/readings -m after-deny");
  REQUIRE(run_command("mosquitto_pub" + f.conn("dev-b") + "-q 1 -t telehub/v1/devices/dev-b/readings -m ok")
              .exit_code == 0);
  CHECK(f.hub_received(2) == std::vector<std::string>{"telehub/v1/devices/dev-b/readings"});
  // Nothing reaches dev-a's session either.
  REQUIRE(run_command("mosquitto_pub" + f.conn("telehub-hub") + "-q 1 -t telehub/v1/devices/dev-a/receipts -m r")
              .exit_code == 0);
  CHECK(lines_of(run_command("(" + a_sub + " -W 2 -F %p 2>/dev/null)").output).empty());
  // (That clean-start publish as telehub-hub replaced the hub's durable session: register again.)
  f.register_hub();

  // Lifting the denial restores access; the hub identity can never be denied. (The gateway goes
  // first: it shares the client id dev-a with mosquitto_pub, and the broker keeps only one.)
  (*gw)->disconnect();
  REQUIRE(f.broker->deny_identities({}));
  REQUIRE(run_command("mosquitto_pub" + f.conn("dev-a") + "-q 1 -t telehub/v1/devices/dev-a/readings -m again")
              .exit_code == 0);
  CHECK(f.hub_received(2) == std::vector<std::string>{"telehub/v1/devices/dev-a/readings"});
  auto bad = f.broker->deny_identities({"telehub-hub"});
  REQUIRE_FALSE(bad);
  CHECK(bad.error().reason == "broker_config");
  CHECK_FALSE(f.broker->deny_identities({"dev-#"}));
}

TEST_CASE("a device cannot read another device's receipts", "[gateway][tls]") {
  TlsFixture f;
  const auto out = f.dir.path() / "a.out";
  // dev-a subscribes to dev-b's receipts (and to all receipts); the hub publishes one for dev-b
  // and then one for dev-a. Only dev-a's may arrive.
  run_command("mosquitto_sub" + f.conn("dev-a") + "-q 1 -t telehub/v1/devices/dev-b/receipts -t " +
              "'telehub/v1/devices/+/receipts' -t '#' -W 3 -F %t > " + quote(out) + " 2>/dev/null & sleep 1; " +
              "mosquitto_pub" + f.conn("telehub-hub") + "-q 1 -t telehub/v1/devices/dev-b/receipts -m for-b; " +
              "mosquitto_pub" + f.conn("telehub-hub") + "-q 1 -t telehub/v1/devices/dev-a/receipts -m for-a; wait");
  auto received = lines_of(read_text(out));
  INFO(read_text(out));
  for (const auto& line : received) CHECK(line.find("dev-b") == std::string::npos);
  CHECK(std::count(received.begin(), received.end(), "telehub/v1/devices/dev-a/receipts") >= 1);
}

TEST_CASE("clients without a certificate from the CA cannot connect", "[gateway][tls]") {
  TlsFixture f;
  const std::string pub_args = "-q 1 -t telehub/v1/devices/dev-a/readings -m x";
  // No certificate.
  auto none = run_command("timeout 10 mosquitto_pub" + f.conn("") + pub_args);
  INFO(none.output);
  CHECK(none.exit_code != 0);
  // Plain MQTT on the TLS port.
  auto plain = run_command("timeout 10 mosquitto_pub -h 127.0.0.1 -p " + std::to_string(f.broker->port()) +
                           " -V mqttv5 " + pub_args);
  CHECK(plain.exit_code != 0);
  // A certificate with the right CN from another CA.
  TempDir other_dir;
  auto other = pki::DevCa::open_or_create(other_dir.path());
  REQUIRE(other);
  auto rogue = other->issue("dev-a", pki::CertKind::kClient);
  REQUIRE(rogue);
  auto rogue_files = pki::write_identity(other_dir.path(), "dev-a", *rogue);
  REQUIRE(rogue_files);
  auto r = run_command("timeout 10 mosquitto_pub -h 127.0.0.1 -p " + std::to_string(f.broker->port()) +
                       " -V mqttv5 --cafile " + quote(f.ca->ca_file()) + " --cert " + quote(rogue_files->cert) +
                       " --key " + quote(rogue_files->key) + " " + pub_args);
  INFO(r.output);
  CHECK(r.exit_code != 0);
  // And the reference gateway with that rogue identity fails to connect (mqtt_connect).
  auto p = f.provisioning("dev-a");
  p.cert_pem = rogue->cert_pem;
  p.key_pem = rogue->key_pem;
  auto options = f.gateway_options("rogue");
  options.publish_timeout = std::chrono::seconds(3);
  auto gw = Gateway::connect(p, options);
  REQUIRE_FALSE(gw);
  CHECK(gw.error().reason == "mqtt_connect");
  // A gateway that trusts another CA refuses the broker.
  auto q = f.provisioning("dev-b");
  q.ca_pem = other->ca_pem();
  auto gw2 = Gateway::connect(q, options);
  REQUIRE_FALSE(gw2);
  CHECK(gw2.error().reason == "mqtt_connect");
}

TEST_CASE("the broker speaks TLS 1.2/1.3 with AEAD suites only", "[gateway][tls]") {
  TlsFixture f;
  const std::string base = "timeout 10 openssl s_client -connect 127.0.0.1:" + std::to_string(f.broker->port()) +
                           " -CAfile " + quote(f.ca->ca_file()) + " -cert " + quote(f.cert("dev-a")) + " -key " +
                           quote(f.key("dev-a"));
  auto tls13 = run_command(base + " -tls1_3 </dev/null");
  INFO(tls13.output);
  CHECK(tls13.output.find("TLSv1.3") != std::string::npos);
  CHECK(tls13.output.find("Verify return code: 0 (ok)") != std::string::npos);

  auto gcm12 = run_command(base + " -tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256 </dev/null");
  INFO(gcm12.output);
  CHECK(gcm12.output.find("ECDHE-ECDSA-AES128-GCM-SHA256") != std::string::npos);
  CHECK(gcm12.output.find("Verify return code: 0 (ok)") != std::string::npos);

  auto tls11 = run_command(base + " -tls1_1 </dev/null");
  INFO(tls11.output);
  CHECK(tls11.exit_code != 0);
  for (const char* cbc : {"AES128-SHA", "ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384"}) {
    auto r = run_command(base + " -tls1_2 -cipher " + cbc + " </dev/null");
    INFO(cbc << "\n" << r.output);
    CHECK(r.exit_code != 0);
  }
}

TEST_CASE("a plaintext listener exists only when configured, on loopback", "[gateway][tls]") {
  TlsFixture f;
  f.broker->stop();
  auto plain_port = broker::find_free_port();
  REQUIRE(plain_port);
  broker::BrokerOptions o;
  o.dir = f.dir.path() / "broker2";
  o.ca_file = f.ca->ca_file();
  o.cert_file = f.dir.path() / "tls" / "broker.pem";
  o.key_file = f.dir.path() / "tls" / "broker.key";
  o.plaintext_listener_port = *plain_port;
  auto b = broker::EmbeddedBroker::start(o);
  INFO((b ? std::string() : b.error().to_string()));
  REQUIRE(b);
  CHECK((*b)->plaintext_port() == *plain_port);
  auto r = run_command("timeout 10 mosquitto_pub -h 127.0.0.1 -p " + std::to_string(*plain_port) +
                       " -V mqttv5 -q 1 -t telehub/v1/devices/dev-x/readings -m x");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  const auto conf = read_text(o.dir / "mosquitto.conf");
  CHECK(conf.find("listener " + std::to_string(*plain_port) + " 127.0.0.1\n") != std::string::npos);

  // Without TLS, a plaintext_listener_port is a configuration error, and so are partial TLS files.
  broker::BrokerOptions bad;
  bad.dir = f.dir.path() / "broker3";
  bad.plaintext_listener_port = *plain_port;
  auto e1 = broker::EmbeddedBroker::start(bad);
  REQUIRE_FALSE(e1);
  CHECK(e1.error().reason == "broker_config");
  bad.plaintext_listener_port = 0;
  bad.ca_file = f.ca->ca_file();
  auto e2 = broker::EmbeddedBroker::start(bad);
  REQUIRE_FALSE(e2);
  CHECK(e2.error().reason == "broker_config");
}

TEST_CASE("provisioning files carry the TLS member and old files still load", "[gateway][tls]") {
  TlsFixture f;
  auto p = f.provisioning("dev-a");
  const auto path = f.dir.path() / "dev-a.json";
  REQUIRE(save_provisioning(path, p));
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto back = load_provisioning(path);
  INFO((back ? std::string() : back.error().to_string()));
  REQUIRE(back);
  CHECK(back->has_tls());
  CHECK(back->ca_pem == p.ca_pem);
  CHECK(back->cert_pem == p.cert_pem);
  CHECK(back->key_pem == p.key_pem);
  CHECK(back->broker_uri == p.broker_uri);

  // Without tls: as before.
  auto plain = p;
  plain.ca_pem = plain.cert_pem = plain.key_pem = "";
  plain.broker_uri = "tcp://127.0.0.1:1883";
  REQUIRE(save_provisioning(path, plain));
  CHECK(read_text(path).find("\"tls\"") == std::string::npos);
  auto back2 = load_provisioning(path);
  REQUIRE(back2);
  CHECK_FALSE(back2->has_tls());

  // tls with a tcp:// broker, or missing parts, is refused without echoing the key.
  auto wrong = p;
  wrong.broker_uri = "tcp://127.0.0.1:1883";
  auto e = save_provisioning(path, wrong);
  REQUIRE_FALSE(e);
  CHECK(e.error().reason == "bad_provisioning");
  auto partial = p;
  partial.key_pem.clear();
  auto e2 = save_provisioning(path, partial);
  REQUIRE_FALSE(e2);
  CHECK(e2.error().message.find("PRIVATE") == std::string::npos);
  std::ofstream(path) << "{\"telehub_provisioning\":1,\"device_id\":\"dev-a\",\"key_id\":1,\"key\":\"" +
                             std::string(64, 'a') +
                             "\",\"broker\":\"ssl://127.0.0.1:1\",\"topics\":{\"readings\":"
                             "\"telehub/v1/devices/dev-a/readings\"},\"tls\":{\"ca\":\"x\",\"cert\":\"y\"}}";
  auto e3 = load_provisioning(path);
  REQUIRE_FALSE(e3);
  CHECK(e3.error().message.find("tls.key") != std::string::npos);
}

}  // namespace telehub::gateway
