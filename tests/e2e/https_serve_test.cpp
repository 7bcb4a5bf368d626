// `telehub serve` serves the FHIR API over HTTPS by default (issue [6/8] item 1): the real
// binary, checked with the real curl and openssl command-line tools.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <thread>
#include <vector>

#include "serve_process.h"
#include "test_support.h"

using namespace telehub;
using namespace std::chrono_literals;

namespace {

// A test KEK, so the commands never touch the real ~/.config/telehub/kek.
const std::string kKekHex(64, 'e');

std::string bin_path() { return std::string(TELEHUB_BINARY_DIR) + "/apps/telehub"; }
std::string telehub_cmd(const std::string& args) { return "TELEHUB_KEK=" + kKekHex + " " + bin_path() + " " + args; }

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// `telehub serve` with this file's test KEK (serve_process.h).
class Serve : public testing::ServeProcess {
 public:
  Serve(const std::filesystem::path& data, const std::filesystem::path& log, const std::vector<std::string>& extra)
      : ServeProcess(bin_path(), kKekHex, data, log, extra) {}
};

// `openssl s_client` against 127.0.0.1:port with the given options; exit code 0 = handshake done.
testing::CommandResult s_client(const std::string& port, const std::string& options) {
  return testing::run_command("openssl s_client -connect 127.0.0.1:" + port + " " + options + " </dev/null 2>&1");
}

}  // namespace

TEST_CASE("telehub serve speaks HTTPS by default, with HSTS and a certificate from the development CA",
          "[e2e][cli][https]") {
  testing::TempDir dir;
  const auto data = dir.path() / "data";
  Serve serve(data, dir.path() / "serve.log", {});
  INFO(serve.log());
  REQUIRE(serve.base().rfind("https://127.0.0.1:", 0) == 0);
  const std::string port = serve.port();
  const std::string ca = (data / "ca" / "ca.pem").string();
  REQUIRE(std::filesystem::exists(data / "tls" / "api.pem"));
  REQUIRE(std::filesystem::exists(data / "tls" / "api.key"));
  CHECK((std::filesystem::status(data / "tls" / "api.key").permissions() & std::filesystem::perms::others_read) ==
        std::filesystem::perms::none);

  // With the development CA as trust anchor: 200, a CapabilityStatement, HSTS.
  auto ok = testing::run_command("curl -s -i --cacert " + ca + " https://127.0.0.1:" + port + "/fhir/metadata");
  INFO(ok.output);
  CHECK(ok.exit_code == 0);
  CHECK(ok.output.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(ok.output.find("\"resourceType\":\"CapabilityStatement\"") != std::string::npos);
  CHECK(std::regex_search(ok.output, std::regex("\r\nstrict-transport-security: max-age=[1-9][0-9]*", std::regex::icase)));
  // The name localhost is in the certificate too.
  auto by_name = testing::run_command("curl -s -o /dev/null -w '%{http_code}' --cacert " + ca + " https://localhost:" +
                                      port + "/fhir/metadata");
  CHECK(by_name.output == "200");
  // Without that trust anchor curl refuses the certificate (60: peer certificate not trusted).
  auto untrusted = testing::run_command("curl -s -o /dev/null --capath /nonexistent --cacert /dev/null https://127.0.0.1:" +
                                        port + "/fhir/metadata");
  CHECK(untrusted.exit_code != 0);
  // Plain HTTP on the same port gets no HTTP response at all.
  auto plain = testing::run_command("curl -s -m 10 -o /dev/null -w '%{http_code}' http://127.0.0.1:" + port +
                                    "/fhir/metadata");
  CHECK(plain.exit_code != 0);
  CHECK(plain.output == "000");

  // The API's and the broker's certificates chain to the same CA file.
  auto verify = testing::run_command("openssl verify -CAfile " + ca + " " + (data / "tls" / "api.pem").string() + " " +
                                     (data / "tls" / "broker.pem").string());
  INFO(verify.output);
  CHECK(verify.exit_code == 0);
  CHECK(verify.output.find("api.pem: OK") != std::string::npos);
  CHECK(verify.output.find("broker.pem: OK") != std::string::npos);
  // And the server presents that certificate (CN telehub-api), verified against the CA.
  auto presented = s_client(port, "-CAfile " + ca + " -verify_return_error -servername localhost");
  INFO(presented.output);
  CHECK(presented.exit_code == 0);
  CHECK(presented.output.find("CN = telehub-api") != std::string::npos);
  CHECK(presented.output.find("Verify return code: 0 (ok)") != std::string::npos);

  // The NCSC policy: TLS 1.2 with an AEAD suite and TLS 1.3 work (so the refusals below are
  // the server's doing), TLS 1.1 and CBC suites do not.
  CHECK(s_client(port, "-tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256").exit_code == 0);
  CHECK(s_client(port, "-tls1_3").exit_code == 0);
  auto tls11 = s_client(port, "-tls1_1 -cipher DEFAULT:@SECLEVEL=0");
  INFO(tls11.output);
  CHECK(tls11.exit_code != 0);
  CHECK(tls11.output.find("Cipher is (NONE)") != std::string::npos);
  CHECK(tls11.output.find("alert protocol version") != std::string::npos);  // the server's refusal
  for (const char* cbc : {"ECDHE-RSA-AES128-SHA", "ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES128-SHA256"}) {
    auto r = s_client(port, std::string("-tls1_2 -cipher ") + cbc);
    INFO(cbc << ": " << r.output);
    CHECK(r.exit_code != 0);
    CHECK(r.output.find("Cipher is (NONE)") != std::string::npos);
    CHECK(r.output.find("alert handshake failure") != std::string::npos);
  }

  CHECK(serve.stop() == 0);
}

TEST_CASE("the API certificate is kept across restarts and issued again when missing or for another host",
          "[e2e][cli][https]") {
  testing::TempDir dir;
  const auto data = dir.path() / "data";
  const auto cert = data / "tls" / "api.pem";
  std::string first, broker_first;
  {
    Serve serve(data, dir.path() / "serve1.log", {});
    INFO(serve.log());
    REQUIRE(!serve.base().empty());
    first = slurp(cert);
    broker_first = slurp(data / "tls" / "broker.pem");
    CHECK(serve.stop() == 0);
  }
  REQUIRE(first.find("BEGIN CERTIFICATE") != std::string::npos);
  {
    Serve serve(data, dir.path() / "serve2.log", {});
    INFO(serve.log());
    REQUIRE(!serve.base().empty());
    CHECK(slurp(cert) == first);                                     // kept
    CHECK(slurp(data / "tls" / "broker.pem") != broker_first);      // the broker's is issued afresh
    CHECK(serve.stop() == 0);
  }
  std::filesystem::remove(cert);
  std::string second;
  {
    Serve serve(data, dir.path() / "serve3.log", {});
    INFO(serve.log());
    REQUIRE(!serve.base().empty());
    second = slurp(cert);
    CHECK(second.find("BEGIN CERTIFICATE") != std::string::npos);
    CHECK(second != first);
    CHECK(serve.stop() == 0);
  }
  // Another loopback address: a new certificate naming it, which curl accepts for that address.
  {
    Serve serve(data, dir.path() / "serve4.log", {"--http-host", "127.0.0.2"});
    INFO(serve.log());
    REQUIRE(serve.base().rfind("https://127.0.0.2:", 0) == 0);
    CHECK(slurp(cert) != second);
    auto san = testing::run_command("openssl x509 -noout -ext subjectAltName -in " + cert.string());
    INFO(san.output);
    CHECK(san.output.find("IP Address:127.0.0.2") != std::string::npos);
    CHECK(san.output.find("IP Address:127.0.0.1") != std::string::npos);
    CHECK(san.output.find("DNS:localhost") != std::string::npos);
    auto r = testing::run_command("curl -s -o /dev/null -w '%{http_code}' --cacert " + (data / "ca" / "ca.pem").string() +
                                  " " + serve.base() + "/metadata");
    CHECK(r.output == "200");
    CHECK(serve.stop() == 0);
  }
}

TEST_CASE("telehub serve with --https-cert, --https-key and --https-client-ca", "[e2e][cli][https]") {
  testing::TempDir dir;
  const auto data = dir.path() / "data";
  // An operator's own certificate: self-signed EC P-256 for 127.0.0.1.
  const auto cert = dir.path() / "own.pem", key = dir.path() / "own.key";
  auto made = testing::run_command("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
                                   "-subj /CN=own-api -addext subjectAltName=IP:127.0.0.1 -keyout " +
                                   key.string() + " -out " + cert.string() + " 2>&1");
  INFO(made.output);
  REQUIRE(made.exit_code == 0);
  // Client certificates from the development CA (which serve creates): the hub's, for instance.
  Serve serve(data, dir.path() / "serve.log",
              {"--https-cert", cert.string(), "--https-key", key.string(), "--https-client-ca",
               (data / "ca" / "ca.pem").string()});
  INFO(serve.log());
  REQUIRE(serve.base().rfind("https://127.0.0.1:", 0) == 0);
  const std::string port = serve.port();
  CHECK_FALSE(std::filesystem::exists(data / "tls" / "api.pem"));  // nothing issued

  auto presented = s_client(port, "-CAfile " + cert.string() + " -verify_return_error -cert " +
                                      (data / "tls" / "hub.pem").string() + " -key " +
                                      (data / "tls" / "hub.key").string());
  INFO(presented.output);
  CHECK(presented.exit_code == 0);
  CHECK(presented.output.find("CN = own-api") != std::string::npos);
  // Client certificates are asked for, naming the development CA.
  CHECK(presented.output.find("Acceptable client certificate CA names") != std::string::npos);
  CHECK(presented.output.find("CN = telehub development CA") != std::string::npos);
  auto ok = testing::run_command("curl -s -o /dev/null -w '%{http_code}' --cacert " + cert.string() + " --cert " +
                                 (data / "tls" / "hub.pem").string() + " --key " + (data / "tls" / "hub.key").string() +
                                 " " + serve.base() + "/metadata");
  CHECK(ok.output == "200");
  // A certificate from another CA is refused in the handshake.
  auto refused = testing::run_command("curl -s -o /dev/null -w '%{http_code}' --cacert " + cert.string() + " --cert " +
                                      cert.string() + " --key " + key.string() + " " + serve.base() + "/metadata");
  CHECK(refused.exit_code != 0);
  CHECK(serve.stop() == 0);
}

TEST_CASE("telehub serve: plain HTTP only on loopback, care-local only with it, HTTPS files in pairs",
          "[e2e][cli][https]") {
  testing::TempDir dir;
  const std::string d = " --data " + (dir.path() / "data").string() + " --http-port 0";
  auto wildcard = testing::run_command(telehub_cmd("serve --insecure-http --http-host 0.0.0.0" + d));
  INFO(wildcard.output);
  CHECK(wildcard.exit_code == 2);
  CHECK(wildcard.output.find("--insecure-http") != std::string::npos);
  CHECK(wildcard.output.find("loopback") != std::string::npos);
  auto remote = testing::run_command(telehub_cmd("serve --insecure-http --http-host hub.example.org" + d));
  CHECK(remote.exit_code == 2);
  auto care = testing::run_command(telehub_cmd("serve --care-local" + d));
  INFO(care.output);
  CHECK(care.exit_code == 2);
  CHECK(care.output.find("--care-local") != std::string::npos);
  CHECK(care.output.find("needs --insecure-http") != std::string::npos);
  auto half = testing::run_command(telehub_cmd("serve --https-cert " + (dir.path() / "c.pem").string() + d));
  INFO(half.output);
  CHECK(half.exit_code == 2);
  CHECK(half.output.find("--https-key") != std::string::npos);
  auto mixed = testing::run_command(telehub_cmd("serve --insecure-http --https-client-ca /dev/null" + d));
  CHECK(mixed.exit_code == 2);
  // Refused before anything is created.
  CHECK_FALSE(std::filesystem::exists(dir.path() / "data"));
  // The help names the new options.
  auto help = testing::run_command(telehub_cmd("serve --help"));
  CHECK(help.exit_code == 0);
  for (const char* flag : {"--https-cert", "--https-key", "--https-client-ca", "--insecure-http", "--care-local"})
    CHECK(help.output.find(flag) != std::string::npos);
}

TEST_CASE("telehub serve --insecure-http on loopback serves plain HTTP and says so in hub.json", "[e2e][cli][https]") {
  testing::TempDir dir;
  const auto data = dir.path() / "data";
  Serve serve(data, dir.path() / "serve.log", {"--insecure-http", "--http-host", "localhost"});
  INFO(serve.log());
  REQUIRE(serve.base().rfind("http://localhost:", 0) == 0);
  auto r = testing::run_command("curl -s -i " + serve.base() + "/metadata");
  CHECK(r.output.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(r.output.find("CapabilityStatement") != std::string::npos);
  // No HSTS over plain HTTP, and no API certificate issued.
  CHECK(std::regex_search(r.output, std::regex("strict-transport-security", std::regex::icase)) == false);
  CHECK_FALSE(std::filesystem::exists(data / "tls" / "api.pem"));
  CHECK(serve.stop() == 0);
}

namespace {

// curl with the development CA as trust anchor: "<status>\n<body>".
testing::CommandResult curl(const std::string& ca, const std::string& args) {
  return testing::run_command("curl -s -g -w '\\n%{http_code}' --cacert " + ca + " " + args);
}
int status_of(const testing::CommandResult& r) {
  const auto nl = r.output.rfind('\n');
  return nl == std::string::npos ? 0 : std::atoi(r.output.c_str() + nl + 1);
}
std::string body_of(const testing::CommandResult& r) {
  const auto nl = r.output.rfind('\n');
  return nl == std::string::npos ? r.output : r.output.substr(0, nl);
}
std::string json_field(const std::string& body, const std::string& name) {
  std::smatch m;
  return std::regex_search(body, m, std::regex("\"" + name + "\":\"([^\"]+)\"")) ? m[1].str() : std::string();
}

}  // namespace

TEST_CASE("a hospital system gets a token from the running hub and reads only its own patients", "[e2e][cli][https][auth]") {
  testing::TempDir dir;
  const auto data = dir.path() / "data";
  Serve serve(data, dir.path() / "serve.log", {"--https-client-ca", (data / "ca" / "ca.pem").string()});
  INFO(serve.log());
  REQUIRE(serve.base().rfind("https://127.0.0.1:", 0) == 0);
  const std::string ca = (data / "ca" / "ca.pem").string();
  const std::string base = serve.base();
  const std::string token_url = base.substr(0, base.size() - 5) + "/auth/token";
  CHECK(serve.log().find("token endpoint " + token_url) != std::string::npos);

  // Two hospital systems register (keys made on their side; the hub gets the JWK Sets).
  for (const std::string client : {"hospital-a", "hospital-b"}) {
    auto keygen = testing::run_command(telehub_cmd("client keygen --out " + (dir.path() / client).string()));
    INFO(keygen.output);
    REQUIRE(keygen.exit_code == 0);
    auto reg = testing::run_command(telehub_cmd(
        "client register --data " + data.string() + " --id " + client + " --jwks " +
        (dir.path() / client / "jwks.json").string() +
        " --scopes 'system/Observation.rs system/Patient.cruds system/Consent.c' --role care --organisation org-" +
        client.substr(9)));
    INFO(reg.output);
    REQUIRE(reg.exit_code == 0);
  }
  auto assertion = [&](const std::string& client) {
    auto a = testing::run_command(telehub_cmd("client assertion --id " + client + " --key " +
                                              (dir.path() / client / "client-key.pem").string() + " --aud " + token_url));
    REQUIRE(a.exit_code == 0);
    std::string jws = a.output;
    while (!jws.empty() && (jws.back() == '\n' || jws.back() == ' ')) jws.pop_back();
    return jws;
  };
  auto token_request = [&](const std::string& jws) {
    return curl(ca, "--data-urlencode grant_type=client_credentials --data-urlencode 'scope=system/Patient.rs system/Patient.c' "
                    "--data-urlencode client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer "
                    "--data-urlencode client_assertion=" + jws + " " + token_url);
  };
  const std::string jws_a = assertion("hospital-a");
  auto issued = token_request(jws_a);
  INFO(issued.output);
  REQUIRE(status_of(issued) == 200);
  const std::string token_a = json_field(body_of(issued), "access_token");
  REQUIRE(token_a.size() == 43);
  CHECK(body_of(issued).find("\"expires_in\":300") != std::string::npos);
  // The same assertion again: a replayed jti.
  auto replay = token_request(jws_a);
  CHECK(status_of(replay) == 401);
  CHECK(body_of(replay).find("\"invalid_client\"") != std::string::npos);
  auto issued_b = token_request(assertion("hospital-b"));
  REQUIRE(status_of(issued_b) == 200);
  const std::string token_b = json_field(body_of(issued_b), "access_token");

  // hospital-a registers its patient, then reads it back identified.
  const std::string patient = R"({"resourceType":"Patient","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"111222333"}],"name":[{"family":"Jansen","given":["Anna"]}],"gender":"female","birthDate":"1951-04-12"})";
  {
    std::ofstream(dir.path() / "patient.json") << patient;
  }
  auto created = curl(ca, "-i -H 'Authorization: Bearer " + token_a + "' -H 'Content-Type: application/fhir+json' --data-binary @" +
                              (dir.path() / "patient.json").string() + " " + base + "/Patient");
  INFO(created.output);
  REQUIRE(status_of(created) == 201);
  std::smatch m;
  REQUIRE(std::regex_search(created.output, m, std::regex("/Patient/([0-9a-f]{32})")));
  const std::string pseudonym = m[1];
  auto read_a = curl(ca, "-H 'Authorization: Bearer " + token_a + "' " + base + "/Patient/" + pseudonym);
  CHECK(status_of(read_a) == 200);
  CHECK(body_of(read_a).find("Jansen") != std::string::npos);
  // hospital-b has no care relation with this patient; nobody without a token gets anything.
  auto read_b = curl(ca, "-H 'Authorization: Bearer " + token_b + "' " + base + "/Patient/" + pseudonym);
  CHECK(status_of(read_b) == 403);
  CHECK(body_of(read_b).find("Jansen") == std::string::npos);
  auto anonymous = curl(ca, "-i " + base + "/Patient/" + pseudonym);
  CHECK(status_of(anonymous) == 401);
  CHECK(std::regex_search(anonymous.output, std::regex("\r\nwww-authenticate: Bearer", std::regex::icase)));
  CHECK(anonymous.output.find("Jansen") == std::string::npos);

  // Mutual TLS: a certificate from the hub's CA naming hospital-a authenticates as hospital-a.
  const auto key = dir.path() / "mtls.key", csr = dir.path() / "mtls.csr", crt = dir.path() / "mtls.pem";
  auto issued_cert = testing::run_command(
      "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=hospital-a -keyout " + key.string() +
      " -out " + csr.string() + " 2>&1 && printf 'extendedKeyUsage=clientAuth\\n' > " + (dir.path() / "ext").string() +
      " && openssl x509 -req -in " + csr.string() + " -CA " + ca + " -CAkey " + (data / "ca" / "ca.key").string() +
      " -CAcreateserial -days 1 -extfile " + (dir.path() / "ext").string() + " -out " + crt.string() + " 2>&1");
  INFO(issued_cert.output);
  REQUIRE(issued_cert.exit_code == 0);
  auto by_certificate = curl(ca, "--cert " + crt.string() + " --key " + key.string() + " " + base + "/Patient/" + pseudonym);
  CHECK(status_of(by_certificate) == 200);
  CHECK(body_of(by_certificate).find("Jansen") != std::string::npos);

  // An operator reads the audit trail: hospital-a's reads and hospital-b's refusal are in it.
  auto op = testing::run_command(telehub_cmd("token create --data " + data.string() +
                                             " --name ops --role operator --scopes system/AuditEvent.rs"));
  REQUIRE(op.exit_code == 0);
  std::string op_token = op.output.substr(0, op.output.find('\n'));
  auto trail = curl(ca, "-H 'Authorization: Bearer " + op_token + "' '" + base + "/AuditEvent?patient=" + pseudonym + "'");
  INFO(trail.output);
  REQUIRE(status_of(trail) == 200);
  CHECK(body_of(trail).find("hospital-a") != std::string::npos);
  CHECK(body_of(trail).find("hospital-b") != std::string::npos);
  // The operator role reads no patient.
  CHECK(status_of(curl(ca, "-H 'Authorization: Bearer " + op_token + "' " + base + "/Patient/" + pseudonym)) == 403);

  const std::string anonymous_body = body_of(anonymous).substr(body_of(anonymous).find("\r\n\r\n") + 4);
  auto validated = testing::fhir_validate({body_of(read_a), body_of(read_b), anonymous_body, body_of(trail)});
  INFO(validated.output);
  CHECK(validated.exit_code == 0);
  CHECK(serve.stop() == 0);
}

TEST_CASE("a FHIR client library from npm reads the CapabilityStatement, pages searches, runs everything and a bulk export",
          "[e2e][cli][https][fhirclient]") {
  testing::TempDir dir;
  const auto data = dir.path() / "data";
  Serve serve(data, dir.path() / "serve.log", {});
  INFO(serve.log());
  REQUIRE(serve.base().rfind("https://127.0.0.1:", 0) == 0);
  const std::string ca = (data / "ca" / "ca.pem").string();
  const std::string base = serve.base();
  const std::string token_url = base.substr(0, base.size() - 5) + "/auth/token";

  // Two days of a simulated patient's home readings, treated by org-npm.
  auto sim = testing::run_command(telehub_cmd("simulate --data " + data.string() +
                                              " --patients 1 --history-hours 48 --duration-s 1 --interval-ms 500 "
                                              "--care-organisation org-npm"));
  INFO(sim.output);
  REQUIRE(sim.exit_code == 0);
  std::smatch m;
  REQUIRE(std::regex_search(sim.output, m, std::regex("Patient/([0-9a-f]{32})")));
  const std::string patient = m[1];

  // The hospital system's key, registration and token.
  REQUIRE(testing::run_command(telehub_cmd("client keygen --out " + (dir.path() / "npm").string())).exit_code == 0);
  REQUIRE(testing::run_command(telehub_cmd("client register --data " + data.string() + " --id npm-client --jwks " +
                                           (dir.path() / "npm" / "jwks.json").string() +
                                           " --scopes 'system/*.rs' --role care "
                                           "--organisation org-npm"))
              .exit_code == 0);
  auto a = testing::run_command(telehub_cmd("client assertion --id npm-client --key " +
                                            (dir.path() / "npm" / "client-key.pem").string() + " --aud " + token_url));
  REQUIRE(a.exit_code == 0);
  std::string jws = a.output.substr(0, a.output.find('\n'));
  auto issued = testing::run_command(
      "curl -s --cacert " + ca + " --data-urlencode grant_type=client_credentials --data-urlencode "
      "'scope=system/*.rs' --data-urlencode "
      "client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer --data-urlencode client_assertion=" +
      jws + " " + token_url);
  std::smatch t;
  REQUIRE(std::regex_search(issued.output, t, std::regex("\"access_token\":\"([^\"]+)\"")));

  // Wait until the hub stored the history (the simulator publishes it before its live second).
  const auto out = dir.path() / "client-out";
  auto run = testing::run_command("NODE_EXTRA_CA_CERTS=" + ca + " bash " + std::string(TELEHUB_SOURCE_DIR) +
                                  "/tests/fhirclient/run.sh " + base + " " + t[1].str() + " " + patient + " " +
                                  out.string() + " metadata,search 2>&1");
  INFO(run.output);
  REQUIRE(run.exit_code == 0);
  std::smatch s;
  REQUIRE(std::regex_search(run.output, s, std::regex("\"search\":\\{\"pages\":([0-9]+),\"entries\":([0-9]+)\\}")));
  CHECK(std::stoi(s[1]) >= 3);     // 48 h of 15-minute history at 50 per page: several pages
  CHECK(std::stoi(s[2]) >= 150);
  // $everything of the simulated patient (Patient, Device, home readings), all pages.
  auto everything = testing::run_command("NODE_EXTRA_CA_CERTS=" + ca + " bash " + std::string(TELEHUB_SOURCE_DIR) +
                                         "/tests/fhirclient/run.sh " + base + " " + t[1].str() + " " + patient + " " +
                                         out.string() + " everything 2>&1");
  INFO(everything.output);
  REQUIRE(everything.exit_code == 0);
  REQUIRE(std::regex_search(everything.output, s, std::regex("\"everything\":\\{\"pages\":([0-9]+),\"entries\":([0-9]+)\\}")));
  CHECK(std::stoi(s[2]) >= 152);  // the readings, the Patient and the Device

  // A hospital's Synthea record, imported for org-npm: its clinical Observations page through
  // Observation search, and $everything holds the whole record.
  auto imported = testing::run_command(telehub_cmd("import --data " + data.string() + " --organisation org-npm " +
                                                   std::string(TELEHUB_SHARED_DIR) +
                                                   "/synthea/Kirsten_Witting_a09212a3-af3e-4194-b1d1-3f0a543222f6.json"));
  INFO(imported.output);
  REQUIRE(imported.exit_code == 0);
  std::smatch ip;
  REQUIRE(std::regex_search(imported.output, ip, std::regex("patient: Patient/([0-9a-f]{32})")));
  auto record = testing::run_command("NODE_EXTRA_CA_CERTS=" + ca + " bash " + std::string(TELEHUB_SOURCE_DIR) +
                                     "/tests/fhirclient/run.sh " + base + " " + t[1].str() + " " + ip[1].str() + " " +
                                     out.string() + " search,everything 2>&1");
  INFO(record.output);
  REQUIRE(record.exit_code == 0);
  REQUIRE(std::regex_search(record.output, s, std::regex("\"search\":\\{\"pages\":([0-9]+),\"entries\":([0-9]+)\\}")));
  CHECK(std::stoi(s[2]) == 179);
  REQUIRE(std::regex_search(record.output, s, std::regex("\"everything\":\\{\"pages\":([0-9]+),\"entries\":([0-9]+)\\}")));
  CHECK(std::stoi(s[2]) >= 300);

  // A bulk export of the client's patients (the simulated one and the imported one):
  // kick-off, status polling, the NDJSON files.
  auto exported = testing::run_command("NODE_EXTRA_CA_CERTS=" + ca + " bash " + std::string(TELEHUB_SOURCE_DIR) +
                                       "/tests/fhirclient/run.sh " + base + " " + t[1].str() + " " + patient + " " +
                                       out.string() + " export 2>&1");
  INFO(exported.output);
  REQUIRE(exported.exit_code == 0);
  REQUIRE(std::regex_search(exported.output, s, std::regex("\"export\":\\{\"files\":([0-9]+),\"resources\":([0-9]+)\\}")));
  CHECK(std::stoi(s[1]) >= 5);    // Patient, Device, Observation, Condition, Encounter, ...
  CHECK(std::stoi(s[2]) >= 450);  // the home readings and the Synthea record

  // Everything the client received passes the validator.
  std::vector<std::string> bodies;
  for (const auto& f : std::filesystem::directory_iterator(out)) bodies.push_back(slurp(f.path()));
  REQUIRE(bodies.size() >= 4);
  auto validated = testing::fhir_validate(bodies);
  INFO(validated.output);
  CHECK(validated.exit_code == 0);
  CHECK(serve.stop() == 0);
}
