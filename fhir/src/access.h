// Who is asking and what they may do (issue [6/8], docs/security.md "Roles and scopes").
// Private to the fhir module; the router resolves a Principal for each request and checks the
// endpoint's requirement before it runs the handler. Care relations are checked by the handlers
// (they know the subject).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "telehub/auth/token_service.h"
#include "telehub/fhir/router.h"

namespace telehub::fhir {

// The endpoints that need a decision (metadata, the SMART configuration and the token
// endpoint are public).
enum class Endpoint {
  kObservationSearch,
  kObservationRead,
  kPatientRead,
  kPatientSearch,
  kPatientCreate,
  kPatientUpdate,
  kDeviceRead,
  kAuditEventSearch,
  kConsentCreate,
  kMetrics,
  // Issue [7/8]: clinical records and operations. The resource type comes with the request.
  kBundle,           // POST /fhir (transaction or batch): per entry type 'c' (POST) or 'u' (PUT)
  kClinicalRead,     // GET <Type>/<id>, <Type>/<id>/_history[/<vid>]: 'r'
  kClinicalSearch,   // GET <Type>?...: 's'
  kEverything,       // GET Patient/<id>/$everything: Patient 'r'; other types filtered by scope
  kLastn,            // GET Observation/$lastn: Observation 's'
  kExport,           // $export kick-off, status, files: care (types checked against the scopes)
  kSummary,          // GET Patient/<id>/$summary: Patient 'r'
  // Issue [8/8]: research (docs/research.md). Only study outputs, never a patient route.
  kResearchExport,   // GET Group/<study id>/$export by the research role: a pseudonymised study export
  kResearchPoll,     // $export-status and $export-files of a research export (the requester's own jobs)
  kResearchQuery,    // GET /research/studies[/<study id>/aggregate]: study list and aggregate tables
};

// The roles of issue [6/8].
inline constexpr std::string_view kRoleCare = "care";
inline constexpr std::string_view kRoleResearch = "research";
inline constexpr std::string_view kRoleEnrolment = "enrolment";
inline constexpr std::string_view kRoleOperator = "operator";

struct Principal {
  enum class Kind {
    kOpen,   // no authentication configured (RouterOptions::auth.tokens unset): pseudonymous reads only
    kLocal,  // the local care setting (care_local, loopback, no token): care role, every scope, no relation check
    kGrant,  // a bearer token or a registered client certificate
  };
  Kind kind = Kind::kOpen;
  std::string user;  // for the audit log: client id, API token name, "local" or "anonymous"
  std::string role;  // care | research | enrolment | operator; "care" for kLocal; "" for kOpen
  std::string organisation;
  auth::Grant grant;  // kGrant only
};

// An answer that ends the request: 400/401/403 with an OperationOutcome issue code and, for
// 401 and insufficient scope, a WWW-Authenticate value (RFC 6750 section 3).
struct Denial {
  int status = 403;
  std::string code;  // FHIR issue type: login, forbidden, invalid
  std::string diagnostics;
  std::string www_authenticate;  // empty: no header
};

// The principal of a request:
//   - with auth.tokens: an "Authorization: Bearer <token>" header (one at most; scheme
//     case-insensitive) → the token's grant, else 401 invalid_token; without one, a mutual-TLS
//     client certificate whose name is a registered client id → that client's grant, else 401;
//     without either, the local care setting (privacy.care_local and a loopback client) →
//     kLocal; else 401.
//   - without auth.tokens: kLocal in the local care setting, else kOpen.
// Storage failures of the token service give a 503 Denial.
std::variant<Principal, Denial> resolve_principal(const Request& request, const RouterOptions& options);

// Whether `principal` may use `endpoint` (role and scope; not the care relation):
//   kObservationSearch  care, system/Observation.s     kObservationRead  care, Observation.r
//   kPatientRead        care, system/Patient.r         kPatientCreate    care, Patient.c
//   kPatientSearch      care, system/Patient.s
//   kPatientUpdate      care, system/Patient.u         kDeviceRead       care or enrolment, Device.r
//   kAuditEventSearch   operator, system/AuditEvent.s  kConsentCreate    care, Consent.c
//   kMetrics            operator (no FHIR scope)
// The research role has no endpoint here (its research endpoints arrive with issue [8/8]).
// kLocal may use every endpoint. kOpen may use the pseudonymous reads (Observation search and
// read, Patient read, Device read, metrics, clinical reads and searches, $everything, $lastn)
// and nothing else.
// The [7/8] endpoints are care only; their scope is checked on `resource_type` (kBundle: the
// router checks each entry's type itself, here only the role).
std::optional<Denial> authorise(Endpoint endpoint, const Principal& principal, std::string_view resource_type = {});

// "observation.search", "patient.read", ... (the audit event type of an endpoint).
std::string_view audit_event_type(Endpoint endpoint);
// The audit action letter of an endpoint: C, R or U.
char audit_action(Endpoint endpoint);
// The purpose of use recorded for a principal: care → treatment, operator → operations, ...
std::string_view purpose_of_use(const Principal& principal);

}  // namespace telehub::fhir
