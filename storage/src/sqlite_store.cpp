// SQLite implementation of the measurement store. See store.h for the contract.
//
// Layout (schema version 2):
//   subjects(pseudonym)                           pseudonyms only, never identifiers
//   devices(id, subject, key_id, wrapped_key, prev_key_id, prev_wrapped_key,
//           prev_valid_until_ms, enrolled_ms, active, revoked_ms)
//                                                 keys only wrapped under the KEK (opaque here)
//   messages(id, device_id, sequence, content_hash, received_ms)   UNIQUE(device_id, sequence)
//   observations(id, message_id, subject, device_id, sequence, idx, code, value, unit,
//                time_ms, components, received_ms)                 UNIQUE(message_id, idx)
//   quarantine(id, received_ms, topic, device_id, reason, detail, payload)
//
// Writes: every write is a job run by the single writer thread. The writer takes all queued
// jobs (up to max_batch_messages), runs each inside its own SAVEPOINT within one transaction,
// commits, and only then completes the jobs' promises. A job that fails is rolled back to its
// savepoint without affecting the others; a failed COMMIT fails every job of the batch.
//
// Schema history: 1 stored device keys unwrapped (column `key`). 2 stores only wrapped keys
// plus the previous key of a rotation and the revocation time. Migration 1 -> 2 refuses a
// database that holds devices (their raw keys cannot be wrapped here: storage has no KEK,
// and nothing was deployed with schema 1), and recreates the empty devices table otherwise.
// The writer connection runs with secure_delete, so overwritten keys are zeroed in the file.

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <mutex>

#include "telehub/core/log.h"
#include "telehub/sqlite/sqlite.h"
#include "telehub/storage/store.h"

namespace telehub::storage {
namespace {

using core::Code;

constexpr int kSchemaVersion = 2;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS subjects(
  pseudonym TEXT PRIMARY KEY,
  created_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS devices(
  id TEXT PRIMARY KEY,
  subject TEXT NOT NULL REFERENCES subjects(pseudonym),
  key_id INTEGER NOT NULL,
  wrapped_key BLOB NOT NULL,
  prev_key_id INTEGER,
  prev_wrapped_key BLOB,
  prev_valid_until_ms INTEGER,
  enrolled_ms INTEGER NOT NULL,
  active INTEGER NOT NULL DEFAULT 1,
  revoked_ms INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS devices_subject ON devices(subject);
CREATE TABLE IF NOT EXISTS messages(
  id INTEGER PRIMARY KEY,
  device_id TEXT NOT NULL,
  sequence INTEGER NOT NULL,
  content_hash TEXT NOT NULL,
  received_ms INTEGER NOT NULL,
  UNIQUE(device_id, sequence)
);
CREATE TABLE IF NOT EXISTS observations(
  id INTEGER PRIMARY KEY,
  message_id INTEGER NOT NULL REFERENCES messages(id),
  subject TEXT NOT NULL,
  device_id TEXT NOT NULL,
  sequence INTEGER NOT NULL,
  idx INTEGER NOT NULL,
  code TEXT NOT NULL,
  value REAL,
  unit TEXT NOT NULL,
  time_ms INTEGER NOT NULL,
  components TEXT,
  received_ms INTEGER NOT NULL,
  UNIQUE(message_id, idx)
);
CREATE INDEX IF NOT EXISTS observations_subject_time ON observations(subject, time_ms, id);
CREATE INDEX IF NOT EXISTS observations_subject_code_time ON observations(subject, code, time_ms, id);
CREATE TABLE IF NOT EXISTS quarantine(
  id INTEGER PRIMARY KEY,
  received_ms INTEGER NOT NULL,
  topic TEXT NOT NULL,
  device_id TEXT NOT NULL,
  reason TEXT NOT NULL,
  detail TEXT NOT NULL,
  payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS quarantine_reason ON quarantine(reason);
)sql";

// Components are stored as "code|value|unit;code|value|unit". LOINC codes and UCUM units
// never contain '|' or ';' (the hub validates codes and units before storing).
std::string encode_components(const std::vector<core::Component>& components) {
  std::string out;
  char num[40];
  for (const auto& c : components) {
    if (!out.empty()) out += ';';
    std::snprintf(num, sizeof num, "%.17g", c.value);
    out += c.code + '|' + num + '|' + c.unit;
  }
  return out;
}

std::vector<core::Component> decode_components(std::string_view text) {
  std::vector<core::Component> out;
  while (!text.empty()) {
    auto end = text.find(';');
    auto item = text.substr(0, end);
    auto p1 = item.find('|');
    auto p2 = item.find('|', p1 + 1);
    if (p1 != std::string_view::npos && p2 != std::string_view::npos) {
      core::Component c;
      c.code = std::string(item.substr(0, p1));
      c.value = std::strtod(std::string(item.substr(p1 + 1, p2 - p1 - 1)).c_str(), nullptr);
      c.unit = std::string(item.substr(p2 + 1));
      out.push_back(std::move(c));
    }
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return out;
}

bool storable_text(std::string_view s) { return s.find('|') == s.npos && s.find(';') == s.npos; }

// A unit of work for the writer thread. `run` executes inside a savepoint; its result is
// delivered only after the enclosing transaction committed.
// One caller's write, waiting in SqliteStore::writers_ until a leader (the caller at the front
// of the queue) has committed it.
struct WriteJob {
  std::function<Result<std::int64_t>(sqlite::Database&)> run;
  std::optional<Result<std::int64_t>> result;  // set when done; guarded by SqliteStore::mutex_
};

class SqliteStore;

class SqliteObservations final : public ObservationStore {
 public:
  explicit SqliteObservations(SqliteStore& s) : store_(s) {}
  Result<AppendOutcome> append(MessageBatch batch) override;
  Result<ObservationPage> search(const ObservationQuery& query) override;
  Result<std::optional<StoredObservation>> get(std::int64_t id) override;
  Result<std::int64_t> count() override;

 private:
  SqliteStore& store_;
};

class SqliteRegistry final : public Registry {
 public:
  explicit SqliteRegistry(SqliteStore& s) : store_(s) {}
  Status add_subject(const privacy::SubjectPseudonym& subject) override;
  Result<bool> subject_exists(std::string_view pseudonym) override;
  Status add_device(const DeviceRecord& device) override;
  Result<std::optional<DeviceRecord>> find_device(std::string_view device_id) override;
  Result<std::vector<DeviceRecord>> devices_of(std::string_view pseudonym) override;
  Status rotate_key(const KeyRotation& rotation) override;
  Status revoke_device(std::string_view device_id, core::TimePoint revoked_at) override;
  Result<std::vector<std::string>> inactive_device_ids() override;

 private:
  SqliteStore& store_;
};

class SqliteQuarantine final : public Quarantine {
 public:
  explicit SqliteQuarantine(SqliteStore& s) : store_(s) {}
  Result<std::int64_t> put(const QuarantineEntry& entry) override;
  Result<std::int64_t> count(std::optional<std::string_view> reason) override;
  Result<std::vector<QuarantineEntry>> list(std::size_t limit) override;
  Result<std::optional<QuarantineEntry>> get(std::int64_t id) override;
  Status remove(std::int64_t id) override;

 private:
  SqliteStore& store_;
};

class SqliteStore final : public Store {
 public:
  SqliteStore(StoreOptions options, const core::Clock& clock, sqlite::Database writer)
      : options_(std::move(options)), clock_(clock), writer_db_(std::move(writer)),
        observations_(*this), registry_(*this), quarantine_(*this) {
  }
  ~SqliteStore() override {
    close();
    if (wal_fd_ >= 0) ::close(wal_fd_);
  }

  // Deferred durability: the writer commits with synchronous=NORMAL (a commit is in the WAL
  // file, in the OS page cache: it survives a crash of this process, not of the machine).
  // fdatasync() of the WAL file then puts every commit made before the call on disk; a commit
  // already checkpointed into the database file is on disk anyway, because SQLite syncs the
  // database file after each checkpoint before it reuses the WAL. Runs beside the writer,
  // never blocking it (the sync uses its own file descriptor, no SQLite connection).
  Status sync() override {
    if (options_.sync_each_commit) return {};
    std::lock_guard lock(sync_mutex_);
    if (wal_fd_ < 0) {
      const auto wal = options_.path.string() + "-wal";
      wal_fd_ = ::open(wal.c_str(), O_RDONLY | O_CLOEXEC);
      if (wal_fd_ < 0) {
        if (errno == ENOENT) return {};  // nothing written yet
        return core::fail(Code::kUnavailable, "db_sync", "cannot open " + wal + ": " + std::strerror(errno));
      }
    }
    if (::fdatasync(wal_fd_) != 0)
      return core::fail(Code::kUnavailable, "db_sync", std::string("fdatasync of the WAL failed: ") + std::strerror(errno));
    return {};
  }

  ObservationStore& observations() override { return observations_; }
  Registry& registry() override { return registry_; }
  Quarantine& quarantine() override { return quarantine_; }

  // Later appends fail with unavailable/closed; waits until every write already queued has
  // committed (a leader is committing it).
  void close() override {
    std::unique_lock lock(mutex_);
    closing_ = true;
    cv_.wait(lock, [this] { return writers_.empty(); });
  }

  const core::Clock& clock() const { return clock_; }

  // Group commit without a writer thread (the scheme of LevelDB's DBImpl::Write): the caller
  // queues its job; the caller at the front of the queue is the leader and commits, on its own
  // thread, its job and those queued behind it (up to max_batch_messages) in one transaction,
  // then hands each caller its result. An uncontended write costs no thread switch; under
  // contention, callers that arrive during a commit share the next one.
  Result<std::int64_t> write(std::function<Result<std::int64_t>(sqlite::Database&)> fn) {
    WriteJob job{std::move(fn), std::nullopt};
    std::unique_lock lock(mutex_);
    if (closing_) return core::fail(Code::kUnavailable, "closed", "store is closed");
    writers_.push_back(&job);
    cv_.wait(lock, [&] { return job.result.has_value() || writers_.front() == &job; });
    if (job.result) return std::move(*job.result);

    // Leader: the queue's front, up to the batch limit, is ours until we pop it.
    std::vector<WriteJob*> batch;
    for (auto* w : writers_) {
      if (batch.size() >= options_.max_batch_messages) break;
      batch.push_back(w);
    }
    lock.unlock();
    std::vector<Result<std::int64_t>> results = commit_batch(batch);
    lock.lock();
    for (std::size_t i = 0; i < batch.size(); ++i) {
      writers_.pop_front();
      batch[i]->result = std::move(results[i]);
    }
    cv_.notify_all();  // the followers, the next leader, and close()
    return std::move(*job.result);
  }

  // Runs fn with a pooled read connection.
  template <class F>
  auto read(F&& fn) -> decltype(fn(std::declval<sqlite::Database&>())) {
    std::optional<sqlite::Database> db;
    {
      std::lock_guard lock(readers_mutex_);
      if (!readers_.empty()) {
        db.emplace(std::move(readers_.back()));
        readers_.pop_back();
      }
    }
    if (!db) {
      sqlite::OpenOptions ro;
      ro.read_only = true;
      auto opened = sqlite::Database::open(options_.path, ro);
      if (!opened) return tl::unexpected(opened.error());
      db.emplace(std::move(*opened));
    }
    auto result = fn(*db);
    std::lock_guard lock(readers_mutex_);
    if (readers_.size() < 8) readers_.push_back(std::move(*db));
    return result;
  }

 private:
  // Runs on the leader's thread; only the leader touches writer_db_.
  std::vector<Result<std::int64_t>> commit_batch(const std::vector<WriteJob*>& batch) {
    std::vector<Result<std::int64_t>> results;
    results.reserve(batch.size());
    if (auto begin = writer_db_.exec("BEGIN IMMEDIATE"); !begin) {
      for (std::size_t i = 0; i < batch.size(); ++i) results.push_back(tl::unexpected(begin.error()));
      return results;
    }
    for (auto* job : batch) {
      Result<std::int64_t> r = core::fail(Code::kInternal, "db_error", "savepoint failed");
      if (writer_db_.exec("SAVEPOINT job")) {
        r = job->run(writer_db_);
        if (r) {
          (void)writer_db_.exec("RELEASE job");
        } else {
          (void)writer_db_.exec("ROLLBACK TO job");
          (void)writer_db_.exec("RELEASE job");
        }
      }
      results.push_back(std::move(r));
    }
    if (auto commit = writer_db_.exec("COMMIT"); !commit) {
      core::log_error("storage", "commit failed: " + commit.error().to_string());
      (void)writer_db_.exec("ROLLBACK");
      for (auto& r : results) r = tl::unexpected(commit.error());
    }
    return results;
  }

  StoreOptions options_;
  const core::Clock& clock_;
  sqlite::Database writer_db_;
  SqliteObservations observations_;
  SqliteRegistry registry_;
  SqliteQuarantine quarantine_;

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<WriteJob*> writers_;  // guarded by mutex_; front = the leader
  bool closing_ = false;           // guarded by mutex_

  std::mutex readers_mutex_;
  std::vector<sqlite::Database> readers_;

  std::mutex sync_mutex_;
  int wal_fd_ = -1;  // guarded by sync_mutex_
};

// ---------------------------------------------------------------- observations

constexpr std::int64_t kDuplicate = -1;
constexpr std::int64_t kConflict = -2;
constexpr std::int64_t kOutside = -3;

Result<AppendOutcome> SqliteObservations::append(MessageBatch batch) {
  if (batch.readings.empty()) return core::fail(Code::kInvalidArgument, "bad_batch", "message has no readings");
  for (const auto& r : batch.readings) {
    if (r.subject() != batch.readings.front().subject())
      return core::fail(Code::kInvalidArgument, "bad_batch", "readings of one message must share a subject");
    if (!storable_text(r.reading().code) || !storable_text(r.reading().unit))
      return core::fail(Code::kInvalidArgument, "bad_batch", "code or unit contains '|' or ';'");
    for (const auto& c : r.reading().components)
      if (!storable_text(c.code) || !storable_text(c.unit))
        return core::fail(Code::kInvalidArgument, "bad_batch", "component code or unit contains '|' or ';'");
  }
  auto result = store_.write([&batch](sqlite::Database& db) -> Result<std::int64_t> {
    const auto seq = static_cast<std::int64_t>(batch.sequence);
    auto find = db.prepare("SELECT content_hash FROM messages WHERE device_id=?1 AND sequence=?2");
    if (!find) return tl::unexpected(find.error());
    find->bind(1, std::string_view(batch.device_id)).bind(2, seq);
    auto row = find->step();
    if (!row) return tl::unexpected(row.error());
    if (*row) return find->column_text(0) == batch.content_hash ? kDuplicate : kConflict;
    if (batch.sequence_window > 0) {
      // An index seek on UNIQUE(device_id, sequence).
      auto top = db.prepare("SELECT max(sequence) FROM messages WHERE device_id=?1");
      if (!top) return tl::unexpected(top.error());
      top->bind(1, std::string_view(batch.device_id));
      auto top_row = top->step();
      if (!top_row) return tl::unexpected(top_row.error());
      if (*top_row && !top->column_is_null(0)) {
        const auto highest = static_cast<std::uint64_t>(top->column_int64(0));
        if (highest > batch.sequence && highest - batch.sequence > batch.sequence_window) return kOutside;
      }
    }

    const auto received = core::to_unix_millis(batch.received_at);
    auto msg = db.prepare(
        "INSERT INTO messages(device_id, sequence, content_hash, received_ms) VALUES(?1, ?2, ?3, ?4)");
    if (!msg) return tl::unexpected(msg.error());
    msg->bind(1, std::string_view(batch.device_id)).bind(2, seq).bind(3, std::string_view(batch.content_hash)).bind(4, received);
    if (auto s = msg->run(); !s) return tl::unexpected(s.error());
    const auto message_id = db.last_insert_rowid();

    auto obs = db.prepare(
        "INSERT INTO observations(message_id, subject, device_id, sequence, idx, code, value, unit, time_ms,"
        " components, received_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)");
    if (!obs) return tl::unexpected(obs.error());
    std::int64_t idx = 0;
    for (const auto& pr : batch.readings) {
      const auto& r = pr.reading();
      obs->reset();
      obs->bind(1, message_id).bind(2, std::string_view(pr.subject().str())).bind(3, std::string_view(batch.device_id));
      obs->bind(4, seq).bind(5, idx++).bind(6, std::string_view(r.code));
      if (r.value) obs->bind(7, *r.value); else obs->bind_null(7);
      obs->bind(8, std::string_view(r.unit)).bind(9, core::to_unix_millis(r.time));
      if (r.components.empty()) obs->bind_null(10); else obs->bind(10, std::string_view(encode_components(r.components)));
      obs->bind(11, received);
      if (auto s = obs->run(); !s) return tl::unexpected(s.error());
    }
    return message_id;
  });
  if (!result) return tl::unexpected(result.error());
  if (*result == kDuplicate) return AppendOutcome::kDuplicate;
  if (*result == kConflict) return AppendOutcome::kConflict;
  if (*result == kOutside) return AppendOutcome::kOutsideWindow;
  return AppendOutcome::kStored;
}

constexpr const char* kObservationColumns =
    "SELECT id, subject, device_id, sequence, code, value, unit, time_ms, components, received_ms FROM observations ";

StoredObservation row_to_observation(const sqlite::Statement& st) {
  StoredObservation o;
  o.id = st.column_int64(0);
  o.reading.subject = st.column_text(1);
  o.reading.device = st.column_text(2);
  o.reading.sequence = static_cast<std::uint64_t>(st.column_int64(3));
  o.reading.code = st.column_text(4);
  if (!st.column_is_null(5)) o.reading.value = st.column_double(5);
  o.reading.unit = st.column_text(6);
  o.reading.time = core::from_unix_millis(st.column_int64(7));
  if (!st.column_is_null(8)) o.reading.components = decode_components(st.column_text(8));
  o.received_at = core::from_unix_millis(st.column_int64(9));
  return o;
}

Result<ObservationPage> SqliteObservations::search(const ObservationQuery& q) {
  if (q.limit < 1 || q.limit > 1000) return core::fail(Code::kInvalidArgument, "bad_query", "limit must be 1..1000");
  return store_.read([&q](sqlite::Database& db) -> Result<ObservationPage> {
    // Two fixed statements (with and without code) so each can use its own index.
    // `time_ms >= max(from, cursor time)` is implied by the two conditions beside it, and it is
    // what lets the index seek to the cursor: with `time_ms >= from` alone SQLite starts the
    // range scan at `from` and filters the row value, so each page rescanned everything before
    // its cursor (a page deep into a long series cost ~200x the first one).
    std::string sql = kObservationColumns;
    sql += q.code ? "WHERE subject=?1 AND code=?2 " : "WHERE subject=?1 AND ?2 IS NULL ";
    sql += "AND time_ms >= max(?3, ?5) AND time_ms < ?4 AND (time_ms, id) > (?5, ?6) ORDER BY time_ms, id LIMIT ?7";
    auto st = db.prepare(sql);
    if (!st) return tl::unexpected(st.error());
    st->bind(1, std::string_view(q.subject));
    if (q.code) st->bind(2, std::string_view(*q.code)); else st->bind_null(2);
    st->bind(3, q.from ? core::to_unix_millis(*q.from) : INT64_MIN);
    st->bind(4, q.to ? core::to_unix_millis(*q.to) : INT64_MAX);
    st->bind(5, q.after ? q.after->time_ms : INT64_MIN);
    st->bind(6, q.after ? q.after->id : INT64_MIN);
    st->bind(7, static_cast<std::int64_t>(q.limit) + 1);
    ObservationPage page;
    for (;;) {
      auto row = st->step();
      if (!row) return tl::unexpected(row.error());
      if (!*row) break;
      page.items.push_back(row_to_observation(*st));
    }
    if (page.items.size() > q.limit) {
      page.items.pop_back();
      const auto& last = page.items.back();
      page.next = Cursor{core::to_unix_millis(last.reading.time), last.id};
    }
    return page;
  });
}

Result<std::optional<StoredObservation>> SqliteObservations::get(std::int64_t id) {
  return store_.read([id](sqlite::Database& db) -> Result<std::optional<StoredObservation>> {
    auto st = db.prepare(std::string(kObservationColumns) + "WHERE id=?1");
    if (!st) return tl::unexpected(st.error());
    st->bind(1, id);
    auto row = st->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) return std::optional<StoredObservation>();
    return std::optional<StoredObservation>(row_to_observation(*st));
  });
}

Result<std::int64_t> scalar(sqlite::Database& db, std::string_view sql, std::optional<std::string_view> arg = {}) {
  auto st = db.prepare(sql);
  if (!st) return tl::unexpected(st.error());
  if (arg) st->bind(1, *arg);
  auto row = st->step();
  if (!row) return tl::unexpected(row.error());
  return *row ? st->column_int64(0) : 0;
}

Result<std::int64_t> SqliteObservations::count() {
  return store_.read([](sqlite::Database& db) { return scalar(db, "SELECT count(*) FROM observations"); });
}

// ---------------------------------------------------------------- registry

Status insert_subject(sqlite::Database& db, std::string_view pseudonym, std::int64_t now_ms) {
  auto st = db.prepare("INSERT OR IGNORE INTO subjects(pseudonym, created_ms) VALUES(?1, ?2)");
  if (!st) return tl::unexpected(st.error());
  st->bind(1, pseudonym).bind(2, now_ms);
  return st->run();
}

Status SqliteRegistry::add_subject(const privacy::SubjectPseudonym& subject) {
  const auto now = core::to_unix_millis(store_.clock().now());
  auto r = store_.write([&](sqlite::Database& db) -> Result<std::int64_t> {
    if (auto s = insert_subject(db, subject.str(), now); !s) return tl::unexpected(s.error());
    return 0;
  });
  if (!r) return tl::unexpected(r.error());
  return {};
}

Result<bool> SqliteRegistry::subject_exists(std::string_view pseudonym) {
  return store_.read([pseudonym](sqlite::Database& db) -> Result<bool> {
    auto n = scalar(db, "SELECT count(*) FROM subjects WHERE pseudonym=?1", pseudonym);
    if (!n) return tl::unexpected(n.error());
    return *n > 0;
  });
}

Status SqliteRegistry::add_device(const DeviceRecord& d) {
  if (d.wrapped_key.empty()) return core::fail(Code::kInvalidArgument, "bad_device", "a device needs a wrapped key");
  const auto now = core::to_unix_millis(store_.clock().now());
  auto r = store_.write([&](sqlite::Database& db) -> Result<std::int64_t> {
    if (auto s = insert_subject(db, d.subject, now); !s) return tl::unexpected(s.error());
    auto st = db.prepare(
        "INSERT INTO devices(id, subject, key_id, wrapped_key, prev_key_id, prev_wrapped_key, prev_valid_until_ms,"
        " enrolled_ms, active, revoked_ms) VALUES(?1, ?2, ?3, ?4, ?7, ?8, ?9, ?5, ?6, ?10)");
    if (!st) return tl::unexpected(st.error());
    st->bind(1, std::string_view(d.id)).bind(2, std::string_view(d.subject)).bind(3, static_cast<std::int64_t>(d.key_id));
    st->bind_blob(4, d.wrapped_key).bind(5, core::to_unix_millis(d.enrolled_at)).bind(6, std::int64_t{d.active ? 1 : 0});
    if (d.previous) {
      st->bind(7, static_cast<std::int64_t>(d.previous->key_id)).bind_blob(8, d.previous->wrapped_key);
      st->bind(9, core::to_unix_millis(d.previous->valid_until));
    } else {
      st->bind_null(7).bind_null(8).bind_null(9);
    }
    if (d.revoked_at) st->bind(10, core::to_unix_millis(*d.revoked_at)); else st->bind_null(10);
    if (auto s = st->run(); !s) {
      if (s.error().reason == "db_constraint")
        return core::fail(Code::kAlreadyExists, "device_exists", "a device with this id is already enrolled");
      return tl::unexpected(s.error());
    }
    return 0;
  });
  if (!r) return tl::unexpected(r.error());
  return {};
}

constexpr const char* kDeviceColumns =
    "SELECT id, subject, key_id, wrapped_key, enrolled_ms, active, prev_key_id, prev_wrapped_key, prev_valid_until_ms,"
    " revoked_ms FROM devices ";

DeviceRecord row_to_device(const sqlite::Statement& st) {
  DeviceRecord d;
  d.id = st.column_text(0);
  d.subject = st.column_text(1);
  d.key_id = static_cast<std::uint32_t>(st.column_int64(2));
  d.wrapped_key = st.column_blob(3);
  d.enrolled_at = core::from_unix_millis(st.column_int64(4));
  d.active = st.column_int64(5) != 0;
  if (!st.column_is_null(6) && !st.column_is_null(7) && !st.column_is_null(8)) {
    PreviousKey p;
    p.key_id = static_cast<std::uint32_t>(st.column_int64(6));
    p.wrapped_key = st.column_blob(7);
    p.valid_until = core::from_unix_millis(st.column_int64(8));
    d.previous = std::move(p);
  }
  if (!st.column_is_null(9)) d.revoked_at = core::from_unix_millis(st.column_int64(9));
  return d;
}

Result<std::optional<DeviceRecord>> SqliteRegistry::find_device(std::string_view device_id) {
  return store_.read([device_id](sqlite::Database& db) -> Result<std::optional<DeviceRecord>> {
    auto st = db.prepare(std::string(kDeviceColumns) + "WHERE id=?1");
    if (!st) return tl::unexpected(st.error());
    st->bind(1, device_id);
    auto row = st->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) return std::optional<DeviceRecord>();
    return std::optional<DeviceRecord>(row_to_device(*st));
  });
}

Result<std::vector<DeviceRecord>> SqliteRegistry::devices_of(std::string_view pseudonym) {
  return store_.read([pseudonym](sqlite::Database& db) -> Result<std::vector<DeviceRecord>> {
    auto st = db.prepare(std::string(kDeviceColumns) + "WHERE subject=?1 ORDER BY id");
    if (!st) return tl::unexpected(st.error());
    st->bind(1, pseudonym);
    std::vector<DeviceRecord> out;
    for (;;) {
      auto row = st->step();
      if (!row) return tl::unexpected(row.error());
      if (!*row) return out;
      out.push_back(row_to_device(*st));
    }
  });
}

Status SqliteRegistry::rotate_key(const KeyRotation& k) {
  if (k.new_wrapped_key.empty() || k.new_key_id == k.from_key_id)
    return core::fail(Code::kInvalidArgument, "bad_rotation", "a rotation needs a new key id and a wrapped key");
  auto r = store_.write([&k](sqlite::Database& db) -> Result<std::int64_t> {
    auto find = db.prepare("SELECT key_id, active FROM devices WHERE id=?1");
    if (!find) return tl::unexpected(find.error());
    find->bind(1, std::string_view(k.device_id));
    auto row = find->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) return core::fail(Code::kNotFound, "no_device", "no enrolled device with this id");
    if (find->column_int64(1) == 0)
      return core::fail(Code::kFailedPrecondition, "device_revoked", "the device is revoked or inactive");
    if (static_cast<std::uint32_t>(find->column_int64(0)) != k.from_key_id)
      return core::fail(Code::kAborted, "key_changed", "the device's key changed meanwhile; try again");
    auto st = db.prepare(
        "UPDATE devices SET prev_key_id=key_id, prev_wrapped_key=wrapped_key, prev_valid_until_ms=?2, key_id=?3,"
        " wrapped_key=?4 WHERE id=?1");
    if (!st) return tl::unexpected(st.error());
    st->bind(1, std::string_view(k.device_id)).bind(2, core::to_unix_millis(k.previous_valid_until));
    st->bind(3, static_cast<std::int64_t>(k.new_key_id)).bind_blob(4, k.new_wrapped_key);
    if (auto s = st->run(); !s) return tl::unexpected(s.error());
    return 0;
  });
  if (!r) return tl::unexpected(r.error());
  return {};
}

Status SqliteRegistry::revoke_device(std::string_view device_id, core::TimePoint revoked_at) {
  auto r = store_.write([device_id, revoked_at](sqlite::Database& db) -> Result<std::int64_t> {
    // zeroblob first, then empty: the key bytes are overwritten in place, and secure_delete
    // zeroes whatever the update frees.
    auto st = db.prepare(
        "UPDATE devices SET active=0, revoked_ms=coalesce(revoked_ms, ?2), wrapped_key=zeroblob(length(wrapped_key)),"
        " prev_wrapped_key=CASE WHEN prev_wrapped_key IS NULL THEN NULL ELSE zeroblob(length(prev_wrapped_key)) END"
        " WHERE id=?1");
    if (!st) return tl::unexpected(st.error());
    st->bind(1, device_id).bind(2, core::to_unix_millis(revoked_at));
    if (auto s = st->run(); !s) return tl::unexpected(s.error());
    if (db.changes() == 0) return core::fail(Code::kNotFound, "no_device", "no enrolled device with this id");
    auto clear = db.prepare(
        "UPDATE devices SET wrapped_key=X'', prev_key_id=NULL, prev_wrapped_key=NULL, prev_valid_until_ms=NULL"
        " WHERE id=?1");
    if (!clear) return tl::unexpected(clear.error());
    clear->bind(1, device_id);
    if (auto s = clear->run(); !s) return tl::unexpected(s.error());
    return 0;
  });
  if (!r) return tl::unexpected(r.error());
  return {};
}

Result<std::vector<std::string>> SqliteRegistry::inactive_device_ids() {
  return store_.read([](sqlite::Database& db) -> Result<std::vector<std::string>> {
    auto st = db.prepare("SELECT id FROM devices WHERE active=0 ORDER BY id");
    if (!st) return tl::unexpected(st.error());
    std::vector<std::string> out;
    for (;;) {
      auto row = st->step();
      if (!row) return tl::unexpected(row.error());
      if (!*row) return out;
      out.push_back(st->column_text(0));
    }
  });
}

// ---------------------------------------------------------------- quarantine

Result<std::int64_t> SqliteQuarantine::put(const QuarantineEntry& e) {
  return store_.write([&e](sqlite::Database& db) -> Result<std::int64_t> {
    auto st = db.prepare(
        "INSERT INTO quarantine(received_ms, topic, device_id, reason, detail, payload) VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
    if (!st) return tl::unexpected(st.error());
    st->bind(1, core::to_unix_millis(e.received_at)).bind(2, std::string_view(e.topic));
    st->bind(3, std::string_view(e.device_id)).bind(4, std::string_view(e.reason)).bind(5, std::string_view(e.detail));
    st->bind_blob(6, e.payload);
    if (auto s = st->run(); !s) return tl::unexpected(s.error());
    return db.last_insert_rowid();
  });
}

Result<std::int64_t> SqliteQuarantine::count(std::optional<std::string_view> reason) {
  return store_.read([reason](sqlite::Database& db) {
    return reason ? scalar(db, "SELECT count(*) FROM quarantine WHERE reason=?1", *reason)
                  : scalar(db, "SELECT count(*) FROM quarantine");
  });
}

constexpr const char* kQuarantineColumns =
    "SELECT id, received_ms, topic, device_id, reason, detail, payload FROM quarantine ";

QuarantineEntry row_to_quarantine(const sqlite::Statement& st) {
  QuarantineEntry e;
  e.id = st.column_int64(0);
  e.received_at = core::from_unix_millis(st.column_int64(1));
  e.topic = st.column_text(2);
  e.device_id = st.column_text(3);
  e.reason = st.column_text(4);
  e.detail = st.column_text(5);
  e.payload = st.column_blob(6);
  return e;
}

Result<std::vector<QuarantineEntry>> SqliteQuarantine::list(std::size_t limit) {
  return store_.read([limit](sqlite::Database& db) -> Result<std::vector<QuarantineEntry>> {
    auto st = db.prepare(std::string(kQuarantineColumns) + "ORDER BY id DESC LIMIT ?1");
    if (!st) return tl::unexpected(st.error());
    st->bind(1, static_cast<std::int64_t>(limit));
    std::vector<QuarantineEntry> out;
    for (;;) {
      auto row = st->step();
      if (!row) return tl::unexpected(row.error());
      if (!*row) return out;
      out.push_back(row_to_quarantine(*st));
    }
  });
}

Result<std::optional<QuarantineEntry>> SqliteQuarantine::get(std::int64_t id) {
  return store_.read([id](sqlite::Database& db) -> Result<std::optional<QuarantineEntry>> {
    auto st = db.prepare(std::string(kQuarantineColumns) + "WHERE id=?1");
    if (!st) return tl::unexpected(st.error());
    st->bind(1, id);
    auto row = st->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) return std::optional<QuarantineEntry>();
    return std::optional<QuarantineEntry>(row_to_quarantine(*st));
  });
}

Status SqliteQuarantine::remove(std::int64_t id) {
  auto r = store_.write([id](sqlite::Database& db) -> Result<std::int64_t> {
    auto st = db.prepare("DELETE FROM quarantine WHERE id=?1");
    if (!st) return tl::unexpected(st.error());
    st->bind(1, id);
    if (auto s = st->run(); !s) return tl::unexpected(s.error());
    if (db.changes() == 0) return core::fail(Code::kNotFound, "no_entry", "no quarantine entry with this id");
    return id;
  });
  if (!r) return tl::unexpected(r.error());
  return {};
}

Status migrate(sqlite::Database& db) {
  if (auto s = db.exec("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)"); !s) return s;
  auto v = scalar(db, "SELECT coalesce(max(version), 0) FROM schema_version");
  if (!v) return tl::unexpected(v.error());
  if (*v > kSchemaVersion)
    return core::fail(Code::kDataLoss, "db_schema", "database schema is newer than this telehub understands");
  if (*v == kSchemaVersion) return {};
  if (auto s = db.exec("BEGIN IMMEDIATE"); !s) return s;
  Status s;
  if (*v == 1) {
    // Schema 1 kept device keys unwrapped; storage has no KEK to wrap them with.
    auto devices = scalar(db, "SELECT count(*) FROM devices");
    if (!devices) {
      s = tl::unexpected(devices.error());
    } else if (*devices > 0) {
      (void)db.exec("ROLLBACK");
      return core::fail(Code::kDataLoss, "db_schema",
                        "database schema 1 holds unwrapped device keys; schema 2 keeps only keys wrapped under a "
                        "KEK: re-enrol the devices into a new data directory");
    } else {
      s = db.exec("DROP TABLE devices");
    }
  }
  if (s) s = db.exec(kSchema);
  if (s) s = db.exec("INSERT INTO schema_version(version) VALUES(" + std::to_string(kSchemaVersion) + ")");
  if (!s) {
    (void)db.exec("ROLLBACK");
    return s;
  }
  return db.exec("COMMIT");
}

}  // namespace

Result<std::unique_ptr<Store>> open_sqlite_store(const StoreOptions& options, const core::Clock& clock) {
  if (options.max_batch_messages == 0)
    return core::fail(Code::kInvalidArgument, "bad_options", "max_batch_messages must be at least 1");
  sqlite::OpenOptions writer_options;
  writer_options.full_sync = options.sync_each_commit;
  auto db = sqlite::Database::open(options.path, writer_options);
  if (!db) return tl::unexpected(db.error());
  // Overwritten or deleted content (revoked keys) is zeroed in the file, not left in free pages.
  if (auto s = db->exec("PRAGMA secure_delete=ON"); !s) return tl::unexpected(s.error());
  if (auto s = migrate(*db); !s) {
    if (s.error().reason == "db_schema") return tl::unexpected(s.error());
    return core::fail(Code::kDataLoss, "db_schema", "cannot create or migrate schema: " + s.error().message);
  }
  return std::unique_ptr<Store>(new SqliteStore(options, clock, std::move(*db)));
}

}  // namespace telehub::storage
