// The `telehub` command: serve, device enroll, simulate, quarantine list.
#include <iostream>
#include <string>

#include "args.h"
#include "commands.h"
#include "enrol.h"
#include "hub_files.h"
#include "telehub/core/time.h"
#include "telehub/storage/store.h"

namespace telehub::apps {

int fail_with(const core::Error& e) {
  std::cerr << "telehub: " << e.message << " [" << e.reason << "]\n";
  return 1;
}

namespace {

constexpr const char* kHelp = R"(usage: telehub <command> [options]

commands:
  serve                      run the hub: broker link, ingest, FHIR API (telehub serve --help)
  device enroll --subject ID enrol a device for a subject and write its provisioning file
  simulate                   enrol simulated patients and publish their vital signs (telehub simulate --help)
  quarantine list            show the newest quarantined messages and counts per reason

common options: --data DIR (default ./data)
)";

constexpr const char* kEnrollHelp = R"(usage: telehub device enroll --subject ID [options]
  --subject ID     internal subject id (1..128 printable characters); only its keyed pseudonym is stored
  --data DIR       data directory (default ./data)
  --broker URI     broker address written into the provisioning file
                   (default: the one in <data>/hub.json, written by serve)
  --out FILE       where to write the provisioning file (default <data>/provisioning/<device>.json)
)";

}  // namespace

int cmd_device(int argc, char** argv) {
  if (argc < 3 || std::string(argv[2]) != "enroll") {
    std::cerr << "telehub: unknown device command\n" << kEnrollHelp;
    return 2;
  }
  auto parsed = parse_args(argc, argv, 3, {"subject", "data", "broker", "out"}, {"help"});
  if (!parsed) {
    std::cerr << "telehub: " << parsed.error().message << "\n" << kEnrollHelp;
    return 2;
  }
  if (parsed->has("help")) {
    std::cout << kEnrollHelp;
    return 0;
  }
  if (!parsed->has("subject") || !parsed->words.empty()) {
    std::cerr << "telehub: device enroll needs --subject ID\n" << kEnrollHelp;
    return 2;
  }
  auto dir = open_data_dir(parsed->get("data", "data"));
  if (!dir) return fail_with(dir.error());
  std::string broker = parsed->get("broker");
  if (broker.empty()) {
    auto info = read_hub_info(*dir);
    if (!info) return fail_with(info.error());
    if (!*info) {
      std::cerr << "telehub: no broker address known: pass --broker tcp://host:port, or run `telehub serve` once\n";
      return 2;
    }
    broker = (*info)->broker_uri;
  }
  auto store = storage::open_sqlite_store({dir->db()}, core::system_clock());
  if (!store) return fail_with(store.error());
  auto e = enrol_device(*dir, **store, parsed->get("subject"), broker, parsed->get("out"));
  if (!e) return e.error().reason == "bad_subject" ? (std::cerr << "telehub: " << e.error().message << "\n", 2)
                                                   : fail_with(e.error());
  std::cout << "device:       " << e->device_id << "\n"
            << "patient:      Patient/" << e->subject_pseudonym << " (pseudonym; the subject id is not stored)\n"
            << "provisioning: " << e->provisioning_file.string() << " (holds the device key: keep it secret)\n";
  return 0;
}

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

int main(int argc, char** argv) {
  using namespace telehub::apps;
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "help") {
    std::cout << kHelp;
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  if (cmd == "serve") return cmd_serve(argc, argv);
  if (cmd == "device") return cmd_device(argc, argv);
  if (cmd == "simulate") return cmd_simulate(argc, argv);
  if (cmd == "quarantine") return cmd_quarantine(argc, argv);
  std::cerr << "telehub: unknown command '" << cmd << "'\n" << kHelp;
  return 2;
}
