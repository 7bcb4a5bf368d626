// `telehub serve`: the hub. With no options it creates ./data, starts an embedded Mosquitto
// on a free loopback port, subscribes, and serves the FHIR API on 127.0.0.1:8080.
#include <signal.h>

#include <iostream>

#include "args.h"
#include "commands.h"
#include "hub_files.h"
#include "telehub/broker/embedded_broker.h"
#include "telehub/core/log.h"
#include "telehub/fhir/http_server.h"
#include "telehub/fhir/router.h"
#include "telehub/ingest/metrics.h"
#include "telehub/ingest/mqtt_subscriber.h"
#include "telehub/ingest/pipeline.h"
#include "telehub/privacy/pseudonym.h"
#include "telehub/storage/store.h"

namespace telehub::apps {
namespace {

constexpr const char* kServeHelp = R"(usage: telehub serve [options]
  --data DIR           data directory (default ./data)
  --http-host HOST     FHIR API listen address (default 127.0.0.1)
  --http-port PORT     FHIR API port (default 8080; 0 picks a free one)
  --broker URI         use an external broker (tcp://host:port) instead of the embedded one
  --broker-port PORT   port for the embedded broker (default: the one used last time, else a free one)
  --client-id ID       MQTT client id / persistent session name (default telehub-hub)
  --shared             subscribe through $share/telehub/... to split load over several hubs
  --log-level LEVEL    debug|info|warn|error (default info)
  --kek-file PATH      key-encryption key file, outside the data directory (default: $TELEHUB_KEK,
                       else ~/.config/telehub/kek, created on first use: development only)
)";

}  // namespace

int cmd_serve(int argc, char** argv) {
  auto parsed = parse_args(argc, argv, 2,
                           {"data", "http-host", "http-port", "broker", "broker-port", "client-id", "log-level", "kek-file"},
                           {"shared", "help"});
  if (!parsed) {
    std::cerr << "telehub: " << parsed.error().message << "\n" << kServeHelp;
    return 2;
  }
  const Args& args = *parsed;
  if (args.has("help")) {
    std::cout << kServeHelp;
    return 0;
  }
  auto http_port = args.get_int("http-port", 8080, 0, 65535);
  auto broker_port = args.get_int("broker-port", 0, 0, 65535);
  if (!http_port || !broker_port) {
    std::cerr << "telehub: " << (!http_port ? http_port.error() : broker_port.error()).message << "\n";
    return 2;
  }
  const std::string level = args.get("log-level", "info");
  if (level == "debug") core::set_log_level(core::LogLevel::kDebug);
  else if (level == "warn") core::set_log_level(core::LogLevel::kWarn);
  else if (level == "error") core::set_log_level(core::LogLevel::kError);
  else if (level != "info") {
    std::cerr << "telehub: --log-level must be debug, info, warn or error\n";
    return 2;
  }

  // Block the stop signals in every thread we start; the main thread waits for them below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto dir = open_data_dir(args.get("data", "data"));
  if (!dir) return fail_with(dir.error());
  auto previous = read_hub_info(*dir);
  if (!previous) return fail_with(previous.error());

  auto kek = load_kek(args.get("kek-file"), *dir);
  if (!kek) return fail_with(kek.error());
  // Fail fast with the wrong KEK (ingest would otherwise leave every message unacknowledged).
  if (std::filesystem::exists(dir->pseudonym_key()))
    if (auto p = privacy::Pseudonymiser::open_wrapped_key_file(dir->pseudonym_key(), *kek); !p)
      return fail_with(p.error());

  auto store = storage::open_sqlite_store({dir->db()}, core::system_clock());
  if (!store) return fail_with(store.error());

  std::unique_ptr<broker::EmbeddedBroker> embedded;
  HubInfo info;
  if (args.has("broker")) {
    info.broker_uri = args.get("broker");
  } else {
    broker::BrokerOptions bo;
    bo.dir = dir->broker_dir();
    bo.port = static_cast<std::uint16_t>(*broker_port);
    // Reuse last run's port so provisioned gateways keep working across restarts.
    if (bo.port == 0 && *previous && (*previous)->embedded_broker_port > 0) {
      bo.port = static_cast<std::uint16_t>((*previous)->embedded_broker_port);
      auto started = broker::EmbeddedBroker::start(bo);
      if (started) embedded = std::move(*started);
      else {
        core::log_warn("serve", "previous broker port " + std::to_string(bo.port) + " unavailable; picking a free one");
        bo.port = 0;
      }
    }
    if (!embedded) {
      auto started = broker::EmbeddedBroker::start(bo);
      if (!started) return fail_with(started.error());
      embedded = std::move(*started);
    }
    info.broker_uri = embedded->uri();
    info.embedded_broker_port = embedded->port();
    core::log_info("serve", "embedded broker (mosquitto pid " + std::to_string(embedded->pid()) + ") at " + info.broker_uri);
  }

  ingest::Pipeline pipeline(**store, core::system_clock(), *kek);
  ingest::SubscriberOptions so;
  so.server_uri = info.broker_uri;
  so.client_id = args.get("client-id", "telehub-hub");
  so.shared = args.has("shared");
  auto subscriber = ingest::MqttSubscriber::start(so, pipeline);
  if (!subscriber) return fail_with(subscriber.error());

  fhir::HttpServerOptions ho;
  ho.host = args.get("http-host", "127.0.0.1");
  ho.port = static_cast<std::uint16_t>(*http_port);
  if (ho.port == 0) {
    // The router needs its absolute base URL up front, so pick the free port here.
    auto port = broker::find_free_port(ho.host);
    if (!port) return fail_with(port.error());
    ho.port = *port;
  }
  const std::string base = "http://" + ho.host + ":" + std::to_string(ho.port) + "/fhir";
  fhir::RouterOptions ro;
  ro.base_url = base;
  ro.metrics = [&pipeline, sub = subscriber->get()] {
    return ingest::prometheus_text(pipeline.counters(), {sub->connected(), sub->stalled()});
  };
  fhir::Router router(**store, ro);
  info.fhir_base = base;
  if (auto s = write_hub_info(*dir, info); !s) return fail_with(s.error());
  auto server = fhir::HttpServer::start(ho, router);
  if (!server) return fail_with(server.error());
  core::log_info("serve", "FHIR API at " + base + " ; data in " + dir->root.string());
  std::cout << "telehub: serving; FHIR API at " << base << "/metadata ; broker " << info.broker_uri
            << " ; stop with Ctrl-C" << std::endl;

  int sig = 0;
  sigwait(&stop_signals, &sig);
  core::log_info("serve", std::string("stopping on ") + (sig == SIGINT ? "SIGINT" : "SIGTERM"));
  (*subscriber)->stop();  // waits for the message in progress; no new deliveries
  (*server)->stop();
  (*store)->close();      // commits everything queued
  if (embedded) embedded->stop();
  auto c = pipeline.counters();
  core::log_info("serve", "stopped cleanly: " + std::to_string(c.stored_readings) + " readings stored, " +
                              std::to_string(c.duplicates) + " duplicates, " + std::to_string(c.quarantined) +
                              " quarantined this run");
  return 0;
}

}  // namespace telehub::apps
