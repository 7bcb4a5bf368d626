#include "telehub/auth/jwt.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <array>
#include <cmath>
#include <set>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "telehub/envelope/json.h"

namespace telehub::auth {

// Sets a Jwk's private members (declared a friend in jwt.h).
struct JwkBuilder {
  static Jwk make(std::string kid, KeyType type, int bits, std::string json, std::shared_ptr<evp_pkey_st> pkey) {
    Jwk k;
    k.kid_ = std::move(kid);
    k.type_ = type;
    k.bits_ = bits;
    k.json_ = std::move(json);
    k.pkey_ = std::move(pkey);
    return k;
  }
};

namespace {

using core::Code;

constexpr std::int64_t kMaxNumericDate = 253402300799;  // 9999-12-31T23:59:59Z
constexpr std::size_t kP384CoordinateSize = 48;
constexpr std::size_t kMaxJwksSize = 256 * 1024;

constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int sextet(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

struct BnFree {
  void operator()(BIGNUM* b) const { BN_free(b); }
};
using Bn = std::unique_ptr<BIGNUM, BnFree>;
struct BldFree {
  void operator()(OSSL_PARAM_BLD* b) const { OSSL_PARAM_BLD_free(b); }
};
struct ParamFree {
  void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
};
using PkeyCtx = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
struct SigFree {
  void operator()(ECDSA_SIG* s) const { ECDSA_SIG_free(s); }
};

std::shared_ptr<evp_pkey_st> own(EVP_PKEY* p) { return std::shared_ptr<evp_pkey_st>(p, EVP_PKEY_free); }

tl::unexpected<core::Error> bad_jws(std::string message) {
  return core::fail(Code::kInvalidArgument, "bad_jws", std::move(message));
}
tl::unexpected<core::Error> bad_jwks(std::string message) {
  return core::fail(Code::kInvalidArgument, "bad_jwks", std::move(message));
}

// Refuses objects with a member name given twice (RFC 7515 section 5.2; RFC 7517 section 4).
bool has_duplicate_members(const rapidjson::Value& object) {
  std::set<std::string_view> seen;
  for (auto it = object.MemberBegin(); it != object.MemberEnd(); ++it) {
    if (!seen.emplace(it->name.GetString(), it->name.GetStringLength()).second) return true;
  }
  return false;
}

std::string_view view(const rapidjson::Value& v) { return {v.GetString(), v.GetStringLength()}; }

// Reads an optional string member into `out`. False when present but not a string.
bool optional_string(const rapidjson::Value& object, const char* name, std::string& out) {
  const auto it = object.FindMember(name);
  if (it == object.MemberEnd()) return true;
  if (!it->value.IsString()) return false;
  out.assign(it->value.GetString(), it->value.GetStringLength());
  return true;
}

// Reads an optional NumericDate (RFC 7519 section 2). False when present but not a number in
// 0..kMaxNumericDate.
bool optional_date(const rapidjson::Value& object, const char* name, std::optional<std::int64_t>& out) {
  const auto it = object.FindMember(name);
  if (it == object.MemberEnd()) return true;
  const auto& v = it->value;
  if (v.IsInt64()) {
    const std::int64_t s = v.GetInt64();
    if (s < 0 || s > kMaxNumericDate) return false;
    out = s;
    return true;
  }
  if (v.IsDouble()) {
    const double d = v.GetDouble();
    if (!std::isfinite(d) || d < 0 || d > static_cast<double>(kMaxNumericDate)) return false;
    out = static_cast<std::int64_t>(d);
    return true;
  }
  return false;
}

Result<rapidjson::Document> parse_object(std::string_view text, const char* what) {
  rapidjson::Document doc;
  if (!envelope::parse_json(text, doc)) return bad_jws(std::string(what) + ": not valid JSON");
  if (!doc.IsObject()) return bad_jws(std::string(what) + ": not a JSON object");
  if (has_duplicate_members(doc)) return bad_jws(std::string(what) + ": duplicate member name");
  return doc;
}

std::string text_of(const core::Bytes& b) { return std::string(b.begin(), b.end()); }

Result<core::Bytes> decode_member(const rapidjson::Value& key, const char* name) {
  const auto it = key.FindMember(name);
  if (it == key.MemberEnd() || !it->value.IsString())
    return bad_jwks(std::string("key member \"") + name + "\" missing or not a string");
  auto bytes = base64url_decode(view(it->value));
  if (!bytes || bytes->empty()) return bad_jwks(std::string("key member \"") + name + "\" is not base64url");
  return bytes;
}

Result<std::shared_ptr<evp_pkey_st>> from_params(const char* type, OSSL_PARAM_BLD* bld) {
  std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(bld));
  PkeyCtx ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) <= 0 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) <= 0) {
    ERR_clear_error();
    return bad_jwks("OpenSSL refused the public key");
  }
  auto pkey = own(raw);
  PkeyCtx check(EVP_PKEY_CTX_new_from_pkey(nullptr, raw, nullptr));
  if (!check || EVP_PKEY_public_check(check.get()) != 1) {
    ERR_clear_error();
    return bad_jwks("public key check failed");
  }
  return pkey;
}

std::string key_json(const rapidjson::Value& key, std::initializer_list<const char*> members) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  writer.StartObject();
  for (const char* name : members) {
    const auto it = key.FindMember(name);
    if (it == key.MemberEnd()) continue;
    writer.Key(name);
    writer.String(it->value.GetString(), it->value.GetStringLength());
  }
  writer.EndObject();
  return std::string(buffer.GetString(), buffer.GetSize());
}

Result<Jwk> rsa_key(const rapidjson::Value& key, std::string kid) {
  auto n = decode_member(key, "n");
  if (!n) return tl::unexpected(n.error());
  auto e = decode_member(key, "e");
  if (!e) return tl::unexpected(e.error());
  Bn bn_n(BN_bin2bn(n->data(), static_cast<int>(n->size()), nullptr));
  Bn bn_e(BN_bin2bn(e->data(), static_cast<int>(e->size()), nullptr));
  if (!bn_n || !bn_e) return core::fail(Code::kResourceExhausted, "bad_jwks", "out of memory");
  const int bits = BN_num_bits(bn_n.get());
  if (bits < kMinRsaBits || bits > kMaxRsaBits)
    return core::fail(Code::kInvalidArgument, "weak_key",
                      "RSA modulus of " + std::to_string(bits) + " bits; 3072 to 8192 required");
  if (e->size() > 8 || !BN_is_odd(bn_e.get()) || BN_num_bits(bn_e.get()) < 2)
    return bad_jwks("RSA exponent must be odd, at least 3 and at most 8 bytes");
  std::unique_ptr<OSSL_PARAM_BLD, BldFree> bld(OSSL_PARAM_BLD_new());
  if (!bld || !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()))
    return core::fail(Code::kResourceExhausted, "bad_jwks", "out of memory");
  auto pkey = from_params("RSA", bld.get());
  if (!pkey) return tl::unexpected(pkey.error());
  return JwkBuilder::make(std::move(kid), KeyType::kRsa, bits, key_json(key, {"kty", "kid", "n", "e"}),
                          std::move(*pkey));
}

Result<Jwk> ec_key(const rapidjson::Value& key, std::string kid) {
  const auto crv = key.FindMember("crv");
  if (crv == key.MemberEnd() || !crv->value.IsString()) return bad_jwks("EC key without crv");
  if (view(crv->value) != "P-384")
    return core::fail(Code::kInvalidArgument, "unsupported_key", "EC curve other than P-384");
  auto x = decode_member(key, "x");
  if (!x) return tl::unexpected(x.error());
  auto y = decode_member(key, "y");
  if (!y) return tl::unexpected(y.error());
  // RFC 7518 section 6.2.1.2: x and y are the full size of a coordinate.
  if (x->size() != kP384CoordinateSize || y->size() != kP384CoordinateSize)
    return bad_jwks("P-384 coordinates must be 48 bytes each");
  core::Bytes point{0x04};  // SEC 1 section 2.3.3, uncompressed
  point.insert(point.end(), x->begin(), x->end());
  point.insert(point.end(), y->begin(), y->end());
  std::unique_ptr<OSSL_PARAM_BLD, BldFree> bld(OSSL_PARAM_BLD_new());
  if (!bld || !OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "secp384r1", 0) ||
      !OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()))
    return core::fail(Code::kResourceExhausted, "bad_jwks", "out of memory");
  auto pkey = from_params("EC", bld.get());
  if (!pkey) return tl::unexpected(pkey.error());
  return JwkBuilder::make(std::move(kid), KeyType::kEcP384, 384, key_json(key, {"kty", "kid", "crv", "x", "y"}),
                          std::move(*pkey));
}

Result<Jwk> parse_key(const rapidjson::Value& key) {
  if (!key.IsObject()) return bad_jwks("a key is not a JSON object");
  if (has_duplicate_members(key)) return bad_jwks("a key has a duplicate member name");
  for (const char* priv : {"d", "p", "q", "dp", "dq", "qi", "oth"}) {
    if (key.HasMember(priv)) return bad_jwks("a key carries private key material");
  }
  const auto kty = key.FindMember("kty");
  if (kty == key.MemberEnd() || !kty->value.IsString()) return bad_jwks("a key has no kty");
  const auto kid = key.FindMember("kid");
  if (kid == key.MemberEnd() || !kid->value.IsString() || kid->value.GetStringLength() == 0)
    return bad_jwks("a key has no kid");
  std::string use;
  std::string alg;
  if (!optional_string(key, "use", use) || !optional_string(key, "alg", alg))
    return bad_jwks("a key has a non-string use or alg");
  if (key.HasMember("use") && use != "sig")
    return core::fail(Code::kInvalidArgument, "unsupported_key", "a key's use is not \"sig\"");
  const std::string_view type = view(kty->value);
  std::string id(kid->value.GetString(), kid->value.GetStringLength());
  if (type == "RSA") {
    if (key.HasMember("alg") && alg != "RS384")
      return core::fail(Code::kInvalidArgument, "unsupported_key", "an RSA key's alg is not RS384");
    return rsa_key(key, std::move(id));
  }
  if (type == "EC") {
    if (key.HasMember("alg") && alg != "ES384")
      return core::fail(Code::kInvalidArgument, "unsupported_key", "an EC key's alg is not ES384");
    return ec_key(key, std::move(id));
  }
  return core::fail(Code::kInvalidArgument, "unsupported_key", "key type other than RSA and EC");
}

Status verify_digest(EVP_PKEY* pkey, std::string_view input, std::span<const std::uint8_t> signature) {
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  const bool ok = ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha384(), nullptr, pkey) == 1 &&
                  EVP_DigestVerify(ctx.get(), signature.data(), signature.size(),
                                   reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
  ERR_clear_error();
  if (!ok) return core::fail(Code::kUnauthenticated, "bad_signature", "signature does not verify");
  return {};
}

// RFC 7518 section 3.4: R || S, each 48 bytes big-endian, to the DER ECDSA-Sig-Value OpenSSL
// verifies (RFC 3279 section 2.2.3).
Result<core::Bytes> raw_to_der(std::span<const std::uint8_t> raw) {
  std::unique_ptr<ECDSA_SIG, SigFree> sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(raw.data(), static_cast<int>(kP384CoordinateSize), nullptr);
  BIGNUM* s = BN_bin2bn(raw.data() + kP384CoordinateSize, static_cast<int>(kP384CoordinateSize), nullptr);
  if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return core::fail(Code::kResourceExhausted, "bad_signature", "out of memory");
  }
  const int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (len <= 0) return core::fail(Code::kInternal, "bad_signature", "cannot encode signature");
  core::Bytes der(static_cast<std::size_t>(len));
  unsigned char* out = der.data();
  i2d_ECDSA_SIG(sig.get(), &out);
  return der;
}

}  // namespace

std::string base64url_encode(std::span<const std::uint8_t> bytes) {
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t v = (std::uint32_t{bytes[i]} << 16) | (std::uint32_t{bytes[i + 1]} << 8) | bytes[i + 2];
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest == 1) {
    const std::uint32_t v = std::uint32_t{bytes[i]} << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
  } else if (rest == 2) {
    const std::uint32_t v = (std::uint32_t{bytes[i]} << 16) | (std::uint32_t{bytes[i + 1]} << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
  }
  return out;
}

Result<core::Bytes> base64url_decode(std::string_view text) {
  const auto bad = [] { return core::fail(Code::kInvalidArgument, "bad_base64url", "not unpadded base64url"); };
  if (text.size() % 4 == 1) return bad();
  core::Bytes out;
  out.reserve(text.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (const char c : text) {
    const int v = sextet(c);
    if (v < 0) return bad();
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<std::uint8_t>((acc >> bits) & 0xFF));
    }
  }
  // The leftover (2 or 4) bits must be zero, or two texts would decode to the same bytes.
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return bad();
  return out;
}

Result<Jws> parse_jws(std::string_view compact) {
  if (compact.size() > kMaxJwsSize) return bad_jws("JWS larger than 8 KiB");
  const std::size_t dot1 = compact.find('.');
  if (dot1 == std::string_view::npos) return bad_jws("JWS must have three parts");
  const std::size_t dot2 = compact.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || compact.find('.', dot2 + 1) != std::string_view::npos)
    return bad_jws("JWS must have three parts");
  const std::string_view parts[3] = {compact.substr(0, dot1), compact.substr(dot1 + 1, dot2 - dot1 - 1),
                                     compact.substr(dot2 + 1)};
  core::Bytes decoded[3];
  for (int i = 0; i < 3; ++i) {
    if (parts[i].empty()) return bad_jws("JWS part is empty");
    auto bytes = base64url_decode(parts[i]);
    if (!bytes) return bad_jws("JWS part is not base64url");
    decoded[i] = std::move(*bytes);
  }

  Jws jws;
  jws.header_json = text_of(decoded[0]);
  auto header = parse_object(jws.header_json, "JWS header");
  if (!header) return tl::unexpected(header.error());
  const rapidjson::Value& header_object = *header;
  const auto alg = header_object.FindMember("alg");
  if (alg == header_object.MemberEnd() || !alg->value.IsString() || alg->value.GetStringLength() == 0)
    return bad_jws("JWS header has no alg");
  jws.header.alg.assign(alg->value.GetString(), alg->value.GetStringLength());
  if (!optional_string(*header, "kid", jws.header.kid) || !optional_string(*header, "typ", jws.header.typ))
    return bad_jws("JWS header kid or typ is not a string");
  // RFC 7515 section 4.1.11: extensions listed in crit must be understood; none are.
  if (header->HasMember("crit")) return bad_jws("JWS header has crit");

  jws.claims.raw = text_of(decoded[1]);
  auto claims = parse_object(jws.claims.raw, "JWT claims");
  if (!claims) return tl::unexpected(claims.error());
  JwtClaims& c = jws.claims;
  if (!optional_string(*claims, "iss", c.iss) || !optional_string(*claims, "sub", c.sub) ||
      !optional_string(*claims, "jti", c.jti))
    return bad_jws("JWT iss, sub or jti is not a string");
  const rapidjson::Value& claims_object = *claims;
  if (const auto aud = claims_object.FindMember("aud"); aud != claims_object.MemberEnd()) {
    if (aud->value.IsString()) {
      c.aud.emplace_back(view(aud->value));
    } else if (aud->value.IsArray()) {
      for (const auto& v : aud->value.GetArray()) {
        if (!v.IsString()) return bad_jws("JWT aud array holds a non-string");
        c.aud.emplace_back(view(v));
      }
    } else {
      return bad_jws("JWT aud is neither a string nor an array");
    }
  }
  if (!optional_date(*claims, "exp", c.exp) || !optional_date(*claims, "iat", c.iat) ||
      !optional_date(*claims, "nbf", c.nbf))
    return bad_jws("JWT exp, iat or nbf is not a NumericDate");

  jws.signing_input = std::string(compact.substr(0, dot2));
  jws.signature = std::move(decoded[2]);
  return jws;
}

const Jwk* Jwks::find(std::string_view kid) const {
  for (const auto& k : keys) {
    if (k.kid() == kid) return &k;
  }
  return nullptr;
}

Result<Jwks> parse_jwks(std::string_view json) {
  if (json.size() > kMaxJwksSize) return bad_jwks("key set larger than 256 KiB");
  rapidjson::Document doc;
  if (!envelope::parse_json(json, doc)) return bad_jwks("key set is not valid JSON");
  if (!doc.IsObject() || has_duplicate_members(doc)) return bad_jwks("key set is not a JSON object");
  const rapidjson::Value& set = doc;
  const auto keys = set.FindMember("keys");
  if (keys == set.MemberEnd() || !keys->value.IsArray()) return bad_jwks("key set has no keys array");
  const auto& list = keys->value;
  if (list.Empty() || list.Size() > kMaxJwksKeys) return bad_jwks("key set must hold 1 to 32 keys");
  Jwks out;
  for (const auto& k : list.GetArray()) {
    auto key = parse_key(k);
    if (!key) return tl::unexpected(key.error());
    if (out.find(key->kid())) return bad_jwks("two keys share a kid");
    out.keys.push_back(std::move(*key));
  }
  return out;
}

Status verify(const Jws& jws, const Jwk& key) {
  const std::string& alg = jws.header.alg;
  if (alg != "RS384" && alg != "ES384")
    return core::fail(Code::kUnauthenticated, "unsupported_alg", "only RS384 and ES384 are accepted");
  if ((alg == "RS384") != (key.type() == KeyType::kRsa))
    return core::fail(Code::kUnauthenticated, "alg_mismatch", "alg does not fit the key type");
  if (key.type() == KeyType::kRsa) {
    if (jws.signature.size() != static_cast<std::size_t>(EVP_PKEY_get_size(key.pkey())))
      return core::fail(Code::kUnauthenticated, "bad_signature", "signature length does not fit the key");
    return verify_digest(key.pkey(), jws.signing_input, jws.signature);
  }
  if (jws.signature.size() != 2 * kP384CoordinateSize)
    return core::fail(Code::kUnauthenticated, "bad_signature", "ES384 signature must be 96 bytes");
  auto der = raw_to_der(jws.signature);
  if (!der) return tl::unexpected(der.error());
  return verify_digest(key.pkey(), jws.signing_input, *der);
}

}  // namespace telehub::auth
