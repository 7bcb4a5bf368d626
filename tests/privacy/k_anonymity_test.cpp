// privacy::k_anonymise and the standard ladders (age band, region, sex).
#include <catch2/catch.hpp>

#include <map>

#include "telehub/privacy/k_anonymity.h"

using namespace telehub;
using privacy::Ladder;

namespace {

std::map<std::vector<std::string>, std::size_t> class_sizes(const privacy::KAnonymityResult& r) {
  std::map<std::vector<std::string>, std::size_t> sizes;
  for (std::size_t i = 0; i < r.keys.size(); ++i)
    if (!r.suppressed[i]) ++sizes[r.keys[i]];
  return sizes;
}

}  // namespace

TEST_CASE("the standard ladders generalise step by step up to star", "[privacy][k_anonymity]") {
  const Ladder age = privacy::age_ladder(10);
  REQUIRE(age.levels == 5);  // 10, 20, 40, 80 years, *
  CHECK(age.generalise("47", 0) == "40-49");
  CHECK(age.generalise("47", 1) == "40-59");
  CHECK(age.generalise("47", 2) == "40-79");
  CHECK(age.generalise("47", 3) == "0-79");
  CHECK(age.generalise("47", 4) == "*");
  CHECK(age.generalise("", 0) == "*");
  CHECK(age.describe(1) == "20 years");
  CHECK(age.describe(4) == "*");

  const Ladder region = privacy::region_ladder(3);
  REQUIRE(region.levels == 4);  // pc3, pc2, pc1, *
  CHECK(region.generalise("1234", 0) == "123");
  CHECK(region.generalise("1234", 1) == "12");
  CHECK(region.generalise("1234", 2) == "1");
  CHECK(region.generalise("1234", 3) == "*");
  CHECK(region.generalise("", 0) == "*");
  CHECK(region.describe(0) == "pc3");

  const Ladder sex = privacy::sex_ladder();
  CHECK(sex.generalise("female", 0) == "female");
  CHECK(sex.generalise("", 0) == "unknown");
  CHECK(sex.generalise("female", 1) == "*");
}

TEST_CASE("k_anonymise keeps every class at k or more, suppressing within the budget", "[privacy][k_anonymity]") {
  const std::vector<Ladder> ladders{privacy::age_ladder(10), privacy::sex_ladder(), privacy::region_ladder(4)};
  std::vector<std::vector<std::string>> records;
  // 20 people aged 40-49, female, area 1011..1015; one outlier aged 93 in 9999.
  for (int i = 0; i < 20; ++i) records.push_back({std::to_string(40 + i % 10), "female", "101" + std::to_string(1 + i % 5)});
  records.push_back({"93", "male", "9999"});

  SECTION("k = 5 with 5 % suppression: the outlier is suppressed, regions generalised until classes hold 5") {
    auto r = privacy::k_anonymise(records, ladders, {5, 0.05});
    REQUIRE(r);
    CHECK(r->suppressed_count == 1);
    CHECK(r->suppressed.back());
    for (const auto& [key, size] : class_sizes(*r)) CHECK(size >= 5);
    std::size_t kept = 0;
    for (const auto& c : r->classes) {
      CHECK(c.size >= 5);
      kept += c.size;
    }
    CHECK(kept == 20);
  }
  SECTION("k = 11 holds too") {
    auto r = privacy::k_anonymise(records, ladders, {11, 0.05});
    REQUIRE(r);
    for (const auto& [key, size] : class_sizes(*r)) CHECK(size >= 11);
    CHECK(r->suppressed_count <= 1);
  }
  SECTION("no suppression allowed: generalised until the outlier fits") {
    auto r = privacy::k_anonymise(records, ladders, {5, 0.0});
    REQUIRE(r);
    CHECK(r->suppressed_count == 0);
    for (const auto& [key, size] : class_sizes(*r)) CHECK(size >= 5);
  }
  SECTION("fewer records than k: every record suppressed at the top of every ladder") {
    std::vector<std::vector<std::string>> few(records.begin(), records.begin() + 3);
    auto r = privacy::k_anonymise(few, ladders, {5, 0.05});
    REQUIRE(r);
    CHECK(r->suppressed_count == 3);
    CHECK(r->classes.empty());
    CHECK(r->levels == std::vector<int>{4, 1, 4});
  }
}

TEST_CASE("k_anonymise generalises the quasi-identifier with the most distinct values first", "[privacy][k_anonymity]") {
  const std::vector<Ladder> ladders{privacy::sex_ladder(), privacy::region_ladder(4)};
  std::vector<std::vector<std::string>> records;
  // Sex splits into 2, region into 10 distinct PC4 sharing the prefix 12: region goes first.
  for (int i = 0; i < 20; ++i) records.push_back({i % 2 ? "male" : "female", "12" + std::to_string(10 + i % 10)});
  auto r = privacy::k_anonymise(records, ladders, {5, 0.0});
  REQUIRE(r);
  CHECK(r->levels[0] == 0);  // sex kept
  CHECK(r->levels[1] == 1);  // pc4 -> pc3: then two classes of 10
  for (const auto& [key, size] : class_sizes(*r)) CHECK(size >= 5);
}

TEST_CASE("k_anonymise refuses bad arguments", "[privacy][k_anonymity]") {
  const std::vector<Ladder> ladders{privacy::sex_ladder()};
  CHECK(privacy::k_anonymise({{"male", "x"}}, ladders, {5, 0.05}).error().reason == "bad_k_anonymity");
  CHECK(!privacy::k_anonymise({{"male"}}, ladders, {0, 0.05}));
  CHECK(!privacy::k_anonymise({{"male"}}, ladders, {5, 1.5}));
  auto none = privacy::k_anonymise({}, ladders, {5, 0.05});
  REQUIRE(none);
  CHECK(none->classes.empty());
}
