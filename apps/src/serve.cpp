// `telehub serve`: the hub. With no options it creates ./data, starts an embedded Mosquitto
// on a free loopback port with TLS and client certificates (development CA in <data>/ca),
// subscribes, and serves the FHIR API over HTTPS on 127.0.0.1:8080 (a server certificate from
// the same development CA, unless --https-cert/--https-key; plain HTTP only with --insecure-http
// on a loopback address). It keeps the broker's list of refused identities equal to the
// registry's revoked devices (checked every second).
#include <signal.h>

#include <algorithm>
#include <ctime>
#include <iostream>

#include "args.h"
#include "commands.h"
#include "hub_files.h"
#include "hub_tls.h"
#include "telehub/auth/token_service.h"
#include "bulk_export.h"
#include "telehub/broker/embedded_broker.h"
#include "telehub/clinical/resource_store.h"
#include "telehub/core/log.h"
#include "telehub/fhir/http_server.h"
#include "telehub/fhir/router.h"
#include "telehub/ingest/metrics.h"
#include "telehub/ingest/mqtt_subscriber.h"
#include "telehub/ingest/pipeline.h"
#include "telehub/privacy/care_relations.h"
#include "telehub/privacy/pseudonym.h"
#include "telehub/storage/store.h"
#include "payload_config.h"
#include "privacy_stores.h"
#include "research_service.h"

namespace telehub::apps {
namespace {

constexpr const char* kServeHelp = R"(usage: telehub serve [options]
  --data DIR           data directory (default ./data)
  --http-host HOST     FHIR API listen address (default 127.0.0.1)
  --http-port PORT     FHIR API port (default 8080; 0 picks a free one)
                       The API speaks HTTPS only (TLS 1.2/1.3, HSTS; docs/security.md). Without
                       --https-cert it uses a certificate (CN telehub-api) from the development CA
                       in <data>/ca, kept in <data>/tls/api.pem; clients trust <data>/ca/ca.pem
                       (curl --cacert DATA/ca/ca.pem https://127.0.0.1:8080/fhir/metadata)
  --https-cert FILE    the API's server certificate (PEM, chain may follow), with --https-key
  --https-key FILE     its unencrypted private key (PEM): RSA >= 3072 bits or ECDSA P-256/P-384
  --https-client-ca FILE  CA certificates (PEM) for client certificates (mutual TLS): clients are
                       asked for a certificate and it is verified against FILE, but one is not
                       required (clients without one authenticate with a bearer token)
  --insecure-http      plain HTTP instead of HTTPS, development only: refused unless --http-host
                       is a loopback address (127.0.0.0/8, ::1, localhost)
  --broker URI         use an external broker instead of the embedded one: ssl://host:port with
                       --tls-ca/--tls-cert/--tls-key (the hub's certificate, CN telehub-hub),
                       or tcp://host:port (plain MQTT: development only)
  --tls-ca FILE        CA certificate (PEM) the external broker's certificate is checked against
  --tls-cert FILE      the hub's client certificate (PEM) for the external broker
  --tls-key FILE       its private key (PEM)
  --broker-port PORT   port for the embedded broker's TLS listener (default: the one used last
                       time, else a free one)
  --plaintext-port PORT  also open a plaintext MQTT listener on 127.0.0.1:PORT on the embedded
                       broker, without authentication or ACL (development and old gateways only)
  --client-id ID       MQTT client id / persistent session name for a plain external broker
                       (default telehub-hub; with TLS the broker uses the certificate's CN)
  --shared             subscribe through $share/telehub/... to split load over several hubs
  --log-level LEVEL    debug|info|warn|error (default info)
  --kek-file PATH      key-encryption key file, outside the data directory (default: $TELEHUB_KEK,
                       else ~/.config/telehub/kek, created on first use: development only)
  --care-local         development only: with --insecure-http, clients on this machine that send no
                       token act in the care role (user local) and get identified data
                       (re-identified Patient, Patient registration, AuditEvent, Consent); every
                       access is audited (docs/privacy.md). Refused without --insecure-http.
  --studies DIR        study definitions (<id>.json) the research role may query and export
                       (default DATA/studies; docs/research.md)
  --config DIR         device payload configuration: mapping templates in DIR/mappings, plausibility
                       rules in DIR/plausibility.json (default: $TELEHUB_CONFIG_DIR, else the
                       config/ directory of the source tree; docs/payloads.md)
)";

}  // namespace

int cmd_serve(int argc, char** argv) {
  auto parsed = parse_args(argc, argv, 2,
                           {"data", "http-host", "http-port", "broker", "broker-port", "client-id", "log-level", "kek-file",
                            "tls-ca", "tls-cert", "tls-key", "plaintext-port", "config", "https-cert", "https-key",
                            "https-client-ca", "studies"},
                           {"shared", "help", "care-local", "insecure-http"});
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
  auto plaintext_port = args.get_int("plaintext-port", 0, 1, 65535);
  for (const auto* r : {&http_port, &broker_port, &plaintext_port})
    if (!*r) {
      std::cerr << "telehub: " << r->error().message << "\n";
      return 2;
    }
  const int tls_files = args.has("tls-ca") + args.has("tls-cert") + args.has("tls-key");
  if (args.has("broker")) {
    const bool tls = is_tls_uri(args.get("broker"));
    if (args.has("broker-port") || args.has("plaintext-port")) {
      std::cerr << "telehub: --broker-port and --plaintext-port are for the embedded broker, not with --broker\n";
      return 2;
    }
    if (tls && tls_files != 3) {
      std::cerr << "telehub: --broker ssl://... needs --tls-ca, --tls-cert and --tls-key (the hub's certificate)\n";
      return 2;
    }
    if (!tls && tls_files != 0) {
      std::cerr << "telehub: --tls-ca/--tls-cert/--tls-key need an ssl:// or mqtts:// --broker\n";
      return 2;
    }
  } else if (tls_files != 0) {
    std::cerr << "telehub: --tls-ca/--tls-cert/--tls-key are for an external --broker; the embedded broker "
                 "uses the development CA in <data>/ca\n";
    return 2;
  }
  // The FHIR API: HTTPS unless --insecure-http, which is for a loopback address only; the
  // token-less care role (--care-local) only in that development mode.
  const std::string http_host = args.get("http-host", "127.0.0.1");
  const bool insecure_http = args.has("insecure-http");
  if (args.has("https-cert") != args.has("https-key")) {
    std::cerr << "telehub: --https-cert and --https-key go together (the certificate and its private key)\n";
    return 2;
  }
  if (insecure_http && (args.has("https-cert") || args.has("https-client-ca"))) {
    std::cerr << "telehub: --https-cert/--https-key/--https-client-ca are for HTTPS, not with --insecure-http\n";
    return 2;
  }
  if (insecure_http && !is_loopback_host(http_host)) {
    std::cerr << "telehub: --insecure-http serves plain HTTP, so only on a loopback --http-host (127.0.0.1, ::1, "
                 "localhost), not on "
              << http_host << "; use HTTPS (the default) for other addresses\n";
    return 2;
  }
  if (args.has("care-local") && !insecure_http) {
    std::cerr << "telehub: --care-local lets clients without a token act in the care role; it is for development "
                 "only and needs --insecure-http (on a loopback address)\n";
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
  // Fail fast with the wrong KEK (ingest would otherwise leave every message unacknowledged),
  // or with a mapping template or plausibility file that does not parse.
  auto pipeline_opts = pipeline_options(config_dir(args.get("config")), *dir, *kek);
  if (!pipeline_opts) return fail_with(pipeline_opts.error());
  // The identity vault, audit log and consent records (docs/privacy.md); opened (and created)
  // at start, so a wrong KEK or an unreadable file stops serve here, not at the first access.
  auto privacy_stores = open_privacy(*dir, *kek);
  if (!privacy_stores) return fail_with(privacy_stores.error());
  pipeline_opts->vault = privacy_stores->vault;

  // Authentication (issue [6/8], docs/security.md): registered API clients and their tokens,
  // and the care relations that limit what the care role sees.
  auto tokens = auth::TokenService::open(dir->auth_db(), core::system_clock());
  if (!tokens) return fail_with(tokens.error());
  auto care = privacy::CareRelations::open(dir->care_db());
  if (!care) return fail_with(care.error());
  std::shared_ptr<privacy::CareRelations> care_relations = std::move(*care);
  // Clinical records imported from hospital systems (docs/clinical.md).
  auto clinical_store = clinical::ResourceStore::open(dir->clinical_db(), core::system_clock());
  if (!clinical_store) return fail_with(clinical_store.error());
  std::shared_ptr<clinical::ResourceStore> clinical_records = std::move(*clinical_store);
  // Environmental context (docs/environment.md): hourly values per postcode area, for the
  // dossier and research exposures.
  auto env_store = environment::EnvStore::open(dir->environment_db());
  if (!env_store) return fail_with(env_store.error());
  std::shared_ptr<environment::EnvStore> environment_values = std::move(*env_store);

  // The API's TLS files: given, or issued from the development CA (kept across restarts).
  std::optional<fhir::TlsOptions> api_tls;
  if (!insecure_http) {
    fhir::TlsOptions t;
    if (args.has("https-cert")) {
      t.cert_file = args.get("https-cert");
      t.key_file = args.get("https-key");
    } else {
      auto files = prepare_api_tls(*dir, http_host);
      if (!files) return fail_with(files.error());
      t.cert_file = files->cert;
      t.key_file = files->key;
    }
    if (args.has("https-client-ca")) {
      t.client_ca_file = args.get("https-client-ca");
      t.require_client_certificate = false;  // asked for and verified; tokens are the other way in
    }
    api_tls = std::move(t);
  }

  // Acknowledge after the commit (synchronous=NORMAL: survives a crash of the hub), receipts
  // after the WAL is synced (survives power loss): docs/ingest.md.
  storage::StoreOptions store_options;
  store_options.path = dir->db();
  store_options.sync_each_commit = false;
  auto store = storage::open_sqlite_store(store_options, core::system_clock());
  if (!store) return fail_with(store.error());

  std::unique_ptr<broker::EmbeddedBroker> embedded;
  HubInfo info;
  ingest::SubscriberOptions so;
  so.client_id = args.get("client-id", kHubIdentity);
  std::vector<std::string> denied;  // what the embedded broker refuses: the inactive devices
  if (args.has("broker")) {
    info.broker_uri = args.get("broker");
    so.ca_file = args.get("tls-ca");
    so.cert_file = args.get("tls-cert");
    so.key_file = args.get("tls-key");
  } else {
    auto tls = prepare_embedded_tls(*dir, "127.0.0.1");
    if (!tls) return fail_with(tls.error());
    auto inactive = (*store)->registry().inactive_device_ids();
    if (!inactive) return fail_with(inactive.error());
    denied = std::move(*inactive);
    broker::BrokerOptions bo;
    bo.dir = dir->broker_dir();
    bo.port = static_cast<std::uint16_t>(*broker_port);
    bo.ca_file = tls->ca;
    bo.cert_file = tls->broker_cert;
    bo.key_file = tls->broker_key;
    bo.hub_identity = kHubIdentity;
    bo.denied_identities = denied;
    bo.plaintext_listener_port = static_cast<std::uint16_t>(args.has("plaintext-port") ? *plaintext_port : 0);
    so.ca_file = tls->ca.string();
    so.cert_file = tls->hub_cert.string();
    so.key_file = tls->hub_key.string();
    // The broker takes the client id from the certificate (use_username_as_clientid).
    if (args.has("client-id") && args.get("client-id") != kHubIdentity) {
      std::cerr << "telehub: with the embedded broker the hub's client id is its certificate name, "
                << kHubIdentity << "\n";
      return 2;
    }
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
    core::log_info("serve", "embedded broker (mosquitto pid " + std::to_string(embedded->pid()) + ") at " +
                                info.broker_uri + " (TLS, client certificates)" +
                                (embedded->plaintext_port() != 0
                                     ? "; plaintext listener on 127.0.0.1:" + std::to_string(embedded->plaintext_port())
                                     : std::string()));
  }

  ingest::Pipeline pipeline(**store, core::system_clock(), *kek, *pipeline_opts);
  so.server_uri = info.broker_uri;
  so.shared = args.has("shared");
  auto subscriber = ingest::MqttSubscriber::start(so, pipeline);
  if (!subscriber) return fail_with(subscriber.error());

  fhir::HttpServerOptions ho;
  ho.host = http_host;
  ho.port = static_cast<std::uint16_t>(*http_port);
  ho.tls = api_tls;
  if (ho.port == 0) {
    // The router needs its absolute base URL up front, so pick the free port here.
    auto port = broker::find_free_port(ho.host);
    if (!port) return fail_with(port.error());
    ho.port = *port;
  }
  const std::string origin = std::string(insecure_http ? "http://" : "https://") +
                             (ho.host.find(':') != std::string::npos ? "[" + ho.host + "]" : ho.host) + ":" +
                             std::to_string(ho.port);
  const std::string base = origin + "/fhir";
  fhir::RouterOptions ro;
  ro.base_url = base;
  ro.plausibility = pipeline_opts->plausibility;
  ro.privacy.vault = privacy_stores->vault;
  ro.privacy.audit = privacy_stores->audit;
  ro.privacy.consent = privacy_stores->consent;
  ro.privacy.pseudonymiser = privacy_stores->pseudonymiser;
  ro.privacy.care_local = args.has("care-local");
  ro.auth.tokens = std::move(*tokens);
  ro.auth.token_url = origin + "/auth/token";
  ro.clinical = clinical_records;
  // Bulk Data export jobs (docs/bulk-export.md): files under <data>/exports, kept 24 hours.
  fhir::BulkExportOptions eo;
  eo.dir = dir->root / "exports";
  eo.base_url = base;
  eo.store = store->get();
  eo.clinical = clinical_records.get();
  eo.vault = privacy_stores->vault.get();
  if (pipeline_opts->plausibility) eo.rules = *pipeline_opts->plausibility;
  auto exports = fhir::BulkExports::start(std::move(eo));
  if (!exports) return fail_with(exports.error());
  std::shared_ptr<fhir::BulkExports> export_jobs = std::move(*exports);
  ro.exports = export_jobs;
  ro.environment = environment_values;
  // Research (docs/research.md): the studies of --studies, for the research role.
  auto research = ResearchService::open(args.has("studies") ? std::filesystem::path(args.get("studies")) : dir->root / "studies",
                                        dir->research_key(), *kek,
                                        {store->get(), privacy_stores->vault, privacy_stores->consent, clinical_records,
                                         environment_values});
  if (!research) return fail_with(research.error());
  (*research)->install(ro);
  ro.auth.care_relations = care_relations;
  ro.metrics = [&pipeline, sub = subscriber->get()] {
    return ingest::prometheus_text(pipeline.counters(), {sub->connected(), sub->stalled()});
  };
  fhir::Router router(**store, ro);
  info.fhir_base = base;
  if (auto s = write_hub_info(*dir, info); !s) return fail_with(s.error());
  auto server = fhir::HttpServer::start(ho, router);
  if (!server) return fail_with(server.error());
  core::log_info("serve", "FHIR API at " + base +
                              (insecure_http ? std::string(" (plain HTTP: development only)")
                                             : " (HTTPS; certificate " + api_tls->cert_file.string() + ")") +
                              " ; data in " + dir->root.string());
  std::cout << "telehub: serving; FHIR API at " << base << "/metadata ; token endpoint " << ro.auth.token_url
            << " ; broker " << info.broker_uri
            << " ; stop with Ctrl-C" << std::endl;

  // Wait for a stop signal; meanwhile keep the broker's refused identities equal to the
  // registry's inactive devices (`telehub device revoke` runs in another process).
  int sig = 0;
  bool broker_failed = false;
  for (;;) {
    timespec tick{1, 0};
    sig = sigtimedwait(&stop_signals, nullptr, &tick);
    if (sig == SIGINT || sig == SIGTERM) break;
    if (!embedded) continue;
    auto inactive = (*store)->registry().inactive_device_ids();
    if (!inactive) {
      core::log_warn("serve", "cannot read the revoked devices: " + inactive.error().to_string());
      continue;
    }
    if (*inactive == denied) continue;
    std::string added;
    for (const auto& id : *inactive)
      if (std::find(denied.begin(), denied.end(), id) == denied.end()) added += " " + id;
    core::log_info("serve", "broker: restarting the embedded broker to refuse revoked device(s)" + added);
    if (auto s = embedded->deny_identities(*inactive); !s) {
      // The broker is down: ingest stalls (nothing is acknowledged), gateways keep their data.
      core::log_error("serve", "embedded broker restart failed: " + s.error().to_string() + "; stopping");
      broker_failed = true;
      break;
    }
    core::log_info("serve", "broker: refusing revoked device(s)" + added + "; the broker is back (pid " +
                                std::to_string(embedded->pid()) + ")");
    denied = std::move(*inactive);
  }
  core::log_info("serve", broker_failed ? std::string("stopping: the embedded broker is down")
                                        : std::string("stopping on ") + (sig == SIGINT ? "SIGINT" : "SIGTERM"));
  (*subscriber)->stop();  // waits for the message in progress; no new deliveries
  (*server)->stop();
  export_jobs->stop();  // joins running export jobs; their files are deleted
  (*store)->close();      // commits everything queued
  if (embedded) embedded->stop();
  auto c = pipeline.counters();
  core::log_info("serve", "stopped cleanly: " + std::to_string(c.stored_readings) + " readings stored, " +
                              std::to_string(c.duplicates) + " duplicates, " + std::to_string(c.quarantined) +
                              " quarantined this run");
  return broker_failed ? 1 : 0;
}

}  // namespace telehub::apps
