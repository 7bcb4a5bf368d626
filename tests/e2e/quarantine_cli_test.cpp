// `telehub quarantine list|show|replay` on a real data directory.
#include <catch2/catch.hpp>

#include <regex>

#include "telehub/envelope/envelope.h"
#include "telehub/envelope/payload.h"
#include "telehub/gateway/provisioning.h"
#include "telehub/storage/store.h"
#include "test_support.h"

using namespace telehub;

namespace {

const std::string kKek = "TELEHUB_KEK=" + std::string(64, 'a') + " ";

std::string telehub_cmd(const std::string& args) {
  return kKek + std::string(TELEHUB_BINARY_DIR) + "/apps/telehub " + args;
}

}  // namespace

TEST_CASE("quarantine replay stores a message once its device is enrolled, and re-quarantines garbage",
          "[e2e][cli][quarantine]") {
  testing::TempDir dir;
  const auto data = dir.path() / "data";
  auto enrol = testing::run_command(telehub_cmd("device enroll --subject late-patient --broker tcp://127.0.0.1:1 --data " +
                                                data.string()));
  INFO(enrol.output);
  REQUIRE(enrol.exit_code == 0);
  std::smatch m;
  REQUIRE(std::regex_search(enrol.output, m, std::regex("provisioning: (\\S+)")));
  auto prov = gateway::load_provisioning(m[1].str());
  REQUIRE(prov);

  // A sealed message that arrived before the enrolment was finished, and a garbage one.
  core::Reading r;
  r.code = "8867-4";
  r.value = 64;
  r.unit = "/min";
  r.time = testing::minutes_ago(60);
  auto json = envelope::encode_payload(std::vector<core::Reading>{r});
  REQUIRE(json);
  auto sealed = envelope::seal({1, prov->device_id, prov->key_id, 1}, prov->key, core::as_bytes(*json));
  REQUIRE(sealed);
  std::int64_t good_id = 0, bad_id = 0;
  {
    auto store = storage::open_sqlite_store({data / "telehub.db"}, core::system_clock());
    REQUIRE(store);
    storage::QuarantineEntry e;
    e.received_at = core::system_clock().now();
    e.topic = prov->readings_topic;
    e.device_id = prov->device_id;
    e.reason = "unknown_device";
    e.detail = "no enrolled device with this id";
    e.payload = *sealed;
    good_id = *(*store)->quarantine().put(e);
    e.payload = {'n', 'o', 'p', 'e'};
    e.reason = "not_envelope";
    bad_id = *(*store)->quarantine().put(e);
  }

  auto list = testing::run_command(telehub_cmd("quarantine list --data " + data.string()));
  CHECK(list.exit_code == 0);
  CHECK(list.output.find("2 quarantined message(s)") != std::string::npos);

  auto show = testing::run_command(telehub_cmd("quarantine show " + std::to_string(good_id) + " --data " + data.string()));
  INFO(show.output);
  CHECK(show.exit_code == 0);
  CHECK(show.output.find("reason:    unknown_device") != std::string::npos);
  CHECK(show.output.find("sequence 1") != std::string::npos);

  auto replay = testing::run_command(telehub_cmd("quarantine replay " + std::to_string(good_id) + " --data " + data.string()));
  INFO(replay.output);
  CHECK(replay.exit_code == 0);
  CHECK(replay.output.find("stored (1 readings)") != std::string::npos);

  auto replay_bad = testing::run_command(telehub_cmd("quarantine replay --all --reason not_envelope --data " + data.string()));
  INFO(replay_bad.output);
  CHECK(replay_bad.exit_code == 0);
  CHECK(replay_bad.output.find("quarantined again: not_envelope") != std::string::npos);

  auto store = storage::open_sqlite_store({data / "telehub.db"}, core::system_clock());
  REQUIRE(store);
  CHECK(*(*store)->observations().count() == 1);
  CHECK(*(*store)->quarantine().count() == 1);               // only the fresh garbage entry
  CHECK_FALSE((*store)->quarantine().get(good_id)->has_value());
  CHECK_FALSE((*store)->quarantine().get(bad_id)->has_value());

  auto missing = testing::run_command(telehub_cmd("quarantine show 999 --data " + data.string()));
  CHECK(missing.exit_code == 1);
  CHECK(missing.output.find("no quarantine entry 999") != std::string::npos);
  auto bad_usage = testing::run_command(telehub_cmd("quarantine replay --data " + data.string()));
  CHECK(bad_usage.exit_code == 2);
}
