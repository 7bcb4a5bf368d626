// ingest::Pipeline: turns one inbound message (topic + sealed bytes) into stored readings, a
// recognised duplicate, or a quarantine record. It knows nothing of MQTT, so tests and other
// transports drive it directly; ingest::MqttSubscriber feeds it from the broker.
//
// Steps (docs/protocol.md and docs/ingest.md): size limit -> topic -> envelope header ->
// device look-up (revoked, active, key id: current, or previous within its grace period) ->
// unwrap the device key under the KEK -> open (AES-256-GCM) -> decode in the device's payload
// format (payload v1, SenML or its mapping template; docs/payloads.md) -> units to the code's
// canonical UCUM unit -> validation (known code, panel shape, finite values) -> plausibility
// (impossible: quarantined; extreme: stored and counted as flagged) -> bind to the device's
// subject pseudonym -> append (idempotent by device + sequence) -> device metadata (serial
// pseudonymised) -> disposition.
//
// Disposition contract (the caller acknowledges the transport message exactly when
// `acknowledge()` is true):
//   kStored       committed durably; acknowledge.
//   kDuplicate    same (device, sequence) and same bytes already stored; acknowledge.
//   kQuarantined  kept in the quarantine table with `reason`, counted; acknowledge (it would
//                 only fail again).
//   kRetry        storage could not commit (or could not quarantine), or the device key does
//                 not unwrap under the KEK (reason unwrap_failed: a configuration error, the
//                 wrong KEK, not the device's fault); NOT acknowledged — nothing was lost,
//                 the message must be offered again.
// Quarantine reasons: too_large, bad_topic, not_envelope, unsupported_version, bad_header,
// device_mismatch, unknown_device, device_revoked, device_inactive, unknown_key, expired_key,
// bad_seal, bad_payload, unknown_format (the device's mapping template is not loaded),
// no_match (no set of its template matches), unknown_code, bad_unit, bad_reading,
// implausible_value (a value outside its code's impossible range), subject_mismatch (the
// payload names another registered person than the device's), bad_subject (it names a
// malformed BSN), replay (same sequence with other
// content, a sequence far below the device's highest, or a reading time far in the past: see
// PipelineOptions).
//
// Thread-safety: process() may be called from several threads at once; counters are atomic.
// Error policy: process() never throws and never fails; every outcome is a Disposition.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "telehub/core/bytes.h"
#include "telehub/core/time.h"
#include "telehub/formats/mapping.h"
#include "telehub/formats/plausibility.h"
#include "telehub/privacy/identity_vault.h"
#include "telehub/privacy/keystore.h"
#include "telehub/privacy/pseudonym.h"
#include "telehub/storage/store.h"

namespace telehub::ingest {

inline constexpr std::string_view kTopicPrefix = "telehub/v1/devices/";
inline constexpr std::string_view kReadingsSuffix = "/readings";
inline constexpr std::string_view kReadingsFilter = "telehub/v1/devices/+/readings";

struct InboundMessage {
  std::string topic;
  core::Bytes payload;
  core::TimePoint received_at{};  // zero: the pipeline's clock supplies it
};

struct Disposition {
  enum class Kind { kStored, kDuplicate, kQuarantined, kRetry };
  Kind kind = Kind::kRetry;
  std::string reason;        // quarantine reason, or the storage error reason for kRetry
  std::size_t readings = 0;  // readings stored (kStored) or carried (kDuplicate)
  // Set once the envelope was opened with the device's key: only then do `device_id` and
  // `sequence` come from the device itself, and only then does the hub send a receipt.
  bool authenticated = false;
  std::string device_id;
  std::uint64_t sequence = 0;

  bool acknowledge() const { return kind != Kind::kRetry; }
};

std::string_view kind_name(Disposition::Kind kind);

struct PipelineOptions {
  // Largest accepted message. Default: 256 KiB (docs/protocol.md).
  std::size_t max_message_bytes = 256 * 1024;
  // Replay window, sequences: a message not yet stored whose sequence is more than this below
  // the highest sequence stored for its device is quarantined as `replay`. The highest stored
  // sequence is read from the store, so the window survives restarts. Gateways number messages
  // one by one and resend from their outbox, so honest out-of-order arrival stays far inside.
  // 0 turns the check off. Default: 100,000.
  std::uint64_t sequence_window = 100'000;
  // Replay window, time: a reading whose time is more than this before the message's receipt
  // is quarantined as `replay`. 0 turns the check off. Default: 90 days (a gateway offline
  // longer than that has to be looked at; quarantine replay re-checks against the original
  // receipt time).
  core::Millis max_reading_age = std::chrono::hours(24 * 90);
  // Clock tolerance: a reading whose time is more than this after the message's receipt is
  // quarantined as `bad_reading` (a gateway clock running ahead). Default: 10 minutes.
  core::Millis max_clock_skew = std::chrono::minutes(10);
  // Mapping templates for devices enrolled with "template:<name>". A device whose template is
  // not here has its messages quarantined as unknown_format (replay them once it is loaded).
  // Default: none.
  std::shared_ptr<const formats::MappingSet> mappings;
  // Plausibility rules. Default (nullptr): formats::Plausibility::defaults().
  std::shared_ptr<const formats::Plausibility> plausibility;
  // Pseudonymises device serial numbers reported in payloads before they are stored. Default
  // (nullptr): serials are not stored at all (manufacturer and model still are).
  std::shared_ptr<const privacy::Pseudonymiser> pseudonymiser;
  // The identity vault, to match the patient a vendor payload names (a template's "subject":
  // BSN, record number) against the device's subject: a payload naming a registered person
  // other than the device's is quarantined as subject_mismatch; one naming nobody registered is
  // stored and counted (subjects_unmatched). The identifiers are never stored. Needs
  // `pseudonymiser` too. Default (nullptr): no matching.
  std::shared_ptr<privacy::IdentityVault> vault;
};

struct PipelineCounters {
  std::uint64_t received = 0;
  std::uint64_t stored_messages = 0;
  std::uint64_t stored_readings = 0;
  std::uint64_t duplicates = 0;
  std::uint64_t quarantined = 0;
  std::uint64_t retries = 0;
  // Stored messages whose payload named a patient the identity vault does not know.
  std::uint64_t subjects_unmatched = 0;
  // Stored readings with a value (or a component) outside its code's expected range, by code.
  std::map<std::string, std::uint64_t> flagged_by_code;
  std::map<std::string, std::uint64_t> quarantined_by_reason;
};

class Pipeline {
 public:
  // The store, the clock and the KEK must outlive the pipeline. Device keys are unwrapped
  // with `kek` (privacy::device_key_ad); the clock decides whether a previous key's grace
  // period is over when a message carries no receive time.
  Pipeline(storage::Store& store, const core::Clock& clock, const privacy::Kek& kek, PipelineOptions options = {});

  Disposition process(const InboundMessage& message);

  PipelineCounters counters() const;
  // The store's sync(): makes every outcome returned so far durable against power loss.
  [[nodiscard]] Status sync() { return store_.sync(); }

  // The device id in "telehub/v1/devices/<id>/readings", or empty when the topic has another shape.
  static std::string device_from_topic(std::string_view topic);

 private:
  Disposition quarantine(const InboundMessage& m, std::string device_id, std::string reason, std::string detail);
  Disposition retry(const core::Error& e);
  core::TimePoint received_time(const InboundMessage& m) const;
  Disposition unwrap_failed(const core::Error& e);
  [[nodiscard]] Result<formats::Decoded> decode(std::string_view format, std::span<const std::uint8_t> plaintext,
                                                core::TimePoint received) const;
  void record_device_info(const storage::DeviceRecord& d, const formats::DeviceInfo& info);
  // The vault's verdict on the patient a payload names: "" (same person, or no matching
  // configured), "unmatched" (nobody registered), or a quarantine reason.
  [[nodiscard]] Result<std::string> match_subject(const storage::DeviceRecord& d, formats::SubjectIdentifiers& ids) const;

  storage::Store& store_;
  const core::Clock& clock_;
  PipelineOptions options_;
  const privacy::Kek& kek_;

  std::atomic<std::uint64_t> received_{0}, stored_messages_{0}, stored_readings_{0}, duplicates_{0}, quarantined_{0},
      retries_{0}, unmatched_{0};
  mutable std::mutex reasons_mutex_;
  std::map<std::string, std::uint64_t> by_reason_;
  std::map<std::string, std::uint64_t> flagged_;
};

}  // namespace telehub::ingest
