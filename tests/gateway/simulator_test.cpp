#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <set>

#include "telehub/core/codes.h"
#include "telehub/core/time.h"
#include "telehub/gateway/gateway.h"

namespace telehub::gateway {
namespace {

namespace loinc = core::loinc;

core::TimePoint start_time() { return *core::parse_rfc3339("2026-11-23T00:00:00Z"); }

bool is_integer(double v) { return v == std::round(v); }
bool has_one_decimal(double v) { return std::fabs(v * 10.0 - std::round(v * 10.0)) < 1e-6; }

std::vector<std::vector<core::Reading>> week(std::uint64_t seed) {
  VitalsSimulator sim(seed);
  std::vector<std::vector<core::Reading>> out;
  for (int step = 0; step < 7 * 24 * 4; ++step) out.push_back(sim.sample(start_time() + std::chrono::minutes(15 * step)));
  return out;
}

}  // namespace

TEST_CASE("the simulator is deterministic for a seed", "[gateway]") {
  CHECK(week(42) == week(42));
  CHECK(week(42) != week(43));
}

TEST_CASE("simulated vital signs are plausible and rounded like device output", "[gateway]") {
  for (std::uint64_t seed : {1u, 2u, 7u, 1234u}) {
    INFO("seed " << seed);
    const auto samples = week(seed);
    std::map<std::int64_t, int> weights_per_day;
    double night_hr = 0, day_hr = 0;
    int night_n = 0, day_n = 0;
    for (std::size_t i = 0; i < samples.size(); ++i) {
      const auto t = start_time() + std::chrono::minutes(15 * static_cast<int>(i));
      std::set<std::string> codes;
      for (const auto& r : samples[i]) {
        INFO("code " << r.code);
        CHECK(r.time == t);
        CHECK(r.subject.empty());
        CHECK(r.device.empty());
        CHECK(r.sequence == 0);
        const auto* info = core::find_code(r.code);
        REQUIRE(info != nullptr);
        codes.insert(r.code);
        if (r.code == loinc::kBloodPressurePanel) {
          CHECK_FALSE(r.value.has_value());
          REQUIRE(r.components.size() == 2);
          CHECK(r.components[0].code == loinc::kSystolic);
          CHECK(r.components[1].code == loinc::kDiastolic);
          const double sys = r.components[0].value, dia = r.components[1].value;
          CHECK(r.components[0].unit == "mm[Hg]");
          CHECK(r.components[1].unit == "mm[Hg]");
          CHECK(is_integer(sys));
          CHECK(is_integer(dia));
          CHECK(sys >= 85);
          CHECK(sys <= 190);
          CHECK(dia >= 45);
          CHECK(dia < sys);
          continue;
        }
        REQUIRE(r.value.has_value());
        CHECK(r.unit == info->ucum);
        const double v = *r.value;
        if (r.code == loinc::kHeartRate) {
          CHECK(is_integer(v));
          CHECK(v >= 40);
          CHECK(v <= 130);
          const int hour = static_cast<int>((core::to_unix_millis(t) / 3'600'000) % 24);
          if (hour < 6) night_hr += v, ++night_n;
          if (hour >= 10 && hour < 20) day_hr += v, ++day_n;
        } else if (r.code == loinc::kSpO2) {
          CHECK(is_integer(v));
          CHECK(v >= 90);
          CHECK(v <= 100);
        } else if (r.code == loinc::kRespiratoryRate) {
          CHECK(is_integer(v));
          CHECK(v >= 10);
          CHECK(v <= 24);
        } else if (r.code == loinc::kBodyTemperature) {
          CHECK(has_one_decimal(v));
          CHECK(v >= 36.0);
          CHECK(v <= 37.5);
        } else if (r.code == loinc::kBodyWeight) {
          CHECK(has_one_decimal(v));
          CHECK(v >= 40);
          CHECK(v <= 130);
          ++weights_per_day[core::to_unix_millis(t) / 86'400'000];
        } else {
          FAIL("unexpected code " << r.code);
        }
      }
      for (auto c : {loinc::kHeartRate, loinc::kSpO2, loinc::kRespiratoryRate, loinc::kBodyTemperature,
                     loinc::kBloodPressurePanel})
        CHECK(codes.count(std::string(c)) == 1);
    }
    CHECK(weights_per_day.size() == 7);
    for (const auto& [day, n] : weights_per_day) CHECK(n == 1);
    // The daily rhythm: heart rate at night is clearly lower than during the day.
    REQUIRE(night_n > 0);
    REQUIRE(day_n > 0);
    CHECK(night_hr / night_n < day_hr / day_n - 4);
  }
}

TEST_CASE("weight drifts slowly between days", "[gateway]") {
  VitalsSimulator sim(99);
  std::vector<double> weights;
  for (int day = 0; day < 30; ++day)
    for (const auto& r : sim.sample(start_time() + std::chrono::hours(24 * day + 7)))
      if (r.code == loinc::kBodyWeight) weights.push_back(*r.value);
  REQUIRE(weights.size() == 30);
  for (std::size_t i = 1; i < weights.size(); ++i) CHECK(std::fabs(weights[i] - weights[i - 1]) < 2.0);
}

}  // namespace telehub::gateway
