// Aggregate queries with small-cell and complementary suppression (aggregate.h).
#include "telehub/research/aggregate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <set>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace telehub::research {

namespace {

core::Error bad(std::string message) { return core::make_error(core::Code::kInvalidArgument, "bad_aggregate", std::move(message)); }

// Linear interpolation between closest ranks (R type 7): for p in [0, 100] over sorted values.
double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.size() == 1) return sorted.front();
  const double h = (static_cast<double>(sorted.size()) - 1) * p / 100;
  const auto lo = static_cast<std::size_t>(std::floor(h));
  const auto hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (h - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

struct Accumulator {
  std::set<std::string> subjects;
  std::vector<double> values;
};

std::string two(unsigned v) {
  char b[8];
  std::snprintf(b, sizeof b, "%02u", v);
  return b;
}

// A number for JSON/CSV: finite, shortest round-trip text.
std::string number(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.10g", v);
  return b;
}

std::string percentile_name(double p) {
  std::string s = number(p);
  std::replace(s.begin(), s.end(), '.', '_');
  return "p" + s;
}

}  // namespace

Result<Period> parse_period(std::string_view text) {
  if (text == "all") return Period::kAll;
  if (text == "day") return Period::kDay;
  if (text == "week") return Period::kWeek;
  if (text == "month") return Period::kMonth;
  if (text == "year") return Period::kYear;
  return tl::unexpected(bad("period must be all, day, week, month or year"));
}

std::string period_key(core::TimePoint t, Period p) {
  using namespace std::chrono;
  const auto day = floor<days>(t);
  const year_month_day ymd{day};
  const std::string y = std::to_string(static_cast<int>(ymd.year()));
  switch (p) {
    case Period::kAll: return "";
    case Period::kYear: return y;
    case Period::kMonth: return y + "-" + two(static_cast<unsigned>(ymd.month()));
    case Period::kDay: return y + "-" + two(static_cast<unsigned>(ymd.month())) + "-" + two(static_cast<unsigned>(ymd.day()));
    case Period::kWeek: {
      // ISO 8601: the week belongs to the year of its Thursday.
      const unsigned iso_weekday = weekday{day}.iso_encoding();  // Monday 1 .. Sunday 7
      const sys_days thursday = day - days(iso_weekday - 1) + days(3);
      const year_month_day th{thursday};
      const sys_days jan1 = sys_days{th.year() / January / 1};
      const auto week = (thursday - jan1).count() / 7 + 1;
      return std::to_string(static_cast<int>(th.year())) + "-W" + two(static_cast<unsigned>(week));
    }
  }
  return "";
}

Result<AggregateTable> aggregate(std::span<const AggregateInput> rows, const AggregateSpec& spec) {
  if (spec.min_subjects < 2) return tl::unexpected(bad("min_subjects must be at least 2"));
  for (double p : spec.percentiles)
    if (!(p >= 0 && p <= 100)) return tl::unexpected(bad("percentiles must be in 0..100"));

  AggregateTable table;
  table.min_subjects = spec.min_subjects;
  table.percentiles = spec.percentiles;
  std::set<std::string> groups, periods;
  for (const auto& r : rows) {
    if (!std::isfinite(r.value)) continue;
    groups.insert(r.group);
    periods.insert(r.period);
  }
  table.groups.assign(groups.begin(), groups.end());
  table.periods.assign(periods.begin(), periods.end());
  const std::size_t G = table.groups.size(), P = table.periods.size();
  const std::size_t width = P + 1;
  std::vector<Accumulator> acc((G + 1) * width);
  auto index_of = [](const std::vector<std::string>& v, const std::string& s) {
    return static_cast<std::size_t>(std::lower_bound(v.begin(), v.end(), s) - v.begin());
  };
  for (const auto& r : rows) {
    if (!std::isfinite(r.value)) continue;
    const std::size_t g = index_of(table.groups, r.group), p = index_of(table.periods, r.period);
    for (std::size_t row : {g, G})
      for (std::size_t col : {p, P}) {
        auto& a = acc[row * width + col];
        a.subjects.insert(r.subject);
        a.values.push_back(r.value);
      }
  }

  table.cells.resize(acc.size());
  for (std::size_t row = 0; row <= G; ++row)
    for (std::size_t col = 0; col <= P; ++col) {
      auto& c = table.cells[row * width + col];
      auto& a = acc[row * width + col];
      c.group = row == G ? "*" : table.groups[row];
      c.period = col == P ? "*" : table.periods[col];
      c.subjects = static_cast<std::int64_t>(a.subjects.size());
      c.readings = static_cast<std::int64_t>(a.values.size());
      if (c.subjects > 0 && c.subjects < spec.min_subjects) {
        c.suppressed = true;
        c.reason = "small";
      }
    }

  // Complementary suppression over every line (each row and each column, totals included).
  auto line = [&](bool is_row, std::size_t k) {
    std::vector<std::size_t> cells;
    if (is_row) for (std::size_t col = 0; col <= P; ++col) cells.push_back(k * width + col);
    else for (std::size_t row = 0; row <= G; ++row) cells.push_back(row * width + k);
    return cells;  // the last one is the line's total
  };
  for (bool changed = true; changed;) {
    changed = false;
    for (int pass = 0; pass < 2; ++pass) {
      const bool is_row = pass == 0;
      for (std::size_t k = 0; k <= (is_row ? G : P); ++k) {
        const auto cells = line(is_row, k);
        std::size_t suppressed = 0;
        for (auto i : cells) suppressed += table.cells[i].suppressed;
        if (suppressed != 1) continue;
        // The partner: a non-empty non-total cell with the fewest subjects, else an empty one,
        // else the total.
        std::optional<std::size_t> pick;
        for (int round = 0; round < 3 && !pick; ++round) {
          for (std::size_t n = 0; n < cells.size(); ++n) {
            const auto i = cells[n];
            const auto& c = table.cells[i];
            if (c.suppressed) continue;
            const bool total = n + 1 == cells.size();
            if (round == 0 && (total || c.subjects == 0)) continue;
            if (round == 1 && total) continue;
            if (!pick || c.subjects < table.cells[*pick].subjects) pick = i;
          }
        }
        if (!pick) continue;  // a line of one cell cannot give anything away
        table.cells[*pick].suppressed = true;
        table.cells[*pick].reason = "complementary";
        changed = true;
      }
    }
  }

  for (std::size_t i = 0; i < table.cells.size(); ++i) {
    auto& c = table.cells[i];
    if (c.suppressed) {
      c.subjects = c.readings = 0;
      continue;
    }
    auto& values = acc[i].values;
    if (values.empty()) continue;
    std::sort(values.begin(), values.end());
    double sum = 0;
    for (double v : values) sum += v;
    c.mean = sum / static_cast<double>(values.size());
    c.min = values.front();
    c.max = values.back();
    for (double p : spec.percentiles) c.percentiles.push_back(percentile(values, p));
  }
  return table;
}

std::string to_json(const AggregateTable& table) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  w.StartObject();
  w.Key("min_subjects");
  w.Int64(table.min_subjects);
  w.Key("percentiles");
  w.StartArray();
  for (double p : table.percentiles) w.Double(p);
  w.EndArray();
  w.Key("groups");
  w.StartArray();
  for (const auto& g : table.groups) w.String(g.c_str(), static_cast<rapidjson::SizeType>(g.size()));
  w.EndArray();
  w.Key("periods");
  w.StartArray();
  for (const auto& p : table.periods) w.String(p.c_str(), static_cast<rapidjson::SizeType>(p.size()));
  w.EndArray();
  w.Key("cells");
  w.StartArray();
  for (const auto& c : table.cells) {
    w.StartObject();
    w.Key("group");
    w.String(c.group.c_str(), static_cast<rapidjson::SizeType>(c.group.size()));
    w.Key("period");
    w.String(c.period.c_str(), static_cast<rapidjson::SizeType>(c.period.size()));
    if (c.suppressed) {
      w.Key("suppressed");
      w.Bool(true);
      w.Key("reason");
      w.String(c.reason.c_str(), static_cast<rapidjson::SizeType>(c.reason.size()));
    } else {
      w.Key("subjects");
      w.Int64(c.subjects);
      w.Key("readings");
      w.Int64(c.readings);
      if (c.readings > 0) {
        w.Key("mean");
        w.Double(c.mean);
        w.Key("min");
        w.Double(c.min);
        w.Key("max");
        w.Double(c.max);
        for (std::size_t i = 0; i < c.percentiles.size(); ++i) {
          const auto name = percentile_name(table.percentiles[i]);
          w.Key(name.c_str(), static_cast<rapidjson::SizeType>(name.size()));
          w.Double(c.percentiles[i]);
        }
      }
    }
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return buffer.GetString();
}

std::string to_csv(const AggregateTable& table) {
  // Groups and periods are generalised codes ("female|60-69|35", "2026-03"): no comma or quote.
  std::string out = "group,period,subjects,readings,mean,min,max";
  for (double p : table.percentiles) {
    out += ',';
    out += percentile_name(p);
  }
  out += '\n';
  const std::size_t numbers = 5 + table.percentiles.size();
  // Appended field by field (GCC 12 at -O3 warns, wrongly, on `"," + text` temporaries).
  auto field = [&out](const std::string& text) {
    out += ',';
    out += text;
  };
  for (const auto& c : table.cells) {
    out += c.group;
    field(c.period);
    if (c.suppressed) {
      for (std::size_t i = 0; i < numbers; ++i) field("suppressed");
    } else {
      field(std::to_string(c.subjects));
      field(std::to_string(c.readings));
      if (c.readings > 0) {
        for (double v : {c.mean, c.min, c.max}) field(number(v));
        for (double v : c.percentiles) field(number(v));
      } else {
        for (std::size_t i = 2; i < numbers; ++i) field("");
      }
    }
    out += '\n';
  }
  return out;
}

}  // namespace telehub::research
