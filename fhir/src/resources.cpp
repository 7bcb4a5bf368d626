#include "resources.h"

#include <algorithm>

#include "telehub/clinical/resource_store.h"

#include <cmath>
#include <optional>

#include "telehub/core/codes.h"
#include "telehub/core/time.h"

#ifndef TELEHUB_VERSION
#define TELEHUB_VERSION "0.0.0"
#endif

namespace telehub::fhir {
namespace {

// http://hl7.org/fhir/R4/codesystem-observation-category.html
constexpr std::string_view kCategorySystem = "http://terminology.hl7.org/CodeSystem/observation-category";
// http://hl7.org/fhir/R4/codesystem-data-absent-reason.html
constexpr std::string_view kDataAbsentSystem = "http://terminology.hl7.org/CodeSystem/data-absent-reason";
// Security label "pseudonymized": http://terminology.hl7.org/CodeSystem/v3-ObservationValue
constexpr std::string_view kObservationValueSystem = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";
constexpr std::string_view kDeviceSerialPseudonymSystem = "https://telehub.example.org/fhir/NamingSystem/device-serial-pseudonym";
constexpr std::string_view kInterpretationSystem = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
// Date of the last change to what the CapabilityStatement declares (CapabilityStatement.date).
constexpr std::string_view kCapabilityDate = "2026-11-28";

struct Category {
  std::string_view code;
  std::string_view display;
};

// Observation.category (preferred binding to observation-category). Vital signs follow the
// vital-signs profile; glucose is a laboratory value and daily steps are activity.
std::optional<Category> category_of(std::string_view loinc, const core::CodeInfo* info) {
  if (info && info->vital_sign) return Category{"vital-signs", "Vital Signs"};
  if (loinc == core::loinc::kGlucoseMolar || loinc == core::loinc::kGlucoseMass)
    return Category{"laboratory", "Laboratory"};
  if (loinc == core::loinc::kStepsPerDay) return Category{"activity", "Activity"};
  return std::nullopt;
}

// CodeableConcept for a LOINC code: the LOINC coding, for SpO2 by pulse oximetry also the
// vital-signs profile code 2708-6 (http://hl7.org/fhir/R4/observation-vitalsigns.html: the
// oxygen saturation profile requires LOINC 2708-6, 59408-5 is the more specific code), and the
// IEEE 11073 MDC coding when the code table has one.
void write_code(JsonWriter& w, std::string_view loinc, const core::CodeInfo* info) {
  w.StartObject();
  write_key(w, "coding");
  w.StartArray();
  if (loinc == core::loinc::kSpO2) {
    const auto* arterial = core::find_code(core::loinc::kSpO2Arterial);
    write_coding(w, core::kLoincSystem, core::loinc::kSpO2Arterial, arterial ? arterial->display : "");
  }
  write_coding(w, info ? info->system : core::kLoincSystem, loinc, info ? info->display : "");
  if (info && info->mdc) write_coding(w, core::kMdcSystem, std::to_string(*info->mdc), "");
  w.EndArray();
  if (info) write_member(w, "text", info->display);
  w.EndObject();
}

void write_data_absent(JsonWriter& w, std::string_view code, std::string_view display) {
  write_key(w, "dataAbsentReason");
  w.StartObject();
  write_key(w, "coding");
  w.StartArray();
  write_coding(w, kDataAbsentSystem, code, display);
  w.EndArray();
  w.EndObject();
}

// valueQuantity (http://hl7.org/fhir/R4/datatypes.html#Quantity) with a UCUM code. The stored
// unit is the UCUM code; the human unit text comes from the code table when the stored unit is
// the canonical one. qty-3: a code requires a system, so both go together.
void write_quantity(JsonWriter& w, double value, std::string_view unit, const core::CodeInfo* info) {
  if (unit.empty() && info) unit = info->ucum;
  write_key(w, "valueQuantity");
  w.StartObject();
  write_key(w, "value");
  w.Double(value);
  if (!unit.empty()) {
    const bool canonical = info && unit == info->ucum && !info->unit_display.empty();
    write_member(w, "unit", canonical ? info->unit_display : unit);
    write_member(w, "system", core::kUcumSystem);
    write_member(w, "code", unit);
  }
  w.EndObject();
}

void write_reference(JsonWriter& w, std::string_view key, std::string_view type, std::string_view id) {
  write_key(w, key);
  w.StartObject();
  if (valid_fhir_id(id)) {
    write_member(w, "reference", std::string(type) + "/" + std::string(id));
  } else {
    // Not addressable as a FHIR id (e.g. a device id with '_'): a logical reference instead
    // (http://hl7.org/fhir/R4/references.html#logical).
    write_member(w, "type", type);
    write_key(w, "identifier");
    w.StartObject();
    write_member(w, "value", id);
    w.EndObject();
  }
  w.EndObject();
}

void write_codeable_concept(JsonWriter& w, std::string_view key, std::string_view system, std::string_view code,
                            std::string_view display) {
  write_key(w, key);
  w.StartArray();
  w.StartObject();
  write_key(w, "coding");
  w.StartArray();
  write_coding(w, system, code, display);
  w.EndArray();
  w.EndObject();
  w.EndArray();
}

std::string finish(JsonBuffer& buffer) { return to_string(buffer); }

// Observation.interpretation (http://hl7.org/fhir/R4/valueset-observation-interpretation.html)
// for a value outside its code's expected range: HH (critical high) or LL (critical low).
void write_interpretation(JsonWriter& w, std::string_view code, double value, const formats::Plausibility& rules) {
  const formats::Verdict v = rules.check(code, value);
  if (v.kind == formats::Verdict::Kind::kPlausible) return;
  const bool high = v.direction == "high";
  write_codeable_concept(w, "interpretation", kInterpretationSystem, high ? "HH" : "LL",
                         high ? "Critical high" : "Critical low");
}

// A component's value: valueBoolean for a flag (CodeInfo::boolean), else valueQuantity.
void write_component_value(JsonWriter& w, const core::Component& c, const core::CodeInfo* info) {
  if (info && info->boolean && (c.value == 0 || c.value == 1)) {
    write_key(w, "valueBoolean");
    w.Bool(c.value == 1);
  } else if (std::isfinite(c.value)) {
    write_quantity(w, c.value, c.unit, info);
  } else {
    write_data_absent(w, "error", "Error");
  }
}

}  // namespace

bool valid_fhir_id(std::string_view text) {
  if (text.empty() || text.size() > 64) return false;
  for (char c : text) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

// http://hl7.org/fhir/R4/observation.html
void write_observation(JsonWriter& w, const storage::StoredObservation& o, const formats::Plausibility& rules) {
  const core::Reading& r = o.reading;
  const core::CodeInfo* info = core::find_code(r.code);
  w.StartObject();
  write_member(w, "resourceType", "Observation");
  write_member(w, "id", std::to_string(o.id));
  write_key(w, "meta");
  w.StartObject();
  write_member(w, "lastUpdated", core::format_rfc3339(o.received_at));
  w.EndObject();
  write_member(w, "status", "final");
  if (auto category = category_of(r.code, info)) write_codeable_concept(w, "category", kCategorySystem, category->code, category->display);
  write_key(w, "code");
  write_code(w, r.code, info);
  write_reference(w, "subject", "Patient", r.subject);
  write_member(w, "effectiveDateTime", core::format_rfc3339(r.time));
  if (!r.device.empty()) write_reference(w, "device", "Device", r.device);
  if (r.value && std::isfinite(*r.value)) {
    write_quantity(w, *r.value, r.unit, info);
    write_interpretation(w, r.code, *r.value, rules);
  } else if (r.value) {
    write_data_absent(w, "error", "Error");
  } else if (r.components.empty()) {
    // vs-2: a vital sign without components needs a value or a dataAbsentReason.
    write_data_absent(w, "unknown", "Unknown");
  }
  if (!r.components.empty()) {
    write_key(w, "component");
    w.StartArray();
    for (const auto& c : r.components) {
      const core::CodeInfo* cinfo = core::find_code(c.code);
      w.StartObject();
      write_key(w, "code");
      write_code(w, c.code, cinfo);
      write_component_value(w, c, cinfo);
      if (std::isfinite(c.value) && !(cinfo && cinfo->boolean)) write_interpretation(w, c.code, c.value, rules);
      w.EndObject();
    }
    w.EndArray();
  }
  w.EndObject();
}

std::string observation_json(const storage::StoredObservation& observation, const formats::Plausibility& rules) {
  JsonBuffer buffer;
  JsonWriter w(buffer);
  write_observation(w, observation, rules);
  return finish(buffer);
}

// http://hl7.org/fhir/R4/patient.html. The security label PSEUDED says the resource is about a
// pseudonym (http://hl7.org/fhir/R4/security-labels.html).
std::string patient_json(std::string_view pseudonym) {
  JsonBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  write_member(w, "resourceType", "Patient");
  write_member(w, "id", pseudonym);
  write_key(w, "meta");
  w.StartObject();
  write_key(w, "security");
  w.StartArray();
  write_coding(w, kObservationValueSystem, "PSEUDED", "pseudonymized");
  w.EndArray();
  w.EndObject();
  write_key(w, "active");
  w.Bool(true);
  w.EndObject();
  return finish(buffer);
}

// http://hl7.org/fhir/R4/device.html. Device.status: FHIRDeviceStatus (required binding).
std::string device_json(const storage::DeviceRecord& device) {
  JsonBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  write_member(w, "resourceType", "Device");
  write_member(w, "id", device.id);
  if (!device.serial_pseudonym.empty()) {
    // The serial number only as a keyed pseudonym (docs/payloads.md), so as an identifier of
    // telehub's own system, not as Device.serialNumber.
    write_key(w, "identifier");
    w.StartArray();
    w.StartObject();
    write_member(w, "system", kDeviceSerialPseudonymSystem);
    write_member(w, "value", device.serial_pseudonym);
    w.EndObject();
    w.EndArray();
  }
  write_member(w, "status", device.active ? "active" : "inactive");
  if (!device.manufacturer.empty()) write_member(w, "manufacturer", device.manufacturer);
  if (!device.model.empty()) write_member(w, "modelNumber", device.model);
  if (!device.subject.empty()) write_reference(w, "patient", "Patient", device.subject);
  w.EndObject();
  return finish(buffer);
}

// http://hl7.org/fhir/R4/capabilitystatement.html. kind "instance" describes this running
// server; cpb-2 needs one of description, software or implementation (we give the last two).
std::string capability_statement_json(const CapabilityOptions& options) {
  JsonBuffer buffer;
  JsonWriter w(buffer);
  auto search_param = [&w](std::string_view name, std::string_view definition, std::string_view type,
                           std::string_view doc) {
    w.StartObject();
    write_member(w, "name", name);
    if (!definition.empty()) write_member(w, "definition", definition);
    write_member(w, "type", type);
    write_member(w, "documentation", doc);
    w.EndObject();
  };
  auto interactions = [&w](std::initializer_list<std::string_view> codes) {
    write_key(w, "interaction");
    w.StartArray();
    for (auto code : codes) {
      w.StartObject();
      write_member(w, "code", code);
      w.EndObject();
    }
    w.EndArray();
  };

  w.StartObject();
  write_member(w, "resourceType", "CapabilityStatement");
  write_member(w, "status", "active");
  write_member(w, "date", kCapabilityDate);
  write_member(w, "publisher", "telehub");
  write_member(w, "kind", "instance");
  write_key(w, "software");
  w.StartObject();
  write_member(w, "name", "telehub");
  write_member(w, "version", TELEHUB_VERSION);
  w.EndObject();
  write_key(w, "implementation");
  w.StartObject();
  write_member(w, "description", "telehub home telemonitoring hub: FHIR R4 API");
  write_member(w, "url", options.base_url);
  w.EndObject();
  write_member(w, "fhirVersion", "4.0.1");
  write_key(w, "format");
  w.StartArray();
  write_string(w, "json");
  w.EndArray();
  write_key(w, "rest");
  w.StartArray();
  w.StartObject();
  write_member(w, "mode", "server");
  if (!options.token_url.empty()) {
    // http://hl7.org/fhir/R4/capabilitystatement-definitions.html#CapabilityStatement.rest.security
    write_key(w, "security");
    w.StartObject();
    write_key(w, "cors");
    w.Bool(false);
    write_key(w, "service");
    w.StartArray();
    w.StartObject();
    write_key(w, "coding");
    w.StartArray();
    write_coding(w, "http://terminology.hl7.org/CodeSystem/restful-security-service", "SMART-on-FHIR", "SMART-on-FHIR");
    w.EndArray();
    w.EndObject();
    w.EndArray();
    write_member(w, "description",
                 "SMART Backend Services (client_credentials with a private_key_jwt assertion, RS384 or ES384) at " +
                     options.token_url +
                     "; bearer tokens carry system scopes and a role (care, research, enrolment, operator); "
                     "mutual TLS for registered clients. See .well-known/smart-configuration.");
    w.EndObject();
  }
  write_key(w, "resource");
  w.StartArray();

  w.StartObject();
  write_member(w, "type", "Observation");
  interactions({"read", "search-type"});
  write_key(w, "searchInclude");
  w.StartArray();
  for (const char* include : {"Observation:subject", "Observation:patient", "Observation:device"}) write_string(w, include);
  w.EndArray();
  write_key(w, "searchParam");
  w.StartArray();
  search_param("patient", "http://hl7.org/fhir/SearchParameter/clinical-patient", "reference",
               "Patient/<id> or <id>; patient or subject is required");
  search_param("subject", "http://hl7.org/fhir/SearchParameter/Observation-subject", "reference",
               "Patient/<id> or <id>");
  search_param("code", "http://hl7.org/fhir/SearchParameter/clinical-code", "token",
               "[system|]code; systems http://loinc.org and urn:iso:std:iso:11073:10101");
  search_param("date", "http://hl7.org/fhir/SearchParameter/clinical-date", "date",
               "prefixes eq, gt, ge, lt, le; may be repeated");
  search_param("_count", "", "number", "page size");
  search_param("_aggregate", "", "token",
               "telehub extension: hour or day; hourly or daily aggregate Observations of the home readings "
               "(needs patient and code; docs/dense.md)");
  w.EndArray();
  auto operation = [&w](std::string_view name, std::string_view definition) {
    w.StartObject();
    write_member(w, "name", name);
    write_member(w, "definition", definition);
    w.EndObject();
  };
  write_key(w, "operation");
  w.StartArray();
  operation("lastn", "http://hl7.org/fhir/OperationDefinition/Observation-lastn");
  w.EndArray();
  w.EndObject();

  w.StartObject();
  write_member(w, "type", "Patient");
  interactions({"read", "search-type", "create", "update"});
  write_key(w, "conditionalUpdate");
  w.Bool(true);
  write_key(w, "searchParam");
  w.StartArray();
  search_param("identifier", "http://hl7.org/fhir/SearchParameter/Patient-identifier", "token",
               "system|value: the BSN (http://fhir.nl/fhir/NamingSystem/bsn) or a record number; care role");
  w.EndArray();
  if (options.clinical) {
    write_key(w, "operation");
    w.StartArray();
    operation("everything", "http://hl7.org/fhir/OperationDefinition/Patient-everything");
    operation("summary", "http://hl7.org/fhir/uv/ips/OperationDefinition/summary");
    w.EndArray();
  }
  w.EndObject();

  w.StartObject();
  write_member(w, "type", "Device");
  interactions({"read"});
  w.EndObject();

  w.StartObject();
  write_member(w, "type", "Consent");
  interactions({"create"});
  w.EndObject();

  w.StartObject();
  write_member(w, "type", "AuditEvent");
  interactions({"search-type"});
  write_key(w, "searchParam");
  w.StartArray();
  search_param("patient", "http://hl7.org/fhir/SearchParameter/AuditEvent-patient", "reference", "Patient/<id> or <id>");
  w.EndArray();
  w.EndObject();

  if (options.clinical) {
    // The clinical record types the store indexes (clinical::index_table(); others are stored
    // and readable too, searchable by patient, _id and _lastUpdated).
    std::vector<std::string> types;
    for (const auto& p : clinical::index_table())
      if (p.type != "Observation" && !p.type.empty() && p.type[0] >= 'A' && p.type[0] <= 'Z' &&
          std::find(types.begin(), types.end(), p.type) == types.end())
        types.push_back(p.type);  // not the "(every type)" rows
    for (const auto& type : types) {
      w.StartObject();
      write_member(w, "type", type);
      interactions({"read", "vread", "history-instance", "search-type"});
      write_key(w, "searchParam");
      w.StartArray();
      search_param("patient", "", "reference", "Patient/<id> or <id>; required for the care role");
      search_param("_id", "", "token", "comma-separated ids");
      search_param("_lastUpdated", "", "date", "prefixes eq ne gt ge lt le sa eb");
      for (const auto& p : clinical::index_table())
        if (p.type == type) search_param(p.param, "", p.kind == "quantity" ? "quantity" : p.kind, p.elements);
      search_param("_sort", "", "string", "date, -date, _lastUpdated, -_lastUpdated");
      search_param("_summary", "", "token", "count");
      search_param("_count", "", "number", "page size");
      w.EndArray();
      w.EndObject();
    }
  }

  w.EndArray();
  if (options.clinical) {
    write_key(w, "interaction");
    w.StartArray();
    for (const char* code : {"transaction", "batch"}) {
      w.StartObject();
      write_member(w, "code", code);
      w.EndObject();
    }
    w.EndArray();
  }
  w.EndObject();
  w.EndArray();
  w.EndObject();
  return finish(buffer);
}

// http://hl7.org/fhir/R4/operationoutcome.html
void write_operation_outcome(JsonWriter& w, const std::vector<Issue>& issues) {
  w.StartObject();
  write_member(w, "resourceType", "OperationOutcome");
  write_key(w, "issue");
  w.StartArray();
  for (const auto& issue : issues) {
    w.StartObject();
    write_member(w, "severity", issue.severity);
    write_member(w, "code", issue.code);
    if (!issue.diagnostics.empty()) write_member(w, "diagnostics", issue.diagnostics);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
}

std::string operation_outcome_json(const std::vector<Issue>& issues) {
  JsonBuffer buffer;
  JsonWriter w(buffer);
  write_operation_outcome(w, issues);
  return finish(buffer);
}

}  // namespace telehub::fhir

// ---------------------------------------------------------------- building blocks (dense.cpp)

namespace telehub::fhir {

void write_observation_category(JsonWriter& w, std::string_view loinc) {
  if (auto category = category_of(loinc, core::find_code(loinc)))
    write_codeable_concept(w, "category", kCategorySystem, category->code, category->display);
}

void write_observation_code(JsonWriter& w, std::string_view loinc) { write_code(w, loinc, core::find_code(loinc)); }

void write_value_quantity(JsonWriter& w, double value, std::string_view unit, std::string_view loinc) {
  write_quantity(w, value, unit, core::find_code(loinc));
}

void write_resource_reference(JsonWriter& w, std::string_view key, std::string_view type, std::string_view id) {
  write_reference(w, key, type, id);
}

}  // namespace telehub::fhir
