// The FHIR R4 Observation of one hourly environment value, for a patient's dossier
// (Patient/$everything; docs/environment.md, "In the dossier"):
//   id                "env-<area>-<component key>-<Unix hour>"
//   status            final
//   category          https://telehub.example.org/fhir/CodeSystem/observation-category#environment
//   code              ComponentInfo system and code (telehub's environment CodeSystem), text
//   subject           Patient/<pseudonym>: the exposure of the patient's home area, not a
//                     measurement of the patient
//   effectivePeriod   [hour, hour + 1 h) in UTC
//   valueQuantity     the value in its UCUM unit
//   note              "Hourly value for postcode area <PC4> (<source>)"
// Thread-safety: pure function.
#pragma once

#include <string>
#include <string_view>

#include "telehub/environment/env_store.h"

namespace telehub::environment {

inline constexpr std::string_view kObservationCategorySystem = "https://telehub.example.org/fhir/CodeSystem/observation-category";
inline constexpr std::string_view kEnvironmentCodeSystem = "https://telehub.example.org/fhir/CodeSystem/environment";

std::string observation_id(const HourlyValue& v);
std::string observation_json(const HourlyValue& v, std::string_view patient_pseudonym);

}  // namespace telehub::environment
