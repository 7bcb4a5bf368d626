// The environment store (environment/include/telehub/environment/env_store.h) on real SQLite
// files: both import formats, station-to-area mapping, replacement, refused rows with their
// line numbers, the queries, and the dossier Observation through fhir-validate.
#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

#include "telehub/environment/env_store.h"
#include "telehub/environment/fhir_observation.h"
#include "test_support.h"

using namespace telehub;
using environment::Component;

namespace {

core::TimePoint t(std::string_view text) { return *core::parse_rfc3339(text); }

std::unique_ptr<environment::EnvStore> open(const testing::TempDir& dir) {
  auto s = environment::EnvStore::open(dir.path() / "environment.db");
  REQUIRE(s);
  return std::move(*s);
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE("env: the telehub CSV imports, replaces on re-import and refuses bad rows by line", "[environment]") {
  testing::TempDir dir;
  auto store = open(dir);
  // The store file is the owner's only (mode 0600), even though it holds nothing personal.
  namespace fs = std::filesystem;
  CHECK((fs::status(dir.path() / "environment.db").permissions() & (fs::perms::group_all | fs::perms::others_all)) == fs::perms::none);
  const std::string csv =
      "area,time,no2,pm25,temperature\n"
      "3511,2026-03-01T13:00:00Z,21.5,8,7.5\n"
      "3511,2026-03-01T14:00:00Z,,9,7.9\n"       // no2 empty: not stored
      "3511,2026-03-01T14:30:00Z,1,1,1\n"        // line 4: not on the hour
      "0511,2026-03-01T13:00:00Z,1,1,1\n"        // line 5: bad area
      "3512,2026-03-01T13:00:00+01:00,1,1,1\n"   // line 6: not UTC
      "3512,2026-03-01T13:00:00Z,-1,1,1\n"       // line 7: negative concentration
      "3512,2026-03-01T13:00:00Z,1,1,99\n"       // line 8: temperature out of range
      "3512,2026-03-01T13:00:00Z,1,x,1\n"        // line 9: not a number
      "3512,2026-03-01T13:00:00Z,1,1\n"          // line 10: too few fields
      "3512,2026-03-01T15:00:00Z,30,12,6\n";
  auto report = store->import_csv(csv, "test.csv");
  REQUIRE(report);
  CHECK(report->rows == 10);
  CHECK(report->values == 3 + 2 + 3);
  CHECK(report->replaced == 0);
  CHECK(report->refused == 7);
  REQUIRE(report->problems.size() == 7);
  CHECK(report->problems[0].starts_with("line 4: "));
  CHECK(report->problems[1].starts_with("line 5: "));
  CHECK(report->problems[6].starts_with("line 10: "));
  CHECK(report->areas == std::vector<std::string>{"3511", "3512"});
  CHECK(*report->first == t("2026-03-01T13:00:00Z"));
  CHECK(*report->last == t("2026-03-01T15:00:00Z"));

  // Queries: by hour then component, value_at truncates to the hour, areas sorted.
  auto series = store->series("3511", t("2026-03-01T00:00:00Z"), t("2026-03-02T00:00:00Z"));
  REQUIRE(series);
  REQUIRE(series->size() == 5);
  CHECK((*series)[0].component == Component::kPm25);  // all_components() order: pm25 before no2
  CHECK((*series)[1].component == Component::kNo2);
  CHECK((*series)[1].value == 21.5);
  CHECK((*series)[3].hour == t("2026-03-01T14:00:00Z"));
  CHECK((*series)[0].source == "csv:test.csv");
  const Component only[] = {Component::kTemperature};
  CHECK(store->series("3511", t("2026-03-01T00:00:00Z"), t("2026-03-02T00:00:00Z"), only)->size() == 2);
  CHECK(store->value_at("3511", Component::kNo2, t("2026-03-01T13:59:59Z"))->value() == 21.5);
  CHECK_FALSE(store->value_at("3511", Component::kNo2, t("2026-03-01T14:00:00Z"))->has_value());
  CHECK_FALSE(store->value_at("9999", Component::kNo2, t("2026-03-01T13:00:00Z"))->has_value());
  CHECK(store->areas().value() == std::vector<std::string>{"3511", "3512"});

  // Re-import: the same values replace, nothing is added.
  auto again = store->import_csv("area,time,no2\n3511,2026-03-01T13:00:00Z,22\n", "fix.csv");
  REQUIRE(again);
  CHECK(again->replaced == 1);
  CHECK(store->value_at("3511", Component::kNo2, t("2026-03-01T13:00:00Z"))->value() == 22);
  CHECK(store->series("3511", t("2026-03-01T00:00:00Z"), t("2026-03-02T00:00:00Z"))->size() == 5);

  // A bad header refuses the whole file; what is stored stays.
  for (const char* bad : {"", "area,time\n", "area,pm25\n3511,1\n", "area,time,smog\n", "area,time,no2,no2\n"}) {
    INFO(bad);
    auto r = store->import_csv(bad, "bad.csv");
    REQUIRE_FALSE(r);
    CHECK(r.error().reason == "bad_env_file");
  }
  CHECK(store->value_at("3511", Component::kNo2, t("2026-03-01T13:00:00Z"))->value() == 22);

  // Reopening keeps everything.
  store.reset();
  store = open(dir);
  CHECK(store->value_at("3512", Component::kPm25, t("2026-03-01T15:00:00Z"))->value() == 12);
}

TEST_CASE("env: the RIVM layout maps each area to its nearest station within the distance, times from UTC+1", "[environment]") {
  testing::TempDir dir;
  auto store = open(dir);
  auto stations = environment::parse_stations_csv(
      "station,name,lat,lon\nNL1,North,52.20,5.10\nNL2,South,52.00,5.10\nNL3,Not in the file,52.11,5.10\n");
  REQUIRE(stations);
  auto areas = environment::parse_areas_csv("area,lat,lon\n3500,52.18,5.10\n3501,52.02,5.10\n3502,52.11,5.10\n9999,53.50,7.00\n");
  REQUIRE(areas);
  environment::StationMapping mapping{*stations, *areas, 25};
  const std::string file =
      "Some title line;;\n"
      "Component;Bep.periode;Eenheid;Begindatumtijd;Einddatumtijd;NL1;NL2\n"
      "NO2;Uur;ug/m3;20260301 14:00;20260301 15:00;10,5;20\n"
      "NO2;Uur;ug/m3;20260301 15:00;20260301 16:00;;-999\n"
      "NO2;Uur;ug/m3;20260301 16:00;20260301 17:00;abc;21\n"   // line 5: NL1 refused, NL2 stored
      "PM10;Uur;ug/m3;2026030 17:00;20260301 18:00;1;2\n"      // line 6: bad time
      "SO2;Uur;ug/m3;20260301 17:00;20260301 18:00;1;2\n";     // line 7: not a component we keep
  auto report = store->import_lml(file, mapping, "lml.csv", 1);
  REQUIRE(report);
  // 3500 -> NL1 (2 km), 3501 -> NL2 (2 km), 3502 -> NL1 (10 km; NL3 is nearer but not in the
  // file), 9999 -> none within 25 km.
  CHECK(store->value_at("3500", Component::kNo2, t("2026-03-01T13:00:00Z"))->value() == 10.5);
  CHECK(store->value_at("3502", Component::kNo2, t("2026-03-01T13:00:00Z"))->value() == 10.5);
  CHECK(store->value_at("3501", Component::kNo2, t("2026-03-01T13:00:00Z"))->value() == 20);
  CHECK_FALSE(store->value_at("3501", Component::kNo2, t("2026-03-01T14:00:00Z"))->has_value());  // -999
  CHECK(store->value_at("3501", Component::kNo2, t("2026-03-01T15:00:00Z"))->value() == 21);
  CHECK_FALSE(store->value_at("3500", Component::kNo2, t("2026-03-01T15:00:00Z"))->has_value());
  CHECK(store->areas().value() == std::vector<std::string>{"3500", "3501", "3502"});
  CHECK(report->refused == 3);
  REQUIRE(report->problems.size() == 3);
  CHECK(report->problems[0].starts_with("line 5: station NL1"));
  CHECK(report->problems[1].starts_with("line 6: "));
  CHECK(report->problems[2].starts_with("line 7: "));
  CHECK(store->series("3500", t("2026-03-01T00:00:00Z"), t("2026-03-02T00:00:00Z"))->front().source == "lml:NL1:lml.csv");

  // A smaller distance leaves 3502 without a station.
  testing::TempDir dir2;
  auto near = open(dir2);
  mapping.max_distance_km = 5;
  REQUIRE(near->import_lml(file, mapping, "lml.csv", 1));
  CHECK_FALSE(near->value_at("3502", Component::kNo2, t("2026-03-01T13:00:00Z"))->has_value());
  CHECK(near->value_at("3500", Component::kNo2, t("2026-03-01T13:00:00Z"))->has_value());

  // Not this layout; bad station and area files.
  CHECK_FALSE(store->import_lml("a;b;c\n1;2;3\n", mapping, "x", 1));
  CHECK_FALSE(environment::parse_stations_csv("id,name,lat,lon\n"));
  CHECK_FALSE(environment::parse_stations_csv("station,name,lat,lon\nNL1,x,91,5\n"));
  auto bad_area = environment::parse_areas_csv("area,lat,lon\n3500,52,5\n012,52,5\n");
  REQUIRE_FALSE(bad_area);
  CHECK(bad_area.error().message.find("line 3") != std::string::npos);
  CHECK(environment::distance_km(52.0, 5.0, 52.0, 5.0) == 0);
  CHECK(environment::distance_km(52.0, 5.0, 53.0, 5.0) == Approx(111.2).epsilon(0.01));
}

TEST_CASE("env: the RIVM layout reads times that state their offset and a station split over two columns", "[environment]") {
  testing::TempDir dir;
  auto store = open(dir);
  auto stations = environment::parse_stations_csv("station,name,lat,lon\nNL1,North,52.20,5.10\n");
  auto areas = environment::parse_areas_csv("area,lat,lon\n3500,52.18,5.10\n");
  REQUIRE(stations);
  REQUIRE(areas);
  const environment::StationMapping mapping{*stations, *areas, 25};
  // RIVM's metadata block (StationsCode, Stationsnaam, ...) sits under the station columns;
  // NL1 appears twice, as when its instrument was replaced within the period.
  const std::string file =
      ";;;;StationsCode;NL1;NL1\n"
      ";;;;Stationsnaam;North;North\n"
      "Component;Bep.periode;Eenheid; Begindatumtijd;Einddatumtijd;NL1;NL1\n"
      "NO2;Uur;ug/m3;2026-03-01T14:00:00+01:00;2026-03-01T15:00:00+01:00;11;\n"  // the first column
      "NO2;Uur;ug/m3;2026-03-01T15:00:00Z;2026-03-01T16:00:00Z;;12\n"           // the second column
      "NO2;Uur;ug/m3;2026-03-01 17:00;2026-03-01 18:00;-999;NaN\n"              // none: no value
      "NO2;Uur;ug/m3;2026-03-01T18:30:00+05:30;2026-03-01T19:30:00+05:30;14;\n" // 13:00 UTC
      "NO2;Uur;ug/m3;2026-03-01T19:00:00+01:30;2026-03-01T20:00:00+01:30;15;\n" // line 8: not an hour in UTC
      "NO2;Uur;ug/m3;2026-03-01T20:00:00+1;2026-03-01T21:00:00+1;16;\n";        // line 9: bad offset
  auto report = store->import_lml(file, mapping, "x.csv", /*utc_offset_hours=*/3);
  REQUIRE(report);
  // +01:00 and Z are read as stated, not at the file's offset (3 h here).
  CHECK(store->value_at("3500", Component::kNo2, t("2026-03-01T13:00:00Z"))->value() == 14);  // the later row replaced 11
  CHECK(store->value_at("3500", Component::kNo2, t("2026-03-01T15:00:00Z"))->value() == 12);
  CHECK(report->values == 3);
  CHECK(report->replaced == 1);
  CHECK(store->series("3500", t("2026-03-01T00:00:00Z"), t("2026-03-02T00:00:00Z"))->size() == 2);
  CHECK(report->refused == 2);
  REQUIRE(report->problems.size() == 2);
  CHECK(report->problems[0].starts_with("line 8: "));
  CHECK(report->problems[1].starts_with("line 9: "));
}

TEST_CASE("env: the shipped synthetic samples import completely", "[environment]") {
  testing::TempDir dir;
  auto store = open(dir);
  const auto base = testing::source_dir() / "config" / "environment";
  auto csv = store->import_csv(slurp(base / "sample.csv"), "sample.csv");
  REQUIRE(csv);
  CHECK(csv->refused == 0);
  CHECK(csv->areas.size() == 20);
  CHECK(csv->values == 20 * 72 * 6);
  environment::StationMapping mapping{*environment::parse_stations_csv(slurp(base / "lml" / "stations.csv")),
                                     *environment::parse_areas_csv(slurp(base / "lml" / "areas.csv")), 25};
  for (const char* f : {"2026_11_NO2.csv", "2026_11_PM10.csv"}) {
    auto lml = store->import_lml(slurp(base / "lml" / f), mapping, f, 1);
    REQUIRE(lml);
    CHECK(lml->refused == 0);
    CHECK(lml->areas.size() == 20);  // 9999 has no station within 25 km
  }
}

TEST_CASE("env: postcode areas and the components table", "[environment]") {
  CHECK(environment::pc4_of_postcode("3511 AB") == "3511");
  CHECK(environment::pc4_of_postcode("3511AB") == "3511");
  CHECK(environment::pc4_of_postcode("3511") == "3511");
  CHECK(environment::pc4_of_postcode("0511 AB").empty());
  CHECK(environment::pc4_of_postcode("35114").empty());
  CHECK(environment::pc4_of_postcode("35A1 AB").empty());
  CHECK(environment::pc4_of_postcode("").empty());
  CHECK(environment::all_components().size() == 6);
  CHECK(environment::find_component("pm25")->unit == "ug/m3");
  CHECK(environment::find_component("humidity")->unit == "%");
  CHECK(environment::find_component("smog") == nullptr);
  CHECK(environment::info(Component::kTemperature).key == "temperature");
}

TEST_CASE("env: the dossier Observation of an hourly value is valid FHIR R4", "[environment]") {
  std::vector<std::string> docs;
  for (const auto& c : environment::all_components()) {
    environment::HourlyValue v{"3511", c.component, t("2026-03-01T13:00:00Z"), 12.5, "csv:sample.csv"};
    docs.push_back(environment::observation_json(v, "0123456789abcdef0123456789abcdef"));
  }
  CHECK(docs[0].find("\"id\":\"env-3511-pm25-") != std::string::npos);
  CHECK(docs[0].find("\"start\":\"2026-03-01T13:00:00.000Z\",\"end\":\"2026-03-01T14:00:00.000Z\"") != std::string::npos);
  CHECK(docs[0].find("\"code\":\"environment\"") != std::string::npos);
  auto validated = testing::fhir_validate(docs);
  INFO(validated.output.substr(0, 3000));
  CHECK(validated.exit_code == 0);
}
