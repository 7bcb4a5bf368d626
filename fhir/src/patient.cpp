#include "patient.h"

#include <rapidjson/document.h>

#include "json.h"
#include "telehub/envelope/json.h"

namespace telehub::fhir {
namespace {

using rapidjson::Value;

tl::unexpected<core::Error> bad(std::string path, std::string problem) {
  return core::fail(core::Code::kInvalidArgument, "bad_patient", path + ": " + problem);
}

// A string member, or "" when absent; an error when present and not a string.
Result<std::string> string_member(const Value& object, const char* name, const std::string& path) {
  auto it = object.FindMember(name);
  if (it == object.MemberEnd()) return std::string();
  if (!it->value.IsString()) return bad(path + "." + name, "must be a string");
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

// Parses a Patient body. envelope::parse_json is iterative (no recursion, so no stack
// overflow however deep the text nests) and refuses nesting deeper than
// envelope::kMaxJsonDepth before it parses; every element this mapping reads sits at depth 4
// or less. Its reasons never quote the body; they start with "payload: ", which is dropped.
Status parse_body(std::string_view json, rapidjson::Document& doc) {
  static_assert(kMaxFhirBodyBytes == 1 << 20, "the message below states the limit");
  if (json.size() > kMaxFhirBodyBytes) return bad("Patient", "body larger than 1 MiB");
  if (auto s = envelope::parse_json(json, doc); !s) {
    std::string reason = s.error().message;
    if (reason.starts_with("payload: ")) reason.erase(0, 9);
    return bad("Patient", "not valid JSON: " + reason);
  }
  return {};
}

const Value* array_member(const Value& object, const char* name) {
  auto it = object.FindMember(name);
  if (it == object.MemberEnd() || !it->value.IsArray() || it->value.Empty()) return nullptr;
  return &it->value;
}

}  // namespace

Result<privacy::Person> person_from_patient(std::string_view json) {
  rapidjson::Document doc;
  if (auto s = parse_body(json, doc); !s) return tl::unexpected(s.error());
  if (!doc.IsObject()) return bad("Patient", "must be a JSON object");
  auto type = string_member(doc, "resourceType", "Patient");
  if (!type) return tl::unexpected(type.error());
  if (*type != "Patient") return bad("Patient.resourceType", "must be Patient");
  privacy::Person p;
  if (const Value* ids = array_member(doc, "identifier")) {
    for (rapidjson::SizeType i = 0; i < ids->Size(); ++i) {
      const std::string path = "Patient.identifier[" + std::to_string(i) + "]";
      if (!(*ids)[i].IsObject()) return bad(path, "must be an object");
      auto system = string_member((*ids)[i], "system", path);
      auto value = string_member((*ids)[i], "value", path);
      if (!system) return tl::unexpected(system.error());
      if (!value) return tl::unexpected(value.error());
      if (system->empty() || value->empty()) return bad(path, "needs a system and a value");
      if (*system == kBsnSystem) {
        if (!p.bsn.empty() && p.bsn != *value) return bad(path, "a second, different BSN");
        p.bsn = *value;
      } else {
        p.record_numbers.push_back({*system, *value});
      }
    }
  }
  if (const Value* names = array_member(doc, "name")) {
    const Value& n = (*names)[0];
    if (!n.IsObject()) return bad("Patient.name[0]", "must be an object");
    auto family = string_member(n, "family", "Patient.name[0]");
    if (!family) return tl::unexpected(family.error());
    p.family_name = *family;
    if (const Value* given = array_member(n, "given")) {
      for (rapidjson::SizeType i = 0; i < given->Size(); ++i) {
        if (!(*given)[i].IsString()) return bad("Patient.name[0].given[" + std::to_string(i) + "]", "must be a string");
        if (!p.given_name.empty()) p.given_name += ' ';
        p.given_name.append((*given)[i].GetString(), (*given)[i].GetStringLength());
      }
    }
  }
  auto birth = string_member(doc, "birthDate", "Patient");
  auto gender = string_member(doc, "gender", "Patient");
  if (!birth) return tl::unexpected(birth.error());
  if (!gender) return tl::unexpected(gender.error());
  p.birth_date = *birth;
  p.sex = *gender;
  if (const Value* addresses = array_member(doc, "address")) {
    const Value& a = (*addresses)[0];
    if (!a.IsObject()) return bad("Patient.address[0]", "must be an object");
    if (const Value* lines = array_member(a, "line")) {
      if (!(*lines)[0].IsString()) return bad("Patient.address[0].line[0]", "must be a string");
      p.address_line.assign((*lines)[0].GetString(), (*lines)[0].GetStringLength());
    }
    auto postcode = string_member(a, "postalCode", "Patient.address[0]");
    auto city = string_member(a, "city", "Patient.address[0]");
    if (!postcode) return tl::unexpected(postcode.error());
    if (!city) return tl::unexpected(city.error());
    p.postcode = *postcode;
    p.city = *city;
  }
  if (const Value* telecom = array_member(doc, "telecom")) {
    for (rapidjson::SizeType i = 0; i < telecom->Size(); ++i) {
      const std::string path = "Patient.telecom[" + std::to_string(i) + "]";
      if (!(*telecom)[i].IsObject()) return bad(path, "must be an object");
      auto system = string_member((*telecom)[i], "system", path);
      auto value = string_member((*telecom)[i], "value", path);
      if (!system) return tl::unexpected(system.error());
      if (!value) return tl::unexpected(value.error());
      if (*system == "phone" && p.phone.empty()) p.phone = *value;
      else if (*system == "email" && p.email.empty()) p.email = *value;
    }
  }
  return p;
}

std::string identified_patient_json(std::string_view pseudonym, const privacy::Person& person) {
  JsonBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  write_member(w, "resourceType", "Patient");
  write_member(w, "id", pseudonym);
  if (!person.bsn.empty() || !person.record_numbers.empty()) {
    write_key(w, "identifier");
    w.StartArray();
    if (!person.bsn.empty()) {
      w.StartObject();
      write_member(w, "use", "official");
      write_member(w, "system", kBsnSystem);
      write_member(w, "value", person.bsn);
      w.EndObject();
    }
    for (const auto& rn : person.record_numbers) {
      w.StartObject();
      write_member(w, "use", "usual");
      write_member(w, "system", rn.system);
      write_member(w, "value", rn.value);
      w.EndObject();
    }
    w.EndArray();
  }
  write_key(w, "active");
  w.Bool(true);
  if (!person.family_name.empty() || !person.given_name.empty()) {
    write_key(w, "name");
    w.StartArray();
    w.StartObject();
    write_member(w, "use", "official");
    if (!person.family_name.empty()) write_member(w, "family", person.family_name);
    if (!person.given_name.empty()) {
      write_key(w, "given");
      w.StartArray();
      std::string_view rest = person.given_name;
      while (!rest.empty()) {
        const auto space = rest.find(' ');
        const auto part = rest.substr(0, space);
        if (!part.empty()) write_string(w, part);
        if (space == std::string_view::npos) break;
        rest.remove_prefix(space + 1);
      }
      w.EndArray();
    }
    w.EndObject();
    w.EndArray();
  }
  if (!person.phone.empty() || !person.email.empty()) {
    write_key(w, "telecom");
    w.StartArray();
    if (!person.phone.empty()) {
      w.StartObject();
      write_member(w, "system", "phone");
      write_member(w, "value", person.phone);
      w.EndObject();
    }
    if (!person.email.empty()) {
      w.StartObject();
      write_member(w, "system", "email");
      write_member(w, "value", person.email);
      w.EndObject();
    }
    w.EndArray();
  }
  if (!person.sex.empty()) write_member(w, "gender", person.sex);
  if (!person.birth_date.empty()) write_member(w, "birthDate", person.birth_date);
  if (!person.address_line.empty() || !person.postcode.empty() || !person.city.empty()) {
    write_key(w, "address");
    w.StartArray();
    w.StartObject();
    if (!person.address_line.empty()) {
      write_key(w, "line");
      w.StartArray();
      write_string(w, person.address_line);
      w.EndArray();
    }
    if (!person.city.empty()) write_member(w, "city", person.city);
    if (!person.postcode.empty()) write_member(w, "postalCode", person.postcode);
    write_member(w, "country", "NL");
    w.EndObject();
    w.EndArray();
  }
  w.EndObject();
  return to_string(buffer);
}

}  // namespace telehub::fhir
