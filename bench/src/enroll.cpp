// telehub-bench-enroll: enrols many devices into a hub's data directory at once, for the soak
// (a million patients), through the library calls `telehub device enroll` makes
// (apps/src/enrol.cpp): the subject's keyed pseudonym (privacy::Pseudonymiser with the data
// directory's wrapped pseudonym key), a random device id and 256-bit key, the key wrapped under
// the KEK (privacy::Kek::wrap, privacy::device_key_ad) and storage::Registry::add_device. It
// writes no provisioning files (a million JSON files); instead it writes one key file
// (key_file.h) that only telehub-bench-soak-publish reads.
//
//   telehub-bench-enroll --data DIR --devices N --keys FILE [--threads T] [--first I]
//                        [--subject-prefix P] [--synchronous normal|full] [--kek-file PATH]
//
// Device i (0 <= i < N) is bound to subject "P<I+i>" (default P = "soak-patient-", I = 0), one
// device per subject. The KEK is resolved as `telehub` does: --kek-file, else TELEHUB_KEK, else
// the development default. DIR must exist; run `telehub serve` there once first so hub.json,
// the CA and the pseudonym key exist (a missing pseudonym key is created, as enroll does).
//
// add_device commits once per call; the store group-commits concurrent callers into one
// transaction (up to 512), so T threads (default 64) each enrol their share. --synchronous
// normal (default) commits with SQLite synchronous=NORMAL and makes everything durable with
// one Store::sync() at the end (as `serve` opens the store); full fsyncs every commit, as
// `telehub device enroll` does. Progress goes to stderr every 10 s. Prints one JSON line:
// {"devices":N,"elapsed_s":S,"rate":R,"threads":T,"synchronous":"normal"}.
#include <openssl/crypto.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "key_file.h"
#include "telehub/core/bytes.h"
#include "telehub/core/time.h"
#include "telehub/privacy/keystore.h"
#include "telehub/privacy/pseudonym.h"
#include "telehub/storage/store.h"

namespace {

namespace core = telehub::core;
namespace privacy = telehub::privacy;
namespace storage = telehub::storage;
using telehub::bench::DeviceKey;
using Clock = std::chrono::steady_clock;

int usage(const std::string& why) {
  std::cerr << "telehub-bench-enroll: " << why
            << "\nusage: telehub-bench-enroll --data DIR --devices N --keys FILE [--threads T] [--first I] "
               "[--subject-prefix P] [--synchronous normal|full] [--kek-file PATH]\n";
  return 2;
}

int fail(const std::string& what, const core::Error& e) {
  std::cerr << "telehub-bench-enroll: " << what << ": " << e.to_string() << "\n";
  return 1;
}

// One device, as apps::enrol_device makes it, without the provisioning file.
telehub::Status enrol_one(storage::Registry& registry, const privacy::Kek& kek, const privacy::Pseudonymiser& p,
                          const std::string& subject_id, DeviceKey& out) {
  auto id_bytes = core::random_bytes(8);
  if (!id_bytes) return tl::unexpected(id_bytes.error());
  auto key = core::random_bytes(32);
  if (!key) return tl::unexpected(key.error());
  storage::DeviceRecord device;
  device.id = "dev-" + core::to_hex(*id_bytes);
  device.subject = p.subject(subject_id).str();
  device.key_id = 1;
  auto wrapped = kek.wrap(*key, privacy::device_key_ad(device.id, device.key_id));
  if (!wrapped) return tl::unexpected(wrapped.error());
  device.wrapped_key = std::move(*wrapped);
  device.enrolled_at = core::system_clock().now();
  if (auto s = registry.add_device(device); !s) return s;
  out.device_id = device.id;
  out.key_id = device.key_id;
  std::copy(key->begin(), key->end(), out.key.begin());
  OPENSSL_cleanse(key->data(), key->size());
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> opt{
      {"threads", "64"}, {"first", "0"}, {"subject-prefix", "soak-patient-"}, {"synchronous", "normal"}};
  if (argc % 2 == 0) return usage("every option needs a value");
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string name = argv[i];
    if (name.rfind("--", 0) != 0) return usage("unexpected argument " + name);
    opt[name.substr(2)] = argv[i + 1];
  }
  for (const char* required : {"data", "devices", "keys"})
    if (!opt.count(required)) return usage(std::string("missing --") + required);
  const long devices = std::atol(opt["devices"].c_str());
  const long threads = std::atol(opt["threads"].c_str());
  const long first = std::atol(opt["first"].c_str());
  const std::string sync_mode = opt["synchronous"];
  const std::string prefix = opt["subject-prefix"];
  if (devices < 1 || threads < 1 || threads > 1024 || first < 0 || (sync_mode != "normal" && sync_mode != "full"))
    return usage("--devices >= 1, 1 <= --threads <= 1024, --first >= 0, --synchronous normal|full");
  const std::filesystem::path data = opt["data"];
  if (!std::filesystem::is_directory(data)) return usage(data.string() + " is not a directory (run telehub serve there once)");

  // The paths of apps/src/hub_files.h (DataDir::pseudonym_key, DataDir::db).
  auto kek = privacy::Kek::resolve(opt.count("kek-file") ? opt["kek-file"] : "", data);
  if (!kek) return fail("KEK", kek.error());
  auto pseudonymiser = privacy::Pseudonymiser::open_wrapped_key_file(data / "keys" / "pseudonym.key", *kek);
  if (!pseudonymiser) return fail("pseudonym key", pseudonymiser.error());
  storage::StoreOptions so;
  so.path = data / "telehub.db";
  so.sync_each_commit = sync_mode == "full";
  auto store = storage::open_sqlite_store(so, core::system_clock());
  if (!store) return fail("store", store.error());
  storage::Registry& registry = (*store)->registry();

  std::vector<DeviceKey> keys(static_cast<std::size_t>(devices));
  std::atomic<long> done{0};
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::string first_error;
  const auto t0 = Clock::now();
  std::vector<std::thread> pool;
  for (long t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (long i = t; i < devices && !failed.load(std::memory_order_relaxed); i += threads) {
        const std::string subject = prefix + std::to_string(first + i);
        if (auto s = enrol_one(registry, *kek, **pseudonymiser, subject, keys[static_cast<std::size_t>(i)]); !s) {
          std::lock_guard lock(error_mutex);
          if (!failed.exchange(true)) first_error = s.error().to_string();
          return;
        }
        done.fetch_add(1, std::memory_order_relaxed);
      }
    });
  // Progress every 10 s while the workers run.
  std::thread progress([&] {
    auto next = t0 + std::chrono::seconds(10);
    while (done.load() < devices && !failed.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (Clock::now() < next) continue;
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      const long n = done.load();
      std::fprintf(stderr, "telehub-bench-enroll: %ld of %ld devices after %.0f s (%.0f/s)\n", n, devices, s, n / s);
      next += std::chrono::seconds(10);
    }
  });
  for (auto& th : pool) th.join();
  progress.join();
  if (failed) {
    std::cerr << "telehub-bench-enroll: enrolment failed after " << done.load() << " devices: " << first_error << "\n";
    return 1;
  }
  if (auto s = (*store)->sync(); !s) return fail("sync", s.error());
  (*store)->close();
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();

  std::string error;
  if (!telehub::bench::write_key_file(opt["keys"], keys, error)) {
    std::cerr << "telehub-bench-enroll: " << error << "\n";
    return 1;
  }
  for (auto& k : keys) OPENSSL_cleanse(k.key.data(), k.key.size());
  std::printf("{\"devices\":%ld,\"elapsed_s\":%.3f,\"rate\":%.1f,\"threads\":%ld,\"synchronous\":\"%s\"}\n", devices,
              elapsed, static_cast<double>(devices) / elapsed, threads, sync_mode.c_str());
  return 0;
}
