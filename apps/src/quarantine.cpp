// `telehub quarantine list|show|replay`: what ingest could not accept, for operators.
//
// replay runs a quarantined message through the ingest pipeline again (for example after the
// missing device was enrolled). Whatever the pipeline decides replaces the entry: stored or
// duplicate removes it; quarantined again removes it too, because the pipeline has just
// written a fresh entry with the current reason; a storage failure leaves it untouched.
#include <iostream>
#include <string>

#include "args.h"
#include "commands.h"
#include "hub_files.h"
#include "payload_config.h"
#include "privacy_stores.h"
#include "telehub/core/time.h"
#include "telehub/envelope/envelope.h"
#include "telehub/ingest/pipeline.h"
#include "telehub/storage/store.h"

namespace telehub::apps {
namespace {

constexpr const char* kUsage = R"(usage: telehub quarantine list [--limit N] [--data DIR]
       telehub quarantine show ID [--data DIR]
       telehub quarantine replay (ID | --all) [--reason R] [--data DIR] [--kek-file PATH] [--config DIR]
)";

int usage(const std::string& message) {
  std::cerr << "telehub: " << message << "\n" << kUsage;
  return 2;
}

Result<std::int64_t> parse_id(const std::string& text) {
  Args a;
  a.options["id"] = text;
  return a.get_int("id", 0, 1, INT64_MAX);
}

int list(const Args& args, storage::Store& store) {
  auto limit = args.get_int("limit", 20, 1, 10000);
  if (!limit) return usage(limit.error().message);
  auto total = store.quarantine().count();
  auto entries = store.quarantine().list(static_cast<std::size_t>(*limit));
  if (!total) return fail_with(total.error());
  if (!entries) return fail_with(entries.error());
  std::cout << *total << " quarantined message(s)\n";
  for (const auto& q : *entries)
    std::cout << q.id << "\t" << core::format_rfc3339(q.received_at) << "\t" << q.reason << "\t"
              << (q.device_id.empty() ? "-" : q.device_id) << "\t" << q.detail << "\n";
  return 0;
}

int show(const storage::QuarantineEntry& q) {
  std::cout << "id:        " << q.id << "\n"
            << "received:  " << core::format_rfc3339(q.received_at) << "\n"
            << "topic:     " << q.topic << "\n"
            << "device:    " << (q.device_id.empty() ? "-" : q.device_id) << "\n"
            << "reason:    " << q.reason << "\n"
            << "detail:    " << q.detail << "\n"
            << "size:      " << q.payload.size() << " bytes (sealed; never stored decrypted)\n";
  if (auto h = envelope::peek(q.payload))
    std::cout << "envelope:  v" << int(h->version) << " device " << h->device_id << ", key id " << h->key_id
              << ", sequence " << h->sequence << "\n";
  else
    std::cout << "envelope:  unreadable header (" << h.error().reason << ")\n";
  return 0;
}

// Replays one entry; prints what happened. Returns false when it could not be settled.
bool replay_one(storage::Store& store, ingest::Pipeline& pipeline, const storage::QuarantineEntry& q) {
  auto d = pipeline.process({q.topic, q.payload, q.received_at});
  if (!d.acknowledge()) {
    std::cout << q.id << "\tnot replayed: storage unavailable (" << d.reason << "); entry kept\n";
    return false;
  }
  if (auto s = store.quarantine().remove(q.id); !s) {
    std::cout << q.id << "\t" << ingest::kind_name(d.kind) << ", but the old entry could not be removed: "
              << s.error().message << "\n";
    return false;
  }
  std::cout << q.id << "\t" << ingest::kind_name(d.kind);
  if (d.kind == ingest::Disposition::Kind::kQuarantined) std::cout << " again: " << d.reason;
  else std::cout << " (" << d.readings << " readings)";
  std::cout << "\n";
  return true;
}

}  // namespace

int cmd_quarantine(int argc, char** argv) {
  const std::string sub = argc >= 3 ? argv[2] : "";
  if (sub != "list" && sub != "show" && sub != "replay") return usage("unknown quarantine command");
  auto parsed = parse_args(argc, argv, 3, {"data", "limit", "reason", "kek-file", "config"}, {"all"});
  if (!parsed) return usage(parsed.error().message);
  const Args& args = *parsed;

  std::optional<std::int64_t> id;
  if (sub == "show" || (sub == "replay" && !args.has("all"))) {
    if (args.words.size() != 1) return usage(sub + " needs one entry id" + (sub == "replay" ? " or --all" : ""));
    auto n = parse_id(args.words[0]);
    if (!n) return usage("the entry id must be a positive whole number");
    id = *n;
  } else if (!args.words.empty()) {
    return usage("unexpected argument '" + args.words[0] + "'");
  }

  auto dir = open_data_dir(args.get("data", "data"));
  if (!dir) return fail_with(dir.error());
  auto store = storage::open_sqlite_store({dir->db()}, core::system_clock());
  if (!store) return fail_with(store.error());
  if (sub == "list") return list(args, **store);

  std::vector<storage::QuarantineEntry> entries;
  if (id) {
    auto q = (*store)->quarantine().get(*id);
    if (!q) return fail_with(q.error());
    if (!*q) {
      std::cerr << "telehub: no quarantine entry " << *id << "\n";
      return 1;
    }
    if (sub == "show") return show(**q);
    entries.push_back(std::move(**q));
  } else {
    auto all = (*store)->quarantine().list(1'000'000);
    if (!all) return fail_with(all.error());
    for (auto& q : *all)
      if (!args.has("reason") || q.reason == args.get("reason")) entries.push_back(std::move(q));
  }
  auto kek = load_kek(args.get("kek-file"), *dir);
  if (!kek) return fail_with(kek.error());
  auto options = pipeline_options(config_dir(args.get("config")), *dir, *kek);
  if (!options) return fail_with(options.error());
  auto privacy_stores = open_privacy(*dir, *kek);
  if (!privacy_stores) return fail_with(privacy_stores.error());
  options->vault = privacy_stores->vault;
  ingest::Pipeline pipeline(**store, core::system_clock(), *kek, *options);
  std::size_t settled = 0;
  // Oldest first, so a device's messages are offered in the order they arrived.
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) settled += replay_one(**store, pipeline, *it) ? 1 : 0;
  auto c = pipeline.counters();
  std::cout << "replayed " << settled << " of " << entries.size() << ": " << c.stored_messages << " stored, "
            << c.duplicates << " duplicate, " << c.quarantined << " quarantined again\n";
  return settled == entries.size() ? 0 : 1;
}

}  // namespace telehub::apps
