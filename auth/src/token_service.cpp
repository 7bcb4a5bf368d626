#include "telehub/auth/token_service.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <mutex>

#include "telehub/auth/jwt.h"
#include "telehub/core/bytes.h"
#include "telehub/sqlite/sqlite.h"

namespace telehub::auth {
namespace {

using core::Code;

constexpr std::size_t kMaxFormSize = 16 * 1024;
constexpr std::size_t kTokenBytes = 32;
constexpr std::size_t kTokenChars = 43;  // base64url of 32 bytes, unpadded
constexpr std::size_t kMaxIdSize = 256;

// Permission bits of a SMART v2 scope, in "cruds" order.
constexpr unsigned kCreate = 1, kRead = 2, kUpdate = 4, kDelete = 8, kSearch = 16;
constexpr std::string_view kCruds = "cruds";

struct Scope {
  std::string resource;  // "Observation" or "*"
  unsigned perms = 0;
};

bool resource_name(std::string_view r) {
  if (r == "*") return true;
  if (r.empty() || r.size() > 64 || r.front() < 'A' || r.front() > 'Z') return false;
  return std::all_of(r.begin(), r.end(), [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); });
}

std::optional<Scope> parse_scope(std::string_view token) {
  constexpr std::string_view kPrefix = "system/";
  if (token.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  token.remove_prefix(kPrefix.size());
  const std::size_t dot = token.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  Scope s{std::string(token.substr(0, dot)), 0};
  if (!resource_name(s.resource)) return std::nullopt;
  const std::string_view perms = token.substr(dot + 1);
  if (perms == "read") {
    s.perms = kRead | kSearch;
  } else if (perms == "write") {
    s.perms = kCreate | kUpdate | kDelete;
  } else if (perms == "*") {
    s.perms = kCreate | kRead | kUpdate | kDelete | kSearch;
  } else {
    // SMART v2: a non-empty subset of c, r, u, d, s in that order.
    std::size_t at = 0;
    for (const char c : perms) {
      const std::size_t i = kCruds.find(c, at);
      if (i == std::string_view::npos) return std::nullopt;
      s.perms |= 1u << i;
      at = i + 1;
    }
    if (s.perms == 0) return std::nullopt;
  }
  return s;
}

// Splits a scope string (RFC 6749 section 3.3: space-delimited) into its tokens; nullopt
// when empty, when a token is empty (two spaces) or not a system scope.
std::optional<std::vector<std::string>> split_scopes(std::string_view text, std::vector<Scope>* parsed = nullptr) {
  std::vector<std::string> tokens;
  if (text.empty() || text.size() > 4096) return std::nullopt;
  while (true) {
    const std::size_t sp = text.find(' ');
    const std::string_view token = text.substr(0, sp);
    auto scope = parse_scope(token);
    if (!scope) return std::nullopt;
    if (parsed) parsed->push_back(std::move(*scope));
    if (std::find(tokens.begin(), tokens.end(), token) == tokens.end()) tokens.emplace_back(token);
    if (sp == std::string_view::npos) break;
    text.remove_prefix(sp + 1);
  }
  return tokens;
}

std::string join(const std::vector<std::string>& tokens) {
  std::string out;
  for (const auto& t : tokens) {
    if (!out.empty()) out += ' ';
    out += t;
  }
  return out;
}

bool covers(const std::vector<Scope>& allowed, const Scope& wanted) {
  return std::any_of(allowed.begin(), allowed.end(), [&](const Scope& a) {
    return (a.resource == "*" || a.resource == wanted.resource) && (wanted.perms & ~a.perms) == 0;
  });
}

std::array<std::uint8_t, 32> sha256(std::string_view text) {
  std::array<std::uint8_t, 32> out{};
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), out.data(), &len, EVP_sha256(), nullptr);
  return out;
}

tl::unexpected<core::Error> client_error(std::string reason, std::string message) {
  return core::fail(Code::kUnauthenticated, std::move(reason), std::move(message));
}
tl::unexpected<core::Error> invalid_token() {
  return core::fail(Code::kUnauthenticated, "invalid_token", "bearer token is unknown or expired");
}

bool well_formed_token(std::string_view token) {
  if (token.size() != kTokenChars) return false;
  auto bytes = base64url_decode(token);
  return bytes && bytes->size() == kTokenBytes;
}

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS clients(
  client_id TEXT PRIMARY KEY,
  jwks TEXT NOT NULL,
  scopes TEXT NOT NULL,
  role TEXT NOT NULL,
  organisation TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS used_jti(
  client_id TEXT NOT NULL,
  jti TEXT NOT NULL,
  exp_ms INTEGER NOT NULL,
  PRIMARY KEY(client_id, jti)
);
CREATE TABLE IF NOT EXISTS tokens(
  hash BLOB PRIMARY KEY,
  kind TEXT NOT NULL,
  subject TEXT NOT NULL,
  scopes TEXT NOT NULL,
  role TEXT NOT NULL,
  expires_ms INTEGER
);
CREATE INDEX IF NOT EXISTS used_jti_exp ON used_jti(exp_ms);
CREATE INDEX IF NOT EXISTS tokens_expires ON tokens(expires_ms);
)sql";

class SqliteTokenService final : public TokenService {
 public:
  SqliteTokenService(sqlite::Database db, const core::Clock& clock, const TokenServiceOptions& options)
      : db_(std::move(db)), clock_(clock), options_(options) {}

  Status register_client(const ClientRegistration& c) override {
    if (c.client_id.empty() || c.client_id.size() > kMaxIdSize || c.role.empty() || c.role.size() > kMaxIdSize ||
        c.organisation.size() > 1024)
      return core::fail(Code::kInvalidArgument, "bad_client", "client_id or role missing or too long");
    if (!valid_role(c.role))
      return core::fail(Code::kInvalidArgument, "bad_role", "role must be care, research, enrolment or operator");
    if (!split_scopes(c.allowed_scopes))
      return core::fail(Code::kInvalidArgument, "bad_scope", "allowed scopes are not system scopes");
    auto jwks = parse_jwks(c.jwks_json);
    if (!jwks) return tl::unexpected(jwks.error());
    std::lock_guard lock(mutex_);
    auto stmt = db_.prepare(
        "INSERT OR IGNORE INTO clients(client_id, jwks, scopes, role, organisation) VALUES(?1, ?2, ?3, ?4, ?5)");
    if (!stmt) return tl::unexpected(stmt.error());
    stmt->bind(1, c.client_id).bind(2, c.jwks_json).bind(3, c.allowed_scopes).bind(4, c.role).bind(5, c.organisation);
    if (auto r = stmt->run(); !r) return r;
    if (db_.changes() == 0) return core::fail(Code::kAlreadyExists, "client_exists", "client is already registered");
    return {};
  }

  Status update_client_keys(std::string_view client_id, std::string_view jwks_json) override {
    auto jwks = parse_jwks(jwks_json);
    if (!jwks) return tl::unexpected(jwks.error());
    std::lock_guard lock(mutex_);
    auto stmt = db_.prepare("UPDATE clients SET jwks = ?2 WHERE client_id = ?1");
    if (!stmt) return tl::unexpected(stmt.error());
    stmt->bind(1, client_id).bind(2, jwks_json);
    if (auto r = stmt->run(); !r) return r;
    if (db_.changes() == 0) return core::fail(Code::kNotFound, "unknown_client", "client is not registered");
    return {};
  }

  Result<IssuedToken> issue(const FormParams& form, std::string_view token_url) override {
    const auto request_error = [](std::string reason, std::string message) {
      return core::fail(Code::kInvalidArgument, std::move(reason), std::move(message));
    };
    const std::string* grant_type = nullptr;
    const std::string* assertion_type = nullptr;
    const std::string* assertion = nullptr;
    const std::string* scope = nullptr;
    const std::string* client_id = nullptr;
    for (std::size_t i = 0; i < form.size(); ++i) {
      for (std::size_t j = 0; j < i; ++j) {
        if (form[j].first == form[i].first)
          return request_error("invalid_request", "a parameter is given more than once");
      }
      const auto& [name, value] = form[i];
      if (name == "grant_type") grant_type = &value;
      if (name == "client_assertion_type") assertion_type = &value;
      if (name == "client_assertion") assertion = &value;
      if (name == "scope") scope = &value;
      if (name == "client_id") client_id = &value;
    }
    if (!grant_type) return request_error("invalid_request", "grant_type is missing");
    if (*grant_type != "client_credentials")
      return request_error("unsupported_grant_type", "only client_credentials is supported");
    if (!assertion_type || !assertion) return request_error("invalid_request", "client assertion is missing");
    if (*assertion_type != kJwtBearerAssertionType)
      return request_error("bad_assertion_type", "client_assertion_type must be jwt-bearer");
    if (!scope) return request_error("invalid_request", "scope is missing");

    auto jws = parse_jws(*assertion);
    if (!jws) return tl::unexpected(jws.error());
    const std::string& alg = jws->header.alg;
    if (alg != "RS384" && alg != "ES384")
      return client_error("unsupported_alg", "only RS384 and ES384 are accepted");
    const JwtClaims& claims = jws->claims;
    if (claims.iss.empty()) return client_error("wrong_issuer", "assertion has no iss");

    std::unique_lock lock(mutex_);
    auto client = load_client(claims.iss);
    if (!client) return tl::unexpected(client.error());
    if (claims.sub != claims.iss || (client_id && *client_id != claims.iss))
      return client_error("wrong_issuer", "iss, sub and client_id must all name the client");
    const Jwk* key = jws->header.kid.empty() ? nullptr : client->jwks.find(jws->header.kid);
    if (!key) return client_error("unregistered_key", "kid names no registered key of the client");
    if (auto v = verify(*jws, *key); !v) return tl::unexpected(v.error());

    if (std::find(claims.aud.begin(), claims.aud.end(), token_url) == claims.aud.end())
      return client_error("wrong_audience", "aud is not this token endpoint");
    const std::int64_t now_ms = core::to_unix_millis(clock_.now());
    const std::int64_t skew_ms = std::chrono::milliseconds(options_.clock_skew).count();
    if (!claims.exp) return client_error("expired_assertion", "assertion has no exp");
    const std::int64_t exp_ms = *claims.exp * 1000;
    if (exp_ms <= now_ms - skew_ms) return client_error("expired_assertion", "assertion has expired");
    if (exp_ms > now_ms + std::chrono::milliseconds(options_.max_assertion_lifetime).count() + skew_ms)
      return client_error("exp_too_far", "assertion exp is more than five minutes ahead");
    if ((claims.nbf && *claims.nbf * 1000 > now_ms + skew_ms) || (claims.iat && *claims.iat * 1000 > now_ms + skew_ms))
      return client_error("not_yet_valid", "assertion nbf or iat lies in the future");
    if (claims.jti.empty()) return client_error("missing_jti", "assertion has no jti");

    std::vector<Scope> wanted;
    auto tokens = split_scopes(*scope, &wanted);
    if (!tokens) return core::fail(Code::kPermissionDenied, "bad_scope", "scope holds a non-system scope");
    std::vector<Scope> allowed;
    split_scopes(client->scopes, &allowed);
    for (const auto& w : wanted) {
      if (!covers(allowed, w))
        return core::fail(Code::kPermissionDenied, "invalid_scope", "a scope is outside the client's grant");
    }

    auto token = random_token();
    if (!token) return tl::unexpected(token.error());
    const std::int64_t expires_ms = now_ms + std::chrono::milliseconds(options_.access_token_lifetime).count();
    const std::string granted = join(*tokens);
    auto done = in_transaction([&]() -> Status {
      if (auto r = purge(now_ms); !r) return r;
      auto jti = db_.prepare("INSERT OR IGNORE INTO used_jti(client_id, jti, exp_ms) VALUES(?1, ?2, ?3)");
      if (!jti) return tl::unexpected(jti.error());
      jti->bind(1, claims.iss).bind(2, claims.jti).bind(3, exp_ms + skew_ms);
      if (auto r = jti->run(); !r) return r;
      if (db_.changes() == 0) return client_error("jti_reused", "assertion jti was used before");
      return store_token(*token, "access", claims.iss, granted, client->role, expires_ms);
    });
    if (!done) return tl::unexpected(done.error());
    return IssuedToken{std::move(*token), "bearer", options_.access_token_lifetime.count(), granted};
  }

  Result<Grant> authenticate(std::string_view bearer_token) override {
    if (!well_formed_token(bearer_token)) return invalid_token();
    const auto hash = sha256(bearer_token);
    std::lock_guard lock(mutex_);
    auto stmt = db_.prepare(
        "SELECT t.hash, t.kind, t.subject, t.scopes, t.role, t.expires_ms, c.organisation FROM tokens t "
        "LEFT JOIN clients c ON t.kind = 'access' AND c.client_id = t.subject WHERE t.hash = ?1");
    if (!stmt) return tl::unexpected(stmt.error());
    stmt->bind_blob(1, hash);
    auto row = stmt->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) return invalid_token();
    const auto stored = stmt->column_blob_view(0);
    if (stored.size() != hash.size() || CRYPTO_memcmp(stored.data(), hash.data(), hash.size()) != 0)
      return invalid_token();
    Grant g;
    g.kind = stmt->column_text(1) == "api" ? Grant::Kind::kApiToken : Grant::Kind::kAccessToken;
    g.client_id = stmt->column_text(2);
    const std::string scopes = stmt->column_text(3);
    g.role = stmt->column_text(4);
    if (!stmt->column_is_null(5)) {
      g.expires = core::from_unix_millis(stmt->column_int64(5));
      if (clock_.now() >= *g.expires) return invalid_token();
    }
    if (!stmt->column_is_null(6)) g.organisation = stmt->column_text(6);
    if (auto tokens = split_scopes(scopes)) g.scopes = std::move(*tokens);
    return g;
  }

  Result<std::string> create_api_token(std::string_view name, std::string_view role, std::string_view scopes,
                                       std::optional<std::chrono::seconds> expires_in) override {
    if (name.empty() || name.size() > kMaxIdSize || role.empty() || role.size() > kMaxIdSize)
      return core::fail(Code::kInvalidArgument, "bad_client", "name or role missing or too long");
    if (!valid_role(role))
      return core::fail(Code::kInvalidArgument, "bad_role", "role must be care, research, enrolment or operator");
    auto tokens = split_scopes(scopes);
    if (!tokens) return core::fail(Code::kInvalidArgument, "bad_scope", "scopes are not system scopes");
    if (expires_in && expires_in->count() <= 0)
      return core::fail(Code::kInvalidArgument, "bad_client", "expiry must be in the future");
    auto token = random_token();
    if (!token) return tl::unexpected(token.error());
    std::lock_guard lock(mutex_);
    std::optional<std::int64_t> expires_ms;
    if (expires_in)
      expires_ms = core::to_unix_millis(clock_.now()) + std::chrono::milliseconds(*expires_in).count();
    if (auto r = store_token(*token, "api", name, join(*tokens), role, expires_ms); !r)
      return tl::unexpected(r.error());
    return std::move(*token);
  }

  Result<int> revoke_api_tokens(std::string_view name) override {
    std::lock_guard lock(mutex_);
    auto stmt = db_.prepare("DELETE FROM tokens WHERE kind = 'api' AND subject = ?1");
    if (!stmt) return tl::unexpected(stmt.error());
    stmt->bind(1, name);
    if (auto r = stmt->run(); !r) return tl::unexpected(r.error());
    return db_.changes();
  }

  Result<std::optional<Grant>> client_grant(std::string_view client_id) override {
    std::lock_guard lock(mutex_);
    auto stmt = db_.prepare("SELECT scopes, role, organisation FROM clients WHERE client_id = ?1");
    if (!stmt) return tl::unexpected(stmt.error());
    stmt->bind(1, client_id);
    auto row = stmt->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) return std::optional<Grant>();
    Grant g;
    g.kind = Grant::Kind::kClientCertificate;
    g.client_id = std::string(client_id);
    if (auto tokens = split_scopes(stmt->column_text(0))) g.scopes = std::move(*tokens);
    g.role = stmt->column_text(1);
    if (!stmt->column_is_null(2)) g.organisation = stmt->column_text(2);
    return std::optional<Grant>(std::move(g));
  }

 private:
  struct Client {
    Jwks jwks;
    std::string scopes;
    std::string role;
  };

  // REQUIRES: mutex_ held.
  Result<Client> load_client(std::string_view client_id) {
    auto stmt = db_.prepare("SELECT jwks, scopes, role FROM clients WHERE client_id = ?1");
    if (!stmt) return tl::unexpected(stmt.error());
    stmt->bind(1, client_id);
    auto row = stmt->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) return client_error("unknown_client", "iss names no registered client");
    auto jwks = parse_jwks(stmt->column_text(0));
    if (!jwks) return core::fail(Code::kDataLoss, "bad_jwks", "a stored key set no longer parses");
    return Client{std::move(*jwks), stmt->column_text(1), stmt->column_text(2)};
  }

  static Result<std::string> random_token() {
    auto bytes = core::random_bytes(kTokenBytes);
    if (!bytes) return tl::unexpected(bytes.error());
    std::string token = base64url_encode(*bytes);
    OPENSSL_cleanse(bytes->data(), bytes->size());
    return token;
  }

  // REQUIRES: mutex_ held.
  Status store_token(std::string_view token, std::string_view kind, std::string_view subject, std::string_view scopes,
                     std::string_view role, std::optional<std::int64_t> expires_ms) {
    const auto hash = sha256(token);
    auto stmt = db_.prepare(
        "INSERT INTO tokens(hash, kind, subject, scopes, role, expires_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
    if (!stmt) return tl::unexpected(stmt.error());
    stmt->bind_blob(1, hash).bind(2, kind).bind(3, subject).bind(4, scopes).bind(5, role);
    if (expires_ms) {
      stmt->bind(6, *expires_ms);
    } else {
      stmt->bind_null(6);
    }
    return stmt->run();
  }

  // Deletes expired access tokens and jti entries. REQUIRES: mutex_ held.
  Status purge(std::int64_t now_ms) {
    auto jti = db_.prepare("DELETE FROM used_jti WHERE exp_ms < ?1");
    if (!jti) return tl::unexpected(jti.error());
    jti->bind(1, now_ms);
    if (auto r = jti->run(); !r) return r;
    auto tokens = db_.prepare("DELETE FROM tokens WHERE expires_ms IS NOT NULL AND expires_ms < ?1");
    if (!tokens) return tl::unexpected(tokens.error());
    tokens->bind(1, now_ms);
    return tokens->run();
  }

  // Runs `body` in BEGIN IMMEDIATE ... COMMIT; rolls back when it fails. REQUIRES: mutex_ held.
  template <class F>
  Status in_transaction(F&& body) {
    if (auto r = db_.exec("BEGIN IMMEDIATE"); !r) return r;
    Status result = body();
    if (!result) {
      (void)db_.exec("ROLLBACK");
      return result;
    }
    if (auto r = db_.exec("COMMIT"); !r) {
      (void)db_.exec("ROLLBACK");
      return r;
    }
    return {};
  }

  std::mutex mutex_;
  sqlite::Database db_;
  const core::Clock& clock_;
  TokenServiceOptions options_;
};

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::string> form_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '+') {
      out += ' ';
    } else if (c == '%') {
      if (i + 2 >= text.size() || hex_value(text[i + 1]) < 0 || hex_value(text[i + 2]) < 0)
        return core::fail(Code::kInvalidArgument, "invalid_request", "bad percent escape in form body");
      out += static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2]));
      i += 2;
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

bool valid_role(std::string_view role) {
  return std::find(kRoles.begin(), kRoles.end(), role) != kRoles.end();
}

bool Grant::allows(std::string_view resource_type, char interaction) const {
  const std::size_t bit = kCruds.find(interaction);
  if (bit == std::string_view::npos || !resource_name(resource_type) || resource_type == "*") return false;
  const Scope wanted{std::string(resource_type), 1u << bit};
  for (const auto& s : scopes) {
    auto parsed = parse_scope(s);
    if (parsed && covers({*parsed}, wanted)) return true;
  }
  return false;
}

Result<FormParams> parse_form(std::string_view body) {
  if (body.size() > kMaxFormSize) return core::fail(Code::kInvalidArgument, "invalid_request", "form body too large");
  FormParams out;
  while (!body.empty()) {
    const std::size_t amp = body.find('&');
    const std::string_view pair = body.substr(0, amp);
    if (!pair.empty()) {
      const std::size_t eq = pair.find('=');
      auto name = form_decode(pair.substr(0, eq));
      if (!name) return tl::unexpected(name.error());
      auto value = form_decode(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1));
      if (!value) return tl::unexpected(value.error());
      out.emplace_back(std::move(*name), std::move(*value));
    }
    if (amp == std::string_view::npos) break;
    body.remove_prefix(amp + 1);
  }
  return out;
}

std::string_view oauth_error_name(OAuthError e) {
  switch (e) {
    case OAuthError::kNone: return "";
    case OAuthError::kInvalidRequest: return "invalid_request";
    case OAuthError::kInvalidClient: return "invalid_client";
    case OAuthError::kInvalidGrant: return "invalid_grant";
    case OAuthError::kUnauthorizedClient: return "unauthorized_client";
    case OAuthError::kUnsupportedGrantType: return "unsupported_grant_type";
    case OAuthError::kInvalidScope: return "invalid_scope";
  }
  return "";
}

OAuthError oauth_error(const core::Error& error) {
  const std::string& r = error.reason;
  if (r == "invalid_request" || r == "bad_assertion_type") return OAuthError::kInvalidRequest;
  if (r == "unsupported_grant_type") return OAuthError::kUnsupportedGrantType;
  if (r == "invalid_scope" || r == "bad_scope") return OAuthError::kInvalidScope;
  for (const char* client : {"bad_jws", "unknown_client", "unregistered_key", "unsupported_alg", "alg_mismatch",
                             "bad_signature", "wrong_issuer", "wrong_audience", "expired_assertion", "exp_too_far",
                             "not_yet_valid", "missing_jti", "jti_reused"}) {
    if (r == client) return OAuthError::kInvalidClient;
  }
  return OAuthError::kNone;
}

Result<std::unique_ptr<TokenService>> TokenService::open(const std::filesystem::path& path, const core::Clock& clock,
                                                         const TokenServiceOptions& options) {
  if (options.access_token_lifetime.count() < 1 || options.access_token_lifetime.count() > 300 ||
      options.max_assertion_lifetime.count() < 1 || options.clock_skew.count() < 0 ||
      options.clock_skew.count() > 300)
    return core::fail(Code::kInvalidArgument, "bad_options", "token service options out of range");
  auto db = sqlite::Database::open(path);
  if (!db) return tl::unexpected(db.error());
  if (auto r = db->exec(kSchema); !r) return tl::unexpected(r.error());
  return std::unique_ptr<TokenService>(new SqliteTokenService(std::move(*db), clock, options));
}

}  // namespace telehub::auth
