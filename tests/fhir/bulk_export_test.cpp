// Issue [7/8] item 5: FHIR Bulk Data export jobs (fhir/src/bulk_export.h) over real SQLite
// stores: a Synthea Bundle imported into the clinical store and the vault, home readings in the
// measurement store. Every NDJSON line parses, has its file's resourceType and passes
// fhir-validate; counts match the manifest; _type, _since, identified vs pseudonymous Patient,
// requester checks, file-name checks, cancel, the concurrency limit, expiry and failure.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include <rapidjson/document.h>

#include "bulk_export.h"
#include "bundle_import.h"
#include "telehub/clinical/resource_store.h"
#include "telehub/privacy/pseudonym.h"
#include "telehub/storage/store.h"
#include "test_support.h"

using namespace telehub;
using State = fhir::ExportStatus::State;

namespace {

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class ManualClock final : public core::Clock {
 public:
  core::TimePoint now() const override { return core::from_unix_millis(ms_.load()); }
  void set(core::TimePoint t) { ms_ = core::to_unix_millis(t); }
  void advance(std::chrono::milliseconds d) { ms_ += d.count(); }

 private:
  std::atomic<std::int64_t> ms_{core::to_unix_millis(core::system_clock().now())};
};

// A registry that delegates to the real one, but whose subject_exists() can be held (to keep a
// job in progress) or made to fail (a store failure in the middle of a job).
class GateRegistry final : public storage::Registry {
 public:
  explicit GateRegistry(storage::Registry& real) : real_(real) {}
  enum class Mode { kPass, kHold, kFail };
  void set(Mode m) {
    std::lock_guard lock(mu_);
    mode_ = m;
    cv_.notify_all();
  }

  Status add_subject(const privacy::SubjectPseudonym& s) override { return real_.add_subject(s); }
  Result<bool> subject_exists(std::string_view p) override {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return mode_ != Mode::kHold; });
    if (mode_ == Mode::kFail) return core::fail(core::Code::kUnavailable, "db_busy", "database is locked");
    lock.unlock();
    return real_.subject_exists(p);
  }
  Result<std::vector<std::string>> subjects(std::string_view after, std::size_t limit) override {
    return real_.subjects(after, limit);
  }
  Status add_device(const storage::DeviceRecord& d) override { return real_.add_device(d); }
  Result<std::optional<storage::DeviceRecord>> find_device(std::string_view id) override { return real_.find_device(id); }
  Result<std::vector<storage::DeviceRecord>> devices_of(std::string_view p) override { return real_.devices_of(p); }
  Status update_device_info(const storage::DeviceInfoUpdate& i) override { return real_.update_device_info(i); }
  Status rotate_key(const storage::KeyRotation& r) override { return real_.rotate_key(r); }
  Status revoke_device(std::string_view id, core::TimePoint t) override { return real_.revoke_device(id, t); }
  Result<std::vector<std::string>> inactive_device_ids() override { return real_.inactive_device_ids(); }

 private:
  storage::Registry& real_;
  std::mutex mu_;
  std::condition_variable cv_;
  Mode mode_ = Mode::kPass;
};

class GateStore final : public storage::Store {
 public:
  explicit GateStore(storage::Store& real) : real_(real), registry_(real.registry()) {}
  storage::ObservationStore& observations() override { return real_.observations(); }
  storage::Registry& registry() override { return registry_; }
  storage::Quarantine& quarantine() override { return real_.quarantine(); }
  Status sync() override { return real_.sync(); }
  Result<std::int64_t> compact() override { return real_.compact(); }
  Result<std::int64_t> purge_readings_before(core::TimePoint t) override { return real_.purge_readings_before(t); }
  void close() override {}
  GateRegistry& gate() { return registry_; }

 private:
  storage::Store& real_;
  GateRegistry registry_;
};

core::Reading reading(const std::string& code, double value, const std::string& unit, core::TimePoint time) {
  core::Reading r;
  r.code = code;
  r.value = value;
  r.unit = unit;
  r.time = time;
  return r;
}

struct Fixture {
  testing::TempDir dir;
  privacy::Kek kek = *privacy::Kek::from_hex(std::string(64, 'e'));
  ManualClock clock;
  std::unique_ptr<storage::Store> real_store;
  std::unique_ptr<GateStore> store;
  std::unique_ptr<privacy::IdentityVault> vault;
  std::unique_ptr<clinical::ResourceStore> clinical;
  std::unique_ptr<privacy::Pseudonymiser> pseudonymiser;
  std::unique_ptr<fhir::BulkExports> exports;
  std::string patient;       // the imported Synthea patient's pseudonym
  std::string family_name;   // as the vault holds it
  std::uint64_t sequence = 0;
  core::TimePoint imported_at;

  explicit Fixture(std::size_t max_jobs = 2) {
    auto s = storage::open_sqlite_store({dir.path() / "telehub.db"}, core::system_clock());
    REQUIRE(s);
    real_store = std::move(*s);
    store = std::make_unique<GateStore>(*real_store);
    auto v = privacy::IdentityVault::open(dir.path() / "identity.db", dir.path() / "vault.key", kek);
    REQUIRE(v);
    vault = std::move(*v);
    auto c = clinical::ResourceStore::open(dir.path() / "clinical.db", core::system_clock());
    REQUIRE(c);
    clinical = std::move(*c);
    pseudonymiser = std::move(*privacy::Pseudonymiser::from_key(core::Bytes(32, 7)));

    const std::string bundle = slurp(testing::shared_dir() / "synthea/Kirsten_Witting_a09212a3-af3e-4194-b1d1-3f0a543222f6.json");
    auto imported = fhir::import_bundle(bundle, {*vault, *pseudonymiser, real_store->registry(), *clinical, "https://hub.test/fhir"});
    REQUIRE(imported);
    REQUIRE(imported->patients.size() == 1);
    patient = imported->patients[0].pseudonym;
    auto subject_id = vault->find_by_pseudonym(patient);
    REQUIRE(subject_id);
    REQUIRE(subject_id->has_value());
    auto person = vault->get(**subject_id);
    REQUIRE(person);
    REQUIRE(person->has_value());
    family_name = (*person)->family_name;
    REQUIRE_FALSE(family_name.empty());
    imported_at = core::system_clock().now();

    // Home readings: a device bound to the patient, two messages received an hour apart.
    storage::DeviceRecord d;
    d.id = "dev-bp-1";
    d.subject = patient;
    d.wrapped_key = core::Bytes(61, 0xAB);
    d.enrolled_at = core::system_clock().now();
    REQUIRE(real_store->registry().add_device(d));
    const auto pseudonym = *privacy::SubjectPseudonym::parse(patient);
    append(pseudonym, core::system_clock().now() - std::chrono::hours(2),
           {reading("8867-4", 72, "/min", testing::minutes_ago(180)), reading("29463-7", 80.5, "kg", testing::minutes_ago(170))});
    // Received after `imported_at + 1 h`, but measured earlier (delivered late).
    append(pseudonym, imported_at + std::chrono::hours(1), {reading("8867-4", 75, "/min", testing::minutes_ago(240))});

    fhir::BulkExportOptions o;
    o.dir = dir.path() / "exports";
    o.base_url = "https://hub.test/fhir";
    o.store = store.get();
    o.clinical = clinical.get();
    o.vault = vault.get();
    o.max_concurrent_jobs = max_jobs;
    o.clock = &clock;
    auto e = fhir::BulkExports::start(std::move(o));
    REQUIRE(e);
    exports = std::move(*e);
  }

  void append(const privacy::SubjectPseudonym& subject, core::TimePoint received, std::vector<core::Reading> readings) {
    storage::MessageBatch b;
    b.device_id = "dev-bp-1";
    b.sequence = ++sequence;
    b.content_hash = "hash-" + std::to_string(sequence);
    b.received_at = received;
    for (auto& r : readings) {
      r.device = b.device_id;
      r.sequence = sequence;
      b.readings.push_back(privacy::PseudonymousReading::bind(r, subject));
    }
    auto outcome = real_store->observations().append(std::move(b));
    REQUIRE(outcome);
    REQUIRE(*outcome == storage::AppendOutcome::kStored);
  }

  fhir::ExportRequest request(std::string requester = "care-a") const {
    fhir::ExportRequest r;
    r.subjects = {patient};
    r.requester = std::move(requester);
    r.request_url = "https://hub.test/fhir/Patient/$export";
    return r;
  }

  // Waits for the job to leave kInProgress.
  fhir::ExportStatus wait(const std::string& job, const std::string& requester = "care-a") {
    for (int i = 0; i < 6000; ++i) {
      auto s = exports->status(job, requester);
      REQUIRE(s);
      if (s->state != State::kInProgress) return *s;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    FAIL("the export did not finish");
    return {};
  }

  std::string run(const fhir::ExportRequest& r) {
    auto job = exports->kick_off(r);
    REQUIRE(job);
    auto s = wait(*job, r.requester);
    INFO(s.body);
    REQUIRE(s.state == State::kComplete);
    return *job;
  }

  // The manifest's output: type -> (url, count).
  std::map<std::string, std::pair<std::string, std::int64_t>> outputs(const std::string& job,
                                                                      const std::string& requester = "care-a") {
    auto s = exports->status(job, requester);
    REQUIRE(s);
    rapidjson::Document m;
    m.Parse(s->body.c_str());
    REQUIRE_FALSE(m.HasParseError());
    std::map<std::string, std::pair<std::string, std::int64_t>> out;
    for (const auto& o : m["output"].GetArray())
      out[o["type"].GetString()] = {o["url"].GetString(), o["count"].GetInt64()};
    return out;
  }

  std::vector<std::string> lines(const std::string& job, const std::string& type) {
    auto path = exports->file(job, type + ".ndjson", "care-a");
    REQUIRE(path);
    std::ifstream in(*path);
    std::vector<std::string> out;
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }

  std::map<std::string, std::int64_t> clinical_counts() {
    auto c = clinical->count_by_type();
    REQUIRE(c);
    return {c->begin(), c->end()};
  }
};

}  // namespace

TEST_CASE("a bulk export of one patient completes with a manifest whose counts match its NDJSON files", "[fhir][bulk]") {
  Fixture f;
  const std::string job = f.run(f.request());
  REQUIRE(job.size() == 32);

  auto s = f.exports->status(job, "care-a");
  REQUIRE(s);
  rapidjson::Document m;
  m.Parse(s->body.c_str());
  REQUIRE_FALSE(m.HasParseError());
  CHECK(core::parse_rfc3339(m["transactionTime"].GetString()).has_value());
  CHECK(std::string(m["request"].GetString()) == "https://hub.test/fhir/Patient/$export");
  CHECK(m["requiresAccessToken"].GetBool());
  CHECK(m["error"].GetArray().Empty());

  auto outputs = f.outputs(job);
  auto expected = f.clinical_counts();
  expected.erase("Organization");  // no subject: only with include_shared
  expected.erase("Practitioner");
  expected["Patient"] = 1;
  expected["Device"] += 1;         // the telehub device
  expected["Observation"] += 3;    // the home readings
  CHECK(expected["Condition"] == 9);
  std::map<std::string, std::int64_t> counts;
  for (const auto& [type, o] : outputs) {
    counts[type] = o.second;
    CHECK(o.first == "https://hub.test/fhir/$export-files/" + job + "/" + type + ".ndjson");
  }
  CHECK(counts == expected);

  std::vector<std::string> all;
  for (const auto& [type, o] : outputs) {
    auto path = f.exports->file(job, type + ".ndjson", "care-a");
    REQUIRE(path);
    struct stat st {};
    REQUIRE(::stat(path->c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    auto ls = f.lines(job, type);
    CHECK(static_cast<std::int64_t>(ls.size()) == o.second);
    for (const auto& line : ls) {
      rapidjson::Document d;
      d.Parse(line.c_str());
      REQUIRE_FALSE(d.HasParseError());
      CHECK(std::string(d["resourceType"].GetString()) == type);
      all.push_back(line);
    }
  }
  auto patient = f.lines(job, "Patient");
  REQUIRE(patient.size() == 1);
  CHECK(patient[0].find(f.patient) != std::string::npos);
  CHECK(patient[0].find(f.family_name) == std::string::npos);  // pseudonymous

  auto validated = testing::fhir_validate(all);
  INFO(validated.output.substr(0, 4000));
  CHECK(validated.exit_code == 0);
}

TEST_CASE("include_shared adds the clinical resources without a subject", "[fhir][bulk]") {
  Fixture f;
  auto r = f.request();
  r.include_shared = true;
  r.types = {"Organization", "Practitioner", "Condition"};
  const std::string job = f.run(r);
  auto outputs = f.outputs(job);
  auto expected = f.clinical_counts();
  REQUIRE(outputs.size() == 3);
  CHECK(outputs["Organization"].second == expected["Organization"]);
  CHECK(outputs["Practitioner"].second == expected["Practitioner"]);
  CHECK(outputs["Condition"].second == 9);
  std::vector<std::string> all = f.lines(job, "Organization");
  for (const auto& l : f.lines(job, "Practitioner")) all.push_back(l);
  auto validated = testing::fhir_validate(all);
  INFO(validated.output.substr(0, 4000));
  CHECK(validated.exit_code == 0);
}

TEST_CASE("_type and _since filter a bulk export", "[fhir][bulk]") {
  Fixture f;
  SECTION("_type") {
    auto r = f.request();
    r.types = {"Condition", "Patient"};
    auto outputs = f.outputs(f.run(r));
    REQUIRE(outputs.size() == 2);
    CHECK(outputs["Condition"].second == 9);
    CHECK(outputs["Patient"].second == 1);
  }
  SECTION("_type Observation: home readings and clinical Observations in one file") {
    auto r = f.request();
    r.types = {"Observation"};
    const std::string job = f.run(r);
    auto outputs = f.outputs(job);
    REQUIRE(outputs.size() == 1);
    CHECK(outputs["Observation"].second == f.clinical_counts()["Observation"] + 3);
  }
  SECTION("_since: clinical lastUpdated, readings by the time they were received") {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    auto r = f.request();
    r.since = core::system_clock().now();  // after the import and the first message
    const std::string job = f.run(r);
    auto outputs = f.outputs(job);
    // Patient and Device have no update time: always there. One reading received late.
    CHECK(outputs["Patient"].second == 1);
    CHECK(outputs["Device"].second == 1);
    CHECK(outputs["Observation"].second == 1);
    CHECK_FALSE(outputs.contains("Condition"));
    auto obs = f.lines(job, "Observation");
    REQUIRE(obs.size() == 1);
    CHECK(obs[0].find("\"value\":75") != std::string::npos);
  }
}

TEST_CASE("an identified export re-identifies the Patient from the vault, a pseudonymous one does not", "[fhir][bulk]") {
  Fixture f;
  auto r = f.request();
  r.types = {"Patient"};
  r.identified = true;
  const std::string identified = f.run(r);
  auto lines = f.lines(identified, "Patient");
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find(f.family_name) != std::string::npos);
  CHECK(lines[0].find(f.patient) != std::string::npos);
  CHECK(testing::fhir_validate(lines).exit_code == 0);

  r.identified = false;
  const std::string pseudonymous = f.run(r);
  lines = f.lines(pseudonymous, "Patient");
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find(f.family_name) == std::string::npos);
}

TEST_CASE("only the requester sees a bulk export and only files the job wrote are served", "[fhir][bulk]") {
  Fixture f;
  const std::string job = f.run(f.request("care-a"));
  auto other = f.exports->status(job, "care-b");
  REQUIRE_FALSE(other);
  CHECK(other.error().code == core::Code::kNotFound);
  CHECK(other.error().reason == "no_export");
  CHECK(f.exports->file(job, "Patient.ndjson", "care-b").error().reason == "no_export");
  CHECK(f.exports->cancel(job, "care-b").error().reason == "no_export");
  CHECK(f.exports->status("0123456789abcdef0123456789abcdef", "care-a").error().reason == "no_export");

  for (const char* name : {"../x", "../../telehub.db", "Patient.ndjson/../Patient.ndjson", "Patient", "/etc/passwd",
                           "Organization.ndjson", ".ndjson", ""}) {
    auto refused = f.exports->file(job, name, "care-a");
    INFO(name);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code == core::Code::kNotFound);
  }
  CHECK(f.exports->file(job, "Patient.ndjson", "care-a"));
  CHECK(f.exports->file("../" + job, "Patient.ndjson", "care-a").error().reason == "no_export");
}

TEST_CASE("cancel stops a bulk export and deletes its files", "[fhir][bulk]") {
  Fixture f;
  SECTION("a complete job") {
    const std::string job = f.run(f.request());
    auto path = f.exports->file(job, "Patient.ndjson", "care-a");
    REQUIRE(path);
    REQUIRE(std::filesystem::exists(*path));
    REQUIRE(f.exports->cancel(job, "care-a"));
    CHECK_FALSE(std::filesystem::exists(path->parent_path()));
    CHECK(f.exports->status(job, "care-a").error().reason == "no_export");
    CHECK(f.exports->cancel(job, "care-a").error().reason == "no_export");
  }
  SECTION("a running job") {
    f.store->gate().set(GateRegistry::Mode::kHold);
    auto job = f.exports->kick_off(f.request());
    REQUIRE(job);
    auto s = f.exports->status(*job, "care-a");
    REQUIRE(s);
    CHECK(s->state == State::kInProgress);
    CHECK(s->progress == "0 of 1 patients");
    CHECK(f.exports->file(*job, "Patient.ndjson", "care-a").error().reason == "not_complete");
    std::thread release([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      f.store->gate().set(GateRegistry::Mode::kPass);
    });
    REQUIRE(f.exports->cancel(*job, "care-a"));
    release.join();
    CHECK_FALSE(std::filesystem::exists(f.dir.path() / "exports" / *job));
    CHECK(f.exports->status(*job, "care-a").error().reason == "no_export");
  }
}

TEST_CASE("too many bulk exports in progress are refused with resource_exhausted", "[fhir][bulk]") {
  Fixture f(2);
  f.store->gate().set(GateRegistry::Mode::kHold);
  auto a = f.exports->kick_off(f.request("care-a"));
  auto b = f.exports->kick_off(f.request("care-b"));
  REQUIRE(a);
  REQUIRE(b);
  auto c = f.exports->kick_off(f.request("care-c"));
  REQUIRE_FALSE(c);
  CHECK(c.error().code == core::Code::kResourceExhausted);
  CHECK(c.error().reason == "too_many_exports");
  f.store->gate().set(GateRegistry::Mode::kPass);
  f.wait(*a, "care-a");
  f.wait(*b, "care-b");
  CHECK(f.exports->kick_off(f.request("care-c")));  // finished jobs do not count
}

TEST_CASE("bulk export requests that cannot run are refused", "[fhir][bulk]") {
  Fixture f;
  auto r = f.request("");
  CHECK(f.exports->kick_off(r).error().reason == "bad_export");
  r = f.request();
  r.types = {"Patient", "../x"};
  CHECK(f.exports->kick_off(r).error().reason == "bad_export");
  r = f.request();
  r.subjects = {"a/b"};
  CHECK(f.exports->kick_off(r).error().reason == "bad_export");
}

TEST_CASE("finished bulk exports expire after their time-to-live and their files are deleted", "[fhir][bulk]") {
  Fixture f;
  const std::string job = f.run(f.request());
  auto path = f.exports->file(job, "Patient.ndjson", "care-a");
  REQUIRE(path);
  f.clock.advance(std::chrono::hours(23));
  CHECK(f.exports->status(job, "care-a"));
  f.clock.advance(std::chrono::hours(1));
  CHECK(f.exports->status(job, "care-a").error().reason == "no_export");
  CHECK_FALSE(std::filesystem::exists(path->parent_path()));
}

TEST_CASE("a bulk export whose store fails ends with an OperationOutcome and no files", "[fhir][bulk]") {
  Fixture f;
  f.store->gate().set(GateRegistry::Mode::kFail);
  auto job = f.exports->kick_off(f.request());
  REQUIRE(job);
  auto s = f.wait(*job);
  CHECK(s.state == State::kFailed);
  CHECK(s.body.find("\"OperationOutcome\"") != std::string::npos);
  CHECK(s.body.find("unavailable/db_busy") != std::string::npos);
  CHECK(s.body.find(f.patient) == std::string::npos);
  CHECK(testing::fhir_validate({s.body}).exit_code == 0);
  CHECK(std::filesystem::is_empty(f.dir.path() / "exports" / *job));
  CHECK(f.exports->file(*job, "Patient.ndjson", "care-a").error().reason == "not_complete");
}

TEST_CASE("stop deletes every job and refuses new ones", "[fhir][bulk]") {
  Fixture f;
  const std::string job = f.run(f.request());
  f.exports->stop();
  CHECK_FALSE(std::filesystem::exists(f.dir.path() / "exports" / job));
  CHECK(f.exports->kick_off(f.request()).error().reason == "stopped");
}
