#include <catch2/catch.hpp>

#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <set>
#include <thread>

#include "telehub/privacy/identity_vault.h"
#include "test_support.h"

using namespace telehub;
using privacy::IdentityVault;
using privacy::Person;
using privacy::RecordNumber;

namespace {

privacy::Kek kek_of(std::uint8_t fill) { return *privacy::Kek::from_bytes(core::Bytes(32, fill)); }

struct Paths {
  testing::TempDir dir;
  std::filesystem::path vault = dir.path() / "identity.db";
  std::filesystem::path key = dir.path() / "keys" / "vault.key";
  std::unique_ptr<IdentityVault> open(std::uint8_t kek = 7) {
    auto v = IdentityVault::open(vault, key, kek_of(kek));
    REQUIRE(v);
    return std::move(*v);
  }
};

Person jansen() {
  Person p;
  p.bsn = "123456782";
  p.record_numbers = {{"urn:oid:2.16.840.1.113883.2.4.6.3.42", "MRN-77123"}, {"https://ziekenhuis.example/mrn", "ZK-99881"}};
  p.given_name = "Wilhelmina Adriana";
  p.family_name = "Jansen-Verhoeven";
  p.birth_date = "1948-02-29";
  p.sex = "female";
  p.address_line = "Kerkstraat 12a";
  p.postcode = "3511 AB";
  p.city = "Utrecht";
  p.phone = "+31612345678";
  p.email = "w.jansen@example.nl";
  return p;
}

std::vector<std::string> identifiers_of(const Person& p) {
  std::vector<std::string> ids = {p.bsn, p.given_name, p.family_name, "Jansen", p.address_line, p.postcode,
                                  p.city, p.phone, p.email};
  for (const auto& r : p.record_numbers) ids.push_back(r.value);
  return ids;
}

std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The bytes of the vault file and its WAL (whichever exist).
std::string vault_bytes(const std::filesystem::path& vault) {
  std::string all = slurp(vault);
  auto wal = vault;
  wal += "-wal";
  if (std::filesystem::exists(wal)) all += slurp(wal);
  return all;
}

std::vector<std::string> found_in(const std::string& haystack, const std::vector<std::string>& needles) {
  std::vector<std::string> found;
  for (const auto& n : needles)
    if (!n.empty() && haystack.find(n) != std::string::npos) found.push_back(n);
  return found;
}

// Every ciphertext and blind hash stored for a subject, read through the raw C API.
std::vector<std::string> stored_blobs(const std::filesystem::path& vault, const std::string& subject) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(vault.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  std::vector<std::string> blobs;
  for (const char* sql : {"SELECT ciphertext FROM fields WHERE subject_id = ?1",
                          "SELECT hash FROM blind WHERE subject_id = ?1"}) {
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK);
    sqlite3_bind_text(st, 1, subject.c_str(), -1, SQLITE_TRANSIENT);
    while (sqlite3_step(st) == SQLITE_ROW)
      blobs.emplace_back(static_cast<const char*>(sqlite3_column_blob(st, 0)),
                         static_cast<std::size_t>(sqlite3_column_bytes(st, 0)));
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return blobs;
}

}  // namespace

TEST_CASE("BSN 11-test accepts valid numbers and names the rule that failed", "[privacy][vault]") {
  for (const char* ok : {"111222333", "123456782", "999999990", "111111110", "100000009", "010000008"}) {
    INFO(ok);
    CHECK(privacy::valid_bsn(ok));
    CHECK(privacy::bsn_problem(ok).empty());
  }
  CHECK(privacy::bsn_problem("12345678") == "must be 9 digits");
  CHECK(privacy::bsn_problem("1234567820") == "must be 9 digits");
  CHECK(privacy::bsn_problem("") == "must be 9 digits");
  CHECK(privacy::bsn_problem("12345678a") == "must be 9 digits");
  CHECK(privacy::bsn_problem(" 23456782") == "must be 9 digits");
  CHECK(privacy::bsn_problem("123 456 782") == "must be 9 digits");
  CHECK(privacy::bsn_problem("123456789") == "fails the 11-test");
  CHECK(privacy::bsn_problem("111222334") == "fails the 11-test");
  CHECK(privacy::bsn_problem("999999999") == "fails the 11-test");
  CHECK(privacy::bsn_problem("000000000") == "must not be all zeros");
  CHECK_FALSE(privacy::valid_bsn("000000000"));
  CHECK_FALSE(privacy::valid_bsn("123456789"));
  // No problem text echoes the number.
  CHECK(privacy::bsn_problem("123456789").find("123456789") == std::string::npos);
}

TEST_CASE("vault registers a person and returns every field on get", "[privacy][vault]") {
  Paths paths;
  auto vault = paths.open();
  auto p = jansen();
  auto reg = vault->register_person(p);
  REQUIRE(reg);
  CHECK(reg->created);
  CHECK(reg->subject_id.size() == 34);
  CHECK(reg->subject_id.rfind("s-", 0) == 0);
  auto got = vault->get(reg->subject_id);
  REQUIRE(got);
  REQUIRE(got->has_value());
  p.subject_id = reg->subject_id;
  CHECK(**got == p);
  CHECK(*vault->subject_ids() == std::vector<std::string>{reg->subject_id});

  auto unknown = vault->get("s-00000000000000000000000000000000");
  REQUIRE(unknown);
  CHECK_FALSE(unknown->has_value());

  struct stat st {};
  REQUIRE(::stat(paths.key.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  REQUIRE(::stat(paths.vault.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
}

TEST_CASE("vault finds subjects by BSN and by record number", "[privacy][vault]") {
  Paths paths;
  auto vault = paths.open();
  auto reg = vault->register_person(jansen());
  REQUIRE(reg);
  Person other;
  other.record_numbers = {{"urn:oid:2.16.840.1.113883.2.4.6.3.42", "MRN-1"}};
  auto reg2 = vault->register_person(other);
  REQUIRE(reg2);
  CHECK(reg2->subject_id != reg->subject_id);

  CHECK(*vault->find_by_bsn("123456782") == reg->subject_id);
  CHECK(*vault->find_by_bsn("111222333") == std::nullopt);
  CHECK(*vault->find_by_record_number({"urn:oid:2.16.840.1.113883.2.4.6.3.42", "MRN-77123"}) == reg->subject_id);
  // System and value are trimmed of surrounding spaces.
  CHECK(*vault->find_by_record_number({" https://ziekenhuis.example/mrn ", " ZK-99881"}) == reg->subject_id);
  CHECK(*vault->find_by_record_number({"urn:oid:2.16.840.1.113883.2.4.6.3.42", "MRN-1"}) == reg2->subject_id);
  // The value alone, or under another system, is another identifier.
  CHECK(*vault->find_by_record_number({"urn:other", "MRN-77123"}) == std::nullopt);
  CHECK(*vault->find_by_record_number({"urn:oid:2.16.840.1.113883.2.4.6.3.42", "mrn-77123"}) == std::nullopt);

  auto bad = vault->find_by_bsn("123456789");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().reason == "bad_bsn");
  CHECK(bad.error().message.find("123456789") == std::string::npos);
  auto empty = vault->find_by_record_number({"", "x"});
  REQUIRE_FALSE(empty);
  CHECK(empty.error().reason == "bad_person");
}

TEST_CASE("vault updates the subject found by identifier and keeps its record numbers", "[privacy][vault]") {
  Paths paths;
  auto vault = paths.open();
  auto first = vault->register_person(jansen());
  REQUIRE(first);

  Person update;
  update.bsn = "123456782";
  update.record_numbers = {{"urn:lab", "L-5"}, {"urn:oid:2.16.840.1.113883.2.4.6.3.42", "MRN-77123"}};
  update.family_name = "Verhoeven";
  update.phone = "+31687654321";
  auto second = vault->register_person(update);
  REQUIRE(second);
  CHECK_FALSE(second->created);
  CHECK(second->subject_id == first->subject_id);

  auto got = vault->get(first->subject_id);
  REQUIRE(got);
  REQUIRE(got->has_value());
  const Person& p = **got;
  CHECK(p.family_name == "Verhoeven");
  CHECK(p.phone == "+31687654321");
  CHECK(p.given_name == "Wilhelmina Adriana");  // not given: kept
  CHECK(p.email == "w.jansen@example.nl");
  std::vector<RecordNumber> expected = jansen().record_numbers;
  expected.push_back({"urn:lab", "L-5"});
  CHECK(p.record_numbers == expected);
  CHECK(*vault->find_by_record_number({"urn:lab", "L-5"}) == first->subject_id);

  // Found by record number alone; a BSN for a subject that had none is added.
  Person no_bsn;
  no_bsn.record_numbers = {{"urn:x", "1"}};
  auto third = vault->register_person(no_bsn);
  REQUIRE(third);
  CHECK(third->created);
  Person with_bsn;
  with_bsn.bsn = "111222333";
  with_bsn.record_numbers = {{"urn:x", "1"}};
  auto fourth = vault->register_person(with_bsn);
  REQUIRE(fourth);
  CHECK_FALSE(fourth->created);
  CHECK(fourth->subject_id == third->subject_id);
  CHECK(*vault->find_by_bsn("111222333") == third->subject_id);
  CHECK(vault->subject_ids()->size() == 2);
}

TEST_CASE("vault refuses identifiers that belong to different subjects", "[privacy][vault]") {
  Paths paths;
  auto vault = paths.open();
  auto a = vault->register_person(jansen());
  REQUIRE(a);
  Person b;
  b.bsn = "111222333";
  b.record_numbers = {{"urn:x", "B-1"}};
  REQUIRE(vault->register_person(b));

  Person mixed;
  mixed.bsn = "123456782";
  mixed.record_numbers = {{"urn:x", "B-1"}};
  mixed.given_name = "Mallory";
  auto r = vault->register_person(mixed);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == core::Code::kFailedPrecondition);
  CHECK(r.error().reason == "identifier_conflict");
  CHECK(r.error().message.find("123456782") == std::string::npos);
  CHECK(r.error().message.find("B-1") == std::string::npos);

  // A record number of a subject with another BSN.
  Person other_bsn;
  other_bsn.bsn = "999999990";
  other_bsn.record_numbers = {{"urn:x", "B-1"}};
  auto r2 = vault->register_person(other_bsn);
  REQUIRE_FALSE(r2);
  CHECK(r2.error().reason == "identifier_conflict");

  // Nothing changed.
  CHECK((*vault->get(a->subject_id))->given_name == "Wilhelmina Adriana");
  CHECK(*vault->find_by_bsn("999999990") == std::nullopt);
  CHECK(vault->subject_ids()->size() == 2);
}

TEST_CASE("vault refuses malformed persons without echoing them", "[privacy][vault]") {
  Paths paths;
  auto vault = paths.open();
  auto refused = [&](Person p, const std::string& reason) {
    auto r = vault->register_person(p);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == core::Code::kInvalidArgument);
    CHECK(r.error().reason == reason);
    for (const auto& id : {p.bsn, p.given_name, p.birth_date})
      if (!id.empty()) CHECK(r.error().message.find(id) == std::string::npos);
  };
  Person p;
  p.given_name = "Nobody";
  refused(p, "bad_person");  // no BSN, no record number
  p.bsn = "123456789";
  refused(p, "bad_bsn");
  p.bsn = "12345678x";
  refused(p, "bad_bsn");
  p.bsn = "000000000";
  refused(p, "bad_bsn");

  auto base = [] {
    Person q;
    q.bsn = "123456782";
    return q;
  };
  Person q = base();
  q.record_numbers = {{"", "1"}};
  refused(q, "bad_person");
  q.record_numbers = {{"urn:x", "   "}};
  refused(q, "bad_person");
  q.record_numbers = {{"urn:x|y", "1"}};
  refused(q, "bad_person");
  for (const char* date : {"1948-02-30", "1947-02-29", "1948-13-01", "1948-1-01", "19480101", "1948-01-01T00:00"}) {
    q = base();
    q.birth_date = date;
    INFO(date);
    refused(q, "bad_person");
  }
  q = base();
  q.sex = "F";
  refused(q, "bad_person");
  q = base();
  q.city = std::string(257, 'a');
  refused(q, "bad_person");
  q = base();
  q.record_numbers = {{"urn:x", std::string(300, '1')}};
  refused(q, "bad_person");
  CHECK(vault->subject_ids()->empty());

  q = base();
  q.city = std::string(256, 'a');
  q.birth_date = "2000-02-29";
  q.sex = "unknown";
  CHECK(vault->register_person(q));
}

TEST_CASE("vault reopens with its data and refuses another KEK", "[privacy][vault]") {
  Paths paths;
  std::string subject;
  {
    auto vault = paths.open(7);
    auto reg = vault->register_person(jansen());
    REQUIRE(reg);
    subject = reg->subject_id;
  }
  auto wrong = IdentityVault::open(paths.vault, paths.key, kek_of(8));
  REQUIRE_FALSE(wrong);
  CHECK(wrong.error().code == core::Code::kDataLoss);
  CHECK(wrong.error().reason == "unwrap_failed");

  auto vault = paths.open(7);
  CHECK(*vault->find_by_bsn("123456782") == subject);
  auto got = vault->get(subject);
  REQUIRE(got);
  REQUIRE(got->has_value());
  auto expected = jansen();
  expected.subject_id = subject;
  CHECK(**got == expected);
  vault.reset();

  // A damaged key file is refused the same way, not replaced with fresh keys.
  auto blob = slurp(paths.key);
  blob[20] ^= 0x01;
  std::ofstream(paths.key, std::ios::binary | std::ios::trunc) << blob;
  auto damaged = IdentityVault::open(paths.vault, paths.key, kek_of(7));
  REQUIRE_FALSE(damaged);
  CHECK(damaged.error().reason == "unwrap_failed");
  CHECK(slurp(paths.key) == blob);
}

TEST_CASE("vault holds no identifier in clear, and erasure leaves none of its bytes", "[privacy][vault]") {
  Paths paths;
  const Person p = jansen();
  Person bystander;
  bystander.bsn = "111222333";
  bystander.given_name = "Bystander";
  std::string subject;
  std::string keep;
  std::vector<std::string> blobs;
  {
    auto vault = paths.open();
    auto reg = vault->register_person(p);
    REQUIRE(reg);
    subject = reg->subject_id;
    auto reg2 = vault->register_person(bystander);
    REQUIRE(reg2);
    keep = reg2->subject_id;

    // While open: every field encrypted, every look-up key hashed.
    CHECK(found_in(vault_bytes(paths.vault), identifiers_of(p)).empty());
    CHECK(found_in(vault_bytes(paths.vault), {"Bystander", "111222333"}).empty());

    blobs = stored_blobs(paths.vault, subject);
    CHECK(blobs.size() == 10 + 2 + 3);  // 10 fields + 2 record numbers; BSN and 2 record-number hashes
    CHECK(found_in(vault_bytes(paths.vault), blobs).size() == blobs.size());

    auto erased = vault->erase(subject);
    REQUIRE(erased);
    CHECK(*erased);
    CHECK(*vault->get(subject) == std::nullopt);
    CHECK(*vault->find_by_bsn(p.bsn) == std::nullopt);
    CHECK(*vault->find_by_record_number(p.record_numbers[0]) == std::nullopt);
    CHECK(*vault->subject_ids() == std::vector<std::string>{keep});
    auto again = vault->erase(subject);
    REQUIRE(again);
    CHECK_FALSE(*again);
  }
  const std::string bytes = vault_bytes(paths.vault);
  CHECK(found_in(bytes, identifiers_of(p)).empty());
  // Not even the ciphertexts or the blind hashes remain (secure_delete, WAL truncated).
  CHECK(found_in(bytes, blobs).empty());
  CHECK(bytes.find(subject) == std::string::npos);

  auto vault = paths.open();
  CHECK((*vault->get(keep))->given_name == "Bystander");
  // The identifiers are free again: registering them creates a new subject.
  auto reg = vault->register_person(p);
  REQUIRE(reg);
  CHECK(reg->created);
  CHECK(reg->subject_id != subject);
}

TEST_CASE("vault reports a tampered or moved ciphertext as corrupt", "[privacy][vault]") {
  Paths paths;
  std::string subject, other;
  {
    auto vault = paths.open();
    subject = vault->register_person(jansen())->subject_id;
    Person b;
    b.bsn = "111222333";
    b.given_name = "Bob";
    other = vault->register_person(b)->subject_id;
  }
  auto exec = [&](const char* sql, const std::string& a, const std::string& b) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(paths.vault.c_str(), &db) == SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK);
    sqlite3_bind_text(st, 1, a.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, b.c_str(), -1, SQLITE_TRANSIENT);
    CHECK(sqlite3_step(st) == SQLITE_DONE);
    CHECK(sqlite3_changes(db) == 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
  };
  SECTION("a flipped byte") {
    // Flip one bit of the ciphertext body (after the version byte and the nonce).
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(paths.vault.c_str(), &db) == SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, "SELECT ciphertext FROM fields WHERE subject_id = ?1 AND name = 'family_name'", -1,
                               &st, nullptr) == SQLITE_OK);
    sqlite3_bind_text(st, 1, subject.c_str(), -1, SQLITE_TRANSIENT);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    const auto* data = static_cast<const unsigned char*>(sqlite3_column_blob(st, 0));
    std::vector<unsigned char> blob(data, data + sqlite3_column_bytes(st, 0));
    sqlite3_finalize(st);
    REQUIRE(blob.size() > 13);
    blob[13] ^= 0x01;
    REQUIRE(sqlite3_prepare_v2(db, "UPDATE fields SET ciphertext = ?2 WHERE subject_id = ?1 AND name = 'family_name'",
                               -1, &st, nullptr) == SQLITE_OK);
    sqlite3_bind_text(st, 1, subject.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 2, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
    CHECK(sqlite3_step(st) == SQLITE_DONE);
    CHECK(sqlite3_changes(db) == 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
  }
  SECTION("a ciphertext moved to another subject") {
    exec("UPDATE fields SET ciphertext = (SELECT ciphertext FROM fields WHERE subject_id = ?1 AND name = 'given_name') "
         "WHERE subject_id = ?2 AND name = 'given_name'",
         subject, other);
    std::swap(subject, other);
  }
  SECTION("a ciphertext moved to another field") {
    exec("UPDATE fields SET ciphertext = (SELECT ciphertext FROM fields WHERE subject_id = ?1 AND name = 'city') "
         "WHERE subject_id = ?1 AND name = ?2",
         subject, "email");
  }
  auto vault = paths.open();
  auto got = vault->get(subject);
  REQUIRE_FALSE(got);
  CHECK(got.error().code == core::Code::kDataLoss);
  CHECK(got.error().reason == "vault_corrupt");
}

TEST_CASE("vault serialises concurrent registrations", "[privacy][vault]") {
  Paths paths;
  auto vault = paths.open();
  constexpr int kThreads = 4, kEach = 50;
  std::vector<std::vector<std::string>> ids(kThreads);
  std::vector<int> failures(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        Person p;
        p.record_numbers = {{"urn:thread", std::to_string(t) + "-" + std::to_string(i)}};
        p.given_name = "P" + std::to_string(i);
        auto r = vault->register_person(p);
        if (!r || !r->created)
          ++failures[static_cast<std::size_t>(t)];
        else
          ids[static_cast<std::size_t>(t)].push_back(r->subject_id);
      }
    });
  for (auto& th : threads) th.join();
  std::set<std::string> all;
  for (int t = 0; t < kThreads; ++t) {
    CHECK(failures[static_cast<std::size_t>(t)] == 0);
    all.insert(ids[static_cast<std::size_t>(t)].begin(), ids[static_cast<std::size_t>(t)].end());
  }
  CHECK(all.size() == kThreads * kEach);
  auto listed = vault->subject_ids();
  REQUIRE(listed);
  CHECK(std::is_sorted(listed->begin(), listed->end()));
  CHECK(std::set<std::string>(listed->begin(), listed->end()) == all);
  CHECK(*vault->find_by_record_number({"urn:thread", "3-49"}) != std::nullopt);
}

TEST_CASE("a pseudonym links back to its subject until the subject is erased", "[privacy][vault]") {
  testing::TempDir dir;
  auto kek = privacy::Kek::from_hex(std::string(64, '5'));
  REQUIRE(kek);
  auto vault = privacy::IdentityVault::open(dir.path() / "identity.db", dir.path() / "vault.key", *kek);
  REQUIRE(vault);
  privacy::Person p;
  p.bsn = "123456782";
  p.family_name = "Linked";
  auto r = (*vault)->register_person(p);
  REQUIRE(r);
  const std::string pseudonym(32, 'e');
  auto unlinked = (*vault)->find_by_pseudonym(pseudonym);
  REQUIRE(unlinked);
  CHECK_FALSE(unlinked->has_value());
  REQUIRE((*vault)->link_pseudonym(r->subject_id, pseudonym));
  REQUIRE((*vault)->link_pseudonym(r->subject_id, pseudonym));  // again: harmless
  auto found = (*vault)->find_by_pseudonym(pseudonym);
  REQUIRE(found);
  REQUIRE(found->has_value());
  CHECK(**found == r->subject_id);
  auto no_subject = (*vault)->link_pseudonym("s-unknown", pseudonym);
  REQUIRE_FALSE(no_subject);
  CHECK(no_subject.error().reason == "no_subject");
  REQUIRE((*vault)->erase(r->subject_id));
  auto gone = (*vault)->find_by_pseudonym(pseudonym);
  REQUIRE(gone);
  CHECK_FALSE(gone->has_value());
}

TEST_CASE("vault keeps encrypted documents per subject and erases them with the subject", "[privacy][vault]") {
  Paths paths;
  const std::string doc = R"({"resourceType":"Patient","name":[{"family":"Documentfamilyname"}]})";
  std::string subject;
  {
    auto vault = paths.open();
    auto reg = vault->register_person(jansen());
    REQUIRE(reg);
    subject = reg->subject_id;
    REQUIRE(vault->put_document(subject, "patient", doc));
    auto back = vault->document(subject, "patient");
    REQUIRE(back);
    REQUIRE(*back);
    CHECK(**back == doc);
    auto missing = vault->document(subject, "other");
    REQUIRE(missing);
    CHECK(!*missing);
    CHECK(vault->put_document(subject, "Bad Name", doc).error().reason == "bad_document");
    CHECK(vault->put_document("s-unknown", "patient", doc).error().reason == "no_subject");
    // Replacing keeps one document.
    REQUIRE(vault->put_document(subject, "patient", doc + " "));
    REQUIRE(*vault->document(subject, "patient") == doc + " ");
  }
  {
    // Not in clear in the file, and a ciphertext moved to another name does not decrypt.
    std::ifstream in(paths.vault, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ifstream wal(paths.vault.string() + "-wal", std::ios::binary);
    bytes.append(std::istreambuf_iterator<char>(wal), std::istreambuf_iterator<char>());
    CHECK(bytes.find("Documentfamilyname") == std::string::npos);
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(paths.vault.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "UPDATE documents SET name = 'moved'", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
    auto vault = paths.open();
    CHECK(vault->document(subject, "moved").error().reason == "vault_corrupt");
    REQUIRE(*vault->erase(subject));
    auto gone = vault->document(subject, "moved");
    REQUIRE(gone);
    CHECK(!*gone);
  }
}
