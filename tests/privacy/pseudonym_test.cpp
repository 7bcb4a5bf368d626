#include <catch2/catch.hpp>

#include <sys/stat.h>

#include "telehub/privacy/pseudonym.h"
#include "test_support.h"

using namespace telehub;

TEST_CASE("subject pseudonyms are stable, keyed and 32 hex chars", "[privacy]") {
  core::Bytes k1(32, 1), k2(32, 2);
  auto p1 = privacy::Pseudonymiser::from_key(k1);
  auto p2 = privacy::Pseudonymiser::from_key(k2);
  REQUIRE(p1);
  REQUIRE(p2);
  auto a = (*p1)->subject("patient-1");
  CHECK(a.str().size() == 32);
  CHECK(a == (*p1)->subject("patient-1"));
  CHECK(a != (*p1)->subject("patient-2"));
  CHECK(a != (*p2)->subject("patient-1"));
  CHECK(a.str().find("patient") == std::string::npos);
  REQUIRE(privacy::SubjectPseudonym::parse(a.str()));
  CHECK(*privacy::SubjectPseudonym::parse(a.str()) == a);
  CHECK_FALSE(privacy::SubjectPseudonym::parse("patient-1"));
  CHECK_FALSE(privacy::SubjectPseudonym::parse(std::string(32, 'G')));
  CHECK_FALSE(privacy::Pseudonymiser::from_key(core::Bytes(16, 0)));
}

TEST_CASE("pseudonym key file is created once with mode 0600 and reused", "[privacy]") {
  testing::TempDir dir;
  auto path = dir.path() / "keys" / "pseudonym.key";
  auto first = privacy::Pseudonymiser::open_key_file(path);
  REQUIRE(first);
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto second = privacy::Pseudonymiser::open_key_file(path);
  REQUIRE(second);
  CHECK((*first)->subject("x") == (*second)->subject("x"));

  std::filesystem::resize_file(path, 5);
  auto broken = privacy::Pseudonymiser::open_key_file(path);
  REQUIRE_FALSE(broken);
  CHECK(broken.error().reason == "bad_key_file");
}

TEST_CASE("binding a reading replaces its subject with the pseudonym", "[privacy]") {
  auto p = privacy::Pseudonymiser::from_key(core::Bytes(32, 7));
  REQUIRE(p);
  core::Reading r;
  r.subject = "BSN 123456782";
  r.code = "8867-4";
  auto pr = privacy::PseudonymousReading::bind(r, (*p)->subject("s1"));
  CHECK(pr.reading().subject == pr.subject().str());
  CHECK(pr.reading().code == "8867-4");
}
