#include <catch2/catch.hpp>

#include "telehub/auth/jwt.h"
#include "test_signer.h"

using namespace telehub;
using namespace telehub::auth;
namespace t = telehub::auth::test;

namespace {

const std::string kHeaderRs = R"({"alg":"RS384","kid":"rsa-1","typ":"JWT"})";
const std::string kHeaderEs = R"({"alg":"ES384","kid":"ec-1","typ":"JWT"})";
const std::string kClaims =
    R"({"iss":"client-a","sub":"client-a","aud":"https://hub.example/auth/token","exp":1795860300,"jti":"j-1"})";

Jwks keys() {
  auto jwks = parse_jwks(t::jwks_json({t::jwk_json(t::shared_rsa(), "rsa-1"), t::jwk_json(t::shared_ec(), "ec-1")}));
  REQUIRE(jwks);
  return *jwks;
}

}  // namespace

TEST_CASE("base64url round-trips and is strict", "[auth]") {
  for (std::size_t n = 0; n < 40; ++n) {
    core::Bytes b(n);
    for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(i * 37 + 11);
    const std::string text = base64url_encode(b);
    CHECK(text.find('=') == std::string::npos);
    auto back = base64url_decode(text);
    REQUIRE(back);
    CHECK(*back == b);
  }
  CHECK(base64url_encode(core::as_bytes("\xfb\xff")) == "-_8");
  CHECK_FALSE(base64url_decode("YQ=="));  // padding
  CHECK_FALSE(base64url_decode("YQ+/"));  // standard alphabet
  CHECK_FALSE(base64url_decode("Y"));     // length 1 mod 4
  CHECK_FALSE(base64url_decode("YR"));    // non-zero unused bits: "YQ" is the canonical form
  CHECK_FALSE(base64url_decode("YQ "));
  CHECK(base64url_decode("YQ").value() == core::Bytes{'a'});
  CHECK(base64url_decode("YR").error().reason == "bad_base64url");
}

TEST_CASE("parse_jws reads header and claims", "[auth]") {
  const std::string jws_text = t::sign_jws(t::shared_ec(), kHeaderEs,
                                           R"({"iss":"a","sub":"b","aud":["x","y"],"exp":1.9e9,"iat":5,"nbf":6,"jti":"j"})");
  auto jws = parse_jws(jws_text);
  REQUIRE(jws);
  CHECK(jws->header.alg == "ES384");
  CHECK(jws->header.kid == "ec-1");
  CHECK(jws->header.typ == "JWT");
  CHECK(jws->claims.iss == "a");
  CHECK(jws->claims.sub == "b");
  CHECK(jws->claims.aud == std::vector<std::string>{"x", "y"});
  CHECK(jws->claims.exp == 1900000000);
  CHECK(jws->claims.iat == 5);
  CHECK(jws->claims.nbf == 6);
  CHECK(jws->claims.jti == "j");
  CHECK(jws->signature.size() == 96);
  CHECK(jws->signing_input == jws_text.substr(0, jws_text.rfind('.')));
}

TEST_CASE("parse_jws refuses malformed compact serialisations", "[auth]") {
  const std::string good = t::sign_jws(t::shared_ec(), kHeaderEs, kClaims);
  const auto p1 = good.find('.');
  const auto p2 = good.rfind('.');
  const std::string h = good.substr(0, p1);
  const std::string c = good.substr(p1 + 1, p2 - p1 - 1);
  const std::string s = good.substr(p2 + 1);
  REQUIRE(parse_jws(good));

  const auto refused = [](const std::string& text) {
    auto r = parse_jws(text);
    REQUIRE_FALSE(r);
    CHECK(r.error().reason == "bad_jws");
    CHECK(r.error().code == core::Code::kInvalidArgument);
    CHECK(r.error().message.find("client-a") == std::string::npos);
  };
  SECTION("two parts") { refused(h + "." + c); }
  SECTION("four or five parts (JWE)") {
    refused(good + "." + s);
    refused(good + "." + s + "." + s);
  }
  SECTION("empty signature (unsecured JWS)") { refused(h + "." + c + "."); }
  SECTION("empty header") { refused("." + c + "." + s); }
  SECTION("bad base64url") {
    refused(h + "=." + c + "." + s);
    refused(h + "." + c + "." + s + "+");
    refused("eyJ!." + c + "." + s);
  }
  SECTION("huge") { refused(h + "." + std::string(kMaxJwsSize, 'A') + "." + s); }
  SECTION("header is not an object or lacks alg") {
    refused(t::b64("[1]") + "." + c + "." + s);
    refused(t::b64(R"({"kid":"x"})") + "." + c + "." + s);
    refused(t::b64(R"({"alg":384})") + "." + c + "." + s);
    refused(t::b64(R"({"alg":"ES384","kid":5})") + "." + c + "." + s);
    refused(t::b64(R"({"alg":"ES384","alg":"none"})") + "." + c + "." + s);
    refused(t::b64(R"({"alg":"ES384","crit":["exp"]})") + "." + c + "." + s);
    refused(t::b64("{\"alg\":") + "." + c + "." + s);
  }
  SECTION("claims of the wrong type") {
    refused(h + "." + t::b64(R"({"exp":"soon"})") + "." + s);
    refused(h + "." + t::b64(R"({"exp":-1})") + "." + s);
    refused(h + "." + t::b64(R"({"exp":1e300})") + "." + s);
    refused(h + "." + t::b64(R"({"aud":5})") + "." + s);
    refused(h + "." + t::b64(R"({"aud":["a",5]})") + "." + s);
    refused(h + "." + t::b64(R"({"iss":["a"]})") + "." + s);
    refused(h + "." + t::b64(R"({"iss":"a","iss":"b"})") + "." + s);
    refused(h + "." + t::b64("\"text\"") + "." + s);
  }
}

TEST_CASE("verify accepts RS384 and ES384 signatures by the right key", "[auth]") {
  const Jwks jwks = keys();
  auto rs = parse_jws(t::sign_jws(t::shared_rsa(), kHeaderRs, kClaims));
  REQUIRE(rs);
  CHECK(verify(*rs, *jwks.find("rsa-1")));
  auto es = parse_jws(t::sign_jws(t::shared_ec(), kHeaderEs, kClaims));
  REQUIRE(es);
  CHECK(verify(*es, *jwks.find("ec-1")));

  SECTION("a changed claim breaks the signature") {
    Jws tampered = *rs;
    tampered.signing_input = t::b64(kHeaderRs) + "." + t::b64(R"({"iss":"client-b"})");
    CHECK(verify(tampered, *jwks.find("rsa-1")).error().reason == "bad_signature");
    Jws es_tampered = *es;
    es_tampered.signature[10] ^= 1;
    CHECK(verify(es_tampered, *jwks.find("ec-1")).error().reason == "bad_signature");
  }
  SECTION("a signature by another key of the same type") {
    const auto other = t::ec_key();
    auto forged = parse_jws(t::sign_jws(other, kHeaderEs, kClaims));
    REQUIRE(forged);
    CHECK(verify(*forged, *jwks.find("ec-1")).error().reason == "bad_signature");
  }
  SECTION("ES384 signature in DER instead of R || S") {
    Jws der = *es;
    der.signature.resize(102, 0);
    CHECK(verify(der, *jwks.find("ec-1")).error().reason == "bad_signature");
  }
}

TEST_CASE("verify refuses alg none, HS256 and an alg that does not fit the key", "[auth]") {
  const Jwks jwks = keys();
  SECTION("alg none with a made-up signature") {
    auto jws = parse_jws(t::b64(R"({"alg":"none","kid":"rsa-1"})") + "." + t::b64(kClaims) + ".AAAA");
    REQUIRE(jws);
    auto r = verify(*jws, *jwks.find("rsa-1"));
    CHECK(r.error().reason == "unsupported_alg");
    CHECK(r.error().code == core::Code::kUnauthenticated);
  }
  SECTION("key confusion: HS256 keyed with the public key PEM") {
    for (const auto* key : {&t::shared_rsa(), &t::shared_ec()}) {
      auto jws = parse_jws(t::sign_hs256(t::public_pem(*key), R"({"alg":"HS256","kid":"rsa-1"})", kClaims));
      REQUIRE(jws);
      CHECK(verify(*jws, *jwks.find("rsa-1")).error().reason == "unsupported_alg");
      CHECK(verify(*jws, *jwks.find("ec-1")).error().reason == "unsupported_alg");
    }
    // And with the JWK's own JSON as the secret.
    auto jws = parse_jws(t::sign_hs256(jwks.find("ec-1")->json(), R"({"alg":"HS384"})", kClaims));
    REQUIRE(jws);
    CHECK(verify(*jws, *jwks.find("ec-1")).error().reason == "unsupported_alg");
  }
  SECTION("RS256, PS384, ES256 are refused") {
    for (const char* alg : {"RS256", "PS384", "ES256", "EdDSA", "rs384"}) {
      auto jws = parse_jws(t::b64(std::string(R"({"alg":")") + alg + "\"}") + "." + t::b64(kClaims) + ".AAAA");
      REQUIRE(jws);
      CHECK(verify(*jws, *jwks.find("rsa-1")).error().reason == "unsupported_alg");
    }
  }
  SECTION("alg does not fit the key type") {
    auto rs = parse_jws(t::sign_jws(t::shared_rsa(), kHeaderRs, kClaims));
    REQUIRE(rs);
    CHECK(verify(*rs, *jwks.find("ec-1")).error().reason == "alg_mismatch");
    auto es = parse_jws(t::sign_jws(t::shared_ec(), kHeaderEs, kClaims));
    REQUIRE(es);
    CHECK(verify(*es, *jwks.find("rsa-1")).error().reason == "alg_mismatch");
  }
}

TEST_CASE("parse_jwks accepts RSA-3072 and P-384 keys", "[auth]") {
  const Jwks jwks = keys();
  REQUIRE(jwks.keys.size() == 2);
  CHECK(jwks.find("rsa-1")->type() == KeyType::kRsa);
  CHECK(jwks.find("rsa-1")->bits() == 3072);
  CHECK(jwks.find("ec-1")->type() == KeyType::kEcP384);
  CHECK(jwks.find("nope") == nullptr);
  // The canonical JSON holds only public members and parses again.
  CHECK(jwks.find("rsa-1")->json().find("\"use\"") == std::string::npos);
  CHECK(parse_jwks(t::jwks_json({jwks.find("rsa-1")->json()})));
}

TEST_CASE("parse_jwks refuses weak, unsupported and malformed keys", "[auth]") {
  const auto refused = [](const std::string& json, const char* reason) {
    auto r = parse_jwks(json);
    REQUIRE_FALSE(r);
    CHECK(r.error().reason == reason);
  };
  const std::string ec = t::jwk_json(t::shared_ec(), "ec-1");
  SECTION("RSA key below 3072 bits") {
    refused(t::jwks_json({t::jwk_json(t::rsa_key(2048), "small")}), "weak_key");
  }
  SECTION("another curve or key type") {
    refused(t::jwks_json({t::jwk_json(t::ec_key("P-256"), "p256")}), "bad_jwks");  // 32-byte coordinates
    std::string p256 = ec;
    p256.replace(p256.find("P-384"), 5, "P-256");
    refused(t::jwks_json({p256}), "unsupported_key");
    refused(R"({"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]})", "unsupported_key");
    refused(R"({"keys":[{"kty":"OKP","kid":"o","crv":"Ed25519","x":"AAAA"}]})", "unsupported_key");
  }
  SECTION("alg or use that does not fit") {
    std::string es256 = ec;
    es256.insert(1, R"("alg":"ES256",)");
    refused(t::jwks_json({es256}), "unsupported_key");
    std::string enc = ec;
    enc.insert(1, R"("use":"enc",)");
    refused(t::jwks_json({enc}), "unsupported_key");
  }
  SECTION("missing or duplicate kid, private members, bad structure") {
    std::string no_kid = ec;
    no_kid.replace(no_kid.find(R"("kid":"ec-1",)"), 13, "");
    refused(t::jwks_json({no_kid}), "bad_jwks");
    refused(t::jwks_json({ec, ec}), "bad_jwks");
    std::string with_d = ec;
    with_d.insert(1, R"("d":"AAAA",)");
    refused(t::jwks_json({with_d}), "bad_jwks");
    refused(R"({"keys":[]})", "bad_jwks");
    refused(R"({"keys":{}})", "bad_jwks");
    refused(R"([])", "bad_jwks");
    refused("not json", "bad_jwks");
  }
  SECTION("a point that is not on the curve") {
    std::string off = ec;
    const auto y = off.find(R"("y":")") + 5;
    off.replace(y, 4, off[y] == 'A' ? "BAAA" : "AAAA");
    refused(t::jwks_json({off}), "bad_jwks");
  }
}
