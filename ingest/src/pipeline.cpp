#include "telehub/ingest/pipeline.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cmath>

#include "telehub/core/codes.h"
#include "telehub/core/log.h"
#include "telehub/envelope/envelope.h"
#include "telehub/envelope/payload.h"
#include "telehub/formats/senml.h"
#include "telehub/formats/units.h"

namespace telehub::ingest {
namespace {

using Kind = Disposition::Kind;

std::string sha256_hex(std::span<const std::uint8_t> bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr);
  return core::to_hex(std::span<const std::uint8_t>(md, len));
}

Disposition disposition(Kind kind, std::string reason, std::size_t readings) {
  Disposition d;
  d.kind = kind;
  d.reason = std::move(reason);
  d.readings = readings;
  return d;
}

struct Finding {
  std::string reason;
  std::string detail;
};

// Checks one decoded reading (units already normalised) against the code table: known code,
// the canonical UCUM unit of that code, panel shape, finite value; a flag (CodeInfo::boolean)
// only as a component, with the value 0 or 1.
std::optional<Finding> validate(const core::Reading& r, std::size_t index) {
  const std::string where = "readings[" + std::to_string(index) + "]";
  const core::CodeInfo* info = core::find_code(r.code);
  if (!info) return Finding{"unknown_code", where + ".code is not a known LOINC code"};
  if (info->panel) {
    if (r.components.empty() || r.value)
      return Finding{"bad_reading", where + " is a panel: it needs components and no value"};
    for (std::size_t i = 0; i < r.components.size(); ++i) {
      const auto& c = r.components[i];
      const core::CodeInfo* ci = core::find_code(c.code);
      const std::string cw = where + ".components[" + std::to_string(i) + "]";
      if (!ci || ci->panel) return Finding{"unknown_code", cw + ".code is not a known component code"};
      if (c.unit != ci->ucum) return Finding{"bad_unit", cw + ".unit must be " + std::string(ci->ucum)};
      if (!std::isfinite(c.value)) return Finding{"bad_reading", cw + ".value is not finite"};
      if (ci->boolean && c.value != 0 && c.value != 1) return Finding{"bad_reading", cw + ".value of a flag must be 0 or 1"};
    }
    return std::nullopt;
  }
  if (info->boolean) return Finding{"bad_reading", where + ".code is a flag: only a component of a panel"};
  if (!r.value || !r.components.empty())
    return Finding{"bad_reading", where + " needs a value and no components"};
  if (!std::isfinite(*r.value)) return Finding{"bad_reading", where + ".value is not finite"};
  if (r.unit != info->ucum) return Finding{"bad_unit", where + ".unit must be " + std::string(info->ucum)};
  return std::nullopt;
}

// The time windows of PipelineOptions, relative to the message's receive time.
std::optional<Finding> check_time(const ingest::PipelineOptions& options_, const core::Reading& r, std::size_t index,
                                  core::TimePoint received) {
  // The message text only on a finding: this runs for every reading.
  auto where = [&] { return "readings[" + std::to_string(index) + "].time " + core::format_rfc3339(r.time); };
  if (options_.max_reading_age.count() > 0 && r.time < received - options_.max_reading_age)
    return Finding{"replay", where() + " is more than " + std::to_string(options_.max_reading_age.count() / 3'600'000) +
                                 " h before the message was received (" + core::format_rfc3339(received) + ")"};
  if (r.time > received + options_.max_clock_skew)
    return Finding{"bad_reading", where() + " is more than " + std::to_string(options_.max_clock_skew.count() / 1000) +
                                      " s after the message was received (" + core::format_rfc3339(received) +
                                      "): the device clock is ahead"};
  return std::nullopt;
}

}  // namespace

std::string_view kind_name(Disposition::Kind kind) {
  switch (kind) {
    case Kind::kStored: return "stored";
    case Kind::kDuplicate: return "duplicate";
    case Kind::kQuarantined: return "quarantined";
    case Kind::kRetry: return "retry";
  }
  return "?";
}

Pipeline::Pipeline(storage::Store& store, const core::Clock& clock, const privacy::Kek& kek, PipelineOptions options)
    : store_(store), clock_(clock), options_(options), kek_(kek) {}

Disposition Pipeline::unwrap_failed(const core::Error& e) {
  ++retries_;
  core::log_error("ingest", "cannot unwrap the device key (check the KEK: --kek-file or TELEHUB_KEK); the message "
                            "stays unacknowledged: " + e.to_string());
  return disposition(Kind::kRetry, "unwrap_failed", 0);
}

Result<formats::Decoded> Pipeline::decode(std::string_view format, std::span<const std::uint8_t> plaintext,
                                          core::TimePoint received) const {
  if (format.empty() || format == formats::kNativeFormat) {
    auto readings = envelope::decode_payload(plaintext);
    if (!readings) return tl::unexpected(readings.error());
    return formats::Decoded{std::move(*readings), {}, {}};
  }
  if (format == formats::kSenmlFormat) return formats::decode_senml(plaintext, received);
  if (format.starts_with(formats::kTemplatePrefix)) {
    const std::string_view name = format.substr(formats::kTemplatePrefix.size());
    const formats::MappingTemplate* t = options_.mappings ? options_.mappings->find(name) : nullptr;
    if (!t)
      return core::fail(core::Code::kFailedPrecondition, "unknown_format",
                        "the device's mapping template '" + std::string(name) +
                            "' is not loaded (serve --config); replay the message once it is");
    return t->apply(plaintext, received);
  }
  return core::fail(core::Code::kFailedPrecondition, "unknown_format", "the device's payload format is not known");
}

Result<std::string> Pipeline::match_subject(const storage::DeviceRecord& d, formats::SubjectIdentifiers& ids) const {
  struct Wipe {
    formats::SubjectIdentifiers& ids;
    ~Wipe() {
      for (std::string* s : {&ids.bsn, &ids.record_system, &ids.record_value}) {
        OPENSSL_cleanse(s->data(), s->size());
        s->clear();
      }
    }
  } wipe{ids};
  if (ids.empty() || !options_.vault || !options_.pseudonymiser) return std::string();
  std::optional<std::string> subject_id;
  if (!ids.bsn.empty()) {
    if (!privacy::valid_bsn(ids.bsn)) return std::string("bad_subject");
    auto found = options_.vault->find_by_bsn(ids.bsn);
    if (!found) return tl::unexpected(found.error());
    subject_id = *found;
  }
  if (!subject_id && !ids.record_value.empty() && !ids.record_system.empty()) {
    auto found = options_.vault->find_by_record_number({ids.record_system, ids.record_value});
    if (!found) {
      if (found.error().code == core::Code::kInvalidArgument) return std::string("unmatched");
      return tl::unexpected(found.error());
    }
    subject_id = *found;
  }
  if (!subject_id) return std::string("unmatched");
  if (options_.pseudonymiser->subject(*subject_id).str() != d.subject) return std::string("subject_mismatch");
  return std::string();
}

// Device metadata reported in a payload, stored when it differs from what the registry has.
// Best effort: a failure is logged and does not undo the stored readings.
void Pipeline::record_device_info(const storage::DeviceRecord& d, const formats::DeviceInfo& info) {
  if (info.empty()) return;
  storage::DeviceInfoUpdate u;
  u.device_id = d.id;
  if (info.manufacturer != d.manufacturer) u.manufacturer = info.manufacturer;
  if (info.model != d.model) u.model = info.model;
  if (!info.serial.empty() && options_.pseudonymiser) {
    std::string serial = options_.pseudonymiser->device_serial(info.serial);
    if (serial != d.serial_pseudonym) u.serial_pseudonym = std::move(serial);
  }
  if (u.manufacturer.empty() && u.model.empty() && u.serial_pseudonym.empty()) return;
  if (auto s = store_.registry().update_device_info(u); !s)
    core::log_warn("ingest", "device metadata of " + d.id + " not recorded: " + s.error().to_string());
}

std::string Pipeline::device_from_topic(std::string_view topic) {
  if (!topic.starts_with(kTopicPrefix) || !topic.ends_with(kReadingsSuffix)) return {};
  topic.remove_prefix(kTopicPrefix.size());
  topic.remove_suffix(kReadingsSuffix.size());
  if (!envelope::valid_device_id(topic)) return {};
  return std::string(topic);
}

Disposition Pipeline::quarantine(const InboundMessage& m, std::string device_id, std::string reason,
                                 std::string detail) {
  storage::QuarantineEntry e;
  e.received_at = received_time(m);
  e.topic = m.topic;
  e.device_id = std::move(device_id);
  e.reason = reason;
  e.detail = std::move(detail);
  e.payload = m.payload;
  if (auto put = store_.quarantine().put(e); !put) return retry(put.error());
  ++quarantined_;
  {
    std::lock_guard lock(reasons_mutex_);
    ++by_reason_[reason];
  }
  core::log_warn("ingest", "quarantined message on " + m.topic + ": " + reason + " (" + e.detail + ")");
  return disposition(Kind::kQuarantined, std::move(reason), 0);
}

core::TimePoint Pipeline::received_time(const InboundMessage& m) const {
  return m.received_at == core::TimePoint{} ? clock_.now() : m.received_at;
}

Disposition Pipeline::retry(const core::Error& e) {
  ++retries_;
  core::log_error("ingest", "cannot commit message, it stays unacknowledged: " + e.to_string());
  return disposition(Kind::kRetry, e.reason, 0);
}

Disposition Pipeline::process(const InboundMessage& m) {
  ++received_;
  if (m.payload.size() > options_.max_message_bytes)
    return quarantine(m, "", "too_large", "message exceeds " + std::to_string(options_.max_message_bytes) + " bytes");

  std::string topic_device = device_from_topic(m.topic);
  if (topic_device.empty()) return quarantine(m, "", "bad_topic", "topic is not telehub/v1/devices/<id>/readings");

  auto header = envelope::peek(m.payload);
  if (!header) return quarantine(m, topic_device, header.error().reason, header.error().message);
  if (header->device_id != topic_device)
    return quarantine(m, topic_device, "device_mismatch", "envelope device id differs from the topic's");

  auto device = store_.registry().find_device(topic_device);
  if (!device) return retry(device.error());
  if (!*device) return quarantine(m, topic_device, "unknown_device", "no enrolled device with this id");
  const storage::DeviceRecord& d = **device;
  if (d.revoked_at) return quarantine(m, topic_device, "device_revoked", "device was revoked");
  if (!d.active) return quarantine(m, topic_device, "device_inactive", "device is not active");

  // Key selection: the current key, or the previous one while its grace period lasts.
  const core::Bytes* wrapped = nullptr;
  if (header->key_id == d.key_id) {
    wrapped = &d.wrapped_key;
  } else if (d.previous && header->key_id == d.previous->key_id) {
    if (received_time(m) >= d.previous->valid_until)
      return quarantine(m, topic_device, "expired_key",
                        "key id " + std::to_string(header->key_id) + " was replaced and its grace period is over");
    wrapped = &d.previous->wrapped_key;
  } else {
    return quarantine(m, topic_device, "unknown_key", "key id " + std::to_string(header->key_id) + " is not the device's key");
  }
  auto key = kek_.unwrap(*wrapped, privacy::device_key_ad(d.id, header->key_id));
  if (!key) return unwrap_failed(key.error());

  auto plaintext = envelope::open(m.payload, *key);
  OPENSSL_cleanse(key->data(), key->size());
  if (!plaintext) return quarantine(m, topic_device, plaintext.error().reason, plaintext.error().message);

  // From here on the message provably comes from the device: its outcome gets a receipt.
  auto authentic = [&](Disposition d) {
    d.authenticated = true;
    d.device_id = topic_device;
    d.sequence = header->sequence;
    return d;
  };
  auto decoded = decode(d.payload_format, *plaintext, received_time(m));
  if (!decoded) return authentic(quarantine(m, topic_device, decoded.error().reason, decoded.error().message));
  if (auto s = formats::normalise(decoded->readings); !s)
    return authentic(quarantine(m, topic_device, s.error().reason, s.error().message));
  auto matched = match_subject(d, decoded->subject);
  if (!matched) return retry(matched.error());
  if (!matched->empty() && *matched != "unmatched") {
    const std::string detail = *matched == "subject_mismatch"
                                   ? "the payload names another person than the one the device is enrolled for"
                                   : "the payload's BSN is not a valid BSN (11-test)";
    return authentic(quarantine(m, topic_device, *matched, detail));
  }
  const bool unmatched = *matched == "unmatched";
  auto* readings = &decoded->readings;
  const formats::Plausibility& rules = options_.plausibility ? *options_.plausibility : formats::Plausibility::defaults();
  std::vector<std::string> flagged;

  auto subject = privacy::SubjectPseudonym::parse(d.subject);
  if (!subject) return retry(subject.error());  // a corrupt registry row: never guess

  storage::MessageBatch batch;
  batch.device_id = topic_device;
  batch.sequence = header->sequence;
  batch.content_hash = sha256_hex(m.payload);
  batch.received_at = received_time(m);
  batch.sequence_window = options_.sequence_window;
  for (std::size_t i = 0; i < readings->size(); ++i) {
    core::Reading& r = (*readings)[i];
    if (auto finding = validate(r, i))
      return authentic(quarantine(m, topic_device, finding->reason, finding->detail));
    if (auto finding = check_time(options_, r, i, batch.received_at))
      return authentic(quarantine(m, topic_device, finding->reason, finding->detail));
    const formats::Verdict verdict = rules.check(r);
    if (verdict.kind == formats::Verdict::Kind::kImpossible)
      return authentic(quarantine(m, topic_device, "implausible_value",
                                  "readings[" + std::to_string(i) + "]: " + verdict.detail));
    if (verdict.kind == formats::Verdict::Kind::kExtreme) flagged.push_back(verdict.code);
    r.device = topic_device;
    r.sequence = header->sequence;
    batch.readings.push_back(privacy::PseudonymousReading::bind(std::move(r), *subject));
  }
  const std::size_t n = batch.readings.size();

  auto outcome = store_.observations().append(std::move(batch));
  if (!outcome) return retry(outcome.error());
  switch (*outcome) {
    case storage::AppendOutcome::kStored:
      ++stored_messages_;
      stored_readings_ += n;
      if (unmatched) ++unmatched_;
      if (!flagged.empty()) {
        std::lock_guard lock(reasons_mutex_);
        for (const auto& code : flagged) ++flagged_[code];
      }
      record_device_info(d, decoded->device);
      return authentic(disposition(Kind::kStored, "", n));
    case storage::AppendOutcome::kDuplicate:
      ++duplicates_;
      return authentic(disposition(Kind::kDuplicate, "", n));
    case storage::AppendOutcome::kConflict:
      return authentic(quarantine(m, topic_device, "replay", "sequence " + std::to_string(header->sequence) +
                                                                 " was already stored with different content"));
    case storage::AppendOutcome::kOutsideWindow:
      return authentic(quarantine(m, topic_device, "replay",
                                  "sequence " + std::to_string(header->sequence) + " is more than " +
                                      std::to_string(options_.sequence_window) +
                                      " below the highest sequence stored for this device"));
  }
  return retry(core::make_error(core::Code::kInternal, "unreachable", "unknown append outcome"));
}

PipelineCounters Pipeline::counters() const {
  PipelineCounters c;
  c.received = received_;
  c.stored_messages = stored_messages_;
  c.stored_readings = stored_readings_;
  c.duplicates = duplicates_;
  c.quarantined = quarantined_;
  c.retries = retries_;
  std::lock_guard lock(reasons_mutex_);
  c.quarantined_by_reason = by_reason_;
  c.flagged_by_code = flagged_;
  c.subjects_unmatched = unmatched_;
  return c;
}

}  // namespace telehub::ingest
