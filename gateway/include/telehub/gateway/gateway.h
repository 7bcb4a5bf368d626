// The reference gateway: seals readings with the device key and publishes them to the
// broker at QoS 1, and the vital-signs simulator that feeds it in the demo.
//
// Sequence numbers: the gateway keeps the last used sequence in a state file next to its
// provisioning file (`<provisioning>.seq`) and writes (and fsyncs) the new value before
// sealing, so a sequence is never reused under a key, even after a crash.
//
// Error policy: Result, never throws (Paho exceptions are caught inside). Reasons:
// mqtt_connect, mqtt_publish (broker unreachable / publish not acknowledged in time),
// sequence_state (state file unreadable/unwritable).
// Thread-safety: a Gateway is used by one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <span>
#include <vector>

#include "telehub/core/error.h"
#include "telehub/core/reading.h"
#include "telehub/gateway/provisioning.h"

namespace telehub::gateway {

struct GatewayOptions {
  // Where the sequence state lives. Default: empty = "<provisioning path>.seq" as given to
  // Gateway::connect, or no persistence when both are empty (tests only).
  std::filesystem::path sequence_file;
  // MQTT client id. Default: the device id.
  std::string client_id;
  // How long to wait for the broker's PUBACK. Default: 10 s.
  std::chrono::milliseconds publish_timeout{10000};
};

class Gateway {
 public:
  // Connects to p.broker_uri (MQTT 5, clean session off). Fails with unavailable/mqtt_connect.
  [[nodiscard]] static Result<std::unique_ptr<Gateway>> connect(const Provisioning& p, const GatewayOptions& options);
  virtual ~Gateway() = default;

  // Encodes readings as payload v1, seals them under the next sequence number and publishes
  // at QoS 1, waiting for the broker's acknowledgement. Returns the sequence used.
  [[nodiscard]] virtual Result<std::uint64_t> publish(std::span<const core::Reading> readings) = 0;

  // Publishes raw bytes on the device's readings topic (for tests of hostile input).
  [[nodiscard]] virtual Status publish_raw(std::span<const std::uint8_t> bytes) = 0;

  // The last sequence used (0 before the first publish).
  virtual std::uint64_t last_sequence() const = 0;
  virtual void disconnect() = 0;
};

// Produces plausible vital signs for one simulated patient: values with a daily rhythm
// (lower heart rate and blood pressure at night) and noise. Deterministic for a seed.
class VitalsSimulator {
 public:
  explicit VitalsSimulator(std::uint64_t seed);
  // One set of readings taken at `t`: heart rate, SpO2, respiratory rate, temperature, blood
  // pressure panel, and (first call of a day) weight.
  std::vector<core::Reading> sample(core::TimePoint t);

 private:
  std::mt19937_64 rng_;
  double baseline_hr_, baseline_sys_, baseline_dia_, baseline_weight_, baseline_temp_;
  std::int64_t last_weight_day_ = -1;
};

}  // namespace telehub::gateway
