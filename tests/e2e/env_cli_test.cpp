// Issue [8/8] end to end with the real binary: `telehub env import` of the shipped synthetic
// samples (telehub CSV and the RIVM layout), `telehub env show`, refused rows named by line
// with exit 1, and usage errors with exit 2.
#include <catch2/catch.hpp>

#include <fstream>

#include "test_support.h"

using namespace telehub;

namespace {

testing::CommandResult run_telehub(const std::string& args) {
  return testing::run_command(std::string(TELEHUB_BINARY_DIR) + "/apps/telehub " + args + " 2>&1");
}

}  // namespace

TEST_CASE("telehub env import loads both sample formats, shows an area, and names refused rows", "[e2e][environment]") {
  testing::TempDir dir;
  const std::string data = " --data " + (dir.path() / "data").string();
  const auto samples = testing::source_dir() / "config" / "environment";

  auto csv = run_telehub("env import" + data + " " + (samples / "sample.csv").string());
  INFO(csv.output);
  REQUIRE(csv.exit_code == 0);
  CHECK(csv.output.find("1440 rows, 8640 values stored (0 replaced), 20 areas") != std::string::npos);

  auto lml = run_telehub("env import --format lml" + data + " --stations " + (samples / "lml" / "stations.csv").string() +
                     " --areas " + (samples / "lml" / "areas.csv").string() + " " + (samples / "lml" / "2026_11_NO2.csv").string());
  INFO(lml.output);
  REQUIRE(lml.exit_code == 0);
  CHECK(lml.output.find("72 rows") != std::string::npos);
  CHECK(lml.output.find("20 areas") != std::string::npos);  // 9999 has no station within 25 km

  // The station values replaced the CSV's NO2 of the same hours.
  auto show = run_telehub("env show" + data + " --area 3500 --from 2026-11-26T00:00:00Z --to 2026-11-26T01:00:00Z");
  INFO(show.output);
  REQUIRE(show.exit_code == 0);
  CHECK(show.output.find("2026-11-26T00:00:00.000Z no2 ") != std::string::npos);
  CHECK(show.output.find("no2 ") != std::string::npos);
  CHECK(show.output.find(":2026_11_NO2.csv)") != std::string::npos);  // from a station of the RIVM file
  CHECK(show.output.find("pm25") != std::string::npos);
  CHECK(run_telehub("env show" + data + " --area 9999 --from 2026-11-26T00:00:00Z --to 2026-11-27T00:00:00Z").output.find("no values") !=
        std::string::npos);

  // Refused rows: stored what is good, named the rest, exit 1.
  std::ofstream(dir.path() / "bad.csv") << "area,time,no2\n3500,2026-11-29T00:00:00Z,5\n3500,2026-11-29T00:30:00Z,5\n";
  auto bad = run_telehub("env import" + data + " " + (dir.path() / "bad.csv").string());
  CHECK(bad.exit_code == 1);
  CHECK(bad.output.find("line 3: time must be the start of an hour") != std::string::npos);
  CHECK(bad.output.find("1 values stored") != std::string::npos);
  // A file in neither format, and a missing file: exit 1 with a message.
  std::ofstream(dir.path() / "odd.csv") << "when,where\n1,2\n";
  auto odd = run_telehub("env import" + data + " " + (dir.path() / "odd.csv").string());
  CHECK(odd.exit_code == 1);
  CHECK(odd.output.find("[bad_env_file]") != std::string::npos);
  CHECK(run_telehub("env import" + data + " " + (dir.path() / "missing.csv").string()).exit_code == 1);

  // Usage errors: exit 2.
  for (const std::string& usage : std::vector<std::string>{"env", "env import" + data, "env import --format xml x.csv",
                                   "env import --format lml x.csv", "env import --stations s.csv x.csv",
                                   "env show" + data, "env frobnicate"}) {
    INFO(usage);
    auto r = run_telehub(usage);
    CHECK(r.exit_code == 2);
  }
}
