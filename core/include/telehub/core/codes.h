// The measurement codes telehub knows: LOINC code, canonical UCUM unit and, where one exists,
// the IEEE 11073-10101 MDC reference id.
//
// Sources: LOINC (http://loinc.org), the FHIR R4 vital-signs profile
// (http://hl7.org/fhir/R4/observation-vitalsigns.html) for codes and units, UCUM
// (http://unitsofmeasure.org) for unit syntax, IEEE 11073-10101 for MDC codes.
// Units are case-sensitive UCUM codes ("mm[Hg]", "Cel", "/min").
//
// Thread-safety: the table is immutable static data.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace telehub::core {

inline constexpr std::string_view kLoincSystem = "http://loinc.org";
inline constexpr std::string_view kUcumSystem = "http://unitsofmeasure.org";
inline constexpr std::string_view kMdcSystem = "urn:iso:std:iso:11073:10101";
// telehub's own codes, for device measurements that have no LOINC code in the table below
// (docs/payloads.md, "Codes"): the perfusion index of a pulse oximeter, the irregular-heartbeat
// flag of a blood-pressure cuff.
inline constexpr std::string_view kTelehubCodeSystem = "https://telehub.example.org/fhir/CodeSystem/measurement";

struct CodeInfo {
  std::string_view loinc;         // "8867-4"
  std::string_view display;       // LOINC short name, used as Coding.display
  std::string_view ucum;          // canonical UCUM unit code; empty for panels
  std::string_view unit_display;  // human unit text ("beats/minute")
  std::optional<std::uint32_t> mdc;  // IEEE 11073 MDC reference id, when given
  bool vital_sign;                // category vital-signs (FHIR vital-signs profile)
  bool panel;                     // has components, no value of its own
  // Coding.system of `loinc` (despite the member's name, the code of a telehub code is not a
  // LOINC code).
  std::string_view system = kLoincSystem;
  // A yes/no flag stored as 1 or 0 with unit "1"; FHIR shows it as valueBoolean.
  bool boolean = false;
};

// Every code in the table, in a stable order.
std::span<const CodeInfo> all_codes();

// The entry for a LOINC code, or nullptr when telehub does not know it.
const CodeInfo* find_code(std::string_view loinc);

namespace loinc {
inline constexpr std::string_view kHeartRate = "8867-4";
inline constexpr std::string_view kSpO2 = "59408-5";          // SpO2 by pulse oximetry
inline constexpr std::string_view kSpO2Arterial = "2708-6";   // vital-signs profile code
inline constexpr std::string_view kRespiratoryRate = "9279-1";
inline constexpr std::string_view kBodyTemperature = "8310-5";
inline constexpr std::string_view kBodyWeight = "29463-7";
inline constexpr std::string_view kBloodPressurePanel = "85354-9";
inline constexpr std::string_view kSystolic = "8480-6";
inline constexpr std::string_view kDiastolic = "8462-4";
inline constexpr std::string_view kGlucoseMolar = "15074-8";
inline constexpr std::string_view kGlucoseMass = "2339-0";
inline constexpr std::string_view kStepsPerDay = "41950-7";
}  // namespace loinc

namespace telehub_code {
inline constexpr std::string_view kPerfusionIndex = "perfusion-index";           // %, pulse oximeter
inline constexpr std::string_view kIrregularHeartbeat = "irregular-heartbeat";   // flag, a component of 85354-9
}  // namespace telehub_code

}  // namespace telehub::core
