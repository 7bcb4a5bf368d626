// privacy::Kek: loading the key-encryption key and wrapping keys under it (real OpenSSL).
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>

#include "telehub/privacy/keystore.h"
#include "telehub/privacy/pseudonym.h"
#include "test_support.h"

using namespace telehub;

namespace {

const std::string kHex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

void write_file(const std::filesystem::path& p, const std::string& content, mode_t mode) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary | std::ios::trunc) << content;
  REQUIRE(::chmod(p.c_str(), mode) == 0);
}

}  // namespace

TEST_CASE("wrap and unwrap round-trip, and the blob is version | nonce | ciphertext | tag", "[privacy][keys]") {
  auto kek = privacy::Kek::from_hex(kHex);
  REQUIRE(kek);
  const core::Bytes key(32, 0x5a);
  const auto ad = privacy::device_key_ad("dev-1", 1);
  CHECK(ad == "telehub-key-v1|device|dev-1#1");
  auto blob = kek->wrap(key, ad);
  REQUIRE(blob);
  CHECK(blob->size() == 1 + 12 + 32 + 16);
  CHECK((*blob)[0] == 0x01);
  CHECK(std::search(blob->begin(), blob->end(), key.begin(), key.end()) == blob->end());
  auto back = kek->unwrap(*blob, ad);
  REQUIRE(back);
  CHECK(*back == key);
  // A fresh nonce each time.
  CHECK(*kek->wrap(key, ad) != *blob);
}

TEST_CASE("unwrap fails with unwrap_failed for a wrong KEK, wrong associated data or a flipped bit",
          "[privacy][keys]") {
  auto kek = *privacy::Kek::from_hex(kHex);
  auto other = *privacy::Kek::from_hex(std::string(64, 'F'));
  const core::Bytes key(32, 7);
  const auto ad = privacy::device_key_ad("dev-1", 1);
  const auto blob = *kek.wrap(key, ad);

  auto wrong_kek = other.unwrap(blob, ad);
  REQUIRE_FALSE(wrong_kek);
  CHECK(wrong_kek.error().reason == "unwrap_failed");
  CHECK_FALSE(kek.unwrap(blob, privacy::device_key_ad("dev-1", 2)));
  CHECK_FALSE(kek.unwrap(blob, privacy::device_key_ad("dev-2", 1)));
  CHECK_FALSE(kek.unwrap(blob, privacy::key_ad("pseudonym", "subject")));
  for (std::size_t i = 0; i < blob.size() * 8; ++i) {
    auto bad = blob;
    bad[i / 8] ^= static_cast<std::uint8_t>(1u << (i % 8));
    auto r = kek.unwrap(bad, ad);
    REQUIRE_FALSE(r);
    CHECK(r.error().reason == "unwrap_failed");
  }
  CHECK(kek.unwrap(core::Bytes(blob.begin(), blob.begin() + 20), ad).error().reason == "unwrap_failed");
  CHECK(kek.unwrap({}, ad).error().reason == "unwrap_failed");
}

TEST_CASE("KEK parsing: 64 hex characters or 32 raw bytes, nothing else", "[privacy][keys]") {
  CHECK(privacy::Kek::from_hex(kHex));
  CHECK(privacy::Kek::from_hex(kHex + "\n"));
  CHECK(privacy::Kek::from_hex(std::string(64, 'A')));
  CHECK(privacy::Kek::from_hex(kHex.substr(2)).error().reason == "bad_kek");
  CHECK(privacy::Kek::from_hex(kHex + "00").error().reason == "bad_kek");
  CHECK(privacy::Kek::from_hex(std::string(64, 'g')).error().reason == "bad_kek");
  CHECK(privacy::Kek::from_bytes(core::Bytes(32, 1)));
  CHECK(privacy::Kek::from_bytes(core::Bytes(31, 1)).error().reason == "bad_kek");
}

TEST_CASE("KEK from the TELEHUB_KEK environment variable", "[privacy][keys]") {
  ::unsetenv("TELEHUB_KEK");
  CHECK(privacy::Kek::from_env().error().reason == "no_kek");
  ::setenv("TELEHUB_KEK", "not-hex", 1);
  auto bad = privacy::Kek::from_env();
  REQUIRE_FALSE(bad);
  CHECK(bad.error().reason == "bad_kek");
  CHECK(bad.error().message.find("not-hex") == std::string::npos);
  ::setenv("TELEHUB_KEK", kHex.c_str(), 1);
  auto env = privacy::Kek::from_env();
  REQUIRE(env);
  auto direct = *privacy::Kek::from_hex(kHex);
  const auto ad = privacy::key_ad("test", "env");
  CHECK(direct.unwrap(*env->wrap(core::Bytes(32, 3), ad), ad));
  // resolve(): an explicit file wins over the variable; the variable over the dev default.
  testing::TempDir dir;
  CHECK(privacy::Kek::resolve({}, dir.path() / "data"));
  CHECK(privacy::Kek::resolve(dir.path() / "missing", dir.path() / "data").error().reason == "no_kek");
  ::unsetenv("TELEHUB_KEK");
}

TEST_CASE("KEK file: raw or hex, mode 0600, never inside the data directory", "[privacy][keys]") {
  testing::TempDir dir;
  const auto data = dir.path() / "data";
  std::filesystem::create_directories(data);
  const auto hex_file = dir.path() / "secrets" / "kek.hex";
  write_file(hex_file, kHex + "\n", 0600);
  auto from_hex = privacy::Kek::from_file(hex_file, data);
  REQUIRE(from_hex);
  const auto raw_file = dir.path() / "secrets" / "kek.raw";
  std::string raw;
  for (int i = 0; i < 32; ++i) raw.push_back(static_cast<char>(i));
  write_file(raw_file, raw, 0400);
  auto from_raw = privacy::Kek::from_file(raw_file, data);
  REQUIRE(from_raw);
  const auto ad = privacy::key_ad("test", "file");
  CHECK(from_raw->unwrap(*from_hex->wrap(core::Bytes(32, 9), ad), ad));  // the same key

  write_file(hex_file, kHex, 0640);
  auto group = privacy::Kek::from_file(hex_file, data);
  REQUIRE_FALSE(group);
  CHECK(group.error().reason == "bad_kek");
  CHECK(group.error().message.find("chmod 600") != std::string::npos);
  write_file(hex_file, kHex, 0604);
  CHECK(privacy::Kek::from_file(hex_file, data).error().reason == "bad_kek");

  const auto inside = data / "keys" / "kek";
  write_file(inside, kHex, 0600);
  auto in_data = privacy::Kek::from_file(inside, data);
  REQUIRE_FALSE(in_data);
  CHECK(in_data.error().reason == "kek_inside_data");
  // Also through ".." and when data is given with a trailing separator.
  CHECK(privacy::Kek::from_file(dir.path() / "secrets" / ".." / "data" / "keys" / "kek", data.string() + "/")
            .error().reason == "kek_inside_data");
  CHECK(privacy::Kek::open_or_create_file(data / "new-kek", data).error().reason == "kek_inside_data");
  CHECK_FALSE(std::filesystem::exists(data / "new-kek"));
  // A sibling whose name merely starts with the data dir's name is not inside it.
  const auto sibling = dir.path() / "data2" / "kek";
  write_file(sibling, kHex, 0600);
  CHECK(privacy::Kek::from_file(sibling, data));

  write_file(hex_file, "short", 0600);
  CHECK(privacy::Kek::from_file(hex_file, data).error().reason == "bad_kek");
  CHECK(privacy::Kek::from_file(dir.path() / "none", data).error().reason == "no_kek");
}

TEST_CASE("the development KEK file is created once, mode 0600 in a 0700 directory", "[privacy][keys]") {
  testing::TempDir dir;
  const auto path = dir.path() / "config" / "telehub" / "kek";
  auto first = privacy::Kek::open_or_create_file(path, dir.path() / "data");
  REQUIRE(first);
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  REQUIRE(::stat(path.parent_path().c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  auto second = privacy::Kek::open_or_create_file(path, dir.path() / "data");
  REQUIRE(second);
  const auto ad = privacy::key_ad("test", "dev");
  CHECK(second->unwrap(*first->wrap(core::Bytes(32, 1), ad), ad));
}

TEST_CASE("the pseudonym key file is stored wrapped under the KEK", "[privacy][keys]") {
  testing::TempDir dir;
  auto kek = *privacy::Kek::from_hex(kHex);
  const auto path = dir.path() / "keys" / "pseudonym.key";
  auto first = privacy::Pseudonymiser::open_wrapped_key_file(path, kek);
  REQUIRE(first);
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto second = privacy::Pseudonymiser::open_wrapped_key_file(path, kek);
  REQUIRE(second);
  CHECK((*first)->subject("x") == (*second)->subject("x"));

  // The file is a wrapped blob whose plaintext is the key behind the pseudonyms.
  std::ifstream in(path, std::ios::binary);
  core::Bytes blob((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(blob.size() == 1 + 12 + 32 + 16);
  auto key = kek.unwrap(blob, privacy::Pseudonymiser::pseudonym_key_ad());
  REQUIRE(key);
  CHECK((*privacy::Pseudonymiser::from_key(*key))->subject("x") == (*first)->subject("x"));

  auto wrong = privacy::Pseudonymiser::open_wrapped_key_file(path, *privacy::Kek::from_hex(std::string(64, '1')));
  REQUIRE_FALSE(wrong);
  CHECK(wrong.error().reason == "unwrap_failed");

  // A key file written before keys were wrapped (32 raw bytes) is refused, not misread.
  const auto raw = dir.path() / "raw.key";
  REQUIRE(privacy::Pseudonymiser::open_key_file(raw));
  auto refused = privacy::Pseudonymiser::open_wrapped_key_file(raw, kek);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().reason == "bad_key_file");
}
