#include "ips.h"

#include <rapidjson/document.h>

#include <array>
#include <charconv>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string_view>
#include <utility>

#include "json.h"
#include "resources.h"
#include "telehub/core/bytes.h"

namespace telehub::fhir {
namespace {

constexpr std::string_view kLoinc = "http://loinc.org";
// http://hl7.org/fhir/R4/valueset-list-empty-reason.html (extensible binding of section.emptyReason)
constexpr std::string_view kEmptyReasonSystem = "http://terminology.hl7.org/CodeSystem/list-empty-reason";
constexpr std::string_view kXhtmlNs = "http://www.w3.org/1999/xhtml";

using Doc = rapidjson::Document;
using Value = rapidjson::Value;

// The sections, in document order. The first three are required by the IPS Composition
// (http://hl7.org/fhir/uv/ips/StructureDefinition-Composition-uv-ips.html) and always present.
enum SectionKind { kProblems, kAllergies, kMedications, kImmunizations, kProcedures, kVitalSigns, kResults, kSectionCount };

struct SectionDef {
  std::string_view title;
  std::string_view code;
  std::string_view display;
  bool required;
  std::string_view nothing;  // narrative when empty
};

constexpr std::array<SectionDef, kSectionCount> kSections = {{
    {"Active Problems", "11450-4", "Problem list - Reported", true, "There is no information about current problems."},
    {"Allergies and Intolerances", "48765-2", "Allergies and adverse reactions Document", true,
     "There is no information about allergies or intolerances."},
    {"Medication Summary", "10160-0", "History of Medication use Narrative", true,
     "There is no information about current medication."},
    // IPS recommended sections (Composition.section:sectionImmunizations, :sectionProceduresHx).
    {"Immunizations", "11369-6", "History of Immunization Narrative", false, ""},
    {"History of Procedures", "47519-4", "History of Procedures Document", false, ""},
    {"Vital Signs", "8716-3", "Vital signs", false, ""},
    {"Results", "30954-2", "Relevant diagnostic tests/laboratory data Narrative", false, ""},
}};

struct Entry {
  std::string type;
  std::string id;
  std::string full_url;
  Doc doc;
};

std::string_view str(const Value& v, const char* key) {
  if (!v.IsObject()) return {};
  auto it = v.FindMember(key);
  if (it == v.MemberEnd() || !it->value.IsString()) return {};
  return {it->value.GetString(), it->value.GetStringLength()};
}

// True when any coding of the CodeableConcept `key` of `v` has one of `codes`.
bool concept_has(const Value& v, const char* key, std::initializer_list<std::string_view> codes) {
  if (!v.IsObject()) return false;
  auto it = v.FindMember(key);
  if (it == v.MemberEnd()) return false;
  auto has = [&](const Value& cc) {
    if (!cc.IsObject() || !cc.HasMember("coding") || !cc["coding"].IsArray()) return false;
    for (const auto& c : cc["coding"].GetArray())
      for (auto code : codes)
        if (str(c, "code") == code) return true;
    return false;
  };
  if (it->value.IsArray()) {  // Observation.category is 0..*
    for (const auto& cc : it->value.GetArray())
      if (has(cc)) return true;
    return false;
  }
  return has(it->value);
}

bool has_member(const Value& v, const char* key) { return v.IsObject() && v.HasMember(key); }

// A human text for a CodeableConcept: text, else the first coding's display, else its code.
std::string concept_text(const Value& v, const char* key) {
  if (!v.IsObject() || !v.HasMember(key)) return {};
  const Value& cc = v[key];
  if (auto t = str(cc, "text"); !t.empty()) return std::string(t);
  if (cc.IsObject() && cc.HasMember("coding") && cc["coding"].IsArray())
    for (const auto& c : cc["coding"].GetArray()) {
      if (auto d = str(c, "display"); !d.empty()) return std::string(d);
      if (auto d = str(c, "code"); !d.empty()) return std::string(d);
    }
  return {};
}

// Six significant digits: the narrative is for reading; the exact value is in the resource.
std::string number_text(double value) {
  std::array<char, 32> buf{};
  auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), value, std::chars_format::general, 6);
  if (ec != std::errc()) return "?";
  return std::string(buf.data(), end);
}

std::string quantity_text(const Value& q) {
  if (!q.IsObject() || !q.HasMember("value") || !q["value"].IsNumber()) return {};
  std::string t = number_text(q["value"].GetDouble());
  std::string_view unit = str(q, "unit");
  if (unit.empty()) unit = str(q, "code");
  if (!unit.empty()) t += " " + std::string(unit);
  return t;
}

// The clinically relevant time of an Observation (effective[x], else issued), as text.
std::string_view effective_text(const Value& o) {
  for (const char* key : {"effectiveDateTime", "effectiveInstant", "issued"})
    if (auto t = str(o, key); !t.empty()) return t;
  if (has_member(o, "effectivePeriod")) return str(o["effectivePeriod"], "start");
  return {};
}

std::string observation_text(const Value& o, bool home) {
  std::string t = concept_text(o, "code");
  std::string value;
  if (has_member(o, "valueQuantity")) value = quantity_text(o["valueQuantity"]);
  else if (auto s = str(o, "valueString"); !s.empty()) value = s;
  else if (has_member(o, "valueCodeableConcept")) value = concept_text(o, "valueCodeableConcept");
  else if (has_member(o, "valueBoolean") && o["valueBoolean"].IsBool()) value = o["valueBoolean"].GetBool() ? "yes" : "no";
  if (value.empty() && has_member(o, "component") && o["component"].IsArray()) {
    for (const auto& c : o["component"].GetArray()) {
      if (!has_member(c, "valueQuantity")) continue;
      if (!value.empty()) value += ", ";
      value += concept_text(c, "code") + " " + quantity_text(c["valueQuantity"]);
    }
  }
  if (!value.empty()) t += ": " + value;
  if (auto when = effective_text(o); !when.empty()) t += " (" + std::string(when) + ")";
  if (home) t += ", measured at home";
  return t;
}

std::string entry_text(const Entry& e, bool home) {
  const Value& r = e.doc;
  std::string t;
  if (e.type == "Observation") return observation_text(r, home);
  if (e.type == "MedicationRequest" || e.type == "MedicationStatement") {
    t = concept_text(r, "medicationCodeableConcept");
    if (t.empty() && has_member(r, "medicationReference")) t = str(r["medicationReference"], "display");
    if (t.empty()) t = "Medication";
    if (auto s = str(r, "authoredOn"); !s.empty()) t += " (since " + std::string(s) + ")";
    return t;
  }
  if (e.type == "Immunization") {
    t = concept_text(r, "vaccineCode");
    if (t.empty()) t = "Vaccination";
    if (auto s = str(r, "occurrenceDateTime"); !s.empty()) t += " (" + std::string(s) + ")";
    return t;
  }
  t = concept_text(r, "code");
  if (t.empty()) t = e.type;
  if (auto s = str(r, "onsetDateTime"); !s.empty()) t += " (since " + std::string(s) + ")";
  if (auto s = str(r, "performedDateTime"); !s.empty()) t += " (" + std::string(s) + ")";
  if (has_member(r, "performedPeriod"))
    if (auto s = str(r["performedPeriod"], "start"); !s.empty()) t += " (" + std::string(s) + ")";
  return t;
}

// XHTML text escaping (http://hl7.org/fhir/R4/narrative.html: the div is XHTML).
std::string escape_xml(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

Result<std::string> uuid4() {
  auto bytes = core::random_bytes(16);
  if (!bytes) return tl::unexpected(bytes.error());
  auto& b = *bytes;
  b[6] = static_cast<std::uint8_t>((b[6] & 0x0F) | 0x40);
  b[8] = static_cast<std::uint8_t>((b[8] & 0x3F) | 0x80);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += kHex[b[i] >> 4];
    out += kHex[b[i] & 0x0F];
  }
  return out;
}

// "Type/id" when `ref` (relative or under `base`) is a literal reference to a resource by
// type and id, possibly versioned (the version is dropped); nullopt otherwise.
std::optional<std::pair<std::string, std::string>> split_reference(std::string_view ref, std::string_view base) {
  if (!base.empty() && ref.size() > base.size() + 1 && ref.starts_with(base) && ref[base.size()] == '/')
    ref.remove_prefix(base.size() + 1);
  const auto slash = ref.find('/');
  if (slash == std::string_view::npos || slash == 0) return std::nullopt;
  std::string_view type = ref.substr(0, slash);
  std::string_view id = ref.substr(slash + 1);
  if (auto h = id.find("/_history/"); h != std::string_view::npos) id = id.substr(0, h);
  if (!(type[0] >= 'A' && type[0] <= 'Z') || type.size() > 64) return std::nullopt;
  for (char c : type)
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) return std::nullopt;
  if (!valid_fhir_id(id)) return std::nullopt;
  return std::make_pair(std::string(type), std::string(id));
}

class Builder {
 public:
  explicit Builder(const SummaryInput& in) : in_(in) {}

  Status add_patient() {
    Entry e;
    e.doc.Parse(in_.patient_json.data(), in_.patient_json.size());
    if (e.doc.HasParseError() || !e.doc.IsObject() || str(e.doc, "resourceType") != "Patient")
      return core::fail(core::Code::kInvalidArgument, "bad_patient", "summary: the Patient is not a Patient resource");
    e.doc.RemoveMember("id");
    e.doc.AddMember("id", Value(in_.subject.c_str(), e.doc.GetAllocator()), e.doc.GetAllocator());
    add("Patient", in_.subject, std::move(e));
    return {};
  }

  // Reads the subject's clinical records and sorts them into sections.
  Status add_clinical() {
    if (!in_.clinical) return {};
    const std::vector<std::string> types = {"Condition", "AllergyIntolerance", "MedicationRequest", "MedicationStatement",
                                            "Immunization", "Procedure", "Observation"};
    // Latest Observation per (section, code), by the start of its effective time.
    std::map<std::pair<int, std::string>, std::pair<std::int64_t, Entry>> latest;
    std::string cursor;
    do {
      auto page = in_.clinical->of_subject(in_.subject, types, std::nullopt, cursor, 1000);
      if (!page) return tl::unexpected(page.error());
      for (auto& r : page->resources) {
        has_records_ = true;
        Entry e;
        e.doc.Parse(r.json.data(), r.json.size());
        if (e.doc.HasParseError() || !e.doc.IsObject()) continue;
        e.type = r.type;
        e.id = r.id;
        const int section = classify(e);
        if (section < 0) continue;
        if (e.type == "Observation") {
          const std::string code = concept_key(e.doc);
          std::int64_t when = INT64_MIN;
          if (auto t = effective_text(e.doc); !t.empty())
            if (auto range = clinical::fhir_date_range(t)) when = range->from_ms;
          auto key = std::make_pair(section, code);
          auto it = latest.find(key);
          if (it == latest.end() || when > it->second.first) latest[key] = {when, std::move(e)};
          continue;
        }
        const std::string type = e.type, id = e.id;
        sections_[section].push_back({add(type, id, std::move(e)), false});
      }
      cursor = page->next_cursor;
    } while (!cursor.empty());
    for (auto& [key, value] : latest) {
      const std::string type = value.second.type, id = value.second.id;
      sections_[key.first].push_back({add(type, id, std::move(value.second)), false});
    }
    return {};
  }

  void add_home_readings() {
    const formats::Plausibility& rules = in_.rules ? *in_.rules : formats::Plausibility::defaults();
    for (const auto& o : in_.home_readings) {
      Entry e;
      const std::string json = observation_json(o, rules);
      e.doc.Parse(json.data(), json.size());
      if (e.doc.HasParseError()) continue;
      int section = -1;
      if (concept_has(e.doc, "category", {"vital-signs"})) section = kVitalSigns;
      else if (concept_has(e.doc, "category", {"laboratory"})) section = kResults;
      if (section < 0) continue;
      const std::string id = std::to_string(o.id);
      sections_[section].push_back({add("Observation", id, std::move(e)), true});
    }
  }

  // Follows every reference of every entry (transitively), including the targets it can read
  // and cutting the others (see ips.h).
  Status close_references() {
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      auto status = walk(entries_[i].doc, entries_[i].doc.GetAllocator());
      if (!status) return status;
    }
    return {};
  }

  Result<std::string> write() {
    auto bundle_id = uuid4();
    if (!bundle_id) return tl::unexpected(bundle_id.error());
    auto composition_id = uuid4();
    if (!composition_id) return tl::unexpected(composition_id.error());
    const std::string now = core::format_rfc3339(in_.now);

    JsonBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    write_member(w, "resourceType", "Bundle");
    write_member(w, "id", *bundle_id);
    // bdl-9: a document has an identifier with system and value; bdl-10: a timestamp.
    write_key(w, "identifier");
    w.StartObject();
    write_member(w, "system", "urn:ietf:rfc:3986");
    write_member(w, "value", "urn:uuid:" + *bundle_id);
    w.EndObject();
    write_member(w, "type", "document");
    write_member(w, "timestamp", now);
    write_key(w, "entry");
    w.StartArray();
    // bdl-11: the first resource is the Composition. It is made for this document only, so it
    // has no server location: its fullUrl is a urn:uuid.
    w.StartObject();
    write_member(w, "fullUrl", "urn:uuid:" + *composition_id);
    write_key(w, "resource");
    write_composition(w, *composition_id, now);
    w.EndObject();
    for (auto& e : entries_) {
      w.StartObject();
      write_member(w, "fullUrl", e.full_url);
      write_key(w, "resource");
      e.doc.Accept(w);
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
    return to_string(buffer);
  }

 private:
  struct Item {
    std::size_t entry;
    bool home;
  };

  // The section of a clinical resource, or -1 when it is not summarised.
  static int classify(const Entry& e) {
    const Value& r = e.doc;
    // http://hl7.org/fhir/R4/valueset-condition-ver-status.html
    if (concept_has(r, "verificationStatus", {"entered-in-error", "refuted"})) return -1;
    if (e.type == "Condition")  // http://hl7.org/fhir/R4/valueset-condition-clinical.html
      return concept_has(r, "clinicalStatus", {"active", "recurrence", "relapse"}) ? kProblems : -1;
    if (e.type == "AllergyIntolerance")  // http://hl7.org/fhir/R4/valueset-allergyintolerance-clinical.html
      return concept_has(r, "clinicalStatus", {"inactive", "resolved"}) ? -1 : kAllergies;
    if (e.type == "MedicationRequest" || e.type == "MedicationStatement")
      return str(r, "status") == "active" ? kMedications : -1;
    // http://hl7.org/fhir/R4/valueset-immunization-status.html: only given vaccinations.
    if (e.type == "Immunization") return str(r, "status") == "completed" ? kImmunizations : -1;
    // http://hl7.org/fhir/R4/valueset-event-status.html: what was done, or is being done.
    if (e.type == "Procedure")
      return str(r, "status") == "completed" || str(r, "status") == "in-progress" ? kProcedures : -1;
    if (e.type == "Observation") {
      if (str(r, "status") == "entered-in-error" || str(r, "status") == "cancelled") return -1;
      if (concept_has(r, "category", {"vital-signs"})) return kVitalSigns;
      if (concept_has(r, "category", {"laboratory"})) return kResults;
    }
    return -1;
  }

  // "system|code" of an Observation's first coding, for "latest per code".
  static std::string concept_key(const Value& o) {
    if (has_member(o, "code") && has_member(o["code"], "coding") && o["code"]["coding"].IsArray() &&
        !o["code"]["coding"].Empty()) {
      const Value& c = o["code"]["coding"][0];
      return std::string(str(c, "system")) + "|" + std::string(str(c, "code"));
    }
    return concept_text(o, "code");
  }

  std::size_t add(const std::string& type, const std::string& id, Entry e) {
    const std::string key = type + "/" + id;
    if (auto it = index_.find(key); it != index_.end()) return it->second;
    e.type = type;
    e.id = id;
    e.full_url = in_.base_url + "/" + key;
    entries_.push_back(std::move(e));
    index_[key] = entries_.size() - 1;
    return entries_.size() - 1;
  }

  // Loads the target of a reference into the entries; false when it cannot be included.
  Result<bool> include(const std::string& type, const std::string& id) {
    if (index_.count(type + "/" + id)) return true;
    if (entries_.size() + 1 >= kMaxSummaryEntries) return false;
    if (type == "Patient") return false;  // only the subject's Patient, added first
    if (type == "Device") {
      for (const auto& d : in_.devices) {
        if (d.id != id || d.subject != in_.subject) continue;
        Entry e;
        const std::string json = device_json(d);
        e.doc.Parse(json.data(), json.size());
        add(type, id, std::move(e));
        return true;
      }
      return false;
    }
    if (!in_.clinical) return false;
    auto stored = in_.clinical->read(type, id);
    if (!stored) return tl::unexpected(stored.error());
    if (!*stored) return false;
    // Another subject's record is never part of this subject's summary.
    if (!(*stored)->subject.empty() && (*stored)->subject != in_.subject) return false;
    Entry e;
    e.doc.Parse((*stored)->json.data(), (*stored)->json.size());
    if (e.doc.HasParseError() || !e.doc.IsObject()) return false;
    add(type, id, std::move(e));
    return true;
  }

  Status walk(Value& v, rapidjson::Document::AllocatorType& alloc) {
    if (v.IsArray()) {
      for (auto& item : v.GetArray())
        if (auto s = walk(item, alloc); !s) return s;
      return {};
    }
    if (!v.IsObject()) return {};
    auto ref = v.FindMember("reference");
    if (ref != v.MemberEnd() && ref->value.IsString()) {
      const std::string_view text(ref->value.GetString(), ref->value.GetStringLength());
      if (text.starts_with("#")) return {};  // contained
      auto target = split_reference(text, in_.base_url);
      bool resolved = false;
      if (target) {
        auto included = include(target->first, target->second);
        if (!included) return tl::unexpected(included.error());
        resolved = *included;
      }
      if (resolved) {
        ref->value.SetString((target->first + "/" + target->second).c_str(), alloc);
      } else {
        v.RemoveMember("reference");
        if (!v.HasMember("display")) {
          const std::string display = target ? target->first + " (not included)" : "Not included";
          v.AddMember("display", Value(display.c_str(), alloc), alloc);
        }
      }
    }
    for (auto& m : v.GetObject())
      if (auto s = walk(m.value, alloc); !s) return s;
    return {};
  }

  void write_composition(JsonWriter& w, const std::string& id, const std::string& now) {
    w.StartObject();
    write_member(w, "resourceType", "Composition");
    write_member(w, "id", id);
    write_member(w, "status", "final");
    write_key(w, "type");
    w.StartObject();
    write_key(w, "coding");
    w.StartArray();
    write_coding(w, kLoinc, "60591-5", "Patient summary Document");
    w.EndArray();
    w.EndObject();
    write_key(w, "subject");
    w.StartObject();
    write_member(w, "reference", "Patient/" + in_.subject);
    w.EndObject();
    write_member(w, "date", now);
    write_key(w, "author");
    w.StartArray();
    w.StartObject();
    write_member(w, "display", in_.author.empty() ? std::string("telehub") : in_.author);
    w.EndObject();
    w.EndArray();
    write_member(w, "title", "Patient Summary");
    // http://terminology.hl7.org/ValueSet/v3-ConfidentialityClassification (required): normal.
    write_member(w, "confidentiality", "N");
    write_key(w, "section");
    w.StartArray();
    for (int s = 0; s < kSectionCount; ++s) {
      const SectionDef& def = kSections[static_cast<std::size_t>(s)];
      const auto& items = sections_[s];
      if (items.empty() && !def.required) continue;
      w.StartObject();
      write_member(w, "title", def.title);
      write_key(w, "code");
      w.StartObject();
      write_key(w, "coding");
      w.StartArray();
      write_coding(w, kLoinc, def.code, def.display);
      w.EndArray();
      w.EndObject();
      // Section narrative (cmp-1; IPS requires it): status generated, a list of the entries.
      std::string div = "<div xmlns=\"" + std::string(kXhtmlNs) + "\">";
      if (items.empty()) {
        div += "<p>" + escape_xml(def.nothing) + "</p>";
      } else {
        div += "<ul>";
        for (const auto& item : items) div += "<li>" + escape_xml(entry_text(entries_[item.entry], item.home)) + "</li>";
        div += "</ul>";
      }
      div += "</div>";
      write_key(w, "text");
      w.StartObject();
      write_member(w, "status", "generated");
      write_member(w, "div", div);
      w.EndObject();
      if (items.empty()) {
        // cmp-2: emptyReason only without entries. "unavailable" when telehub holds no clinical
        // records of the subject at all, "nilknown" when the records it holds have none.
        const bool known = in_.clinical && has_records_;
        write_key(w, "emptyReason");
        w.StartObject();
        write_key(w, "coding");
        w.StartArray();
        write_coding(w, kEmptyReasonSystem, known ? "nilknown" : "unavailable", known ? "Nil Known" : "Unavailable");
        w.EndArray();
        w.EndObject();
      } else {
        write_key(w, "entry");
        w.StartArray();
        for (const auto& item : items) {
          const Entry& e = entries_[item.entry];
          w.StartObject();
          write_member(w, "reference", e.type + "/" + e.id);
          w.EndObject();
        }
        w.EndArray();
      }
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
  }

  const SummaryInput& in_;
  std::deque<Entry> entries_;  // deque: entries keep their address while references are followed
  std::map<std::string, std::size_t> index_;  // "Type/id" -> entries_ index
  std::array<std::vector<Item>, kSectionCount> sections_;
  bool has_records_ = false;
};

}  // namespace

Result<std::string> summary_bundle_json(const SummaryInput& in) {
  if (in.base_url.empty() || !valid_fhir_id(in.subject))
    return core::fail(core::Code::kInvalidArgument, "bad_summary", "summary: base URL or subject missing");
  Builder b(in);
  if (auto s = b.add_patient(); !s) return tl::unexpected(s.error());
  if (auto s = b.add_clinical(); !s) return tl::unexpected(s.error());
  b.add_home_readings();
  if (auto s = b.close_references(); !s) return tl::unexpected(s.error());
  return b.write();
}

}  // namespace telehub::fhir
