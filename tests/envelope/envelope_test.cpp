#include <catch2/catch.hpp>

#include <string>

#include "telehub/core/bytes.h"
#include "telehub/envelope/envelope.h"

using namespace telehub;
using namespace telehub::envelope;

namespace {

// docs/protocol.md "Test vectors", computed independently by tests/envelope/gen_vectors.mjs
// (Node.js crypto), not by this code.
struct Vector {
  const char* name;
  const char* key_hex;
  Header header;
  const char* plaintext;
  const char* sealed_hex;
};

const Vector kVectors[] = {
    {"heart rate, one reading", "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
     Header{kVersion, "dev-0001", 1, 1},
     R"({"v":1,"readings":[{"code":"8867-4","value":72,"unit":"/min","time":"2026-11-28T10:15:00.000Z"}]})",
     "544801086465762d30303031000000010000000000000001d035b2ecf4efcff998527ed982ad5fb45377a778cdbd7a9716706c"
     "64580ddb0d27cdc3f7bed3a8728946f8f4167dec4c378f345bae5af1c9c0249aa922007fc63d2ccc94f44766e656c8b1b6b7e7"
     "17949de4158b9d326a3f70dcb26c337d7ac680f69f48a5f721dbdaab7649c438709f24"},
    {"blood pressure panel and temperature, 64-bit sequence",
     "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f", Header{kVersion, "bp-cuff.A7-x", 7, 4294967297},
     R"({"v":1,"readings":[{"code":"85354-9","time":"2026-11-28T07:30:05.250Z","components":[)"
     R"({"code":"8480-6","value":128,"unit":"mm[Hg]"},{"code":"8462-4","value":82,"unit":"mm[Hg]"}]},)"
     R"({"code":"8310-5","value":37.2,"unit":"Cel","time":"2026-11-28T07:31:00.000Z"}]})",
     "5448010c62702d637566662e41372d78000000070000000100000001decb5497ece26bcfa72c378d13f12cf98099cd95f56a8e"
     "aacbeb87750aa8a9d044b8d45dd5039ef74afd942bc41f516acf7c21d516aef99d89134e065bee853c01b1bde50c046457fa27"
     "70df4aacac57ef74a279c704a29f656e284d9a2335c5fe4ae5d11b6559bc81f751acb7f496a7ae6e14da0009d0da33e00b830a"
     "28497ed5f3d7f931a5e5daff17d2c468a520ff0d77b55ff4425cb4cc2c8db31b727129c8ec5bb4ebc89d32babc44f934caac4e"
     "33948752cee0405a081d47be664c38b032b6177ffa2deda7e4ac5e2de99c8806337b3eae5ad138ff90d1985527418db818581e"
     "a0d5dc8456e36a163fde673e14164ef1ae63f6b8ce56cbbd9f6b06ed99c41983fb08789d4e37b6c487b67f23fa06"},
    {"shortest device id, short plaintext, extreme key id and sequence",
     "a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5",
     Header{kVersion, "a", 0xffffffffu, 0xfffffffffffffffeull}, "{}",
     "5448010161fffffffffffffffffffffffe4ce0aece5c65170f863402fe3067067143e3"},
};

core::Bytes hex(std::string_view h) {
  auto b = core::from_hex(h);
  REQUIRE(b);
  return *b;
}

core::Bytes key_of(std::uint8_t fill) { return core::Bytes(kKeySize, fill); }

core::Bytes sealed_sample() {
  auto sealed = seal(Header{kVersion, "dev-0001", 3, 42}, key_of(0x11), core::as_bytes("hello"));
  REQUIRE(sealed);
  return *sealed;
}

void check_error(const core::Error& e, core::Code code, const std::string& reason) {
  CHECK(e.code == code);
  CHECK(e.reason == reason);
}

}  // namespace

TEST_CASE("test vectors: seal produces the expected bytes, open and peek invert it", "[envelope]") {
  for (const Vector& v : kVectors) {
    INFO(v.name);
    const core::Bytes key = hex(v.key_hex);
    const core::Bytes expected = hex(v.sealed_hex);

    auto sealed = seal(v.header, key, core::as_bytes(v.plaintext));
    REQUIRE(sealed);
    CHECK(core::to_hex(*sealed) == v.sealed_hex);

    auto header = peek(expected);
    REQUIRE(header);
    CHECK(*header == v.header);

    auto opened = open(expected, key);
    REQUIRE(opened);
    CHECK(std::string(opened->begin(), opened->end()) == v.plaintext);
  }
}

TEST_CASE("nonce is key id then sequence, both big-endian", "[envelope]") {
  const auto n = nonce_for(0x01020304u, 0x05060708090a0b0cull);
  CHECK(core::to_hex(n) == "0102030405060708090a0b0c");
  CHECK(core::to_hex(nonce_for(7, 4294967297ull)) == "000000070000000100000001");
  CHECK(core::to_hex(nonce_for(0, 1)) == "000000000000000000000001");
}

TEST_CASE("round trips, including an empty plaintext and the longest device id", "[envelope]") {
  const std::string texts[] = {"", "x", std::string(5000, 'p')};
  for (const Header& h : {Header{kVersion, std::string(64, 'x'), 9, 1}, Header{kVersion, "A.b-c-9", 0, ~0ull}}) {
    for (const std::string& text : texts) {
      auto sealed = seal(h, key_of(0x42), core::as_bytes(text));
      REQUIRE(sealed);
      CHECK(sealed->size() == 16 + h.device_id.size() + text.size() + kTagSize);
      auto header = peek(*sealed);
      REQUIRE(header);
      CHECK(*header == h);
      auto opened = open(*sealed, key_of(0x42));
      REQUIRE(opened);
      CHECK(std::string(opened->begin(), opened->end()) == text);
    }
  }
}

TEST_CASE("every single-bit flip is rejected", "[envelope]") {
  const Vector& v = kVectors[2];  // 35 bytes: "a" device id, 2-byte plaintext
  const core::Bytes key = hex(v.key_hex);
  const core::Bytes good = hex(v.sealed_hex);
  for (std::size_t bit = 0; bit < good.size() * 8; ++bit) {
    core::Bytes b = good;
    b[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    auto opened = open(b, key);
    INFO("bit " << bit);
    REQUIRE_FALSE(opened);
    const std::string& reason = opened.error().reason;
    const std::size_t byte = bit / 8;
    if (byte < 2) {
      CHECK(reason == "not_envelope");
    } else if (byte == 2) {
      CHECK(reason == "unsupported_version");
    } else if (byte == 3) {
      CHECK((reason == "bad_header" || reason == "not_envelope"));
    } else if (byte < 5) {
      CHECK((reason == "bad_header" || reason == "bad_seal"));  // device id character
    } else {
      CHECK(reason == "bad_seal");  // key id, sequence, ciphertext, tag
      CHECK(opened.error().code == core::Code::kUnauthenticated);
    }
  }
}

TEST_CASE("a flipped sequence bit that yields sequence 0 is a header error", "[envelope]") {
  auto sealed = seal(Header{kVersion, "dev", 1, 1}, key_of(1), core::as_bytes("{}"));
  REQUIRE(sealed);
  (*sealed)[16 + 3 - 1] ^= 1;  // last sequence byte: 1 -> 0
  auto opened = open(*sealed, key_of(1));
  REQUIRE_FALSE(opened);
  check_error(opened.error(), core::Code::kInvalidArgument, "bad_header");
}

TEST_CASE("wrong key fails authentication and a key of the wrong size is refused", "[envelope]") {
  const core::Bytes sealed = sealed_sample();
  auto opened = open(sealed, key_of(0x12));
  REQUIRE_FALSE(opened);
  check_error(opened.error(), core::Code::kUnauthenticated, "bad_seal");

  for (std::size_t n : {0u, 16u, 31u, 33u}) {
    INFO(n);
    const core::Bytes key(n, 0x11);
    auto o = open(sealed, key);
    REQUIRE_FALSE(o);
    check_error(o.error(), core::Code::kInvalidArgument, "bad_key");
    auto s = seal(Header{kVersion, "dev-0001", 3, 42}, key, core::as_bytes("hello"));
    REQUIRE_FALSE(s);
    check_error(s.error(), core::Code::kInvalidArgument, "bad_key");
  }
}

TEST_CASE("the same plaintext under another key id or sequence gives unrelated bytes", "[envelope]") {
  const auto a = seal(Header{kVersion, "d", 1, 1}, key_of(7), core::as_bytes("same"));
  const auto b = seal(Header{kVersion, "d", 1, 2}, key_of(7), core::as_bytes("same"));
  const auto c = seal(Header{kVersion, "d", 2, 1}, key_of(7), core::as_bytes("same"));
  REQUIRE((a && b && c));
  const std::size_t ct = 16 + 1;
  CHECK(!std::equal(a->begin() + ct, a->end(), b->begin() + ct));
  CHECK(!std::equal(a->begin() + ct, a->end(), c->begin() + ct));
}

TEST_CASE("truncated envelopes are not envelopes and once the tag fits they fail the seal", "[envelope]") {
  const core::Bytes sealed = sealed_sample();  // header 24 bytes, 5 bytes ciphertext, tag
  const std::size_t minimum = 16 + 8 + kTagSize;
  for (std::size_t n = 0; n < sealed.size(); ++n) {
    INFO("length " << n);
    const std::span<const std::uint8_t> prefix(sealed.data(), n);
    auto opened = open(prefix, key_of(0x11));
    REQUIRE_FALSE(opened);
    CHECK(opened.error().reason == (n < minimum ? "not_envelope" : "bad_seal"));
    if (n < minimum) CHECK(peek(prefix).error().reason == "not_envelope");
  }
}

TEST_CASE("peek rejects wrong magic and other versions", "[envelope]") {
  core::Bytes b = sealed_sample();
  b[2] = 2;
  auto h = peek(b);
  REQUIRE_FALSE(h);
  check_error(h.error(), core::Code::kInvalidArgument, "unsupported_version");
  CHECK(open(b, key_of(0x11)).error().reason == "unsupported_version");

  core::Bytes m = sealed_sample();
  m[0] = 'X';
  CHECK(peek(m).error().reason == "not_envelope");
  CHECK(peek(core::as_bytes("{\"v\":1,\"readings\":[]}")).error().reason == "not_envelope");
}

TEST_CASE("bad device ids and sequence 0 are header errors on seal and peek", "[envelope]") {
  CHECK(valid_device_id("dev-0001"));
  CHECK(valid_device_id("A.b-c-9"));
  CHECK(valid_device_id(std::string(64, 'z')));
  const std::string bad_ids[] = {"", std::string(65, 'z'), "dev 1", "dev/1", "dev+1", "dev#", "dev_1", "é", std::string("a\0b", 3)};
  for (const std::string& id : bad_ids) {
    INFO("id of length " << id.size());
    CHECK_FALSE(valid_device_id(id));
    auto s = seal(Header{kVersion, id, 1, 1}, key_of(1), core::as_bytes("{}"));
    REQUIRE_FALSE(s);
    check_error(s.error(), core::Code::kInvalidArgument, "bad_header");
  }
  auto zero = seal(Header{kVersion, "dev", 1, 0}, key_of(1), core::as_bytes("{}"));
  REQUIRE_FALSE(zero);
  check_error(zero.error(), core::Code::kInvalidArgument, "bad_header");

  auto v2 = seal(Header{2, "dev", 1, 1}, key_of(1), core::as_bytes("{}"));
  REQUIRE_FALSE(v2);
  CHECK(v2.error().reason == "unsupported_version");

  // Hand-built headers: length byte 0 and 65, and a bad character.
  core::Bytes b = sealed_sample();
  for (std::uint8_t len : {std::uint8_t{0}, std::uint8_t{65}}) {
    core::Bytes c = b;
    c[3] = len;
    c.resize(200, 0);
    CHECK(peek(c).error().reason == "bad_header");
  }
  core::Bytes c = b;
  c[4] = '/';
  CHECK(peek(c).error().reason == "bad_header");
}

TEST_CASE("error messages carry neither identifiers nor bytes", "[envelope]") {
  auto sealed = seal(Header{kVersion, "SECRETDEV", 1, 1}, key_of(0x11), core::as_bytes("SECRETTEXT"));
  REQUIRE(sealed);
  auto opened = open(*sealed, key_of(0x22));
  REQUIRE_FALSE(opened);
  CHECK(opened.error().message.find("SECRET") == std::string::npos);
  auto bad = seal(Header{kVersion, "SECRET DEV", 1, 1}, key_of(0x11), core::as_bytes("x"));
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("SECRET") == std::string::npos);
}
