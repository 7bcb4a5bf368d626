// FHIR R4 AuditEvent (http://hl7.org/fhir/R4/auditevent.html) for an audit record
// (privacy/audit_log.h), so the audit log can be read with FHIR tools. docs/privacy.md gives
// the field mapping; in short:
//   id              "audit-<sequence>"
//   type            DICOM (http://dicom.nema.org/resources/ontology/DCM, PS3.16 CID 400, in the
//                   R4 audit-event-type value set): *.search -> 110112 Query; patient.*,
//                   subject.*, consent.* -> 110110 Patient Record; audit.* -> 110101 Audit Log
//                   Used; anything else -> 110100 Application Activity
//   subtype         event_type in https://telehub.example.org/fhir/CodeSystem/audit-event-type
//   action          action (C R U D E); recorded = recorded (an instant with offset)
//   outcome         success -> "0"; denied -> "4" (minor failure, outcomeDesc "access denied");
//                   failure -> "8" (serious failure)
//   purposeOfEvent  text = purpose, plus a v3-ActReason (PurposeOfUse) coding for the purposes
//                   telehub uses: treatment TREAT, emergency ETREAT, research HRESCH,
//                   erasure-request and patient-request PATRQT, enrolment PATADMIN,
//                   operations HOPERAT, audit RECORDMGT; any other purpose is text only
//   agent[0]        who.identifier.value = user_id, role[0].text = role, requestor true,
//                   network.address = access_point (type "2" IP Address when it is an IPv4 or
//                   IPv6 address, with or without port; no type for names such as "cli")
//   agent[1]        only with on_behalf_of: who.identifier.value = on_behalf_of, role text
//                   "responsible user", requestor false
//   source          observer.display = source; type security-source-type 4 Application Server
//   entity          subject -> what.reference Patient/<pseudonym> (type 1 Person, role 1
//                   Patient); objects (unless it is that same reference) -> what.identifier.value
//                   and what.display (type 2 System Object, role 4 Domain Resource); query ->
//                   an entity with query = base64 of its UTF-8 bytes (AuditEvent.entity.query is
//                   base64Binary; role 24 Query)
// The chain fields (prev_hash, hash) are not carried: verify the chain on the log itself.
//
// Thread-safety: a pure function.
#pragma once

#include <string>

#include "telehub/privacy/audit_log.h"

namespace telehub::fhir {

// The AuditEvent JSON (compact, UTF-8) of one record as stored by privacy::AuditLog; its id is
// "audit-<sequence>". REQUIRES: a record append() accepted (required fields present).
std::string audit_event_json(const privacy::AuditRecord& record);

}  // namespace telehub::fhir
