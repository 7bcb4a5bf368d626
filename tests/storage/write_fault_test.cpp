// The SQLite store when the disk is full, fails, or another connection holds the write lock:
// appends fail with an error (so ingest does not acknowledge), nothing of a failed append is
// kept, and the same store works again once the fault clears. Faults come from SQLite itself,
// through testing::FaultVfs (full disk, I/O error) or a real second connection (busy).
#include <catch2/catch.hpp>

#include <sqlite3.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "fault_vfs.h"
#include "telehub/storage/store.h"
#include "test_support.h"

using namespace telehub;
using storage::AppendOutcome;
using Fault = testing::FaultVfs::Fault;

namespace {

storage::MessageBatch batch(const privacy::SubjectPseudonym& s, std::uint64_t seq, int readings) {
  storage::MessageBatch b;
  b.device_id = "dev-fault";
  b.sequence = seq;
  b.content_hash = "hash-" + std::to_string(seq);
  b.received_at = core::from_unix_millis(1'800'000'000'000);
  for (int i = 0; i < readings; ++i) {
    core::Reading r;
    r.code = "8867-4";
    r.value = 60 + i;
    r.unit = "/min";
    r.time = core::from_unix_millis(1'800'000'000'000 + static_cast<std::int64_t>(seq) * 60'000 + i);
    r.device = b.device_id;
    r.sequence = seq;
    b.readings.push_back(privacy::PseudonymousReading::bind(r, s));
  }
  return b;
}

// Runs one statement on a separate raw connection (not through the store) and returns the
// first column of the first row.
std::string query(const std::filesystem::path& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
  std::string out;
  if (sqlite3_step(st) == SQLITE_ROW) out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

}  // namespace

TEST_CASE("full or failing disk: appends fail, keep nothing, and succeed once the fault clears",
          "[storage][fault]") {
  const Fault fault = GENERATE(Fault::kDiskFull, Fault::kIoError);
  CAPTURE(fault == Fault::kDiskFull ? "disk full" : "I/O error");
  auto& vfs = testing::FaultVfs::install();
  testing::TempDir dir;
  vfs.watch(dir.path());
  const auto db_path = dir.path() / "telehub.db";
  auto opened = storage::open_sqlite_store({db_path}, core::system_clock());
  REQUIRE(opened);
  auto store = std::move(*opened);
  auto pseudonymiser = std::move(*privacy::Pseudonymiser::from_key(core::Bytes(32, 9)));
  const auto subject = pseudonymiser->subject("patient-fault");
  REQUIRE(store->observations().append(batch(subject, 1, 3)) == AppendOutcome::kStored);

  const auto failed_before = vfs.failed_operations();
  {
    testing::ScopedFault on(vfs, fault);
    // Several writers at once, so the writer thread groups some of them into one transaction.
    constexpr int kWriters = 8;
    std::vector<Result<AppendOutcome>> results(kWriters, AppendOutcome::kStored);
    std::vector<std::thread> threads;
    for (int i = 0; i < kWriters; ++i)
      threads.emplace_back([&, i] { results[i] = store->observations().append(batch(subject, 2 + i, 2)); });
    for (auto& t : threads) t.join();
    for (const auto& r : results) {
      REQUIRE_FALSE(r);
      // The mapping ingest sees for SQLITE_FULL and SQLITE_IOERR_*: any failed append is `retry`.
      CHECK(r.error().code == core::Code::kInternal);
      CHECK(r.error().reason == "db_error");
      CHECK(r.error().message.find(fault == Fault::kDiskFull ? "database or disk is full" : "disk I/O error") !=
            std::string::npos);
    }
    storage::QuarantineEntry q;
    q.topic = "telehub/v1/devices/dev-fault/readings";
    q.reason = "bad_seal";
    q.payload = core::Bytes(8, 1);
    CHECK_FALSE(store->quarantine().put(q));
    // Reads still work, and see nothing of the failed appends.
    CHECK(*store->observations().count() == 3);
    CHECK(*store->quarantine().count() == 0);
  }
  CHECK(vfs.failed_operations() > failed_before);

  // The same store, without reopening: the appends that failed are new to it, not duplicates.
  for (std::uint64_t seq = 2; seq < 10; ++seq)
    CHECK(store->observations().append(batch(subject, seq, 2)) == AppendOutcome::kStored);
  CHECK(store->observations().append(batch(subject, 2, 2)) == AppendOutcome::kDuplicate);
  CHECK(*store->observations().count() == 3 + 8 * 2);
  store->close();
  store.reset();
  CHECK(query(db_path, "SELECT coalesce(sum(readings), 0) FROM messages") == "19");
  CHECK(query(db_path, "SELECT count(*) FROM messages") == "9");
  CHECK(query(db_path, "PRAGMA integrity_check") == "ok");
}

TEST_CASE("write lock held elsewhere: appends fail with unavailable/db_busy, then succeed", "[storage][fault]") {
  testing::TempDir dir;
  const auto db_path = dir.path() / "telehub.db";
  auto opened = storage::open_sqlite_store({db_path}, core::system_clock());
  REQUIRE(opened);
  auto store = std::move(*opened);
  auto pseudonymiser = std::move(*privacy::Pseudonymiser::from_key(core::Bytes(32, 9)));
  const auto subject = pseudonymiser->subject("patient-busy");

  // Another writer (say `telehub device enroll` on the same data directory) holds the lock
  // longer than the store's busy timeout (5 s).
  sqlite3* other = nullptr;
  REQUIRE(sqlite3_open_v2(db_path.c_str(), &other, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
  auto r = store->observations().append(batch(subject, 1, 2));
  REQUIRE_FALSE(r);
  CHECK(r.error().code == core::Code::kUnavailable);
  CHECK(r.error().reason == "db_busy");
  REQUIRE(sqlite3_exec(other, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(other);

  CHECK(store->observations().append(batch(subject, 1, 2)) == AppendOutcome::kStored);
  CHECK(*store->observations().count() == 2);
}
