// privacy::CareRelations (SQLite).
#include <catch2/catch.hpp>

#include "telehub/privacy/care_relations.h"
#include "test_support.h"

using namespace telehub;

namespace {

const std::string kAnna = "0123456789abcdef0123456789abcdef";
const std::string kBert = "fedcba9876543210fedcba9876543210";
const std::string kCarl = "00112233445566778899aabbccddeeff";

core::TimePoint t(std::string_view text) { return *core::parse_rfc3339(text); }

std::unique_ptr<privacy::CareRelations> open_store(const testing::TempDir& dir) {
  auto store = privacy::CareRelations::open(dir.path() / "care.db");
  REQUIRE(store);
  return std::move(*store);
}

bool active(privacy::CareRelations& s, const std::string& subject, std::string_view org, std::string_view at) {
  auto r = s.active(subject, org, t(at));
  REQUIRE(r);
  return *r;
}

}  // namespace

TEST_CASE("a care relation is active from its start, inclusive, until its end, exclusive", "[privacy][care]") {
  testing::TempDir dir;
  auto s = open_store(dir);
  auto id = s->add(kAnna, "hospital-a", t("2026-01-01T00:00:00Z"), "cli");
  REQUIRE(id);
  CHECK(*id > 0);
  CHECK_FALSE(active(*s, kAnna, "hospital-a", "2025-12-31T23:59:59.999Z"));
  CHECK(active(*s, kAnna, "hospital-a", "2026-01-01T00:00:00Z"));
  CHECK(active(*s, kAnna, "hospital-a", "2030-01-01T00:00:00Z"));
  // Another organisation or subject has no relation.
  CHECK_FALSE(active(*s, kAnna, "hospital-b", "2026-06-01T00:00:00Z"));
  CHECK_FALSE(active(*s, kBert, "hospital-a", "2026-06-01T00:00:00Z"));

  auto ended = s->end(kAnna, "hospital-a", t("2026-03-01T00:00:00Z"));
  REQUIRE(ended);
  CHECK(*ended == 1);
  CHECK(active(*s, kAnna, "hospital-a", "2026-02-28T23:59:59.999Z"));
  CHECK_FALSE(active(*s, kAnna, "hospital-a", "2026-03-01T00:00:00Z"));
  CHECK_FALSE(active(*s, kAnna, "hospital-a", "2027-01-01T00:00:00Z"));

  // Ending again at a later time changes nothing; at an earlier time it moves the end back.
  CHECK(s->end(kAnna, "hospital-a", t("2026-04-01T00:00:00Z")).value() == 0);
  CHECK(s->end(kAnna, "hospital-a", t("2026-02-01T00:00:00Z")).value() == 1);
  CHECK_FALSE(active(*s, kAnna, "hospital-a", "2026-02-15T00:00:00Z"));
  // Nothing to end for an unknown pair.
  CHECK(s->end(kBert, "hospital-a", t("2026-02-01T00:00:00Z")).value() == 0);
}

TEST_CASE("adding a care relation while one is active returns the existing one", "[privacy][care]") {
  testing::TempDir dir;
  auto s = open_store(dir);
  auto first = s->add(kAnna, "hospital-a", t("2026-01-01T00:00:00Z"), "cli");
  REQUIRE(first);
  auto again = s->add(kAnna, "hospital-a", t("2026-02-01T00:00:00Z"), "fhir:client-x");
  REQUIRE(again);
  CHECK(*again == *first);
  auto list = s->of_subject(kAnna);
  REQUIRE(list);
  REQUIRE(list->size() == 1);
  CHECK((*list)[0].source == "cli");
  CHECK((*list)[0].from == t("2026-01-01T00:00:00Z"));
  CHECK_FALSE((*list)[0].until);

  // Before the open relation starts nothing is active, so that adds a separate (earlier) one.
  auto earlier = s->add(kAnna, "hospital-a", t("2025-06-01T00:00:00Z"), "cli");
  REQUIRE(earlier);
  CHECK(*earlier != *first);
  // The same subject with another organisation is its own relation.
  auto other = s->add(kAnna, "hospital-b", t("2026-02-01T00:00:00Z"), "cli");
  REQUIRE(other);
  CHECK(*other != *first);
}

TEST_CASE("a new care episode after an ended one is a new relation", "[privacy][care]") {
  testing::TempDir dir;
  auto s = open_store(dir);
  auto first = s->add(kAnna, "ura:12345678", t("2026-01-01T00:00:00Z"), "cli");
  REQUIRE(first);
  REQUIRE(s->end(kAnna, "ura:12345678", t("2026-02-01T00:00:00Z")).value() == 1);
  // Exactly at the end the first one is no longer active, so this starts a second episode.
  auto second = s->add(kAnna, "ura:12345678", t("2026-02-01T00:00:00Z"), "cli");
  REQUIRE(second);
  CHECK(*second != *first);
  CHECK(active(*s, kAnna, "ura:12345678", "2026-01-15T00:00:00Z"));
  CHECK(active(*s, kAnna, "ura:12345678", "2026-02-01T00:00:00Z"));

  auto list = s->of_subject(kAnna);
  REQUIRE(list);
  REQUIRE(list->size() == 2);
  CHECK((*list)[0].id == *first);
  CHECK((*list)[0].until == t("2026-02-01T00:00:00Z"));
  CHECK((*list)[1].id == *second);
  CHECK_FALSE((*list)[1].until);
  CHECK((*list)[1].subject == kAnna);
  CHECK((*list)[1].organisation == "ura:12345678");

  // end() closes only the open one.
  CHECK(s->end(kAnna, "ura:12345678", t("2026-03-01T00:00:00Z")).value() == 1);
}

TEST_CASE("subjects_of lists the subjects in an active care relation, sorted", "[privacy][care]") {
  testing::TempDir dir;
  auto s = open_store(dir);
  REQUIRE(s->add(kBert, "hospital-a", t("2026-01-01T00:00:00Z"), "cli"));
  REQUIRE(s->add(kAnna, "hospital-a", t("2026-01-01T00:00:00Z"), "cli"));
  REQUIRE(s->add(kCarl, "hospital-a", t("2026-05-01T00:00:00Z"), "cli"));
  REQUIRE(s->add(kCarl, "hospital-b", t("2026-01-01T00:00:00Z"), "cli"));
  REQUIRE(s->end(kBert, "hospital-a", t("2026-03-01T00:00:00Z")));

  auto feb = s->subjects_of("hospital-a", t("2026-02-01T00:00:00Z"));
  REQUIRE(feb);
  CHECK(*feb == std::vector<std::string>{kAnna, kBert});
  auto jun = s->subjects_of("hospital-a", t("2026-06-01T00:00:00Z"));
  REQUIRE(jun);
  CHECK(*jun == std::vector<std::string>{kCarl, kAnna});  // kCarl "00..." sorts first
  auto b = s->subjects_of("hospital-b", t("2026-06-01T00:00:00Z"));
  REQUIRE(b);
  CHECK(*b == std::vector<std::string>{kCarl});
  auto none = s->subjects_of("hospital-c", t("2026-06-01T00:00:00Z"));
  REQUIRE(none);
  CHECK(none->empty());
}

TEST_CASE("erase_subject deletes every care relation of a subject", "[privacy][care]") {
  testing::TempDir dir;
  auto s = open_store(dir);
  REQUIRE(s->add(kAnna, "hospital-a", t("2026-01-01T00:00:00Z"), "cli"));
  REQUIRE(s->end(kAnna, "hospital-a", t("2026-02-01T00:00:00Z")));
  REQUIRE(s->add(kAnna, "hospital-a", t("2026-03-01T00:00:00Z"), "cli"));
  REQUIRE(s->add(kAnna, "hospital-b", t("2026-03-01T00:00:00Z"), "cli"));
  REQUIRE(s->add(kBert, "hospital-a", t("2026-03-01T00:00:00Z"), "cli"));

  auto erased = s->erase_subject(kAnna);
  REQUIRE(erased);
  CHECK(*erased == 3);
  CHECK(s->of_subject(kAnna).value().empty());
  CHECK_FALSE(active(*s, kAnna, "hospital-a", "2026-04-01T00:00:00Z"));
  CHECK(s->of_subject(kBert).value().size() == 1);
  CHECK(s->erase_subject(kAnna).value() == 0);
}

TEST_CASE("care relations refuse a bad subject or organisation", "[privacy][care]") {
  testing::TempDir dir;
  auto s = open_store(dir);
  const auto when = t("2026-01-01T00:00:00Z");
  const auto refused = [](const auto& r) {
    REQUIRE_FALSE(r);
    CHECK(r.error().code == core::Code::kInvalidArgument);
    CHECK(r.error().reason == "bad_care_relation");
  };
  for (const std::string& subject :
       std::vector<std::string>{"", "anna", "0123456789ABCDEF0123456789ABCDEF", kAnna + "0"}) {
    refused(s->add(subject, "hospital-a", when, "cli"));
    refused(s->end(subject, "hospital-a", when));
    refused(s->active(subject, "hospital-a", when));
    refused(s->of_subject(subject));
    refused(s->erase_subject(subject));
  }
  for (const std::string& org : std::vector<std::string>{"", "St Elsewhere", "a/b", "org'; DROP TABLE care_relation; --",
                                                        std::string(129, 'a')}) {
    CHECK_FALSE(privacy::valid_organisation(org));
    refused(s->add(kAnna, org, when, "cli"));
    refused(s->end(kAnna, org, when));
    refused(s->active(kAnna, org, when));
    refused(s->subjects_of(org, when));
  }
  CHECK(privacy::valid_organisation(std::string(128, 'a')));
  CHECK(privacy::valid_organisation("ura:12345678"));
  CHECK(privacy::valid_organisation("Hospital_A.dept-2"));
  CHECK(s->of_subject(kAnna).value().empty());
}

TEST_CASE("a reopened care relations store keeps its relations", "[privacy][care]") {
  testing::TempDir dir;
  std::int64_t id = 0;
  {
    auto s = open_store(dir);
    auto added = s->add(kAnna, "hospital-a", t("2026-01-01T00:00:00Z"), "fhir:client-x");
    REQUIRE(added);
    id = *added;
    REQUIRE(s->end(kAnna, "hospital-a", t("2026-02-01T00:00:00Z")));
    REQUIRE(s->add(kAnna, "hospital-a", t("2026-03-01T00:00:00Z"), "cli"));
  }
  auto s = open_store(dir);
  auto list = s->of_subject(kAnna);
  REQUIRE(list);
  REQUIRE(list->size() == 2);
  CHECK((*list)[0].id == id);
  CHECK((*list)[0].source == "fhir:client-x");
  CHECK((*list)[0].until == t("2026-02-01T00:00:00Z"));
  CHECK(active(*s, kAnna, "hospital-a", "2026-03-15T00:00:00Z"));
  CHECK_FALSE(active(*s, kAnna, "hospital-a", "2026-02-15T00:00:00Z"));
  // The open episode is found again: adding returns it.
  CHECK(s->add(kAnna, "hospital-a", t("2026-04-01T00:00:00Z"), "cli").value() == (*list)[1].id);
}
