// See representation.h.
#include "representation.h"

#include <openssl/evp.h>
#include <rapidjson/document.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <iterator>
#include <vector>

#include "resources.h"
#include "search_params.h"

namespace telehub::fhir {
namespace {

constexpr std::string_view kFhirJson = "application/fhir+json; charset=utf-8";
constexpr std::string_view kPlainJson = "application/json; charset=utf-8";

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

std::string to_lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), lower);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return lower(x) == lower(y); });
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// Every value of the request header `name`, joined with ", " (RFC 9110 section 5.3); nullopt
// when the header is absent.
std::optional<std::string> header(const Request& request, std::string_view name) {
  std::optional<std::string> out;
  for (const auto& [k, v] : request.headers) {
    if (!iequals(k, name)) continue;
    if (out) *out += ", ";
    else out.emplace();
    *out += v;
  }
  return out;
}

// Splits at `separator` outside quoted strings.
std::vector<std::string_view> split_list(std::string_view text, char separator) {
  std::vector<std::string_view> out;
  bool quoted = false;
  std::size_t start = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '"') quoted = !quoted;
    else if (text[i] == '\\' && quoted) ++i;
    else if (text[i] == separator && !quoted) {
      out.push_back(text.substr(start, i - start));
      start = i + 1;
    }
  }
  out.push_back(text.substr(std::min(start, text.size())));
  return out;
}

// A media type or media range with its parameters: "application/fhir+json; fhirVersion=4.0; q=0.5".
struct MediaRange {
  std::string type;     // lower case; "*" in a range
  std::string subtype;  // lower case; "*" in a range
  std::optional<std::string> fhir_version;
  double q = 1;
};

// nullopt when malformed (no '/', an invalid q-value).
std::optional<MediaRange> parse_media_range(std::string_view text) {
  const auto parts = split_list(text, ';');
  const auto essence = trim(parts[0]);
  const auto slash = essence.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == essence.size()) return std::nullopt;
  MediaRange m;
  m.type = to_lower(trim(essence.substr(0, slash)));
  m.subtype = to_lower(trim(essence.substr(slash + 1)));
  // '+' sent unescaped in a query string may have been turned into a space on the way.
  if (m.subtype == "fhir json") m.subtype = "fhir+json";
  if (m.subtype == "json+fhir") m.subtype = "fhir+json";  // the DSTU2 name, still sent by old clients
  for (std::size_t i = 1; i < parts.size(); ++i) {
    const auto param = trim(parts[i]);
    const auto eq = param.find('=');
    if (eq == std::string_view::npos) continue;
    const auto name = to_lower(trim(param.substr(0, eq)));
    auto value = trim(param.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
    if (name == "q") {
      // RFC 9110 section 12.4.2: 0 to 1 with at most three decimals.
      double q = -1;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), q);
      if (ec != std::errc() || end != value.data() + value.size() || q < 0 || q > 1 || value.size() > 5) return std::nullopt;
      m.q = q;
    } else if (name == "fhirversion") {
      m.fhir_version = std::string(value);
    }
  }
  return m;
}

// FHIR R4 (http://hl7.org/fhir/R4/http.html#version-parameter).
bool supported_version(const MediaRange& m) { return !m.fhir_version || *m.fhir_version == "4.0" || *m.fhir_version == "4.0.1"; }

// The q-value the Accept ranges give application/<subtype>: the most specific matching range
// decides (RFC 9110 section 12.5.1); 0 when none matches.
double accept_q(const std::vector<MediaRange>& ranges, std::string_view subtype) {
  int best = -1;
  double q = 0;
  for (const auto& m : ranges) {
    int specificity = -1;
    if (m.type == "*" && m.subtype == "*") specificity = 0;
    else if (m.type == "application" && m.subtype == "*") specificity = 1;
    else if (m.type == "application" && m.subtype == subtype && supported_version(m)) specificity = 2;
    if (specificity < 0) continue;
    if (specificity > best) {
      best = specificity;
      q = m.q;
    } else if (specificity == best) {
      q = std::max(q, m.q);
    }
  }
  return q;
}

std::optional<std::string> pretty_json(const std::string& body);

// 406 (http://hl7.org/fhir/R4/http.html#mime-type), indented when _pretty=true was asked for.
Response not_acceptable(const Representation& representation, std::string diagnostics) {
  Response r;
  r.status = 406;
  r.content_type = std::string(kFhirJson);
  r.body = operation_outcome_json({Issue{"error", "not-supported", std::move(diagnostics)}});
  if (representation.pretty)
    if (auto pretty = pretty_json(r.body)) r.body = std::move(*pretty);
  return r;
}

constexpr const char* kOnlyJson =
    "this server produces only JSON (application/fhir+json or application/json, FHIR 4.0)";

// _format (http://hl7.org/fhir/R4/http.html#mime-type): true when acceptable; sets plain_json.
bool accept_format(std::string_view value, Representation& out) {
  const auto trimmed = trim(value);
  if (iequals(trimmed, "json")) {
    out.plain_json = false;
    return true;
  }
  const auto m = parse_media_range(trimmed);
  if (!m || m->type != "application" || !supported_version(*m)) return false;
  if (m->subtype == "fhir+json") out.plain_json = false;
  else if (m->subtype == "json") out.plain_json = true;
  else return false;
  return true;
}

bool under_fhir(std::string_view target) {
  const auto path = target.substr(0, target.find_first_of("?#"));
  return path == "/fhir" || path.starts_with("/fhir/");
}

// The opaque-tag of an entity-tag (RFC 9110 section 8.8.3), i.e. without W/: weak comparison.
std::string_view opaque_tag(std::string_view tag) {
  tag = trim(tag);
  if (tag.starts_with("W/")) tag.remove_prefix(2);
  return tag;
}

// If-None-Match (RFC 9110 section 13.1.2): "*" or a list of entity-tags; a malformed element
// matches nothing.
bool none_match(std::string_view list, std::string_view etag) {
  const auto ours = opaque_tag(etag);
  for (auto element : split_list(list, ',')) {
    element = trim(element);
    if (element == "*") return true;
    const auto tag = opaque_tag(element);
    if (tag.size() < 2 || tag.front() != '"' || tag.back() != '"') continue;
    if (tag == ours) return true;
  }
  return false;
}

// RapidJSON 1.1's Writer::RawNumber writes the number as a string ("60.5"); this one writes it
// as the number it is, byte for byte (a FHIR decimal keeps its precision).
class RawNumberPrettyWriter : public rapidjson::PrettyWriter<rapidjson::StringBuffer> {
 public:
  using PrettyWriter::PrettyWriter;
  bool RawNumber(const char* text, rapidjson::SizeType length, bool) { return RawValue(text, length, rapidjson::kNumberType); }
};

// Re-serialises JSON with 2-space indentation, numbers copied as written; nullopt when `body`
// does not parse.
std::optional<std::string> pretty_json(const std::string& body) {
  if (body.find('\0') != std::string::npos) return std::nullopt;
  rapidjson::StringBuffer buffer;
  RawNumberPrettyWriter writer(buffer);
  writer.SetIndent(' ', 2);
  rapidjson::Reader reader;
  rapidjson::StringStream stream(body.c_str());
  if (reader.Parse<rapidjson::kParseNumbersAsStringsFlag>(stream, writer).IsError()) return std::nullopt;
  return std::string(buffer.GetString(), buffer.GetSize());
}

// An IMF-fixdate (RFC 9110 section 5.6.7, "Sun, 06 Nov 1994 08:49:37 GMT") as seconds since
// the epoch; nullopt for anything else (the obsolete RFC 850 and asctime forms included, so such
// an If-Modified-Since is ignored, as for an invalid date).
std::optional<std::int64_t> parse_http_date(std::string_view text) {
  text = trim(text);
  static constexpr std::string_view kDays[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
  static constexpr std::string_view kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  if (text.size() != 29 || text.substr(3, 2) != ", " || text[7] != ' ' || text[11] != ' ' || text[16] != ' ' ||
      text[19] != ':' || text[22] != ':' || text.substr(25) != " GMT")
    return std::nullopt;
  if (std::find(std::begin(kDays), std::end(kDays), text.substr(0, 3)) == std::end(kDays)) return std::nullopt;
  const auto month = std::find(std::begin(kMonths), std::end(kMonths), text.substr(8, 3));
  if (month == std::end(kMonths)) return std::nullopt;
  auto number = [&](std::size_t at, std::size_t length) -> int {
    int value = 0;
    for (std::size_t i = at; i < at + length; ++i) {
      if (text[i] < '0' || text[i] > '9') return -1;
      value = value * 10 + (text[i] - '0');
    }
    return value;
  };
  const int day = number(5, 2), year = number(12, 4), hour = number(17, 2), minute = number(20, 2), second = number(23, 2);
  if (day < 0 || year < 0 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 60)
    return std::nullopt;
  const std::chrono::year_month_day date{std::chrono::year(year),
                                         std::chrono::month(static_cast<unsigned>(month - std::begin(kMonths) + 1)),
                                         std::chrono::day(static_cast<unsigned>(day))};
  if (!date.ok()) return std::nullopt;
  const auto days = std::chrono::sys_days(date).time_since_epoch().count();
  return static_cast<std::int64_t>(days) * 86400 + hour * 3600 + minute * 60 + second;
}

}  // namespace

std::string body_etag(std::string_view body) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(body.data(), body.size(), digest, &length, EVP_sha256(), nullptr) != 1 || length < 8) return {};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string tag = "W/\"";
  for (int i = 0; i < 8; ++i) {
    tag += kHex[digest[i] >> 4];
    tag += kHex[digest[i] & 15];
  }
  tag += '"';
  return tag;
}

std::optional<Response> negotiate(Request& request, Representation& out) {
  out = Representation{};
  if (!under_fhir(request.target)) return std::nullopt;
  out.fhir = true;

  // Take _format and _pretty out of the query.
  std::vector<std::string> formats;
  const auto question = request.target.find('?');
  if (question != std::string::npos) {
    const std::string_view target(request.target);
    const auto hash = target.find('#', question);
    const auto query = target.substr(question + 1, hash == std::string_view::npos ? std::string_view::npos : hash - question - 1);
    std::string kept;
    bool removed = false, first = true;
    std::vector<std::string_view> pieces;  // split at every '&': quotes mean nothing in a query
    for (std::size_t start = 0;;) {
      const auto amp = query.find('&', start);
      pieces.push_back(query.substr(start, amp == std::string_view::npos ? std::string_view::npos : amp - start));
      if (amp == std::string_view::npos) break;
      start = amp + 1;
    }
    for (const auto piece : pieces) {
      const auto eq = piece.find('=');
      const auto name = percent_decode(piece.substr(0, eq));
      const auto raw_value = eq == std::string_view::npos ? std::string_view() : piece.substr(eq + 1);
      if (name && (*name == "_format" || *name == "_pretty" || *name == "_elements")) {
        removed = true;
        auto value = percent_decode(raw_value);
        if (*name == "_format") {
          formats.push_back(value ? *value : std::string("(unreadable)"));
        } else if (*name == "_elements") {
          if (value)
            for (const auto element : split_list(*value, ','))
              if (!trim(element).empty()) out.elements.emplace_back(trim(element));
        } else {
          out.pretty = value && *value == "true";
        }
        continue;
      }
      if (!first) kept += '&';
      kept.append(piece);
      first = false;
    }
    if (removed) {
      std::string rebuilt(target.substr(0, question));
      if (!first) rebuilt += "?" + kept;
      if (hash != std::string_view::npos) rebuilt.append(target.substr(hash));
      request.target = std::move(rebuilt);
    }
  }

  // _format overrides Accept (http://hl7.org/fhir/R4/http.html#mime-type).
  if (!formats.empty()) {
    for (const auto& f : formats)
      if (!accept_format(f, out)) return not_acceptable(out, std::string("_format: ") + kOnlyJson);
    return std::nullopt;
  }

  const auto accept = header(request, "Accept");
  if (!accept || trim(*accept).empty()) return std::nullopt;
  // Bulk Data output files are NDJSON (docs/bulk-export.md): a client may ask for exactly that.
  if (request.target.find("/$export-files/") != std::string::npos) return std::nullopt;
  std::vector<MediaRange> ranges;
  for (const auto element : split_list(*accept, ',')) {
    if (trim(element).empty()) continue;
    if (auto m = parse_media_range(element)) ranges.push_back(std::move(*m));
  }
  if (ranges.empty()) return std::nullopt;  // nothing readable: as if absent
  const double fhir_q = accept_q(ranges, "fhir+json");
  const double json_q = accept_q(ranges, "json");
  if (fhir_q <= 0 && json_q <= 0) return not_acceptable(out, std::string("Accept: ") + kOnlyJson);
  out.plain_json = json_q > fhir_q;
  return std::nullopt;
}

// Elements a resource keeps under _elements: those with cardinality 1..* in R4, and for
// Observation also what the R4 vital-signs profile requires, so a subset stays valid.
static const std::vector<std::string_view>* mandatory_elements(std::string_view type) {
  static const std::vector<std::pair<std::string_view, std::vector<std::string_view>>> kTable = {
      {"Observation", {"status", "code", "category", "subject", "effectiveDateTime", "effectivePeriod", "valueQuantity",
                       "valueBoolean", "valueString", "valueCodeableConcept", "valueSampledData", "component",
                       "dataAbsentReason", "hasMember"}},
      {"Patient", {}},
      {"Device", {}},
      {"Condition", {"subject"}},
      {"Encounter", {"status", "class"}},
      {"AllergyIntolerance", {"patient"}},
      {"Procedure", {"status", "subject"}},
      {"Immunization", {"status", "vaccineCode", "patient", "occurrenceDateTime", "occurrenceString"}},
      {"DiagnosticReport", {"status", "code"}},
      {"MedicationRequest", {"status", "intent", "subject", "medicationCodeableConcept", "medicationReference"}},
      {"CarePlan", {"status", "intent", "subject"}},
      {"Goal", {"lifecycleStatus", "description", "subject"}},
  };
  for (const auto& [t, elements] : kTable)
    if (t == type) return &elements;
  return nullptr;
}

// Subsets one resource object in place (see Representation::elements); false when its type has
// no table entry (left whole).
static bool subset_resource(rapidjson::Value& resource, const std::vector<std::string>& keep,
                     rapidjson::Document::AllocatorType& allocator) {
  if (!resource.IsObject()) return false;
  const auto type = resource.FindMember("resourceType");
  if (type == resource.MemberEnd() || !type->value.IsString()) return false;
  const auto* mandatory = mandatory_elements(std::string_view(type->value.GetString(), type->value.GetStringLength()));
  if (mandatory == nullptr) return false;
  for (auto m = resource.MemberBegin(); m != resource.MemberEnd();) {
    const std::string_view name(m->name.GetString(), m->name.GetStringLength());
    const bool kept = name == "resourceType" || name == "id" || name == "meta" ||
                      std::find(keep.begin(), keep.end(), name) != keep.end() ||
                      std::find(mandatory->begin(), mandatory->end(), name) != mandatory->end();
    m = kept ? m + 1 : resource.EraseMember(m);
  }
  // meta.tag SUBSETTED (http://hl7.org/fhir/R4/search.html#elements).
  if (!resource.HasMember("meta")) resource.AddMember("meta", rapidjson::Value(rapidjson::kObjectType), allocator);
  auto& meta = resource["meta"];
  if (!meta.IsObject()) return true;
  if (!meta.HasMember("tag")) meta.AddMember("tag", rapidjson::Value(rapidjson::kArrayType), allocator);
  if (!meta["tag"].IsArray()) return true;
  rapidjson::Value tag(rapidjson::kObjectType);
  tag.AddMember("system", "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", allocator);
  tag.AddMember("code", "SUBSETTED", allocator);
  tag.AddMember("display", "subsetted", allocator);
  meta["tag"].PushBack(tag, allocator);
  return true;
}

// The body with _elements applied to the resource, or to each entry resource of a Bundle;
// nothing when it does not parse or nothing was subsetted.
static std::optional<std::string> subset_body(const std::string& body, const std::vector<std::string>& keep) {
  rapidjson::Document d;
  d.Parse<rapidjson::kParseIterativeFlag | rapidjson::kParseFullPrecisionFlag>(body.data(), body.size());
  if (d.HasParseError() || !d.IsObject()) return std::nullopt;
  bool changed = false;
  const auto type = d.FindMember("resourceType");
  if (type != d.MemberEnd() && type->value.IsString() && std::string_view(type->value.GetString()) == "Bundle") {
    const auto entries = d.FindMember("entry");
    if (entries != d.MemberEnd() && entries->value.IsArray())
      for (auto& e : entries->value.GetArray())
        if (e.IsObject() && e.HasMember("resource")) changed = subset_resource(e["resource"], keep, d.GetAllocator()) || changed;
  } else {
    changed = subset_resource(d, keep, d.GetAllocator());
  }
  if (!changed) return std::nullopt;
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer> writer(out);
  d.Accept(writer);
  return std::string(out.GetString(), out.GetSize());
}

Response finish(const Request& request, const Representation& representation, Response response) {
  if (!representation.fhir) return response;
  const std::string_view type = response.content_type;
  if (type.size() < 21 || !iequals(type.substr(0, 21), "application/fhir+json")) return response;

  if (response.status == 200 && (request.method == "GET" || request.method == "HEAD")) {
    const auto it = std::find_if(response.headers.begin(), response.headers.end(),
                                 [](const auto& h) { return iequals(h.first, "ETag"); });
    std::string etag;
    if (it != response.headers.end()) {
      etag = it->second;
    } else {
      etag = body_etag(response.body);
      if (!etag.empty()) response.headers.emplace_back("ETag", etag);
    }
    // RFC 9110 section 13.2.2: If-None-Match first; If-Modified-Since only without it.
    const auto condition = header(request, "If-None-Match");
    bool not_modified = !etag.empty() && condition && none_match(*condition, etag);
    if (!condition) {
      const auto since = header(request, "If-Modified-Since");
      const auto modified = std::find_if(response.headers.begin(), response.headers.end(),
                                         [](const auto& h) { return iequals(h.first, "Last-Modified"); });
      if (since && modified != response.headers.end()) {
        const auto since_time = parse_http_date(*since), modified_time = parse_http_date(modified->second);
        not_modified = since_time && modified_time && *modified_time <= *since_time;
      }
    }
    if (not_modified) {
      // RFC 9110 section 15.4.5: no content (so no Content-Type either), the 200's headers kept.
      response.status = 304;
      response.body.clear();
      response.content_type.clear();
      return response;
    }
  }
  if (!representation.elements.empty() && response.status == 200 && !response.body.empty())
    if (auto subset = subset_body(response.body, representation.elements)) response.body = std::move(*subset);
  if (representation.pretty && !response.body.empty())
    if (auto pretty = pretty_json(response.body)) response.body = std::move(*pretty);
  if (representation.plain_json && response.status < 400) response.content_type = std::string(kPlainJson);
  return response;
}

}  // namespace telehub::fhir
