// `telehub device enroll|rekey|revoke`: enrolment of gateways' devices, key rotation and
// revocation. Device keys reach the store only wrapped under the KEK (--kek-file, TELEHUB_KEK,
// or the development default; docs/operations.md "Keys").
#include <iostream>
#include <string>

#include "args.h"
#include "commands.h"
#include "enrol.h"
#include "hub_files.h"
#include "payload_config.h"
#include "privacy_stores.h"
#include "telehub/core/time.h"
#include "telehub/storage/store.h"

namespace telehub::apps {
namespace {

constexpr const char* kDeviceHelp = R"(usage: telehub device enroll --subject ID [options]
       telehub device rekey --device ID [--grace-hours H] [options]
       telehub device revoke --device ID [options]

enroll: a new device for a subject, with a fresh key (key id 1)
  --subject ID     internal subject id (1..128 printable characters), e.g. the one `subject register`
                   printed; only its keyed pseudonym is stored
  --bsn N          instead of --subject: the person registered in the identity vault with this BSN
  --out FILE       where to write the provisioning file (default <data>/provisioning/<device>.json)
  --format F       what the device's payloads are (docs/payloads.md): native (payload v1, the
                   default), senml (RFC 8428 JSON), or the name of a mapping template in
                   <config>/mappings (e.g. acme-bp-cuff)
  --config DIR     configuration directory (default: $TELEHUB_CONFIG_DIR, else the config/
                   directory of the source tree)
rekey: a new key for a device (key id + 1) and a new provisioning file; messages under the old
       key are accepted for the grace period, then quarantined (expired_key)
  --device ID      the device
  --grace-hours H  how long the old key stays valid, 0..8760 (default 24)
  --out FILE       where to write the new provisioning file (default <data>/provisioning/<device>.json)
revoke: stops a device at once: inactive, keys overwritten, its messages quarantined (device_revoked);
        a running serve also makes its embedded broker refuse the device's certificate identity
  --device ID      the device

common:
  --data DIR       data directory (default ./data)
  --kek-file PATH  key-encryption key file (default: $TELEHUB_KEK, else ~/.config/telehub/kek, development only)
  --broker URI     broker address written into the provisioning file (enroll, rekey)
                   (default: the one in <data>/hub.json, written by serve). For ssl:// and
                   mqtts:// the file also carries a new client certificate for the device
                   (CN = device id) from the development CA in <data>/ca
)";

int usage(const std::string& message) {
  std::cerr << "telehub: " << message << "\n" << kDeviceHelp;
  return 2;
}

// --broker, else hub.json. Empty (after printing why) when neither is known.
std::optional<std::string> broker_of(const Args& args, const DataDir& dir, int& status) {
  std::string broker = args.get("broker");
  if (!broker.empty()) return broker;
  auto info = read_hub_info(dir);
  if (!info) {
    status = fail_with(info.error());
    return std::nullopt;
  }
  if (!*info) {
    std::cerr << "telehub: no broker address known: pass --broker URI, or run `telehub serve` once\n";
    status = 2;
    return std::nullopt;
  }
  return (*info)->broker_uri;
}

int device_error(const core::Error& e) {
  if (e.reason == "no_device" || e.reason == "device_revoked") {
    std::cerr << "telehub: " << e.message << "\n";
    return 1;
  }
  return fail_with(e);
}

}  // namespace

int cmd_device(int argc, char** argv) {
  const std::string sub = argc >= 3 ? argv[2] : "";
  if (sub != "enroll" && sub != "rekey" && sub != "revoke") return usage("unknown device command");
  auto parsed = parse_args(argc, argv, 3, {"subject", "device", "grace-hours", "data", "broker", "out", "kek-file", "format", "config", "bsn"},
                           {"help"});
  if (!parsed) return usage(parsed.error().message);
  const Args& args = *parsed;
  if (args.has("help")) {
    std::cout << kDeviceHelp;
    return 0;
  }
  if (!args.words.empty()) return usage("unexpected argument '" + args.words[0] + "'");
  if (sub == "enroll" && args.has("subject") == args.has("bsn")) return usage("device enroll needs --subject ID or --bsn N");
  if (sub != "enroll" && args.has("bsn")) return usage("--bsn is only for device enroll");
  if (sub != "enroll" && !args.has("device")) return usage("device " + sub + " needs --device ID");
  if (sub != "enroll" && args.has("subject")) return usage("--subject is only for device enroll");
  if (sub == "enroll" && (args.has("device") || args.has("grace-hours")))
    return usage("device enroll takes --subject, not --device or --grace-hours");
  if (sub != "enroll" && (args.has("format") || args.has("config")))
    return usage("--format and --config are only for device enroll");
  if (sub == "revoke" && (args.has("grace-hours") || args.has("out") || args.has("broker")))
    return usage("device revoke takes only --device, --data and --kek-file");
  auto grace = args.get_int("grace-hours", 24, 0, 8760);
  if (!grace) return usage(grace.error().message);

  auto dir = open_data_dir(args.get("data", "data"));
  if (!dir) return fail_with(dir.error());

  if (sub == "revoke") {
    auto store = storage::open_sqlite_store({dir->db()}, core::system_clock());
    if (!store) return fail_with(store.error());
    auto r = revoke_device(*dir, **store, args.get("device"));
    if (!r) return device_error(r.error());
    std::cout << "revoked:      " << args.get("device") << " (inactive; keys deleted; its messages are quarantined"
              << " as device_revoked)\n";
    if (*r) std::cout << "deleted:      its provisioning file in " << dir->provisioning_dir().string() << "\n";
    return 0;
  }

  int status = 0;
  auto broker = broker_of(args, *dir, status);
  if (!broker) return status;
  auto kek = load_kek(args.get("kek-file"), *dir);
  if (!kek) return fail_with(kek.error());
  auto store = storage::open_sqlite_store({dir->db()}, core::system_clock());
  if (!store) return fail_with(store.error());

  if (sub == "rekey") {
    auto r = rekey_device(*dir, **store, *kek, args.get("device"), std::chrono::hours(*grace), *broker,
                          args.get("out"));
    if (!r) return device_error(r.error());
    std::cout << "device:       " << args.get("device") << "\n"
              << "key id:       " << r->new_key_id << " (new)\n"
              << "old key id:   " << r->old_key_id << " accepted until " << core::format_rfc3339(r->old_key_valid_until)
              << "\n"
              << "provisioning: " << r->provisioning_file.string()
              << " (holds the new key: keep it secret; the gateway keeps counting sequence numbers)\n";
    return 0;
  }

  auto config = load_payload_config(config_dir(args.get("config")));
  if (!config) return fail_with(config.error());
  auto format = resolve_format(args.get("format"), *config);
  if (!format) return usage(format.error().message);
  std::string subject_id = args.get("subject");
  if (args.has("bsn")) {
    auto p = open_privacy(*dir, *kek);
    if (!p) return fail_with(p.error());
    auto found = p->vault->find_by_bsn(args.get("bsn"));
    if (!found) return found.error().reason == "bad_bsn" ? usage(found.error().message) : fail_with(found.error());
    if (!*found) {
      std::cerr << "telehub: no person with this BSN in the identity vault: `telehub subject register --bsn` first\n";
      return 1;
    }
    subject_id = **found;
  }
  auto e = enrol_device(*dir, **store, *kek, subject_id, *broker, args.get("out"), *format);
  if (!e) return e.error().reason == "bad_subject" ? usage(e.error().message) : fail_with(e.error());
  std::cout << "device:       " << e->device_id << "\n"
            << "patient:      Patient/" << e->subject_pseudonym << " (pseudonym; the subject id is not stored)\n"
            << "format:       " << *format << "\n"
            << "provisioning: " << e->provisioning_file.string() << " (holds the device key: keep it secret)\n";
  return 0;
}

}  // namespace telehub::apps
