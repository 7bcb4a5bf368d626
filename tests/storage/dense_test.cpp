// Dense views of the measurement store: ObservationStore::aggregate (hourly and daily buckets)
// and ObservationStore::latest ($lastn), checked against brute force over the same readings.
//
// Every check runs with the readings in each place the store can keep them: all in the log
// (no compaction), split between chunks and the log at arbitrary points (compact() between
// appends; chunks continued by later compactions; backfill into compacted ranges), all in
// chunks, eager background compaction (as TELEHUB_CONFORMANCE_COMPACTION=eager does in the
// conformance suite), and after reopening the store.
//
// The year-of-minute-data case prints its timings with INFO (docs/dense.md quotes them).
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "telehub/storage/store.h"
#include "test_support.h"

using namespace telehub;

namespace {

constexpr std::int64_t kHour = 3'600'000;
constexpr std::int64_t kDay = 86'400'000;
constexpr std::int64_t kMinute = 60'000;
// 2026-03-01T00:00:00Z: a day and hour boundary.
constexpr std::int64_t kT0 = 1'772'323'200'000;

template <class T>
T must(Result<T> r) {
  if (!r) FAIL("unexpected error: " << r.error().to_string());
  return std::move(*r);
}

const privacy::Pseudonymiser& pseudonymiser() {
  static const auto p = std::move(*privacy::Pseudonymiser::from_key(core::Bytes(32, 9)));
  return *p;
}

enum class Mode { kLog, kMixed, kChunks, kEager, kReopened };

const char* mode_name(Mode m) {
  switch (m) {
    case Mode::kLog: return "all in the log";
    case Mode::kMixed: return "split between chunks and log";
    case Mode::kChunks: return "all compacted";
    case Mode::kEager: return "eager background compaction";
    case Mode::kReopened: return "compacted, then reopened";
  }
  return "?";
}

std::unique_ptr<storage::Store> open_store(const std::filesystem::path& path, Mode mode) {
  storage::StoreOptions o;
  o.path = path;
  o.sync_each_commit = false;
  if (mode == Mode::kEager) {
    o.compact_after_readings = 1;
    o.compact_batch_readings = 97;
    o.compact_min_readings = 1;
    o.compact_max_age = std::chrono::seconds(0);
  } else {
    o.compact_after_readings = 0;  // only compact() compacts: the test decides where
  }
  return must(storage::open_sqlite_store(o, core::system_clock()));
}

core::Reading value_reading(const std::string& code, double value, const std::string& unit, std::int64_t t) {
  core::Reading r;
  r.code = code;
  r.value = value;
  r.unit = unit;
  r.time = core::from_unix_millis(t);
  return r;
}

core::Reading panel_reading(double systolic, double diastolic, std::int64_t t, const std::string& unit = "mm[Hg]") {
  core::Reading r;
  r.code = "85354-9";
  r.time = core::from_unix_millis(t);
  r.components = {{"8480-6", systolic, unit}, {"8462-4", diastolic, unit}};
  return r;
}

// Appends messages and remembers every reading (the brute-force model).
class Feeder {
 public:
  Feeder(storage::Store& store, const privacy::SubjectPseudonym& subject) : store_(store), subject_(subject) {}

  void append(std::vector<core::Reading> readings) {
    storage::MessageBatch b;
    b.device_id = "dev-dense";
    b.sequence = ++seq_;
    b.content_hash = "h" + std::to_string(seq_);
    b.received_at = core::from_unix_millis(kT0 + 400 * kDay);
    for (auto& r : readings) {
      r.device = b.device_id;
      r.sequence = seq_;
      r.subject = subject_.str();
      all_.push_back(r);
      b.readings.push_back(privacy::PseudonymousReading::bind(std::move(r), subject_));
    }
    REQUIRE(must(store_.observations().append(std::move(b))) == storage::AppendOutcome::kStored);
  }
  const std::vector<core::Reading>& all() const { return all_; }

 private:
  storage::Store& store_;
  const privacy::SubjectPseudonym& subject_;
  std::uint64_t seq_ = 0;
  std::vector<core::Reading> all_;
};

// Brute force: the buckets aggregate() must return.
std::vector<storage::AggregateBucket> brute_aggregate(const std::vector<core::Reading>& all, const storage::AggregateQuery& q) {
  const std::int64_t width = storage::bucket_millis(q.bucket);
  const std::int64_t from = q.from ? core::to_unix_millis(*q.from) : INT64_MIN;
  const std::int64_t to = q.to ? core::to_unix_millis(*q.to) : INT64_MAX;
  struct Slot {
    std::int64_t count = 0;
    double min = 0, max = 0, sum = 0;
  };
  struct Acc {
    std::int64_t count = 0, first = INT64_MAX, last = INT64_MIN;
    // (value first, position, code, unit) -> stats
    std::map<std::tuple<int, std::size_t, std::string, std::string>, Slot> slots;
  };
  std::map<std::int64_t, Acc> buckets;
  auto add = [](Slot& s, double v) {
    if (!std::isfinite(v)) return;
    if (s.count == 0) s.min = s.max = v;
    s.min = std::min(s.min, v);
    s.max = std::max(s.max, v);
    ++s.count;
    s.sum += v;
  };
  for (const auto& r : all) {
    const auto t = core::to_unix_millis(r.time);
    if (r.code != q.code || t < from || t >= to) continue;
    const auto start = (t >= 0 ? t / width : (t - width + 1) / width) * width;
    auto& b = buckets[start];
    ++b.count;
    b.first = std::min(b.first, t);
    b.last = std::max(b.last, t);
    if (r.value) add(b.slots[{0, 0, r.code, r.unit}], *r.value);
    for (std::size_t i = 0; i < r.components.size(); ++i)
      add(b.slots[{1, i, r.components[i].code, r.components[i].unit}], r.components[i].value);
  }
  std::vector<storage::AggregateBucket> out;
  for (const auto& [start, acc] : buckets) {
    storage::AggregateBucket b;
    b.start = core::from_unix_millis(start);
    b.end = core::from_unix_millis(start + width);
    b.count = acc.count;
    b.first = core::from_unix_millis(acc.first);
    b.last = core::from_unix_millis(acc.last);
    for (const auto& [key, s] : acc.slots) {
      if (s.count == 0) continue;
      b.slots.push_back({std::get<2>(key), std::get<3>(key), s.count, s.min, s.max, s.sum, s.sum / static_cast<double>(s.count)});
    }
    out.push_back(std::move(b));
  }
  return out;
}

void check_same(const std::vector<storage::AggregateBucket>& got, const std::vector<storage::AggregateBucket>& want) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("bucket " << i << " at " << core::format_rfc3339(want[i].start));
    CHECK(got[i].start == want[i].start);
    CHECK(got[i].end == want[i].end);
    CHECK(got[i].count == want[i].count);
    CHECK(got[i].first == want[i].first);
    CHECK(got[i].last == want[i].last);
    REQUIRE(got[i].slots.size() == want[i].slots.size());
    for (std::size_t j = 0; j < got[i].slots.size(); ++j) {
      const auto& g = got[i].slots[j];
      const auto& w = want[i].slots[j];
      CHECK(g.code == w.code);
      CHECK(g.unit == w.unit);
      CHECK(g.count == w.count);
      CHECK(g.min == w.min);
      CHECK(g.max == w.max);
      CHECK(g.sum == Approx(w.sum).epsilon(1e-12));
      CHECK(g.mean == Approx(w.mean).epsilon(1e-12));
    }
  }
}

// Every reading of a subject through search() (already pinned by the conformance suite): the
// model latest() is checked against, ids included.
std::vector<storage::StoredObservation> all_observations(storage::ObservationStore& store, const std::string& subject) {
  std::vector<storage::StoredObservation> out;
  storage::ObservationQuery q;
  q.subject = subject;
  q.limit = 1000;
  for (;;) {
    auto page = must(store.search(q));
    std::move(page.items.begin(), page.items.end(), std::back_inserter(out));
    if (!page.next) return out;
    q.after = page.next;
  }
}

std::vector<storage::StoredObservation> brute_latest(const std::vector<storage::StoredObservation>& all,
                                                     const std::vector<std::string>& codes, std::size_t n) {
  std::map<std::string, std::vector<storage::StoredObservation>> per_code;
  for (const auto& o : all)
    if (codes.empty() || std::find(codes.begin(), codes.end(), o.reading.code) != codes.end())
      per_code[o.reading.code].push_back(o);
  std::vector<storage::StoredObservation> out;
  for (auto& [code, list] : per_code) {
    std::sort(list.begin(), list.end(), [](const auto& a, const auto& b) {
      return std::pair(a.reading.time, a.id) > std::pair(b.reading.time, b.id);
    });
    if (list.size() > n) list.resize(n);
    out.insert(out.end(), list.begin(), list.end());
  }
  return out;
}

void check_same(const std::vector<storage::StoredObservation>& got, const std::vector<storage::StoredObservation>& want) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("item " << i);
    CHECK(got[i].id == want[i].id);
    CHECK(got[i].reading == want[i].reading);
    CHECK(got[i].received_at == want[i].received_at);
  }
}

// Three days of minute heart rate in messages of 1..90 readings, some sent late (backfill),
// blood-pressure panels a few times a day (one in kPa), and readings on exact hour and day
// boundaries; compact() at random points unless the mode says otherwise.
void fill(storage::Store& store, Feeder& feed, Mode mode, std::mt19937_64& rng) {
  const auto maybe_compact = [&] {
    if (mode == Mode::kMixed && rng() % 4 == 0) (void)must(store.compact());
  };
  std::vector<std::vector<core::Reading>> late;
  std::int64_t t = kT0 - 30 * kMinute + 7;  // starts before the first day boundary
  const std::int64_t end = kT0 + 3 * kDay;
  while (t < end) {
    const auto size = 1 + rng() % 90;
    std::vector<core::Reading> msg;
    for (std::size_t i = 0; i < size && t < end; ++i, t += kMinute) {
      const double v = (rng() % 3 == 0) ? 60 + static_cast<double>(rng() % 400) / 10 : static_cast<double>(55 + rng() % 60);
      msg.push_back(value_reading("8867-4", v, "/min", t));
    }
    if (rng() % 10 == 0) late.push_back(std::move(msg));
    else feed.append(std::move(msg));
    maybe_compact();
  }
  for (auto& msg : late) {  // backfill, into ranges already compacted (kMixed)
    feed.append(std::move(msg));
    maybe_compact();
  }
  // Panels, some at exact hour and day boundaries, one in another unit.
  for (int d = 0; d < 3; ++d) {
    feed.append({panel_reading(120 + d, 80 + d, kT0 + d * kDay),                       // 00:00:00.000
                 panel_reading(131.5, 85, kT0 + d * kDay + kHour - 1),                 // 00:59:59.999
                 panel_reading(118, 79.5, kT0 + d * kDay + kHour)});                   // 01:00:00.000
    maybe_compact();
    feed.append({panel_reading(140, 90, kT0 + d * kDay + 13 * kHour + 17),
                 panel_reading(16.1, 10.4, kT0 + d * kDay + 13 * kHour + 18, "kPa"),
                 panel_reading(125, 82, kT0 + (d + 1) * kDay - 1)});                    // 23:59:59.999
    maybe_compact();
  }
  // Equal times, two heart-rate readings at one boundary instant.
  feed.append({value_reading("8867-4", 61, "/min", kT0 + kDay), value_reading("8867-4", 99, "/min", kT0 + kDay)});
  if (mode == Mode::kChunks || mode == Mode::kReopened) (void)must(store.compact());
  if (mode == Mode::kMixed) {  // leave the last messages in the log
    feed.append({value_reading("8867-4", 70, "/min", kT0 + 3 * kDay + 5)});
  }
}

std::vector<storage::AggregateQuery> queries(const std::string& subject) {
  std::vector<storage::AggregateQuery> out;
  auto q = [&](std::string code, storage::BucketSize size, std::optional<std::int64_t> from, std::optional<std::int64_t> to) {
    storage::AggregateQuery a;
    a.subject = subject;
    a.code = std::move(code);
    a.bucket = size;
    if (from) a.from = core::from_unix_millis(*from);
    if (to) a.to = core::from_unix_millis(*to);
    out.push_back(a);
  };
  for (auto size : {storage::BucketSize::kHour, storage::BucketSize::kDay}) {
    for (const char* code : {"8867-4", "85354-9"}) {
      q(code, size, std::nullopt, std::nullopt);
      q(code, size, kT0, kT0 + kDay);                          // exactly one day
      q(code, size, kT0 + kHour, kT0 + 2 * kDay + kHour);       // exact hours
      q(code, size, kT0 + kHour - 1, kT0 + kHour + 1);          // two milliseconds around a boundary
      q(code, size, kT0 + 90 * kMinute + 13, kT0 + kDay + 7 * kHour + 59 * kMinute);  // partial buckets
    }
  }
  q("8310-5", storage::BucketSize::kHour, std::nullopt, std::nullopt);  // a code with no readings
  return out;
}

}  // namespace

TEST_CASE("aggregate equals brute force in every compaction state", "[storage][dense]") {
  for (Mode mode : {Mode::kLog, Mode::kMixed, Mode::kChunks, Mode::kEager, Mode::kReopened}) {
    INFO("mode: " << mode_name(mode));
    testing::TempDir dir;
    const auto path = dir.path() / "telehub.db";
    const auto s = pseudonymiser().subject("patient-dense");
    std::mt19937_64 rng(20261128 + static_cast<int>(mode));
    auto store = open_store(path, mode);
    Feeder feed(*store, s);
    fill(*store, feed, mode, rng);
    if (mode == Mode::kReopened) {
      store->close();
      store.reset();
      store = open_store(path, mode);
    }
    for (const auto& q : queries(s.str())) {
      INFO("code " << q.code << (q.bucket == storage::BucketSize::kHour ? " hourly" : " daily"));
      check_same(must(store->observations().aggregate(q)), brute_aggregate(feed.all(), q));
    }
  }
}

TEST_CASE("aggregate buckets split at exact UTC hours and days", "[storage][dense]") {
  testing::TempDir dir;
  const auto s = pseudonymiser().subject("patient-edges");
  auto store = open_store(dir.path() / "telehub.db", Mode::kChunks);
  Feeder feed(*store, s);
  feed.append({value_reading("8867-4", 60, "/min", kT0 - 1),          // 23:59:59.999 the day before
               value_reading("8867-4", 62, "/min", kT0),              // 00:00:00.000
               value_reading("8867-4", 64, "/min", kT0 + kHour - 1),  // 00:59:59.999
               value_reading("8867-4", 66, "/min", kT0 + kHour)});    // 01:00:00.000
  (void)must(store->compact());
  feed.append({value_reading("8867-4", 70, "/min", kT0 + kDay)});     // next day 00:00:00.000, in the log

  storage::AggregateQuery q;
  q.subject = s.str();
  q.code = "8867-4";
  auto hours = must(store->observations().aggregate(q));
  REQUIRE(hours.size() == 4);
  CHECK(hours[0].start == core::from_unix_millis(kT0 - kHour));
  CHECK(hours[0].count == 1);
  CHECK(hours[1].start == core::from_unix_millis(kT0));
  CHECK(hours[1].end == core::from_unix_millis(kT0 + kHour));
  CHECK(hours[1].count == 2);
  CHECK(hours[1].first == core::from_unix_millis(kT0));
  CHECK(hours[1].last == core::from_unix_millis(kT0 + kHour - 1));
  REQUIRE(hours[1].slots.size() == 1);
  CHECK(hours[1].slots[0].code == "8867-4");
  CHECK(hours[1].slots[0].unit == "/min");
  CHECK(hours[1].slots[0].min == 62);
  CHECK(hours[1].slots[0].max == 64);
  CHECK(hours[1].slots[0].mean == 63);
  CHECK(hours[2].start == core::from_unix_millis(kT0 + kHour));
  CHECK(hours[3].start == core::from_unix_millis(kT0 + kDay));  // empty hours omitted

  q.bucket = storage::BucketSize::kDay;
  auto days = must(store->observations().aggregate(q));
  REQUIRE(days.size() == 3);
  CHECK(days[0].start == core::from_unix_millis(kT0 - kDay));
  CHECK(days[0].count == 1);
  CHECK(days[1].start == core::from_unix_millis(kT0));
  CHECK(days[1].end == core::from_unix_millis(kT0 + kDay));
  CHECK(days[1].count == 3);
  CHECK(days[1].slots[0].sum == 62 + 64 + 66);
  CHECK(days[2].count == 1);

  // [from, to) at exact boundaries: the reading at `to` is out, the one at `from` in.
  q.from = core::from_unix_millis(kT0);
  q.to = core::from_unix_millis(kT0 + kDay);
  days = must(store->observations().aggregate(q));
  REQUIRE(days.size() == 1);
  CHECK(days[0].count == 3);

  // Refused: no code, from >= to.
  q.to = q.from;
  CHECK(store->observations().aggregate(q).error().reason == "bad_query");
  q.to.reset();
  q.code.clear();
  CHECK(store->observations().aggregate(q).error().reason == "bad_query");
  // An unknown subject has no buckets.
  q.code = "8867-4";
  q.subject = pseudonymiser().subject("nobody").str();
  CHECK(must(store->observations().aggregate(q)).empty());
}

TEST_CASE("aggregate of blood pressure panels keeps one slot per component and unit", "[storage][dense]") {
  testing::TempDir dir;
  const auto s = pseudonymiser().subject("patient-bp");
  auto store = open_store(dir.path() / "telehub.db", Mode::kMixed);
  Feeder feed(*store, s);
  feed.append({panel_reading(120, 80, kT0 + 10), panel_reading(130, 90, kT0 + 20)});
  (void)must(store->compact());
  feed.append({panel_reading(16, 10, kT0 + 30, "kPa")});
  storage::AggregateQuery q;
  q.subject = s.str();
  q.code = "85354-9";
  q.bucket = storage::BucketSize::kDay;
  auto days = must(store->observations().aggregate(q));
  REQUIRE(days.size() == 1);
  CHECK(days[0].count == 3);
  REQUIRE(days[0].slots.size() == 4);
  // Components by position in the panel, then code and unit ("kPa" < "mm[Hg]").
  CHECK(days[0].slots[0].code == "8480-6");
  CHECK(days[0].slots[0].unit == "kPa");
  CHECK(days[0].slots[0].count == 1);
  CHECK(days[0].slots[0].mean == 16);
  CHECK(days[0].slots[1].code == "8480-6");
  CHECK(days[0].slots[1].unit == "mm[Hg]");
  CHECK(days[0].slots[1].count == 2);
  CHECK(days[0].slots[1].mean == 125);
  CHECK(days[0].slots[2].code == "8462-4");
  CHECK(days[0].slots[2].unit == "kPa");
  CHECK(days[0].slots[3].code == "8462-4");
  CHECK(days[0].slots[3].unit == "mm[Hg]");
  CHECK(days[0].slots[3].min == 80);
  CHECK(days[0].slots[3].max == 90);
  check_same(days, brute_aggregate(feed.all(), q));
}

TEST_CASE("latest returns the newest n readings per code in every compaction state", "[storage][dense]") {
  for (Mode mode : {Mode::kLog, Mode::kMixed, Mode::kChunks, Mode::kEager, Mode::kReopened}) {
    INFO("mode: " << mode_name(mode));
    testing::TempDir dir;
    const auto path = dir.path() / "telehub.db";
    const auto s = pseudonymiser().subject("patient-lastn");
    std::mt19937_64 rng(7 + static_cast<int>(mode));
    auto store = open_store(path, mode);
    Feeder feed(*store, s);
    fill(*store, feed, mode, rng);
    // A few more codes: weight (3 readings), temperature (1), in the log or chunks by mode.
    feed.append({value_reading("29463-7", 80.5, "kg", kT0 + 5), value_reading("29463-7", 80.1, "kg", kT0 + kDay),
                 value_reading("8310-5", 36.8, "Cel", kT0 + 2 * kDay)});
    if (mode == Mode::kMixed) (void)must(store->compact());
    feed.append({value_reading("29463-7", 79.9, "kg", kT0 + 2 * kDay)});
    if (mode == Mode::kChunks || mode == Mode::kReopened) (void)must(store->compact());
    if (mode == Mode::kReopened) {
      store->close();
      store.reset();
      store = open_store(path, mode);
    }
    const auto all = all_observations(store->observations(), s.str());
    REQUIRE(all.size() == feed.all().size());
    const std::vector<std::vector<std::string>> code_sets = {
        {}, {"8867-4"}, {"29463-7", "85354-9"}, {"8310-5", "1234-5"}, {"1234-5"}};
    for (const auto& codes : code_sets) {
      for (std::size_t n : {std::size_t{1}, std::size_t{3}, std::size_t{61}, std::size_t{1000}}) {
        INFO("codes " << codes.size() << ", n " << n);
        check_same(must(store->observations().latest(s.str(), codes, n)), brute_latest(all, codes, n));
      }
    }
    // n larger than available: everything of that code, newest first.
    auto weights = must(store->observations().latest(s.str(), {"29463-7"}, 1000));
    REQUIRE(weights.size() == 3);
    CHECK(*weights[0].reading.value == 79.9);
    CHECK(*weights[2].reading.value == 80.5);
    // Equal times: the larger id first.
    auto hr = must(store->observations().latest(s.str(), {"8867-4"}, 1000));
    for (std::size_t i = 1; i < hr.size(); ++i)
      CHECK(std::pair(hr[i - 1].reading.time, hr[i - 1].id) > std::pair(hr[i].reading.time, hr[i].id));
  }
}

TEST_CASE("latest refuses n outside 1..1000 and knows no unknown subject", "[storage][dense]") {
  testing::TempDir dir;
  auto store = open_store(dir.path() / "telehub.db", Mode::kLog);
  const auto s = pseudonymiser().subject("patient-x");
  CHECK(store->observations().latest(s.str(), {}, 0).error().reason == "bad_query");
  CHECK(store->observations().latest(s.str(), {}, 1001).error().reason == "bad_query");
  CHECK(must(store->observations().latest(s.str(), {}, 5)).empty());
}

TEST_CASE("aggregate of a patient-year of minute heart rate", "[storage][dense][figures]") {
  // TELEHUB_DENSE_DAYS scales it down (default 365: one patient-year, 525,600 readings).
  const char* env = std::getenv("TELEHUB_DENSE_DAYS");
  const long days = env && *env ? std::strtol(env, nullptr, 10) : 365;
  testing::TempDir dir;
  const auto s = pseudonymiser().subject("patient-year");
  storage::StoreOptions o;
  o.path = dir.path() / "telehub.db";
  o.sync_each_commit = false;
  auto store = must(storage::open_sqlite_store(o, core::system_clock()));
  // Hourly messages of 60 minute readings, as a device uploads them.
  std::uint64_t seq = 0;
  std::int64_t expected_sum = 0;
  for (std::int64_t h = 0; h < days * 24; ++h) {
    storage::MessageBatch b;
    b.device_id = "dev-year";
    b.sequence = ++seq;
    b.content_hash = "y" + std::to_string(seq);
    b.received_at = core::from_unix_millis(kT0 + (h + 1) * kHour);
    b.readings.reserve(60);
    for (int m = 0; m < 60; ++m) {
      const int v = 55 + static_cast<int>((h * 7 + m * 13) % 50);
      expected_sum += v;
      b.readings.push_back(privacy::PseudonymousReading::bind(
          value_reading("8867-4", v, "/min", kT0 + h * kHour + m * kMinute), s));
    }
    REQUIRE(must(store->observations().append(std::move(b))) == storage::AppendOutcome::kStored);
  }
  (void)must(store->compact());

  storage::AggregateQuery q;
  q.subject = s.str();
  q.code = "8867-4";
  q.from = core::from_unix_millis(kT0);
  q.to = core::from_unix_millis(kT0 + days * kDay);
  double best_hour_ms = 1e9, best_day_ms = 1e9;
  for (int run = 0; run < 3; ++run) {
    for (auto size : {storage::BucketSize::kHour, storage::BucketSize::kDay}) {
      q.bucket = size;
      const auto t0 = std::chrono::steady_clock::now();
      auto buckets = must(store->observations().aggregate(q));
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      (size == storage::BucketSize::kHour ? best_hour_ms : best_day_ms) =
          std::min(size == storage::BucketSize::kHour ? best_hour_ms : best_day_ms, ms);
      REQUIRE(buckets.size() == static_cast<std::size_t>(size == storage::BucketSize::kHour ? days * 24 : days));
      std::int64_t count = 0;
      double sum = 0;
      for (const auto& b : buckets) {
        count += b.count;
        sum += b.slots.at(0).sum;
      }
      CHECK(count == days * 1440);
      CHECK(sum == static_cast<double>(expected_sum));
    }
  }
  // Reference in the same run (STYLE: benchmarks print a ratio): reading the same year back
  // through search() in pages of 1,000.
  const auto t0 = std::chrono::steady_clock::now();
  storage::ObservationQuery sq;
  sq.subject = s.str();
  sq.code = "8867-4";
  sq.limit = 1000;
  std::size_t read = 0;
  for (;;) {
    auto page = must(store->observations().search(sq));
    read += page.items.size();
    if (!page.next) break;
    sq.after = page.next;
  }
  const double search_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  CHECK(read == static_cast<std::size_t>(days * 1440));
  INFO("aggregate of " << days * 1440 << " minute readings (" << days << " days): hourly " << best_hour_ms
                       << " ms, daily " << best_day_ms << " ms (best of 3); search() in pages of 1000: " << search_ms
                       << " ms; ratio search/aggregate(hourly) " << search_ms / best_hour_ms);
  WARN("dense figures: aggregate " << days * 1440 << " readings hourly " << best_hour_ms << " ms, daily " << best_day_ms
                                   << " ms; reference search() in pages of 1000 " << search_ms << " ms ("
                                   << search_ms / best_hour_ms << "x the hourly aggregate)");
  CHECK(best_hour_ms < 5000);
}
