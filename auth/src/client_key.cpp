// Client key generation and assertion signing (see client_key.h). OpenSSL 3 EVP APIs only.
// Independent of tests/auth/test_signer.h on purpose: the tests sign with both and verify with
// jwt.cpp, so a shared mistake would have to be made twice.
#include "telehub/auth/client_key.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <array>
#include <cstdio>
#include <memory>

#include "telehub/auth/jwt.h"
#include "telehub/core/bytes.h"

namespace telehub::auth {
namespace {

using core::Code;

constexpr int kRsaBits = 3072;
constexpr std::size_t kP384Size = 48;  // bytes of one coordinate, and of R and of S
constexpr std::size_t kMaxPemSize = 64 * 1024;

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using Bio = std::unique_ptr<BIO, BioFree>;
struct BnFree {
  void operator()(BIGNUM* b) const { BN_free(b); }
};
using Bn = std::unique_ptr<BIGNUM, BnFree>;
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
struct SigFree {
  void operator()(ECDSA_SIG* s) const { ECDSA_SIG_free(s); }
};

tl::unexpected<core::Error> crypto_error(std::string message) {
  return core::fail(Code::kInternal, "crypto", std::move(message));
}
tl::unexpected<core::Error> bad_key(std::string message) {
  return core::fail(Code::kInvalidArgument, "bad_key", std::move(message));
}

// Never prompts for a passphrase: an encrypted PEM simply fails to load.
int no_passphrase(char*, int, int, void*) { return 0; }

// A JSON string literal (RFC 8259 section 7) of `text`.
std::string json_string(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string b64(std::string_view text) { return base64url_encode(core::as_bytes(text)); }

// A key parameter as base64url of its big-endian bytes, left-padded to `pad` bytes when > 0.
Result<std::string> bn_param(const EVP_PKEY* key, const char* name, std::size_t pad = 0) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &raw) != 1) return crypto_error("cannot read a key parameter");
  const Bn bn(raw);
  const std::size_t size = pad > 0 ? pad : static_cast<std::size_t>(BN_num_bytes(bn.get()));
  core::Bytes out(size);
  if (BN_bn2binpad(bn.get(), out.data(), static_cast<int>(out.size())) < 0)
    return crypto_error("key parameter too large");
  return base64url_encode(out);
}

// The key if it is one telehub accepts for client authentication (P-384 EC, or RSA of
// kMinRsaBits..kMaxRsaBits bits, as parse_jwks() requires), else bad_key.
Result<ClientKeyType> key_type(const EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "EC")) {
    char group[64] = {};
    std::size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) != 1 ||
        std::string_view(group, len) != "secp384r1")
      return bad_key("EC key is not on P-384");
    return ClientKeyType::kEs384;
  }
  if (EVP_PKEY_is_a(key, "RSA")) {
    const int bits = EVP_PKEY_get_bits(key);
    if (bits < kMinRsaBits || bits > kMaxRsaBits) return bad_key("RSA key must have 3072 to 8192 bits");
    return ClientKeyType::kRs384;
  }
  return bad_key("key is neither RSA nor EC P-384");
}

Result<Pkey> load_private_key(std::string_view pem) {
  if (pem.empty() || pem.size() > kMaxPemSize) return bad_key("private key PEM is empty or too large");
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return crypto_error("cannot allocate a BIO");
  Pkey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
  if (!key) return bad_key("not an unencrypted PEM private key");
  auto type = key_type(key.get());
  if (!type) return tl::unexpected(type.error());
  return key;
}

// Public JWK members of `key` in RFC 7638 lexicographic order, without kid/alg/use: the
// thumbprint input.
Result<std::string> required_members(const EVP_PKEY* key, ClientKeyType type) {
  if (type == ClientKeyType::kEs384) {
    auto x = bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, kP384Size);
    auto y = bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, kP384Size);
    if (!x || !y) return crypto_error("cannot read the EC public point");
    return R"({"crv":"P-384","kty":"EC","x":")" + *x + R"(","y":")" + *y + R"("})";
  }
  auto n = bn_param(key, OSSL_PKEY_PARAM_RSA_N);
  auto e = bn_param(key, OSSL_PKEY_PARAM_RSA_E);
  if (!n || !e) return crypto_error("cannot read the RSA public key");
  return R"({"e":")" + *e + R"(","kty":"RSA","n":")" + *n + R"("})";
}

Result<ClientKey> describe(const EVP_PKEY* key, std::string private_key_pem) {
  auto type = key_type(key);
  if (!type) return tl::unexpected(type.error());
  auto members = required_members(key, *type);
  if (!members) return tl::unexpected(members.error());
  // RFC 7638 section 3: SHA-256 over the required members, no whitespace, sorted names.
  std::array<std::uint8_t, 32> digest{};
  unsigned int len = 0;
  if (EVP_Digest(members->data(), members->size(), digest.data(), &len, EVP_sha256(), nullptr) != 1)
    return crypto_error("SHA-256 failed");
  ClientKey out;
  out.private_key_pem = std::move(private_key_pem);
  out.kid = base64url_encode(digest);
  out.alg = *type == ClientKeyType::kEs384 ? "ES384" : "RS384";
  // The JWK: the required members plus kid, alg and use (RFC 7517 section 4).
  std::string jwk = *members;
  jwk.pop_back();
  jwk += R"(,"kid":")" + out.kid + R"(","alg":")" + out.alg + R"(","use":"sig"})";
  out.jwks_json = R"({"keys":[)" + jwk + "]}";
  return out;
}

Result<std::string> private_pem(const EVP_PKEY* key) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio) return crypto_error("cannot allocate a BIO");
  // PEM_write_bio_PrivateKey writes PKCS#8 ("BEGIN PRIVATE KEY").
  if (PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1)
    return crypto_error("cannot write the private key");
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  if (n <= 0 || !data) return crypto_error("cannot write the private key");
  std::string pem(data, static_cast<std::size_t>(n));
  OPENSSL_cleanse(data, static_cast<std::size_t>(n));
  return pem;
}

// SHA-384 signature of `input`: RSASSA-PKCS1-v1_5 for RSA (RFC 7518 section 3.3), R || S for
// ECDSA (section 3.4; OpenSSL gives DER).
Result<core::Bytes> sign384(EVP_PKEY* key, ClientKeyType type, std::string_view input) {
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx) return crypto_error("cannot allocate a digest context");
  const auto* in = reinterpret_cast<const unsigned char*>(input.data());
  std::size_t len = 0;
  if (EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha384(), nullptr, key) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, in, input.size()) != 1)
    return crypto_error("cannot start signing");
  core::Bytes sig(len);
  if (EVP_DigestSign(ctx.get(), sig.data(), &len, in, input.size()) != 1) return crypto_error("signing failed");
  sig.resize(len);
  if (type == ClientKeyType::kRs384) return sig;
  const unsigned char* p = sig.data();
  std::unique_ptr<ECDSA_SIG, SigFree> der(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size())));
  if (!der) return crypto_error("cannot decode the ECDSA signature");
  core::Bytes raw(2 * kP384Size);
  if (BN_bn2binpad(ECDSA_SIG_get0_r(der.get()), raw.data(), static_cast<int>(kP384Size)) < 0 ||
      BN_bn2binpad(ECDSA_SIG_get0_s(der.get()), raw.data() + kP384Size, static_cast<int>(kP384Size)) < 0)
    return crypto_error("ECDSA signature out of range");
  return raw;
}

}  // namespace

Result<ClientKey> generate_client_key(ClientKeyType type) {
  Pkey key(type == ClientKeyType::kEs384
               ? EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384")
               : EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<std::size_t>(kRsaBits)));
  if (!key) return crypto_error("key generation failed");
  auto pem = private_pem(key.get());
  if (!pem) return tl::unexpected(pem.error());
  return describe(key.get(), std::move(*pem));
}

Result<ClientKey> client_key_from_pem(std::string_view private_key_pem) {
  auto key = load_private_key(private_key_pem);
  if (!key) return tl::unexpected(key.error());
  return describe(key->get(), std::string(private_key_pem));
}

Result<std::string> sign_assertion(std::string_view private_key_pem, const AssertionClaims& claims,
                                   core::TimePoint now) {
  if (claims.client_id.empty() || claims.token_url.empty() || claims.lifetime.count() <= 0)
    return core::fail(Code::kInvalidArgument, "bad_assertion", "client id, token URL or lifetime missing");
  auto key = load_private_key(private_key_pem);
  if (!key) return tl::unexpected(key.error());
  auto described = describe(key->get(), {});
  if (!described) return tl::unexpected(described.error());
  const ClientKeyType type = described->alg == "ES384" ? ClientKeyType::kEs384 : ClientKeyType::kRs384;

  std::string jti = claims.jti;
  if (jti.empty()) {
    auto bytes = core::random_bytes(16);
    if (!bytes) return tl::unexpected(bytes.error());
    jti = base64url_encode(*bytes);
  }
  const std::int64_t now_s = core::to_unix_millis(now) / 1000;
  const std::int64_t exp_s = now_s + claims.lifetime.count();
  const std::string header =
      R"({"alg":")" + described->alg + R"(","kid":")" + described->kid + R"(","typ":"JWT"})";
  const std::string payload = R"({"iss":)" + json_string(claims.client_id) + R"(,"sub":)" +
                              json_string(claims.client_id) + R"(,"aud":)" + json_string(claims.token_url) +
                              R"(,"exp":)" + std::to_string(exp_s) + R"(,"iat":)" + std::to_string(now_s) +
                              R"(,"jti":)" + json_string(jti) + "}";
  const std::string input = b64(header) + "." + b64(payload);
  auto sig = sign384(key->get(), type, input);
  if (!sig) return tl::unexpected(sig.error());
  return input + "." + base64url_encode(*sig);
}

}  // namespace telehub::auth
