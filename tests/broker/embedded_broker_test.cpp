// EmbeddedBroker against the real Mosquitto on free loopback ports, with the mosquitto_pub /
// mosquitto_sub command-line clients as independent peers.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <thread>

#include "telehub/broker/embedded_broker.h"
#include "test_support.h"

namespace telehub::broker {
namespace {

using telehub::testing::run_command;
using telehub::testing::TempDir;

bool port_accepts(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

// True when no process with this pid exists any more (kill(2) reports ESRCH; a zombie would
// still exist, so this also proves the child was reaped).
bool process_gone(int pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

std::unique_ptr<EmbeddedBroker> start_broker(const TempDir& dir) {
  BrokerOptions o;
  o.dir = dir.path() / "broker";
  auto b = EmbeddedBroker::start(o);
  INFO((b ? std::string() : b.error().to_string()));
  REQUIRE(b);
  return std::move(*b);
}

std::string cli_target(const EmbeddedBroker& b) { return " -h 127.0.0.1 -p " + std::to_string(b.port()) + " "; }

}  // namespace

TEST_CASE("find_free_port returns a bindable loopback port", "[broker]") {
  auto port = find_free_port();
  REQUIRE(port);
  CHECK(*port != 0);
  CHECK(*port != 1883);
  CHECK_FALSE(port_accepts(*port));
}

TEST_CASE("broker starts on a free loopback port and carries messages", "[broker]") {
  TempDir dir;
  auto b = start_broker(dir);
  CHECK(b->port() != 0);
  CHECK(b->port() != 1883);
  CHECK(b->host() == "127.0.0.1");
  CHECK(b->uri() == "tcp://127.0.0.1:" + std::to_string(b->port()));
  CHECK(b->pid() > 0);
  CHECK(port_accepts(b->port()));

  std::ifstream conf(dir.path() / "broker" / "mosquitto.conf");
  std::string text((std::istreambuf_iterator<char>(conf)), std::istreambuf_iterator<char>());
  CHECK_THAT(text, Catch::Contains("listener " + std::to_string(b->port()) + " 127.0.0.1"));
  CHECK_THAT(text, Catch::Contains("persistence true"));
  CHECK_THAT(text, Catch::Contains("max_queued_messages 0"));

  SECTION("retained round trip") {
    auto pub = run_command("mosquitto_pub" + cli_target(*b) + "-q 1 -r -t telehub/test/retained -m hello-retained");
    REQUIRE(pub.exit_code == 0);
    auto sub = run_command("mosquitto_sub" + cli_target(*b) + "-q 1 -t telehub/test/retained -C 1 -W 10");
    CHECK(sub.exit_code == 0);
    CHECK(sub.output == "hello-retained\n");
  }

  SECTION("QoS 1 messages are queued for a durable session while it is offline") {
    // -c: clean session off, so the broker queues for the client id while it is away.
    auto reg = run_command("mosquitto_sub" + cli_target(*b) + "-V mqttv5 -c -x 600 -i telehub-test-sub -q 1 -t telehub/test/q -E");
    REQUIRE(reg.exit_code == 0);
    for (const char* m : {"one", "two"})
      REQUIRE(run_command("mosquitto_pub" + cli_target(*b) + "-V mqttv5 -q 1 -t telehub/test/q -m " + m).exit_code == 0);
    auto sub = run_command("mosquitto_sub" + cli_target(*b) + "-V mqttv5 -c -x 600 -i telehub-test-sub -q 1 -t telehub/test/q -C 2 -W 10");
    CHECK(sub.exit_code == 0);
    CHECK(sub.output == "one\ntwo\n");
  }
}

TEST_CASE("stop() closes the port, reaps the process and saves the queue", "[broker]") {
  TempDir dir;
  auto b = start_broker(dir);
  const auto port = b->port();
  const int pid = b->pid();
  REQUIRE(run_command("mosquitto_pub" + cli_target(*b) + "-q 1 -r -t telehub/test/keep -m kept").exit_code == 0);

  b->stop();
  CHECK(b->pid() == 0);
  CHECK_FALSE(port_accepts(port));
  CHECK(process_gone(pid));
  CHECK(std::filesystem::exists(dir.path() / "broker" / "mosquitto.db"));
  b->stop();  // idempotent

  SECTION("a new broker on the same directory and port has the persisted messages") {
    BrokerOptions o;
    o.dir = dir.path() / "broker";
    o.port = port;
    auto again = EmbeddedBroker::start(o);
    INFO((again ? std::string() : again.error().to_string()));
    REQUIRE(again);
    auto sub = run_command("mosquitto_sub" + cli_target(**again) + "-t telehub/test/keep -C 1 -W 10");
    CHECK(sub.output == "kept\n");
  }
}

TEST_CASE("the destructor stops the broker", "[broker]") {
  TempDir dir;
  int pid = 0;
  std::uint16_t port = 0;
  {
    auto b = start_broker(dir);
    pid = b->pid();
    port = b->port();
  }
  CHECK(process_gone(pid));
  CHECK_FALSE(port_accepts(port));
}

TEST_CASE("two brokers run side by side on different ports", "[broker]") {
  TempDir d1, d2;
  auto b1 = start_broker(d1);
  auto b2 = start_broker(d2);
  CHECK(b1->port() != b2->port());
  CHECK(b1->pid() != b2->pid());
  CHECK(port_accepts(b1->port()));
  CHECK(port_accepts(b2->port()));
}

TEST_CASE("a broker dies with the process that started it", "[broker]") {
  TempDir dir;
  int pipefd[2];
  REQUIRE(::pipe(pipefd) == 0);
  // The forked owner starts a broker and exits without stopping it.
  pid_t owner = ::fork();
  REQUIRE(owner >= 0);
  if (owner == 0) {
    ::close(pipefd[0]);
    BrokerOptions o;
    o.dir = dir.path() / "orphan";
    auto b = EmbeddedBroker::start(o);
    int info[2] = {b ? (*b)->pid() : -1, b ? (*b)->port() : 0};
    ssize_t n = ::write(pipefd[1], info, sizeof info);
    ::_exit(n == sizeof info ? 0 : 1);  // no destructors: the broker is left running
  }
  ::close(pipefd[1]);
  int info[2] = {0, 0};
  REQUIRE(::read(pipefd[0], info, sizeof info) == static_cast<ssize_t>(sizeof info));
  ::close(pipefd[0]);
  int status = 0;
  REQUIRE(::waitpid(owner, &status, 0) == owner);
  REQUIRE(info[0] > 0);
  // The broker was the owner's child; once orphaned, init (or a subreaper) reaps it.
  bool gone = false;
  for (int i = 0; i < 250 && !gone; ++i) {
    gone = !port_accepts(static_cast<std::uint16_t>(info[1]));
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(gone);
  if (!gone) ::kill(info[0], SIGKILL);
}

TEST_CASE("start failures are reported with a reason", "[broker]") {
  TempDir dir;
  BrokerOptions o;
  o.dir = dir.path() / "broker";

  SECTION("missing program") {
    o.program = (dir.path() / "no-such-mosquitto").string();
    auto b = EmbeddedBroker::start(o);
    REQUIRE_FALSE(b);
    CHECK(b.error().reason == "broker_exec");
  }
  SECTION("program not on PATH") {
    o.program = "telehub-no-such-broker-program";
    auto b = EmbeddedBroker::start(o);
    REQUIRE_FALSE(b);
    CHECK(b.error().reason == "broker_exec");
  }
  SECTION("program exits at once") {
    o.program = "/bin/false";
    auto b = EmbeddedBroker::start(o);
    REQUIRE_FALSE(b);
    CHECK(b.error().reason == "broker_start");
    CHECK(b.error().code == core::Code::kUnavailable);
  }
  SECTION("program fails at start-up: its output is in the message") {
    auto script = dir.path() / "failing.sh";
    std::ofstream(script) << "#!/bin/sh\necho 'Error: Unknown configuration variable' >&2\nexit 3\n";
    std::filesystem::permissions(script, std::filesystem::perms::owner_all);
    o.program = script.string();
    auto b = EmbeddedBroker::start(o);
    REQUIRE_FALSE(b);
    CHECK(b.error().reason == "broker_start");
    CHECK_THAT(b.error().message, Catch::Contains("Error: Unknown configuration variable"));
  }
  SECTION("unresolvable host") {
    o.host = "256.256.256.256";
    auto b = EmbeddedBroker::start(o);
    REQUIRE_FALSE(b);
    CHECK(b.error().reason == "broker_config");
  }
  SECTION("program never listens: timeout, and the child is not left behind") {
    auto script = dir.path() / "silent.sh";
    auto pid_file = dir.path() / "silent.pid";
    std::ofstream(script) << "#!/bin/sh\necho $$ > '" << pid_file.string() << "'\necho 'silent broker here'\nexec sleep 30\n";
    std::filesystem::permissions(script, std::filesystem::perms::owner_all);
    o.program = script.string();
    o.start_timeout = std::chrono::milliseconds(300);
    const auto t0 = std::chrono::steady_clock::now();
    auto b = EmbeddedBroker::start(o);
    REQUIRE_FALSE(b);
    CHECK(b.error().reason == "broker_start");
    CHECK_THAT(b.error().message, Catch::Contains("silent broker here"));
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(4));
    int pid = 0;
    std::ifstream(pid_file) >> pid;
    REQUIRE(pid > 0);
    CHECK(process_gone(pid));
  }
  SECTION("empty dir") {
    o.dir.clear();
    auto b = EmbeddedBroker::start(o);
    REQUIRE_FALSE(b);
    CHECK(b.error().reason == "broker_config");
  }
}

TEST_CASE("a port that is already taken is refused, not mistaken for our broker", "[broker]") {
  TempDir dir;
  BrokerOptions o;
  o.dir = dir.path() / "broker";
  auto first = EmbeddedBroker::start(o);
  REQUIRE(first);
  // Same fixed port again: the readiness probe must not take the first broker for the second.
  o.dir = dir.path() / "second";
  o.port = (*first)->port();
  auto second = EmbeddedBroker::start(o);
  REQUIRE_FALSE(second);
  CHECK(second.error().reason == "broker_start");
  CHECK_THAT(second.error().message, Catch::Contains("in use"));
}

}  // namespace telehub::broker
