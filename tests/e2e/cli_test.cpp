// The real `telehub` and `telehub-gateway` binaries, as the README and the demo use them.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "test_support.h"

using namespace telehub;
using namespace std::chrono_literals;

namespace {

// A test KEK, so the commands never touch the real ~/.config/telehub/kek.
const std::string kKekHex(64, 'b');

// The binary, run with TELEHUB_KEK set (a shell prefix for run_command).
std::string bin(const std::string& name) {
  return "TELEHUB_KEK=" + kKekHex + " " + std::string(TELEHUB_BINARY_DIR) + "/apps/" + name;
}
std::string bin_path(const std::string& name) { return std::string(TELEHUB_BINARY_DIR) + "/apps/" + name; }

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Starts `telehub serve` in the background; returns its pid. Development mode (plain HTTP on
// loopback, token-less clients in the care role), as the demo runs it: these tests read
// Observations with a bare curl. HTTPS, the default, is tested in https_serve_test.cpp.
pid_t spawn_serve(const std::filesystem::path& data, const std::filesystem::path& log) {
  pid_t pid = fork();
  if (pid == 0) {
    std::freopen(log.c_str(), "w", stdout);
    std::freopen(log.c_str(), "a", stderr);
    ::setenv("TELEHUB_KEK", kKekHex.c_str(), 1);
    std::string b = bin_path("telehub"), d = data.string();
    execl(b.c_str(), b.c_str(), "serve", "--data", d.c_str(), "--http-port", "0", "--insecure-http", "--care-local",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("telehub CLI: usage errors are clear and exit non-zero", "[e2e][cli]") {
  testing::TempDir dir;
  auto no_args = testing::run_command(bin("telehub"));
  CHECK(no_args.exit_code == 2);
  CHECK(no_args.output.find("usage: telehub") != std::string::npos);
  auto unknown = testing::run_command(bin("telehub") + " frobnicate");
  CHECK(unknown.exit_code == 2);
  CHECK(unknown.output.find("unknown command 'frobnicate'") != std::string::npos);
  auto no_subject = testing::run_command(bin("telehub") + " device enroll --data " + dir.path().string());
  CHECK(no_subject.exit_code == 2);
  CHECK(no_subject.output.find("needs --subject") != std::string::npos);
  auto bad_flag = testing::run_command(bin("telehub") + " serve --http-prot 9");
  CHECK(bad_flag.exit_code == 2);
  CHECK(bad_flag.output.find("unknown option --http-prot") != std::string::npos);
  auto no_broker = testing::run_command(bin("telehub") + " device enroll --subject p1 --data " + dir.path().string());
  CHECK(no_broker.exit_code == 2);
  CHECK(no_broker.output.find("no broker address known") != std::string::npos);
  auto bad_port = testing::run_command(bin("telehub") + " serve --http-port 70000 --data " + dir.path().string());
  CHECK(bad_port.exit_code == 2);
  CHECK(bad_port.output.find("--http-port must be") != std::string::npos);
  auto bad_prov = testing::run_command(bin("telehub-gateway") + " --provisioning " + dir.path().string() + "/none.json");
  CHECK(bad_prov.exit_code == 1);
}

TEST_CASE("telehub serve + device enroll + telehub-gateway: readings reach the FHIR API and SIGTERM stops cleanly",
          "[e2e][cli]") {
  testing::TempDir dir;
  const auto data = dir.path() / "data";
  const auto log = dir.path() / "serve.log";
  pid_t serve = spawn_serve(data, log);
  REQUIRE(serve > 0);

  // serve writes hub.json (broker and API addresses) once it is up.
  std::string hub;
  for (int i = 0; i < 300 && hub.find("fhir") == std::string::npos; ++i) {
    std::this_thread::sleep_for(50ms);
    hub = slurp(data / "hub.json");
  }
  INFO(slurp(log));
  REQUIRE(hub.find("\"fhir\"") != std::string::npos);
  std::smatch m;
  REQUIRE(std::regex_search(hub, m, std::regex("\"fhir\":\"([^\"]+)\"")));
  const std::string base = m[1];
  CHECK(base.rfind("http://127.0.0.1:", 0) == 0);  // --insecure-http
  // The embedded broker speaks only TLS with client certificates.
  CHECK(hub.find("\"broker\":\"ssl://127.0.0.1:") != std::string::npos);
  const std::string conf = slurp(data / "broker" / "mosquitto.conf");
  CHECK(conf.find("require_certificate true") != std::string::npos);
  CHECK(conf.find("allow_anonymous true") == std::string::npos);

  auto enrol = testing::run_command(bin("telehub") + " device enroll --subject patient-cli --data " + data.string());
  INFO(enrol.output);
  REQUIRE(enrol.exit_code == 0);
  REQUIRE(std::regex_search(enrol.output, m, std::regex("Patient/([0-9a-f]{32})")));
  const std::string patient = m[1];
  REQUIRE(std::regex_search(enrol.output, m, std::regex("provisioning: (\\S+)")));
  const std::string provisioning = m[1];
  CHECK(enrol.output.find("patient-cli") == std::string::npos);  // only the pseudonym is shown
  // The provisioning file carries the device's certificate (CN = device id) and the CA.
  const std::string prov = slurp(provisioning);
  CHECK(prov.find("\"tls\"") != std::string::npos);
  CHECK(prov.find("BEGIN CERTIFICATE") != std::string::npos);

  auto gw = testing::run_command(bin("telehub-gateway") + " --provisioning " + provisioning +
                                 " --count 3 --interval-ms 10");
  INFO(gw.output);
  REQUIRE(gw.exit_code == 0);
  CHECK(gw.output.find("published sequence 3") != std::string::npos);

  std::string bundle;
  for (int i = 0; i < 200 && count_of(bundle, "\"resourceType\":\"Observation\"") < 3; ++i) {
    std::this_thread::sleep_for(50ms);
    bundle = testing::run_command("curl -s -g '" + base + "/Observation?patient=" + patient + "&code=8867-4'").output;
  }
  CHECK(count_of(bundle, "\"resourceType\":\"Observation\"") == 3);
  auto validated = testing::fhir_validate({bundle});
  INFO(validated.output);
  CHECK(validated.exit_code == 0);

  REQUIRE(kill(serve, SIGTERM) == 0);
  int status = 0;
  REQUIRE(waitpid(serve, &status, 0) == serve);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  const std::string out = slurp(log);
  CHECK(out.find("stopped cleanly") != std::string::npos);
  // The embedded broker is gone with the hub.
  // ("[m]" keeps the pattern from matching the shell that runs pgrep.)
  CHECK(testing::run_command("pgrep -f '[m]osquitto.*" + (data / "broker").string() + "'").exit_code != 0);
}

namespace {

// serve's hub.json, once it has written the FHIR base; empty on timeout.
std::string wait_for_hub(const std::filesystem::path& data) {
  std::string hub;
  for (int i = 0; i < 300 && hub.find("fhir") == std::string::npos; ++i) {
    std::this_thread::sleep_for(50ms);
    hub = slurp(data / "hub.json");
  }
  return hub;
}

std::size_t heart_rates(const std::string& base, const std::string& patient) {
  auto r = testing::run_command("curl -s -g '" + base + "/Observation?patient=" + patient + "&code=8867-4&_count=100'");
  return count_of(r.output, "\"resourceType\":\"Observation\"");
}

}  // namespace

TEST_CASE("a device revoked while the hub runs is refused by the broker, others carry on", "[e2e][cli][tls]") {
  testing::TempDir dir;
  const auto data = dir.path() / "data";
  const auto log = dir.path() / "serve.log";
  pid_t serve = spawn_serve(data, log);
  REQUIRE(serve > 0);
  const std::string hub = wait_for_hub(data);
  INFO(slurp(log));
  std::smatch m;
  REQUIRE(std::regex_search(hub, m, std::regex("\"fhir\":\"([^\"]+)\"")));
  const std::string base = m[1];

  struct Enrolled {
    std::string patient, device, provisioning;
  };
  auto enrol = [&](const std::string& subject) {
    auto r = testing::run_command(bin("telehub") + " device enroll --subject " + subject + " --data " + data.string() +
                                  " --out " + (dir.path() / (subject + ".json")).string());
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    Enrolled e;
    std::smatch mm;
    REQUIRE(std::regex_search(r.output, mm, std::regex("Patient/([0-9a-f]{32})")));
    e.patient = mm[1];
    REQUIRE(std::regex_search(r.output, mm, std::regex("device: +(dev-[0-9a-f]+)")));
    e.device = mm[1];
    e.provisioning = (dir.path() / (subject + ".json")).string();
    return e;
  };
  const Enrolled a = enrol("patient-revoked");
  const Enrolled b = enrol("patient-kept");
  auto send = [&](const Enrolled& e, int rounds, int wait_ms) {
    return testing::run_command(bin("telehub-gateway") + " --provisioning " + e.provisioning + " --count " +
                                std::to_string(rounds) + " --interval-ms 10 --receipt-wait-ms " +
                                std::to_string(wait_ms) + " 2>&1");
  };
  auto first = send(a, 2, 15000);
  INFO(first.output);
  REQUIRE(first.exit_code == 0);
  for (int i = 0; i < 100 && heart_rates(base, a.patient) < 2; ++i) std::this_thread::sleep_for(50ms);
  REQUIRE(heart_rates(base, a.patient) == 2);

  auto revoke = testing::run_command(bin("telehub") + " device revoke --device " + a.device + " --data " + data.string());
  INFO(revoke.output);
  REQUIRE(revoke.exit_code == 0);
  // serve notices within about a second and restarts its broker with the device refused; it
  // logs this line once the broker is back.
  std::string out;
  for (int i = 0; i < 100 && out.find("refusing revoked device(s) " + a.device) == std::string::npos; ++i) {
    std::this_thread::sleep_for(100ms);
    out = slurp(log);
  }
  REQUIRE(out.find("refusing revoked device(s) " + a.device) != std::string::npos);
  CHECK(slurp(data / "broker" / "acl").find("user " + a.device + "\ntopic deny #\n") != std::string::npos);

  // The revoked device still holds a valid certificate and key, and tries again: the broker
  // drops its readings (they do not even reach the hub's quarantine) and it gets no receipts.
  auto refused = send(a, 2, 3000);
  INFO(refused.output);
  CHECK(refused.exit_code != 0);
  CHECK(refused.output.find("Not authorized") != std::string::npos);
  // The other device carries on over the restarted broker.
  auto kept = send(b, 2, 15000);
  INFO(kept.output);
  CHECK(kept.exit_code == 0);
  for (int i = 0; i < 100 && heart_rates(base, b.patient) < 2; ++i) std::this_thread::sleep_for(50ms);
  CHECK(heart_rates(base, b.patient) == 2);
  CHECK(heart_rates(base, a.patient) == 2);
  auto quarantined = testing::run_command(bin("telehub") + " quarantine list --data " + data.string());
  INFO(quarantined.output);
  CHECK(quarantined.output.find(a.device) == std::string::npos);

  REQUIRE(kill(serve, SIGTERM) == 0);
  int status = 0;
  REQUIRE(waitpid(serve, &status, 0) == serve);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
