// TLS material of a telehub installation (issue [2/8] item 1), from the development CA in
// <data>/ca (pki::DevCa):
//
//   <data>/ca/ca.pem, ca.key          the development CA (created on first use; ca.key 0600)
//   <data>/tls/broker.pem, .key       the embedded broker's server certificate (CN telehub-broker)
//   <data>/tls/hub.pem, .key          the hub's client certificate (CN telehub-hub)
//
// serve issues the broker's and the hub's certificates afresh at every start (cheap, and they
// never expire under a running installation); enrolment issues each device a client
// certificate whose CN is its device id, carried in the provisioning file.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "hub_files.h"
#include "telehub/core/error.h"
#include "telehub/gateway/provisioning.h"
#include "telehub/pki/dev_ca.h"

namespace telehub::apps {

// The certificate CN of the hub: the only identity the broker ACL lets read every device's
// readings and write receipts. Never a device id (device ids start with "dev-").
inline constexpr const char* kHubIdentity = "telehub-hub";

struct HubTlsFiles {
  std::filesystem::path ca;
  std::filesystem::path broker_cert, broker_key;
  std::filesystem::path hub_cert, hub_key;
};

// Opens (or creates) the development CA and issues the broker certificate (subjectAltName
// 127.0.0.1, localhost and `broker_host`) and the hub certificate. Fails with the pki reasons.
[[nodiscard]] Result<HubTlsFiles> prepare_embedded_tls(const DataDir& dir, const std::string& broker_host);

// Whether a broker URI needs TLS (ssl://, mqtts://).
bool is_tls_uri(const std::string& broker_uri);

// For a TLS broker URI (p.broker_uri ssl:// or mqtts://): puts a fresh client certificate for
// p.device_id from the development CA, its key and the CA certificate into p's tls member.
// Leaves p alone for a plain tcp:// URI. Refuses the hub's and the broker's identities.
[[nodiscard]] Status add_device_tls(const DataDir& dir, gateway::Provisioning& p);

}  // namespace telehub::apps
