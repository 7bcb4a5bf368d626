// fhir::HttpServer over loopback: curl as the client for the normal paths, a plain Asio
// socket where the test needs control over the bytes or the connection.
#include <catch2/catch.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <fstream>
#include <thread>

#include "telehub/core/codes.h"
#include "telehub/fhir/http_server.h"
#include "telehub/fhir/router.h"
#include "telehub/storage/store.h"
#include "test_support.h"

using namespace telehub;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

struct Fixture {
  testing::TempDir dir;
  std::unique_ptr<storage::Store> store;
  std::string patient;
  std::unique_ptr<fhir::Router> router;
  std::unique_ptr<fhir::HttpServer> server;
  std::vector<std::string> bodies;

  explicit Fixture(fhir::HttpServerOptions options = {}) {
    auto s = storage::open_sqlite_store({dir.path() / "telehub.db"}, core::system_clock());
    REQUIRE(s);
    store = std::move(*s);
    auto pseudonymiser = std::move(*privacy::Pseudonymiser::from_key(core::Bytes(32, 3)));
    const auto subject = pseudonymiser->subject("patient-http");
    patient = subject.str();
    storage::DeviceRecord d;
    d.id = "dev-http";
    d.subject = patient;
    d.wrapped_key = core::Bytes(61, 1);  // opaque to storage and fhir
    REQUIRE(store->registry().add_device(d));
    storage::MessageBatch b;
    b.device_id = d.id;
    b.sequence = 1;
    b.content_hash = "h1";
    b.received_at = *core::parse_rfc3339("2026-11-28T10:00:00Z");
    for (int i = 0; i < 3; ++i) {
      core::Reading r;
      r.device = d.id;
      r.sequence = 1;
      r.code = std::string(core::loinc::kHeartRate);
      r.value = 60 + i;
      r.unit = "/min";
      r.time = *core::parse_rfc3339("2026-11-28T09:00:00Z") + std::chrono::minutes(i);
      b.readings.push_back(privacy::PseudonymousReading::bind(r, subject));
    }
    REQUIRE(store->observations().append(std::move(b)));

    fhir::RouterOptions ro;
    ro.base_url = "http://fhir.test/fhir";
    router = std::make_unique<fhir::Router>(*store, ro);
    options.host = "127.0.0.1";
    options.port = 0;
    auto started = fhir::HttpServer::start(options, *router);
    REQUIRE(started);
    server = std::move(*started);
    REQUIRE(server->port() != 0);
  }

  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(server->port()) + path; }

  // curl -i: status line and headers, blank line, body.
  struct Reply {
    std::string head;
    std::string body;
  };
  Reply curl(const std::string& args) {
    auto r = testing::run_command("curl -sS -i --max-time 20 " + args);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    const auto split = r.output.find("\r\n\r\n");
    REQUIRE(split != std::string::npos);
    Reply reply{r.output.substr(0, split), r.output.substr(split + 4)};
    bodies.push_back(reply.body);
    return reply;
  }

  void validate_all() {
    auto result = testing::fhir_validate(bodies);
    INFO(result.output);
    REQUIRE(result.exit_code == 0);
  }
};

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Everything the server sends until it closes the connection.
std::string read_all(tcp::socket& socket) {
  std::string out;
  boost::system::error_code ec;
  net::read(socket, net::dynamic_buffer(out), ec);
  return out;
}

}  // namespace

TEST_CASE("HTTP: metadata and search over loopback", "[fhir]") {
  Fixture f;

  auto metadata = f.curl("'" + f.url("/fhir/metadata") + "'");
  CHECK(metadata.head.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(contains(metadata.head, "Content-Type: application/fhir+json; charset=utf-8"));
  CHECK(contains(metadata.body, "\"resourceType\":\"CapabilityStatement\""));

  auto search = f.curl("'" + f.url("/fhir/Observation?patient=Patient/" + f.patient + "&_count=2") + "'");
  CHECK(search.head.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(contains(search.body, "\"type\":\"searchset\""));
  CHECK(contains(search.body, "\"relation\":\"next\""));
  CHECK(contains(search.body, "\"value\":61.0"));
  CHECK_FALSE(contains(search.body, "\"value\":62.0"));

  auto missing = f.curl("'" + f.url("/fhir/Observation") + "'");
  CHECK(missing.head.rfind("HTTP/1.1 400", 0) == 0);
  CHECK(contains(missing.body, "\"code\":\"required\""));

  auto post = f.curl("-X POST --data '{}' '" + f.url("/fhir/Observation") + "'");
  CHECK(post.head.rfind("HTTP/1.1 405", 0) == 0);
  CHECK(contains(post.head, "Allow: GET, HEAD"));

  auto unknown = f.curl("'" + f.url("/nope") + "'");
  CHECK(unknown.head.rfind("HTTP/1.1 404", 0) == 0);

  // HEAD: the headers of GET (Content-Length of the body it would send), no body.
  auto head = testing::run_command("curl -sS -I --max-time 20 '" + f.url("/fhir/metadata") + "'");
  CHECK(head.exit_code == 0);
  INFO(head.output);
  CHECK(head.output.rfind("HTTP/1.1 200", 0) == 0);
  auto get_length = testing::run_command("curl -sS --max-time 20 -o /dev/null -w '%{size_download}' '" + f.url("/fhir/metadata") + "'");
  CHECK(contains(head.output, "Content-Length: " + get_length.output));

  // Keep-alive: curl reuses the connection for the second URL.
  auto reuse = testing::run_command("curl -sS --max-time 20 -o /dev/null -o /dev/null -w '%{num_connects}\\n' '" +
                                    f.url("/fhir/metadata") + "' '" + f.url("/fhir/Patient/" + f.patient) + "'");
  INFO(reuse.output);
  CHECK(reuse.exit_code == 0);
  CHECK(reuse.output == "1\n0\n");

  f.validate_all();
}

TEST_CASE("HTTP: limits on body and header size", "[fhir]") {
  fhir::HttpServerOptions options;
  options.max_body_bytes = 64 * 1024;
  Fixture f(options);
  const auto big = f.dir.path() / "big.json";
  std::ofstream(big) << std::string(2 << 20, 'x');

  // Content-Length over the limit, body sent at once (no Expect: 100-continue).
  auto at_once = f.curl("-X POST -H 'Expect:' -H 'Content-Type: application/fhir+json' --data-binary @'" +
                        big.string() + "' '" + f.url("/fhir/Observation") + "'");
  CHECK(at_once.head.rfind("HTTP/1.1 413", 0) == 0);
  CHECK(contains(at_once.body, "\"code\":\"too-long\""));

  // With Expect: 100-continue, and chunked (the limit is only found mid-body).
  auto expect = f.curl("-X POST -H 'Expect: 100-continue' --data-binary @'" + big.string() + "' '" +
                       f.url("/fhir/Observation") + "'");
  CHECK(expect.head.rfind("HTTP/1.1 413", 0) == 0);
  auto chunked = f.curl("-X POST -H 'Expect:' -H 'Transfer-Encoding: chunked' --data-binary @'" + big.string() + "' '" +
                        f.url("/fhir/Observation") + "'");
  CHECK(chunked.head.rfind("HTTP/1.1 413", 0) == 0);

  // A body under the limit reaches the router (405 for POST).
  auto small = f.curl("-X POST --data '{}' '" + f.url("/fhir/metadata") + "'");
  CHECK(small.head.rfind("HTTP/1.1 405", 0) == 0);

  // Headers over 8 KiB.
  auto header = f.curl("-H 'X-Padding: " + std::string(9000, 'a') + "' '" + f.url("/fhir/metadata") + "'");
  CHECK(header.head.rfind("HTTP/1.1 431", 0) == 0);

  f.validate_all();
}

TEST_CASE("HTTP: malformed requests, bind failure, stop with open connections", "[fhir]") {
  fhir::HttpServerOptions options;
  options.request_timeout = std::chrono::milliseconds(20000);
  options.header_timeout = std::chrono::milliseconds(20000);
  Fixture f(options);
  net::io_context io;

  // Not HTTP: 400 and the connection is closed.
  {
    tcp::socket socket(io);
    socket.connect({net::ip::make_address("127.0.0.1"), f.server->port()});
    net::write(socket, net::buffer(std::string("GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")));
    const auto reply = read_all(socket);
    CHECK(reply.rfind("HTTP/1.1 400", 0) == 0);
    CHECK(contains(reply, "OperationOutcome"));
  }

  // Two requests pipelined on one connection, the second asking to close.
  {
    tcp::socket socket(io);
    socket.connect({net::ip::make_address("127.0.0.1"), f.server->port()});
    net::write(socket, net::buffer(std::string("GET /fhir/metadata HTTP/1.1\r\nHost: x\r\n\r\n"
                                               "GET /fhir/Patient/" + f.patient + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")));
    const auto reply = read_all(socket);
    CHECK(reply.rfind("HTTP/1.1 200", 0) == 0);
    CHECK(contains(reply, "CapabilityStatement"));
    CHECK(contains(reply, "\"resourceType\":\"Patient\""));
  }

  // The port is taken: unavailable/http_bind.
  fhir::HttpServerOptions same;
  same.host = "127.0.0.1";
  same.port = f.server->port();
  auto second = fhir::HttpServer::start(same, *f.router);
  REQUIRE_FALSE(second);
  CHECK(second.error().code == core::Code::kUnavailable);
  CHECK(second.error().reason == "http_bind");

  // stop() closes idle keep-alive connections promptly and is idempotent.
  tcp::socket idle(io);
  idle.connect({net::ip::make_address("127.0.0.1"), f.server->port()});
  tcp::socket half(io);  // a request cut off after the headers started
  half.connect({net::ip::make_address("127.0.0.1"), f.server->port()});
  net::write(half, net::buffer(std::string("GET /fhir/metadata HTTP/1.1\r\nHo")));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto t0 = std::chrono::steady_clock::now();
  f.server->stop();
  f.server->stop();
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(3));
  CHECK(read_all(idle).empty());  // EOF, no bytes
  CHECK(read_all(half).empty());
  boost::system::error_code ec;
  tcp::socket late(io);
  late.connect({net::ip::make_address("127.0.0.1"), same.port}, ec);
  CHECK(ec);  // nobody listens any more
}

TEST_CASE("HTTP: a slow client is cut off by the header timeout", "[fhir]") {
  fhir::HttpServerOptions options;
  options.header_timeout = std::chrono::milliseconds(300);
  Fixture f(options);
  net::io_context io;
  tcp::socket socket(io);
  socket.connect({net::ip::make_address("127.0.0.1"), f.server->port()});
  net::write(socket, net::buffer(std::string("GET /fhir/metadata HTTP/1.1\r\nHo")));
  const auto t0 = std::chrono::steady_clock::now();
  const auto reply = read_all(socket);  // returns when the server closes
  CHECK(reply.empty());
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
  // The server still serves others.
  auto ok = testing::run_command("curl -sS --max-time 20 -o /dev/null -w '%{http_code}' '" +
                                 f.url("/fhir/metadata") + "'");
  CHECK(ok.output == "200");
}
