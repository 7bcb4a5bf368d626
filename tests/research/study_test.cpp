// research::parse_study: defaults, the shipped example, strict refusals naming the member; the
// research key file.
#include <catch2/catch.hpp>

#include "telehub/research/research_key.h"
#include "telehub/research/study.h"
#include "test_support.h"

using namespace telehub;

namespace {

std::string refusal(const std::string& json) {
  auto s = research::parse_study(json);
  if (s) return "(accepted)";
  CHECK(s.error().reason == "bad_study");
  return s.error().message;
}

}  // namespace

TEST_CASE("a minimal study takes the documented defaults", "[research][study]") {
  auto s = research::parse_study(R"({"id":"s1","variables":[{"code":"8867-4"}]})");
  REQUIRE(s);
  CHECK(s->consent_scope == "research:s1");
  CHECK(s->k == 5);
  CHECK(s->max_suppression == 0.05);
  CHECK(s->dates == research::DatesMode::kShift);
  CHECK(s->variables[0].aggregation == research::Aggregation::kRaw);
  CHECK(s->conditions.empty());
  CHECK(!s->enrolled_from);
  CHECK(s->quasi_identifiers.age_band_years == 0);
  CHECK(!s->quasi_identifiers.sex);
  CHECK(s->quasi_identifiers.region_digits == 0);
}

TEST_CASE("the shipped example study parses", "[research][study]") {
  auto s = research::load_study(testing::source_dir() / "config" / "studies" / "example-hf.json");
  REQUIRE(s);
  CHECK(s->id == "hf-home-2026");
  CHECK(s->conditions.size() == 2);
  CHECK(s->variables.size() == 3);
  CHECK(s->environment.size() == 3);
  CHECK(s->quasi_identifiers.region_digits == 3);
  // enrolled_to is a date: the end of that day.
  CHECK(*s->enrolled_to == *core::parse_rfc3339("2027-01-01T00:00:00Z"));
  CHECK(*s->enrolled_from == *core::parse_rfc3339("2026-01-01T00:00:00Z"));
}

TEST_CASE("study definitions are parsed strictly, naming the member", "[research][study]") {
  const std::string v = R"("variables":[{"code":"8867-4"}])";
  CHECK(refusal("not json").find("(document): not JSON") == 0);
  CHECK(refusal(R"({"variables":[{"code":"x"}]})") == "id: is required");
  CHECK(refusal(R"({"id":"bad id",)" + v + "}") == "id: must match [A-Za-z0-9._-]{1,64}");
  CHECK(refusal(R"({"id":"s",)" + v + R"(,"colour":1})") == "colour: unknown member");
  CHECK(refusal(R"({"id":"s"})") == "variables: is required");
  CHECK(refusal(R"({"id":"s","variables":[]})") == "variables: must be a non-empty array");
  CHECK(refusal(R"({"id":"s","variables":[{"code":"a"},{"code":"b","aggregation":"weekly"}]})") ==
        "variables[1].aggregation: must be raw, hourly or daily");
  CHECK(refusal(R"({"id":"s","variables":[{"code":"a"},{"code":"a"}]})") == "variables[1].code: names a code already listed");
  CHECK(refusal(R"({"id":"s",)" + v + R"(,"consent_scope":"research:other"})") ==
        "consent_scope: must be \"research\" or \"research:<id>\" of this study");
  CHECK(refusal(R"({"id":"s",)" + v + R"(,"environment":["pm1"]})") ==
        "environment[0]: must be one of pm25, pm10, no2, o3, temperature, humidity");
  CHECK(refusal(R"({"id":"s",)" + v + R"(,"quasi_identifiers":{"region":"pc5"}})") ==
        "quasi_identifiers.region: must be none, pc2, pc3 or pc4");
  CHECK(refusal(R"({"id":"s",)" + v + R"(,"quasi_identifiers":{"birth":true}})") ==
        "quasi_identifiers.birth: unknown member");
  CHECK(refusal(R"({"id":"s",)" + v + R"(,"k":1})") == "k: must be a whole number 2..1000");
  CHECK(refusal(R"({"id":"s",)" + v + R"(,"max_suppression":2})") == "max_suppression: must be a number 0..1");
  CHECK(refusal(R"({"id":"s",)" + v + R"(,"dates":"none"})") == "dates: must be shift or relative");
  CHECK(refusal(R"({"id":"s",)" + v + R"(,"inclusion":{"conditions":[{"system":"x"}]}})") ==
        "inclusion.conditions[0].code: is required");
  CHECK(refusal(R"({"id":"s",)" + v + R"(,"inclusion":{"enrolled_from":"2026-02-30"}})") ==
        "inclusion.enrolled_from: not a calendar date YYYY-MM-DD");
  CHECK(refusal(R"({"id":"s",)" + v + R"(,"inclusion":{"enrolled_from":"2026-03-01","enrolled_to":"2026-01-01"}})") ==
        "inclusion.enrolled_to: must be after enrolled_from");
  auto missing = research::load_study("/nonexistent/study.json");
  REQUIRE(!missing);
  CHECK(missing.error().reason == "no_study");
}

TEST_CASE("the research key file is wrapped under the KEK and gives stable, per-study values", "[research][study]") {
  testing::TempDir tmp;
  auto kek = privacy::Kek::from_hex(std::string(64, 'b'));
  REQUIRE(kek);
  const auto file = tmp.path() / "keys" / "research.key";
  auto a = research::ResearchKey::open_wrapped_key_file(file, *kek);
  REQUIRE(a);
  auto b = research::ResearchKey::open_wrapped_key_file(file, *kek);
  REQUIRE(b);
  const std::string subject(32, 'c');
  CHECK(a->study_pseudonym("s1", subject) == b->study_pseudonym("s1", subject));
  CHECK(a->study_pseudonym("s1", subject) != a->study_pseudonym("s2", subject));
  CHECK(a->study_pseudonym("s1", subject).size() == 32);
  CHECK(a->shift_days("s1", subject) == b->shift_days("s1", subject));
  for (int i = 0; i < 200; ++i) {
    const int shift = a->shift_days("s" + std::to_string(i), subject);
    CHECK(shift != 0);
    CHECK(shift >= -182);
    CHECK(shift <= 182);
  }
  auto other = privacy::Kek::from_hex(std::string(64, 'd'));
  REQUIRE(other);
  auto wrong = research::ResearchKey::open_wrapped_key_file(file, *other);
  REQUIRE(!wrong);
  CHECK(wrong.error().reason == "unwrap_failed");
}
