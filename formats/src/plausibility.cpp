// Physiological plausibility ranges; see include/telehub/formats/plausibility.h.
#include "telehub/formats/plausibility.h"

#include <rapidjson/document.h>

#include <array>
#include <charconv>
#include <cmath>
#include <string>
#include <utility>

#include "telehub/core/codes.h"
#include "telehub/envelope/json.h"

namespace telehub::formats {
namespace {

// The built-in rules. They equal config/plausibility.json (a test compares them), where each
// rule's "note" gives its reasons and sources (NEWS2, ACC/AHA 2017, ADA Standards of Care,
// ISO 80601-2-61, ...). Change both together.
std::vector<PlausibilityRule> default_rules() {
  return {
      {.code = "8867-4", .impossible_below = 20, .impossible_above = 300, .extreme_below = 40, .extreme_above = 180},
      {.code = "59408-5", .impossible_below = 50, .impossible_above = 100, .extreme_below = 85, .extreme_above = 100},
      {.code = "2708-6", .impossible_below = 50, .impossible_above = 100, .extreme_below = 85, .extreme_above = 100},
      {.code = "9279-1", .impossible_below = 3, .impossible_above = 70, .extreme_below = 8, .extreme_above = 25},
      {.code = "8310-5", .impossible_below = 25, .impossible_above = 45, .extreme_below = 35, .extreme_above = 40},
      {.code = "29463-7", .impossible_below = 0.5, .impossible_above = 500, .extreme_below = 30, .extreme_above = 250},
      {.code = "8480-6", .impossible_below = 40, .impossible_above = 300, .extreme_below = 80, .extreme_above = 180},
      {.code = "8462-4", .impossible_below = 20, .impossible_above = 200, .extreme_below = 40, .extreme_above = 120},
      {.code = "15074-8", .impossible_below = 0.5, .impossible_above = 60, .extreme_below = 3, .extreme_above = 25},
      {.code = "2339-0", .impossible_below = 9, .impossible_above = 1081, .extreme_below = 54, .extreme_above = 450},
      {.code = "41950-7", .impossible_below = 0, .impossible_above = 150000, .extreme_below = {}, .extreme_above = {}},
      {.code = "perfusion-index", .impossible_below = 0, .impossible_above = 100, .extreme_below = 0.02,
       .extreme_above = 20},
      {.code = "irregular-heartbeat", .impossible_below = 0, .impossible_above = 1, .extreme_below = {},
       .extreme_above = {}},
  };
}

// The bounds in the order they must be in, with their member names.
constexpr std::array<std::pair<std::string_view, std::optional<double> PlausibilityRule::*>, 4> kBounds{{
    {"impossible_below", &PlausibilityRule::impossible_below},
    {"extreme_below", &PlausibilityRule::extreme_below},
    {"extreme_above", &PlausibilityRule::extreme_above},
    {"impossible_above", &PlausibilityRule::impossible_above},
}};

// Shortest text that reads back as the same double ("140", "0.5", "1e+300").
std::string number(double v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

// A name from the file, quoted in a message only when it is a short printable token.
std::string quoted(std::string_view s) {
  bool printable = s.size() <= 40;
  for (const char c : s)
    if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') printable = false;
  return printable ? "\"" + std::string(s) + "\"" : "(" + std::to_string(s.size()) + " bytes)";
}

tl::unexpected<core::Error> bad_config(const std::string& where, const std::string& why) {
  return core::fail(core::Code::kInvalidArgument, "bad_config", where + ": " + why);
}

// Fails on a member name that appears twice in `obj` (RFC 8259 leaves that to the reader).
Status unique_members(const rapidjson::Value& obj, const std::string& where) {
  for (auto a = obj.MemberBegin(); a != obj.MemberEnd(); ++a)
    for (auto b = obj.MemberBegin(); b != a; ++b)
      if (a->name == b->name)
        return bad_config(where,
                          "member " + quoted({a->name.GetString(), a->name.GetStringLength()}) + " appears twice");
  return {};
}

Result<PlausibilityRule> parse_rule(const rapidjson::Value& v, const std::string& where) {
  if (!v.IsObject()) return bad_config(where, "must be an object");
  if (auto s = unique_members(v, where); !s) return tl::unexpected(std::move(s.error()));
  PlausibilityRule rule;
  bool has_code = false;
  for (const auto& m : v.GetObject()) {
    const std::string_view name(m.name.GetString(), m.name.GetStringLength());
    const std::string at = where + "." + std::string(name);  // used for known (short) names only
    if (name == "code") {
      if (!m.value.IsString()) return bad_config(at, "must be a string");
      const std::string_view code(m.value.GetString(), m.value.GetStringLength());
      const core::CodeInfo* info = core::find_code(code);
      if (!info) return bad_config(at, quoted(code) + " is not a known code");
      if (info->panel) return bad_config(at, std::string(code) + " is a panel and has no value to check");
      rule.code = std::string(code);
      has_code = true;
    } else if (name == "note") {
      if (!m.value.IsString()) return bad_config(at, "must be a string");
    } else {
      bool known = false;
      for (const auto& [bound_name, member] : kBounds) {
        if (name != bound_name) continue;
        known = true;
        if (!m.value.IsNumber()) return bad_config(at, "must be a number");
        const double d = m.value.GetDouble();
        if (!std::isfinite(d)) return bad_config(at, "must be a finite number");
        rule.*member = d;
      }
      if (!known) return bad_config(where, "unknown member " + quoted(name));
    }
  }
  if (!has_code) return bad_config(where + ".code", "is missing");
  // impossible_below <= extreme_below <= extreme_above <= impossible_above, where given.
  std::optional<std::size_t> prev;
  for (std::size_t i = 0; i < kBounds.size(); ++i) {
    const auto& bound = rule.*kBounds[i].second;
    if (!bound) continue;
    if (prev) {
      const double before = *(rule.*kBounds[*prev].second);
      if (*bound < before)
        return bad_config(where + "." + std::string(kBounds[i].first),
                          number(*bound) + " is below " + std::string(kBounds[*prev].first) + " " + number(before));
    }
    prev = i;
  }
  return rule;
}

// "8310-5 value 60 Cel is above the impossible limit 45 Cel"
Verdict crossed(Verdict::Kind kind, bool high, std::string_view code, double value, double limit) {
  const core::CodeInfo* info = core::find_code(code);
  std::string unit;
  if (info && !info->ucum.empty() && info->ucum != "1") unit = " " + std::string(info->ucum);
  Verdict v;
  v.kind = kind;
  v.direction = high ? "high" : "low";
  v.code = std::string(code);
  v.detail = std::string(code) + " value " + number(value) + unit + " is " + (high ? "above" : "below") + " the " +
             (kind == Verdict::Kind::kImpossible ? "impossible" : "extreme") + " limit " + number(limit) + unit;
  return v;
}

}  // namespace

Plausibility::Plausibility(std::vector<PlausibilityRule> rules) : rules_(std::move(rules)) {}

Result<Plausibility> Plausibility::parse(std::string_view json) {
  rapidjson::Document doc;
  if (auto s = envelope::parse_json(json, doc); !s) {
    std::string why = s.error().message;
    if (why.rfind("payload: ", 0) == 0) why.erase(0, 9);
    return bad_config("plausibility config", why);
  }
  if (!doc.IsObject()) return bad_config("plausibility config", "must be a JSON object");
  if (auto s = unique_members(doc, "plausibility config"); !s) return tl::unexpected(std::move(s.error()));
  const rapidjson::Value* rules = nullptr;
  for (const auto& m : doc.GetObject()) {
    const std::string_view name(m.name.GetString(), m.name.GetStringLength());
    if (name == "rules") {
      if (!m.value.IsArray()) return bad_config("rules", "must be an array");
      rules = &m.value;
    } else if (name == "description") {
      if (!m.value.IsString()) return bad_config("description", "must be a string");
    } else {
      return bad_config("plausibility config", "unknown member " + quoted(name));
    }
  }
  if (!rules) return bad_config("rules", "is missing");
  std::vector<PlausibilityRule> out;
  out.reserve(rules->Size());
  for (rapidjson::SizeType i = 0; i < rules->Size(); ++i) {
    const std::string where = "rules[" + std::to_string(i) + "]";
    auto rule = parse_rule((*rules)[i], where);
    if (!rule) return tl::unexpected(std::move(rule.error()));
    for (std::size_t j = 0; j < out.size(); ++j)
      if (out[j].code == rule->code)
        return bad_config(where + ".code", rule->code + " already has a rule (rules[" + std::to_string(j) + "])");
    out.push_back(std::move(*rule));
  }
  return Plausibility(std::move(out));
}

const Plausibility& Plausibility::defaults() {
  static const Plausibility kDefaults(default_rules());
  return kDefaults;
}

Verdict Plausibility::check(std::string_view code, double value) const {
  Verdict v;
  v.code = std::string(code);
  if (!std::isfinite(value)) {
    v.kind = Verdict::Kind::kImpossible;
    v.direction = std::isnan(value) ? "" : value > 0 ? "high" : "low";
    v.detail =
        (core::find_code(code) ? std::string(code) + " value" : std::string("a value")) + " is not a finite number";
    return v;
  }
  const PlausibilityRule* rule = nullptr;
  for (const auto& r : rules_)
    if (r.code == code) {
      rule = &r;
      break;
    }
  if (!rule) return v;
  using K = Verdict::Kind;
  if (rule->impossible_below && value < *rule->impossible_below)
    return crossed(K::kImpossible, false, code, value, *rule->impossible_below);
  if (rule->impossible_above && value > *rule->impossible_above)
    return crossed(K::kImpossible, true, code, value, *rule->impossible_above);
  if (rule->extreme_below && value < *rule->extreme_below)
    return crossed(K::kExtreme, false, code, value, *rule->extreme_below);
  if (rule->extreme_above && value > *rule->extreme_above)
    return crossed(K::kExtreme, true, code, value, *rule->extreme_above);
  return v;
}

Verdict Plausibility::check(const core::Reading& reading) const {
  Verdict worst;
  worst.code = reading.code;
  const auto consider = [&worst](Verdict v) {
    if (v.kind > worst.kind) worst = std::move(v);
  };
  if (reading.value) consider(check(reading.code, *reading.value));
  for (const auto& c : reading.components) consider(check(c.code, c.value));
  return worst;
}

}  // namespace telehub::formats
