// CareRelations on SQLite (see care_relations.h). One table, bound parameters only; add() runs
// its check-then-insert in one BEGIN IMMEDIATE transaction, so two processes (the CLI and the
// server) cannot both open an episode for the same pair.
#include "telehub/privacy/care_relations.h"

#include <mutex>

#include "telehub/privacy/pseudonym.h"
#include "telehub/sqlite/sqlite.h"

namespace telehub::privacy {

bool valid_organisation(std::string_view organisation) {
  if (organisation.empty() || organisation.size() > 128) return false;
  for (const char c : organisation) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

namespace {

tl::unexpected<core::Error> bad(std::string message) {
  return core::fail(core::Code::kInvalidArgument, "bad_care_relation", std::move(message));
}

// Database failures keep their code (unavailable for busy/open, internal otherwise) under one
// reason, so callers see care_io whatever SQLite said.
tl::unexpected<core::Error> io(const core::Error& e) {
  return core::fail(e.code, "care_io", "care relations: " + e.message);
}

Status check_subject(std::string_view subject) {
  if (!SubjectPseudonym::parse(subject)) return bad("subject is not a pseudonym");
  return {};
}

Status check_pair(std::string_view subject, std::string_view organisation) {
  if (auto s = check_subject(subject); !s) return s;
  if (!valid_organisation(organisation)) return bad("organisation must be 1..128 characters from [A-Za-z0-9._:-]");
  return {};
}

// Active at ?3: from <= t and (no until or t < until).
// Active at ?3: from_ms <= ?3 AND (until_ms IS NULL OR ?3 < until_ms), written out in each
// statement (SQL text is literal only: scripts/check_sql.sh).

class SqliteCareRelations final : public CareRelations {
 public:
  explicit SqliteCareRelations(sqlite::Database db) : db_(std::move(db)) {}

  Result<std::int64_t> add(std::string_view subject, std::string_view organisation, core::TimePoint from,
                           std::string_view source) override {
    if (auto s = check_pair(subject, organisation); !s) return tl::unexpected(s.error());
    if (source.size() > 512) return bad("source is longer than 512 characters");
    std::lock_guard lock(mu_);
    if (auto s = db_.exec("BEGIN IMMEDIATE"); !s) return io(s.error());
    auto id = add_locked(subject, organisation, core::to_unix_millis(from), source);
    if (!id) {
      (void)db_.exec("ROLLBACK");
      return id;
    }
    if (auto s = db_.exec("COMMIT"); !s) {
      (void)db_.exec("ROLLBACK");
      return io(s.error());
    }
    return id;
  }

  Result<int> end(std::string_view subject, std::string_view organisation, core::TimePoint at) override {
    if (auto s = check_pair(subject, organisation); !s) return tl::unexpected(s.error());
    std::lock_guard lock(mu_);
    auto upd = db_.prepare(
        "UPDATE care_relation SET until_ms = ?3 WHERE subject = ?1 AND organisation = ?2 "
        "AND (until_ms IS NULL OR until_ms > ?3)");
    if (!upd) return io(upd.error());
    upd->bind(1, subject).bind(2, organisation).bind(3, core::to_unix_millis(at));
    if (auto s = upd->run(); !s) return io(s.error());
    return db_.changes();
  }

  Result<bool> active(std::string_view subject, std::string_view organisation, core::TimePoint at) override {
    if (auto s = check_pair(subject, organisation); !s) return tl::unexpected(s.error());
    std::lock_guard lock(mu_);
    auto id = active_id(subject, organisation, core::to_unix_millis(at));
    if (!id) return tl::unexpected(id.error());
    return id->has_value();
  }

  Result<std::vector<CareRelation>> of_subject(std::string_view subject) override {
    if (auto s = check_subject(subject); !s) return tl::unexpected(s.error());
    std::lock_guard lock(mu_);
    auto q = db_.prepare(
        "SELECT id, subject, organisation, from_ms, until_ms, source FROM care_relation WHERE subject = ?1 "
        "ORDER BY from_ms, id");
    if (!q) return io(q.error());
    q->bind(1, subject);
    std::vector<CareRelation> out;
    for (;;) {
      auto row = q->step();
      if (!row) return io(row.error());
      if (!*row) break;
      CareRelation r;
      r.id = q->column_int64(0);
      r.subject = q->column_text(1);
      r.organisation = q->column_text(2);
      r.from = core::from_unix_millis(q->column_int64(3));
      if (!q->column_is_null(4)) r.until = core::from_unix_millis(q->column_int64(4));
      r.source = q->column_text(5);
      out.push_back(std::move(r));
    }
    return out;
  }

  Result<std::vector<std::string>> subjects_of(std::string_view organisation, core::TimePoint at) override {
    if (!valid_organisation(organisation)) return bad("organisation must be 1..128 characters from [A-Za-z0-9._:-]");
    std::lock_guard lock(mu_);
    auto q = db_.prepare(
        "SELECT DISTINCT subject FROM care_relation WHERE organisation = ?2 AND from_ms <= ?3 AND "
        "(until_ms IS NULL OR ?3 < until_ms) ORDER BY subject");
    if (!q) return io(q.error());
    q->bind(2, organisation).bind(3, core::to_unix_millis(at));
    std::vector<std::string> out;
    for (;;) {
      auto row = q->step();
      if (!row) return io(row.error());
      if (!*row) break;
      out.push_back(q->column_text(0));
    }
    return out;
  }

  Result<int> erase_subject(std::string_view subject) override {
    if (auto s = check_subject(subject); !s) return tl::unexpected(s.error());
    std::lock_guard lock(mu_);
    auto del = db_.prepare("DELETE FROM care_relation WHERE subject = ?1");
    if (!del) return io(del.error());
    del->bind(1, subject);
    if (auto s = del->run(); !s) return io(s.error());
    return db_.changes();
  }

 private:
  // The id of a relation of the pair active at `at_ms`, if any. Caller holds mu_.
  Result<std::optional<std::int64_t>> active_id(std::string_view subject, std::string_view organisation,
                                                std::int64_t at_ms) {
    auto q = db_.prepare(
        "SELECT id FROM care_relation WHERE subject = ?1 AND organisation = ?2 AND from_ms <= ?3 AND "
        "(until_ms IS NULL OR ?3 < until_ms) ORDER BY from_ms, id LIMIT 1");
    if (!q) return io(q.error());
    q->bind(1, subject).bind(2, organisation).bind(3, at_ms);
    auto row = q->step();
    if (!row) return io(row.error());
    if (!*row) return std::optional<std::int64_t>();
    return std::optional<std::int64_t>(q->column_int64(0));
  }

  // Caller holds mu_ and an open transaction.
  Result<std::int64_t> add_locked(std::string_view subject, std::string_view organisation, std::int64_t from_ms,
                                  std::string_view source) {
    auto existing = active_id(subject, organisation, from_ms);
    if (!existing) return tl::unexpected(existing.error());
    if (*existing) return **existing;
    auto ins = db_.prepare(
        "INSERT INTO care_relation(subject, organisation, from_ms, until_ms, source) VALUES(?1, ?2, ?3, NULL, ?4)");
    if (!ins) return io(ins.error());
    ins->bind(1, subject).bind(2, organisation).bind(3, from_ms).bind(4, source);
    if (auto s = ins->run(); !s) return io(s.error());
    return db_.last_insert_rowid();
  }

  std::mutex mu_;
  sqlite::Database db_;
};

}  // namespace

Result<std::unique_ptr<CareRelations>> CareRelations::open(const std::filesystem::path& file) {
  sqlite::OpenOptions options;
  options.wal = true;
  options.full_sync = true;
  auto db = sqlite::Database::open(file, options);
  if (!db) return io(db.error());
  auto schema = db->exec(
      "CREATE TABLE IF NOT EXISTS care_relation("
      " id INTEGER PRIMARY KEY,"
      " subject TEXT NOT NULL,"
      " organisation TEXT NOT NULL,"
      " from_ms INTEGER NOT NULL,"
      " until_ms INTEGER,"
      " source TEXT NOT NULL);"
      "CREATE INDEX IF NOT EXISTS care_relation_pair ON care_relation(subject, organisation);"
      "CREATE INDEX IF NOT EXISTS care_relation_organisation ON care_relation(organisation);");
  if (!schema) return io(schema.error());
  return std::unique_ptr<CareRelations>(new SqliteCareRelations(std::move(*db)));
}

}  // namespace telehub::privacy
