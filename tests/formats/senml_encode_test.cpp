#include <catch2/catch.hpp>

#include "telehub/core/codes.h"
#include "telehub/formats/senml.h"
#include "telehub/formats/senml_encode.h"
#include "telehub/formats/units.h"

using namespace telehub;

namespace {

core::Reading reading(std::string code, double value, std::string unit, core::TimePoint t) {
  core::Reading r;
  r.code = std::move(code);
  r.value = value;
  r.unit = std::move(unit);
  r.time = t;
  return r;
}

std::span<const std::uint8_t> bytes(const std::string& s) { return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}; }

}  // namespace

TEST_CASE("readings encoded as SenML decode back to the same readings", "[formats][senml]") {
  const auto t = core::from_unix_millis(1'764'320'100'000);
  std::vector<core::Reading> in{
      reading("8867-4", 72, "/min", t),
      reading("59408-5", 97, "%", t + std::chrono::seconds(5)),
      reading("9279-1", 14, "/min", t + std::chrono::seconds(5)),
      reading("8310-5", 36.8, "Cel", t + std::chrono::minutes(1)),
      reading("29463-7", 81.25, "kg", t + std::chrono::minutes(2)),
      reading("15074-8", 5.4, "mmol/L", t + std::chrono::minutes(3)),
      reading("41950-7", 8421, "/d", t + std::chrono::hours(2)),
  };
  core::Reading bp;
  bp.code = "85354-9";
  bp.time = t - std::chrono::seconds(30);
  bp.components = {{"8480-6", 128, "mm[Hg]"}, {"8462-4", 82, "mm[Hg]"}};
  in.push_back(bp);
  auto pack = formats::encode_senml(in, "urn:dev:telehub:dev-0011223344556677:");
  REQUIRE(pack);
  CHECK(pack->find("\"bn\":\"urn:dev:telehub:dev-0011223344556677:\"") != std::string::npos);
  auto decoded = formats::decode_senml(bytes(*pack), t);
  INFO(*pack);
  REQUIRE(decoded);
  REQUIRE(formats::normalise(decoded->readings));
  REQUIRE(decoded->readings.size() == in.size());
  // Same readings; the decoder keeps pack order, with the panel where its first component was.
  for (const auto& want : in) {
    bool found = false;
    for (const auto& got : decoded->readings)
      if (got.code == want.code && got.time == want.time && got.value == want.value && got.unit == want.unit &&
          got.components == want.components)
        found = true;
    INFO(want.code);
    CHECK(found);
  }
}

TEST_CASE("SenML encoding refuses what it cannot write", "[formats][senml]") {
  const auto t = core::from_unix_millis(1'764'320'100'000);
  CHECK_FALSE(formats::encode_senml({}, "urn:x:"));
  std::vector<core::Reading> odd{reading("8867-4", 72, "[lb_av]", t)};
  CHECK_FALSE(formats::encode_senml(odd, "urn:x:"));
  std::vector<core::Reading> nan{reading("8867-4", std::nan(""), "/min", t)};
  CHECK_FALSE(formats::encode_senml(nan, "urn:x:"));
  std::vector<core::Reading> ok{reading("8867-4", 72, "/min", t)};
  CHECK_FALSE(formats::encode_senml(ok, "urn:\"x:"));
}
