// `telehub client keygen|register|rotate|assertion`, `telehub token create|revoke` and
// `telehub care add|end|list`: API clients (SMART Backend Services), API tokens and care
// relations (docs/security.md, "Registering a hospital system and getting tokens").
//
// Registered clients and API tokens live in <data>/auth.db (auth::TokenService), care
// relations in <data>/care.db (privacy::CareRelations). Every care command writes an audit
// record first; if it cannot be written the command does nothing ("no audit, no access", as in
// privacy_cmds.cpp). Secrets: the client's private key goes only to a 0600 file; an API token
// is printed once on stdout and only its hash is stored.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "args.h"
#include "commands.h"
#include "hub_files.h"
#include "privacy_stores.h"
#include "telehub/auth/client_key.h"
#include "telehub/auth/token_service.h"
#include "telehub/core/time.h"
#include "telehub/privacy/care_relations.h"
#include "telehub/privacy/pseudonym.h"

namespace telehub::apps {
namespace {

constexpr const char* kClientHelp = R"(usage: telehub client keygen --out DIR [--alg ES384|RS384]
       telehub client register --id ID --jwks FILE --scopes "SCOPE..." --role ROLE [--organisation ORG] [--data DIR]
       telehub client rotate --id ID --jwks FILE [--data DIR]
       telehub client assertion --id ID --key FILE --aud TOKEN_URL [--lifetime SECONDS]

SMART Backend Services clients (https://hl7.org/fhir/smart-app-launch/backend-services.html).
keygen:    (client side) a new key pair: DIR/client-key.pem (private, mode 0600; never leaves the
           client) and DIR/jwks.json (public: give it to the hub operator). Prints the kid.
           ES384 (P-384, default) or RS384 (RSA 3072).
register:  (hub operator) registers a client with its public JWK Set and the system scopes it
           may ask for, e.g. "system/Observation.rs system/Patient.rs". ROLE: care (a care
           provider's system; needs --organisation, e.g. ura:12345678), research, enrolment,
           operator.
rotate:    (hub operator) replaces a client's JWK Set.
assertion: (client side) prints a signed JWT assertion for POST /auth/token
           (client_assertion); --aud is the token URL, --lifetime 1..300 (default 240).
  --data DIR   data directory (default ./data)
)";

constexpr const char* kTokenHelp = R"(usage: telehub token create --name NAME --role ROLE --scopes "SCOPE..." [--expires-in SECONDS] [--data DIR]
       telehub token revoke --name NAME [--data DIR]

API tokens for operators and researchers (Authorization: Bearer <token>). create prints the
token once, alone on stdout; only its SHA-256 is stored, so it cannot be shown again. ROLE:
operator, research, enrolment or care. Without --expires-in the token does not expire.
revoke deletes every API token with that name.
  --data DIR   data directory (default ./data)
)";

constexpr const char* kCareHelp = R"(usage: telehub care add --subject PSEUDONYM --organisation ORG [--from DATE] [options]
       telehub care end --subject PSEUDONYM --organisation ORG [--at DATE] [options]
       telehub care list --subject PSEUDONYM [options]

Care relations: which organisation treats which subject, and when. A care client sees
identified data only of subjects in an active relation with its organisation.
add:  a relation from DATE (default now), open-ended; an already active one is kept.
end:  ends the pair's open relations at DATE (default now).
list: every relation of the subject.
DATE: YYYY-MM-DD (00:00 UTC) or an RFC 3339 date-time. ORG: 1..128 characters from
[A-Za-z0-9._:-] (e.g. ura:12345678). Every command is audited.
  --data DIR       data directory (default ./data)
  --kek-file PATH  key-encryption key file (default: $TELEHUB_KEK, else ~/.config/telehub/kek)
)";

int usage(const char* help, const std::string& message) {
  std::cerr << "telehub: " << message << "\n" << help;
  return 2;
}

// Checks that every option in `required` was given; on the first missing one prints the usage
// and returns false with `status` = 2.
bool require(const Args& args, const char* help, std::initializer_list<const char*> required, int& status) {
  for (const char* name : required) {
    if (!args.has(name) || args.get(name).empty()) {
      status = usage(help, std::string("--") + name + " is required");
      return false;
    }
  }
  return true;
}

Result<std::string> read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return core::fail(core::Code::kNotFound, "no_file", "cannot read " + path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Writes a new file with `mode`; refuses to replace an existing one (a key is never clobbered).
Status write_new_file(const std::filesystem::path& path, std::string_view text, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    const int err = errno;
    return core::fail(core::Code::kUnavailable, err == EEXIST ? "file_exists" : "write_failed",
                      path.string() + ": " + std::strerror(err));
  }
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      return core::fail(core::Code::kUnavailable, "write_failed", path.string() + ": write failed");
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0)
    return core::fail(core::Code::kUnavailable, "write_failed", path.string() + ": write failed");
  return {};
}

Result<std::unique_ptr<auth::TokenService>> open_tokens(const Args& args) {
  auto dir = open_data_dir(args.get("data", "data"));
  if (!dir) return tl::unexpected(dir.error());
  return auth::TokenService::open(dir->auth_db(), core::system_clock());
}

// Errors from TokenService about the command's arguments are usage errors (exit 2); a bad key
// file, a duplicate client or storage problems are runtime failures (exit 1).
int service_error(const char* help, const core::Error& e) {
  if (e.reason == "bad_scope" || e.reason == "bad_role" || e.reason == "bad_client")
    return usage(help, e.message + " [" + e.reason + "]");
  return fail_with(e);
}

// --from / --at: YYYY-MM-DD (00:00 UTC) or RFC 3339; absent: now.
std::optional<core::TimePoint> when(const Args& args, const char* option) {
  if (!args.has(option)) return core::system_clock().now();
  const std::string text = args.get(option);
  auto t = core::parse_rfc3339(text.size() == 10 ? text + "T00:00:00Z" : text);
  if (!t) return std::nullopt;
  return *t;
}

int client_keygen(const Args& args) {
  int status = 0;
  if (!require(args, kClientHelp, {"out"}, status)) return status;
  const std::string alg = args.get("alg", "ES384");
  if (alg != "ES384" && alg != "RS384") return usage(kClientHelp, "--alg must be ES384 or RS384");
  const std::filesystem::path out = args.get("out");
  std::error_code ec;
  std::filesystem::create_directories(out, ec);
  if (ec) {
    std::cerr << "telehub: cannot create " << out.string() << ": " << ec.message() << "\n";
    return 1;
  }
  const auto pem_path = out / "client-key.pem";
  const auto jwks_path = out / "jwks.json";
  if (std::filesystem::exists(pem_path) || std::filesystem::exists(jwks_path)) {
    std::cerr << "telehub: " << out.string() << " already holds client-key.pem or jwks.json; not overwriting\n";
    return 1;
  }
  auto key = auth::generate_client_key(alg == "RS384" ? auth::ClientKeyType::kRs384 : auth::ClientKeyType::kEs384);
  if (!key) return fail_with(key.error());
  if (auto s = write_new_file(pem_path, key->private_key_pem, 0600); !s) return fail_with(s.error());
  if (auto s = write_new_file(jwks_path, key->jwks_json + "\n", 0644); !s) return fail_with(s.error());
  std::cout << "kid:          " << key->kid << "\n"
            << "alg:          " << key->alg << "\n"
            << "private key:  " << pem_path.string() << " (mode 0600; keep it on the client)\n"
            << "public keys:  " << jwks_path.string() << " (for `telehub client register --jwks`)\n";
  return 0;
}

int client_register(const Args& args) {
  int status = 0;
  if (!require(args, kClientHelp, {"id", "jwks", "scopes", "role"}, status)) return status;
  const std::string role = args.get("role");
  if (!auth::valid_role(role)) return usage(kClientHelp, "--role must be care, research, enrolment or operator");
  const std::string organisation = args.get("organisation");
  if (role == "care" && organisation.empty())
    return usage(kClientHelp, "a care client needs --organisation (its care relations name it)");
  if (!organisation.empty() && !privacy::valid_organisation(organisation))
    return usage(kClientHelp, "--organisation must be 1..128 characters from [A-Za-z0-9._:-]");
  auto jwks = read_text(args.get("jwks"));
  if (!jwks) return fail_with(jwks.error());
  auto service = open_tokens(args);
  if (!service) return fail_with(service.error());
  auth::ClientRegistration reg;
  reg.client_id = args.get("id");
  reg.jwks_json = *jwks;
  reg.allowed_scopes = args.get("scopes");
  reg.role = role;
  reg.organisation = organisation;
  if (auto s = (*service)->register_client(reg); !s) return service_error(kClientHelp, s.error());
  std::cout << "registered:   client " << reg.client_id << " (role " << role
            << (organisation.empty() ? "" : ", organisation " + organisation) << ")\n"
            << "scopes:       " << reg.allowed_scopes << "\n";
  return 0;
}

int client_rotate(const Args& args) {
  int status = 0;
  if (!require(args, kClientHelp, {"id", "jwks"}, status)) return status;
  auto jwks = read_text(args.get("jwks"));
  if (!jwks) return fail_with(jwks.error());
  auto service = open_tokens(args);
  if (!service) return fail_with(service.error());
  if (auto s = (*service)->update_client_keys(args.get("id"), *jwks); !s) return fail_with(s.error());
  std::cout << "rotated:      the keys of client " << args.get("id") << "\n";
  return 0;
}

int client_assertion(const Args& args) {
  int status = 0;
  if (!require(args, kClientHelp, {"id", "key", "aud"}, status)) return status;
  auto lifetime = args.get_int("lifetime", 240, 1, 300);
  if (!lifetime) return usage(kClientHelp, lifetime.error().message);
  auto pem = read_text(args.get("key"));
  if (!pem) return fail_with(pem.error());
  auth::AssertionClaims claims;
  claims.client_id = args.get("id");
  claims.token_url = args.get("aud");
  claims.lifetime = std::chrono::seconds(*lifetime);
  auto jws = auth::sign_assertion(*pem, claims, core::system_clock().now());
  if (!jws) return fail_with(jws.error());
  std::cout << *jws << "\n";
  return 0;
}

}  // namespace

int cmd_client(int argc, char** argv) {
  const std::string sub = argc >= 3 ? argv[2] : "";
  if (sub == "--help" || sub == "help") {
    std::cout << kClientHelp;
    return 0;
  }
  if (sub != "keygen" && sub != "register" && sub != "rotate" && sub != "assertion")
    return usage(kClientHelp, "unknown client command");
  auto parsed = parse_args(argc, argv, 3,
                           {"data", "out", "alg", "id", "jwks", "scopes", "role", "organisation", "key", "aud",
                            "lifetime"},
                           {"help"});
  if (!parsed) return usage(kClientHelp, parsed.error().message);
  const Args& args = *parsed;
  if (args.has("help")) {
    std::cout << kClientHelp;
    return 0;
  }
  if (!args.words.empty()) return usage(kClientHelp, "unexpected argument '" + args.words[0] + "'");
  if (sub == "keygen") return client_keygen(args);
  if (sub == "register") return client_register(args);
  if (sub == "rotate") return client_rotate(args);
  return client_assertion(args);
}

int cmd_token(int argc, char** argv) {
  const std::string sub = argc >= 3 ? argv[2] : "";
  if (sub == "--help" || sub == "help") {
    std::cout << kTokenHelp;
    return 0;
  }
  if (sub != "create" && sub != "revoke") return usage(kTokenHelp, "unknown token command");
  auto parsed = parse_args(argc, argv, 3, {"data", "name", "role", "scopes", "expires-in"}, {"help"});
  if (!parsed) return usage(kTokenHelp, parsed.error().message);
  const Args& args = *parsed;
  if (args.has("help")) {
    std::cout << kTokenHelp;
    return 0;
  }
  if (!args.words.empty()) return usage(kTokenHelp, "unexpected argument '" + args.words[0] + "'");
  int status = 0;
  if (sub == "create") {
    if (!require(args, kTokenHelp, {"name", "role", "scopes"}, status)) return status;
    if (!auth::valid_role(args.get("role")))
      return usage(kTokenHelp, "--role must be operator, research, enrolment or care");
    std::optional<std::chrono::seconds> expires_in;
    if (args.has("expires-in")) {
      auto s = args.get_int("expires-in", 0, 1, 10LL * 366 * 24 * 3600);
      if (!s) return usage(kTokenHelp, s.error().message);
      expires_in = std::chrono::seconds(*s);
    }
    auto service = open_tokens(args);
    if (!service) return fail_with(service.error());
    auto token = (*service)->create_api_token(args.get("name"), args.get("role"), args.get("scopes"), expires_in);
    if (!token) return service_error(kTokenHelp, token.error());
    std::cout << *token << std::endl;
    std::cerr << "telehub: API token " << args.get("name") << " created"
              << (expires_in ? ", expires in " + std::to_string(expires_in->count()) + " s" : ", no expiry")
              << "; it is shown only this once\n";
    return 0;
  }
  // revoke
  if (!require(args, kTokenHelp, {"name"}, status)) return status;
  auto service = open_tokens(args);
  if (!service) return fail_with(service.error());
  auto n = (*service)->revoke_api_tokens(args.get("name"));
  if (!n) return fail_with(n.error());
  if (*n == 0) {
    std::cerr << "telehub: no API token has that name\n";
    return 1;
  }
  std::cout << "revoked:      " << *n << " API token(s) named " << args.get("name") << "\n";
  return 0;
}

int cmd_care(int argc, char** argv) {
  const std::string sub = argc >= 3 ? argv[2] : "";
  if (sub == "--help" || sub == "help") {
    std::cout << kCareHelp;
    return 0;
  }
  if (sub != "add" && sub != "end" && sub != "list") return usage(kCareHelp, "unknown care command");
  auto parsed = parse_args(argc, argv, 3, {"data", "kek-file", "subject", "organisation", "from", "at"}, {"help"});
  if (!parsed) return usage(kCareHelp, parsed.error().message);
  const Args& args = *parsed;
  if (args.has("help")) {
    std::cout << kCareHelp;
    return 0;
  }
  if (!args.words.empty()) return usage(kCareHelp, "unexpected argument '" + args.words[0] + "'");
  int status = 0;
  if (!require(args, kCareHelp, {"subject"}, status)) return status;
  if (sub != "list" && !require(args, kCareHelp, {"organisation"}, status)) return status;
  const std::string subject = args.get("subject");
  const std::string organisation = args.get("organisation");
  if (!privacy::SubjectPseudonym::parse(subject)) return usage(kCareHelp, "--subject must be a Patient pseudonym");
  if (sub != "list" && !privacy::valid_organisation(organisation))
    return usage(kCareHelp, "--organisation must be 1..128 characters from [A-Za-z0-9._:-]");
  if (sub == "list" && args.has("organisation")) return usage(kCareHelp, "care list takes no --organisation");
  const char* time_option = sub == "add" ? "from" : "at";
  if (args.has(sub == "add" ? "at" : "from") || (sub == "list" && (args.has("at") || args.has("from"))))
    return usage(kCareHelp, sub == "list" ? "care list takes no date" : "care " + sub + " takes --" + time_option);
  const auto at = when(args, time_option);
  if (!at) return usage(kCareHelp, std::string("--") + time_option + " must be YYYY-MM-DD or an RFC 3339 date-time");

  auto dir = open_data_dir(args.get("data", "data"));
  if (!dir) return fail_with(dir.error());
  auto kek = load_kek(args.get("kek-file"), *dir);
  if (!kek) return fail_with(kek.error());
  auto p = open_privacy(*dir, *kek);
  if (!p) return fail_with(p.error());
  auto care = privacy::CareRelations::open(dir->care_db());
  if (!care) return fail_with(care.error());

  // No audit, no access.
  const char action = sub == "add" ? 'C' : sub == "end" ? 'U' : 'R';
  auto written = p.value().audit->append(
      cli_audit("care." + std::string(sub == "list" ? "read" : sub), action, subject,
                sub == "list" ? "CareRelation" : "CareRelation organisation=" + organisation, "care-relation"));
  if (!written) {
    std::cerr << "telehub: access refused: the audit record could not be written (" << written.error().message
              << ") [" << written.error().reason << "]\n";
    return 1;
  }

  if (sub == "add") {
    auto id = (*care)->add(subject, organisation, *at, "cli");
    if (!id) return fail_with(id.error());
    std::cout << "care relation " << *id << ": Patient/" << subject << " with " << organisation
              << " active at " << core::format_rfc3339(*at) << "\n";
    return 0;
  }
  if (sub == "end") {
    auto n = (*care)->end(subject, organisation, *at);
    if (!n) return fail_with(n.error());
    std::cout << "ended:        " << *n << " care relation(s) of Patient/" << subject << " with " << organisation
              << " at " << core::format_rfc3339(*at) << "\n";
    return 0;
  }
  auto list = (*care)->of_subject(subject);
  if (!list) return fail_with(list.error());
  for (const auto& r : *list)
    std::cout << r.id << "  " << r.organisation << "  from " << core::format_rfc3339(r.from)
              << (r.until ? "  until " + core::format_rfc3339(*r.until) : "  (open)") << "  (" << r.source << ")\n";
  if (list->empty()) std::cout << "(no care relations)\n";
  return 0;
}

}  // namespace telehub::apps
