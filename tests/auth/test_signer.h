// Test-only JWS signing for the auth tests: key generation with OpenSSL, a JWK Set built from
// the public keys, and compact JWS signing with RS384, ES384 (DER converted to R || S,
// RFC 7518 section 3.4) or HS256 (for the key-confusion test). The hub never signs.
#pragma once

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include "telehub/auth/jwt.h"
#include "telehub/core/bytes.h"

namespace telehub::auth::test {

using Pkey = std::shared_ptr<EVP_PKEY>;

inline Pkey rsa_key(unsigned bits) {
  Pkey k(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(bits)), EVP_PKEY_free);
  if (!k) throw std::runtime_error("RSA keygen failed");
  return k;
}

inline Pkey ec_key(const char* curve = "P-384") {
  Pkey k(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve), EVP_PKEY_free);
  if (!k) throw std::runtime_error("EC keygen failed");
  return k;
}

// One process-wide key of each kind (RSA-3072 generation takes a while).
inline const Pkey& shared_rsa() {
  static const Pkey k = rsa_key(3072);
  return k;
}
inline const Pkey& shared_ec() {
  static const Pkey k = ec_key();
  return k;
}

inline std::string b64(std::string_view s) { return base64url_encode(core::as_bytes(s)); }

inline std::string bn_param(EVP_PKEY* k, const char* name, int pad = 0) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(k, name, &bn) != 1) throw std::runtime_error("no such key parameter");
  core::Bytes out(static_cast<std::size_t>(pad > 0 ? pad : BN_num_bytes(bn)));
  BN_bn2binpad(bn, out.data(), static_cast<int>(out.size()));
  BN_free(bn);
  return base64url_encode(out);
}

// The public JWK of `k` (RSA or P-384) as JSON.
inline std::string jwk_json(const Pkey& k, std::string_view kid) {
  if (EVP_PKEY_is_a(k.get(), "RSA")) {
    return R"({"kty":"RSA","kid":")" + std::string(kid) + R"(","alg":"RS384","use":"sig","n":")" +
           bn_param(k.get(), OSSL_PKEY_PARAM_RSA_N) + R"(","e":")" + bn_param(k.get(), OSSL_PKEY_PARAM_RSA_E) +
           R"("})";
  }
  return R"({"kty":"EC","kid":")" + std::string(kid) + R"(","crv":"P-384","x":")" +
         bn_param(k.get(), OSSL_PKEY_PARAM_EC_PUB_X, 48) + R"(","y":")" +
         bn_param(k.get(), OSSL_PKEY_PARAM_EC_PUB_Y, 48) + R"("})";
}

inline std::string jwks_json(std::initializer_list<std::string> keys) {
  std::string out = R"({"keys":[)";
  bool first = true;
  for (const auto& k : keys) {
    if (!first) out += ',';
    out += k;
    first = false;
  }
  return out + "]}";
}

// Signs `input` with SHA-384 and returns the JWS signature bytes (R || S for EC).
inline core::Bytes sign384(const Pkey& k, std::string_view input) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  size_t len = 0;
  if (EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha384(), nullptr, k.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1)
    throw std::runtime_error("sign init failed");
  core::Bytes sig(len);
  if (EVP_DigestSign(ctx.get(), sig.data(), &len, reinterpret_cast<const unsigned char*>(input.data()),
                     input.size()) != 1)
    throw std::runtime_error("sign failed");
  sig.resize(len);
  if (!EVP_PKEY_is_a(k.get(), "EC")) return sig;
  const unsigned char* p = sig.data();
  ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
  core::Bytes raw(96);
  BN_bn2binpad(ECDSA_SIG_get0_r(es), raw.data(), 48);
  BN_bn2binpad(ECDSA_SIG_get0_s(es), raw.data() + 48, 48);
  ECDSA_SIG_free(es);
  return raw;
}

// A compact JWS of header and claims JSON signed with `k` (RS384 or ES384 as `alg` says).
inline std::string sign_jws(const Pkey& k, const std::string& header_json, const std::string& claims_json) {
  const std::string input = b64(header_json) + "." + b64(claims_json);
  return input + "." + base64url_encode(sign384(k, input));
}

// HS256 over the input with `secret` as the HMAC key (key-confusion attempts).
inline std::string sign_hs256(std::string_view secret, const std::string& header_json, const std::string& claims_json) {
  const std::string input = b64(header_json) + "." + b64(claims_json);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), reinterpret_cast<const unsigned char*>(input.data()),
       input.size(), mac, &len);
  return input + "." + base64url_encode(std::span<const std::uint8_t>(mac, len));
}

// The SubjectPublicKeyInfo PEM of `k`: what an attacker would use as the HMAC secret.
inline std::string public_pem(const Pkey& k) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  PEM_write_bio_PUBKEY(bio.get(), k.get());
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

}  // namespace telehub::auth::test
