#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "telehub/core/bytes.h"
#include "telehub/envelope/payload.h"

using namespace telehub;
using namespace telehub::envelope;

namespace {

core::TimePoint at(const char* text) {
  auto t = core::parse_rfc3339(text);
  REQUIRE(t);
  return *t;
}

core::Reading simple(std::string code, double value, std::string unit, const char* time) {
  core::Reading r;
  r.code = std::move(code);
  r.value = value;
  r.unit = std::move(unit);
  r.time = at(time);
  return r;
}

core::Reading blood_pressure(double sys, double dia, const char* time) {
  core::Reading r;
  r.code = "85354-9";
  r.time = at(time);
  r.components = {{"8480-6", sys, "mm[Hg]"}, {"8462-4", dia, "mm[Hg]"}};
  return r;
}

Result<std::vector<core::Reading>> decode(std::string_view json) { return decode_payload(core::as_bytes(json)); }

// Wraps one reading object in a valid payload.
std::string with_reading(const std::string& reading) { return R"({"v":1,"readings":[)" + reading + "]}"; }

const std::string kGood = R"({"code":"8867-4","value":72,"unit":"/min","time":"2026-11-28T10:15:00.000Z"})";

}  // namespace

TEST_CASE("payload round trip: simple readings and a panel", "[envelope]") {
  std::vector<core::Reading> readings = {
      simple("8867-4", 72, "/min", "2026-11-28T10:15:00.000Z"),
      blood_pressure(128, 82, "2026-11-28T10:15:00.000Z"),
      simple("8310-5", 37.2, "Cel", "2026-11-28T10:16:00.123Z"),
      simple("29463-7", 81.35, "kg", "1999-12-31T23:59:59.999Z"),
      simple("x", 0.1, "1", "2026-01-01T00:00:00Z"),
      simple("x", -0.0, "1", "2026-01-01T00:00:00Z"),
      simple("x", 1e-300, "1", "2026-01-01T00:00:00Z"),
      simple("x", std::numeric_limits<double>::max(), "1", "2026-01-01T00:00:00Z"),
      simple("x", std::numeric_limits<double>::denorm_min(), "1", "2026-01-01T00:00:00Z"),
      simple("x", -9007199254740993.0, "1", "2026-01-01T00:00:00Z"),
      simple("x", 0.30000000000000004, "1", "0000-01-01T00:00:00Z"),
      simple("quote\"back\\slash\n\t\xc2\xb5", 1, "\xe2\x84\x83", "9999-12-31T23:59:59.999Z"),
      simple(std::string("nul\0inside", 10), 2, "u", "2026-01-01T00:00:00Z"),
  };
  auto json = encode_payload(readings);
  REQUIRE(json);
  auto back = decode(*json);
  REQUIRE(back);
  REQUIRE(back->size() == readings.size());
  for (std::size_t i = 0; i < readings.size(); ++i) {
    INFO(i);
    CHECK((*back)[i] == readings[i]);
    if (readings[i].value) CHECK(std::signbit(*(*back)[i].value) == std::signbit(*readings[i].value));
  }
}

TEST_CASE("payload encoding is compact and matches the protocol example", "[envelope]") {
  std::vector<core::Reading> readings = {simple("8867-4", 72, "/min", "2026-11-28T10:15:00.000Z"),
                                         blood_pressure(128, 82, "2026-11-28T10:15:00.000Z")};
  auto json = encode_payload(readings);
  REQUIRE(json);
  CHECK(*json ==
        R"({"v":1,"readings":[{"code":"8867-4","value":72,"unit":"/min","time":"2026-11-28T10:15:00.000Z"},)"
        R"({"code":"85354-9","time":"2026-11-28T10:15:00.000Z","components":[)"
        R"({"code":"8480-6","value":128,"unit":"mm[Hg]"},{"code":"8462-4","value":82,"unit":"mm[Hg]"}]}]})");
}

TEST_CASE("payload decoding accepts offsets, whitespace and unknown members", "[envelope]") {
  auto r = decode(R"( { "future" : {"a":[1,{"b":null}]}, "readings" : [
      {"code":"8867-4","note":"x","time":"2026-11-28T11:15:00.5+01:00","unit":"/min","value":7.2e1},
      {"code":"85354-9","time":"2026-11-28T10:15:00Z","components":[
        {"code":"8480-6","value":128,"unit":"mm[Hg]","method":[1]},{"code":"8462-4","value":82.0,"unit":"mm[Hg]"}]}
    ], "v" : 1 } )");
  REQUIRE(r);
  REQUIRE(r->size() == 2);
  CHECK((*r)[0] == simple("8867-4", 72, "/min", "2026-11-28T10:15:00.500Z"));
  CHECK((*r)[1] == blood_pressure(128, 82, "2026-11-28T10:15:00.000Z"));
}

TEST_CASE("payload accepts 1000 readings and 16 levels of nesting", "[envelope]") {
  std::vector<core::Reading> many(kMaxReadingsPerPayload, simple("8867-4", 60, "/min", "2026-11-28T10:15:00Z"));
  auto json = encode_payload(many);
  REQUIRE(json);
  auto back = decode(*json);
  REQUIRE(back);
  CHECK(back->size() == kMaxReadingsPerPayload);

  // Root (1) > readings (2) > reading (3) > "x" with 13 more levels = 16.
  const std::string nest = std::string(13, '[') + std::string(13, ']');
  CHECK(decode(with_reading(R"({"x":)" + nest + "," + kGood.substr(1))));
}

TEST_CASE("payload rejections name the JSON path and never the value", "[envelope]") {
  const std::string s = "SECRET";  // planted in every bad value that is a string
  struct Case {
    std::string json;
    std::string path;
  };
  const std::string too_many = [] {
    std::string j = R"({"v":1,"readings":[)";
    for (int i = 0; i < 1001; ++i) j += (i ? "," : "") + kGood;
    return j + "]}";
  }();
  const Case cases[] = {
      {"", "payload"},
      {"{", "payload"},
      {"SECRET", "payload"},
      {"[1]", "payload"},
      {"\"SECRET\"", "payload"},
      {with_reading(kGood) + " SECRET", "payload"},
      {with_reading(kGood) + "{}", "payload"},
      {R"({"v":1,"readings":[{"code":"SECRET)" "\xff" R"(","value":1,"unit":"u","time":"2026-11-28T10:15:00Z"}]})",
       "payload"},
      {with_reading(R"({"code":"8867-4","value":1e400,"unit":"/min","time":"2026-11-28T10:15:00Z"})"), "payload"},
      {with_reading(R"({"code":"8867-4","value":NaN,"unit":"/min","time":"2026-11-28T10:15:00Z"})"), "payload"},
      {with_reading(R"({"code":"8867-4","value":Infinity,"unit":"/min","time":"2026-11-28T10:15:00Z"})"), "payload"},
      {R"({"readings":[]})", "v"},
      {R"({"v":2,"readings":[]})", "v"},
      {R"({"v":"SECRET","readings":[]})", "v"},
      {R"({"v":1.0,"readings":[]})", "v"},
      {R"({"v":1})", "readings"},
      {R"({"v":1,"readings":"SECRET"})", "readings"},
      {R"({"v":1,"readings":{}})", "readings"},
      {R"({"v":1,"readings":[]})", "readings"},
      {too_many, "readings"},
      {with_reading(R"("SECRET")"), "readings[0]"},
      {R"({"v":1,"readings":[)" + kGood + "," + kGood + ",null]}", "readings[2]"},
      {with_reading(R"({"value":72,"unit":"/min","time":"2026-11-28T10:15:00Z"})"), "readings[0].code"},
      {with_reading(R"({"code":"","value":72,"unit":"/min","time":"2026-11-28T10:15:00Z"})"), "readings[0].code"},
      {with_reading(R"({"code":42,"value":72,"unit":"/min","time":"2026-11-28T10:15:00Z"})"), "readings[0].code"},
      {with_reading(R"({"code":"8867-4","value":72,"unit":"/min"})"), "readings[0].time"},
      {with_reading(R"({"code":"8867-4","value":72,"unit":"/min","time":"SECRET"})"), "readings[0].time"},
      {with_reading(R"({"code":"8867-4","value":72,"unit":"/min","time":"2026-11-28T10:15:00"})"), "readings[0].time"},
      {with_reading(R"({"code":"8867-4","value":72,"unit":"/min","time":"2026-02-30T10:15:00Z"})"), "readings[0].time"},
      {with_reading(R"({"code":"8867-4","value":72,"unit":"/min","time":1795860900})"), "readings[0].time"},
      {with_reading(R"({"code":"8867-4","unit":"/min","time":"2026-11-28T10:15:00Z"})"), "readings[0].value"},
      {with_reading(R"({"code":"8867-4","value":"SECRET","unit":"/min","time":"2026-11-28T10:15:00Z"})"),
       "readings[0].value"},
      {with_reading(R"({"code":"8867-4","value":null,"unit":"/min","time":"2026-11-28T10:15:00Z"})"), "readings[0].value"},
      {with_reading(R"({"code":"8867-4","value":72,"time":"2026-11-28T10:15:00Z"})"), "readings[0].unit"},
      {with_reading(R"({"code":"8867-4","value":72,"unit":"","time":"2026-11-28T10:15:00Z"})"), "readings[0].unit"},
      {with_reading(R"({"code":"8867-4","value":72,"unit":["SECRET"],"time":"2026-11-28T10:15:00Z"})"),
       "readings[0].unit"},
      {with_reading(R"({"code":"85354-9","time":"2026-11-28T10:15:00Z","components":[]})"), "readings[0].components"},
      {with_reading(R"({"code":"85354-9","time":"2026-11-28T10:15:00Z","components":"SECRET"})"),
       "readings[0].components"},
      {with_reading(R"({"code":"85354-9","time":"2026-11-28T10:15:00Z","value":1,"components":[{"code":"a","value":1,"unit":"u"}]})"),
       "readings[0].value"},
      {with_reading(R"({"code":"85354-9","time":"2026-11-28T10:15:00Z","unit":"u","components":[{"code":"a","value":1,"unit":"u"}]})"),
       "readings[0].unit"},
      {with_reading(R"({"code":"85354-9","time":"2026-11-28T10:15:00Z","components":[{"code":"a","value":1,"unit":"u"},7]})"),
       "readings[0].components[1]"},
      {with_reading(R"({"code":"85354-9","time":"2026-11-28T10:15:00Z","components":[{"value":1,"unit":"u"}]})"),
       "readings[0].components[0].code"},
      {with_reading(R"({"code":"85354-9","time":"2026-11-28T10:15:00Z","components":[{"code":"a","value":true,"unit":"u"}]})"),
       "readings[0].components[0].value"},
      {with_reading(R"({"code":"85354-9","time":"2026-11-28T10:15:00Z","components":[{"code":"a","value":1,"unit":"SECRET"},{"code":"b","value":1}]})"),
       "readings[0].components[1].unit"},
      {with_reading(R"({"x":)" + std::string(14, '[') + std::string(14, ']') + "," + kGood.substr(1)), "payload"},
      {std::string(100000, '[') + std::string(100000, ']'), "payload"},
      {R"({"v":1,"readings":[)" + std::string(50000, '{') + "]}", "payload"},
  };
  for (const Case& c : cases) {
    INFO(c.json.substr(0, 300));
    auto r = decode(c.json);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == core::Code::kInvalidArgument);
    CHECK(r.error().reason == "bad_payload");
    CHECK(r.error().message.rfind(c.path + ": ", 0) == 0);
    CHECK(r.error().message.find(s) == std::string::npos);
    CHECK(r.error().message.find("8867") == std::string::npos);
  }
}

TEST_CASE("brackets inside strings do not count as nesting", "[envelope]") {
  const std::string deep_text = std::string(40, '[') + "\\\"" + std::string(40, '{');
  CHECK(decode(with_reading(R"({"note":")" + deep_text + R"(",)" + kGood.substr(1))));
}

TEST_CASE("encode refuses what decode would refuse", "[envelope]") {
  const auto t = "2026-11-28T10:15:00Z";
  core::Reading nan = simple("8867-4", std::nan(""), "/min", t);
  core::Reading inf = simple("8867-4", INFINITY, "/min", t);
  core::Reading no_code = simple("", 1, "/min", t);
  core::Reading no_unit = simple("8867-4", 1, "", t);
  core::Reading no_value = simple("8867-4", 1, "/min", t);
  no_value.value.reset();
  core::Reading both = blood_pressure(120, 80, t);
  both.value = 1;
  core::Reading panel_unit = blood_pressure(120, 80, t);
  panel_unit.unit = "mm[Hg]";
  core::Reading bad_component = blood_pressure(120, std::nan(""), t);
  core::Reading bad_utf8 = simple("8867-4", 1, "\xff", t);
  core::Reading far_future = simple("8867-4", 1, "/min", t);
  far_future.time = core::from_unix_millis(253402300800000);  // 10000-01-01
  core::Reading before_year_0 = simple("8867-4", 1, "/min", t);
  before_year_0.time = core::from_unix_millis(-62167219200001);

  const std::pair<core::Reading, std::string> cases[] = {
      {nan, "readings[0].value"},           {inf, "readings[0].value"},
      {no_code, "readings[0].code"},        {no_unit, "readings[0].unit"},
      {no_value, "readings[0].value"},      {both, "readings[0].value"},
      {panel_unit, "readings[0].unit"},     {bad_component, "readings[0].components[1].value"},
      {bad_utf8, "readings[0].unit"},       {far_future, "readings[0].time"},
      {before_year_0, "readings[0].time"},
  };
  for (const auto& [reading, path] : cases) {
    INFO(path);
    const std::vector<core::Reading> one = {reading};
    auto json = encode_payload(one);
    REQUIRE_FALSE(json);
    CHECK(json.error().reason == "bad_payload");
    CHECK(json.error().message.rfind(path + ": ", 0) == 0);
  }

  CHECK(encode_payload({}).error().message.rfind("readings: ", 0) == 0);
  std::vector<core::Reading> many(kMaxReadingsPerPayload + 1, simple("8867-4", 60, "/min", t));
  CHECK(encode_payload(many).error().message.rfind("readings: ", 0) == 0);
}
