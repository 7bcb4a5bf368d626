#include "enrol.h"

#include <openssl/crypto.h>

#include <limits>

#include "telehub/core/bytes.h"
#include "telehub/gateway/provisioning.h"
#include "telehub/privacy/pseudonym.h"
#include "hub_tls.h"

namespace telehub::apps {
namespace {

// With a TLS broker URI (ssl://, mqtts://) the file also carries a fresh client certificate for
// the device (CN = device id) and its key, and the CA certificate.
Status write_provisioning(const DataDir& dir, const std::filesystem::path& file, const std::string& device_id,
                          std::uint32_t key_id, const core::Bytes& key, const std::string& broker_uri) {
  gateway::Provisioning p;
  p.device_id = device_id;
  p.key_id = key_id;
  p.key = key;
  p.broker_uri = broker_uri;
  p.readings_topic = gateway::readings_topic_for(device_id);
  if (auto s = add_device_tls(dir, p); !s) {
    OPENSSL_cleanse(p.key.data(), p.key.size());
    return s;
  }
  std::error_code ec;
  std::filesystem::create_directories(file.parent_path(), ec);
  auto s = gateway::save_provisioning(file, p);
  OPENSSL_cleanse(p.key.data(), p.key.size());
  OPENSSL_cleanse(p.key_pem.data(), p.key_pem.size());
  return s;
}

}  // namespace

Result<Enrolment> enrol_device(const DataDir& dir, storage::Store& store, const privacy::Kek& kek,
                               const std::string& subject_id, const std::string& broker_uri,
                               const std::filesystem::path& out, const std::string& payload_format) {
  if (!payload_format.empty() && payload_format != "native" && payload_format != "senml" &&
      !payload_format.starts_with("template:"))
    return core::fail(core::Code::kInvalidArgument, "bad_format",
                      "--format must be native, senml or template:<name>");
  bool printable = !subject_id.empty() && subject_id.size() <= 128;
  for (unsigned char c : subject_id) printable = printable && c > 0x20 && c < 0x7f;
  if (!printable)
    return core::fail(core::Code::kInvalidArgument, "bad_subject",
                      "--subject must be 1 to 128 printable ASCII characters without spaces");
  auto pseudonymiser = privacy::Pseudonymiser::open_wrapped_key_file(dir.pseudonym_key(), kek);
  if (!pseudonymiser) return tl::unexpected(pseudonymiser.error());
  const auto subject = (*pseudonymiser)->subject(subject_id);

  auto id_bytes = core::random_bytes(8);
  auto key = core::random_bytes(32);
  if (!id_bytes) return tl::unexpected(id_bytes.error());
  if (!key) return tl::unexpected(key.error());

  storage::DeviceRecord device;
  device.id = "dev-" + core::to_hex(*id_bytes);
  device.subject = subject.str();
  device.key_id = 1;
  auto wrapped = kek.wrap(*key, privacy::device_key_ad(device.id, device.key_id));
  if (!wrapped) return tl::unexpected(wrapped.error());
  device.wrapped_key = std::move(*wrapped);
  device.enrolled_at = core::system_clock().now();
  device.payload_format = payload_format.empty() ? "native" : payload_format;
  if (auto s = store.registry().add_device(device); !s) return tl::unexpected(s.error());

  std::filesystem::path file = out.empty() ? dir.provisioning_dir() / (device.id + ".json") : out;
  auto s = write_provisioning(dir, file, device.id, device.key_id, *key, broker_uri);
  OPENSSL_cleanse(key->data(), key->size());
  if (!s) return tl::unexpected(s.error());
  return Enrolment{device.id, subject.str(), file};
}

Result<Rekeying> rekey_device(const DataDir& dir, storage::Store& store, const privacy::Kek& kek,
                              const std::string& device_id, std::chrono::milliseconds grace,
                              const std::string& broker_uri, const std::filesystem::path& out) {
  auto found = store.registry().find_device(device_id);
  if (!found) return tl::unexpected(found.error());
  if (!*found) return core::fail(core::Code::kNotFound, "no_device", "no enrolled device " + device_id);
  const storage::DeviceRecord& d = **found;
  if (!d.active || d.revoked_at)
    return core::fail(core::Code::kFailedPrecondition, "device_revoked",
                      "device " + device_id + " is revoked or inactive; enrol a new device instead");
  // The KEK must be the hub's: a key wrapped under another KEK would stall ingest.
  if (auto current = kek.unwrap(d.wrapped_key, privacy::device_key_ad(d.id, d.key_id)); !current)
    return core::fail(core::Code::kFailedPrecondition, "unwrap_failed",
                      "the device's current key does not unwrap under this KEK: use the hub's KEK (--kek-file or "
                      "TELEHUB_KEK)");
  else
    OPENSSL_cleanse(current->data(), current->size());
  if (d.key_id == std::numeric_limits<std::uint32_t>::max())
    return core::fail(core::Code::kOutOfRange, "key_id_exhausted", "device " + device_id + " has used every key id");

  auto key = core::random_bytes(32);
  if (!key) return tl::unexpected(key.error());
  Rekeying r;
  r.old_key_id = d.key_id;
  r.new_key_id = d.key_id + 1;
  r.old_key_valid_until = core::system_clock().now() + grace;
  r.provisioning_file = out.empty() ? dir.provisioning_dir() / (device_id + ".json") : out;
  auto wrapped = kek.wrap(*key, privacy::device_key_ad(device_id, r.new_key_id));
  if (!wrapped) return tl::unexpected(wrapped.error());
  storage::KeyRotation rotation{device_id, r.old_key_id, r.new_key_id, std::move(*wrapped), r.old_key_valid_until};
  if (auto s = store.registry().rotate_key(rotation); !s) return tl::unexpected(s.error());
  auto s = write_provisioning(dir, r.provisioning_file, device_id, r.new_key_id, *key, broker_uri);
  OPENSSL_cleanse(key->data(), key->size());
  if (!s) return tl::unexpected(s.error());
  return r;
}

Result<bool> revoke_device(const DataDir& dir, storage::Store& store, const std::string& device_id) {
  if (auto s = store.registry().revoke_device(device_id, core::system_clock().now()); !s) {
    if (s.error().reason == "no_device")
      return core::fail(core::Code::kNotFound, "no_device", "no enrolled device " + device_id);
    return tl::unexpected(s.error());
  }
  std::error_code ec;
  return std::filesystem::remove(dir.provisioning_dir() / (device_id + ".json"), ec);
}

}  // namespace telehub::apps
