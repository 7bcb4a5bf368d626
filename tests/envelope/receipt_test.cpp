#include <catch2/catch.hpp>

#include "telehub/core/bytes.h"
#include "telehub/envelope/receipt.h"

using namespace telehub;
using envelope::Receipt;

TEST_CASE("receipts round trip and have the documented shape", "[envelope][receipt]") {
  Receipt stored{"dev-3f9c0a", 42, Receipt::Status::kStored, ""};
  auto text = envelope::encode_receipt(stored);
  REQUIRE(text);
  CHECK(*text == R"({"v":1,"device":"dev-3f9c0a","sequence":42,"status":"stored"})");
  CHECK(*envelope::decode_receipt(core::as_bytes(*text)) == stored);
  Receipt rejected{"dev-3f9c0a", 43, Receipt::Status::kRejected, "bad_unit"};
  auto t2 = envelope::encode_receipt(rejected);
  REQUIRE(t2);
  CHECK(*t2 == R"({"v":1,"device":"dev-3f9c0a","sequence":43,"status":"rejected","reason":"bad_unit"})");
  CHECK(*envelope::decode_receipt(core::as_bytes(*t2)) == rejected);
  Receipt big{"a", 18446744073709551615ull, Receipt::Status::kDuplicate, ""};
  CHECK(*envelope::decode_receipt(core::as_bytes(*envelope::encode_receipt(big))) == big);
  CHECK(envelope::receipts_topic_for("dev-1") == "telehub/v1/devices/dev-1/receipts");
}

TEST_CASE("malformed receipts are refused", "[envelope][receipt]") {
  for (const char* bad : {"", "[]", R"({"v":2,"device":"d","sequence":1,"status":"stored"})",
                          R"({"v":1,"device":"d d","sequence":1,"status":"stored"})",
                          R"({"v":1,"device":"d","sequence":0,"status":"stored"})",
                          R"({"v":1,"device":"d","sequence":-1,"status":"stored"})",
                          R"({"v":1,"device":"d","sequence":1,"status":"maybe"})",
                          R"({"v":1,"device":"d","sequence":1,"status":"rejected"})"}) {
    INFO(bad);
    auto r = envelope::decode_receipt(core::as_bytes(bad));
    REQUIRE_FALSE(r);
    CHECK(r.error().reason == "bad_receipt");
  }
  CHECK_FALSE(envelope::encode_receipt({"dev_x", 1, Receipt::Status::kStored, ""}));
  CHECK_FALSE(envelope::encode_receipt({"dev", 0, Receipt::Status::kStored, ""}));
}
