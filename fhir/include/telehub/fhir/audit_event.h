// FHIR R4 AuditEvent (http://hl7.org/fhir/R4/auditevent.html) for an audit record
// (privacy/audit_log.h), so the audit log can be read with FHIR tools. docs/privacy.md gives
// the field mapping.
#pragma once

#include <string>

#include "telehub/privacy/audit_log.h"

namespace telehub::fhir {

// The AuditEvent JSON of one record; its id is "audit-<sequence>". `base_url` is the FHIR base
// (for references to Patient/<pseudonym>).
std::string audit_event_json(const privacy::AuditRecord& record);

}  // namespace telehub::fhir
