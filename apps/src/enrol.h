// Device enrolment, key rotation and revocation.
//
// enrol_device creates a device id and a fresh 256-bit key, binds the device to the subject's
// pseudonym in the store, and writes the gateway's provisioning file (mode 0600).
// rekey_device gives a device a new key (key id + 1) and writes a new provisioning file; the
// old key keeps working for a grace period. revoke_device stops a device at once.
// The store only ever sees device keys wrapped under the KEK (privacy::device_key_ad).
#pragma once

#include <chrono>
#include <filesystem>
#include <string>

#include "hub_files.h"
#include "telehub/core/error.h"
#include "telehub/privacy/keystore.h"
#include "telehub/storage/store.h"

namespace telehub::apps {

struct Enrolment {
  std::string device_id;
  std::string subject_pseudonym;
  std::filesystem::path provisioning_file;
};

// REQUIRES: subject_id is 1..128 printable ASCII characters (checked: invalid_argument/bad_subject).
// `out` empty means <data>/provisioning/<device id>.json. `payload_format`: "native" (or empty),
// "senml" or "template:<name>" (checked by the caller against the mapping templates; here only
// its shape: invalid_argument/bad_format).
[[nodiscard]] Result<Enrolment> enrol_device(const DataDir& dir, storage::Store& store, const privacy::Kek& kek,
                                             const std::string& subject_id, const std::string& broker_uri,
                                             const std::filesystem::path& out, const std::string& payload_format = "");

struct Rekeying {
  std::uint32_t old_key_id = 0;
  std::uint32_t new_key_id = 0;
  core::TimePoint old_key_valid_until{};
  std::filesystem::path provisioning_file;
};

// New random key with key id = current + 1; the current key becomes the previous one, accepted
// for messages received before now + grace. `out` empty means <data>/provisioning/<device>.json
// (replaced atomically). Fails with not_found/no_device, failed_precondition/device_revoked,
// failed_precondition/unwrap_failed when `kek` is not the KEK the current key is wrapped under,
// out_of_range/key_id_exhausted, or the store's and the provisioning writer's errors.
[[nodiscard]] Result<Rekeying> rekey_device(const DataDir& dir, storage::Store& store, const privacy::Kek& kek,
                                            const std::string& device_id, std::chrono::milliseconds grace,
                                            const std::string& broker_uri, const std::filesystem::path& out);

// Marks the device inactive, overwrites its wrapped keys and records the revocation time; also
// deletes <data>/provisioning/<device>.json if it is there (it holds the key in clear).
// Fails with not_found/no_device. Returns whether a provisioning file was deleted.
[[nodiscard]] Result<bool> revoke_device(const DataDir& dir, storage::Store& store, const std::string& device_id);

}  // namespace telehub::apps
