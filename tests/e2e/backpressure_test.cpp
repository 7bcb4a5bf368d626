// Back-pressure end to end: while storage cannot commit, the hub acknowledges nothing it has
// not committed, says so in its log and at GET /metrics, and once the fault clears every
// reading is stored exactly once.
//
// The hub runs in this process over real parts: Mosquitto (a child process), the SQLite store,
// the Paho subscriber, the pipeline and the HTTP server with /metrics. The store's files go
// through testing::FaultVfs, which makes SQLite itself fail its writes: first with SQLITE_FULL
// after a short write (a full disk), later with SQLITE_IOERR (a failing disk). The gateways are
// real `telehub-gateway` processes, each with its on-disk outbox. (They must be other
// processes: Paho C holds a process-wide lock while the hub's message callback waits for
// storage, which would block a Paho gateway client in this process.)
//
// While a fault lasts, every gateway's receipts must cover only committed sequences (each
// message published but not committed is still in its outbox), the stored rows must not grow,
// the subscriber must report stalled(), /metrics must show telehub_ingest_stalled 1, and the
// log must say "stalled" with SQLite's reason. After it: "resumed", stalled 0, every gateway
// exits 0 (outbox empty), each device has sequences 1..N once, the observations are exactly
// the readings the gateways sent, and PRAGMA integrity_check says ok.
//
// Scale with environment variables (defaults are CI's):
//   TELEHUB_BP_GATEWAYS     gateway processes                     (default 3)
//   TELEHUB_BP_MESSAGES     messages per gateway, 5-6 readings    (default 100)
//   TELEHUB_BP_STALL_MS     how long each fault lasts             (default 2000)
//   TELEHUB_BP_INTERVAL_MS  pause between a gateway's messages    (default 20)
// TELEHUB_BP_KEEP_DIR=DIR copies the hub log, database, broker log and gateway outboxes and logs
// to DIR at the end, for a look afterwards.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "fault_vfs.h"
#include "telehub/broker/embedded_broker.h"
#include "telehub/fhir/http_server.h"
#include "telehub/fhir/router.h"
#include "telehub/gateway/provisioning.h"
#include "telehub/ingest/metrics.h"
#include "telehub/ingest/mqtt_subscriber.h"
#include "telehub/ingest/pipeline.h"
#include "telehub/sqlite/sqlite.h"
#include "test_support.h"

using namespace telehub;
using namespace std::chrono_literals;
using Fault = testing::FaultVfs::Fault;

namespace {

long env_or(const char* name, long fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtol(v, nullptr, 10) : fallback;
}

std::string bin(const std::string& name) { return std::string(TELEHUB_BINARY_DIR) + "/apps/" + name; }

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

// This process's stderr (the hub's log) goes to a file while the object lives.
class CapturedStderr {
 public:
  explicit CapturedStderr(std::filesystem::path file) : file_(std::move(file)) {
    std::fflush(stderr);
    saved_ = ::dup(STDERR_FILENO);
    const int fd = ::open(file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    ::dup2(fd, STDERR_FILENO);
    ::close(fd);
  }
  ~CapturedStderr() {
    std::fflush(stderr);
    ::dup2(saved_, STDERR_FILENO);
    ::close(saved_);
  }
  CapturedStderr(const CapturedStderr&) = delete;
  CapturedStderr& operator=(const CapturedStderr&) = delete;
  std::string text() const { return read_file(file_); }

 private:
  std::filesystem::path file_;
  int saved_ = -1;
};

// One `telehub-gateway` child process and the files it leaves for the test to read.
struct GatewayProcess {
  std::string device_id;
  std::filesystem::path provisioning;
  std::filesystem::path log;
  pid_t pid = -1;
  int exit_status = -1;

  std::filesystem::path outbox() const { return provisioning.string() + ".outbox"; }

  void spawn(long messages, long interval_ms, long seed) {
    const std::string program = bin("telehub-gateway"), file = provisioning.string(), log_file = log.string();
    const std::string count = std::to_string(messages), interval = std::to_string(interval_ms),
                      seed_text = std::to_string(seed);
    const pid_t parent = ::getpid();
    pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {  // only async-signal-safe calls until exec
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(126);
      const int fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (fd < 0 || ::dup2(fd, STDOUT_FILENO) < 0 || ::dup2(fd, STDERR_FILENO) < 0) ::_exit(126);
      // Wait long for receipts: the hub holds them back while it cannot commit.
      ::execl(program.c_str(), program.c_str(), "--provisioning", file.c_str(), "--count", count.c_str(),
              "--interval-ms", interval.c_str(), "--seed", seed_text.c_str(), "--receipt-wait-ms", "120000",
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }

  // Waits for the exit; false on timeout.
  bool wait(std::chrono::milliseconds timeout) {
    if (pid <= 0) return true;
    const bool done = wait_until(
        [&] {
          int status = 0;
          if (::waitpid(pid, &status, WNOHANG) != pid) return false;
          exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
          pid = -1;
          return true;
        },
        timeout);
    return done;
  }

  void kill() {
    if (pid <= 0) return;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    pid = -1;
  }

  // Sequences the gateway reported as published, with the readings each carried. The line is
  // printed after the message was in the outbox and sent.
  std::map<std::uint64_t, int> published() const {
    static const std::regex line(R"(published sequence (\d+) \((\d+) readings\))");
    std::map<std::uint64_t, int> out;
    const std::string text = read_file(log);
    for (auto it = std::sregex_iterator(text.begin(), text.end(), line); it != std::sregex_iterator(); ++it)
      out[std::stoull((*it)[1].str())] = std::stoi((*it)[2].str());
    return out;
  }

  // Sequences still waiting in the outbox for a receipt.
  std::set<std::uint64_t> pending() const {
    std::set<std::uint64_t> out;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(outbox(), ec)) {
      const std::string name = e.path().filename().string();
      if (e.is_regular_file() && name.ends_with(".env")) out.insert(std::stoull(name));
    }
    return out;
  }

  std::size_t rejected() const {
    std::error_code ec;
    auto it = std::filesystem::directory_iterator(outbox() / "rejected", ec);
    return ec ? 0 : static_cast<std::size_t>(std::distance(it, std::filesystem::directory_iterator()));
  }
};

// Read-only queries on the hub's database, on a connection of its own.
class DbReader {
 public:
  explicit DbReader(const std::filesystem::path& path) {
    sqlite::OpenOptions ro;
    ro.read_only = true;
    auto db = sqlite::Database::open(path, ro);
    REQUIRE(db);
    db_.emplace(std::move(*db));
  }
  std::int64_t scalar(const std::string& sql, const std::string& arg = "") {
    auto st = db_->prepare(sql);
    REQUIRE(st);
    if (!arg.empty()) st->bind(1, std::string_view(arg));
    auto row = st->step();
    REQUIRE(row);
    return *row ? st->column_int64(0) : 0;
  }
  std::string text(const std::string& sql) {
    auto st = db_->prepare(sql);
    REQUIRE(st);
    auto row = st->step();
    REQUIRE(row);
    return *row ? st->column_text(0) : "";
  }
  std::set<std::uint64_t> sequences(const std::string& device_id) {
    auto st = db_->prepare("SELECT sequence FROM messages WHERE device_id=?1");
    REQUIRE(st);
    st->bind(1, std::string_view(device_id));
    std::set<std::uint64_t> out;
    for (;;) {
      auto row = st->step();
      REQUIRE(row);
      if (!*row) return out;
      out.insert(static_cast<std::uint64_t>(st->column_int64(0)));
    }
  }

 private:
  std::optional<sqlite::Database> db_;
};

std::size_t occurrences(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++n;
  return n;
}

std::int64_t metric(const std::string& text, const std::string& name) {
  std::smatch m;
  if (!std::regex_search(text, m, std::regex("\n" + name + " (\\d+)\n"))) return -1;
  return std::stoll(m[1].str());
}

}  // namespace

TEST_CASE("disk full, then I/O error: nothing acknowledged that was not committed, nothing lost after",
          "[e2e][mqtt][backpressure]") {
  const long gateways = env_or("TELEHUB_BP_GATEWAYS", 3);
  const long messages = env_or("TELEHUB_BP_MESSAGES", 100);
  const long stall_ms = env_or("TELEHUB_BP_STALL_MS", 2000);
  const long interval_ms = env_or("TELEHUB_BP_INTERVAL_MS", 20);
  REQUIRE(gateways > 0);
  REQUIRE(messages >= 10);
  const long total = gateways * messages;

  testing::TempDir dir;
  struct KeepDir {  // runs after everything below is torn down, before dir is removed
    const testing::TempDir& dir;
    ~KeepDir() {
      std::error_code ec;
      if (const char* to = std::getenv("TELEHUB_BP_KEEP_DIR"); to && *to)
        std::filesystem::copy(dir.path(), to, std::filesystem::copy_options::recursive, ec);
    }
  } keep_dir{dir};
  auto& vfs = testing::FaultVfs::install();
  vfs.watch(dir.path() / "data");
  std::filesystem::create_directories(dir.path() / "data");
  const auto db_path = dir.path() / "data" / "telehub.db";
  CapturedStderr hub_log(dir.path() / "hub.log");

  // The hub.
  broker::BrokerOptions bo;
  bo.dir = dir.path() / "broker";
  auto broker = broker::EmbeddedBroker::start(bo);
  REQUIRE(broker);
  auto opened = storage::open_sqlite_store({db_path}, core::system_clock());
  REQUIRE(opened);
  std::unique_ptr<storage::Store> store = std::move(*opened);
  const privacy::Kek kek = *privacy::Kek::from_hex(std::string(64, 'b'));
  ingest::Pipeline pipeline(*store, core::system_clock(), kek);
  ingest::SubscriberOptions so;
  so.server_uri = (*broker)->uri();
  so.client_id = "telehub-backpressure";
  auto subscriber = ingest::MqttSubscriber::start(so, pipeline);
  REQUIRE(subscriber);
  ingest::MqttSubscriber& sub = **subscriber;
  fhir::RouterOptions ro;
  ro.metrics = [&pipeline, &sub] { return ingest::prometheus_text(pipeline.counters(), {sub.connected(), sub.stalled()}); };
  fhir::Router router(*store, ro);
  fhir::HttpServerOptions ho;
  ho.port = 0;
  auto http = fhir::HttpServer::start(ho, router);
  REQUIRE(http);
  const std::string metrics_cmd = "curl -s http://127.0.0.1:" + std::to_string((*http)->port()) + "/metrics";
  auto get_metrics = [&] {
    auto r = testing::run_command(metrics_cmd);
    REQUIRE(r.exit_code == 0);
    return "\n" + r.output;
  };

  // The gateways: enrolled here, run as `telehub-gateway` processes.
  auto pseudonymiser = std::move(*privacy::Pseudonymiser::from_key(core::Bytes(32, 7)));
  std::vector<GatewayProcess> gws(static_cast<std::size_t>(gateways));
  struct KillLeftovers {
    std::vector<GatewayProcess>& gws;
    ~KillLeftovers() {
      for (auto& g : gws) g.kill();
    }
  } kill_leftovers{gws};
  for (long g = 0; g < gateways; ++g) {
    auto& gw = gws[static_cast<std::size_t>(g)];
    gw.device_id = "dev-bp-" + std::to_string(g);
    storage::DeviceRecord d;
    d.id = gw.device_id;
    d.subject = pseudonymiser->subject("patient-bp-" + std::to_string(g)).str();
    const auto key = *core::random_bytes(32);
    d.wrapped_key = *kek.wrap(key, privacy::device_key_ad(d.id, d.key_id));
    REQUIRE(store->registry().add_device(d));
    gateway::Provisioning p;
    p.device_id = d.id;
    p.key_id = d.key_id;
    p.key = key;
    p.broker_uri = (*broker)->uri();
    p.readings_topic = gateway::readings_topic_for(d.id);
    const auto gw_dir = dir.path() / ("gateway-" + std::to_string(g));
    std::filesystem::create_directories(gw_dir);
    gw.provisioning = gw_dir / "gateway.json";
    gw.log = gw_dir / "gateway.log";
    REQUIRE(gateway::save_provisioning(gw.provisioning, p));
  }

  DbReader db(db_path);
  auto committed = [&] { return db.scalar("SELECT count(*) FROM messages"); };
  // The invariant: whatever a gateway got a receipt for (published, and gone from its outbox)
  // is committed. Outbox first, then the database: a receipt only follows a commit.
  long checks = 0;
  auto check_receipts_cover_only_committed = [&] {
    for (auto& gw : gws) {
      const auto published = gw.published();
      const auto pending = gw.pending();
      const auto stored = db.sequences(gw.device_id);
      for (const auto& [seq, readings] : published) {
        if (pending.count(seq)) continue;
        INFO(gw.device_id << " sequence " << seq << " has a receipt");
        REQUIRE(stored.count(seq) == 1);
      }
    }
    ++checks;
  };

  const auto started = std::chrono::steady_clock::now();
  for (long g = 0; g < gateways; ++g) gws[static_cast<std::size_t>(g)].spawn(messages, interval_ms, g + 1);

  struct Phase {
    Fault fault;
    double start_at;  // fraction of all messages committed before the fault starts
    const char* sqlite_text;
  };
  const Phase phases[] = {{Fault::kDiskFull, 0.2, "database or disk is full"}, {Fault::kIoError, 0.55, "disk I/O error"}};
  std::int64_t max_pending = 0;
  std::size_t phase_number = 0;
  for (const auto& phase : phases) {
    ++phase_number;
    INFO((phase.fault == Fault::kDiskFull ? "disk full" : "I/O error"));
    const auto threshold = static_cast<std::int64_t>(phase.start_at * static_cast<double>(total));
    REQUIRE(wait_until([&] { return committed() >= threshold; }, 60s));
    {
      testing::ScopedFault fault(vfs, phase.fault);
      // Not all messages are committed yet, so one arrives and cannot be committed.
      REQUIRE(wait_until([&] { return sub.stalled(); }, 30s));
      const auto rows = db.scalar("SELECT coalesce(sum(readings), 0) FROM messages");
      const auto messages_before = committed();
      const auto stall_started = std::chrono::steady_clock::now();
      std::int64_t retries_seen = 0;
      while (std::chrono::steady_clock::now() - stall_started < std::chrono::milliseconds(stall_ms)) {
        check_receipts_cover_only_committed();
        CHECK(db.scalar("SELECT coalesce(sum(readings), 0) FROM messages") == rows);
        CHECK(committed() == messages_before);
        CHECK(sub.stalled());
        std::int64_t pending = 0;
        for (auto& gw : gws) pending += static_cast<std::int64_t>(gw.pending().size());
        max_pending = std::max(max_pending, pending);
        CHECK(pending > 0);  // at least the message the hub is holding
        const auto text = get_metrics();
        CHECK(metric(text, "telehub_ingest_stalled") == 1);
        CHECK(metric(text, "telehub_mqtt_connected") == 1);
        retries_seen = metric(text, "telehub_ingest_retries_total");
        std::this_thread::sleep_for(100ms);
      }
      CHECK(retries_seen >= 2);  // it kept trying (50 ms, 100 ms, ...)
      const auto log = hub_log.text();
      // Said once per stall (the pipeline's own line, with SQLite's words, comes with each retry).
      CHECK(occurrences(log, "ERROR ingest: stalled: cannot commit (db_error); holding back acknowledgements") ==
            phase_number);
      CHECK(log.find(phase.sqlite_text) != std::string::npos);
    }  // the fault clears
    REQUIRE(wait_until([&] { return !sub.stalled(); }, 30s));
    CHECK(occurrences(hub_log.text(), "WARN ingest: resumed: storage commits again after") == phase_number);
    CHECK(metric(get_metrics(), "telehub_ingest_stalled") == 0);
  }

  // Every gateway ends with an empty outbox (exit 0): each message has its receipt.
  for (auto& gw : gws) {
    INFO(gw.device_id << ": " << read_file(gw.log));
    CHECK(gw.wait(120s));
    CHECK(gw.exit_status == 0);
  }
  const auto drained = std::chrono::steady_clock::now();
  check_receipts_cover_only_committed();

  long readings_sent = 0;
  for (auto& gw : gws) {
    INFO(gw.device_id);
    const auto published = gw.published();
    CHECK(published.size() == static_cast<std::size_t>(messages));  // every publish went through
    for (const auto& [seq, n] : published) readings_sent += n;
    const auto stored = db.sequences(gw.device_id);
    CHECK(stored.size() == static_cast<std::size_t>(messages));
    CHECK(*stored.begin() == 1);
    CHECK(*stored.rbegin() == static_cast<std::uint64_t>(messages));  // 1..N, each once (UNIQUE)
    CHECK(gw.pending().empty());
    CHECK(gw.rejected() == 0);
  }
  const auto rows = db.scalar("SELECT coalesce(sum(readings), 0) FROM messages");
  CHECK(rows == readings_sent);  // 0 lost, 0 duplicated
  CHECK(committed() == total);
  CHECK(db.scalar("SELECT count(*) FROM quarantine") == 0);
  CHECK(db.text("PRAGMA integrity_check") == "ok");
  const auto c = pipeline.counters();
  CHECK(c.stored_messages == static_cast<std::uint64_t>(total));
  CHECK(c.quarantined == 0);
  // The backlog that built up during the stalls is receipted at once: no receipt was dropped.
  CHECK(occurrences(hub_log.text(), "receipt not sent") == 0);
  // A gateway sends a message again only 30 s after it went out without a receipt. With the
  // default durations all receipts arrive well before that, so every message reached the hub
  // through the broker's queue alone and exactly once: the hub acknowledged (PUBACK) none of
  // them before it was committed, or the broker would have dropped it and it would be missing.
  const auto elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(drained - started).count();
  if (stall_ms <= 5000 && total <= 1000) {
    CHECK(elapsed_ms < 30'000);
    CHECK(c.duplicates == 0);
  }

  WARN("back-pressure: " << readings_sent << " readings in " << total << " messages from " << gateways
                         << " gateway processes; disk full and I/O error " << stall_ms << " ms each; " << c.retries
                         << " retries, up to " << max_pending << " messages held in outboxes, " << checks
                         << " receipt checks; " << c.duplicates << " duplicates; all receipts after " << elapsed_ms
                         << " ms");
  (*subscriber)->stop();
  (*http)->stop();
  store->close();
}
