#include "privacy_stores.h"

#include <unistd.h>

#include <cstdlib>

namespace telehub::apps {

Result<PrivacyStores> open_privacy(const DataDir& dir, const privacy::Kek& kek) {
  PrivacyStores p;
  auto vault = privacy::IdentityVault::open(dir.identity_db(), dir.vault_key(), kek);
  if (!vault) return tl::unexpected(vault.error());
  p.vault = std::move(*vault);
  auto audit = privacy::AuditLog::open(dir.audit_db());
  if (!audit) return tl::unexpected(audit.error());
  p.audit = std::move(*audit);
  auto consent = privacy::ConsentStore::open(dir.consent_db());
  if (!consent) return tl::unexpected(consent.error());
  p.consent = std::move(*consent);
  auto pseudonymiser = privacy::Pseudonymiser::open_wrapped_key_file(dir.pseudonym_key(), kek);
  if (!pseudonymiser) return tl::unexpected(pseudonymiser.error());
  p.pseudonymiser = std::move(*pseudonymiser);
  return p;
}

privacy::AuditRecord cli_audit(std::string event_type, char action, std::string subject, std::string objects,
                               std::string purpose) {
  privacy::AuditRecord a;
  a.event_type = std::move(event_type);
  a.action = action;
  const char* login = std::getenv("USER");
  a.user_id = std::string("local:") + (login && *login ? login : "uid=" + std::to_string(::getuid()));
  a.role = "local";
  a.purpose = std::move(purpose);
  a.access_point = "cli";
  a.subject = std::move(subject);
  a.objects = std::move(objects);
  a.source = "telehub cli";
  return a;
}

}  // namespace telehub::apps
