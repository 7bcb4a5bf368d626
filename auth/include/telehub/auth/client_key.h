// The client side of SMART Backend Services, for `telehub client keygen|assertion`, the demo and
// tests that drive the API over real HTTP: generating a client key pair with its public JWK
// Set, and signing the JWT assertion a client posts to POST /auth/token
// (https://hl7.org/fhir/smart-app-launch/backend-services.html, "Protocol details").
//
// Keys: ES384 (EC P-384) by default, or RS384 with a 3072-bit RSA key. The private key is
// PEM (PKCS#8, unencrypted: protect the file, 0600); the JWK Set holds the public key only,
// with "kid" = the RFC 7638 JWK thumbprint (SHA-256, base64url), "alg" and "use":"sig".
//
// Error policy: Result, never throws. invalid_argument/bad_key for a PEM that is not an
// unencrypted P-384 EC or 3072..8192-bit RSA private key (what parse_jwks() accepts),
// invalid_argument/bad_assertion for an empty client_id or token_url or a lifetime <= 0;
// internal/crypto when OpenSSL fails.
//
// Thread-safety: stateless functions.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "telehub/core/error.h"
#include "telehub/core/time.h"

namespace telehub::auth {

enum class ClientKeyType { kEs384, kRs384 };

struct ClientKey {
  std::string private_key_pem;  // PKCS#8 PEM
  std::string jwks_json;        // {"keys":[{...public JWK...}]}
  std::string kid;              // the key's thumbprint, also in the JWK Set
  std::string alg;              // "ES384" or "RS384"
};

// Generates a new key pair.
[[nodiscard]] Result<ClientKey> generate_client_key(ClientKeyType type = ClientKeyType::kEs384);

// The public ClientKey (jwks_json, kid, alg; private_key_pem as given) of a private key PEM.
[[nodiscard]] Result<ClientKey> client_key_from_pem(std::string_view private_key_pem);

struct AssertionClaims {
  std::string client_id;  // iss and sub
  std::string token_url;  // aud
  std::chrono::seconds lifetime{240};  // exp = now + lifetime (SMART: at most 300 s)
  std::string jti;  // empty: 16 random bytes, base64url
};

// A compact JWS (header alg/kid/typ "JWT"; claims iss, sub, aud, exp, iat, jti) signed with the
// private key (ES384: R || S, RFC 7518 section 3.4).
[[nodiscard]] Result<std::string> sign_assertion(std::string_view private_key_pem, const AssertionClaims& claims,
                                                 core::TimePoint now);

}  // namespace telehub::auth
