// telehub::storage: the measurement store. One SQLite database file (WAL mode) holds subjects
// (pseudonyms only), devices, received messages, observations and quarantined messages.
//
// Ownership: open_sqlite_store() returns the Store; the three interfaces it hands out
// (observations(), registry(), quarantine()) live as long as the Store.
//
// Writes are group-committed on one connection without a writer thread: append() queues the
// message, and the caller at the front of the queue commits it together with those queued
// behind it in one transaction (so an uncontended write costs no thread switch); append()
// returns only after the transaction holding its message has committed. So a caller that acknowledges after append() returns never acknowledges an
// uncommitted reading. Durability (StoreOptions::sync_each_commit): by default every commit is
// on disk when it returns (synchronous=FULL); with sync_each_commit off a commit survives a
// crash of the process at once and a power loss after the next sync() (the hub acknowledges to
// the broker after the commit and sends receipts after sync(): docs/ingest.md). Reads use their own connections
// and may run concurrently with writes.
//
// Thread-safety: every method of every interface may be called from any thread.
//
// Error policy: methods return Result and never throw. SQLite busy/locked map to
// unavailable/db_busy (retryable); other SQLite failures map to internal/db_error;
// closing the store while appends wait fails them with unavailable/closed.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "telehub/core/bytes.h"
#include "telehub/core/error.h"
#include "telehub/core/reading.h"
#include "telehub/core/time.h"
#include "telehub/privacy/pseudonym.h"

namespace telehub::storage {

// ---------------------------------------------------------------- observations

// All readings carried by one sealed message: the unit of de-duplication.
struct MessageBatch {
  std::string device_id;
  std::uint64_t sequence = 0;        // envelope sequence; UNIQUE (device_id, sequence)
  std::string content_hash;          // hex SHA-256 of the sealed envelope bytes
  core::TimePoint received_at{};
  std::vector<privacy::PseudonymousReading> readings;  // REQUIRES: non-empty, all same subject
  // Replay window: a (device, sequence) not yet stored whose sequence is more than this below
  // the device's highest stored sequence is refused (kOutsideWindow). 0: no window.
  std::uint64_t sequence_window = 0;
};

enum class AppendOutcome {
  kStored,     // new (device, sequence): the readings are now committed
  kDuplicate,  // (device, sequence) was already stored with the same content hash: nothing written
  kConflict,   // (device, sequence) already stored with a different content hash: nothing written
  kOutsideWindow,  // new (device, sequence), but far below the device's highest stored sequence
                   // (MessageBatch::sequence_window): nothing written
};

struct StoredObservation {
  std::int64_t id = 0;           // stable, positive; the FHIR Observation id is its decimal text
  core::Reading reading;         // subject is the pseudonym; device and sequence filled in
  core::TimePoint received_at{};
};

// Keyset cursor for paging: the (time, id) of the last row of the previous page.
struct Cursor {
  std::int64_t time_ms = 0;
  std::int64_t id = 0;
  bool operator==(const Cursor&) const = default;
};

struct ObservationQuery {
  std::string subject;                 // REQUIRES: a subject pseudonym
  std::optional<std::string> code;     // LOINC code; matches the reading code (panels by panel code)
  std::optional<core::TimePoint> from; // inclusive lower bound on effective time
  std::optional<core::TimePoint> to;   // exclusive upper bound on effective time
  std::optional<Cursor> after;         // continue after this row (in the order below)
  std::size_t limit = 50;              // REQUIRES: 1..1000
  // Newest first: (effective time, id) descending, and `after` continues below the cursor
  // (FHIR _sort=-date). Default: oldest first.
  bool descending = false;
};

struct ObservationPage {
  std::vector<StoredObservation> items;  // ordered by (effective time, id), ascending or descending as asked
  std::optional<Cursor> next;            // set when more rows match
};

// Dense views (docs/dense.md): a series summarised per UTC hour or day, for clients that
// cannot page through a year of minute readings.
enum class BucketSize {
  kHour,  // [hh:00:00.000, hh+1:00:00.000) UTC
  kDay,   // [00:00:00.000, 24:00:00.000) UTC
};

// Milliseconds in one bucket of this size.
constexpr std::int64_t bucket_millis(BucketSize size) { return size == BucketSize::kHour ? 3'600'000 : 86'400'000; }

struct AggregateQuery {
  std::string subject;                  // REQUIRES: a subject pseudonym
  std::string code;                     // REQUIRES: non-empty; the reading code (a panel by its panel code)
  BucketSize bucket = BucketSize::kHour;  // Default: kHour
  std::optional<core::TimePoint> from;  // inclusive lower bound on effective time. Default: none
  std::optional<core::TimePoint> to;    // exclusive upper bound on effective time. Default: none
};

// Statistics of one numeric slot of the readings in a bucket: the reading's value (code = the
// series code), or one panel component (code = the component code). Slots are told apart by
// (code, unit): readings of one code in two units give two slots, never a mixed mean.
// Non-finite values (NaN, infinities) are not counted.
struct SlotStats {
  std::string code;
  std::string unit;          // UCUM as stored
  std::int64_t count = 0;    // finite values; >= 1
  double min = 0;
  double max = 0;
  double sum = 0;
  double mean = 0;           // sum / count
};

struct AggregateBucket {
  core::TimePoint start{};           // bucket start (inclusive), aligned to the bucket size in UTC
  core::TimePoint end{};             // start + bucket size (exclusive)
  std::int64_t count = 0;            // readings in the bucket (within the query's [from, to)); >= 1
  core::TimePoint first{};           // effective time of its earliest reading
  core::TimePoint last{};            // effective time of its latest reading
  // The value slot first (when the readings carry values), then panel components in order of
  // first appearance; a slot appears when at least one of its values is finite.
  std::vector<SlotStats> slots;
};

class ObservationStore {
 public:
  virtual ~ObservationStore() = default;

  // Appends all readings of one message in one transaction, idempotently by
  // (device_id, sequence); the duplicate check comes before the window check, so a message
  // already stored is always kDuplicate or kConflict. Returns after the commit. Fails with invalid_argument/bad_batch on
  // an empty batch, unavailable/db_busy or internal/db_error when the commit failed (then
  // nothing of the batch is stored), unavailable/closed when the store is shutting down.
  [[nodiscard]] virtual Result<AppendOutcome> append(MessageBatch batch) = 0;

  // One page of a subject's observations. An unknown subject yields an empty page.
  [[nodiscard]] virtual Result<ObservationPage> search(const ObservationQuery& query) = 0;

  // One observation by id; std::nullopt when there is none.
  [[nodiscard]] virtual Result<std::optional<StoredObservation>> get(std::int64_t id) = 0;

  // Number of stored observations (all subjects).
  [[nodiscard]] virtual Result<std::int64_t> count() = 0;

  // Per-bucket statistics of one series (subject, code) over [from, to): buckets of one UTC
  // hour or day, ascending by start, empty buckets omitted. Reads the subject's log rows and
  // the series' chunks overlapping the range once, in one read transaction (one snapshot), and
  // decodes them sequentially: no statement per reading or per bucket. An unknown subject or
  // code yields no buckets. Fails with invalid_argument/bad_query when code is empty or
  // from >= to, data_loss/db_corrupt when a stored chunk or log entry does not decode,
  // unavailable/db_busy or internal/db_error when SQLite fails.
  [[nodiscard]] virtual Result<std::vector<AggregateBucket>> aggregate(const AggregateQuery& query) = 0;

  // The latest n readings (by effective time, then id) of each requested code of a subject
  // (FHIR Observation/$lastn): grouped by code in ascending code order, newest first within a
  // code; a code with fewer readings yields what there is, an unknown code or subject nothing.
  // Device, sequence and receipt time filled in as by search(). Fails with
  // invalid_argument/bad_query when n is not 1..1000, otherwise like aggregate().
  // `codes`: reading codes (panels by panel code); empty: every code the subject has.
  [[nodiscard]] virtual Result<std::vector<StoredObservation>> latest(std::string_view subject,
                                                                     const std::vector<std::string>& codes,
                                                                     std::size_t n) = 0;
};

// ---------------------------------------------------------------- subjects and devices

// A device key as the registry keeps it: wrapped under the hub's key-encryption key by the
// caller (privacy::Kek::wrap with privacy::device_key_ad(device id, key id)). Storage never
// sees a KEK or an unwrapped device key; to it the blob is opaque bytes.
struct PreviousKey {
  std::uint32_t key_id = 0;
  core::Bytes wrapped_key;            // opaque wrapped key blob
  core::TimePoint valid_until{};      // messages received before this instant may use it
};

struct DeviceRecord {
  std::string id;                     // device id (envelope header, MQTT topic)
  std::string subject;                // subject pseudonym it is bound to
  std::uint32_t key_id = 1;           // the current key id
  core::Bytes wrapped_key;            // the current key, wrapped (see above); empty once revoked
  std::optional<PreviousKey> previous;  // the key replaced by the last rotation, during its grace period
  core::TimePoint enrolled_at{};
  bool active = true;
  std::optional<core::TimePoint> revoked_at;  // set by revoke_device(); then active is false
  // How the device's plaintext payload is read (docs/payloads.md): "native" (payload v1),
  // "senml", or "template:<name>". Default (empty on add_device): "native".
  std::string payload_format;
  // Device metadata as the device last reported it (empty: not reported). The serial number
  // only as a keyed pseudonym (privacy::Pseudonymiser), never in clear.
  std::string manufacturer;
  std::string model;
  std::string serial_pseudonym;
};

// Device metadata reported in a payload (update_device_info).
struct DeviceInfoUpdate {
  std::string device_id;
  std::string manufacturer;      // empty: unchanged
  std::string model;             // empty: unchanged
  std::string serial_pseudonym;  // empty: unchanged
};

// A key rotation: the current key becomes the previous one (valid until `previous_valid_until`),
// the new key becomes current.
struct KeyRotation {
  std::string device_id;
  std::uint32_t from_key_id = 0;      // the key id the caller saw as current (compare-and-swap)
  std::uint32_t new_key_id = 0;       // REQUIRES: != from_key_id
  core::Bytes new_wrapped_key;        // REQUIRES: non-empty
  core::TimePoint previous_valid_until{};
};

class Registry {
 public:
  virtual ~Registry() = default;

  // Records a subject pseudonym (idempotent).
  [[nodiscard]] virtual Status add_subject(const privacy::SubjectPseudonym& subject) = 0;
  [[nodiscard]] virtual Result<bool> subject_exists(std::string_view pseudonym) = 0;
  // Keyset page of the recorded subject pseudonyms, sorted: at most `limit` pseudonyms greater
  // than `after` ("" = from the start); fewer than `limit` means the last page. For exports of
  // all subjects (docs/bulk-export.md). REQUIRES: limit 1..10000 (else invalid_argument/bad_limit).
  [[nodiscard]] virtual Result<std::vector<std::string>> subjects(std::string_view after, std::size_t limit) = 0;

  // Adds a device (its subject is added too). Fails with already_exists/device_exists,
  // invalid_argument/bad_device when wrapped_key is empty.
  [[nodiscard]] virtual Status add_device(const DeviceRecord& device) = 0;
  // The device, or std::nullopt when unknown.
  [[nodiscard]] virtual Result<std::optional<DeviceRecord>> find_device(std::string_view device_id) = 0;
  // Devices bound to a subject, by id.
  [[nodiscard]] virtual Result<std::vector<DeviceRecord>> devices_of(std::string_view pseudonym) = 0;
  // Records the metadata a device reported (the non-empty fields replace the stored ones).
  // Fails with not_found/no_device for an unknown device.
  [[nodiscard]] virtual Status update_device_info(const DeviceInfoUpdate& info) = 0;

  // Rotates a device's key in one transaction; any earlier previous key is dropped.
  // Fails with not_found/no_device, failed_precondition/device_revoked when the device is
  // inactive, aborted/key_changed when its current key id is no longer from_key_id (a
  // concurrent rotation), invalid_argument/bad_rotation when the REQUIRES are not met.
  [[nodiscard]] virtual Status rotate_key(const KeyRotation& rotation) = 0;

  // Revokes a device at once: marks it inactive, records `revoked_at` and overwrites its
  // wrapped keys (current and previous) with nothing; the database runs with
  // secure_delete, so the old bytes are zeroed in the file. Idempotent for an already
  // revoked device (the first revoked_at is kept). Fails with not_found/no_device.
  [[nodiscard]] virtual Status revoke_device(std::string_view device_id, core::TimePoint revoked_at) = 0;
  // Ids of inactive devices (revoked, or marked inactive), sorted: the identities the broker
  // must refuse.
  [[nodiscard]] virtual Result<std::vector<std::string>> inactive_device_ids() = 0;
};

// ---------------------------------------------------------------- quarantine

struct QuarantineEntry {
  std::int64_t id = 0;              // assigned by put()
  core::TimePoint received_at{};
  std::string topic;
  std::string device_id;            // as claimed by topic/header; may be empty or unknown
  std::string reason;               // stable token, e.g. "bad_seal", "unknown_device"
  std::string detail;               // safe message (no payload bytes, no identifiers)
  core::Bytes payload;              // the message bytes as received (sealed; never plaintext)
};

class Quarantine {
 public:
  virtual ~Quarantine() = default;
  // Stores the entry durably; returns its id.
  [[nodiscard]] virtual Result<std::int64_t> put(const QuarantineEntry& entry) = 0;
  // Count of entries, all or with one reason.
  [[nodiscard]] virtual Result<std::int64_t> count(std::optional<std::string_view> reason = std::nullopt) = 0;
  // Newest first.
  [[nodiscard]] virtual Result<std::vector<QuarantineEntry>> list(std::size_t limit) = 0;
  // One entry; std::nullopt when there is none with this id.
  [[nodiscard]] virtual Result<std::optional<QuarantineEntry>> get(std::int64_t id) = 0;
  // Deletes an entry (after a successful replay). Fails with not_found/no_entry.
  [[nodiscard]] virtual Status remove(std::int64_t id) = 0;
  // Retention (docs/privacy.md): deletes every entry received before `before`. Returns how many.
  [[nodiscard]] virtual Result<std::int64_t> purge_before(core::TimePoint before) = 0;
};

// ---------------------------------------------------------------- the store

struct StoreOptions {
  // The database file. REQUIRES: its directory exists. Default: none.
  std::filesystem::path path;
  // Most messages committed in one writer transaction. Default: 512.
  std::size_t max_batch_messages = 512;
  // true: each commit is fsynced before it returns (SQLite synchronous=FULL). false: commits
  // use synchronous=NORMAL (in the OS page cache; safe against a crash of the process) and
  // Store::sync() makes them durable against power loss. Default: true.
  bool sync_each_commit = true;
  // Appended readings go to a log first; a background thread compacts the log into per-series
  // chunks (docs/storage.md): one step each time this many readings were appended (and every
  // 10 s while the log is not empty). 0: only compact() compacts. Default: 8192.
  std::size_t compact_after_readings = 8192;
  // Readings of the log one step looks at (it holds the writer for about 1 us a reading).
  // REQUIRES: >= 1. Default: 16384.
  std::size_t compact_batch_readings = 16384;
  // A step moves a subject's log rows into chunks when the subject has at least this many
  // readings in the log, or its oldest row is older than compact_max_age; otherwise they wait
  // for more, so that a series arriving a reading at a time is compacted in runs, not rewritten
  // for every reading. Default: 60 (an hour of minute readings), 1 hour.
  std::size_t compact_min_readings = 60;
  std::chrono::seconds compact_max_age{3600};
};

class Store {
 public:
  virtual ~Store() = default;
  virtual ObservationStore& observations() = 0;
  virtual Registry& registry() = 0;
  virtual Quarantine& quarantine() = 0;
  // Makes every commit that returned before this call durable against power loss (fdatasync
  // of the WAL file; a no-op with sync_each_commit). Safe from any thread, beside the writer.
  // Fails with unavailable/db_sync (then retry later: nothing committed is lost, only not yet
  // known to be on disk).
  [[nodiscard]] virtual Status sync() = 0;
  // Compacts the whole log now, whatever compact_min_readings and compact_max_age say, in
  // transactions of about compact_batch_readings readings, beside appends; returns the readings
  // moved. Reads return the same before, during and after.
  // Fails like an append (then what was moved stays moved, the rest stays in the log).
  [[nodiscard]] virtual Result<std::int64_t> compact() = 0;
  // Retention (docs/privacy.md): compacts the log, then deletes every chunk whose last reading
  // is before `before`, so readings go once the newest reading of their chunk (a chunk spans at
  // most a day) is older than the cut-off. Message records (de-duplication) stay. Returns the
  // readings deleted. Fails like compact().
  [[nodiscard]] virtual Result<std::int64_t> purge_readings_before(core::TimePoint before) = 0;
  // Stops background compaction, then waits until every write already queued has committed. Further appends fail with
  // unavailable/closed. Idempotent; the destructor calls it.
  virtual void close() = 0;
};

// Opens (creating and migrating as needed) the SQLite store. Fails with unavailable/db_open
// when the file cannot be opened, data_loss/db_schema when it holds a newer or foreign schema,
// or a schema-1 database with enrolled devices (their keys are stored unwrapped; schema 2
// keeps only wrapped keys, so such a database is refused: re-enrol the devices into a new
// data directory). A schema-1 database without devices is migrated.
[[nodiscard]] Result<std::unique_ptr<Store>> open_sqlite_store(const StoreOptions& options, const core::Clock& clock);

}  // namespace telehub::storage
