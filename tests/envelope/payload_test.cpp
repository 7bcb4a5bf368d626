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

namespace {

// Decodes a payload whose one reading has `literal` as its value.
Result<double> decode_value(const std::string& literal) {
  auto r = decode(with_reading(R"({"code":"8867-4","value":)" + literal + R"(,"unit":"/min","time":"2026-11-28T10:15:00Z"})"));
  if (!r) return tl::unexpected(r.error());
  REQUIRE(r->size() == 1);
  REQUIRE((*r)[0].value);
  return *(*r)[0].value;
}

// Decodes a payload whose one reading has `code` (JSON string contents, escapes allowed) as its code.
Result<std::string> decode_code(const std::string& code) {
  auto r = decode(with_reading(R"({"code":")" + code + R"(","value":1,"unit":"u","time":"2026-11-28T10:15:00Z"})"));
  if (!r) return tl::unexpected(r.error());
  REQUIRE(r->size() == 1);
  return (*r)[0].code;
}

// Requires a bad_payload refusal at path "payload" whose problem starts with `problem`.
void require_refused(const Result<double>& r, const std::string& problem) {
  REQUIRE_FALSE(r);
  CHECK(r.error().code == core::Code::kInvalidArgument);
  CHECK(r.error().reason == "bad_payload");
  CHECK(r.error().message.rfind("payload: " + problem, 0) == 0);
}

}  // namespace

TEST_CASE("payload numbers: ordinary forms decode as before", "[envelope]") {
  const std::pair<std::string, double> cases[] = {
      {"72", 72.0},
      {"36.6", 36.6},
      {"-3.5e1", -35.0},
      {"1E2", 100.0},
      {"7.2e1", 72.0},
      {"72.0", 72.0},
      {"1e+2", 100.0},
      {"-0.5", -0.5},
      {"0", 0.0},
      {"9007199254740993", 9007199254740992.0},  // 2^53 + 1 rounds to even
      {"-9223372036854775808", -9223372036854775808.0},
      {"18446744073709551615", 18446744073709551615.0},
      {"123456789012345678901234567890", 1.2345678901234568e29},  // beyond 64 bits: a double
      {"0.1000000000000000055511151231257827", 0.1},
      {"1.7976931348623157e308", std::numeric_limits<double>::max()},
      {"1.7976931348623158e308", std::numeric_limits<double>::max()},  // rounds down to the largest double
      {"2.2250738585072014e-308", std::numeric_limits<double>::min()},
      {"1e-300", 1e-300},
  };
  for (const auto& [literal, expected] : cases) {
    INFO(literal);
    auto d = decode_value(literal);
    REQUIRE(d);
    CHECK(*d == expected);
  }
  // "-0" is the integer 0, as RapidJSON has always decoded it; "-0.0" keeps its sign.
  auto minus_zero = decode_value("-0");
  REQUIRE(minus_zero);
  CHECK(*minus_zero == 0.0);
  CHECK_FALSE(std::signbit(*minus_zero));
  auto minus_zero_double = decode_value("-0.0");
  REQUIRE(minus_zero_double);
  CHECK(std::signbit(*minus_zero_double));
}

TEST_CASE("payload numbers: v must still be the integer 1", "[envelope]") {
  const std::string readings = R"(,"readings":[)" + kGood + "]}";
  CHECK(decode(R"({"v":1)" + readings));
  for (const char* v : {"1.0", "1e0", "10e-1", "-1", "0", "1.5", "2", "\"1\"", "4294967297", "18446744073709551617"}) {
    INFO(v);
    auto r = decode(std::string(R"({"v":)") + v + readings);
    REQUIRE_FALSE(r);
    CHECK(r.error().message == "v: must be the number 1");
  }
}

TEST_CASE("payload numbers: a zero mantissa with an exponent is zero", "[envelope]") {
  // RapidJSON 1.1.0's full-precision path decoded these as 1.19e-66 and -1.10e-280.
  for (const char* literal : {"0e243", "0.0e300", "0E-400", "0e308", "0.000e-99999999999", "0e0"}) {
    INFO(literal);
    auto d = decode_value(literal);
    REQUIRE(d);
    CHECK(*d == 0.0);
    CHECK_FALSE(std::signbit(*d));
  }
  auto negative = decode_value("-0.0e300");
  REQUIRE(negative);
  CHECK(*negative == 0.0);
  CHECK(std::signbit(*negative));
}

TEST_CASE("payload numbers: tiny values decode to the correctly rounded subnormal or are refused", "[envelope]") {
  // Decision: a literal is refused when it is not zero but rounds to zero; one that rounds to a
  // subnormal decodes to it (encode_payload writes subnormals, so they must round-trip).
  const double denorm_min = std::numeric_limits<double>::denorm_min();
  const std::pair<std::string, double> accepted[] = {
      {"5e-324", denorm_min},
      {"3e-324", denorm_min},  // above half of the smallest subnormal: rounds up to it
      {"2.4703282292062328e-324", denorm_min},
      {"-5e-324", -denorm_min},
      {"1e-310", 1e-310},
  };
  for (const auto& [literal, expected] : accepted) {
    INFO(literal);
    auto d = decode_value(literal);
    REQUIRE(d);
    CHECK(*d == expected);
  }
  // The segfault found by fuzzing (tests/fuzz/regressions/segv-tiny-exponent-205e-324.json).
  for (const char* literal : {"0.0000000000000000000000000000000000000000205e-324", "2e-324",
                              "2.4703282292062327e-324", "1e-400", "-1e-330", "1e-99999999999"}) {
    INFO(literal);
    require_refused(decode_value(literal), "number out of range");
  }
}

TEST_CASE("payload numbers: overflow is refused", "[envelope]") {
  // "1281e308" decoded as -3.96e-306 with RapidJSON 1.1.0's full-precision path.
  for (const char* literal : {"1281e308", "1.281e311", "1.7976931348623159e308", "-10e308", "17976931348623159e292"}) {
    INFO(literal);
    require_refused(decode_value(literal), "number out of range");
  }
  // RapidJSON's scanner refuses an exponent above 308 (plus the fraction digits) before any
  // conversion, as it always did.
  for (const char* literal : {"1e400", "-1e400", "-1e309", "0.1e310"}) {
    INFO(literal);
    require_refused(decode_value(literal), "not valid JSON (Number too big");
  }
}

TEST_CASE("payload numbers: very long literals are refused or decoded exactly", "[envelope]") {
  // The assertion found by fuzzing: a 58-digit mantissa with a fraction and e308 overflows.
  require_refused(
      decode_value("1888555555558888818855555555555588888888555555525555555888.1234567898888855552555555588888888555555577381e308"),
      "number out of range");
  // 5000 digits: an integer part that long is too big for a double, a fraction that long too long.
  require_refused(decode_value(std::string(5000, '9')), "not valid JSON (Number too big");
  require_refused(decode_value("1." + std::string(4998, '5')), "number longer than 1100 characters");
  require_refused(decode_value("0." + std::string(4998, '0') + "1e4990"), "number longer than 1100 characters");
  // Up to 1100 characters, the value is correctly rounded however many digits there are.
  const std::string longest = "1." + std::string(1097, '0') + "1";
  REQUIRE(longest.size() == 1100);
  auto one = decode_value(longest);
  REQUIRE(one);
  CHECK(*one == 1.0);
  require_refused(decode_value("1." + std::string(1098, '0') + "1"), "number longer than 1100 characters");
  // 1 + 2^-53 is halfway between 1 and the next double (ties to even: 1); one more digit
  // beyond the exact tie (digit 83) decides the rounding.
  const std::string halfway = "1.00000000000000011102230246251565404236316680908203125";
  CHECK(*decode_value(halfway) == 1.0);
  CHECK(*decode_value(halfway + "0000000000000000000000000001") == 1.0000000000000002);
}

TEST_CASE("payload strings: unpaired surrogate escapes are refused, pairs decode to UTF-8", "[envelope]") {
  // Paired: U+10000 and U+1F600, as 4-byte UTF-8.
  auto pair = decode_code(R"(a\ud800\udc00b)");
  REQUIRE(pair);
  CHECK(*pair == "a\xF0\x90\x80\x80" "b");
  auto emoji = decode_code(R"(\uD83D\uDE00)");
  REQUIRE(emoji);
  CHECK(*emoji == "\xF0\x9F\x98\x80");
  auto bmp = decode_code(R"(\u00e9\u2103\uffff)");
  REQUIRE(bmp);
  CHECK(*bmp == "\xC3\xA9\xE2\x84\x83\xEF\xBF\xBF");
  // What decodes also encodes (the writer validates UTF-8).
  std::vector<core::Reading> one = {simple(*pair, 1, "u", "2026-11-28T10:15:00Z")};
  CHECK(encode_payload(one));

  // Lone low surrogates: RapidJSON decodes them to the bytes ED B0 80; the decoder refuses them.
  for (const char* code : {R"(8867-4\udc00)", R"(\uDFFF)", R"(\udc00\ud800\udc00)", R"(\udbff\udfff\udc00)"}) {
    INFO(code);
    auto r = decode_code(code);
    REQUIRE_FALSE(r);
    CHECK(r.error().reason == "bad_payload");
    CHECK(r.error().message.rfind("payload: string not valid Unicode", 0) == 0);
  }
  // Lone high surrogates, or a high surrogate followed by something else: RapidJSON refuses them.
  for (const char* code : {R"(\ud800)", R"(\ud800x)", R"(\ud800\u0041)", R"(\ud800\ud800)", R"(\udbff")"}) {
    INFO(code);
    auto r = decode_code(code);
    REQUIRE_FALSE(r);
    CHECK(r.error().reason == "bad_payload");
    CHECK(r.error().message.rfind("payload: not valid JSON (", 0) == 0);
  }
  // Also in unknown members and member names, which are otherwise ignored.
  auto in_value = decode(with_reading(R"({"note":"\udc00",)" + kGood.substr(1)));
  REQUIRE_FALSE(in_value);
  CHECK(in_value.error().message.rfind("payload: string not valid Unicode", 0) == 0);
  auto in_name = decode(with_reading(R"({"\udc00":1,)" + kGood.substr(1)));
  REQUIRE_FALSE(in_name);
  CHECK(in_name.error().message.rfind("payload: member name not valid Unicode", 0) == 0);
  // Raw (unescaped) surrogate bytes were already refused as invalid UTF-8.
  auto raw = decode_code("\xED\xB0\x80");
  REQUIRE_FALSE(raw);
  CHECK(raw.error().message.rfind("payload: not valid JSON (", 0) == 0);
}

TEST_CASE("payload times: an offset that moves the instant outside 0000..9999 in UTC is refused",
          "[envelope]") {
  // Found by fuzzing: accepted by the decoder, then refused by the encoder on the way back.
  auto early = decode(
      R"({"v":1,"readings":[{"code":"8867-4","value":1,"unit":"/min","time":"0000-01-01T00:00:00+23:59"}]})");
  REQUIRE_FALSE(early);
  CHECK(early.error().message.find("outside the years 0000..9999") != std::string::npos);
  auto late = decode(
      R"({"v":1,"readings":[{"code":"8867-4","value":1,"unit":"/min","time":"9999-12-31T23:59:00-01:00"}]})");
  REQUIRE_FALSE(late);
  // Inside the range, offsets are fine.
  auto ok = decode(
      R"({"v":1,"readings":[{"code":"8867-4","value":1,"unit":"/min","time":"0000-01-01T00:00:00-01:00"}]})");
  REQUIRE(ok);
}
