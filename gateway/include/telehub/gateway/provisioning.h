// The provisioning file a gateway receives at enrolment (`telehub device enroll`): everything
// it needs to seal and publish readings. Format (JSON, documented in docs/protocol.md):
//
//   {"telehub_provisioning":1,"device_id":"dev-3f9c...","key_id":1,"key":"<64 hex chars>",
//    "broker":"tcp://127.0.0.1:41883",
//    "topics":{"readings":"telehub/v1/devices/dev-3f9c.../readings"}}
//
// The key is a secret: the file is written with mode 0600.
//
// Error policy: Result, never throws. Reasons: provisioning_io (read/write failed),
// bad_provisioning (JSON shape; the message names the member, never the key).
// Thread-safety: plain functions.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "telehub/core/bytes.h"
#include "telehub/core/error.h"

namespace telehub::gateway {

struct Provisioning {
  std::string device_id;
  std::uint32_t key_id = 1;
  core::Bytes key;             // 32 bytes
  std::string broker_uri;      // "tcp://host:port"
  std::string readings_topic;  // telehub/v1/devices/<device_id>/readings
};

// "telehub/v1/devices/<device_id>/readings"
std::string readings_topic_for(const std::string& device_id);

[[nodiscard]] Result<Provisioning> load_provisioning(const std::filesystem::path& path);
// Writes atomically (temp file + rename), mode 0600.
[[nodiscard]] Status save_provisioning(const std::filesystem::path& path, const Provisioning& p);

}  // namespace telehub::gateway
