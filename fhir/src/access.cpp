// Principal resolution and the role × endpoint policy (see access.h).
#include "access.h"

#include <algorithm>
#include <array>

#include "telehub/core/log.h"

namespace telehub::fhir {
namespace {

constexpr std::string_view kRealm = "Bearer realm=\"telehub\"";

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x >= 'A' && x <= 'Z' ? x + 32 : x) == (y >= 'A' && y <= 'Z' ? y + 32 : y);
         });
}

Denial unauthenticated(std::string diagnostics, bool invalid_token) {
  Denial d;
  d.status = 401;
  d.code = "login";
  d.diagnostics = std::move(diagnostics);
  d.www_authenticate = std::string(kRealm) + (invalid_token ? ", error=\"invalid_token\"" : "");
  return d;
}

Principal from_grant(auth::Grant grant) {
  Principal p;
  p.kind = Principal::Kind::kGrant;
  p.user = grant.client_id;
  p.role = grant.role;
  p.organisation = grant.organisation;
  p.grant = std::move(grant);
  return p;
}

Principal local_principal() {
  Principal p;
  p.kind = Principal::Kind::kLocal;
  p.user = "local";
  p.role = std::string(kRoleCare);
  return p;
}

struct Rule {
  std::array<std::string_view, 2> roles;  // empty entries unused
  std::string_view resource;              // empty: no FHIR scope needed
  char interaction;
};

Rule rule(Endpoint e) {
  switch (e) {
    case Endpoint::kObservationSearch: return {{kRoleCare, {}}, "Observation", 's'};
    case Endpoint::kObservationRead: return {{kRoleCare, {}}, "Observation", 'r'};
    case Endpoint::kPatientRead: return {{kRoleCare, {}}, "Patient", 'r'};
    case Endpoint::kPatientSearch: return {{kRoleCare, {}}, "Patient", 's'};
    case Endpoint::kPatientCreate: return {{kRoleCare, {}}, "Patient", 'c'};
    case Endpoint::kPatientUpdate: return {{kRoleCare, {}}, "Patient", 'u'};
    case Endpoint::kDeviceRead: return {{kRoleCare, kRoleEnrolment}, "Device", 'r'};
    case Endpoint::kAuditEventSearch: return {{kRoleOperator, {}}, "AuditEvent", 's'};
    case Endpoint::kConsentCreate: return {{kRoleCare, {}}, "Consent", 'c'};
    case Endpoint::kMetrics: return {{kRoleOperator, {}}, {}, 'r'};
    case Endpoint::kBundle: return {{kRoleCare, {}}, {}, 'c'};
    case Endpoint::kClinicalRead: return {{kRoleCare, {}}, "*", 'r'};
    case Endpoint::kClinicalSearch: return {{kRoleCare, {}}, "*", 's'};
    case Endpoint::kEverything: return {{kRoleCare, {}}, "Patient", 'r'};
    case Endpoint::kLastn: return {{kRoleCare, {}}, "Observation", 's'};
    case Endpoint::kExport: return {{kRoleCare, {}}, {}, 'r'};
    case Endpoint::kSummary: return {{kRoleCare, {}}, "Patient", 'r'};
    case Endpoint::kResearchExport: return {{kRoleResearch, {}}, {}, 'r'};
    case Endpoint::kResearchPoll: return {{kRoleCare, kRoleResearch}, {}, 'r'};
    case Endpoint::kResearchQuery: return {{kRoleResearch, {}}, {}, 'r'};
  }
  return {{}, {}, 'r'};
}

bool open_endpoint(Endpoint e) {
  return e == Endpoint::kObservationSearch || e == Endpoint::kObservationRead || e == Endpoint::kPatientRead ||
         e == Endpoint::kDeviceRead || e == Endpoint::kMetrics || e == Endpoint::kClinicalRead ||
         e == Endpoint::kClinicalSearch || e == Endpoint::kEverything || e == Endpoint::kLastn ||
         e == Endpoint::kSummary;
}

}  // namespace

std::variant<Principal, Denial> resolve_principal(const Request& request, const RouterOptions& options) {
  const bool local = options.privacy.care_local && request.remote_loopback;
  if (!options.auth.tokens) {
    if (local) return local_principal();
    Principal p;
    p.user = "anonymous";
    return p;
  }
  const std::pair<std::string, std::string>* authorization = nullptr;
  for (const auto& header : request.headers) {
    if (!iequals(header.first, "authorization")) continue;
    if (authorization != nullptr) {
      Denial d;
      d.status = 400;
      d.code = "invalid";
      d.diagnostics = "more than one Authorization header";
      return d;
    }
    authorization = &header;
  }
  if (authorization != nullptr) {
    const std::string_view value = authorization->second;
    const auto space = value.find(' ');
    if (space == std::string_view::npos || !iequals(value.substr(0, space), "bearer"))
      return unauthenticated("the Authorization header must be \"Bearer <access token>\"", true);
    std::string_view token = value.substr(space + 1);
    while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
    while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
    auto grant = options.auth.tokens->authenticate(token);
    if (!grant) {
      if (grant.error().code == core::Code::kUnauthenticated)
        return unauthenticated("the access token is invalid or expired", true);
      core::log_error("fhir.auth", "token check failed: " + grant.error().to_string());
      Denial d;
      d.status = 503;
      d.code = "transient";
      d.diagnostics = "the access token cannot be checked now; retry later";
      return d;
    }
    return from_grant(std::move(*grant));
  }
  if (!request.client_certificate.empty()) {
    auto grant = options.auth.tokens->client_grant(request.client_certificate);
    if (!grant) {
      core::log_error("fhir.auth", "client lookup failed: " + grant.error().to_string());
      Denial d;
      d.status = 503;
      d.code = "transient";
      d.diagnostics = "the client certificate cannot be checked now; retry later";
      return d;
    }
    if (!*grant) return unauthenticated("the client certificate names no registered client", false);
    return from_grant(std::move(**grant));
  }
  if (local) return local_principal();
  return unauthenticated("authentication required: send \"Authorization: Bearer <access token>\" (docs/security.md)",
                         false);
}

std::optional<Denial> authorise(Endpoint endpoint, const Principal& principal, std::string_view resource_type) {
  switch (principal.kind) {
    case Principal::Kind::kLocal:
      return std::nullopt;
    case Principal::Kind::kOpen:
      if (open_endpoint(endpoint)) return std::nullopt;
      return Denial{403, "forbidden",
                    "identified data is served only to authenticated clients (or, for development, with "
                    "`serve --insecure-http --care-local` to clients on this machine)",
                    ""};
    case Principal::Kind::kGrant:
      break;
  }
  Rule r = rule(endpoint);
  if (r.resource == "*") r.resource = resource_type;
  if (std::find(r.roles.begin(), r.roles.end(), principal.role) == r.roles.end() || principal.role.empty())
    return Denial{403, "forbidden", "the role " + principal.role + " may not use this endpoint", ""};
  if (!r.resource.empty() && !principal.grant.allows(r.resource, r.interaction)) {
    const std::string needed = "system/" + std::string(r.resource) + "." + std::string(1, r.interaction);
    return Denial{403, "forbidden", "the access token does not grant " + needed,
                  std::string(kRealm) + ", error=\"insufficient_scope\", scope=\"" + needed + "\""};
  }
  return std::nullopt;
}

std::string_view audit_event_type(Endpoint endpoint) {
  switch (endpoint) {
    case Endpoint::kObservationSearch: return "observation.search";
    case Endpoint::kObservationRead: return "observation.read";
    case Endpoint::kPatientRead: return "patient.read";
    case Endpoint::kPatientSearch: return "patient.search";
    case Endpoint::kPatientCreate:
    case Endpoint::kPatientUpdate: return "subject.register";
    case Endpoint::kDeviceRead: return "device.read";
    case Endpoint::kAuditEventSearch: return "audit.read";
    case Endpoint::kConsentCreate: return "consent.update";
    case Endpoint::kMetrics: return "metrics.read";
    case Endpoint::kBundle: return "clinical.import";
    case Endpoint::kClinicalRead: return "clinical.read";
    case Endpoint::kClinicalSearch: return "clinical.search";
    case Endpoint::kEverything: return "patient.everything";
    case Endpoint::kLastn: return "observation.lastn";
    case Endpoint::kExport: return "bulk.export";
    case Endpoint::kSummary: return "patient.summary";
    case Endpoint::kResearchExport: return "research.export";
    case Endpoint::kResearchPoll: return "research.export.read";
    case Endpoint::kResearchQuery: return "research.query";
  }
  return "access";
}

char audit_action(Endpoint endpoint) {
  switch (endpoint) {
    case Endpoint::kPatientCreate:
    case Endpoint::kConsentCreate:
    case Endpoint::kBundle: return 'C';
    case Endpoint::kPatientUpdate: return 'U';
    default: return 'R';
  }
}

std::string_view purpose_of_use(const Principal& principal) {
  if (principal.role == kRoleCare) return "treatment";
  if (principal.role == kRoleOperator) return "operations";
  if (principal.role == kRoleResearch) return "research";
  if (principal.role == kRoleEnrolment) return "enrolment";
  return "unknown";
}

}  // namespace telehub::fhir
