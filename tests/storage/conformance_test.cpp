// Storage conformance suite: pins what storage::ObservationStore and storage::Store promise,
// through their public interfaces only (no SQL, no table or column names), so that the storage
// redesign of issue [3/8] (an append log compacted into per-series, time-ordered, compressed
// chunks, still in SQLite, behind the same interfaces) has to pass it unchanged. It runs against
// open_sqlite_store(), the only backend so far; every test uses real database files in a
// testing::TempDir. (Compare orthanc-databases Framework/Plugins/IndexUnitTests.h: one suite,
// every backend.)
//
// What it pins, one TEST_CASE each:
//   - idempotent append (stored / duplicate / conflict / outside the window), across a reopen;
//   - search order (effective time, id), code filter, [from, to) bounds, unknown subjects;
//   - keyset paging: full pages, every row once, and what happens to rows added while paging;
//     a page deep into a long series costs about what the first one costs;
//   - get(id) equals what search returned; ids stable across reopening;
//   - readers see consistent pages while a writer appends;
//   - a long regular series read back exactly (doubles bit for bit, times to the millisecond);
//     -0.0 reads back as zero (its sign is not pinned);
//   - range reads that cross commit, group-commit, backfill, reopen and compaction boundaries
//     (readings in the log, in a chunk continued by a later compaction, in chunks split by
//     span or size, in new chunks for backfill);
//   - SIGKILL of a process that appends, at random moments, with both durability settings,
//     between many small commits, during reopening and while it compacts: nothing whose
//     append() returned is lost,
//     nothing is stored twice, the database passes PRAGMA integrity_check.
//
// Scale with environment variables (the defaults keep CI quick):
//   TELEHUB_CONFORMANCE_POINTS  minute points of the long series read back (default 50000;
//                               one patient-year is 525600)
//   TELEHUB_CONFORMANCE_KILLS   SIGKILLs per crash test case (default 5)
//   TELEHUB_CONFORMANCE_COMPACTION  when stores compact their log (see apply_compaction_mode)
//   TELEHUB_CONFORMANCE_SEED    seed of the random arrival orders and kill moments (default
//                               fixed; a failure prints the seed it ran with)
//
// Catch2 2.13 assertions are not thread-safe: threads in these tests collect problems as text,
// and the test thread asserts on them.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "telehub/storage/store.h"
#include "test_support.h"

using namespace telehub;
using namespace std::chrono_literals;
using storage::AppendOutcome;

namespace {

// ---------------------------------------------------------------- parameters

long env_or(const char* name, long fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtol(v, nullptr, 10) : fallback;
}

std::uint64_t seed() { return static_cast<std::uint64_t>(env_or("TELEHUB_CONFORMANCE_SEED", 20261128)); }

std::uint64_t uniform(std::mt19937_64& rng, std::uint64_t lo, std::uint64_t hi) {
  return std::uniform_int_distribution<std::uint64_t>(lo, hi)(rng);
}

// 2026-01-01T00:00:00.000Z plus 123 ms, so times are not all whole seconds.
constexpr std::int64_t kT0 = 1'767'225'600'123;
constexpr std::int64_t kMinute = 60'000;

// ---------------------------------------------------------------- the store

template <class T>
T must(Result<T> r) {
  if (!r) FAIL("unexpected error: " << r.error().to_string());
  return std::move(*r);
}

// TELEHUB_CONFORMANCE_COMPACTION chooses when the log is compacted into chunks in every store
// this suite opens: unset = the store's defaults; "eager" = after every append, 97 readings a
// transaction, so that readings sit on both sides of compaction boundaries at arbitrary places
// while tests append, read, reopen and crash (CTest runs the suite a second time so); "log" =
// never (everything stays in the log).
void apply_compaction_mode(storage::StoreOptions& o) {
  const char* mode = std::getenv("TELEHUB_CONFORMANCE_COMPACTION");
  if (!mode) return;
  if (std::string(mode) == "eager") {
    o.compact_after_readings = 1;
    o.compact_batch_readings = 97;
    o.compact_min_readings = 1;
    o.compact_max_age = std::chrono::seconds(0);
  } else if (std::string(mode) == "log") {
    o.compact_after_readings = 0;
  }
}

std::unique_ptr<storage::Store> open_store(const std::filesystem::path& path, bool sync_each_commit = true,
                                           std::size_t max_batch_messages = 512) {
  storage::StoreOptions o;
  apply_compaction_mode(o);
  o.path = path;
  o.sync_each_commit = sync_each_commit;
  o.max_batch_messages = max_batch_messages;
  return must(storage::open_sqlite_store(o, core::system_clock()));
}

const privacy::Pseudonymiser& pseudonymiser() {
  static const auto p = std::move(*privacy::Pseudonymiser::from_key(core::Bytes(32, 7)));
  return *p;
}

privacy::SubjectPseudonym subject(const std::string& id) { return pseudonymiser().subject(id); }

// ---------------------------------------------------------------- readings and messages

core::Reading value_reading(const std::string& code, double value, const std::string& unit, std::int64_t t_ms) {
  core::Reading r;
  r.code = code;
  r.value = value;
  r.unit = unit;
  r.time = core::from_unix_millis(t_ms);
  return r;
}

core::Reading panel_reading(double systolic, double diastolic, std::int64_t t_ms) {
  core::Reading r;
  r.code = "85354-9";
  r.time = core::from_unix_millis(t_ms);
  r.components = {{"8480-6", systolic, "mm[Hg]"}, {"8462-4", diastolic, "mm[Hg]"}};
  return r;
}

// A message as ingest appends it. Readings get the subject, device and sequence the store is
// expected to give them back with (the model of what search returns).
storage::MessageBatch message(const privacy::SubjectPseudonym& s, const std::string& device, std::uint64_t seq,
                              std::vector<core::Reading> readings, std::string hash = {},
                              std::int64_t received_ms = 1'800'000'000'000) {
  storage::MessageBatch b;
  b.device_id = device;
  b.sequence = seq;
  b.content_hash = hash.empty() ? device + "#" + std::to_string(seq) : std::move(hash);
  b.received_at = core::from_unix_millis(received_ms);
  for (auto& r : readings) {
    r.device = device;
    r.sequence = seq;
    b.readings.push_back(privacy::PseudonymousReading::bind(std::move(r), s));
  }
  return b;
}

std::vector<core::Reading> readings_of(const storage::MessageBatch& b) {
  std::vector<core::Reading> out;
  for (const auto& r : b.readings) out.push_back(r.reading());
  return out;
}

std::string hex64(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Every field of a reading, doubles as their bits: equal fingerprints mean bit-identical readings.
std::string fingerprint(const core::Reading& r) {
  std::string s = r.subject + '|' + r.device + '|' + std::to_string(r.sequence) + '|' + r.code + '|' +
                  (r.value ? hex64(std::bit_cast<std::uint64_t>(*r.value)) : std::string("-")) + '|' + r.unit + '|' +
                  std::to_string(core::to_unix_millis(r.time));
  for (const auto& c : r.components) s += '|' + c.code + '=' + hex64(std::bit_cast<std::uint64_t>(c.value)) + ' ' + c.unit;
  return s;
}

std::vector<std::string> fingerprints(const std::vector<core::Reading>& readings) {
  std::vector<std::string> out;
  for (const auto& r : readings) out.push_back(fingerprint(r));
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> fingerprints(const std::vector<storage::StoredObservation>& items) {
  std::vector<std::string> out;
  for (const auto& o : items) out.push_back(fingerprint(o.reading));
  std::sort(out.begin(), out.end());
  return out;
}

// Finite, and not -0.0: SQLite stores a REAL without fractional part as an integer, so the sign
// of a zero does not come back (pinned separately below).
double random_finite(std::mt19937_64& rng) {
  for (;;) {
    const double d = std::bit_cast<double>(rng());
    if (std::isfinite(d) && !(d == 0 && std::signbit(d))) return d;
  }
}

// ---------------------------------------------------------------- reading pages

storage::Cursor key_of(const storage::StoredObservation& o) { return {core::to_unix_millis(o.reading.time), o.id}; }

bool key_less(const storage::Cursor& a, const storage::Cursor& b) {
  return std::tie(a.time_ms, a.id) < std::tie(b.time_ms, b.id);
}

std::string describe(const storage::Cursor& c) {
  return "(" + std::to_string(c.time_ms) + ", " + std::to_string(c.id) + ")";
}

// Checks one page on its own: at most `limit` items, strictly ascending by (time, id), each
// inside [from, to), of the subject and code asked for, after the cursor; `next`, when set,
// is the key of the last item. Returns a description of the first problem, or "".
std::string page_problem(const storage::ObservationQuery& q, const storage::ObservationPage& page) {
  // "a before b" in the query's order.
  auto key_less = [&q](const storage::Cursor& a, const storage::Cursor& b) {
    return q.descending ? ::key_less(b, a) : ::key_less(a, b);
  };
  if (page.items.size() > q.limit) return "page larger than the limit";
  if (page.next && page.items.empty()) return "empty page with a next cursor";
  if (page.next && !(*page.next == key_of(page.items.back())))
    return "next cursor " + describe(*page.next) + " is not the last row " + describe(key_of(page.items.back()));
  for (std::size_t i = 0; i < page.items.size(); ++i) {
    const auto& o = page.items[i];
    const auto k = key_of(o);
    if (o.id <= 0) return "non-positive id";
    if (o.reading.subject != q.subject) return "row of another subject";
    if (q.code && o.reading.code != *q.code) return "row of another code";
    if (q.from && o.reading.time < *q.from) return "row before `from`";
    if (q.to && !(o.reading.time < *q.to)) return "row at or after `to`";
    if (q.after && !key_less(*q.after, k)) return "row " + describe(k) + " not after the cursor " + describe(*q.after);
    if (i > 0 && !key_less(key_of(page.items[i - 1]), k))
      return "rows out of order: " + describe(key_of(page.items[i - 1])) + " then " + describe(k);
  }
  return "";
}

struct Walk {
  std::vector<storage::StoredObservation> items;
  std::size_t pages = 0;
  std::string problem;  // empty when every page was consistent
};

// Follows `next` cursors from q until a page has none. Safe to call from any thread.
Walk walk(storage::ObservationStore& store, storage::ObservationQuery q) {
  Walk w;
  for (;;) {
    auto page = store.search(q);
    if (!page) {
      w.problem = "search failed: " + page.error().to_string();
      return w;
    }
    ++w.pages;
    if (auto p = page_problem(q, *page); !p.empty()) {
      w.problem = "page " + std::to_string(w.pages) + ": " + p;
      return w;
    }
    auto continues = [&] {
      const auto a = key_of(w.items.back()), b = key_of(page->items.front());
      return q.descending ? key_less(b, a) : key_less(a, b);
    };
    if (!w.items.empty() && !page->items.empty() && !continues()) {
      w.problem = "page " + std::to_string(w.pages) + " does not continue after the previous one";
      return w;
    }
    std::move(page->items.begin(), page->items.end(), std::back_inserter(w.items));
    if (!page->next) return w;
    q.after = page->next;
  }
}

// A walk on the test thread over a store nobody writes to meanwhile: also pins that each page
// with a `next` cursor is full, i.e. holds the first `limit` rows after the cursor (fhir/src/
// router.cpp relies on that when it merges one query per code), so N rows take
// max(1, ceil(N / limit)) pages.
std::vector<storage::StoredObservation> walk_quiet(storage::ObservationStore& store, const storage::ObservationQuery& q) {
  auto w = walk(store, q);
  INFO("subject " << q.subject << ", limit " << q.limit);
  REQUIRE(w.problem.empty());
  const std::size_t n = w.items.size();
  CHECK(w.pages == std::max<std::size_t>(1, (n + q.limit - 1) / q.limit));
  return std::move(w.items);
}

storage::ObservationQuery query(const privacy::SubjectPseudonym& s, std::size_t limit = 1000) {
  storage::ObservationQuery q;
  q.subject = s.str();
  q.limit = limit;
  return q;
}

// What a query should return, from a model of stored readings: sorted fingerprints.
std::vector<std::string> expected(const std::vector<core::Reading>& model, const storage::ObservationQuery& q) {
  std::vector<core::Reading> out;
  for (const auto& r : model) {
    if (r.subject != q.subject) continue;
    if (q.code && r.code != *q.code) continue;
    if (q.from && r.time < *q.from) continue;
    if (q.to && !(r.time < *q.to)) continue;
    out.push_back(r);
  }
  return fingerprints(out);
}

// ---------------------------------------------------------------- child processes

int threads_in_this_process() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

// Kills and reaps a child on every path out of a test, so a failed REQUIRE leaves no orphan.
struct ChildGuard {
  pid_t pid = -1;
  ~ChildGuard() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

}  // namespace

// =====================================================================================
// 1. Idempotent append
// =====================================================================================

TEST_CASE("conformance: append is idempotent by (device, sequence), with windows, across a reopen, many devices interleaved",
          "[storage][conformance]") {
  const auto sd = seed();
  CAPTURE(sd);
  std::mt19937_64 rng(sd);
  testing::TempDir dir;
  const auto path = dir.path() / "telehub.db";

  // 40 devices on 5 subjects; each device sends sequences 1..25. Every message is offered once
  // or more, some copies with a different content hash (a conflict, or the stored one when it
  // comes first) and some with the same hash but other readings (a duplicate: the hash decides,
  // the first version stays). Every third device has a replay window of 8.
  constexpr int kDevices = 40, kSequences = 25;
  constexpr std::uint64_t kWindow = 8;
  struct Offer {
    int device;
    std::uint64_t seq;
    std::string hash;
    std::vector<core::Reading> readings;
  };
  std::vector<privacy::SubjectPseudonym> subjects;
  for (int i = 0; i < 5; ++i) subjects.push_back(subject("idem-" + std::to_string(i)));
  auto device_name = [](int d) { return "idem-dev-" + std::to_string(d); };
  double counter = 0;
  auto make_readings = [&](int d, std::uint64_t seq) {
    std::vector<core::Reading> rs;
    const auto n = uniform(rng, 1, 4);
    for (std::uint64_t i = 0; i < n; ++i)
      rs.push_back(value_reading("8867-4", 40 + (counter += 0.25), "/min",
                                 kT0 + static_cast<std::int64_t>(seq) * kMinute + static_cast<std::int64_t>(i) * 1000));
    for (auto& r : rs) {  // as search gives them back
      r.subject = subjects[d % subjects.size()].str();
      r.device = device_name(d);
      r.sequence = seq;
    }
    return rs;
  };
  std::vector<Offer> offers;
  for (int d = 0; d < kDevices; ++d)
    for (std::uint64_t seq = 1; seq <= kSequences; ++seq) {
      const std::string hash = "h-" + std::to_string(d) + "-" + std::to_string(seq);
      offers.push_back({d, seq, hash, make_readings(d, seq)});
      if (uniform(rng, 0, 1)) offers.push_back(offers.back());                             // resent as is
      if (uniform(rng, 0, 3) == 0) offers.push_back({d, seq, "x" + hash, make_readings(d, seq)});  // other bytes
      if (uniform(rng, 0, 5) == 0) offers.push_back({d, seq, hash, make_readings(d, seq)});  // same hash, other readings
    }
  std::shuffle(offers.begin(), offers.end(), rng);

  // The model: the first version stored per (device, sequence), the highest stored sequence.
  struct Stored {
    std::string hash;
    std::vector<core::Reading> readings;
  };
  std::map<std::pair<int, std::uint64_t>, Stored> stored;
  std::map<int, std::uint64_t> highest;
  std::map<AppendOutcome, int> want_tally, got_tally;
  int duplicate_below_window = 0;  // the duplicate check must come before the window check
  std::vector<std::string> mismatches;

  auto store = open_store(path);
  const std::size_t reopen_at = offers.size() / 2;
  for (std::size_t i = 0; i < offers.size(); ++i) {
    if (i == reopen_at) {
      store->close();
      auto closed = store->observations().append(
          message(subjects[0], device_name(0), 1, {value_reading("8867-4", 1, "/min", kT0)}));
      REQUIRE_FALSE(closed);
      CHECK(closed.error().code == core::Code::kUnavailable);
      CHECK(closed.error().reason == "closed");
      store.reset();
      store = open_store(path, /*sync_each_commit=*/false);  // durability setting must not change outcomes
    }
    const auto& o = offers[i];
    const auto key = std::pair(o.device, o.seq);
    const bool windowed = o.device % 3 == 0;
    AppendOutcome want;
    if (auto it = stored.find(key); it != stored.end()) {
      want = it->second.hash == o.hash ? AppendOutcome::kDuplicate : AppendOutcome::kConflict;
      if (windowed && highest[o.device] > o.seq + kWindow) ++duplicate_below_window;
    } else if (windowed && highest[o.device] > o.seq + kWindow) {
      want = AppendOutcome::kOutsideWindow;
    } else {
      want = AppendOutcome::kStored;
      stored[key] = {o.hash, o.readings};
      highest[o.device] = std::max(highest[o.device], o.seq);
    }
    auto b = message(subjects[o.device % subjects.size()], device_name(o.device), o.seq, o.readings, o.hash);
    if (windowed) b.sequence_window = kWindow;
    auto got = store->observations().append(std::move(b));
    REQUIRE(got);
    ++want_tally[want];
    ++got_tally[*got];
    if (*got != want && mismatches.size() < 10)
      mismatches.push_back("offer " + std::to_string(i) + " device " + std::to_string(o.device) + " seq " +
                           std::to_string(o.seq) + ": got " + std::to_string(static_cast<int>(*got)) + ", want " +
                           std::to_string(static_cast<int>(want)));
  }
  CAPTURE(mismatches);
  CHECK(mismatches.empty());
  CHECK(got_tally == want_tally);
  // The random offers really exercised every outcome.
  CHECK(want_tally[AppendOutcome::kStored] > 0);
  CHECK(want_tally[AppendOutcome::kDuplicate] > 0);
  CHECK(want_tally[AppendOutcome::kConflict] > 0);
  CHECK(want_tally[AppendOutcome::kOutsideWindow] > 0);
  CHECK(duplicate_below_window > 0);

  // Exactly the first stored version of each message, nothing of the others.
  std::vector<core::Reading> model;
  for (const auto& [key, s] : stored) model.insert(model.end(), s.readings.begin(), s.readings.end());
  store.reset();
  store = open_store(path);
  CHECK(must(store->observations().count()) == static_cast<std::int64_t>(model.size()));
  for (const auto& s : subjects) {
    auto q = query(s);
    CHECK(fingerprints(walk_quiet(store->observations(), q)) == expected(model, q));
  }

  // Racing writers: four threads offer the same 150 new messages, each in its own order. Each
  // message is stored exactly once; every other offer is a duplicate.
  constexpr int kRacers = 4, kRaceMessages = 150;
  std::vector<storage::MessageBatch> race;
  for (int m = 0; m < kRaceMessages; ++m) {
    const int d = m % 10;
    const auto seq = static_cast<std::uint64_t>(m / 10 + 1);
    race.push_back(message(subjects[d % subjects.size()], "race-" + std::to_string(d), seq,
                           {value_reading("59408-5", 90 + m * 0.01, "%", kT0 + m * kMinute)}));
  }
  std::vector<std::vector<AppendOutcome>> outcomes(kRacers, std::vector<AppendOutcome>(kRaceMessages));
  std::vector<std::string> race_errors(kRacers);
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < kRacers; ++t)
      threads.emplace_back([&, t] {
        std::vector<int> order(kRaceMessages);
        for (int m = 0; m < kRaceMessages; ++m) order[m] = m;
        std::mt19937_64 local(sd + 1 + t);
        std::shuffle(order.begin(), order.end(), local);
        for (int m : order) {
          auto r = store->observations().append(race[m]);
          if (!r) {
            race_errors[t] = r.error().to_string();
            return;
          }
          outcomes[t][m] = *r;
        }
      });
    for (auto& t : threads) t.join();
  }
  for (const auto& e : race_errors) CHECK(e.empty());
  int stored_once = 0;
  for (int m = 0; m < kRaceMessages; ++m) {
    int s = 0, d = 0;
    for (int t = 0; t < kRacers; ++t) {
      s += outcomes[t][m] == AppendOutcome::kStored;
      d += outcomes[t][m] == AppendOutcome::kDuplicate;
    }
    stored_once += s == 1 && d == kRacers - 1;
  }
  CHECK(stored_once == kRaceMessages);
  CHECK(must(store->observations().count()) == static_cast<std::int64_t>(model.size()) + kRaceMessages);
}

// =====================================================================================
// 2. Ordering, code filter and time bounds
// =====================================================================================

TEST_CASE("conformance: search returns a subject's readings by (effective time, id) whatever the arrival order, filtered by code and by from and to bounds",
          "[storage][conformance]") {
  const auto sd = seed();
  CAPTURE(sd);
  std::mt19937_64 rng(sd);
  testing::TempDir dir;
  auto store = open_store(dir.path() / "telehub.db");
  const auto a = subject("order-a"), b = subject("order-b");

  // 3,000 readings for subject a (three devices, five codes, a blood-pressure panel among them)
  // on 600 distinct minutes, so many share a timestamp; subject b has readings at the same
  // times. Readings are grouped into messages of 1..20 in random time order, and the messages
  // arrive shuffled across devices.
  struct Code {
    const char* code;
    const char* unit;
  };
  const Code codes[] = {{"8867-4", "/min"}, {"59408-5", "%"}, {"8310-5", "Cel"}, {"29463-7", "kg"}, {"85354-9", ""}};
  std::vector<core::Reading> model;
  std::vector<storage::MessageBatch> messages;
  double counter = 0;
  auto add_device = [&](const privacy::SubjectPseudonym& s, const std::string& device, int readings) {
    std::vector<core::Reading> rs;
    for (int i = 0; i < readings; ++i) {
      const auto& c = codes[uniform(rng, 0, 4)];
      const auto t = kT0 + static_cast<std::int64_t>(uniform(rng, 0, 599)) * kMinute;
      counter += 1;
      rs.push_back(std::string(c.code) == "85354-9" ? panel_reading(100 + counter / 64, 60 + counter / 128, t)
                                                    : value_reading(c.code, counter / 8, c.unit, t));
    }
    std::uint64_t seq = 0;
    for (std::size_t i = 0; i < rs.size();) {
      const auto n = std::min<std::size_t>(uniform(rng, 1, 20), rs.size() - i);
      messages.push_back(message(s, device, ++seq, {rs.begin() + i, rs.begin() + i + n}));
      i += n;
    }
  };
  add_device(a, "order-dev-1", 1200);
  add_device(a, "order-dev-2", 1000);
  add_device(a, "order-dev-3", 800);
  add_device(b, "order-dev-4", 500);
  // Extreme but valid effective times (0001-01-01T00:00:00.000Z, before the epoch,
  // 9999-12-31T23:59:59.999Z) sort where they belong.
  messages.push_back(message(a, "order-dev-5", 1,
                             {value_reading("8867-4", 61, "/min", -62'135'596'800'000),
                              value_reading("8867-4", 62, "/min", -1),
                              value_reading("8867-4", 63, "/min", 253'402'300'799'999)}));
  std::shuffle(messages.begin(), messages.end(), rng);
  for (auto& m : messages) {
    auto rs = readings_of(m);
    model.insert(model.end(), rs.begin(), rs.end());
    REQUIRE(must(store->observations().append(std::move(m))) == AppendOutcome::kStored);
  }

  SECTION("everything of a subject, in (time, id) order, nothing of another subject") {
    auto q = query(a);
    auto items = walk_quiet(store->observations(), q);
    CHECK(items.size() == 3003);
    CHECK(fingerprints(items) == expected(model, q));
    CHECK(core::to_unix_millis(items.front().reading.time) == -62'135'596'800'000);
    CHECK(core::to_unix_millis(items[1].reading.time) == -1);
    CHECK(core::to_unix_millis(items.back().reading.time) == 253'402'300'799'999);
    CHECK(fingerprints(walk_quiet(store->observations(), query(b))) == expected(model, query(b)));
  }

  SECTION("a code filter returns that code only, panels by the panel code with their components") {
    for (const auto& c : codes) {
      auto q = query(a);
      q.code = c.code;
      auto items = walk_quiet(store->observations(), q);
      CAPTURE(c.code);
      CHECK_FALSE(items.empty());
      CHECK(fingerprints(items) == expected(model, q));
    }
    auto panels = query(a);
    panels.code = "85354-9";
    for (const auto& o : walk_quiet(store->observations(), panels)) {
      REQUIRE(o.reading.components.size() == 2);
      CHECK(o.reading.components[0].code == "8480-6");
      CHECK(o.reading.components[1].code == "8462-4");
      CHECK_FALSE(o.reading.value);
    }
    // A component's own code does not find the panel; a code nobody sent finds nothing.
    auto component = query(a);
    component.code = "8480-6";
    CHECK(must(store->observations().search(component)).items.empty());
    auto unknown = query(a);
    unknown.code = "1234-5";
    CHECK(must(store->observations().search(unknown)).items.empty());
  }

  SECTION("from is inclusive, to exclusive, alone, together, with a code, and empty ranges") {
    auto at = [](std::int64_t minute) { return core::from_unix_millis(kT0 + minute * kMinute); };
    struct Range {
      std::optional<core::TimePoint> from, to;
      std::optional<std::string> code;
    };
    std::vector<Range> ranges = {
        {at(0), at(1), {}},                          // exactly the first minute
        {at(10), at(10), {}},                        // from == to: empty
        {at(20), at(10), {}},                        // to before from: empty
        {at(300), {}, {}},                           // from only
        {{}, at(300), {}},                           // to only
        {at(300) + 1ms, at(301), {}},                // just after a timestamp: nothing until the next
        {at(299), at(300) - 1ms, "8867-4"},          // a code and a range
        {at(-100), at(0), {}},                       // before all of the minute grid (only the extremes)
        {at(600), at(700), {}},                      // after all of it: empty
        {core::from_unix_millis(-1), core::from_unix_millis(0), {}},  // the one reading at -1 ms
    };
    for (int i = 0; i < 60; ++i) {
      const auto x = static_cast<std::int64_t>(uniform(rng, 0, 600)), y = static_cast<std::int64_t>(uniform(rng, 0, 600));
      ranges.push_back({at(std::min(x, y)) + std::chrono::milliseconds(uniform(rng, 0, 1)), at(std::max(x, y)),
                        uniform(rng, 0, 2) == 0 ? std::optional<std::string>(codes[uniform(rng, 0, 4)].code)
                                                : std::nullopt});
    }
    int empty = 0, non_empty = 0;
    for (const auto& r : ranges) {
      auto q = query(a, 1000);
      q.from = r.from;
      q.to = r.to;
      q.code = r.code;
      CAPTURE(r.from ? core::to_unix_millis(*r.from) : 0, r.to ? core::to_unix_millis(*r.to) : 0, r.code.value_or(""));
      auto items = walk_quiet(store->observations(), q);
      CHECK(fingerprints(items) == expected(model, q));
      (items.empty() ? empty : non_empty) += 1;
    }
    CHECK(empty >= 4);
    CHECK(non_empty >= 50);
  }

  SECTION("an unknown subject yields an empty page") {
    auto page = must(store->observations().search(query(subject("order-nobody"))));
    CHECK(page.items.empty());
    CHECK_FALSE(page.next);
  }
}

// =====================================================================================
// 3. Keyset paging
// =====================================================================================

TEST_CASE("conformance: keyset paging walks every row once with limits 1, 7 and 1000, also while rows are appended between pages",
          "[storage][conformance]") {
  const auto sd = seed();
  CAPTURE(sd);
  std::mt19937_64 rng(sd);
  testing::TempDir dir;
  auto store = open_store(dir.path() / "telehub.db", /*sync_each_commit=*/false);

  // 2,500 readings on a minute grid with clusters of up to 40 readings at the same instant, so
  // page boundaries fall inside runs of equal timestamps.
  auto fill = [&](const privacy::SubjectPseudonym& s, const std::string& device) {
    std::vector<core::Reading> model;
    std::vector<core::Reading> rs;
    std::int64_t minute = 0;
    while (rs.size() < 2500) {
      const auto cluster = uniform(rng, 0, 3) == 0 ? uniform(rng, 2, 40) : 1;
      for (std::uint64_t i = 0; i < cluster && rs.size() < 2500; ++i)
        rs.push_back(value_reading("8867-4", 50 + static_cast<double>(rs.size()) / 16, "/min", kT0 + minute * kMinute));
      ++minute;
    }
    std::shuffle(rs.begin(), rs.end(), rng);
    std::uint64_t seq = 0;
    for (std::size_t i = 0; i < rs.size(); i += 50) {
      auto m = message(s, device, ++seq, {rs.begin() + i, rs.begin() + std::min(i + 50, rs.size())});
      auto got = readings_of(m);
      model.insert(model.end(), got.begin(), got.end());
      REQUIRE(must(store->observations().append(std::move(m))) == AppendOutcome::kStored);
    }
    return std::pair(model, seq);
  };

  SECTION("a quiet store: every limit visits the same rows in the same order") {
    const auto s = subject("paging-quiet");
    const auto model = fill(s, "paging-dev").first;
    const auto reference = walk_quiet(store->observations(), query(s, 1000));
    REQUIRE(fingerprints(reference) == expected(model, query(s)));
    for (std::size_t limit : {1, 7, 1000}) {
      CAPTURE(limit);
      const auto items = walk_quiet(store->observations(), query(s, limit));
      REQUIRE(items.size() == reference.size());
      bool same = true;
      for (std::size_t i = 0; i < items.size(); ++i) same = same && items[i].id == reference[i].id;
      CHECK(same);
      // Paging inside a range with a code: the same rows as one big page.
      auto ranged = query(s, limit);
      ranged.from = core::from_unix_millis(kT0 + 100 * kMinute);
      ranged.to = core::from_unix_millis(kT0 + 400 * kMinute);
      ranged.code = "8867-4";
      CHECK(fingerprints(walk_quiet(store->observations(), ranged)) == expected(model, ranged));
    }
    // Newest first (FHIR _sort=-date): the same rows in exactly the reverse order, for every
    // limit, also inside a range with a code.
    for (std::size_t limit : {1, 7, 1000}) {
      CAPTURE(limit);
      auto desc = query(s, limit);
      desc.descending = true;
      const auto items = walk_quiet(store->observations(), desc);
      REQUIRE(items.size() == reference.size());
      bool reversed = true;
      for (std::size_t i = 0; i < items.size(); ++i) reversed = reversed && items[i].id == reference[reference.size() - 1 - i].id;
      CHECK(reversed);
      auto ranged = desc;
      ranged.from = core::from_unix_millis(kT0 + 100 * kMinute);
      ranged.to = core::from_unix_millis(kT0 + 400 * kMinute);
      ranged.code = "8867-4";
      // (walk_quiet checks the order; fingerprints() sorts, so this compares the rows.)
      CHECK(fingerprints(walk_quiet(store->observations(), ranged)) == expected(model, ranged));
    }
    // A cursor past the last row, and limits outside 1..1000.
    auto past = query(s);
    past.after = key_of(reference.back());
    auto page = must(store->observations().search(past));
    CHECK(page.items.empty());
    CHECK_FALSE(page.next);
    for (std::size_t bad : {std::size_t{0}, std::size_t{1001}}) {
      auto q = query(s, bad);
      auto r = store->observations().search(q);
      REQUIRE_FALSE(r);
      CHECK(r.error().code == core::Code::kInvalidArgument);
    }
  }

  // What is guaranteed while rows are appended between pages:
  //  - every row that existed when paging started and matches is returned exactly once;
  //  - a row added meanwhile is returned if and only if its (time, id) sorts after the cursor
  //    that was current when it was added (the `next` of the page read last), and then exactly
  //    once; so a reading later than the cursor is always picked up, one earlier than the
  //    cursor never (it would be found by a new search);
  //  - the rows returned, across pages, are strictly ascending by (time, id).
  // Whether a row added at exactly the cursor's time sorts after it depends on the id the store
  // gives it; the test uses the id the store reports, so it holds either way.
  SECTION("rows appended between pages: earlier, at the cursor's time, later, and after everything") {
    for (std::size_t limit : {1, 7, 1000}) {
      CAPTURE(limit);
      const auto s = subject("paging-live-" + std::to_string(limit));
      const std::string device = "paging-live-dev-" + std::to_string(limit);
      auto [model, seq] = fill(s, device);
      std::set<std::int64_t> before_ids;
      for (const auto& o : walk_quiet(store->observations(), query(s))) before_ids.insert(o.id);

      struct Added {
        std::string fp;
        storage::Cursor cursor;  // current when it was added
      };
      std::vector<Added> added;
      std::vector<storage::StoredObservation> seen;
      auto q = query(s, limit);
      double v = 1000;
      // Rows are added after each of the first 40 pages only, so the walk ends.
      for (int page_no = 0;; ++page_no) {
        auto page = must(store->observations().search(q));
        INFO("page " << page_no);
        REQUIRE(page_problem(q, page).empty());
        seen.insert(seen.end(), page.items.begin(), page.items.end());
        if (!page.next) break;
        q.after = page.next;
        if (page_no < 40) {
          const auto c = *page.next;
          std::vector<core::Reading> rs = {
              value_reading("8867-4", v += 1, "/min", c.time_ms - kMinute),                   // earlier
              value_reading("8867-4", v += 1, "/min", kT0 - kMinute),                         // before everything
              value_reading("8867-4", v += 1, "/min", c.time_ms),                             // at the cursor's time
              value_reading("8867-4", v += 1, "/min", c.time_ms + static_cast<std::int64_t>(uniform(rng, 1, 200)) * kMinute),
              value_reading("8867-4", v += 1, "/min", kT0 + 100'000 * kMinute),               // after everything
          };
          auto m = message(s, device, ++seq, rs);
          for (const auto& r : readings_of(m)) added.push_back({fingerprint(r), c});
          REQUIRE(must(store->observations().append(std::move(m))) == AppendOutcome::kStored);
        }
      }
      // The final state tells each added row's id.
      std::unordered_map<std::string, storage::Cursor> key_by_fp;
      for (const auto& o : walk_quiet(store->observations(), query(s))) key_by_fp[fingerprint(o.reading)] = key_of(o);

      std::set<std::int64_t> seen_ids;
      bool ascending = true;
      for (std::size_t i = 0; i < seen.size(); ++i) {
        seen_ids.insert(seen[i].id);
        if (i > 0 && !key_less(key_of(seen[i - 1]), key_of(seen[i]))) ascending = false;
      }
      CHECK(ascending);
      CHECK(seen_ids.size() == seen.size());  // nothing repeated
      CHECK(std::includes(seen_ids.begin(), seen_ids.end(), before_ids.begin(), before_ids.end()));  // nothing skipped
      int picked_up = 0, not_picked_up = 0, wrong = 0;
      for (const auto& a : added) {
        REQUIRE(key_by_fp.count(a.fp) == 1);
        const auto k = key_by_fp[a.fp];
        const bool want = key_less(a.cursor, k);
        const bool got = seen_ids.count(k.id) == 1;
        wrong += want != got;
        (got ? picked_up : not_picked_up) += 1;
      }
      CHECK(wrong == 0);
      if (limit < 1000) {  // with 1000, the 2,500 rows take three pages: still rows added
        CHECK(picked_up > 0);
        CHECK(not_picked_up > 0);
      }
      CHECK(seen.size() == before_ids.size() + static_cast<std::size_t>(picked_up));
    }
  }
}

// =====================================================================================
// 4. get(id)
// =====================================================================================

TEST_CASE("conformance: get(id) returns exactly what search returned, ids are stable across reopening, unknown ids give nothing",
          "[storage][conformance]") {
  const auto sd = seed();
  CAPTURE(sd);
  std::mt19937_64 rng(sd);
  testing::TempDir dir;
  const auto path = dir.path() / "telehub.db";
  auto store = open_store(path);
  std::vector<privacy::SubjectPseudonym> subjects = {subject("get-a"), subject("get-b"), subject("get-c")};
  std::vector<core::Reading> model;
  std::map<std::pair<std::string, std::uint64_t>, std::int64_t> received;  // (device, seq) -> received_ms

  auto append_some = [&](int round) {
    for (int m = 0; m < 60; ++m) {
      const auto& s = subjects[m % 3];
      const std::string device = "get-dev-" + std::to_string(m % 6);
      const auto seq = static_cast<std::uint64_t>(round * 100 + m + 1);
      std::vector<core::Reading> rs;
      const auto t = kT0 + static_cast<std::int64_t>(uniform(rng, 0, 10'000)) * 1000 + m;
      // Values of every kind: integral, fractional, random bit patterns; panels with random components.
      rs.push_back(value_reading("8867-4", static_cast<double>(uniform(rng, 30, 200)), "/min", t));
      rs.push_back(value_reading("8310-5", 36.6 + m * 0.01, "Cel", t + 1));
      rs.push_back(value_reading("29463-7", random_finite(rng), "kg", t + 2));
      rs.push_back(panel_reading(random_finite(rng), 80.25, t + 3));
      const auto received_ms = 1'800'000'000'000 + static_cast<std::int64_t>(seq) * 1001;
      auto b = message(s, device, seq, rs, {}, received_ms);
      received[{device, seq}] = received_ms;
      auto got = readings_of(b);
      model.insert(model.end(), got.begin(), got.end());
      REQUIRE(must(store->observations().append(std::move(b))) == AppendOutcome::kStored);
    }
  };
  append_some(0);
  // The store fills device and sequence from the message, whatever the readings carried.
  {
    auto b = message(subjects[0], "get-dev-x", 7, {value_reading("8867-4", 70, "/min", kT0)});
    core::Reading bare = value_reading("8867-4", 71, "/min", kT0 + 1);  // device "", sequence 0
    b.readings.push_back(privacy::PseudonymousReading::bind(bare, subjects[0]));
    received[{"get-dev-x", 7}] = 1'800'000'000'000;
    bare.device = "get-dev-x";
    bare.sequence = 7;
    bare.subject = subjects[0].str();
    model.push_back(b.readings[0].reading());
    model.push_back(bare);
    REQUIRE(must(store->observations().append(std::move(b))) == AppendOutcome::kStored);
  }

  auto snapshot = [&] {
    std::vector<storage::StoredObservation> all;
    for (const auto& s : subjects) {
      auto items = walk_quiet(store->observations(), query(s, 7));
      CHECK(fingerprints(items) == expected(model, query(s)));
      all.insert(all.end(), items.begin(), items.end());
    }
    return all;
  };
  auto check_get = [&](const std::vector<storage::StoredObservation>& all) {
    int differ = 0;
    for (const auto& o : all) {
      auto got = must(store->observations().get(o.id));
      if (!got || got->id != o.id || fingerprint(got->reading) != fingerprint(o.reading) || !(got->reading == o.reading) ||
          got->received_at != o.received_at)
        ++differ;
      if (core::to_unix_millis(o.received_at) != received.at({o.reading.device, o.reading.sequence})) ++differ;
    }
    CHECK(differ == 0);
  };

  const auto first = snapshot();
  std::set<std::int64_t> ids;
  for (const auto& o : first) ids.insert(o.id);
  CHECK(ids.size() == first.size());  // unique across subjects
  CHECK(*ids.begin() > 0);
  check_get(first);

  store.reset();
  store = open_store(path, /*sync_each_commit=*/false);
  const auto second = snapshot();
  REQUIRE(second.size() == first.size());
  int moved = 0;
  for (std::size_t i = 0; i < first.size(); ++i)
    moved += second[i].id != first[i].id || fingerprint(second[i].reading) != fingerprint(first[i].reading) ||
             second[i].received_at != first[i].received_at;
  CHECK(moved == 0);
  check_get(second);

  // New rows after the reopen get new ids; the old ones still read the same.
  append_some(1);
  const auto third = snapshot();
  std::set<std::int64_t> third_ids;
  for (const auto& o : third) third_ids.insert(o.id);
  CHECK(third_ids.size() == third.size());
  CHECK(std::includes(third_ids.begin(), third_ids.end(), ids.begin(), ids.end()));
  check_get(first);
  check_get(third);

  for (std::int64_t unknown : {std::int64_t{0}, std::int64_t{-1}, *third_ids.rbegin() + 1, INT64_MAX, INT64_MIN}) {
    CAPTURE(unknown);
    CHECK_FALSE(must(store->observations().get(unknown)).has_value());
  }
}

// =====================================================================================
// 5. Reads while writing
// =====================================================================================

TEST_CASE("conformance: readers see consistent pages while a writer appends 20,000 readings", "[storage][conformance]") {
  const auto sd = seed();
  CAPTURE(sd);
  std::mt19937_64 rng(sd);
  testing::TempDir dir;
  auto store = open_store(dir.path() / "telehub.db", /*sync_each_commit=*/false);
  const auto s = subject("rw");
  const std::string codes[] = {"8867-4", "59408-5"};
  const std::string units[] = {"/min", "%"};

  // Messages of 1..60 readings on consecutive minutes from a random start within 5,000 minutes,
  // from two devices, one code per message; in arrival order, starts are random.
  constexpr std::size_t kTotal = 20'000;
  constexpr std::int64_t kMinutes = 5'000;
  std::vector<storage::MessageBatch> messages;
  std::vector<int> message_code;
  std::unordered_set<std::string> known;  // every reading's fingerprint
  std::map<std::pair<std::string, std::uint64_t>, std::vector<std::int64_t>> times_of;  // message -> reading times
  std::vector<core::Reading> model;
  {
    std::size_t n = 0;
    std::uint64_t seq[2] = {0, 0};
    double v = 0;
    while (n < kTotal) {
      const auto size = std::min<std::size_t>(uniform(rng, 1, 60), kTotal - n);
      const int dev = static_cast<int>(uniform(rng, 0, 1)), code = static_cast<int>(uniform(rng, 0, 1));
      const auto start = static_cast<std::int64_t>(uniform(rng, 0, kMinutes - 1));
      std::vector<core::Reading> rs;
      for (std::size_t i = 0; i < size; ++i)
        rs.push_back(value_reading(codes[code], v += 0.5, units[code], kT0 + (start + static_cast<std::int64_t>(i)) * kMinute));
      auto m = message(s, "rw-dev-" + std::to_string(dev), ++seq[dev], rs);
      for (const auto& r : readings_of(m)) {
        known.insert(fingerprint(r));
        times_of[{m.device_id, m.sequence}].push_back(core::to_unix_millis(r.time));
        model.push_back(r);
      }
      messages.push_back(std::move(m));
      message_code.push_back(code);
      n += size;
    }
  }
  // Narrow ranges that hold at most 1,000 rows at the end, read as one page each.
  struct Fixed {
    std::int64_t from_ms, to_ms;
  };
  std::vector<Fixed> fixed;
  for (std::int64_t start : {0, 1000, 2500, 4900}) {
    std::int64_t width = 150;
    for (;;) {
      auto q = query(s);
      q.from = core::from_unix_millis(kT0 + start * kMinute);
      q.to = core::from_unix_millis(kT0 + (start + width) * kMinute);
      if (expected(model, q).size() <= 1000) break;
      width /= 2;
    }
    fixed.push_back({kT0 + start * kMinute, kT0 + (start + width) * kMinute});
  }

  std::atomic<bool> writer_done{false};
  std::atomic<std::size_t> committed{0};
  std::atomic<std::size_t> committed_by_code[2] = {0, 0};
  std::mutex problems_mutex;
  std::vector<std::string> problems;
  auto problem = [&](std::string p) {
    std::lock_guard lock(problems_mutex);
    if (problems.size() < 20) problems.push_back(std::move(p));
  };
  std::atomic<int> reads_during_write{0};

  std::thread writer([&] {
    for (std::size_t i = 0; i < messages.size(); ++i) {
      const auto n = messages[i].readings.size();
      auto r = store->observations().append(messages[i]);
      if (!r || *r != AppendOutcome::kStored) {
        problem(r ? "append not stored" : "append failed: " + r.error().to_string());
        break;
      }
      committed_by_code[message_code[i]].fetch_add(n);
      committed.fetch_add(n);
    }
    writer_done = true;
  });

  auto reader = [&](int id) {
    std::mt19937_64 local(sd + 100 + id);
    std::vector<std::size_t> last_fixed(fixed.size(), 0);
    std::size_t last_full = 0;
    std::int64_t last_count = 0;
    for (bool last_round = false;;) {
      const bool done_before = writer_done.load();
      switch (uniform(local, 0, 3)) {
        case 0: {  // count(): never decreases, never below what has been committed
          const auto c0 = committed.load();
          auto c = store->observations().count();
          if (!c) return problem("count failed: " + c.error().to_string());
          if (*c < last_count) problem("count decreased");
          if (*c < static_cast<std::int64_t>(c0)) problem("count below the committed readings");
          last_count = *c;
          break;
        }
        case 1: {  // one page over a narrow range: consistent, growing, whole messages only
          const auto f = uniform(local, 0, fixed.size() - 1);
          auto q = query(s);
          q.from = core::from_unix_millis(fixed[f].from_ms);
          q.to = core::from_unix_millis(fixed[f].to_ms);
          auto page = store->observations().search(q);
          if (!page) return problem("search failed: " + page.error().to_string());
          if (auto p = page_problem(q, *page); !p.empty()) problem("fixed range: " + p);
          if (page->next) problem("fixed range needs more than one page");
          if (page->items.size() < last_fixed[f]) problem("a range shrank between two reads");
          last_fixed[f] = page->items.size();
          std::map<std::pair<std::string, std::uint64_t>, std::size_t> per_message;
          for (const auto& o : page->items) {
            if (!known.count(fingerprint(o.reading))) problem("a reading nobody wrote");
            ++per_message[{o.reading.device, o.reading.sequence}];
          }
          for (const auto& [m, n] : per_message) {
            const auto& ts = times_of.at(m);
            const auto in_range = static_cast<std::size_t>(std::count_if(
                ts.begin(), ts.end(), [&](std::int64_t t) { return t >= fixed[f].from_ms && t < fixed[f].to_ms; }));
            if (n != in_range) problem("part of a message visible in one page");
          }
          if (!done_before && !page->items.empty() && !writer_done) ++reads_during_write;
          if (!page->items.empty()) {  // get() agrees with search
            const auto& o = page->items[uniform(local, 0, page->items.size() - 1)];
            auto got = store->observations().get(o.id);
            if (!got || !*got || fingerprint((*got)->reading) != fingerprint(o.reading)) problem("get differs from search");
          }
          break;
        }
        default: {  // a paged walk over everything or one code: every committed row, no repeats
          const int code = static_cast<int>(uniform(local, 0, 2));
          auto q = query(s, uniform(local, 0, 1) ? 1000 : 97);
          if (code < 2) q.code = codes[code];
          const auto c0 = code < 2 ? committed_by_code[code].load() : committed.load();
          auto w = walk(store->observations(), q);
          if (!w.problem.empty()) problem("walk: " + w.problem);
          std::unordered_set<std::int64_t> ids;
          for (const auto& o : w.items) {
            if (!ids.insert(o.id).second) problem("a row twice in one walk");
            if (!known.count(fingerprint(o.reading))) problem("a reading nobody wrote");
          }
          if (w.items.size() < c0) problem("a walk missed committed readings");
          if (code == 2) {
            if (w.items.size() < last_full) problem("a full walk shrank");
            last_full = w.items.size();
          }
          if (!done_before && !writer_done && w.items.size() < kTotal) ++reads_during_write;
          break;
        }
      }
      if (last_round) return;
      if (writer_done) last_round = true;  // one more round after the writer finished
    }
  };
  std::vector<std::thread> readers;
  for (int i = 0; i < 3; ++i) readers.emplace_back(reader, i);
  writer.join();
  for (auto& t : readers) t.join();

  CAPTURE(problems);
  CHECK(problems.empty());
  CHECK(reads_during_write > 0);  // the readers really overlapped the writer
  CHECK(committed == kTotal);
  CHECK(must(store->observations().count()) == static_cast<std::int64_t>(kTotal));
  auto all = walk_quiet(store->observations(), query(s));
  CHECK(fingerprints(all) == expected(model, query(s)));
}

// =====================================================================================
// 6. A long regular series
// =====================================================================================

TEST_CASE("conformance: a long minute series reads back completely and exactly by paging, and by a range in the middle",
          "[storage][conformance]") {
  const auto points = env_or("TELEHUB_CONFORMANCE_POINTS", 50'000);
  REQUIRE(points >= 100);
  CAPTURE(points);
  const auto sd = seed();
  CAPTURE(sd);
  std::mt19937_64 rng(sd);
  testing::TempDir dir;
  auto store = open_store(dir.path() / "telehub.db", /*sync_each_commit=*/false);
  const auto s = subject("series"), other = subject("series-other");

  // A wearable's hourly upload: 60 heart-rate readings a message, one a minute. Half of the
  // values are plausible, half random bit patterns (all finite). Another subject's hourly
  // readings are interleaved and must not show up.
  std::vector<double> values(static_cast<std::size_t>(points));
  for (std::size_t i = 0; i < values.size(); ++i)
    values[i] = i % 2 ? random_finite(rng) : 55 + static_cast<double>(uniform(rng, 0, 4000)) / 100;
  auto t_of = [](std::int64_t i) { return kT0 + i * kMinute; };
  std::uint64_t seq = 0;
  for (std::int64_t i = 0; i < points; i += 60) {
    std::vector<core::Reading> rs;
    for (std::int64_t j = i; j < std::min<std::int64_t>(i + 60, points); ++j)
      rs.push_back(value_reading("8867-4", values[static_cast<std::size_t>(j)], "/min", t_of(j)));
    REQUIRE(must(store->observations().append(message(s, "series-dev", ++seq, rs))) == AppendOutcome::kStored);
    REQUIRE(must(store->observations().append(
                message(other, "series-other-dev", seq, {value_reading("8867-4", 70, "/min", t_of(i) + 30'000)}))) ==
            AppendOutcome::kStored);
  }

  auto check_points = [&](const std::vector<storage::StoredObservation>& items, std::int64_t first) {
    std::int64_t bad = 0, first_bad = -1;
    for (std::size_t k = 0; k < items.size(); ++k) {
      const auto i = first + static_cast<std::int64_t>(k);
      const auto& r = items[k].reading;
      const bool ok = r.value && std::bit_cast<std::uint64_t>(*r.value) == std::bit_cast<std::uint64_t>(values[i]) &&
                      core::to_unix_millis(r.time) == t_of(i) && r.code == "8867-4" && r.unit == "/min" &&
                      r.device == "series-dev" && r.sequence == static_cast<std::uint64_t>(i / 60 + 1) &&
                      r.subject == s.str() && r.components.empty();
      if (!ok && bad++ == 0) first_bad = i;
    }
    CAPTURE(first_bad);
    CHECK(bad == 0);
  };

  const auto started = std::chrono::steady_clock::now();
  const auto all = walk_quiet(store->observations(), query(s, 1000));
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  REQUIRE(all.size() == static_cast<std::size_t>(points));
  check_points(all, 0);
  INFO("read " << points << " points in " << elapsed.count() << " ms");
  SUCCEED();

  // The middle third: `from` 1 ms after a point (so the next one is first), `to` exactly on a
  // point (excluded).
  const auto lo = points / 3, hi = 2 * points / 3;
  auto mid = query(s, 1000);
  mid.from = core::from_unix_millis(t_of(lo) + 1);
  mid.to = core::from_unix_millis(t_of(hi));
  const auto middle = walk_quiet(store->observations(), mid);
  REQUIRE(middle.size() == static_cast<std::size_t>(hi - lo - 1));
  check_points(middle, lo + 1);
  // One point exactly, and a tail running past the end.
  auto one = query(s, 1000);
  one.from = core::from_unix_millis(t_of(lo));
  one.to = core::from_unix_millis(t_of(lo) + 1);
  const auto single = walk_quiet(store->observations(), one);
  REQUIRE(single.size() == 1);
  check_points(single, lo);
  auto tail = query(s, 1000);
  tail.from = core::from_unix_millis(t_of(points - 10));
  tail.to = core::from_unix_millis(t_of(points + 1000));
  const auto end = walk_quiet(store->observations(), tail);
  REQUIRE(end.size() == 10);
  check_points(end, points - 10);
  CHECK(walk_quiet(store->observations(), query(other)).size() == static_cast<std::size_t>(seq));
}

// Keyset paging is only worth its name if the store seeks to the cursor: a page deep into a
// long series must cost about what the first page costs, whatever the `from` bound. (Paging a
// patient-year with a cost that grows with the position takes seconds; [3/8]'s target is
// 100 ms.) Timed, so it compares medians of interleaved runs with a wide margin: a store that
// rescans from the start of the range is about 100 times slower deep in 200,000 rows.
TEST_CASE("conformance: a page deep into a long series costs about what the first page costs", "[storage][conformance]") {
  testing::TempDir dir;
  auto store = open_store(dir.path() / "telehub.db", /*sync_each_commit=*/false);
  const auto s = subject("deep");
  constexpr std::int64_t kPoints = 200'000;
  for (std::int64_t i = 0; i < kPoints; i += 1000) {
    std::vector<core::Reading> rs;
    for (std::int64_t j = i; j < i + 1000; ++j) rs.push_back(value_reading("8867-4", 60, "/min", kT0 + j * kMinute));
    REQUIRE(must(store->observations().append(message(s, "deep-dev", static_cast<std::uint64_t>(i / 1000 + 1), rs))) ==
            AppendOutcome::kStored);
  }
  // The cursor of the row at minute i, found by a one-row range (which seeks by `from`).
  auto cursor_at = [&](std::int64_t i) {
    auto q = query(s);
    q.from = core::from_unix_millis(kT0 + i * kMinute);
    q.to = core::from_unix_millis(kT0 + i * kMinute + 1);
    auto page = must(store->observations().search(q));
    REQUIRE(page.items.size() == 1);
    return key_of(page.items[0]);
  };
  const auto shallow = cursor_at(10), deep = cursor_at(kPoints - 20);
  for (const bool with_code : {false, true}) {
    for (const bool with_from : {false, true}) {
      CAPTURE(with_code, with_from);
      auto q = query(s, 10);
      if (with_code) q.code = "8867-4";
      if (with_from) q.from = core::from_unix_millis(kT0);
      auto time_page = [&](const storage::Cursor& after, std::int64_t first_minute) {
        q.after = after;
        const auto t0 = std::chrono::steady_clock::now();
        auto page = must(store->observations().search(q));
        const auto t1 = std::chrono::steady_clock::now();
        REQUIRE(page.items.size() == 10);
        CHECK(core::to_unix_millis(page.items[0].reading.time) == kT0 + first_minute * kMinute);
        return std::chrono::duration<double, std::milli>(t1 - t0).count();
      };
      std::vector<double> first, deeper;
      for (int i = 0; i < 21; ++i) {
        first.push_back(time_page(shallow, 11));
        deeper.push_back(time_page(deep, kPoints - 19));
      }
      std::nth_element(first.begin(), first.begin() + 10, first.end());
      std::nth_element(deeper.begin(), deeper.begin() + 10, deeper.end());
      CAPTURE(first[10], deeper[10]);
      // The absolute slack keeps scheduler noise out; a rescan costs ~13 ms here, ~0.02 ms a seek.
      CHECK(deeper[10] < 5 * first[10] + 5.0);  // milliseconds
    }
  }
}

TEST_CASE("conformance: a reading of -0.0 reads back as zero", "[storage][conformance]") {
  // Today -0.0 comes back as +0.0: SQLite stores a REAL without fractional part as an
  // integer, so the sign of a zero is lost (ingest accepts "-0" from a device; as a number it
  // is equal). The sign is deliberately not pinned, so a layout that keeps it passes; the
  // value is.
  testing::TempDir dir;
  auto store = open_store(dir.path() / "telehub.db");
  const auto s = subject("zero");
  REQUIRE(must(store->observations().append(message(s, "zero-dev", 1, {value_reading("29463-7", -0.0, "kg", kT0)}))) ==
          AppendOutcome::kStored);
  const auto items = walk_quiet(store->observations(), query(s));
  REQUIRE(items.size() == 1);
  REQUIRE(items[0].reading.value);
  CHECK(*items[0].reading.value == 0.0);
}

// =====================================================================================
// 7 and 8. Boundaries and crashes
// =====================================================================================

// Today the store has no compaction: readings go into one table as they are committed. The
// boundaries a range read can cross today are those between commits, group commits (several
// messages in one transaction), messages that arrive late for a span already stored (a
// gateway's outbox backfilling), and close/reopen. This test builds data across all of them
// and reads ranges that start, end and straddle each. Once compaction exists, it should also
// compact at each segment boundary below (some data in compacted chunks, the rest still in the
// log), including after the backfill into an already compacted span.
TEST_CASE("conformance: range reads spanning commits, group commits, backfill and reopens return each reading once, in order",
          "[storage][conformance]") {
  const auto sd = seed();
  CAPTURE(sd);
  std::mt19937_64 rng(sd);
  testing::TempDir dir;
  const auto path = dir.path() / "telehub.db";
  const auto s = subject("segments");
  std::vector<core::Reading> model;
  double v = 0;
  auto at = [](std::int64_t minute) { return kT0 + minute * kMinute; };
  auto one = [&](std::int64_t t) { return value_reading("8867-4", v += 0.125, "/min", t); };
  auto append = [&](storage::Store& store, storage::MessageBatch b) {
    auto rs = readings_of(b);
    REQUIRE(must(store.observations().append(std::move(b))) == AppendOutcome::kStored);
    model.insert(model.end(), rs.begin(), rs.end());
  };

  {
    // A: minutes 0..999, even ones, one commit per message of one reading (fsync each).
    auto store = open_store(path);
    for (std::int64_t m = 0; m < 1000; m += 2) append(*store, message(s, "seg-a", static_cast<std::uint64_t>(m + 1), {one(at(m))}));
    // B: minutes 1000..2999 in messages of 60 from four threads at once, so the writer groups
    // several messages into one transaction.
    std::vector<storage::MessageBatch> bs;
    for (std::int64_t m = 1000; m < 3000; m += 60) {
      std::vector<core::Reading> rs;
      for (std::int64_t k = m; k < std::min<std::int64_t>(m + 60, 3000); ++k) rs.push_back(one(at(k)));
      bs.push_back(message(s, "seg-b-" + std::to_string((m / 60) % 4), static_cast<std::uint64_t>(m), rs));
    }
    for (const auto& b : bs) {
      auto rs = readings_of(b);
      model.insert(model.end(), rs.begin(), rs.end());
    }
    std::vector<std::string> errors(4);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&, t] {
        for (std::size_t i = static_cast<std::size_t>(t); i < bs.size(); i += 4) {
          auto r = store->observations().append(bs[i]);
          if (!r || *r != AppendOutcome::kStored) errors[t] = r ? "not stored" : r.error().to_string();
        }
      });
    for (auto& t : threads) t.join();
    for (const auto& e : errors) CHECK(e.empty());
  }
  {
    // C, after a reopen with one message per transaction and deferred sync: backfill of the odd
    // minutes 1..999 (late, in random order, in messages of 1..30), then minutes 3000..3499.
    auto store = open_store(path, /*sync_each_commit=*/false, /*max_batch_messages=*/1);
    std::vector<std::int64_t> odd;
    for (std::int64_t m = 1; m < 1000; m += 2) odd.push_back(m);
    std::shuffle(odd.begin(), odd.end(), rng);
    std::uint64_t seq = 0;
    for (std::size_t i = 0; i < odd.size();) {
      const auto n = std::min<std::size_t>(uniform(rng, 1, 30), odd.size() - i);
      std::vector<core::Reading> rs;
      for (std::size_t k = i; k < i + n; ++k) rs.push_back(one(at(odd[k])));
      append(*store, message(s, "seg-c", ++seq, rs));
      i += n;
    }
    for (std::int64_t m = 3000; m < 3500; m += 10) {
      std::vector<core::Reading> rs;
      for (std::int64_t k = m; k < m + 10; ++k) rs.push_back(one(at(k)));
      append(*store, message(s, "seg-c", ++seq, rs));
    }
    REQUIRE(store->sync());
  }
  {
    // D, after another reopen: readings at exactly the times of every 50th minute (equal
    // timestamps across segments), and at the segment edges.
    auto store = open_store(path);
    std::uint64_t seq = 0;
    for (std::int64_t m = 0; m < 3500; m += 50) append(*store, message(s, "seg-d", ++seq, {one(at(m)), one(at(m) + 1)}));
    for (std::int64_t m : {999, 1000, 2999, 3000, 3499})
      append(*store, message(s, "seg-d", ++seq, {one(at(m))}));
  }

  auto store = open_store(path);
  const auto all = walk_quiet(store->observations(), query(s));
  REQUIRE(all.size() == model.size());
  CHECK(fingerprints(all) == expected(model, query(s)));

  // Ranges that start, end or straddle each segment edge, by 0, 1 ms, 1 minute, 17 minutes
  // and 500 minutes, paged with limits 1, 7 and 1000 in turn; then random ranges.
  const std::int64_t edges[] = {0, 999, 1000, 2999, 3000, 3499, 3500};
  const std::int64_t deltas[] = {0, 1, kMinute, 17 * kMinute, 500 * kMinute};
  const std::size_t limits[] = {1, 7, 1000};
  std::size_t turn = 0, checked = 0, mismatched = 0;
  auto check_range = [&](std::int64_t from, std::int64_t to) {
    auto q = query(s, limits[turn++ % 3]);
    q.from = core::from_unix_millis(from);
    q.to = core::from_unix_millis(to);
    const auto want = expected(model, q);
    if (q.limit == 1 && want.size() > 200) q.limit = 7;  // keeps the suite quick
    auto w = walk(store->observations(), q);
    INFO("from " << from << " to " << to << " limit " << q.limit);
    REQUIRE(w.problem.empty());
    mismatched += fingerprints(w.items) != want;
    ++checked;
  };
  for (auto e : edges)
    for (auto before : deltas)
      for (auto after : deltas) check_range(at(e) - before, at(e) + after);
  for (int i = 0; i < 100; ++i) {
    const auto x = static_cast<std::int64_t>(uniform(rng, 0, 3600 * kMinute)), y = static_cast<std::int64_t>(uniform(rng, 0, 3600 * kMinute));
    check_range(kT0 + std::min(x, y), kT0 + std::max(x, y));
  }
  CHECK(checked == 7 * 5 * 5 + 100);
  CHECK(mismatched == 0);

  // The same rows, ids and order after one more reopen.
  store.reset();
  store = open_store(path, /*sync_each_commit=*/false);
  const auto again = walk_quiet(store->observations(), query(s, 7));
  REQUIRE(again.size() == all.size());
  std::size_t differ = 0;
  for (std::size_t i = 0; i < all.size(); ++i)
    differ += again[i].id != all[i].id || fingerprint(again[i].reading) != fingerprint(all[i].reading);
  CHECK(differ == 0);
}

namespace {

// ---------------------------------------------------------------- the crash harness

// What a crash child reports on its pipe after each append() returned (or failed). Writes of
// at most PIPE_BUF bytes to a pipe are atomic, so reports from several threads do not mix; the
// pipe keeps what was written before the child was killed.
struct Report {
  std::uint32_t device;
  std::uint32_t outcome;  // AppendOutcome, or one of the failures below
  std::uint64_t seq;
};
static_assert(sizeof(Report) == 16);
constexpr std::uint32_t kAppendFailed = 100, kSyncFailed = 101, kOpenFailed = 102;

struct CrashPlan {
  bool sync_each_commit = true;
  std::size_t max_batch_messages = 512;
  int devices = 3;                 // one appending thread per device in the child
  bool replay_from_start = false;  // each life offers every sequence again from 1
  bool early_kills = false;        // every other kill 0..4 ms after the start (opening, recovery)
  long kills = 5;
  bool compact_constantly = false;  // the child compacts after every append (61 readings a go)
};

// The message a crash child sends as sequence `seq` of device `d`: 1..60 readings, a
// deterministic function of (d, seq), so the parent knows what must be stored.
storage::MessageBatch crash_message(const privacy::SubjectPseudonym& s, int d, std::uint64_t seq) {
  const auto n = static_cast<std::int64_t>(1 + (seq * 7 + static_cast<std::uint64_t>(d) * 13) % 60);
  std::vector<core::Reading> rs;
  for (std::int64_t i = 0; i < n; ++i)
    rs.push_back(value_reading("8867-4", d * 1e6 + static_cast<double>(seq) + static_cast<double>(i) / 64, "/min",
                               kT0 + static_cast<std::int64_t>(seq) * 3'600'000 + i * kMinute + d));
  return message(s, "crash-dev-" + std::to_string(d), seq, rs);
}

void report(int fd, Report r) {
  // A pipe write of 16 bytes is all or nothing.
  while (::write(fd, &r, sizeof r) < 0 && errno == EINTR) {
  }
}

// The child: opens the store and appends forever, each device thread from its start sequence,
// reporting every returned append; the main thread calls Store::sync() every 2 ms. It never
// returns into Catch2: it ends by SIGKILL, or _exit on a failure (reported first).
[[noreturn]] void crash_child(const std::filesystem::path& path, const CrashPlan& plan, const privacy::SubjectPseudonym& s,
                              const std::vector<std::uint64_t>& start, int fd) {
  try {
    storage::StoreOptions o;
    apply_compaction_mode(o);
    if (plan.compact_constantly) {
      o.compact_after_readings = 1;
      o.compact_batch_readings = 61;
      o.compact_min_readings = 1;
      o.compact_max_age = std::chrono::seconds(0);
    }
    o.path = path;
    o.sync_each_commit = plan.sync_each_commit;
    o.max_batch_messages = plan.max_batch_messages;
    auto store = storage::open_sqlite_store(o, core::system_clock());
    if (!store) {
      report(fd, {0, kOpenFailed, 0});
      ::_exit(2);
    }
    std::atomic<bool> failed{false};
    std::vector<std::thread> threads;
    for (int d = 0; d < plan.devices; ++d)
      threads.emplace_back([&, d] {
        for (std::uint64_t seq = start[d]; !failed; ++seq) {
          auto r = (*store)->observations().append(crash_message(s, d, seq));
          if (!r) {
            report(fd, {static_cast<std::uint32_t>(d), kAppendFailed, seq});
            failed = true;
            return;
          }
          report(fd, {static_cast<std::uint32_t>(d), static_cast<std::uint32_t>(*r), seq});
        }
      });
    while (!failed) {
      if (!(*store)->sync()) {
        report(fd, {0, kSyncFailed, 0});
        failed = true;
      }
      std::this_thread::sleep_for(2ms);
    }
    for (auto& t : threads) t.join();
  } catch (...) {
  }
  ::_exit(3);
}

// Runs `plan.kills` lives of a crash child on the database at `path`, each killed with SIGKILL
// at a random moment, and checks every report against what the earlier lives reported. Then
// checks the database: every message reported as stored or duplicate is there, whole, once;
// nothing is there that was never offered; per device the stored sequences are 1..n without
// gaps; PRAGMA integrity_check (sqlite3 CLI) says ok.
void run_crash_lives(const CrashPlan& plan) {
  const auto sd = seed();
  CAPTURE(sd, plan.sync_each_commit, plan.max_batch_messages, plan.replay_from_start, plan.kills);
  std::mt19937_64 rng(sd);
  testing::TempDir dir;
  const auto path = dir.path() / "telehub.db";
  const auto s = subject("crash");
  const auto devices = static_cast<std::size_t>(plan.devices);

  std::vector<std::uint64_t> highest(devices, 0);  // highest sequence any life reported
  std::vector<std::set<std::uint64_t>> stored_reports(devices);
  std::size_t reports_total = 0, kills_while_appending = 0, kills_before_appending = 0;
  std::vector<std::string> problems;
  auto problem = [&](std::string p) {
    if (problems.size() < 20) problems.push_back(std::move(p));
  };

  for (long life = 0; life < plan.kills; ++life) {
    INFO("life " << life);
    std::vector<std::uint64_t> start(devices);
    for (std::size_t d = 0; d < devices; ++d)
      start[d] = plan.replay_from_start ? 1 : std::max<std::uint64_t>(1, highest[d] > 20 ? highest[d] - 20 : 1);
    const auto highest_before = highest;
    const bool early = plan.early_kills && life % 2 == 1;
    const auto kill_after_reports = uniform(rng, 1, 1500);
    const auto kill_delay_us = early ? uniform(rng, 0, 4'000) : uniform(rng, 0, 2'000);

    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    // fork() copies only this thread: there must be no other (and no open store) now.
    REQUIRE(threads_in_this_process() == 1);
    ChildGuard child;
    child.pid = ::fork();
    REQUIRE(child.pid >= 0);
    if (child.pid == 0) {
      ::close(fds[0]);
      crash_child(path, plan, s, start, fds[1]);
    }
    ::close(fds[1]);

    std::vector<Report> got;
    std::string buffer;
    bool killed = false;
    const auto started = std::chrono::steady_clock::now();
    auto kill_now = [&] {
      if (kill_delay_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(kill_delay_us));
      ::kill(child.pid, SIGKILL);
      killed = true;
    };
    if (early) kill_now();
    for (;;) {
      pollfd p{fds[0], POLLIN, 0};
      const int ready = ::poll(&p, 1, 30'000);
      REQUIRE(ready > 0);  // the child reports or ends within 30 s
      char chunk[4096];
      const auto n = ::read(fds[0], chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      REQUIRE(n >= 0);
      if (n == 0) break;  // the child is gone and the pipe drained
      buffer.append(chunk, static_cast<std::size_t>(n));
      while (buffer.size() >= sizeof(Report)) {
        Report r;
        std::memcpy(&r, buffer.data(), sizeof r);
        buffer.erase(0, sizeof r);
        got.push_back(r);
      }
      if (!killed && got.size() >= kill_after_reports) kill_now();
      REQUIRE(std::chrono::steady_clock::now() - started < 60s);
    }
    ::close(fds[0]);
    int status = 0;
    REQUIRE(::waitpid(child.pid, &status, 0) == child.pid);
    child.pid = -1;
    CHECK(buffer.empty());  // no torn report
    REQUIRE(WIFSIGNALED(status));  // killed, not ended on a failure
    CHECK(WTERMSIG(status) == SIGKILL);
    if (!got.empty()) ++kills_while_appending; else ++kills_before_appending;

    for (const auto& r : got) {
      if (r.outcome >= kAppendFailed || r.device >= devices) {
        problem("child failure " + std::to_string(r.outcome));
        continue;
      }
      const auto d = r.device;
      const auto outcome = static_cast<AppendOutcome>(r.outcome);
      const std::string what = "life " + std::to_string(life) + " device " + std::to_string(d) + " seq " +
                               std::to_string(r.seq) + ": ";
      // Sequences an earlier life reported are stored: duplicate. The one after may have been
      // committed unreported when the child died: stored or duplicate. Beyond that: stored.
      if (r.seq <= highest_before[d]) {
        if (outcome != AppendOutcome::kDuplicate) problem(what + "reported before, not a duplicate now");
      } else if (r.seq == highest_before[d] + 1) {
        if (outcome != AppendOutcome::kDuplicate && outcome != AppendOutcome::kStored) problem(what + "unexpected outcome");
      } else if (outcome != AppendOutcome::kStored) {
        problem(what + "never offered before, not stored");
      }
      if (outcome == AppendOutcome::kStored && !stored_reports[d].insert(r.seq).second) problem(what + "stored twice");
      highest[d] = std::max(highest[d], r.seq);
      ++reports_total;
    }
  }
  CAPTURE(problems);
  CHECK(problems.empty());
  CHECK(reports_total > 0);
  CHECK(kills_while_appending > 0);

  // The database after the last kill, opened as the hub would open it.
  {
    auto store = open_store(path, plan.sync_each_commit, plan.max_batch_messages);
    std::map<std::pair<std::string, std::uint64_t>, std::vector<core::Reading>> by_message;
    const auto all = walk_quiet(store->observations(), query(s));
    for (const auto& o : all) by_message[{o.reading.device, o.reading.sequence}].push_back(o.reading);
    CHECK(must(store->observations().count()) == static_cast<std::int64_t>(all.size()));
    std::size_t whole = 0, broken = 0, unreported = 0;
    for (std::size_t d = 0; d < devices; ++d) {
      const std::string device = "crash-dev-" + std::to_string(d);
      std::uint64_t seq = 1;
      for (;; ++seq) {
        auto it = by_message.find({device, seq});
        if (it == by_message.end()) break;
        const auto want = readings_of(crash_message(s, static_cast<int>(d), seq));
        (fingerprints(it->second) == fingerprints(want) ? whole : broken) += 1;
        if (seq > highest[d]) ++unreported;
        by_message.erase(it);
      }
      INFO("device " << d);
      CHECK(seq - 1 >= highest[d]);      // everything reported is there
      CHECK(seq - 1 <= highest[d] + 1);  // at most the one in flight beyond
    }
    CHECK(broken == 0);                 // each message whole and once
    CHECK(by_message.empty());          // no gaps, nothing never offered
    CHECK(unreported <= devices);
    CHECK(whole > 0);
    // The hub offers the last messages again after a restart: duplicates; the next is new.
    for (std::size_t d = 0; d < devices; ++d) {
      if (highest[d] == 0) continue;
      CHECK(must(store->observations().append(crash_message(s, static_cast<int>(d), highest[d]))) ==
            AppendOutcome::kDuplicate);
    }
  }
  auto check = testing::run_command("sqlite3 '" + path.string() + "' 'PRAGMA integrity_check'");
  CHECK(check.exit_code == 0);
  CHECK(check.output == "ok\n");
}

}  // namespace

TEST_CASE("conformance: a process appending is killed with SIGKILL at random moments and loses nothing whose append returned",
          "[storage][conformance][crash]") {
  CrashPlan plan;
  plan.sync_each_commit = GENERATE(true, false);
  plan.kills = env_or("TELEHUB_CONFORMANCE_KILLS", 5);
  run_crash_lives(plan);
}

// What a crash can interrupt besides an append: a stream of many small commits (one message
// per transaction, deferred sync), opening the database after a kill (WAL recovery), and a
// replay of everything already stored (every sequence offered again from 1, as after a gateway
// lost its receipts).
TEST_CASE("conformance: killed between many small commits, while reopening and while replaying, nothing committed is lost",
          "[storage][conformance][crash]") {
  CrashPlan plan;
  plan.sync_each_commit = false;
  plan.max_batch_messages = 1;
  plan.devices = 4;
  plan.replay_from_start = true;
  plan.early_kills = true;
  plan.kills = env_or("TELEHUB_CONFORMANCE_KILLS", 5) * 2;
  run_crash_lives(plan);
}

TEST_CASE("conformance: killed while compacting, nothing is lost or doubled", "[storage][conformance][crash]") {
  // The child compacts after every append, so most kills land inside a compaction
  // transaction (or between its commit and the next append).
  CrashPlan plan;
  plan.sync_each_commit = GENERATE(true, false);
  plan.compact_constantly = true;
  plan.devices = 3;
  plan.kills = env_or("TELEHUB_CONFORMANCE_KILLS", 5);
  run_crash_lives(plan);
}

namespace {

// Everything a reader can ask, checked against the model: full walks with limits 1, 7 and 1000,
// every code, ranges that start and end at stored times, get() of every id, count(). Returns
// id -> fingerprint of everything stored.
std::map<std::int64_t, std::string> check_reads(storage::Store& store, const std::vector<core::Reading>& model,
                                                const privacy::SubjectPseudonym& s, std::size_t others) {
  std::map<std::int64_t, std::string> ids;
  for (std::size_t limit : {1000u, 7u, 1u}) {
    INFO("limit " << limit);
    const auto all = walk_quiet(store.observations(), query(s, limit));
    CHECK(fingerprints(all) == expected(model, query(s, limit)));
    if (limit == 1000)
      for (const auto& o : all) ids[o.id] = fingerprint(o.reading);
  }
  std::set<std::string> codes;
  for (const auto& r : model) codes.insert(r.code);
  for (const auto& code : codes) {
    auto q = query(s, 50);
    q.code = code;
    INFO("code " << code);
    CHECK(fingerprints(walk_quiet(store.observations(), q)) == expected(model, q));
  }
  std::vector<std::int64_t> times;
  for (const auto& r : model) times.push_back(core::to_unix_millis(r.time));
  std::sort(times.begin(), times.end());
  for (std::size_t i = 0; i + 1 < 12 && !times.empty(); ++i) {
    auto q = query(s, 13);
    q.from = core::from_unix_millis(times[times.size() * i / 12]);
    q.to = core::from_unix_millis(times[times.size() * (i + 1) / 12]);
    INFO("range " << core::to_unix_millis(*q.from) << " .. " << core::to_unix_millis(*q.to));
    CHECK(fingerprints(walk_quiet(store.observations(), q)) == expected(model, q));
  }
  std::size_t wrong = 0;
  for (const auto& [id, fp] : ids) {
    auto got = must(store.observations().get(id));
    if (!got || got->id != id || fingerprint(got->reading) != fp) ++wrong;
  }
  CHECK(wrong == 0);
  CHECK(must(store.observations().count()) == static_cast<std::int64_t>(model.size() + others));
  return ids;
}

}  // namespace

TEST_CASE("conformance: reads are the same before and after compaction, across every kind of compaction boundary",
          "[storage][conformance][compaction]") {
  testing::TempDir dir;
  const auto path = dir.path() / "telehub.db";
  storage::StoreOptions o;
  o.path = path;
  o.compact_after_readings = 0;   // only compact() moves readings: the test decides where
  o.compact_batch_readings = 37;  // and compaction transactions end at odd places
  auto store = must(storage::open_sqlite_store(o, core::system_clock()));
  const auto s = subject("compaction");
  const auto other = subject("compaction-other");
  std::vector<core::Reading> model;
  std::size_t others = 0;  // readings of the other subject
  std::uint64_t seq = 0;
  std::mt19937_64 rng(seed());
  auto add = [&](const privacy::SubjectPseudonym& who, std::vector<core::Reading> rs) {
    auto b = message(who, "dev-" + who.str().substr(0, 6), ++seq, std::move(rs));
    for (const auto& r : b.readings) {
      auto m = r.reading();
      m.subject = who.str();
      if (who == s) model.push_back(m);
      else ++others;
    }
    REQUIRE(must(store->observations().append(std::move(b))) == AppendOutcome::kStored);
  };

  // A: several series of one subject, values of different precision, panels, raw doubles.
  for (int i = 0; i < 300; ++i) {
    const std::int64_t t = kT0 + i * kMinute;
    std::vector<core::Reading> rs{value_reading("8867-4", 60 + i % 40, "/min", t)};
    if (i % 3 == 0) rs.push_back(value_reading("8310-5", 36.5 + (i % 7) / 10.0, "Cel", t + 1));
    if (i % 5 == 0) rs.push_back(value_reading("29463-7", 80.125 - i / 1000.0, "kg", t + 2));
    if (i % 7 == 0) rs.push_back(panel_reading(120 + i % 30, 80 + i % 10, t + 3));
    if (i % 11 == 0) rs.push_back(value_reading("x-raw", random_finite(rng), "1", t + 4));
    add(s, std::move(rs));
    if (i % 50 == 0) add(other, {value_reading("8867-4", 70, "/min", t)});
  }
  const auto in_log = check_reads(*store, model, s, others);
  CHECK(must(store->compact()) > 0);
  CHECK(must(store->compact()) == 0);  // nothing left
  CHECK(check_reads(*store, model, s, others) == in_log);  // same readings, same ids

  // B: continues the series (the newest chunks take them), backfills into A's range (new
  // chunks overlapping old ones), repeats stored times exactly, changes a value's precision
  // (a wider scale: new chunk) and a unit (another shape: new chunk); left in the log, read
  // across the boundary between log and chunks, then compacted.
  for (int i = 300; i < 400; ++i) add(s, {value_reading("8867-4", 60 + i % 40, "/min", kT0 + i * kMinute)});
  for (int i = 0; i < 300; i += 13) add(s, {value_reading("8867-4", 99, "/min", kT0 + i * kMinute + 30'000)});
  for (int i = 0; i < 300; i += 17) add(s, {value_reading("8867-4", 61, "/min", kT0 + i * kMinute)});
  add(s, {value_reading("8867-4", 72.25, "/min", kT0 + 400 * kMinute)});
  add(s, {value_reading("8867-4", 73, "{beats}/min", kT0 + 401 * kMinute)});
  add(s, {value_reading("8867-4", 74, "/min", kT0 + 402 * kMinute)});
  const auto mixed = check_reads(*store, model, s, others);
  CHECK(must(store->compact()) > 0);
  CHECK(check_reads(*store, model, s, others) == mixed);

  // C: a long minute series (three days, messages of 60): chunks end by size and by span.
  for (int h = 0; h < 72; ++h) {
    std::vector<core::Reading> rs;
    for (int m = 0; m < 60; ++m) {
      const std::int64_t t = kT0 + 1000 * kMinute + (h * 60 + m) * kMinute;
      rs.push_back(value_reading("59408-5", 90 + (h + m) % 10, "%", t));
    }
    add(s, std::move(rs));
    if (h % 10 == 3) CHECK(must(store->compact()) > 0);  // compaction in the middle of the series
  }
  const auto before_reopen = check_reads(*store, model, s, others);
  store.reset();
  store = must(storage::open_sqlite_store(o, core::system_clock()));
  CHECK(check_reads(*store, model, s, others) == before_reopen);
  (void)store->compact();
  CHECK(check_reads(*store, model, s, others) == before_reopen);
}
