#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <fstream>
#include <string>

#include "telehub/core/bytes.h"
#include "telehub/gateway/provisioning.h"
#include "test_support.h"

namespace telehub::gateway {
namespace {

using telehub::testing::TempDir;

constexpr const char* kKeyHex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

Provisioning sample() {
  Provisioning p;
  p.device_id = "dev-3f9c0a";
  p.key_id = 7;
  p.key = *core::from_hex(kKeyHex);
  p.broker_uri = "tcp://127.0.0.1:41883";
  p.readings_topic = readings_topic_for(p.device_id);
  return p;
}

unsigned mode_of(const std::filesystem::path& p) {
  struct stat st {};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("readings_topic_for follows the protocol", "[gateway]") {
  CHECK(readings_topic_for("dev-1") == "telehub/v1/devices/dev-1/readings");
}

TEST_CASE("provisioning round-trips through a 0600 file", "[gateway]") {
  TempDir dir;
  const auto file = dir.path() / "dev.json";
  const auto p = sample();
  REQUIRE(save_provisioning(file, p));
  CHECK(mode_of(file) == 0600);
  CHECK_FALSE(std::filesystem::exists(dir.path() / "dev.json.tmp"));

  auto loaded = load_provisioning(file);
  REQUIRE(loaded);
  CHECK(loaded->device_id == p.device_id);
  CHECK(loaded->key_id == p.key_id);
  CHECK(loaded->key == p.key);
  CHECK(loaded->broker_uri == p.broker_uri);
  CHECK(loaded->readings_topic == p.readings_topic);

  const auto text = read_text(file);
  CHECK_THAT(text, Catch::Contains("\"telehub_provisioning\": 1"));
  CHECK_THAT(text, Catch::Contains(kKeyHex));

  SECTION("overwriting a world-readable file leaves it 0600") {
    std::filesystem::permissions(file, std::filesystem::perms(0644));
    REQUIRE(save_provisioning(file, p));
    CHECK(mode_of(file) == 0600);
  }
}

TEST_CASE("the documented example file loads, with upper-case key hex", "[gateway]") {
  TempDir dir;
  const auto file = dir.path() / "example.json";
  std::string key_upper = kKeyHex;
  for (auto& c : key_upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::ofstream(file) << R"({"telehub_provisioning":1,
 "device_id":"dev-3f9c0a",
 "key_id":1,
 "key":")" << key_upper << R"(",
 "broker":"tcp://127.0.0.1:41883",
 "topics":{"readings":"telehub/v1/devices/dev-3f9c0a/readings"}})";
  auto p = load_provisioning(file);
  REQUIRE(p);
  CHECK(p->key == *core::from_hex(kKeyHex));
  CHECK(p->key_id == 1);
}

TEST_CASE("malformed provisioning files are rejected naming the member, never the key", "[gateway]") {
  TempDir dir;
  const auto file = dir.path() / "bad.json";
  const std::string key = std::string("\"") + kKeyHex + "\"";
  const std::string topics = R"({"readings":"telehub/v1/devices/dev-1/readings"})";
  auto doc = [&](const std::string& version, const std::string& device, const std::string& key_id, const std::string& k,
                 const std::string& broker, const std::string& t) {
    std::string s = "{";
    auto add = [&](const char* name, const std::string& v) {
      if (v.empty()) return;
      if (s.size() > 1) s += ",";
      s += std::string("\"") + name + "\":" + v;
    };
    add("telehub_provisioning", version);
    add("device_id", device);
    add("key_id", key_id);
    add("key", k);
    add("broker", broker);
    add("topics", t);
    return s + "}";
  };
  const std::string v = "1", dev = "\"dev-1\"", kid = "1", br = "\"tcp://127.0.0.1:41883\"";

  struct Case {
    std::string json;
    std::string member;
  };
  const Case cases[] = {
      {"not json", "(document)"},
      {"[1,2]", "(document)"},
      {doc("", dev, kid, key, br, topics), "telehub_provisioning"},
      {doc("2", dev, kid, key, br, topics), "telehub_provisioning"},
      {doc("\"1\"", dev, kid, key, br, topics), "telehub_provisioning"},
      {doc(v, "", kid, key, br, topics), "device_id"},
      {doc(v, "\"dev 1\"", kid, key, br, topics), "device_id"},
      {doc(v, "42", kid, key, br, topics), "device_id"},
      {doc(v, dev, "", key, br, topics), "key_id"},
      {doc(v, dev, "-1", key, br, topics), "key_id"},
      {doc(v, dev, "4294967296", key, br, topics), "key_id"},
      {doc(v, dev, "\"1\"", key, br, topics), "key_id"},
      {doc(v, dev, kid, "", br, topics), "key"},
      {doc(v, dev, kid, std::string("\"") + std::string(kKeyHex).substr(2) + "\"", br, topics), "key"},
      {doc(v, dev, kid, std::string("\"zz") + std::string(kKeyHex).substr(2) + "\"", br, topics), "key"},
      {doc(v, dev, kid, key, "", topics), "broker"},
      {doc(v, dev, kid, key, "\"127.0.0.1:1883\"", topics), "broker"},
      {doc(v, dev, kid, key, br, ""), "topics"},
      {doc(v, dev, kid, key, br, "{}"), "topics.readings"},
      {doc(v, dev, kid, key, br, R"({"readings":"telehub/v1/devices/dev-2/readings"})"), "topics.readings"},
  };
  for (const auto& c : cases) {
    INFO(c.json);
    std::ofstream(file, std::ios::trunc) << c.json;
    auto p = load_provisioning(file);
    REQUIRE_FALSE(p);
    CHECK(p.error().reason == "bad_provisioning");
    CHECK(p.error().message.rfind(c.member + ":", 0) == 0);
    CHECK_THAT(p.error().message, !Catch::Contains(std::string(kKeyHex).substr(2, 40)));
  }
}

TEST_CASE("provisioning I/O failures and invalid values on save", "[gateway]") {
  TempDir dir;
  SECTION("missing file") {
    auto p = load_provisioning(dir.path() / "absent.json");
    REQUIRE_FALSE(p);
    CHECK(p.error().reason == "provisioning_io");
  }
  SECTION("directory does not exist") {
    auto s = save_provisioning(dir.path() / "no" / "such" / "dir.json", sample());
    REQUIRE_FALSE(s);
    CHECK(s.error().reason == "provisioning_io");
  }
  SECTION("a short key is not written") {
    auto p = sample();
    p.key.resize(16);
    auto s = save_provisioning(dir.path() / "short.json", p);
    REQUIRE_FALSE(s);
    CHECK(s.error().reason == "bad_provisioning");
    CHECK_FALSE(std::filesystem::exists(dir.path() / "short.json"));
  }
  SECTION("a topic that does not match the device is not written") {
    auto p = sample();
    p.readings_topic = readings_topic_for("someone-else");
    auto s = save_provisioning(dir.path() / "topic.json", p);
    REQUIRE_FALSE(s);
    CHECK(s.error().reason == "bad_provisioning");
  }
}

}  // namespace telehub::gateway
