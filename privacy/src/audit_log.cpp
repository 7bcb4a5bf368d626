// The hash-chained audit log; see include/telehub/privacy/audit_log.h for the canonical form
// and the error policy.
#include "telehub/privacy/audit_log.h"

#include <openssl/evp.h>

#include <array>
#include <cstdint>
#include <limits>
#include <mutex>
#include <string_view>
#include <utility>

#include "telehub/core/bytes.h"
#include "telehub/sqlite/sqlite.h"

namespace telehub::privacy {
namespace {

// Short enough that a caller waiting on a locked file refuses the access quickly.
constexpr int kBusyTimeoutMs = 2000;

constexpr std::string_view kSchema =
    "CREATE TABLE IF NOT EXISTS audit ("
    "sequence INTEGER PRIMARY KEY, recorded TEXT NOT NULL, event_type TEXT NOT NULL, action TEXT NOT NULL, "
    "outcome TEXT NOT NULL, user_id TEXT NOT NULL, role TEXT NOT NULL, on_behalf_of TEXT NOT NULL, "
    "purpose TEXT NOT NULL, access_point TEXT NOT NULL, subject TEXT NOT NULL, objects TEXT NOT NULL, "
    "query TEXT NOT NULL, source TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS audit_subject ON audit(subject);";

// Column list shared by every read, in the order read_row() expects.
#define TELEHUB_AUDIT_COLUMNS                                                                          \
  "sequence, recorded, event_type, action, outcome, user_id, role, on_behalf_of, purpose, access_point, " \
  "subject, objects, query, source, prev_hash, hash"

constexpr std::string_view kInsert =
    "INSERT INTO audit (" TELEHUB_AUDIT_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";
constexpr std::string_view kLast = "SELECT sequence, hash FROM audit ORDER BY sequence DESC LIMIT 1";
constexpr std::string_view kAll = "SELECT " TELEHUB_AUDIT_COLUMNS " FROM audit ORDER BY sequence";
constexpr std::string_view kBySubject =
    "SELECT " TELEHUB_AUDIT_COLUMNS " FROM audit WHERE subject = ?1 ORDER BY sequence";
constexpr std::string_view kRecent =
    "SELECT " TELEHUB_AUDIT_COLUMNS " FROM (SELECT * FROM audit ORDER BY sequence DESC LIMIT ?1) ORDER BY sequence";

core::Error io_error(const core::Error& cause, std::string_view what) {
  // The SQLite message names tables and columns, never values (sqlite.h), so it is safe here.
  return core::make_error(core::Code::kUnavailable, "audit_io", std::string(what) + ": " + cause.message);
}

void append_escaped(std::string& out, std::string_view value) {
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

void add_field(std::string& out, std::string_view name, std::string_view value) {
  if (!out.empty()) out += '\n';
  out += name;
  out += '=';
  append_escaped(out, value);
}

std::string sha256_hex(std::string_view data) {
  std::array<std::uint8_t, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  if (EVP_Digest(data.data(), data.size(), digest.data(), &size, EVP_sha256(), nullptr) != 1) return {};
  return core::to_hex(std::span<const std::uint8_t>(digest.data(), size));
}

std::string hash_of(const AuditRecord& record) { return sha256_hex(canonical_form(record)); }

bool valid_action(char a) { return a == 'C' || a == 'R' || a == 'U' || a == 'D' || a == 'E'; }
bool valid_outcome(std::string_view o) { return o == "success" || o == "denied" || o == "failure"; }

// RFC 3339 with a numeric offset, as the header documents: "...T14:03:11.123+00:00".
std::string recorded_now(const core::Clock& clock) {
  std::string text = core::format_rfc3339(clock.now());
  if (!text.empty() && text.back() == 'Z') {
    text.pop_back();
    text += "+00:00";
  }
  return text;
}

// A row in TELEHUB_AUDIT_COLUMNS order. `action_text` receives the stored action as text, so
// verify() notices a stored action that is not exactly one letter.
AuditRecord read_row(const sqlite::Statement& s, std::string* action_text = nullptr) {
  AuditRecord r;
  r.sequence = s.column_int64(0);
  r.recorded = s.column_text(1);
  r.event_type = s.column_text(2);
  std::string action = s.column_text(3);
  r.action = action.size() == 1 ? action[0] : '\0';
  if (action_text) *action_text = std::move(action);
  r.outcome = s.column_text(4);
  r.user_id = s.column_text(5);
  r.role = s.column_text(6);
  r.on_behalf_of = s.column_text(7);
  r.purpose = s.column_text(8);
  r.access_point = s.column_text(9);
  r.subject = s.column_text(10);
  r.objects = s.column_text(11);
  r.query = s.column_text(12);
  r.source = s.column_text(13);
  r.prev_hash = s.column_text(14);
  r.hash = s.column_text(15);
  return r;
}

std::string record_name(std::int64_t sequence) { return "record " + std::to_string(sequence); }

class SqliteAuditLog final : public AuditLog {
 public:
  SqliteAuditLog(sqlite::Database db, const core::Clock& clock) : db_(std::move(db)), clock_(clock) {}

  Result<AuditRecord> append(AuditRecord record) override {
    if (record.event_type.empty() || record.user_id.empty() || record.role.empty())
      return core::fail(core::Code::kInvalidArgument, "bad_audit_record", "event_type, user_id and role are required");
    if (!valid_action(record.action))
      return core::fail(core::Code::kInvalidArgument, "bad_audit_record", "action must be C, R, U, D or E");
    if (!valid_outcome(record.outcome))
      return core::fail(core::Code::kInvalidArgument, "bad_audit_record", "outcome must be success, denied or failure");

    std::lock_guard lock(mutex_);
    if (auto s = db_.exec("BEGIN IMMEDIATE"); !s) return tl::unexpected(io_error(s.error(), "cannot start an audit write"));
    auto written = insert_locked(record);
    if (!written) {
      (void)db_.exec("ROLLBACK");
      return tl::unexpected(written.error());
    }
    if (auto s = db_.exec("COMMIT"); !s) {
      (void)db_.exec("ROLLBACK");
      return tl::unexpected(io_error(s.error(), "cannot commit the audit record"));
    }
    return record;
  }

  Result<VerifyResult> verify(const std::optional<AuditHead>& anchor) override {
    std::lock_guard lock(mutex_);
    const bool check_anchor = anchor && anchor->sequence > 0;
    VerifyResult result;
    auto bad = [&result](std::int64_t sequence, std::string problem) {
      result.ok = false;
      result.first_bad = sequence;
      result.problem = std::move(problem);
      return result;
    };

    // One read transaction, so the walk sees one state of the file.
    if (auto s = db_.exec("BEGIN"); !s) return tl::unexpected(io_error(s.error(), "cannot read the audit log"));
    struct EndRead {
      sqlite::Database& db;
      ~EndRead() { (void)db.exec("COMMIT"); }
    } end_read{db_};

    auto stmt = db_.prepare(kAll);
    if (!stmt) return tl::unexpected(io_error(stmt.error(), "cannot read the audit log"));
    std::int64_t previous = 0;
    std::string previous_hash;
    bool anchor_seen = false;
    for (;;) {
      auto row = stmt->step();
      if (!row) return tl::unexpected(io_error(row.error(), "cannot read the audit log"));
      if (!*row) break;
      std::string action_text;
      const AuditRecord r = read_row(*stmt, &action_text);
      ++result.records;
      const auto name = record_name(r.sequence);

      if (r.sequence > previous + 1) {
        const std::int64_t from = previous + 1, to = r.sequence - 1;
        const std::string missing = from == to ? record_name(from) + " is missing"
                                               : "records " + std::to_string(from) + " to " + std::to_string(to) + " are missing";
        return bad(r.sequence, previous == 0 ? missing + " (the log starts at record " + std::to_string(r.sequence) + ")"
                                             : missing + " (sequence jumps from " + std::to_string(previous) + " to " +
                                                   std::to_string(r.sequence) + ")");
      }
      if (r.sequence != previous + 1)  // zero or negative: append() never writes these
        return bad(r.sequence, name + " has a sequence number append() never writes");
      if (r.prev_hash != previous_hash) {
        return bad(r.sequence, previous == 0
                                   ? name + " should start the chain (empty prev_hash) but links to another record"
                                   : name + " does not link to record " + std::to_string(previous) +
                                         " (its prev_hash is not that record's hash): a record was inserted, "
                                         "removed, reordered or rewritten before it");
      }
      if (action_text.size() != 1 || r.hash != hash_of(r))
        return bad(r.sequence, name + ": hash does not match its content (the record was altered)");
      if (check_anchor && r.sequence == anchor->sequence) {
        anchor_seen = true;
        if (r.hash != anchor->hash)
          return bad(r.sequence, name + " does not have the anchored hash: the chain was cut or rewritten before the anchor");
      }
      previous = r.sequence;
      previous_hash = r.hash;
    }
    if (check_anchor && !anchor_seen) {
      return bad(anchor->sequence, "anchored " + record_name(anchor->sequence) + " is missing (the log ends at record " +
                                       std::to_string(previous) + "): the chain was cut or rewritten before the anchor");
    }
    return result;
  }

  Result<std::vector<AuditRecord>> for_subject(std::string_view pseudonym) override {
    std::lock_guard lock(mutex_);
    auto stmt = db_.prepare(kBySubject);
    if (!stmt) return tl::unexpected(io_error(stmt.error(), "cannot read the audit log"));
    stmt->bind(1, pseudonym);
    return read_all(*stmt);
  }

  Result<std::vector<AuditRecord>> recent(std::size_t limit) override {
    if (limit == 0) return std::vector<AuditRecord>{};
    std::lock_guard lock(mutex_);
    auto stmt = db_.prepare(kRecent);
    if (!stmt) return tl::unexpected(io_error(stmt.error(), "cannot read the audit log"));
    constexpr auto kMax = static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max());
    stmt->bind(1, static_cast<std::int64_t>(limit > kMax ? kMax : limit));
    return read_all(*stmt);
  }

  Result<AuditHead> head() override {
    std::lock_guard lock(mutex_);
    return last_locked();
  }

 private:
  // The last sequence and hash; {0, ""} when empty. REQUIRES: mutex_ held.
  Result<AuditHead> last_locked() {
    auto stmt = db_.prepare(kLast);
    if (!stmt) return tl::unexpected(io_error(stmt.error(), "cannot read the audit log"));
    auto row = stmt->step();
    if (!row) return tl::unexpected(io_error(row.error(), "cannot read the audit log"));
    AuditHead h;
    if (*row) {
      h.sequence = stmt->column_int64(0);
      h.hash = stmt->column_text(1);
    }
    return h;
  }

  // Fills in the chain fields and inserts. REQUIRES: mutex_ held, inside BEGIN IMMEDIATE.
  Status insert_locked(AuditRecord& record) {
    auto last = last_locked();
    if (!last) return tl::unexpected(last.error());
    record.sequence = last->sequence + 1;
    record.recorded = recorded_now(clock_);
    record.prev_hash = last->hash;
    record.hash = hash_of(record);
    if (record.hash.empty())
      return core::fail(core::Code::kUnavailable, "audit_io", "SHA-256 is not available");

    auto stmt = db_.prepare(kInsert);
    if (!stmt) return tl::unexpected(io_error(stmt.error(), "cannot write the audit record"));
    const char action[1] = {record.action};
    stmt->bind(1, record.sequence)
        .bind(2, std::string_view(record.recorded))
        .bind(3, std::string_view(record.event_type))
        .bind(4, std::string_view(action, 1))
        .bind(5, std::string_view(record.outcome))
        .bind(6, std::string_view(record.user_id))
        .bind(7, std::string_view(record.role))
        .bind(8, std::string_view(record.on_behalf_of))
        .bind(9, std::string_view(record.purpose))
        .bind(10, std::string_view(record.access_point))
        .bind(11, std::string_view(record.subject))
        .bind(12, std::string_view(record.objects))
        .bind(13, std::string_view(record.query))
        .bind(14, std::string_view(record.source))
        .bind(15, std::string_view(record.prev_hash))
        .bind(16, std::string_view(record.hash));
    if (auto s = stmt->run(); !s) return tl::unexpected(io_error(s.error(), "cannot write the audit record"));
    return {};
  }

  static Result<std::vector<AuditRecord>> read_all(sqlite::Statement& stmt) {
    std::vector<AuditRecord> out;
    for (;;) {
      auto row = stmt.step();
      if (!row) return tl::unexpected(io_error(row.error(), "cannot read the audit log"));
      if (!*row) break;
      out.push_back(read_row(stmt));
    }
    return out;
  }

  std::mutex mutex_;
  sqlite::Database db_;
  const core::Clock& clock_;
};

}  // namespace

std::string canonical_form(const AuditRecord& r) {
  std::string out;
  out.reserve(256 + r.query.size() + r.objects.size());
  add_field(out, "sequence", std::to_string(r.sequence));
  add_field(out, "recorded", r.recorded);
  add_field(out, "event_type", r.event_type);
  add_field(out, "action", std::string_view(&r.action, 1));
  add_field(out, "outcome", r.outcome);
  add_field(out, "user_id", r.user_id);
  add_field(out, "role", r.role);
  add_field(out, "on_behalf_of", r.on_behalf_of);
  add_field(out, "purpose", r.purpose);
  add_field(out, "access_point", r.access_point);
  add_field(out, "subject", r.subject);
  add_field(out, "objects", r.objects);
  add_field(out, "query", r.query);
  add_field(out, "source", r.source);
  add_field(out, "prev", r.prev_hash);
  return out;
}

Result<std::unique_ptr<AuditLog>> AuditLog::open(const std::filesystem::path& file, const core::Clock& clock) {
  sqlite::OpenOptions options;
  options.wal = true;
  options.full_sync = true;
  options.busy_timeout_ms = kBusyTimeoutMs;
  auto db = sqlite::Database::open(file, options);
  if (!db) return tl::unexpected(io_error(db.error(), "cannot open the audit log"));
  if (auto s = db->exec(kSchema); !s) return tl::unexpected(io_error(s.error(), "cannot create the audit table"));
  return std::unique_ptr<AuditLog>(new SqliteAuditLog(std::move(*db), clock));
}

}  // namespace telehub::privacy
