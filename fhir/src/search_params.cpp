#include "search_params.h"

#include <algorithm>
#include <charconv>
#include <chrono>

#include "telehub/core/codes.h"
#include "telehub/privacy/pseudonym.h"

namespace telehub::fhir {
namespace {

tl::unexpected<Issue> bad(std::string code, std::string diagnostics) {
  return tl::unexpected<Issue>(Issue{"error", std::move(code), std::move(diagnostics)});
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  for (;;) {
    const auto pos = text.find(sep, start);
    parts.push_back(text.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start));
    if (pos == std::string_view::npos) break;
    start = pos + 1;
  }
  return parts;
}

bool read_digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  out = v;
  return true;
}

struct Range {
  core::TimePoint low;   // inclusive
  core::TimePoint high;  // exclusive
};

// The range a date/dateTime search value stands for: its precision decides the width
// (http://hl7.org/fhir/R4/search.html#date: "the precision of the value ... implies a range").
std::optional<Range> parse_date_range(std::string_view s) {
  using namespace std::chrono;
  int y = 0, mo = 1, d = 1;
  if (!read_digits(s, 0, 4, y)) return std::nullopt;
  const year yr{y};
  if (s.size() == 4) return Range{core::TimePoint{sys_days{yr / January / 1}}, core::TimePoint{sys_days{(yr + years{1}) / January / 1}}};
  if (s[4] != '-' || !read_digits(s, 5, 2, mo) || mo < 1 || mo > 12) return std::nullopt;
  const year_month ym{yr, month{static_cast<unsigned>(mo)}};
  if (s.size() == 7) return Range{core::TimePoint{sys_days{ym / 1}}, core::TimePoint{sys_days{(ym + months{1}) / 1}}};
  if (s[7] != '-' || !read_digits(s, 8, 2, d)) return std::nullopt;
  const year_month_day ymd{ym / day{static_cast<unsigned>(d)}};
  if (!ymd.ok()) return std::nullopt;
  const sys_days date{ymd};
  if (s.size() == 10) return Range{core::TimePoint{date}, core::TimePoint{date + days{1}}};

  int h = 0, mi = 0, sec = 0;
  if (s[10] != 'T' || !read_digits(s, 11, 2, h) || s.size() < 16 || s[13] != ':' || !read_digits(s, 14, 2, mi))
    return std::nullopt;
  if (h > 23 || mi > 59) return std::nullopt;
  std::size_t pos = 16;
  core::Millis width = minutes{1};
  core::Millis fraction{0};
  if (pos < s.size() && s[pos] == ':') {
    if (!read_digits(s, pos + 1, 2, sec) || sec > 59) return std::nullopt;
    pos += 3;
    width = seconds{1};
    if (pos < s.size() && s[pos] == '.') {
      ++pos;
      const std::size_t start = pos;
      int scale = 100;
      std::int64_t ms = 0;
      while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
        ms += (s[pos] - '0') * scale;
        scale /= 10;
        ++pos;
      }
      const std::size_t n = pos - start;
      if (n == 0 || n > 9) return std::nullopt;
      fraction = core::Millis{ms};
      width = core::Millis{n >= 3 ? 1 : (n == 2 ? 10 : 100)};
    }
  }
  minutes offset{0};
  if (pos < s.size()) {
    if (s[pos] == 'Z') {
      ++pos;
    } else if (s[pos] == '+' || s[pos] == '-') {
      int oh = 0, om = 0;
      if (!read_digits(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' || !read_digits(s, pos + 4, 2, om) ||
          oh > 14 || om > 59)
        return std::nullopt;
      offset = minutes{(oh * 60 + om) * (s[pos] == '-' ? -1 : 1)};
      pos += 6;
    } else {
      return std::nullopt;
    }
  }
  if (pos != s.size()) return std::nullopt;
  const core::TimePoint low{date + hours{h} + minutes{mi} + seconds{sec} + fraction - offset};
  return Range{low, low + width};
}

// Stored LOINC codes a code token ([system|]code) matches (http://hl7.org/fhir/R4/search.html#token).
// Rendered Observations carry the LOINC coding, for SpO2 59408-5 also 2708-6, and the MDC
// coding, so the token matches exactly the readings whose resource carries that coding.
std::vector<std::string> codes_for_token(std::string_view token) {
  std::optional<std::string_view> system;
  std::string_view code = token;
  if (const auto bar = token.find('|'); bar != std::string_view::npos) {
    system = token.substr(0, bar);
    code = token.substr(bar + 1);
  }
  std::vector<std::string> out;
  auto add_loinc = [&out](std::string_view loinc) {
    out.emplace_back(loinc);
    if (loinc == core::loinc::kSpO2Arterial) out.emplace_back(core::loinc::kSpO2);
  };
  auto add_mdc = [&add_loinc](std::string_view mdc) {
    std::uint32_t number = 0;
    const auto [end, ec] = std::from_chars(mdc.data(), mdc.data() + mdc.size(), number);
    if (ec != std::errc() || end != mdc.data() + mdc.size()) return;
    for (const auto& info : core::all_codes())
      if (info.mdc == number) add_loinc(info.loinc);
  };
  if (!system) {
    add_loinc(code);
    add_mdc(code);
  } else if (*system == core::kLoincSystem) {
    add_loinc(code);
  } else if (*system == core::kMdcSystem) {
    add_mdc(code);
  } else if (const core::CodeInfo* info = core::find_code(code); info && info->system == *system) {
    out.emplace_back(code);  // telehub's own codes (core::kTelehubCodeSystem)
  }  // any other system, or "|code" (no system): telehub has no such codings
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// The Patient id a reference value names: "<id>", "Patient/<id>" or "<base>/Patient/<id>"
// (http://hl7.org/fhir/R4/search.html#reference). std::nullopt for another resource type.
std::optional<std::string_view> patient_id_of(std::string_view value, std::string_view base_url) {
  if (!base_url.empty() && value.size() > base_url.size() && value.substr(0, base_url.size()) == base_url &&
      value[base_url.size()] == '/')
    value.remove_prefix(base_url.size() + 1);
  constexpr std::string_view kPrefix = "Patient/";
  if (value.substr(0, kPrefix.size()) == kPrefix) return value.substr(kPrefix.size());
  if (value.find('/') != std::string_view::npos) return std::nullopt;
  return value;
}

bool safe_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.' || c == ':';
  });
}

}  // namespace

std::optional<std::string> percent_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size()) return std::nullopt;
    const int hi = hex_value(text[i + 1]), lo = hex_value(text[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

std::string percent_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    const bool keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                      c == '.' || c == '_' || c == '~' || c == ':' || c == '/' || c == '@';
    if (keep) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::optional<std::vector<QueryParam>> parse_query(std::string_view query) {
  std::vector<QueryParam> params;
  for (auto piece : split(query, '&')) {
    if (piece.empty()) continue;
    const auto eq = piece.find('=');
    auto name = percent_decode(piece.substr(0, eq));
    auto value = percent_decode(eq == std::string_view::npos ? std::string_view{} : piece.substr(eq + 1));
    if (!name || !value) return std::nullopt;
    params.push_back({std::move(*name), std::move(*value)});
  }
  return params;
}

// Prefix semantics for a point-in-time target t (an Observation.effectiveDateTime), with the
// search value standing for [low, high) (http://hl7.org/fhir/R4/search.html#prefix):
//   eq: the value's range contains t          -> low <= t < high
//   gt: the range above the value overlaps t  -> t >= high
//   ge: gt or eq                              -> t >= low
//   lt: the range below the value overlaps t  -> t < low
//   le: lt or eq                              -> t < high
SearchResult<DateBounds> parse_date_param(std::string_view value) {
  if (value.find(',') != std::string_view::npos)
    return bad("not-supported", "date: lists of alternatives (',') are not supported; repeat the parameter instead");
  std::string_view prefix = "eq";
  if (value.size() >= 2 && value[0] >= 'a' && value[0] <= 'z' && value[1] >= 'a' && value[1] <= 'z') {
    prefix = value.substr(0, 2);
    value.remove_prefix(2);
  }
  if (prefix == "ne" || prefix == "sa" || prefix == "eb" || prefix == "ap")
    return bad("not-supported", "date: the prefix '" + std::string(prefix) + "' is not supported (use eq, gt, ge, lt, le)");
  if (prefix != "eq" && prefix != "gt" && prefix != "ge" && prefix != "lt" && prefix != "le")
    return bad("value", "date: unknown prefix");
  const auto range = parse_date_range(value);
  if (!range) return bad("value", "date: not a valid date or dateTime (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with zone)");
  DateBounds b;
  if (prefix == "eq") {
    b.from = range->low;
    b.to = range->high;
  } else if (prefix == "gt") {
    b.from = range->high;
  } else if (prefix == "ge") {
    b.from = range->low;
  } else if (prefix == "lt") {
    b.to = range->low;
  } else {  // le
    b.to = range->high;
  }
  return b;
}

std::string format_cursor(const storage::Cursor& cursor) {
  return std::to_string(cursor.time_ms) + "." + std::to_string(cursor.id);
}

std::optional<storage::Cursor> parse_cursor(std::string_view text) {
  const auto dot = text.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  storage::Cursor c;
  const auto t = text.substr(0, dot), id = text.substr(dot + 1);
  auto r1 = std::from_chars(t.data(), t.data() + t.size(), c.time_ms);
  if (r1.ec != std::errc() || r1.ptr != t.data() + t.size()) return std::nullopt;
  auto r2 = std::from_chars(id.data(), id.data() + id.size(), c.id);
  if (r2.ec != std::errc() || r2.ptr != id.data() + id.size() || c.id < 1) return std::nullopt;
  return c;
}

SearchResult<ObservationSearch> parse_observation_search(const std::vector<QueryParam>& params,
                                                         const SearchLimits& limits) {
  ObservationSearch s;
  const std::size_t max_count = std::clamp<std::size_t>(limits.max_count, 1, 1000);
  s.count = std::clamp<std::size_t>(limits.default_count, 1, max_count);
  bool have_subject = false, have_count = false, have_cursor = false;

  for (const auto& p : params) {
    const auto colon = p.name.find(':');
    const std::string_view base = std::string_view(p.name).substr(0, colon);
    const std::string_view modifier =
        colon == std::string::npos ? std::string_view{} : std::string_view(p.name).substr(colon + 1);
    const bool known = base == "patient" || base == "subject" || base == "code" || base == "date" ||
                       base == "_count" || base == "_cursor";
    if (!known) {
      s.ignored.push_back(safe_name(p.name) ? p.name : std::string("(unreadable name)"));
      continue;
    }
    const bool reference = base == "patient" || base == "subject";
    if (!modifier.empty() && !(reference && modifier == "Patient"))
      return bad("not-supported", std::string(base) + ": modifiers are not supported");
    // An empty value is taken as an absent parameter (telehub's choice: "code=" filters nothing).
    if (p.value.empty()) continue;

    if (reference) {
      if (p.value.find(',') != std::string::npos)
        return bad("not-supported", std::string(base) + ": lists of alternatives (',') are not supported");
      // An id that is not a pseudonym names no patient here: the search matches nothing (an
      // empty Bundle, not an error), as for any unknown patient.
      const auto id = patient_id_of(p.value, limits.base_url);
      const bool valid = id && privacy::SubjectPseudonym::parse(*id).has_value();
      if (!valid) {
        s.matches_nothing = true;
      } else if (have_subject && s.subject != *id) {
        s.matches_nothing = true;  // repeated parameters are ANDed: two patients match nothing
      } else {
        s.subject = std::string(*id);
      }
      have_subject = true;
      s.link_params.push_back(p);
    } else if (base == "code") {
      std::vector<std::string> any;  // comma: OR
      for (auto token : split(p.value, ',')) {
        if (token.empty() || token.back() == '|') return bad("value", "code: a token needs a code ([system|]code)");
        for (auto& c : codes_for_token(token)) any.push_back(std::move(c));
      }
      std::sort(any.begin(), any.end());
      any.erase(std::unique(any.begin(), any.end()), any.end());
      if (!s.codes) {
        s.codes = std::move(any);
      } else {  // repeated: AND
        std::vector<std::string> both;
        std::set_intersection(s.codes->begin(), s.codes->end(), any.begin(), any.end(), std::back_inserter(both));
        s.codes = std::move(both);
      }
      s.link_params.push_back(p);
    } else if (base == "date") {
      auto b = parse_date_param(p.value);
      if (!b) return tl::unexpected(b.error());
      if (b->from && (!s.from || *b->from > *s.from)) s.from = b->from;
      if (b->to && (!s.to || *b->to < *s.to)) s.to = b->to;
      s.link_params.push_back(p);
    } else if (base == "_count") {
      if (have_count) return bad("value", "_count: given more than once");
      have_count = true;
      const std::string& v = p.value;
      if (!std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return bad("value", "_count: must be a positive integer");
      const auto first = v.find_first_not_of('0');
      if (first == std::string::npos) return bad("value", "_count: must be at least 1");
      // Above the maximum: served at the maximum (the server may return fewer,
      // http://hl7.org/fhir/R4/search.html#count).
      s.count = v.size() - first > 9 ? max_count : std::min<std::size_t>(std::stoul(v.substr(first)), max_count);
    } else {  // _cursor
      if (have_cursor) return bad("value", "_cursor: given more than once");
      have_cursor = true;
      s.after = parse_cursor(p.value);
      if (!s.after) return bad("value", "_cursor: not a cursor from a next link");
    }
  }
  if (!have_subject) return bad("required", "patient or subject is required");
  if (s.codes && s.codes->empty()) s.matches_nothing = true;
  if (s.from && s.to && *s.from >= *s.to) s.matches_nothing = true;
  return s;
}

}  // namespace telehub::fhir
