// telehub-bench-seal: seals the benchmark's messages the way a gateway does, for every device
// enrolled in a data directory, and writes them to a message file (message_file.h) that
// telehub-bench-publish replays. It also writes the same readings as tab-separated rows, one
// per stored observation, for telehub-bench-sqlite-append.
//
//   telehub-bench-seal --provisioning DIR --messages N --readings K --out FILE [--rows FILE]
//                      [--first-sequence S]
//
// Messages go round-robin over the devices (message i to device i mod D), each device's
// sequences counting up from S. K = 1: one blood-pressure panel per message (about 200 bytes
// sealed), one second apart per device. K > 1: K heart-rate readings a minute apart, like a
// wearable's hourly upload. Reading times end 10 minutes before now, so the hub accepts them
// (not older than 90 days, not in the future); the span must therefore stay under 80 days.
// Prints one JSON line: {"messages":N,"readings":R,"devices":D,"avg_bytes":B}.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "message_file.h"
#include "telehub/core/bytes.h"
#include "telehub/core/reading.h"
#include "telehub/envelope/envelope.h"
#include "telehub/envelope/payload.h"
#include "telehub/gateway/provisioning.h"

namespace {

using telehub::bench::Message;
namespace core = telehub::core;
namespace envelope = telehub::envelope;

int usage(const std::string& why) {
  std::cerr << "telehub-bench-seal: " << why
            << "\nusage: telehub-bench-seal --provisioning DIR --messages N --readings K --out FILE "
               "[--rows FILE] [--first-sequence S]\n";
  return 2;
}

std::string format_value(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> opt;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string name = argv[i];
    if (name.rfind("--", 0) != 0) return usage("unexpected argument " + name);
    opt[name.substr(2)] = argv[i + 1];
  }
  if (argc % 2 == 0) return usage("every option needs a value");
  for (const char* required : {"provisioning", "messages", "readings", "out"})
    if (!opt.count(required)) return usage(std::string("missing --") + required);
  const long messages = std::atol(opt["messages"].c_str());
  const long per_message = std::atol(opt["readings"].c_str());
  const long first_sequence = opt.count("first-sequence") ? std::atol(opt["first-sequence"].c_str()) : 1;
  if (messages < 1 || per_message < 1 || per_message > static_cast<long>(envelope::kMaxReadingsPerPayload) ||
      first_sequence < 1)
    return usage("--messages >= 1, 1 <= --readings <= 1000, --first-sequence >= 1");

  std::vector<std::filesystem::path> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(opt["provisioning"], ec))
    if (entry.path().extension() == ".json") files.push_back(entry.path());
  if (ec || files.empty()) return usage("no provisioning files (*.json) in " + opt["provisioning"]);
  std::sort(files.begin(), files.end());
  std::vector<telehub::gateway::Provisioning> devices;
  for (const auto& f : files) {
    auto p = telehub::gateway::load_provisioning(f);
    if (!p) {
      std::cerr << "telehub-bench-seal: " << f.string() << ": " << p.error().to_string() << "\n";
      return 1;
    }
    devices.push_back(std::move(*p));
  }
  const long device_count = static_cast<long>(devices.size());
  const long per_device = (messages + device_count - 1) / device_count;

  // Each device's readings are `step` apart and end 10 minutes before now.
  using std::chrono::milliseconds;
  const milliseconds step = per_message == 1 ? milliseconds(1000) : milliseconds(60000);
  const milliseconds span = step * (per_device * per_message);
  if (span > std::chrono::hours(24 * 80))
    return usage("too many messages per device: the readings would reach back more than 80 days");
  const core::TimePoint start =
      std::chrono::time_point_cast<milliseconds>(std::chrono::system_clock::now()) - milliseconds(600000) - span;

  std::vector<Message> out;
  out.reserve(static_cast<std::size_t>(messages));
  std::FILE* rows = nullptr;
  if (opt.count("rows") && !(rows = std::fopen(opt["rows"].c_str(), "w"))) return usage("cannot create " + opt["rows"]);
  std::size_t bytes = 0;
  for (long i = 0; i < messages; ++i) {
    const auto& d = devices[static_cast<std::size_t>(i % device_count)];
    const long n = i / device_count;  // this device's n-th message
    const auto sequence = static_cast<std::uint64_t>(first_sequence + n);
    std::vector<core::Reading> readings;
    for (long j = 0; j < per_message; ++j) {
      core::Reading r;
      r.time = start + step * (n * per_message + j);
      if (per_message == 1) {
        r.code = "85354-9";
        r.components = {{"8480-6", static_cast<double>(110 + i % 40), "mm[Hg]"},
                        {"8462-4", static_cast<double>(70 + i % 20), "mm[Hg]"}};
      } else {
        r.code = "8867-4";
        r.value = static_cast<double>(55 + (i + j) % 50);
        r.unit = "/min";
      }
      readings.push_back(std::move(r));
    }
    auto payload = envelope::encode_payload(readings);
    if (!payload) {
      std::cerr << "telehub-bench-seal: " << payload.error().to_string() << "\n";
      return 1;
    }
    envelope::Header h;
    h.device_id = d.device_id;
    h.key_id = d.key_id;
    h.sequence = sequence;
    auto sealed = envelope::seal(
        h, d.key, std::span(reinterpret_cast<const std::uint8_t*>(payload->data()), payload->size()));
    if (!sealed) {
      std::cerr << "telehub-bench-seal: " << sealed.error().to_string() << "\n";
      return 1;
    }
    bytes += sealed->size();
    out.push_back({d.readings_topic, std::string(sealed->begin(), sealed->end())});
    if (rows) {
      // subject (a 32-character stand-in for the pseudonym), device, sequence, idx, code, value,
      // unit, time_ms, components: the columns of the hub's observations table.
      const std::string subject = d.device_id.substr(4) + d.device_id.substr(4);
      for (std::size_t j = 0; j < readings.size(); ++j) {
        const auto& r = readings[j];
        std::string components;
        for (const auto& c : r.components)
          components += (components.empty() ? "" : ";") + c.code + "|" + format_value(c.value) + "|" + c.unit;
        std::fprintf(rows, "%s\t%s\t%llu\t%zu\t%s\t%s\t%s\t%lld\t%s\n", subject.c_str(), d.device_id.c_str(),
                     static_cast<unsigned long long>(sequence), j, r.code.c_str(),
                     r.value ? format_value(*r.value).c_str() : "", r.unit.c_str(),
                     static_cast<long long>(core::to_unix_millis(r.time)), components.c_str());
      }
    }
  }
  if (rows && std::fclose(rows) != 0) return usage("cannot write " + opt["rows"]);
  std::string error;
  if (!telehub::bench::write_message_file(opt["out"], out, error)) {
    std::cerr << "telehub-bench-seal: " << error << "\n";
    return 1;
  }
  std::cout << "{\"messages\":" << messages << ",\"readings\":" << messages * per_message
            << ",\"devices\":" << device_count << ",\"avg_bytes\":" << bytes / static_cast<std::size_t>(messages)
            << "}" << std::endl;
  return 0;
}
