// ingest::Pipeline driven directly (no MQTT) over a real SQLite store and real envelopes.
#include <catch2/catch.hpp>

#include <fstream>
#include <iterator>
#include <map>

#include "fault_vfs.h"
#include "telehub/envelope/envelope.h"
#include "telehub/envelope/payload.h"
#include "telehub/ingest/pipeline.h"
#include "telehub/storage/store.h"
#include "test_support.h"

using namespace telehub;
using Kind = ingest::Disposition::Kind;

namespace {

// A clock the test moves by hand.
class ManualClock final : public core::Clock {
 public:
  core::TimePoint now() const override { return now_; }
  void set(core::TimePoint t) { now_ = t; }
  void advance(core::Millis d) { now_ += d; }

 private:
  core::TimePoint now_ = core::from_unix_millis(1'795'860'000'000);
};

struct Fixture {
  testing::TempDir dir;
  ManualClock clock;
  privacy::Kek kek = *privacy::Kek::from_hex(std::string(64, 'e'));
  std::unique_ptr<storage::Store> store;
  std::unique_ptr<ingest::Pipeline> pipeline;
  std::unique_ptr<privacy::Pseudonymiser> pseudonymiser;
  storage::DeviceRecord device;
  core::Bytes key = core::Bytes(32, 0x42);  // the device key in clear, as the gateway has it

  Fixture() : Fixture(false) {}
  // With through_fault_vfs, the store's files are subject to testing::FaultVfs faults.
  explicit Fixture(bool through_fault_vfs) {
    if (through_fault_vfs) testing::FaultVfs::install().watch(dir.path());
    auto s = storage::open_sqlite_store({dir.path() / "telehub.db"}, core::system_clock());
    REQUIRE(s);
    store = std::move(*s);
    pipeline = std::make_unique<ingest::Pipeline>(*store, clock, kek);
    pseudonymiser = std::move(*privacy::Pseudonymiser::from_key(core::Bytes(32, 5)));
    device.id = "dev-test";
    device.subject = pseudonymiser->subject("patient-1").str();
    device.key_id = 1;
    device.wrapped_key = *kek.wrap(key, privacy::device_key_ad(device.id, device.key_id));
    REQUIRE(store->registry().add_device(device));
  }

  std::string topic(const std::string& id = "dev-test") const { return "telehub/v1/devices/" + id + "/readings"; }

  core::Bytes sealed(std::uint64_t seq, const std::vector<core::Reading>& readings, std::uint32_t key_id = 1,
                     const std::string& id = "dev-test") const {
    auto json = envelope::encode_payload(readings);
    REQUIRE(json);
    return sealed_json(seq, *json, key_id, id);
  }

  core::Bytes sealed_json(std::uint64_t seq, const std::string& json, std::uint32_t key_id = 1,
                          const std::string& id = "dev-test") const {
    return sealed_with(key, seq, json, key_id, id);
  }

  static core::Bytes sealed_with(const core::Bytes& k, std::uint64_t seq, const std::string& json,
                                 std::uint32_t key_id = 1, const std::string& id = "dev-test") {
    auto bytes = envelope::seal({envelope::kVersion, id, key_id, seq}, k, core::as_bytes(json));
    REQUIRE(bytes);
    return *bytes;
  }

  ingest::Disposition send(core::Bytes payload, std::string t = "") const {
    return pipeline->process({t.empty() ? topic() : t, std::move(payload), clock.now()});
  }

  std::int64_t stored() const { return *store->observations().count(); }
};

core::Reading hr(double v, std::int64_t t_ms = 1'795'860'000'000) {
  core::Reading r;
  r.code = "8867-4";
  r.value = v;
  r.unit = "/min";
  r.time = core::from_unix_millis(t_ms);
  return r;
}

core::Reading bp(double sys, double dia) {
  core::Reading r;
  r.code = "85354-9";
  r.time = core::from_unix_millis(1'795'860'000'000);
  r.components = {{"8480-6", sys, "mm[Hg]"}, {"8462-4", dia, "mm[Hg]"}};
  return r;
}

}  // namespace

TEST_CASE("a sealed message is stored under the device's subject pseudonym", "[ingest]") {
  Fixture f;
  auto d = f.send(f.sealed(1, {hr(72), bp(128, 82)}));
  CHECK(d.kind == Kind::kStored);
  CHECK(d.readings == 2);
  CHECK(d.acknowledge());
  storage::ObservationQuery q;
  q.subject = f.device.subject;
  auto page = f.store->observations().search(q);
  REQUIRE(page);
  REQUIRE(page->items.size() == 2);
  for (const auto& o : page->items) {
    CHECK(o.reading.subject == f.device.subject);
    CHECK(o.reading.device == "dev-test");
    CHECK(o.reading.sequence == 1);
  }
  CHECK(f.pipeline->counters().stored_readings == 2);
}

TEST_CASE("a redelivered message is acknowledged and stores nothing new", "[ingest]") {
  Fixture f;
  auto msg = f.sealed(5, {hr(70)});
  REQUIRE(f.send(msg).kind == Kind::kStored);
  auto again = f.send(msg);
  CHECK(again.kind == Kind::kDuplicate);
  CHECK(again.acknowledge());
  CHECK(f.stored() == 1);
  CHECK(f.pipeline->counters().duplicates == 1);
}

TEST_CASE("the same sequence with other content is quarantined as a replay", "[ingest]") {
  Fixture f;
  REQUIRE(f.send(f.sealed(5, {hr(70)})).kind == Kind::kStored);
  auto d = f.send(f.sealed(5, {hr(140)}));
  CHECK(d.kind == Kind::kQuarantined);
  CHECK(d.reason == "replay");
  CHECK(f.stored() == 1);
}

TEST_CASE("a sequence far below the device's highest is a replay, also after a restart, and inside the window "
          "out-of-order is fine", "[ingest]") {
  Fixture f;
  ingest::PipelineOptions o;
  o.sequence_window = 50;
  f.pipeline = std::make_unique<ingest::Pipeline>(*f.store, f.clock, f.kek, o);
  REQUIRE(f.send(f.sealed(100, {hr(70)})).kind == Kind::kStored);
  CHECK(f.send(f.sealed(60, {hr(71)})).kind == Kind::kStored);  // late, inside the window
  auto old = f.send(f.sealed(49, {hr(72)}));
  CHECK(old.kind == Kind::kQuarantined);
  CHECK(old.reason == "replay");
  CHECK(old.acknowledge());
  CHECK(old.authenticated);  // the device gets a "rejected" receipt
  CHECK(f.send(f.sealed(100, {hr(70)})).kind == Kind::kDuplicate);

  // A new store and pipeline over the same file: the window is still there.
  f.pipeline.reset();
  f.store.reset();
  auto reopened = storage::open_sqlite_store({f.dir.path() / "telehub.db"}, core::system_clock());
  REQUIRE(reopened);
  f.store = std::move(*reopened);
  f.pipeline = std::make_unique<ingest::Pipeline>(*f.store, f.clock, f.kek, o);
  auto after = f.send(f.sealed(10, {hr(73)}));
  CHECK(after.kind == Kind::kQuarantined);
  CHECK(after.reason == "replay");
  CHECK(f.stored() == 2);
  auto q = f.store->quarantine().list(10);
  REQUIRE(q);
  REQUIRE(q->size() == 2);
  CHECK(q->front().detail.find("more than 50 below the highest sequence") != std::string::npos);
}

TEST_CASE("reading times far before receipt are a replay, times ahead of the clock are refused", "[ingest]") {
  Fixture f;
  const std::int64_t now = 1'795'860'000'000;  // the fixture clock
  const std::int64_t day = 86'400'000;
  CHECK(f.send(f.sealed(1, {hr(70, now - 89 * day)})).kind == Kind::kStored);  // a gateway offline for weeks
  auto stale = f.send(f.sealed(2, {hr(70, now - 91 * day)}));
  CHECK(stale.kind == Kind::kQuarantined);
  CHECK(stale.reason == "replay");
  CHECK(f.send(f.sealed(3, {hr(70, now + 9 * 60'000)})).kind == Kind::kStored);  // clock skew tolerated
  auto ahead = f.send(f.sealed(4, {hr(70), hr(71, now + 11 * 60'000)}));
  CHECK(ahead.kind == Kind::kQuarantined);
  CHECK(ahead.reason == "bad_reading");
  CHECK(f.stored() == 2);  // nothing of the refused messages, not even their good readings
  auto q = f.store->quarantine().list(10);
  REQUIRE(q);
  REQUIRE(q->size() == 2);
  bool saw_ahead = false, saw_stale = false;
  for (const auto& e : *q) {
    saw_ahead = saw_ahead || e.detail.find("readings[1].time") != std::string::npos;
    saw_stale = saw_stale || e.detail.find("2160 h before") != std::string::npos;
  }
  CHECK(saw_ahead);
  CHECK(saw_stale);

  // The windows are options; 0 turns the age check off.
  ingest::PipelineOptions o;
  o.max_reading_age = core::Millis(0);
  f.pipeline = std::make_unique<ingest::Pipeline>(*f.store, f.clock, f.kek, o);
  CHECK(f.send(f.sealed(5, {hr(70, now - 400 * day)})).kind == Kind::kStored);
}

TEST_CASE("every kind of bad message lands in quarantine with its own reason", "[ingest]") {
  Fixture f;
  REQUIRE(f.send(f.sealed(1, {hr(70)})).kind == Kind::kStored);

  auto flipped = f.sealed(2, {hr(71)});
  flipped[flipped.size() - 20] ^= 0x01;
  struct Case {
    std::string name;
    core::Bytes payload;
    std::string topic;
    std::string reason;
  };
  core::Reading unknown_code = hr(70);
  unknown_code.code = "1234-5";
  core::Reading wrong_unit = hr(70);
  wrong_unit.unit = "Hz";
  auto other_key = envelope::seal({1, "dev-test", 1, 9}, core::Bytes(32, 0x99),
                                  core::as_bytes(*envelope::encode_payload(std::vector<core::Reading>{hr(70)})));
  REQUIRE(other_key);
  std::vector<Case> cases = {
      {"bit flip", flipped, "", "bad_seal"},
      {"wrong key", *other_key, "", "bad_seal"},
      {"unknown device", f.sealed(1, {hr(70)}, 1, "dev-nobody"), f.topic("dev-nobody"), "unknown_device"},
      {"topic/header mismatch", f.sealed(3, {hr(70)}, 1, "dev-other"), "", "device_mismatch"},
      {"unknown key id", f.sealed(4, {hr(70)}, 2), "", "unknown_key"},
      {"not an envelope", core::Bytes{'h', 'e', 'l', 'l', 'o'}, "", "not_envelope"},
      {"bad topic", f.sealed(6, {hr(70)}), "telehub/v1/devices/dev-test/other", "bad_topic"},
      {"unknown code", f.sealed(7, {unknown_code}), "", "unknown_code"},
      {"wrong unit", f.sealed(8, {wrong_unit}), "", "bad_unit"},
      {"no value", f.sealed_json(10, R"({"v":1,"readings":[{"code":"8867-4","unit":"/min","time":"2026-11-28T10:00:00Z"}]})"), "", "bad_payload"},
      {"panel without components", f.sealed_json(12, R"({"v":1,"readings":[{"code":"85354-9","value":120,"unit":"mm[Hg]","time":"2026-11-28T10:00:00Z"}]})"), "", "bad_reading"},
      {"not JSON", f.sealed_json(13, "{\"v\":1,"), "", "bad_payload"},
      {"too large", core::Bytes(300 * 1024, 0x54), "", "too_large"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    auto d = f.send(c.payload, c.topic);
    CHECK(d.kind == Kind::kQuarantined);
    CHECK(d.reason == c.reason);
    CHECK(d.acknowledge());
  }
  // Nothing else was affected: the one good reading is still there and alone.
  CHECK(f.stored() == 1);
  CHECK(*f.store->quarantine().count() == static_cast<std::int64_t>(cases.size()));
  CHECK(*f.store->quarantine().count("bad_seal") == 2);
  auto counters = f.pipeline->counters();
  CHECK(counters.quarantined == cases.size());
  CHECK(counters.quarantined_by_reason["unknown_device"] == 1);
  // A valid message after all that is still stored.
  CHECK(f.send(f.sealed(14, {hr(75)})).kind == Kind::kStored);
  CHECK(f.stored() == 2);
}

TEST_CASE("every single-bit flip of a sealed message is refused and nothing reaches storage", "[ingest][attack]") {
  Fixture f;
  const auto good = f.sealed(7, {hr(72)});
  std::map<std::string, int> reasons;
  for (std::size_t bit = 0; bit < good.size() * 8; ++bit) {
    auto bad = good;
    bad[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    auto d = f.send(bad);
    INFO("bit " << bit);
    REQUIRE(d.kind == Kind::kQuarantined);
    ++reasons[d.reason];
  }
  CHECK(f.stored() == 0);
  CHECK(*f.store->quarantine().count() == static_cast<std::int64_t>(good.size() * 8));
  // Flips in the tag, ciphertext, sequence and length-checked fields fail authentication; flips
  // in the magic, version, device id or key id are caught before it.
  CHECK(reasons["bad_seal"] > 0);
  CHECK(reasons["device_mismatch"] > 0);
  CHECK(reasons["unknown_key"] > 0);
  CHECK(reasons["not_envelope"] + reasons["unsupported_version"] + reasons["bad_header"] > 0);
  // The unmodified message is still accepted afterwards: the flips did not burn its sequence.
  CHECK(f.send(good).kind == Kind::kStored);
}

TEST_CASE("quarantine keeps the sealed bytes, never plaintext", "[ingest]") {
  Fixture f;
  core::Reading wrong_unit = hr(70);
  wrong_unit.unit = "Hz";
  auto msg = f.sealed(1, {wrong_unit});
  REQUIRE(f.send(msg).reason == "bad_unit");
  auto list = f.store->quarantine().list(1);
  REQUIRE(list);
  REQUIRE(list->size() == 1);
  CHECK(list->front().payload == msg);
  CHECK(list->front().device_id == "dev-test");
  // The detail names a unit-like token (a clear reason), but never free text from the payload.
  CHECK(list->front().detail.find("\"Hz\"") != std::string::npos);
  core::Reading named = hr(70);
  named.unit = "Jan Jansen 111222333";
  REQUIRE(f.send(f.sealed(2, {named})).reason == "bad_unit");
  list = f.store->quarantine().list(2);
  REQUIRE(list);
  REQUIRE(list->size() == 2);
  for (const auto& q : *list) {
    CHECK(q.detail.find("Jansen") == std::string::npos);
    CHECK(q.detail.find("111222333") == std::string::npos);
  }
}

TEST_CASE("a storage failure is not acknowledged", "[ingest]") {
  Fixture f;
  auto msg = f.sealed(1, {hr(70)});
  f.store->close();  // every write now fails with unavailable/closed
  auto d = f.send(msg);
  CHECK(d.kind == Kind::kRetry);
  CHECK_FALSE(d.acknowledge());
  CHECK(f.pipeline->counters().retries == 1);
}

TEST_CASE("a full disk is not acknowledged, and the same messages settle once there is room again",
          "[ingest][fault]") {
  Fixture f(true);
  auto& vfs = testing::FaultVfs::install();
  const auto good = f.sealed(1, {hr(70), hr(71)});
  const auto bad = f.sealed_json(2, "{\"v\":1,");  // authentic, so it would be quarantined (bad_payload)
  {
    testing::ScopedFault full(vfs, testing::FaultVfs::Fault::kDiskFull);
    for (const auto* msg : {&good, &bad}) {
      auto d = f.send(*msg);
      CHECK(d.kind == Kind::kRetry);
      CHECK_FALSE(d.acknowledge());  // no PUBACK, and so no receipt either
      CHECK(d.reason == "db_error");
    }
    CHECK(f.stored() == 0);
    CHECK(*f.store->quarantine().count() == 0);
    CHECK(f.pipeline->counters().retries == 2);
  }
  // Redelivered after the fault cleared: stored and quarantined once, then recognised.
  CHECK(f.send(good).kind == Kind::kStored);
  CHECK(f.send(bad).kind == Kind::kQuarantined);
  CHECK(f.send(good).kind == Kind::kDuplicate);
  CHECK(f.stored() == 2);
  CHECK(*f.store->quarantine().count("bad_payload") == 1);
}

TEST_CASE("device ids are read from the readings topic only", "[ingest]") {
  CHECK(ingest::Pipeline::device_from_topic("telehub/v1/devices/dev-1/readings") == "dev-1");
  CHECK(ingest::Pipeline::device_from_topic("telehub/v1/devices//readings").empty());
  CHECK(ingest::Pipeline::device_from_topic("telehub/v1/devices/a/b/readings").empty());
  CHECK(ingest::Pipeline::device_from_topic("telehub/v2/devices/dev-1/readings").empty());
}

TEST_CASE("only authenticated outcomes carry the device and sequence for a receipt", "[ingest]") {
  Fixture f;
  auto stored = f.send(f.sealed(7, {hr(70)}));
  CHECK(stored.authenticated);
  CHECK(stored.device_id == "dev-test");
  CHECK(stored.sequence == 7);
  auto dup = f.send(f.sealed(7, {hr(70)}));
  CHECK(dup.kind == Kind::kDuplicate);
  CHECK(dup.authenticated);
  core::Reading wrong_unit = hr(70);
  wrong_unit.unit = "Hz";
  auto invalid = f.send(f.sealed(8, {wrong_unit}));
  CHECK(invalid.kind == Kind::kQuarantined);
  CHECK(invalid.authenticated);  // the device really sent it: it learns it was refused
  CHECK(invalid.sequence == 8);
  auto forged = f.sealed(9, {hr(70)});
  forged[forged.size() - 1] ^= 1;
  auto bad = f.send(forged);
  CHECK(bad.reason == "bad_seal");
  CHECK_FALSE(bad.authenticated);  // anyone could have sent it: no receipt
  CHECK(bad.sequence == 0);
}

TEST_CASE("after a rotation the old key works during its grace period only, the new key always", "[ingest][keys]") {
  Fixture f;
  REQUIRE(f.send(f.sealed(1, {hr(70)})).kind == Kind::kStored);
  const core::Bytes new_key(32, 0x43);
  storage::KeyRotation rot{"dev-test", 1, 2, *f.kek.wrap(new_key, privacy::device_key_ad("dev-test", 2)),
                           f.clock.now() + std::chrono::hours(24)};
  REQUIRE(f.store->registry().rotate_key(rot));

  auto json = *envelope::encode_payload(std::vector<core::Reading>{hr(71)});
  // Within the grace period: old key id 1 still opens; sequences keep counting across key ids.
  f.clock.advance(std::chrono::hours(23));
  CHECK(f.send(Fixture::sealed_with(f.key, 2, json, 1)).kind == Kind::kStored);
  CHECK(f.send(Fixture::sealed_with(new_key, 3, json, 2)).kind == Kind::kStored);
  // A message sealed with the old key but claiming the new key id does not open.
  CHECK(f.send(Fixture::sealed_with(f.key, 4, json, 2)).reason == "bad_seal");
  // After the grace period the old key id is refused; the new one keeps working.
  f.clock.advance(std::chrono::hours(1));
  auto expired = f.send(Fixture::sealed_with(f.key, 5, json, 1));
  CHECK(expired.kind == Kind::kQuarantined);
  CHECK(expired.reason == "expired_key");
  CHECK_FALSE(expired.authenticated);
  CHECK(f.send(Fixture::sealed_with(new_key, 6, json, 2)).kind == Kind::kStored);
  CHECK(f.send(Fixture::sealed_with(new_key, 7, json, 9)).reason == "unknown_key");
  CHECK(f.stored() == 4);

  // A second rotation drops key 1 altogether: it is unknown now, not merely expired.
  const core::Bytes third(32, 0x44);
  storage::KeyRotation again{"dev-test", 2, 3, *f.kek.wrap(third, privacy::device_key_ad("dev-test", 3)),
                             f.clock.now() + std::chrono::hours(1)};
  REQUIRE(f.store->registry().rotate_key(again));
  CHECK(f.send(Fixture::sealed_with(f.key, 8, json, 1)).reason == "unknown_key");
  CHECK(f.send(Fixture::sealed_with(new_key, 9, json, 2)).kind == Kind::kStored);
  CHECK(f.send(Fixture::sealed_with(third, 10, json, 3)).kind == Kind::kStored);
  // A stale rotation (based on key id 2) is refused.
  auto stale = f.store->registry().rotate_key(rot);
  REQUIRE_FALSE(stale);
  CHECK(stale.error().reason == "key_changed");
}

TEST_CASE("a revoked device's messages are quarantined as device_revoked and nothing is stored", "[ingest][keys]") {
  Fixture f;
  REQUIRE(f.send(f.sealed(1, {hr(70)})).kind == Kind::kStored);
  REQUIRE(f.store->registry().revoke_device("dev-test", f.clock.now()));
  auto d = f.send(f.sealed(2, {hr(71)}));
  CHECK(d.kind == Kind::kQuarantined);
  CHECK(d.reason == "device_revoked");
  CHECK_FALSE(d.authenticated);
  // Even a redelivery of an already stored message is refused now.
  CHECK(f.send(f.sealed(1, {hr(70)})).reason == "device_revoked");
  CHECK(f.stored() == 1);
  CHECK(*f.store->quarantine().count("device_revoked") == 2);
  auto rec = f.store->registry().find_device("dev-test");
  REQUIRE(rec);
  REQUIRE(rec->has_value());
  CHECK_FALSE((*rec)->active);
  CHECK((*rec)->wrapped_key.empty());
  CHECK_FALSE((*rec)->previous);
  CHECK((*rec)->revoked_at);
}

TEST_CASE("a device key that does not unwrap (wrong KEK) is retried, not blamed on the device", "[ingest][keys]") {
  Fixture f;
  auto other = *privacy::Kek::from_hex(std::string(64, 'f'));
  ingest::Pipeline wrong(*f.store, f.clock, other);
  auto d = wrong.process({f.topic(), f.sealed(1, {hr(70)}), f.clock.now()});
  CHECK(d.kind == Kind::kRetry);
  CHECK(d.reason == "unwrap_failed");
  CHECK_FALSE(d.acknowledge());
  CHECK(*f.store->quarantine().count() == 0);
  CHECK(f.stored() == 0);
  // With the right KEK the same message is stored.
  CHECK(f.send(f.sealed(1, {hr(70)})).kind == Kind::kStored);
}

TEST_CASE("a vendor payload naming another registered person than the device's is quarantined, its identifiers never stored",
          "[ingest][formats][privacy]") {
  testing::TempDir dir;
  ManualClock clock;
  auto kek = *privacy::Kek::from_hex(std::string(64, 'e'));
  auto store = storage::open_sqlite_store({dir.path() / "telehub.db"}, core::system_clock());
  REQUIRE(store);
  auto vault = privacy::IdentityVault::open(dir.path() / "identity.db", dir.path() / "vault.key", kek);
  REQUIRE(vault);
  std::shared_ptr<privacy::IdentityVault> shared_vault = std::move(*vault);
  auto mappings = formats::MappingSet::load_dir(testing::source_dir() / "config" / "mappings");
  REQUIRE(mappings);
  std::shared_ptr<privacy::Pseudonymiser> pseudonymiser = std::move(*privacy::Pseudonymiser::from_key(core::Bytes(32, 5)));

  // Two registered people; the cuff is enrolled for the first.
  privacy::Person anna;
  anna.bsn = "111222333";
  anna.family_name = "Jansen";
  privacy::Person bram;
  bram.bsn = "123456782";
  bram.family_name = "Visser";
  auto a = shared_vault->register_person(anna);
  auto b = shared_vault->register_person(bram);
  REQUIRE(a);
  REQUIRE(b);
  storage::DeviceRecord device;
  device.id = "dev-cuff";
  device.subject = pseudonymiser->subject(a->subject_id).str();
  device.wrapped_key = *kek.wrap(core::Bytes(32, 0x42), privacy::device_key_ad(device.id, 1));
  device.payload_format = "template:acme-bp-cuff";
  REQUIRE((*store)->registry().add_device(device));

  ingest::PipelineOptions options;
  options.mappings = std::make_shared<formats::MappingSet>(std::move(*mappings));
  options.pseudonymiser = pseudonymiser;
  options.vault = shared_vault;
  options.max_reading_age = core::Millis(0);
  ingest::Pipeline pipeline(**store, clock, kek, options);
  auto payload = [](const std::string& bsn) {
    return R"({"kind":"bp","patient":{"name":"Someone","bsn":")" + bsn +
           R"(","mrn":"X-1"},"meta":{"model":"BP-200","sn":"ACM1"},)"
           R"("measurement":{"takenAt":"2026-11-28T08:15:00+01:00","sys":128,"dia":82,"unit":"mmHg","pulse":71}})";
  };
  auto send = [&](std::uint64_t seq, const std::string& json) {
    return pipeline.process({"telehub/v1/devices/dev-cuff/readings",
                             Fixture::sealed_with(core::Bytes(32, 0x42), seq, json, 1, "dev-cuff"), clock.now()});
  };
  CHECK(send(1, payload("111222333")).kind == Kind::kStored);  // the device's own patient
  auto other = send(2, payload("123456782"));                  // another registered person
  CHECK(other.kind == Kind::kQuarantined);
  CHECK(other.reason == "subject_mismatch");
  auto bad = send(3, payload("123456789"));                    // fails the 11-test
  CHECK(bad.reason == "bad_subject");
  CHECK(send(4, payload("999999990")).kind == Kind::kStored);  // nobody registered: stored, counted
  CHECK(pipeline.counters().subjects_unmatched == 1);
  (*store)->close();
  std::string bytes;
  for (const char* suffix : {"", "-wal"}) {
    std::ifstream in(dir.path() / (std::string("telehub.db") + suffix), std::ios::binary);
    bytes += std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  for (const char* id : {"111222333", "123456782", "999999990", "Someone", "X-1"}) {
    INFO(id);
    CHECK(bytes.find(id) == std::string::npos);
  }
}
