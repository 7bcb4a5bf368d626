#include "hub_tls.h"

namespace telehub::apps {

Result<HubTlsFiles> prepare_embedded_tls(const DataDir& dir, const std::string& broker_host) {
  auto ca = pki::DevCa::open_or_create(dir.ca_dir());
  if (!ca) return tl::unexpected(ca.error());
  std::vector<std::string> hosts;
  if (broker_host != "127.0.0.1" && broker_host != "localhost" && !broker_host.empty()) hosts.push_back(broker_host);
  auto broker = ca->issue("telehub-broker", pki::CertKind::kServer, hosts);
  if (!broker) return tl::unexpected(broker.error());
  auto hub = ca->issue(kHubIdentity, pki::CertKind::kClient);
  if (!hub) return tl::unexpected(hub.error());
  auto broker_files = pki::write_identity(dir.tls_dir(), "broker", *broker);
  if (!broker_files) return tl::unexpected(broker_files.error());
  auto hub_files = pki::write_identity(dir.tls_dir(), "hub", *hub);
  if (!hub_files) return tl::unexpected(hub_files.error());
  return HubTlsFiles{ca->ca_file(), broker_files->cert, broker_files->key, hub_files->cert, hub_files->key};
}

bool is_tls_uri(const std::string& broker_uri) {
  return broker_uri.rfind("ssl://", 0) == 0 || broker_uri.rfind("mqtts://", 0) == 0;
}

Status add_device_tls(const DataDir& dir, gateway::Provisioning& p) {
  if (!is_tls_uri(p.broker_uri)) return {};
  if (p.device_id == kHubIdentity || p.device_id == "telehub-broker")
    return core::fail(core::Code::kInvalidArgument, "bad_device", "a device cannot have the hub's identity");
  auto ca = pki::DevCa::open_or_create(dir.ca_dir());
  if (!ca) return tl::unexpected(ca.error());
  auto id = ca->issue(p.device_id, pki::CertKind::kClient);
  if (!id) return tl::unexpected(id.error());
  p.ca_pem = ca->ca_pem();
  p.cert_pem = std::move(id->cert_pem);
  p.key_pem = std::move(id->key_pem);
  return {};
}

}  // namespace telehub::apps
