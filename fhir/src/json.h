// Small helpers over RapidJSON's SAX Writer, shared by the resource mappers and the router.
// Every FHIR document telehub emits is written in one pass (no DOM), compact, UTF-8.
//
// Thread-safety: stateless helpers; a JsonWriter belongs to one thread.
#pragma once

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <string>
#include <string_view>

namespace telehub::fhir {

using JsonBuffer = rapidjson::StringBuffer;
using JsonWriter = rapidjson::Writer<JsonBuffer>;

inline void write_key(JsonWriter& w, std::string_view key) {
  w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
}

inline void write_string(JsonWriter& w, std::string_view value) {
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

// "key": "value"
inline void write_member(JsonWriter& w, std::string_view key, std::string_view value) {
  write_key(w, key);
  write_string(w, value);
}

// A Coding (http://hl7.org/fhir/R4/datatypes.html#Coding): system, code, display when given.
inline void write_coding(JsonWriter& w, std::string_view system, std::string_view code, std::string_view display) {
  w.StartObject();
  write_member(w, "system", system);
  write_member(w, "code", code);
  if (!display.empty()) write_member(w, "display", display);
  w.EndObject();
}

inline std::string to_string(const JsonBuffer& buffer) { return std::string(buffer.GetString(), buffer.GetSize()); }

}  // namespace telehub::fhir
