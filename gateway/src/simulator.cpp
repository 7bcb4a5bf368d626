// VitalsSimulator: plausible home measurements for demos and tests.
//
// Ranges are those of a stable adult at rest (heart rate 60-85/min, SpO2 94-99 %, respiration
// 12-20/min, temperature 36.3-37.3 Cel, office blood pressure around 110-140/70-90 mm[Hg]) with
// a daily rhythm by UTC hour: heart rate, blood pressure and respiration dip at night (0-6 h),
// temperature peaks in the late afternoon. Values are rounded as home devices report them:
// integers, temperature and weight to 0.1.
//
// Determinism: every draw comes from rng_ in a fixed order, so one seed and one sequence of
// sample() times give the same readings (for one standard library: <random> distributions are
// implementation-defined).
#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>
#include <string_view>

#include "telehub/core/codes.h"
#include "telehub/gateway/gateway.h"

namespace telehub::gateway {
namespace {

constexpr std::int64_t kMillisPerDay = 24LL * 60 * 60 * 1000;

double uniform(std::mt19937_64& rng, double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); }
// A fresh distribution per draw: libstdc++'s normal_distribution caches every second value,
// which would make a draw depend on the distribution object's history.
double normal(std::mt19937_64& rng, double mean, double sd) { return std::normal_distribution<double>(mean, sd)(rng); }

double round1(double v) { return std::round(v * 10.0) / 10.0; }

// 1 during the night (00-06 UTC), 0 during the day, with linear two-hour transitions so values
// do not jump at the boundaries.
double night_weight(double hour) {
  if (hour < 6.0) return 1.0;
  if (hour < 8.0) return (8.0 - hour) / 2.0;
  if (hour < 22.0) return 0.0;
  return (hour - 22.0) / 2.0;
}

core::Reading reading(std::string_view code, double value, std::string_view unit, core::TimePoint t) {
  core::Reading r;
  r.code = std::string(code);
  r.value = value;
  r.unit = std::string(unit);
  r.time = t;
  return r;
}

}  // namespace

VitalsSimulator::VitalsSimulator(std::uint64_t seed) : rng_(seed) {
  baseline_hr_ = uniform(rng_, 60.0, 85.0);
  baseline_sys_ = uniform(rng_, 112.0, 136.0);
  baseline_dia_ = uniform(rng_, 70.0, 84.0);
  baseline_weight_ = uniform(rng_, 55.0, 105.0);
  baseline_temp_ = uniform(rng_, 36.6, 36.9);
  baseline_spo2_ = uniform(rng_, 96.0, 98.0);
  baseline_rr_ = uniform(rng_, 13.0, 17.0);
}

std::vector<core::Reading> VitalsSimulator::sample(core::TimePoint t) {
  namespace loinc = core::loinc;
  const std::int64_t ms = core::to_unix_millis(t);
  const std::int64_t day = ms >= 0 ? ms / kMillisPerDay : -((-ms + kMillisPerDay - 1) / kMillisPerDay);
  const double hour = static_cast<double>(ms - day * kMillisPerDay) / 3'600'000.0;
  const double night = night_weight(hour);
  // Core temperature is lowest in the early morning and highest around 17 h.
  const double circadian_temp = 0.2 * std::cos(2.0 * std::numbers::pi * (hour - 17.0) / 24.0);

  std::vector<core::Reading> out;
  out.reserve(6);

  const double hr = std::clamp(std::round(normal(rng_, baseline_hr_ - 8.0 * night, 3.0)), 45.0, 120.0);
  out.push_back(reading(loinc::kHeartRate, hr, "/min", t));

  const double spo2 = std::clamp(std::round(normal(rng_, baseline_spo2_ - 0.5 * night, 0.8)), 94.0, 100.0);
  out.push_back(reading(loinc::kSpO2, spo2, "%", t));

  const double rr = std::clamp(std::round(normal(rng_, baseline_rr_ - 1.0 * night, 1.2)), 12.0, 20.0);
  out.push_back(reading(loinc::kRespiratoryRate, rr, "/min", t));

  const double temp = std::clamp(round1(normal(rng_, baseline_temp_ + circadian_temp, 0.1)), 36.3, 37.3);
  out.push_back(reading(loinc::kBodyTemperature, temp, "Cel", t));

  // Nocturnal "dipping" of about 10 % is the normal pattern.
  const double sys = std::clamp(std::round(normal(rng_, baseline_sys_ - 12.0 * night, 6.0)), 90.0, 180.0);
  double dia = std::clamp(std::round(normal(rng_, baseline_dia_ - 8.0 * night, 4.0)), 50.0, 110.0);
  dia = std::min(dia, sys - 25.0);  // keep a plausible pulse pressure
  core::Reading bp;
  bp.code = std::string(loinc::kBloodPressurePanel);
  bp.time = t;
  bp.components.push_back({std::string(loinc::kSystolic), sys, "mm[Hg]"});
  bp.components.push_back({std::string(loinc::kDiastolic), dia, "mm[Hg]"});
  out.push_back(std::move(bp));

  // Patients weigh themselves once a day; the true weight drifts slowly from day to day.
  if (day != last_weight_day_) {
    if (last_weight_day_ != -1) baseline_weight_ += normal(rng_, 0.0, 0.15);
    last_weight_day_ = day;
    const double weight = std::max(30.0, round1(normal(rng_, baseline_weight_, 0.2)));
    out.push_back(reading(loinc::kBodyWeight, weight, "kg", t));
  }
  return out;
}

}  // namespace telehub::gateway
