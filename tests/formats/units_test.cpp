// formats::to_canonical() and formats::normalise(): every conversion of units.h with its
// expected value (worked out by hand from the UCUM definitions), the identity, the refusals.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "telehub/formats/units.h"

using namespace telehub;
using formats::to_canonical;

namespace {

double canonical(std::string_view code, double value, std::string_view unit) {
  auto r = to_canonical(code, value, unit);
  INFO(code << " " << value << " " << unit << ": " << (r ? std::string() : r.error().to_string()));
  REQUIRE(r);
  return *r;
}

core::Error refusal(std::string_view code, double value, std::string_view unit) {
  auto r = to_canonical(code, value, unit);
  REQUIRE_FALSE(r);
  return r.error();
}

}  // namespace

TEST_CASE("mass converts to kg from g, pounds and ounces", "[formats][units]") {
  CHECK(canonical("29463-7", 70500, "g") == Approx(70.5).epsilon(1e-12));
  CHECK(canonical("29463-7", 1, "[lb_av]") == Approx(0.45359237).epsilon(1e-15));
  CHECK(canonical("29463-7", 154.3, "[lb_av]") == Approx(69.989).margin(0.001));
  CHECK(canonical("29463-7", 16, "[oz_av]") == Approx(0.45359237).epsilon(1e-15));
  CHECK(canonical("29463-7", 1, "[oz_av]") == Approx(0.028349523125).epsilon(1e-15));
}

TEST_CASE("temperature converts to Cel from degF and K", "[formats][units]") {
  CHECK(canonical("8310-5", 98.6, "[degF]") == Approx(37.0).margin(1e-9));
  CHECK(canonical("8310-5", 32, "[degF]") == Approx(0.0).margin(1e-12));
  CHECK(canonical("8310-5", -40, "[degF]") == Approx(-40.0).margin(1e-12));
  CHECK(canonical("8310-5", 310.15, "K") == Approx(37.0).margin(1e-9));
}

TEST_CASE("pressure converts to mm Hg by the UCUM definition", "[formats][units]") {
  // UCUM: m[Hg] = 133.3220 kPa, so 1 mm[Hg] = 133.3220 Pa.
  CHECK(canonical("8480-6", 16, "kPa") == Approx(120.0).margin(0.05));
  CHECK(canonical("8480-6", 16, "kPa") == Approx(16000 / 133.3220).epsilon(1e-12));
  CHECK(canonical("8462-4", 133.3220, "Pa") == Approx(1.0).epsilon(1e-12));
  CHECK(canonical("8462-4", 106.6576, "hPa") == Approx(80.0).epsilon(1e-9));
}

TEST_CASE("glucose converts both ways with molar mass 180.156 g per mol", "[formats][units]") {
  CHECK(canonical("2339-0", 5.5, "mmol/L") == Approx(99.0858).margin(1e-4));
  CHECK(canonical("15074-8", 99.0858, "mg/dL") == Approx(5.5).margin(1e-6));
  CHECK(canonical("15074-8", 18.0156, "mg/dL") == Approx(1.0).epsilon(1e-12));
  // Round trip.
  CHECK(canonical("15074-8", canonical("2339-0", 7.25, "mmol/L"), "mg/dL") == Approx(7.25).epsilon(1e-12));
}

TEST_CASE("fractions convert to percent", "[formats][units]") {
  CHECK(canonical("59408-5", 0.97, "1") == Approx(97.0).epsilon(1e-12));
  CHECK(canonical("2708-6", 0.95, "{ratio}") == Approx(95.0).epsilon(1e-12));
  CHECK(canonical("perfusion-index", 0.021, "1") == Approx(2.1).epsilon(1e-12));
}

TEST_CASE("rates convert to per minute", "[formats][units]") {
  CHECK(canonical("8867-4", 1, "/s") == Approx(60.0).epsilon(1e-15));
  CHECK(canonical("8867-4", 72, "{beats}/min") == 72);
  CHECK(canonical("9279-1", 14, "{breaths}/min") == 14);
}

TEST_CASE("step counts convert to per day", "[formats][units]") {
  CHECK(canonical("41950-7", 8421, "{steps}/d") == 8421);
  CHECK(canonical("41950-7", 8421, "{count}") == 8421);
  CHECK(canonical("41950-7", 8421, "1") == 8421);
}

TEST_CASE("the canonical unit converts to itself exactly", "[formats][units]") {
  CHECK(canonical("29463-7", 70.123456789, "kg") == 70.123456789);
  CHECK(canonical("8310-5", 36.6, "Cel") == 36.6);
  CHECK(canonical("8480-6", 121, "mm[Hg]") == 121);
  CHECK(canonical("15074-8", 5.5, "mmol/L") == 5.5);
  CHECK(canonical("2339-0", 99, "mg/dL") == 99);
  CHECK(canonical("59408-5", 97, "%") == 97);
  CHECK(canonical("8867-4", 0.1, "/min") == 0.1);
  CHECK(canonical("41950-7", 100, "/d") == 100);
  CHECK(canonical("irregular-heartbeat", 1, "1") == 1);
}

TEST_CASE("units that do not fit the code are refused with bad_unit", "[formats][units]") {
  auto e = refusal("29463-7", 70, "kPa");
  CHECK(e.code == core::Code::kInvalidArgument);
  CHECK(e.reason == "bad_unit");
  CHECK(e.message == R"(unit "kPa" cannot be converted to "kg" (29463-7))");

  e = refusal("29463-7", 11, "stone");
  CHECK(e.reason == "bad_unit");
  CHECK(e.message == R"(unit "stone" cannot be converted to "kg" (29463-7))");

  // Case matters in UCUM; a flag takes "1" only; glucose units belong to glucose codes only.
  CHECK(refusal("29463-7", 70, "KG").reason == "bad_unit");
  CHECK(refusal("irregular-heartbeat", 1, "%").reason == "bad_unit");
  CHECK(refusal("irregular-heartbeat", 1, "{count}").reason == "bad_unit");
  CHECK(refusal("8867-4", 1, "mg/dL").reason == "bad_unit");
  CHECK(refusal("8310-5", 37, "").reason == "bad_unit");
  CHECK(refusal("41950-7", 1, "%").reason == "bad_unit");
}

TEST_CASE("a unit that is not a short printable token is not quoted", "[formats][units]") {
  auto e = refusal("29463-7", 70, std::string(100, 'x'));
  CHECK(e.reason == "bad_unit");
  CHECK(e.message.find("xxxx") == std::string::npos);
  e = refusal("29463-7", 70, "k\ng");
  CHECK(e.message.find('\n') == std::string::npos);
}

TEST_CASE("unknown codes, panels and non-finite values are refused", "[formats][units]") {
  auto e = refusal("1234-5", 1, "kg");
  CHECK(e.code == core::Code::kInvalidArgument);
  CHECK(e.reason == "unknown_code");
  CHECK(refusal("85354-9", 120, "mm[Hg]").reason == "bad_reading");
  CHECK(refusal("29463-7", std::nan(""), "kg").reason == "bad_reading");
  CHECK(refusal("29463-7", std::numeric_limits<double>::infinity(), "[lb_av]").reason == "bad_reading");
  // A finite value whose conversion overflows.
  CHECK(refusal("8867-4", 1e308, "/s").reason == "bad_reading");
}

namespace {

core::Reading bp_panel_kpa() {
  core::Reading r;
  r.code = "85354-9";
  r.components = {{"8480-6", 16, "kPa"}, {"8462-4", 10.6658, "kPa"}, {"irregular-heartbeat", 0, "1"}};
  return r;
}

core::Reading value_reading(std::string code, double value, std::string unit) {
  core::Reading r;
  r.code = std::move(code);
  r.value = value;
  r.unit = std::move(unit);
  return r;
}

}  // namespace

TEST_CASE("normalise converts readings and panel components in place", "[formats][units]") {
  std::vector<core::Reading> readings{value_reading("29463-7", 154.3, "[lb_av]"), bp_panel_kpa(),
                                      value_reading("59408-5", 0.97, "1")};
  REQUIRE(formats::normalise(readings));
  CHECK(readings[0].unit == "kg");
  CHECK(*readings[0].value == Approx(69.989).margin(0.001));

  const auto& bp = readings[1];
  CHECK_FALSE(bp.value);
  CHECK(bp.unit.empty());
  REQUIRE(bp.components.size() == 3);
  CHECK(bp.components[0].unit == "mm[Hg]");
  CHECK(bp.components[0].value == Approx(120.0).margin(0.05));
  CHECK(bp.components[1].unit == "mm[Hg]");
  CHECK(bp.components[1].value == Approx(80.0).margin(0.01));
  CHECK(bp.components[2].unit == "1");
  CHECK(bp.components[2].value == 0);

  CHECK(readings[2].unit == "%");
  CHECK(*readings[2].value == Approx(97.0));
}

TEST_CASE("normalise names the failing path and leaves the readings unchanged", "[formats][units]") {
  std::vector<core::Reading> readings{value_reading("8867-4", 1, "/s"), value_reading("8310-5", 98.6, "[degF]"),
                                      value_reading("29463-7", 70, "kPa")};
  const auto before = readings;
  auto s = formats::normalise(readings);
  REQUIRE_FALSE(s);
  CHECK(s.error().reason == "bad_unit");
  CHECK(s.error().message == R"(readings[2].unit "kPa" cannot be converted to "kg" (29463-7))");
  CHECK(readings == before);

  auto panel = bp_panel_kpa();
  panel.components[1].unit = "stone";
  readings = {panel};
  s = formats::normalise(readings);
  REQUIRE_FALSE(s);
  CHECK(s.error().message == R"(readings[0].components[1].unit "stone" cannot be converted to "mm[Hg]" (8462-4))");

  panel = bp_panel_kpa();
  panel.components[0].value = std::nan("");
  readings = {panel};
  s = formats::normalise(readings);
  REQUIRE_FALSE(s);
  CHECK(s.error().reason == "bad_reading");
  CHECK(s.error().message.rfind("readings[0].components[0].unit", 0) == 0);

  panel = bp_panel_kpa();
  panel.components[2].code = "1234-5";
  readings = {panel};
  s = formats::normalise(readings);
  REQUIRE_FALSE(s);
  CHECK(s.error().reason == "unknown_code");
  CHECK(s.error().message.rfind("readings[0].components[2].code", 0) == 0);

  panel = bp_panel_kpa();
  panel.unit = "kPa";
  readings = {panel};
  CHECK(formats::normalise(readings).error().reason == "bad_reading");

  auto no_value = value_reading("8867-4", 70, "/min");
  no_value.value.reset();
  readings = {no_value};
  CHECK(formats::normalise(readings).error().reason == "bad_reading");
}
