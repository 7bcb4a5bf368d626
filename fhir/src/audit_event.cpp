// AuditRecord -> FHIR R4 AuditEvent; the mapping is listed in include/telehub/fhir/audit_event.h.
#include "telehub/fhir/audit_event.h"

#include <cctype>
#include <span>
#include <string_view>

#include "json.h"
#include "telehub/core/bytes.h"

namespace telehub::fhir {
namespace {

// DICOM audit event IDs (DICOM PS3.16 CID 400, system http://dicom.nema.org/resources/ontology/DCM),
// part of http://hl7.org/fhir/R4/valueset-audit-event-type.html.
constexpr std::string_view kDicomSystem = "http://dicom.nema.org/resources/ontology/DCM";
constexpr std::string_view kSubtypeSystem = "https://telehub.example.org/fhir/CodeSystem/audit-event-type";
// http://hl7.org/fhir/R4/v3/PurposeOfUse/vs.html (codes of v3-ActReason).
constexpr std::string_view kActReasonSystem = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
// http://hl7.org/fhir/R4/codesystem-security-source-type.html
constexpr std::string_view kSourceTypeSystem = "http://terminology.hl7.org/CodeSystem/security-source-type";
// http://hl7.org/fhir/R4/codesystem-audit-entity-type.html
constexpr std::string_view kEntityTypeSystem = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
// http://hl7.org/fhir/R4/codesystem-object-role.html
constexpr std::string_view kObjectRoleSystem = "http://terminology.hl7.org/CodeSystem/object-role";

struct Code {
  std::string_view code;
  std::string_view display;
};


// AuditEvent.type: searches are 110112 Query; other events about a patient (patient.*,
// subject.*, consent.*) 110110 Patient Record; reading or checking the audit log itself 110101
// Audit Log Used; everything else 110100 Application Activity.
Code event_type_code(std::string_view event_type) {
  if (event_type.ends_with(".search")) return {"110112", "Query"};
  if (event_type.starts_with("patient.") || event_type.starts_with("subject.") || event_type.starts_with("consent."))
    return {"110110", "Patient Record"};
  if (event_type.starts_with("audit.")) return {"110101", "Audit Log Used"};
  return {"110100", "Application Activity"};
}

// AuditEvent.outcome (http://hl7.org/fhir/R4/valueset-audit-event-outcome.html).
std::string_view outcome_code(std::string_view outcome) {
  if (outcome == "success") return "0";
  if (outcome == "denied") return "4";  // minor failure: the request was refused
  return "8";                           // serious failure: the operation did not complete
}

// Purposes telehub uses -> PurposeOfUse codes; other purposes go out as text only.
const Code* purpose_code(std::string_view purpose) {
  static constexpr struct {
    std::string_view purpose;
    Code code;
  } kPurposes[] = {
      {"treatment", {"TREAT", "treatment"}},
      {"emergency", {"ETREAT", "Emergency Treatment"}},
      {"research", {"HRESCH", "healthcare research"}},
      {"erasure-request", {"PATRQT", "patient requested"}},
      {"patient-request", {"PATRQT", "patient requested"}},
      {"enrolment", {"PATADMIN", "patient administration"}},
      {"operations", {"HOPERAT", "healthcare operations"}},
      {"audit", {"RECORDMGT", "records management"}},
  };
  for (const auto& p : kPurposes)
    if (p.purpose == purpose) return &p.code;
  return nullptr;
}

// "127.0.0.1", "127.0.0.1:51234", "[::1]:8080", "::1": an IP address (network type 2).
bool looks_like_ip(std::string_view a) {
  if (a.empty()) return false;
  if (a.front() == '[') return a.find(']') != std::string_view::npos;
  bool digits_dots_colon = true, hex_colons = true;
  int dots = 0, colons = 0;
  for (char c : a) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '.') ++dots;
    if (c == ':') ++colons;
    if (!std::isdigit(u) && c != '.' && c != ':') digits_dots_colon = false;
    if (!std::isxdigit(u) && c != ':') hex_colons = false;
  }
  return (digits_dots_colon && dots == 3 && colons <= 1) || (hex_colons && colons >= 2);
}

void write_text_concept(JsonWriter& w, std::string_view text) {
  w.StartObject();
  write_member(w, "text", text);
  w.EndObject();
}

void write_agent(JsonWriter& w, std::string_view who, std::string_view role, bool requestor,
                 std::string_view access_point) {
  w.StartObject();
  if (!role.empty()) {
    write_key(w, "role");
    w.StartArray();
    write_text_concept(w, role);
    w.EndArray();
  }
  write_key(w, "who");
  w.StartObject();
  write_key(w, "identifier");
  w.StartObject();
  write_member(w, "value", who);
  w.EndObject();
  w.EndObject();
  write_key(w, "requestor");
  w.Bool(requestor);
  if (!access_point.empty()) {
    write_key(w, "network");
    w.StartObject();
    write_member(w, "address", access_point);
    if (looks_like_ip(access_point)) write_member(w, "type", "2");  // IP Address
    w.EndObject();
  }
  w.EndObject();
}

}  // namespace

std::string audit_event_json(const privacy::AuditRecord& r) {
  JsonBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  write_member(w, "resourceType", "AuditEvent");
  write_member(w, "id", "audit-" + std::to_string(r.sequence));

  const Code type = event_type_code(r.event_type);
  write_key(w, "type");
  write_coding(w, kDicomSystem, type.code, type.display);
  if (!r.event_type.empty()) {
    write_key(w, "subtype");
    w.StartArray();
    write_coding(w, kSubtypeSystem, r.event_type, "");
    w.EndArray();
  }
  write_member(w, "action", std::string_view(&r.action, 1));
  write_member(w, "recorded", r.recorded);
  write_member(w, "outcome", outcome_code(r.outcome));
  if (r.outcome == "denied") write_member(w, "outcomeDesc", "access denied");
  else if (r.outcome != "success") write_member(w, "outcomeDesc", "the operation failed");

  if (!r.purpose.empty()) {
    write_key(w, "purposeOfEvent");
    w.StartArray();
    w.StartObject();
    if (const Code* p = purpose_code(r.purpose)) {
      write_key(w, "coding");
      w.StartArray();
      write_coding(w, kActReasonSystem, p->code, p->display);
      w.EndArray();
    }
    write_member(w, "text", r.purpose);
    w.EndObject();
    w.EndArray();
  }

  write_key(w, "agent");
  w.StartArray();
  write_agent(w, r.user_id, r.role, true, r.access_point);
  if (!r.on_behalf_of.empty()) write_agent(w, r.on_behalf_of, "responsible user", false, "");
  w.EndArray();

  write_key(w, "source");
  w.StartObject();
  write_key(w, "observer");
  w.StartObject();
  write_member(w, "display", r.source.empty() ? std::string_view("telehub") : std::string_view(r.source));
  w.EndObject();
  write_key(w, "type");
  w.StartArray();
  write_coding(w, kSourceTypeSystem, "4", "Application Server");
  w.EndArray();
  w.EndObject();

  const std::string subject_ref = r.subject.empty() ? std::string() : "Patient/" + r.subject;
  const bool objects_entity = !r.objects.empty() && r.objects != subject_ref;
  if (!r.subject.empty() || objects_entity || !r.query.empty()) {
    write_key(w, "entity");
    w.StartArray();
    if (!r.subject.empty()) {
      w.StartObject();
      write_key(w, "what");
      w.StartObject();
      write_member(w, "reference", subject_ref);
      w.EndObject();
      write_key(w, "type");
      write_coding(w, kEntityTypeSystem, "1", "Person");
      write_key(w, "role");
      write_coding(w, kObjectRoleSystem, "1", "Patient");
      w.EndObject();
    }
    if (objects_entity) {
      w.StartObject();
      write_key(w, "what");
      w.StartObject();
      write_key(w, "identifier");
      w.StartObject();
      write_member(w, "value", r.objects);
      w.EndObject();
      write_member(w, "display", r.objects);
      w.EndObject();
      write_key(w, "type");
      write_coding(w, kEntityTypeSystem, "2", "System Object");
      write_key(w, "role");
      write_coding(w, kObjectRoleSystem, "4", "Domain Resource");
      w.EndObject();
    }
    if (!r.query.empty()) {
      w.StartObject();
      write_key(w, "type");
      write_coding(w, kEntityTypeSystem, "2", "System Object");
      write_key(w, "role");
      write_coding(w, kObjectRoleSystem, "24", "Query");
      const auto* bytes = reinterpret_cast<const std::uint8_t*>(r.query.data());
      write_member(w, "query", core::to_base64(std::span<const std::uint8_t>(bytes, r.query.size())));
      w.EndObject();
    }
    w.EndArray();
  }
  w.EndObject();
  return to_string(buffer);
}

}  // namespace telehub::fhir
