#include "telehub/sqlite/sqlite.h"

#include <sqlite3.h>

#include <string>
#include <unordered_map>
#include <utility>

namespace telehub::sqlite {

core::Error error_from(int rc, std::string_view what) {
  const int primary = rc & 0xff;
  std::string message(what);
  message += ": ";
  message += sqlite3_errstr(rc);
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
    return core::make_error(core::Code::kUnavailable, "db_busy", std::move(message));
  if (primary == SQLITE_CONSTRAINT)
    return core::make_error(core::Code::kAlreadyExists, "db_constraint", std::move(message));
  return core::make_error(core::Code::kInternal, "db_error", std::move(message));
}

namespace {
tl::unexpected<core::Error> failure(sqlite3* db, int rc, std::string_view what) {
  core::Error e = error_from(rc, what);
  if (db) {
    e.message += " (";
    e.message += sqlite3_errmsg(db);
    e.message += ")";
  }
  return tl::unexpected<core::Error>(std::move(e));
}
}  // namespace

// ---------------------------------------------------------------- statement cache

// Free prepared statements of one connection, by SQL text. `open` turns false when the
// connection closes; statements still handed out are then finalized when released.
struct StatementCache {
  bool open = true;
  std::size_t size = 0;
  std::unordered_multimap<std::string, sqlite3_stmt*> free;
};

namespace {
constexpr std::size_t kMaxCachedStatements = 128;
}  // namespace

// ---------------------------------------------------------------- Statement

Statement::Statement(Statement&& o) noexcept
    : db_(std::exchange(o.db_, nullptr)),
      stmt_(std::exchange(o.stmt_, nullptr)),
      bind_error_(o.bind_error_),
      cache_(std::move(o.cache_)) {}

Statement& Statement::operator=(Statement&& o) noexcept {
  if (this != &o) {
    release();
    db_ = std::exchange(o.db_, nullptr);
    stmt_ = std::exchange(o.stmt_, nullptr);
    bind_error_ = o.bind_error_;
    cache_ = std::move(o.cache_);
  }
  return *this;
}

Statement::~Statement() { release(); }

void Statement::release() noexcept {
  if (!stmt_) return;
  sqlite3_stmt* stmt = std::exchange(stmt_, nullptr);
  if (cache_ && cache_->open && cache_->size < kMaxCachedStatements) {
    try {
      sqlite3_reset(stmt);
      sqlite3_clear_bindings(stmt);
      cache_->free.emplace(sqlite3_sql(stmt), stmt);
      ++cache_->size;
      cache_.reset();
      return;
    } catch (...) {
      // Out of memory: finalize below.
    }
  }
  cache_.reset();
  sqlite3_finalize(stmt);
}

Statement& Statement::bind(int i, std::int64_t v) {
  if (int rc = sqlite3_bind_int64(stmt_, i, v); rc != SQLITE_OK) bind_error_ = rc;
  return *this;
}
Statement& Statement::bind(int i, double v) {
  if (int rc = sqlite3_bind_double(stmt_, i, v); rc != SQLITE_OK) bind_error_ = rc;
  return *this;
}
Statement& Statement::bind(int i, std::string_view v) {
  if (int rc = sqlite3_bind_text64(stmt_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8); rc != SQLITE_OK)
    bind_error_ = rc;
  return *this;
}
Statement& Statement::bind_blob(int i, std::span<const std::uint8_t> v) {
  if (int rc = sqlite3_bind_blob64(stmt_, i, v.data(), v.size(), SQLITE_TRANSIENT); rc != SQLITE_OK)
    bind_error_ = rc;
  return *this;
}
Statement& Statement::bind_null(int i) {
  if (int rc = sqlite3_bind_null(stmt_, i); rc != SQLITE_OK) bind_error_ = rc;
  return *this;
}

Result<bool> Statement::step() {
  if (bind_error_ != 0) return failure(db_, bind_error_, "bind");
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return failure(db_, rc, "step");
}

Status Statement::run() {
  for (;;) {
    auto r = step();
    if (!r) return tl::unexpected(r.error());
    if (!*r) return {};
  }
}

void Statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  bind_error_ = 0;
}

std::int64_t Statement::column_int64(int i) const { return sqlite3_column_int64(stmt_, i); }
double Statement::column_double(int i) const { return sqlite3_column_double(stmt_, i); }
std::string Statement::column_text(int i) const {
  auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, i));
  return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, i))) : std::string();
}
core::Bytes Statement::column_blob(int i) const {
  auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_, i));
  return p ? core::Bytes(p, p + sqlite3_column_bytes(stmt_, i)) : core::Bytes();
}
std::span<const std::uint8_t> Statement::column_blob_view(int i) const {
  auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_, i));
  return p ? std::span<const std::uint8_t>(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, i)))
           : std::span<const std::uint8_t>();
}
bool Statement::column_is_null(int i) const { return sqlite3_column_type(stmt_, i) == SQLITE_NULL; }

// ---------------------------------------------------------------- Database

Result<Database> Database::open(const std::filesystem::path& path, const OpenOptions& options) {
  sqlite3* db = nullptr;
  int flags = options.read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  flags |= SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = std::string("cannot open database: ") + sqlite3_errstr(rc);
    sqlite3_close(db);
    return core::fail(core::Code::kUnavailable, "db_open", std::move(msg));
  }
  Database d(db);
  sqlite3_busy_timeout(db, options.busy_timeout_ms);
  sqlite3_extended_result_codes(db, 1);
  std::string pragmas = "PRAGMA foreign_keys=ON;";
  if (!options.read_only) {
    if (options.wal) pragmas += "PRAGMA journal_mode=WAL;";
    pragmas += options.full_sync ? "PRAGMA synchronous=FULL;" : "PRAGMA synchronous=NORMAL;";
  }
  if (auto s = d.exec(pragmas); !s) return core::fail(core::Code::kUnavailable, "db_open", s.error().message);
  return d;
}

Database::Database(sqlite3* db) : db_(db), cache_(std::make_shared<StatementCache>()) {}
Database::Database(Database&& o) noexcept : db_(std::exchange(o.db_, nullptr)), cache_(std::move(o.cache_)) {}
Database& Database::operator=(Database&& o) noexcept {
  if (this != &o) {
    close();
    db_ = std::exchange(o.db_, nullptr);
    cache_ = std::move(o.cache_);
  }
  return *this;
}
Database::~Database() { close(); }

void Database::close() noexcept {
  if (cache_) {
    cache_->open = false;
    for (auto& [sql, stmt] : cache_->free) sqlite3_finalize(stmt);
    cache_->free.clear();
    cache_->size = 0;
    cache_.reset();
  }
  // close_v2: statements still handed out are finalized when their Statement goes.
  if (db_) sqlite3_close_v2(std::exchange(db_, nullptr));
}

Status Database::exec(std::string_view sql) {
  if (sql.find(';') == std::string_view::npos) {
    auto st = prepare(sql);
    if (!st) return tl::unexpected(st.error());
    return st->run();
  }
  std::string text(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    core::Error e = error_from(rc, "exec");
    if (err) {
      e.message += " (";
      e.message += err;
      e.message += ")";
    }
    sqlite3_free(err);
    return tl::unexpected(std::move(e));
  }
  return {};
}

Result<Statement> Database::prepare(std::string_view sql) {
  if (cache_) {
    // sqlite3_sql() keeps the text as given, so the lookup key is exact.
    auto it = cache_->free.find(std::string(sql));
    if (it != cache_->free.end()) {
      sqlite3_stmt* cached = it->second;
      cache_->free.erase(it);
      --cache_->size;
      return Statement(db_, cached, cache_);
    }
  }
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) return failure(db_, rc, "prepare");
  return Statement(db_, stmt, cache_);
}

std::int64_t Database::last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }
int Database::changes() const { return sqlite3_changes(db_); }

}  // namespace telehub::sqlite
