// TLS material of a telehub installation (issue [2/8] item 1), from the development CA in
// <data>/ca (pki::DevCa):
//
//   <data>/ca/ca.pem, ca.key          the development CA (created on first use; ca.key 0600)
//   <data>/tls/broker.pem, .key       the embedded broker's server certificate (CN telehub-broker)
//   <data>/tls/hub.pem, .key          the hub's client certificate (CN telehub-hub)
//   <data>/tls/api.pem, .key          the FHIR API's HTTPS server certificate (CN telehub-api)
//   <data>/tls/api.hosts              the extra subjectAltNames api.pem was issued for
//
// serve issues the broker's and the hub's certificates afresh at every start (cheap, and they
// never expire under a running installation); enrolment issues each device a client
// certificate whose CN is its device id, carried in the provisioning file. The API certificate
// is kept across restarts (HTTPS clients may pin it) and reissued only when needed; see
// prepare_api_tls().
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

struct ApiTlsFiles {
  std::filesystem::path ca;          // <data>/ca/ca.pem: what HTTPS clients trust (curl --cacert)
  std::filesystem::path cert, key;   // <data>/tls/api.pem, api.key (0600)
};

// The HTTPS server certificate of the FHIR API (`telehub serve` without --https-cert), from the
// same development CA as the broker's: CN telehub-api, EC P-256 key (pki::DevCa), subjectAltName
// IP:127.0.0.1, DNS:localhost and `http_host` when it is another name or address (for a
// wildcard listen address, 0.0.0.0 or ::, the machine's host name instead). Opens (or creates)
// the CA. Keeps the existing api.pem/api.key and issues a new pair only when one of them is
// missing, when api.hosts does not list exactly the extra names wanted now, when ca.pem is newer
// than api.pem (the CA was replaced), or when api.pem is over a year old (it is valid for two).
// Fails with the pki reasons (pki_io, pki_crypto).
[[nodiscard]] Result<ApiTlsFiles> prepare_api_tls(const DataDir& dir, const std::string& http_host);

// Whether an HTTP listen address is on this machine only: an IPv4 address in 127.0.0.0/8,
// ::1, or the name localhost (any case). 0.0.0.0, :: and other names are not.
bool is_loopback_host(const std::string& host);

// Whether a broker URI needs TLS (ssl://, mqtts://).
bool is_tls_uri(const std::string& broker_uri);

// For a TLS broker URI (p.broker_uri ssl:// or mqtts://): puts a fresh client certificate for
// p.device_id from the development CA, its key and the CA certificate into p's tls member.
// Leaves p alone for a plain tcp:// URI. Refuses the hub's and the broker's identities.
[[nodiscard]] Status add_device_tls(const DataDir& dir, gateway::Provisioning& p);

}  // namespace telehub::apps
