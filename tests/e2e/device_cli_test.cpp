// `telehub device enroll|rekey|revoke` on a real data directory, and what they leave in it:
// no device key and no pseudonym key in clear.
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <regex>

#include "telehub/envelope/envelope.h"
#include "telehub/envelope/payload.h"
#include "telehub/gateway/provisioning.h"
#include "telehub/ingest/pipeline.h"
#include "telehub/privacy/keystore.h"
#include "telehub/privacy/pseudonym.h"
#include "telehub/storage/store.h"
#include "test_support.h"

using namespace telehub;
using Kind = ingest::Disposition::Kind;

namespace {

const std::string kKekHex(64, 'd');

std::string telehub_cmd(const std::string& args, const std::string& kek_hex = kKekHex) {
  return "TELEHUB_KEK=" + kek_hex + " " + std::string(TELEHUB_BINARY_DIR) + "/apps/telehub " + args;
}

core::Bytes file_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return core::Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bool contains(const core::Bytes& hay, std::span<const std::uint8_t> needle) {
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end()) != hay.end();
}

// Every file of the database (main file, WAL, shared memory) concatenated.
core::Bytes db_bytes(const std::filesystem::path& data) {
  core::Bytes all;
  for (const char* suffix : {"", "-wal", "-shm"}) {
    auto b = file_bytes(data / (std::string("telehub.db") + suffix));
    all.insert(all.end(), b.begin(), b.end());
  }
  return all;
}

gateway::Provisioning enrol(const std::filesystem::path& data, const std::string& subject) {
  auto r = testing::run_command(telehub_cmd("device enroll --subject " + subject +
                                            " --broker tcp://127.0.0.1:1 --data " + data.string()));
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  std::smatch m;
  REQUIRE(std::regex_search(r.output, m, std::regex("provisioning: (\\S+)")));
  auto p = gateway::load_provisioning(m[1].str());
  REQUIRE(p);
  return *p;
}

core::Bytes sealed(const gateway::Provisioning& p, const core::Bytes& key, std::uint32_t key_id, std::uint64_t seq) {
  core::Reading r;
  r.code = "8867-4";
  r.value = 60 + static_cast<double>(seq);
  r.unit = "/min";
  r.time = testing::minutes_ago(60);
  auto json = envelope::encode_payload(std::vector<core::Reading>{r});
  REQUIRE(json);
  auto s = envelope::seal({1, p.device_id, key_id, seq}, key, core::as_bytes(*json));
  REQUIRE(s);
  return *s;
}

}  // namespace

TEST_CASE("after enrolment the database holds no device key and no pseudonym key in clear", "[e2e][cli][keys]") {
  testing::TempDir dir;
  const auto data = dir.path() / "data";
  const auto a = enrol(data, "patient-a");
  const auto b = enrol(data, "patient-b");
  REQUIRE(a.key.size() == 32);

  auto kek = privacy::Kek::from_hex(kKekHex);
  REQUIRE(kek);
  const auto key_file = file_bytes(data / "keys" / "pseudonym.key");
  auto pseudonym_key = kek->unwrap(key_file, privacy::Pseudonymiser::pseudonym_key_ad());
  REQUIRE(pseudonym_key);
  REQUIRE(pseudonym_key->size() == 32);
  CHECK_FALSE(contains(key_file, *pseudonym_key));

  // With the store closed and open (WAL present or not), in raw and hex form.
  for (int pass = 0; pass < 2; ++pass) {
    std::unique_ptr<storage::Store> open;
    if (pass == 1) open = std::move(*storage::open_sqlite_store({data / "telehub.db"}, core::system_clock()));
    const auto db = db_bytes(data);
    REQUIRE(db.size() > 1000);
    for (const core::Bytes* key : std::vector<const core::Bytes*>{&a.key, &b.key, &*pseudonym_key}) {
      CHECK_FALSE(contains(db, *key));
      CHECK_FALSE(contains(db, core::as_bytes(core::to_hex(*key))));
    }
  }
  // The stored blob is the key wrapped under the KEK, bound to the device and key id.
  auto store = storage::open_sqlite_store({data / "telehub.db"}, core::system_clock());
  REQUIRE(store);
  auto rec = (*store)->registry().find_device(a.device_id);
  REQUIRE(rec);
  REQUIRE(rec->has_value());
  auto unwrapped = kek->unwrap((*rec)->wrapped_key, privacy::device_key_ad(a.device_id, 1));
  REQUIRE(unwrapped);
  CHECK(*unwrapped == a.key);

  // Another KEK cannot enrol into this data directory (the pseudonym key does not unwrap).
  auto wrong = testing::run_command(telehub_cmd("device enroll --subject patient-c --broker tcp://127.0.0.1:1 --data " +
                                                data.string(), std::string(64, '0')));
  CHECK(wrong.exit_code == 1);
  CHECK(wrong.output.find("unwrap_failed") != std::string::npos);
  // serve refuses to start with the wrong KEK, before it starts anything.
  auto serve_wrong = testing::run_command(telehub_cmd("serve --http-port 0 --data " + data.string(), std::string(64, '0')));
  CHECK(serve_wrong.exit_code == 1);
  CHECK(serve_wrong.output.find("unwrap_failed") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(data / "tls" / "api.pem"));  // no API certificate issued
  CHECK_FALSE(std::filesystem::exists(data / "auth.db"));          // no token store created

  // --kek-file: refused inside the data directory and when group-readable; accepted otherwise.
  const auto inside = data / "kek";
  const auto outside = dir.path() / "kek";
  for (const auto& p : {inside, outside}) {
    std::ofstream(p) << kKekHex << "\n";
    std::filesystem::permissions(p, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  }
  auto in_data = testing::run_command(telehub_cmd("device enroll --subject patient-d --broker tcp://127.0.0.1:1 --data " +
                                                  data.string() + " --kek-file " + inside.string()));
  CHECK(in_data.exit_code == 1);
  CHECK(in_data.output.find("kek_inside_data") != std::string::npos);
  auto from_file = testing::run_command(telehub_cmd("device enroll --subject patient-d --broker tcp://127.0.0.1:1 --data " +
                                                    data.string() + " --kek-file " + outside.string(), std::string(64, '0')));
  INFO(from_file.output);
  CHECK(from_file.exit_code == 0);  // the file wins over TELEHUB_KEK
  std::filesystem::permissions(outside, std::filesystem::perms::group_read, std::filesystem::perm_options::add);
  auto readable = testing::run_command(telehub_cmd("device enroll --subject patient-e --broker tcp://127.0.0.1:1 --data " +
                                                   data.string() + " --kek-file " + outside.string()));
  CHECK(readable.exit_code == 1);
  CHECK(readable.output.find("chmod 600") != std::string::npos);
}

TEST_CASE("telehub device rekey and revoke: happy path and errors", "[e2e][cli][keys]") {
  testing::TempDir dir;
  const auto data = dir.path() / "data";
  const auto old = enrol(data, "patient-r");
  const auto prov_file = data / "provisioning" / (old.device_id + ".json");
  REQUIRE(std::filesystem::exists(prov_file));

  auto rekey = testing::run_command(telehub_cmd("device rekey --device " + old.device_id +
                                                " --grace-hours 2 --broker tcp://127.0.0.1:1 --data " + data.string()));
  INFO(rekey.output);
  REQUIRE(rekey.exit_code == 0);
  CHECK(rekey.output.find("key id:       2") != std::string::npos);
  CHECK(rekey.output.find("old key id:   1 accepted until") != std::string::npos);
  auto fresh = gateway::load_provisioning(prov_file);
  REQUIRE(fresh);
  CHECK(fresh->key_id == 2);
  CHECK(fresh->device_id == old.device_id);
  CHECK(fresh->key != old.key);

  auto kek = *privacy::Kek::from_hex(kKekHex);
  {
    auto store = storage::open_sqlite_store({data / "telehub.db"}, core::system_clock());
    REQUIRE(store);
    auto rec = *(*store)->registry().find_device(old.device_id);
    REQUIRE(rec);
    REQUIRE(rec->previous);
    CHECK(rec->previous->key_id == 1);
    const auto now = core::system_clock().now();
    CHECK(rec->previous->valid_until > now + std::chrono::minutes(110));
    CHECK(rec->previous->valid_until <= now + std::chrono::hours(2));
    const auto db = db_bytes(data);
    CHECK_FALSE(contains(db, fresh->key));
    CHECK_FALSE(contains(db, old.key));

    // Both keys open messages now; sequence numbers keep counting across key ids.
    ingest::Pipeline pipeline(**store, core::system_clock(), kek);
    CHECK(pipeline.process({old.readings_topic, sealed(old, old.key, 1, 1), {}}).kind == Kind::kStored);
    CHECK(pipeline.process({old.readings_topic, sealed(old, fresh->key, 2, 2), {}}).kind == Kind::kStored);
  }

  // Errors: a rekey with another KEK, unknown devices, missing options.
  auto wrong_kek = testing::run_command(telehub_cmd("device rekey --device " + old.device_id +
                                                    " --broker tcp://127.0.0.1:1 --data " + data.string(),
                                                    std::string(64, '0')));
  CHECK(wrong_kek.exit_code == 1);
  CHECK(wrong_kek.output.find("does not unwrap") != std::string::npos);
  CHECK(gateway::load_provisioning(prov_file)->key_id == 2);  // untouched
  auto unknown = testing::run_command(telehub_cmd("device rekey --device dev-nope --broker tcp://127.0.0.1:1 --data " +
                                                  data.string()));
  CHECK(unknown.exit_code == 1);
  CHECK(unknown.output.find("no enrolled device dev-nope") != std::string::npos);
  auto unknown_revoke = testing::run_command(telehub_cmd("device revoke --device dev-nope --data " + data.string()));
  CHECK(unknown_revoke.exit_code == 1);
  CHECK(unknown_revoke.output.find("no enrolled device dev-nope") != std::string::npos);
  auto no_device = testing::run_command(telehub_cmd("device rekey --data " + data.string()));
  CHECK(no_device.exit_code == 2);
  CHECK(no_device.output.find("device rekey needs --device") != std::string::npos);
  auto bad_grace = testing::run_command(telehub_cmd("device rekey --device " + old.device_id +
                                                    " --grace-hours -1 --data " + data.string()));
  CHECK(bad_grace.exit_code == 2);
  auto bad_sub = testing::run_command(telehub_cmd("device frobnicate --data " + data.string()));
  CHECK(bad_sub.exit_code == 2);

  // Revoke: inactive at once, keys gone, provisioning file deleted.
  auto revoke = testing::run_command(telehub_cmd("device revoke --device " + old.device_id + " --data " + data.string()));
  INFO(revoke.output);
  REQUIRE(revoke.exit_code == 0);
  CHECK(revoke.output.find("revoked:") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(prov_file));
  {
    auto store = storage::open_sqlite_store({data / "telehub.db"}, core::system_clock());
    REQUIRE(store);
    auto rec = *(*store)->registry().find_device(old.device_id);
    REQUIRE(rec);
    CHECK_FALSE(rec->active);
    CHECK(rec->revoked_at);
    CHECK(rec->wrapped_key.empty());
    ingest::Pipeline pipeline(**store, core::system_clock(), kek);
    auto d = pipeline.process({old.readings_topic, sealed(old, fresh->key, 2, 3), {}});
    CHECK(d.kind == Kind::kQuarantined);
    CHECK(d.reason == "device_revoked");
    CHECK(*(*store)->observations().count() == 2);
  }
  auto rekey_revoked = testing::run_command(telehub_cmd("device rekey --device " + old.device_id +
                                                        " --broker tcp://127.0.0.1:1 --data " + data.string()));
  CHECK(rekey_revoked.exit_code == 1);
  CHECK(rekey_revoked.output.find("revoked") != std::string::npos);
}

TEST_CASE("device enroll --format records the payload format, and refuses an unknown template by name",
          "[e2e][cli][formats]") {
  testing::TempDir dir;
  const auto data = dir.path() / "data";
  const std::string common = " --broker tcp://127.0.0.1:1 --data " + data.string();

  auto ok = testing::run_command(telehub_cmd("device enroll --subject p-fmt --format acme-bp-cuff" + common));
  INFO(ok.output);
  REQUIRE(ok.exit_code == 0);
  CHECK(ok.output.find("format:       template:acme-bp-cuff") != std::string::npos);
  auto senml = testing::run_command(telehub_cmd("device enroll --subject p-senml --format senml" + common));
  REQUIRE(senml.exit_code == 0);
  CHECK(senml.output.find("format:       senml") != std::string::npos);

  auto unknown = testing::run_command(telehub_cmd("device enroll --subject p-x --format acme-fridge" + common));
  CHECK(unknown.exit_code == 2);
  CHECK(unknown.output.find("no mapping template 'acme-fridge'") != std::string::npos);
  CHECK(unknown.output.find("acme-bp-cuff") != std::string::npos);  // lists the known ones

  // A template directory with a broken template stops the command with the file named.
  testing::TempDir config;
  std::filesystem::create_directories(config.path() / "mappings");
  std::ofstream(config.path() / "mappings" / "broken.json") << R"({"template":"broken","sets":[]})";
  auto broken = testing::run_command(
      telehub_cmd("device enroll --subject p-y --config " + config.path().string() + common));
  CHECK(broken.exit_code != 0);
  CHECK(broken.output.find("broken.json") != std::string::npos);

  auto store = storage::open_sqlite_store({data / "telehub.db"}, core::system_clock());
  REQUIRE(store);
  auto pseudonymiser = privacy::Pseudonymiser::open_wrapped_key_file(
      data / "keys" / "pseudonym.key", *privacy::Kek::from_hex(kKekHex));
  REQUIRE(pseudonymiser);
  auto devices = (*store)->registry().devices_of((*pseudonymiser)->subject("p-fmt").str());
  REQUIRE(devices);
  REQUIRE(devices->size() == 1);
  CHECK(devices->front().payload_format == "template:acme-bp-cuff");
}
