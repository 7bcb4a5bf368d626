// TokenService: the OAuth 2.0 token endpoint logic of SMART Backend Services
// (https://hl7.org/fhir/smart-app-launch/backend-services.html) and the bearer-token check
// every protected API request goes through. No HTTP here: the HTTP layer decodes the form
// (parse_form), calls issue() or authenticate(), and turns an Error into an RFC 6749
// section 5.2 JSON answer with oauth_error().
//
// Flow: an operator registers a client (a hospital system) with its JWK Set and the scopes
// it may ask for. The client signs a JWT assertion (RFC 7523 section 3) with its private key
// and posts
//   grant_type=client_credentials&scope=system/Observation.rs&
//   client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer&
//   client_assertion=<JWS>
// issue() checks the assertion and answers an access token valid for
// TokenServiceOptions::access_token_lifetime (300 s). authenticate() maps a bearer token to
// the Grant it carries. Operators and researchers get long-lived API tokens from
// create_api_token(); authenticate() accepts those too.
//
// Storage: one SQLite file holding clients(client_id, jwks, scopes, role, organisation),
// used_jti(client_id, jti, exp_ms) for replay protection, and tokens(hash, kind, subject,
// scopes, role, expires_ms). Tokens are 32 random bytes, base64url (43 characters); only
// their SHA-256 is stored, so the file never holds a usable token. Expired tokens and jti
// entries are deleted as issue() runs.
//
// Scopes (SMART App Launch 2.x, "Scopes and Launch Context"): only system scopes,
// "system/<ResourceType or *>.<permissions>" where permissions are SMART v2 "cruds" letters
// (a non-empty subset, in that order: "rs", "cud") or SMART v1 "read" (= "rs"), "write"
// (= "cud") or "*" (= "cruds"). A requested scope is allowed when one registered scope names
// the same resource type (or "*") and includes all its permissions. v2 scope parameters
// ("?category=...") and user/patient/launch/openid scopes are refused.
//
// Error policy: Result, never throws. Each failure has a stable reason; oauth_error() maps it
// to the RFC 6749 section 5.2 error code the HTTP layer answers with. Messages never contain
// a token, an assertion, a claim value or a client id. Storage failures keep the sqlite
// wrapper's codes (unavailable/db_busy is retryable) and map to OAuthError::kNone (answer
// HTTP 500).
//
// Thread-safety: a TokenService is safe to share between threads; an internal mutex
// serialises its use of the one SQLite connection. Lifetime: the Clock must outlive it.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "telehub/core/error.h"
#include "telehub/core/time.h"

namespace telehub::auth {

// "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" (RFC 7523 section 2.2).
inline constexpr std::string_view kJwtBearerAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

// Decoded application/x-www-form-urlencoded parameters in their order (duplicates kept, so
// issue() can refuse them as RFC 6749 section 3.2 requires).
using FormParams = std::vector<std::pair<std::string, std::string>>;

// Decodes an application/x-www-form-urlencoded body (WHATWG URL "application/x-www-form-
// urlencoded parsing"; '+' is a space, %XX an octet). At most 16 KiB. Fails with
// invalid_argument/invalid_request on a bad percent escape or a larger body.
[[nodiscard]] Result<FormParams> parse_form(std::string_view body);

// The roles a client or API token can carry (issue [6/8]): "care" (a care provider's system;
// identified data of subjects in an active care relation with its organisation), "research"
// (pseudonymised data), "enrolment" (device and subject enrolment), "operator" (the hub's
// administrators).
inline constexpr std::array<std::string_view, 4> kRoles = {"care", "research", "enrolment", "operator"};

// True when `role` is one of kRoles (exact, case-sensitive).
bool valid_role(std::string_view role);

// RFC 6749 section 5.2 error codes.
enum class OAuthError {
  kNone,  // not a client error (storage failure): answer HTTP 500 without details
  kInvalidRequest,
  kInvalidClient,
  kInvalidGrant,  // not produced by the client_credentials grant; for other grants later
  kUnauthorizedClient,
  kUnsupportedGrantType,
  kInvalidScope,
};

// "invalid_client", ...; "" for kNone.
std::string_view oauth_error_name(OAuthError e);

// The OAuth error for an Error from issue() (by its reason):
//   invalid_request: invalid_request (missing, duplicate or malformed parameter),
//     bad_assertion_type;
//   unsupported_grant_type: unsupported_grant_type;
//   invalid_client (RFC 7523 section 3.2: any problem with the client's JWT): bad_jws,
//     unknown_client, unregistered_key, unsupported_alg, alg_mismatch, bad_signature,
//     wrong_issuer, wrong_audience, expired_assertion, exp_too_far, not_yet_valid,
//     missing_jti, jti_reused;
//   invalid_scope: invalid_scope (not allowed for the client), bad_scope (not a system scope);
//   kNone: anything else.
OAuthError oauth_error(const core::Error& error);

// What issue() answers (SMART Backend Services "Response": access_token, token_type
// "bearer", expires_in, scope).
struct IssuedToken {
  std::string access_token;
  std::string token_type = "bearer";
  std::int64_t expires_in = 0;  // seconds
  std::string scope;            // the granted scopes, space-separated
};

// What a valid bearer token grants.
struct Grant {
  enum class Kind { kAccessToken, kApiToken, kClientCertificate };
  Kind kind = Kind::kAccessToken;
  std::string client_id;  // the registered client, or the API token's name
  std::string role;
  std::string organisation;  // the client's; empty for API tokens
  std::vector<std::string> scopes;
  std::optional<core::TimePoint> expires;  // none: an API token without expiry

  // True when some scope permits `interaction` ('c', 'r', 'u', 'd' or 's') on
  // `resource_type` ("Observation").
  bool allows(std::string_view resource_type, char interaction) const;
};

struct ClientRegistration {
  // The client_id (the iss and sub of its assertions). REQUIRES: 1..256 characters.
  std::string client_id;
  // Its JWK Set JSON (parse_jwks() rules: RSA >= 3072 bits or EC P-384, kid on every key).
  std::string jwks_json;
  // The scopes it may request, space-separated system scopes. REQUIRES: at least one.
  std::string allowed_scopes;
  // The role its tokens carry. REQUIRES: one of kRoles ("care" for a hospital system, which
  // should then name its organisation).
  std::string role;
  // The client's organisation (for role care: the organisation of its care relations,
  // privacy::valid_organisation; the CLI enforces that). Default: empty.
  std::string organisation;
};

struct TokenServiceOptions {
  // Lifetime of an issued access token; SMART Backend Services: at most 300 s.
  // Default: 300 s. REQUIRES: 1..300 s.
  std::chrono::seconds access_token_lifetime{300};
  // How far ahead an assertion's exp may lie (SMART: "no more than five minutes in the
  // future"). Default: 300 s.
  std::chrono::seconds max_assertion_lifetime{300};
  // Tolerated difference between the client's clock and ours, applied to exp (both bounds),
  // nbf and iat. Default: 30 s.
  std::chrono::seconds clock_skew{30};
};

class TokenService {
 public:
  // Opens (creating when missing) the SQLite file at `path`. Fails with unavailable/db_open
  // or the sqlite wrapper's errors while creating the schema, invalid_argument/bad_options
  // when the options break their REQUIRES.
  [[nodiscard]] static Result<std::unique_ptr<TokenService>> open(const std::filesystem::path& path,
                                                                  const core::Clock& clock,
                                                                  const TokenServiceOptions& options = {});
  virtual ~TokenService() = default;

  // Registers a client. Fails with invalid_argument/bad_client (client_id or role missing or
  // too long), invalid_argument/bad_role (role not in kRoles), invalid_argument/bad_scope, the parse_jwks() errors (bad_jwks,
  // weak_key, unsupported_key), already_exists/client_exists when the id is registered.
  [[nodiscard]] virtual Status register_client(const ClientRegistration& client) = 0;

  // Replaces a registered client's JWK Set (key rotation). Fails like register_client(), and
  // with not_found/unknown_client.
  [[nodiscard]] virtual Status update_client_keys(std::string_view client_id, std::string_view jwks_json) = 0;

  // Checks a token request (decoded form parameters) made to `token_url` and issues an access
  // token. In order: each parameter at most once, grant_type "client_credentials",
  // client_assertion_type jwt-bearer, client_assertion and scope present (else
  // invalid_request/unsupported_grant_type/bad_assertion_type); the assertion parses
  // (bad_jws); alg is RS384 or ES384 (unsupported_alg); iss is a registered client
  // (unknown_client) and sub == iss, and client_id, if sent, == iss (wrong_issuer); the
  // header kid names one of its keys (unregistered_key); the signature verifies with it
  // (alg_mismatch, bad_signature); aud is or contains token_url (wrong_audience); exp is
  // present, later than now - clock_skew (expired_assertion) and at most
  // now + max_assertion_lifetime + clock_skew (exp_too_far); nbf and iat, if present, are not
  // after now + clock_skew (not_yet_valid); jti is present (missing_jti); the requested scopes
  // are system scopes (bad_scope) within the client's (invalid_scope); the jti was not used
  // before by this client (jti_reused; it is remembered until exp + clock_skew).
  // Codes: invalid_argument for request errors, unauthenticated for client authentication,
  // permission_denied for scopes. oauth_error() gives the RFC 6749 code.
  [[nodiscard]] virtual Result<IssuedToken> issue(const FormParams& form, std::string_view token_url) = 0;

  // The grant of a bearer token (access token or API token). Fails with
  // unauthenticated/invalid_token when it is malformed, unknown or expired (RFC 6750
  // section 3.1 "invalid_token").
  [[nodiscard]] virtual Result<Grant> authenticate(std::string_view bearer_token) = 0;

  // Creates an API token for an operator or researcher and returns it; this is the only time
  // it is visible (only its hash is stored). `expires_in` none: no expiry. Fails with
  // invalid_argument/bad_client (empty name or role, or expires_in not positive),
  // invalid_argument/bad_role (role not in kRoles), invalid_argument/bad_scope.
  [[nodiscard]] virtual Result<std::string> create_api_token(std::string_view name, std::string_view role,
                                                             std::string_view scopes,
                                                             std::optional<std::chrono::seconds> expires_in = {}) = 0;

  // Deletes every API token with this name; returns how many there were.
  [[nodiscard]] virtual Result<int> revoke_api_tokens(std::string_view name) = 0;

  // Mutual TLS (issue [6/8]): the grant of a registered client that authenticated with its
  // certificate instead of a token — kind kClientCertificate, the client's role, organisation
  // and all its registered scopes, no expiry. Empty when no client has this id.
  [[nodiscard]] virtual Result<std::optional<Grant>> client_grant(std::string_view client_id) = 0;
};

}  // namespace telehub::auth
