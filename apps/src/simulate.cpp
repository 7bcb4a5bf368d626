// `telehub simulate`: enrols N simulated patients' devices (once; later runs reuse their
// provisioning files) and publishes plausible vital signs for them through the broker, sealed
// with each device's key: for a newly enrolled patient first a history (default 24 h at
// 15-minute steps), then live readings every --interval-ms until stopped or --duration-s.
// Each new simulated patient is first registered in the identity vault with a synthetic
// identity (a BSN passing the 11-test, name, birth date, address, phone, e-mail, a record
// number), as a care programme registers its patients; the device is bound to the vault's
// subject id. Devices send payload v1 or SenML (--format; by default every second patient's device speaks
// SenML, so the demo shows both paths through the hub).
#include <csignal>
#include <iostream>
#include <thread>

#include "args.h"
#include "commands.h"
#include "enrol.h"
#include "hub_files.h"
#include "hub_tls.h"
#include "telehub/formats/senml_encode.h"
#include "telehub/gateway/gateway.h"
#include "privacy_stores.h"
#include "telehub/privacy/care_relations.h"
#include "telehub/privacy/pseudonym.h"

namespace telehub::apps {
namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

constexpr const char* kSimulateHelp = R"(usage: telehub simulate [options]
  --data DIR            data directory of the hub (default ./data)
  --patients N          simulated patients, 1..1000 (default 3)
  --history-hours H     hours of past readings to send for newly enrolled patients, 0..8760 (default 24)
  --interval-ms MS      pause between live rounds (default 5000)
  --duration-s S        stop after S seconds of live readings; 0 = until Ctrl-C (default 0)
  --broker URI          broker to publish to (default: the one in <data>/hub.json, written by serve)
  --kek-file PATH       key-encryption key file (default: $TELEHUB_KEK, else ~/.config/telehub/kek,
                        development only); must be the hub's
  --format F            payload format of newly enrolled devices: native, senml, or mixed (every
                        second patient senml; default). Enrolled devices keep theirs.
  --care-organisation ORG  record a care relation of ORG with each newly enrolled patient (in
                        <data>/care.db, audited as care.add), so a care client of ORG may read
                        them (docs/security.md)
)";

struct SimPatient {
  std::string subject_id;
  std::string pseudonym;
  std::unique_ptr<gateway::Gateway> gw;
  gateway::VitalsSimulator sim;
  std::uint64_t published = 0;
  bool new_enrolment = false;  // only new patients get a history; others continue live
  bool senml = false;          // the device was enrolled with payload format senml
  std::string device_id;
};

// A synthetic person for simulated patient i: a BSN that passes the 11-test (the first from
// 100000000 + 7919 i), a name from short lists, and contact details under example.org.
privacy::Person synthetic_person(long long i) {
  static const char* const kGiven[] = {"Anna", "Bram", "Cornelia", "Daan", "Eva", "Frank", "Gerda", "Hendrik"};
  static const char* const kFamily[] = {"Jansen", "de Vries", "Bakker", "Visser", "Smit", "Meijer", "de Boer", "Mulder"};
  privacy::Person p;
  for (long long n = 100000000 + 7919 * i;; ++n) {
    const std::string digits = std::to_string(n);
    int sum = 0;
    for (int k = 0; k < 8; ++k) sum += (9 - k) * (digits[k] - '0');
    const int check = sum % 11;
    if (check == 10) continue;
    p.bsn = digits.substr(0, 8) + static_cast<char>('0' + check);
    break;
  }
  p.given_name = kGiven[i % 8];
  p.family_name = kFamily[(i / 8) % 8];
  p.birth_date = std::to_string(1940 + i % 45) + "-0" + std::to_string(1 + i % 9) + "-1" + std::to_string(i % 10);
  p.sex = i % 2 ? "male" : "female";  // the given names alternate female, male
  p.address_line = "Simulatiestraat " + std::to_string(i);
  p.postcode = std::to_string(3500 + i % 400) + " SM";
  p.city = "Utrecht";
  p.phone = "+3161000" + std::to_string(1000 + i % 9000);
  p.email = "sim-patient-" + std::to_string(i) + "@example.org";
  p.record_numbers.push_back({"https://hospital.example.org/fhir/NamingSystem/mrn", "SIM-" + std::to_string(100000 + i)});
  return p;
}

Status publish_chunked(SimPatient& p, const std::vector<core::Reading>& readings) {
  constexpr std::size_t kChunk = 200;
  for (std::size_t i = 0; i < readings.size(); i += kChunk) {
    std::span<const core::Reading> part(readings.data() + i, std::min(kChunk, readings.size() - i));
    Result<std::uint64_t> seq = 0;
    if (p.senml) {
      auto pack = formats::encode_senml(part, "urn:dev:telehub:" + p.device_id + ":");
      if (!pack) return tl::unexpected(pack.error());
      seq = p.gw->publish_payload(core::as_bytes(*pack));
    } else {
      seq = p.gw->publish(part);
    }
    if (!seq) return tl::unexpected(seq.error());
    p.published += part.size();
  }
  return {};
}

}  // namespace

int cmd_simulate(int argc, char** argv) {
  auto parsed = parse_args(argc, argv, 2, {"data", "patients", "history-hours", "interval-ms", "duration-s", "broker", "kek-file", "format",
                            "care-organisation"},
                           {"help"});
  if (!parsed) {
    std::cerr << "telehub: " << parsed.error().message << "\n" << kSimulateHelp;
    return 2;
  }
  const Args& args = *parsed;
  if (args.has("help")) {
    std::cout << kSimulateHelp;
    return 0;
  }
  auto patients = args.get_int("patients", 3, 1, 1000);
  auto history = args.get_int("history-hours", 24, 0, 8760);
  auto interval = args.get_int("interval-ms", 5000, 10, 3'600'000);
  auto duration = args.get_int("duration-s", 0, 0, 10'000'000);
  for (const auto* r : {&patients, &history, &interval, &duration})
    if (!*r) {
      std::cerr << "telehub: " << r->error().message << "\n";
      return 2;
    }

  const std::string format = args.get("format", "mixed");
  if (format != "native" && format != "senml" && format != "mixed") {
    std::cerr << "telehub: --format must be native, senml or mixed\n" << kSimulateHelp;
    return 2;
  }
  auto dir = open_data_dir(args.get("data", "data"));
  if (!dir) return fail_with(dir.error());
  std::string broker_uri = args.get("broker");
  if (broker_uri.empty()) {
    auto info = read_hub_info(*dir);
    if (!info) return fail_with(info.error());
    if (!*info) {
      std::cerr << "telehub: no broker known: start `telehub serve --data " << dir->root.string()
                << "` first, or pass --broker URI\n";
      return 2;
    }
    broker_uri = (*info)->broker_uri;
  }
  auto kek = load_kek(args.get("kek-file"), *dir);
  if (!kek) return fail_with(kek.error());

  auto privacy_stores = open_privacy(*dir, *kek);
  if (!privacy_stores) return fail_with(privacy_stores.error());
  const std::string organisation = args.get("care-organisation");
  std::unique_ptr<privacy::CareRelations> care;
  if (args.has("care-organisation")) {
    if (!privacy::valid_organisation(organisation)) {
      std::cerr << "telehub: --care-organisation must be 1..128 characters from A-Z a-z 0-9 . _ : -\n";
      return 2;
    }
    auto opened = privacy::CareRelations::open(dir->care_db());
    if (!opened) return fail_with(opened.error());
    care = std::move(*opened);
  }
  std::vector<SimPatient> sims;
  {
    auto store = storage::open_sqlite_store({dir->db()}, core::system_clock());
    if (!store) return fail_with(store.error());
    for (long long i = 1; i <= *patients; ++i) {
      const std::string subject_id = "sim-patient-" + std::to_string(i);
      const auto file = dir->provisioning_dir() / (subject_id + ".json");
      const bool new_enrolment = !std::filesystem::exists(file);
      if (new_enrolment) {
        const bool senml = format == "senml" || (format == "mixed" && i % 2 == 0);
        auto registered = privacy_stores->vault->register_person(synthetic_person(i));
        if (!registered) return fail_with(registered.error());
        const auto pseudonym = privacy_stores->pseudonymiser->subject(registered->subject_id);
        if (auto s = privacy_stores->vault->link_pseudonym(registered->subject_id, pseudonym.str()); !s)
          return fail_with(s.error());
        if (auto a = privacy_stores->audit->append(cli_audit("subject.register", registered->created ? 'C' : 'U',
                                                             pseudonym.str(), "Patient/" + pseudonym.str(),
                                                             "registration"));
            !a)
          return fail_with(a.error());
        auto e = enrol_device(*dir, **store, *kek, registered->subject_id, broker_uri, file, senml ? "senml" : "native");
        if (!e) return fail_with(e.error());
        std::cout << "enrolled " << e->device_id << " for " << subject_id << " (Patient/" << e->subject_pseudonym
                  << ", " << (senml ? "SenML" : "payload v1") << ")\n";
      }
      auto p = gateway::load_provisioning(file);
      if (!p) return fail_with(p.error());
      auto device = (*store)->registry().find_device(p->device_id);
      if (!device) return fail_with(device.error());
      const bool senml = *device && (**device).payload_format == "senml";
      p->broker_uri = broker_uri;  // the embedded broker may have moved since enrolment
      if (is_tls_uri(broker_uri) && !p->has_tls()) {
        // Enrolled for a plain broker (before TLS): give the device its certificate now.
        if (auto s = add_device_tls(*dir, *p); !s) return fail_with(s.error());
        if (auto s = gateway::save_provisioning(file, *p); !s) return fail_with(s.error());
      }
      gateway::GatewayOptions go;
      go.sequence_file = file;
      go.sequence_file += ".seq";
      auto gw = gateway::Gateway::connect(*p, go);
      if (!gw) return fail_with(gw.error());
      if (!new_enrolment)
        std::cout << "continuing " << p->device_id << " for " << subject_id << " (Patient/"
                  << (*device ? (**device).subject : std::string("?")) << ")\n";
      sims.push_back(SimPatient{subject_id, *device ? (**device).subject : std::string(), std::move(*gw),
                                gateway::VitalsSimulator(static_cast<std::uint64_t>(i)), 0, new_enrolment, senml,
                                p->device_id});
    }
  }

  // The care relation of --care-organisation with every simulated patient that lacks one
  // (audit first: no record, no change).
  for (const auto& p : sims) {
    if (!care || p.pseudonym.empty()) continue;
    auto active = care->active(p.pseudonym, organisation, core::system_clock().now());
    if (!active) return fail_with(active.error());
    if (*active) continue;
    if (auto a = privacy_stores->audit->append(cli_audit("care.add", 'C', p.pseudonym,
                                                         "CareRelation organisation=" + organisation, "care-relation"));
        !a)
      return fail_with(a.error());
    if (auto added = care->add(p.pseudonym, organisation, core::system_clock().now(), "simulate"); !added)
      return fail_with(added.error());
    std::cout << "care relation: " << organisation << " treats Patient/" << p.pseudonym << "\n";
  }

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  const auto now = core::system_clock().now();
  if (*history > 0) {
    for (auto& p : sims) {
      if (!p.new_enrolment) continue;  // its history was sent when it was enrolled
      std::vector<core::Reading> readings;
      for (auto t = now - std::chrono::hours(*history); t < now && !g_stop; t += std::chrono::minutes(15)) {
        auto sample = p.sim.sample(t);
        readings.insert(readings.end(), sample.begin(), sample.end());
      }
      if (auto s = publish_chunked(p, readings); !s) return fail_with(s.error());
      std::cout << p.subject_id << " (Patient/" << p.pseudonym << "): sent " << p.published << " readings of history\n";
    }
  }
  std::cout << "simulating live readings every " << *interval << " ms; stop with Ctrl-C" << std::endl;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(*duration);
  while (!g_stop && (*duration == 0 || std::chrono::steady_clock::now() < deadline)) {
    for (auto& p : sims) {
      auto sample = p.sim.sample(core::system_clock().now());
      if (auto s = publish_chunked(p, sample); !s) return fail_with(s.error());
      (void)p.gw->resend_pending();  // messages whose receipt is overdue go out again
    }
    for (long long waited = 0; waited < *interval && !g_stop; waited += 50)
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min<long long>(50, *interval - waited)));
  }
  std::uint64_t total = 0;
  std::size_t pending = 0;
  for (auto& p : sims) {
    total += p.published;
    if (!p.gw->wait_for_receipts(std::chrono::seconds(5))) pending += p.gw->pending();
    p.gw->disconnect();
  }
  std::cout << "simulator stopped after publishing " << total << " readings";
  if (pending > 0) std::cout << "; " << pending << " message(s) still await a receipt and stay in the outboxes";
  std::cout << std::endl;
  return 0;
}

}  // namespace telehub::apps
