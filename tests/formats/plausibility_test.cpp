// formats::Plausibility: verdicts at and across each bound, the issue's examples, panels, the
// file format's refusals, and that config/plausibility.json equals the built-in defaults.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>

#include "telehub/core/codes.h"
#include "telehub/formats/plausibility.h"

using namespace telehub;
using formats::Plausibility;
using formats::PlausibilityRule;
using formats::Verdict;
using Kind = formats::Verdict::Kind;

namespace {

const Plausibility& heart_rate_only() {
  static const Plausibility p({PlausibilityRule{.code = "8867-4", .impossible_below = 20, .impossible_above = 300,
                                                .extreme_below = 40, .extreme_above = 180}});
  return p;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

core::Error parse_error(std::string_view json) {
  auto r = Plausibility::parse(json);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == core::Code::kInvalidArgument);
  CHECK(r.error().reason == "bad_config");
  return r.error();
}

}  // namespace

TEST_CASE("each kind of verdict with its direction and detail", "[formats][plausibility]") {
  const auto& p = heart_rate_only();
  Verdict v = p.check("8867-4", 72);
  CHECK(v.kind == Kind::kPlausible);
  CHECK(v.direction.empty());
  CHECK(v.detail.empty());
  CHECK(v.code == "8867-4");

  v = p.check("8867-4", 19.5);
  CHECK(v.kind == Kind::kImpossible);
  CHECK(v.direction == "low");
  CHECK(v.detail == "8867-4 value 19.5 /min is below the impossible limit 20 /min");

  v = p.check("8867-4", 301);
  CHECK(v.kind == Kind::kImpossible);
  CHECK(v.direction == "high");
  CHECK(v.detail == "8867-4 value 301 /min is above the impossible limit 300 /min");

  v = p.check("8867-4", 35);
  CHECK(v.kind == Kind::kExtreme);
  CHECK(v.direction == "low");
  CHECK(v.detail == "8867-4 value 35 /min is below the extreme limit 40 /min");

  v = p.check("8867-4", 180.1);
  CHECK(v.kind == Kind::kExtreme);
  CHECK(v.direction == "high");
  CHECK(v.detail == "8867-4 value 180.1 /min is above the extreme limit 180 /min");
  CHECK(v.code == "8867-4");
}

TEST_CASE("bounds are inclusive", "[formats][plausibility]") {
  const auto& p = heart_rate_only();
  CHECK(p.check("8867-4", 20).kind == Kind::kExtreme);
  CHECK(p.check("8867-4", 300).kind == Kind::kExtreme);
  CHECK(p.check("8867-4", 40).kind == Kind::kPlausible);
  CHECK(p.check("8867-4", 180).kind == Kind::kPlausible);
  CHECK(p.check("8867-4", std::nextafter(20.0, 0.0)).kind == Kind::kImpossible);
  CHECK(p.check("8867-4", std::nextafter(300.0, 400.0)).kind == Kind::kImpossible);
}

TEST_CASE("absent bounds do not limit and codes without a rule are plausible", "[formats][plausibility]") {
  const Plausibility p({PlausibilityRule{
      .code = "41950-7", .impossible_below = 0, .impossible_above = {}, .extreme_below = {}, .extreme_above = {}}});
  CHECK(p.check("41950-7", 1e9).kind == Kind::kPlausible);
  CHECK(p.check("41950-7", -1).kind == Kind::kImpossible);
  CHECK(p.check("8867-4", 1000).kind == Kind::kPlausible);
  CHECK(Plausibility().check("8310-5", 60).kind == Kind::kPlausible);
}

TEST_CASE("non-finite values are impossible for every code", "[formats][plausibility]") {
  const Plausibility none;
  Verdict v = none.check("8867-4", std::numeric_limits<double>::infinity());
  CHECK(v.kind == Kind::kImpossible);
  CHECK(v.direction == "high");
  CHECK(v.detail == "8867-4 value is not a finite number");
  CHECK(none.check("8867-4", -std::numeric_limits<double>::infinity()).direction == "low");
  CHECK(none.check("8867-4", std::nan("")).kind == Kind::kImpossible);
}

TEST_CASE("the issue's examples are impossible by default", "[formats][plausibility]") {
  const auto& p = Plausibility::defaults();
  Verdict v = p.check("59408-5", 140);
  CHECK(v.kind == Kind::kImpossible);
  CHECK(v.detail == "59408-5 value 140 % is above the impossible limit 100 %");
  v = p.check("29463-7", -3);
  CHECK(v.kind == Kind::kImpossible);
  CHECK(v.direction == "low");
  CHECK(v.detail == "29463-7 value -3 kg is below the impossible limit 0.5 kg");
  v = p.check("8310-5", 60);
  CHECK(v.kind == Kind::kImpossible);
  CHECK(v.detail == "8310-5 value 60 Cel is above the impossible limit 45 Cel");
}

TEST_CASE("typical adult readings are plausible by default", "[formats][plausibility]") {
  const auto& p = Plausibility::defaults();
  const std::pair<const char*, double> ok[] = {
      {"8867-4", 72},  {"59408-5", 97},  {"2708-6", 95},    {"9279-1", 14},    {"8310-5", 36.8},
      {"29463-7", 82}, {"8480-6", 128},  {"8462-4", 84},    {"15074-8", 5.5},  {"2339-0", 99},
      {"41950-7", 8421}, {"perfusion-index", 2.1}, {"irregular-heartbeat", 0}, {"irregular-heartbeat", 1}};
  for (const auto& [code, value] : ok) {
    INFO(code << " " << value);
    CHECK(p.check(code, value).kind == Kind::kPlausible);
  }
  CHECK(p.check("59408-5", 82).kind == Kind::kExtreme);
  CHECK(p.check("8480-6", 195).kind == Kind::kExtreme);
  CHECK(p.check("15074-8", 2.5).kind == Kind::kExtreme);
  CHECK(p.check("irregular-heartbeat", 2).kind == Kind::kImpossible);
  // The flag's unit "1" is not written.
  CHECK(p.check("irregular-heartbeat", 2).detail == "irregular-heartbeat value 2 is above the impossible limit 1");
}

TEST_CASE("every numeric code of the table has a default rule", "[formats][plausibility]") {
  for (const auto& info : core::all_codes()) {
    if (info.panel) continue;
    INFO(info.loinc);
    bool found = false;
    for (const auto& r : Plausibility::defaults().rules()) found = found || r.code == info.loinc;
    CHECK(found);
  }
}

TEST_CASE("a panel's verdict is its worst component, the first in payload order", "[formats][plausibility]") {
  const auto& p = Plausibility::defaults();
  core::Reading bp;
  bp.code = "85354-9";
  bp.components = {{"8480-6", 128, "mm[Hg]"}, {"8462-4", 84, "mm[Hg]"}, {"irregular-heartbeat", 0, "1"}};
  Verdict v = p.check(bp);
  CHECK(v.kind == Kind::kPlausible);
  CHECK(v.code == "85354-9");

  bp.components[0].value = 195;  // extreme
  v = p.check(bp);
  CHECK(v.kind == Kind::kExtreme);
  CHECK(v.code == "8480-6");

  bp.components[1].value = 130;  // extreme too: the first one stays
  CHECK(p.check(bp).code == "8480-6");

  bp.components[2].value = 3;  // impossible beats extreme
  v = p.check(bp);
  CHECK(v.kind == Kind::kImpossible);
  CHECK(v.code == "irregular-heartbeat");
  CHECK(v.direction == "high");

  core::Reading hr;
  hr.code = "8867-4";
  hr.value = 310;
  hr.unit = "/min";
  CHECK(p.check(hr).kind == Kind::kImpossible);
  hr.value = 72;
  CHECK(p.check(hr).kind == Kind::kPlausible);
}

TEST_CASE("parse reads rules, description and notes", "[formats][plausibility]") {
  auto p = Plausibility::parse(R"({"description": "test", "rules": [
      {"code": "8310-5", "impossible_below": 25, "impossible_above": 45, "note": "why"},
      {"code": "29463-7", "extreme_below": 30.5, "extreme_above": 250}]})");
  REQUIRE(p);
  REQUIRE(p->rules().size() == 2);
  CHECK(p->rules()[0] == PlausibilityRule{.code = "8310-5", .impossible_below = 25, .impossible_above = 45,
                                          .extreme_below = {}, .extreme_above = {}});
  CHECK(p->rules()[1] == PlausibilityRule{.code = "29463-7", .impossible_below = {}, .impossible_above = {},
                                          .extreme_below = 30.5, .extreme_above = 250});
  auto empty = Plausibility::parse(R"({"rules": []})");
  REQUIRE(empty);
  CHECK(empty->rules().empty());
}

TEST_CASE("parse refuses malformed rule files with a path", "[formats][plausibility]") {
  CHECK(parse_error("{").message.rfind("plausibility config: ", 0) == 0);
  CHECK(parse_error("[]").message == "plausibility config: must be a JSON object");
  CHECK(parse_error("{}").message == "rules: is missing");
  CHECK(parse_error(R"({"rules": {}})").message == "rules: must be an array");
  CHECK(parse_error(R"({"rules": [], "comment": 1})").message == R"(plausibility config: unknown member "comment")");
  CHECK(parse_error(R"({"rules": [], "rules": []})").message ==
        R"(plausibility config: member "rules" appears twice)");
  CHECK(parse_error(R"({"description": 3, "rules": []})").message == "description: must be a string");
  CHECK(parse_error(R"({"rules": [3]})").message == "rules[0]: must be an object");
  CHECK(parse_error(R"({"rules": [{"impossible_below": 1}]})").message == "rules[0].code: is missing");
  CHECK(parse_error(R"({"rules": [{"code": 8867}]})").message == "rules[0].code: must be a string");
  CHECK(parse_error(R"({"rules": [{"code": "1234-5"}]})").message == R"(rules[0].code: "1234-5" is not a known code)");
  CHECK(parse_error(R"({"rules": [{"code": "85354-9"}]})").message ==
        "rules[0].code: 85354-9 is a panel and has no value to check");
  CHECK(parse_error(R"({"rules": [{"code": "8867-4"}, {"code": "8310-5"}, {"code": "8867-4"}]})").message ==
        "rules[2].code: 8867-4 already has a rule (rules[0])");
  CHECK(parse_error(R"({"rules": [{"code": "8867-4", "maximum": 3}]})").message ==
        R"(rules[0]: unknown member "maximum")");
  CHECK(parse_error(R"({"rules": [{"code": "8867-4", "extreme_above": 3, "extreme_above": 4}]})").message ==
        R"(rules[0]: member "extreme_above" appears twice)");
  CHECK(parse_error(R"({"rules": [{"code": "8867-4", "extreme_above": "180"}]})").message ==
        "rules[0].extreme_above: must be a number");
  CHECK(parse_error(R"({"rules": [{"code": "8867-4", "extreme_above": null}]})").message ==
        "rules[0].extreme_above: must be a number");
  CHECK(parse_error(R"({"rules": [{"code": "8867-4", "note": 1}]})").message == "rules[0].note: must be a string");
  // JSON has no NaN or infinity; a literal beyond the double range is refused by the parser.
  CHECK(parse_error(R"({"rules": [{"code": "8867-4", "extreme_above": 1e999}]})").message.rfind(
            "plausibility config: ", 0) == 0);
  CHECK(parse_error(R"({"rules": [{"code": "8867-4", "extreme_above": NaN}]})").message.rfind(
            "plausibility config: ", 0) == 0);
}

TEST_CASE("parse refuses bounds out of order", "[formats][plausibility]") {
  CHECK(parse_error(R"({"rules": [{"code": "8867-4"}, {"code": "8310-5"}, {"code": "29463-7"},
      {"code": "9279-1", "impossible_below": 30, "extreme_below": 20}]})")
            .message == "rules[3].extreme_below: 20 is below impossible_below 30");
  CHECK(parse_error(R"({"rules": [{"code": "8867-4", "extreme_below": 40, "extreme_above": 39.5}]})").message ==
        "rules[0].extreme_above: 39.5 is below extreme_below 40");
  CHECK(parse_error(R"({"rules": [{"code": "8867-4", "extreme_above": 180, "impossible_above": 170}]})").message ==
        "rules[0].impossible_above: 170 is below extreme_above 180");
  // Skipping an absent bound still compares the given ones.
  CHECK(parse_error(R"({"rules": [{"code": "8867-4", "impossible_below": 50, "impossible_above": 40}]})").message ==
        "rules[0].impossible_above: 40 is below impossible_below 50");
  // Equal bounds are in order.
  CHECK(Plausibility::parse(R"({"rules": [{"code": "59408-5", "impossible_below": 50, "extreme_below": 50,
      "extreme_above": 100, "impossible_above": 100}]})"));
}

TEST_CASE("config/plausibility.json equals the built-in defaults", "[formats][plausibility]") {
  auto file = Plausibility::parse(read_file(TELEHUB_SOURCE_DIR "/config/plausibility.json"));
  INFO((file ? std::string() : file.error().to_string()));
  REQUIRE(file);
  CHECK(file->rules() == Plausibility::defaults().rules());
}
