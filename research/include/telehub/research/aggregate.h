// Aggregate research queries with small-cell suppression (docs/research.md, "Aggregate
// queries"): counts, mean and percentiles of one variable per group and period, as a table
// whose cells, row totals, column totals and grand total are computed from the readings
// themselves (never from other cells), then suppressed so that no cell describes fewer than
// `min_subjects` people and no suppressed cell can be derived from the published numbers.
//
// The table: rows are groups (a combination of generalised quasi-identifiers, e.g.
// "female|60-69|35"), columns are periods ("2026-03"), plus a total row, a total column and the
// grand total.
//
// Suppression:
//   1. primary: a cell (margins included) with 1..min_subjects-1 subjects is suppressed. A cell
//      with no subject shows 0 and no statistics;
//   2. complementary: the counts (subjects, readings) and sums behind the means are additive
//      along a row or a column with its total, so a line (a row or a column, its total included)
//      with exactly one suppressed cell would give it away by subtraction. While such a line
//      exists, the smallest other non-empty cell of that line (fewest subjects, then first in
//      order; a total only when nothing else is left) is suppressed too. Suppression only
//      grows, so this ends; then every line holds no suppressed cell or at least two.
// A suppressed cell carries only its place and the reason ("small" or "complementary"): no
// number at all.
//
// Statistics of a shown cell: subjects (distinct), readings, mean, minimum, maximum and the
// percentiles asked (linear interpolation between closest ranks, R type 7 / numpy default).
//
// Error policy: Result, never throws; invalid_argument/bad_aggregate for bad specs.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "telehub/core/error.h"
#include "telehub/core/time.h"

namespace telehub::research {

// One value of the queried variable.
struct AggregateInput {
  std::string group;    // the row: generalised quasi-identifiers joined with '|' ("" = one row)
  std::string period;   // the column (period_key()); "" = one column
  std::string subject;  // the study pseudonym (counts distinct subjects)
  double value = 0;     // non-finite values are ignored
};

enum class Period { kAll, kDay, kWeek, kMonth, kYear };

// "all" | "day" | "week" | "month" | "year"; invalid_argument/bad_aggregate otherwise.
[[nodiscard]] Result<Period> parse_period(std::string_view text);
// The column of a (shifted) time: "" (kAll), "2026-03-01", ISO week "2026-W09", "2026-03", "2026".
std::string period_key(core::TimePoint t, Period p);

struct AggregateSpec {
  // Threshold of distinct subjects for a cell to be shown. REQUIRES >= 2. Default: 5.
  std::int64_t min_subjects = 5;
  // Percentiles to show, each in [0, 100]. Default: 10, 25, 50 (median), 75, 90.
  std::vector<double> percentiles = {10, 25, 50, 75, 90};
};

struct Cell {
  std::string group;   // "*" in the total row
  std::string period;  // "*" in the total column
  bool suppressed = false;
  std::string reason;  // "small" | "complementary" when suppressed
  // Only when not suppressed:
  std::int64_t subjects = 0;
  std::int64_t readings = 0;
  double mean = 0;
  double min = 0;
  double max = 0;
  std::vector<double> percentiles;  // in the order of AggregateSpec::percentiles
};

struct AggregateTable {
  std::vector<std::string> groups;   // sorted
  std::vector<std::string> periods;  // sorted
  std::int64_t min_subjects = 0;
  std::vector<double> percentiles;
  // Row-major: for each group then the total row ("*"), each period then the total column
  // ("*"): (groups.size() + 1) * (periods.size() + 1) cells.
  std::vector<Cell> cells;
  const Cell& at(std::size_t row, std::size_t column) const { return cells[row * (periods.size() + 1) + column]; }
};

// Builds and suppresses the table. Fails with bad_aggregate when min_subjects < 2 or a
// percentile is outside [0, 100].
[[nodiscard]] Result<AggregateTable> aggregate(std::span<const AggregateInput> rows, const AggregateSpec& spec);

// The table as JSON: {"min_subjects":..,"percentiles":[..],"groups":[..],"periods":[..],
// "cells":[{"group","period","suppressed":true,"reason"} | {"group","period","subjects",
// "readings","mean","min","max","p10",...}]}.
std::string to_json(const AggregateTable& table);
// The table as CSV: group,period,subjects,readings,mean,min,max,p<..>... with "suppressed" in
// every numeric column of a suppressed cell.
std::string to_csv(const AggregateTable& table);

}  // namespace telehub::research
