#include "dense.h"

#include <charconv>
#include <cmath>

#include "resources.h"
#include "telehub/core/codes.h"
#include "telehub/core/time.h"

namespace telehub::fhir {
namespace {

// http://hl7.org/fhir/R4/codesystem-observation-statistics.html (R4 4.0.1 canonical URL).
constexpr std::string_view kStatisticsSystem = "http://terminology.hl7.org/CodeSystem/observation-statistics";
// telehub's tags and extension (docs/dense.md).
constexpr std::string_view kTagSystem = "https://telehub.example.org/fhir/CodeSystem/observation-tag";
constexpr std::string_view kStatisticOfUrl = "https://telehub.example.org/fhir/StructureDefinition/statistic-of";

char size_letter(storage::BucketSize size) { return size == storage::BucketSize::kHour ? 'h' : 'd'; }

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

bool id_chars(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  return true;
}

// The slot of `code` in the canonical unit (or, for a code telehub does not know, its first
// slot of that code).
const storage::SlotStats* canonical_slot(const storage::AggregateBucket& b, std::string_view code) {
  const core::CodeInfo* info = core::find_code(code);
  for (const auto& s : b.slots) {
    if (s.code != code) continue;
    if (!info || s.unit == info->ucum) return &s;
  }
  return nullptr;
}

// One statistic as a component; `of` names the panel member it describes (empty: the value).
void write_statistic(JsonWriter& w, std::string_view statistic, std::string_view display, const storage::SlotStats& s,
                     std::string_view of, double value) {
  w.StartObject();
  if (!of.empty()) {
    write_key(w, "extension");
    w.StartArray();
    w.StartObject();
    write_member(w, "url", kStatisticOfUrl);
    write_key(w, "valueCoding");
    const core::CodeInfo* info = core::find_code(of);
    write_coding(w, info ? info->system : core::kLoincSystem, of, info ? info->display : "");
    w.EndObject();
    w.EndArray();
  }
  write_key(w, "code");
  w.StartObject();
  write_key(w, "coding");
  w.StartArray();
  write_coding(w, kStatisticsSystem, statistic, display);
  w.EndArray();
  if (!of.empty()) {
    const core::CodeInfo* info = core::find_code(of);
    write_member(w, "text", std::string(info ? info->display : of) + ": " + std::string(display));
  }
  w.EndObject();
  if (statistic == "count") {
    write_key(w, "valueInteger");
    // FHIR integer is 32-bit; a bucket of a day holds far fewer readings.
    w.Int(static_cast<int>(std::min<std::int64_t>(s.count, 2'147'483'647)));
  } else {
    write_value_quantity(w, value, s.unit, s.code);
  }
  w.EndObject();
}

void write_statistics(JsonWriter& w, const storage::SlotStats& s, std::string_view of) {
  write_statistic(w, "average", "Average", s, of, s.mean);
  write_statistic(w, "minimum", "Minimum", s, of, s.min);
  write_statistic(w, "maximum", "Maximum", s, of, s.max);
  write_statistic(w, "count", "Count", s, of, 0);
}

void write_links(JsonWriter& w, const BundleLinks& links) {
  write_key(w, "link");
  w.StartArray();
  w.StartObject();
  write_member(w, "relation", "self");
  write_member(w, "url", links.self);
  w.EndObject();
  if (!links.next.empty()) {
    w.StartObject();
    write_member(w, "relation", "next");
    write_member(w, "url", links.next);
    w.EndObject();
  }
  w.EndArray();
}

template <class T>
tl::unexpected<Issue> bad(std::string code, std::string diagnostics) {
  return tl::unexpected(Issue{"error", std::move(code), std::move(diagnostics)});
}

}  // namespace

// ---------------------------------------------------------------- ids

std::optional<std::string> aggregate_observation_id(std::string_view subject, std::string_view code,
                                                    storage::BucketSize size, core::TimePoint start) {
  if (!id_chars(code)) return std::nullopt;
  const auto index = floor_div(core::to_unix_millis(start), storage::bucket_millis(size));
  std::string head = std::string("agg.") + size_letter(size) + "." + std::to_string(index) + ".";
  std::string full = head + std::string(subject) + "." + std::string(code);
  if (id_chars(subject) && valid_fhir_id(full)) return full;
  std::string shorter = head + std::string(code);
  if (valid_fhir_id(shorter)) return shorter;
  return std::nullopt;
}

std::optional<AggregateId> parse_aggregate_observation_id(std::string_view id) {
  if (!valid_fhir_id(id) || id.substr(0, 4) != "agg.") return std::nullopt;
  std::vector<std::string_view> parts;
  std::string_view rest = id.substr(4);
  for (;;) {
    const auto dot = rest.find('.');
    parts.push_back(rest.substr(0, dot));
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
  }
  if (parts.size() != 3 && parts.size() != 4) return std::nullopt;
  AggregateId out;
  if (parts[0] == "h") out.size = storage::BucketSize::kHour;
  else if (parts[0] == "d") out.size = storage::BucketSize::kDay;
  else return std::nullopt;
  std::int64_t index = 0;
  const auto* first = parts[1].data();
  const auto* last = first + parts[1].size();
  auto [ptr, ec] = std::from_chars(first, last, index);
  if (ec != std::errc() || ptr != last || parts[1].empty()) return std::nullopt;
  const auto width = storage::bucket_millis(out.size);
  if (index > INT64_MAX / width || index < INT64_MIN / width) return std::nullopt;
  out.start = core::from_unix_millis(index * width);
  if (parts.size() == 4) out.subject = std::string(parts[2]);
  out.code = std::string(parts.back());
  if (!id_chars(out.code) || (parts.size() == 4 && !id_chars(out.subject))) return std::nullopt;
  return out;
}

// ---------------------------------------------------------------- aggregate Observations

bool write_aggregate_observation(JsonWriter& w, const storage::AggregateBucket& b, std::string_view subject,
                                 std::string_view code, storage::BucketSize size) {
  const core::CodeInfo* info = core::find_code(code);
  const auto id = aggregate_observation_id(subject, code, size, b.start);
  if (!id) return false;
  const bool panel = info ? info->panel : canonical_slot(b, code) == nullptr;
  const storage::SlotStats* value = panel ? nullptr : canonical_slot(b, code);
  // Panel members: the bucket's component codes in order, each in its canonical unit.
  std::vector<const storage::SlotStats*> members;
  if (panel) {
    for (const auto& s : b.slots) {
      if (s.code == code) continue;
      const auto* c = canonical_slot(b, s.code);
      if (c == &s) members.push_back(c);
    }
  }
  if (!value && members.empty()) return false;

  w.StartObject();
  write_member(w, "resourceType", "Observation");
  write_member(w, "id", *id);
  write_key(w, "meta");
  w.StartObject();
  write_key(w, "tag");
  w.StartArray();
  write_coding(w, kTagSystem, size == storage::BucketSize::kHour ? "aggregate-hour" : "aggregate-day",
               size == storage::BucketSize::kHour ? "Hourly aggregate of readings" : "Daily aggregate of readings");
  w.EndArray();
  w.EndObject();
  write_member(w, "status", "final");
  write_observation_category(w, code);
  write_key(w, "code");
  write_observation_code(w, code);
  write_resource_reference(w, "subject", "Patient", subject);
  write_key(w, "effectivePeriod");
  w.StartObject();
  write_member(w, "start", core::format_rfc3339(b.start));
  write_member(w, "end", core::format_rfc3339(b.end));
  w.EndObject();
  if (value) write_value_quantity(w, value->mean, value->unit, code);
  write_key(w, "component");
  w.StartArray();
  if (value) {
    write_statistics(w, *value, "");
  } else {
    for (const auto* m : members) {  // the members with their means (vital-signs BP profile)
      w.StartObject();
      write_key(w, "code");
      write_observation_code(w, m->code);
      write_value_quantity(w, m->mean, m->unit, m->code);
      w.EndObject();
    }
    for (const auto* m : members) write_statistics(w, *m, m->code);
  }
  w.EndArray();
  w.EndObject();
  return true;
}

std::string aggregate_observation_json(const storage::AggregateBucket& bucket, std::string_view subject,
                                       std::string_view code, storage::BucketSize size) {
  JsonBuffer buffer;
  JsonWriter w(buffer);
  if (!write_aggregate_observation(w, bucket, subject, code, size)) return {};
  return to_string(buffer);
}

std::string aggregate_bundle_json(const std::vector<AggregateSeries>& series, std::string_view subject,
                                  storage::BucketSize size, const BundleLinks& links) {
  // Entries first (into their own buffer), so that total can be written before them.
  JsonBuffer entries_buffer;
  JsonWriter e(entries_buffer);
  e.StartArray();
  int total = 0;
  for (const auto& s : series) {
    for (const auto& b : s.buckets) {
      const auto id = aggregate_observation_id(subject, s.code, size, b.start);
      if (!id) continue;
      JsonBuffer one;
      JsonWriter o(one);
      if (!write_aggregate_observation(o, b, subject, s.code, size)) continue;
      e.StartObject();
      write_member(e, "fullUrl", links.base_url + "/Observation/" + *id);
      write_key(e, "resource");
      e.RawValue(one.GetString(), one.GetSize(), rapidjson::kObjectType);
      write_key(e, "search");
      e.StartObject();
      write_member(e, "mode", "match");
      e.EndObject();
      e.EndObject();
      ++total;
    }
  }
  e.EndArray();

  JsonBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  write_member(w, "resourceType", "Bundle");
  write_member(w, "type", "searchset");
  write_key(w, "total");
  w.Int(total);
  write_links(w, links);
  if (total > 0) {
    write_key(w, "entry");
    w.RawValue(entries_buffer.GetString(), entries_buffer.GetSize(), rapidjson::kArrayType);
  }
  w.EndObject();
  return to_string(buffer);
}

// ---------------------------------------------------------------- request parameters

bool wants_aggregate(const std::vector<QueryParam>& params) {
  for (const auto& p : params)
    if (p.name == "_aggregate" || p.name.rfind("_aggregate:", 0) == 0) return true;
  return false;
}

SearchResult<AggregateRequest> parse_aggregate_request(const std::vector<QueryParam>& params,
                                                       const SearchLimits& limits) {
  AggregateRequest out;
  std::vector<QueryParam> rest;
  std::optional<QueryParam> aggregate;
  for (const auto& p : params) {
    if (p.name == "_aggregate" || p.name.rfind("_aggregate:", 0) == 0) {
      if (p.name != "_aggregate") return bad<AggregateRequest>("not-supported", "_aggregate: modifiers are not supported");
      if (aggregate) return bad<AggregateRequest>("value", "_aggregate: given more than once");
      aggregate = p;
    } else if (p.name == "_cursor" || p.name.rfind("_cursor:", 0) == 0) {
      return bad<AggregateRequest>("not-supported", "_cursor: not supported with _aggregate (narrow the date range)");
    } else if (p.name == "_count" || p.name.rfind("_count:", 0) == 0) {
      out.ignored.push_back("_count");  // one page holds the whole range
    } else {
      rest.push_back(p);
    }
  }
  if (!aggregate) return bad<AggregateRequest>("required", "_aggregate: required");
  if (aggregate->value == "hour") out.size = storage::BucketSize::kHour;
  else if (aggregate->value == "day") out.size = storage::BucketSize::kDay;
  else return bad<AggregateRequest>("value", "_aggregate: must be hour or day");

  auto search = parse_observation_search(rest, limits);
  if (!search) return tl::unexpected(search.error());
  if (!search->codes) return bad<AggregateRequest>("required", "code: required with _aggregate");
  out.subject = search->subject;
  out.matches_nothing = search->matches_nothing || search->codes->empty();
  out.codes = *search->codes;
  out.from = search->from;
  out.to = search->to;
  out.link_params = search->link_params;
  out.link_params.push_back(*aggregate);
  out.ignored.insert(out.ignored.end(), search->ignored.begin(), search->ignored.end());
  return out;
}

SearchResult<LastnRequest> parse_lastn_request(const std::vector<QueryParam>& params, const SearchLimits& limits) {
  LastnRequest out;
  std::vector<QueryParam> rest;
  std::optional<QueryParam> max;
  for (const auto& p : params) {
    const std::string base = p.name.substr(0, p.name.find(':'));
    if (base == "max") {
      if (p.name != "max") return bad<LastnRequest>("not-supported", "max: modifiers are not supported");
      if (max) return bad<LastnRequest>("value", "max: given more than once");
      max = p;
    } else if (base == "date" || base == "_cursor") {
      return bad<LastnRequest>("not-supported", base + ": not supported with $lastn");
    } else if (base == "_count") {
      out.ignored.push_back("_count");
    } else {
      rest.push_back(p);
    }
  }
  if (max) {
    const auto& v = max->value;
    unsigned long n = 0;
    auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (v.empty() || ec != std::errc() || ptr != v.data() + v.size() || n < 1 || n > 1000)
      return bad<LastnRequest>("value", "max: must be an integer from 1 to 1000");
    out.max = n;
  }
  auto search = parse_observation_search(rest, limits);
  if (!search) return tl::unexpected(search.error());
  out.subject = search->subject;
  out.matches_nothing = search->matches_nothing || (search->codes && search->codes->empty());
  if (search->codes) out.codes = *search->codes;
  out.link_params = search->link_params;
  if (max) out.link_params.push_back(*max);
  out.ignored.insert(out.ignored.end(), search->ignored.begin(), search->ignored.end());
  return out;
}

}  // namespace telehub::fhir
