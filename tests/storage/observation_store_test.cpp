// Conformance tests for storage::Store, run against the SQLite backend (the only one so far).
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <fstream>
#include <iterator>
#include <set>
#include <thread>

#include <sqlite3.h>

#include "telehub/storage/store.h"
#include "test_support.h"

using namespace telehub;
using storage::AppendOutcome;

namespace {

struct Fixture {
  testing::TempDir dir;
  std::unique_ptr<storage::Store> store;
  std::unique_ptr<privacy::Pseudonymiser> pseudonymiser;

  Fixture() {
    reopen();
    pseudonymiser = std::move(*privacy::Pseudonymiser::from_key(core::Bytes(32, 9)));
  }
  void reopen() {
    store.reset();
    auto s = storage::open_sqlite_store({dir.path() / "telehub.db"}, core::system_clock());
    REQUIRE(s);
    store = std::move(*s);
  }
  privacy::SubjectPseudonym subject(const std::string& id) const { return pseudonymiser->subject(id); }
};

core::Reading reading(const std::string& code, double value, const std::string& unit, std::int64_t t_ms) {
  core::Reading r;
  r.code = code;
  r.value = value;
  r.unit = unit;
  r.time = core::from_unix_millis(t_ms);
  return r;
}

storage::MessageBatch batch(const privacy::SubjectPseudonym& s, const std::string& device, std::uint64_t seq,
                            std::vector<core::Reading> readings, std::string hash = "") {
  storage::MessageBatch b;
  b.device_id = device;
  b.sequence = seq;
  b.content_hash = hash.empty() ? "hash-" + std::to_string(seq) : hash;
  b.received_at = core::from_unix_millis(1'800'000'000'000);
  for (auto& r : readings) {
    r.device = device;
    r.sequence = seq;
    b.readings.push_back(privacy::PseudonymousReading::bind(r, s));
  }
  return b;
}

}  // namespace

TEST_CASE("append is idempotent by (device, sequence)", "[storage]") {
  Fixture f;
  auto s = f.subject("p1");
  auto b = batch(s, "dev-1", 1, {reading("8867-4", 72, "/min", 1000), reading("9279-1", 16, "/min", 1000)});
  REQUIRE(f.store->observations().append(b) == AppendOutcome::kStored);
  REQUIRE(f.store->observations().append(b) == AppendOutcome::kDuplicate);
  auto other = batch(s, "dev-1", 1, {reading("8867-4", 99, "/min", 1000)}, "different-hash");
  REQUIRE(f.store->observations().append(other) == AppendOutcome::kConflict);
  CHECK(*f.store->observations().count() == 2);
  // Same sequence from another device is a different message.
  REQUIRE(f.store->observations().append(batch(s, "dev-2", 1, {reading("8867-4", 70, "/min", 2000)})) ==
          AppendOutcome::kStored);
  CHECK(*f.store->observations().count() == 3);
}

TEST_CASE("a new sequence far below the device's highest is refused and the window survives a reopen", "[storage]") {
  Fixture f;
  auto s = f.subject("p1");
  auto windowed = [&](std::uint64_t seq, std::string hash = "") {
    auto b = batch(s, "dev-1", seq, {reading("8867-4", 70, "/min", 1000)}, std::move(hash));
    b.sequence_window = 100;
    return f.store->observations().append(std::move(b));
  };
  REQUIRE(windowed(1000) == AppendOutcome::kStored);
  CHECK(windowed(900) == AppendOutcome::kStored);         // 100 below: inside
  CHECK(windowed(899) == AppendOutcome::kOutsideWindow);  // 101 below: outside
  CHECK(windowed(1) == AppendOutcome::kOutsideWindow);
  CHECK(windowed(5000) == AppendOutcome::kStored);        // far ahead is fine
  // Already stored: duplicate or conflict, never "outside", however old.
  CHECK(windowed(900) == AppendOutcome::kDuplicate);
  CHECK(windowed(900, "other") == AppendOutcome::kConflict);
  // Another device has its own window; no window means no check.
  auto other = batch(s, "dev-2", 1, {reading("8867-4", 70, "/min", 1000)});
  other.sequence_window = 100;
  CHECK(f.store->observations().append(other) == AppendOutcome::kStored);
  CHECK(f.store->observations().append(batch(s, "dev-1", 2, {reading("8867-4", 70, "/min", 1000)})) ==
        AppendOutcome::kStored);
  f.reopen();
  CHECK(windowed(4899) == AppendOutcome::kOutsideWindow);
  CHECK(windowed(4950) == AppendOutcome::kStored);
  CHECK(*f.store->observations().count() == 6);
}

TEST_CASE("empty or malformed batches are refused without writing", "[storage]") {
  Fixture f;
  auto s = f.subject("p1");
  auto empty = batch(s, "dev-1", 1, {});
  auto r = f.store->observations().append(empty);
  REQUIRE_FALSE(r);
  CHECK(r.error().reason == "bad_batch");
  auto bad_unit = batch(s, "dev-1", 2, {reading("8867-4", 72, "/m|in", 1000)});
  CHECK_FALSE(f.store->observations().append(bad_unit));
  CHECK(*f.store->observations().count() == 0);
}

TEST_CASE("search filters by subject, code and time range and pages with a cursor", "[storage]") {
  Fixture f;
  auto s1 = f.subject("p1"), s2 = f.subject("p2");
  for (std::uint64_t i = 1; i <= 25; ++i)
    REQUIRE(f.store->observations().append(batch(s1, "dev-1", i,
                                                 {reading("8867-4", 60.0 + i, "/min", i * 60'000),
                                                  reading("59408-5", 97, "%", i * 60'000)})));
  REQUIRE(f.store->observations().append(batch(s2, "dev-2", 1, {reading("8867-4", 80, "/min", 60'000)})));

  storage::ObservationQuery q;
  q.subject = s1.str();
  q.code = "8867-4";
  q.limit = 10;
  std::vector<double> values;
  std::set<std::int64_t> ids;
  int pages = 0;
  for (;;) {
    auto page = f.store->observations().search(q);
    REQUIRE(page);
    ++pages;
    for (auto& o : page->items) {
      CHECK(o.reading.subject == s1.str());
      CHECK(o.reading.code == "8867-4");
      CHECK(o.reading.device == "dev-1");
      values.push_back(*o.reading.value);
      ids.insert(o.id);
    }
    if (!page->next) break;
    q.after = page->next;
  }
  CHECK(pages == 3);
  REQUIRE(values.size() == 25);
  CHECK(ids.size() == 25);
  for (std::size_t i = 0; i < values.size(); ++i) CHECK(values[i] == 61.0 + i);

  storage::ObservationQuery range;
  range.subject = s1.str();
  range.from = core::from_unix_millis(5 * 60'000);
  range.to = core::from_unix_millis(8 * 60'000);
  auto page = f.store->observations().search(range);
  REQUIRE(page);
  CHECK(page->items.size() == 6);  // minutes 5, 6, 7; two codes each
  CHECK_FALSE(page->next);

  storage::ObservationQuery nobody;
  nobody.subject = f.subject("nobody").str();
  CHECK(f.store->observations().search(nobody)->items.empty());
}

TEST_CASE("panels keep their components and get() reads one observation back", "[storage]") {
  Fixture f;
  auto s = f.subject("p1");
  core::Reading bp;
  bp.code = "85354-9";
  bp.time = core::from_unix_millis(5000);
  bp.components = {{"8480-6", 128, "mm[Hg]"}, {"8462-4", 82.5, "mm[Hg]"}};
  REQUIRE(f.store->observations().append(batch(s, "dev-1", 7, {bp})));
  storage::ObservationQuery q;
  q.subject = s.str();
  auto page = f.store->observations().search(q);
  REQUIRE(page);
  REQUIRE(page->items.size() == 1);
  auto got = f.store->observations().get(page->items[0].id);
  REQUIRE(got);
  REQUIRE(got->has_value());
  const auto& r = (*got)->reading;
  CHECK_FALSE(r.value);
  CHECK(r.sequence == 7);
  CHECK(r.components == bp.components);
  CHECK_FALSE(f.store->observations().get(999999)->has_value());
}

TEST_CASE("concurrent appends are all committed exactly once and survive reopening", "[storage]") {
  Fixture f;
  auto s = f.subject("p1");
  constexpr int kThreads = 4, kPer = 200;
  std::vector<std::thread> threads;
  std::atomic<int> stored{0}, dup{0};
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPer; ++i) {
        // Threads overlap on sequences: every message is offered twice.
        auto seq = static_cast<std::uint64_t>((t / 2) * kPer + i + 1);
        auto r = f.store->observations().append(batch(s, "dev-1", seq, {reading("8867-4", 70, "/min", seq * 1000)}));
        if (r && *r == AppendOutcome::kStored) ++stored;
        if (r && *r == AppendOutcome::kDuplicate) ++dup;
      }
    });
  for (auto& t : threads) t.join();
  CHECK(stored == 2 * kPer);
  CHECK(dup == 2 * kPer);
  f.reopen();
  CHECK(*f.store->observations().count() == 2 * kPer);
}

TEST_CASE("registry keeps subjects and devices", "[storage]") {
  Fixture f;
  auto s = f.subject("p1");
  CHECK_FALSE(*f.store->registry().subject_exists(s.str()));
  storage::DeviceRecord d;
  d.id = "dev-1";
  d.subject = s.str();
  d.wrapped_key = core::Bytes(61, 0xab);  // opaque to storage
  d.key_id = 3;
  REQUIRE(f.store->registry().add_device(d));
  CHECK(*f.store->registry().subject_exists(s.str()));
  auto again = f.store->registry().add_device(d);
  REQUIRE_FALSE(again);
  CHECK(again.error().reason == "device_exists");
  auto found = f.store->registry().find_device("dev-1");
  REQUIRE(found);
  REQUIRE(found->has_value());
  CHECK((*found)->wrapped_key == d.wrapped_key);
  CHECK_FALSE((*found)->previous);
  CHECK_FALSE((*found)->revoked_at);
  CHECK((*found)->active);
  CHECK((*found)->key_id == 3);
  CHECK((*found)->subject == s.str());
  CHECK_FALSE(f.store->registry().find_device("dev-2")->has_value());
  CHECK(f.store->registry().devices_of(s.str())->size() == 1);
}

TEST_CASE("registry lists subjects sorted, in keyset pages", "[storage]") {
  Fixture f;
  CHECK(f.store->registry().subjects("", 10)->empty());
  std::vector<std::string> all;
  for (const char* id : {"a", "b", "c", "d", "e"}) {
    auto s = f.subject(id);
    REQUIRE(f.store->registry().add_subject(s));
    all.push_back(s.str());
  }
  std::sort(all.begin(), all.end());
  std::vector<std::string> paged;
  std::string after;
  for (;;) {
    auto page = f.store->registry().subjects(after, 2);
    REQUIRE(page);
    paged.insert(paged.end(), page->begin(), page->end());
    if (page->size() < 2) break;
    after = page->back();
  }
  CHECK(paged == all);
  auto bad = f.store->registry().subjects("", 0);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().reason == "bad_limit");
}

TEST_CASE("quarantine stores entries with reasons and counts them", "[storage]") {
  Fixture f;
  storage::QuarantineEntry e;
  e.topic = "telehub/v1/devices/x/readings";
  e.reason = "bad_seal";
  e.payload = {1, 2, 3};
  REQUIRE(f.store->quarantine().put(e));
  e.reason = "unknown_device";
  REQUIRE(f.store->quarantine().put(e));
  REQUIRE(f.store->quarantine().put(e));
  CHECK(*f.store->quarantine().count() == 3);
  CHECK(*f.store->quarantine().count("bad_seal") == 1);
  CHECK(*f.store->quarantine().count("unknown_device") == 2);
  auto list = f.store->quarantine().list(10);
  REQUIRE(list);
  REQUIRE(list->size() == 3);
  CHECK(list->front().reason == "unknown_device");
  CHECK(list->back().payload == core::Bytes{1, 2, 3});
}

TEST_CASE("closed store refuses appends instead of losing them", "[storage]") {
  Fixture f;
  f.store->close();
  auto r = f.store->observations().append(batch(f.subject("p"), "dev-1", 1, {reading("8867-4", 1, "/min", 1)}));
  REQUIRE_FALSE(r);
  CHECK(r.error().reason == "closed");
}

TEST_CASE("quarantine entries can be read by id and removed", "[storage]") {
  Fixture f;
  storage::QuarantineEntry e;
  e.topic = "t";
  e.reason = "unknown_device";
  e.payload = {9, 8, 7};
  auto id = f.store->quarantine().put(e);
  REQUIRE(id);
  auto got = f.store->quarantine().get(*id);
  REQUIRE(got);
  REQUIRE(got->has_value());
  CHECK((*got)->payload == e.payload);
  CHECK((*got)->reason == "unknown_device");
  CHECK_FALSE(f.store->quarantine().get(*id + 1)->has_value());
  REQUIRE(f.store->quarantine().remove(*id));
  CHECK(*f.store->quarantine().count() == 0);
  auto again = f.store->quarantine().remove(*id);
  REQUIRE_FALSE(again);
  CHECK(again.error().reason == "no_entry");
}

namespace {

core::Bytes file_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return core::Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bool contains(const core::Bytes& hay, const core::Bytes& needle) {
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end()) != hay.end();
}

}  // namespace

TEST_CASE("registry rotates a device key keeping the previous one, and revokes a device", "[storage][keys]") {
  Fixture f;
  storage::DeviceRecord d;
  d.id = "dev-r";
  d.subject = f.subject("p1").str();
  d.key_id = 1;
  d.wrapped_key = core::Bytes(61, 0x11);
  REQUIRE(f.store->registry().add_device(d));
  const auto until = core::from_unix_millis(1'800'000'000'000);
  REQUIRE(f.store->registry().rotate_key({"dev-r", 1, 2, core::Bytes(61, 0x22), until}));
  auto found = f.store->registry().find_device("dev-r");
  REQUIRE(found);
  REQUIRE(found->has_value());
  CHECK((*found)->key_id == 2);
  CHECK((*found)->wrapped_key == core::Bytes(61, 0x22));
  REQUIRE((*found)->previous);
  CHECK((*found)->previous->key_id == 1);
  CHECK((*found)->previous->wrapped_key == core::Bytes(61, 0x11));
  CHECK((*found)->previous->valid_until == until);

  auto stale = f.store->registry().rotate_key({"dev-r", 1, 2, core::Bytes(61, 0x33), until});
  REQUIRE_FALSE(stale);
  CHECK(stale.error().reason == "key_changed");
  auto unknown = f.store->registry().rotate_key({"dev-x", 1, 2, core::Bytes(61, 0x33), until});
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().reason == "no_device");
  auto bad = f.store->registry().rotate_key({"dev-r", 2, 2, core::Bytes(61, 0x33), until});
  REQUIRE_FALSE(bad);
  CHECK(bad.error().reason == "bad_rotation");

  const auto at = core::from_unix_millis(1'790'000'000'000);
  auto none = f.store->registry().inactive_device_ids();
  REQUIRE(none);
  CHECK(none->empty());
  REQUIRE(f.store->registry().revoke_device("dev-r", at));
  CHECK(f.store->registry().inactive_device_ids() == std::vector<std::string>{"dev-r"});
  REQUIRE(f.store->registry().revoke_device("dev-r", at + std::chrono::hours(1)));  // idempotent
  found = f.store->registry().find_device("dev-r");
  REQUIRE(found->has_value());
  CHECK_FALSE((*found)->active);
  CHECK((*found)->revoked_at == at);
  CHECK((*found)->wrapped_key.empty());
  CHECK_FALSE((*found)->previous);
  auto again = f.store->registry().rotate_key({"dev-r", 2, 3, core::Bytes(61, 0x33), until});
  REQUIRE_FALSE(again);
  CHECK(again.error().reason == "device_revoked");
  auto missing = f.store->registry().revoke_device("dev-x", at);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().reason == "no_device");

  // The revoked keys' bytes are gone from the database file (secure_delete), once closed.
  f.store.reset();
  const auto bytes = file_bytes(f.dir.path() / "telehub.db");
  REQUIRE_FALSE(bytes.empty());
  CHECK_FALSE(contains(bytes, core::Bytes(61, 0x11)));
  CHECK_FALSE(contains(bytes, core::Bytes(61, 0x22)));
}

TEST_CASE("a schema-1 database holding unwrapped device keys is refused, an empty one migrated",
          "[storage][keys]") {
  testing::TempDir dir;
  auto make_v1 = [](const std::filesystem::path& path, bool with_device) {
    // Raw SQLite C API: a database as telehub with schema 1 left it.
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    auto exec = [db](const std::string& sql) { return sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK; };
    REQUIRE(exec("CREATE TABLE schema_version(version INTEGER NOT NULL); INSERT INTO schema_version VALUES(1);"
                     "CREATE TABLE subjects(pseudonym TEXT PRIMARY KEY, created_ms INTEGER NOT NULL) WITHOUT ROWID;"
                     "CREATE TABLE devices(id TEXT PRIMARY KEY, subject TEXT NOT NULL REFERENCES subjects(pseudonym),"
                     " key_id INTEGER NOT NULL, key BLOB NOT NULL, enrolled_ms INTEGER NOT NULL,"
                     " active INTEGER NOT NULL DEFAULT 1) WITHOUT ROWID;"));
    if (with_device)
      REQUIRE(exec("INSERT INTO subjects VALUES('" + std::string(32, 'a') + "', 0);"
                       "INSERT INTO devices VALUES('dev-1', '" + std::string(32, 'a') + "', 1, zeroblob(32), 0, 1);"));
    sqlite3_close(db);
  };
  make_v1(dir.path() / "old.db", true);
  auto refused = storage::open_sqlite_store({dir.path() / "old.db"}, core::system_clock());
  REQUIRE_FALSE(refused);
  CHECK(refused.error().reason == "db_schema");
  CHECK(refused.error().message.find("re-enrol") != std::string::npos);

  make_v1(dir.path() / "empty.db", false);
  auto migrated = storage::open_sqlite_store({dir.path() / "empty.db"}, core::system_clock());
  REQUIRE(migrated);
  storage::DeviceRecord d;
  d.id = "dev-1";
  d.subject = std::string(32, 'b');
  d.wrapped_key = core::Bytes(61, 1);
  REQUIRE((*migrated)->registry().add_device(d));
  d.id = "dev-2";
  d.wrapped_key.clear();
  auto no_key = (*migrated)->registry().add_device(d);
  REQUIRE_FALSE(no_key);
  CHECK(no_key.error().reason == "bad_device");
}

TEST_CASE("deferred durability: commits are visible at once, and sync() puts them on disk", "[storage][sync]") {
  testing::TempDir dir;
  storage::StoreOptions o;
  o.path = dir.path() / "telehub.db";
  o.sync_each_commit = false;
  auto pseudonymiser = std::move(*privacy::Pseudonymiser::from_key(core::Bytes(32, 9)));
  const auto s = pseudonymiser->subject("p1");
  {
    auto store = storage::open_sqlite_store(o, core::system_clock());
    REQUIRE(store);
    REQUIRE((*store)->sync());  // nothing written yet: fine
    for (std::uint64_t seq = 1; seq <= 50; ++seq)
      REQUIRE((*store)->observations().append(batch(s, "dev-1", seq, {reading("8867-4", 70, "/min", 1000)})) ==
              AppendOutcome::kStored);
    // Another connection sees the commits before any sync (they are committed, in the WAL).
    auto other = storage::open_sqlite_store({o.path}, core::system_clock());
    REQUIRE(other);
    CHECK(*(*other)->observations().count() == 50);
    REQUIRE((*store)->sync());
    REQUIRE((*store)->sync());  // idempotent
  }
  auto reopened = storage::open_sqlite_store(o, core::system_clock());
  REQUIRE(reopened);
  CHECK(*(*reopened)->observations().count() == 50);
  // The default store fsyncs every commit; its sync() is a no-op that succeeds.
  auto full = storage::open_sqlite_store({dir.path() / "full.db"}, core::system_clock());
  REQUIRE(full);
  CHECK((*full)->sync());
}

TEST_CASE("a damaged chunk or log entry is reported as data_loss/db_corrupt, never read past its end",
          "[storage][compaction]") {
  Fixture f;
  const auto s = f.subject("p-corrupt");
  std::vector<core::Reading> rs;
  for (int i = 0; i < 120; ++i) rs.push_back(reading("8867-4", 60 + i % 9, "/min", 1'700'000'000'000 + i * 60'000));
  REQUIRE(f.store->observations().append(batch(s, "dev-c", 1, rs)));
  REQUIRE(f.store->observations().append(batch(s, "dev-c", 2, {reading("8867-4", 70, "/min", 1'700'100'000'000)})));
  // Message 1 into a chunk, message 2 stays in the log.
  auto moved = f.store->compact();
  REQUIRE(moved);
  CHECK(*moved == 121);
  REQUIRE(f.store->observations().append(batch(s, "dev-c", 3, {reading("8867-4", 71, "/min", 1'700'200'000'000)})));
  storage::ObservationQuery q;
  q.subject = s.str();
  q.limit = 1000;
  auto all = f.store->observations().search(q);
  REQUIRE(all);
  REQUIRE(all->items.size() == 122);
  const auto chunk_id = all->items.front().id;
  const auto log_id = all->items.back().id;
  f.store.reset();

  auto damage = [&](const std::string& sql) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open((f.dir.path() / "telehub.db").c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
    CHECK(sqlite3_changes(db) == 1);
    sqlite3_close(db);
  };
  SECTION("a chunk cut short") {
    damage("UPDATE chunks SET data = substr(data, 1, length(data) - 3) WHERE id = (SELECT min(id) FROM chunks)");
    f.reopen();
    auto page = f.store->observations().search(q);
    REQUIRE_FALSE(page);
    CHECK(page.error().reason == "db_corrupt");
    auto one = f.store->observations().get(chunk_id);
    REQUIRE_FALSE(one);
    CHECK(one.error().reason == "db_corrupt");
  }
  SECTION("a log entry with a wrong reading count") {
    damage("UPDATE log SET data = X'0105' || substr(data, 3)");
    f.reopen();
    auto page = f.store->observations().search(q);
    REQUIRE_FALSE(page);
    CHECK(page.error().reason == "db_corrupt");
    auto one = f.store->observations().get(log_id);
    REQUIRE_FALSE(one);
    CHECK(one.error().reason == "db_corrupt");
    // Compaction refuses to move it rather than lose or invent readings.
    auto c = f.store->compact();
    REQUIRE_FALSE(c);
    CHECK(c.error().reason == "db_corrupt");
  }
}

namespace {

class ManualClock final : public core::Clock {
 public:
  core::TimePoint now() const override { return core::from_unix_millis(ms_.load()); }
  void advance(std::int64_t ms) { ms_ += ms; }

 private:
  std::atomic<std::int64_t> ms_{1'800'000'000'000};
};

// Rows in the log table, read with the raw SQLite API beside the open store (WAL mode).
long log_rows(const std::filesystem::path& db_path) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT count(*) FROM log", -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  const long n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

bool eventually(const std::function<bool()>& done) {
  for (int i = 0; i < 500; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

}  // namespace

TEST_CASE("background compaction waits for a run of readings per subject, or for them to age", "[storage][compaction]") {
  testing::TempDir dir;
  ManualClock clock;
  storage::StoreOptions o;
  o.path = dir.path() / "telehub.db";
  o.compact_after_readings = 1;  // a step after every append
  o.compact_min_readings = 5;
  o.compact_max_age = std::chrono::hours(1);
  auto opened = storage::open_sqlite_store(o, clock);
  REQUIRE(opened);
  auto& store = **opened;
  auto p = std::move(*privacy::Pseudonymiser::from_key(core::Bytes(32, 9)));
  const auto sparse = p->subject("sparse"), dense = p->subject("dense");
  auto at = [&](const privacy::SubjectPseudonym& s, const std::string& device, std::uint64_t seq, int n) {
    std::vector<core::Reading> rs;
    for (int i = 0; i < n; ++i)
      rs.push_back(reading("8867-4", 60 + i, "/min", 1'700'000'000'000 + static_cast<std::int64_t>(seq * 100 + i) * 60'000));
    auto b = batch(s, device, seq, rs);
    b.received_at = clock.now();
    REQUIRE(store.observations().append(std::move(b)));
  };
  for (std::uint64_t seq = 1; seq <= 3; ++seq) at(sparse, "dev-sparse", seq, 1);  // 3 readings: not yet
  at(dense, "dev-dense", 1, 10);                                                  // 10: compacted
  CHECK(eventually([&] { return log_rows(o.path) == 3; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(log_rows(o.path) == 3);  // the sparse subject's rows wait

  // Two more readings make five: the next step takes them.
  at(sparse, "dev-sparse", 4, 1);
  at(sparse, "dev-sparse", 5, 1);
  CHECK(eventually([&] { return log_rows(o.path) == 0; }));

  // A single reading waits until it is an hour old.
  at(sparse, "dev-sparse", 6, 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(log_rows(o.path) == 1);
  clock.advance(3'600'001);
  at(dense, "dev-dense", 2, 1);  // any append triggers a step; the dense reading waits, the old one goes
  CHECK(eventually([&] { return log_rows(o.path) == 1; }));
  storage::ObservationQuery q;
  q.subject = sparse.str();
  auto page = store.observations().search(q);
  REQUIRE(page);
  CHECK(page->items.size() == 6);  // reads are the same wherever the readings are
  CHECK(store.observations().count().value() == 17);
}

TEST_CASE("devices keep their payload format and reported metadata, and a schema-3 database gains the columns",
          "[storage][formats]") {
  testing::TempDir dir;
  const auto path = dir.path() / "telehub.db";
  {
    auto store = storage::open_sqlite_store({path}, core::system_clock());
    REQUIRE(store);
    storage::DeviceRecord d;
    d.id = "dev-fmt";
    d.subject = std::string(32, 'c');
    d.wrapped_key = core::Bytes(61, 1);
    d.payload_format = "template:acme-bp-cuff";
    REQUIRE((*store)->registry().add_device(d));
    d.id = "dev-native";
    d.payload_format.clear();
    REQUIRE((*store)->registry().add_device(d));
    auto found = (*store)->registry().find_device("dev-native");
    REQUIRE(found->has_value());
    CHECK((*found)->payload_format == "native");
    CHECK((*found)->manufacturer.empty());

    REQUIRE((*store)->registry().update_device_info({"dev-fmt", "Acme", "BP-7", std::string(32, 'f')}));
    REQUIRE((*store)->registry().update_device_info({"dev-fmt", "", "BP-8", ""}));  // empty: unchanged
    found = (*store)->registry().find_device("dev-fmt");
    REQUIRE(found->has_value());
    CHECK((*found)->payload_format == "template:acme-bp-cuff");
    CHECK((*found)->manufacturer == "Acme");
    CHECK((*found)->model == "BP-8");
    CHECK((*found)->serial_pseudonym == std::string(32, 'f'));
    auto missing = (*store)->registry().update_device_info({"dev-none", "Acme", "", ""});
    REQUIRE_FALSE(missing);
    CHECK(missing.error().reason == "no_device");
  }
  // Make it look like schema 3 (without the new columns), then open: the columns come back,
  // the devices stay, their format is native.
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    auto exec = [db](const std::string& sql) { return sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK; };
    REQUIRE(exec("ALTER TABLE devices DROP COLUMN payload_format; ALTER TABLE devices DROP COLUMN manufacturer;"
                 "ALTER TABLE devices DROP COLUMN model; ALTER TABLE devices DROP COLUMN serial_pseudonym;"
                 "DELETE FROM schema_version; INSERT INTO schema_version VALUES(3);"));
    sqlite3_close(db);
  }
  auto store = storage::open_sqlite_store({path}, core::system_clock());
  REQUIRE(store);
  auto found = (*store)->registry().find_device("dev-fmt");
  REQUIRE(found->has_value());
  CHECK((*found)->payload_format == "native");
  CHECK((*found)->manufacturer.empty());
  REQUIRE((*store)->registry().update_device_info({"dev-fmt", "Acme", "", ""}));
}

TEST_CASE("retention deletes readings whose chunk ended before the cut-off, and nothing else", "[storage][retention]") {
  Fixture f;
  const auto s = f.subject("p-retention");
  const std::int64_t day = 86'400'000;
  const std::int64_t t0 = 1'790'000'000'000;
  // Ten days of one reading an hour, one message per reading.
  std::uint64_t seq = 0;
  for (std::int64_t h = 0; h < 240; ++h)
    REQUIRE(f.store->observations().append(batch(s, "dev-r", ++seq, {reading("8867-4", 60 + h % 30, "/min", t0 + h * 3'600'000)})) ==
            storage::AppendOutcome::kStored);
  REQUIRE(*f.store->observations().count() == 240);
  // Cut-off after day 4: chunks span at most a day, so at least days 0..3 go, day 5 onwards stays.
  const auto cutoff = core::from_unix_millis(t0 + 4 * day + day / 2);
  auto deleted = f.store->purge_readings_before(cutoff);
  REQUIRE(deleted);
  CHECK(*deleted >= 4 * 24);
  CHECK(*deleted <= 5 * 24);
  CHECK(*f.store->observations().count() == 240 - *deleted);
  storage::ObservationQuery q;
  q.subject = s.str();
  q.limit = 1000;
  auto page = f.store->observations().search(q);
  REQUIRE(page);
  CHECK(static_cast<std::int64_t>(page->items.size()) == 240 - *deleted);
  for (const auto& o : page->items) CHECK(core::to_unix_millis(o.reading.time) >= t0 + 4 * day);
  bool has_day5 = false;
  for (const auto& o : page->items) has_day5 = has_day5 || core::to_unix_millis(o.reading.time) >= t0 + 5 * day;
  CHECK(has_day5);
  // Idempotent, de-duplication intact, new readings still go in.
  auto again = f.store->purge_readings_before(cutoff);
  REQUIRE(again);
  CHECK(*again == 0);
  CHECK(f.store->observations().append(batch(s, "dev-r", 1, {reading("8867-4", 60, "/min", t0)})) ==
        storage::AppendOutcome::kDuplicate);
  CHECK(f.store->observations().append(batch(s, "dev-r", ++seq, {reading("8867-4", 70, "/min", t0 + 11 * day)})) ==
        storage::AppendOutcome::kStored);
  CHECK(*f.store->observations().count() == 241 - *deleted);
  f.reopen();
  CHECK(*f.store->observations().count() == 241 - *deleted);
}
