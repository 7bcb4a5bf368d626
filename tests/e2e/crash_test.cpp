// Hub crash test: the real `telehub serve` process is killed with SIGKILL at random moments
// while 20 reference gateways (in this process, real Paho clients) stream readings through a
// real Mosquitto. Afterwards every reading must be stored exactly once and the database must
// pass PRAGMA integrity_check.
//
// Scale with environment variables (defaults are CI's):
//   TELEHUB_CRASH_READINGS  total readings            (default 200000)
//   TELEHUB_CRASH_GATEWAYS  gateways                  (default 20)
//   TELEHUB_CRASH_KILLS     SIGKILLs of the hub       (default 10)
//   TELEHUB_CRASH_BATCH     readings per message      (default 100, a wearable's batch upload)
// Ingest speed is [3/8]'s subject; today every message costs an fsync at the gateway's outbox
// and at the hub's commit, so CI keeps the message count modest (2,000).
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <random>
#include <regex>
#include <thread>

#include "telehub/broker/embedded_broker.h"
#include "telehub/gateway/gateway.h"
#include "test_support.h"

using namespace telehub;
using namespace std::chrono_literals;

namespace {

long env_or(const char* name, long fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtol(v, nullptr, 10) : fallback;
}

std::string bin(const std::string& name) { return std::string(TELEHUB_BINARY_DIR) + "/apps/" + name; }

pid_t spawn_hub(const std::filesystem::path& data, const std::string& broker_uri, const std::filesystem::path& log) {
  pid_t pid = fork();
  if (pid == 0) {
    std::freopen(log.c_str(), "a", stdout);
    std::freopen(log.c_str(), "a", stderr);
    std::string b = bin("telehub"), d = data.string();
    execl(b.c_str(), b.c_str(), "serve", "--data", d.c_str(), "--broker", broker_uri.c_str(), "--http-port", "0",
          "--log-level", "warn", static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

std::string sql(const std::filesystem::path& db, const std::string& query) {
  auto r = testing::run_command("sqlite3 '" + db.string() + "' '" + query + "'");
  REQUIRE(r.exit_code == 0);
  while (!r.output.empty() && (r.output.back() == '\n' || r.output.back() == '\r')) r.output.pop_back();
  return r.output;
}

}  // namespace

TEST_CASE("hub killed with SIGKILL at random moments: every reading stored exactly once", "[e2e][crash]") {
  const long total_readings = env_or("TELEHUB_CRASH_READINGS", 200000);
  const long gateways = env_or("TELEHUB_CRASH_GATEWAYS", 20);
  const long kills = env_or("TELEHUB_CRASH_KILLS", 10);
  const long batch = env_or("TELEHUB_CRASH_BATCH", 100);
  const long messages_per_gateway = total_readings / (gateways * batch);
  REQUIRE(messages_per_gateway > 0);
  const long expected = messages_per_gateway * gateways * batch;

  // The hub and the enrol command read the key-encryption key from here (children inherit it).
  ::setenv("TELEHUB_KEK", std::string(64, 'c').c_str(), 1);
  testing::TempDir dir;
  const auto data = dir.path() / "data";
  const auto started = std::chrono::steady_clock::now();
  broker::BrokerOptions bo;
  bo.dir = dir.path() / "broker";
  auto broker = broker::EmbeddedBroker::start(bo);
  REQUIRE(broker);
  const std::string uri = (*broker)->uri();
  const auto log = dir.path() / "hub.log";

  // Enrol through the real command, as an operator would.
  std::vector<gateway::Provisioning> provs;
  for (long g = 0; g < gateways; ++g) {
    auto out = testing::run_command(bin("telehub") + " device enroll --subject crash-" + std::to_string(g) +
                                    " --broker " + uri + " --data " + data.string());
    INFO(out.output);
    REQUIRE(out.exit_code == 0);
    std::smatch m;
    REQUIRE(std::regex_search(out.output, m, std::regex("provisioning: (\\S+)")));
    auto p = gateway::load_provisioning(m[1].str());
    REQUIRE(p);
    provs.push_back(*p);
  }

  pid_t hub = spawn_hub(data, uri, log);
  REQUIRE(hub > 0);

  std::atomic<long> published_messages{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  std::vector<std::unique_ptr<gateway::Gateway>> gws(gateways);
  for (long g = 0; g < gateways; ++g) {
    gateway::GatewayOptions go;
    go.outbox_dir = dir.path() / ("outbox-" + std::to_string(g));
    go.receipt_timeout = 3s;
    go.publish_timeout = 10s;
    auto gw = gateway::Gateway::connect(provs[g], go);
    REQUIRE(gw);
    gws[g] = std::move(*gw);
  }
  // Reading times: one second apart per gateway, all in the recent past (the hub refuses
  // readings far in the past or in the future).
  const auto start_time = testing::minutes_ago(static_cast<int>(messages_per_gateway * batch / 60 + 60));
  for (long g = 0; g < gateways; ++g)
    threads.emplace_back([&, g] {
      const auto t0 = start_time;
      for (long m = 0; m < messages_per_gateway; ++m) {
        std::vector<core::Reading> readings;
        for (long i = 0; i < batch; ++i) {
          core::Reading r;
          r.code = "8867-4";
          r.value = 50 + (m + i) % 60;
          r.unit = "/min";
          r.time = t0 + std::chrono::seconds(m * batch + i);
          readings.push_back(std::move(r));
        }
        if (!gws[g]->publish(readings)) ++failures;
        ++published_messages;
        if (m % 50 == 0) (void)gws[g]->resend_pending();
      }
    });

  // Kill the hub at random moments spread over the stream (at random fractions of the
  // messages published), restarting it each time; it gets at least 300 ms to work in between.
  const long total_messages = messages_per_gateway * gateways;
  std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<double> fraction(0.02, 0.98);
  std::vector<long> kill_at;
  for (long k = 0; k < kills; ++k) kill_at.push_back(static_cast<long>(fraction(rng) * total_messages));
  std::sort(kill_at.begin(), kill_at.end());
  int killed = 0;
  for (long k = 0; k < kills; ++k) {
    std::this_thread::sleep_for(300ms);
    while (published_messages < kill_at[k]) std::this_thread::sleep_for(5ms);
    REQUIRE(::kill(hub, SIGKILL) == 0);
    int status = 0;
    REQUIRE(waitpid(hub, &status, 0) == hub);
    REQUIRE(WIFSIGNALED(status));
    ++killed;
    hub = spawn_hub(data, uri, log);
    REQUIRE(hub > 0);
  }
  for (auto& t : threads) t.join();
  const auto streamed = std::chrono::steady_clock::now();
  CHECK(failures == 0);

  // Every gateway's outbox drains only through receipts from the (restarted) hub.
  for (auto& gw : gws) CHECK(gw->wait_for_receipts(240s));
  const auto drained = std::chrono::steady_clock::now();
  for (auto& gw : gws) gw->disconnect();

  REQUIRE(::kill(hub, SIGTERM) == 0);
  int status = 0;
  REQUIRE(waitpid(hub, &status, 0) == hub);
  CHECK(WIFEXITED(status));

  const auto db = data / "telehub.db";
  const long stored = std::stol(sql(db, "SELECT coalesce(sum(readings), 0) FROM messages"));
  const long messages = std::stol(sql(db, "SELECT count(*) FROM messages"));
  const long distinct = std::stol(sql(db, "SELECT count(*) FROM (SELECT DISTINCT device_id, sequence FROM messages)"));
  WARN("crash test: " << expected << " readings in " << total_messages << " messages from " << gateways
                      << " gateways, hub killed " << killed << " times; stored " << stored << "; streamed in "
                      << std::chrono::duration_cast<std::chrono::milliseconds>(streamed - started).count()
                      << " ms, all receipts after "
                      << std::chrono::duration_cast<std::chrono::milliseconds>(drained - started).count() << " ms");
  CHECK(killed == kills);
  CHECK(stored == expected);   // 0 lost, 0 duplicated
  CHECK(messages == total_messages);
  CHECK(distinct == messages);
  CHECK(sql(db, "SELECT count(*) FROM quarantine") == "0");
  CHECK(sql(db, "PRAGMA integrity_check") == "ok");
}
