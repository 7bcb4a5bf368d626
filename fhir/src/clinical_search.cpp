// See clinical_search.h.
#include "clinical_search.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "telehub/privacy/pseudonym.h"

namespace telehub::fhir {
namespace {

Issue bad(std::string code, std::string diagnostics) { return Issue{"error", std::move(code), std::move(diagnostics)}; }

// A prefix (two letters) and the rest, for date and quantity values.
std::pair<clinical::Prefix, std::string_view> split_prefix(std::string_view v) {
  static constexpr std::pair<std::string_view, clinical::Prefix> kPrefixes[] = {
      {"eq", clinical::Prefix::kEq}, {"ne", clinical::Prefix::kNe}, {"gt", clinical::Prefix::kGt},
      {"lt", clinical::Prefix::kLt}, {"ge", clinical::Prefix::kGe}, {"le", clinical::Prefix::kLe},
      {"sa", clinical::Prefix::kSa}, {"eb", clinical::Prefix::kEb}};
  if (v.size() > 2 && v[0] >= 'a' && v[0] <= 'z')
    for (const auto& [text, prefix] : kPrefixes)
      if (v.substr(0, 2) == text) return {prefix, v.substr(2)};
  return {clinical::Prefix::kEq, v};
}

std::vector<std::string_view> split(std::string_view v, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    const auto at = v.find(sep, start);
    out.push_back(v.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
    if (at == std::string_view::npos) return out;
    start = at + 1;
  }
}

std::optional<std::string> subject_of(std::string_view value, const std::string& base_url) {
  std::string_view v = value;
  const std::string absolute = base_url + "/Patient/";
  if (v.starts_with(absolute)) v.remove_prefix(absolute.size());
  else if (v.starts_with("Patient/")) v.remove_prefix(8);
  if (!privacy::SubjectPseudonym::parse(v)) return std::nullopt;
  return std::string(v);
}

// The token parameters clinical::index_table() lists for `type`.
std::vector<std::string> token_params(const std::string& type) {
  std::vector<std::string> out;
  for (const auto& p : clinical::index_table())
    if (p.type == type && p.kind == "token") out.push_back(p.param);
  return out;
}

bool has_param(const std::string& type, std::string_view param, std::string_view kind) {
  return std::any_of(clinical::index_table().begin(), clinical::index_table().end(),
                     [&](const auto& p) { return p.type == type && p.param == param && p.kind == kind; });
}

}  // namespace

SearchResult<ClinicalSearch> parse_clinical_search(const std::string& type, const std::vector<QueryParam>& params,
                                                   const SearchLimits& limits, bool strict) {
  ClinicalSearch s;
  s.query.type = type;
  s.query.limit = static_cast<int>(std::min<std::size_t>(limits.default_count, 1000));
  const auto tokens = token_params(type);
  bool subject_seen = false;
  for (const auto& p : params) {
    const std::string& n = p.name;
    const std::string& v = p.value;
    bool linked = true;
    if (n == "patient" || n == "subject" || n == "patient:Patient" || n == "subject:Patient") {
      if (subject_seen) return tl::unexpected(bad("not-supported", n + ": one patient per search"));
      subject_seen = true;
      auto subject = subject_of(v, limits.base_url);
      if (!subject) return tl::unexpected(bad("value", n + " must be a Patient id (pseudonym)"));
      s.query.subject = *subject;
    } else if (n == "_id") {
      for (auto id : split(v, ',')) {
        if (!valid_fhir_id(id)) return tl::unexpected(bad("value", "_id values must be FHIR ids"));
        s.query.ids.emplace_back(id);
      }
    } else if (n == "_lastUpdated" || (n == "date" && has_param(type, "date", "date"))) {
      const auto [prefix, text] = split_prefix(v);
      auto range = clinical::fhir_date_range(text);
      if (!range) return tl::unexpected(bad("value", n + " must be [prefix]YYYY[-MM[-DD[Thh:mm:ss[.fff]zone]]]"));
      if (n == "date") {
        s.query.dates.push_back({prefix, *range});
      } else {
        // _lastUpdated as bounds on [from, to) of the last-updated instant.
        const auto from = core::from_unix_millis(range->from_ms), to = core::from_unix_millis(range->to_ms);
        auto lower = [&](core::TimePoint t) {
          if (!s.query.last_updated_from || *s.query.last_updated_from < t) s.query.last_updated_from = t;
        };
        auto upper = [&](core::TimePoint t) {
          if (!s.query.last_updated_to || t < *s.query.last_updated_to) s.query.last_updated_to = t;
        };
        switch (prefix) {
          case clinical::Prefix::kEq: lower(from); upper(to); break;
          case clinical::Prefix::kGt: case clinical::Prefix::kSa: lower(to); break;
          case clinical::Prefix::kGe: lower(from); break;
          case clinical::Prefix::kLt: case clinical::Prefix::kEb: upper(from); break;
          case clinical::Prefix::kLe: upper(to); break;
          case clinical::Prefix::kNe:
            return tl::unexpected(bad("not-supported", "_lastUpdated does not support the ne prefix"));
        }
      }
    } else if (n == "value-quantity" && has_param(type, "value-quantity", "quantity")) {
      const auto [prefix, rest] = split_prefix(v);
      const auto parts = split(rest, '|');
      if (parts.size() != 1 && parts.size() != 3) return tl::unexpected(bad("value", "value-quantity must be [prefix]number[|system|code]"));
      double number = 0;
      const auto text = parts[0];
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
      if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(number))
        return tl::unexpected(bad("value", "value-quantity must be [prefix]number[|system|code]"));
      // The implicit range of the value's precision (search.html#number): 5.4 → [5.35, 5.45).
      const auto dot = text.find('.');
      const int decimals = dot == std::string_view::npos ? 0 : static_cast<int>(text.size() - dot - 1);
      const double half = 0.5 * std::pow(10.0, -decimals);
      clinical::QuantityParam q;
      q.prefix = prefix;
      q.value = number;
      q.low = number - half;
      q.high = number + half;
      if (parts.size() == 3) {
        q.system = std::string(parts[1]);
        q.code = std::string(parts[2]);
      }
      s.query.quantities.push_back(std::move(q));
    } else if (std::find(tokens.begin(), tokens.end(), n) != tokens.end()) {
      for (auto one : split(v, ',')) {
        const auto bar = one.find('|');
        clinical::TokenParam t;
        t.param = n;
        if (bar != std::string_view::npos) {
          t.system = std::string(one.substr(0, bar));
          t.code = std::string(one.substr(bar + 1));
        } else {
          t.code = std::string(one);
        }
        if (t.code.empty()) return tl::unexpected(bad("value", n + " needs a code"));
        s.query.tokens.push_back(std::move(t));
      }
    } else if (n == "_count") {
      linked = false;
      std::size_t count = 0;
      const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), count);
      if (ec != std::errc() || end != v.data() + v.size() || count < 1)
        return tl::unexpected(bad("value", "_count must be a positive integer"));
      s.query.limit = static_cast<int>(std::min({count, limits.max_count, std::size_t{1000}}));
    } else if (n == "_cursor") {
      linked = false;
      s.query.cursor = v;
    } else if (n == "_sort") {
      if (v == "date" || v == "-date") s.query.sort = clinical::SortBy::kDate;
      else if (v == "_lastUpdated" || v == "-_lastUpdated") s.query.sort = clinical::SortBy::kLastUpdated;
      else return tl::unexpected(bad("not-supported", "_sort supports date, -date, _lastUpdated, -_lastUpdated"));
      s.query.descending = v.starts_with('-');
    } else if (n == "_summary") {
      if (v != "count") return tl::unexpected(bad("not-supported", "_summary supports only count"));
      s.summary_count = true;
    } else {
      if (strict) return tl::unexpected(bad("not-supported", "unknown search parameter (Prefer: handling=strict)"));
      s.ignored.push_back(n);
      linked = false;
    }
    if (linked) s.link_params.push_back(p);
  }
  if (!subject_seen && !s.query.ids.empty()) return s;
  return s;
}

}  // namespace telehub::fhir
