// SenML (RFC 8428) JSON: resolution (section 4.6) and conversion to telehub readings. The
// contract is in include/telehub/formats/senml.h; this file also defines
// formats::senml_to_ucum() (declared in units.h) because the unit table belongs to SenML.
#include "telehub/formats/senml.h"

#include <array>
#include <cmath>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <rapidjson/document.h>

#include "telehub/core/codes.h"
#include "telehub/envelope/json.h"
#include "telehub/formats/units.h"

namespace telehub::formats {
namespace {

using core::Code;

// RFC 8428 section 4.5.3: resolved times below 2^28 seconds are relative to "now".
constexpr double kRelativeTimeLimit = 268435456.0;
// Highest base version understood (RFC 8428 section 4.4: a larger one MUST NOT be used).
constexpr std::int64_t kMaxSenmlVersion = 10;
// Device metadata strings longer than this are refused.
constexpr std::size_t kMaxDeviceField = 128;
// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z, in seconds since the Unix epoch.
constexpr double kMinSeconds = -62167219200.0;
constexpr double kMaxSeconds = 253402300799.999;

// Documented measurement names (senml.h); codes of the code table are accepted as they are.
constexpr std::array<SenmlName, 15> kSenmlNames{{
    {"heart-rate", core::loinc::kHeartRate},
    {"hr", core::loinc::kHeartRate},
    {"pulse", core::loinc::kHeartRate},
    {"spo2", core::loinc::kSpO2},
    {"resp-rate", core::loinc::kRespiratoryRate},
    {"body-temp", core::loinc::kBodyTemperature},
    {"weight", core::loinc::kBodyWeight},
    {"systolic", core::loinc::kSystolic},
    {"sys", core::loinc::kSystolic},
    {"diastolic", core::loinc::kDiastolic},
    {"dia", core::loinc::kDiastolic},
    {"glucose", core::loinc::kGlucoseMolar},
    {"steps", core::loinc::kStepsPerDay},
    {"perfusion-index", core::telehub_code::kPerfusionIndex},
    {"irregular-heartbeat", core::telehub_code::kIrregularHeartbeat},
}};

// SenML unit -> UCUM code. Left: units of the RFC 8428 section 12.1 registry (and RFC 8798's
// additions, "beat/min") that telehub's codes can use, plus the aliases docs/payloads.md lists
// ("mmHg", "beats/min", "mg/dl", ...). Right: a unit units::to_canonical() accepts for some code
// (units.h): "[lb_av]" -> kg, "{count}" -> /d, "1" -> % or /d, "/s" -> /min, and so on.
struct UnitMapping {
  std::string_view senml;
  std::string_view ucum;
};
constexpr std::array<UnitMapping, 28> kSenmlUnits{{
    {"", ""},                  // no unit: the code decides (decode_senml)
    {"Cel", "Cel"},            // RFC 8428 12.1
    {"K", "K"},                // RFC 8428 12.1
    {"degF", "[degF]"},        // alias
    {"kg", "kg"},              // RFC 8428 12.1
    {"g", "g"},                // RFC 8428 12.1
    {"lb", "[lb_av]"},         // alias
    {"%", "%"},                // RFC 8428 12.1
    {"/", "1"},                // RFC 8428 12.1 (ratio)
    {"1/min", "/min"},         // RFC 8428 12.1
    {"beat/min", "/min"},      // RFC 8798
    {"beats/min", "/min"},     // alias
    {"breaths/min", "/min"},   // alias
    {"1/s", "/s"},             // RFC 8428 12.1
    {"Pa", "Pa"},              // RFC 8428 12.1
    {"hPa", "hPa"},            // alias
    {"kPa", "kPa"},            // alias
    {"mmHg", "mm[Hg]"},        // alias
    {"mm[Hg]", "mm[Hg]"},      // UCUM code as is
    {"count", "{count}"},      // RFC 8428 12.1
    {"steps", "{count}"},      // alias
    {"mmol/l", "mmol/L"},      // alias
    {"mmol/L", "mmol/L"},      // UCUM code as is
    {"mg/dl", "mg/dL"},        // alias
    {"mg/dL", "mg/dL"},        // UCUM code as is
    {"{count}", "{count}"},    // UCUM code as is
    {"/min", "/min"},          // UCUM code as is
    {"/d", "/d"},              // UCUM code as is
}};

std::string where(std::size_t index) { return "senml[" + std::to_string(index) + "]"; }
std::string where(std::size_t index, std::string_view field) {
  return where(index) + "." + std::string(field);
}

tl::unexpected<core::Error> bad(std::string message) {
  return core::fail(Code::kInvalidArgument, "bad_payload", std::move(message));
}

// RFC 8428 section 4.5.1: [A-Za-z0-9][A-Za-z0-9:./_-]*
bool valid_name(std::string_view name) {
  const auto alnum = [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
  };
  if (name.empty() || !alnum(name.front())) return false;
  for (char c : name) {
    if (!alnum(c) && c != '-' && c != ':' && c != '.' && c != '/' && c != '_') return false;
  }
  return true;
}

// RFC 8428 section 5 / RFC 4648 section 5: base64url with the padding omitted.
bool valid_base64url(std::string_view text) {
  if (text.size() % 4 == 1) return false;
  for (char c : text) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

// The labels of RFC 8428 Table 2, as bits, so a record can say which ones it carried.
enum Label : unsigned {
  kBn = 1u << 0, kBt = 1u << 1, kBu = 1u << 2, kBv = 1u << 3, kBs = 1u << 4, kBver = 1u << 5,
  kN = 1u << 6, kU = 1u << 7, kV = 1u << 8, kVs = 1u << 9, kVb = 1u << 10, kVd = 1u << 11,
  kS = 1u << 12, kT = 1u << 13, kUt = 1u << 14,
};
constexpr unsigned kBaseLabels = kBn | kBt | kBu | kBv | kBs | kBver;
constexpr unsigned kValueLabels = kV | kVs | kVb | kVd;

enum class JsonKind { kString, kNumber, kBool };

struct LabelInfo {
  std::string_view name;
  Label bit;
  JsonKind kind;
};
constexpr std::array<LabelInfo, 15> kLabels{{
    {"bn", kBn, JsonKind::kString}, {"bt", kBt, JsonKind::kNumber},  {"bu", kBu, JsonKind::kString},
    {"bv", kBv, JsonKind::kNumber}, {"bs", kBs, JsonKind::kNumber},  {"bver", kBver, JsonKind::kNumber},
    {"n", kN, JsonKind::kString},   {"u", kU, JsonKind::kString},    {"v", kV, JsonKind::kNumber},
    {"vs", kVs, JsonKind::kString}, {"vb", kVb, JsonKind::kBool},    {"vd", kVd, JsonKind::kString},
    {"s", kS, JsonKind::kNumber},   {"t", kT, JsonKind::kNumber},    {"ut", kUt, JsonKind::kNumber},
}};

// One resolved record and the index of the pack record it came from (for messages).
struct Indexed {
  std::size_t index;
  SenmlRecord record;
};

// The base values in force (RFC 8428 section 4.1): each applies from the record that sets it
// until a later record sets it again.
struct Base {
  std::string name;
  std::string unit;
  double time = 0;
  double value = 0;
  std::optional<double> sum;
  std::optional<std::int64_t> version;
};

Result<std::vector<Indexed>> resolve(std::span<const std::uint8_t> json, core::TimePoint now) {
  const std::string_view text(reinterpret_cast<const char*>(json.data()), json.size());
  rapidjson::Document doc;
  if (auto parsed = envelope::parse_json(text, doc); !parsed) return tl::unexpected(parsed.error());
  if (!doc.IsArray()) return bad("senml: must be an array of records");
  if (doc.Size() > kMaxSenmlRecords) return bad("senml: more than " + std::to_string(kMaxSenmlRecords) + " records");

  const double now_seconds = static_cast<double>(core::to_unix_millis(now)) / 1000.0;
  Base base;
  std::vector<Indexed> out;
  out.reserve(doc.Size());
  for (rapidjson::SizeType i = 0; i < doc.Size(); ++i) {
    const rapidjson::Value& object = doc[i];
    if (!object.IsObject()) return bad(where(i) + ": must be an object");

    // Collect the known labels; refuse duplicates, wrong types and must-understand labels.
    std::array<const rapidjson::Value*, kLabels.size()> field{};
    unsigned present = 0;
    for (auto m = object.MemberBegin(); m != object.MemberEnd(); ++m) {
      const std::string_view label(m->name.GetString(), m->name.GetStringLength());
      std::size_t k = 0;
      while (k < kLabels.size() && kLabels[k].name != label) ++k;
      if (k == kLabels.size()) {
        // RFC 8428 section 4.4: unknown labels are ignored unless they end in '_'.
        if (!label.empty() && label.back() == '_') return bad(where(i) + ": has a must-understand field telehub does not support");
        continue;
      }
      const LabelInfo& info = kLabels[k];
      if (present & info.bit) return bad(where(i, info.name) + ": appears more than once");
      const rapidjson::Value& v = m->value;
      switch (info.kind) {
        case JsonKind::kString:
          if (!v.IsString()) return bad(where(i, info.name) + ": must be a string");
          break;
        case JsonKind::kNumber:
          if (!v.IsNumber()) return bad(where(i, info.name) + ": must be a number");
          break;
        case JsonKind::kBool:
          if (!v.IsBool()) return bad(where(i, info.name) + ": must be a boolean");
          break;
      }
      present |= info.bit;
      field[k] = &v;
    }
    const auto get = [&](Label bit) -> const rapidjson::Value& {
      std::size_t k = 0;
      while (kLabels[k].bit != bit) ++k;
      return *field[k];
    };
    const auto str = [&](Label bit) {
      const rapidjson::Value& v = get(bit);
      return std::string(v.GetString(), v.GetStringLength());
    };

    // Base fields (RFC 8428 section 4.1) first: they apply to this record too.
    if (present & kBver) {
      const rapidjson::Value& v = get(kBver);
      if (!v.IsInt64() || v.GetInt64() < 1) return bad(where(i, "bver") + ": must be a positive integer");
      if (v.GetInt64() > kMaxSenmlVersion) return bad(where(i, "bver") + ": version is newer than 10");
      // Section 4.4: all records of a pack have the same version.
      if (base.version && *base.version != v.GetInt64()) return bad(where(i, "bver") + ": differs from an earlier record");
      base.version = v.GetInt64();
    }
    if (present & kBn) base.name = str(kBn);
    if (present & kBu) base.unit = str(kBu);
    if (present & kBt) base.time = get(kBt).GetDouble();
    if (present & kBv) base.value = get(kBv).GetDouble();
    if (present & kBs) base.sum = get(kBs).GetDouble();

    const unsigned values = present & kValueLabels;
    if (values != 0 && (values & (values - 1)) != 0) return bad(where(i) + ": has more than one value field");
    if (values == 0 && !(present & kS)) {
      // A record that only sets base fields (RFC 8428 section 5.1.7's first record) carries no
      // measurement; any other record without a value or sum is refused (section 4.2).
      if ((present & kBaseLabels) != 0 && (present & ~kBaseLabels) == 0) continue;
      return bad(where(i) + ": has no value");
    }

    SenmlRecord r;
    if (present & kN) r.own_name = str(kN);
    r.name = base.name + r.own_name;
    if (r.name.empty()) return bad(where(i, "n") + ": name is empty");
    if (!valid_name(r.name)) return bad(where(i, "n") + ": name has characters RFC 8428 section 4.5.1 does not allow");
    r.unit = (present & kU) ? str(kU) : base.unit;

    const double t = (present & kT) ? get(kT).GetDouble() : 0.0;
    double time = base.time + t;
    if (std::isfinite(time) && time < kRelativeTimeLimit) time += now_seconds;  // section 4.5.3
    if (!std::isfinite(time)) return bad(where(i, "t") + ": time out of range");
    r.time = time;
    if (present & kUt) r.update_time = get(kUt).GetDouble();

    if (present & kV) {
      const double v = base.value + get(kV).GetDouble();
      if (!std::isfinite(v)) return bad(where(i, "v") + ": value out of range");
      r.value = v;
    }
    // Section 4.5.4: a base sum alone, or a sum alone, counts the missing one as zero.
    if ((present & kS) || base.sum) {
      const double s = base.sum.value_or(0.0) + ((present & kS) ? get(kS).GetDouble() : 0.0);
      if (!std::isfinite(s)) return bad(where(i, "s") + ": sum out of range");
      r.sum = s;
    }
    if (present & kVs) r.string_value = str(kVs);
    if (present & kVb) r.bool_value = get(kVb).GetBool();
    if (present & kVd) {
      r.data_value = str(kVd);
      if (!valid_base64url(*r.data_value)) return bad(where(i, "vd") + ": must be base64url without padding");
    }
    out.push_back({i, std::move(r)});
  }
  return out;
}

std::string_view measurement_key(const SenmlRecord& r) {
  if (!r.own_name.empty()) return r.own_name;
  const std::string_view name = r.name;
  const auto cut = name.find_last_of(":/");
  return cut == std::string_view::npos ? name : name.substr(cut + 1);
}

const core::CodeInfo* lookup(std::string_view key) {
  if (const core::CodeInfo* info = core::find_code(key)) return info;
  for (const SenmlName& n : kSenmlNames) {
    if (n.name == key) return core::find_code(n.code);
  }
  return nullptr;
}

Result<core::TimePoint> to_time_point(std::size_t index, double seconds) {
  if (!(seconds >= kMinSeconds && seconds <= kMaxSeconds)) return bad(where(index, "t") + ": time outside the years 0000..9999");
  return core::from_unix_millis(std::llround(seconds * 1000.0));
}

// A blood-pressure panel being assembled: its members, by the pack index that supplied them.
struct Panel {
  std::size_t slot;  // position in the output
  std::optional<std::pair<std::size_t, core::Component>> systolic, diastolic, irregular;
};

}  // namespace

std::span<const SenmlName> senml_names() { return kSenmlNames; }

std::optional<std::string> senml_to_ucum(std::string_view senml_unit) {
  for (const UnitMapping& m : kSenmlUnits) {
    if (m.senml == senml_unit) return std::string(m.ucum);
  }
  return std::nullopt;
}

Result<std::vector<SenmlRecord>> resolve_senml(std::span<const std::uint8_t> json, core::TimePoint now) {
  auto resolved = resolve(json, now);
  if (!resolved) return tl::unexpected(std::move(resolved.error()));
  std::vector<SenmlRecord> out;
  out.reserve(resolved->size());
  for (Indexed& r : *resolved) out.push_back(std::move(r.record));
  return out;
}

Result<Decoded> decode_senml(std::span<const std::uint8_t> json, core::TimePoint now) {
  auto resolved = resolve(json, now);
  if (!resolved) return tl::unexpected(std::move(resolved.error()));

  Decoded decoded;
  // Output slots in pack order; a panel's slot is filled in at the end.
  std::vector<core::Reading> slots;
  std::vector<Panel> panels;
  std::map<std::int64_t, std::size_t> panel_at;  // time (ms) -> index into panels

  for (const auto& [index, r] : *resolved) {
    const std::string_view key = measurement_key(r);

    if (r.string_value) {
      std::string* target = key == "manufacturer" ? &decoded.device.manufacturer
                            : key == "model"      ? &decoded.device.model
                            : key == "serial"     ? &decoded.device.serial
                                                  : nullptr;
      if (target == nullptr) return bad(where(index, "vs") + ": string value for a numeric measurement");
      if (r.string_value->size() > kMaxDeviceField) return bad(where(index, "vs") + ": longer than 128 bytes");
      if (!target->empty()) return bad(where(index, "vs") + ": device field given twice");
      *target = *r.string_value;
      continue;
    }
    if (r.data_value) return bad(where(index, "vd") + ": data value for a numeric measurement");

    const core::CodeInfo* info = lookup(key);
    if (info == nullptr) return core::fail(Code::kInvalidArgument, "unknown_code", where(index, "n") + ": unknown measurement name");
    if (info->panel) return bad(where(index, "n") + ": a panel has no value of its own");

    auto time = to_time_point(index, r.time);
    if (!time) return tl::unexpected(std::move(time.error()));

    const bool bp_member = info->loinc == core::loinc::kSystolic || info->loinc == core::loinc::kDiastolic;
    const bool flag = info->boolean;
    if (r.bool_value && !flag) return bad(where(index, "vb") + ": boolean value for a numeric measurement");
    if (flag && !r.bool_value) return bad(where(index) + ": a flag needs a boolean value (vb)");

    core::Component component;
    component.code = std::string(info->loinc);
    if (flag) {
      component.value = *r.bool_value ? 1.0 : 0.0;
      component.unit = "1";
    } else {
      // RFC 8428 section 4.2: v, or the sum when there is no v.
      component.value = r.value ? *r.value : *r.sum;
      auto unit = senml_to_ucum(r.unit);
      if (!unit) return core::fail(Code::kInvalidArgument, "bad_unit", where(index, "u") + ": unit has no UCUM mapping");
      if (unit->empty() && info->ucum != "1") return core::fail(Code::kInvalidArgument, "bad_unit", where(index, "u") + ": missing unit");
      component.unit = std::move(*unit);
    }

    if (!bp_member && !flag) {
      core::Reading reading;
      reading.code = std::move(component.code);
      reading.value = component.value;
      reading.unit = std::move(component.unit);
      reading.time = *time;
      slots.push_back(std::move(reading));
      continue;
    }

    // Blood pressure (and its irregular-heartbeat flag): one panel 85354-9 per time.
    const std::int64_t ms = core::to_unix_millis(*time);
    auto [it, inserted] = panel_at.try_emplace(ms, panels.size());
    if (inserted) {
      core::Reading panel;
      panel.code = std::string(core::loinc::kBloodPressurePanel);
      panel.time = *time;
      panels.push_back(Panel{slots.size(), {}, {}, {}});
      slots.push_back(std::move(panel));
    }
    Panel& p = panels[it->second];
    auto& member = flag ? p.irregular : info->loinc == core::loinc::kSystolic ? p.systolic : p.diastolic;
    if (member) return bad(where(index) + ": a second value for the same blood-pressure component at the same time");
    member.emplace(index, std::move(component));
  }

  for (Panel& p : panels) {
    if (!p.systolic && !p.diastolic) return bad(where(p.irregular->first) + ": flag without a blood-pressure reading");
    auto& components = slots[p.slot].components;
    for (auto* member : {&p.systolic, &p.diastolic, &p.irregular}) {
      if (*member) components.push_back(std::move((*member)->second));
    }
  }

  if (slots.size() > kMaxReadings) return bad("senml: more than " + std::to_string(kMaxReadings) + " readings");
  if (slots.empty()) return bad("senml: pack has no measurement");
  decoded.readings = std::move(slots);
  return decoded;
}

}  // namespace telehub::formats
