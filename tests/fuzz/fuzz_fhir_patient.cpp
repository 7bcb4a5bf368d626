// libFuzzer harness: the input as a FHIR R4 Patient (fhir::person_from_patient, fhir/src/patient.h)
// and as a FHIR R4 Consent (privacy::from_fhir_consent, privacy/consent.h). Build and run:
// FUZZ_TARGETS=fhir_patient tests/fuzz/run.sh (docs/fuzzing.md); seeds: tests/fuzz/corpus/fhir_json/.
//
// The check is a plain function so the Catch2 replay (tests/fhir/fuzz_replay_test.cpp) can
// include this file with TELEHUB_FUZZ_NO_ENTRY defined. What is checked:
//   Patient
//   - failure: invalid_argument/bad_patient, message "<FHIR path>: <problem>" with the path
//     starting with "Patient" (printable ASCII, at most 200 bytes: no document values).
//   - success, round trip: identified_patient_json(pseudonym, person) is valid JSON (UTF-8
//     validated) and person_from_patient() of it gives the same Person, except for the given
//     names: the mapping joins name[0].given with spaces and writes them back split at spaces,
//     so a given name holding a space, or an empty one, comes back re-split (["Anna Maria"] ->
//     ["Anna","Maria"]); the check compares the given names split at spaces with empty parts
//     dropped. The output's id is the pseudonym given.
//   Consent
//   - failure: invalid_argument/bad_consent with a message that starts with "Consent" or
//     "resourceType" (printable ASCII, at most 200 bytes).
//   - success: the subject is a pseudonym (32 lower-case hex), the scope is care, research or
//     research:<[A-Za-z0-9._-]{1,64}>, the source fhir:Consent[/<FHIR id>], withdrawn only on a
//     permit and not before `from`.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <rapidjson/document.h>

#include "../../fhir/src/patient.h"
#include "telehub/privacy/consent.h"
#include "telehub/privacy/pseudonym.h"

namespace telehub::fuzz {

inline constexpr std::string_view kPatientFuzzPseudonym = "0123456789abcdef0123456789abcdef";

namespace patient_detail {

inline bool printable_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

inline std::vector<std::string> given_parts(std::string_view given) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (start <= given.size()) {
    const auto space = given.find(' ', start);
    const auto part = given.substr(start, space == std::string_view::npos ? std::string_view::npos : space - start);
    if (!part.empty()) parts.emplace_back(part);
    if (space == std::string_view::npos) break;
    start = space + 1;
  }
  return parts;
}

inline bool valid_study_id(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  });
}

inline bool valid_fhir_id(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-';
  });
}

inline std::string check_patient(std::string_view text) {
  const auto person = fhir::person_from_patient(text);
  if (!person) {
    const core::Error& e = person.error();
    if (e.code != core::Code::kInvalidArgument || e.reason != "bad_patient")
      return "person_from_patient failed with an unexpected error: " + e.to_string();
    if (!e.message.starts_with("Patient") || e.message.find(": ") == std::string::npos)
      return "person_from_patient error message is not \"<path>: <problem>\": " + e.message;
    if (e.message.size() > 200 || !printable_ascii(e.message))
      return "person_from_patient error message is long or not printable ASCII";
    return {};
  }
  // Independently of the mapper: the given names and the address line are the document's
  // strings, whole (they may hold any character, "\u0000" included).
  {
    rapidjson::Document in;
    in.Parse(text.data(), text.size());
    const rapidjson::Value& root = in;  // const: RapidJSON's iterator comparison is ambiguous in C++20 otherwise
    if (!in.HasParseError() && root.IsObject()) {
      std::vector<std::string> given;
      auto names = root.FindMember("name");
      if (names != root.MemberEnd() && names->value.IsArray() && !names->value.Empty() && names->value[0].IsObject()) {
        auto g = names->value[0].FindMember("given");
        if (g != names->value[0].MemberEnd() && g->value.IsArray())
          for (rapidjson::SizeType i = 0; i < g->value.Size(); ++i)
            if (const auto& v = g->value[i]; v.IsString())
              for (auto& part : given_parts(std::string_view(v.GetString(), v.GetStringLength()))) given.push_back(part);
      }
      if (given != given_parts(person->given_name)) return "given names are not the document's";
      auto addresses = root.FindMember("address");
      if (addresses != root.MemberEnd() && addresses->value.IsArray() && !addresses->value.Empty() &&
          addresses->value[0].IsObject()) {
        auto lines = addresses->value[0].FindMember("line");
        if (lines != addresses->value[0].MemberEnd() && lines->value.IsArray() && !lines->value.Empty() &&
            lines->value[0].IsString() &&
            std::string_view(lines->value[0].GetString(), lines->value[0].GetStringLength()) != person->address_line)
          return "the address line is not the document's";
      }
    }
  }
  const std::string json = fhir::identified_patient_json(kPatientFuzzPseudonym, *person);
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseValidateEncodingFlag>(json.data(), json.size());
  if (doc.HasParseError() || !doc.IsObject()) return "identified_patient_json wrote invalid JSON (or invalid UTF-8)";
  const rapidjson::Value& out = doc;
  auto id = out.FindMember("id");
  if (id == out.MemberEnd() || !id->value.IsString() || std::string_view(id->value.GetString()) != kPatientFuzzPseudonym)
    return "identified_patient_json: id is not the pseudonym";
  const auto again = fhir::person_from_patient(json);
  if (!again) return "person_from_patient refused identified_patient_json's output: " + again.error().to_string();
  privacy::Person a = *person, b = *again;
  if (given_parts(a.given_name) != given_parts(b.given_name)) return "round trip: given names differ";
  a.given_name.clear();
  b.given_name.clear();
  if (a != b) return "round trip: person_from_patient(identified_patient_json(p)) != p";
  return {};
}

inline std::string check_consent(std::string_view text) {
  const auto record = privacy::from_fhir_consent(text);
  if (!record) {
    const core::Error& e = record.error();
    if (e.code != core::Code::kInvalidArgument || e.reason != "bad_consent")
      return "from_fhir_consent failed with an unexpected error: " + e.to_string();
    if (!e.message.starts_with("Consent") && !e.message.starts_with("resourceType"))
      return "from_fhir_consent error message names no element: " + e.message;
    if (e.message.size() > 200 || !printable_ascii(e.message))
      return "from_fhir_consent error message is long or not printable ASCII";
    return {};
  }
  const privacy::ConsentRecord& r = *record;
  if (!privacy::SubjectPseudonym::parse(r.subject)) return "consent subject is not a pseudonym";
  if (r.scope != "care" && r.scope != "research" &&
      !(r.scope.starts_with("research:") && valid_study_id(std::string_view(r.scope).substr(9))))
    return "consent scope is not care|research|research:<id>";
  if (r.source != "fhir:Consent" && !(r.source.starts_with("fhir:Consent/") && valid_fhir_id(std::string_view(r.source).substr(13))))
    return "consent source is not fhir:Consent[/<id>]";
  if (r.withdrawn && !r.permit) return "a deny carries a withdrawal";
  if (r.withdrawn && *r.withdrawn < r.from) return "withdrawn before from";
  if (r.id != 0) return "from_fhir_consent set an id";
  return {};
}

}  // namespace patient_detail

inline std::string check_fhir_patient(std::span<const std::uint8_t> data) {
  const std::string_view text(reinterpret_cast<const char*>(data.data()), data.size());
  if (auto why = patient_detail::check_patient(text); !why.empty()) return "Patient: " + why;
  if (auto why = patient_detail::check_consent(text); !why.empty()) return "Consent: " + why;
  return {};
}

}  // namespace telehub::fuzz

#ifndef TELEHUB_FUZZ_NO_ENTRY
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string why = telehub::fuzz::check_fhir_patient({data, size});
  if (!why.empty()) {
    std::fprintf(stderr, "fuzz_fhir_patient: invariant violated: %s\n", why.c_str());
    std::abort();
  }
  return 0;
}
#endif
