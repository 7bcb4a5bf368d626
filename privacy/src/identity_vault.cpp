// The identity vault (include/telehub/privacy/identity_vault.h).
//
// Vault file layout (SQLite, WAL, synchronous=FULL, secure_delete=ON, file mode 0600):
//
//   persons(subject_id TEXT PRIMARY KEY, created_ms INTEGER, updated_ms INTEGER) WITHOUT ROWID
//   fields(subject_id TEXT, name TEXT, ciphertext BLOB, PRIMARY KEY(subject_id, name)) WITHOUT ROWID
//   blind(hash BLOB PRIMARY KEY, kind TEXT, subject_id TEXT) WITHOUT ROWID, indexed by subject_id
//   documents(subject_id TEXT, name TEXT, ciphertext BLOB, PRIMARY KEY(subject_id, name)) WITHOUT ROWID
//       whole documents (put_document), ciphertext as for fields with associated data
//       subject_id + '\0' + "document:" + name, so a document never decrypts as a field.
//
// `fields.name` is one of the Person member names ("bsn", "given_name", ..., "email") or
// "record_number:<n>" (n = 0, 1, ... in registration order) holding "<system>|<value>"; systems
// may not contain '|' (FHIR token syntax, and a URI cannot hold it unescaped), so the split at
// the first '|' is unambiguous. Each ciphertext is
//   version (1 byte, 0x01) | nonce (12 random bytes) | AES-256-GCM ciphertext | tag (16 bytes)
// with associated data subject_id + '\0' + name. The field names (which fields are known) and
// the timestamps are in clear; no identifier is.
//
// `blind.hash` is HMAC-SHA-256 under the blind-index key of "bsn|<bsn>" (kind "bsn") or
// "rn|<system>|<value>" (kind "rn"); it answers find_by_* and conflict detection.
//
// Key file: the 64-byte key material (data key | blind-index key) wrapped with Kek::wrap under
// key_ad("vault", "keys"); written once (temp file, fsync, link() so it never replaces an
// existing key and is never seen half-written), mode 0600.
//
// Every statement is prepared with bound parameters; no value is ever spliced into SQL.
#include "telehub/privacy/identity_vault.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <charconv>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <set>

#include "telehub/core/bytes.h"
#include "telehub/sqlite/sqlite.h"

namespace telehub::privacy {
namespace {

using core::Code;

constexpr std::size_t kKeySize = 32;
constexpr std::uint8_t kFieldVersion = 0x01;
constexpr std::size_t kNonceSize = 12;
constexpr std::size_t kTagSize = 16;
constexpr std::size_t kMaxFieldBytes = 256;
constexpr std::string_view kRecordPrefix = "record_number:";
constexpr std::string_view kDocumentPrefix = "document:";
constexpr std::size_t kMaxDocumentBytes = 16u << 20;

bool valid_document_name(std::string_view name) {
  if (name.empty() || name.size() > 32) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'; });
}

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

// Wipes a string's bytes (plaintext identifiers) before it is released.
void wipe(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

std::string_view trim_spaces(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

RecordNumber normalised(const RecordNumber& r) {
  return RecordNumber{std::string(trim_spaces(r.system)), std::string(trim_spaces(r.value))};
}

core::Error io_error(const core::Error& e) {
  // SQLite's text names tables and columns, never bound values (sqlite.h).
  return core::make_error(Code::kUnavailable, "vault_io", "identity vault storage: " + e.message);
}

core::Error corrupt() {
  return core::make_error(Code::kDataLoss, "vault_corrupt",
                          "an identity vault field does not decrypt (damaged or moved ciphertext)");
}

// Field names in the `fields` table, and how they map onto Person.
struct FieldDef {
  const char* name;
  std::string Person::*member;
};
constexpr FieldDef kFields[] = {
    {"bsn", &Person::bsn},
    {"given_name", &Person::given_name},
    {"family_name", &Person::family_name},
    {"birth_date", &Person::birth_date},
    {"sex", &Person::sex},
    {"address_line", &Person::address_line},
    {"postcode", &Person::postcode},
    {"city", &Person::city},
    {"phone", &Person::phone},
    {"email", &Person::email},
};

bool valid_date(std::string_view d) {
  if (d.size() != 10 || d[4] != '-' || d[7] != '-') return false;
  for (std::size_t i : {0, 1, 2, 3, 5, 6, 8, 9})
    if (d[i] < '0' || d[i] > '9') return false;
  auto num = [&](std::size_t pos, std::size_t len) {
    int v = 0;
    std::from_chars(d.data() + pos, d.data() + pos + len, v);
    return v;
  };
  std::chrono::year_month_day ymd{std::chrono::year(num(0, 4)), std::chrono::month(static_cast<unsigned>(num(5, 2))),
                                  std::chrono::day(static_cast<unsigned>(num(8, 2)))};
  return ymd.ok();
}

// Why `p` cannot be registered (bad_person), or empty. BSN validity is checked separately.
std::string person_problem(const Person& p) {
  if (p.bsn.empty() && p.record_numbers.empty()) return "a person needs a BSN or a record number";
  for (const auto& f : kFields)
    if ((p.*f.member).size() > kMaxFieldBytes) return std::string("field ") + f.name + " is longer than 256 bytes";
  for (const auto& raw : p.record_numbers) {
    auto r = normalised(raw);
    if (r.system.empty() || r.value.empty()) return "a record number needs a system and a value";
    if (r.system.find('|') != std::string::npos) return "a record number system may not contain '|'";
    if (r.system.size() > kMaxFieldBytes || r.value.size() > kMaxFieldBytes)
      return "a record number system or value is longer than 256 bytes";
  }
  if (!p.birth_date.empty() && !valid_date(p.birth_date)) return "birth_date must be a calendar date YYYY-MM-DD";
  if (!p.sex.empty() && p.sex != "male" && p.sex != "female" && p.sex != "other" && p.sex != "unknown")
    return "sex must be male, female, other or unknown";
  return {};
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Creates the key file with fresh wrapped key material unless it exists; then reads it.
Result<core::Bytes> load_or_create_keys(const std::filesystem::path& path, const Kek& kek) {
  const std::string ad = key_ad("vault", "keys");
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
    auto keys = core::random_bytes(2 * kKeySize);
    if (!keys) return tl::unexpected(keys.error());
    auto blob = kek.wrap(*keys, ad);
    OPENSSL_cleanse(keys->data(), keys->size());
    if (!blob) return tl::unexpected(blob.error());
    auto suffix = core::random_bytes(8);
    if (!suffix) return tl::unexpected(suffix.error());
    auto tmp = path;
    tmp += ".tmp-" + core::to_hex(*suffix);
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return core::fail(Code::kUnavailable, "vault_io", "cannot create the vault key file");
    bool ok = ::write(fd, blob->data(), blob->size()) == static_cast<ssize_t>(blob->size()) && ::fsync(fd) == 0;
    ::close(fd);
    // link() is atomic and never replaces: when another process created the key first, its key wins.
    if (ok && ::link(tmp.c_str(), path.c_str()) != 0 && errno != EEXIST) ok = false;
    ::unlink(tmp.c_str());
    if (!ok) return core::fail(Code::kUnavailable, "vault_io", "cannot write the vault key file");
    if (path.has_parent_path()) {
      int dfd = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
      }
    }
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return core::fail(Code::kUnavailable, "vault_io", "cannot read the vault key file");
  core::Bytes blob((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto keys = kek.unwrap(blob, ad);
  if (!keys || keys->size() != 2 * kKeySize) {
    if (keys) OPENSSL_cleanse(keys->data(), keys->size());
    return core::fail(Code::kDataLoss, "unwrap_failed",
                      "the vault key file does not unwrap under this KEK (wrong KEK, or damaged file)");
  }
  return keys;
}

class SqliteIdentityVault final : public IdentityVault {
 public:
  SqliteIdentityVault(sqlite::Database db, const core::Bytes& keys)
      : db_(std::move(db)),
        data_key_(keys.begin(), keys.begin() + kKeySize),
        blind_key_(keys.begin() + kKeySize, keys.end()) {}

  ~SqliteIdentityVault() override {
    OPENSSL_cleanse(data_key_.data(), data_key_.size());
    OPENSSL_cleanse(blind_key_.data(), blind_key_.size());
  }

  Result<Registration> register_person(const Person& input) override {
    if (!input.bsn.empty()) {
      if (auto problem = bsn_problem(input.bsn); !problem.empty())
        return core::fail(Code::kInvalidArgument, "bad_bsn", "BSN " + problem);
    }
    if (auto problem = person_problem(input); !problem.empty())
      return core::fail(Code::kInvalidArgument, "bad_person", problem);

    Person p = input;
    for (auto& r : p.record_numbers) r = normalised(r);
    std::transform(p.postcode.begin(), p.postcode.end(), p.postcode.begin(),
                   [](char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; });
    // Distinct record numbers, in the order given.
    std::vector<RecordNumber> records;
    for (const auto& r : p.record_numbers)
      if (std::find(records.begin(), records.end(), r) == records.end()) records.push_back(r);

    std::lock_guard lock(mu_);
    auto tx = begin();
    if (!tx) return tl::unexpected(tx.error());
    auto result = register_locked(p, records);
    if (!result) {
      rollback();
      wipe(p);
      return result;
    }
    if (auto s = db_.exec("COMMIT"); !s) {
      rollback();
      wipe(p);
      return tl::unexpected(io_error(s.error()));
    }
    wipe(p);
    return result;
  }

  Result<std::optional<std::string>> find_by_bsn(std::string_view bsn) override {
    if (auto problem = bsn_problem(bsn); !problem.empty())
      return core::fail(Code::kInvalidArgument, "bad_bsn", "BSN " + problem);
    std::lock_guard lock(mu_);
    return lookup(bsn_hash(bsn));
  }

  Result<std::optional<std::string>> find_by_record_number(const RecordNumber& id) override {
    auto r = normalised(id);
    if (r.system.empty() || r.value.empty())
      return core::fail(Code::kInvalidArgument, "bad_person", "a record number needs a system and a value");
    std::lock_guard lock(mu_);
    return lookup(record_hash(r));
  }

  Result<std::optional<Person>> get(std::string_view subject_id) override {
    std::lock_guard lock(mu_);
    auto exists = person_exists(subject_id);
    if (!exists) return tl::unexpected(exists.error());
    if (!*exists) return std::optional<Person>();
    auto st = db_.prepare("SELECT name, ciphertext FROM fields WHERE subject_id = ?1");
    if (!st) return tl::unexpected(io_error(st.error()));
    st->bind(1, subject_id);
    Person p;
    p.subject_id = std::string(subject_id);
    std::map<long, RecordNumber> records;
    for (;;) {
      auto row = st->step();
      if (!row) return tl::unexpected(io_error(row.error()));
      if (!*row) break;
      std::string name = st->column_text(0);
      auto plain = decrypt(subject_id, name, st->column_blob_view(1));
      if (!plain) {
        wipe(p);
        return tl::unexpected(plain.error());
      }
      if (std::string_view(name).starts_with(kRecordPrefix)) {
        long n = -1;
        auto digits = std::string_view(name).substr(kRecordPrefix.size());
        auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
        auto bar = plain->find('|');
        if (ec != std::errc() || end != digits.data() + digits.size() || bar == std::string::npos) {
          privacy::wipe(*plain);
          wipe(p);
          return tl::unexpected(corrupt());
        }
        records[n] = RecordNumber{plain->substr(0, bar), plain->substr(bar + 1)};
      } else {
        for (const auto& f : kFields)
          if (name == f.name) p.*f.member = *plain;
      }
      privacy::wipe(*plain);
    }
    for (auto& [n, r] : records) p.record_numbers.push_back(std::move(r));
    return std::optional<Person>(std::move(p));
  }

  Result<bool> erase(std::string_view subject_id) override {
    std::lock_guard lock(mu_);
    auto tx = begin();
    if (!tx) return tl::unexpected(tx.error());
    auto exists = person_exists(subject_id);
    if (!exists || !*exists) {
      rollback();
      if (!exists) return tl::unexpected(exists.error());
      return false;
    }
    for (const char* sql : {"DELETE FROM fields WHERE subject_id = ?1", "DELETE FROM blind WHERE subject_id = ?1",
                            "DELETE FROM documents WHERE subject_id = ?1", "DELETE FROM persons WHERE subject_id = ?1"}) {
      auto s = run(sql, subject_id);
      if (!s) {
        rollback();
        return tl::unexpected(s.error());
      }
    }
    if (auto s = db_.exec("COMMIT"); !s) {
      rollback();
      return tl::unexpected(io_error(s.error()));
    }
    // secure_delete zeroed the cells in the new page images; checkpoint them into the main file
    // and truncate the WAL so older frames holding the erased ciphertexts are gone too. Best
    // effort: a reader in another process may hold the WAL, and the erase itself has committed.
    (void)db_.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    return true;
  }

  Status link_pseudonym(std::string_view subject_id, std::string_view pseudonym) override {
    if (pseudonym.empty()) return core::fail(Code::kInvalidArgument, "bad_person", "an empty pseudonym");
    std::lock_guard lock(mu_);
    auto exists = person_exists(subject_id);
    if (!exists) return tl::unexpected(exists.error());
    if (!*exists) return core::fail(Code::kNotFound, "no_subject", "no such subject in the vault");
    auto st = db_.prepare("INSERT OR REPLACE INTO blind(hash, kind, subject_id) VALUES(?1, 'ps', ?2)");
    if (!st) return tl::unexpected(io_error(st.error()));
    st->bind_blob(1, pseudonym_hash(pseudonym)).bind(2, subject_id);
    if (auto s = st->run(); !s) return tl::unexpected(io_error(s.error()));
    return {};
  }

  Result<std::optional<std::string>> find_by_pseudonym(std::string_view pseudonym) override {
    std::lock_guard lock(mu_);
    return lookup(pseudonym_hash(pseudonym));
  }

  Status put_document(std::string_view subject_id, std::string_view name, std::string_view bytes) override {
    if (!valid_document_name(name))
      return core::fail(Code::kInvalidArgument, "bad_document", "a document name must be [a-z0-9_-]{1,32}");
    if (bytes.size() > kMaxDocumentBytes)
      return core::fail(Code::kInvalidArgument, "bad_document", "a document is larger than 16 MiB");
    std::lock_guard lock(mu_);
    auto exists = person_exists(subject_id);
    if (!exists) return tl::unexpected(exists.error());
    if (!*exists) return core::fail(Code::kNotFound, "no_subject", "no such subject in the vault");
    auto blob = encrypt(subject_id, std::string(kDocumentPrefix) + std::string(name), bytes);
    if (!blob) return tl::unexpected(blob.error());
    auto st = db_.prepare("INSERT OR REPLACE INTO documents(subject_id, name, ciphertext) VALUES (?1, ?2, ?3)");
    if (!st) return tl::unexpected(io_error(st.error()));
    st->bind(1, subject_id).bind(2, name).bind_blob(3, *blob);
    if (auto s = st->run(); !s) return tl::unexpected(io_error(s.error()));
    return {};
  }

  Result<std::optional<std::string>> document(std::string_view subject_id, std::string_view name) override {
    std::lock_guard lock(mu_);
    auto st = db_.prepare("SELECT ciphertext FROM documents WHERE subject_id = ?1 AND name = ?2");
    if (!st) return tl::unexpected(io_error(st.error()));
    st->bind(1, subject_id).bind(2, name);
    auto row = st->step();
    if (!row) return tl::unexpected(io_error(row.error()));
    if (!*row) return std::optional<std::string>();
    auto plain = decrypt(subject_id, std::string(kDocumentPrefix) + std::string(name), st->column_blob_view(0));
    if (!plain) return tl::unexpected(plain.error());
    return std::optional<std::string>(std::move(*plain));
  }

  Result<std::vector<std::string>> subject_ids() override {
    std::lock_guard lock(mu_);
    auto st = db_.prepare("SELECT subject_id FROM persons ORDER BY subject_id");
    if (!st) return tl::unexpected(io_error(st.error()));
    std::vector<std::string> ids;
    for (;;) {
      auto row = st->step();
      if (!row) return tl::unexpected(io_error(row.error()));
      if (!*row) break;
      ids.push_back(st->column_text(0));
    }
    return ids;
  }

 private:
  static void wipe(Person& p) {
    for (const auto& f : kFields) privacy::wipe(p.*f.member);
    for (auto& r : p.record_numbers) {
      privacy::wipe(r.system);
      privacy::wipe(r.value);
    }
  }

  Status begin() {
    if (auto s = db_.exec("BEGIN IMMEDIATE"); !s) return tl::unexpected(io_error(s.error()));
    return {};
  }
  void rollback() { (void)db_.exec("ROLLBACK"); }

  Status run(const char* sql, std::string_view subject_id) {
    auto st = db_.prepare(sql);
    if (!st) return tl::unexpected(io_error(st.error()));
    st->bind(1, subject_id);
    if (auto s = st->run(); !s) return tl::unexpected(io_error(s.error()));
    return {};
  }

  Result<bool> person_exists(std::string_view subject_id) {
    auto st = db_.prepare("SELECT 1 FROM persons WHERE subject_id = ?1");
    if (!st) return tl::unexpected(io_error(st.error()));
    st->bind(1, subject_id);
    auto row = st->step();
    if (!row) return tl::unexpected(io_error(row.error()));
    return *row;
  }

  core::Bytes hmac(std::string message) const {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), blind_key_.data(), static_cast<int>(blind_key_.size()),
         reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &len);
    privacy::wipe(message);
    return core::Bytes(mac, mac + len);
  }
  core::Bytes bsn_hash(std::string_view bsn) const { return hmac("bsn|" + std::string(bsn)); }
  core::Bytes record_hash(const RecordNumber& r) const { return hmac("rn|" + r.system + "|" + r.value); }
  core::Bytes pseudonym_hash(std::string_view pseudonym) const { return hmac("ps|" + std::string(pseudonym)); }

  Result<std::optional<std::string>> lookup(const core::Bytes& hash) {
    auto st = db_.prepare("SELECT subject_id FROM blind WHERE hash = ?1");
    if (!st) return tl::unexpected(io_error(st.error()));
    st->bind_blob(1, hash);
    auto row = st->step();
    if (!row) return tl::unexpected(io_error(row.error()));
    if (!*row) return std::optional<std::string>();
    return std::optional<std::string>(st->column_text(0));
  }

  Result<core::Bytes> encrypt(std::string_view subject_id, std::string_view name, std::string_view plain) const {
    auto nonce = core::random_bytes(kNonceSize);
    if (!nonce) return tl::unexpected(nonce.error());
    std::string ad(subject_id);
    ad += '\0';
    ad += name;
    core::Bytes out(1 + kNonceSize + plain.size() + kTagSize);
    out[0] = kFieldVersion;
    std::copy(nonce->begin(), nonce->end(), out.begin() + 1);
    Ctx ctx(EVP_CIPHER_CTX_new());
    int len = 0;
    bool ok = ctx && EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
              EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(kNonceSize), nullptr) == 1 &&
              EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, data_key_.data(), nonce->data()) == 1 &&
              EVP_EncryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(ad.data()),
                                static_cast<int>(ad.size())) == 1 &&
              EVP_EncryptUpdate(ctx.get(), out.data() + 1 + kNonceSize, &len,
                                reinterpret_cast<const unsigned char*>(plain.data()),
                                static_cast<int>(plain.size())) == 1 &&
              EVP_EncryptFinal_ex(ctx.get(), out.data() + 1 + kNonceSize + len, &len) == 1 &&
              EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagSize),
                                  out.data() + 1 + kNonceSize + plain.size()) == 1;
    if (!ok) return core::fail(Code::kInternal, "encrypt_failed", "AES-256-GCM field encryption failed");
    return out;
  }

  Result<std::string> decrypt(std::string_view subject_id, std::string_view name,
                              std::span<const std::uint8_t> blob) const {
    if (blob.size() < 1 + kNonceSize + kTagSize || blob[0] != kFieldVersion) return tl::unexpected(corrupt());
    std::string ad(subject_id);
    ad += '\0';
    ad += name;
    const std::size_t n = blob.size() - 1 - kNonceSize - kTagSize;
    std::string out(n, '\0');
    core::Bytes tag(blob.begin() + 1 + kNonceSize + n, blob.end());
    Ctx ctx(EVP_CIPHER_CTX_new());
    int len = 0;
    bool ok = ctx && EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
              EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(kNonceSize), nullptr) == 1 &&
              EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, data_key_.data(), blob.data() + 1) == 1 &&
              EVP_DecryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(ad.data()),
                                static_cast<int>(ad.size())) == 1 &&
              EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len,
                                blob.data() + 1 + kNonceSize, static_cast<int>(n)) == 1 &&
              EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagSize), tag.data()) == 1 &&
              EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + len, &len) == 1;
    if (!ok) {
      privacy::wipe(out);
      return tl::unexpected(corrupt());
    }
    return out;
  }

  Status put_field(std::string_view subject_id, std::string_view name, std::string_view plain) {
    auto blob = encrypt(subject_id, name, plain);
    if (!blob) return tl::unexpected(blob.error());
    auto st = db_.prepare("INSERT OR REPLACE INTO fields(subject_id, name, ciphertext) VALUES (?1, ?2, ?3)");
    if (!st) return tl::unexpected(io_error(st.error()));
    st->bind(1, subject_id).bind(2, name).bind_blob(3, *blob);
    if (auto s = st->run(); !s) return tl::unexpected(io_error(s.error()));
    return {};
  }

  Status put_blind(const core::Bytes& hash, std::string_view kind, std::string_view subject_id) {
    auto st = db_.prepare("INSERT INTO blind(hash, kind, subject_id) VALUES (?1, ?2, ?3)");
    if (!st) return tl::unexpected(io_error(st.error()));
    st->bind_blob(1, hash).bind(2, kind).bind(3, subject_id);
    if (auto s = st->run(); !s) return tl::unexpected(io_error(s.error()));
    return {};
  }

  // The next free record_number:<n> index of a subject.
  Result<long> next_record_index(std::string_view subject_id) {
    auto st = db_.prepare("SELECT name FROM fields WHERE subject_id = ?1 AND name LIKE 'record_number:%'");
    if (!st) return tl::unexpected(io_error(st.error()));
    st->bind(1, subject_id);
    long next = 0;
    for (;;) {
      auto row = st->step();
      if (!row) return tl::unexpected(io_error(row.error()));
      if (!*row) break;
      auto name = st->column_text(0);
      long n = -1;
      std::from_chars(name.data() + kRecordPrefix.size(), name.data() + name.size(), n);
      next = std::max(next, n + 1);
    }
    return next;
  }

  // The body of register_person, inside a transaction the caller commits or rolls back.
  Result<Registration> register_locked(const Person& p, const std::vector<RecordNumber>& records) {
    const core::Bytes bsn_key = p.bsn.empty() ? core::Bytes() : bsn_hash(p.bsn);
    std::vector<core::Bytes> record_keys;
    for (const auto& r : records) record_keys.push_back(record_hash(r));

    // Who the identifiers already belong to.
    std::optional<std::string> by_bsn;
    if (!p.bsn.empty()) {
      auto found = lookup(bsn_key);
      if (!found) return tl::unexpected(found.error());
      by_bsn = *found;
    }
    std::set<std::string> owners;
    if (by_bsn) owners.insert(*by_bsn);
    std::vector<bool> record_known(records.size(), false);
    for (std::size_t i = 0; i < records.size(); ++i) {
      auto found = lookup(record_keys[i]);
      if (!found) return tl::unexpected(found.error());
      if (*found) {
        owners.insert(**found);
        record_known[i] = true;
      }
    }
    if (owners.size() > 1)
      return core::fail(Code::kFailedPrecondition, "identifier_conflict",
                        "the given identifiers belong to different subjects");

    Registration reg;
    const std::int64_t now = now_ms();
    if (owners.empty()) {
      auto random = core::random_bytes(16);
      if (!random) return tl::unexpected(random.error());
      reg.subject_id = "s-" + core::to_hex(*random);
      reg.created = true;
      auto st = db_.prepare("INSERT INTO persons(subject_id, created_ms, updated_ms) VALUES (?1, ?2, ?2)");
      if (!st) return tl::unexpected(io_error(st.error()));
      st->bind(1, reg.subject_id).bind(2, now);
      if (auto s = st->run(); !s) return tl::unexpected(io_error(s.error()));
    } else {
      reg.subject_id = *owners.begin();
      if (!p.bsn.empty() && !by_bsn) {
        // Found by record number: the subject may already have another BSN.
        auto has_bsn = db_.prepare("SELECT 1 FROM blind WHERE subject_id = ?1 AND kind = 'bsn'");
        if (!has_bsn) return tl::unexpected(io_error(has_bsn.error()));
        has_bsn->bind(1, reg.subject_id);
        auto row = has_bsn->step();
        if (!row) return tl::unexpected(io_error(row.error()));
        if (*row)
          return core::fail(Code::kFailedPrecondition, "identifier_conflict",
                            "the record number belongs to a subject with a different BSN");
      }
      auto st = db_.prepare("UPDATE persons SET updated_ms = ?2 WHERE subject_id = ?1");
      if (!st) return tl::unexpected(io_error(st.error()));
      st->bind(1, reg.subject_id).bind(2, now);
      if (auto s = st->run(); !s) return tl::unexpected(io_error(s.error()));
    }

    for (const auto& f : kFields) {
      const std::string& value = p.*f.member;
      if (value.empty()) continue;
      if (auto s = put_field(reg.subject_id, f.name, value); !s) return tl::unexpected(s.error());
    }
    if (!p.bsn.empty() && !by_bsn) {
      if (auto s = put_blind(bsn_key, "bsn", reg.subject_id); !s) return tl::unexpected(s.error());
    }
    auto next = next_record_index(reg.subject_id);
    if (!next) return tl::unexpected(next.error());
    for (std::size_t i = 0; i < records.size(); ++i) {
      if (record_known[i]) continue;
      std::string plain = records[i].system + "|" + records[i].value;
      auto s = put_field(reg.subject_id, std::string(kRecordPrefix) + std::to_string((*next)++), plain);
      privacy::wipe(plain);
      if (!s) return tl::unexpected(s.error());
      if (auto b = put_blind(record_keys[i], "rn", reg.subject_id); !b) return tl::unexpected(b.error());
    }
    return reg;
  }

  std::mutex mu_;
  sqlite::Database db_;
  core::Bytes data_key_;
  core::Bytes blind_key_;
};

constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS persons("
    "  subject_id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS fields("
    "  subject_id TEXT NOT NULL, name TEXT NOT NULL, ciphertext BLOB NOT NULL,"
    "  PRIMARY KEY(subject_id, name)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS blind("
    "  hash BLOB PRIMARY KEY, kind TEXT NOT NULL, subject_id TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS blind_subject ON blind(subject_id);"
    "CREATE TABLE IF NOT EXISTS documents("
    "  subject_id TEXT NOT NULL, name TEXT NOT NULL, ciphertext BLOB NOT NULL,"
    "  PRIMARY KEY(subject_id, name)) WITHOUT ROWID;";

}  // namespace

std::string bsn_problem(std::string_view bsn) {
  if (bsn.size() != 9 || !std::all_of(bsn.begin(), bsn.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return "must be 9 digits";
  if (bsn == "000000000") return "must not be all zeros";
  int sum = 0;
  for (int i = 0; i < 8; ++i) sum += (9 - i) * (bsn[static_cast<std::size_t>(i)] - '0');
  sum -= bsn[8] - '0';
  if (sum % 11 != 0) return "fails the 11-test";
  return {};
}

bool valid_bsn(std::string_view bsn) { return bsn_problem(bsn).empty(); }

Result<std::unique_ptr<IdentityVault>> IdentityVault::open(const std::filesystem::path& vault_file,
                                                           const std::filesystem::path& key_file, const Kek& kek) {
  auto keys = load_or_create_keys(key_file, kek);
  if (!keys) return tl::unexpected(keys.error());
  struct Wipe {
    core::Bytes& b;
    ~Wipe() { OPENSSL_cleanse(b.data(), b.size()); }
  } wipe_keys{*keys};

  // Create the file ourselves so it is 0600; SQLite gives -wal and -shm the same mode.
  std::error_code ec;
  if (vault_file.has_parent_path()) std::filesystem::create_directories(vault_file.parent_path(), ec);
  int fd = ::open(vault_file.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return core::fail(Code::kUnavailable, "vault_io", "cannot create the identity vault file");
  ::close(fd);

  auto db = sqlite::Database::open(vault_file);
  if (!db) return tl::unexpected(io_error(db.error()));
  if (auto s = db->exec("PRAGMA secure_delete=ON;"); !s) return tl::unexpected(io_error(s.error()));
  if (auto s = db->exec(kSchema); !s) return tl::unexpected(io_error(s.error()));
  return std::unique_ptr<IdentityVault>(new SqliteIdentityVault(std::move(*db), *keys));
}

}  // namespace telehub::privacy
