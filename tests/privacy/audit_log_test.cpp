// privacy::AuditLog: the hash chain holds for honest appends, and each way of tampering with the
// file behind the log's back (edit, delete, insert, reorder, cut the tail) is caught and the
// first bad record named. Tampering goes through the raw SQLite C API, as an intruder would.
#include <catch2/catch.hpp>

#include <openssl/evp.h>
#include <sqlite3.h>

#include <array>
#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "telehub/core/bytes.h"
#include "telehub/privacy/audit_log.h"
#include "test_support.h"

using namespace telehub;

namespace {

// Starts at 2026-11-28T14:03:11.123Z and moves one second per reading.
class SteppingClock final : public core::Clock {
 public:
  core::TimePoint now() const override {
    return core::from_unix_millis(kStart + 1000 * calls_++);
  }
  static constexpr std::int64_t kStart = 1795874591123;  // 2026-11-28T14:03:11.123Z

 private:
  mutable std::atomic<std::int64_t> calls_{0};
};

std::string sha256_hex(const std::string& data) {
  std::array<std::uint8_t, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  REQUIRE(EVP_Digest(data.data(), data.size(), digest.data(), &size, EVP_sha256(), nullptr) == 1);
  return core::to_hex(std::span<const std::uint8_t>(digest.data(), size));
}

privacy::AuditRecord sample(int i) {
  privacy::AuditRecord r;
  r.event_type = i % 3 == 0 ? "patient.search" : "patient.read";
  r.action = i % 3 == 0 ? 'E' : 'R';
  r.user_id = "user-" + std::to_string(i % 4);
  r.role = "care";
  r.purpose = "treatment";
  r.access_point = "127.0.0.1:" + std::to_string(50000 + i);
  r.subject = "p-" + std::to_string(i % 5);
  r.objects = "Patient/" + r.subject;
  if (i % 3 == 0) r.query = "Observation?subject=Patient/" + r.subject + "&_count=10";
  return r;
}

// Raw SQL on the closed audit file: what someone with write access to the disk can do.
void tamper(const std::filesystem::path& file, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  INFO("SQL: " << sql << " -> " << (err ? err : "ok"));
  sqlite3_free(err);
  sqlite3_close(db);
  REQUIRE(rc == SQLITE_OK);
}

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

std::string insert_sql(const privacy::AuditRecord& r) {
  return "INSERT INTO audit (sequence, recorded, event_type, action, outcome, user_id, role, on_behalf_of, purpose, "
         "access_point, subject, objects, query, source, prev_hash, hash) VALUES (" +
         std::to_string(r.sequence) + "," + quote(r.recorded) + "," + quote(r.event_type) + "," +
         quote(std::string(1, r.action)) + "," + quote(r.outcome) + "," + quote(r.user_id) + "," + quote(r.role) +
         "," + quote(r.on_behalf_of) + "," + quote(r.purpose) + "," + quote(r.access_point) + "," +
         quote(r.subject) + "," + quote(r.objects) + "," + quote(r.query) + "," + quote(r.source) + "," +
         quote(r.prev_hash) + "," + quote(r.hash) + ")";
}

// Writes 20 records to dir/audit.db and closes the log (so the WAL is checkpointed into the
// file). Returns all 20 as stored.
std::vector<privacy::AuditRecord> write_twenty(const std::filesystem::path& file) {
  SteppingClock clock;
  auto log = privacy::AuditLog::open(file, clock);
  REQUIRE(log);
  std::vector<privacy::AuditRecord> out;
  for (int i = 1; i <= 20; ++i) {
    auto r = (*log)->append(sample(i));
    REQUIRE(r);
    out.push_back(*r);
  }
  return out;
}

privacy::VerifyResult verify_file(const std::filesystem::path& file,
                                  const std::optional<privacy::AuditHead>& anchor = std::nullopt) {
  auto log = privacy::AuditLog::open(file);
  REQUIRE(log);
  auto v = (*log)->verify(anchor);
  REQUIRE(v);
  INFO("problem: " << v->problem);
  return *v;
}

}  // namespace

TEST_CASE("the canonical form is stable: golden text and SHA-256 of one record", "[privacy][audit]") {
  privacy::AuditRecord r;
  r.sequence = 1;
  r.recorded = "2026-11-28T14:03:11.123+00:00";
  r.event_type = "patient.read";
  r.action = 'R';
  r.outcome = "success";
  r.user_id = "dr-jansen";
  r.role = "care";
  r.purpose = "treatment";
  r.access_point = "127.0.0.1:51234";
  r.subject = "p-7f3a";
  r.objects = "Patient/p-7f3a";
  const std::string golden =
      "sequence=1\nrecorded=2026-11-28T14:03:11.123+00:00\nevent_type=patient.read\naction=R\noutcome=success\n"
      "user_id=dr-jansen\nrole=care\non_behalf_of=\npurpose=treatment\naccess_point=127.0.0.1:51234\n"
      "subject=p-7f3a\nobjects=Patient/p-7f3a\nquery=\nsource=telehub\nprev=";
  CHECK(privacy::canonical_form(r) == golden);

  // The same record through append() (the clock gives the same instant) gets this hash, fixed
  // here so a change to the canonical form cannot pass unnoticed.
  testing::TempDir dir;
  SteppingClock clock;
  auto log = privacy::AuditLog::open(dir.path() / "audit.db", clock);
  REQUIRE(log);
  privacy::AuditRecord in = r;
  in.sequence = 99;            // ignored: append() numbers records
  in.recorded = "ignored";     // ignored: append() stamps the time
  in.prev_hash = "ignored";
  auto stored = (*log)->append(in);
  REQUIRE(stored);
  CHECK(stored->sequence == 1);
  CHECK(stored->recorded == "2026-11-28T14:03:11.123+00:00");
  CHECK(stored->prev_hash.empty());
  CHECK(stored->hash == "064cd4d5296d73826da2d83dbe41a2aef9abcb729c03391aa872584e36f5c3d6");
  CHECK(stored->hash == sha256_hex(golden));

  auto second = (*log)->append(r);
  REQUIRE(second);
  CHECK(second->sequence == 2);
  CHECK(second->prev_hash == stored->hash);
  CHECK(privacy::canonical_form(*second).ends_with("\nprev=" + stored->hash));
}

TEST_CASE("the canonical form escapes line feeds and backslashes so a value cannot imitate a field", "[privacy][audit]") {
  privacy::AuditRecord a, b;
  a.user_id = "x\nrole=y";
  a.role = "z";
  b.user_id = "x";
  b.role = "y\nrole=z";
  CHECK(privacy::canonical_form(a) != privacy::canonical_form(b));
  CHECK(privacy::canonical_form(a).find("user_id=x\\nrole=y\nrole=z\n") != std::string::npos);
  privacy::AuditRecord c;
  c.query = "a\\nb";
  CHECK(privacy::canonical_form(c).find("\nquery=a\\\\nb\n") != std::string::npos);
}

TEST_CASE("twenty honest appends verify, and the reads return them oldest first", "[privacy][audit]") {
  testing::TempDir dir;
  const auto file = dir.path() / "audit.db";
  const auto written = write_twenty(file);
  for (std::size_t i = 0; i < written.size(); ++i) {
    CHECK(written[i].sequence == static_cast<std::int64_t>(i + 1));
    CHECK(written[i].hash.size() == 64);
    CHECK(written[i].prev_hash == (i == 0 ? std::string() : written[i - 1].hash));
    CHECK(written[i].recorded.ends_with("+00:00"));
    CHECK(core::parse_rfc3339(written[i].recorded).has_value());
  }

  auto log = privacy::AuditLog::open(file);
  REQUIRE(log);
  auto v = (*log)->verify();
  REQUIRE(v);
  CHECK(v->ok);
  CHECK(v->records == 20);
  CHECK(v->first_bad == 0);
  CHECK(v->problem.empty());

  auto h = (*log)->head();
  REQUIRE(h);
  CHECK(h->sequence == 20);
  CHECK(h->hash == written.back().hash);
  auto anchored = (*log)->verify(*h);
  REQUIRE(anchored);
  CHECK(anchored->ok);

  auto recent = (*log)->recent(3);
  REQUIRE(recent);
  REQUIRE(recent->size() == 3);
  CHECK((*recent)[0].sequence == 18);
  CHECK((*recent)[2].sequence == 20);
  CHECK((*recent)[2].hash == written.back().hash);
  CHECK((*recent)[2].query == written.back().query);
  auto all = (*log)->recent(1000);
  REQUIRE(all);
  CHECK(all->size() == 20);
  auto none = (*log)->recent(0);
  REQUIRE(none);
  CHECK(none->empty());

  auto p2 = (*log)->for_subject("p-2");
  REQUIRE(p2);
  REQUIRE(p2->size() == 4);  // i = 2, 7, 12, 17
  CHECK((*p2)[0].sequence == 2);
  CHECK((*p2)[3].sequence == 17);
  for (const auto& r : *p2) CHECK(r.subject == "p-2");
  auto nobody = (*log)->for_subject("p-unknown");
  REQUIRE(nobody);
  CHECK(nobody->empty());

  // Appends continue the chain after reopening.
  auto next = (*log)->append(sample(21));
  REQUIRE(next);
  CHECK(next->sequence == 21);
  CHECK(next->prev_hash == written.back().hash);
}

TEST_CASE("an empty log verifies and its head is sequence 0", "[privacy][audit]") {
  testing::TempDir dir;
  auto log = privacy::AuditLog::open(dir.path() / "audit.db");
  REQUIRE(log);
  auto h = (*log)->head();
  REQUIRE(h);
  CHECK(h->sequence == 0);
  CHECK(h->hash.empty());
  auto v = (*log)->verify(*h);
  REQUIRE(v);
  CHECK(v->ok);
  CHECK(v->records == 0);
}

TEST_CASE("each kind of tampering is detected and the first bad record named", "[privacy][audit]") {
  testing::TempDir dir;
  const auto file = dir.path() / "audit.db";
  const auto written = write_twenty(file);

  SECTION("an edited field breaks that record's hash") {
    tamper(file, "UPDATE audit SET user_id = 'someone-else' WHERE sequence = 7");
    auto v = verify_file(file);
    CHECK_FALSE(v.ok);
    CHECK(v.first_bad == 7);
    CHECK(v.problem == "record 7: hash does not match its content (the record was altered)");
  }

  SECTION("an edited action that keeps its first letter is still caught") {
    tamper(file, "UPDATE audit SET action = action || 'X' WHERE sequence = 7");
    auto v = verify_file(file);
    CHECK_FALSE(v.ok);
    CHECK(v.first_bad == 7);
  }

  SECTION("an edit that recomputes the record's own hash is caught at the next record") {
    auto r = written[6];
    REQUIRE(r.sequence == 7);
    r.user_id = "someone-else";
    r.hash = sha256_hex(privacy::canonical_form(r));
    tamper(file, "UPDATE audit SET user_id = 'someone-else', hash = " + quote(r.hash) + " WHERE sequence = 7");
    auto v = verify_file(file);
    CHECK_FALSE(v.ok);
    CHECK(v.first_bad == 8);
    CHECK(v.problem.starts_with("record 8 does not link to record 7"));
  }

  SECTION("a deleted record shows as a gap, named at the record after it") {
    tamper(file, "DELETE FROM audit WHERE sequence = 7");
    auto v = verify_file(file);
    CHECK_FALSE(v.ok);
    CHECK(v.first_bad == 8);
    CHECK(v.problem == "record 7 is missing (sequence jumps from 6 to 8)");
    CHECK(v.records == 7);  // 1..6 and 8
  }

  SECTION("several deleted records, and a deleted first record") {
    tamper(file, "DELETE FROM audit WHERE sequence IN (1, 2, 3)");
    auto v = verify_file(file);
    CHECK_FALSE(v.ok);
    CHECK(v.first_bad == 4);
    CHECK(v.problem == "records 1 to 3 are missing (the log starts at record 4)");
  }

  SECTION("a forged record inserted between 7 and 8, later records renumbered") {
    privacy::AuditRecord forged = sample(100);
    forged.sequence = 8;
    forged.recorded = written[6].recorded;
    forged.prev_hash = written[6].hash;  // links correctly to record 7
    forged.hash = sha256_hex(privacy::canonical_form(forged));  // and is correct in itself
    tamper(file,
           "UPDATE audit SET sequence = -sequence WHERE sequence >= 8;"
           "UPDATE audit SET sequence = 1 - sequence WHERE sequence < 0;" +
               insert_sql(forged));
    auto v = verify_file(file);
    CHECK_FALSE(v.ok);
    CHECK(v.first_bad == 9);  // the old record 8 does not link to the forged 8
    CHECK(v.problem.starts_with("record 9 does not link to record 8"));
  }

  SECTION("a forged record inserted without renumbering lands at the end and does not link") {
    privacy::AuditRecord forged = sample(100);
    forged.sequence = 21;
    forged.recorded = written[6].recorded;
    forged.prev_hash = written[6].hash;  // meant to follow record 7
    forged.hash = sha256_hex(privacy::canonical_form(forged));
    tamper(file, insert_sql(forged));
    auto v = verify_file(file);
    CHECK_FALSE(v.ok);
    CHECK(v.first_bad == 21);
    CHECK(v.problem.starts_with("record 21 does not link to record 20"));
  }

  SECTION("a copy of a record under a new number breaks at that record") {
    tamper(file,
           "INSERT INTO audit SELECT 21, recorded, event_type, action, outcome, user_id, role, on_behalf_of, purpose, "
           "access_point, subject, objects, query, source, (SELECT hash FROM audit WHERE sequence = 20), hash "
           "FROM audit WHERE sequence = 7");
    auto v = verify_file(file);
    CHECK_FALSE(v.ok);
    CHECK(v.first_bad == 21);
    CHECK(v.problem == "record 21: hash does not match its content (the record was altered)");
  }

  SECTION("two records swapped (reordered) are caught at the first of them") {
    tamper(file,
           "UPDATE audit SET sequence = -5 WHERE sequence = 5;"
           "UPDATE audit SET sequence = 5 WHERE sequence = 6;"
           "UPDATE audit SET sequence = 6 WHERE sequence = -5;");
    auto v = verify_file(file);
    CHECK_FALSE(v.ok);
    CHECK(v.first_bad == 5);
    CHECK(v.problem.starts_with("record 5 does not link to record 4"));
  }

  SECTION("a first record that links somewhere is caught") {
    tamper(file, "UPDATE audit SET prev_hash = (SELECT hash FROM audit WHERE sequence = 20) WHERE sequence = 1");
    auto v = verify_file(file);
    CHECK_FALSE(v.ok);
    CHECK(v.first_bad == 1);
  }

  SECTION("a cut tail is consistent on its own and caught only against the anchor") {
    const privacy::AuditHead anchor{20, written.back().hash};
    tamper(file, "DELETE FROM audit WHERE sequence > 15");
    auto plain = verify_file(file);
    CHECK(plain.ok);
    CHECK(plain.records == 15);
    auto v = verify_file(file, anchor);
    CHECK_FALSE(v.ok);
    CHECK(v.first_bad == 20);
    CHECK(v.problem == "anchored record 20 is missing (the log ends at record 15): the chain was cut or rewritten before the anchor");

    // Cut and refilled with new honest appends: the anchored record exists but is another one.
    {
      auto log = privacy::AuditLog::open(file);
      REQUIRE(log);
      for (int i = 0; i < 6; ++i) REQUIRE((*log)->append(sample(200 + i)));
    }
    auto refilled = verify_file(file);
    CHECK(refilled.ok);
    auto again = verify_file(file, anchor);
    CHECK_FALSE(again.ok);
    CHECK(again.first_bad == 20);
    CHECK(again.problem == "record 20 does not have the anchored hash: the chain was cut or rewritten before the anchor");
  }

  SECTION("an anchor in the middle of the chain holds for later appends") {
    const privacy::AuditHead anchor{10, written[9].hash};
    auto v = verify_file(file, anchor);
    CHECK(v.ok);
    CHECK(v.records == 20);
  }
}

TEST_CASE("records without the required fields are refused and nothing is written", "[privacy][audit]") {
  testing::TempDir dir;
  auto log = privacy::AuditLog::open(dir.path() / "audit.db");
  REQUIRE(log);
  auto refused = [&](privacy::AuditRecord r) {
    auto res = (*log)->append(std::move(r));
    REQUIRE_FALSE(res);
    CHECK(res.error().code == core::Code::kInvalidArgument);
    CHECK(res.error().reason == "bad_audit_record");
  };
  auto r = sample(1);
  r.event_type.clear();
  refused(r);
  r = sample(1);
  r.user_id.clear();
  refused(r);
  r = sample(1);
  r.role.clear();
  refused(r);
  r = sample(1);
  r.action = 'X';
  refused(r);
  r = sample(1);
  r.action = 'r';
  refused(r);
  r = sample(1);
  r.outcome = "ok";
  refused(r);
  r = sample(1);
  r.outcome.clear();
  refused(r);

  auto h = (*log)->head();
  REQUIRE(h);
  CHECK(h->sequence == 0);

  for (char a : std::string("CRUDE")) {
    r = sample(1);
    r.action = a;
    CHECK((*log)->append(r));
  }
  for (const char* o : {"success", "denied", "failure"}) {
    r = sample(1);
    r.outcome = o;
    CHECK((*log)->append(r));
  }
  auto v = (*log)->verify();
  REQUIRE(v);
  CHECK(v->ok);
  CHECK(v->records == 8);
}

TEST_CASE("an audit store that cannot be opened or written fails with audit_io", "[privacy][audit]") {
  testing::TempDir dir;

  SECTION("a file in a directory that does not exist") {
    auto log = privacy::AuditLog::open(dir.path() / "missing" / "audit.db");
    REQUIRE_FALSE(log);
    CHECK(log.error().code == core::Code::kUnavailable);
    CHECK(log.error().reason == "audit_io");
  }

  SECTION("a file that is not a database") {
    const auto file = dir.path() / "audit.db";
    {
      std::FILE* f = std::fopen(file.c_str(), "wb");
      REQUIRE(f);
      std::fputs("this is not an SQLite database, just some text that is long enough to be a header......", f);
      std::fclose(f);
    }
    auto log = privacy::AuditLog::open(file);
    REQUIRE_FALSE(log);
    CHECK(log.error().reason == "audit_io");
  }

  SECTION("another connection holds the write lock (works as root too, unlike file modes)") {
    const auto file = dir.path() / "audit.db";
    auto log = privacy::AuditLog::open(file);
    REQUIRE(log);
    REQUIRE((*log)->append(sample(1)));

    sqlite3* other = nullptr;
    REQUIRE(sqlite3_open(file.c_str(), &other) == SQLITE_OK);
    REQUIRE(sqlite3_exec(other, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr) == SQLITE_OK);
    auto res = (*log)->append(sample(2));
    REQUIRE_FALSE(res);
    CHECK(res.error().code == core::Code::kUnavailable);
    CHECK(res.error().reason == "audit_io");
    REQUIRE(sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(other);

    // Nothing half-written: the next append continues the chain.
    auto next = (*log)->append(sample(3));
    REQUIRE(next);
    CHECK(next->sequence == 2);
    auto v = (*log)->verify();
    REQUIRE(v);
    CHECK(v->ok);
  }
}

TEST_CASE("concurrent appends from several threads form one unbroken chain", "[privacy][audit]") {
  testing::TempDir dir;
  auto log = privacy::AuditLog::open(dir.path() / "audit.db");
  REQUIRE(log);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i)
        if (!(*log)->append(sample(t * 100 + i))) ++failures;
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  auto v = (*log)->verify();
  REQUIRE(v);
  CHECK(v->ok);
  CHECK(v->records == 40);
}
