// The HTTP behaviour of the FHIR API (http://hl7.org/fhir/R4/http.html, docs/api.md "HTTP
// behaviour"): _format and Accept (406), _pretty, ETag / If-None-Match through
// fhir::Router::handle over a real SQLite store, negotiate()'s query rewriting directly, and
// gzip through a real HttpServer on loopback with the real curl and gzip.
#include <catch2/catch.hpp>

#include <rapidjson/document.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "../../fhir/src/representation.h"
#include "telehub/core/codes.h"
#include "telehub/fhir/http_server.h"
#include "telehub/fhir/router.h"
#include "telehub/storage/store.h"
#include "test_support.h"

using namespace telehub;

namespace {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Fixture {
  testing::TempDir dir;
  std::unique_ptr<storage::Store> store;
  std::string patient;
  std::unique_ptr<fhir::Router> router;
  std::unique_ptr<fhir::HttpServer> server;
  std::vector<std::string> bodies;  // FHIR bodies returned, for the validator

  Fixture() {
    auto s = storage::open_sqlite_store({dir.path() / "telehub.db"}, core::system_clock());
    REQUIRE(s);
    store = std::move(*s);
    auto pseudonymiser = std::move(*privacy::Pseudonymiser::from_key(core::Bytes(32, 5)));
    const auto subject = pseudonymiser->subject("patient-repr");
    patient = subject.str();
    storage::DeviceRecord d;
    d.id = "dev-repr";
    d.subject = patient;
    d.wrapped_key = core::Bytes(61, 1);  // opaque to storage and fhir
    REQUIRE(store->registry().add_device(d));
    storage::MessageBatch b;
    b.device_id = d.id;
    b.sequence = 1;
    b.content_hash = "h1";
    b.received_at = *core::parse_rfc3339("2026-11-28T10:00:00Z");
    for (int i = 0; i < 6; ++i) {
      core::Reading r;
      r.device = d.id;
      r.sequence = 1;
      r.code = std::string(core::loinc::kHeartRate);
      r.value = 60.5 + i;
      r.unit = "/min";
      r.time = *core::parse_rfc3339("2026-11-28T09:00:00Z") + std::chrono::minutes(i);
      b.readings.push_back(privacy::PseudonymousReading::bind(r, subject));
    }
    REQUIRE(store->observations().append(std::move(b)));
    fhir::RouterOptions ro;
    ro.base_url = "http://fhir.test/fhir";
    ro.metrics = [] { return std::string("telehub_up 1\n"); };
    router = std::make_unique<fhir::Router>(*store, ro);
  }

  fhir::Response call(const std::string& target, Headers headers = {}, const std::string& method = "GET") {
    fhir::Response r = router->handle({method, target, std::move(headers), "", "", false});
    if (r.content_type.find("json") != std::string::npos && !r.body.empty()) bodies.push_back(r.body);
    return r;
  }

  std::string search(const std::string& extra = "") const {
    return "/fhir/Observation?patient=Patient/" + patient + extra;
  }

  // The id of the first Observation (row ids depend on the store).
  std::string observation_id(std::size_t index = 0) {
    const auto r = router->handle({"GET", search(), {}, "", "", false});
    rapidjson::Document d;
    d.Parse(r.body.c_str());
    REQUIRE(d.HasMember("entry"));
    REQUIRE(d["entry"].Size() > index);
    return "/fhir/Observation/" + std::string(d["entry"][static_cast<rapidjson::SizeType>(index)]["resource"]["id"].GetString());
  }

  void serve() {
    fhir::HttpServerOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    auto started = fhir::HttpServer::start(options, *router);
    REQUIRE(started);
    server = std::move(*started);
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(server->port()) + path; }

  void validate_all() {
    auto result = testing::fhir_validate(bodies);
    INFO(result.output);
    REQUIRE(result.exit_code == 0);
  }
};

std::optional<std::string> header(const fhir::Response& r, const std::string& name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return std::nullopt;
}

rapidjson::Document parse(const std::string& body) {
  rapidjson::Document d;
  d.Parse(body.c_str());
  REQUIRE_FALSE(d.HasParseError());
  return d;
}

std::string issue_code(const fhir::Response& r) {
  auto d = parse(r.body);
  REQUIRE(std::string(d["resourceType"].GetString()) == "OperationOutcome");
  return d["issue"][0]["code"].GetString();
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Both parse, to the same JSON value.
bool same_json(const std::string& a, const std::string& b) {
  const auto da = parse(a);
  const auto db = parse(b);
  return da == db;
}

constexpr const char* kFhirJson = "application/fhir+json; charset=utf-8";
constexpr const char* kPlainJson = "application/json; charset=utf-8";

}  // namespace

TEST_CASE("representation: _format and Accept choose the content type or answer 406", "[fhir]") {
  Fixture f;
  const auto plain = f.call("/fhir/metadata");
  REQUIRE(plain.status == 200);
  CHECK(plain.content_type == kFhirJson);

  struct Case {
    std::string format;  // query suffix
    std::string accept;  // empty: no header
    int status;
    std::string content_type;
  };
  const std::vector<Case> cases = {
      {"", "", 200, kFhirJson},
      {"?_format=json", "", 200, kFhirJson},
      {"?_format=application/fhir%2Bjson", "", 200, kFhirJson},
      {"?_format=application/fhir+json", "", 200, kFhirJson},
      {"?_format=application/fhir+json;%20fhirVersion=4.0", "", 200, kFhirJson},
      {"?_format=application/fhir%2Bjson%3B%20charset%3Dutf-8", "", 200, kFhirJson},
      {"?_format=application/json", "", 200, kPlainJson},
      {"?_format=application/json;charset=UTF-8", "", 200, kPlainJson},
      {"?_format=json", "text/html", 200, kFhirJson},  // _format overrides Accept
      {"?_format=xml", "", 406, kFhirJson},
      {"?_format=application/fhir%2Bxml", "", 406, kFhirJson},
      {"?_format=text/turtle", "", 406, kFhirJson},
      {"?_format=application/fhir%2Bjson;fhirVersion=3.0", "", 406, kFhirJson},
      {"?_format=xml", "application/fhir+json", 406, kFhirJson},
      {"", "application/fhir+json", 200, kFhirJson},
      {"", "application/fhir+json; fhirVersion=4.0", 200, kFhirJson},
      {"", "application/json", 200, kPlainJson},
      {"", "application/json, application/fhir+json", 200, kFhirJson},
      {"", "application/fhir+json;q=0.5, application/json", 200, kPlainJson},
      {"", "application/json;q=0.5, application/fhir+json", 200, kFhirJson},
      {"", "*/*", 200, kFhirJson},
      {"", "application/*;q=0.2", 200, kFhirJson},
      {"", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", 200, kFhirJson},
      {"", "application/fhir+xml", 406, kFhirJson},
      {"", "text/html, application/xml", 406, kFhirJson},
      {"", "application/fhir+json;q=0, application/json;q=0", 406, kFhirJson},
      {"", "*/*;q=0", 406, kFhirJson},
      {"", "application/fhir+json;q=0, */*", 200, kPlainJson},
      {"", "application/fhir+json; fhirVersion=3.0", 406, kFhirJson},
  };
  for (const auto& c : cases) {
    INFO("_format " << c.format << " Accept " << c.accept);
    Headers headers;
    if (!c.accept.empty()) headers.emplace_back("Accept", c.accept);
    const auto r = f.call("/fhir/metadata" + c.format, headers);
    CHECK(r.status == c.status);
    CHECK(r.content_type == c.content_type);
    if (c.status == 406) CHECK(issue_code(r) == "not-supported");
    if (c.status == 200) CHECK(r.body == plain.body);  // the same JSON whatever the label
  }

  // Errors stay application/fhir+json OperationOutcomes (router.h); the header name is
  // case-insensitive.
  const auto missing = f.call("/fhir/Observation/999", {{"accept", "application/json"}});
  CHECK(missing.status == 404);
  CHECK(missing.content_type == kFhirJson);
  const auto refused = f.call("/fhir/metadata", {{"ACCEPT", "text/html"}});
  CHECK(refused.status == 406);

  // Outside /fhir nothing is negotiated: /metrics stays text for a Prometheus Accept.
  const auto metrics = f.call("/metrics?_format=xml", {{"Accept", "text/plain;version=0.0.4"}});
  CHECK(metrics.status == 200);
  CHECK(metrics.content_type.rfind("text/plain", 0) == 0);
  CHECK(metrics.body == "telehub_up 1\n");
  CHECK_FALSE(header(metrics, "ETag"));
  f.validate_all();
}

TEST_CASE("representation: _pretty indents the same JSON", "[fhir]") {
  Fixture f;
  for (const std::string& target : {std::string("/fhir/metadata"), f.search(), f.observation_id(),
                                    std::string("/fhir/Observation/999")}) {
    INFO(target);
    const auto compact = f.call(target);
    const auto sep = target.find('?') == std::string::npos ? "?" : "&";
    const auto pretty = f.call(target + sep + "_pretty=true");
    const auto not_pretty = f.call(target + sep + "_pretty=false");
    CHECK(pretty.status == compact.status);
    CHECK(not_pretty.body == compact.body);
    CHECK(contains(pretty.body, "\n  \""));
    CHECK_FALSE(contains(compact.body, "\n"));
    CHECK(same_json(pretty.body, compact.body));
    // Numbers are copied as written ("60.5", "61.5" in the Observations).
    if (contains(compact.body, "\"value\":60.5")) CHECK(contains(pretty.body, "\"value\": 60.5"));
  }
  // A 406 with _pretty is pretty too, whatever the order of the parameters.
  for (const char* target : {"/fhir/metadata?_pretty=true&_format=xml", "/fhir/metadata?_format=xml&_pretty=true"}) {
    INFO(target);
    const auto refused = f.call(target);
    CHECK(refused.status == 406);
    CHECK(contains(refused.body, "\n  \""));
    CHECK(issue_code(refused) == "not-supported");
  }
  CHECK_FALSE(contains(f.call("/fhir/metadata?_format=xml").body, "\n"));
  f.validate_all();
}

TEST_CASE("representation: _format and _pretty never reach the routes", "[fhir]") {
  Fixture f;
  const auto reference = f.call(f.search("&_count=4"));
  REQUIRE(reference.status == 200);
  CHECK_FALSE(contains(reference.body, "ignored"));
  const auto with = f.call(f.search("&_format=json&_count=4&_pretty=false"));
  REQUIRE(with.status == 200);
  CHECK(with.body == reference.body);  // same entries, same links, no "parameters ignored" outcome
  CHECK_FALSE(contains(with.body, "_format"));
  CHECK_FALSE(contains(with.body, "OperationOutcome"));
  // An unknown parameter still is reported, so the check above means something.
  const auto unknown = f.call(f.search("&_count=4&_unknownparam=id"));
  CHECK(contains(unknown.body, "ignored"));

  // negotiate() itself: the other parameters byte for byte, in order.
  struct Case {
    std::string in, out;
  };
  for (const auto& c : std::vector<Case>{
           {"/fhir/metadata?_format=json", "/fhir/metadata"},
           {"/fhir/metadata?_pretty=true", "/fhir/metadata"},
           {"/fhir/Observation?a=%41%2b&_format=json&b=x+y&&c&_pretty=true&d=", "/fhir/Observation?a=%41%2b&b=x+y&&c&d="},
           {"/fhir/Observation?%5Fformat=json&code=1", "/fhir/Observation?code=1"},
           {"/fhir/Observation?_formats=json&_format", "/fhir/Observation?_formats=json"},
           {"/fhir/Observation?x=1#frag", "/fhir/Observation?x=1#frag"},
           {"/fhir/Observation?a=\"&_format=json&b=\"", "/fhir/Observation?a=\"&b=\""},
           {"/fhir/Observation?_format=json&_pretty=false", "/fhir/Observation"},
           {"/fhir/Observation?_pretty=true#frag", "/fhir/Observation#frag"},
           {"/fhir/metadata?", "/fhir/metadata?"},
           {"/metrics?_format=json", "/metrics?_format=json"},
       }) {
    INFO(c.in);
    fhir::Request request{"GET", c.in, {}, "", "", false};
    fhir::Representation representation;
    auto refused = fhir::negotiate(request, representation);
    if (c.in.ends_with("&_format")) CHECK(refused);  // an empty _format names no format
    else CHECK_FALSE(refused);
    CHECK(request.target == c.out);
  }
  f.validate_all();
}

TEST_CASE("representation: ETag and If-None-Match give 304", "[fhir]") {
  Fixture f;
  for (const std::string& target : {std::string("/fhir/metadata"), f.search(), f.observation_id(1),
                                    std::string("/fhir/Device/dev-repr")}) {
    INFO(target);
    const auto first = f.call(target);
    REQUIRE(first.status == 200);
    const auto etag = header(first, "ETag");
    REQUIRE(etag);
    CHECK(*etag == fhir::body_etag(first.body));
    CHECK(etag->size() == 2 + 1 + 16 + 1);
    CHECK(etag->rfind("W/\"", 0) == 0);
    // Stable: the same answer has the same tag; _pretty and application/json do not change it.
    CHECK(header(f.call(target), "ETag") == etag);
    const auto sep = target.find('?') == std::string::npos ? "?" : "&";
    CHECK(header(f.call(target + sep + "_pretty=true", {{"Accept", "application/json"}}), "ETag") == etag);

    const std::string strong = etag->substr(2);  // weak comparison: "x" matches W/"x"
    for (const std::string& condition : {*etag, strong, "\"nope\", " + *etag, std::string("*"), "W/\"a\",W/\"b\"," + strong}) {
      INFO(condition);
      const auto r = f.call(target, {{"If-None-Match", condition}});
      CHECK(r.status == 304);
      CHECK(r.body.empty());
      CHECK(r.content_type.empty());
      CHECK(header(r, "ETag") == etag);
    }
    for (const std::string& condition : {std::string("W/\"0000000000000000\""), std::string("\"other\", W/\"x\""),
                                         std::string("garbage"), std::string("")}) {
      INFO(condition);
      const auto r = f.call(target, {{"If-None-Match", condition}});
      CHECK(r.status == 200);
      CHECK(r.body == first.body);
      CHECK(header(r, "ETag") == etag);
    }
  }
  // Different answers, different tags.
  CHECK(header(f.call(f.observation_id(0)), "ETag") != header(f.call(f.observation_id(1)), "ETag"));
  // Errors and other methods get no ETag and no 304.
  const auto missing = f.call("/fhir/Observation/999", {{"If-None-Match", "*"}});
  CHECK(missing.status == 404);
  CHECK_FALSE(header(missing, "ETag"));
  const auto post = f.call("/fhir/metadata", {{"If-None-Match", "*"}}, "POST");
  CHECK(post.status == 405);
  CHECK_FALSE(header(post, "ETag"));
  f.validate_all();
}

TEST_CASE("representation: finish keeps a route's ETag and leaves non-FHIR bodies alone", "[fhir]") {
  fhir::Request request{"GET", "/fhir/Patient/x", {{"If-None-Match", "W/\"3\""}}, "", "", false};
  fhir::Representation representation;
  REQUIRE_FALSE(fhir::negotiate(request, representation));
  fhir::Response versioned;
  versioned.content_type = kFhirJson;
  versioned.headers.emplace_back("ETag", "W/\"3\"");
  versioned.headers.emplace_back("Last-Modified", "Sat, 28 Nov 2026 10:00:00 GMT");
  versioned.body = R"({"resourceType":"Patient","id":"x","meta":{"versionId":"3"}})";
  const auto not_modified = fhir::finish(request, representation, versioned);
  CHECK(not_modified.status == 304);
  CHECK(not_modified.body.empty());
  CHECK(not_modified.headers == versioned.headers);  // the route's ETag, nothing added

  request.headers = {{"If-None-Match", "W/\"2\""}};
  const auto modified = fhir::finish(request, representation, versioned);
  CHECK(modified.status == 200);
  CHECK(modified.body == versioned.body);
  CHECK(modified.headers == versioned.headers);

  // If-Modified-Since against the route's Last-Modified, only without If-None-Match.
  for (const auto& [since, status] : std::vector<std::pair<std::string, int>>{
           {"Sat, 28 Nov 2026 10:00:00 GMT", 304},
           {"Sun, 29 Nov 2026 00:00:00 GMT", 304},
           {"Sat, 28 Nov 2026 09:59:59 GMT", 200},
           {"Fri, 31 Dec 1999 23:59:59 GMT", 200},
           {"Saturday, 28-Nov-26 10:00:00 GMT", 200},  // RFC 850 form: ignored
           {"Sat, 31 Nov 2026 10:00:00 GMT", 200},     // no such day: ignored
           {"yesterday", 200}}) {
    INFO(since);
    request.headers = {{"If-Modified-Since", since}};
    CHECK(fhir::finish(request, representation, versioned).status == status);
  }
  request.headers = {{"If-Modified-Since", "Sun, 29 Nov 2026 00:00:00 GMT"}, {"If-None-Match", "W/\"2\""}};
  CHECK(fhir::finish(request, representation, versioned).status == 200);

  // HEAD is answered like GET.
  request.method = "HEAD";
  request.headers = {{"If-None-Match", "\"3\""}};
  CHECK(fhir::finish(request, representation, versioned).status == 304);

  // Not FHIR JSON (the token endpoint's JSON, text): untouched, even with _pretty.
  fhir::Request pretty{"GET", "/fhir/x?_pretty=true", {{"Accept", "application/json"}}, "", "", false};
  REQUIRE_FALSE(fhir::negotiate(pretty, representation));
  CHECK(representation.pretty);
  CHECK(representation.plain_json);
  fhir::Response token;
  token.content_type = "application/json";
  token.body = R"({"a":1})";
  const auto same = fhir::finish(pretty, representation, token);
  CHECK(same.body == token.body);
  CHECK(same.content_type == "application/json");
  CHECK(same.headers.empty());
  // A FHIR body that does not parse is left as it is.
  fhir::Response broken;
  broken.content_type = kFhirJson;
  broken.body = R"({"a":)";
  CHECK(fhir::finish(pretty, representation, broken).body == broken.body);
}

namespace {

struct Curl {
  std::string head;  // status line and headers
  std::string body;  // as received (or as decoded, with a pipe)
};

// curl -sS -D <headers> <args> [| <pipe>]: headers and body apart, so a pipe sees only the body.
Curl curl(Fixture& f, const std::string& args, const std::string& pipe = "") {
  const auto headers = f.dir.path() / "headers.txt";
  const auto body = f.dir.path() / "body.bin";
  std::filesystem::remove(body);  // curl writes no file for a response without a body (304)
  std::string command = "curl -sS --max-time 20 -D '" + headers.string() + "' " + args;
  command += pipe.empty() ? " -o '" + body.string() + "'" : " | " + pipe + " > '" + body.string() + "'";
  // With a pipe the exit code is the pipe's (gzip -d fails on an empty or non-gzip body).
  const auto r = testing::run_command(command);
  INFO(command << "\n" << r.output);
  REQUIRE(r.exit_code == 0);
  auto slurp = [](const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  };
  return {slurp(headers), slurp(body)};
}

bool has_header(const std::string& head, const std::string& line) {
  // Case-insensitive on the name, as curl prints what the server sent.
  std::string h = head, l = line;
  std::transform(h.begin(), h.end(), h.begin(), ::tolower);
  std::transform(l.begin(), l.end(), l.begin(), ::tolower);
  return contains(h, "\r\n" + l + "\r\n");
}

}  // namespace

TEST_CASE("representation HTTP: gzip over loopback with curl", "[fhir]") {
  Fixture f;
  f.serve();
  const std::string search = "'" + f.url(f.search()) + "'";

  const auto identity = curl(f, search);
  CHECK(identity.head.rfind("HTTP/1.1 200", 0) == 0);
  REQUIRE(identity.body.size() >= 1024);
  CHECK_FALSE(has_header(identity.head, "Content-Encoding: gzip"));
  CHECK(has_header(identity.head, "Vary: Accept-Encoding"));  // it could have been compressed

  // curl --compressed: sends Accept-Encoding, decodes.
  const auto compressed = curl(f, "--compressed " + search);
  CHECK(compressed.head.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(has_header(compressed.head, "Content-Encoding: gzip"));
  CHECK(has_header(compressed.head, "Vary: Accept-Encoding"));
  CHECK(compressed.body == identity.body);

  // Raw: the bytes on the wire are gzip, smaller, and decode to the same body.
  const auto raw = curl(f, "-H 'Accept-Encoding: gzip' " + search);
  CHECK(has_header(raw.head, "Content-Encoding: gzip"));
  CHECK(raw.body.size() < identity.body.size());
  CHECK(raw.body.rfind("\x1f\x8b", 0) == 0);
  const auto decoded = curl(f, "-H 'Accept-Encoding: gzip' " + search, "gzip -d");
  CHECK(decoded.body == identity.body);
  for (const char* accept : {"deflate, gzip;q=0.5", "*", "br;q=1.0, *;q=0.1", "GZIP", "x-gzip"}) {
    INFO(accept);
    const auto r = curl(f, "-H 'Accept-Encoding: " + std::string(accept) + "' " + search, "gzip -d");
    CHECK(has_header(r.head, "Content-Encoding: gzip"));
    CHECK(r.body == identity.body);
  }

  // The ETag is the same as without gzip, and If-None-Match works over HTTP: 304, no body.
  const auto etag_at = identity.head.find("ETag: ");
  REQUIRE(etag_at != std::string::npos);
  const auto etag = identity.head.substr(etag_at + 6, identity.head.find("\r\n", etag_at) - etag_at - 6);
  CHECK(has_header(compressed.head, "ETag: " + etag));
  const auto not_modified = curl(f, "--compressed -H 'If-None-Match: " + etag + "' " + search);
  CHECK(not_modified.head.rfind("HTTP/1.1 304", 0) == 0);
  CHECK(not_modified.body.empty());
  CHECK(has_header(not_modified.head, "ETag: " + etag));
  CHECK_FALSE(contains(not_modified.head, "Content-Type"));
  CHECK_FALSE(has_header(not_modified.head, "Content-Encoding: gzip"));

  // _pretty and application/json over HTTP, compressed.
  const auto pretty = curl(f, "--compressed -H 'Accept: application/json' '" + f.url(f.search("&_pretty=true")) + "'");
  CHECK(has_header(pretty.head, "Content-Type: application/json; charset=utf-8"));
  CHECK(has_header(pretty.head, "Content-Encoding: gzip"));
  CHECK(same_json(pretty.body, identity.body));
  f.bodies.push_back(identity.body);
  f.validate_all();
}

TEST_CASE("representation HTTP: refused gzip and small bodies are sent as they are", "[fhir]") {
  Fixture f;
  f.serve();
  const std::string search = "'" + f.url(f.search()) + "'";
  const auto identity = curl(f, search);
  for (const char* accept : {"gzip;q=0", "gzip; q=0.000, deflate", "*;q=0", "identity", "deflate, br",
                             "gzip;q=0, *", "gzip;q=abc", ""}) {
    INFO(accept);
    const auto r = curl(f, "-H 'Accept-Encoding: " + std::string(accept) + "' " + search);
    CHECK(r.head.rfind("HTTP/1.1 200", 0) == 0);
    CHECK_FALSE(has_header(r.head, "Content-Encoding: gzip"));
    CHECK(r.body == identity.body);
  }
  // Under 1 KiB: never compressed, no Vary.
  const auto small = curl(f, "-H 'Accept-Encoding: gzip' '" + f.url("/fhir/Observation/999") + "'");
  CHECK(small.head.rfind("HTTP/1.1 404", 0) == 0);
  REQUIRE(small.body.size() < 1024);
  CHECK_FALSE(has_header(small.head, "Content-Encoding: gzip"));
  CHECK_FALSE(has_header(small.head, "Vary: Accept-Encoding"));
  CHECK(contains(small.body, "\"resourceType\":\"OperationOutcome\""));
  // HEAD: headers only, never compressed.
  const auto head = testing::run_command("curl -sS -I --max-time 20 -H 'Accept-Encoding: gzip' " + search);
  CHECK(head.exit_code == 0);
  CHECK_FALSE(contains(head.output, "Content-Encoding"));
  f.bodies.push_back(small.body);
  f.validate_all();
}
