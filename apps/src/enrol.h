// Device enrolment: creates a device id and a fresh 256-bit key, binds the device to the
// subject's pseudonym in the store, and writes the gateway's provisioning file (mode 0600).
#pragma once

#include <filesystem>
#include <string>

#include "hub_files.h"
#include "telehub/core/error.h"
#include "telehub/storage/store.h"

namespace telehub::apps {

struct Enrolment {
  std::string device_id;
  std::string subject_pseudonym;
  std::filesystem::path provisioning_file;
};

// REQUIRES: subject_id is 1..128 printable ASCII characters (checked: invalid_argument/bad_subject).
// `out` empty means <data>/provisioning/<device id>.json.
[[nodiscard]] Result<Enrolment> enrol_device(const DataDir& dir, storage::Store& store, const std::string& subject_id,
                                             const std::string& broker_uri, const std::filesystem::path& out);

}  // namespace telehub::apps
