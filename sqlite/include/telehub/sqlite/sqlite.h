// telehub::sqlite: a small RAII wrapper over the SQLite C API, shared by privacy and storage.
// It owns SQLite: no sqlite3 type appears in this header (opaque pointers only), so users
// link nothing but this target.
//
// Ownership: Database owns its connection; a Statement borrows its Database's connection and
// must be destroyed before it. Both are movable, not copyable.
//
// Error policy: Result, never throws. SQLITE_BUSY / SQLITE_LOCKED map to unavailable/db_busy
// (retryable); a constraint violation to already_exists/db_constraint; everything else to
// internal/db_error. Messages carry SQLite's text, which names tables and columns, never bound
// values.
//
// Thread-safety: a Database and its Statements must be used by one thread at a time.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "telehub/core/bytes.h"
#include "telehub/core/error.h"

struct sqlite3;
struct sqlite3_stmt;

namespace telehub::sqlite {

struct OpenOptions {
  // Open read-only (no schema changes, no writes). Default: false.
  bool read_only = false;
  // Use write-ahead logging. Default: true.
  bool wal = true;
  // synchronous=FULL: a commit is on disk when it returns. Default: true.
  bool full_sync = true;
  // How long to wait on a lock before failing with db_busy. Default: 5000 ms.
  int busy_timeout_ms = 5000;
};

// Prepared statements are cached per connection: Database::prepare() hands out a cached
// statement for the same SQL text when one is free, and a Statement returns its statement to
// the cache (reset, bindings cleared) when destroyed. SQL is parsed once per connection.
struct StatementCache;

class Statement {
 public:
  Statement() = default;
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  // Parameters are 1-based, as in SQLite.
  Statement& bind(int index, std::int64_t value);
  Statement& bind(int index, double value);
  Statement& bind(int index, std::string_view text);
  Statement& bind_blob(int index, std::span<const std::uint8_t> blob);
  Statement& bind_null(int index);

  // Runs one step: true when a row is available, false when done. Binding errors surface here.
  [[nodiscard]] Result<bool> step();
  // Runs to completion, ignoring rows.
  [[nodiscard]] Status run();
  // Clears bindings and resets for reuse.
  void reset();

  std::int64_t column_int64(int index) const;
  double column_double(int index) const;
  std::string column_text(int index) const;
  core::Bytes column_blob(int index) const;
  // The blob without a copy; valid until the next step(), reset() or destruction.
  std::span<const std::uint8_t> column_blob_view(int index) const;
  bool column_is_null(int index) const;

 private:
  friend class Database;
  Statement(sqlite3* db, sqlite3_stmt* stmt, std::shared_ptr<StatementCache> cache)
      : db_(db), stmt_(stmt), cache_(std::move(cache)) {}
  void release() noexcept;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
  int bind_error_ = 0;
  std::shared_ptr<StatementCache> cache_;
};

class Database {
 public:
  // Opens (creating when not read-only) the database file. Fails with unavailable/db_open.
  [[nodiscard]] static Result<Database> open(const std::filesystem::path& path, const OpenOptions& options = {});

  Database(Database&& other) noexcept;
  Database& operator=(Database&& other) noexcept;
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;
  ~Database();

  // Executes one or more statements without parameters (schema, pragmas, BEGIN/COMMIT). A
  // single statement (no ';') goes through the statement cache.
  [[nodiscard]] Status exec(std::string_view sql);
  // Prepares one statement. Fails with internal/db_error on SQL errors.
  [[nodiscard]] Result<Statement> prepare(std::string_view sql);

  std::int64_t last_insert_rowid() const;
  int changes() const;

 private:
  explicit Database(sqlite3* db);
  void close() noexcept;
  sqlite3* db_ = nullptr;
  std::shared_ptr<StatementCache> cache_;
};

// Maps an SQLite result code and connection to an Error (exposed for tests).
core::Error error_from(int rc, std::string_view what);

}  // namespace telehub::sqlite
