#include "telehub/core/codes.h"

#include <array>

namespace telehub::core {
namespace {

// LOINC / UCUM / MDC as listed in issue [1/8] and the FHIR R4 vital-signs profile; the last two
// are telehub codes (kTelehubCodeSystem) for what issue [4/8]'s devices report beyond them.
constexpr std::array<CodeInfo, 14> kCodes{{
    {"8867-4", "Heart rate", "/min", "beats/minute", 149546u, true, false},
    {"59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", "%", 150456u, true, false},
    {"2708-6", "Oxygen saturation in Arterial blood", "%", "%", 150456u, true, false},
    {"9279-1", "Respiratory rate", "/min", "breaths/minute", 151562u, true, false},
    {"8310-5", "Body temperature", "Cel", "C", 150364u, true, false},
    {"29463-7", "Body weight", "kg", "kg", 188736u, true, false},
    {"85354-9", "Blood pressure panel with all children optional", "", "", 150020u, true, true},
    {"8480-6", "Systolic blood pressure", "mm[Hg]", "mmHg", 150021u, true, false},
    {"8462-4", "Diastolic blood pressure", "mm[Hg]", "mmHg", 150022u, true, false},
    {"15074-8", "Glucose [Moles/volume] in Blood", "mmol/L", "mmol/L", std::nullopt, false, false},
    {"2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", "mg/dL", std::nullopt, false, false},
    {"41950-7", "Number of steps in 24 hour Measured", "/d", "steps/day", std::nullopt, false, false},
    {"perfusion-index", "Perfusion index by pulse oximetry", "%", "%", std::nullopt, false, false, kTelehubCodeSystem},
    {"irregular-heartbeat", "Irregular heartbeat detected during the measurement", "1", "", std::nullopt, false, false,
     kTelehubCodeSystem, true},
}};

}  // namespace

std::span<const CodeInfo> all_codes() { return kCodes; }

const CodeInfo* find_code(std::string_view loinc) {
  for (const auto& c : kCodes)
    if (c.loinc == loinc) return &c;
  return nullptr;
}

}  // namespace telehub::core
