// research::Study: what a study may take from the hub (docs/research.md, "Defining a study"),
// read from a JSON study definition file.
//
// The file is parsed strictly: an unknown member, a member of the wrong type or a value out of
// range is refused with invalid_argument/bad_study and a message naming the member
// ("variables[1].aggregation: must be raw, hourly or daily"), never quoting free text.
//
// Thread-safety: values; parse_study is a pure function.
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "telehub/core/error.h"
#include "telehub/core/time.h"
#include "telehub/environment/env_store.h"

namespace telehub::research {

enum class Aggregation { kRaw, kHourly, kDaily };
enum class DatesMode { kShift, kRelative };

// "raw", "hourly", "daily" / "shift", "relative".
std::string_view aggregation_name(Aggregation a);
std::string_view dates_mode_name(DatesMode d);

// A Condition code (FHIR Coding.system + code) that includes a subject when any of its
// Conditions in the clinical store carries it.
struct ConditionCode {
  std::string system;  // Default: "" (any system)
  std::string code;    // REQUIRES: non-empty
};

struct Variable {
  std::string code;                           // LOINC code as stored (a panel by its panel code)
  Aggregation aggregation = Aggregation::kRaw;  // Default: raw
};

struct QuasiIdentifiers {
  // Age at enrolment in bands of this many years (from the vault birth date); 0: no age column.
  // Default: 0. REQUIRES: 0..120.
  int age_band_years = 0;
  // Keep the administrative sex. Default: false.
  bool sex = false;
  // Region from the vault postcode: 0 (none), 2, 3 or 4 digits (PC2, PC3, PC4). Default: 0.
  int region_digits = 0;
};

struct Study {
  std::string id;             // REQUIRES: [A-Za-z0-9._-]{1,64}
  std::string title;          // Default: ""
  std::string consent_scope;  // "research" or "research:<id>". Default: "research:<id>"
  std::vector<ConditionCode> conditions;  // any one matches; empty: no condition criterion
  std::optional<core::TimePoint> enrolled_from;  // inclusive; a date means its 00:00 UTC
  std::optional<core::TimePoint> enrolled_to;    // exclusive; a date means the END of that day
  std::vector<Variable> variables;               // REQUIRES: at least one, codes distinct
  std::vector<environment::Component> environment;  // exposures joined. Default: none
  QuasiIdentifiers quasi_identifiers;
  std::size_t k = 5;                 // Default: 5 (controlled access); 11 for broad release
  double max_suppression = 0.05;     // Default: 0.05. REQUIRES: 0..1
  DatesMode dates = DatesMode::kShift;  // Default: shift
};

// The component's key ("pm25", ...) and UCUM unit, and the component of a key (nullopt when
// unknown). The research module's own table of the environment components of
// environment/env_store.h.
std::string_view exposure_key(environment::Component c);
std::string_view exposure_unit(environment::Component c);
std::optional<environment::Component> exposure_component(std::string_view key);

// Parses a study definition (the JSON document). Fails with invalid_argument/bad_study.
[[nodiscard]] Result<Study> parse_study(std::string_view json);
// Reads and parses a file. Also fails with not_found/no_study when it cannot be read.
[[nodiscard]] Result<Study> load_study(const std::filesystem::path& file);

}  // namespace telehub::research
