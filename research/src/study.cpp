// The study definition file (docs/research.md, "Defining a study").
#include "telehub/research/study.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <array>
#include <fstream>
#include <iterator>
#include <set>

namespace telehub::research {
namespace {

using rapidjson::Value;

tl::unexpected<core::Error> bad(const std::string& member, const std::string& problem) {
  return core::fail(core::Code::kInvalidArgument, "bad_study", member + ": " + problem);
}

bool study_id_ok(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id)
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
          c == '-'))
      return false;
  return true;
}

// Refuses members other than `allowed`.
Status only_members(const Value& object, const std::string& path, std::initializer_list<std::string_view> allowed) {
  for (auto it = object.MemberBegin(); it != object.MemberEnd(); ++it) {
    const std::string_view name(it->name.GetString(), it->name.GetStringLength());
    bool known = false;
    for (auto a : allowed) known = known || a == name;
    if (!known) {
      // Names a member the file has; a name is not data about a person.
      const std::string shown = name.size() <= 64 ? std::string(name) : std::string(name.substr(0, 64)) + "...";
      return bad(path.empty() ? shown : path + "." + shown, "unknown member");
    }
  }
  return {};
}

Result<std::string> get_string(const Value& v, const std::string& path, std::size_t max = 256) {
  if (!v.IsString()) return bad(path, "must be a string");
  if (v.GetStringLength() > max) return bad(path, "longer than " + std::to_string(max) + " characters");
  return std::string(v.GetString(), v.GetStringLength());
}

// "YYYY-MM-DD" (the start of that day, or with end_of_day the start of the next) or an RFC 3339
// date-time.
Result<core::TimePoint> get_time(const Value& v, const std::string& path, bool end_of_day) {
  auto text = get_string(v, path, 64);
  if (!text) return tl::unexpected(text.error());
  const std::string& s = *text;
  if (s.size() == 10 && s[4] == '-' && s[7] == '-') {
    int y = 0;
    unsigned m = 0, d = 0;
    bool digits = true;
    for (std::size_t i : {0u, 1u, 2u, 3u, 5u, 6u, 8u, 9u}) digits = digits && s[i] >= '0' && s[i] <= '9';
    if (digits) {
      y = std::stoi(s.substr(0, 4));
      m = static_cast<unsigned>(std::stoi(s.substr(5, 2)));
      d = static_cast<unsigned>(std::stoi(s.substr(8, 2)));
      const std::chrono::year_month_day ymd{std::chrono::year{y}, std::chrono::month{m}, std::chrono::day{d}};
      if (ymd.ok()) {
        auto day = std::chrono::sys_days(ymd);
        if (end_of_day) day += std::chrono::days{1};
        return core::TimePoint(std::chrono::duration_cast<core::Millis>(day.time_since_epoch()));
      }
    }
    return bad(path, "not a calendar date YYYY-MM-DD");
  }
  auto t = core::parse_rfc3339(s);
  if (!t) return bad(path, "must be a date YYYY-MM-DD or an RFC 3339 date-time with offset");
  return *t;
}

Result<Aggregation> get_aggregation(const Value& v, const std::string& path) {
  auto s = get_string(v, path, 16);
  if (!s) return tl::unexpected(s.error());
  if (*s == "raw") return Aggregation::kRaw;
  if (*s == "hourly") return Aggregation::kHourly;
  if (*s == "daily") return Aggregation::kDaily;
  return bad(path, "must be raw, hourly or daily");
}

Status parse_inclusion(const Value& v, Study& study) {
  if (!v.IsObject()) return bad("inclusion", "must be an object");
  if (auto s = only_members(v, "inclusion", {"conditions", "enrolled_from", "enrolled_to"}); !s) return s;
  if (v.HasMember("conditions")) {
    const Value& list = v["conditions"];
    if (!list.IsArray()) return bad("inclusion.conditions", "must be an array");
    for (rapidjson::SizeType i = 0; i < list.Size(); ++i) {
      const std::string path = "inclusion.conditions[" + std::to_string(i) + "]";
      const Value& c = list[i];
      if (!c.IsObject()) return bad(path, "must be an object {system, code}");
      if (auto s = only_members(c, path, {"system", "code"}); !s) return s;
      ConditionCode cc;
      if (c.HasMember("system")) {
        auto sys = get_string(c["system"], path + ".system");
        if (!sys) return tl::unexpected(sys.error());
        cc.system = *sys;
      }
      if (!c.HasMember("code")) return bad(path + ".code", "is required");
      auto code = get_string(c["code"], path + ".code", 64);
      if (!code) return tl::unexpected(code.error());
      if (code->empty()) return bad(path + ".code", "must not be empty");
      cc.code = *code;
      study.conditions.push_back(std::move(cc));
    }
  }
  if (v.HasMember("enrolled_from")) {
    auto t = get_time(v["enrolled_from"], "inclusion.enrolled_from", false);
    if (!t) return tl::unexpected(t.error());
    study.enrolled_from = *t;
  }
  if (v.HasMember("enrolled_to")) {
    auto t = get_time(v["enrolled_to"], "inclusion.enrolled_to", true);
    if (!t) return tl::unexpected(t.error());
    study.enrolled_to = *t;
  }
  if (study.enrolled_from && study.enrolled_to && *study.enrolled_to <= *study.enrolled_from)
    return bad("inclusion.enrolled_to", "must be after enrolled_from");
  return {};
}

Status parse_quasi_identifiers(const Value& v, Study& study) {
  if (!v.IsObject()) return bad("quasi_identifiers", "must be an object");
  if (auto s = only_members(v, "quasi_identifiers", {"age_band_years", "sex", "region"}); !s) return s;
  auto& q = study.quasi_identifiers;
  if (v.HasMember("age_band_years")) {
    const Value& a = v["age_band_years"];
    if (!a.IsInt() || a.GetInt() < 0 || a.GetInt() > 120)
      return bad("quasi_identifiers.age_band_years", "must be a whole number 0..120 (0: no age)");
    q.age_band_years = a.GetInt();
  }
  if (v.HasMember("sex")) {
    if (!v["sex"].IsBool()) return bad("quasi_identifiers.sex", "must be true or false");
    q.sex = v["sex"].GetBool();
  }
  if (v.HasMember("region")) {
    auto r = get_string(v["region"], "quasi_identifiers.region", 8);
    if (!r) return tl::unexpected(r.error());
    if (*r == "none") q.region_digits = 0;
    else if (*r == "pc2") q.region_digits = 2;
    else if (*r == "pc3") q.region_digits = 3;
    else if (*r == "pc4") q.region_digits = 4;
    else return bad("quasi_identifiers.region", "must be none, pc2, pc3 or pc4");
  }
  return {};
}

}  // namespace

std::string_view aggregation_name(Aggregation a) {
  switch (a) {
    case Aggregation::kRaw: return "raw";
    case Aggregation::kHourly: return "hourly";
    case Aggregation::kDaily: return "daily";
  }
  return "raw";
}

std::string_view dates_mode_name(DatesMode d) { return d == DatesMode::kShift ? "shift" : "relative"; }

std::string_view exposure_key(environment::Component c) { return environment::info(c).key; }

std::string_view exposure_unit(environment::Component c) { return environment::info(c).unit; }

std::optional<environment::Component> exposure_component(std::string_view key) {
  const auto* c = environment::find_component(key);
  if (!c) return std::nullopt;
  return c->component;
}

Result<Study> parse_study(std::string_view json) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseStopWhenDoneFlag>(json.data(), json.size());
  if (doc.HasParseError())
    return bad("(document)", std::string("not JSON: ") + rapidjson::GetParseError_En(doc.GetParseError()) +
                                 " at offset " + std::to_string(doc.GetErrorOffset()));
  if (!doc.IsObject()) return bad("(document)", "must be a JSON object");
  if (auto s = only_members(doc, "", {"id", "title", "consent_scope", "inclusion", "variables", "environment",
                                      "quasi_identifiers", "k", "max_suppression", "dates", "description"});
      !s)
    return tl::unexpected(s.error());

  Study study;
  if (!doc.HasMember("id")) return bad("id", "is required");
  auto id = get_string(doc["id"], "id", 64);
  if (!id) return tl::unexpected(id.error());
  if (!study_id_ok(*id)) return bad("id", "must match [A-Za-z0-9._-]{1,64}");
  study.id = *id;
  if (doc.HasMember("title")) {
    auto t = get_string(doc["title"], "title", 512);
    if (!t) return tl::unexpected(t.error());
    study.title = *t;
  }
  if (doc.HasMember("description") && !doc["description"].IsString())
    return bad("description", "must be a string");
  study.consent_scope = "research:" + study.id;
  if (doc.HasMember("consent_scope")) {
    auto s = get_string(doc["consent_scope"], "consent_scope", 80);
    if (!s) return tl::unexpected(s.error());
    if (*s != "research" && *s != "research:" + study.id)
      return bad("consent_scope", "must be \"research\" or \"research:<id>\" of this study");
    study.consent_scope = *s;
  }
  if (doc.HasMember("inclusion"))
    if (auto s = parse_inclusion(doc["inclusion"], study); !s) return tl::unexpected(s.error());

  if (!doc.HasMember("variables")) return bad("variables", "is required");
  const Value& vars = doc["variables"];
  if (!vars.IsArray() || vars.Empty()) return bad("variables", "must be a non-empty array");
  std::set<std::string> codes;
  for (rapidjson::SizeType i = 0; i < vars.Size(); ++i) {
    const std::string path = "variables[" + std::to_string(i) + "]";
    const Value& v = vars[i];
    if (!v.IsObject()) return bad(path, "must be an object {code, aggregation}");
    if (auto s = only_members(v, path, {"code", "aggregation"}); !s) return tl::unexpected(s.error());
    if (!v.HasMember("code")) return bad(path + ".code", "is required");
    Variable var;
    auto code = get_string(v["code"], path + ".code", 64);
    if (!code) return tl::unexpected(code.error());
    if (code->empty()) return bad(path + ".code", "must not be empty");
    if (!codes.insert(*code).second) return bad(path + ".code", "names a code already listed");
    var.code = *code;
    if (v.HasMember("aggregation")) {
      auto a = get_aggregation(v["aggregation"], path + ".aggregation");
      if (!a) return tl::unexpected(a.error());
      var.aggregation = *a;
    }
    study.variables.push_back(std::move(var));
  }

  if (doc.HasMember("environment")) {
    const Value& env = doc["environment"];
    if (!env.IsArray()) return bad("environment", "must be an array of component keys");
    for (rapidjson::SizeType i = 0; i < env.Size(); ++i) {
      const std::string path = "environment[" + std::to_string(i) + "]";
      auto key = get_string(env[i], path, 16);
      if (!key) return tl::unexpected(key.error());
      auto c = exposure_component(*key);
      if (!c) return bad(path, "must be one of pm25, pm10, no2, o3, temperature, humidity");
      for (auto have : study.environment)
        if (have == *c) return bad(path, "names a component already listed");
      study.environment.push_back(*c);
    }
  }
  if (doc.HasMember("quasi_identifiers"))
    if (auto s = parse_quasi_identifiers(doc["quasi_identifiers"], study); !s) return tl::unexpected(s.error());
  if (doc.HasMember("k")) {
    const Value& k = doc["k"];
    if (!k.IsInt() || k.GetInt() < 2 || k.GetInt() > 1000) return bad("k", "must be a whole number 2..1000");
    study.k = static_cast<std::size_t>(k.GetInt());
  }
  if (doc.HasMember("max_suppression")) {
    const Value& m = doc["max_suppression"];
    if (!m.IsNumber() || m.GetDouble() < 0 || m.GetDouble() > 1) return bad("max_suppression", "must be a number 0..1");
    study.max_suppression = m.GetDouble();
  }
  if (doc.HasMember("dates")) {
    auto d = get_string(doc["dates"], "dates", 16);
    if (!d) return tl::unexpected(d.error());
    if (*d == "shift") study.dates = DatesMode::kShift;
    else if (*d == "relative") study.dates = DatesMode::kRelative;
    else return bad("dates", "must be shift or relative");
  }
  return study;
}

Result<Study> load_study(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return core::fail(core::Code::kNotFound, "no_study", "cannot read the study definition file");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return parse_study(text);
}

}  // namespace telehub::research
