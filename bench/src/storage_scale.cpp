// telehub-bench-storage-scale: the store at scale, through telehub's own storage::Store (no
// MQTT, no envelope), for the "storage at scale" rows of scripts/bench.sh.
//
//   telehub-bench-storage-scale --db FILE [--checkpoints 1000000,10000000] [--subjects 1000]
//                               [--window 200000] [--year-reads 3]
//
// 1. One subject gets a year of minute heart rate (525,600 readings, messages of 60); the log is
//    compacted (Store::compact(), the state the background compaction keeps), then that year
//    is read back through search() pages of 1,000, --year-reads times; the median time is
//    reported.
// 2. Prefill: --subjects subjects each send an hour of minute heart rate per message (60
//    readings), subject after subject, hour after hour, as wearables uploading hourly would.
//    At each checkpoint (stored readings, the year included) the insert rate over the last
//    --window readings is recorded.
// 3. The store is closed (SQLite checkpoints and removes the WAL); bytes per stored reading =
//    database file size / stored readings, indexes included.
// The store runs as serve runs it: sync_each_commit off (synchronous=NORMAL).
// Prints one JSON line: {"year_points":N,"year_read_ms":T,"checkpoints":[{"readings":N,
// "rate":R},...],"stored":N,"bytes":B,"bytes_per_reading":X}. The file must not exist.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "telehub/privacy/pseudonym.h"
#include "telehub/storage/store.h"

using namespace telehub;
using Clock = std::chrono::steady_clock;

namespace {

int usage(const std::string& why) {
  std::cerr << "telehub-bench-storage-scale: " << why
            << "\nusage: telehub-bench-storage-scale --db FILE [--checkpoints N,N,...] [--subjects N] [--window N]"
               " [--year-reads N]\n";
  return 2;
}

constexpr std::int64_t kMinute = 60'000;
constexpr std::int64_t kYearPoints = 525'600;
constexpr int kPerMessage = 60;

storage::MessageBatch hour_of(const privacy::SubjectPseudonym& subject, const std::string& device,
                              std::uint64_t sequence, std::int64_t start_ms) {
  storage::MessageBatch b;
  b.device_id = device;
  b.sequence = sequence;
  b.content_hash = device + "-" + std::to_string(sequence);
  b.received_at = core::from_unix_millis(start_ms + kPerMessage * kMinute);
  for (int i = 0; i < kPerMessage; ++i) {
    core::Reading r;
    r.code = "8867-4";
    r.value = 55 + static_cast<double>((sequence * 7 + static_cast<std::uint64_t>(i) * 3) % 50);
    r.unit = "/min";
    r.time = core::from_unix_millis(start_ms + i * kMinute);
    r.device = device;
    r.sequence = sequence;
    b.readings.push_back(privacy::PseudonymousReading::bind(std::move(r), subject));
  }
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path db;
  std::vector<std::int64_t> checkpoints = {1'000'000, 10'000'000};
  std::int64_t subjects = 1000, window = 200'000;
  int year_reads = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return usage(a + " needs a value");
    const std::string v = argv[++i];
    try {
      if (a == "--db") db = v;
      else if (a == "--subjects") subjects = std::stoll(v);
      else if (a == "--window") window = std::stoll(v);
      else if (a == "--year-reads") year_reads = std::stoi(v);
      else if (a == "--checkpoints") {
        checkpoints.clear();
        std::stringstream ss(v);
        for (std::string part; std::getline(ss, part, ',');) checkpoints.push_back(std::stoll(part));
      } else return usage("unknown option " + a);
    } catch (const std::exception&) {
      return usage("bad number for " + a);
    }
  }
  if (db.empty()) return usage("--db is required");
  if (std::filesystem::exists(db)) return usage(db.string() + " exists");
  if (subjects < 1 || window < kPerMessage || year_reads < 1 || checkpoints.empty()) return usage("bad parameters");
  std::sort(checkpoints.begin(), checkpoints.end());

  storage::StoreOptions so;
  so.path = db;
  so.sync_each_commit = false;
  auto opened = storage::open_sqlite_store(so, core::system_clock());
  if (!opened) return usage("cannot open the store: " + opened.error().to_string());
  auto store = std::move(*opened);
  auto pseudonymiser = std::move(*privacy::Pseudonymiser::from_key(core::Bytes(32, 7)));
  auto append = [&](storage::MessageBatch b) {
    auto r = store->observations().append(std::move(b));
    if (!r || *r != storage::AppendOutcome::kStored) {
      std::cerr << "telehub-bench-storage-scale: append failed: " << (r ? "not stored" : r.error().to_string()) << "\n";
      std::exit(1);
    }
  };
  const std::int64_t t0 = 1'700'000'000'000 / kMinute * kMinute;

  // 1. A patient-year, then read it back.
  const auto year_subject = pseudonymiser->subject("year");
  for (std::int64_t m = 0; m < kYearPoints / kPerMessage; ++m)
    append(hour_of(year_subject, "dev-year", static_cast<std::uint64_t>(m + 1), t0 + m * kPerMessage * kMinute));
  // Read it as the hub's steady state has it: the log compacted (the background compaction
  // keeps it below compact_after_readings; this burst came faster than it runs).
  if (auto c = store->compact(); !c) return usage("compaction failed: " + c.error().to_string());
  std::vector<double> reads;
  std::int64_t year_points = 0;
  for (int r = 0; r < year_reads; ++r) {
    storage::ObservationQuery q;
    q.subject = year_subject.str();
    q.code = "8867-4";
    q.limit = 1000;
    std::int64_t n = 0;
    const auto start = Clock::now();
    for (;;) {
      auto page = store->observations().search(q);
      if (!page) return usage("search failed: " + page.error().to_string());
      n += static_cast<std::int64_t>(page->items.size());
      if (!page->next) break;
      q.after = page->next;
    }
    reads.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    year_points = n;
  }
  std::sort(reads.begin(), reads.end());

  // 2. Prefill many subjects, rate over the last `window` readings at each checkpoint.
  std::vector<privacy::SubjectPseudonym> subject_ids;
  for (std::int64_t s = 0; s < subjects; ++s) subject_ids.push_back(pseudonymiser->subject("p" + std::to_string(s)));
  std::int64_t stored = kYearPoints;
  std::string out_checkpoints;
  std::size_t next = 0;
  while (next < checkpoints.size() && checkpoints[next] <= stored) ++next;
  std::int64_t window_start_count = stored;
  auto window_start = Clock::now();
  for (std::int64_t hour = 0; next < checkpoints.size(); ++hour) {
    for (std::int64_t s = 0; s < subjects && next < checkpoints.size(); ++s) {
      append(hour_of(subject_ids[static_cast<std::size_t>(s)], "dev-" + std::to_string(s),
                     static_cast<std::uint64_t>(hour + 1), t0 + hour * kPerMessage * kMinute));
      stored += kPerMessage;
      if (stored >= checkpoints[next] - window && window_start_count < checkpoints[next] - window) {
        window_start_count = stored;
        window_start = Clock::now();
      }
      if (stored >= checkpoints[next]) {
        const double s_elapsed = std::chrono::duration<double>(Clock::now() - window_start).count();
        const double rate = static_cast<double>(stored - window_start_count) / std::max(s_elapsed, 1e-9);
        if (!out_checkpoints.empty()) out_checkpoints += ",";
        out_checkpoints += "{\"readings\":" + std::to_string(stored) + ",\"rate\":" + std::to_string(rate) + "}";
        std::cerr << "telehub-bench-storage-scale: " << stored << " readings stored, " << static_cast<long long>(rate)
                  << " readings/s over the last " << (stored - window_start_count) << "\n";
        ++next;
        window_start_count = stored;
        window_start = Clock::now();
      }
    }
  }
  auto counted = store->observations().count();
  if (!counted) return usage("count failed: " + counted.error().to_string());
  store->close();
  store.reset();
  const auto bytes = static_cast<std::int64_t>(std::filesystem::file_size(db));
  std::printf(
      "{\"year_points\":%lld,\"year_read_ms\":%.3f,\"checkpoints\":[%s],\"stored\":%lld,\"expected\":%lld,"
      "\"bytes\":%lld,\"bytes_per_reading\":%.3f}\n",
      static_cast<long long>(year_points), reads[reads.size() / 2], out_checkpoints.c_str(),
      static_cast<long long>(*counted), static_cast<long long>(stored), static_cast<long long>(bytes),
      static_cast<double>(bytes) / static_cast<double>(*counted));
  return 0;
}
