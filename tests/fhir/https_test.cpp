// fhir::HttpServer with HttpServerOptions::tls: the TLS policy of http_server.h checked from
// outside with the real `openssl s_client` and `curl`. Certificates come from a throwaway
// pki::DevCa (ECDSA P-256) and, for the RSA cases, from the openssl command line.
#include <catch2/catch.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <filesystem>
#include <optional>
#include <string>

#include "telehub/fhir/http_server.h"
#include "telehub/fhir/router.h"
#include "telehub/pki/dev_ca.h"
#include "telehub/storage/store.h"
#include "test_support.h"

using namespace telehub;
namespace fs = std::filesystem;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string quoted(const fs::path& path) { return "'" + path.string() + "'"; }

// A development CA with a server identity (CN and SAN 127.0.0.1) and a client identity.
struct Pki {
  testing::TempDir dir;
  fs::path ca_file;
  pki::IdentityFiles server;
  pki::IdentityFiles client;

  Pki() {
    auto ca = pki::DevCa::open_or_create(dir.path() / "ca");
    REQUIRE(ca);
    ca_file = ca->ca_file();
    auto server_identity = ca->issue("127.0.0.1", pki::CertKind::kServer);
    REQUIRE(server_identity);
    auto server_files = pki::write_identity(dir.path() / "certs", "server", *server_identity);
    REQUIRE(server_files);
    server = *server_files;
    auto client_identity = ca->issue("nurse-station-7", pki::CertKind::kClient);
    REQUIRE(client_identity);
    auto client_files = pki::write_identity(dir.path() / "certs", "client", *client_identity);
    REQUIRE(client_files);
    client = *client_files;
  }
};

// A self-signed RSA certificate for 127.0.0.1 made with the openssl command line.
pki::IdentityFiles rsa_identity(const fs::path& dir, int bits) {
  const std::string name = "rsa" + std::to_string(bits);
  pki::IdentityFiles files{dir / (name + ".pem"), dir / (name + ".key")};
  auto made = testing::run_command("openssl req -x509 -newkey rsa:" + std::to_string(bits) + " -nodes -keyout " +
                                   quoted(files.key) + " -out " + quoted(files.cert) +
                                   " -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -days 2 2>&1");
  INFO(made.output);
  REQUIRE(made.exit_code == 0);
  return files;
}

fhir::TlsOptions tls_options(const pki::IdentityFiles& server) {
  fhir::TlsOptions tls;
  tls.cert_file = server.cert;
  tls.key_file = server.key;
  return tls;
}

// A store and router behind an HttpServer on a free loopback port.
struct Server {
  testing::TempDir dir;
  std::unique_ptr<storage::Store> store;
  std::unique_ptr<fhir::Router> router;
  std::unique_ptr<fhir::HttpServer> server;

  Server() {
    auto s = storage::open_sqlite_store({dir.path() / "telehub.db"}, core::system_clock());
    REQUIRE(s);
    store = std::move(*s);
    fhir::RouterOptions ro;
    ro.base_url = "https://127.0.0.1/fhir";
    router = std::make_unique<fhir::Router>(*store, ro);
  }

  Result<std::unique_ptr<fhir::HttpServer>> try_start(std::optional<fhir::TlsOptions> tls) {
    fhir::HttpServerOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.tls = std::move(tls);
    return fhir::HttpServer::start(options, *router);
  }

  void start(std::optional<fhir::TlsOptions> tls) {
    auto started = try_start(std::move(tls));
    REQUIRE(started);
    server = std::move(*started);
  }

  std::string address() const { return "127.0.0.1:" + std::to_string(server->port()); }
  std::string url(const std::string& path) const { return "https://" + address() + path; }

  // `openssl s_client` with `args`, stdin from /dev/null (or `stdin_script`, a shell command
  // whose output is piped in), bounded by timeout(1).
  testing::CommandResult s_client(const std::string& args, const std::string& stdin_script = "") const {
    const std::string command = "timeout 10 openssl s_client -connect " + address() + " -servername localhost " + args;
    if (stdin_script.empty()) return testing::run_command(command + " </dev/null 2>&1");
    return testing::run_command("(" + stdin_script + ") | " + command + " 2>&1");
  }

  testing::CommandResult curl(const std::string& args, const std::string& path = "/fhir/metadata") const {
    return testing::run_command("curl -sS -i --max-time 10 " + args + " '" + url(path) + "' 2>&1");
  }
};

// Whether s_client completed a handshake with exactly this protocol and cipher.
bool negotiated(const testing::CommandResult& r, const std::string& protocol, const std::string& cipher) {
  return r.exit_code == 0 && contains(r.output, "New, " + protocol + ", Cipher is " + cipher);
}

// Whether s_client's handshake failed (at the server: the client had something to offer).
bool refused(const testing::CommandResult& r) {
  return r.exit_code != 0 && contains(r.output, "Cipher is (NONE)") && !contains(r.output, "no protocols available") &&
         !contains(r.output, "no ciphers available");
}

}  // namespace

TEST_CASE("HTTPS: metadata over TLS with HSTS on every response", "[fhir][tls]") {
  Pki pki;
  Server s;
  s.start(tls_options(pki.server));

  auto metadata = s.curl("--cacert " + quoted(pki.ca_file));
  INFO(metadata.output);
  REQUIRE(metadata.exit_code == 0);
  CHECK(contains(metadata.output, "HTTP/1.1 200"));
  CHECK(contains(metadata.output, "Strict-Transport-Security: max-age=31536000\r\n"));
  CHECK(contains(metadata.output, "\"resourceType\":\"CapabilityStatement\""));

  // Errors carry it too.
  auto missing = s.curl("--cacert " + quoted(pki.ca_file), "/nope");
  INFO(missing.output);
  CHECK(contains(missing.output, "HTTP/1.1 404"));
  CHECK(contains(missing.output, "Strict-Transport-Security: max-age=31536000\r\n"));

  // Without the CA the client does not trust the server (the certificate really is checked).
  auto untrusted = s.curl("");
  CHECK(untrusted.exit_code != 0);
}

TEST_CASE("HTTPS: the HSTS max-age is configurable and plain HTTP sends none", "[fhir][tls]") {
  Pki pki;
  Server tls_server;
  auto tls = tls_options(pki.server);
  tls.hsts_max_age = std::chrono::seconds(600);
  tls_server.start(tls);
  auto reply = tls_server.curl("--cacert " + quoted(pki.ca_file));
  INFO(reply.output);
  CHECK(contains(reply.output, "Strict-Transport-Security: max-age=600\r\n"));

  Server plain;
  plain.start(std::nullopt);
  auto r = testing::run_command("curl -sS -i --max-time 10 'http://" + plain.address() + "/fhir/metadata' 2>&1");
  INFO(r.output);
  CHECK(contains(r.output, "HTTP/1.1 200"));
  CHECK_FALSE(contains(r.output, "Strict-Transport-Security"));
}

TEST_CASE("HTTPS: only TLS 1.2 and 1.3 with the NCSC cipher suites and groups", "[fhir][tls]") {
  Pki pki;
  Server ecdsa;
  ecdsa.start(tls_options(pki.server));
  // The client's own security level would refuse TLS 1.0/1.1 before sending anything; lower it
  // so the server is what refuses.
  const std::string legacy = " -cipher 'DEFAULT:@SECLEVEL=0'";

  SECTION("TLS 1.0 and 1.1 are refused") {
    for (const std::string version : {"-tls1", "-tls1_1"}) {
      auto r = ecdsa.s_client(version + legacy);
      INFO(version << "\n" << r.output);
      CHECK(refused(r));
      CHECK(contains(r.output, "alert protocol version"));
    }
  }

  SECTION("TLS 1.3 with its three AEAD suites, not AES-CCM") {
    auto r = ecdsa.s_client("-tls1_3");
    INFO(r.output);
    CHECK(negotiated(r, "TLSv1.3", "TLS_AES_256_GCM_SHA384"));  // the server's first choice
    for (const std::string suite : {"TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"}) {
      auto one = ecdsa.s_client("-tls1_3 -ciphersuites " + suite);
      INFO(one.output);
      CHECK(negotiated(one, "TLSv1.3", suite));
    }
    auto ccm = ecdsa.s_client("-tls1_3 -ciphersuites TLS_AES_128_CCM_SHA256");
    INFO(ccm.output);
    CHECK(refused(ccm));
  }

  SECTION("TLS 1.2 with ECDHE-ECDSA and AES-GCM or ChaCha20, not CBC") {
    for (const std::string cipher : {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                                     "ECDHE-ECDSA-CHACHA20-POLY1305"}) {
      auto r = ecdsa.s_client("-tls1_2 -cipher " + cipher);
      INFO(r.output);
      CHECK(negotiated(r, "TLSv1.2", cipher));
    }
    for (const std::string cipher : {"ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384"}) {
      auto r = ecdsa.s_client("-tls1_2 -cipher " + cipher);
      INFO(r.output);
      CHECK(refused(r));
    }
  }

  SECTION("key exchange groups X25519, P-256 and P-384 only") {
    for (const std::string group : {"X25519", "P-256", "P-384"}) {
      auto r = ecdsa.s_client("-tls1_3 -groups " + group);
      INFO(r.output);
      CHECK(negotiated(r, "TLSv1.3", "TLS_AES_256_GCM_SHA384"));
    }
    for (const std::string group : {"P-521", "ffdhe2048", "X448"}) {
      auto r = ecdsa.s_client("-tls1_3 -groups " + group);
      INFO(r.output);
      CHECK(refused(r));
    }
  }

  SECTION("with an RSA-3072 certificate: ECDHE-RSA with AEAD only") {
    testing::TempDir dir;
    Server rsa;
    rsa.start(tls_options(rsa_identity(dir.path(), 3072)));
    for (const std::string cipher : {"ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384",
                                     "ECDHE-RSA-CHACHA20-POLY1305"}) {
      auto r = rsa.s_client("-tls1_2 -cipher " + cipher);
      INFO(r.output);
      CHECK(negotiated(r, "TLSv1.2", cipher));
    }
    // CBC, static RSA key exchange (no forward secrecy), finite-field DHE.
    for (const std::string cipher : {"ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES128-SHA256", "AES128-GCM-SHA256",
                                     "AES256-SHA", "DHE-RSA-AES128-GCM-SHA256"}) {
      auto r = rsa.s_client("-tls1_2 -cipher " + cipher);
      INFO(r.output);
      CHECK(refused(r));
    }
    auto r13 = rsa.s_client("-tls1_3");
    INFO(r13.output);
    CHECK(negotiated(r13, "TLSv1.3", "TLS_AES_256_GCM_SHA384"));
  }
}

TEST_CASE("HTTPS: no compression, no renegotiation, no 0-RTT", "[fhir][tls]") {
  Pki pki;
  Server s;
  s.start(tls_options(pki.server));

  auto r12 = s.s_client("-tls1_2");
  INFO(r12.output);
  CHECK(negotiated(r12, "TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384"));
  CHECK(contains(r12.output, "Compression: NONE"));

  // s_client's "R" command starts a client-initiated renegotiation on the established TLS 1.2
  // connection; the server answers with the no_renegotiation alert.
  auto renegotiate = s.s_client("-tls1_2", "sleep 1; printf 'R\\n'; sleep 2");
  INFO(renegotiate.output);
  CHECK(contains(renegotiate.output, "New, TLSv1.2"));
  CHECK(contains(renegotiate.output, "no renegotiation"));

  // The session tickets the server issues allow no early data.
  auto r13 = s.s_client("-tls1_3", "sleep 1");
  INFO(r13.output);
  CHECK(negotiated(r13, "TLSv1.3", "TLS_AES_256_GCM_SHA384"));
  CHECK(contains(r13.output, "Max Early Data: 0"));
  CHECK_FALSE(contains(r13.output, "Max Early Data: 1"));
}

TEST_CASE("HTTPS: plain HTTP to the TLS port gets no FHIR response", "[fhir][tls]") {
  Pki pki;
  Server s;
  s.start(tls_options(pki.server));

  net::io_context ioc;
  tcp::socket socket(ioc);
  socket.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), s.server->port()));
  const std::string request = "GET /fhir/metadata HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  net::write(socket, net::buffer(request));
  std::string reply;
  boost::system::error_code ec;
  net::read(socket, net::dynamic_buffer(reply), ec);  // until the server closes
  CHECK_FALSE(contains(reply, "HTTP/1."));
  CHECK_FALSE(contains(reply, "CapabilityStatement"));

  auto r = testing::run_command("curl -sS -i --max-time 10 'http://" + s.address() + "/fhir/metadata' 2>&1");
  INFO(r.output);
  CHECK_FALSE(contains(r.output, "HTTP/1.1 200"));
  CHECK_FALSE(contains(r.output, "CapabilityStatement"));

  // The server still serves TLS clients afterwards.
  auto ok = s.curl("--cacert " + quoted(pki.ca_file));
  INFO(ok.output);
  CHECK(contains(ok.output, "HTTP/1.1 200"));
}

TEST_CASE("HTTPS: start refuses weak and unusable certificates", "[fhir][tls]") {
  testing::TempDir dir;
  Server s;

  SECTION("RSA-2048") {
    auto started = s.try_start(tls_options(rsa_identity(dir.path(), 2048)));
    REQUIRE_FALSE(started);
    CHECK(started.error().code == core::Code::kInvalidArgument);
    CHECK(started.error().reason == "weak_certificate");
  }
  SECTION("missing files") {
    fhir::TlsOptions tls;
    tls.cert_file = dir.path() / "absent.pem";
    tls.key_file = dir.path() / "absent.key";
    auto started = s.try_start(tls);
    REQUIRE_FALSE(started);
    CHECK(started.error().code == core::Code::kInvalidArgument);
    CHECK(started.error().reason == "tls_certificate");
  }
  SECTION("a key that does not belong to the certificate") {
    Pki pki;
    auto tls = tls_options(pki.server);
    tls.key_file = pki.client.key;
    auto started = s.try_start(tls);
    REQUIRE_FALSE(started);
    CHECK(started.error().reason == "tls_certificate");
  }
  SECTION("an unreadable client CA file") {
    Pki pki;
    auto tls = tls_options(pki.server);
    tls.client_ca_file = dir.path() / "absent-ca.pem";
    auto started = s.try_start(tls);
    REQUIRE_FALSE(started);
    CHECK(started.error().code == core::Code::kInvalidArgument);
    CHECK(started.error().reason == "tls_client_ca");
  }
}

TEST_CASE("HTTPS: mutual TLS requires a client certificate from the configured CA", "[fhir][tls]") {
  Pki pki;
  Server s;
  auto tls = tls_options(pki.server);
  tls.client_ca_file = pki.ca_file;
  s.start(tls);
  const std::string trust = "--cacert " + quoted(pki.ca_file);

  for (const std::string version : {"--tlsv1.3", "--tlsv1.2 --tls-max 1.2"}) {
    INFO(version);
    auto with_cert =
        s.curl(trust + " " + version + " --cert " + quoted(pki.client.cert) + " --key " + quoted(pki.client.key));
    INFO(with_cert.output);
    CHECK(with_cert.exit_code == 0);
    CHECK(contains(with_cert.output, "HTTP/1.1 200"));

    auto without = s.curl(trust + " " + version);
    INFO(without.output);
    CHECK(without.exit_code != 0);
    CHECK_FALSE(contains(without.output, "HTTP/1.1"));
  }

  // A certificate from another CA is refused as well.
  Pki other;
  auto foreign = s.curl(trust + " --cert " + quoted(other.client.cert) + " --key " + quoted(other.client.key));
  INFO(foreign.output);
  CHECK(foreign.exit_code != 0);
  CHECK_FALSE(contains(foreign.output, "HTTP/1.1"));

  // The server asks for certificates of its CA.
  auto names = s.s_client("-tls1_2");
  INFO(names.output);
  CHECK(contains(names.output, "Acceptable client certificate CA names"));
  CHECK(contains(names.output, "telehub development CA"));
}
