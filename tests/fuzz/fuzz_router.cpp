// libFuzzer harness: the input as an HTTP request to the FHIR router (fhir::Router::handle,
// telehub/fhir/router.h) over real stores: a SQLite measurement store with a few observations,
// and the privacy stores of the local care setting (identity vault under a fixed test KEK,
// audit log, consent store; RouterOptions::privacy with care_local). Build and run:
// FUZZ_TARGETS=router tests/fuzz/run.sh (docs/fuzzing.md); seeds: tests/fuzz/corpus/router/.
//
// Input layout: byte 0 picks the method (low 3 bits mod 5: GET POST PUT DELETE HEAD), the
// client (bit 7 set: not loopback, so the care routes answer 403) and the router (bit 6 set:
// the one with authentication, RouterOptions::auth: a token service with a registered care
// client "fuzz-care" of organisation org-f, which has a care relation with the seeded patient,
// and an operator API token); then the target up to the first '\n'; with bit 6, header lines
// "Name: value" up to an empty line; the rest is the body. Empty input: GET /fhir/metadata.
// Every "@P" in the target, headers and body is replaced by the pseudonym of the seeded patient
// (it is random per process: the vault draws subject ids), so seeds can name the patient that
// has observations and a vault entry: "GET /fhir/Patient/@P", "/fhir/Observation?patient=@P".
// With bit 6, "@T" becomes an access token of fuzz-care, "@O" the operator's API token and "@A"
// a fresh signed client assertion of fuzz-care for the token URL (seeds: "pGET ... Authorization:
// Bearer @T", "q/auth/token" with a form body holding @A).
//
// The stores live in one directory created once per process (static) under /dev/shm when it
// exists (tmpfs: the audit log's fsync is cheap), else /tmp, and removed at exit. They grow
// while fuzzing (POST Patient registers, every care access appends an audit record), so an
// input's answer may depend on earlier inputs; the invariants do not.
//
// Invariants (router.h): never crash or throw; status in 200..599; every response with content
// type application/fhir+json has a body that is valid JSON (UTF-8 validated) holding an object
// with a resourceType; every status >= 400 is such a response with an OperationOutcome that has
// at least one issue with severity and code, except the token endpoint's, which are
// application/json objects with an "error" string (RFC 6749 section 5.2); a 405 carries an
// Allow header; a 401 a WWW-Authenticate header (except the token endpoint's); a 200 from the
// token endpoint has an access_token.
//
// The Catch2 replay (tests/fhir/fuzz_replay_test.cpp) includes this file with
// TELEHUB_FUZZ_NO_ENTRY defined.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <unistd.h>

#include <rapidjson/document.h>

#include "telehub/auth/client_key.h"
#include "telehub/auth/token_service.h"
#include "telehub/core/codes.h"
#include "telehub/core/time.h"
#include "telehub/fhir/router.h"
#include "telehub/privacy/audit_log.h"
#include "telehub/privacy/care_relations.h"
#include "telehub/privacy/consent.h"
#include "telehub/privacy/identity_vault.h"
#include "telehub/privacy/keystore.h"
#include "telehub/privacy/pseudonym.h"
#include "telehub/storage/store.h"

namespace telehub::fuzz {

namespace router_detail {

class TempDirectory {
 public:
  TempDirectory() {
    const std::filesystem::path base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
    std::string pattern = (base / "telehub-fuzz-router-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) {
      std::perror("fuzz_router: mkdtemp");
      std::abort();
    }
    path_ = pattern;
  }
  ~TempDirectory() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDirectory(const TempDirectory&) = delete;
  TempDirectory& operator=(const TempDirectory&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

[[noreturn]] inline void setup_failed(const char* what, const core::Error& e) {
  std::fprintf(stderr, "fuzz_router: setup failed: %s: %s\n", what, e.to_string().c_str());
  std::abort();
}

struct Env {
  TempDirectory dir;  // first member: removed last
  std::unique_ptr<storage::Store> store;
  fhir::RouterOptions options;
  std::unique_ptr<fhir::Router> router;
  std::string patient;  // pseudonym with observations and a vault entry
  // The authenticated router (input bit 6).
  static constexpr const char* kTokenUrl = "https://fhir.test/auth/token";
  fhir::RouterOptions auth_options;
  std::unique_ptr<fhir::Router> auth_router;
  std::string client_key_pem;
  std::string care_token;
  std::string operator_token;

  Env() {
    auto s = storage::open_sqlite_store({dir.path() / "telehub.db"}, core::system_clock());
    if (!s) setup_failed("store", s.error());
    store = std::move(*s);
    auto kek = privacy::Kek::from_hex(std::string(64, 'b'));
    if (!kek) setup_failed("kek", kek.error());
    auto vault = privacy::IdentityVault::open(dir.path() / "identity.db", dir.path() / "vault.key", *kek);
    if (!vault) setup_failed("vault", vault.error());
    auto audit = privacy::AuditLog::open(dir.path() / "audit.db");
    if (!audit) setup_failed("audit", audit.error());
    auto consent = privacy::ConsentStore::open(dir.path() / "consent.db");
    if (!consent) setup_failed("consent", consent.error());
    auto pseudonymiser = privacy::Pseudonymiser::from_key(core::Bytes(32, 4));
    if (!pseudonymiser) setup_failed("pseudonymiser", pseudonymiser.error());
    options.base_url = "http://fhir.test/fhir";
    options.privacy.vault = std::move(*vault);
    options.privacy.audit = std::move(*audit);
    options.privacy.consent = std::move(*consent);
    options.privacy.pseudonymiser = std::move(*pseudonymiser);
    options.privacy.care_local = true;
    router = std::make_unique<fhir::Router>(*store, options);

    // A registered person (so GET Patient/<pseudonym> re-identifies) with a device and readings.
    fhir::Request reg{"POST", "/fhir/Patient", {},
                      R"({"resourceType":"Patient","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"111222333"}],)"
                      R"("name":[{"family":"Jansen","given":["Anna","Maria"]}],"gender":"female","birthDate":"1951-04-12"})",
                      "127.0.0.1:50000", true};
    const auto created = router->handle(reg);
    if (created.status != 201) {
      std::fprintf(stderr, "fuzz_router: setup failed: POST Patient -> %d %s\n", created.status, created.body.c_str());
      std::abort();
    }
    const std::string location = created.headers.empty() ? "" : created.headers.front().second;
    patient = location.substr(location.rfind('/') + 1);
    const auto subject = privacy::SubjectPseudonym::parse(patient);
    if (!subject) setup_failed("pseudonym", subject.error());

    storage::DeviceRecord d;
    d.id = "dev-bp-1";
    d.subject = patient;
    d.wrapped_key = core::Bytes(61, 0xAB);
    d.enrolled_at = *core::parse_rfc3339("2026-10-01T00:00:00Z");
    if (auto a = store->registry().add_device(d); !a) setup_failed("device", a.error());
    struct Seed { const char* code; double value; const char* unit; const char* time; };
    const Seed seeds[] = {{"8867-4", 72, "/min", "2026-11-01T08:00:00Z"},
                          {"59408-5", 97, "%", "2026-11-15T12:30:00Z"},
                          {"29463-7", 80.5, "kg", "2026-10-31T23:59:59.999Z"},
                          {"8310-5", 37.1, "Cel", "2026-12-01T00:00:00Z"},
                          {"8867-4", 400, "/min", "2026-12-02T00:00:00Z"}};
    std::uint64_t sequence = 0;
    for (const Seed& seed : seeds) {
      storage::MessageBatch b;
      b.device_id = d.id;
      b.sequence = ++sequence;
      b.content_hash = "hash-" + std::to_string(sequence);
      b.received_at = *core::parse_rfc3339("2026-12-02T09:00:00Z");
      core::Reading r;
      r.code = seed.code;
      r.value = seed.value;
      r.unit = seed.unit;
      r.time = *core::parse_rfc3339(seed.time);
      r.device = d.id;
      r.sequence = sequence;
      b.readings.push_back(privacy::PseudonymousReading::bind(r, *subject));
      if (auto a = store->observations().append(std::move(b)); !a) setup_failed("append", a.error());
    }
    // A blood-pressure panel.
    storage::MessageBatch b;
    b.device_id = d.id;
    b.sequence = ++sequence;
    b.content_hash = "hash-panel";
    b.received_at = *core::parse_rfc3339("2026-12-02T09:00:00Z");
    core::Reading r;
    r.code = std::string(core::loinc::kBloodPressurePanel);
    r.time = *core::parse_rfc3339("2026-11-01T08:00:00Z");
    r.components = {{std::string(core::loinc::kSystolic), 128, "mm[Hg]"}, {std::string(core::loinc::kDiastolic), 82, "mm[Hg]"}};
    r.device = d.id;
    r.sequence = sequence;
    b.readings.push_back(privacy::PseudonymousReading::bind(r, *subject));
    if (auto a = store->observations().append(std::move(b)); !a) setup_failed("append", a.error());

    // The authenticated router over the same stores.
    auto tokens = auth::TokenService::open(dir.path() / "auth.db", core::system_clock());
    if (!tokens) setup_failed("tokens", tokens.error());
    auto care = privacy::CareRelations::open(dir.path() / "care.db");
    if (!care) setup_failed("care", care.error());
    auto key = auth::generate_client_key();
    if (!key) setup_failed("client key", key.error());
    client_key_pem = key->private_key_pem;
    if (auto r = (*tokens)->register_client({"fuzz-care", key->jwks_json, "system/*.cruds", "care", "org-f"}); !r)
      setup_failed("register", r.error());
    if (auto r = (*care)->add(patient, "org-f", *core::parse_rfc3339("2020-01-01T00:00:00Z"), "fuzz"); !r)
      setup_failed("care relation", r.error());
    auto op = (*tokens)->create_api_token("fuzz-operator", "operator", "system/AuditEvent.rs");
    if (!op) setup_failed("operator token", op.error());
    operator_token = *op;
    auth_options = options;
    auth_options.privacy.care_local = false;
    auth_options.auth.tokens = std::move(*tokens);
    auth_options.auth.token_url = kTokenUrl;
    auth_options.auth.care_relations = std::move(*care);
    auth_options.metrics = [] { return std::string("telehub_up 1\n"); };
    auth_router = std::make_unique<fhir::Router>(*store, auth_options);
    auto issued = auth_options.auth.tokens->issue(
        {{"grant_type", "client_credentials"},
         {"scope", "system/*.cruds"},
         {"client_assertion_type", std::string(auth::kJwtBearerAssertionType)},
         {"client_assertion", assertion()}},
        kTokenUrl);
    if (!issued) setup_failed("access token", issued.error());
    care_token = issued->access_token;
  }

  // A fresh client assertion of fuzz-care (a new jti each time).
  std::string assertion() const {
    auth::AssertionClaims claims;
    claims.client_id = "fuzz-care";
    claims.token_url = kTokenUrl;
    auto signed_jws = auth::sign_assertion(client_key_pem, claims, core::system_clock().now());
    if (!signed_jws) setup_failed("assertion", signed_jws.error());
    return *signed_jws;
  }
};

inline Env& env() {
  static Env e;
  return e;
}

inline bool header_present(const fhir::Response& r, std::string_view name) {
  for (const auto& h : r.headers)
    if (h.first == name) return true;
  return false;
}

}  // namespace router_detail

// The pseudonym of the seeded patient (for tests; the corpus has it written out).
inline const std::string& router_fuzz_patient() { return router_detail::env().patient; }

// Whether the input goes to the authenticated router (bit 6 of byte 0).
inline bool router_fuzz_authenticated(std::span<const std::uint8_t> data) { return !data.empty() && (data[0] & 0x40) != 0; }

// Splits the input into a request (see the top of the file).
inline fhir::Request router_fuzz_request(std::span<const std::uint8_t> data) {
  static constexpr const char* kMethods[] = {"GET", "POST", "PUT", "DELETE", "HEAD"};
  fhir::Request request;
  if (data.empty()) {
    request.method = "GET";
    request.target = "/fhir/metadata";
  } else {
    request.method = kMethods[(data[0] & 7) % 5];
    const bool loopback = (data[0] & 0x80) == 0;
    request.remote_loopback = loopback;
    request.remote_address = loopback ? "127.0.0.1:50000" : "192.0.2.7:50000";
    std::string_view rest(reinterpret_cast<const char*>(data.data()) + 1, data.size() - 1);
    auto newline = rest.find('\n');
    request.target = std::string(rest.substr(0, newline));
    rest = newline == std::string_view::npos ? std::string_view() : rest.substr(newline + 1);
    if (router_fuzz_authenticated(data)) {
      // Header lines up to an empty line.
      while (!rest.empty()) {
        newline = rest.find('\n');
        const std::string_view line = rest.substr(0, newline);
        rest = newline == std::string_view::npos ? std::string_view() : rest.substr(newline + 1);
        if (line.empty()) break;
        const auto colon = line.find(':');
        std::string_view value = colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        request.headers.emplace_back(std::string(line.substr(0, colon)), std::string(value));
      }
    }
    request.body = std::string(rest);
  }
  const auto& e = router_detail::env();
  auto substitute = [](std::string& s, std::string_view marker, const std::string& by) {
    for (auto pos = s.find(marker); pos != std::string::npos; pos = s.find(marker, pos + by.size())) s.replace(pos, 2, by);
  };
  std::vector<std::string*> texts{&request.target, &request.body};
  for (auto& h : request.headers) texts.push_back(&h.second);
  for (std::string* s : texts) {
    substitute(*s, "@P", e.patient);
    if (!router_fuzz_authenticated(data)) continue;
    substitute(*s, "@T", e.care_token);
    substitute(*s, "@O", e.operator_token);
    if (s->find("@A") != std::string::npos) substitute(*s, "@A", e.assertion());
  }
  return request;
}

inline std::string check_router(std::span<const std::uint8_t> data) {
  const fhir::Request request = router_fuzz_request(data);
  const auto& e = router_detail::env();
  const fhir::Response response = (router_fuzz_authenticated(data) ? e.auth_router : e.router)->handle(request);
  const std::string where = std::to_string(response.status) + " for " + request.method + ": ";
  if (response.status < 200 || response.status > 599) return where + "status outside 200..599";
  const bool token_endpoint = router_fuzz_authenticated(data) &&
                              (request.target == "/auth/token" || request.target.starts_with("/auth/token?"));
  if (token_endpoint) {
    if (!response.content_type.starts_with("application/json")) return where + "token endpoint answer is not JSON";
    rapidjson::Document doc;
    doc.Parse<rapidjson::kParseValidateEncodingFlag>(response.body.data(), response.body.size());
    if (doc.HasParseError() || !doc.IsObject()) return where + "token endpoint body is not a JSON object";
    const char* member = response.status == 200 ? "access_token" : "error";
    if (!doc.HasMember(member) || !doc[member].IsString()) return where + "token endpoint answer without " + member;
    return {};
  }
  if (response.status == 401 && !router_detail::header_present(response, "WWW-Authenticate"))
    return where + "401 without WWW-Authenticate";
  if (response.status == 200 && response.content_type.starts_with("application/json")) {
    rapidjson::Document doc;  // the SMART configuration
    doc.Parse<rapidjson::kParseValidateEncodingFlag>(response.body.data(), response.body.size());
    if (doc.HasParseError() || !doc.IsObject()) return where + "JSON body is not a JSON object";
    return {};
  }
  const bool fhir_json = response.content_type.starts_with("application/fhir+json");
  if (response.status >= 400 && !fhir_json) return where + "an error that is not application/fhir+json";
  if (response.status == 405 && !router_detail::header_present(response, "Allow")) return where + "405 without Allow";
  if (!fhir_json) return {};
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseValidateEncodingFlag>(response.body.data(), response.body.size());
  if (doc.HasParseError()) return where + "body is not valid JSON (UTF-8 validated)";
  if (!doc.IsObject()) return where + "body is not a JSON object";
  const rapidjson::Value& root = doc;  // const: RapidJSON's iterator comparison is ambiguous in C++20 otherwise
  auto type = root.FindMember("resourceType");
  if (type == root.MemberEnd() || !type->value.IsString()) return where + "body has no resourceType";
  if (response.status >= 400) {
    if (std::string_view(type->value.GetString()) != "OperationOutcome") return where + "error body is not an OperationOutcome";
    auto issues = root.FindMember("issue");
    if (issues == root.MemberEnd() || !issues->value.IsArray() || issues->value.Empty())
      return where + "OperationOutcome without issues";
    for (rapidjson::SizeType i = 0; i < issues->value.Size(); ++i) {
      const auto& issue = issues->value[i];
      if (!issue.IsObject() || !issue.HasMember("severity") || !issue.HasMember("code") || !issue["severity"].IsString() ||
          !issue["code"].IsString())
        return where + "OperationOutcome issue without severity and code";
    }
  }
  return {};
}

}  // namespace telehub::fuzz

#ifndef TELEHUB_FUZZ_NO_ENTRY
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string why = telehub::fuzz::check_router({data, size});
  if (!why.empty()) {
    std::fprintf(stderr, "fuzz_router: invariant violated: %s\n", why.c_str());
    std::abort();
  }
  return 0;
}
#endif
