// Plausibility: configurable physiological ranges per code (config/plausibility.json,
// docs/payloads.md "Plausibility").
//
// A rule for a code has an impossible range and, inside it, an expected range:
//   {"code": "59408-5", "impossible_below": 50, "impossible_above": 100,
//    "extreme_below": 85, "extreme_above": 100}
// Values are in the code's canonical unit (after units::normalise). A value outside
// [impossible_below, impossible_above] is impossible: the pipeline quarantines the message as
// `implausible_value` with the value and the rule. A value inside that but outside
// [extreme_below, extreme_above] is extreme but possible: it is stored and flagged
// (FHIR Observation.interpretation, a counter, a log line). Bounds are inclusive (a value equal
// to a bound is inside it). Every bound is optional; an absent bound does not limit. A code
// without a rule is always plausible; a non-finite value is impossible for every code.
// Components of a panel are checked by their own codes.
//
// File format (config/plausibility.json; RFC 8259 JSON, read with envelope::parse_json):
//   {"description": "...", "rules": [rule, ...]}
// "description" (optional string) says what the file is. A rule has "code" (required; a code
// of core::CodeInfo that is not a panel), the four optional bounds and an optional "note"
// string giving the reasons for its ranges; "description" and "note" are not kept. No other
// member, no member twice, a code at most once; bounds must be finite numbers with
// impossible_below <= extreme_below <= extreme_above <= impossible_above where given.
//
// Error policy: parse() returns Result; failure is invalid_argument/bad_config with a message
// that starts with the path of the offending member: "rules[3].extreme_below: 20 is below
// impossible_below 30", "rules[1].code: 8867-4 already has a rule (rules[0])",
// "plausibility config: ..." for the document as a whole. check() cannot fail. Never throws.
//
// Thread-safety: immutable after construction; check() may be called from any thread.
// defaults() is built on first use (thread-safe static initialisation).
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
  // the code, the value with its canonical unit and the bound: "8310-5 value 60 Cel is above the
  // impossible limit 45 Cel", "8867-4 value 35 /min is below the extreme limit 40 /min".
  // Numbers are the shortest text that reads back exactly (std::to_chars); the unit "1" of a
  // flag is not written. A non-finite value: "8867-4 value is not a finite number", direction
  // "high" (+inf), "low" (-inf) or empty (NaN). Empty for kPlausible.
  std::string direction;
  std::string detail;
  std::string code;  // the code (a component's code for a panel) that crossed the bound
};

class Plausibility {
 public:
  // No rules: everything finite is plausible.
  Plausibility() = default;
  // Takes the rules as given, unchecked (parse() checks them); with two rules for one code the
  // first is used.
  explicit Plausibility(std::vector<PlausibilityRule> rules);

  [[nodiscard]] static Result<Plausibility> parse(std::string_view json);
  // The rules shipped in config/plausibility.json, built in (a test checks they are equal).
  static const Plausibility& defaults();

  // The verdict for one value of `code` (canonical unit). Impossible bounds are checked before
  // extreme ones. Verdict::code is `code` whatever the verdict.
  Verdict check(std::string_view code, double value) const;
  // The worst verdict over a reading's value or its components (impossible > extreme > plausible;
  // the first such component in payload order). A plausible verdict has the reading's code.
  Verdict check(const core::Reading& reading) const;

  const std::vector<PlausibilityRule>& rules() const { return rules_; }

 private:
  std::vector<PlausibilityRule> rules_;
};

}  // namespace telehub::formats
