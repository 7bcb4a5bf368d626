#include "hub_tls.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <fstream>
#include <sstream>
#include <system_error>

namespace telehub::apps {
namespace {

constexpr const char* kApiIdentity = "telehub-api";

// The subjectAltNames the API certificate needs beyond IP:127.0.0.1 and DNS:localhost.
std::vector<std::string> api_extra_hosts(const std::string& http_host) {
  if (http_host.empty() || http_host == "127.0.0.1" || http_host == "localhost") return {};
  if (http_host == "0.0.0.0" || http_host == "::") {
    // Clients cannot connect to a wildcard address; they use the machine's name.
    char name[256] = {};
    if (::gethostname(name, sizeof name - 1) == 0 && name[0] != '\0' && std::string(name) != "localhost")
      return {std::string(name)};
    return {};
  }
  return {http_host};
}

std::string hosts_text(const std::vector<std::string>& hosts) {
  std::string text;
  for (const auto& h : hosts) text += h + "\n";
  return text;
}

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Whether <tls>/api.pem and api.key can be kept (see prepare_api_tls()).
bool api_certificate_current(const DataDir& dir, const std::filesystem::path& ca_file, const std::string& hosts) {
  namespace fs = std::filesystem;
  const fs::path cert = dir.tls_dir() / "api.pem", key = dir.tls_dir() / "api.key", list = dir.tls_dir() / "api.hosts";
  std::error_code ec;
  if (!fs::is_regular_file(cert, ec) || !fs::is_regular_file(key, ec) || !fs::is_regular_file(list, ec)) return false;
  if (read_text(list) != hosts) return false;
  const auto issued = fs::last_write_time(cert, ec);
  if (ec) return false;
  const auto ca_written = fs::last_write_time(ca_file, ec);
  if (ec || ca_written > issued) return false;
  return fs::file_time_type::clock::now() - issued < std::chrono::hours(24 * 365);
}

}  // namespace

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

Result<ApiTlsFiles> prepare_api_tls(const DataDir& dir, const std::string& http_host) {
  auto ca = pki::DevCa::open_or_create(dir.ca_dir());
  if (!ca) return tl::unexpected(ca.error());
  const auto hosts = api_extra_hosts(http_host);
  const std::string wanted = hosts_text(hosts);
  ApiTlsFiles files{ca->ca_file(), dir.tls_dir() / "api.pem", dir.tls_dir() / "api.key"};
  if (api_certificate_current(dir, ca->ca_file(), wanted)) return files;
  auto api = ca->issue(kApiIdentity, pki::CertKind::kServer, hosts);
  if (!api) return tl::unexpected(api.error());
  auto written = pki::write_identity(dir.tls_dir(), "api", *api);
  if (!written) return tl::unexpected(written.error());
  // Written last: a crash before this leaves api.hosts stale or missing, so the next start
  // issues again.
  const auto list = dir.tls_dir() / "api.hosts";
  const auto tmp = dir.tls_dir() / "api.hosts.tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << wanted;
    out.flush();
    if (!out) return core::fail(core::Code::kUnavailable, "pki_io", "cannot write " + tmp.string());
  }
  std::error_code ec;
  std::filesystem::rename(tmp, list, ec);
  if (ec) return core::fail(core::Code::kUnavailable, "pki_io", "cannot write " + list.string());
  files.cert = written->cert;
  files.key = written->key;
  return files;
}

bool is_loopback_host(const std::string& host) {
  std::string lower(host);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower == "localhost") return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (::inet_pton(AF_INET6, host.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
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
