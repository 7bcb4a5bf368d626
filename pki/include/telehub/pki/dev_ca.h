// pki::DevCa: the development certificate authority that `telehub serve` creates for the
// embedded broker, and the certificates it issues to the hub, the broker and each gateway at
// enrolment (issue [2/8]: every broker link uses TLS with client certificates).
//
// The CA lives in a directory as two PEM files: `ca.pem` (the self-signed certificate, which
// clients and the broker trust) and `ca.key` (its private key, mode 0600). open_or_create()
// loads them, or creates both when neither exists. All keys are EC P-256 (prime256v1), all
// signatures ECDSA with SHA-256. Certificates:
//
// | kind   | validity | basicConstraints | keyUsage                           | extendedKeyUsage | subjectAltName |
// |--------|----------|------------------|------------------------------------|------------------|----------------|
// | CA     | 10 years | CA:TRUE (critical) | keyCertSign, cRLSign (critical)  | -                | -              |
// | client | 1 year   | CA:FALSE         | digitalSignature (critical)        | clientAuth       | -              |
// | server | 2 years  | CA:FALSE         | digitalSignature (critical)        | serverAuth       | IP:127.0.0.1, DNS:localhost, extra hosts |
//
// Serial numbers are 128 random bits. The subject is CN=<common_name> only: the broker takes a
// client's identity (its MQTT user name, use_identity_as_username) from the CN, so a gateway's
// CN is its device id and the hub's is "telehub-hub".
//
// This is a development CA: production deployments can use externally issued certificates
// instead (the broker and clients only need the PEM files).
//
// Error policy: Result, never throws. Reasons: pki_io (a file cannot be read, written or
// created; the CA directory holds only one of ca.pem/ca.key), pki_crypto (OpenSSL failed, a file
// is not the expected PEM, the key does not match the certificate, a name is unusable). Messages
// name files, never key material.
//
// Thread-safety: a DevCa is immutable after open_or_create(); issue() may run on several
// threads at once. Two processes creating the same CA directory at the same moment is not
// supported (the second sees the first's files or fails with pki_io).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "telehub/core/error.h"

namespace telehub::pki {

enum class CertKind {
  kClient,  // TLS client: gateways, the hub's MQTT connection (extendedKeyUsage clientAuth)
  kServer,  // TLS server: the broker (extendedKeyUsage serverAuth, subjectAltName)
};

// A certificate and its private key, both PEM text. The key is unencrypted PKCS#8
// ("-----BEGIN PRIVATE KEY-----"): a secret, keep it in files with mode 0600.
struct Identity {
  std::string cert_pem;
  std::string key_pem;
};

// Where write_identity() put an identity.
struct IdentityFiles {
  std::filesystem::path cert;  // <dir>/<name>.pem
  std::filesystem::path key;   // <dir>/<name>.key, mode 0600
};

class DevCa {
 public:
  // Loads <dir>/ca.pem and <dir>/ca.key, or, when neither exists, creates <dir> (mode 0700 when
  // new) and a new CA in it (CN "telehub development CA"; the key written with mode 0600, both
  // files atomically). Fails with pki_io when only one of the two files exists or a file cannot
  // be read or written, and with pki_crypto when they do not parse or do not match.
  [[nodiscard]] static Result<DevCa> open_or_create(const std::filesystem::path& dir);

  DevCa(DevCa&&) noexcept;
  DevCa& operator=(DevCa&&) noexcept;
  ~DevCa();

  // The CA certificate (PEM), for trust stores.
  const std::string& ca_pem() const;
  // <dir>/ca.pem.
  const std::filesystem::path& ca_file() const;

  // Issues a new key pair and a certificate for CN=common_name signed by this CA. For kServer,
  // the subjectAltName holds IP:127.0.0.1 and DNS:localhost plus extra_hosts (each an IPv4/IPv6
  // literal, which becomes an IP entry, or a DNS name). Fails with pki_crypto when common_name
  // is empty, longer than 64 characters or holds a control character, when an extra host is
  // empty or holds ',' or a control character, or when OpenSSL fails.
  [[nodiscard]] Result<Identity> issue(const std::string& common_name, CertKind kind,
                                       const std::vector<std::string>& extra_hosts = {}) const;

 private:
  struct Impl;
  explicit DevCa(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Writes <dir>/<name>.pem (mode 0644) and <dir>/<name>.key (mode 0600), each atomically
// (temporary file, fsync, rename), creating dir (mode 0700) if missing. `name` must be a plain
// file name (no '/', not "." or ".."). Fails with pki_io.
[[nodiscard]] Result<IdentityFiles> write_identity(const std::filesystem::path& dir, const std::string& name,
                                                   const Identity& identity);

}  // namespace telehub::pki
