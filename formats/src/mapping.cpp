// Device mapping templates: parsing and validating a template, then applying it to vendor
// payloads. The language is described in include/telehub/formats/mapping.h.
//
// Two phases keep the payload path simple: parse() turns the template JSON into plain structs
// (every pointer pre-split into tokens, every code checked against the code table), so apply()
// only walks the payload and never has to validate the template again. Error messages carry
// template paths and pointer text from the template, never payload content.
#include "telehub/formats/mapping.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <system_error>
#include <utility>
#include <variant>

#include <rapidjson/document.h>

#include "telehub/core/codes.h"
#include "telehub/envelope/json.h"

namespace telehub::formats {
namespace {

using rapidjson::Value;

constexpr std::size_t kMaxSets = 16;
constexpr std::size_t kMaxReadingsPerSet = 32;
constexpr std::size_t kMaxComponents = 16;
constexpr std::size_t kMaxMatch = 16;
constexpr std::size_t kMaxPointerLength = 256;
constexpr std::size_t kMaxUnitLength = 64;
constexpr std::size_t kMaxUnitMapEntries = 64;
constexpr std::size_t kMaxDeviceString = 128;
constexpr std::size_t kMaxNameLength = 64;
constexpr std::size_t kMaxStringNumberLength = 64;
// Latest instant a payload time may name: 9999-12-31T23:59:59.999Z (RFC 3339 years are 4 digits).
constexpr std::int64_t kMaxUnixMillis = 253402300799999;

// ---------------------------------------------------------------------------------------------
// RFC 6901 JSON pointers.

struct Pointer {
  std::string text;                 // as written in the template (safe to print)
  std::vector<std::string> tokens;  // unescaped reference tokens
};

// Parses pointer text; nullopt when it is not a valid RFC 6901 pointer (section 3: "" or a
// sequence of "/" reference-token, where "~" must be followed by "0" or "1").
std::optional<Pointer> parse_pointer(std::string_view text) {
  Pointer p;
  p.text = std::string(text);
  if (text.empty()) return p;
  if (text.front() != '/') return std::nullopt;
  std::string token;
  for (std::size_t i = 1; i <= text.size(); ++i) {
    if (i == text.size() || text[i] == '/') {
      p.tokens.push_back(std::move(token));
      token.clear();
      continue;
    }
    if (text[i] == '~') {
      if (i + 1 >= text.size()) return std::nullopt;
      if (text[i + 1] == '0') token += '~';
      else if (text[i + 1] == '1') token += '/';
      else return std::nullopt;
      ++i;
      continue;
    }
    token += text[i];
  }
  return p;
}

// An array index token (RFC 6901 section 4): "0" or digits without a leading zero.
std::optional<rapidjson::SizeType> array_index(const std::string& token) {
  if (token.empty() || token.size() > 9) return std::nullopt;
  if (token.size() > 1 && token[0] == '0') return std::nullopt;
  rapidjson::SizeType index = 0;
  for (char c : token) {
    if (c < '0' || c > '9') return std::nullopt;
    index = index * 10 + static_cast<rapidjson::SizeType>(c - '0');
  }
  return index;
}

// The value `p` refers to inside `root`, or nullptr when there is none. JSON null counts as
// absent (vendors write null for "not measured").
const Value* resolve(const Value& root, const Pointer& p) {
  const Value* v = &root;
  for (const std::string& token : p.tokens) {
    if (v->IsObject()) {
      const auto it = v->FindMember(Value(rapidjson::StringRef(token.data(), static_cast<rapidjson::SizeType>(token.size()))));
      if (it == v->MemberEnd()) return nullptr;
      v = &it->value;
    } else if (v->IsArray()) {
      const auto index = array_index(token);
      if (!index || *index >= v->Size()) return nullptr;
      v = &(*v)[*index];
    } else {
      return nullptr;
    }
  }
  return v->IsNull() ? nullptr : v;
}

// ---------------------------------------------------------------------------------------------
// The parsed template.

enum class NumberType { kNumber, kBoolean, kStringNumber };
enum class TimeFormat { kRfc3339, kUnixSeconds, kUnixMillis };

struct NumberSource {
  std::optional<double> constant;
  Pointer pointer;
  NumberType type = NumberType::kNumber;
  double scale = 1;
};

struct UnitSource {
  std::optional<std::string> constant;
  Pointer pointer;
  std::optional<std::map<std::string, std::string, std::less<>>> map;
};

struct StringSource {
  std::optional<std::string> constant;
  Pointer pointer;
};

struct ComponentSpec {
  std::string path;  // "sets[0].readings[1].components[2]"
  std::string code;
  NumberSource value;
  UnitSource unit;
  bool optional = false;
};

struct ReadingSpec {
  std::string path;
  std::string code;
  bool panel = false;
  NumberSource value;  // not panels
  UnitSource unit;     // not panels
  std::vector<ComponentSpec> components;  // panels
  bool optional = false;
};

struct MatchSpec {
  Pointer pointer;
  std::variant<std::monostate, std::string, double, bool> equals;
  std::optional<bool> exists;
};

struct TimeSpec {
  Pointer pointer;
  TimeFormat format = TimeFormat::kRfc3339;
};

struct SetSpec {
  std::string path;
  std::vector<MatchSpec> match;
  std::optional<Pointer> each;
  std::optional<TimeSpec> time;
  std::vector<ReadingSpec> readings;
};

struct DeviceSpec {
  std::optional<StringSource> manufacturer, model, serial;
};

// "subject": where the payload names the patient, for matching against the identity vault.
struct SubjectSpec {
  std::optional<StringSource> bsn, record_system, record_value;
};

// ---------------------------------------------------------------------------------------------
// Template parsing: each function returns an error message "<path>: <problem>" or fills `out`.

class TemplateParser {
 public:
  explicit TemplateParser(std::string_view source) : source_(source) {}

  tl::unexpected<core::Error> error(const std::string& path, std::string_view problem) const {
    return core::fail(core::Code::kInvalidArgument, "bad_template",
                      source_ + ": " + (path.empty() ? std::string() : path + ": ") + std::string(problem));
  }

  // Every member of `object` must be in `allowed`, and no member may appear twice.
  Status members(const Value& object, const std::string& path, std::initializer_list<std::string_view> allowed) const {
    for (auto it = object.MemberBegin(); it != object.MemberEnd(); ++it) {
      const std::string_view name(it->name.GetString(), it->name.GetStringLength());
      if (std::find(allowed.begin(), allowed.end(), name) == allowed.end())
        return error(path, "unknown member (allowed: " + join(allowed) + ")");
      for (auto other = object.MemberBegin(); other != it; ++other) {
        if (std::string_view(other->name.GetString(), other->name.GetStringLength()) == name)
          return error(path, "duplicate member");
      }
    }
    return {};
  }

  static const Value* member(const Value& object, std::string_view name) {
    const auto it = object.FindMember(Value(rapidjson::StringRef(name.data(), static_cast<rapidjson::SizeType>(name.size()))));
    return it == object.MemberEnd() ? nullptr : &it->value;
  }

  Result<Pointer> pointer(const Value& v, const std::string& path) const {
    if (!v.IsString()) return error(path, "must be a JSON pointer string");
    const std::string_view text(v.GetString(), v.GetStringLength());
    if (text.size() > kMaxPointerLength) return error(path, "pointer is too long");
    auto p = parse_pointer(text);
    if (!p) return error(path, "not a valid JSON pointer (RFC 6901)");
    return std::move(*p);
  }

  Result<bool> boolean(const Value& object, std::string_view name, const std::string& path, bool fallback) const {
    const Value* v = member(object, name);
    if (!v) return fallback;
    if (!v->IsBool()) return error(path + "." + std::string(name), "must be true or false");
    return v->GetBool();
  }

  // {"const": number} or {"pointer": p, "type": ..., "scale": x}
  Result<NumberSource> number_source(const Value& v, const std::string& path) const {
    if (!v.IsObject()) return error(path, "must be an object with \"const\" or \"pointer\"");
    if (auto ok = members(v, path, {"const", "pointer", "type", "scale"}); !ok) return tl::unexpected(ok.error());
    NumberSource s;
    const Value* c = member(v, "const");
    const Value* p = member(v, "pointer");
    if ((c == nullptr) == (p == nullptr)) return error(path, "needs exactly one of \"const\" and \"pointer\"");
    if (c) {
      if (member(v, "type") || member(v, "scale")) return error(path, "\"type\" and \"scale\" apply to pointers only");
      if (!c->IsNumber() || !std::isfinite(c->GetDouble())) return error(path + ".const", "must be a finite number");
      s.constant = c->GetDouble();
      return s;
    }
    auto ptr = pointer(*p, path + ".pointer");
    if (!ptr) return tl::unexpected(ptr.error());
    s.pointer = std::move(*ptr);
    if (const Value* t = member(v, "type")) {
      const std::string_view name = t->IsString() ? std::string_view(t->GetString(), t->GetStringLength()) : "";
      if (name == "number") s.type = NumberType::kNumber;
      else if (name == "boolean") s.type = NumberType::kBoolean;
      else if (name == "string-number") s.type = NumberType::kStringNumber;
      else return error(path + ".type", "must be \"number\", \"boolean\" or \"string-number\"");
    }
    if (const Value* f = member(v, "scale")) {
      if (s.type == NumberType::kBoolean) return error(path + ".scale", "does not apply to booleans");
      if (!f->IsNumber() || !std::isfinite(f->GetDouble()) || f->GetDouble() == 0)
        return error(path + ".scale", "must be a finite non-zero number");
      s.scale = f->GetDouble();
    }
    return s;
  }

  static bool valid_unit_text(const Value& v) {
    return v.IsString() && v.GetStringLength() > 0 && v.GetStringLength() <= kMaxUnitLength;
  }

  // {"const": "mm[Hg]"} or {"pointer": p, "map": {"mmHg": "mm[Hg]", ...}}
  Result<UnitSource> unit_source(const Value& v, const std::string& path) const {
    if (!v.IsObject()) return error(path, "must be an object with \"const\" or \"pointer\"");
    if (auto ok = members(v, path, {"const", "pointer", "map"}); !ok) return tl::unexpected(ok.error());
    UnitSource s;
    const Value* c = member(v, "const");
    const Value* p = member(v, "pointer");
    if ((c == nullptr) == (p == nullptr)) return error(path, "needs exactly one of \"const\" and \"pointer\"");
    if (c) {
      if (member(v, "map")) return error(path + ".map", "applies to pointers only");
      if (!valid_unit_text(*c)) return error(path + ".const", "must be a UCUM code of 1..64 characters");
      s.constant = std::string(c->GetString(), c->GetStringLength());
      return s;
    }
    auto ptr = pointer(*p, path + ".pointer");
    if (!ptr) return tl::unexpected(ptr.error());
    s.pointer = std::move(*ptr);
    if (const Value* m = member(v, "map")) {
      if (!m->IsObject() || m->MemberCount() == 0 || m->MemberCount() > kMaxUnitMapEntries)
        return error(path + ".map", "must be an object of 1..64 unit strings");
      std::map<std::string, std::string, std::less<>> map;
      for (auto it = m->MemberBegin(); it != m->MemberEnd(); ++it) {
        if (!valid_unit_text(it->value)) return error(path + ".map", "every entry must be a UCUM code of 1..64 characters");
        std::string key(it->name.GetString(), it->name.GetStringLength());
        if (!map.emplace(std::move(key), std::string(it->value.GetString(), it->value.GetStringLength())).second)
          return error(path + ".map", "duplicate member");
      }
      s.map = std::move(map);
    }
    return s;
  }

  Result<StringSource> string_source(const Value& v, const std::string& path) const {
    if (!v.IsObject()) return error(path, "must be an object with \"const\" or \"pointer\"");
    if (auto ok = members(v, path, {"const", "pointer"}); !ok) return tl::unexpected(ok.error());
    const Value* c = member(v, "const");
    const Value* p = member(v, "pointer");
    if ((c == nullptr) == (p == nullptr)) return error(path, "needs exactly one of \"const\" and \"pointer\"");
    StringSource s;
    if (c) {
      if (!c->IsString() || c->GetStringLength() == 0 || c->GetStringLength() > kMaxDeviceString)
        return error(path + ".const", "must be a string of 1..128 characters");
      s.constant = std::string(c->GetString(), c->GetStringLength());
      return s;
    }
    auto ptr = pointer(*p, path + ".pointer");
    if (!ptr) return tl::unexpected(ptr.error());
    s.pointer = std::move(*ptr);
    return s;
  }

  Result<const core::CodeInfo*> code(const Value& object, const std::string& path) const {
    const Value* c = member(object, "code");
    if (!c) return error(path + ".code", "missing");
    if (!c->IsString()) return error(path + ".code", "must be a string");
    const core::CodeInfo* info = core::find_code(std::string_view(c->GetString(), c->GetStringLength()));
    if (!info) return error(path + ".code", "not a known code");
    return info;
  }

  Result<ComponentSpec> component(const Value& v, const std::string& path) const {
    if (!v.IsObject()) return error(path, "must be an object");
    if (auto ok = members(v, path, {"code", "value", "unit", "optional"}); !ok) return tl::unexpected(ok.error());
    ComponentSpec c;
    c.path = path;
    auto info = code(v, path);
    if (!info) return tl::unexpected(info.error());
    if ((*info)->panel) return error(path + ".code", "a panel cannot be a component");
    c.code = std::string((*info)->loinc);
    const Value* value = member(v, "value");
    const Value* unit = member(v, "unit");
    if (!value) return error(path + ".value", "missing");
    if (!unit) return error(path + ".unit", "missing");
    auto vs = number_source(*value, path + ".value");
    if (!vs) return tl::unexpected(vs.error());
    auto us = unit_source(*unit, path + ".unit");
    if (!us) return tl::unexpected(us.error());
    auto optional = boolean(v, "optional", path, false);
    if (!optional) return tl::unexpected(optional.error());
    c.value = std::move(*vs);
    c.unit = std::move(*us);
    c.optional = *optional;
    return c;
  }

  Result<ReadingSpec> reading(const Value& v, const std::string& path) const {
    if (!v.IsObject()) return error(path, "must be an object");
    if (auto ok = members(v, path, {"code", "value", "unit", "components", "optional"}); !ok) return tl::unexpected(ok.error());
    ReadingSpec r;
    r.path = path;
    auto info = code(v, path);
    if (!info) return tl::unexpected(info.error());
    r.code = std::string((*info)->loinc);
    r.panel = (*info)->panel;
    auto optional = boolean(v, "optional", path, false);
    if (!optional) return tl::unexpected(optional.error());
    r.optional = *optional;
    const Value* value = member(v, "value");
    const Value* unit = member(v, "unit");
    const Value* components = member(v, "components");
    if (r.panel) {
      if (value) return error(path + ".value", "a panel has no value of its own");
      if (unit) return error(path + ".unit", "a panel has no unit of its own");
      if (!components) return error(path + ".components", "missing (the code is a panel)");
      if (!components->IsArray() || components->Empty() || components->Size() > kMaxComponents)
        return error(path + ".components", "must be an array of 1..16 components");
      for (rapidjson::SizeType i = 0; i < components->Size(); ++i) {
        auto c = component((*components)[i], path + ".components[" + std::to_string(i) + "]");
        if (!c) return tl::unexpected(c.error());
        r.components.push_back(std::move(*c));
      }
      return r;
    }
    if (components) return error(path + ".components", "only a panel code has components");
    if (!value) return error(path + ".value", "missing");
    if (!unit) return error(path + ".unit", "missing");
    auto vs = number_source(*value, path + ".value");
    if (!vs) return tl::unexpected(vs.error());
    auto us = unit_source(*unit, path + ".unit");
    if (!us) return tl::unexpected(us.error());
    r.value = std::move(*vs);
    r.unit = std::move(*us);
    return r;
  }

  Result<MatchSpec> match(const Value& v, const std::string& path) const {
    if (!v.IsObject()) return error(path, "must be an object");
    if (auto ok = members(v, path, {"pointer", "equals", "exists"}); !ok) return tl::unexpected(ok.error());
    const Value* p = member(v, "pointer");
    if (!p) return error(path + ".pointer", "missing");
    MatchSpec m;
    auto ptr = pointer(*p, path + ".pointer");
    if (!ptr) return tl::unexpected(ptr.error());
    m.pointer = std::move(*ptr);
    const Value* equals = member(v, "equals");
    const Value* exists = member(v, "exists");
    if ((equals == nullptr) == (exists == nullptr)) return error(path, "needs exactly one of \"equals\" and \"exists\"");
    if (exists) {
      if (!exists->IsBool()) return error(path + ".exists", "must be true or false");
      m.exists = exists->GetBool();
    } else if (equals->IsString()) {
      m.equals = std::string(equals->GetString(), equals->GetStringLength());
    } else if (equals->IsBool()) {
      m.equals = equals->GetBool();
    } else if (equals->IsNumber()) {
      m.equals = equals->GetDouble();
    } else {
      return error(path + ".equals", "must be a string, number or boolean");
    }
    return m;
  }

  Result<TimeSpec> time(const Value& v, const std::string& path) const {
    if (!v.IsObject()) return error(path, "must be an object");
    if (auto ok = members(v, path, {"pointer", "format"}); !ok) return tl::unexpected(ok.error());
    const Value* p = member(v, "pointer");
    const Value* f = member(v, "format");
    if (!p) return error(path + ".pointer", "missing");
    if (!f) return error(path + ".format", "missing");
    TimeSpec t;
    auto ptr = pointer(*p, path + ".pointer");
    if (!ptr) return tl::unexpected(ptr.error());
    t.pointer = std::move(*ptr);
    const std::string_view name = f->IsString() ? std::string_view(f->GetString(), f->GetStringLength()) : "";
    if (name == "rfc3339") t.format = TimeFormat::kRfc3339;
    else if (name == "unix_s") t.format = TimeFormat::kUnixSeconds;
    else if (name == "unix_ms") t.format = TimeFormat::kUnixMillis;
    else return error(path + ".format", "must be \"rfc3339\", \"unix_s\" or \"unix_ms\"");
    return t;
  }

  Result<SetSpec> set(const Value& v, const std::string& path) const {
    if (!v.IsObject()) return error(path, "must be an object");
    if (auto ok = members(v, path, {"match", "each", "time", "readings"}); !ok) return tl::unexpected(ok.error());
    SetSpec s;
    s.path = path;
    if (const Value* m = member(v, "match")) {
      if (!m->IsArray() || m->Empty() || m->Size() > kMaxMatch) return error(path + ".match", "must be an array of 1..16 conditions");
      for (rapidjson::SizeType i = 0; i < m->Size(); ++i) {
        auto c = match((*m)[i], path + ".match[" + std::to_string(i) + "]");
        if (!c) return tl::unexpected(c.error());
        s.match.push_back(std::move(*c));
      }
    }
    if (const Value* e = member(v, "each")) {
      auto ptr = pointer(*e, path + ".each");
      if (!ptr) return tl::unexpected(ptr.error());
      s.each = std::move(*ptr);
    }
    if (const Value* t = member(v, "time")) {
      auto ts = time(*t, path + ".time");
      if (!ts) return tl::unexpected(ts.error());
      s.time = std::move(*ts);
    }
    const Value* readings = member(v, "readings");
    if (!readings) return error(path + ".readings", "missing");
    if (!readings->IsArray() || readings->Empty() || readings->Size() > kMaxReadingsPerSet)
      return error(path + ".readings", "must be an array of 1..32 readings");
    for (rapidjson::SizeType i = 0; i < readings->Size(); ++i) {
      auto r = reading((*readings)[i], path + ".readings[" + std::to_string(i) + "]");
      if (!r) return tl::unexpected(r.error());
      s.readings.push_back(std::move(*r));
    }
    return s;
  }

 private:
  static std::string join(std::initializer_list<std::string_view> names) {
    std::string out;
    for (auto n : names) {
      if (!out.empty()) out += ", ";
      out += n;
    }
    return out;
  }

  std::string source_;
};

bool valid_template_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; });
}

}  // namespace

struct MappingTemplate::Impl {
  std::string name;
  DeviceSpec device;
  SubjectSpec subject;
  std::vector<SetSpec> sets;

  // Payload-side errors: "template <name>: <path>: <problem>".
  tl::unexpected<core::Error> payload_error(const std::string& path, const std::string& problem) const {
    return core::fail(core::Code::kInvalidArgument, "bad_payload", "template " + name + ": " + path + ": " + problem);
  }

  // The number a source yields; nullopt (with `missing` set) when its pointer finds nothing.
  Result<std::optional<double>> number(const NumberSource& s, const Value& root, const std::string& path) const {
    if (s.constant) return std::optional<double>(*s.constant);
    const Value* v = resolve(root, s.pointer);
    if (!v) return std::optional<double>();
    double x = 0;
    switch (s.type) {
      case NumberType::kNumber:
        if (!v->IsNumber()) return payload_error(path, pointer_text(s.pointer) + " is not a number");
        x = v->GetDouble();
        break;
      case NumberType::kBoolean:
        if (!v->IsBool()) return payload_error(path, pointer_text(s.pointer) + " is not a boolean");
        x = v->GetBool() ? 1 : 0;
        break;
      case NumberType::kStringNumber: {
        if (!v->IsString()) return payload_error(path, pointer_text(s.pointer) + " is not a string");
        const char* first = v->GetString();
        const char* last = first + v->GetStringLength();
        const auto r = v->GetStringLength() <= kMaxStringNumberLength
                           ? std::from_chars(first, last, x, std::chars_format::general)
                           : std::from_chars_result{first, std::errc::invalid_argument};
        // from_chars also reads "inf" and "nan"; the finiteness check below refuses them.
        if (r.ec != std::errc() || r.ptr != last)
          return payload_error(path, pointer_text(s.pointer) + " is not a decimal number");
        break;
      }
    }
    x *= s.scale;
    if (!std::isfinite(x)) return payload_error(path, pointer_text(s.pointer) + " is not a finite number");
    return std::optional<double>(x);
  }

  Result<std::optional<std::string>> unit(const UnitSource& s, const Value& root, const std::string& path) const {
    if (s.constant) return std::optional<std::string>(*s.constant);
    const Value* v = resolve(root, s.pointer);
    if (!v) return std::optional<std::string>();
    if (!v->IsString()) return payload_error(path, pointer_text(s.pointer) + " is not a string");
    const std::string_view text(v->GetString(), v->GetStringLength());
    if (s.map) {
      const auto it = s.map->find(text);
      if (it == s.map->end())
        return core::fail(core::Code::kInvalidArgument, "bad_unit",
                          "template " + name + ": " + path + ": " + pointer_text(s.pointer) + " is not a unit of the map");
      return std::optional<std::string>(it->second);
    }
    if (text.empty() || text.size() > kMaxUnitLength)
      return core::fail(core::Code::kInvalidArgument, "bad_unit",
                        "template " + name + ": " + path + ": " + pointer_text(s.pointer) + " is not a unit of 1..64 characters");
    return std::optional<std::string>(std::string(text));
  }

  Result<core::TimePoint> time(const TimeSpec& t, const Value& root, const std::string& path) const {
    const Value* v = resolve(root, t.pointer);
    if (!v) return payload_error(path, pointer_text(t.pointer) + " missing");
    if (t.format == TimeFormat::kRfc3339) {
      if (!v->IsString()) return payload_error(path, pointer_text(t.pointer) + " is not a string");
      auto parsed = core::parse_rfc3339(std::string_view(v->GetString(), v->GetStringLength()));
      if (!parsed) return payload_error(path, pointer_text(t.pointer) + " is not an RFC 3339 date-time");
      return *parsed;
    }
    if (!v->IsNumber()) return payload_error(path, pointer_text(t.pointer) + " is not a number");
    const std::int64_t factor = t.format == TimeFormat::kUnixSeconds ? 1000 : 1;
    std::int64_t ms = 0;
    bool in_range = false;
    if (v->IsInt64()) {
      const std::int64_t n = v->GetInt64();
      in_range = n >= 0 && n <= kMaxUnixMillis / factor;
      if (in_range) ms = n * factor;
    } else {
      const double x = v->GetDouble() * static_cast<double>(factor);
      in_range = std::isfinite(x) && x >= 0 && x <= static_cast<double>(kMaxUnixMillis);
      if (in_range) ms = static_cast<std::int64_t>(std::floor(x));  // truncated to ms as RFC 3339 input is
    }
    if (!in_range) return payload_error(path, pointer_text(t.pointer) + " is out of range");
    return core::from_unix_millis(ms);
  }

  Result<std::string> device_string(const std::optional<StringSource>& s, const Value& root, const std::string& path) const {
    if (!s) return std::string();
    if (s->constant) return *s->constant;
    const Value* v = resolve(root, s->pointer);
    if (!v) return std::string();
    if (v->IsString()) {
      if (v->GetStringLength() > kMaxDeviceString) return payload_error(path, pointer_text(s->pointer) + " is longer than 128 characters");
      return std::string(v->GetString(), v->GetStringLength());
    }
    if (v->IsUint64()) return std::to_string(v->GetUint64());
    if (v->IsInt64()) return std::to_string(v->GetInt64());
    return payload_error(path, pointer_text(s->pointer) + " is not a string or an integer");
  }

  static bool holds(const MatchSpec& m, const Value& root) {
    const Value* v = resolve(root, m.pointer);
    if (m.exists) return (v != nullptr) == *m.exists;
    if (!v) return false;
    if (const auto* s = std::get_if<std::string>(&m.equals))
      return v->IsString() && std::string_view(v->GetString(), v->GetStringLength()) == *s;
    if (const auto* d = std::get_if<double>(&m.equals)) return v->IsNumber() && v->GetDouble() == *d;
    if (const auto* b = std::get_if<bool>(&m.equals)) return v->IsBool() && v->GetBool() == *b;
    return false;
  }

  static std::string pointer_text(const Pointer& p) { return p.text.empty() ? std::string("(whole element)") : p.text; }

  // Appends the readings of one element (the payload, or one element of "each").
  Status element(const SetSpec& set, const Value& root, const std::string& path, core::TimePoint now,
                 std::vector<core::Reading>& out) const {
    core::TimePoint when = now;
    if (set.time) {
      auto t = time(*set.time, root, path + ".time");
      if (!t) return tl::unexpected(t.error());
      when = *t;
    }
    for (std::size_t i = 0; i < set.readings.size(); ++i) {
      const ReadingSpec& spec = set.readings[i];
      const std::string rpath = path + ".readings[" + std::to_string(i) + "]";
      core::Reading r;
      r.code = spec.code;
      r.time = when;
      bool skip = false;
      if (spec.panel) {
        for (std::size_t j = 0; j < spec.components.size() && !skip; ++j) {
          const ComponentSpec& cs = spec.components[j];
          const std::string cpath = rpath + ".components[" + std::to_string(j) + "]";
          auto value = number(cs.value, root, cpath + ".value");
          if (!value) return tl::unexpected(value.error());
          auto unit_text = unit(cs.unit, root, cpath + ".unit");
          if (!unit_text) return tl::unexpected(unit_text.error());
          if (!*value || !*unit_text) {
            if (cs.optional) continue;
            if (spec.optional) { skip = true; continue; }
            const Pointer& missing = !*value ? cs.value.pointer : cs.unit.pointer;
            return payload_error(cpath + (!*value ? ".value" : ".unit"), pointer_text(missing) + " missing");
          }
          r.components.push_back(core::Component{cs.code, **value, std::move(**unit_text)});
        }
        if (skip || r.components.empty()) continue;
      } else {
        auto value = number(spec.value, root, rpath + ".value");
        if (!value) return tl::unexpected(value.error());
        auto unit_text = unit(spec.unit, root, rpath + ".unit");
        if (!unit_text) return tl::unexpected(unit_text.error());
        if (!*value || !*unit_text) {
          if (spec.optional) continue;
          const Pointer& missing = !*value ? spec.value.pointer : spec.unit.pointer;
          return payload_error(rpath + (!*value ? ".value" : ".unit"), pointer_text(missing) + " missing");
        }
        r.value = **value;
        r.unit = std::move(**unit_text);
      }
      if (out.size() >= kMaxReadings)
        return payload_error(path, "more than " + std::to_string(kMaxReadings) + " readings");
      out.push_back(std::move(r));
    }
    return {};
  }
};

MappingTemplate::MappingTemplate(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MappingTemplate::MappingTemplate(MappingTemplate&&) noexcept = default;
MappingTemplate& MappingTemplate::operator=(MappingTemplate&&) noexcept = default;
MappingTemplate::~MappingTemplate() = default;

const std::string& MappingTemplate::name() const { return impl_->name; }

Result<MappingTemplate> MappingTemplate::parse(std::string_view json, std::string_view source) {
  const TemplateParser p(source);
  rapidjson::Document doc;
  if (auto ok = envelope::parse_json(json, doc); !ok) return p.error("", "not valid JSON (" + ok.error().message + ")");
  if (!doc.IsObject()) return p.error("", "must be a JSON object");
  if (auto ok = p.members(doc, "(template)", {"template", "description", "device", "subject", "sets"}); !ok)
    return tl::unexpected(ok.error());

  auto impl = std::make_unique<Impl>();
  const Value* name = TemplateParser::member(doc, "template");
  if (!name) return p.error("template", "missing");
  if (!name->IsString() || !valid_template_name(std::string_view(name->GetString(), name->GetStringLength())))
    return p.error("template", "must be 1..64 characters of a-z, 0-9 and '-'");
  impl->name = std::string(name->GetString(), name->GetStringLength());

  if (const Value* d = TemplateParser::member(doc, "description"); d && !d->IsString())
    return p.error("description", "must be a string");

  if (const Value* d = TemplateParser::member(doc, "device")) {
    if (!d->IsObject()) return p.error("device", "must be an object");
    if (auto ok = p.members(*d, "device", {"manufacturer", "model", "serial"}); !ok) return tl::unexpected(ok.error());
    for (auto [field, slot] : {std::pair{"manufacturer", &impl->device.manufacturer}, std::pair{"model", &impl->device.model},
                               std::pair{"serial", &impl->device.serial}}) {
      if (const Value* v = TemplateParser::member(*d, field)) {
        auto s = p.string_source(*v, std::string("device.") + field);
        if (!s) return tl::unexpected(s.error());
        *slot = std::move(*s);
      }
    }
  }

  if (const Value* d = TemplateParser::member(doc, "subject")) {
    if (!d->IsObject()) return p.error("subject", "must be an object");
    if (auto ok = p.members(*d, "subject", {"bsn", "record_system", "record_value"}); !ok) return tl::unexpected(ok.error());
    for (auto [field, slot] : {std::pair{"bsn", &impl->subject.bsn}, std::pair{"record_system", &impl->subject.record_system},
                               std::pair{"record_value", &impl->subject.record_value}}) {
      if (const Value* v = TemplateParser::member(*d, field)) {
        auto s = p.string_source(*v, std::string("subject.") + field);
        if (!s) return tl::unexpected(s.error());
        *slot = std::move(*s);
      }
    }
    if (impl->subject.record_system.has_value() != impl->subject.record_value.has_value())
      return p.error("subject", "record_system and record_value go together");
    if (!impl->subject.bsn && !impl->subject.record_value) return p.error("subject", "needs bsn or record_system/record_value");
  }

  const Value* sets = TemplateParser::member(doc, "sets");
  if (!sets) return p.error("sets", "missing");
  if (!sets->IsArray() || sets->Empty() || sets->Size() > kMaxSets) return p.error("sets", "must be an array of 1..16 sets");
  for (rapidjson::SizeType i = 0; i < sets->Size(); ++i) {
    auto s = p.set((*sets)[i], "sets[" + std::to_string(i) + "]");
    if (!s) return tl::unexpected(s.error());
    impl->sets.push_back(std::move(*s));
  }
  return MappingTemplate(std::move(impl));
}

Result<Decoded> MappingTemplate::apply(std::span<const std::uint8_t> payload, core::TimePoint now) const {
  rapidjson::Document doc;
  const std::string_view text(reinterpret_cast<const char*>(payload.data()), payload.size());
  if (auto ok = envelope::parse_json(text, doc); !ok) return tl::unexpected(ok.error());

  Decoded out;
  bool matched = false;
  for (const SetSpec& set : impl_->sets) {
    if (!std::all_of(set.match.begin(), set.match.end(), [&](const MatchSpec& m) { return Impl::holds(m, doc); })) continue;
    matched = true;
    if (!set.each) {
      if (auto ok = impl_->element(set, doc, set.path, now, out.readings); !ok) return tl::unexpected(ok.error());
      continue;
    }
    const Value* list = resolve(doc, *set.each);
    if (!list || !list->IsArray()) return impl_->payload_error(set.path + ".each", Impl::pointer_text(*set.each) + " is not an array");
    for (rapidjson::SizeType i = 0; i < list->Size(); ++i) {
      if (auto ok = impl_->element(set, (*list)[i], set.path + ".each[" + std::to_string(i) + "]", now, out.readings); !ok)
        return tl::unexpected(ok.error());
    }
  }
  if (!matched) return core::fail(core::Code::kInvalidArgument, "no_match", "template " + impl_->name + ": no set matches the payload");
  if (out.readings.empty())
    return impl_->payload_error("sets", "the payload carries no readings");

  auto manufacturer = impl_->device_string(impl_->device.manufacturer, doc, "device.manufacturer");
  if (!manufacturer) return tl::unexpected(manufacturer.error());
  auto model = impl_->device_string(impl_->device.model, doc, "device.model");
  if (!model) return tl::unexpected(model.error());
  auto serial = impl_->device_string(impl_->device.serial, doc, "device.serial");
  if (!serial) return tl::unexpected(serial.error());
  out.device = DeviceInfo{std::move(*manufacturer), std::move(*model), std::move(*serial)};
  auto bsn = impl_->device_string(impl_->subject.bsn, doc, "subject.bsn");
  if (!bsn) return tl::unexpected(bsn.error());
  auto record_system = impl_->device_string(impl_->subject.record_system, doc, "subject.record_system");
  if (!record_system) return tl::unexpected(record_system.error());
  auto record_value = impl_->device_string(impl_->subject.record_value, doc, "subject.record_value");
  if (!record_value) return tl::unexpected(record_value.error());
  out.subject = SubjectIdentifiers{std::move(*bsn), std::move(*record_system), std::move(*record_value)};
  return out;
}

// ---------------------------------------------------------------------------------------------

Result<MappingSet> MappingSet::load_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    return core::fail(core::Code::kNotFound, "no_mappings", "the mapping template directory does not exist");
  std::vector<std::filesystem::path> files;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".json" && it->is_regular_file(ec)) files.push_back(it->path());
  }
  if (ec) return core::fail(core::Code::kUnavailable, "io", "the mapping template directory cannot be listed");
  std::sort(files.begin(), files.end());

  MappingSet set;
  for (const auto& file : files) {
    const std::string source = file.filename().string();
    std::ifstream in(file, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    if (!in) return core::fail(core::Code::kInvalidArgument, "bad_template", source + ": cannot be read");
    auto t = MappingTemplate::parse(text.str(), source);
    if (!t) return tl::unexpected(t.error());
    if (t->name() != file.stem().string())
      return core::fail(core::Code::kInvalidArgument, "bad_template", source + ": template: does not match the file name");
    set.add(std::move(*t));
  }
  return set;
}

const MappingTemplate* MappingSet::find(std::string_view name) const {
  const auto it = templates_.find(name);
  return it == templates_.end() ? nullptr : &it->second;
}

std::vector<std::string> MappingSet::names() const {
  std::vector<std::string> out;
  for (const auto& [name, t] : templates_) out.push_back(name);
  return out;
}

void MappingSet::add(MappingTemplate t) {
  std::string name = t.name();
  templates_.insert_or_assign(std::move(name), std::move(t));
}

}  // namespace telehub::formats
