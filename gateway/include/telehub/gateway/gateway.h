// The reference gateway: seals readings with the device key and publishes them to the
// broker at QoS 1, and the vital-signs simulator that feeds it in the demo.
//
// Sequence numbers: the gateway keeps the last used sequence in a state file next to its
// provisioning file (`<provisioning>.seq`, docs/protocol.md section 4.1) and writes (and fsyncs)
// the new value before sealing, so a sequence is never reused under a key, even after a crash.
// While a Gateway lives it holds an flock on `<state file>.lock`, so a second Gateway (in this or
// another process) cannot share the state file and reuse sequence numbers.
//
// Receipts: the gateway subscribes (QoS 1) to its receipts topic; a receipt removes the message
// from the outbox. Only receipts, never the broker's PUBACK, empty the outbox, because the
// broker's acknowledgement only means "in broker memory".
//
// MQTT: v5, clean start off with a one-day session expiry and automatic reconnect (1 s to 30 s),
// so QoS 1 messages in flight when the connection drops are retransmitted, with the same bytes,
// after reconnecting. Messages published while reconnecting wait in the client (up to 100).
//
// TLS: when the provisioning carries `tls` (provisioning.h), the gateway connects to the ssl://
// broker URI with its client certificate, trusting only the provisioned CA and checking that
// the broker's certificate names the URI's host. Paho reads certificates from files, so the
// PEMs are written to a private temporary directory (mkdtemp under $TMPDIR: mode 0700, files
// 0600) that the Gateway removes when destroyed. Without `tls`, plain MQTT as before.
//
// Error policy: Result, never throws (Paho exceptions are caught inside). Reasons:
// mqtt_connect (broker unreachable or refused the connection, TLS handshake failed, the TLS
// files cannot be written), mqtt_publish (not acknowledged
// within publish_timeout, or the gateway is disconnected), sequence_state (state file
// unreadable, unwritable, not a number, or locked by another Gateway), bad_provisioning (device
// id or key unusable), and envelope's bad_payload (no readings or too many).
// Thread-safety: a Gateway is used by one thread at a time.
//
// Lifetimes: the destructor disconnects; the broker keeps the session until it expires.
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
  // Where the sequence state lives; callers pass "<provisioning file>.seq" (connect() only sees
  // the parsed Provisioning, not its path). Default: empty = kept in memory only, starting at 0:
  // tests only, because a restarted gateway would reuse nonces under the same key.
  std::filesystem::path sequence_file;
  // MQTT client id. Default: the device id.
  std::string client_id;
  // How long to wait for the broker's PUBACK, and for the CONNACK in connect(). Default: 10 s.
  std::chrono::milliseconds publish_timeout{10000};
  // Where sealed messages wait for the hub's receipt (docs/protocol.md, "Receipts").
  // Default: empty = "<sequence_file without .seq>.outbox" when sequence_file is set, else in
  // memory only (tests).
  std::filesystem::path outbox_dir;
  // A message without a receipt this long after it was sent is sent again (same bytes) by
  // resend_pending(). Default: 30 s.
  std::chrono::milliseconds receipt_timeout{30000};
};

class Gateway {
 public:
  // Reads the sequence state, then connects to p.broker_uri (MQTT 5, clean start off) and waits
  // for the CONNACK. Fails with unavailable/mqtt_connect, sequence_state or bad_provisioning.
  [[nodiscard]] static Result<std::unique_ptr<Gateway>> connect(const Provisioning& p, const GatewayOptions& options);
  virtual ~Gateway() = default;

  // Encodes readings as payload v1, seals them under the next sequence number, keeps the sealed
  // message in the outbox (on disk, fsynced) and publishes it at QoS 1, waiting for the
  // broker's acknowledgement. Returns the sequence used. The message stays in the outbox until
  // the hub's receipt for it arrives, even when publishing fails.
  // The sequence is used up once it is stored, even if publishing then fails; after an
  // mqtt_publish timeout the message may still be delivered later (same bytes, same sequence).
  // Invalid readings (bad_payload) use up no sequence number.
  [[nodiscard]] virtual Result<std::uint64_t> publish(std::span<const core::Reading> readings) = 0;

  // Like publish(), for a plaintext the gateway already has in the device's own format (SenML,
  // or a vendor JSON the hub reads through the device's mapping template; docs/payloads.md):
  // sealed as it is under the next sequence number, kept in the outbox, published at QoS 1.
  [[nodiscard]] virtual Result<std::uint64_t> publish_payload(std::span<const std::uint8_t> plaintext) = 0;

  // Publishes raw bytes on the device's readings topic at QoS 1 and waits for the
  // acknowledgement (for tests of hostile input). Uses no sequence number.
  [[nodiscard]] virtual Status publish_raw(std::span<const std::uint8_t> bytes) = 0;

  // The last sequence used (0 before the first publish).
  virtual std::uint64_t last_sequence() const = 0;

  // Messages in the outbox, waiting for a receipt.
  virtual std::size_t pending() const = 0;
  // Messages the hub answered with a "rejected" receipt (kept under <outbox>/rejected/).
  virtual std::uint64_t rejected() const = 0;
  // Sends again (same bytes) every outbox message never sent or without a receipt for
  // receipt_timeout. Returns how many were sent. Fails with mqtt_publish (they stay queued).
  [[nodiscard]] virtual Result<std::size_t> resend_pending() = 0;
  // Waits until the outbox is empty, resending as resend_pending() does. True when drained.
  virtual bool wait_for_receipts(std::chrono::milliseconds timeout) = 0;
  // Disconnects cleanly (idempotent); publish() then fails with mqtt_publish.
  virtual void disconnect() = 0;
};

// Produces plausible vital signs for one simulated patient: values with a daily rhythm by UTC
// hour (lower heart rate and blood pressure at night) and noise, rounded as devices report them
// (integers; temperature and weight to 0.1). Deterministic for a seed and the same sequence of
// sample() times (with one standard library: <random> distributions are implementation-defined).
// Thread-safety: not thread-safe; one simulator per thread.
class VitalsSimulator {
 public:
  explicit VitalsSimulator(std::uint64_t seed);
  // One set of readings taken at `t`: heart rate, SpO2, respiratory rate, temperature, blood
  // pressure panel, and (first call of a UTC day) weight. Subject, device and sequence are empty.
  std::vector<core::Reading> sample(core::TimePoint t);

 private:
  std::mt19937_64 rng_;
  double baseline_hr_, baseline_sys_, baseline_dia_, baseline_weight_, baseline_temp_;
  double baseline_spo2_, baseline_rr_;
  std::int64_t last_weight_day_ = -1;
};

}  // namespace telehub::gateway
