// Mosquitto as a child process. POSIX only (fork/exec, prctl).
#include "telehub/core/unique_fd.h"
#include "telehub/broker/embedded_broker.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <sstream>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "telehub/core/log.h"

namespace telehub::broker {
namespace {

using core::Code;
using Clock = std::chrono::steady_clock;

constexpr std::chrono::milliseconds kPollInterval{20};
constexpr std::chrono::seconds kStopGrace{5};
constexpr std::size_t kLogTailLines = 15;

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

using Fd = core::UniqueFd;

struct AddrInfoDeleter {
  void operator()(addrinfo* ai) const { ::freeaddrinfo(ai); }
};
using AddrInfoPtr = std::unique_ptr<addrinfo, AddrInfoDeleter>;

[[nodiscard]] Result<AddrInfoPtr> resolve(const std::string& host, std::uint16_t port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* out = nullptr;
  const std::string service = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &out); rc != 0 || out == nullptr)
    return core::fail(Code::kInvalidArgument, "broker_config",
                      "cannot resolve broker host '" + host + "': " + ::gai_strerror(rc));
  return AddrInfoPtr(out);
}

// Non-blocking connect with a short timeout, so a host that drops SYNs cannot stall the start-up
// poll loop past start_timeout.
bool accepts_connections(const std::string& host, std::uint16_t port) {
  auto addrs = resolve(host, port, false);
  if (!addrs) return false;
  for (addrinfo* ai = addrs->get(); ai != nullptr; ai = ai->ai_next) {
    Fd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol));
    if (fd.get() < 0) continue;
    if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) == 0) return true;
    if (errno != EINPROGRESS) continue;
    pollfd pfd{fd.get(), POLLOUT, 0};
    if (::poll(&pfd, 1, 200) != 1) continue;
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) return true;
  }
  return false;
}

// The last lines of the broker log, for error messages: the broker's own words are the only
// useful diagnosis when it refuses to start (bad option, port in use, permissions).
std::string log_tail(const std::filesystem::path& log_file) {
  std::ifstream in(log_file);
  if (!in) return "(no broker log)";
  std::deque<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(std::move(line));
    if (lines.size() > kLogTailLines) lines.pop_front();
  }
  if (lines.empty()) return "(broker log is empty)";
  std::string out;
  for (const auto& line : lines) out += "\n  " + line;
  return out;
}

bool is_executable(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0;
}

// Resolves the program as execvp would, but before fork, so a missing program is reported as
// broker_exec with a clear message. /usr/sbin is often not on a normal user's PATH, which is
// where Debian installs mosquitto.
[[nodiscard]] Result<std::string> find_program(const std::string& program) {
  if (program.empty()) return core::fail(Code::kInvalidArgument, "broker_exec", "broker program is empty");
  if (program.find('/') != std::string::npos) {
    if (is_executable(program)) return program;
    return core::fail(Code::kFailedPrecondition, "broker_exec",
                      "broker program '" + program + "' does not exist or is not executable");
  }
  std::vector<std::filesystem::path> dirs;
  if (const char* path = std::getenv("PATH")) {
    std::string_view rest(path);
    while (true) {
      auto colon = rest.find(':');
      auto dir = rest.substr(0, colon);
      dirs.emplace_back(dir.empty() ? "." : std::string(dir));
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
  }
  dirs.emplace_back("/usr/sbin");
  dirs.emplace_back("/usr/local/sbin");
  for (const auto& dir : dirs) {
    auto candidate = dir / program;
    if (is_executable(candidate)) return candidate.string();
  }
  return core::fail(Code::kFailedPrecondition, "broker_exec",
                    "broker program '" + program + "' not found on PATH or in /usr/sbin");
}

bool has_line_break(const std::string& s) { return s.find_first_of("\r\n") != std::string::npos; }

bool tls_mode(const BrokerOptions& o) { return !o.ca_file.empty() && !o.cert_file.empty() && !o.key_file.empty(); }

// TLS 1.2 suites: ECDHE (forward secrecy) with AES-GCM or ChaCha20-Poly1305 only; no CBC, no
// static RSA, no DHE. TLS 1.3 has only AEAD suites; this fixes their order and drops AES-CCM.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256";
constexpr const char* kTls13Ciphers = "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256";

// The ACL (mosquitto.conf(5), acl_file): `user` lines grant one identity, `pattern` lines every
// client, with %u replaced by the client's user name (here: its certificate CN).
std::string acl_text(const std::string& hub_identity, const std::vector<std::string>& denied) {
  std::string denials;
  for (const auto& id : denied) denials += "user " + id + "\ntopic deny #\n";
  return "# Written by telehub (EmbeddedBroker); rewritten on every start and by deny_identities().\n"
         "# Denied identities (revoked devices): nothing in, nothing out. Mosquitto applies deny\n"
         "# entries before the grants below.\n" +
         denials +
         "\n"
         "# The hub reads every device's readings and writes every device's receipts.\n"
         "user " + hub_identity + "\n"
         "topic read telehub/v1/devices/+/readings\n"
         "topic write telehub/v1/devices/+/receipts\n"
         "\n"
         "# Each device (certificate CN = device id) writes only its own readings and reads only\n"
         "# its own receipts.\n"
         "pattern write telehub/v1/devices/%u/readings\n"
         "pattern read telehub/v1/devices/%u/receipts\n";
}

bool valid_identity(const std::string& id) {
  return !id.empty() && id.find_first_of(" \t\r\n\v\f+#/%") == std::string::npos;
}

[[nodiscard]] Status check_denied(const std::vector<std::string>& denied, const std::string& hub_identity) {
  for (const auto& id : denied) {
    if (!valid_identity(id))
      return core::fail(Code::kInvalidArgument, "broker_config",
                        "a denied identity must be non-empty without whitespace, '+', '#', '/' or '%'");
    if (id == hub_identity)
      return core::fail(Code::kInvalidArgument, "broker_config", "the hub identity cannot be denied");
  }
  return {};
}

[[nodiscard]] Status check_tls_options(const BrokerOptions& o) {
  const int set = !o.ca_file.empty() + !o.cert_file.empty() + !o.key_file.empty();
  if (set != 0 && set != 3)
    return core::fail(Code::kInvalidArgument, "broker_config", "ca_file, cert_file and key_file must be set together");
  if (has_line_break(o.ca_file.string()) || has_line_break(o.cert_file.string()) || has_line_break(o.key_file.string()))
    return core::fail(Code::kInvalidArgument, "broker_config", "TLS file paths must not contain line breaks");
  if (set == 0) {
    if (o.plaintext_listener_port != 0)
      return core::fail(Code::kInvalidArgument, "broker_config", "plaintext_listener_port needs TLS mode");
    if (!o.denied_identities.empty())
      return core::fail(Code::kInvalidArgument, "broker_config", "denied_identities needs TLS mode");
    return {};
  }
  if (!valid_identity(o.hub_identity))
    return core::fail(Code::kInvalidArgument, "broker_config",
                      "hub_identity must be non-empty without whitespace, '+', '#', '/' or '%'");
  if (auto st = check_denied(o.denied_identities, o.hub_identity); !st) return st;
  for (const auto* f : {&o.ca_file, &o.cert_file, &o.key_file})
    if (::access(f->c_str(), R_OK) != 0)
      return core::fail(Code::kInvalidArgument, "broker_config", "cannot read TLS file " + f->string());
  if (o.plaintext_listener_port != 0 && o.plaintext_listener_port == o.port)
    return core::fail(Code::kInvalidArgument, "broker_config", "plaintext_listener_port must differ from port");
  return {};
}

[[nodiscard]] Status write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.flush();
  if (!out) return core::fail(Code::kUnavailable, "broker_config", "cannot write " + path.string());
  return {};
}

[[nodiscard]] Status write_config(const BrokerOptions& o, std::uint16_t port, std::uint16_t plaintext_port,
                                  const std::filesystem::path& conf, const std::filesystem::path& log_file) {
  // A line break would let a path or host inject further configuration lines.
  if (has_line_break(o.host) || has_line_break(o.dir.string()))
    return core::fail(Code::kInvalidArgument, "broker_config", "host and dir must not contain line breaks");
  if (o.max_queued_messages < 0 || o.autosave_interval_s < 0)
    return core::fail(Code::kInvalidArgument, "broker_config",
                      "max_queued_messages and autosave_interval_s must not be negative");

  std::ostringstream c;
  c << "# Written by telehub (EmbeddedBroker); rewritten on every start.\n";
  if (!tls_mode(o)) {
    c << "per_listener_settings false\n"
      << "listener " << port << ' ' << o.host << "\n"
      // Plain mode: only safe because it listens on loopback; anyone on this machine may
      // connect, publish and subscribe.
      << "allow_anonymous true\n";
  } else {
    const auto acl_file = o.dir / "acl";
    if (auto st = write_text(acl_file, acl_text(o.hub_identity, o.denied_identities)); !st) return st;
    // Per listener, because the optional plaintext listener must not share the TLS listener's
    // authentication (allow_anonymous, acl_file are per listener with this on).
    c << "per_listener_settings true\n"
      << "listener " << port << ' ' << o.host << "\n"
      << "cafile " << o.ca_file.string() << "\n"
      << "certfile " << o.cert_file.string() << "\n"
      << "keyfile " << o.key_file.string() << "\n"
      << "require_certificate true\n"
      << "use_identity_as_username true\n"
      // The client id becomes the certificate identity: a device cannot take over (and so
      // disconnect) another client's session by choosing its client id.
      << "use_username_as_clientid true\n"
      // Minimum version; TLS 1.3 stays allowed.
      << "tls_version tlsv1.2\n"
      << "ciphers " << kTls12Ciphers << "\n"
      << "ciphers_tls1.3 " << kTls13Ciphers << "\n"
      << "allow_anonymous false\n"
      << "acl_file " << acl_file.string() << "\n";
    if (plaintext_port != 0)
      c << "# Plaintext listener, explicitly configured (BrokerOptions::plaintext_listener_port):\n"
        << "# loopback only, no authentication, no ACL.\n"
        << "listener " << plaintext_port << " 127.0.0.1\n"
        << "allow_anonymous true\n";
  }
  // Mosquitto drops to the `mosquitto` user when started as root, which would lose access to
  // options.dir and also clear PR_SET_PDEATHSIG (a credential change resets it). "root" means
  // "do not switch user"; for other users the option is ignored.
  if (::geteuid() == 0) c << "user root\n";
  c << "persistence " << (o.persistence ? "true" : "false") << "\n"
    // Mosquitto joins location and file name by plain concatenation: the trailing slash matters.
    << "persistence_location " << o.dir.string() << "/\n"
    << "autosave_interval " << o.autosave_interval_s << "\n"
    << "max_queued_messages " << o.max_queued_messages << "\n"
    // Mosquitto's default; bounds how many unacknowledged messages sit with one subscriber (a
    // hub instance that dies holds at most this many until its session is resumed).
    << "max_inflight_messages 20\n"
    // QoS 1 publishes wait for PUBACK round trips; Nagle plus delayed ACKs would add ~40 ms each.
    << "set_tcp_nodelay true\n"
    << "log_dest file " << log_file.string() << "\n"
    << "log_type error\n"
    << "log_type warning\n"
    << "log_type notice\n"
    << "log_timestamp_format %Y-%m-%dT%H:%M:%S\n";

  return write_text(conf, c.str());
}

// SIGTERM lets mosquitto write its persistence file; SIGKILL only if it hangs.
void terminate_child(pid_t pid) {
  ::kill(pid, SIGTERM);
  const auto deadline = Clock::now() + kStopGrace;
  while (Clock::now() < deadline) {
    pid_t r = ::waitpid(pid, nullptr, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

// fork + exec. Everything the child needs is prepared before fork: after fork in a process
// that may run other threads (Paho, the HTTP server) only async-signal-safe calls are allowed.
[[nodiscard]] Result<pid_t> spawn(const std::string& program, const std::filesystem::path& conf,
                                  const std::filesystem::path& log_file) {
  std::string arg0 = program, arg1 = "-c", arg2 = conf.string();
  char* argv[] = {arg0.data(), arg1.data(), arg2.data(), nullptr};

  Fd log_fd(::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (log_fd.get() < 0)
    return core::fail(Code::kUnavailable, "broker_config", "cannot open broker log: " + errno_text(errno));
  Fd null_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (null_fd.get() < 0)
    return core::fail(Code::kUnavailable, "broker_exec", "cannot open /dev/null: " + errno_text(errno));
  // exec failure is reported through this pipe; a successful exec closes it (O_CLOEXEC), so the
  // parent reads EOF.
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    return core::fail(Code::kUnavailable, "broker_exec", "pipe failed: " + errno_text(errno));
  Fd err_read(fds[0]), err_write(fds[1]);

  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return core::fail(Code::kUnavailable, "broker_exec", "fork failed: " + errno_text(errno));
  if (pid == 0) {
    auto die = [&](int err) {
      ssize_t ignored = ::write(err_write.get(), &err, sizeof err);
      (void)ignored;
      ::_exit(127);
    };
    // Its own process group keeps a terminal's Ctrl-C (sent to the foreground group) away from
    // the broker, so the hub can drain and stop it in order.
    ::setpgid(0, 0);
    // The broker must not outlive its owner (tests, a crashed hub). Note that the signal fires
    // when the *thread* that forked exits; start() should run on a long-lived thread.
    if (::prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) die(errno);
    if (::getppid() != parent) ::_exit(0);  // owner already gone before prctl took effect
    if (::dup2(null_fd.get(), STDIN_FILENO) < 0 || ::dup2(log_fd.get(), STDOUT_FILENO) < 0 ||
        ::dup2(log_fd.get(), STDERR_FILENO) < 0)
      die(errno);
    // Signals ignored or blocked by the parent stay so across exec; give the broker defaults.
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGTERM, SIG_DFL);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGPIPE, SIG_DFL);
    ::execv(argv[0], argv);
    die(errno);
  }
  ::setpgid(pid, pid);  // also from the parent, so it holds whichever runs first
  err_write.reset();
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(err_read.get(), &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof child_errno)) {
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    return core::fail(Code::kFailedPrecondition, "broker_exec",
                      "cannot execute '" + program + "': " + errno_text(child_errno));
  }
  return pid;
}

enum class WaitOutcome { kListening, kExited, kTimedOut };

// A TLS listener accepts the TCP connection before any handshake, so the probe works for both.
WaitOutcome wait_until_listening(pid_t pid, const std::string& host, std::uint16_t port, std::uint16_t plaintext_port,
                                 std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return WaitOutcome::kExited;
    if (accepts_connections(host, port) && (plaintext_port == 0 || accepts_connections("127.0.0.1", plaintext_port)))
      return WaitOutcome::kListening;
    if (Clock::now() >= deadline) return WaitOutcome::kTimedOut;
    std::this_thread::sleep_for(kPollInterval);
  }
}

// Whether we could bind host:port now. SO_REUSEADDR as mosquitto sets it, so connections of an
// earlier broker lingering in TIME_WAIT do not count as "in use", but a listener does.
bool port_is_free(const std::string& host, std::uint16_t port) {
  auto addrs = resolve(host, port, true);
  if (!addrs) return false;
  for (addrinfo* ai = addrs->get(); ai != nullptr; ai = ai->ai_next) {
    Fd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
    if (fd.get() < 0) continue;
    int on = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd.get(), 1) == 0) return true;
  }
  return false;
}

bool log_says_port_in_use(const std::filesystem::path& log_file) {
  return log_tail(log_file).find("Address already in use") != std::string::npos;
}

struct Launched {
  pid_t pid;
  std::uint16_t port;
};

// Writes the configuration and starts mosquitto on effective.port (0: a free port, chosen again
// a few times if someone else takes it first). `restart`: the same port as before, just freed
// by our own broker; the log is appended to rather than truncated, and a port still in use is
// retried for a while.
[[nodiscard]] Result<Launched> launch(const BrokerOptions& effective, const std::string& program,
                                      std::uint16_t plaintext_port, bool restart) {
  const auto conf = effective.dir / "mosquitto.conf";
  const auto log_file = effective.dir / "mosquitto.log";
  const BrokerOptions& options = effective;
  const int attempts = options.port == 0 ? 3 : restart ? 50 : 1;
  for (int attempt = 1;; ++attempt) {
    std::uint16_t port = options.port;
    if (port == 0) {
      auto free_port = find_free_port(options.host);
      if (!free_port) return tl::unexpected(free_port.error());
      port = *free_port;
    }
    // Without this, a broker that fails to bind would look started: the readiness probe would
    // reach whoever already listens there.
    if (port == plaintext_port || !port_is_free(options.host, port) ||
        (plaintext_port != 0 && restart && !port_is_free("127.0.0.1", plaintext_port))) {
      if (attempt < attempts) {
        if (restart) std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      return core::fail(Code::kUnavailable, "broker_start",
                        "port " + std::to_string(port) + " on " + options.host + " is already in use");
    }
    if (auto st = write_config(effective, port, plaintext_port, conf, log_file); !st) return tl::unexpected(st.error());
    // Truncate so that the tail we report on failure belongs to this start.
    if (!restart) std::ofstream(log_file, std::ios::trunc).close();

    auto pid = spawn(program, conf, log_file);
    if (!pid) return tl::unexpected(pid.error());

    switch (wait_until_listening(*pid, options.host, port, plaintext_port, options.start_timeout)) {
      case WaitOutcome::kListening:
        core::log_debug("broker", "mosquitto pid " + std::to_string(*pid) + " listening on " + options.host +
                                      ":" + std::to_string(port));
        return Launched{*pid, port};
      case WaitOutcome::kExited:
        if (attempt < attempts && log_says_port_in_use(log_file)) continue;
        return core::fail(Code::kUnavailable, "broker_start",
                          "mosquitto exited before listening on port " + std::to_string(port) +
                              "; broker log:" + log_tail(log_file));
      case WaitOutcome::kTimedOut:
        terminate_child(*pid);
        return core::fail(Code::kUnavailable, "broker_start",
                          "mosquitto did not accept connections on port " + std::to_string(port) + " within " +
                              std::to_string(options.start_timeout.count()) + " ms; broker log:" + log_tail(log_file));
    }
  }
}

class MosquittoBroker final : public EmbeddedBroker {
 public:
  // `options`: the effective options (absolute paths, the port in use).
  MosquittoBroker(BrokerOptions options, std::string program, pid_t pid, bool tls, std::uint16_t plaintext_port)
      : options_(std::move(options)),
        program_(std::move(program)),
        pid_(pid),
        tls_(tls),
        plaintext_port_(plaintext_port) {}
  ~MosquittoBroker() override { stop(); }

  std::uint16_t port() const override { return options_.port; }
  const std::string& host() const override { return options_.host; }
  std::string uri() const override {
    // IPv6 literals need brackets in a URI (RFC 3986 section 3.2.2).
    const std::string scheme = tls_ ? "ssl://" : "tcp://";
    const std::string port = std::to_string(options_.port);
    if (options_.host.find(':') != std::string::npos) return scheme + "[" + options_.host + "]:" + port;
    return scheme + options_.host + ":" + port;
  }
  bool tls() const override { return tls_; }
  std::uint16_t plaintext_port() const override { return plaintext_port_; }
  int pid() const override { return pid_; }

  Status deny_identities(const std::vector<std::string>& identities) override {
    if (!tls_) return core::fail(Code::kInvalidArgument, "broker_config", "denied identities need TLS mode");
    if (pid_ <= 0) return core::fail(Code::kUnavailable, "broker_start", "the broker is not running");
    if (auto st = check_denied(identities, options_.hub_identity); !st) return st;
    // A restart, not SIGHUP: Mosquitto 2.0.11's reload leaves the persistent sessions of
    // certificate-identified clients that are offline at that moment without a valid ACL
    // (security_default.c skips them), so their queued messages would be refused or worse.
    // SIGTERM saves every session to disk first; clients reconnect and resume them.
    options_.denied_identities = identities;
    terminate_child(pid_);
    pid_ = 0;
    auto launched = launch(options_, program_, plaintext_port_, /*restart=*/true);
    if (!launched) return tl::unexpected(launched.error());
    pid_ = launched->pid;
    return {};
  }

  void stop() override {
    if (pid_ <= 0) return;
    terminate_child(pid_);
    pid_ = 0;
  }

 private:
  BrokerOptions options_;
  std::string program_;
  pid_t pid_;
  bool tls_;
  std::uint16_t plaintext_port_;
};

}  // namespace

Result<std::unique_ptr<EmbeddedBroker>> EmbeddedBroker::start(const BrokerOptions& options) {
  if (options.dir.empty()) return core::fail(Code::kInvalidArgument, "broker_config", "options.dir is empty");
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) return core::fail(Code::kUnavailable, "broker_config", "cannot create " + options.dir.string() + ": " + ec.message());
  const auto dir = std::filesystem::absolute(options.dir, ec);
  if (ec) return core::fail(Code::kUnavailable, "broker_config", "cannot resolve " + options.dir.string());

  if (auto st = check_tls_options(options); !st) return tl::unexpected(st.error());
  const bool tls = tls_mode(options);
  const std::uint16_t plaintext_port = tls ? options.plaintext_listener_port : 0;
  if (plaintext_port != 0 && !port_is_free("127.0.0.1", plaintext_port))
    return core::fail(Code::kUnavailable, "broker_start",
                      "plaintext port " + std::to_string(plaintext_port) + " on 127.0.0.1 is already in use");

  auto program = find_program(options.program);
  if (!program) return tl::unexpected(program.error());

  BrokerOptions effective = options;
  effective.dir = dir;
  // Mosquitto resolves relative paths against its own working directory, which is ours now but
  // need not stay so; absolute paths keep the configuration self-contained.
  if (tls) {
    for (auto* f : {&effective.ca_file, &effective.cert_file, &effective.key_file}) {
      *f = std::filesystem::absolute(*f, ec);
      if (ec) return core::fail(Code::kUnavailable, "broker_config", "cannot resolve TLS file path");
    }
  }

  auto launched = launch(effective, *program, plaintext_port, /*restart=*/false);
  if (!launched) return tl::unexpected(launched.error());
  effective.port = launched->port;
  return std::unique_ptr<EmbeddedBroker>(new MosquittoBroker(std::move(effective), *program, launched->pid, tls,
                                                              plaintext_port));
}

Result<std::uint16_t> find_free_port(const std::string& host) {
  auto addrs = resolve(host, 0, true);
  if (!addrs) return tl::unexpected(addrs.error());
  int last_errno = 0;
  for (addrinfo* ai = addrs->get(); ai != nullptr; ai = ai->ai_next) {
    Fd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
    if (fd.get() < 0) {
      last_errno = errno;
      continue;
    }
    if (::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
      last_errno = errno;
      continue;
    }
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      last_errno = errno;
      continue;
    }
    if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  }
  return core::fail(Code::kUnavailable, "broker_config",
                    "no free port on " + host + ": " + errno_text(last_errno));
}

}  // namespace telehub::broker
