// Plausibility: configurable physiological ranges per code (config/plausibility.json,
// docs/payloads.md "Plausibility").
//
// A rule for a code has an impossible range and, inside it, an expected range:
//   {"code": "59408-5", "impossible_below": 0, "impossible_above": 100,
//    "extreme_below": 70, "extreme_above": 100}
// Values are in the code's canonical unit (after units::normalise). A value outside
// [impossible_below, impossible_above] is impossible: the pipeline quarantines the message as
// `implausible_value` with the value and the rule. A value inside that but outside
// [extreme_below, extreme_above] is extreme but possible: it is stored and flagged
// (FHIR Observation.interpretation, a counter, a log line). Every bound is optional; an
// absent bound does not limit. Components of a panel are checked by their own codes.
//
// File format: {"rules": [rule, ...]}; a code at most once; bounds must be finite numbers
// with impossible_below <= extreme_below <= extreme_above <= impossible_above where given.
//
// Error policy: parse() returns Result (invalid_argument/bad_config naming the rule index and
// field); check() cannot fail. Never throws.
//
// Thread-safety: immutable after construction; check() may be called from any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "telehub/core/error.h"
#include "telehub/core/reading.h"

namespace telehub::formats {

struct PlausibilityRule {
  std::string code;
  std::optional<double> impossible_below, impossible_above;
  std::optional<double> extreme_below, extreme_above;

  bool operator==(const PlausibilityRule&) const = default;
};

struct Verdict {
  enum class Kind { kPlausible, kExtreme, kImpossible };
  Kind kind = Kind::kPlausible;
  // For kExtreme/kImpossible: "high" or "low" (which bound was crossed) and a sentence naming
  // the code, the value with its unit and the bound: "8310-5 value 60 Cel is above the
  // impossible limit 45 Cel".
  std::string direction;
  std::string detail;
  std::string code;  // the code (a component's code for a panel) that crossed the bound
};

class Plausibility {
 public:
  // No rules: everything is plausible.
  Plausibility() = default;
  explicit Plausibility(std::vector<PlausibilityRule> rules);

  [[nodiscard]] static Result<Plausibility> parse(std::string_view json);
  // The rules shipped in config/plausibility.json, built in (a test checks they are equal).
  static const Plausibility& defaults();

  // The verdict for one value of `code` (canonical unit).
  Verdict check(std::string_view code, double value) const;
  // The worst verdict over a reading's value or its components (impossible > extreme > plausible;
  // the first such component in payload order).
  Verdict check(const core::Reading& reading) const;

  const std::vector<PlausibilityRule>& rules() const { return rules_; }

 private:
  std::vector<PlausibilityRule> rules_;
};

}  // namespace telehub::formats
