// SQLite implementation of the measurement store. See store.h for the contract and
// docs/storage.md for the layout and why.
//
// Layout (schema version 4):
//   subjects(pseudonym)                           pseudonyms only, never identifiers
//   subject_keys(key, pseudonym)                  a small integer per pseudonym, for the tables below
//   devices(id, subject, key_id, wrapped_key, prev_key_id, prev_wrapped_key,
//           prev_valid_until_ms, enrolled_ms, active, revoked_ms, payload_format,
//           manufacturer, model, serial_pseudonym)
//                                                 keys only wrapped under the KEK (opaque here);
//                                                 the serial only as a keyed pseudonym
//   messages(id, device_id, sequence, content_hash, received_ms, subject_key, readings,
//            first_ms, last_ms)                   UNIQUE(device_id, sequence): de-duplication
//   log(message_id, subject_key, readings, data)  readings not yet compacted, one row per message
//   chunks(id, subject_key, code, t0, t1, n, data) compacted series: per (subject, code),
//                                                 time-ordered, compressed (series_codec.h)
//   stats(key, value)                             'readings': readings stored
//   quarantine(id, received_ms, topic, device_id, reason, detail, payload)
//
// Observation ids: message id * 1024 + the reading's index in its message (a message holds at
// most 1,000 readings), so an id never changes when its reading moves from the log into a chunk.
//
// Writes: an append inserts one messages row and one log row (both appended at the end of their
// B-trees) and two index entries. A compaction (a write job like any other, started by a
// background thread when the log holds compact_after_readings readings, or by compact()) takes
// the oldest log rows, groups their readings by series, appends them to each series' newest
// chunk when they come after it (the chunk header keeps the encoder state, so no decoding) or
// starts new chunks, and deletes the log rows: one transaction, so a reading is always either
// in the log or in a chunk, never both or neither, whatever crashes when.
//
// Group commit: see SqliteStore::write(). A job that fails is rolled back to its savepoint
// without affecting the others; a failed COMMIT fails every job of the batch.
//
// Schema history: 1 stored device keys unwrapped (column `key`). 2 stored only wrapped keys
// plus the previous key of a rotation and the revocation time, and one row per observation
// (observations table, rowid = FHIR id). 3 keeps the log and chunks. Migration 1 -> 2 refuses a
// database that holds devices (their raw keys cannot be wrapped here: storage has no KEK, and
// nothing was deployed with schema 1). Migration 2 -> 3 moves every observation into the log
// (compacted afterwards like new readings); observation ids change to the scheme above.
// 4 adds the device's payload format and metadata (issue [4/8]); 3 -> 4 adds the columns.
// The writer connection runs with secure_delete=FAST, so overwritten keys are zeroed in place.

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "series_codec.h"
#include "telehub/core/log.h"
#include "telehub/sqlite/sqlite.h"
#include "telehub/storage/store.h"

namespace telehub::storage {
namespace {

using core::Code;

constexpr int kSchemaVersion = 4;
constexpr std::int64_t kIdsPerMessage = 1024;      // > envelope::kMaxReadingsPerPayload
constexpr std::int64_t kMaxChunkSpanMs = 86'400'000;  // a chunk covers at most one day
constexpr std::size_t kMaxChunkBytes = 3'900;         // a chunk row fits in one 4 KiB page
constexpr int kWriterCheckpointPages = 16'384;        // 64 MiB of WAL: see checkpointer_loop()
// The writer's page cache: 8 MiB (SQLite's default is 2 MiB). A larger cache saves reads of the
// B-tree pages appends touch at random places, but SQLite walks the cache's hash table at the
// end of every write transaction (page-cache truncation), at a cost that grows with its size:
// at 64 MiB that took 11-15 % of the hub's time. Short soak (1 M devices, 16,700 msg/s offered,
// 60 s), messages stored: 2 MiB 706 k, 8 MiB 711 k, 16 MiB 659 k, 64 MiB 588-610 k. Bounded,
// so memory stays flat once it is full. Read connections keep the default: SQLite empties a
// reader's cache whenever another connection has committed since its last transaction.
constexpr const char* kWriterCacheSize = "PRAGMA cache_size=-8192";  // KiB

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS subjects(
  pseudonym TEXT PRIMARY KEY,
  created_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subject_keys(
  key INTEGER PRIMARY KEY,
  pseudonym TEXT NOT NULL UNIQUE
);
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
  revoked_ms INTEGER,
  payload_format TEXT NOT NULL DEFAULT 'native',
  manufacturer TEXT,
  model TEXT,
  serial_pseudonym TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS devices_subject ON devices(subject);
CREATE INDEX IF NOT EXISTS devices_inactive ON devices(id) WHERE active=0;
CREATE TABLE IF NOT EXISTS messages(
  id INTEGER PRIMARY KEY,
  device_id TEXT NOT NULL,
  sequence INTEGER NOT NULL,
  content_hash BLOB NOT NULL,
  received_ms INTEGER NOT NULL,
  subject_key INTEGER NOT NULL,
  readings INTEGER NOT NULL,
  first_ms INTEGER NOT NULL,
  last_ms INTEGER NOT NULL,
  UNIQUE(device_id, sequence)
);
CREATE TABLE IF NOT EXISTS log(
  subject_key INTEGER NOT NULL,
  message_id INTEGER NOT NULL,
  received_ms INTEGER NOT NULL,
  readings INTEGER NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY(subject_key, message_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunks(
  id INTEGER PRIMARY KEY,
  subject_key INTEGER NOT NULL,
  code TEXT NOT NULL,
  t0 INTEGER NOT NULL,
  t1 INTEGER NOT NULL,
  n INTEGER NOT NULL,
  data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_series ON chunks(subject_key, code, t1);
CREATE INDEX IF NOT EXISTS chunks_subject ON chunks(subject_key, t1);
CREATE TABLE IF NOT EXISTS stats(
  key TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO stats(key, value) VALUES('compacted', 0);
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

// Schema 2 stored panel components as "code|value|unit;code|value|unit" (read by the
// migration only).
std::vector<core::Component> decode_v2_components(std::string_view text) {
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

// Codes and units with '|' or ';' are refused (the contract of schema 2, kept).
bool storable_text(std::string_view s) { return s.find('|') == s.npos && s.find(';') == s.npos; }

// The content hash as stored: 32 bytes when it is the usual 64 lowercase hex digits of a
// SHA-256 (half the bytes), else the text itself (tests and tools use other strings). The
// stored form keeps SQLite's type, so the two never compare equal.
struct StoredHash {
  bool binary = false;
  core::Bytes bytes;
};
StoredHash stored_hash(std::string_view hex) {
  StoredHash h;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  if (hex.size() == 64) {
    h.bytes.reserve(32);
    for (std::size_t i = 0; i < 64; i += 2) {
      const int a = nibble(hex[i]), b = nibble(hex[i + 1]);
      if (a < 0 || b < 0) break;
      h.bytes.push_back(static_cast<std::uint8_t>(a * 16 + b));
    }
    if (h.bytes.size() == 32) {
      h.binary = true;
      return h;
    }
  }
  h.bytes.assign(hex.begin(), hex.end());
  return h;
}
void bind_hash(sqlite::Statement& st, int index, const StoredHash& h) {
  if (h.binary) st.bind_blob(index, h.bytes);
  else st.bind(index, std::string_view(reinterpret_cast<const char*>(h.bytes.data()), h.bytes.size()));
}

// A position in the log's key order (subject_key, message_id).
struct LogKey {
  std::int64_t subject_key = INT64_MIN;
  std::int64_t message_id = INT64_MIN;
};

// Which of a subject's log rows a compaction moves: all of them when the subject has at least
// min_readings readings in the log, or its oldest row was received before old_before_ms, or
// `all` is set; otherwise they wait for more (a chunk built from one reading a minute would
// be rewritten for every reading).
struct CompactPolicy {
  std::int64_t min_readings = 1;
  std::int64_t old_before_ms = INT64_MAX;
  bool all = true;
};

struct CompactResult {
  std::int64_t moved = 0;  // readings moved into chunks
  std::int64_t read = 0;   // readings looked at
  LogKey last;             // after the last subject looked at: the next step starts there
};

// One caller's write, waiting in SqliteStore::writers_ until a leader (the caller at the front
// of the queue) has committed it. `run` executes inside a savepoint; its result is delivered
// only after the enclosing transaction committed.
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
  Result<std::vector<AggregateBucket>> aggregate(const AggregateQuery& query) override;
  Result<std::vector<StoredObservation>> latest(std::string_view subject, const std::vector<std::string>& codes,
                                                std::size_t n) override;

 private:
  SqliteStore& store_;
};

class SqliteRegistry final : public Registry {
 public:
  explicit SqliteRegistry(SqliteStore& s) : store_(s) {}
  Status add_subject(const privacy::SubjectPseudonym& subject) override;
  Result<bool> subject_exists(std::string_view pseudonym) override;
  Result<std::vector<std::string>> subjects(std::string_view after, std::size_t limit) override;
  Status add_device(const DeviceRecord& device) override;
  Result<std::optional<DeviceRecord>> find_device(std::string_view device_id) override;
  Result<std::vector<DeviceRecord>> devices_of(std::string_view pseudonym) override;
  Status update_device_info(const DeviceInfoUpdate& info) override;
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
  Result<std::int64_t> purge_before(core::TimePoint before) override;

 private:
  SqliteStore& store_;
};

Result<std::int64_t> scalar(sqlite::Database& db, std::string_view sql, std::optional<std::string_view> arg = {});
Result<CompactResult> compact_log(sqlite::Database& db, std::size_t max_readings, LogKey cursor,
                                  const CompactPolicy& policy);

class SqliteStore final : public Store {
 public:
  SqliteStore(StoreOptions options, const core::Clock& clock, sqlite::Database writer, sqlite::Database checkpointer,
              std::int64_t log_readings)
      : options_(std::move(options)), clock_(clock), writer_db_(std::move(writer)), observations_(*this),
        registry_(*this), quarantine_(*this), checkpoint_db_(std::move(checkpointer)), log_readings_(log_readings) {
    if (options_.compact_after_readings > 0) compactor_ = std::thread([this] { compactor_loop(); });
    checkpointer_ = std::thread([this] { checkpointer_loop(); });
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

  Result<std::int64_t> compact() override {
    std::int64_t moved = 0;
    for (;;) {
      auto r = compact_once(CompactPolicy{});  // everything
      if (!r) return tl::unexpected(r.error());
      if (r->read == 0) return moved;
      moved += r->moved;
    }
  }

  Result<std::int64_t> purge_readings_before(core::TimePoint before) override {
    // Everything into chunks first, so one rule (a chunk's last reading) decides.
    if (auto c = compact(); !c) return tl::unexpected(c.error());
    const auto cutoff = core::to_unix_millis(before);
    return write([cutoff](sqlite::Database& db) -> Result<std::int64_t> {
      auto sum = db.prepare("SELECT coalesce(sum(n), 0) FROM chunks WHERE t1 < ?1");
      if (!sum) return tl::unexpected(sum.error());
      sum->bind(1, cutoff);
      auto row = sum->step();
      if (!row) return tl::unexpected(row.error());
      const std::int64_t n = *row ? sum->column_int64(0) : 0;
      sum->reset();
      if (n == 0) return std::int64_t{0};
      auto del = db.prepare("DELETE FROM chunks WHERE t1 < ?1");
      if (!del) return tl::unexpected(del.error());
      del->bind(1, cutoff);
      if (auto s = del->run(); !s) return tl::unexpected(s.error());
      auto stats = db.prepare("UPDATE stats SET value=value-?1 WHERE key='compacted'");
      if (!stats) return tl::unexpected(stats.error());
      stats->bind(1, n);
      if (auto s = stats->run(); !s) return tl::unexpected(s.error());
      return n;
    });
  }

  ObservationStore& observations() override { return observations_; }
  Registry& registry() override { return registry_; }
  Quarantine& quarantine() override { return quarantine_; }

  // Stops background compaction (after the job in progress), then: later appends fail with
  // unavailable/closed; waits until every write already queued has committed.
  void close() override {
    {
      std::lock_guard lock(compact_mutex_);
      stop_compactor_ = true;
    }
    compact_cv_.notify_all();
    if (compactor_.joinable()) compactor_.join();
    {
      std::unique_lock lock(mutex_);
      closing_ = true;
      cv_.wait(lock, [this] { return writers_.empty(); });
    }
    {
      std::lock_guard lock(checkpoint_mutex_);
      stop_checkpointer_ = true;
    }
    checkpoint_cv_.notify_all();
    if (checkpointer_.joinable()) checkpointer_.join();
  }

  const core::Clock& clock() const { return clock_; }

  // An append committed `readings` more readings into the log.
  void logged(std::int64_t readings) {
    log_readings_.fetch_add(readings);
    const auto now = appended_since_compaction_.fetch_add(readings) + readings;
    if (options_.compact_after_readings > 0 && now >= static_cast<std::int64_t>(options_.compact_after_readings))
      compact_cv_.notify_one();
  }

  // The subject's key, created in the current transaction when new. Only the leader (inside a
  // write job) calls this. Keys created by a transaction that does not commit must not stay
  // cached: they are pending until commit_batch() sees the COMMIT succeed.
  Result<std::int64_t> subject_key(sqlite::Database& db, const std::string& pseudonym) {
    if (auto it = subject_keys_.find(pseudonym); it != subject_keys_.end()) return it->second;
    if (auto it = pending_keys_.find(pseudonym); it != pending_keys_.end()) return it->second;
    auto find = db.prepare("SELECT key FROM subject_keys WHERE pseudonym=?1");
    if (!find) return tl::unexpected(find.error());
    find->bind(1, std::string_view(pseudonym));
    auto row = find->step();
    if (!row) return tl::unexpected(row.error());
    std::int64_t key = 0;
    if (*row) {
      key = find->column_int64(0);
    } else {
      auto ins = db.prepare("INSERT INTO subject_keys(pseudonym) VALUES(?1)");
      if (!ins) return tl::unexpected(ins.error());
      ins->bind(1, std::string_view(pseudonym));
      if (auto s = ins->run(); !s) return tl::unexpected(s.error());
      key = db.last_insert_rowid();
    }
    pending_keys_.emplace(pseudonym, key);
    return key;
  }

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

  // Runs fn with a pooled read connection, inside one read transaction.
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
    // One read transaction, so every statement of fn sees the same snapshot (a reading moves
    // from the log into a chunk in one commit: two snapshots could see it twice or not at all).
    if (auto begin = db->exec("BEGIN"); !begin) return tl::unexpected(begin.error());
    auto result = fn(*db);
    if (auto end = db->exec("COMMIT"); !end) {
      (void)db->exec("ROLLBACK");
      if (result) return tl::unexpected(end.error());
    }
    std::lock_guard lock(readers_mutex_);
    if (readers_.size() < 8) readers_.push_back(std::move(*db));
    return result;
  }

 private:
  // One compaction transaction: looks at about compact_batch_readings readings of the log.
  Result<CompactResult> compact_once(const CompactPolicy& policy) {
    const std::size_t max = options_.compact_batch_readings;
    LogKey from;
    {
      std::lock_guard lock(compact_mutex_);
      from = compact_cursor_;
    }
    CompactResult result;
    auto r = write([&](sqlite::Database& db) -> Result<std::int64_t> {
      auto done = compact_log(db, max, from, policy);
      if (!done) return tl::unexpected(done.error());
      result = *done;
      return done->moved;
    });
    if (!r) return tl::unexpected(r.error());
    std::lock_guard lock(compact_mutex_);
    compact_cursor_ = result.last;  // committed: continue after it
    log_readings_.fetch_sub(result.moved);
    return result;
  }

  // What the background compaction moves now (StoreOptions::compact_min_readings and
  // compact_max_age).
  CompactPolicy background_policy() const {
    CompactPolicy p;
    p.all = false;
    p.min_readings = static_cast<std::int64_t>(std::max<std::size_t>(1, options_.compact_min_readings));
    p.old_before_ms = core::to_unix_millis(clock_.now()) -
                      std::chrono::duration_cast<std::chrono::milliseconds>(options_.compact_max_age).count();
    return p;
  }

  // Checkpoints (copies committed pages from the WAL into the database file, then syncs it) on
  // its own connection every 200 ms after commits, beside the writer: the writer's commits
  // never wait for one. PASSIVE:
  // it takes what no reader still needs and never blocks anyone. The writer itself checkpoints
  // only when the WAL reaches kWriterCheckpointPages (when this thread cannot keep up); and
  // SQLite restarts the WAL from its beginning once everything in it was checkpointed.
  void checkpointer_loop() {
    std::unique_lock lock(checkpoint_mutex_);
    while (!stop_checkpointer_) {
      checkpoint_cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stop_checkpointer_; });
      if (stop_checkpointer_ || !committed_since_checkpoint_.exchange(false)) continue;
      lock.unlock();
      if (auto s = checkpoint_db_.exec("PRAGMA wal_checkpoint(PASSIVE)"); !s && s.error().reason != "db_busy")
        core::log_warn("storage", "checkpoint failed (the writer checkpoints instead): " + s.error().to_string());
      lock.lock();
    }
  }

  // A compaction step whenever compact_after_readings readings were appended since the last
  // one, and every 10 s while the log is not empty (so old rows get compacted when ingest
  // is quiet). Each step looks at the next slice of the log (see compact_log()).
  void compactor_loop() {
    std::unique_lock lock(compact_mutex_);
    const auto threshold = static_cast<std::int64_t>(options_.compact_after_readings);
    auto last_step = std::chrono::steady_clock::now();
    while (!stop_compactor_) {
      // The timeout covers a notification sent between our check and our wait.
      compact_cv_.wait_for(lock, std::chrono::seconds(1),
                           [&] { return stop_compactor_ || appended_since_compaction_.load() >= threshold; });
      if (stop_compactor_) break;
      const bool due = appended_since_compaction_.load() >= threshold;
      const bool idle_due = log_readings_.load() > 0 && std::chrono::steady_clock::now() - last_step > std::chrono::seconds(10);
      if (!due && !idle_due) continue;
      appended_since_compaction_.store(0);
      last_step = std::chrono::steady_clock::now();
      lock.unlock();
      auto r = compact_once(background_policy());  // takes compact_mutex_ briefly itself
      lock.lock();
      if (!r) {
        if (r.error().reason != "closed")
          core::log_warn("storage", "compaction failed (retrying in 1 s): " + r.error().to_string());
        compact_cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stop_compactor_; });
      } else if (r->read == 0) {
        log_readings_.store(0);  // the log is empty (another process compacted it meanwhile)
      }
    }
  }

  // Runs on the leader's thread; only the leader touches writer_db_ and the key caches.
  std::vector<Result<std::int64_t>> commit_batch(const std::vector<WriteJob*>& batch) {
    std::vector<Result<std::int64_t>> results;
    results.reserve(batch.size());
    pending_keys_.clear();
    if (auto begin = writer_db_.exec("BEGIN IMMEDIATE"); !begin) {
      for (std::size_t i = 0; i < batch.size(); ++i) results.push_back(tl::unexpected(begin.error()));
      return results;
    }
    bool rolled_back = false;
    for (auto* job : batch) {
      Result<std::int64_t> r = core::fail(Code::kInternal, "db_error", "savepoint failed");
      if (writer_db_.exec("SAVEPOINT job")) {
        r = job->run(writer_db_);
        if (r) {
          (void)writer_db_.exec("RELEASE job");
        } else {
          (void)writer_db_.exec("ROLLBACK TO job");
          (void)writer_db_.exec("RELEASE job");
          rolled_back = true;
        }
      }
      results.push_back(std::move(r));
    }
    if (auto commit = writer_db_.exec("COMMIT"); !commit) {
      core::log_error("storage", "commit failed: " + commit.error().to_string());
      (void)writer_db_.exec("ROLLBACK");
      for (auto& r : results) r = tl::unexpected(commit.error());
      pending_keys_.clear();
      return results;
    }
    committed_since_checkpoint_ = true;
    // A rolled-back job may have created keys that no longer exist: forget them all (they
    // are looked up again; the committed ones are found).
    if (!rolled_back) {
      if (subject_keys_.size() > 100'000) subject_keys_.clear();  // bounded: ~10 MB
      subject_keys_.merge(pending_keys_);
    }
    pending_keys_.clear();
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

  // Leader only.
  std::unordered_map<std::string, std::int64_t> subject_keys_;
  std::unordered_map<std::string, std::int64_t> pending_keys_;

  std::mutex readers_mutex_;
  std::vector<sqlite::Database> readers_;

  std::mutex sync_mutex_;
  int wal_fd_ = -1;  // guarded by sync_mutex_

  sqlite::Database checkpoint_db_;  // only checkpointer_loop() uses it
  std::mutex checkpoint_mutex_;
  std::condition_variable checkpoint_cv_;
  bool stop_checkpointer_ = false;  // guarded by checkpoint_mutex_
  std::atomic<bool> committed_since_checkpoint_{false};
  std::thread checkpointer_;

  std::atomic<std::int64_t> log_readings_;  // readings in the log (this process's view)
  std::atomic<std::int64_t> appended_since_compaction_{0};
  std::mutex compact_mutex_;
  std::condition_variable compact_cv_;
  bool stop_compactor_ = false;  // guarded by compact_mutex_
  LogKey compact_cursor_;        // guarded by compact_mutex_: where the next compaction starts
  std::thread compactor_;
};

// ---------------------------------------------------------------- observations

constexpr std::int64_t kDuplicate = -1;
constexpr std::int64_t kConflict = -2;
constexpr std::int64_t kOutside = -3;

// Inserts one message and its log row (inside a write job). Shared by append() and the
// schema 2 -> 3 migration. Returns the message id.
Result<std::int64_t> insert_message(sqlite::Database& db, std::optional<std::int64_t> id, std::string_view device_id,
                                    std::int64_t sequence, const StoredHash& hash, std::int64_t received_ms,
                                    std::int64_t subject_key, const std::vector<const core::Reading*>& readings) {
  std::int64_t first = INT64_MAX, last = INT64_MIN;
  for (const auto* r : readings) {
    first = std::min(first, core::to_unix_millis(r->time));
    last = std::max(last, core::to_unix_millis(r->time));
  }
  if (readings.empty()) first = last = 0;
  auto msg = db.prepare(
      "INSERT INTO messages(id, device_id, sequence, content_hash, received_ms, subject_key, readings, first_ms, last_ms)"
      " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
  if (!msg) return tl::unexpected(msg.error());
  if (id) msg->bind(1, *id); else msg->bind_null(1);
  msg->bind(2, device_id).bind(3, sequence);
  bind_hash(*msg, 4, hash);
  msg->bind(5, received_ms).bind(6, subject_key).bind(7, static_cast<std::int64_t>(readings.size()));
  msg->bind(8, first).bind(9, last);
  if (auto s = msg->run(); !s) return tl::unexpected(s.error());
  const auto message_id = db.last_insert_rowid();
  if (readings.empty()) return message_id;

  auto log = db.prepare(
      "INSERT INTO log(subject_key, message_id, received_ms, readings, data) VALUES(?2, ?1, ?5, ?3, ?4)");
  if (!log) return tl::unexpected(log.error());
  const auto data = codec::encode_log(readings);
  log->bind(1, message_id).bind(2, subject_key).bind(3, static_cast<std::int64_t>(readings.size())).bind_blob(4, data);
  log->bind(5, received_ms);
  if (auto s = log->run(); !s) return tl::unexpected(s.error());
  return message_id;
}

Result<AppendOutcome> SqliteObservations::append(MessageBatch batch) {
  if (batch.readings.empty()) return core::fail(Code::kInvalidArgument, "bad_batch", "message has no readings");
  if (batch.readings.size() >= static_cast<std::size_t>(kIdsPerMessage))
    return core::fail(Code::kInvalidArgument, "bad_batch", "a message holds at most 1023 readings");
  std::vector<const core::Reading*> readings;
  readings.reserve(batch.readings.size());
  for (const auto& r : batch.readings) {
    if (r.subject() != batch.readings.front().subject())
      return core::fail(Code::kInvalidArgument, "bad_batch", "readings of one message must share a subject");
    if (!storable_text(r.reading().code) || !storable_text(r.reading().unit))
      return core::fail(Code::kInvalidArgument, "bad_batch", "code or unit contains '|' or ';'");
    for (const auto& c : r.reading().components)
      if (!storable_text(c.code) || !storable_text(c.unit))
        return core::fail(Code::kInvalidArgument, "bad_batch", "component code or unit contains '|' or ';'");
    readings.push_back(&r.reading());
  }
  const StoredHash hash = stored_hash(batch.content_hash);
  const std::string subject = batch.readings.front().subject().str();
  auto result = store_.write([&](sqlite::Database& db) -> Result<std::int64_t> {
    const auto seq = static_cast<std::int64_t>(batch.sequence);
    auto find = db.prepare("SELECT typeof(content_hash)='blob', content_hash FROM messages WHERE device_id=?1 AND sequence=?2");
    if (!find) return tl::unexpected(find.error());
    find->bind(1, std::string_view(batch.device_id)).bind(2, seq);
    auto row = find->step();
    if (!row) return tl::unexpected(row.error());
    if (*row) {
      // Same type and bytes: a binary hash equals only a binary hash.
      const bool is_blob = find->column_int64(0) != 0;
      const bool same = is_blob == hash.binary && find->column_blob(1) == hash.bytes;
      find->reset();
      return same ? kDuplicate : kConflict;
    }
    find->reset();
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
    auto key = store_.subject_key(db, subject);
    if (!key) return tl::unexpected(key.error());
    return insert_message(db, std::nullopt, batch.device_id, seq, hash, core::to_unix_millis(batch.received_at), *key,
                          readings);
  });
  if (!result) return tl::unexpected(result.error());
  if (*result == kDuplicate) return AppendOutcome::kDuplicate;
  if (*result == kConflict) return AppendOutcome::kConflict;
  if (*result == kOutside) return AppendOutcome::kOutsideWindow;
  store_.logged(static_cast<std::int64_t>(readings.size()));
  return AppendOutcome::kStored;
}

// ---------------------------------------------------------------- compaction

// One series' points from the log rows being compacted.
struct LogPoint {
  std::int64_t time;
  std::int64_t id;
  const codec::LogReading* reading;
};

Status write_chunk(sqlite::Database& db, std::int64_t subject_key, const std::string& code, std::int64_t chunk_id,
                   const codec::ChunkBuilder& b) {
  const auto data = b.finish();
  if (chunk_id != 0) {
    auto st = db.prepare("UPDATE chunks SET t1=?2, n=?3, data=?4 WHERE id=?1");
    if (!st) return tl::unexpected(st.error());
    st->bind(1, chunk_id).bind(2, b.last_time()).bind(3, static_cast<std::int64_t>(b.size())).bind_blob(4, data);
    return st->run();
  }
  auto st = db.prepare("INSERT INTO chunks(subject_key, code, t0, t1, n, data) VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
  if (!st) return tl::unexpected(st.error());
  st->bind(1, subject_key).bind(2, std::string_view(code)).bind(3, b.first_time()).bind(4, b.last_time());
  st->bind(5, static_cast<std::int64_t>(b.size())).bind_blob(6, data);
  return st->run();
}

Status compact_series(sqlite::Database& db, std::int64_t subject_key, const std::string& code,
                      std::vector<LogPoint>& points) {
  std::sort(points.begin(), points.end(),
            [](const LogPoint& a, const LogPoint& b) { return std::tie(a.time, a.id) < std::tie(b.time, b.id); });
  std::optional<codec::ChunkBuilder> open;
  std::int64_t open_id = 0;  // the stored chunk `open` continues; 0 = a new chunk
  bool grown = false;        // `open` holds a point of this compaction

  // Continue the series' newest chunk when every point comes after it.
  auto tail = db.prepare("SELECT id, t1, data FROM chunks WHERE subject_key=?1 AND code=?2 ORDER BY t1 DESC LIMIT 1");
  if (!tail) return tl::unexpected(tail.error());
  tail->bind(1, subject_key).bind(2, std::string_view(code));
  auto row = tail->step();
  if (!row) return tl::unexpected(row.error());
  if (*row && tail->column_int64(1) <= points.front().time) {
    open = codec::ChunkBuilder::resume(tail->column_blob_view(2));
    if (!open) return core::fail(Code::kDataLoss, "db_corrupt", "a stored chunk does not decode");
    open_id = tail->column_int64(0);
  }
  tail->reset();

  for (std::size_t i = 0; i < points.size(); ++i) {
    const auto& p = points[i];
    const std::span<const double> values(p.reading->values);
    const bool fits = open && open->shape() == p.reading->shape && p.time - open->first_time() <= kMaxChunkSpanMs &&
                      open->encoded_size() + 16 + 10 * values.size() <= kMaxChunkBytes;
    if (fits && open->append(p.time, p.id, values)) {
      grown = true;
      continue;
    }
    if (open && grown) {
      if (auto s = write_chunk(db, subject_key, code, open_id, *open); !s) return s;
    }
    // A new chunk, at the widest scale the next points of this shape need.
    std::uint8_t scale = 0;
    for (std::size_t j = i; j < points.size() && j < i + 256; ++j) {
      if (!(points[j].reading->shape == p.reading->shape)) break;
      for (double v : points[j].reading->values) scale = codec::wider_scale(scale, codec::scale_for(v));
    }
    open.emplace(p.reading->shape, scale);
    open_id = 0;
    grown = true;
    if (!open->append(p.time, p.id, values)) {
      open.emplace(p.reading->shape, codec::kRawScale);
      (void)open->append(p.time, p.id, values);  // a raw chunk takes any value
    }
  }
  if (open && grown) return write_chunk(db, subject_key, code, open_id, *open);
  return {};
}

// One compaction step inside the caller's transaction: reads the log rows after `cursor` in
// key order (or from the start of the log when nothing follows it) subject by subject, until
// it has looked at max_readings readings and the subject ends; moves the rows of every subject
// the policy selects into chunks and deletes them. So successive steps sweep the log subject
// by subject and wrap around: every row is looked at within one sweep, however fast rows
// arrive, and all readings a subject gathered meanwhile become one run of points.
Result<CompactResult> compact_log(sqlite::Database& db, std::size_t max_readings, LogKey cursor,
                                  const CompactPolicy& policy) {
  std::deque<std::vector<codec::LogReading>> decoded;
  std::map<std::pair<std::int64_t, std::string>, std::vector<LogPoint>> series;
  std::vector<LogKey> take;  // per selected subject: its last message id read
  CompactResult result;
  result.last = cursor;

  // The rows of the subject being read, until the subject ends.
  struct Row {
    std::int64_t message_id;
    std::vector<codec::LogReading>* readings;
  };
  std::int64_t group_subject = 0, group_readings = 0, group_oldest = INT64_MAX;
  std::vector<Row> group;
  auto close_group = [&] {
    if (group.empty()) return;
    if (policy.all || group_readings >= policy.min_readings || group_oldest < policy.old_before_ms) {
      for (const auto& row : group)
        for (std::size_t idx = 0; idx < row.readings->size(); ++idx) {
          const auto& r = (*row.readings)[idx];
          series[{group_subject, r.code}].push_back(
              {r.time_ms, row.message_id * kIdsPerMessage + static_cast<std::int64_t>(idx), &r});
        }
      take.push_back({group_subject, group.back().message_id});
      result.moved += group_readings;
    } else {
      decoded.resize(decoded.size() - group.size());  // not moved: forget them
    }
    group.clear();
    group_readings = 0;
    group_oldest = INT64_MAX;
  };

  // Pass 0: after the cursor to the end; pass 1 (wrapping around): from the start up to the
  // cursor, if the slice is not full yet.
  const LogKey start = cursor;
  bool full = false;
  for (int pass = 0; pass < 2 && !full; ++pass) {
    if (pass == 1 && start.subject_key == INT64_MIN) break;  // pass 0 began at the start
    auto st = db.prepare(
        "SELECT subject_key, message_id, received_ms, data FROM log WHERE (subject_key, message_id) > (?1, ?2)"
        " AND (subject_key, message_id) <= (?3, ?4) ORDER BY subject_key, message_id");
    if (!st) return tl::unexpected(st.error());
    const LogKey from = pass == 0 ? start : LogKey{};
    const LogKey to = pass == 0 ? LogKey{INT64_MAX, INT64_MAX} : start;
    st->bind(1, from.subject_key).bind(2, from.message_id).bind(3, to.subject_key).bind(4, to.message_id);
    for (;;) {
      auto row = st->step();
      if (!row) return tl::unexpected(row.error());
      if (!*row) break;
      const auto subject_key = st->column_int64(0);
      if (!group.empty() && subject_key != group_subject) {
        close_group();
        if (static_cast<std::size_t>(result.read) >= max_readings) {  // at a subject boundary
          full = true;
          break;
        }
      }
      const auto message_id = st->column_int64(1);
      auto& readings = decoded.emplace_back();
      if (!codec::decode_log(st->column_blob_view(3), readings))
        return core::fail(Code::kDataLoss, "db_corrupt",
                          "log entry of message " + std::to_string(message_id) + " does not decode");
      group_subject = subject_key;
      group.push_back({message_id, &readings});
      group_readings += static_cast<std::int64_t>(readings.size());
      group_oldest = std::min(group_oldest, st->column_int64(2));
      result.read += static_cast<std::int64_t>(readings.size());
      result.last = {subject_key, INT64_MAX};  // steps end at subject boundaries
    }
    close_group();
    st->reset();
  }
  if (result.moved == 0) return result;
  for (auto& [key, points] : series)
    if (auto s = compact_series(db, key.first, key.second, points); !s) return tl::unexpected(s.error());
  auto del = db.prepare("DELETE FROM log WHERE subject_key=?1 AND message_id <= ?2");
  if (!del) return tl::unexpected(del.error());
  for (const auto& k : take) {
    del->reset();
    del->bind(1, k.subject_key).bind(2, k.message_id);
    if (auto s = del->run(); !s) return tl::unexpected(s.error());
  }
  del->reset();
  auto stats = db.prepare("UPDATE stats SET value=value+?1 WHERE key='compacted'");
  if (!stats) return tl::unexpected(stats.error());
  stats->bind(1, result.moved);
  if (auto s = stats->run(); !s) return tl::unexpected(s.error());
  return result;
}

// ---------------------------------------------------------------- reads

// A reading found by a search or get(), before it becomes a StoredObservation.
struct Found {
  std::int64_t time;
  std::int64_t id;
  const std::string* code;
  const codec::Shape* shape;
  const double* values;
};

bool found_before(const Found& a, const Found& b) { return std::tie(a.time, a.id) < std::tie(b.time, b.id); }

// Decoded log rows and chunks that Found entries point into (stable addresses).
struct Decoded {
  std::deque<std::vector<codec::LogReading>> logs;
  std::deque<codec::DecodedChunk> chunks;
  std::deque<std::string> codes;
};

Result<std::optional<std::int64_t>> find_subject_key(sqlite::Database& db, std::string_view pseudonym) {
  auto st = db.prepare("SELECT key FROM subject_keys WHERE pseudonym=?1");
  if (!st) return tl::unexpected(st.error());
  st->bind(1, pseudonym);
  auto row = st->step();
  if (!row) return tl::unexpected(row.error());
  if (!*row) return std::optional<std::int64_t>();
  return std::optional<std::int64_t>(st->column_int64(0));
}

// Device, sequence and receipt time of each message of a page (one look-up per message).
class MessageInfo {
 public:
  explicit MessageInfo(sqlite::Database& db) : db_(db) {}
  Status fill(StoredObservation& o) {
    const auto message_id = o.id / kIdsPerMessage;
    auto it = cache_.find(message_id);
    if (it == cache_.end()) {
      auto st = db_.prepare("SELECT device_id, sequence, received_ms FROM messages WHERE id=?1");
      if (!st) return tl::unexpected(st.error());
      st->bind(1, message_id);
      auto row = st->step();
      if (!row) return tl::unexpected(row.error());
      if (!*row) return core::fail(Code::kDataLoss, "db_corrupt", "a reading without its message");
      it = cache_.emplace(message_id, Info{st->column_text(0), static_cast<std::uint64_t>(st->column_int64(1)),
                                           st->column_int64(2)}).first;
    }
    o.reading.device = it->second.device;
    o.reading.sequence = it->second.sequence;
    o.received_at = core::from_unix_millis(it->second.received_ms);
    return {};
  }

 private:
  struct Info {
    std::string device;
    std::uint64_t sequence;
    std::int64_t received_ms;
  };
  sqlite::Database& db_;
  std::unordered_map<std::int64_t, Info> cache_;
};

Result<StoredObservation> to_observation(const Found& f, const std::string& subject, MessageInfo& info) {
  StoredObservation o;
  o.id = f.id;
  o.reading.subject = subject;
  o.reading.code = *f.code;
  o.reading.time = core::from_unix_millis(f.time);
  codec::fill_reading(*f.shape, f.values, o.reading);
  if (auto s = info.fill(o); !s) return tl::unexpected(s.error());
  return o;
}

// The chunks of a subject (and code) overlapping [?3, ?4), for search(): by last time,
// ascending or descending (the chunks_series / chunks_subject index, either way).
constexpr const char* kChunksAsc =
    "SELECT code, t0, t1, data FROM chunks WHERE subject_key=?1 AND ?2 IS NULL AND t1 >= ?3 AND t0 < ?4 ORDER BY t1";
constexpr const char* kChunksAscByCode =
    "SELECT code, t0, t1, data FROM chunks WHERE subject_key=?1 AND code=?2 AND t1 >= ?3 AND t0 < ?4 ORDER BY t1";
constexpr const char* kChunksDesc =
    "SELECT code, t0, t1, data FROM chunks WHERE subject_key=?1 AND ?2 IS NULL AND t1 >= ?3 AND t0 < ?4 ORDER BY t1 DESC";
constexpr const char* kChunksDescByCode =
    "SELECT code, t0, t1, data FROM chunks WHERE subject_key=?1 AND code=?2 AND t1 >= ?3 AND t0 < ?4 ORDER BY t1 DESC";

Result<ObservationPage> SqliteObservations::search(const ObservationQuery& q) {
  if (q.limit < 1 || q.limit > 1000) return core::fail(Code::kInvalidArgument, "bad_query", "limit must be 1..1000");
  return store_.read([&q](sqlite::Database& db) -> Result<ObservationPage> {
    ObservationPage page;
    auto key = find_subject_key(db, q.subject);
    if (!key) return tl::unexpected(key.error());
    if (!*key) return page;
    // Readings qualify when from <= time < to and (time, id) is beyond the cursor: above it
    // (ascending) or below it (descending).
    const std::int64_t from = q.from ? core::to_unix_millis(*q.from) : INT64_MIN;
    const std::int64_t to = q.to ? core::to_unix_millis(*q.to) : INT64_MAX;
    const bool desc = q.descending;
    const std::int64_t lo = q.after && !desc ? std::max(from, q.after->time_ms) : from;
    // Exclusive upper bound on time for the chunk query (descending: the cursor's time is still
    // possible for a smaller id).
    const std::int64_t hi = q.after && desc && q.after->time_ms < INT64_MAX ? std::min(to, q.after->time_ms + 1) : to;
    auto qualifies = [&](std::int64_t time, std::int64_t id) {
      if (time < lo || time >= hi) return false;
      if (!q.after) return true;
      return desc ? std::tie(time, id) < std::tie(q.after->time_ms, q.after->id)
                  : std::tie(time, id) > std::tie(q.after->time_ms, q.after->id);
    };
    auto before = [desc](const Found& a, const Found& b) { return desc ? found_before(b, a) : found_before(a, b); };
    const std::size_t want = q.limit + 1;
    Decoded decoded;
    std::vector<Found> found;

    // 1. Readings still in the log (few: compaction keeps it short).
    auto logs = db.prepare("SELECT message_id, data FROM log WHERE subject_key=?1");
    if (!logs) return tl::unexpected(logs.error());
    logs->bind(1, **key);
    for (;;) {
      auto row = logs->step();
      if (!row) return tl::unexpected(row.error());
      if (!*row) break;
      const auto message_id = logs->column_int64(0);
      auto& readings = decoded.logs.emplace_back();
      if (!codec::decode_log(logs->column_blob_view(1), readings))
        return core::fail(Code::kDataLoss, "db_corrupt", "a log entry does not decode");
      for (std::size_t idx = 0; idx < readings.size(); ++idx) {
        const auto& r = readings[idx];
        const auto id = message_id * kIdsPerMessage + static_cast<std::int64_t>(idx);
        if ((q.code && r.code != *q.code) || !qualifies(r.time_ms, id)) continue;
        found.push_back({r.time_ms, id, &r.code, &r.shape, r.values.data()});
      }
    }
    logs->reset();

    // 2. Chunks, in order of their last time from `lo` on (descending: from `hi` down). A chunk
    // spans at most kMaxChunkSpanMs, so once `want` readings are found and a chunk lies more than
    // that beyond the last of them, neither it nor any later chunk can hold a better one
    // (descending: a chunk ending before the want-th newest reading, and every chunk after it):
    // a page deep into a long series decodes about as much as the first page.
    auto chunks = desc ? (q.code ? db.prepare(kChunksDescByCode) : db.prepare(kChunksDesc))
                       : (q.code ? db.prepare(kChunksAscByCode) : db.prepare(kChunksAsc));
    if (!chunks) return tl::unexpected(chunks.error());
    chunks->bind(1, **key);
    if (q.code) chunks->bind(2, std::string_view(*q.code)); else chunks->bind_null(2);
    chunks->bind(3, lo).bind(4, hi);
    std::optional<std::int64_t> bound;  // time of the want-th best reading so far
    auto prune = [&] {
      if (found.size() < want) return;
      std::nth_element(found.begin(), found.begin() + static_cast<std::ptrdiff_t>(want - 1), found.end(), before);
      found.resize(want);
      bound = found[want - 1].time;
    };
    prune();
    for (;;) {
      auto row = chunks->step();
      if (!row) return tl::unexpected(row.error());
      if (!*row) break;
      const auto t0 = chunks->column_int64(1), t1 = chunks->column_int64(2);
      if (!desc) {
        if (bound && t1 - kMaxChunkSpanMs > *bound) break;
        if (bound && t0 > *bound) continue;
      } else {
        if (bound && t1 < *bound) break;
      }
      const std::string* code = &decoded.codes.emplace_back(chunks->column_text(0));
      auto& c = decoded.chunks.emplace_back();
      if (!codec::decode_chunk(chunks->column_blob_view(3), c))
        return core::fail(Code::kDataLoss, "db_corrupt", "a stored chunk does not decode");
      const std::size_t slots = c.shape.slots();
      for (std::size_t i = 0; i < c.times.size(); ++i)
        if (qualifies(c.times[i], c.ids[i]))
          found.push_back({c.times[i], c.ids[i], code, &c.shape, c.values.data() + i * slots});
      if (found.size() >= 2 * want) prune();
      else if (found.size() >= want && !bound) prune();
    }
    chunks->reset();

    std::sort(found.begin(), found.end(), before);
    const bool more = found.size() > q.limit;
    if (more) found.resize(q.limit);
    MessageInfo info(db);
    page.items.reserve(found.size());
    for (const auto& f : found) {
      auto o = to_observation(f, q.subject, info);
      if (!o) return tl::unexpected(o.error());
      page.items.push_back(std::move(*o));
    }
    if (more) page.next = Cursor{found.back().time, found.back().id};
    return page;
  });
}

Result<std::optional<StoredObservation>> SqliteObservations::get(std::int64_t id) {
  return store_.read([id](sqlite::Database& db) -> Result<std::optional<StoredObservation>> {
    using Maybe = std::optional<StoredObservation>;
    if (id <= 0) return Maybe();
    const auto message_id = id / kIdsPerMessage;
    const auto idx = id % kIdsPerMessage;
    auto msg = db.prepare(
        "SELECT m.readings, m.first_ms, m.last_ms, m.subject_key, k.pseudonym FROM messages m"
        " JOIN subject_keys k ON k.key = m.subject_key WHERE m.id=?1");
    if (!msg) return tl::unexpected(msg.error());
    msg->bind(1, message_id);
    auto row = msg->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row || idx >= msg->column_int64(0)) return Maybe();
    const auto first = msg->column_int64(1), last = msg->column_int64(2), key = msg->column_int64(3);
    const std::string subject = msg->column_text(4);
    msg->reset();
    MessageInfo info(db);

    auto log = db.prepare("SELECT data FROM log WHERE subject_key=?1 AND message_id=?2");
    if (!log) return tl::unexpected(log.error());
    log->bind(1, key).bind(2, message_id);
    auto log_row = log->step();
    if (!log_row) return tl::unexpected(log_row.error());
    if (*log_row) {
      std::vector<codec::LogReading> readings;
      if (!codec::decode_log(log->column_blob_view(0), readings) || static_cast<std::size_t>(idx) >= readings.size())
        return core::fail(Code::kDataLoss, "db_corrupt", "a log entry does not decode");
      log->reset();
      const auto& r = readings[static_cast<std::size_t>(idx)];
      auto o = to_observation({r.time_ms, id, &r.code, &r.shape, r.values.data()}, subject, info);
      if (!o) return tl::unexpected(o.error());
      return Maybe(std::move(*o));
    }
    log->reset();

    // Compacted: in one of the subject's chunks that overlap the message's time range.
    auto chunks = db.prepare(
        "SELECT code, data FROM chunks WHERE subject_key=?1 AND t1 >= ?2 AND t1 <= ?3 AND t0 <= ?4 ORDER BY t1");
    if (!chunks) return tl::unexpected(chunks.error());
    chunks->bind(1, key).bind(2, first).bind(3, last + kMaxChunkSpanMs).bind(4, last);
    codec::DecodedChunk c;
    for (;;) {
      auto crow = chunks->step();
      if (!crow) return tl::unexpected(crow.error());
      if (!*crow) break;
      if (!codec::decode_chunk(chunks->column_blob_view(1), c))
        return core::fail(Code::kDataLoss, "db_corrupt", "a stored chunk does not decode");
      for (std::size_t i = 0; i < c.ids.size(); ++i) {
        if (c.ids[i] != id) continue;
        const std::string code = chunks->column_text(0);
        auto o = to_observation({c.times[i], id, &code, &c.shape, c.values.data() + i * c.shape.slots()}, subject, info);
        chunks->reset();
        if (!o) return tl::unexpected(o.error());
        return Maybe(std::move(*o));
      }
    }
    chunks->reset();
    return core::fail(Code::kDataLoss, "db_corrupt", "observation " + std::to_string(id) + " is missing from its chunks");
  });
}

// ---------------------------------------------------------------- dense views

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

// Per-bucket statistics (aggregate()). Slots are numbered once per query by (code, unit,
// value or component, position in the shape); each decoded chunk maps its shape's slots to
// those numbers once, so a point costs a bucket look-up (cached: points mostly arrive in time
// order) and a few additions.
class Aggregator {
 public:
  Aggregator(std::string code, std::int64_t width) : code_(std::move(code)), width_(width) {}

  // The query's slot numbers of a shape's slots (valid until the next call).
  const std::vector<std::size_t>& map_shape(const codec::Shape& shape) {
    mapped_.clear();
    if (shape.has_value) mapped_.push_back(slot_of(code_, shape.unit, true, 0));
    for (std::size_t i = 0; i < shape.components.size(); ++i)
      mapped_.push_back(slot_of(shape.components[i].first, shape.components[i].second, false, i));
    return mapped_;
  }

  void add(std::int64_t time, const std::vector<std::size_t>& slots, const double* values) {
    const std::int64_t start = floor_div(time, width_) * width_;
    if (current_ == buckets_.end() || current_->first != start) current_ = buckets_.try_emplace(start).first;
    Acc& b = current_->second;
    ++b.count;
    b.first = std::min(b.first, time);
    b.last = std::max(b.last, time);
    if (b.slots.size() < slot_keys_.size()) b.slots.resize(slot_keys_.size());
    for (std::size_t i = 0; i < slots.size(); ++i) {
      const double v = values[i];
      if (!std::isfinite(v)) continue;
      auto& s = b.slots[slots[i]];
      if (s.count == 0) {
        s.min = s.max = v;
      } else {
        s.min = std::min(s.min, v);
        s.max = std::max(s.max, v);
      }
      ++s.count;
      s.sum += v;
    }
  }

  std::vector<AggregateBucket> finish() const {
    // Output order of slots: the value first, then components by position, then code and unit.
    std::vector<std::size_t> order(slot_keys_.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      const auto& x = slot_keys_[a];
      const auto& y = slot_keys_[b];
      if (x.is_value != y.is_value) return x.is_value;
      return std::tie(x.position, x.code, x.unit) < std::tie(y.position, y.code, y.unit);
    });
    std::vector<AggregateBucket> out;
    out.reserve(buckets_.size());
    for (const auto& [start, acc] : buckets_) {
      AggregateBucket b;
      b.start = core::from_unix_millis(start);
      b.end = core::from_unix_millis(start + width_);
      b.count = acc.count;
      b.first = core::from_unix_millis(acc.first);
      b.last = core::from_unix_millis(acc.last);
      for (std::size_t idx : order) {
        if (idx >= acc.slots.size() || acc.slots[idx].count == 0) continue;
        const auto& s = acc.slots[idx];
        SlotStats st;
        st.code = slot_keys_[idx].code;
        st.unit = slot_keys_[idx].unit;
        st.count = s.count;
        st.min = s.min;
        st.max = s.max;
        st.sum = s.sum;
        st.mean = s.sum / static_cast<double>(s.count);
        b.slots.push_back(std::move(st));
      }
      out.push_back(std::move(b));
    }
    return out;
  }

 private:
  struct SlotKey {
    std::string code;
    std::string unit;
    bool is_value;
    std::size_t position;
  };
  struct SlotAcc {
    std::int64_t count = 0;
    double min = 0, max = 0, sum = 0;
  };
  struct Acc {
    std::int64_t count = 0;
    std::int64_t first = INT64_MAX;
    std::int64_t last = INT64_MIN;
    std::vector<SlotAcc> slots;
  };

  std::size_t slot_of(const std::string& code, const std::string& unit, bool is_value, std::size_t position) {
    for (std::size_t i = 0; i < slot_keys_.size(); ++i) {
      const auto& k = slot_keys_[i];
      if (k.is_value == is_value && k.code == code && k.unit == unit) return i;
    }
    slot_keys_.push_back({code, unit, is_value, position});
    return slot_keys_.size() - 1;
  }

  std::string code_;
  std::int64_t width_;
  std::vector<SlotKey> slot_keys_;
  std::vector<std::size_t> mapped_;
  std::map<std::int64_t, Acc> buckets_;
  std::map<std::int64_t, Acc>::iterator current_ = buckets_.end();
};

Result<std::vector<AggregateBucket>> SqliteObservations::aggregate(const AggregateQuery& q) {
  if (q.code.empty()) return core::fail(Code::kInvalidArgument, "bad_query", "aggregate needs a code");
  const std::int64_t from = q.from ? core::to_unix_millis(*q.from) : INT64_MIN;
  const std::int64_t to = q.to ? core::to_unix_millis(*q.to) : INT64_MAX;
  if (from >= to) return core::fail(Code::kInvalidArgument, "bad_query", "aggregate needs from < to");
  return store_.read([&](sqlite::Database& db) -> Result<std::vector<AggregateBucket>> {
    auto key = find_subject_key(db, q.subject);
    if (!key) return tl::unexpected(key.error());
    if (!*key) return std::vector<AggregateBucket>();
    Aggregator agg(q.code, bucket_millis(q.bucket));

    // 1. Readings still in the log (few: compaction keeps it short).
    auto logs = db.prepare("SELECT data FROM log WHERE subject_key=?1");
    if (!logs) return tl::unexpected(logs.error());
    logs->bind(1, **key);
    std::vector<codec::LogReading> readings;
    for (;;) {
      auto row = logs->step();
      if (!row) return tl::unexpected(row.error());
      if (!*row) break;
      readings.clear();
      if (!codec::decode_log(logs->column_blob_view(0), readings))
        return core::fail(Code::kDataLoss, "db_corrupt", "a log entry does not decode");
      for (const auto& r : readings) {
        if (r.code != q.code || r.time_ms < from || r.time_ms >= to) continue;
        agg.add(r.time_ms, agg.map_shape(r.shape), r.values.data());
      }
    }
    logs->reset();

    // 2. The series' chunks that overlap [from, to), in t1 order (index chunks_series), each
    // decoded once.
    auto chunks = db.prepare("SELECT data FROM chunks WHERE subject_key=?1 AND code=?2 AND t1 >= ?3 AND t0 < ?4 ORDER BY t1");
    if (!chunks) return tl::unexpected(chunks.error());
    chunks->bind(1, **key).bind(2, std::string_view(q.code)).bind(3, from).bind(4, to);
    codec::DecodedChunk c;
    for (;;) {
      auto row = chunks->step();
      if (!row) return tl::unexpected(row.error());
      if (!*row) break;
      if (!codec::decode_chunk(chunks->column_blob_view(0), c))
        return core::fail(Code::kDataLoss, "db_corrupt", "a stored chunk does not decode");
      const auto& slots = agg.map_shape(c.shape);
      const std::size_t width = c.shape.slots();
      for (std::size_t i = 0; i < c.times.size(); ++i) {
        const auto t = c.times[i];
        if (t < from || t >= to) continue;
        agg.add(t, slots, c.values.data() + i * width);
      }
    }
    chunks->reset();
    return agg.finish();
  });
}

bool found_newer(const Found& a, const Found& b) { return std::tie(a.time, a.id) > std::tie(b.time, b.id); }

Result<std::vector<StoredObservation>> SqliteObservations::latest(std::string_view subject,
                                                                  const std::vector<std::string>& codes, std::size_t n) {
  if (n < 1 || n > 1000) return core::fail(Code::kInvalidArgument, "bad_query", "n must be 1..1000");
  return store_.read([&](sqlite::Database& db) -> Result<std::vector<StoredObservation>> {
    std::vector<StoredObservation> out;
    auto key = find_subject_key(db, subject);
    if (!key) return tl::unexpected(key.error());
    if (!*key) return out;
    // Per code (ascending: std::map), its candidates; Found::code points at the map's key.
    std::map<std::string, std::vector<Found>> per_code;
    for (const auto& c : codes) per_code.try_emplace(c);
    const bool all = codes.empty();
    Decoded decoded;

    // 1. The subject's log rows.
    auto logs = db.prepare("SELECT message_id, data FROM log WHERE subject_key=?1");
    if (!logs) return tl::unexpected(logs.error());
    logs->bind(1, **key);
    for (;;) {
      auto row = logs->step();
      if (!row) return tl::unexpected(row.error());
      if (!*row) break;
      const auto message_id = logs->column_int64(0);
      auto& readings = decoded.logs.emplace_back();
      if (!codec::decode_log(logs->column_blob_view(1), readings))
        return core::fail(Code::kDataLoss, "db_corrupt", "a log entry does not decode");
      for (std::size_t idx = 0; idx < readings.size(); ++idx) {
        const auto& r = readings[idx];
        auto it = all ? per_code.try_emplace(r.code).first : per_code.find(r.code);
        if (it == per_code.end()) continue;
        it->second.push_back({r.time_ms, message_id * kIdsPerMessage + static_cast<std::int64_t>(idx), &it->first,
                              &r.shape, r.values.data()});
      }
    }
    logs->reset();

    // 2. Every code the subject has chunks of, when all are asked for.
    if (all) {
      auto list = db.prepare("SELECT DISTINCT code FROM chunks WHERE subject_key=?1");
      if (!list) return tl::unexpected(list.error());
      list->bind(1, **key);
      for (;;) {
        auto row = list->step();
        if (!row) return tl::unexpected(row.error());
        if (!*row) break;
        per_code.try_emplace(list->column_text(0));
      }
      list->reset();
    }

    // 3. Per code, its chunks newest first (t1 descending, index chunks_series) until the n-th
    // newest reading found is newer than a chunk's last point: no older chunk can hold a newer one.
    auto chunks = db.prepare("SELECT t1, data FROM chunks WHERE subject_key=?1 AND code=?2 ORDER BY t1 DESC");
    if (!chunks) return tl::unexpected(chunks.error());
    MessageInfo info(db);
    for (auto& [code, found] : per_code) {
      auto keep_newest = [&, &found = found] {
        if (found.size() <= n) return;
        std::nth_element(found.begin(), found.begin() + static_cast<std::ptrdiff_t>(n - 1), found.end(), found_newer);
        found.resize(n);
      };
      auto bound = [&, &found = found]() -> std::optional<std::int64_t> {
        if (found.size() < n) return std::nullopt;
        return std::min_element(found.begin(), found.end(), found_before)->time;
      };
      keep_newest();
      std::optional<std::int64_t> oldest_kept = bound();
      chunks->reset();
      chunks->bind(1, **key).bind(2, std::string_view(code));
      for (;;) {
        auto row = chunks->step();
        if (!row) return tl::unexpected(row.error());
        if (!*row) break;
        if (oldest_kept && chunks->column_int64(0) < *oldest_kept) break;
        auto& c = decoded.chunks.emplace_back();
        if (!codec::decode_chunk(chunks->column_blob_view(1), c))
          return core::fail(Code::kDataLoss, "db_corrupt", "a stored chunk does not decode");
        const std::size_t slots = c.shape.slots();
        for (std::size_t i = 0; i < c.times.size(); ++i)
          found.push_back({c.times[i], c.ids[i], &code, &c.shape, c.values.data() + i * slots});
        keep_newest();
        oldest_kept = bound();
      }
      chunks->reset();
      std::sort(found.begin(), found.end(), found_newer);
      for (const auto& f : found) {
        auto o = to_observation(f, std::string(subject), info);
        if (!o) return tl::unexpected(o.error());
        out.push_back(std::move(*o));
      }
    }
    return out;
  });
}

Result<std::int64_t> SqliteObservations::count() {
  return store_.read([](sqlite::Database& db) {
    return scalar(db, "SELECT (SELECT value FROM stats WHERE key='compacted') + (SELECT coalesce(sum(readings), 0) FROM log)");
  });
}

Result<std::int64_t> scalar(sqlite::Database& db, std::string_view sql, std::optional<std::string_view> arg) {
  auto st = db.prepare(sql);
  if (!st) return tl::unexpected(st.error());
  if (arg) st->bind(1, *arg);
  auto row = st->step();
  if (!row) return tl::unexpected(row.error());
  return *row ? st->column_int64(0) : 0;
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

Result<std::vector<std::string>> SqliteRegistry::subjects(std::string_view after, std::size_t limit) {
  if (limit < 1 || limit > 10000) return core::fail(core::Code::kInvalidArgument, "bad_limit", "limit must be 1..10000");
  return store_.read([after, limit](sqlite::Database& db) -> Result<std::vector<std::string>> {
    auto st = db.prepare("SELECT pseudonym FROM subjects WHERE pseudonym > ?1 ORDER BY pseudonym LIMIT ?2");
    if (!st) return tl::unexpected(st.error());
    st->bind(1, after).bind(2, static_cast<std::int64_t>(limit));
    std::vector<std::string> out;
    for (;;) {
      auto row = st->step();
      if (!row) return tl::unexpected(row.error());
      if (!*row) return out;
      out.push_back(st->column_text(0));
    }
  });
}

void bind_optional_text(sqlite::Statement& st, int index, const std::string& text) {
  if (text.empty()) st.bind_null(index);
  else st.bind(index, std::string_view(text));
}

Status SqliteRegistry::add_device(const DeviceRecord& d) {
  if (d.wrapped_key.empty()) return core::fail(Code::kInvalidArgument, "bad_device", "a device needs a wrapped key");
  const auto now = core::to_unix_millis(store_.clock().now());
  auto r = store_.write([&](sqlite::Database& db) -> Result<std::int64_t> {
    if (auto s = insert_subject(db, d.subject, now); !s) return tl::unexpected(s.error());
    auto st = db.prepare(
        "INSERT INTO devices(id, subject, key_id, wrapped_key, prev_key_id, prev_wrapped_key, prev_valid_until_ms,"
        " enrolled_ms, active, revoked_ms, payload_format, manufacturer, model, serial_pseudonym)"
        " VALUES(?1, ?2, ?3, ?4, ?7, ?8, ?9, ?5, ?6, ?10, ?11, ?12, ?13, ?14)");
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
    st->bind(11, std::string_view(d.payload_format.empty() ? std::string_view("native") : d.payload_format));
    bind_optional_text(*st, 12, d.manufacturer);
    bind_optional_text(*st, 13, d.model);
    bind_optional_text(*st, 14, d.serial_pseudonym);
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
    " revoked_ms, payload_format, manufacturer, model, serial_pseudonym FROM devices ";

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
  d.payload_format = st.column_text(10);
  if (!st.column_is_null(11)) d.manufacturer = st.column_text(11);
  if (!st.column_is_null(12)) d.model = st.column_text(12);
  if (!st.column_is_null(13)) d.serial_pseudonym = st.column_text(13);
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

Status SqliteRegistry::update_device_info(const DeviceInfoUpdate& info) {
  auto r = store_.write([&info](sqlite::Database& db) -> Result<std::int64_t> {
    auto st = db.prepare(
        "UPDATE devices SET manufacturer=coalesce(?2, manufacturer), model=coalesce(?3, model),"
        " serial_pseudonym=coalesce(?4, serial_pseudonym) WHERE id=?1");
    if (!st) return tl::unexpected(st.error());
    st->bind(1, std::string_view(info.device_id));
    bind_optional_text(*st, 2, info.manufacturer);
    bind_optional_text(*st, 3, info.model);
    bind_optional_text(*st, 4, info.serial_pseudonym);
    if (auto s = st->run(); !s) return tl::unexpected(s.error());
    if (db.changes() == 0) return core::fail(Code::kNotFound, "no_device", "no enrolled device with this id");
    return 0;
  });
  if (!r) return tl::unexpected(r.error());
  return {};
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
    // (fully ON for this job: also freed pages, not only those written anyway) zeroes whatever
    // the update frees.
    if (auto s = db.exec("PRAGMA secure_delete=ON"); !s) return tl::unexpected(s.error());
    struct Fast {
      sqlite::Database& db;
      ~Fast() { (void)db.exec("PRAGMA secure_delete=FAST"); }
    } restore{db};
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

Result<std::int64_t> SqliteQuarantine::purge_before(core::TimePoint before) {
  const auto cutoff = core::to_unix_millis(before);
  return store_.write([cutoff](sqlite::Database& db) -> Result<std::int64_t> {
    auto st = db.prepare("DELETE FROM quarantine WHERE received_ms < ?1");
    if (!st) return tl::unexpected(st.error());
    st->bind(1, cutoff);
    if (auto s = st->run(); !s) return tl::unexpected(s.error());
    return static_cast<std::int64_t>(db.changes());
  });
}

// Schema 2 -> 3: every observation moves into the log (compaction then builds the chunks);
// message ids stay, observation ids become message id * 1024 + index. Runs inside the
// migration's transaction.
Status migrate_2_to_3(sqlite::Database& db) {
  auto has_observations = scalar(db, "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='observations'");
  if (!has_observations) return tl::unexpected(has_observations.error());
  if (*has_observations == 0) return db.exec(kSchema);  // nothing stored yet
  for (const char* sql : {"ALTER TABLE messages RENAME TO messages_v2", "ALTER TABLE observations RENAME TO observations_v2",
                          "DROP INDEX IF EXISTS observations_subject_time",
                          "DROP INDEX IF EXISTS observations_subject_code_time"})
    if (auto s = db.exec(sql); !s) return s;
  if (auto s = db.exec(kSchema); !s) return s;
  auto messages = db.prepare(
      "SELECT id, device_id, sequence, content_hash, received_ms FROM messages_v2 ORDER BY id");
  if (!messages) return tl::unexpected(messages.error());
  std::unordered_map<std::string, std::int64_t> keys;
  for (;;) {
    auto row = messages->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) break;
    const auto id = messages->column_int64(0);
    const auto device = messages->column_text(1);
    const auto sequence = messages->column_int64(2);
    const auto hash = stored_hash(messages->column_text(3));
    const auto received = messages->column_int64(4);
    auto obs = db.prepare(
        "SELECT subject, code, value, unit, time_ms, components FROM observations_v2 WHERE message_id=?1 ORDER BY idx");
    if (!obs) return tl::unexpected(obs.error());
    obs->bind(1, id);
    std::vector<core::Reading> readings;
    std::string subject;
    for (;;) {
      auto o = obs->step();
      if (!o) return tl::unexpected(o.error());
      if (!*o) break;
      core::Reading r;
      subject = obs->column_text(0);
      r.code = obs->column_text(1);
      if (!obs->column_is_null(2)) r.value = obs->column_double(2);
      r.unit = obs->column_text(3);
      r.time = core::from_unix_millis(obs->column_int64(4));
      if (!obs->column_is_null(5)) r.components = decode_v2_components(obs->column_text(5));
      readings.push_back(std::move(r));
    }
    std::int64_t key = 0;
    if (auto it = keys.find(subject); it != keys.end()) {
      key = it->second;
    } else {
      auto ins = db.prepare("INSERT INTO subject_keys(pseudonym) VALUES(?1)");
      if (!ins) return tl::unexpected(ins.error());
      ins->bind(1, std::string_view(subject));
      if (auto s = ins->run(); !s) return s;
      key = keys[subject] = db.last_insert_rowid();
    }
    std::vector<const core::Reading*> pointers;
    for (const auto& r : readings) pointers.push_back(&r);
    if (auto s = insert_message(db, id, device, sequence, hash, received, key, pointers); !s)
      return tl::unexpected(s.error());
  }
  messages->reset();
  for (const char* sql : {"DROP TABLE observations_v2", "DROP TABLE messages_v2"})
    if (auto s = db.exec(sql); !s) return s;
  return {};
}

// Schema 3 -> 4: the device's payload format and metadata. A devices table that already has
// them (made by schema 4's CREATE during a 2 -> 3 migration) is left alone.
Status migrate_3_to_4(sqlite::Database& db) {
  auto has = scalar(db, "SELECT count(*) FROM pragma_table_info('devices') WHERE name='payload_format'");
  if (!has) return tl::unexpected(has.error());
  if (*has > 0) return {};
  for (const char* sql : {"ALTER TABLE devices ADD COLUMN payload_format TEXT NOT NULL DEFAULT 'native'",
                          "ALTER TABLE devices ADD COLUMN manufacturer TEXT", "ALTER TABLE devices ADD COLUMN model TEXT",
                          "ALTER TABLE devices ADD COLUMN serial_pseudonym TEXT"})
    if (auto s = db.exec(sql); !s) return s;
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
    // Schema 1's messages and observations have schema 2's columns (what 2 added was in devices).
  }
  if (s && (*v == 1 || *v == 2)) s = migrate_2_to_3(db);
  if (s && *v >= 1) s = migrate_3_to_4(db);
  if (s && *v == 0) s = db.exec(kSchema);
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
  if (options.compact_batch_readings == 0)
    return core::fail(Code::kInvalidArgument, "bad_options", "compact_batch_readings must be at least 1");
  sqlite::OpenOptions writer_options;
  writer_options.full_sync = options.sync_each_commit;
  auto db = sqlite::Database::open(options.path, writer_options);
  if (!db) return tl::unexpected(db.error());
  // Overwritten or deleted content (revoked keys) is zeroed where the page is written anyway;
  // FAST does not write free pages just to zero them (the log's deleted rows would double the
  // writes), and revoke_device() overwrites key bytes in place first.
  if (auto s = db->exec("PRAGMA secure_delete=FAST"); !s) return tl::unexpected(s.error());
  if (auto s = db->exec(kWriterCacheSize); !s) return tl::unexpected(s.error());
  // The checkpointer thread checkpoints; the writer only when the WAL grows this large.
  if (auto s = db->exec("PRAGMA wal_autocheckpoint=" + std::to_string(kWriterCheckpointPages)); !s)
    return tl::unexpected(s.error());
  if (auto s = migrate(*db); !s) {
    if (s.error().reason == "db_schema") return tl::unexpected(s.error());
    return core::fail(Code::kDataLoss, "db_schema", "cannot create or migrate schema: " + s.error().message);
  }
  // `serve` asks for the inactive devices every second: a partial index keeps that a look-up
  // among revoked devices, not a scan of a million enrolled ones (added to schema 3 after the
  // first schema-3 databases were made, so created here when missing).
  if (auto s = db->exec("CREATE INDEX IF NOT EXISTS devices_inactive ON devices(id) WHERE active=0"); !s)
    return tl::unexpected(s.error());
  auto logged = scalar(*db, "SELECT coalesce(sum(readings), 0) FROM log");
  if (!logged) return tl::unexpected(logged.error());
  auto checkpointer = sqlite::Database::open(options.path, writer_options);
  if (!checkpointer) return tl::unexpected(checkpointer.error());
  return std::unique_ptr<Store>(new SqliteStore(options, clock, std::move(*db), std::move(*checkpointer), *logged));
}

}  // namespace telehub::storage
