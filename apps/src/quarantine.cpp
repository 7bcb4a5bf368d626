// `telehub quarantine ...`: what ingest could not accept, for operators.
#include <iostream>
#include <string>

#include "args.h"
#include "commands.h"
#include "enrol.h"
#include "hub_files.h"
#include "telehub/core/time.h"
#include "telehub/storage/store.h"

namespace telehub::apps {

int cmd_quarantine(int argc, char** argv) {
  if (argc < 3 || std::string(argv[2]) != "list") {
    std::cerr << "telehub: usage: telehub quarantine list [--data DIR] [--limit N]\n";
    return 2;
  }
  auto parsed = parse_args(argc, argv, 3, {"data", "limit"}, {});
  if (!parsed) {
    std::cerr << "telehub: " << parsed.error().message << "\n";
    return 2;
  }
  auto limit = parsed->get_int("limit", 20, 1, 10000);
  if (!limit) {
    std::cerr << "telehub: " << limit.error().message << "\n";
    return 2;
  }
  auto dir = open_data_dir(parsed->get("data", "data"));
  if (!dir) return fail_with(dir.error());
  auto store = storage::open_sqlite_store({dir->db()}, core::system_clock());
  if (!store) return fail_with(store.error());
  auto total = (*store)->quarantine().count();
  auto list = (*store)->quarantine().list(static_cast<std::size_t>(*limit));
  if (!total) return fail_with(total.error());
  if (!list) return fail_with(list.error());
  std::cout << *total << " quarantined message(s)\n";
  for (const auto& q : *list)
    std::cout << q.id << "\t" << core::format_rfc3339(q.received_at) << "\t" << q.reason << "\t"
              << (q.device_id.empty() ? "-" : q.device_id) << "\t" << q.detail << "\n";
  return 0;
}

}  // namespace telehub::apps
