// The data directory of a telehub installation and the small runtime file that tells other
// commands (enroll, simulate, the demo) where the running hub's broker and API are.
//
//   <data>/telehub.db             measurement store (SQLite, WAL)
//   <data>/clinical.db            imported clinical records by pseudonym (docs/clinical.md)
//   <data>/environment.db         hourly air quality and weather per PC4 area (docs/environment.md)
//   <data>/keys/pseudonym.key     pseudonymisation key, wrapped under the KEK (mode 0600)
//   <data>/broker/                embedded Mosquitto: config, ACL, persistence, log
//   <data>/ca/                    development CA (ca.pem, ca.key 0600); see hub_tls.h
//   <data>/tls/                   the broker's and the hub's certificates and keys (0600)
//   <data>/provisioning/<dev>.json  provisioning files written at enrolment (secret: 0600)
//   <data>/hub.json               {"broker": "tcp://...", "fhir": "https://.../fhir"} written by serve
//
// The key-encryption key is never here: --kek-file PATH, TELEHUB_KEK, or (development only)
// ~/.config/telehub/kek; see load_kek().
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "telehub/core/error.h"
#include "telehub/privacy/keystore.h"

namespace telehub::apps {

struct DataDir {
  std::filesystem::path root;
  std::filesystem::path db() const { return root / "telehub.db"; }
  // The pseudonymisation key, wrapped under the KEK (privacy::Pseudonymiser::open_wrapped_key_file).
  std::filesystem::path pseudonym_key() const { return root / "keys" / "pseudonym.key"; }
  std::filesystem::path research_key() const { return root / "keys" / "research.key"; }  // per-study pseudonyms (docs/research.md)
  std::filesystem::path broker_dir() const { return root / "broker"; }
  std::filesystem::path ca_dir() const { return root / "ca"; }
  std::filesystem::path tls_dir() const { return root / "tls"; }
  std::filesystem::path provisioning_dir() const { return root / "provisioning"; }
  std::filesystem::path hub_file() const { return root / "hub.json"; }
  // Privacy stores (docs/privacy.md): the identity vault and its keys (wrapped under the KEK),
  // the audit log, the consent records. Each a file of its own, never the measurement store.
  std::filesystem::path identity_db() const { return root / "identity.db"; }
  std::filesystem::path vault_key() const { return root / "keys" / "vault.key"; }
  std::filesystem::path audit_db() const { return root / "audit.db"; }
  std::filesystem::path consent_db() const { return root / "consent.db"; }
  // Issue [6/8]: registered API clients and tokens (auth::TokenService), care relations.
  std::filesystem::path auth_db() const { return root / "auth.db"; }
  std::filesystem::path care_db() const { return root / "care.db"; }
  // Issue [7/8]: clinical records imported from hospital Bundles (clinical::ResourceStore), by
  // pseudonym; the Patients themselves are in the identity vault (docs/clinical.md).
  std::filesystem::path clinical_db() const { return root / "clinical.db"; }
  // Issue [8/8]: hourly air quality and weather per postcode area (docs/environment.md).
  std::filesystem::path environment_db() const { return root / "environment.db"; }
};

// Creates the directory (mode 0700) if needed. Fails with unavailable/data_dir.
[[nodiscard]] Result<DataDir> open_data_dir(const std::filesystem::path& root);

// The KEK for this data directory: `kek_file` when non-empty (the --kek-file option), else the
// environment variable TELEHUB_KEK, else the development default ~/.config/telehub/kek (created
// on first use; a warning says it is for development only). Fails as privacy::Kek::resolve:
// no_kek, bad_kek, kek_inside_data.
[[nodiscard]] Result<privacy::Kek> load_kek(const std::string& kek_file, const DataDir& dir);

struct HubInfo {
  std::string broker_uri;        // "ssl://127.0.0.1:41883" (embedded broker), or --broker
  std::string fhir_base;         // "https://127.0.0.1:8080/fhir" (http:// with --insecure-http)
  int embedded_broker_port = 0;  // the port the embedded broker used (reused on restart)
};

[[nodiscard]] Status write_hub_info(const DataDir& dir, const HubInfo& info);
// std::nullopt when serve has never run here.
[[nodiscard]] Result<std::optional<HubInfo>> read_hub_info(const DataDir& dir);

}  // namespace telehub::apps
