// telehub::environment: hourly air quality and weather per area (issue [8/8], docs/environment.md),
// in its own SQLite file (<data>/environment.db). Nothing in it is about a person.
//
// An area is a 4-digit Dutch postcode area (PC4, "1234"). Values come either per area (the
// telehub CSV format) or per measuring station (the layout of the Dutch national air-quality
// open data); a station is mapped to areas through the station list (coordinates) and the
// area centroids (docs/environment.md).
//
// Components and their units (UCUM): pm25, pm10, no2, o3 in ug/m3; temperature in Cel;
// humidity (relative) in %. Hours are UTC, aligned to the hour: a value for hour H covers
// [H, H+1h).
//
// Error policy: Result, never throws. Bad input: invalid_argument/bad_env_file with a message
// naming the file line, never a whole line. Database failures: reason env_io.
// Thread-safety: safe from several threads (one connection, serialised inside).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "telehub/core/error.h"
#include "telehub/core/time.h"

namespace telehub::environment {

enum class Component { kPm25, kPm10, kNo2, kO3, kTemperature, kHumidity };

struct ComponentInfo {
  Component component;
  std::string_view key;       // "pm25", "pm10", "no2", "o3", "temperature", "humidity"
  std::string_view unit;      // UCUM: "ug/m3", "Cel", "%"
  std::string_view display;   // "PM2.5 mass concentration in ambient air", ...
  std::string_view system;    // Coding.system of the FHIR Observation code (LOINC where one exists)
  std::string_view code;      // Coding.code
};

// Every component, in the order above.
std::span<const ComponentInfo> all_components();
const ComponentInfo& info(Component c);
// By key ("pm25"); nullptr when unknown.
const ComponentInfo* find_component(std::string_view key);

// "1234" from a Dutch postcode "1234 AB" / "1234AB" / "1234"; "" when it does not start with
// 4 digits (the first not 0).
std::string pc4_of_postcode(std::string_view postcode);

struct HourlyValue {
  std::string area;        // PC4
  Component component;
  core::TimePoint hour{};  // start of the hour, UTC
  double value = 0;
  std::string source;      // "csv:<file name>", "lml:<station id>", ...
};

class EnvStore {
 public:
  // Opens (creating when missing, mode 0600) the store file. Fails with unavailable/env_io.
  [[nodiscard]] static Result<std::unique_ptr<EnvStore>> open(const std::filesystem::path& path);
  virtual ~EnvStore() = default;

  // The values of one area over [from, to), ordered by hour, then component (the order of
  // all_components()). `components` empty: all.
  [[nodiscard]] virtual Result<std::vector<HourlyValue>> series(std::string_view area, core::TimePoint from,
                                                               core::TimePoint to,
                                                               std::span<const Component> components = {}) = 0;
  // One value, or nullopt when there is none for that area, component and hour (`hour` is
  // truncated to the hour).
  [[nodiscard]] virtual Result<std::optional<double>> value_at(std::string_view area, Component component,
                                                              core::TimePoint hour) = 0;
  // The areas that have at least one value, sorted.
  [[nodiscard]] virtual Result<std::vector<std::string>> areas() = 0;

  // (The import functions are declared by the implementation below this line.)
};

}  // namespace telehub::environment
