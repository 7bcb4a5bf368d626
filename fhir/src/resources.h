// Domain -> FHIR R4 (4.0.1) JSON: Observation, Patient, Device, CapabilityStatement and
// OperationOutcome. Only writing: telehub does not accept these resources from clients.
//
// Every function writes a complete, valid resource (checked in the tests with the
// independent validator ../shared/tools/fhir-validate, including the vital-signs profile
// rules: http://hl7.org/fhir/R4/observation-vitalsigns.html).
//
// Thread-safety: pure functions over their arguments.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "json.h"
#include "telehub/formats/plausibility.h"
#include "telehub/storage/store.h"

namespace telehub::fhir {

// True when `text` is a valid FHIR id: [A-Za-z0-9\-\.]{1,64}
// (http://hl7.org/fhir/R4/datatypes.html#id).
bool valid_fhir_id(std::string_view text);

// One OperationOutcome.issue (http://hl7.org/fhir/R4/operationoutcome.html).
struct Issue {
  std::string severity;     // fatal | error | warning | information (IssueSeverity, required binding)
  std::string code;         // http://hl7.org/fhir/issue-type: not-found, required, value, ...
  std::string diagnostics;  // safe text: never identifiers, payload bytes or internal errors
};

// Observation for one stored reading. The id is the decimal row id.
void write_observation(JsonWriter& w, const storage::StoredObservation& observation, const formats::Plausibility& rules);
std::string observation_json(const storage::StoredObservation& observation, const formats::Plausibility& rules);

// Pseudonymous Patient: id and active only (no name, no identifier, no BSN).
std::string patient_json(std::string_view pseudonym);

// Device: id, status, patient. Never the key.
std::string device_json(const storage::DeviceRecord& device);

struct CapabilityOptions {
  std::string base_url;  // implementation.url
  std::string token_url;  // set: rest.security names SMART Backend Services at this token URL
  bool clinical = false;  // clinical records served: transaction/batch, clinical types, $everything
};
std::string capability_statement_json(const CapabilityOptions& options);

// Building blocks of write_observation(), shared with the dense views (dense.h). Each writes
// one member (or, for write_observation_code, the CodeableConcept value of the current key).
// Observation.category for a code (vital-signs, laboratory, activity), nothing for other codes.
void write_observation_category(JsonWriter& w, std::string_view loinc);
// Observation.code: LOINC coding (and 2708-6 beside 59408-5), MDC coding when known, text.
void write_observation_code(JsonWriter& w, std::string_view loinc);
// "valueQuantity" with UCUM system and code; unit text from the code table when canonical.
void write_value_quantity(JsonWriter& w, double value, std::string_view unit, std::string_view loinc);
// A Reference member: "Type/id", or a logical reference when id is not a FHIR id.
void write_resource_reference(JsonWriter& w, std::string_view key, std::string_view type, std::string_view id);

void write_operation_outcome(JsonWriter& w, const std::vector<Issue>& issues);
std::string operation_outcome_json(const std::vector<Issue>& issues);

}  // namespace telehub::fhir
