// `telehub-gateway`: the reference gateway. Reads a provisioning file written by
// `telehub device enroll`, and publishes simulated vital signs for that one device, sealed
// with its key, until stopped (or --count rounds). Messages stay in its on-disk outbox until
// the hub's receipts cover them.
#include <csignal>
#include <iostream>
#include <thread>

#include "args.h"
#include "telehub/gateway/gateway.h"

namespace {
volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

constexpr const char* kHelp = R"(usage: telehub-gateway --provisioning FILE [options]
  --provisioning FILE  provisioning file from `telehub device enroll`
  --broker URI         override the broker address in the file
  --interval-ms MS     pause between rounds of readings (default 5000)
  --count N            stop after N rounds; 0 = until Ctrl-C (default 0)
  --seed S             seed of the simulated patient (default 1)
  --receipt-wait-ms MS before exiting, wait this long for the hub's receipts (default 15000)

Every sealed message stays in <provisioning>.outbox/ until the hub's receipt for it arrives;
messages without a receipt are resent (same bytes). Exit status 3: some still await a receipt.
)";
}  // namespace

int main(int argc, char** argv) {
  using namespace telehub;
  auto args = apps::parse_args(argc, argv, 1, {"provisioning", "broker", "interval-ms", "count", "seed", "receipt-wait-ms"}, {"help"});
  if (!args || args->has("help") || !args->has("provisioning")) {
    if (!args) std::cerr << "telehub-gateway: " << args.error().message << "\n";
    (args && args->has("help") ? std::cout : std::cerr) << kHelp;
    return args && args->has("help") ? 0 : 2;
  }
  auto interval = args->get_int("interval-ms", 5000, 10, 3'600'000);
  auto count = args->get_int("count", 0, 0, 1'000'000'000);
  auto seed = args->get_int("seed", 1, 0, 1'000'000'000);
  auto wait = args->get_int("receipt-wait-ms", 15000, 0, 3'600'000);
  for (const auto* r : {&interval, &count, &seed, &wait})
    if (!*r) {
      std::cerr << "telehub-gateway: " << r->error().message << "\n";
      return 2;
    }
  const std::string file = args->get("provisioning");
  auto p = gateway::load_provisioning(file);
  if (!p) {
    std::cerr << "telehub-gateway: " << p.error().message << " [" << p.error().reason << "]\n";
    return 1;
  }
  if (args->has("broker")) p->broker_uri = args->get("broker");
  gateway::GatewayOptions go;
  go.sequence_file = file + ".seq";
  auto gw = gateway::Gateway::connect(*p, go);
  if (!gw) {
    std::cerr << "telehub-gateway: " << gw.error().message << " [" << gw.error().reason << "]\n";
    return 1;
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  gateway::VitalsSimulator sim(static_cast<std::uint64_t>(*seed));
  long long rounds = 0;
  while (!g_stop && (*count == 0 || rounds < *count)) {
    auto readings = sim.sample(core::system_clock().now());
    auto seq = (*gw)->publish(readings);
    if (!seq && seq.error().reason != "mqtt_publish") {
      std::cerr << "telehub-gateway: " << seq.error().message << " [" << seq.error().reason << "]\n";
      return 1;
    }
    ++rounds;
    if (seq)
      std::cout << "published sequence " << *seq << " (" << readings.size() << " readings)" << std::endl;
    else  // sealed and kept in the outbox; resent when the broker is back
      std::cerr << "telehub-gateway: " << seq.error().message << "; kept in the outbox\n";
    (void)(*gw)->resend_pending();
    if (*count != 0 && rounds >= *count) break;
    for (long long waited = 0; waited < *interval && !g_stop; waited += 50)
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min<long long>(50, *interval - waited)));
  }
  // Stay until the hub has confirmed everything (or give up and leave it in the outbox).
  const bool drained = (*gw)->wait_for_receipts(std::chrono::milliseconds(*wait));
  if (!drained)
    std::cerr << "telehub-gateway: " << (*gw)->pending()
              << " message(s) still await a receipt; they stay in the outbox and are resent on the next start\n";
  if ((*gw)->rejected() > 0)
    std::cerr << "telehub-gateway: the hub rejected " << (*gw)->rejected() << " message(s); see the outbox's rejected/ folder\n";
  (*gw)->disconnect();
  return drained ? 0 : 3;
}
