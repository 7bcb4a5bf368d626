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

struct ImportReport {
  std::int64_t rows = 0;       // data rows read
  std::int64_t values = 0;     // values stored (new or replacing)
  std::int64_t replaced = 0;   // of them, replacing a stored value
  std::int64_t refused = 0;    // rows (CSV) or cells (LML) refused
  std::vector<std::string> problems;  // the first 20: "line 7: ..."
  std::vector<std::string> areas;     // areas that got a value, sorted
  std::optional<core::TimePoint> first;  // earliest and latest hour stored
  std::optional<core::TimePoint> last;
};

struct Station {
  std::string id;  // e.g. "NL01485"
  std::string name;
  double lat = 0;
  double lon = 0;
};

struct AreaCentroid {
  std::string area;  // PC4
  double lat = 0;
  double lon = 0;
};

struct StationMapping {
  std::vector<Station> stations;
  std::vector<AreaCentroid> areas;
  double max_distance_km = 25;  // Default: 25
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

  // Imports a file in the telehub CSV format (docs/environment.md) in one transaction: the
  // values of the good rows are stored (a value already stored for the same area, component and
  // hour is replaced), rows that break a rule are refused and reported with their line number.
  // Fails with bad_env_file when the header is not the format's (nothing is stored).
  [[nodiscard]] virtual Result<ImportReport> import_csv(std::string_view text, std::string_view source) = 0;
  // Imports a file in the layout of the Dutch national air-quality open data (RIVM
  // Luchtmeetnet; docs/environment.md), mapping each station's values to the areas whose
  // nearest station measuring that component it is, within mapping.max_distance_km.
  // `utc_offset_hours`: the file's times that state no offset are local at this offset (RIVM
  // publishes UTC+1); a time with an offset ("+01:00", "Z") is read with its own.
  [[nodiscard]] virtual Result<ImportReport> import_lml(std::string_view text, const StationMapping& mapping,
                                                              std::string_view source, int utc_offset_hours) = 0;
};

// `station,name,lat,lon` and `area,lat,lon` CSV files (a header line, then one row each;
// WGS84 degrees). Fail with bad_env_file naming the line.
[[nodiscard]] Result<std::vector<Station>> parse_stations_csv(std::string_view text);
[[nodiscard]] Result<std::vector<AreaCentroid>> parse_areas_csv(std::string_view text);
// Great-circle distance in km (haversine, Earth radius 6371 km).
double distance_km(double lat1, double lon1, double lat2, double lon2);

}  // namespace telehub::environment
