// Tests of device mapping templates (formats/include/telehub/formats/mapping.h): the shipped
// templates in config/mappings against their vendor samples (tests/formats/data/vendor), the
// template language feature by feature, template validation, payload errors, and that fields
// the template does not name never reach the output.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <rapidjson/document.h>

#include "telehub/core/codes.h"
#include "telehub/core/time.h"
#include "telehub/formats/mapping.h"
#include "test_support.h"

namespace fs = std::filesystem;
using telehub::core::Component;
using telehub::core::Reading;
using telehub::core::TimePoint;
using telehub::formats::Decoded;
using telehub::formats::MappingSet;
using telehub::formats::MappingTemplate;

namespace {

const TimePoint kNow = telehub::core::from_unix_millis(1795860000000);  // 2026-11-28T10:00:00Z

fs::path mappings_dir() { return telehub::testing::source_dir() / "config" / "mappings"; }
fs::path vendor_dir() { return telehub::testing::source_dir() / "tests" / "formats" / "data" / "vendor"; }

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::span<const std::uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

TimePoint at(std::string_view rfc3339) {
  auto t = telehub::core::parse_rfc3339(rfc3339);
  REQUIRE(t);
  return *t;
}

MappingTemplate shipped(const std::string& name) {
  auto t = MappingTemplate::parse(read_text(mappings_dir() / (name + ".json")), name + ".json");
  INFO((t ? std::string() : t.error().to_string()));
  REQUIRE(t);
  return std::move(*t);
}

Decoded apply_sample(const MappingTemplate& t, const std::string& sample) {
  const std::string text = read_text(vendor_dir() / (sample + ".json"));
  REQUIRE(!text.empty());
  auto d = t.apply(bytes(text), kNow);
  INFO((d ? std::string() : d.error().to_string()));
  REQUIRE(d);
  return std::move(*d);
}

MappingTemplate inline_template(const std::string& json) {
  auto t = MappingTemplate::parse(json, "inline.json");
  INFO((t ? std::string() : t.error().to_string()));
  REQUIRE(t);
  return std::move(*t);
}

telehub::Result<Decoded> run(const MappingTemplate& t, const std::string& payload) { return t.apply(bytes(payload), kNow); }

Reading single(std::string code, double value, std::string unit, TimePoint time) {
  Reading r;
  r.code = std::move(code);
  r.value = value;
  r.unit = std::move(unit);
  r.time = time;
  return r;
}

Reading panel(std::string code, std::vector<Component> components, TimePoint time) {
  Reading r;
  r.code = std::move(code);
  r.components = std::move(components);
  r.time = time;
  return r;
}

// A one-set template around `readings` (a JSON array text), with an optional set prefix.
std::string one_set(const std::string& readings, const std::string& set_members = "") {
  return R"({"template": "t", "sets": [{)" + set_members + R"("readings": )" + readings + "}]}";
}

// Every string value (not member name) in a JSON document.
void collect_strings(const rapidjson::Value& v, std::vector<std::string>& out) {
  if (v.IsString()) out.emplace_back(v.GetString(), v.GetStringLength());
  if (v.IsArray())
    for (const auto& e : v.GetArray()) collect_strings(e, out);
  if (v.IsObject())
    for (const auto& m : v.GetObject()) collect_strings(m.value, out);
}

// Every string of a Decoded, with numbers as text too (a BSN could hide in a value).
std::vector<std::string> output_strings(const Decoded& d) {
  std::vector<std::string> out{d.device.manufacturer, d.device.model, d.device.serial};
  for (const auto& r : d.readings) {
    out.insert(out.end(), {r.code, r.unit, r.subject, r.device, telehub::core::format_rfc3339(r.time)});
    if (r.value) out.push_back(std::to_string(*r.value));
    for (const auto& c : r.components) out.insert(out.end(), {c.code, c.unit, std::to_string(c.value)});
  }
  return out;
}

}  // namespace

TEST_CASE("every shipped mapping template loads from config/mappings", "[formats][mapping]") {
  auto set = MappingSet::load_dir(mappings_dir());
  INFO((set ? std::string() : set.error().to_string()));
  REQUIRE(set);
  const std::vector<std::string> expected{"acme-bp-cuff", "fitband-wearable", "oxi-pulse-oximeter", "tenso-scale-lb"};
  for (const auto& name : expected) {
    INFO(name);
    const MappingTemplate* t = set->find(name);
    REQUIRE(t != nullptr);
    CHECK(t->name() == name);
  }
  CHECK(set->names().size() >= expected.size());
  CHECK(set->find("nonexistent") == nullptr);
}

TEST_CASE("acme blood-pressure cuff sample in mmHg decodes into a panel and a pulse", "[formats][mapping]") {
  const Decoded d = apply_sample(shipped("acme-bp-cuff"), "acme-bp-cuff");
  const TimePoint t = at("2026-11-28T07:15:00Z");
  const std::vector<Reading> expected{
      panel("85354-9", {{"8480-6", 128, "mm[Hg]"}, {"8462-4", 82, "mm[Hg]"}, {"irregular-heartbeat", 1, "1"}}, t),
      single("8867-4", 71, "/min", t)};
  CHECK(d.readings == expected);
  CHECK(d.device == telehub::formats::DeviceInfo{"Acme", "BP-200", "ACM20481234"});
}

TEST_CASE("acme blood-pressure cuff sample in kPa keeps kPa and skips the missing flag", "[formats][mapping]") {
  const Decoded d = apply_sample(shipped("acme-bp-cuff"), "acme-bp-cuff-kpa");
  const TimePoint t = at("2026-11-28T19:40:12.250Z");
  const std::vector<Reading> expected{panel("85354-9", {{"8480-6", 17.1, "kPa"}, {"8462-4", 10.9, "kPa"}}, t),
                                      single("8867-4", 64, "/min", t)};
  CHECK(d.readings == expected);
  CHECK(d.device.serial == "ACM20485555");
}

TEST_CASE("tenso scale sample decodes into a weight in pounds", "[formats][mapping]") {
  const Decoded d = apply_sample(shipped("tenso-scale-lb"), "tenso-scale-lb");
  REQUIRE(d.readings.size() == 1);
  const Reading& r = d.readings[0];
  CHECK(r.code == "29463-7");
  REQUIRE(r.value);
  CHECK(*r.value == 1874 * 0.1);
  CHECK(*r.value == Approx(187.4));
  CHECK(r.unit == "[lb_av]");
  CHECK(r.time == at("2026-11-28T07:12:30.123Z"));
  CHECK(r.components.empty());
  // A numeric serial becomes its decimal text.
  CHECK(d.device == telehub::formats::DeviceInfo{"Tenso", "Tenso S3-US", "40021177"});
}

TEST_CASE("oxi pulse oximeter sample decodes SpO2, pulse and perfusion index", "[formats][mapping]") {
  const Decoded d = apply_sample(shipped("oxi-pulse-oximeter"), "oxi-pulse-oximeter");
  const TimePoint t = at("2026-11-28T08:55:00Z");
  const std::vector<Reading> expected{single("59408-5", 96, "%", t), single("8867-4", 68, "/min", t),
                                      single("perfusion-index", 2.45, "%", t)};
  CHECK(d.readings == expected);
  CHECK(d.device == telehub::formats::DeviceInfo{"Oxi", "Oxi F4", "OXF4-000731"});
}

TEST_CASE("fitband wearable sample decodes a heart-rate batch and the daily steps", "[formats][mapping]") {
  const Decoded d = apply_sample(shipped("fitband-wearable"), "fitband-wearable");
  const std::vector<Reading> expected{single("8867-4", 64, "/min", at("2026-11-28T08:00:00Z")),
                                      single("8867-4", 66, "/min", at("2026-11-28T08:01:00Z")),
                                      single("8867-4", 71, "/min", at("2026-11-28T08:02:00.500Z")),
                                      single("41950-7", 8421, "{count}", at("2026-11-27T23:59:59Z"))};
  CHECK(d.readings == expected);
  CHECK(d.device == telehub::formats::DeviceInfo{"Fitband", "Fitband Pulse 2", "FB-99812"});
}

TEST_CASE("vendor identifiers never appear in the decoded output", "[formats][mapping]") {
  struct Case {
    std::string name, sample;
    std::vector<std::string> mapped;  // payload strings the template reads on purpose
  };
  // Besides these, the device model and serial are mapped.
  const std::vector<Case> cases{{"acme-bp-cuff", "acme-bp-cuff", {"mmHg", "2026-11-28T08:15:00+01:00"}},
                                {"acme-bp-cuff", "acme-bp-cuff-kpa", {"kPa", "2026-11-28T19:40:12.250Z"}},
                                {"tenso-scale-lb", "tenso-scale-lb", {}},
                                {"oxi-pulse-oximeter", "oxi-pulse-oximeter", {"96", "68", "2.45"}},
                                {"fitband-wearable", "fitband-wearable", {}}};
  std::vector<MappingTemplate> all;
  for (const char* n : {"acme-bp-cuff", "tenso-scale-lb", "oxi-pulse-oximeter", "fitband-wearable"}) all.push_back(shipped(n));
  for (const auto& [name, sample, mapped] : cases) {
    INFO(sample);
    const std::string text = read_text(vendor_dir() / (sample + ".json"));
    rapidjson::Document doc;
    doc.Parse(text.data(), text.size());
    REQUIRE(!doc.HasParseError());
    std::vector<std::string> payload_strings;
    collect_strings(doc, payload_strings);
    // The samples carry a BSN and an e-mail address; make sure the check below would see them.
    CHECK(std::any_of(payload_strings.begin(), payload_strings.end(), [](const std::string& s) {
      return s.size() == 9 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
    }));
    CHECK(std::any_of(payload_strings.begin(), payload_strings.end(),
                      [](const std::string& s) { return s.find('@') != std::string::npos; }));

    const Decoded d = apply_sample(shipped(name), sample);
    for (const std::string& in : payload_strings) {
      if (in == d.device.serial || in == d.device.model) continue;
      if (std::find(mapped.begin(), mapped.end(), in) != mapped.end()) continue;
      for (const std::string& out : output_strings(d)) {
        INFO("payload string " << in << " found in output " << out);
        CHECK(out.find(in) == std::string::npos);
      }
    }
    // Applying the sample with every other template: no error message quotes a payload string.
    for (const MappingTemplate& other : all) {
      auto r = other.apply(bytes(text), kNow);
      if (r) continue;
      for (const std::string& in : payload_strings) {
        if (in.size() < 4) continue;
        INFO(other.name() << ": " << r.error().to_string());
        CHECK(r.error().to_string().find(in) == std::string::npos);
      }
    }
  }
}

TEST_CASE("match conditions compare strings, numbers and booleans and test existence", "[formats][mapping]") {
  const std::string readings = R"([{"code": "8867-4", "value": {"pointer": "/v"}, "unit": {"const": "/min"}}])";
  const auto t = inline_template(one_set(readings, R"("match": [{"pointer": "/kind", "equals": "hr"},
      {"pointer": "/schema", "equals": 2}, {"pointer": "/ok", "equals": true},
      {"pointer": "/sn", "exists": true}, {"pointer": "/error", "exists": false}],)"));
  CHECK(run(t, R"({"kind": "hr", "schema": 2, "ok": true, "sn": "x", "v": 60})"));
  CHECK(run(t, R"({"kind": "hr", "schema": 2.0, "ok": true, "sn": 5, "v": 60})"));
  const std::vector<std::string> misses{
      R"({"kind": "HR", "schema": 2, "ok": true, "sn": "x", "v": 60})",
      R"({"kind": "hr", "schema": "2", "ok": true, "sn": "x", "v": 60})",
      R"({"kind": "hr", "schema": 3, "ok": true, "sn": "x", "v": 60})",
      R"({"kind": "hr", "schema": 2, "ok": 1, "sn": "x", "v": 60})",
      R"({"kind": "hr", "schema": 2, "ok": false, "sn": "x", "v": 60})",
      R"({"kind": "hr", "schema": 2, "ok": true, "v": 60})",
      R"({"kind": "hr", "schema": 2, "ok": true, "sn": null, "v": 60})",
      R"({"kind": "hr", "schema": 2, "ok": true, "sn": "x", "error": 1, "v": 60})",
      R"([1, 2, 3])",
  };
  for (const auto& payload : misses) {
    INFO(payload);
    auto r = run(t, payload);
    REQUIRE(!r);
    CHECK(r.error().reason == "no_match");
    CHECK(r.error().code == telehub::core::Code::kInvalidArgument);
    CHECK(r.error().message == "template t: no set matches the payload");
  }
}

TEST_CASE("a set without match applies to every payload and one without time uses now", "[formats][mapping]") {
  const auto t = inline_template(one_set(R"([{"code": "8867-4", "value": {"const": 60}, "unit": {"const": "/min"}}])"));
  auto d = run(t, "{}");
  REQUIRE(d);
  CHECK(d->readings == std::vector<Reading>{single("8867-4", 60, "/min", kNow)});
  CHECK(d->device.empty());
}

TEST_CASE("each processes every array element relative to the element", "[formats][mapping]") {
  const auto t = inline_template(one_set(R"([{"code": "8867-4", "value": {"pointer": ""}, "unit": {"const": "/min"}}])",
                                         R"("each": "/hr/list",)"));
  auto d = run(t, R"({"hr": {"list": [60, 61.5, 62]}})");
  REQUIRE(d);
  REQUIRE(d->readings.size() == 3);
  CHECK(*d->readings[1].value == 61.5);

  for (const char* payload : {R"({"hr": {"list": {"0": 60}}})", R"({"hr": {}})", R"({"hr": {"list": "60"}})"}) {
    INFO(payload);
    auto r = run(t, payload);
    REQUIRE(!r);
    CHECK(r.error().reason == "bad_payload");
    CHECK(r.error().message == "template t: sets[0].each: /hr/list is not an array");
  }
  // An element of the wrong type names its index, not its content.
  auto r = run(t, R"({"hr": {"list": [60, "secret-text"]}})");
  REQUIRE(!r);
  CHECK(r.error().message == "template t: sets[0].each[1].readings[0].value: (whole element) is not a number");
  // An empty batch gives no readings, and a message with no readings is refused.
  auto empty = run(t, R"({"hr": {"list": []}})");
  REQUIRE(!empty);
  CHECK(empty.error().reason == "bad_payload");
}

TEST_CASE("optional readings and components are skipped when missing, required ones are not", "[formats][mapping]") {
  const auto t = inline_template(one_set(R"([
      {"code": "8867-4", "value": {"pointer": "/hr"}, "unit": {"const": "/min"}, "optional": true},
      {"code": "85354-9", "components": [
         {"code": "8480-6", "value": {"pointer": "/sys"}, "unit": {"const": "mm[Hg]"}},
         {"code": "8462-4", "value": {"pointer": "/dia"}, "unit": {"const": "mm[Hg]"}, "optional": true}],
       "optional": true},
      {"code": "29463-7", "value": {"pointer": "/w"}, "unit": {"pointer": "/wu"}}])"));
  auto all = run(t, R"({"hr": 60, "sys": 120, "dia": 80, "w": 70, "wu": "kg"})");
  REQUIRE(all);
  CHECK(all->readings.size() == 3);

  auto some = run(t, R"({"sys": 120, "w": 70, "wu": "kg", "hr": null})");
  REQUIRE(some);
  REQUIRE(some->readings.size() == 2);
  CHECK(some->readings[0] == panel("85354-9", {{"8480-6", 120, "mm[Hg]"}}, kNow));
  CHECK(some->readings[1] == single("29463-7", 70, "kg", kNow));

  // A required component missing in an optional panel skips the panel.
  auto no_panel = run(t, R"({"dia": 80, "w": 70, "wu": "kg"})");
  REQUIRE(no_panel);
  CHECK(no_panel->readings == std::vector<Reading>{single("29463-7", 70, "kg", kNow)});

  auto missing = run(t, R"({"hr": 60, "w": 70})");
  REQUIRE(!missing);
  CHECK(missing.error().reason == "bad_payload");
  CHECK(missing.error().code == telehub::core::Code::kInvalidArgument);
  CHECK(missing.error().message == "template t: sets[0].readings[2].unit: /wu missing");

  auto missing_value = run(t, R"({"wu": "kg"})");
  REQUIRE(!missing_value);
  CHECK(missing_value.error().message == "template t: sets[0].readings[2].value: /w missing");

  // Optional means "may be missing", not "may be wrong".
  auto wrong = run(t, R"({"hr": "sixty", "w": 70, "wu": "kg"})");
  REQUIRE(!wrong);
  CHECK(wrong.error().message == "template t: sets[0].readings[0].value: /hr is not a number");
}

TEST_CASE("a required component missing from a required panel is a payload error", "[formats][mapping]") {
  const auto t = inline_template(one_set(R"([{"code": "85354-9", "components": [
      {"code": "8480-6", "value": {"pointer": "/sys"}, "unit": {"const": "mm[Hg]"}},
      {"code": "8462-4", "value": {"pointer": "/dia"}, "unit": {"const": "mm[Hg]"}}]}])"));
  auto r = run(t, R"({"sys": 120})");
  REQUIRE(!r);
  CHECK(r.error().message == "template t: sets[0].readings[0].components[1].value: /dia missing");
}

TEST_CASE("value sources scale numbers and read booleans and decimal strings", "[formats][mapping]") {
  const auto t = inline_template(one_set(R"([
      {"code": "8310-5", "value": {"pointer": "/temp", "scale": 0.5}, "unit": {"const": "Cel"}},
      {"code": "irregular-heartbeat", "value": {"pointer": "/flag", "type": "boolean"}, "unit": {"const": "1"}},
      {"code": "59408-5", "value": {"pointer": "/spo2", "type": "string-number"}, "unit": {"const": "%"}},
      {"code": "8867-4", "value": {"pointer": "/hr", "type": "number"}, "unit": {"const": "/min"}}])"));
  auto d = run(t, R"({"temp": 75, "flag": false, "spo2": "97.5", "hr": 61})");
  REQUIRE(d);
  REQUIRE(d->readings.size() == 4);
  CHECK(*d->readings[0].value == 37.5);
  CHECK(*d->readings[1].value == 0);
  CHECK(*d->readings[2].value == 97.5);
  CHECK(*d->readings[3].value == 61);
  auto yes = run(t, R"({"temp": 75, "flag": true, "spo2": "1e2", "hr": 61})");
  REQUIRE(yes);
  CHECK(*yes->readings[1].value == 1);
  CHECK(*yes->readings[2].value == 100);

  const std::vector<std::pair<std::string, std::string>> bad{
      {R"({"temp": "75", "flag": true, "spo2": "97", "hr": 61})", "readings[0].value: /temp is not a number"},
      {R"({"temp": 75, "flag": 1, "spo2": "97", "hr": 61})", "readings[1].value: /flag is not a boolean"},
      {R"({"temp": 75, "flag": "true", "spo2": "97", "hr": 61})", "readings[1].value: /flag is not a boolean"},
      {R"({"temp": 75, "flag": true, "spo2": 97, "hr": 61})", "readings[2].value: /spo2 is not a string"},
      {R"({"temp": 75, "flag": true, "spo2": " 97", "hr": 61})", "readings[2].value: /spo2 is not a decimal number"},
      {R"({"temp": 75, "flag": true, "spo2": "97 ", "hr": 61})", "readings[2].value: /spo2 is not a decimal number"},
      {R"({"temp": 75, "flag": true, "spo2": "+97", "hr": 61})", "readings[2].value: /spo2 is not a decimal number"},
      {R"({"temp": 75, "flag": true, "spo2": "97%", "hr": 61})", "readings[2].value: /spo2 is not a decimal number"},
      {R"({"temp": 75, "flag": true, "spo2": "", "hr": 61})", "readings[2].value: /spo2 is not a decimal number"},
      {R"({"temp": 75, "flag": true, "spo2": "0x61", "hr": 61})", "readings[2].value: /spo2 is not a decimal number"},
      {R"({"temp": 75, "flag": true, "spo2": "1e999", "hr": 61})", "readings[2].value: /spo2 is not a decimal number"},
      {R"({"temp": 75, "flag": true, "spo2": "inf", "hr": 61})", "readings[2].value: /spo2 is not a finite number"},
      {R"({"temp": 75, "flag": true, "spo2": "nan", "hr": 61})", "readings[2].value: /spo2 is not a finite number"},
      {R"({"temp": 75, "flag": true, "spo2": "97", "hr": true})", "readings[3].value: /hr is not a number"},
      {R"({"temp": 75, "flag": true, "spo2": "97", "hr": [61]})", "readings[3].value: /hr is not a number"},
  };
  for (const auto& [payload, message] : bad) {
    INFO(payload);
    auto r = run(t, payload);
    REQUIRE(!r);
    CHECK(r.error().reason == "bad_payload");
    CHECK(r.error().message == "template t: sets[0]." + message);
  }
  // Scaling past the double range is refused, not turned into infinity.
  const auto big = inline_template(one_set(R"([{"code": "8867-4", "value": {"pointer": "/v", "scale": 1e300},
      "unit": {"const": "/min"}}])"));
  auto r = run(big, R"({"v": 1e100})");
  REQUIRE(!r);
  CHECK(r.error().message == "template t: sets[0].readings[0].value: /v is not a finite number");
}

TEST_CASE("unit sources map vendor unit strings to UCUM and refuse unmapped ones", "[formats][mapping]") {
  const auto t = inline_template(one_set(R"([{"code": "29463-7", "value": {"pointer": "/w"},
      "unit": {"pointer": "/u", "map": {"lbs": "[lb_av]", "kg": "kg", "KG": "kg"}}}])"));
  auto lbs = run(t, R"({"w": 150, "u": "lbs"})");
  REQUIRE(lbs);
  CHECK(lbs->readings[0].unit == "[lb_av]");
  auto kg = run(t, R"({"w": 70, "u": "KG"})");
  REQUIRE(kg);
  CHECK(kg->readings[0].unit == "kg");

  for (const char* payload : {R"({"w": 150, "u": "pounds"})", R"({"w": 150, "u": "Lbs"})", R"({"w": 150, "u": ""})"}) {
    INFO(payload);
    auto r = run(t, payload);
    REQUIRE(!r);
    CHECK(r.error().reason == "bad_unit");
    CHECK(r.error().code == telehub::core::Code::kInvalidArgument);
    CHECK(r.error().message == "template t: sets[0].readings[0].unit: /u is not a unit of the map");
  }
  auto not_string = run(t, R"({"w": 150, "u": 1})");
  REQUIRE(!not_string);
  CHECK(not_string.error().reason == "bad_payload");

  // Without a map the unit is passed on as sent (units::normalise judges it later).
  const auto raw = inline_template(one_set(R"([{"code": "29463-7", "value": {"pointer": "/w"}, "unit": {"pointer": "/u"}}])"));
  auto passed = run(raw, R"({"w": 150, "u": "[lb_av]"})");
  REQUIRE(passed);
  CHECK(passed->readings[0].unit == "[lb_av]");
  auto empty = run(raw, R"({"w": 150, "u": ""})");
  REQUIRE(!empty);
  CHECK(empty.error().reason == "bad_unit");
}

TEST_CASE("times are read as RFC 3339, unix seconds or unix milliseconds", "[formats][mapping]") {
  const auto make = [](const char* format) {
    return inline_template(one_set(R"([{"code": "8867-4", "value": {"const": 60}, "unit": {"const": "/min"}}])",
                                   std::string(R"("time": {"pointer": "/ts", "format": ")") + format + R"("},)"));
  };
  const auto rfc = make("rfc3339");
  const auto s = make("unix_s");
  const auto ms = make("unix_ms");
  const auto time_of = [](const MappingTemplate& t, const std::string& payload) {
    auto d = run(t, payload);
    INFO(payload << (d ? std::string() : " " + d.error().to_string()));
    REQUIRE(d);
    return d->readings.at(0).time;
  };
  CHECK(time_of(rfc, R"({"ts": "2026-11-28T10:15:00.5+02:00"})") == at("2026-11-28T08:15:00.500Z"));
  CHECK(time_of(s, R"({"ts": 1795849950})") == at("2026-11-28T07:12:30Z"));
  CHECK(time_of(s, R"({"ts": 1795849950.25})") == at("2026-11-28T07:12:30.250Z"));
  CHECK(time_of(s, R"({"ts": 0})") == telehub::core::from_unix_millis(0));
  CHECK(time_of(ms, R"({"ts": 1795849950123})") == at("2026-11-28T07:12:30.123Z"));
  CHECK(time_of(ms, R"({"ts": 1795849950123.9})") == at("2026-11-28T07:12:30.123Z"));

  const std::vector<std::tuple<const MappingTemplate*, std::string, std::string>> bad{
      {&rfc, R"({})", "/ts missing"},
      {&rfc, R"({"ts": 1795849950})", "/ts is not a string"},
      {&rfc, R"({"ts": "2026-11-28 10:15"})", "/ts is not an RFC 3339 date-time"},
      {&rfc, R"({"ts": "2026-02-30T10:15:00Z"})", "/ts is not an RFC 3339 date-time"},
      {&s, R"({"ts": "1795849950"})", "/ts is not a number"},
      {&s, R"({"ts": -1})", "/ts is out of range"},
      {&s, R"({"ts": -0.5})", "/ts is out of range"},
      {&s, R"({"ts": 253402300800})", "/ts is out of range"},
      {&s, R"({"ts": 1e300})", "/ts is out of range"},
      {&s, R"({"ts": 18446744073709551615})", "/ts is out of range"},
      {&ms, R"({"ts": 9223372036854775807})", "/ts is out of range"},
      {&ms, R"({"ts": -9223372036854775808})", "/ts is out of range"},
  };
  for (const auto& [t, payload, message] : bad) {
    INFO(payload);
    auto r = run(*t, payload);
    REQUIRE(!r);
    CHECK(r.error().reason == "bad_payload");
    CHECK(r.error().message == "template t: sets[0].time: " + message);
  }
}

TEST_CASE("JSON pointers follow RFC 6901 escapes and array indices", "[formats][mapping]") {
  const auto t = inline_template(one_set(R"([
      {"code": "8867-4", "value": {"pointer": "/a~1b/m~0n"}, "unit": {"const": "/min"}},
      {"code": "59408-5", "value": {"pointer": "/list/1"}, "unit": {"const": "%"}},
      {"code": "8310-5", "value": {"pointer": "/list/01"}, "unit": {"const": "Cel"}, "optional": true},
      {"code": "9279-1", "value": {"pointer": "/list/-"}, "unit": {"const": "/min"}, "optional": true},
      {"code": "29463-7", "value": {"pointer": "/"}, "unit": {"const": "kg"}, "optional": true}])"));
  auto d = run(t, R"({"a/b": {"m~n": 60}, "list": [90, 97], "": 70})");
  REQUIRE(d);
  REQUIRE(d->readings.size() == 3);
  CHECK(*d->readings[0].value == 60);
  CHECK(*d->readings[1].value == 97);
  CHECK(d->readings[2].code == "29463-7");  // "/" is the member named ""
  CHECK(*d->readings[2].value == 70);
}

TEST_CASE("device metadata comes from constants, strings and integer serials", "[formats][mapping]") {
  const auto t = inline_template(R"({"template": "t", "device": {"manufacturer": {"const": "Acme"},
      "model": {"pointer": "/m"}, "serial": {"pointer": "/sn"}},
      "sets": [{"readings": [{"code": "8867-4", "value": {"const": 60}, "unit": {"const": "/min"}}]}]})");
  auto d = run(t, R"({"m": "X1", "sn": 12345678901234})");
  REQUIRE(d);
  CHECK(d->device == telehub::formats::DeviceInfo{"Acme", "X1", "12345678901234"});
  auto absent = run(t, R"({})");
  REQUIRE(absent);
  CHECK(absent->device == telehub::formats::DeviceInfo{"Acme", "", ""});
  auto negative = run(t, R"({"sn": -5})");
  REQUIRE(negative);
  CHECK(negative->device.serial == "-5");

  for (const char* payload : {R"({"sn": 1.5})", R"({"sn": true})", R"({"sn": {"a": 1}})"}) {
    INFO(payload);
    auto r = run(t, payload);
    REQUIRE(!r);
    CHECK(r.error().message == "template t: device.serial: /sn is not a string or an integer");
  }
  const std::string long_serial = R"({"sn": ")" + std::string(129, 'x') + R"("})";
  auto r = run(t, long_serial);
  REQUIRE(!r);
  CHECK(r.error().reason == "bad_payload");
  CHECK(r.error().message == "template t: device.serial: /sn is longer than 128 characters");
  CHECK(run(t, R"({"sn": ")" + std::string(128, 'x') + R"("})"));
}

TEST_CASE("a payload that is not valid JSON is refused as bad_payload", "[formats][mapping]") {
  const auto t = inline_template(one_set(R"([{"code": "8867-4", "value": {"const": 60}, "unit": {"const": "/min"}}])"));
  for (const std::string& payload : std::vector<std::string>{"", "{", "nope", "{\"a\": 1,}", std::string(40, '[') + std::string(40, ']')}) {
    auto r = run(t, payload);
    REQUIRE(!r);
    CHECK(r.error().reason == "bad_payload");
  }
}

TEST_CASE("more than kMaxReadings readings in one message are refused", "[formats][mapping]") {
  const auto t = inline_template(one_set(R"([{"code": "8867-4", "value": {"pointer": ""}, "unit": {"const": "/min"}}])",
                                         R"("each": "/hr",)"));
  const auto payload = [](std::size_t n) {
    std::string s = R"({"hr": [)";
    for (std::size_t i = 0; i < n; ++i) s += (i ? ",60" : "60");
    return s + "]}";
  };
  auto ok = run(t, payload(telehub::formats::kMaxReadings));
  REQUIRE(ok);
  CHECK(ok->readings.size() == telehub::formats::kMaxReadings);
  auto r = run(t, payload(telehub::formats::kMaxReadings + 1));
  REQUIRE(!r);
  CHECK(r.error().reason == "bad_payload");
  CHECK(r.error().message == "template t: sets[0].each[1000]: more than 1000 readings");
}

TEST_CASE("template validation names the source and the path of each problem", "[formats][mapping]") {
  const std::string ok_reading = R"({"code": "8867-4", "value": {"pointer": "/v"}, "unit": {"const": "/min"}})";
  const auto with_reading = [](const std::string& reading) { return one_set("[" + reading + "]"); };
  std::string too_many_sets = R"({"template": "t", "sets": [)";
  for (int i = 0; i < 17; ++i) too_many_sets += (i ? "," : "") + std::string(R"({"readings": [)") + ok_reading + "]}";
  too_many_sets += "]}";
  std::string too_many_readings = "[";
  for (int i = 0; i < 33; ++i) too_many_readings += (i ? "," : "") + ok_reading;
  too_many_readings += "]";

  const std::vector<std::pair<std::string, std::string>> cases{
      {"{", "not valid JSON"},
      {"[]", "must be a JSON object"},
      {R"({"sets": [{"readings": [)" + ok_reading + "]}]}", "template: missing"},
      {R"({"template": "Acme_BP", "sets": []})", "template: must be 1..64 characters"},
      {R"({"template": "", "sets": []})", "template: must be 1..64 characters"},
      {R"({"template": ")" + std::string(65, 'a') + R"(", "sets": []})", "template: must be 1..64 characters"},
      {R"({"template": "t"})", "sets: missing"},
      {R"({"template": "t", "sets": []})", "sets: must be an array of 1..16 sets"},
      {R"({"template": "t", "sets": {}})", "sets: must be an array of 1..16 sets"},
      {too_many_sets, "sets: must be an array of 1..16 sets"},
      {R"({"template": "t", "set": [], "sets": [{"readings": [)" + ok_reading + "]}]}", "(template): unknown member"},
      {R"({"template": "t", "template": "u", "sets": [{"readings": [)" + ok_reading + "]}]}", "(template): duplicate member"},
      {R"({"template": "t", "description": 5, "sets": [{"readings": [)" + ok_reading + "]}]}", "description: must be a string"},
      {R"({"template": "t", "device": {"serialNumber": {"pointer": "/sn"}}, "sets": [{"readings": [)" + ok_reading + "]}]}",
       "device: unknown member"},
      {R"({"template": "t", "device": {"serial": {"pointer": "sn"}}, "sets": [{"readings": [)" + ok_reading + "]}]}",
       "device.serial.pointer: not a valid JSON pointer"},
      {R"({"template": "t", "device": {"model": {"const": 5}}, "sets": [{"readings": [)" + ok_reading + "]}]}",
       "device.model.const: must be a string of 1..128 characters"},
      {one_set("[]"), "sets[0].readings: must be an array of 1..32 readings"},
      {one_set(too_many_readings), "sets[0].readings: must be an array of 1..32 readings"},
      {R"({"template": "t", "sets": [{}]})", "sets[0].readings: missing"},
      {R"({"template": "t", "sets": [{"reading": [], "readings": [)" + ok_reading + "]}]}", "sets[0]: unknown member"},
      {one_set("[" + ok_reading + "]", R"("match": [],)"), "sets[0].match: must be an array of 1..16 conditions"},
      {one_set("[" + ok_reading + "]", R"("match": [{"pointer": "/a"}],)"), "sets[0].match[0]: needs exactly one of"},
      {one_set("[" + ok_reading + "]", R"("match": [{"pointer": "/a", "equals": 1, "exists": true}],)"),
       "sets[0].match[0]: needs exactly one of"},
      {one_set("[" + ok_reading + "]", R"("match": [{"pointer": "/a", "equals": null}],)"),
       "sets[0].match[0].equals: must be a string, number or boolean"},
      {one_set("[" + ok_reading + "]", R"("match": [{"pointer": "/a", "exists": "yes"}],)"),
       "sets[0].match[0].exists: must be true or false"},
      {one_set("[" + ok_reading + "]", R"("match": [{"equals": 1}],)"), "sets[0].match[0].pointer: missing"},
      {one_set("[" + ok_reading + "]", R"("match": [{"pointer": "/a", "equal": 1}],)"), "sets[0].match[0]: unknown member"},
      {one_set("[" + ok_reading + "]", R"("each": "items",)"), "sets[0].each: not a valid JSON pointer"},
      {one_set("[" + ok_reading + "]", R"("each": 3,)"), "sets[0].each: must be a JSON pointer string"},
      {one_set("[" + ok_reading + "]", R"("time": {"pointer": "/t", "format": "iso"},)"),
       "sets[0].time.format: must be \"rfc3339\", \"unix_s\" or \"unix_ms\""},
      {one_set("[" + ok_reading + "]", R"("time": {"pointer": "/t"},)"), "sets[0].time.format: missing"},
      {one_set("[" + ok_reading + "]", R"("time": {"format": "unix_s"},)"), "sets[0].time.pointer: missing"},
      {one_set("[" + ok_reading + "]", R"("time": {"pointer": "/t~2", "format": "unix_s"},)"),
       "sets[0].time.pointer: not a valid JSON pointer"},
      {one_set("[" + ok_reading + "]", R"("time": {"pointer": "/t~", "format": "unix_s"},)"),
       "sets[0].time.pointer: not a valid JSON pointer"},
      {one_set("[" + ok_reading + "]", R"("time": {"pointer": "/t", "format": "unix_s", "tz": "UTC"},)"),
       "sets[0].time: unknown member"},
      {with_reading(R"({"value": {"const": 1}, "unit": {"const": "1"}})"), "sets[0].readings[0].code: missing"},
      {with_reading(R"({"code": "1234-5", "value": {"const": 1}, "unit": {"const": "1"}})"),
       "sets[0].readings[0].code: not a known code"},
      {with_reading(R"({"code": 8867, "value": {"const": 1}, "unit": {"const": "1"}})"), "sets[0].readings[0].code: must be a string"},
      {with_reading(R"({"code": "8867-4", "unit": {"const": "/min"}})"), "sets[0].readings[0].value: missing"},
      {with_reading(R"({"code": "8867-4", "value": {"const": 1}})"), "sets[0].readings[0].unit: missing"},
      {with_reading(R"({"code": "8867-4", "value": {"const": 1}, "unit": {"const": "/min"}, "optinal": true})"),
       "sets[0].readings[0]: unknown member"},
      {with_reading(R"({"code": "8867-4", "value": {"const": 1}, "unit": {"const": "/min"}, "optional": "yes"})"),
       "sets[0].readings[0].optional: must be true or false"},
      {with_reading(R"({"code": "8867-4", "value": {"const": 1}, "unit": {"const": "/min"}, "components": []})"),
       "sets[0].readings[0].components: only a panel code has components"},
      {with_reading(R"({"code": "85354-9", "value": {"const": 1}, "components": []})"),
       "sets[0].readings[0].value: a panel has no value of its own"},
      {with_reading(R"({"code": "85354-9", "unit": {"const": "mm[Hg]"}, "components": []})"),
       "sets[0].readings[0].unit: a panel has no unit of its own"},
      {with_reading(R"({"code": "85354-9"})"), "sets[0].readings[0].components: missing (the code is a panel)"},
      {with_reading(R"({"code": "85354-9", "components": []})"), "sets[0].readings[0].components: must be an array of 1..16"},
      {with_reading(R"({"code": "85354-9", "components": [{"code": "8480-6", "value": {"pointer": "/s"}}]})"),
       "sets[0].readings[0].components[0].unit: missing"},
      {with_reading(R"({"code": "85354-9", "components": [{"code": "85354-9", "value": {"const": 1}, "unit": {"const": "1"}}]})"),
       "sets[0].readings[0].components[0].code: a panel cannot be a component"},
      {with_reading(R"({"code": "85354-9", "components": [{"code": "x", "value": {"const": 1}, "unit": {"const": "1"}}]})"),
       "sets[0].readings[0].components[0].code: not a known code"},
      {with_reading(R"({"code": "8867-4", "value": {"const": 1, "pointer": "/v"}, "unit": {"const": "/min"}})"),
       "sets[0].readings[0].value: needs exactly one of \"const\" and \"pointer\""},
      {with_reading(R"({"code": "8867-4", "value": {}, "unit": {"const": "/min"}})"),
       "sets[0].readings[0].value: needs exactly one of \"const\" and \"pointer\""},
      {with_reading(R"({"code": "8867-4", "value": {"const": "60"}, "unit": {"const": "/min"}})"),
       "sets[0].readings[0].value.const: must be a finite number"},
      {with_reading(R"({"code": "8867-4", "value": {"pointer": "/v", "type": "int"}, "unit": {"const": "/min"}})"),
       "sets[0].readings[0].value.type: must be"},
      {with_reading(R"({"code": "8867-4", "value": {"pointer": "/v", "scale": 0}, "unit": {"const": "/min"}})"),
       "sets[0].readings[0].value.scale: must be a finite non-zero number"},
      {with_reading(R"({"code": "8867-4", "value": {"pointer": "/v", "scale": "10"}, "unit": {"const": "/min"}})"),
       "sets[0].readings[0].value.scale: must be a finite non-zero number"},
      {with_reading(R"({"code": "8867-4", "value": {"pointer": "/v", "type": "boolean", "scale": 2}, "unit": {"const": "1"}})"),
       "sets[0].readings[0].value.scale: does not apply to booleans"},
      {with_reading(R"({"code": "8867-4", "value": {"const": 1, "scale": 2}, "unit": {"const": "/min"}})"),
       "sets[0].readings[0].value: \"type\" and \"scale\" apply to pointers only"},
      {with_reading(R"({"code": "8867-4", "value": {"pointer": "/v", "map": {}}, "unit": {"const": "/min"}})"),
       "sets[0].readings[0].value: unknown member"},
      {with_reading(R"({"code": "8867-4", "value": {"pointer": "v"}, "unit": {"const": "/min"}})"),
       "sets[0].readings[0].value.pointer: not a valid JSON pointer"},
      {with_reading(R"({"code": "8867-4", "value": 60, "unit": {"const": "/min"}})"),
       "sets[0].readings[0].value: must be an object"},
      {with_reading(R"({"code": "8867-4", "value": {"pointer": "/v"}, "unit": "/min"})"), "sets[0].readings[0].unit: must be an object"},
      {with_reading(R"({"code": "8867-4", "value": {"pointer": "/v"}, "unit": {"const": ""}})"),
       "sets[0].readings[0].unit.const: must be a UCUM code of 1..64 characters"},
      {with_reading(R"({"code": "8867-4", "value": {"pointer": "/v"}, "unit": {"const": "/min", "map": {"a": "b"}}})"),
       "sets[0].readings[0].unit.map: applies to pointers only"},
      {with_reading(R"({"code": "8867-4", "value": {"pointer": "/v"}, "unit": {"pointer": "/u", "map": {}}})"),
       "sets[0].readings[0].unit.map: must be an object of 1..64 unit strings"},
      {with_reading(R"({"code": "8867-4", "value": {"pointer": "/v"}, "unit": {"pointer": "/u", "map": {"bpm": 1}}})"),
       "sets[0].readings[0].unit.map: every entry must be a UCUM code"},
      {with_reading(R"({"code": "8867-4", "value": {"pointer": "/v"}, "unit": {"pointer": "/u", "map": {"bpm": "/min", "bpm": "/s"}}})"),
       "sets[0].readings[0].unit.map: duplicate member"},
      {with_reading(R"({"code": "8867-4", "value": {"pointer": "/v"}, "unit": {"pointer": "/u", "type": "string"}})"),
       "sets[0].readings[0].unit: unknown member"},
      {R"({"template": "t", "sets": [{"readings": [)" + ok_reading + R"(]}, {"readings": [)" + ok_reading + "," +
           R"({"code": "nope", "value": {"const": 1}, "unit": {"const": "1"}}]}]})",
       "sets[1].readings[1].code: not a known code"},
  };
  for (const auto& [json, expected] : cases) {
    INFO(json);
    auto t = MappingTemplate::parse(json, "acme-bp.json");
    REQUIRE(!t);
    INFO(t.error().to_string());
    CHECK(t.error().code == telehub::core::Code::kInvalidArgument);
    CHECK(t.error().reason == "bad_template");
    CHECK(t.error().message.rfind("acme-bp.json: " + expected, 0) == 0);
  }
}

TEST_CASE("load_dir refuses a missing directory, a misnamed template and a bad file", "[formats][mapping]") {
  auto missing = MappingSet::load_dir(telehub::testing::source_dir() / "config" / "no-such-dir");
  REQUIRE(!missing);
  CHECK(missing.error().code == telehub::core::Code::kNotFound);
  CHECK(missing.error().reason == "no_mappings");

  telehub::testing::TempDir dir;
  const auto write = [&](const std::string& file, const std::string& text) { std::ofstream(dir.path() / file) << text; };
  const std::string good = one_set(R"([{"code": "8867-4", "value": {"const": 60}, "unit": {"const": "/min"}}])");
  write("t.json", good);
  write("README.md", "not a template");
  write("t.json.bak", "{");
  auto ok = MappingSet::load_dir(dir.path());
  REQUIRE(ok);
  CHECK(ok->names() == std::vector<std::string>{"t"});

  write("u.json", good);  // says "t" inside
  auto misnamed = MappingSet::load_dir(dir.path());
  REQUIRE(!misnamed);
  CHECK(misnamed.error().reason == "bad_template");
  CHECK(misnamed.error().message == "u.json: template: does not match the file name");
  fs::remove(dir.path() / "u.json");

  write("v.json", R"({"template": "v", "sets": [{"readings": [{"code": "0000-0"}]}]})");
  auto bad = MappingSet::load_dir(dir.path());
  REQUIRE(!bad);
  CHECK(bad.error().reason == "bad_template");
  CHECK(bad.error().message == "v.json: sets[0].readings[0].code: not a known code");

  telehub::testing::TempDir empty;
  auto none = MappingSet::load_dir(empty.path());
  REQUIRE(none);
  CHECK(none->names().empty());
}

TEST_CASE("the mapping fuzz corpus goes through every shipped template without violating invariants",
          "[formats][mapping][fuzz]") {
  auto set = MappingSet::load_dir(mappings_dir());
  REQUIRE(set);
  std::vector<fs::path> files;
  for (const auto& dir : {telehub::testing::source_dir() / "tests" / "fuzz" / "corpus" / "mapping",
                          telehub::testing::source_dir() / "tests" / "fuzz" / "regressions"}) {
    if (!fs::is_directory(dir)) continue;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && e.path().filename().string().rfind("README", 0) != 0) files.push_back(e.path());
  }
  REQUIRE(files.size() >= 5);
  std::size_t decoded = 0;
  for (const auto& file : files) {
    const std::string text = read_text(file);
    for (const auto& name : set->names()) {
      INFO(file.filename().string() << " with " << name);
      auto d = set->find(name)->apply(bytes(text), kNow);
      if (!d) {
        const auto& reason = d.error().reason;
        CHECK((reason == "bad_payload" || reason == "no_match" || reason == "bad_unit"));
        CHECK(d.error().code == telehub::core::Code::kInvalidArgument);
        continue;
      }
      ++decoded;
      CHECK(!d->readings.empty());
      CHECK(d->readings.size() <= telehub::formats::kMaxReadings);
      for (const auto& r : d->readings) {
        const auto* info = telehub::core::find_code(r.code);
        REQUIRE(info != nullptr);
        CHECK(info->panel == !r.components.empty());
        if (r.value) CHECK(std::isfinite(*r.value));
        for (const auto& c : r.components) {
          CHECK(telehub::core::find_code(c.code) != nullptr);
          CHECK(std::isfinite(c.value));
        }
      }
    }
  }
  CHECK(decoded >= 5);  // each sample decodes with its own template
}

TEST_CASE("the fuzz harness embeds the shipped templates verbatim", "[formats][mapping][fuzz]") {
  // tests/fuzz/fuzz_mapping_apply.cpp carries copies so it needs no files at run time.
  const std::string harness = read_text(telehub::testing::source_dir() / "tests" / "fuzz" / "fuzz_mapping_apply.cpp");
  REQUIRE(!harness.empty());
  std::size_t files = 0;
  for (const auto& e : fs::directory_iterator(mappings_dir())) {
    if (e.path().extension() != ".json") continue;
    ++files;
    INFO(e.path().filename().string() << " differs from its copy in fuzz_mapping_apply.cpp");
    CHECK(harness.find("R\"json(" + read_text(e.path()) + ")json\"") != std::string::npos);
  }
  CHECK(files >= 4);
}
