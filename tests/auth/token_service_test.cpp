#include <catch2/catch.hpp>

#include <fstream>
#include <iterator>

#include "telehub/auth/token_service.h"
#include "test_signer.h"
#include "test_support.h"

using namespace telehub;
using namespace telehub::auth;
namespace t = telehub::auth::test;

namespace {

constexpr const char* kTokenUrl = "https://hub.example/auth/token";

class ManualClock final : public core::Clock {
 public:
  core::TimePoint now() const override { return now_; }
  void advance(core::Millis d) { now_ += d; }
  std::int64_t seconds() const { return core::to_unix_millis(now_) / 1000; }

 private:
  core::TimePoint now_ = core::from_unix_millis(1'795'860'000'000);
};

struct Fixture {
  testing::TempDir dir;
  ManualClock clock;
  std::unique_ptr<TokenService> service;
  int next_jti = 0;

  Fixture() {
    auto s = TokenService::open(dir.path() / "auth.db", clock);
    REQUIRE(s);
    service = std::move(*s);
    REQUIRE(service->register_client(
        {"hospital-a",
         t::jwks_json({t::jwk_json(t::shared_rsa(), "rsa-1"), t::jwk_json(t::shared_ec(), "ec-1")}),
         "system/Observation.rs system/Patient.read", "care", "St Elsewhere"}));
  }

  struct Assertion {
    std::string alg = "ES384";
    std::string kid = "ec-1";
    std::string iss = "hospital-a";
    std::string sub = "hospital-a";
    std::string aud = kTokenUrl;
    std::optional<std::int64_t> exp_in = 240;  // seconds from now
    std::string jti;                           // empty: a fresh one
  };

  std::string assertion(const Assertion& a, const t::Pkey* key = nullptr) {
    const std::string header = R"({"alg":")" + a.alg + R"(","kid":")" + a.kid + R"(","typ":"JWT"})";
    std::string claims = R"({"iss":")" + a.iss + R"(","sub":")" + a.sub + R"(","aud":")" + a.aud + R"(","jti":")" +
                         (a.jti.empty() ? "jti-" + std::to_string(++next_jti) : a.jti) + "\"";
    if (a.exp_in) claims += ",\"exp\":" + std::to_string(clock.seconds() + *a.exp_in);
    claims += "}";
    if (!key) key = a.alg == "RS384" ? &t::shared_rsa() : &t::shared_ec();
    return t::sign_jws(*key, header, claims);
  }

  static FormParams form(const std::string& jwt, const std::string& scope = "system/Observation.rs") {
    return {{"grant_type", "client_credentials"},
            {"scope", scope},
            {"client_assertion_type", std::string(kJwtBearerAssertionType)},
            {"client_assertion", jwt}};
  }

  Result<IssuedToken> request(const Assertion& a, const std::string& scope = "system/Observation.rs",
                              const t::Pkey* key = nullptr) {
    return service->issue(form(assertion(a, key), scope), kTokenUrl);
  }
};

void refused(const Result<IssuedToken>& r, const char* reason, OAuthError oauth) {
  REQUIRE_FALSE(r);
  CHECK(r.error().reason == reason);
  CHECK(oauth_error(r.error()) == oauth);
  CHECK(r.error().message.find("hospital-a") == std::string::npos);
}

std::string file_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_CASE("token service issues an access token for an ES384 assertion", "[auth]") {
  Fixture f;
  auto token = f.request({});
  REQUIRE(token);
  CHECK(token->token_type == "bearer");
  CHECK(token->expires_in == 300);
  CHECK(token->scope == "system/Observation.rs");
  CHECK(token->access_token.size() == 43);

  auto grant = f.service->authenticate(token->access_token);
  REQUIRE(grant);
  CHECK(grant->kind == Grant::Kind::kAccessToken);
  CHECK(grant->client_id == "hospital-a");
  CHECK(grant->role == "care");
  CHECK(grant->organisation == "St Elsewhere");
  CHECK(grant->scopes == std::vector<std::string>{"system/Observation.rs"});
  CHECK(grant->expires == f.clock.now() + std::chrono::seconds(300));
  CHECK(grant->allows("Observation", 'r'));
  CHECK(grant->allows("Observation", 's'));
  CHECK_FALSE(grant->allows("Observation", 'c'));
  CHECK_FALSE(grant->allows("Patient", 'r'));
}

TEST_CASE("token service issues an access token for an RS384 assertion", "[auth]") {
  Fixture f;
  Fixture::Assertion a;
  a.alg = "RS384";
  a.kid = "rsa-1";
  // SMART v1 ".read" and v2 ".rs" name the same permissions; a subset is fine too.
  auto token = f.request(a, "system/Patient.rs system/Observation.r");
  REQUIRE(token);
  CHECK(token->scope == "system/Patient.rs system/Observation.r");
  auto grant = f.service->authenticate(token->access_token);
  REQUIRE(grant);
  CHECK(grant->allows("Patient", 's'));
  CHECK_FALSE(grant->allows("Observation", 's'));
}

TEST_CASE("token service parses a form body", "[auth]") {
  Fixture f;
  const std::string jwt = f.assertion({});
  const std::string body = "grant_type=client_credentials&scope=system%2FObservation.rs+system/Patient.r"
                           "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
                           "&client_assertion=" + jwt;
  auto form = parse_form(body);
  REQUIRE(form);
  CHECK((*form)[1].second == "system/Observation.rs system/Patient.r");
  auto token = f.service->issue(*form, kTokenUrl);
  REQUIRE(token);
  CHECK(token->scope == "system/Observation.rs system/Patient.r");
  CHECK_FALSE(parse_form("a=%4"));
  CHECK_FALSE(parse_form("a=%zz"));
  CHECK(parse_form("a=%41&&b").value() == FormParams{{"a", "A"}, {"b", ""}});
}

TEST_CASE("token service refuses bad assertions", "[auth]") {
  Fixture f;
  Fixture::Assertion a;
  SECTION("alg none") {
    const std::string jwt = t::b64(R"({"alg":"none","kid":"ec-1"})") + "." +
                            t::b64(R"({"iss":"hospital-a","sub":"hospital-a","aud":")" + std::string(kTokenUrl) +
                                   R"(","exp":)" + std::to_string(f.clock.seconds() + 60) + R"(,"jti":"n"})") +
                            ".AA";
    refused(f.service->issue(Fixture::form(jwt), kTokenUrl), "unsupported_alg", OAuthError::kInvalidClient);
    refused(f.service->issue(Fixture::form(jwt.substr(0, jwt.rfind('.') + 1)), kTokenUrl), "bad_jws",
            OAuthError::kInvalidClient);
  }
  SECTION("key confusion: HS256 keyed with the registered public key") {
    const std::string claims = R"({"iss":"hospital-a","sub":"hospital-a","aud":")" + std::string(kTokenUrl) +
                               R"(","exp":)" + std::to_string(f.clock.seconds() + 60) + R"(,"jti":"k"})";
    for (const auto* key : {&t::shared_rsa(), &t::shared_ec()}) {
      const std::string jwt = t::sign_hs256(t::public_pem(*key), R"({"alg":"HS256","kid":"rsa-1"})", claims);
      refused(f.service->issue(Fixture::form(jwt), kTokenUrl), "unsupported_alg", OAuthError::kInvalidClient);
    }
  }
  SECTION("signed with an unregistered key: unknown kid") {
    const auto other = t::ec_key();
    a.kid = "ec-2";
    refused(f.request(a, "system/Observation.rs", &other), "unregistered_key", OAuthError::kInvalidClient);
    a.kid = "";
    refused(f.request(a, "system/Observation.rs", &other), "unregistered_key", OAuthError::kInvalidClient);
  }
  SECTION("signed with an unregistered key: known kid, other key") {
    const auto other = t::ec_key();
    refused(f.request(a, "system/Observation.rs", &other), "bad_signature", OAuthError::kInvalidClient);
    // The RSA kid with an ES384 signature.
    a.kid = "rsa-1";
    refused(f.request(a), "alg_mismatch", OAuthError::kInvalidClient);
  }
  SECTION("exp more than five minutes ahead") {
    a.exp_in = 330;  // 300 s + 30 s skew is still accepted
    REQUIRE(f.request(a));
    a.exp_in = 331;
    refused(f.request(a), "exp_too_far", OAuthError::kInvalidClient);
    a.exp_in = 3600;
    refused(f.request(a), "exp_too_far", OAuthError::kInvalidClient);
  }
  SECTION("expired or missing exp") {
    a.exp_in = -60;
    refused(f.request(a), "expired_assertion", OAuthError::kInvalidClient);
    a.exp_in = std::nullopt;
    refused(f.request(a), "expired_assertion", OAuthError::kInvalidClient);
    a.exp_in = -29;  // within the clock skew
    CHECK(f.request(a));
  }
  SECTION("reused jti") {
    a.jti = "once";
    REQUIRE(f.request(a));
    refused(f.request(a), "jti_reused", OAuthError::kInvalidClient);
    // Still refused just before the first assertion's exp + skew, when it could still pass.
    f.clock.advance(std::chrono::seconds(200));
    refused(f.request(a), "jti_reused", OAuthError::kInvalidClient);
  }
  SECTION("wrong aud") {
    a.aud = "https://other.example/token";
    refused(f.request(a), "wrong_audience", OAuthError::kInvalidClient);
    a.aud = std::string(kTokenUrl) + "/";
    refused(f.request(a), "wrong_audience", OAuthError::kInvalidClient);
  }
  SECTION("wrong iss or sub") {
    a.sub = "hospital-b";
    refused(f.request(a), "wrong_issuer", OAuthError::kInvalidClient);
    a.iss = "hospital-b";
    refused(f.request(a), "unknown_client", OAuthError::kInvalidClient);
    Fixture::Assertion c;
    auto form = Fixture::form(f.assertion(c));
    form.emplace_back("client_id", "hospital-b");
    refused(f.service->issue(form, kTokenUrl), "wrong_issuer", OAuthError::kInvalidClient);
  }
  SECTION("missing jti") {
    const std::string claims = R"({"iss":"hospital-a","sub":"hospital-a","aud":")" + std::string(kTokenUrl) +
                               R"(","exp":)" + std::to_string(f.clock.seconds() + 60) + "}";
    const std::string jwt = t::sign_jws(t::shared_ec(), R"({"alg":"ES384","kid":"ec-1"})", claims);
    refused(f.service->issue(Fixture::form(jwt), kTokenUrl), "missing_jti", OAuthError::kInvalidClient);
  }
  SECTION("malformed JWS strings") {
    for (const std::string& jwt : {std::string("abc.def"), std::string("a*b.c.d"), std::string("..."),
                                  std::string(20000, 'A') + ".e.f", std::string()}) {
      refused(f.service->issue(Fixture::form(jwt), kTokenUrl), "bad_jws", OAuthError::kInvalidClient);
    }
  }
}

TEST_CASE("token service refuses bad requests and scopes", "[auth]") {
  Fixture f;
  const std::string jwt = f.assertion({});
  SECTION("a scope outside the grant") {
    refused(f.service->issue(Fixture::form(jwt, "system/Observation.cruds"), kTokenUrl), "invalid_scope",
            OAuthError::kInvalidScope);
    refused(f.service->issue(Fixture::form(f.assertion({}), "system/Condition.rs"), kTokenUrl), "invalid_scope",
            OAuthError::kInvalidScope);
    refused(f.service->issue(Fixture::form(f.assertion({}), "system/*.rs"), kTokenUrl), "invalid_scope",
            OAuthError::kInvalidScope);
  }
  SECTION("not a system scope") {
    for (const char* scope : {"patient/Observation.rs", "system/Observation.sr", "launch", "system/Observation.rs?x=1",
                              "system/Observation.rs  system/Patient.rs", ""}) {
      refused(f.service->issue(Fixture::form(f.assertion({}), scope), kTokenUrl), "bad_scope",
              OAuthError::kInvalidScope);
    }
  }
  SECTION("grant type, assertion type, missing and duplicate parameters") {
    auto form = Fixture::form(jwt);
    form[0].second = "authorization_code";
    refused(f.service->issue(form, kTokenUrl), "unsupported_grant_type", OAuthError::kUnsupportedGrantType);
    form = Fixture::form(jwt);
    form[2].second = "urn:ietf:params:oauth:client-assertion-type:saml2-bearer";
    refused(f.service->issue(form, kTokenUrl), "bad_assertion_type", OAuthError::kInvalidRequest);
    form = Fixture::form(jwt);
    form.erase(form.begin() + 3);
    refused(f.service->issue(form, kTokenUrl), "invalid_request", OAuthError::kInvalidRequest);
    form = Fixture::form(jwt);
    form.erase(form.begin() + 1);
    refused(f.service->issue(form, kTokenUrl), "invalid_request", OAuthError::kInvalidRequest);
    form = Fixture::form(jwt);
    form.push_back(form[1]);
    refused(f.service->issue(form, kTokenUrl), "invalid_request", OAuthError::kInvalidRequest);
  }
  CHECK(oauth_error_name(OAuthError::kInvalidClient) == "invalid_client");
  CHECK(oauth_error_name(OAuthError::kNone).empty());
}

TEST_CASE("access tokens expire and unknown tokens are refused", "[auth]") {
  Fixture f;
  auto token = f.request({});
  REQUIRE(token);
  f.clock.advance(std::chrono::seconds(299));
  CHECK(f.service->authenticate(token->access_token));
  f.clock.advance(std::chrono::seconds(1));
  auto expired = f.service->authenticate(token->access_token);
  REQUIRE_FALSE(expired);
  CHECK(expired.error().reason == "invalid_token");
  CHECK(expired.error().code == core::Code::kUnauthenticated);

  std::string changed = token->access_token;
  changed[5] = changed[5] == 'A' ? 'B' : 'A';
  for (const std::string& bad : {changed, std::string(), std::string("Bearer x"), token->access_token + "A",
                                 std::string(43, '=')}) {
    CHECK(f.service->authenticate(bad).error().reason == "invalid_token");
  }
}

TEST_CASE("API tokens authenticate until revoked or expired", "[auth]") {
  Fixture f;
  auto token = f.service->create_api_token("dr-research", "research", "system/Observation.rs");
  REQUIRE(token);
  f.clock.advance(std::chrono::hours(24 * 365));
  auto grant = f.service->authenticate(*token);
  REQUIRE(grant);
  CHECK(grant->kind == Grant::Kind::kApiToken);
  CHECK(grant->client_id == "dr-research");
  CHECK(grant->role == "research");
  CHECK_FALSE(grant->expires);
  CHECK(grant->allows("Observation", 'r'));

  auto timed = f.service->create_api_token("ops", "operator", "system/*.cruds", std::chrono::seconds(60));
  REQUIRE(timed);
  CHECK(f.service->authenticate(*timed)->allows("Device", 'u'));
  f.clock.advance(std::chrono::seconds(60));
  CHECK(f.service->authenticate(*timed).error().reason == "invalid_token");

  CHECK(f.service->revoke_api_tokens("dr-research").value() == 1);
  CHECK(f.service->authenticate(*token).error().reason == "invalid_token");
  CHECK(f.service->create_api_token("x", "", "system/Observation.rs").error().reason == "bad_client");
  CHECK(f.service->create_api_token("x", "research", "openid").error().reason == "bad_scope");
  for (const char* role : {"researcher", "hospital", "Operator", "admin"})
    CHECK(f.service->create_api_token("x", role, "system/Observation.rs").error().reason == "bad_role");
  for (const char* role : {"care", "research", "enrolment", "operator"})
    CHECK(f.service->create_api_token("x", role, "system/Observation.rs"));
}

TEST_CASE("tokens are stored hashed, never in the SQLite file", "[auth]") {
  std::vector<std::string> tokens;
  testing::TempDir keep;
  {
    Fixture f;
    for (int i = 0; i < 3; ++i) {
      auto t1 = f.request({});
      REQUIRE(t1);
      tokens.push_back(t1->access_token);
    }
    auto api = f.service->create_api_token("ops", "operator", "system/Patient.r");
    REQUIRE(api);
    tokens.push_back(*api);
    std::string bytes;
    for (const auto& entry : std::filesystem::directory_iterator(f.dir.path())) bytes += file_bytes(entry.path());
    REQUIRE(bytes.size() > 1000);
    CHECK(bytes.find("hospital-a") != std::string::npos);  // the file is readable as such
    for (const auto& token : tokens) {
      CHECK(bytes.find(token) == std::string::npos);
      CHECK(bytes.find(token.substr(0, 16)) == std::string::npos);
    }
    // Closing the service checkpoints the WAL into the main file; check that too.
    const auto path = f.dir.path() / "auth.db";
    f.service.reset();
    const std::string main = file_bytes(path);
    for (const auto& token : tokens) CHECK(main.find(token) == std::string::npos);
  }
}

TEST_CASE("client registration checks its inputs", "[auth]") {
  Fixture f;
  const std::string ec = t::jwk_json(t::shared_ec(), "k");
  SECTION("RSA key below 3072 bits") {
    auto r = f.service->register_client(
        {"hospital-b", t::jwks_json({t::jwk_json(t::rsa_key(2048), "small")}), "system/Observation.rs", "care", ""});
    REQUIRE_FALSE(r);
    CHECK(r.error().reason == "weak_key");
  }
  SECTION("duplicate client, bad scopes, missing role") {
    CHECK(f.service->register_client({"hospital-a", t::jwks_json({ec}), "system/Observation.rs", "care", ""})
              .error()
              .reason == "client_exists");
    CHECK(f.service->register_client({"hospital-b", t::jwks_json({ec}), "user/Observation.rs", "care", ""})
              .error()
              .reason == "bad_scope");
    CHECK(f.service->register_client({"hospital-b", t::jwks_json({ec}), "system/Observation.rs", "", ""})
              .error()
              .reason == "bad_client");
    for (const char* role : {"hospital", "researcher", "CARE", "care "}) {
      auto r = f.service->register_client({"hospital-b", t::jwks_json({ec}), "system/Observation.rs", role, ""});
      REQUIRE_FALSE(r);
      CHECK(r.error().code == core::Code::kInvalidArgument);
      CHECK(r.error().reason == "bad_role");
    }
  }
  SECTION("key rotation: the new key works, the old one no longer does") {
    const auto fresh = t::ec_key();
    REQUIRE(f.service->update_client_keys("hospital-a", t::jwks_json({t::jwk_json(fresh, "ec-2")})));
    Fixture::Assertion a;
    refused(f.request(a), "unregistered_key", OAuthError::kInvalidClient);
    a.kid = "ec-2";
    CHECK(f.request(a, "system/Observation.rs", &fresh));
    CHECK(f.service->update_client_keys("nobody", t::jwks_json({ec})).error().reason == "unknown_client");
  }
}
