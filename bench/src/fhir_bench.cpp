// telehub-bench-fhir: the FHIR API's performance (issue [7/8]), over real stores and a real
// fhir::HttpServer on 127.0.0.1 (plain HTTP: TLS is left out, so the figures are the API's,
// not OpenSSL's).
//
//   telehub-bench-fhir [--shared DIR] [--quick] [--readings N] [--year-minutes N]
//                      [--export-patients N] [--export-readings N] [--clients K] [--seconds D]
//                      [--runs N]
//
// Set-up, in a fresh temporary directory (deleted at the end), as tests/fhir/clinical_routes_test.cpp
// does: the measurement store (storage::open_sqlite_store, synchronous=NORMAL as serve runs it),
// a clinical::ResourceStore, identity vault, audit log, token service, care relations, a
// fhir::BulkExports, a fhir::Router and a fhir::HttpServer (2 I/O threads, no rate limit). Two
// SMART Backend Services clients (care role, organisations org-a and org-b) get their access
// tokens from the token service (a signed client assertion, as a hospital system would send).
// Every request below goes over HTTP/1.1 with keep-alive (Boost.Beast synchronous client),
// carries the bearer token, and so is authorised and audited as in production.
//
// 1. $everything: org-a imports a Synthea record (POST /fhir, transaction Bundle) and its
//    patient gets --readings minute heart rates (default 10,000). GET Patient/<id>/$everything
//    with _count=1000, following next links to the end: median (min-max) of --runs runs,
//    resources/s.
// 2. Dense view: another patient of org-a gets a year of minute heart rate (--year-minutes,
//    default 525,600) through ObservationStore::append in messages of 60 (timed), compacted
//    (timed). GET Observation?patient=&code=8867-4&_aggregate=hour and =day (median of --runs)
//    against paging the raw readings with _count=1000 (one run); the ratios raw / aggregate.
// 3. Bulk export: org-b's --export-patients patients (default 20; up to 5 of them imported
//    Synthea records, the rest registered subjects) with --export-readings readings each
//    (default 2,000). Patient/$export with Prefer: respond-async, polled every 20 ms until
//    complete, every file downloaded and its lines counted: resources/s from kick-off to the
//    last byte.
// 4. Load: --clients threads (default 8), each on its own keep-alive connection, issue
//    GET Observation?patient=<random org-b patient>&code=8867-4&_count=50 for --seconds
//    (default 10): requests/s, latency p50, p99, max. Then, as the reference measured in the
//    same run, the same clients on GET metadata for as long: the ratio of the two rates.
// Every response is checked (status, counts); any failure ends the program with exit code 1.
// Prints one line per figure, then one JSON line with all figures (the last line of stdout).
// Progress goes to stderr.
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <rapidjson/document.h>

#include "bulk_export.h"
#include "test_signer.h"
#include "telehub/auth/token_service.h"
#include "telehub/clinical/resource_store.h"
#include "telehub/fhir/http_server.h"
#include "telehub/fhir/router.h"
#include "telehub/privacy/audit_log.h"
#include "telehub/privacy/care_relations.h"
#include "telehub/privacy/identity_vault.h"
#include "telehub/privacy/pseudonym.h"
#include "telehub/storage/store.h"

using namespace telehub;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;

namespace {

// The work directory, removed by die() too (the run's files are test data only).
std::filesystem::path g_work_dir;

[[noreturn]] void die(const std::string& why) {
  std::cerr << "telehub-bench-fhir: " << why << "\n";
  if (!g_work_dir.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(g_work_dir, ec);
  }
  std::_Exit(1);  // without destructors: the server's threads and the stores may be mid-request
}

int usage(const std::string& why) {
  std::cerr << "telehub-bench-fhir: " << why
            << "\nusage: telehub-bench-fhir [--shared DIR] [--quick] [--readings N] [--year-minutes N]"
               " [--export-patients N] [--export-readings N] [--clients K] [--seconds D] [--runs N]\n";
  return 2;
}

void progress(const std::string& s) { std::cerr << "telehub-bench-fhir: " << s << "\n"; }

// The 1-minute load average (/proc/loadavg), to show how busy the shared machine was.
std::string loadavg() {
  std::ifstream in("/proc/loadavg");
  std::string first;
  in >> first;
  return first.empty() ? "null" : first;
}

double ms_since(SteadyClock::time_point start) {
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - start).count();
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) die("cannot read " + p.string());
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Stats {
  double median = 0, min = 0, max = 0;
};
Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

std::string fmt(double v, int decimals = 1) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", decimals, v);
  return b;
}

// ------------------------------------------------------------------ HTTP client (keep-alive)

struct HttpAnswer {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;
};

class Client {
 public:
  explicit Client(std::uint16_t port) : port_(port), stream_(io_) {}
  HttpAnswer request(http::verb verb, const std::string& target, const std::string& token,
                     const std::vector<std::pair<std::string, std::string>>& extra = {}) {
    for (int attempt = 0;; ++attempt) {
      try {
        if (!open_) connect();
        http::request<http::string_body> req{verb, target, 11};
        req.set(http::field::host, "127.0.0.1:" + std::to_string(port_));
        req.set(http::field::authorization, "Bearer " + token);
        req.set(http::field::accept, "application/fhir+json");
        for (const auto& [k, v] : extra) req.set(k, v);
        req.keep_alive(true);
        http::write(stream_, req);
        http::response_parser<http::string_body> parser;
        parser.body_limit(std::numeric_limits<std::uint64_t>::max());
        http::read(stream_, buffer_, parser);
        auto res = parser.release();
        HttpAnswer a;
        a.status = static_cast<int>(res.result_int());
        for (const auto& f : res) a.headers[std::string(f.name_string())] = std::string(f.value());
        a.body = std::move(res.body());
        if (!res.keep_alive()) close();
        return a;
      } catch (const std::exception& e) {
        close();
        // A kept-alive connection the server closed in the meantime: one retry on a new one.
        if (attempt > 0) die(std::string("HTTP request failed: ") + e.what());
      }
    }
  }
  HttpAnswer get(const std::string& target, const std::string& token) { return request(http::verb::get, target, token); }

 private:
  void connect() {
    stream_.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port_));
    stream_.socket().set_option(tcp::no_delay(true));
    open_ = true;
  }
  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
    buffer_.clear();
    open_ = false;
  }
  std::uint16_t port_;
  boost::asio::io_context io_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  bool open_ = false;
};

// A searchset page: entries and the next link (as a target: path and query).
struct Page {
  std::size_t entries = 0;
  std::string next;
};
Page read_page(const HttpAnswer& a, const std::string& what) {
  if (a.status != 200) die(what + ": HTTP " + std::to_string(a.status) + ": " + a.body.substr(0, 300));
  rapidjson::Document d;
  d.Parse(a.body.c_str(), a.body.size());
  if (d.HasParseError() || !d.IsObject()) die(what + ": the response is not JSON");
  Page p;
  if (d.HasMember("entry")) p.entries = d["entry"].Size();
  if (d.HasMember("link"))
    for (const auto& l : d["link"].GetArray())
      if (std::string(l["relation"].GetString()) == "next") {
        const std::string url = l["url"].GetString();
        const auto path = url.find("/fhir");
        if (path == std::string::npos) die(what + ": odd next link");
        p.next = url.substr(path);
      }
  return p;
}

// Follows next links from `target` to the end; returns the entries seen.
std::size_t fetch_all(Client& c, std::string target, const std::string& token, const std::string& what) {
  std::size_t n = 0;
  for (int pages = 0; !target.empty(); ++pages) {
    if (pages > 1'000'000) die(what + ": too many pages");
    auto p = read_page(c.get(target, token), what);
    n += p.entries;
    target = p.next;
  }
  return n;
}

std::uint16_t free_port() {
  boost::asio::io_context io;
  tcp::acceptor a(io, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

// ------------------------------------------------------------------ the hub under test

constexpr std::int64_t kMinute = 60'000;

struct Hub {
  std::filesystem::path dir;
  std::unique_ptr<storage::Store> store;
  std::shared_ptr<auth::TokenService> tokens;
  std::shared_ptr<privacy::CareRelations> care;
  std::shared_ptr<privacy::IdentityVault> vault;
  std::shared_ptr<clinical::ResourceStore> clinical;
  std::shared_ptr<const privacy::Pseudonymiser> pseudonymiser;
  std::unique_ptr<fhir::Router> router;
  std::unique_ptr<fhir::HttpServer> server;
  std::uint16_t port = 0;
  std::string base_url;
  std::uint64_t sequence = 0;
  int jti = 0;

  void open(int clients) {
    char tmpl[] = "/tmp/telehub-bench-fhir-XXXXXX";
    if (!mkdtemp(tmpl)) die("cannot create a temporary directory");
    dir = tmpl;
    g_work_dir = dir;
    storage::StoreOptions so;
    so.path = dir / "telehub.db";
    so.sync_each_commit = false;  // as serve runs it
    auto s = storage::open_sqlite_store(so, core::system_clock());
    if (!s) die("store: " + s.error().to_string());
    store = std::move(*s);
    auto ts = auth::TokenService::open(dir / "auth.db", core::system_clock());
    if (!ts) die("token service: " + ts.error().to_string());
    tokens = std::move(*ts);
    auto c = privacy::CareRelations::open(dir / "care.db");
    if (!c) die("care relations: " + c.error().to_string());
    care = std::move(*c);
    const auto kek = privacy::Kek::from_hex(std::string(64, 'b'));
    if (!kek) die("kek");
    auto v = privacy::IdentityVault::open(dir / "identity.db", dir / "vault.key", *kek);
    if (!v) die("vault: " + v.error().to_string());
    vault = std::move(*v);
    auto audit = privacy::AuditLog::open(dir / "audit.db");
    if (!audit) die("audit log: " + audit.error().to_string());
    auto cl = clinical::ResourceStore::open(dir / "clinical.db", core::system_clock());
    if (!cl) die("clinical store: " + cl.error().to_string());
    clinical = std::move(*cl);
    pseudonymiser = std::move(*privacy::Pseudonymiser::from_key(core::Bytes(32, 5)));

    port = free_port();
    base_url = "http://127.0.0.1:" + std::to_string(port) + "/fhir";
    fhir::BulkExportOptions eo;
    eo.dir = dir / "exports";
    eo.base_url = base_url;
    eo.store = store.get();
    eo.clinical = clinical.get();
    eo.vault = vault.get();
    auto exports = fhir::BulkExports::start(std::move(eo));
    if (!exports) die("bulk exports: " + exports.error().to_string());

    fhir::RouterOptions o;
    o.base_url = base_url;
    o.max_count = 1000;
    o.privacy.vault = vault;
    o.privacy.audit = std::move(*audit);
    o.privacy.pseudonymiser = pseudonymiser;
    o.auth.tokens = tokens;
    o.auth.token_url = "http://127.0.0.1:" + std::to_string(port) + "/auth/token";
    o.auth.care_relations = care;
    o.clinical = clinical;
    o.exports = std::move(*exports);
    router = std::make_unique<fhir::Router>(*store, std::move(o));

    fhir::HttpServerOptions ho;
    ho.host = "127.0.0.1";
    ho.port = port;
    ho.threads = 2;
    ho.rate_limit_per_second = 0;  // one client address makes all the load
    ho.max_connections_per_client = static_cast<std::size_t>(std::max(32, clients + 4));
    auto server_started = fhir::HttpServer::start(ho, *router);
    if (!server_started) die("HTTP server: " + server_started.error().to_string());
    server = std::move(*server_started);
  }

  void close() {
    if (server) server->stop();
    server.reset();
    router.reset();
    if (store) store->close();
    store.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }

  void register_client(const std::string& name, const std::string& organisation) {
    const auto& key = auth::test::shared_ec();
    auto r = tokens->register_client({name, auth::test::jwks_json({auth::test::jwk_json(key, "k")}), "system/*.cruds",
                                      "care", organisation});
    if (!r) die("register client: " + r.error().to_string());
  }

  // A fresh access token (valid 300 s) for a registered client, from a signed assertion.
  std::string token(const std::string& name) {
    const std::string aud = "http://127.0.0.1:" + std::to_string(port) + "/auth/token";
    const std::string claims = R"({"iss":")" + name + R"(","sub":")" + name + R"(","aud":")" + aud + R"(","jti":"j-)" +
                               std::to_string(++jti) + R"(","exp":)" +
                               std::to_string(core::to_unix_millis(core::system_clock().now()) / 1000 + 200) + "}";
    auto issued = tokens->issue({{"grant_type", "client_credentials"},
                                 {"scope", "system/*.cruds"},
                                 {"client_assertion_type", std::string(auth::kJwtBearerAssertionType)},
                                 {"client_assertion",
                                  auth::test::sign_jws(auth::test::shared_ec(), R"({"alg":"ES384","kid":"k"})", claims)}},
                                aud);
    if (!issued) die("token: " + issued.error().to_string());
    return issued->access_token;
  }

  // Imports a Synthea transaction Bundle as `token`'s client (which declares the care
  // relation); returns the patient's pseudonym. Through the router: the bundle is larger than
  // the HTTP server's body limit, and the import is set-up, not measured.
  std::string import_synthea(const std::filesystem::path& file, const std::string& token) {
    fhir::Request r{"POST", "/fhir", {{"Authorization", "Bearer " + token}}, slurp(file), "127.0.0.1:1", true};
    auto response = router->handle(r);
    if (response.status != 200) die("import of " + file.filename().string() + ": HTTP " + std::to_string(response.status));
    rapidjson::Document d;
    d.Parse(response.body.c_str(), response.body.size());
    if (d.HasParseError() || !d.HasMember("entry")) die("import: odd response");
    for (const auto& e : d["entry"].GetArray()) {
      const std::string location = e["response"]["location"].GetString();
      if (location.starts_with("Patient/")) return location.substr(8, 32);
    }
    die("import: no Patient in " + file.filename().string());
  }

  // A subject that is not in the vault: registry and a care relation with `organisation`.
  std::string plain_subject(const std::string& name, const std::string& organisation) {
    const auto s = pseudonymiser->subject(name);
    if (auto a = store->registry().add_subject(s); !a) die("add_subject: " + a.error().to_string());
    if (auto c = care->add(s.str(), organisation, core::system_clock().now() - std::chrono::hours(1), "bench"); !c)
      die("care relation: " + c.error().to_string());
    return s.str();
  }

  // Binds a device to the subject and appends `n` minute heart rates ending a minute ago, in
  // messages of `per_message`. Returns the time it took (ms).
  double append_minutes(const std::string& subject, const std::string& device, std::int64_t n, int per_message) {
    storage::DeviceRecord d;
    d.id = device;
    d.subject = subject;
    d.wrapped_key = core::Bytes(61, 0xAB);
    d.enrolled_at = core::system_clock().now();
    if (auto a = store->registry().add_device(d); !a) die("add_device: " + a.error().to_string());
    const auto pseudonym = privacy::SubjectPseudonym::parse(subject);
    if (!pseudonym) die("bad pseudonym");
    const std::int64_t end = core::to_unix_millis(core::system_clock().now()) / kMinute * kMinute - kMinute;
    const std::int64_t start = end - (n - 1) * kMinute;
    const auto t0 = SteadyClock::now();
    for (std::int64_t i = 0; i < n;) {
      storage::MessageBatch b;
      b.device_id = device;
      b.sequence = ++sequence;
      b.content_hash = "bench-" + std::to_string(sequence);
      b.received_at = core::system_clock().now();
      for (int k = 0; k < per_message && i < n; ++k, ++i) {
        core::Reading r;
        r.code = "8867-4";
        r.value = 55 + static_cast<double>((i * 7) % 50);
        r.unit = "/min";
        r.time = core::from_unix_millis(start + i * kMinute);
        r.device = device;
        r.sequence = sequence;
        b.readings.push_back(privacy::PseudonymousReading::bind(std::move(r), *pseudonym));
      }
      auto out = store->observations().append(std::move(b));
      if (!out || *out != storage::AppendOutcome::kStored) die("append failed");
    }
    return ms_since(t0);
  }

  double compact() {
    const auto t0 = SteadyClock::now();
    if (auto c = store->compact(); !c) die("compact: " + c.error().to_string());
    return ms_since(t0);
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path shared = "../shared";
  bool quick = false;
  std::int64_t readings = -1, year_minutes = -1, export_readings = -1;
  int export_patients = -1, clients = -1, runs = -1;
  double seconds = -1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
      continue;
    }
    if (a == "--help" || a == "-h") return usage("the FHIR API benchmark (issue [7/8])");
    if (i + 1 >= argc) return usage(a + " needs a value");
    const std::string v = argv[++i];
    try {
      if (a == "--shared") shared = v;
      else if (a == "--readings") readings = std::stoll(v);
      else if (a == "--year-minutes") year_minutes = std::stoll(v);
      else if (a == "--export-patients") export_patients = std::stoi(v);
      else if (a == "--export-readings") export_readings = std::stoll(v);
      else if (a == "--clients") clients = std::stoi(v);
      else if (a == "--seconds") seconds = std::stod(v);
      else if (a == "--runs") runs = std::stoi(v);
      else return usage("unknown option " + a);
    } catch (const std::exception&) {
      return usage("bad number for " + a);
    }
  }
  if (readings < 0) readings = quick ? 1000 : 10'000;
  if (year_minutes < 0) year_minutes = quick ? 7 * 1440 : 525'600;
  if (export_patients < 0) export_patients = quick ? 3 : 20;
  if (export_readings < 0) export_readings = quick ? 200 : 2000;
  if (clients < 0) clients = quick ? 2 : 8;
  if (seconds < 0) seconds = quick ? 1 : 10;
  if (runs < 0) runs = quick ? 2 : 5;
  if (readings < 1 || year_minutes < 60 || export_patients < 1 || export_readings < 1 || clients < 1 || clients > 256 ||
      seconds <= 0 || runs < 1)
    return usage("bad parameters");
  std::vector<std::filesystem::path> synthea;
  if (std::error_code ec; std::filesystem::is_directory(shared / "synthea", ec))
    for (const auto& e : std::filesystem::directory_iterator(shared / "synthea"))
      if (e.path().extension() == ".json") synthea.push_back(e.path());
  std::sort(synthea.begin(), synthea.end());
  if (synthea.empty()) return usage("no Synthea records in " + (shared / "synthea").string() + " (--shared DIR)");

  const std::string load_before = loadavg();
  Hub hub;
  hub.open(clients);
  progress("plain HTTP on 127.0.0.1:" + std::to_string(hub.port) + ", work directory " + hub.dir.string());
  hub.register_client("hospital-a", "org-a");
  hub.register_client("hospital-b", "org-b");
  std::string json = "{\"bench\":\"fhir\",\"transport\":\"http\",\"quick\":" + std::string(quick ? "true" : "false");
  auto figure = [&](const std::string& line) {
    std::cout << line << "\n" << std::flush;
  };

  // ---- 1. $everything
  {
    std::string token = hub.token("hospital-a");
    const std::string patient = hub.import_synthea(synthea.front(), token);
    hub.append_minutes(patient, "dev-everything", readings, 1000);
    hub.compact();
    Client c(hub.port);
    std::vector<double> times;
    std::size_t resources = 0;
    for (int r = 0; r < runs; ++r) {
      token = hub.token("hospital-a");
      const auto t0 = SteadyClock::now();
      const auto n = fetch_all(c, "/fhir/Patient/" + patient + "/$everything?_count=1000", token, "$everything");
      times.push_back(ms_since(t0));
      if (r > 0 && n != resources) die("$everything: the runs returned different counts");
      resources = n;
    }
    if (resources < static_cast<std::size_t>(readings) + 300) die("$everything: only " + std::to_string(resources) + " resources");
    const auto s = stats(times);
    const double rate = static_cast<double>(resources) / (s.median / 1000);
    figure("$everything, " + std::to_string(resources) + " resources (" + std::to_string(readings) +
           " home readings + Synthea " + synthea.front().filename().string().substr(0, 15) + "...), _count=1000: " +
           fmt(s.median) + " ms (min-max " + fmt(s.min) + "-" + fmt(s.max) + ", " + std::to_string(runs) + " runs), " +
           fmt(rate, 0) + " resources/s");
    json += ",\"everything\":{\"resources\":" + std::to_string(resources) + ",\"ms\":" + fmt(s.median, 3) +
            ",\"ms_min\":" + fmt(s.min, 3) + ",\"ms_max\":" + fmt(s.max, 3) + ",\"resources_per_s\":" + fmt(rate, 0) + "}";
  }

  // ---- 2. dense view of a year of minute heart rate
  {
    const std::string patient = hub.plain_subject("year", "org-a");
    const double append_ms = hub.append_minutes(patient, "dev-year", year_minutes, 60);
    const double compact_ms = hub.compact();
    figure("append " + std::to_string(year_minutes) + " minute heart rates (ObservationStore::append, messages of 60): " +
           fmt(append_ms, 0) + " ms (" + fmt(static_cast<double>(year_minutes) / (append_ms / 1000), 0) +
           " readings/s), then compact(): " + fmt(compact_ms, 0) + " ms");
    Client c(hub.port);
    std::string token = hub.token("hospital-a");
    const std::string base = "/fhir/Observation?patient=" + patient + "&code=8867-4";
    std::map<std::string, Stats> agg;
    std::map<std::string, std::size_t> buckets, body_bytes;
    for (const std::string size : {"hour", "day"}) {
      std::vector<double> times;
      for (int r = 0; r < runs; ++r) {
        const auto t0 = SteadyClock::now();
        auto a = c.get(base + "&_aggregate=" + size, token);
        auto p = read_page(a, "_aggregate=" + size);
        times.push_back(ms_since(t0));
        body_bytes[size] = a.body.size();
        if (!p.next.empty()) die("_aggregate: a next link");
        buckets[size] = p.entries;
      }
      agg[size] = stats(times);
    }
    const auto t0 = SteadyClock::now();
    const auto raw = fetch_all(c, base + "&_count=1000", token, "raw paging");
    const double raw_ms = ms_since(t0);
    if (raw != static_cast<std::size_t>(year_minutes)) die("raw paging: " + std::to_string(raw) + " readings");
    if (buckets["hour"] < static_cast<std::size_t>(year_minutes / 60)) die("_aggregate=hour: too few buckets");
    for (const std::string size : {"hour", "day"})
      figure("dense view, _aggregate=" + size + " over " + std::to_string(year_minutes) + " readings (" +
             std::to_string(buckets[size]) + " Observations, " + fmt(static_cast<double>(body_bytes[size]) / 1e6, 2) +
             " MB): " + fmt(agg[size].median, 2) + " ms (min-max " +
             fmt(agg[size].min, 2) + "-" + fmt(agg[size].max, 2) + ", " + std::to_string(runs) + " runs)");
    figure("raw paging of the same readings, _count=1000 (" + std::to_string((raw + 999) / 1000) +
           " pages, 1 run): " + fmt(raw_ms, 0) + " ms; raw / hourly " + fmt(raw_ms / agg["hour"].median, 0) +
           "x, raw / daily " + fmt(raw_ms / agg["day"].median, 0) + "x");
    json += ",\"dense\":{\"readings\":" + std::to_string(year_minutes) + ",\"append_ms\":" + fmt(append_ms, 1) +
            ",\"compact_ms\":" + fmt(compact_ms, 1) + ",\"hour_buckets\":" + std::to_string(buckets["hour"]) +
            ",\"hour_ms\":" + fmt(agg["hour"].median, 3) + ",\"hour_ms_min\":" + fmt(agg["hour"].min, 3) +
            ",\"hour_ms_max\":" + fmt(agg["hour"].max, 3) + ",\"day_buckets\":" + std::to_string(buckets["day"]) +
            ",\"day_ms\":" + fmt(agg["day"].median, 3) + ",\"day_ms_min\":" + fmt(agg["day"].min, 3) +
            ",\"day_ms_max\":" + fmt(agg["day"].max, 3) + ",\"raw_ms\":" + fmt(raw_ms, 1) +
            ",\"raw_over_hour\":" + fmt(raw_ms / agg["hour"].median, 1) +
            ",\"raw_over_day\":" + fmt(raw_ms / agg["day"].median, 1) + "}";
  }

  // ---- 3. bulk export of org-b's patients
  std::vector<std::string> cohort;
  {
    std::string token = hub.token("hospital-b");
    const int with_synthea = std::min<int>(export_patients, static_cast<int>(synthea.size()) - 1);
    for (int i = 0; i < export_patients; ++i) {
      const std::string p = i < with_synthea ? hub.import_synthea(synthea[static_cast<std::size_t>(i) + 1], token)
                                             : hub.plain_subject("export-" + std::to_string(i), "org-b");
      hub.append_minutes(p, "dev-export-" + std::to_string(i), export_readings, 60);
      cohort.push_back(p);
    }
    hub.compact();
    progress("bulk export of " + std::to_string(export_patients) + " patients (" + std::to_string(with_synthea) +
             " with a Synthea record)");
    Client c(hub.port);
    token = hub.token("hospital-b");
    const auto t0 = SteadyClock::now();
    auto kicked = c.request(http::verb::get, "/fhir/Patient/$export", token, {{"Prefer", "respond-async"}});
    if (kicked.status != 202 || !kicked.headers.count("Content-Location"))
      die("$export kick-off: HTTP " + std::to_string(kicked.status) + ": " + kicked.body.substr(0, 300));
    const std::string status_url = kicked.headers["Content-Location"];
    const std::string status_target = status_url.substr(status_url.find("/fhir"));
    HttpAnswer done;
    int polls = 0;
    for (;; ++polls) {
      done = c.get(status_target, token);
      if (done.status == 200) break;
      if (done.status != 202) die("$export status: HTTP " + std::to_string(done.status) + ": " + done.body.substr(0, 300));
      if (ms_since(t0) > 600'000) die("$export did not finish in 10 minutes");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    const double job_ms = ms_since(t0);
    rapidjson::Document manifest;
    manifest.Parse(done.body.c_str(), done.body.size());
    if (manifest.HasParseError() || !manifest.HasMember("output")) die("$export: odd manifest");
    std::int64_t resources = 0, bytes = 0;
    for (const auto& o : manifest["output"].GetArray()) {
      const std::string url = o["url"].GetString();
      auto file = c.get(url.substr(url.find("/fhir")), token);
      if (file.status != 200) die("$export file: HTTP " + std::to_string(file.status));
      const auto lines_in_file = std::count(file.body.begin(), file.body.end(), '\n');
      if (o.HasMember("count") && o["count"].GetInt64() != lines_in_file) die("$export file: count differs from the manifest");
      resources += lines_in_file;
      bytes += static_cast<std::int64_t>(file.body.size());
    }
    const double total_ms = ms_since(t0);
    const std::int64_t expected_min = static_cast<std::int64_t>(export_patients) * (export_readings + 1);
    if (resources < expected_min) die("$export: only " + std::to_string(resources) + " resources");
    const double rate = static_cast<double>(resources) / (total_ms / 1000);
    figure("bulk export, Patient/$export of " + std::to_string(export_patients) + " patients (" +
           std::to_string(export_readings) + " readings each, " + std::to_string(with_synthea) +
           " with a Synthea record): " + std::to_string(resources) + " resources, " + fmt(bytes / 1e6, 1) +
           " MB NDJSON in " + fmt(total_ms, 0) + " ms (job " + fmt(job_ms, 0) + " ms, polled every 20 ms; download " +
           fmt(total_ms - job_ms, 0) + " ms): " + fmt(rate, 0) + " resources/s");
    json += ",\"export\":{\"patients\":" + std::to_string(export_patients) + ",\"synthea\":" + std::to_string(with_synthea) +
            ",\"resources\":" + std::to_string(resources) + ",\"bytes\":" + std::to_string(bytes) +
            ",\"job_ms\":" + fmt(job_ms, 1) + ",\"total_ms\":" + fmt(total_ms, 1) + ",\"resources_per_s\":" + fmt(rate, 0) + "}";
  }

  // ---- 4. Observation search under concurrent load, against GET metadata as the reference
  {
    struct Load {
      double rps = 0, p50 = 0, p99 = 0, max = 0, seconds = 0;
      std::size_t requests = 0;
    };
    // `clients` threads, each on its own keep-alive connection, send target(rng) back to back for
    // `seconds` (after one warm-up request each); every answer must pass ok().
    auto run_load = [&](const std::string& what, const std::function<std::string(std::mt19937&)>& target,
                        const std::string& token, const std::function<bool(const HttpAnswer&)>& ok) {
      std::atomic<bool> stop{false}, go{false};
      std::atomic<int> ready{0};
      std::vector<std::vector<double>> latencies(static_cast<std::size_t>(clients));
      std::vector<std::thread> threads;
      for (int k = 0; k < clients; ++k)
        threads.emplace_back([&, k] {
          Client c(hub.port);
          std::mt19937 rng(static_cast<unsigned>(k) * 7919u + 1);
          auto& mine = latencies[static_cast<std::size_t>(k)];
          mine.reserve(200'000);
          if (!ok(c.get(target(rng), token))) die(what + ": a bad answer");
          ++ready;
          while (!go) std::this_thread::yield();
          while (!stop.load(std::memory_order_relaxed)) {
            const std::string t = target(rng);
            const auto t0 = SteadyClock::now();
            auto a = c.get(t, token);
            const double ms = ms_since(t0);
            if (!ok(a)) die(what + ": HTTP " + std::to_string(a.status) + ": " + a.body.substr(0, 200));
            mine.push_back(ms);
          }
        });
      while (ready < clients) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      const auto start = SteadyClock::now();
      go = true;
      std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
      stop = true;
      for (auto& t : threads) t.join();
      Load out;
      out.seconds = ms_since(start) / 1000;
      std::vector<double> all;
      for (auto& v : latencies) all.insert(all.end(), v.begin(), v.end());
      std::sort(all.begin(), all.end());
      if (all.empty()) die(what + ": no request finished");
      auto pct = [&](double p) {
        return all[std::min(all.size() - 1, static_cast<std::size_t>(p * static_cast<double>(all.size())))];
      };
      out.requests = all.size();
      out.rps = static_cast<double>(all.size()) / out.seconds;
      out.p50 = pct(0.50);
      out.p99 = pct(0.99);
      out.max = all.back();
      return out;
    };
    auto load_json = [&](const Load& l) {
      return "{\"clients\":" + std::to_string(clients) + ",\"seconds\":" + fmt(l.seconds, 2) +
             ",\"requests\":" + std::to_string(l.requests) + ",\"requests_per_s\":" + fmt(l.rps, 0) +
             ",\"p50_ms\":" + fmt(l.p50, 3) + ",\"p99_ms\":" + fmt(l.p99, 3) + ",\"max_ms\":" + fmt(l.max, 3) + "}";
    };
    const std::string token = hub.token("hospital-b");
    std::uniform_int_distribution<std::size_t> pick(0, cohort.size() - 1);
    const Load search = run_load(
        "search under load",
        [&](std::mt19937& rng) { return "/fhir/Observation?patient=" + cohort[pick(rng)] + "&code=8867-4&_count=50"; },
        token, [](const HttpAnswer& a) { return a.status == 200 && a.body.find("\"entry\"") != std::string::npos; });
    // The reference, in the same run: the same clients on GET metadata (the CapabilityStatement:
    // no store, no token check, no audit record), the HTTP server's and router's own limit here.
    const Load reference = run_load(
        "metadata under load", [](std::mt19937&) { return std::string("/fhir/metadata"); }, token,
        [](const HttpAnswer& a) { return a.status == 200; });
    auto line = [&](const Load& l) {
      return fmt(l.rps, 0) + " requests/s, p50 " + fmt(l.p50, 2) + " ms, p99 " + fmt(l.p99, 2) + " ms, max " +
             fmt(l.max, 2) + " ms (" + std::to_string(l.requests) + " requests)";
    };
    figure("Observation search under load (" + std::to_string(clients) + " keep-alive clients, " + fmt(seconds, 0) +
           " s, random patient of " + std::to_string(cohort.size()) + ", code=8867-4&_count=50): " + line(search));
    figure("reference, GET metadata with the same clients (no store, no token check, no audit): " + line(reference) +
           "; search / metadata " + fmt(search.rps / reference.rps, 2) + "x");
    json += ",\"search_load\":" + load_json(search) + ",\"metadata_load\":" + load_json(reference) +
            ",\"search_over_metadata\":" + fmt(search.rps / reference.rps, 3);
  }

  hub.close();
  const std::string load_after = loadavg();
  figure("machine: " + std::to_string(std::thread::hardware_concurrency()) + " cores, load average (1 min) " + load_before +
         " before, " + load_after + " after; clients and server share them");
  json += ",\"cores\":" + std::to_string(std::thread::hardware_concurrency()) + ",\"loadavg_before\":" + load_before +
          ",\"loadavg_after\":" + load_after + "}";
  std::cout << json << std::endl;
  return 0;
}
