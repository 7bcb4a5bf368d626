// The provisioning file a gateway receives at enrolment (`telehub device enroll`): everything
// it needs to seal and publish readings. Format (JSON, documented in docs/protocol.md):
//
//   {"telehub_provisioning":1,"device_id":"dev-3f9c...","key_id":1,"key":"<64 hex chars>",
//    "broker":"tcp://127.0.0.1:41883",
//    "topics":{"readings":"telehub/v1/devices/dev-3f9c.../readings"},
//    "tls":{"ca":"-----BEGIN CERTIFICATE-----...","cert":"-----BEGIN CERTIFICATE-----...",
//           "key":"-----BEGIN PRIVATE KEY-----..."}}
//
// `tls` is optional: with it the broker URI is ssl:// (or mqtts://) and the gateway connects
// with TLS and its client certificate (CN = device id); without it, plain tcp:// as before.
// The device key and the TLS private key are secrets: the file is written with mode 0600.
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
  // TLS (JSON member "tls"): PEM text of the CA that signed the broker's certificate, the
  // gateway's client certificate and its private key. All three empty = no TLS; otherwise all
  // three set and broker_uri is ssl:// or mqtts://. (The `= {}` lets older brace
  // initialisations of the first five members compile without -Wmissing-field-initializers.)
  std::string ca_pem = {};
  std::string cert_pem = {};
  std::string key_pem = {};

  bool has_tls() const { return !ca_pem.empty(); }
};

// "telehub/v1/devices/<device_id>/readings"
std::string readings_topic_for(const std::string& device_id);

[[nodiscard]] Result<Provisioning> load_provisioning(const std::filesystem::path& path);
// Writes atomically (temp file + rename), mode 0600.
[[nodiscard]] Status save_provisioning(const std::filesystem::path& path, const Provisioning& p);

}  // namespace telehub::gateway
