// Opening the privacy stores of a data directory (docs/privacy.md) for the commands that need
// them, and the audit record every command writes for an access to identified data.
#pragma once

#include <memory>
#include <string>

#include "hub_files.h"
#include "telehub/core/error.h"
#include "telehub/privacy/audit_log.h"
#include "telehub/privacy/consent.h"
#include "telehub/privacy/identity_vault.h"
#include "telehub/privacy/keystore.h"
#include "telehub/privacy/pseudonym.h"

namespace telehub::apps {

struct PrivacyStores {
  std::shared_ptr<privacy::IdentityVault> vault;
  std::shared_ptr<privacy::AuditLog> audit;
  std::shared_ptr<privacy::ConsentStore> consent;
  std::shared_ptr<const privacy::Pseudonymiser> pseudonymiser;
};

// Opens (creating when missing) the vault, the audit log, the consent store and the
// pseudonymiser. Fails as each of them does.
[[nodiscard]] Result<PrivacyStores> open_privacy(const DataDir& dir, const privacy::Kek& kek);

// An audit record for a command-line access: user "local:<login name or uid>", role "local",
// access point "cli".
privacy::AuditRecord cli_audit(std::string event_type, char action, std::string subject, std::string objects,
                               std::string purpose);

}  // namespace telehub::apps
