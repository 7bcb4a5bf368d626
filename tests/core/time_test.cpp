#include <catch2/catch.hpp>

#include "telehub/core/bytes.h"
#include "telehub/core/codes.h"
#include "telehub/core/time.h"

using namespace telehub::core;

TEST_CASE("RFC 3339 round trip with milliseconds", "[core][time]") {
  auto t = parse_rfc3339("2026-11-28T10:15:30.123Z");
  REQUIRE(t);
  CHECK(format_rfc3339(*t) == "2026-11-28T10:15:30.123Z");
  CHECK(to_unix_millis(*t) == 1795860930123);
}

TEST_CASE("RFC 3339 offsets are converted to UTC", "[core][time]") {
  auto t = parse_rfc3339("2026-11-28T11:15:30+01:00");
  REQUIRE(t);
  CHECK(format_rfc3339(*t) == "2026-11-28T10:15:30.000Z");
  auto u = parse_rfc3339("2026-03-01T00:30:00.5-02:30");
  REQUIRE(u);
  CHECK(format_rfc3339(*u) == "2026-03-01T03:00:00.500Z");
}

TEST_CASE("RFC 3339 rejects malformed and impossible dates", "[core][time]") {
  for (const char* bad : {"2026-02-29T00:00:00Z", "2026-11-28", "2026-11-28T10:15:30", "2026-11-28 10:15:30Z",
                          "2026-11-28T25:00:00Z", "2026-11-28T10:15:30.Z", "2026-11-28T10:15:30Zjunk",
                          "2026-13-01T00:00:00Z", ""}) {
    auto t = parse_rfc3339(bad);
    INFO(bad);
    REQUIRE_FALSE(t);
    CHECK(t.error().reason == "bad_time");
    CHECK(t.error().code == Code::kInvalidArgument);
  }
  CHECK(parse_rfc3339("2024-02-29T23:59:59.999Z"));
}

TEST_CASE("hex and base64 round trip and reject garbage", "[core][bytes]") {
  Bytes b{0x00, 0x01, 0xfe, 0xff, 0x7f};
  CHECK(to_hex(b) == "0001feff7f");
  CHECK(*from_hex("0001FEFF7F") == b);
  CHECK_FALSE(from_hex("abc"));
  CHECK_FALSE(from_hex("zz"));
  CHECK(to_base64(as_bytes("foobar")) == "Zm9vYmFy");
  CHECK(to_base64(as_bytes("fooba")) == "Zm9vYmE=");
  CHECK(to_base64(as_bytes("foob")) == "Zm9vYg==");
  CHECK(*from_base64("Zm9vYg==") == Bytes{'f', 'o', 'o', 'b'});
  CHECK_FALSE(from_base64("Zm9v!g=="));
  CHECK_FALSE(from_base64("Zm9"));
  auto r1 = random_bytes(32), r2 = random_bytes(32);
  REQUIRE(r1);
  REQUIRE(r2);
  CHECK(r1->size() == 32);
  CHECK(*r1 != *r2);
}

TEST_CASE("code table has the vital signs with UCUM units and MDC codes", "[core][codes]") {
  auto* hr = find_code("8867-4");
  REQUIRE(hr);
  CHECK(hr->ucum == "/min");
  CHECK(hr->mdc == 149546u);
  CHECK(find_code("85354-9")->panel);
  CHECK(find_code("8480-6")->ucum == "mm[Hg]");
  CHECK(find_code("15074-8")->ucum == "mmol/L");
  CHECK(find_code("0000-0") == nullptr);
}
