// The FHIR Observation of an hourly environment value (fhir_observation.h).
#include "telehub/environment/fhir_observation.h"

#include <chrono>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace telehub::environment {

namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void member(Writer& w, const char* key, std::string_view value) {
  w.Key(key);
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

}  // namespace

std::string observation_id(const HourlyValue& v) {
  return "env-" + v.area + "-" + std::string(info(v.component).key) + "-" +
         std::to_string(core::to_unix_millis(v.hour) / 3'600'000);
}

std::string observation_json(const HourlyValue& v, std::string_view patient_pseudonym) {
  const ComponentInfo& c = info(v.component);
  rapidjson::StringBuffer b;
  Writer w(b);
  w.StartObject();
  member(w, "resourceType", "Observation");
  member(w, "id", observation_id(v));
  member(w, "status", "final");
  w.Key("category");
  w.StartArray();
  w.StartObject();
  w.Key("coding");
  w.StartArray();
  w.StartObject();
  member(w, "system", kObservationCategorySystem);
  member(w, "code", "environment");
  member(w, "display", "Environmental exposure");
  w.EndObject();
  w.EndArray();
  w.EndObject();
  w.EndArray();
  w.Key("code");
  w.StartObject();
  w.Key("coding");
  w.StartArray();
  w.StartObject();
  member(w, "system", c.system);
  member(w, "code", c.code);
  member(w, "display", c.display);
  w.EndObject();
  w.EndArray();
  member(w, "text", c.display);
  w.EndObject();
  w.Key("subject");
  w.StartObject();
  member(w, "reference", "Patient/" + std::string(patient_pseudonym));
  w.EndObject();
  w.Key("effectivePeriod");
  w.StartObject();
  member(w, "start", core::format_rfc3339(v.hour));
  member(w, "end", core::format_rfc3339(v.hour + std::chrono::hours(1)));
  w.EndObject();
  w.Key("valueQuantity");
  w.StartObject();
  w.Key("value");
  w.Double(v.value);
  member(w, "unit", c.unit == "ug/m3" ? std::string_view("µg/m³") : c.unit);
  member(w, "system", "http://unitsofmeasure.org");
  member(w, "code", c.unit);
  w.EndObject();
  w.Key("note");
  w.StartArray();
  w.StartObject();
  member(w, "text", "Hourly value for postcode area " + v.area + " (" + v.source + "): the exposure of the patient's home area, not a measurement of the patient");
  w.EndObject();
  w.EndArray();
  w.EndObject();
  return b.GetString();
}

}  // namespace telehub::environment
