// Aggregate research queries: statistics per group and period, small-cell suppression and
// complementary suppression (research/include/telehub/research/aggregate.h). The suppression
// is also checked by tests/research/aggregate_checker.mjs, written apart from the C++ code,
// which reads only the published table.
#include <catch2/catch.hpp>

#include <fstream>
#include <random>

#include "telehub/research/aggregate.h"
#include "test_support.h"

using namespace telehub;
using research::AggregateInput;

namespace {

research::AggregateTable must(Result<research::AggregateTable> t) {
  REQUIRE(t);
  return std::move(*t);
}

// Runs the independent checker on a table written as JSON; returns its exit code and output.
testing::CommandResult check_independently(const research::AggregateTable& table, const testing::TempDir& dir,
                                           const std::string& name) {
  const auto file = dir.path() / (name + ".json");
  std::ofstream(file) << research::to_json(table);
  return testing::run_command("node " + std::string(TELEHUB_SOURCE_DIR) + "/tests/research/aggregate_checker.mjs " +
                              file.string() + " 2>&1");
}

}  // namespace

TEST_CASE("aggregate statistics per group and period: counts, mean, min, max and type-7 percentiles", "[research]") {
  std::vector<AggregateInput> rows;
  // Group a, period 2026-03: ten subjects with values 1..10.
  for (int i = 1; i <= 10; ++i) rows.push_back({"a", "2026-03", "s" + std::to_string(i), static_cast<double>(i)});
  // A second reading of one subject: two readings, one subject more counted once.
  rows.push_back({"a", "2026-03", "s1", 10});
  rows.push_back({"a", "2026-03", "s2", std::nan("")});  // ignored
  research::AggregateSpec spec;
  spec.min_subjects = 5;
  auto table = must(research::aggregate(rows, spec));
  REQUIRE(table.groups == std::vector<std::string>{"a"});
  REQUIRE(table.periods == std::vector<std::string>{"2026-03"});
  const auto& c = table.at(0, 0);
  CHECK_FALSE(c.suppressed);
  CHECK(c.subjects == 10);
  CHECK(c.readings == 11);
  CHECK(c.mean == Approx(65.0 / 11));
  CHECK(c.min == 1);
  CHECK(c.max == 10);
  // Sorted 1,2,...,9,10,10: p50 = 6, p10 = 2, p90 = 10 (h = 10 * p / 100).
  REQUIRE(c.percentiles.size() == 5);
  CHECK(c.percentiles[0] == Approx(2));
  CHECK(c.percentiles[2] == Approx(6));
  CHECK(c.percentiles[4] == Approx(10));
  // The totals repeat the single cell.
  CHECK(table.at(1, 1).subjects == 10);
  CHECK(table.at(0, 1).readings == 11);

  // Periods.
  const auto t = core::from_unix_millis(1'767'225'600'000);  // 2026-01-01T00:00Z, a Thursday
  CHECK(research::period_key(t, research::Period::kDay) == "2026-01-01");
  CHECK(research::period_key(t, research::Period::kMonth) == "2026-01");
  CHECK(research::period_key(t, research::Period::kYear) == "2026");
  CHECK(research::period_key(t, research::Period::kWeek) == "2026-W01");
  CHECK(research::period_key(t - std::chrono::days(4), research::Period::kWeek) == "2025-W52");  // Sunday 2025-12-28
  CHECK(research::period_key(core::from_unix_millis(1'609'459'200'000), research::Period::kWeek) == "2020-W53");  // 2021-01-01
  CHECK(research::period_key(t, research::Period::kAll).empty());
  CHECK_FALSE(research::parse_period("fortnight"));
  CHECK(research::parse_period("week").value() == research::Period::kWeek);

  // Bad specs.
  spec.min_subjects = 1;
  CHECK_FALSE(research::aggregate(rows, spec));
  spec.min_subjects = 5;
  spec.percentiles = {101};
  CHECK_FALSE(research::aggregate(rows, spec));
}

TEST_CASE("a small cell is suppressed with a partner in its row and column, so totals do not give it away", "[research]") {
  // Groups x (months): subjects per cell
  //            m1   m2   m3
  //   a        20   20   20
  //   b         3   20   20     (b,m1) small
  //   c        20   20   20
  std::vector<AggregateInput> rows;
  int next = 0;
  auto add = [&](const std::string& g, const std::string& p, int n) {
    for (int i = 0; i < n; ++i) rows.push_back({g, p, "s" + std::to_string(next++), 50.0 + i});
  };
  for (const char* g : {"a", "b", "c"})
    for (const char* p : {"m1", "m2", "m3"}) add(g, p, std::string(g) == "b" && std::string(p) == "m1" ? 3 : 20);
  auto table = must(research::aggregate(rows, {}));
  CHECK(table.at(1, 0).suppressed);
  CHECK(table.at(1, 0).reason == "small");
  CHECK(table.at(1, 0).subjects == 0);  // no number published
  // Row b and column m1 each hold at least two suppressed cells.
  int in_row = 0, in_column = 0;
  for (std::size_t c = 0; c <= 3; ++c) in_row += table.at(1, c).suppressed;
  for (std::size_t r = 0; r <= 3; ++r) in_column += table.at(r, 0).suppressed;
  CHECK(in_row >= 2);
  CHECK(in_column >= 2);
  // Every line: none or at least two suppressed.
  for (std::size_t r = 0; r <= 3; ++r) {
    int n = 0;
    for (std::size_t c = 0; c <= 3; ++c) n += table.at(r, c).suppressed;
    CHECK((n == 0 || n >= 2));
  }
  for (std::size_t c = 0; c <= 3; ++c) {
    int n = 0;
    for (std::size_t r = 0; r <= 3; ++r) n += table.at(r, c).suppressed;
    CHECK((n == 0 || n >= 2));
  }
  // The grand total is shown.
  CHECK_FALSE(table.at(3, 3).suppressed);
  CHECK(table.at(3, 3).subjects == 8 * 20 + 3);

  testing::TempDir dir;
  auto checked = check_independently(table, dir, "small");
  INFO(checked.output);
  CHECK(checked.exit_code == 0);
  // CSV: a suppressed cell has "suppressed" in every numeric column.
  const auto csv = research::to_csv(table);
  CHECK(csv.find("b,m1,suppressed,suppressed,suppressed") != std::string::npos);
}

TEST_CASE("random tables always leave every line with no or at least two suppressed cells", "[research]") {
  std::mt19937_64 rng(20261128);
  testing::TempDir dir;
  for (int round = 0; round < 40; ++round) {
    std::vector<AggregateInput> rows;
    const int groups = 1 + static_cast<int>(rng() % 6), periods = 1 + static_cast<int>(rng() % 6);
    int subject = 0;
    for (int g = 0; g < groups; ++g)
      for (int p = 0; p < periods; ++p) {
        const int n = static_cast<int>(rng() % 14);  // 0..13 subjects: many small cells
        for (int i = 0; i < n; ++i)
          rows.push_back({"g" + std::to_string(g), "p" + std::to_string(p), "s" + std::to_string(subject++),
                          static_cast<double>(rng() % 100)});
      }
    research::AggregateSpec spec;
    spec.min_subjects = 5 + static_cast<std::int64_t>(rng() % 7);
    auto table = must(research::aggregate(rows, spec));
    const std::size_t G = table.groups.size(), P = table.periods.size();
    for (std::size_t r = 0; r <= G; ++r)
      for (std::size_t c = 0; c <= P; ++c) {
        const auto& cell = table.at(r, c);
        if (!cell.suppressed) CHECK((cell.subjects == 0 || cell.subjects >= spec.min_subjects));
      }
    auto checked = check_independently(table, dir, "random" + std::to_string(round));
    INFO("round " << round << ": " << checked.output);
    REQUIRE(checked.exit_code == 0);
  }
}

TEST_CASE("the aggregate checker catches a table a careless exporter would publish", "[research]") {
  // One small cell suppressed alone (no complementary suppression): its row total minus the
  // other cells gives it away. The checker must say so.
  const std::string leaky = R"({"min_subjects":5,"percentiles":[50],"groups":["a","b"],"periods":["m1","m2"],"cells":[
    {"group":"a","period":"m1","subjects":10,"readings":10,"mean":1,"min":1,"max":1,"p50":1},
    {"group":"a","period":"m2","subjects":10,"readings":10,"mean":1,"min":1,"max":1,"p50":1},
    {"group":"a","period":"*","subjects":20,"readings":20,"mean":1,"min":1,"max":1,"p50":1},
    {"group":"b","period":"m1","suppressed":true,"reason":"small"},
    {"group":"b","period":"m2","subjects":10,"readings":10,"mean":1,"min":1,"max":1,"p50":1},
    {"group":"b","period":"*","subjects":13,"readings":13,"mean":1,"min":1,"max":1,"p50":1},
    {"group":"*","period":"m1","subjects":13,"readings":13,"mean":1,"min":1,"max":1,"p50":1},
    {"group":"*","period":"m2","subjects":20,"readings":20,"mean":1,"min":1,"max":1,"p50":1},
    {"group":"*","period":"*","subjects":33,"readings":33,"mean":1,"min":1,"max":1,"p50":1}]})";
  testing::TempDir dir;
  const auto file = dir.path() / "leaky.json";
  std::ofstream(file) << leaky;
  auto checked = testing::run_command("node " + std::string(TELEHUB_SOURCE_DIR) + "/tests/research/aggregate_checker.mjs " +
                                      file.string() + " 2>&1");
  INFO(checked.output);
  CHECK(checked.exit_code != 0);
  CHECK(checked.output.find("b") != std::string::npos);
  // A shown cell below the threshold is caught too.
  std::string small = leaky;
  small.replace(small.find(R"({"group":"b","period":"m1","suppressed":true,"reason":"small"})"),
                std::string(R"({"group":"b","period":"m1","suppressed":true,"reason":"small"})").size(),
                R"({"group":"b","period":"m1","subjects":3,"readings":3,"mean":1,"min":1,"max":1,"p50":1})");
  std::ofstream(file) << small;
  checked = testing::run_command("node " + std::string(TELEHUB_SOURCE_DIR) + "/tests/research/aggregate_checker.mjs " +
                                 file.string() + " 2>&1");
  INFO(checked.output);
  CHECK(checked.exit_code != 0);
}
