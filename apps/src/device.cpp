// `telehub device ...`: enrolment of gateways' devices.
#include <iostream>
#include <string>

#include "args.h"
#include "commands.h"
#include "enrol.h"
#include "hub_files.h"
#include "telehub/core/time.h"
#include "telehub/storage/store.h"

namespace telehub::apps {
namespace {

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

}  // namespace telehub::apps
