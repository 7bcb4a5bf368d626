// formats::resolve_senml / decode_senml / senml_to_ucum (RFC 8428): every SenML feature with the
// examples of RFC 8428 section 5.1, the resolved forms checked against section 5.1.4's, the
// mapping to readings (docs in senml.h), and a replay of the fuzzing seeds and saved inputs
// through the harness's invariant check (tests/fuzz/fuzz_senml_decode.cpp).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "telehub/core/bytes.h"
#include "telehub/core/codes.h"
#include "telehub/formats/senml.h"
#include "telehub/formats/units.h"
#include "test_support.h"

#define TELEHUB_FUZZ_NO_ENTRY
#include "../fuzz/fuzz_senml_decode.cpp"

namespace fs = std::filesystem;
using telehub::core::as_bytes;
using telehub::formats::decode_senml;
using telehub::formats::resolve_senml;
using telehub::formats::SenmlRecord;

namespace {

// The receive time used as "now": 2025-11-28T10:15:00.250Z.
const telehub::core::TimePoint kNow = telehub::core::from_unix_millis(1'764'324'900'250);
const double kNowSeconds = 1'764'324'900'250 / 1000.0;

std::vector<SenmlRecord> resolve_ok(std::string_view json) {
  auto r = resolve_senml(as_bytes(json), kNow);
  INFO(json);
  if (!r) INFO(r.error().to_string());
  REQUIRE(r);
  return *r;
}

telehub::formats::Decoded decode_ok(std::string_view json) {
  auto r = decode_senml(as_bytes(json), kNow);
  INFO(json);
  if (!r) INFO(r.error().to_string());
  REQUIRE(r);
  return *r;
}

telehub::core::Error resolve_error(std::string_view json) {
  auto r = resolve_senml(as_bytes(json), kNow);
  INFO(json);
  REQUIRE_FALSE(r);
  return r.error();
}

telehub::core::Error decode_error(std::string_view json) {
  auto r = decode_senml(as_bytes(json), kNow);
  INFO(json);
  REQUIRE_FALSE(r);
  return r.error();
}

SenmlRecord numeric(std::string name, std::string own, std::string unit, double time, double value) {
  SenmlRecord r;
  r.name = std::move(name);
  r.own_name = std::move(own);
  r.unit = std::move(unit);
  r.time = time;
  r.value = value;
  return r;
}

void require_bad_payload(const telehub::core::Error& e, std::string_view message) {
  CHECK(e.code == telehub::core::Code::kInvalidArgument);
  CHECK(e.reason == "bad_payload");
  CHECK(e.message == message);
}

}  // namespace

TEST_CASE("SenML RFC 8428 5.1.1 single data point is taken now", "[formats][senml]") {
  const auto records = resolve_ok(R"([{"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}])");
  REQUIRE(records == std::vector{numeric("urn:dev:ow:10e2073a01080063", "urn:dev:ow:10e2073a01080063", "Cel",
                                         kNowSeconds, 23.1)});
}

TEST_CASE("SenML RFC 8428 5.1.2 multiple data points concatenate base name and name", "[formats][senml]") {
  const auto records = resolve_ok(R"([
    {"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
    {"n":"current","u":"A","v":1.2}])");
  REQUIRE(records == std::vector{numeric("urn:dev:ow:10e2073a01080063:voltage", "voltage", "V", kNowSeconds, 120.1),
                                 numeric("urn:dev:ow:10e2073a01080063:current", "current", "A", kNowSeconds, 1.2)});
}

TEST_CASE("SenML RFC 8428 5.1.2 base time, base unit and relative t resolve to absolute times", "[formats][senml]") {
  const auto records = resolve_ok(R"([
    {"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
     "bu":"A","bver":5,
     "n":"voltage","u":"V","v":120.1},
    {"n":"current","t":-5,"v":1.2},
    {"n":"current","t":-4,"v":1.3},
    {"n":"current","t":-3,"v":1.4},
    {"n":"current","t":-2,"v":1.5},
    {"n":"current","t":-1,"v":1.6},
    {"n":"current","v":1.7}])");
  const std::string bn = "urn:dev:ow:10e2073a0108006:";
  REQUIRE(records == std::vector{
                         numeric(bn + "voltage", "voltage", "V", 1.276020076001e+09, 120.1),
                         numeric(bn + "current", "current", "A", 1.276020071001e+09, 1.2),
                         numeric(bn + "current", "current", "A", 1.276020072001e+09, 1.3),
                         numeric(bn + "current", "current", "A", 1.276020073001e+09, 1.4),
                         numeric(bn + "current", "current", "A", 1.276020074001e+09, 1.5),
                         numeric(bn + "current", "current", "A", 1.276020075001e+09, 1.6),
                         numeric(bn + "current", "current", "A", 1.276020076001e+09, 1.7),
                     });
}

TEST_CASE("SenML RFC 8428 5.1.3 multiple measurements resolve exactly as 5.1.4 shows", "[formats][senml]") {
  const auto records = resolve_ok(R"([
     {"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,
      "bu":"%RH","v":20},
     {"u":"lon","v":24.30621},
     {"u":"lat","v":60.07965},
     {"t":60,"v":20.3},
     {"u":"lon","t":60,"v":24.30622},
     {"u":"lat","t":60,"v":60.07965},
     {"t":120,"v":20.7},
     {"u":"lon","t":120,"v":24.30623},
     {"u":"lat","t":120,"v":60.07966},
     {"u":"%EL","t":150,"v":98},
     {"t":180,"v":21.2},
     {"u":"lon","t":180,"v":24.30628},
     {"u":"lat","t":180,"v":60.07967}])");
  // RFC 8428 section 5.1.4, field by field.
  const std::string n = "urn:dev:ow:10e2073a01080063";
  REQUIRE(records == std::vector{
                         numeric(n, "", "%RH", 1.320067464e+09, 20),
                         numeric(n, "", "lon", 1.320067464e+09, 24.30621),
                         numeric(n, "", "lat", 1.320067464e+09, 60.07965),
                         numeric(n, "", "%RH", 1.320067524e+09, 20.3),
                         numeric(n, "", "lon", 1.320067524e+09, 24.30622),
                         numeric(n, "", "lat", 1.320067524e+09, 60.07965),
                         numeric(n, "", "%RH", 1.320067584e+09, 20.7),
                         numeric(n, "", "lon", 1.320067584e+09, 24.30623),
                         numeric(n, "", "lat", 1.320067584e+09, 60.07966),
                         numeric(n, "", "%EL", 1.320067614e+09, 98),
                         numeric(n, "", "%RH", 1.320067644e+09, 21.2),
                         numeric(n, "", "lon", 1.320067644e+09, 24.30628),
                         numeric(n, "", "lat", 1.320067644e+09, 60.07967),
                     });
}

TEST_CASE("SenML RFC 8428 5.1.4 resolved data resolves to itself", "[formats][senml]") {
  const auto records = resolve_ok(R"([
     {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067464e+09,"v":20},
     {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067464e+09,"v":24.30621},
     {"n":"urn:dev:ow:10e2073a01080063","u":"%EL","t":1.320067614e+09,"v":98}])");
  const std::string n = "urn:dev:ow:10e2073a01080063";
  REQUIRE(records == std::vector{numeric(n, n, "%RH", 1.320067464e+09, 20), numeric(n, n, "lon", 1.320067464e+09, 24.30621),
                                 numeric(n, n, "%EL", 1.320067614e+09, 98)});
}

TEST_CASE("SenML RFC 8428 5.1.5 multiple data types: v, vs, vb and vd", "[formats][senml]") {
  const auto records = resolve_ok(R"([
    {"bn":"urn:dev:ow:10e2073a01080063:","n":"temp","u":"Cel","v":23.1},
    {"n":"label","vs":"Machine Room"},
    {"n":"open","vb":false},
    {"n":"nfv-reader","vd":"aGkgCg"}])");
  const std::string bn = "urn:dev:ow:10e2073a01080063:";
  SenmlRecord label;
  label.name = bn + "label";
  label.own_name = "label";
  label.time = kNowSeconds;
  label.string_value = "Machine Room";
  SenmlRecord open;
  open.name = bn + "open";
  open.own_name = "open";
  open.time = kNowSeconds;
  open.bool_value = false;
  SenmlRecord reader;
  reader.name = bn + "nfv-reader";
  reader.own_name = "nfv-reader";
  reader.time = kNowSeconds;
  reader.data_value = "aGkgCg";
  REQUIRE(records == std::vector{numeric(bn + "temp", "temp", "Cel", kNowSeconds, 23.1), label, open, reader});

  SECTION("vd must be base64url without padding (RFC 8428 section 5)") {
    require_bad_payload(resolve_error(R"([{"n":"x","vd":"aGk="}])"), "senml[0].vd: must be base64url without padding");
    require_bad_payload(resolve_error(R"([{"n":"x","vd":"aGkgC"}])"), "senml[0].vd: must be base64url without padding");
  }
}

TEST_CASE("SenML RFC 8428 5.1.6 collection of resources: a later bn keeps the earlier bt", "[formats][senml]") {
  const auto records = resolve_ok(R"([
     {"bn":"2001:db8::2/","bt":1.320078429e+09,
      "n":"temperature","u":"Cel","v":25.2},
     {"n":"humidity","u":"%RH","v":30},
     {"bn":"2001:db8::1/","n":"temperature","u":"Cel","v":12.3},
     {"n":"humidity","u":"%RH","v":67}])");
  REQUIRE(records == std::vector{
                         numeric("2001:db8::2/temperature", "temperature", "Cel", 1.320078429e+09, 25.2),
                         numeric("2001:db8::2/humidity", "humidity", "%RH", 1.320078429e+09, 30),
                         numeric("2001:db8::1/temperature", "temperature", "Cel", 1.320078429e+09, 12.3),
                         numeric("2001:db8::1/humidity", "humidity", "%RH", 1.320078429e+09, 67),
                     });
}

TEST_CASE("SenML RFC 8428 5.1.7 a base-only record carries no measurement", "[formats][senml]") {
  const auto records = resolve_ok(R"([
     {"bn":"urn:dev:ow:10e2073a01080063:"},
     {"n":"temp","u":"Cel","v":23.1},
     {"n":"heat","u":"/","v":1},
     {"n":"fan","u":"/","v":0}])");
  const std::string bn = "urn:dev:ow:10e2073a01080063:";
  REQUIRE(records == std::vector{numeric(bn + "temp", "temp", "Cel", kNowSeconds, 23.1),
                                 numeric(bn + "heat", "heat", "/", kNowSeconds, 1),
                                 numeric(bn + "fan", "fan", "/", kNowSeconds, 0)});

  const auto lights = resolve_ok(R"([
     {"bt":1.320078429e+09,"bu":"/","n":"2001:db8::3","v":0.5},
     {"n":"2001:db8::4","v":0.5},
     {"n":"2001:db8::3","t":0.1,"v":0},
     {"n":"2001:db8::4","t":0.1,"v":0}])");
  REQUIRE(lights.size() == 4);
  CHECK(lights[2].time == 1.320078429e+09 + 0.1);
  CHECK(lights[3].unit == "/");
}

TEST_CASE("SenML base value and base sum are added to v and s", "[formats][senml]") {
  const auto records = resolve_ok(R"([
    {"bn":"dev:","bv":100,"bs":1000,"n":"a","v":5,"s":7},
    {"n":"b","v":-1},
    {"n":"c","s":2},
    {"bv":0,"n":"d","v":3},
    {"n":"e","vs":"text"}])");
  REQUIRE(records.size() == 5);
  CHECK(records[0].value == 105.0);
  CHECK(records[0].sum == 1007.0);
  // Section 4.5.4: with a base sum, a record without s has the base sum as its sum.
  CHECK(records[1].value == 99.0);
  CHECK(records[1].sum == 1000.0);
  CHECK(records[2].value == std::nullopt);
  CHECK(records[2].sum == 1002.0);
  CHECK(records[3].value == 3.0);
  CHECK(records[4].value == std::nullopt);
  CHECK(records[4].string_value == "text");

  SECTION("a sum that overflows is refused") {
    require_bad_payload(resolve_error(R"([{"bv":1.7e308,"n":"a","v":1.7e308}])"), "senml[0].v: value out of range");
  }
}

TEST_CASE("SenML times below 2^28 are relative to now, from 2^28 absolute", "[formats][senml]") {
  const auto records = resolve_ok(R"([
    {"n":"a","v":1},
    {"n":"b","t":-30,"v":1},
    {"bt":-10,"n":"c","t":5,"v":1},
    {"bt":0,"n":"d","t":268435455,"v":1},
    {"n":"e","t":268435456,"v":1},
    {"bt":268435000,"n":"f","t":456,"v":1}])");
  REQUIRE(records.size() == 6);
  CHECK(records[0].time == kNowSeconds);
  CHECK(records[1].time == kNowSeconds - 30);
  CHECK(records[2].time == kNowSeconds - 5);
  CHECK(records[3].time == kNowSeconds + 268435455);
  CHECK(records[4].time == 268435456.0);
  CHECK(records[5].time == 268435456.0);  // bt + t reaches 2^28: absolute (section 4.5.3)

  SECTION("ut is kept as given") {
    CHECK(resolve_ok(R"([{"n":"a","v":1,"ut":60}])")[0].update_time == 60.0);
  }
}

TEST_CASE("SenML bver up to 10 is accepted, above 10 refused", "[formats][senml]") {
  CHECK(resolve_ok(R"([{"bver":10,"n":"a","v":1}])").size() == 1);
  CHECK(resolve_ok(R"([{"bver":5,"n":"a","v":1},{"bver":5,"n":"b","v":1}])").size() == 2);
  require_bad_payload(resolve_error(R"([{"bver":11,"n":"a","v":1}])"), "senml[0].bver: version is newer than 10");
  require_bad_payload(resolve_error(R"([{"bver":0,"n":"a","v":1}])"), "senml[0].bver: must be a positive integer");
  require_bad_payload(resolve_error(R"([{"bver":2.5,"n":"a","v":1}])"), "senml[0].bver: must be a positive integer");
  require_bad_payload(resolve_error(R"([{"bver":5,"n":"a","v":1},{"bver":6,"n":"b","v":1}])"),
                      "senml[1].bver: differs from an earlier record");
}

TEST_CASE("SenML must-understand fields are refused, other unknown fields ignored", "[formats][senml]") {
  CHECK(resolve_ok(R"([{"n":"a","v":1,"foo":"bar","ct":"60"}])").size() == 1);
  const auto e = resolve_error(R"([{"n":"a","v":1},{"n":"b","v":1,"secret_":"x"}])");
  require_bad_payload(e, "senml[1]: has a must-understand field telehub does not support");
  CHECK(e.message.find("secret") == std::string::npos);
  require_bad_payload(resolve_error(R"([{"bn":"a","bct_":"60"}])"),
                      "senml[0]: has a must-understand field telehub does not support");
}

TEST_CASE("SenML fields of the wrong type are refused with their path", "[formats][senml]") {
  require_bad_payload(resolve_error(R"([{"n":"a","v":1},{"n":"a","v":1},{"n":"a","v":1},{"n":"a","v":1,"t":"now"}])"),
                      "senml[3].t: must be a number");
  require_bad_payload(resolve_error(R"([{"n":7,"v":1}])"), "senml[0].n: must be a string");
  require_bad_payload(resolve_error(R"([{"n":"a","v":"1"}])"), "senml[0].v: must be a number");
  require_bad_payload(resolve_error(R"([{"n":"a","vb":1}])"), "senml[0].vb: must be a boolean");
  require_bad_payload(resolve_error(R"([{"n":"a","vs":true}])"), "senml[0].vs: must be a string");
  require_bad_payload(resolve_error(R"([{"bn":null,"n":"a","v":1}])"), "senml[0].bn: must be a string");
  require_bad_payload(resolve_error(R"([{"bt":[1],"n":"a","v":1}])"), "senml[0].bt: must be a number");
  require_bad_payload(resolve_error(R"([{"n":"a","v":1,"v":2}])"), "senml[0].v: appears more than once");
  require_bad_payload(resolve_error(R"({"n":"a","v":1})"), "senml: must be an array of records");
  require_bad_payload(resolve_error(R"([{"n":"a","v":1},3])"), "senml[1]: must be an object");
  CHECK(resolve_error(R"([{"n":"a","v":1})").reason == "bad_payload");  // not JSON (envelope::parse_json)
}

TEST_CASE("SenML records need exactly one value or a sum, and a valid name", "[formats][senml]") {
  require_bad_payload(resolve_error(R"([{"n":"a"}])"), "senml[0]: has no value");
  require_bad_payload(resolve_error(R"([{"bn":"x","n":"a","u":"Cel"}])"), "senml[0]: has no value");
  require_bad_payload(resolve_error(R"([{}])"), "senml[0]: has no value");
  require_bad_payload(resolve_error(R"([{"n":"a","v":1,"vs":"x"}])"), "senml[0]: has more than one value field");
  CHECK(resolve_ok(R"([{"n":"a","v":1,"s":2}])")[0].sum == 2.0);
  require_bad_payload(resolve_error(R"([{"v":1}])"), "senml[0].n: name is empty");
  const char* const bad_names[] = {R"([{"n":"-a","v":1}])", R"([{"n":"a b","v":1}])", R"([{"n":"caf\u00e9","v":1}])",
                                   R"([{"bn":"_x","v":1}])"};
  for (const char* json : bad_names) {
    require_bad_payload(resolve_error(json), "senml[0].n: name has characters RFC 8428 section 4.5.1 does not allow");
  }
}

TEST_CASE("SenML pack of more than kMaxSenmlRecords records is refused", "[formats][senml]") {
  std::string json = "[";
  for (std::size_t i = 0; i <= telehub::formats::kMaxSenmlRecords; ++i) json += i ? R"(,{"n":"a","v":1})" : R"({"n":"a","v":1})";
  json += "]";
  require_bad_payload(resolve_error(json), "senml: more than 4000 records");
}

TEST_CASE("SenML decode maps names and codes to readings with UCUM units", "[formats][senml]") {
  const auto decoded = decode_ok(R"([
    {"bn":"urn:dev:ox:7:","bt":1764324900,"bu":"%","n":"spo2","v":97},
    {"n":"perfusion-index","v":2.5},
    {"n":"heart-rate","u":"beat/min","t":1.2345,"v":64},
    {"bn":"urn:dev:scale:9/weight","u":"lb","v":170.2},
    {"bn":"","n":"9279-1","u":"1/min","v":14},
    {"n":"body-temp","u":"Cel","v":36.8},
    {"n":"glucose","u":"mg/dl","v":99},
    {"n":"steps","u":"count","s":4200}])");
  const auto t = telehub::core::from_unix_millis(1'764'324'900'000);
  REQUIRE(decoded.readings.size() == 8);
  const auto& r = decoded.readings;
  CHECK((r[0].code == "59408-5" && r[0].value == 97.0 && r[0].unit == "%" && r[0].time == t));
  CHECK((r[1].code == "perfusion-index" && r[1].unit == "%"));
  CHECK((r[2].code == "8867-4" && r[2].unit == "/min"));
  CHECK(r[2].time == telehub::core::from_unix_millis(1'764'324'901'235));  // rounded to the nearest ms
  CHECK((r[3].code == "29463-7" && r[3].value == 170.2 && r[3].unit == "[lb_av]"));  // name after the last '/'
  CHECK((r[4].code == "9279-1" && r[4].unit == "/min"));
  CHECK((r[5].code == "8310-5" && r[5].unit == "Cel"));
  CHECK((r[6].code == "15074-8" && r[6].unit == "mg/dL"));  // not converted (units::normalise does that)
  CHECK((r[7].code == "41950-7" && r[7].value == 4200.0 && r[7].unit == "{count}"));  // the sum, without v
  for (const auto& reading : r) {
    CHECK(reading.subject.empty());
    CHECK(reading.components.empty());
  }
  CHECK(decoded.device.empty());
}

TEST_CASE("SenML documented names all map to codes of the code table", "[formats][senml]") {
  for (const auto& n : telehub::formats::senml_names()) {
    INFO(n.name);
    CHECK(telehub::core::find_code(n.code) != nullptr);
  }
}

TEST_CASE("SenML systolic, diastolic and irregular heartbeat at one time become one panel", "[formats][senml]") {
  const auto decoded = decode_ok(R"([
    {"bn":"urn:dev:cuff:1/","bt":1764324900,"n":"pulse","u":"beat/min","v":71},
    {"n":"irregular-heartbeat","vb":true},
    {"n":"diastolic","u":"mmHg","v":82},
    {"n":"sys","u":"kPa","v":17.1},
    {"n":"systolic","u":"mmHg","t":60,"v":131},
    {"n":"dia","u":"mm[Hg]","t":120,"v":80},
    {"n":"irregular-heartbeat","t":120,"vb":false}])");
  const auto t = telehub::core::from_unix_millis(1'764'324'900'000);
  REQUIRE(decoded.readings.size() == 4);
  const auto& r = decoded.readings;
  CHECK(r[0].code == "8867-4");
  // The panel sits where its first component record was (the flag, pack record 1).
  CHECK(r[1].code == "85354-9");
  CHECK(r[1].value == std::nullopt);
  CHECK(r[1].unit.empty());
  CHECK(r[1].time == t);
  using telehub::core::Component;
  CHECK(r[1].components == std::vector<Component>{{"8480-6", 17.1, "kPa"}, {"8462-4", 82, "mm[Hg]"}, {"irregular-heartbeat", 1, "1"}});
  // A lone systolic is a panel too, with its one component.
  CHECK(r[2].code == "85354-9");
  CHECK(r[2].time == t + std::chrono::seconds(60));
  CHECK(r[2].components == std::vector<Component>{{"8480-6", 131, "mm[Hg]"}});
  CHECK(r[3].components == std::vector<Component>{{"8462-4", 80, "mm[Hg]"}, {"irregular-heartbeat", 0, "1"}});

  SECTION("a flag without a blood-pressure reading at its time is refused") {
    require_bad_payload(decode_error(R"([{"bt":1764324900,"n":"sys","u":"mmHg","v":120},{"n":"irregular-heartbeat","t":1,"vb":true}])"),
                        "senml[1]: flag without a blood-pressure reading");
  }
  SECTION("two systolic values at the same time are refused") {
    require_bad_payload(decode_error(R"([{"n":"sys","u":"mmHg","v":120},{"n":"systolic","u":"mmHg","v":121}])"),
                        "senml[1]: a second value for the same blood-pressure component at the same time");
  }
  SECTION("a flag needs vb, and vb needs a flag") {
    require_bad_payload(decode_error(R"([{"n":"sys","u":"mmHg","v":120},{"n":"irregular-heartbeat","v":1}])"),
                        "senml[1]: a flag needs a boolean value (vb)");
    require_bad_payload(decode_error(R"([{"n":"hr","vb":true}])"), "senml[0].vb: boolean value for a numeric measurement");
  }
  SECTION("the panel code itself carries no value") {
    require_bad_payload(decode_error(R"([{"n":"85354-9","u":"mmHg","v":120}])"), "senml[0].n: a panel has no value of its own");
  }
}

TEST_CASE("SenML vs records named manufacturer, model and serial fill the device metadata", "[formats][senml]") {
  const auto decoded = decode_ok(R"([
    {"bn":"urn:dev:cuff:1:","n":"manufacturer","vs":"Acme Medical"},
    {"n":"model","vs":"BP-100"},
    {"n":"serial","vs":"SN-000123"},
    {"n":"hr","u":"1/min","v":60}])");
  CHECK(decoded.device == telehub::formats::DeviceInfo{"Acme Medical", "BP-100", "SN-000123"});
  REQUIRE(decoded.readings.size() == 1);

  const std::string long_serial(129, 'x');
  const auto e = decode_error(R"([{"n":"serial","vs":")" + long_serial + R"("},{"n":"hr","u":"1/min","v":60}])");
  require_bad_payload(e, "senml[0].vs: longer than 128 bytes");
  CHECK(decode_ok(R"([{"n":"serial","vs":")" + std::string(128, 'x') + R"("},{"n":"hr","u":"1/min","v":60}])").device.serial.size() == 128);

  const auto other = decode_error(R"([{"n":"hr","u":"1/min","v":60},{"n":"label","vs":"Machine Room"}])");
  require_bad_payload(other, "senml[1].vs: string value for a numeric measurement");
  CHECK(other.message.find("Machine") == std::string::npos);
  require_bad_payload(decode_error(R"([{"n":"hr","u":"1/min","v":60},{"n":"nfv-reader","vd":"aGkgCg"}])"),
                      "senml[1].vd: data value for a numeric measurement");
  require_bad_payload(decode_error(R"([{"n":"model","vs":"a"},{"n":"model","vs":"b"},{"n":"hr","u":"1/min","v":6}])"),
                      "senml[1].vs: device field given twice");
  require_bad_payload(decode_error(R"([{"n":"model","vs":"a"}])"), "senml: pack has no measurement");
}

TEST_CASE("SenML unknown measurement names are refused without quoting them", "[formats][senml]") {
  const auto e = decode_error(R"([{"n":"hr","u":"1/min","v":60},{"bn":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}])");
  CHECK(e.code == telehub::core::Code::kInvalidArgument);
  CHECK(e.reason == "unknown_code");
  CHECK(e.message == "senml[1].n: unknown measurement name");
  CHECK(e.message.find("10e2073a") == std::string::npos);
  CHECK(decode_error(R"([{"n":"Heart-Rate","u":"1/min","v":60}])").reason == "unknown_code");  // names are case-sensitive
}

TEST_CASE("SenML units without a UCUM mapping, or missing, are refused with bad_unit", "[formats][senml]") {
  auto e = decode_error(R"([{"n":"body-temp","u":"%RH","v":36.6}])");
  CHECK(e.reason == "bad_unit");
  CHECK(e.message == "senml[0].u: unit has no UCUM mapping");
  e = decode_error(R"([{"n":"weight","v":80}])");
  CHECK(e.reason == "bad_unit");
  CHECK(e.message == "senml[0].u: missing unit");
  // The base unit counts as the record's unit (section 4.5.2).
  CHECK(decode_ok(R"([{"bu":"kg","n":"weight","v":80}])").readings[0].unit == "kg");
}

TEST_CASE("SenML decode refuses times outside the years 0000..9999", "[formats][senml]") {
  require_bad_payload(decode_error(R"([{"n":"hr","u":"1/min","t":253402300800,"v":60}])"),
                      "senml[0].t: time outside the years 0000..9999");
  CHECK(decode_ok(R"([{"n":"hr","u":"1/min","t":253402300799.999,"v":60}])").readings[0].time ==
        telehub::core::from_unix_millis(253402300799999));
  require_bad_payload(resolve_error(R"([{"bt":1.7e308,"n":"hr","t":1.7e308,"v":60}])"), "senml[0].t: time out of range");
}

TEST_CASE("SenML decode refuses more than kMaxReadings readings", "[formats][senml]") {
  const auto pack = [](std::size_t n) {
    std::string json = R"([{"bu":"1/min","n":"hr","v":60})";
    for (std::size_t i = 1; i < n; ++i) json += R"(,{"n":"hr","v":60})";
    return json + "]";
  };
  CHECK(decode_ok(pack(telehub::formats::kMaxReadings)).readings.size() == telehub::formats::kMaxReadings);
  require_bad_payload(decode_error(pack(telehub::formats::kMaxReadings + 1)), "senml: more than 1000 readings");
}

TEST_CASE("SenML units map to the UCUM codes units.h converts", "[formats][senml]") {
  using telehub::formats::senml_to_ucum;
  CHECK(senml_to_ucum("Cel") == "Cel");
  CHECK(senml_to_ucum("K") == "K");
  CHECK(senml_to_ucum("degF") == "[degF]");
  CHECK(senml_to_ucum("kg") == "kg");
  CHECK(senml_to_ucum("g") == "g");
  CHECK(senml_to_ucum("lb") == "[lb_av]");
  CHECK(senml_to_ucum("%") == "%");
  CHECK(senml_to_ucum("/") == "1");
  CHECK(senml_to_ucum("1/min") == "/min");
  CHECK(senml_to_ucum("beat/min") == "/min");
  CHECK(senml_to_ucum("beats/min") == "/min");
  CHECK(senml_to_ucum("breaths/min") == "/min");
  CHECK(senml_to_ucum("1/s") == "/s");
  CHECK(senml_to_ucum("Pa") == "Pa");
  CHECK(senml_to_ucum("hPa") == "hPa");
  CHECK(senml_to_ucum("kPa") == "kPa");
  CHECK(senml_to_ucum("mmHg") == "mm[Hg]");
  CHECK(senml_to_ucum("mm[Hg]") == "mm[Hg]");
  CHECK(senml_to_ucum("count") == "{count}");
  CHECK(senml_to_ucum("steps") == "{count}");
  CHECK(senml_to_ucum("mmol/l") == "mmol/L");
  CHECK(senml_to_ucum("mmol/L") == "mmol/L");
  CHECK(senml_to_ucum("mg/dl") == "mg/dL");
  CHECK(senml_to_ucum("mg/dL") == "mg/dL");
  CHECK(senml_to_ucum("") == "");
  CHECK(senml_to_ucum("%RH") == std::nullopt);
  CHECK(senml_to_ucum("cel") == std::nullopt);  // case-sensitive, as UCUM and SenML are
  CHECK(senml_to_ucum("V") == std::nullopt);
  // Every unit it yields is one that to_canonical() accepts for some code (units.h's list).
  const std::vector<std::string> accepted = {"kg", "g", "[lb_av]", "[oz_av]", "Cel", "[degF]", "K", "mm[Hg]", "kPa",
                                             "Pa", "hPa", "mmol/L", "mg/dL", "%", "1", "{ratio}", "/min",
                                             "{beats}/min", "{breaths}/min", "/s", "/d", "{steps}/d", "{count}"};
  for (const char* u : {"Cel", "K", "degF", "kg", "g", "lb", "%", "/", "1/min", "beat/min", "beats/min", "breaths/min", "1/s",
                        "Pa", "hPa", "kPa", "mmHg", "mm[Hg]", "count", "steps", "mmol/l", "mmol/L", "mg/dl", "mg/dL"}) {
    INFO(u);
    CHECK(std::find(accepted.begin(), accepted.end(), *senml_to_ucum(u)) != accepted.end());
  }
}

TEST_CASE("SenML fuzzing seeds and saved inputs replay through the harness checks", "[formats][senml][fuzz]") {
  std::vector<fs::path> files;
  for (const fs::path& dir : {fs::path(TELEHUB_SOURCE_DIR) / "tests/fuzz/corpus/senml", fs::path(TELEHUB_SOURCE_DIR) / "tests/fuzz/regressions"}) {
    if (!fs::is_directory(dir)) continue;
    for (const auto& entry : fs::directory_iterator(dir)) {
      const std::string name = entry.path().filename().string();
      if (!entry.is_regular_file() || name.rfind("README", 0) == 0) continue;
      if (dir.filename() == "regressions" && name.rfind("senml_decode-", 0) != 0) continue;
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  REQUIRE(files.size() >= 8);
  std::size_t decoded = 0;
  for (const auto& path : files) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in);
    const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    INFO(path.filename().string());
    CHECK(telehub::fuzz::check_senml(bytes).empty());
    if (decode_senml(bytes, telehub::fuzz::kSenmlFuzzNow)) ++decoded;
  }
  CHECK(decoded >= 3);  // the telehub-shaped seeds decode; the RFC ones name unknown measurements
}
