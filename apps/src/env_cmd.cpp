// `telehub env import|show`: hourly air quality and weather per postcode area
// (docs/environment.md) in <data>/environment.db. No personal data: no KEK needed.
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "args.h"
#include "commands.h"
#include "hub_files.h"
#include "telehub/environment/env_store.h"

namespace telehub::apps {
namespace {

constexpr const char* kEnvHelp = R"(usage: telehub env import FILE... [options]
       telehub env show --area PC4 [--from TIME] [--to TIME] [--data DIR]

import: loads hourly values per 4-digit postcode area (docs/environment.md). A value already
stored for the same area, component and hour is replaced. Rows that break a rule are refused
and listed with their line number (the good rows are stored); exit status 1 when any row of
any file was refused or a file could not be read.
  --format csv|lml     csv: the telehub format (area,time,pm25,...); lml: the layout of the
                       Dutch national air-quality open data (RIVM Luchtmeetnet), per station.
                       Default: csv
  --stations FILE      lml: the stations (station,name,lat,lon)
  --areas FILE         lml: the area centroids (area,lat,lon)
  --max-distance-km N  lml: an area takes its nearest station within N km. Default: 25
  --utc-offset H       lml: times without an offset are local at UTC+H. Default: 1 (as RIVM
                       publishes); a time that states its offset (+01:00, Z) is read with it
  --data DIR           data directory (default ./data)
show: prints the values of an area, one line per hour and component.
  --from, --to         RFC 3339 times; default: the last 7 days
)";

int usage(const std::string& message) {
  std::cerr << "telehub: " << message << "\n" << kEnvHelp;
  return 2;
}

std::optional<std::string> read_whole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::optional<int> whole_number(const std::string& text, int lo, int hi) {
  try {
    std::size_t used = 0;
    const int v = std::stoi(text, &used);
    if (used != text.size() || v < lo || v > hi) return std::nullopt;
    return v;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

int cmd_import_env(const Args& args) {
  if (args.words.empty()) return usage("env import needs at least one FILE");
  const std::string format = args.get("format", "csv");
  if (format != "csv" && format != "lml") return usage("--format must be csv or lml");
  environment::StationMapping mapping;
  int offset = 1;
  if (format == "lml") {
    if (args.get("stations").empty() || args.get("areas").empty()) return usage("--format lml needs --stations and --areas");
    auto stations_text = read_whole(args.get("stations"));
    if (!stations_text) return fail_with(core::make_error(core::Code::kNotFound, "no_file", "cannot read " + args.get("stations")));
    auto stations = environment::parse_stations_csv(*stations_text);
    if (!stations) return fail_with(core::make_error(stations.error().code, stations.error().reason, args.get("stations") + ": " + stations.error().message));
    auto areas_text = read_whole(args.get("areas"));
    if (!areas_text) return fail_with(core::make_error(core::Code::kNotFound, "no_file", "cannot read " + args.get("areas")));
    auto areas = environment::parse_areas_csv(*areas_text);
    if (!areas) return fail_with(core::make_error(areas.error().code, areas.error().reason, args.get("areas") + ": " + areas.error().message));
    mapping.stations = std::move(*stations);
    mapping.areas = std::move(*areas);
    if (args.has("max-distance-km")) {
      auto km = whole_number(args.get("max-distance-km"), 1, 1000);
      if (!km) return usage("--max-distance-km must be a whole number 1..1000");
      mapping.max_distance_km = *km;
    }
    if (args.has("utc-offset")) {
      auto h = whole_number(args.get("utc-offset"), -12, 14);
      if (!h) return usage("--utc-offset must be a whole number of hours, -12..14");
      offset = *h;
    }
  } else if (args.has("stations") || args.has("areas") || args.has("max-distance-km") || args.has("utc-offset")) {
    return usage("--stations, --areas, --max-distance-km and --utc-offset are for --format lml");
  }
  auto dir = open_data_dir(args.get("data", "data"));
  if (!dir) return fail_with(dir.error());
  auto store = environment::EnvStore::open(dir->environment_db());
  if (!store) return fail_with(store.error());
  int status = 0;
  for (const auto& file : args.words) {
    auto text = read_whole(file);
    if (!text) {
      std::cerr << "telehub: " << file << ": cannot read the file [no_file]\n";
      status = 1;
      continue;
    }
    const std::string name = std::filesystem::path(file).filename().string();
    auto report = format == "csv" ? (*store)->import_csv(*text, name) : (*store)->import_lml(*text, mapping, name, offset);
    if (!report) {
      std::cerr << "telehub: " << file << ": " << report.error().message << " [" << report.error().reason << "]\n";
      status = 1;
      continue;
    }
    std::cout << file << ": " << report->rows << " rows, " << report->values << " values stored (" << report->replaced
              << " replaced), " << report->areas.size() << " areas";
    if (report->first) std::cout << ", " << core::format_rfc3339(*report->first) << " .. " << core::format_rfc3339(*report->last);
    std::cout << ", " << report->refused << " refused\n";
    for (const auto& p : report->problems) std::cerr << "telehub: " << file << ": " << p << "\n";
    if (report->refused > static_cast<std::int64_t>(report->problems.size()))
      std::cerr << "telehub: " << file << ": ... and " << report->refused - static_cast<std::int64_t>(report->problems.size())
                << " more\n";
    if (report->refused > 0) status = 1;
  }
  return status;
}

int cmd_show_env(const Args& args) {
  if (!args.words.empty()) return usage("unexpected argument '" + args.words.front() + "'");
  const std::string area = args.get("area");
  if (area.empty()) return usage("env show needs --area PC4");
  const auto now = core::system_clock().now();
  core::TimePoint from = now - std::chrono::hours(24 * 7), to = now;
  if (args.has("from")) {
    auto t = core::parse_rfc3339(args.get("from"));
    if (!t) return usage("--from must be an RFC 3339 time");
    from = *t;
  }
  if (args.has("to")) {
    auto t = core::parse_rfc3339(args.get("to"));
    if (!t) return usage("--to must be an RFC 3339 time");
    to = *t;
  }
  auto dir = open_data_dir(args.get("data", "data"));
  if (!dir) return fail_with(dir.error());
  auto store = environment::EnvStore::open(dir->environment_db());
  if (!store) return fail_with(store.error());
  auto values = (*store)->series(area, from, to);
  if (!values) return fail_with(values.error());
  for (const auto& v : *values) {
    const auto& c = environment::info(v.component);
    std::cout << core::format_rfc3339(v.hour) << " " << c.key << " " << v.value << " " << c.unit << " (" << v.source << ")\n";
  }
  if (values->empty()) std::cout << "no values for area " << area << " in that period\n";
  return 0;
}

}  // namespace

int cmd_env(int argc, char** argv) {
  if (argc < 3 || std::string(argv[2]) == "--help" || std::string(argv[2]) == "help") {
    std::cout << kEnvHelp;
    return argc < 3 ? 2 : 0;
  }
  const std::string sub = argv[2];
  auto parsed = parse_args(argc, argv, 3, {"format", "stations", "areas", "max-distance-km", "utc-offset", "data", "area", "from", "to"},
                           {"help"});
  if (!parsed) return usage(parsed.error().message);
  if (parsed->has("help")) {
    std::cout << kEnvHelp;
    return 0;
  }
  if (sub == "import") {
    for (const char* o : {"area", "from", "to"})
      if (parsed->has(o)) return usage(std::string("--") + o + " is for env show");
    return cmd_import_env(*parsed);
  }
  if (sub == "show") return cmd_show_env(*parsed);
  return usage("unknown env command '" + sub + "' (import or show)");
}

}  // namespace telehub::apps
