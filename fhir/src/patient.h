// FHIR R4 Patient <-> privacy::Person (the identity vault's record), for the care context
// only (docs/privacy.md): registration by POST/PUT Patient, and re-identification on read.
//
// Mapping (http://hl7.org/fhir/R4/patient.html):
//   identifier with system http://fhir.nl/fhir/NamingSystem/bsn  <-> bsn
//   any other identifier (system + value)                         <-> record_numbers
//   name[0].given (joined by spaces) / name[0].family             <-> given_name / family_name
//   birthDate, gender                                             <-> birth_date, sex
//   address[0].line[0], postalCode, city                          <-> address_line, postcode, city
//   telecom system phone / email                                  <-> phone / email
// Patient.id is the subject's pseudonym, never the vault's subject id.
//
// Parsing limits (docs/security.md, "Injection, traversal and parsing limits"): a body larger
// than kMaxFhirBodyBytes, or nesting arrays/objects deeper than envelope::kMaxJsonDepth (16),
// is refused before it is parsed; the parser is iterative, so no body can exhaust the stack.
//
// Error policy: person_from_patient returns Result (invalid_argument/bad_patient with the FHIR
// element path or the parse problem, never a value). Thread-safety: stateless.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "telehub/core/error.h"
#include "telehub/privacy/identity_vault.h"

namespace telehub::fhir {

// Largest Patient body person_from_patient parses: the HTTP server's default body limit
// (HttpServerOptions::max_body_bytes), kept here for routers behind a larger limit.
inline constexpr std::size_t kMaxFhirBodyBytes = 1 << 20;

inline constexpr std::string_view kBsnSystem = "http://fhir.nl/fhir/NamingSystem/bsn";

[[nodiscard]] Result<privacy::Person> person_from_patient(std::string_view json);

// The identified Patient: id = pseudonym, plus the vault's fields.
std::string identified_patient_json(std::string_view pseudonym, const privacy::Person& person);

}  // namespace telehub::fhir
