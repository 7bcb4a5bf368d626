// Issue [6/8] on the command line with the real binary: client keygen, register, rotate and
// assertion (checked with the server-side parser and verifier, and redeemed with a
// TokenService on the same auth.db); API tokens stored only as hashes; care relations with
// their audit records, and erased with the subject; usage errors.
#include <catch2/catch.hpp>

#include <openssl/evp.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "telehub/auth/jwt.h"
#include "telehub/auth/token_service.h"
#include "test_support.h"

using namespace telehub;

namespace {

const std::string kKekHex(64, 'c');
constexpr const char* kTokenUrl = "https://hub.example/auth/token";

std::string telehub_cmd(const std::string& args) {
  return "TELEHUB_KEK=" + kKekHex + " " + std::string(TELEHUB_BINARY_DIR) + "/apps/telehub " + args;
}

testing::CommandResult run(const std::string& args) { return testing::run_command(telehub_cmd(args)); }
// Only stdout (run_command captures stderr too).
testing::CommandResult run_stdout(const std::string& args) {
  return testing::run_command("(" + telehub_cmd(args) + " 2>/dev/null)");
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Every file of the data directory whose name starts with `prefix` ("auth.db", "-wal", "-shm").
std::string files_starting(const std::filesystem::path& dir, const std::string& prefix) {
  std::string bytes;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().filename().string().starts_with(prefix)) bytes += read_file(e.path());
  return bytes;
}

std::string field(const std::string& output, const std::string& label) {
  std::smatch m;
  if (!std::regex_search(output, m, std::regex(label + R"(\s+(\S+))"))) return {};
  return m[1].str();
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string sha256(const std::string& text) {
  unsigned char out[32];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), out, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<const char*>(out), len);
}

// Keygen into `dir`; returns the printed kid.
std::string keygen(const std::filesystem::path& dir, const std::string& alg) {
  auto r = run("client keygen --out " + dir.string() + " --alg " + alg);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const std::string kid = field(r.output, "kid:");
  REQUIRE(kid.size() == 43);
  return kid;
}

// Runs `client assertion`, parses it and checks it against the JWK Set file and the claims.
auth::Jws assertion(const std::string& id, const std::filesystem::path& key_dir, const std::string& kid) {
  const auto before = std::chrono::system_clock::now();
  auto r = run_stdout("client assertion --id " + id + " --key " + (key_dir / "client-key.pem").string() +
                      " --aud " + kTokenUrl);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  auto jws = auth::parse_jws(trim(r.output));
  REQUIRE(jws);
  CHECK(jws->header.kid == kid);
  CHECK(jws->header.typ == "JWT");
  CHECK(jws->claims.iss == id);
  CHECK(jws->claims.sub == id);
  CHECK(jws->claims.aud == std::vector<std::string>{kTokenUrl});
  REQUIRE(jws->claims.exp);
  const std::int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(before.time_since_epoch()).count();
  CHECK(*jws->claims.exp >= now_s + 239);
  CHECK(*jws->claims.exp <= now_s + 260);
  CHECK_FALSE(jws->claims.jti.empty());
  auto jwks = auth::parse_jwks(read_file(key_dir / "jwks.json"));
  REQUIRE(jwks);
  const auth::Jwk* key = jwks->find(kid);
  REQUIRE(key);
  CHECK(auth::verify(*jws, *key));
  return *jws;
}

auth::FormParams token_form(const std::string& jws, const std::string& scope) {
  return {{"grant_type", "client_credentials"},
          {"scope", scope},
          {"client_assertion_type", std::string(auth::kJwtBearerAssertionType)},
          {"client_assertion", jws}};
}

std::string compact(const auth::Jws& jws) {
  return jws.signing_input + "." + auth::base64url_encode(jws.signature);
}

}  // namespace

TEST_CASE("telehub client keygen, register, rotate and assertion give a working SMART client", "[e2e][auth][cli]") {
  testing::TempDir dir;
  const auto data = dir.path() / "data";
  const std::string d = " --data " + data.string();
  const auto keys = dir.path() / "client";

  const std::string kid = keygen(keys, "ES384");
  struct stat st {};
  REQUIRE(::stat((keys / "client-key.pem").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(read_file(keys / "client-key.pem").starts_with("-----BEGIN PRIVATE KEY-----"));
  CHECK(read_file(keys / "jwks.json").find(kid) != std::string::npos);
  // A second keygen into the same directory does not overwrite the key.
  const std::string pem = read_file(keys / "client-key.pem");
  CHECK(run("client keygen --out " + keys.string()).exit_code == 1);
  CHECK(read_file(keys / "client-key.pem") == pem);

  auto reg = run("client register --id hospital-a --jwks " + (keys / "jwks.json").string() +
                 " --scopes 'system/Observation.rs system/Patient.rs' --role care --organisation ura:12345678" + d);
  INFO(reg.output);
  REQUIRE(reg.exit_code == 0);
  CHECK(reg.output.find("registered:") != std::string::npos);
  auto dup = run("client register --id hospital-a --jwks " + (keys / "jwks.json").string() +
                 " --scopes system/Observation.rs --role care --organisation ura:12345678" + d);
  CHECK(dup.exit_code == 1);
  CHECK(dup.output.find("client_exists") != std::string::npos);

  const auth::Jws jws = assertion("hospital-a", keys, kid);
  CHECK(jws.header.alg == "ES384");
  // The hub accepts it: a TokenService on the same auth.db issues a token for it.
  {
    auto service = auth::TokenService::open(data / "auth.db", core::system_clock());
    REQUIRE(service);
    auto token = (*service)->issue(token_form(compact(jws), "system/Observation.rs"), kTokenUrl);
    INFO((token ? std::string() : token.error().to_string()));
    REQUIRE(token);
    auto grant = (*service)->authenticate(token->access_token);
    REQUIRE(grant);
    CHECK(grant->role == "care");
    CHECK(grant->organisation == "ura:12345678");
  }

  // Rotation to an RS384 key: the new key works, the old one no longer does.
  const auto keys2 = dir.path() / "client2";
  const std::string kid2 = keygen(keys2, "RS384");
  auto rotate = run("client rotate --id hospital-a --jwks " + (keys2 / "jwks.json").string() + d);
  INFO(rotate.output);
  REQUIRE(rotate.exit_code == 0);
  const auth::Jws rs = assertion("hospital-a", keys2, kid2);
  CHECK(rs.header.alg == "RS384");
  const auth::Jws old = assertion("hospital-a", keys, kid);
  auto service = auth::TokenService::open(data / "auth.db", core::system_clock());
  REQUIRE(service);
  CHECK((*service)->issue(token_form(compact(rs), "system/Patient.rs"), kTokenUrl));
  auto refused = (*service)->issue(token_form(compact(old), "system/Patient.rs"), kTokenUrl);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().reason == "unregistered_key");
  CHECK(run("client rotate --id nobody --jwks " + (keys2 / "jwks.json").string() + d).exit_code == 1);
}

TEST_CASE("telehub token create prints a token once and auth.db holds only its hash", "[e2e][auth][cli]") {
  testing::TempDir dir;
  const auto data = dir.path() / "data";
  const std::string d = " --data " + data.string();

  auto created = run_stdout("token create --name dr-research --role research --scopes 'system/Observation.rs'" + d);
  INFO(created.output);
  REQUIRE(created.exit_code == 0);
  const std::string token = trim(created.output);
  REQUIRE(token.size() == 43);
  CHECK(token.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
        std::string::npos);
  auto timed = run_stdout("token create --name ops --role operator --scopes 'system/*.cruds' --expires-in 3600" + d);
  REQUIRE(timed.exit_code == 0);
  const std::string ops = trim(timed.output);
  REQUIRE(ops.size() == 43);
  CHECK(ops != token);

  const std::string bytes = files_starting(data, "auth.db");
  REQUIRE(bytes.size() > 1000);
  for (const auto& t : {token, ops}) {
    CHECK(bytes.find(t) == std::string::npos);
    CHECK(bytes.find(t.substr(0, 12)) == std::string::npos);
    CHECK(bytes.find(sha256(t)) != std::string::npos);  // the hash is what is stored
  }
  {
    auto service = auth::TokenService::open(data / "auth.db", core::system_clock());
    REQUIRE(service);
    auto grant = (*service)->authenticate(token);
    REQUIRE(grant);
    CHECK(grant->kind == auth::Grant::Kind::kApiToken);
    CHECK(grant->client_id == "dr-research");
    CHECK(grant->role == "research");
    CHECK_FALSE(grant->expires);
    auto timed_grant = (*service)->authenticate(ops);
    REQUIRE(timed_grant);
    CHECK(timed_grant->expires);
  }

  auto revoke = run("token revoke --name dr-research" + d);
  INFO(revoke.output);
  CHECK(revoke.exit_code == 0);
  CHECK(revoke.output.find("revoked:      1") != std::string::npos);
  auto service = auth::TokenService::open(data / "auth.db", core::system_clock());
  REQUIRE(service);
  CHECK((*service)->authenticate(token).error().reason == "invalid_token");
  CHECK((*service)->authenticate(ops));
  auto again = run("token revoke --name dr-research" + d);
  CHECK(again.exit_code == 1);
  CHECK(again.output.find("no API token") != std::string::npos);
}

TEST_CASE("telehub care add, list and end are audited, and subject erase removes the relations", "[e2e][auth][cli]") {
  testing::TempDir dir;
  const auto data = dir.path() / "data";
  const std::string d = " --data " + data.string();

  auto reg = run("subject register --bsn 111222333 --given Anna --family Jansen" + d);
  INFO(reg.output);
  REQUIRE(reg.exit_code == 0);
  const std::string patient = field(reg.output, "patient:").substr(std::string("Patient/").size());
  REQUIRE(patient.size() == 32);
  const std::string s = " --subject " + patient;

  auto add = run("care add" + s + " --organisation ura:12345678 --from 2026-01-01" + d);
  INFO(add.output);
  REQUIRE(add.exit_code == 0);
  CHECK(add.output.find("care relation 1:") != std::string::npos);
  // Adding again while active keeps the relation.
  auto again = run("care add" + s + " --organisation ura:12345678 --from 2026-01-15T08:00:00+01:00" + d);
  CHECK(again.exit_code == 0);
  CHECK(again.output.find("care relation 1:") != std::string::npos);
  CHECK(run("care add" + s + " --organisation hospital-b" + d).exit_code == 0);

  auto list = run("care list" + s + d);
  INFO(list.output);
  CHECK(list.exit_code == 0);
  CHECK(list.output.find("ura:12345678  from 2026-01-01T00:00:00.000Z  (open)  (cli)") != std::string::npos);
  CHECK(list.output.find("hospital-b") != std::string::npos);

  auto end = run("care end" + s + " --organisation ura:12345678 --at 2026-02-01T12:00:00Z" + d);
  INFO(end.output);
  CHECK(end.exit_code == 0);
  CHECK(end.output.find("ended:        1") != std::string::npos);
  auto after = run("care list" + s + d);
  CHECK(after.output.find("ura:12345678  from 2026-01-01T00:00:00.000Z  until 2026-02-01T12:00:00.000Z") !=
        std::string::npos);

  auto trail = run("audit show --patient " + patient + d);
  INFO(trail.output);
  CHECK(trail.output.find("care.add C success") != std::string::npos);
  CHECK(trail.output.find("care.end U success") != std::string::npos);
  CHECK(trail.output.find("care.read R success") != std::string::npos);
  CHECK(run("audit verify" + d).exit_code == 0);

  auto erase = run("subject erase --patient " + patient + " --yes" + d);
  INFO(erase.output);
  CHECK(erase.exit_code == 0);
  CHECK(erase.output.find("care:         2 care relation(s) deleted") != std::string::npos);
  auto gone = run("care list" + s + d);
  CHECK(gone.exit_code == 0);
  CHECK(gone.output.find("(no care relations)") != std::string::npos);
}

TEST_CASE("no audit, no access: with the audit log unwritable, care add changes nothing", "[e2e][auth][cli]") {
  testing::TempDir dir;
  const auto data = dir.path() / "data";
  const std::string d = " --data " + data.string();
  const std::string s = " --subject " + std::string(32, 'b');
  REQUIRE(run("care list" + s + d).exit_code == 0);  // creates the stores
  // Another process holds the audit log's write lock: no record can be written.
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open((data / "audit.db").c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr) == SQLITE_OK);
  auto add = run("care add" + s + " --organisation ura:12345678" + d);
  INFO(add.output);
  CHECK(add.exit_code == 1);
  CHECK(add.output.find("access refused") != std::string::npos);
  sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  auto list = run("care list" + s + d);
  CHECK(list.exit_code == 0);
  CHECK(list.output.find("(no care relations)") != std::string::npos);
}

TEST_CASE("telehub client, token and care refuse bad usage with exit 2 and a message", "[e2e][auth][cli]") {
  testing::TempDir dir;
  const auto data = dir.path() / "data";
  const std::string d = " --data " + data.string();
  const auto keys = dir.path() / "client";
  keygen(keys, "ES384");
  const std::string jwks = " --jwks " + (keys / "jwks.json").string();
  const std::string patient(32, 'a');

  struct Case {
    std::string args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"client", "unknown client command"},
      {"client frobnicate", "unknown client command"},
      {"client keygen", "--out is required"},
      {"client keygen --out " + (dir.path() / "k2").string() + " --alg HS256", "--alg must be ES384 or RS384"},
      {"client register --id h" + jwks + " --scopes system/Observation.rs --role care" + d, "--organisation"},
      {"client register --id h" + jwks + " --scopes system/Observation.rs --role care --organisation 'St Elsewhere'" + d,
       "--organisation must be"},
      {"client register --id h" + jwks + " --scopes system/Observation.rs --role hospital" + d, "--role must be"},
      {"client register --id h" + jwks + " --scopes user/Observation.rs --role research" + d, "bad_scope"},
      {"client register --id h" + jwks + " --role research" + d, "--scopes is required"},
      {"client register --id h" + jwks + " --scopes system/Observation.rs --role research --colour blue" + d,
       "unknown option --colour"},
      {"client assertion --id h --key x --aud " + std::string(kTokenUrl) + " --lifetime 301", "--lifetime must be"},
      {"token", "unknown token command"},
      {"token create --name x --role research" + d, "--scopes is required"},
      {"token create --name x --role admin --scopes system/Observation.rs" + d, "--role must be"},
      {"token create --name x --role research --scopes openid" + d, "bad_scope"},
      {"token create --name x --role research --scopes system/Observation.rs --expires-in 0" + d, "--expires-in"},
      {"token revoke" + d, "--name is required"},
      {"care", "unknown care command"},
      {"care add --organisation ura:1" + d, "--subject is required"},
      {"care add --subject " + patient + d, "--organisation is required"},
      {"care add --subject not-a-pseudonym --organisation ura:1" + d, "--subject must be"},
      {"care add --subject " + patient + " --organisation 'a b'" + d, "--organisation must be"},
      {"care add --subject " + patient + " --organisation ura:1 --from yesterday" + d, "--from must be"},
      {"care end --subject " + patient + " --organisation ura:1 --from 2026-01-01" + d, "takes --at"},
  };
  for (const auto& c : cases) {
    auto r = run(c.args);
    INFO(c.args);
    INFO(r.output);
    CHECK(r.exit_code == 2);
    CHECK(r.output.find(c.message) != std::string::npos);
    CHECK(r.output.find("usage: telehub") != std::string::npos);
  }
  // Nothing was registered or created by the refused commands.
  auto service = auth::TokenService::open(data / "auth.db", core::system_clock());
  REQUIRE(service);
  CHECK((*service)->update_client_keys("h", read_file(keys / "jwks.json")).error().reason == "unknown_client");
  CHECK_FALSE(std::filesystem::exists(data / "care.db"));
}
