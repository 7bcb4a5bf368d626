// The client side (client_key.h) against the server side (jwt.cpp, token_service.cpp). The
// test-only signer (test_signer.h) is used only to make keys the client side must refuse and to
// recompute a thumbprint independently.
#include <catch2/catch.hpp>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "telehub/auth/client_key.h"
#include "telehub/auth/jwt.h"
#include "telehub/auth/token_service.h"
#include "test_signer.h"
#include "test_support.h"

using namespace telehub;
using namespace telehub::auth;
namespace t = telehub::auth::test;

namespace {

constexpr const char* kTokenUrl = "https://hub.example/auth/token";

class FixedClock final : public core::Clock {
 public:
  core::TimePoint now() const override { return now_; }

 private:
  core::TimePoint now_ = core::from_unix_millis(1'795'860'000'000);
};

struct Service {
  testing::TempDir dir;
  FixedClock clock;
  std::unique_ptr<TokenService> service;

  Service() {
    auto s = TokenService::open(dir.path() / "auth.db", clock);
    REQUIRE(s);
    service = std::move(*s);
  }

  Result<IssuedToken> request(const std::string& assertion, const std::string& scope = "system/Observation.rs") {
    const FormParams form{{"grant_type", "client_credentials"},
                          {"scope", scope},
                          {"client_assertion_type", std::string(kJwtBearerAssertionType)},
                          {"client_assertion", assertion}};
    return service->issue(form, kTokenUrl);
  }
};

AssertionClaims claims_for(std::string client_id) {
  AssertionClaims c;
  c.client_id = std::move(client_id);
  c.token_url = kTokenUrl;
  return c;
}

std::string private_pem(const t::Pkey& k) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  PEM_write_bio_PrivateKey(bio.get(), k.get(), nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

// Registers `key` as client `id`, gets a token with an assertion from sign_assertion().
void round_trip(const ClientKey& key, const std::string& id) {
  Service s;
  REQUIRE(s.service->register_client({id, key.jwks_json, "system/Observation.rs system/Patient.rs", "care", "org-a"}));
  auto jws = sign_assertion(key.private_key_pem, claims_for(id), s.clock.now());
  REQUIRE(jws);
  auto parsed = parse_jws(*jws);
  REQUIRE(parsed);
  CHECK(parsed->header.alg == key.alg);
  CHECK(parsed->header.kid == key.kid);
  CHECK(parsed->header.typ == "JWT");
  CHECK(parsed->claims.iss == id);
  CHECK(parsed->claims.sub == id);
  CHECK(parsed->claims.aud == std::vector<std::string>{kTokenUrl});
  const std::int64_t now_s = core::to_unix_millis(s.clock.now()) / 1000;
  CHECK(parsed->claims.exp == now_s + 240);
  CHECK(parsed->claims.iat == now_s);
  CHECK(parsed->claims.jti.size() == 22);  // 16 random bytes, base64url

  auto token = s.request(*jws, "system/Observation.rs system/Patient.rs");
  REQUIRE(token);
  auto grant = s.service->authenticate(token->access_token);
  REQUIRE(grant);
  CHECK(grant->client_id == id);
  CHECK(grant->role == "care");
  CHECK(grant->organisation == "org-a");
  // The same assertion again is a replay.
  auto again = s.request(*jws);
  REQUIRE_FALSE(again);
  CHECK(again.error().reason == "jti_reused");
  // A second assertion has its own jti.
  auto second = sign_assertion(key.private_key_pem, claims_for(id), s.clock.now());
  REQUIRE(second);
  CHECK(s.request(*second));
}

}  // namespace

TEST_CASE("an ES384 client key gets an access token from the token service", "[auth]") {
  auto key = generate_client_key();
  REQUIRE(key);
  CHECK(key->alg == "ES384");
  CHECK(key->private_key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
  CHECK(key->jwks_json.find("\"d\"") == std::string::npos);  // public members only
  auto jwks = parse_jwks(key->jwks_json);
  REQUIRE(jwks);
  REQUIRE(jwks->keys.size() == 1);
  CHECK(jwks->keys[0].kid() == key->kid);
  CHECK(jwks->keys[0].type() == KeyType::kEcP384);
  round_trip(*key, "hospital-es");
}

TEST_CASE("an RS384 client key gets an access token from the token service", "[auth]") {
  auto key = generate_client_key(ClientKeyType::kRs384);
  REQUIRE(key);
  CHECK(key->alg == "RS384");
  auto jwks = parse_jwks(key->jwks_json);
  REQUIRE(jwks);
  REQUIRE(jwks->keys.size() == 1);
  CHECK(jwks->keys[0].type() == KeyType::kRsa);
  CHECK(jwks->keys[0].bits() == 3072);
  round_trip(*key, "hospital-rs");
}

TEST_CASE("the kid is the RFC 7638 JWK thumbprint", "[auth]") {
  const auto& ec = t::shared_ec();
  auto key = client_key_from_pem(private_pem(ec));
  REQUIRE(key);
  // RFC 7638 section 3.2: the required members in lexicographic order, no whitespace.
  const std::string members = R"({"crv":"P-384","kty":"EC","x":")" + t::bn_param(ec.get(), OSSL_PKEY_PARAM_EC_PUB_X, 48) + R"(","y":")" +
                              t::bn_param(ec.get(), OSSL_PKEY_PARAM_EC_PUB_Y, 48) + R"("})";
  core::Bytes digest(32);
  unsigned int len = 0;
  REQUIRE(EVP_Digest(members.data(), members.size(), digest.data(), &len, EVP_sha256(), nullptr) == 1);
  CHECK(key->kid == base64url_encode(digest));
  CHECK(key->kid.size() == 43);

  const auto& rsa = t::shared_rsa();
  auto rkey = client_key_from_pem(private_pem(rsa));
  REQUIRE(rkey);
  const std::string rmembers =
      R"({"e":")" + t::bn_param(rsa.get(), OSSL_PKEY_PARAM_RSA_E) + R"(","kty":"RSA","n":")" + t::bn_param(rsa.get(), OSSL_PKEY_PARAM_RSA_N) + R"("})";
  REQUIRE(EVP_Digest(rmembers.data(), rmembers.size(), digest.data(), &len, EVP_sha256(), nullptr) == 1);
  CHECK(rkey->kid == base64url_encode(digest));
}

TEST_CASE("client_key_from_pem gives back the generated key", "[auth]") {
  for (const auto type : {ClientKeyType::kEs384, ClientKeyType::kRs384}) {
    auto key = generate_client_key(type);
    REQUIRE(key);
    auto again = client_key_from_pem(key->private_key_pem);
    REQUIRE(again);
    CHECK(again->private_key_pem == key->private_key_pem);
    CHECK(again->jwks_json == key->jwks_json);
    CHECK(again->kid == key->kid);
    CHECK(again->alg == key->alg);
  }
  // Two generated keys differ.
  auto a = generate_client_key();
  auto b = generate_client_key();
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->kid != b->kid);
}

TEST_CASE("weak or unsupported client keys are refused with bad_key", "[auth]") {
  for (const std::string& pem : {private_pem(t::rsa_key(2048)), private_pem(t::ec_key("P-256")),
                                 std::string("not a key"), std::string(),
                                 t::public_pem(t::shared_ec())}) {
    auto key = client_key_from_pem(pem);
    REQUIRE_FALSE(key);
    CHECK(key.error().code == core::Code::kInvalidArgument);
    CHECK(key.error().reason == "bad_key");
    auto jws = sign_assertion(pem, claims_for("c"), core::from_unix_millis(0));
    REQUIRE_FALSE(jws);
    CHECK(jws.error().reason == "bad_key");
  }
}

TEST_CASE("sign_assertion refuses empty claims", "[auth]") {
  auto key = generate_client_key();
  REQUIRE(key);
  AssertionClaims c = claims_for("");
  CHECK(sign_assertion(key->private_key_pem, c, core::from_unix_millis(0)).error().reason == "bad_assertion");
  c = claims_for("x");
  c.token_url.clear();
  CHECK(sign_assertion(key->private_key_pem, c, core::from_unix_millis(0)).error().reason == "bad_assertion");
  c = claims_for("x");
  c.lifetime = std::chrono::seconds(0);
  CHECK(sign_assertion(key->private_key_pem, c, core::from_unix_millis(0)).error().reason == "bad_assertion");
}

TEST_CASE("sign_assertion escapes claim text and keeps a given jti", "[auth]") {
  auto key = generate_client_key();
  REQUIRE(key);
  AssertionClaims c = claims_for("odd \"client\" \\ id");
  c.jti = "my-jti";
  c.lifetime = std::chrono::seconds(60);
  auto jws = sign_assertion(key->private_key_pem, c, core::from_unix_millis(1'000'500));
  REQUIRE(jws);
  auto parsed = parse_jws(*jws);
  REQUIRE(parsed);
  CHECK(parsed->claims.iss == "odd \"client\" \\ id");
  CHECK(parsed->claims.jti == "my-jti");
  CHECK(parsed->claims.iat == 1000);
  CHECK(parsed->claims.exp == 1060);
}

TEST_CASE("a tampered or foreign assertion is refused by the token service", "[auth]") {
  Service s;
  auto key = generate_client_key();
  REQUIRE(key);
  REQUIRE(s.service->register_client({"hospital-a", key->jwks_json, "system/Observation.rs", "care", "org-a"}));
  auto jws = sign_assertion(key->private_key_pem, claims_for("hospital-a"), s.clock.now());
  REQUIRE(jws);
  const std::size_t dot1 = jws->find('.');
  const std::size_t dot2 = jws->find('.', dot1 + 1);
  auto payload = base64url_decode(std::string_view(*jws).substr(dot1 + 1, dot2 - dot1 - 1));
  REQUIRE(payload);
  std::string claims(payload->begin(), payload->end());
  const std::size_t at = claims.find("\"exp\":");
  REQUIRE(at != std::string::npos);
  claims[at + 7] = claims[at + 7] == '1' ? '2' : '1';  // a different exp, same signature
  const std::string tampered =
      jws->substr(0, dot1 + 1) + base64url_encode(core::as_bytes(claims)) + jws->substr(dot2);
  auto r = s.request(tampered);
  REQUIRE_FALSE(r);
  CHECK(r.error().reason == "bad_signature");
  CHECK(oauth_error(r.error()) == OAuthError::kInvalidClient);

  // Signed by another key under the registered kid's client: the kid is not registered.
  auto other = generate_client_key();
  REQUIRE(other);
  auto foreign = sign_assertion(other->private_key_pem, claims_for("hospital-a"), s.clock.now());
  REQUIRE(foreign);
  auto f = s.request(*foreign);
  REQUIRE_FALSE(f);
  CHECK(f.error().reason == "unregistered_key");

  // The untouched assertion still works.
  CHECK(s.request(*jws));
}
