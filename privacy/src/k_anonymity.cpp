#include "telehub/privacy/k_anonymity.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <set>

namespace telehub::privacy {
namespace {

constexpr const char* kAll = "*";

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

Ladder age_ladder(int band_years) {
  const int base = std::max(1, band_years);
  int levels = 1;
  for (long width = base; width < 120; width *= 2) ++levels;
  Ladder l;
  l.name = "age_band";
  l.levels = levels;
  l.generalise = [base, levels](std::string_view raw, int level) -> std::string {
    int age = 0;
    if (level >= levels - 1 || !all_digits(raw) || raw.size() > 3) return kAll;
    std::from_chars(raw.data(), raw.data() + raw.size(), age);
    const long width = static_cast<long>(base) << level;
    const long low = (age / width) * width;
    return std::to_string(low) + "-" + std::to_string(low + width - 1);
  };
  l.describe = [base, levels](int level) -> std::string {
    if (level >= levels - 1) return kAll;
    return std::to_string(static_cast<long>(base) << level) + " years";
  };
  return l;
}

Ladder region_ladder(int digits) {
  const int d = std::clamp(digits, 2, 4);
  Ladder l;
  l.name = "region";
  l.levels = d + 1;  // d, d-1, ..., 1 digits, then "*"
  l.generalise = [d](std::string_view raw, int level) -> std::string {
    const int keep = d - level;
    if (keep <= 0 || raw.size() != 4 || !all_digits(raw)) return kAll;
    return std::string(raw.substr(0, static_cast<std::size_t>(keep)));
  };
  l.describe = [d](int level) -> std::string {
    const int keep = d - level;
    return keep <= 0 ? kAll : "pc" + std::to_string(keep);
  };
  return l;
}

Ladder sex_ladder() {
  Ladder l;
  l.name = "sex";
  l.levels = 2;
  l.generalise = [](std::string_view raw, int level) -> std::string {
    if (level >= 1) return kAll;
    return raw.empty() ? "unknown" : std::string(raw);
  };
  l.describe = [](int level) -> std::string { return level >= 1 ? kAll : "kept"; };
  return l;
}

Result<KAnonymityResult> k_anonymise(const std::vector<std::vector<std::string>>& records,
                                     std::span<const Ladder> ladders, const KAnonymityOptions& options) {
  auto bad = [](std::string message) {
    return core::fail(core::Code::kInvalidArgument, "bad_k_anonymity", std::move(message));
  };
  if (options.k == 0) return bad("k must be at least 1");
  if (!(options.max_suppression >= 0 && options.max_suppression <= 1)) return bad("max_suppression must be in 0..1");
  for (const auto& l : ladders)
    if (l.levels < 1 || !l.generalise || !l.describe) return bad("ladder '" + l.name + "' has no levels or functions");
  for (const auto& r : records)
    if (r.size() != ladders.size()) return bad("a record does not have one value per quasi-identifier");

  const std::size_t n = records.size();
  const auto budget = static_cast<std::size_t>(std::floor(options.max_suppression * static_cast<double>(n) + 1e-9));
  KAnonymityResult out;
  out.levels.assign(ladders.size(), 0);

  for (;;) {
    out.keys.assign(n, {});
    std::map<std::vector<std::string>, std::size_t> sizes;
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < ladders.size(); ++j)
        out.keys[i].push_back(ladders[j].generalise(records[i][j], out.levels[j]));
      ++sizes[out.keys[i]];
    }
    std::size_t small = 0;
    for (const auto& [key, size] : sizes)
      if (size < options.k) small += size;

    // The quasi-identifier with the most distinct values that can still be generalised.
    std::size_t pick = ladders.size();
    std::size_t most = 0;
    for (std::size_t j = 0; j < ladders.size(); ++j) {
      if (out.levels[j] >= ladders[j].levels - 1) continue;
      std::set<std::string> distinct;
      for (std::size_t i = 0; i < n; ++i) distinct.insert(out.keys[i][j]);
      if (pick == ladders.size() || distinct.size() > most) {
        pick = j;
        most = distinct.size();
      }
    }

    if (small <= budget || pick == ladders.size()) {
      out.suppressed.assign(n, false);
      for (std::size_t i = 0; i < n; ++i)
        if (sizes[out.keys[i]] < options.k) {
          out.suppressed[i] = true;
          ++out.suppressed_count;
        }
      for (const auto& [key, size] : sizes)
        if (size >= options.k) out.classes.push_back({key, size});
      return out;
    }
    ++out.levels[pick];
  }
}

}  // namespace telehub::privacy
