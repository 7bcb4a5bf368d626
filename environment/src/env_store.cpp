// The environment store (env_store.h): one SQLite file, table `env` keyed (area, component,
// hour), WITHOUT ROWID so a series of an area is stored in order.
//
//   env(area TEXT, component INTEGER, hour_ms INTEGER, value REAL, source TEXT,
//       PRIMARY KEY (area, component, hour_ms)) WITHOUT ROWID
//
// component is the index in all_components(); hour_ms the Unix milliseconds of the hour start.
#include "telehub/environment/env_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <functional>
#include <map>
#include <mutex>
#include <set>

#include "telehub/sqlite/sqlite.h"

namespace telehub::environment {

namespace {

using core::Code;

constexpr std::int64_t kHourMs = 3'600'000;

// LOINC has no code for these ambient (outdoor) air and weather measurements that we could
// confirm, so they are coded in telehub's own CodeSystem (docs/environment.md).
constexpr std::array<ComponentInfo, 6> kComponents = {{
    {Component::kPm25, "pm25", "ug/m3", "PM2.5 mass concentration in ambient air",
     "https://telehub.example.org/fhir/CodeSystem/environment", "pm25"},
    {Component::kPm10, "pm10", "ug/m3", "PM10 mass concentration in ambient air",
     "https://telehub.example.org/fhir/CodeSystem/environment", "pm10"},
    {Component::kNo2, "no2", "ug/m3", "Nitrogen dioxide (NO2) mass concentration in ambient air",
     "https://telehub.example.org/fhir/CodeSystem/environment", "no2"},
    {Component::kO3, "o3", "ug/m3", "Ozone (O3) mass concentration in ambient air",
     "https://telehub.example.org/fhir/CodeSystem/environment", "o3"},
    {Component::kTemperature, "temperature", "Cel", "Outdoor air temperature",
     "https://telehub.example.org/fhir/CodeSystem/environment", "temperature"},
    {Component::kHumidity, "humidity", "%", "Outdoor relative humidity",
     "https://telehub.example.org/fhir/CodeSystem/environment", "humidity"},
}};

constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS env("
    " area TEXT NOT NULL, component INTEGER NOT NULL, hour_ms INTEGER NOT NULL, value REAL NOT NULL,"
    " source TEXT NOT NULL, PRIMARY KEY (area, component, hour_ms)) WITHOUT ROWID;";
constexpr const char* kUpsert =
    "INSERT INTO env(area, component, hour_ms, value, source) VALUES (?1, ?2, ?3, ?4, ?5)"
    " ON CONFLICT(area, component, hour_ms) DO UPDATE SET value = excluded.value, source = excluded.source";
constexpr const char* kExists = "SELECT 1 FROM env WHERE area = ?1 AND component = ?2 AND hour_ms = ?3";
constexpr const char* kSeries =
    "SELECT component, hour_ms, value, source FROM env WHERE area = ?1 AND hour_ms >= ?2 AND hour_ms < ?3"
    " ORDER BY hour_ms, component";
constexpr const char* kValueAt = "SELECT value FROM env WHERE area = ?1 AND component = ?2 AND hour_ms = ?3";
constexpr const char* kAreas = "SELECT DISTINCT area FROM env ORDER BY area";

core::Error io_error(const core::Error& e) {
  core::Error out = e;
  out.reason = "env_io";
  return out;
}

core::Error bad_file(std::string message) { return core::make_error(Code::kInvalidArgument, "bad_env_file", std::move(message)); }

std::int64_t hour_floor(std::int64_t ms) { return ms >= 0 ? ms / kHourMs * kHourMs : -((-ms + kHourMs - 1) / kHourMs) * kHourMs; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '"')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '"')) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split(std::string_view line, char sep) {
  std::vector<std::string_view> out;
  for (std::size_t b = 0;;) {
    const auto e = line.find(sep, b);
    out.push_back(trim(line.substr(b, e == std::string_view::npos ? std::string_view::npos : e - b)));
    if (e == std::string_view::npos) break;
    b = e + 1;
  }
  return out;
}

// Lines with their 1-based numbers; a UTF-8 byte order mark is skipped.
std::vector<std::pair<int, std::string_view>> lines_of(std::string_view text) {
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  std::vector<std::pair<int, std::string_view>> out;
  int n = 0;
  for (std::size_t b = 0; b < text.size();) {
    auto e = text.find('\n', b);
    if (e == std::string_view::npos) e = text.size();
    ++n;
    std::string_view line = text.substr(b, e - b);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    out.emplace_back(n, line);
    b = e + 1;
  }
  return out;
}

// A decimal number, with '.' or (LML) ',' as the decimal separator.
std::optional<double> number(std::string_view text, bool comma_ok) {
  std::string s(text);
  if (comma_ok) std::replace(s.begin(), s.end(), ',', '.');
  double v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

bool valid_area(std::string_view a) {
  return a.size() == 4 && a[0] >= '1' && a[0] <= '9' && std::all_of(a.begin(), a.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Why a value is implausible for its component, or "" when it is fine.
std::string out_of_range(Component c, double v) {
  switch (c) {
    case Component::kTemperature: return v < -60 || v > 60 ? "temperature outside -60..60 Cel" : "";
    case Component::kHumidity: return v < 0 || v > 100 ? "humidity outside 0..100 %" : "";
    default: return v < 0 ? "a negative concentration" : "";
  }
}

// A Begindatumtijd: "YYYYMMDD HH:MM" (RIVM) or "YYYY-MM-DD HH:MM[:SS]" (a 'T' instead of the
// space is accepted), optionally followed by "Z" or an offset "+HH:MM" / "-HH:MM" (RFC 3339
// section 5.6). `wall_ms`: that wall-clock time read as UTC; `offset_minutes`: the offset the
// text states, when it states one. The caller checks that the time is the start of a UTC hour.
struct LmlTime {
  std::int64_t wall_ms = 0;
  std::optional<int> offset_minutes;
};

std::optional<LmlTime> lml_time(std::string_view t) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  auto digits = [](std::string_view text, int& out) {
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return !text.empty() && text.front() != '-' && text.front() != '+' && ec == std::errc() && end == text.data() + text.size();
  };
  std::string_view rest;
  if (t.size() >= 14 && t[8] == ' ' && t[11] == ':') {
    if (!digits(t.substr(0, 4), y) || !digits(t.substr(4, 2), mo) || !digits(t.substr(6, 2), d) || !digits(t.substr(9, 2), h) ||
        !digits(t.substr(12, 2), mi))
      return std::nullopt;
    rest = t.substr(14);
  } else if (t.size() >= 16 && t[4] == '-' && t[7] == '-' && (t[10] == ' ' || t[10] == 'T') && t[13] == ':') {
    if (!digits(t.substr(0, 4), y) || !digits(t.substr(5, 2), mo) || !digits(t.substr(8, 2), d) || !digits(t.substr(11, 2), h) ||
        !digits(t.substr(14, 2), mi))
      return std::nullopt;
    rest = t.substr(16);
    if (rest.size() >= 3 && rest[0] == ':') {
      if (!digits(rest.substr(1, 2), s)) return std::nullopt;
      rest.remove_prefix(3);
    }
  } else {
    return std::nullopt;
  }
  LmlTime out;
  if (rest == "Z") {
    out.offset_minutes = 0;
  } else if (rest.size() == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':') {
    int oh = 0, om = 0;
    if (!digits(rest.substr(1, 2), oh) || !digits(rest.substr(4, 2), om) || oh > 14 || om > 59) return std::nullopt;
    out.offset_minutes = (rest[0] == '-' ? -1 : 1) * (oh * 60 + om);
  } else if (!rest.empty()) {
    return std::nullopt;
  }
  using namespace std::chrono;
  const year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
  if (!ymd.ok() || h < 0 || h > 24 || mi < 0 || mi > 59 || s != 0) return std::nullopt;
  out.wall_ms = (sys_days{ymd}.time_since_epoch().count() * 24LL + h) * kHourMs + mi * 60'000LL;
  return out;
}

std::optional<Component> lml_component(std::string_view name) {
  std::string n;
  for (char c : name)
    if (c != '.' && c != ' ' && c != '_') n += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (n == "PM25") return Component::kPm25;
  if (n == "PM10") return Component::kPm10;
  if (n == "NO2") return Component::kNo2;
  if (n == "O3") return Component::kO3;
  return std::nullopt;
}

class Report {
 public:
  void problem(int line, const std::string& what) {
    ++report.refused;
    if (report.problems.size() < 20) report.problems.push_back("line " + std::to_string(line) + ": " + what);
  }
  void stored(const std::string& area, std::int64_t hour_ms, bool replaced) {
    ++report.values;
    if (replaced) ++report.replaced;
    areas.insert(area);
    const auto t = core::from_unix_millis(hour_ms);
    if (!report.first || t < *report.first) report.first = t;
    if (!report.last || t > *report.last) report.last = t;
  }
  ImportReport finish() {
    report.areas.assign(areas.begin(), areas.end());
    return std::move(report);
  }
  ImportReport report;
  std::set<std::string> areas;
};

class SqliteEnvStore final : public EnvStore {
 public:
  explicit SqliteEnvStore(sqlite::Database db) : db_(std::move(db)) {}

  Result<std::vector<HourlyValue>> series(std::string_view area, core::TimePoint from, core::TimePoint to,
                                          std::span<const Component> components) override {
    std::lock_guard lock(mu_);
    auto st = db_.prepare(kSeries);
    if (!st) return tl::unexpected(io_error(st.error()));
    st->bind(1, area).bind(2, core::to_unix_millis(from)).bind(3, core::to_unix_millis(to));
    std::vector<HourlyValue> out;
    for (;;) {
      auto row = st->step();
      if (!row) return tl::unexpected(io_error(row.error()));
      if (!*row) break;
      const auto index = st->column_int64(0);
      if (index < 0 || index >= static_cast<std::int64_t>(kComponents.size())) continue;
      const Component c = kComponents[static_cast<std::size_t>(index)].component;
      if (!components.empty() && std::find(components.begin(), components.end(), c) == components.end()) continue;
      out.push_back({std::string(area), c, core::from_unix_millis(st->column_int64(1)), st->column_double(2), st->column_text(3)});
    }
    return out;
  }

  Result<std::optional<double>> value_at(std::string_view area, Component component, core::TimePoint hour) override {
    std::lock_guard lock(mu_);
    auto st = db_.prepare(kValueAt);
    if (!st) return tl::unexpected(io_error(st.error()));
    st->bind(1, area).bind(2, static_cast<std::int64_t>(component)).bind(3, hour_floor(core::to_unix_millis(hour)));
    auto row = st->step();
    if (!row) return tl::unexpected(io_error(row.error()));
    if (!*row) return std::optional<double>();
    return std::optional<double>(st->column_double(0));
  }

  Result<std::vector<std::string>> areas() override {
    std::lock_guard lock(mu_);
    auto st = db_.prepare(kAreas);
    if (!st) return tl::unexpected(io_error(st.error()));
    std::vector<std::string> out;
    for (;;) {
      auto row = st->step();
      if (!row) return tl::unexpected(io_error(row.error()));
      if (!*row) break;
      out.push_back(st->column_text(0));
    }
    return out;
  }

  Result<ImportReport> import_csv(std::string_view text, std::string_view source) override {
    const auto lines = lines_of(text);
    std::size_t h = 0;
    while (h < lines.size() && trim(lines[h].second).empty()) ++h;
    if (h == lines.size()) return tl::unexpected(bad_file("the file is empty (expected the header area,time,...)"));
    const auto header = split(lines[h].second, ',');
    int area_col = -1, time_col = -1;
    std::vector<std::pair<int, Component>> value_cols;
    for (std::size_t i = 0; i < header.size(); ++i) {
      const auto name = header[i];
      if (name == "area") area_col = static_cast<int>(i);
      else if (name == "time") time_col = static_cast<int>(i);
      else if (const auto* c = find_component(name)) {
        for (const auto& [col, comp] : value_cols)
          if (comp == c->component) return tl::unexpected(bad_file("line " + std::to_string(lines[h].first) + ": column " + std::string(name) + " twice"));
        value_cols.emplace_back(static_cast<int>(i), c->component);
      } else {
        return tl::unexpected(bad_file("line " + std::to_string(lines[h].first) + ": unknown column (expected area, time, pm25, pm10, no2, o3, temperature, humidity)"));
      }
    }
    if (area_col < 0 || time_col < 0 || value_cols.empty())
      return tl::unexpected(bad_file("line " + std::to_string(lines[h].first) + ": the header needs area, time and at least one component"));
    Report report;
    std::lock_guard lock(mu_);
    return in_transaction(report, [&]() -> Status {
      for (std::size_t i = h + 1; i < lines.size(); ++i) {
        const auto& [n, line] = lines[i];
        if (trim(line).empty()) continue;
        ++report.report.rows;
        const auto cells = split(line, ',');
        if (cells.size() != header.size()) {
          report.problem(n, "expected " + std::to_string(header.size()) + " fields, found " + std::to_string(cells.size()));
          continue;
        }
        const std::string area(cells[static_cast<std::size_t>(area_col)]);
        if (!valid_area(area)) {
          report.problem(n, "area must be a 4-digit postcode area (first digit not 0)");
          continue;
        }
        const auto t = core::parse_rfc3339(cells[static_cast<std::size_t>(time_col)]);
        const auto time_text = cells[static_cast<std::size_t>(time_col)];
        if (!t || !(time_text.ends_with("Z") || time_text.ends_with("+00:00"))) {
          report.problem(n, "time must be an RFC 3339 UTC time (ending in Z)");
          continue;
        }
        const auto ms = core::to_unix_millis(*t);
        if (ms % kHourMs != 0) {
          report.problem(n, "time must be the start of an hour");
          continue;
        }
        // Check every value of the row first: a row is stored whole or not at all.
        std::vector<std::pair<Component, double>> values;
        std::string why;
        for (const auto& [col, comp] : value_cols) {
          const auto cell = cells[static_cast<std::size_t>(col)];
          if (cell.empty()) continue;
          const auto v = number(cell, false);
          if (!v) {
            why = std::string(info(comp).key) + " is not a number";
            break;
          }
          if (auto r = out_of_range(comp, *v); !r.empty()) {
            why = r;
            break;
          }
          values.emplace_back(comp, *v);
        }
        if (!why.empty()) {
          report.problem(n, why);
          continue;
        }
        for (const auto& [comp, v] : values)
          if (auto s = put(report, area, comp, ms, v, "csv:" + std::string(source)); !s) return s;
      }
      return {};
    });
  }

  Result<ImportReport> import_lml(std::string_view text, const StationMapping& mapping, std::string_view source,
                                  int utc_offset_hours) override {
    if (utc_offset_hours < -12 || utc_offset_hours > 14) return tl::unexpected(bad_file("the UTC offset must be -12..14 hours"));
    const auto lines = lines_of(text);
    // The header: the first line with a Begindatumtijd field; lines before it are metadata.
    std::size_t h = 0;
    int begin_col = -1, component_col = -1;
    std::vector<std::string_view> header;
    for (; h < lines.size(); ++h) {
      header = split(lines[h].second, ';');
      for (std::size_t i = 0; i < header.size(); ++i) {
        if (header[i] == "Begindatumtijd") begin_col = static_cast<int>(i);
        if (header[i] == "Component") component_col = static_cast<int>(i);
      }
      if (begin_col >= 0) break;
      component_col = -1;
    }
    if (begin_col < 0) return tl::unexpected(bad_file("no header line with Begindatumtijd (the layout of the RIVM air-quality open data)"));
    // Station columns: after Einddatumtijd (or Begindatumtijd), names like NL01485.
    std::size_t first_station = static_cast<std::size_t>(begin_col) + 1;
    if (first_station < header.size() && header[first_station] == "Einddatumtijd") ++first_station;
    // The component: a "Component" column, else a metadata line "Component;NO2;...".
    std::optional<Component> file_component;
    if (component_col < 0)
      for (std::size_t i = 0; i < h; ++i) {
        const auto meta = split(lines[i].second, ';');
        if (meta.size() >= 2 && meta[0] == "Component") file_component = lml_component(meta[1]);
      }
    // Each area's station: the nearest station of this file within the distance. A station
    // may have more than one column (RIVM splits a station's series when its instrument was
    // replaced); a row takes the first of them that has a measurement.
    std::map<std::string, std::vector<std::size_t>> station_cols;  // station id -> columns
    for (std::size_t i = first_station; i < header.size(); ++i)
      if (!header[i].empty()) station_cols[std::string(header[i])].push_back(i);
    std::map<std::string, std::vector<std::string>> areas_of_station;
    for (const auto& a : mapping.areas) {
      const Station* best = nullptr;
      double best_km = mapping.max_distance_km;
      for (const auto& s : mapping.stations) {
        if (!station_cols.count(s.id)) continue;
        const double km = distance_km(a.lat, a.lon, s.lat, s.lon);
        if (km <= best_km) {
          best_km = km;
          best = &s;
        }
      }
      if (best) areas_of_station[best->id].push_back(a.area);
    }
    Report report;
    std::lock_guard lock(mu_);
    return in_transaction(report, [&]() -> Status {
      for (std::size_t i = h + 1; i < lines.size(); ++i) {
        const auto& [n, line] = lines[i];
        if (trim(line).empty()) continue;
        const auto cells = split(line, ';');
        ++report.report.rows;
        if (cells.size() < header.size()) {
          report.problem(n, "expected " + std::to_string(header.size()) + " fields, found " + std::to_string(cells.size()));
          continue;
        }
        std::optional<Component> comp = file_component;
        if (component_col >= 0) comp = lml_component(cells[static_cast<std::size_t>(component_col)]);
        if (!comp) {
          report.problem(n, "unknown component (PM25, PM10, NO2 or O3)");
          continue;
        }
        const auto local = lml_time(cells[static_cast<std::size_t>(begin_col)]);
        if (!local) {
          report.problem(n, "Begindatumtijd must be YYYYMMDD HH:MM (or YYYY-MM-DD HH:MM[:SS][offset]) at the start of an hour");
          continue;
        }
        // A time that states its offset is read with it; otherwise it is local at the file's offset.
        const std::int64_t offset_minutes = local->offset_minutes ? *local->offset_minutes : utc_offset_hours * 60;
        const std::int64_t ms = local->wall_ms - offset_minutes * 60'000;
        if (ms % kHourMs != 0) {
          report.problem(n, "Begindatumtijd is not at the start of a UTC hour");
          continue;
        }
        for (const auto& [station, areas] : areas_of_station) {
          std::string_view cell;
          for (const auto col : station_cols.at(station)) {
            const auto c = cells[col];
            if (c.empty() || c == "-999" || c == "NaN") continue;  // no measurement
            cell = c;
            break;
          }
          if (cell.empty()) continue;
          const auto v = number(cell, true);
          if (!v || !out_of_range(*comp, *v).empty()) {
            report.problem(n, "station " + station + ": not a valid concentration");
            continue;
          }
          for (const auto& area : areas)
            if (auto s = put(report, area, *comp, ms, *v, "lml:" + station + ":" + std::string(source)); !s) return s;
        }
      }
      return {};
    });
  }

 private:
  // Runs `body` in one write transaction; rolls back on failure.
  Result<ImportReport> in_transaction(Report& report, const std::function<Status()>& body) {
    if (auto s = db_.exec("BEGIN IMMEDIATE"); !s) return tl::unexpected(io_error(s.error()));
    auto s = body();
    if (!s) {
      (void)db_.exec("ROLLBACK");
      return tl::unexpected(s.error());
    }
    if (auto c = db_.exec("COMMIT"); !c) {
      (void)db_.exec("ROLLBACK");
      return tl::unexpected(io_error(c.error()));
    }
    return report.finish();
  }

  Status put(Report& report, const std::string& area, Component c, std::int64_t hour_ms, double value, const std::string& source) {
    auto exists = db_.prepare(kExists);
    if (!exists) return tl::unexpected(io_error(exists.error()));
    exists->bind(1, area).bind(2, static_cast<std::int64_t>(c)).bind(3, hour_ms);
    auto row = exists->step();
    if (!row) return tl::unexpected(io_error(row.error()));
    const bool replaced = *row;
    auto st = db_.prepare(kUpsert);
    if (!st) return tl::unexpected(io_error(st.error()));
    st->bind(1, area).bind(2, static_cast<std::int64_t>(c)).bind(3, hour_ms).bind(4, value).bind(5, source);
    if (auto s = st->run(); !s) return tl::unexpected(io_error(s.error()));
    report.stored(area, hour_ms, replaced);
    return {};
  }

  std::mutex mu_;
  sqlite::Database db_;
};

}  // namespace

std::span<const ComponentInfo> all_components() { return kComponents; }

const ComponentInfo& info(Component c) { return kComponents[static_cast<std::size_t>(c)]; }

const ComponentInfo* find_component(std::string_view key) {
  for (const auto& c : kComponents)
    if (c.key == key) return &c;
  return nullptr;
}

std::string pc4_of_postcode(std::string_view postcode) {
  while (!postcode.empty() && postcode.front() == ' ') postcode.remove_prefix(1);
  if (postcode.size() < 4) return "";
  const auto pc4 = postcode.substr(0, 4);
  if (!valid_area(pc4)) return "";
  if (postcode.size() > 4 && postcode[4] >= '0' && postcode[4] <= '9') return "";  // 5 digits: not a Dutch postcode
  return std::string(pc4);
}

double distance_km(double lat1, double lon1, double lat2, double lon2) {
  constexpr double kPi = 3.14159265358979323846;
  const double rad = kPi / 180;
  const double dlat = (lat2 - lat1) * rad, dlon = (lon2 - lon1) * rad;
  const double a = std::sin(dlat / 2) * std::sin(dlat / 2) +
                   std::cos(lat1 * rad) * std::cos(lat2 * rad) * std::sin(dlon / 2) * std::sin(dlon / 2);
  return 2 * 6371.0 * std::asin(std::min(1.0, std::sqrt(a)));
}

namespace {

template <class T>
Result<std::vector<T>> parse_points(std::string_view text, std::string_view expected_header,
                                    const std::function<std::optional<T>(const std::vector<std::string_view>&)>& row) {
  const auto lines = lines_of(text);
  std::vector<T> out;
  bool header = false;
  for (const auto& [n, line] : lines) {
    if (trim(line).empty()) continue;
    if (!header) {
      if (trim(line) != expected_header)
        return tl::unexpected(bad_file("line " + std::to_string(n) + ": the header must be " + std::string(expected_header)));
      header = true;
      continue;
    }
    auto item = row(split(line, ','));
    if (!item) return tl::unexpected(bad_file("line " + std::to_string(n) + ": expected " + std::string(expected_header) +
                                              " with latitude -90..90 and longitude -180..180"));
    out.push_back(std::move(*item));
  }
  if (!header) return tl::unexpected(bad_file("the file is empty (expected the header " + std::string(expected_header) + ")"));
  return out;
}

bool lat_lon(std::string_view la, std::string_view lo, double& lat, double& lon) {
  const auto a = number(la, false), b = number(lo, false);
  if (!a || !b || *a < -90 || *a > 90 || *b < -180 || *b > 180) return false;
  lat = *a;
  lon = *b;
  return true;
}

}  // namespace

Result<std::vector<Station>> parse_stations_csv(std::string_view text) {
  return parse_points<Station>(text, "station,name,lat,lon", [](const std::vector<std::string_view>& c) -> std::optional<Station> {
    Station s;
    if (c.size() != 4 || c[0].empty() || !lat_lon(c[2], c[3], s.lat, s.lon)) return std::nullopt;
    s.id = std::string(c[0]);
    s.name = std::string(c[1]);
    return s;
  });
}

Result<std::vector<AreaCentroid>> parse_areas_csv(std::string_view text) {
  return parse_points<AreaCentroid>(text, "area,lat,lon", [](const std::vector<std::string_view>& c) -> std::optional<AreaCentroid> {
    AreaCentroid a;
    if (c.size() != 3 || !valid_area(c[0]) || !lat_lon(c[1], c[2], a.lat, a.lon)) return std::nullopt;
    a.area = std::string(c[0]);
    return a;
  });
}

Result<std::unique_ptr<EnvStore>> EnvStore::open(const std::filesystem::path& path) {
  std::error_code ec;
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return core::fail(Code::kUnavailable, "env_io", "cannot create the environment store file");
  ::close(fd);
  auto db = sqlite::Database::open(path);
  if (!db) return tl::unexpected(io_error(db.error()));
  if (auto s = db->exec(kSchema); !s) return tl::unexpected(io_error(s.error()));
  return std::unique_ptr<EnvStore>(new SqliteEnvStore(std::move(*db)));
}

}  // namespace telehub::environment
