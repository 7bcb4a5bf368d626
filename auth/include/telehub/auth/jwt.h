// JSON Web Signatures for SMART Backend Services client authentication: parsing a compact
// JWS (RFC 7515 section 7.1) carrying a JWT (RFC 7519), parsing a client's public key set
// (JWK Set, RFC 7517 section 5), and verifying the signature with RS384 or ES384 only
// (RFC 7518 sections 3.3 and 3.4), the two algorithms SMART Backend Services requires
// servers to support (https://hl7.org/fhir/smart-app-launch/backend-services.html).
//
// Deliberately small: no JWE, no JSON serialisation, no "crit" extensions, no symmetric
// algorithms. alg "none" and every HS* algorithm are refused, so a token "signed" with a
// public key used as an HMAC secret (key confusion) never verifies. The algorithm must match
// the key type: RS384 only with an RSA key, ES384 only with a P-384 EC key.
//
// Limits: a compact JWS is at most kMaxJwsSize bytes; header and claims are parsed with
// envelope::parse_json (strict RFC 8259, nesting depth limit, valid UTF-8) and must be JSON
// objects without duplicate member names (RFC 7515 section 5.2 allows refusing them).
//
// Error policy: Result, never throws. Reasons: bad_jws (malformed compact JWS, header or
// claims), bad_jwks (malformed key set or key), weak_key (RSA modulus below kMinRsaBits),
// unsupported_key (key type, curve or alg this module does not verify with),
// unsupported_alg (a JWS alg other than RS384/ES384), alg_mismatch (alg does not fit the key),
// bad_signature. Codes: invalid_argument for parse failures, unauthenticated for
// verification failures. Messages never quote the token, a claim value or key material.
//
// Thread-safety: the free functions are stateless. A Jwk is immutable and may be shared
// between threads (OpenSSL public keys are safe for concurrent verification).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "telehub/core/bytes.h"
#include "telehub/core/error.h"

struct evp_pkey_st;  // OpenSSL's EVP_PKEY; OpenSSL stays private to this module.

namespace telehub::auth {

// Largest compact JWS parse_jws() accepts, in bytes.
inline constexpr std::size_t kMaxJwsSize = 8 * 1024;
// Smallest RSA modulus a registered key may have (NIST SP 800-57 Part 1, 128-bit security).
inline constexpr int kMinRsaBits = 3072;
// Largest RSA modulus accepted (bounds the cost of one verification).
inline constexpr int kMaxRsaBits = 8192;
// Largest number of keys in one JWK Set.
inline constexpr std::size_t kMaxJwksKeys = 32;

// base64url without padding (RFC 4648 section 5; RFC 7515 section 2 "Base64url Encoding").
std::string base64url_encode(std::span<const std::uint8_t> bytes);
// Strict: only the base64url alphabet, no '=' padding, no whitespace, a length that is not
// 1 mod 4, and zero bits in the unused low bits of the last character, so every accepted
// text is the one base64url_encode() gives back. Fails with invalid_argument/bad_base64url.
[[nodiscard]] Result<core::Bytes> base64url_decode(std::string_view text);

// The JOSE header members this module reads (RFC 7515 section 4.1).
struct JwsHeader {
  std::string alg;  // required, as written ("RS384", "ES384", or anything verify() refuses)
  std::string kid;  // empty when absent
  std::string typ;  // empty when absent
};

// The registered claims this module reads (RFC 7519 section 4.1). NumericDate values are
// whole seconds since the epoch (a fraction is truncated); a value outside 0..253402300799
// (year 9999) is refused by parse_jws().
struct JwtClaims {
  std::string iss;                   // empty when absent
  std::string sub;                   // empty when absent
  std::vector<std::string> aud;      // a string aud becomes a one-element list
  std::optional<std::int64_t> exp;
  std::optional<std::int64_t> iat;
  std::optional<std::int64_t> nbf;
  std::string jti;                   // empty when absent
  std::string raw;                   // the decoded claims JSON text
};

struct Jws {
  JwsHeader header;
  std::string header_json;    // the decoded header JSON text
  JwtClaims claims;
  std::string signing_input;  // ASCII(BASE64URL(header) || '.' || BASE64URL(payload))
  core::Bytes signature;      // the decoded signature, never empty
};

// Parses a compact JWS: exactly three non-empty base64url parts separated by '.'. The header
// must be a JSON object with a string "alg" and no "crit"; kid and typ, when present, must be
// strings. The payload must be a JSON object; iss, sub and jti must be strings, aud a string
// or an array of strings, exp/iat/nbf numbers. Does not verify anything.
// Fails with invalid_argument/bad_jws (size, structure, base64url, JSON or member types).
[[nodiscard]] Result<Jws> parse_jws(std::string_view compact);

enum class KeyType { kRsa, kEcP384 };

// One public verification key from a JWK Set. Copies share the OpenSSL key.
class Jwk {
 public:
  const std::string& kid() const { return kid_; }
  KeyType type() const { return type_; }
  // RSA modulus size, or 384 for P-384.
  int bits() const { return bits_; }
  // The key's canonical JWK JSON (public members only: kty, kid, n/e or crv/x/y).
  const std::string& json() const { return json_; }
  // The OpenSSL key (EVP_PKEY*); for this module's sources and tests.
  evp_pkey_st* pkey() const { return pkey_.get(); }

 private:
  friend struct JwkBuilder;
  std::string kid_;
  KeyType type_ = KeyType::kRsa;
  int bits_ = 0;
  std::string json_;
  std::shared_ptr<evp_pkey_st> pkey_;
};

struct Jwks {
  std::vector<Jwk> keys;
  // The key with this kid, or nullptr.
  const Jwk* find(std::string_view kid) const;
};

// Parses a JWK Set {"keys":[...]} (RFC 7517 section 5) of signature verification keys and
// builds each OpenSSL public key (EVP_PKEY_fromdata, then EVP_PKEY_public_check).
// Accepted keys (RFC 7518 section 6):
//   - kty "RSA" with n and e (base64urlUInt); kMinRsaBits <= modulus bits <= kMaxRsaBits,
//     e odd, at least 3 and at most 8 bytes;
//   - kty "EC" with crv "P-384" and x, y of exactly 48 bytes each, a point on the curve.
// Every key needs a non-empty string kid, unique in the set. Optional members: "alg" must
// then be RS384 (RSA) or ES384 (EC); "use" must then be "sig"; others are ignored.
// The whole set is refused, rather than a key silently skipped, when any key is not usable,
// so a registration mistake shows at once:
//   invalid_argument/bad_jwks: not JSON, no "keys" array, empty or more than kMaxJwksKeys
//     keys, a missing or duplicate kid, missing or malformed members, a private member ("d",
//     "p", "q", "dp", "dq", "qi", "oth"), or a key OpenSSL refuses (e.g. a point off the curve);
//   invalid_argument/weak_key: an RSA modulus below kMinRsaBits (or above kMaxRsaBits);
//   invalid_argument/unsupported_key: another kty ("oct", "OKP"), another curve, "alg" other
//     than RS384/ES384, or "use" other than "sig".
[[nodiscard]] Result<Jwks> parse_jwks(std::string_view json);

// Verifies the JWS signature over its signing input with `key`:
//   RS384: RSASSA-PKCS1-v1_5 with SHA-384 (RFC 7518 section 3.3; RFC 8017 section 8.2);
//   ES384: ECDSA P-384 with SHA-384; the JWS signature is R || S, 48 bytes each (RFC 7518
//     section 3.4), converted to DER for OpenSSL.
// Succeeds only when the signature is valid. Fails with
//   unauthenticated/unsupported_alg: alg is "none", any HS*, or anything but RS384/ES384;
//   unauthenticated/alg_mismatch: RS384 with an EC key or ES384 with an RSA key;
//   unauthenticated/bad_signature: wrong length or the signature does not verify.
[[nodiscard]] Status verify(const Jws& jws, const Jwk& key);

}  // namespace telehub::auth
