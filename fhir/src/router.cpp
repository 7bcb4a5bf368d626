// Routes of the FHIR API (see router.h). Resource mapping lives in resources.cpp, search
// parameter parsing in search_params.cpp; this file matches the request, reads the store
// and turns failures into OperationOutcomes (http://hl7.org/fhir/R4/http.html).
#include "telehub/fhir/router.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iterator>
#include <map>
#include <exception>

#include <rapidjson/document.h>

#include "json.h"
#include "resources.h"
#include "patient.h"
#include "search_params.h"
#include "access.h"
#include "bundle_import.h"
#include "clinical_search.h"
#include "dense.h"
#include "bulk_export.h"
#include "ips.h"
#include "representation.h"
#include "telehub/fhir/audit_event.h"
#include "telehub/core/codes.h"
#include "telehub/environment/fhir_observation.h"
#include "telehub/core/log.h"
#include "telehub/privacy/pseudonym.h"

namespace telehub::fhir {
namespace {

constexpr std::string_view kLogComponent = "fhir";
constexpr std::string_view kContentType = "application/fhir+json; charset=utf-8";
constexpr std::size_t kMaxAuditedQuery = 512;

Response json_response(int status, std::string body) {
  Response r;
  r.status = status;
  r.content_type = std::string(kContentType);
  r.body = std::move(body);
  return r;
}

Response outcome_response(int status, const Issue& issue) {
  return json_response(status, operation_outcome_json({issue}));
}

Response error_response(int status, std::string code, std::string diagnostics) {
  return outcome_response(status, Issue{"error", std::move(code), std::move(diagnostics)});
}

Response not_found(std::string diagnostics) { return error_response(404, "not-found", std::move(diagnostics)); }

Response error_response_with(int status, std::string severity, std::string code, std::string diagnostics) {
  return outcome_response(status, Issue{std::move(severity), std::move(code), std::move(diagnostics)});
}

// 500 carries no details; the real error is logged once, here.
Response internal_error(const core::Error& error) {
  core::log_error(kLogComponent, "storage failure: " + error.to_string());
  return error_response(500, "exception", "internal error");
}

// An HTTP-date (RFC 9110 section 5.6.7, IMF-fixdate) for Last-Modified.
std::string http_date(core::TimePoint t) {
  const std::time_t seconds = static_cast<std::time_t>(core::to_unix_millis(t) / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  char out[40];
  std::snprintf(out, sizeof out, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday], tm.tm_mday, kMonths[tm.tm_mon],
                tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return out;
}

// The path below /fhir, split into percent-decoded segments, and the raw query.
struct Target {
  std::vector<std::string> segments;
  std::string_view query;
};

std::optional<Target> split_target(std::string_view target) {
  constexpr std::string_view kPrefix = "/fhir";
  const auto q = target.find('?');
  std::string_view path = target.substr(0, q);
  Target t;
  if (q != std::string_view::npos) t.query = target.substr(q + 1);
  if (const auto hash = t.query.find('#'); hash != std::string_view::npos) t.query = t.query.substr(0, hash);
  if (path.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  path.remove_prefix(kPrefix.size());
  if (path.empty() || path == "/") return t;  // the base itself: POST /fhir (a Bundle)
  if (path[0] != '/') return std::nullopt;
  path.remove_prefix(1);
  std::size_t start = 0;
  for (;;) {
    const auto slash = path.find('/', start);
    auto segment = percent_decode(path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    if (!segment) return std::nullopt;
    t.segments.push_back(std::move(*segment));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return t;
}

// Observation ids are positive decimal row ids; anything else names no Observation.
std::optional<std::int64_t> parse_observation_id(std::string_view text) {
  if (text.empty() || text.size() > 18 || text[0] == '0') return std::nullopt;
  std::int64_t id = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (ec != std::errc() || end != text.data() + text.size() || id < 1) return std::nullopt;
  return id;
}

// A query parameter name safe to quote in diagnostics: the decoded name is client bytes (any
// byte, invalid UTF-8 included, which the JSON writer would copy into the body unchecked).
bool printable_name(std::string_view name) {
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.' || c == ':';
  });
}

std::string search_url(const std::string& base_url, const ObservationSearch& search,
                       const std::optional<storage::Cursor>& cursor) {
  std::string url = base_url + "/Observation?";
  for (const auto& p : search.link_params) url += percent_encode(p.name) + "=" + percent_encode(p.value) + "&";
  url += "_count=" + std::to_string(search.count);
  if (cursor) url += "&_cursor=" + format_cursor(*cursor);
  return url;
}

// A Bundle entry: fullUrl, the resource (JSON text written as is) and search.mode.
void write_raw_entry(JsonWriter& w, const std::string& full_url, std::string_view resource, std::string_view mode) {
  w.StartObject();
  write_member(w, "fullUrl", full_url);
  write_key(w, "resource");
  w.RawValue(resource.data(), resource.size(), rapidjson::kObjectType);
  write_key(w, "search");
  w.StartObject();
  write_member(w, "mode", mode);
  w.EndObject();
  w.EndObject();
}

// Lenient handling (http://hl7.org/fhir/R4/search.html#errors): unknown parameters are ignored
// and reported in an outcome entry. Names are client bytes: unreadable ones become "?".
void write_ignored_outcome(JsonWriter& w, const std::vector<std::string>& ignored) {
  std::string names;
  for (const auto& n : ignored) names += (names.empty() ? "" : ", ") + (printable_name(n) ? n : std::string("?"));
  w.StartObject();
  write_key(w, "resource");
  write_operation_outcome(w, {Issue{"warning", "not-supported", "parameters not supported and ignored: " + names}});
  write_key(w, "search");
  w.StartObject();
  write_member(w, "mode", "outcome");
  w.EndObject();
  w.EndObject();
}

// The route handlers, with the router's state passed in.
class Handlers {
 public:
  Handlers(storage::Store& store, const RouterOptions& options) : store_(store), options_(options) {}

  Response metadata() const { return json_response(200, capability_statement_json({options_.base_url, options_.auth.tokens ? options_.auth.token_url : std::string(), options_.clinical != nullptr})); }

  // http://hl7.org/fhir/R4/search.html; the searchset Bundle: http://hl7.org/fhir/R4/bundle.html
  Response search_observations(const Request& r, const Principal& p, std::string_view query) const {
    auto params = parse_query(query);
    if (!params) return error_response(400, "value", "malformed query string (bad percent-encoding)");
    // Dense views (dense.h, docs/dense.md): hourly or daily aggregates of the home readings.
    if (wants_aggregate(*params)) return aggregate_observations(r, p, *params, query);
    // Without _sort, paging runs over the home readings first, then over the clinical
    // Observations: a cursor "c:<clinical cursor>" is in the second phase. With _sort=date or
    // -date both sources are merged by date, and the cursor "m:<home>~<clinical>" holds the
    // position in each (docs/fhir.md, "Observation search").
    std::optional<std::string> clinical_cursor, merged_cursor;
    std::optional<bool> descending;  // set by _sort
    for (auto it = params->begin(); it != params->end();) {
      if (it->name == "_cursor" && it->value.starts_with("c:")) {
        clinical_cursor = it->value.substr(2);
      } else if (it->name == "_cursor" && it->value.starts_with("m:")) {
        merged_cursor = it->value.substr(2);
      } else if (it->name == "_sort" || it->name.starts_with("_sort:")) {
        if (it->name != "_sort") return error_response(400, "not-supported", "_sort: modifiers are not supported");
        if (descending) return error_response(400, "value", "_sort: given more than once");
        if (it->value == "date") descending = false;
        else if (it->value == "-date") descending = true;
        else return error_response(400, "not-supported", "_sort supports date and -date on Observation");
      } else {
        ++it;
        continue;
      }
      it = params->erase(it);
    }
    if ((merged_cursor && !descending) || (clinical_cursor && descending))
      return error_response(400, "value", "bad _cursor: not from a next link of this search");
    // _include=Observation:subject (or :patient) and Observation:device: the Patient and the
    // Devices of the page's Observations, as entries with search.mode include.
    ObservationIncludes inc;
    for (auto it = params->begin(); it != params->end();) {
      if (it->name != "_include") {
        ++it;
        continue;
      }
      if (it->value == "Observation:subject" || it->value == "Observation:patient") inc.patient = true;
      else if (it->value == "Observation:device") inc.device = true;
      else return error_response(400, "not-supported", "_include supports Observation:subject, Observation:patient and Observation:device");
      inc.link += "&_include=" + percent_encode(it->value);
      it = params->erase(it);
    }
    auto search = parse_observation_search(*params, {options_.base_url, options_.default_count, options_.max_count});
    if (!search) return outcome_response(400, search.error());
    if (descending && search->after) return error_response(400, "value", "bad _cursor: not from a next link of this search");
    if (auto refused = check_subject(r, p, Endpoint::kObservationSearch, search->subject, "Observation", std::string(query)))
      return *refused;
    // Prefer: handling=strict (http://hl7.org/fhir/R4/search.html#errors): unknown parameters
    // are an error instead of being ignored and reported.
    for (const auto& [k, v] : r.headers)
      if ((k == "Prefer" || k == "prefer") && v.find("handling=strict") != std::string::npos && !search->ignored.empty())
        return error_response(400, "not-supported", "unknown search parameter (Prefer: handling=strict)");
    if (descending) return sorted_observations(p, *search, inc, *descending, merged_cursor.value_or(""));

    std::vector<storage::StoredObservation> items;
    std::optional<storage::Cursor> next;
    bool more = false;
    if (!search->matches_nothing && !clinical_cursor) {
      auto found = home_observations(*search, search->after, false, search->count, more);
      if (!found) return internal_error(found.error());
      items = std::move(*found);
      if (more && !items.empty()) next = storage::Cursor{core::to_unix_millis(items.back().reading.time), items.back().id};
    }
    // The clinical phase: Observations imported from hospital systems, when the home phase
    // left room on this page.
    std::vector<clinical::StoredResource> clinical_items;
    std::optional<std::string> next_clinical;  // the clinical cursor of the next page
    if (options_.clinical && !search->matches_nothing && !next && items.size() < search->count) {
      clinical::Query q = clinical_observation_query(*search, false);
      q.cursor = clinical_cursor.value_or("");
      q.limit = static_cast<int>(search->count - items.size());
      auto page = options_.clinical->search(q);
      if (!page) {
        if (page.error().code == core::Code::kInvalidArgument) return error_response(400, "value", "bad _cursor");
        return internal_error(page.error());
      }
      clinical_items = std::move(page->resources);
      if (!page->next_cursor.empty()) next_clinical = page->next_cursor;
    } else if (options_.clinical && !search->matches_nothing && !next && items.size() == search->count) {
      next_clinical = "";  // a full home page and no more home readings: the clinical phase next
    }

    std::string next_url;
    if (next) {
      next_url = search_url(options_.base_url, *search, next) + inc.link;
    } else if (next_clinical) {
      next_url = search_url(options_.base_url, *search, std::nullopt) + inc.link + "&_cursor=" + percent_encode("c:" + *next_clinical);
    }
    std::vector<ObservationEntry> entries;
    for (const auto& o : items) entries.push_back({&o, nullptr});
    for (const auto& c : clinical_items) entries.push_back({nullptr, &c});
    return observation_bundle(p, search->subject, search->ignored, inc,
                              search_url(options_.base_url, *search, search->after) + inc.link, next_url, entries);
  }

  struct ObservationIncludes {
    bool patient = false;
    bool device = false;
    std::string link;  // "&_include=..." for the self and next links
  };
  // One entry of an Observation searchset: a home reading or a clinical Observation.
  struct ObservationEntry {
    const storage::StoredObservation* home = nullptr;
    const clinical::StoredResource* clinical = nullptr;
  };

  // The home readings of a search: one store query per matching code (a token may stand for
  // several stored codes, e.g. 2708-6 also matches 59408-5 readings), merged in (time, id) order
  // (descending: newest first). Each query returns its first `limit` rows after the cursor, so
  // the first `limit` of the merge are the first `limit` of the union. `more`: rows remain.
  Result<std::vector<storage::StoredObservation>> home_observations(const ObservationSearch& search,
                                                                     const std::optional<storage::Cursor>& after,
                                                                     bool descending, std::size_t limit, bool& more) const {
    std::vector<std::optional<std::string>> codes;
    if (search.codes) codes.assign(search.codes->begin(), search.codes->end());
    else codes.emplace_back(std::nullopt);
    std::vector<storage::StoredObservation> items;
    more = false;
    for (const auto& code : codes) {
      storage::ObservationQuery q;
      q.subject = search.subject;
      q.code = code;
      q.from = search.from;
      q.to = search.to;
      q.after = after;
      q.limit = limit;
      q.descending = descending;
      auto page = store_.observations().search(q);
      if (!page) return tl::unexpected(page.error());
      more = more || page->next.has_value();
      std::move(page->items.begin(), page->items.end(), std::back_inserter(items));
    }
    std::sort(items.begin(), items.end(), [descending](const auto& a, const auto& b) {
      return descending ? std::pair(b.reading.time, b.id) < std::pair(a.reading.time, a.id)
                        : std::pair(a.reading.time, a.id) < std::pair(b.reading.time, b.id);
    });
    if (items.size() > limit) {
      items.resize(limit);
      more = true;
    }
    return items;
  }

  // The clinical Observations matching the search's subject, codes and date bounds, by date.
  static clinical::Query clinical_observation_query(const ObservationSearch& search, bool descending) {
    clinical::Query q;
    q.type = "Observation";
    q.subject = search.subject;
    if (search.codes)
      for (const auto& code : *search.codes) q.tokens.push_back({"code", "", code});
    if (search.from) {
      const auto ms = core::to_unix_millis(*search.from);
      q.dates.push_back({clinical::Prefix::kGe, {ms, ms + 1}});
    }
    if (search.to) {
      const auto ms = core::to_unix_millis(*search.to);
      q.dates.push_back({clinical::Prefix::kLt, {ms, ms + 1}});
    }
    q.sort = clinical::SortBy::kDate;
    q.descending = descending;
    return q;
  }

  // _sort=date | -date: the home readings and the clinical Observations merged by date (a
  // clinical Observation's date is the start of its effective time, or issued; one without a
  // date sorts first ascending, last descending). The cursor "<home>~<clinical>" keeps the
  // position in each source: "" not started, "x" exhausted, else that source's cursor, so a
  // page continues each source right after the last resource of it shown, whatever arrives.
  Response sorted_observations(const Principal& p, const ObservationSearch& search, const ObservationIncludes& inc,
                               bool descending, const std::string& cursor) const {
    std::string home_pos, clinical_pos;
    if (!cursor.empty()) {
      const auto tilde = cursor.find('~');
      if (tilde == std::string::npos) return error_response(400, "value", "bad _cursor: not from a next link of this search");
      home_pos = cursor.substr(0, tilde);
      clinical_pos = cursor.substr(tilde + 1);
    }
    std::optional<storage::Cursor> home_after;
    if (!home_pos.empty() && home_pos != "x") {
      home_after = parse_cursor(home_pos);
      if (!home_after) return error_response(400, "value", "bad _cursor: not from a next link of this search");
    }
    std::vector<storage::StoredObservation> home;
    bool home_more = false;
    if (!search.matches_nothing && home_pos != "x") {
      auto found = home_observations(search, home_after, descending, search.count, home_more);
      if (!found) return internal_error(found.error());
      home = std::move(*found);
    }
    std::vector<clinical::StoredResource> clin;
    bool clinical_more = false;
    if (options_.clinical && !search.matches_nothing && clinical_pos != "x") {
      clinical::Query q = clinical_observation_query(search, descending);
      q.cursor = clinical_pos;
      q.limit = static_cast<int>(search.count);
      auto page = options_.clinical->search(q);
      if (!page) {
        if (page.error().code == core::Code::kInvalidArgument) return error_response(400, "value", "bad _cursor");
        return internal_error(page.error());
      }
      clin = std::move(page->resources);
      clinical_more = !page->next_cursor.empty();
    }
    // Merge: take the earlier (descending: the later) head until the page is full; on equal
    // dates the home reading first.
    std::vector<ObservationEntry> entries;
    std::size_t h = 0, c = 0;
    while (entries.size() < search.count && (h < home.size() || c < clin.size())) {
      bool take_home = c >= clin.size();
      if (h < home.size() && c < clin.size()) {
        const std::int64_t ht = core::to_unix_millis(home[h].reading.time), ct = clin[c].sort_key;
        take_home = descending ? ht >= ct : ht <= ct;
      }
      if (take_home) entries.push_back({&home[h++], nullptr});
      else entries.push_back({nullptr, &clin[c++]});
    }
    // Where each source stands after this page.
    std::string next_home = home_pos, next_clinical = clinical_pos;
    if (search.matches_nothing || (h == home.size() && !home_more)) next_home = "x";
    else if (h > 0) next_home = format_cursor({core::to_unix_millis(home[h - 1].reading.time), home[h - 1].id});
    if (!options_.clinical || search.matches_nothing || (c == clin.size() && !clinical_more)) next_clinical = "x";
    else if (c > 0) next_clinical = clinical::cursor_after(clinical_observation_query(search, descending), clin[c - 1]);
    const std::string sort = descending ? "&_sort=-date" : "&_sort=date";
    const std::string base = search_url(options_.base_url, search, std::nullopt) + sort + inc.link;
    std::string self = base;
    if (!cursor.empty()) self += "&_cursor=" + percent_encode("m:" + cursor);
    std::string next_url;
    if (next_home != "x" || next_clinical != "x") next_url = base + "&_cursor=" + percent_encode("m:" + next_home + "~" + next_clinical);
    return observation_bundle(p, search.subject, search.ignored, inc, self, next_url, entries);
  }

  // The searchset Bundle of an Observation search or $lastn: the entries, then the included
  // Patient and Devices, then the OperationOutcome naming ignored parameters; `total` when given.
  Response observation_bundle(const Principal& p, const std::string& subject, const std::vector<std::string>& ignored,
                              const ObservationIncludes& inc, const std::string& self_url, const std::string& next_url,
                              const std::vector<ObservationEntry>& entries, std::optional<int> total = std::nullopt) const {
    JsonBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    write_member(w, "resourceType", "Bundle");
    write_member(w, "type", "searchset");
    if (total) {
      write_key(w, "total");
      w.Int(*total);
    }
    write_key(w, "link");
    w.StartArray();
    w.StartObject();
    write_member(w, "relation", "self");
    write_member(w, "url", self_url);
    w.EndObject();
    if (!next_url.empty()) {
      w.StartObject();
      write_member(w, "relation", "next");
      write_member(w, "url", next_url);
      w.EndObject();
    }
    w.EndArray();
    if (!entries.empty() || !ignored.empty()) {
      write_key(w, "entry");
      w.StartArray();
      std::vector<std::string> devices;
      for (const auto& e : entries) {
        if (e.clinical) {
          write_entry(w, *e.clinical, "match");
          continue;
        }
        const auto& o = *e.home;
        if (std::find(devices.begin(), devices.end(), o.reading.device) == devices.end()) devices.push_back(o.reading.device);
        write_home_entry(w, o);
      }
      if (inc.patient && !entries.empty()) {
        Response patient = read_patient_body(p, subject);
        if (patient.status == 200)
          write_raw_entry(w, options_.base_url + "/Patient/" + subject, patient.body, "include");
      }
      if (inc.device) {
        for (const auto& id : devices) {
          if (!valid_fhir_id(id)) continue;
          auto device = store_.registry().find_device(id);
          if (!device) return internal_error(device.error());
          if (!*device) continue;
          write_raw_entry(w, options_.base_url + "/Device/" + id, device_json(**device), "include");
        }
      }
      if (!ignored.empty()) write_ignored_outcome(w, ignored);
      w.EndArray();
    }
    w.EndObject();
    return json_response(200, to_string(buffer));
  }

  // A searchset entry for a home reading: fullUrl, the Observation, search.mode match.
  void write_home_entry(JsonWriter& w, const storage::StoredObservation& o) const {
    w.StartObject();
    write_member(w, "fullUrl", options_.base_url + "/Observation/" + std::to_string(o.id));
    write_key(w, "resource");
    write_observation(w, o, rules());
    write_key(w, "search");
    w.StartObject();
    write_member(w, "mode", "match");
    w.EndObject();
    w.EndObject();
  }

  Response read_observation(const Request& r, const Principal& p, std::string_view id_text) const {
    const auto id = parse_observation_id(id_text);
    if (!id) return clinical_read(r, p, "Observation", id_text, std::nullopt, false);
    auto found = store_.observations().get(*id);
    if (!found) return internal_error(found.error());
    if (!*found) return not_found("no such Observation");
    const std::string object = "Observation/" + std::to_string(*id);
    if (auto refused = check_subject(r, p, Endpoint::kObservationRead, (*found)->reading.subject, object))
      return *refused;
    return json_response(200, observation_json(**found, rules()));
  }

  Response read_device(const Request& r, const Principal& p, std::string_view id) const {
    // A device id that is not a FHIR id (it may contain '_') cannot be a Device id.
    if (!valid_fhir_id(id)) return not_found("no such Device");
    auto found = store_.registry().find_device(id);
    if (!found) return internal_error(found.error());
    if (!*found) return not_found("no such Device");
    // The enrolment role reads devices without a care relation; care needs one.
    if (p.role != kRoleEnrolment || p.kind != Principal::Kind::kGrant) {
      if (auto refused = check_subject(r, p, Endpoint::kDeviceRead, (*found)->subject, "Device/" + std::string(id)))
        return *refused;
    } else if (!audit(r, p, Endpoint::kDeviceRead, "success", (*found)->subject, "Device/" + std::string(id))) {
      return audit_failed();
    }
    return json_response(200, device_json(**found));
  }

  // GET Observation?_aggregate=hour|day&patient=&code=[&date=]: one aggregate Observation per
  // hour or day with readings (docs/dense.md). Without a date range: the last 366 days.
  Response aggregate_observations(const Request& r, const Principal& p, const std::vector<QueryParam>& params,
                                  std::string_view query) const {
    auto request = parse_aggregate_request(params, {options_.base_url, options_.default_count, options_.max_count});
    if (!request) return outcome_response(400, request.error());
    if (auto refused = check_subject(r, p, Endpoint::kObservationSearch, request->subject, "Observation", std::string(query)))
      return *refused;
    std::vector<AggregateSeries> series;
    if (!request->matches_nothing) {
      const auto to = request->to.value_or(core::system_clock().now());
      const auto from = request->from.value_or(to - std::chrono::hours(24 * 366));
      for (const auto& code : request->codes) {
        storage::AggregateQuery q;
        q.subject = request->subject;
        q.code = code;
        q.bucket = request->size;
        q.from = from;
        q.to = to;
        auto buckets = store_.observations().aggregate(q);
        if (!buckets) return internal_error(buckets.error());
        series.push_back({code, std::move(*buckets)});
      }
    }
    std::string self = options_.base_url + "/Observation?";
    for (const auto& q : request->link_params) self += percent_encode(q.name) + "=" + percent_encode(q.value) + "&";
    self.pop_back();
    return json_response(200, aggregate_bundle_json(series, request->subject, request->size, {options_.base_url, self, ""}));
  }

  // GET Observation/$lastn?patient=&code=&max= (http://hl7.org/fhir/R4/observation-operation-lastn.html):
  // the newest `max` Observations per code, home readings and clinical Observations together
  // (docs/fhir.md, "$lastn"). A home reading is grouped by its stored code. A clinical
  // Observation is grouped by its LOINC coding: of several LOINC codings, the first that one of
  // the asked codes names (with code=), else the first that the patient's home readings use (so
  // a hospital's 2708-6 + 59408-5 oxygen saturation joins the home pulse oximetry), else the
  // first; one without a LOINC coding by its first coding ("system|code"); one without any
  // coding is left out. Groups in code order, newest first within a group.
  Response lastn(const Request& r, const Principal& p, std::string_view query) const {
    auto params = parse_query(query);
    if (!params) return error_response(400, "value", "malformed query string (bad percent-encoding)");
    auto request = parse_lastn_request(*params, {options_.base_url, options_.default_count, options_.max_count});
    if (!request) return outcome_response(400, request.error());
    if (auto refused = check_subject(r, p, Endpoint::kLastn, request->subject, "Observation", std::string(query)))
      return *refused;
    struct Item {
      std::string group;
      std::int64_t time = 0;
      const storage::StoredObservation* home = nullptr;
      const clinical::StoredResource* clinical = nullptr;
    };
    std::vector<storage::StoredObservation> latest;
    std::vector<std::pair<std::string, clinical::StoredResource>> clinical_found;  // (group, resource)
    std::vector<Item> items;
    if (!request->matches_nothing) {
      auto found = store_.observations().latest(request->subject, request->codes, request->max);
      if (!found) return internal_error(found.error());
      latest = std::move(*found);
      for (const auto& o : latest) items.push_back({o.reading.code, core::to_unix_millis(o.reading.time), &o, nullptr});
    }
    if (options_.clinical && !request->matches_nothing) {
      std::vector<std::string> home_codes;
      for (const auto& o : latest) home_codes.push_back(o.reading.code);
      clinical::Query q;
      q.type = "Observation";
      q.subject = request->subject;
      for (const auto& code : request->codes) {
        const auto* info = core::find_code(code);
        q.tokens.push_back({"code", std::string(info ? info->system : core::kLoincSystem), code});
      }
      q.sort = clinical::SortBy::kDate;
      q.descending = true;
      q.limit = 1000;
      std::map<std::string, std::size_t> taken;  // clinical Observations per group so far
      for (;;) {
        auto page = options_.clinical->search(q);
        if (!page) return internal_error(page.error());
        for (auto& c : page->resources) {
          const std::string group = lastn_group(c.json, request->codes, home_codes);
          if (group.empty() || taken[group] >= request->max) continue;
          ++taken[group];
          clinical_found.emplace_back(group, std::move(c));
        }
        if (page->next_cursor.empty()) break;
        q.cursor = page->next_cursor;
      }
      for (const auto& [group, c] : clinical_found) items.push_back({group, c.sort_key, nullptr, &c});
    }
    // Per group the newest `max` of both sources; on equal times the home reading first.
    std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
      if (a.group != b.group) return a.group < b.group;
      if (a.time != b.time) return a.time > b.time;
      return a.home && !b.home;
    });
    std::vector<const Item*> kept;
    for (std::size_t i = 0, n = 0; i < items.size(); ++i) {
      n = i > 0 && items[i].group == items[i - 1].group ? n + 1 : 0;
      if (n < request->max) kept.push_back(&items[i]);
    }
    std::string self = options_.base_url + "/Observation/$lastn?";
    for (const auto& q : request->link_params) self += percent_encode(q.name) + "=" + percent_encode(q.value) + "&";
    self.pop_back();
    std::vector<ObservationEntry> entries;
    for (const Item* item : kept) entries.push_back({item->home, item->clinical});
    return observation_bundle(p, request->subject, request->ignored, {}, self, "", entries, static_cast<int>(entries.size()));
  }

  // The $lastn group of a clinical Observation (see lastn()); "" when it has no coding.
  static std::string lastn_group(const std::string& json, const std::vector<std::string>& asked,
                                 const std::vector<std::string>& home_codes) {
    rapidjson::Document d;
    d.Parse(json.c_str(), json.size());
    if (d.HasParseError() || !d.IsObject() || !d.HasMember("code") || !d["code"].IsObject()) return "";
    const auto& code = d["code"];
    if (!code.HasMember("coding") || !code["coding"].IsArray()) return "";
    std::vector<std::string> loinc;
    std::string first;
    for (const auto& c : code["coding"].GetArray()) {
      if (!c.IsObject() || !c.HasMember("code") || !c["code"].IsString()) continue;
      const std::string system = c.HasMember("system") && c["system"].IsString() ? c["system"].GetString() : "";
      if (system == core::kLoincSystem) loinc.emplace_back(c["code"].GetString());
      if (first.empty()) first = system + "|" + c["code"].GetString();
    }
    auto pick = [&](const std::vector<std::string>& wanted) -> std::string {
      for (const auto& l : loinc)
        if (std::find(wanted.begin(), wanted.end(), l) != wanted.end()) return l;
      return "";
    };
    if (!asked.empty()) {
      // A telehub code (not LOINC) asked for matches that coding.
      for (const auto& a : asked)
        if (first == std::string(core::kTelehubCodeSystem) + "|" + a) return a;
      return pick(asked);
    }
    if (auto h = pick(home_codes); !h.empty()) return h;
    return loinc.empty() ? first : loinc.front();
  }

  // GET Patient/<id>/$summary: the International Patient Summary document (ips.h, docs/ips.md).
  Response summary(const Request& r, const Principal& p, std::string_view id) const {
    if (!privacy::SubjectPseudonym::parse(id)) return not_found("no such Patient");
    auto exists = store_.registry().subject_exists(id);
    if (!exists) return internal_error(exists.error());
    if (!*exists) return not_found("no such Patient");
    if (auto refused = check_subject(r, p, Endpoint::kSummary, std::string(id), "Patient/" + std::string(id))) return *refused;
    Response patient = read_patient_body(p, id);
    if (patient.status != 200) return patient;
    auto latest = store_.observations().latest(id, {}, 1);
    if (!latest) return internal_error(latest.error());
    auto devices = store_.registry().devices_of(id);
    if (!devices) return internal_error(devices.error());
    SummaryInput in;
    in.base_url = options_.base_url;
    in.subject = std::string(id);
    in.patient_json = patient.body;
    in.clinical = options_.clinical.get();
    in.home_readings = std::move(*latest);
    in.devices = std::move(*devices);
    in.rules = &rules();
    in.now = core::system_clock().now();
    auto document = summary_bundle_json(in);
    if (!document) return internal_error(document.error());
    return json_response(200, std::move(*document));
  }

  // ---- Bulk Data export (docs/bulk-export.md) ----

  // The kick-off's header and parameters (Prefer: respond-async; _outputFormat, _type and,
  // with `since_ok`, _since) into `request`; an error answer when they are not acceptable.
  std::optional<Response> export_parameters(const Request& r, std::string_view query, bool since_ok,
                                            ExportRequest& request) const {
    bool async = false;
    for (const auto& [k, v] : r.headers)
      if ((k == "Prefer" || k == "prefer") && v.find("respond-async") != std::string::npos) async = true;
    if (!async) return error_response(400, "required", "a bulk export needs the header Prefer: respond-async");
    auto params = parse_query(query);
    if (!params) return error_response(400, "value", "malformed query string (bad percent-encoding)");
    for (const auto& q : *params) {
      if (q.name == "_outputFormat") {
        if (q.value != "application/fhir+ndjson" && q.value != "application/ndjson" && q.value != "ndjson")
          return error_response(400, "not-supported", "_outputFormat must be application/fhir+ndjson");
      } else if (q.name == "_type") {
        for (std::size_t b = 0;;) {
          const auto c = q.value.find(',', b);
          const std::string t = q.value.substr(b, c == std::string::npos ? std::string::npos : c - b);
          if (!t.empty()) request.types.push_back(t);
          if (c == std::string::npos) break;
          b = c + 1;
        }
      } else if (q.name == "_since" && since_ok) {
        auto range = clinical::fhir_date_range(q.value);
        if (!range) return error_response(400, "value", "_since must be a FHIR instant");
        request.since = core::from_unix_millis(range->from_ms);
      } else {
        return error_response(400, "not-supported", since_ok ? "bulk export supports _outputFormat, _type and _since"
                                                             : "a study export supports _outputFormat and _type");
      }
    }
    return std::nullopt;
  }

  // Starts the job: 202 with Content-Location, 429 when too many run, 400 for a bad request.
  Response start_export(ExportRequest request) const {
    auto job = options_.exports->kick_off(std::move(request));
    if (!job) {
      if (job.error().code == core::Code::kResourceExhausted) {
        auto busy = error_response(429, "throttled", "too many bulk exports in progress; retry later");
        busy.headers.emplace_back("Retry-After", "30");
        return busy;
      }
      if (job.error().code == core::Code::kInvalidArgument) return error_response(400, "value", job.error().message);
      return internal_error(job.error());
    }
    auto accepted = error_response_with(202, "information", "informational", "bulk export started");
    accepted.headers.emplace_back("Content-Location", options_.base_url + "/$export-status/" + *job);
    return accepted;
  }

  // Kick-off: level "system", "patient" or the Group's organisation.
  Response export_kick_off(const Request& r, const Principal& p, std::string_view level, std::string_view query) const {
    if (!options_.exports) return not_found("unknown route");
    ExportRequest request;
    if (auto refused = export_parameters(r, query, true, request)) return *refused;
    // Scopes: every requested type must be readable; without _type, the readable default types.
    if (p.kind == Principal::Kind::kGrant) {
      for (const auto& t : request.types)
        if (!p.grant.allows(t, 'r'))
          return error_response(403, "forbidden", "the access token does not grant reading " + (printable_name(t) ? t : std::string("?")));
      if (!p.grant.allows("Patient", 'r')) return error_response(403, "forbidden", "a bulk export needs system/Patient.r");
    }
    // The cohort: the care client's related subjects (its own organisation only for a Group);
    // the local care setting: every subject.
    std::vector<std::string> cohort;
    const bool group = level != "system" && level != "patient";
    if (p.kind == Principal::Kind::kGrant) {
      if (group && level != p.organisation) return error_response(403, "forbidden", "a care client exports only its own organisation's Group");
      if (!options_.auth.care_relations) return error_response(503, "transient", "care relations are not available");
      auto subjects = options_.auth.care_relations->subjects_of(p.organisation, core::system_clock().now());
      if (!subjects) return internal_error(subjects.error());
      cohort = std::move(*subjects);
    } else if (group) {
      if (!options_.auth.care_relations) return not_found("no such Group");
      auto subjects = options_.auth.care_relations->subjects_of(level, core::system_clock().now());
      if (!subjects) return internal_error(subjects.error());
      cohort = std::move(*subjects);
    } else {
      std::string after;
      for (;;) {
        auto page = store_.registry().subjects(after, 10000);
        if (!page) return internal_error(page.error());
        if (page->empty()) break;
        after = page->back();
        std::move(page->begin(), page->end(), std::back_inserter(cohort));
      }
    }
    request.subjects = cohort;
    request.identified = p.kind != Principal::Kind::kOpen;
    request.include_shared = level == "system";
    request.requester = p.user.empty() ? "anonymous" : p.user;
    request.request_url = options_.base_url + (level == "system" ? std::string("/$export")
                                               : level == "patient" ? std::string("/Patient/$export")
                                                                    : "/Group/" + std::string(level) + "/$export") +
                          (query.empty() ? "" : "?" + std::string(query));
    // Audited like a read of each Patient, before anything is exported.
    for (const auto& subject : cohort)
      if (!audit(r, p, Endpoint::kExport, "success", subject, "Patient/" + subject, std::string(query))) return audit_failed();
    if (cohort.empty() && !audit(r, p, Endpoint::kExport, "success", "", "Bundle", std::string(query))) return audit_failed();
    return start_export(std::move(request));
  }

  // Group/<study id>/$export by the research role (docs/research.md): the study's pseudonymised
  // dataset as FHIR NDJSON, written by the research module (RouterOptions::research).
  Response research_export(const Request& r, const Principal& p, std::string_view study, std::string_view query) const {
    if (!options_.exports || !options_.research.export_study || !options_.research.studies) return not_found("unknown route");
    ExportRequest request;
    if (auto refused = export_parameters(r, query, false, request)) return *refused;
    const std::string object = "Group/" + std::string(study);
    auto studies = options_.research.studies();
    if (!studies) return internal_error(studies.error());
    if (!std::binary_search(studies->begin(), studies->end(), std::string(study))) {
      audit(r, p, Endpoint::kResearchExport, "denied", "", object, std::string(query));
      return not_found("no such study");
    }
    std::sort(request.types.begin(), request.types.end());
    request.requester = p.user.empty() ? "anonymous" : p.user;
    request.request_url = options_.base_url + "/" + object + "/$export" + (query.empty() ? "" : "?" + std::string(query));
    request.producer = [hook = options_.research.export_study, id = std::string(study),
                        types = request.types](const ExportRequest::WriteFn& write) { return hook(id, types, write); };
    if (!audit(r, p, Endpoint::kResearchExport, "success", "", object, std::string(query))) return audit_failed();
    return start_export(std::move(request));
  }

  Response export_status(const Request& r, const Principal& p, std::string_view job) const {
    if (!options_.exports) return not_found("unknown route");
    const std::string requester = p.user.empty() ? "anonymous" : p.user;
    if (r.method == "DELETE") {
      auto cancelled = options_.exports->cancel(job, requester);
      if (!cancelled) {
        if (cancelled.error().code == core::Code::kNotFound) return not_found("no such export");
        return internal_error(cancelled.error());
      }
      return error_response_with(202, "information", "informational", "bulk export cancelled");
    }
    auto status = options_.exports->status(job, requester);
    if (!status) {
      if (status.error().code == core::Code::kNotFound) return not_found("no such export");
      return internal_error(status.error());
    }
    switch (status->state) {
      case ExportStatus::State::kInProgress: {
        auto running = error_response_with(202, "information", "informational", "bulk export in progress");
        running.headers.emplace_back("X-Progress", status->progress);
        running.headers.emplace_back("Retry-After", "5");
        return running;
      }
      case ExportStatus::State::kComplete: {
        Response done = json_response(200, status->body);
        done.content_type = "application/json";
        return done;
      }
      case ExportStatus::State::kFailed:
        return json_response(500, status->body);
    }
    return internal_error(core::make_error(core::Code::kInternal, "export", "unknown state"));
  }

  Response export_file(const Principal& p, std::string_view job, std::string_view name) const {
    if (!options_.exports) return not_found("unknown route");
    auto path = options_.exports->file(job, name, p.user.empty() ? "anonymous" : p.user);
    if (!path) {
      if (path.error().code == core::Code::kNotFound) return not_found("no such file");
      if (path.error().code == core::Code::kFailedPrecondition) return error_response(404, "not-found", "the export is not complete");
      return internal_error(path.error());
    }
    std::error_code ec;
    if (!std::filesystem::is_regular_file(*path, ec)) return not_found("no such file");
    Response r;
    r.content_type = "application/fhir+ndjson";
    r.file = *path;  // streamed by the HTTP server
    return r;
  }

  // ---- clinical records (issue [7/8], docs/clinical.md) ----

  // A searchset/history entry for a stored clinical resource.
  void write_entry(JsonWriter& w, const clinical::StoredResource& c, std::string_view mode) const {
    write_raw_entry(w, options_.base_url + "/" + c.type + "/" + c.id, c.json, mode);
  }

  // GET <Type>/<id>, <Type>/<id>/_history/<version> (vread), <Type>/<id>/_history.
  Response clinical_read(const Request& r, const Principal& p, std::string_view type, std::string_view id,
                         std::optional<std::string_view> version, bool history) const {
    if (!options_.clinical || !valid_fhir_id(id)) return not_found("no such " + std::string(type));
    Result<std::optional<clinical::StoredResource>> found = std::optional<clinical::StoredResource>();
    if (version) {
      std::int64_t v = 0;
      const auto [end, ec] = std::from_chars(version->data(), version->data() + version->size(), v);
      if (ec != std::errc() || end != version->data() + version->size() || v < 1)
        return not_found("no such version");
      found = options_.clinical->vread(type, id, v);
    } else {
      found = options_.clinical->read(type, id);
    }
    if (!found) return internal_error(found.error());
    if (!*found) {
      if (!history) return not_found("no such " + std::string(type));
    }
    const std::string object = std::string(type) + "/" + std::string(id);
    const std::string subject = *found ? (*found)->subject : std::string();
    if (*found && !subject.empty()) {
      if (auto refused = check_subject(r, p, Endpoint::kClinicalRead, subject, object)) return *refused;
    } else if (!audit(r, p, Endpoint::kClinicalRead, "success", subject, object)) {
      return audit_failed();
    }
    if (!history) {
      auto response = json_response(200, (*found)->json);
      response.headers.emplace_back("ETag", "W/\"" + std::to_string((*found)->version) + "\"");
      response.headers.emplace_back("Last-Modified", http_date((*found)->last_updated));
      return response;
    }
    auto versions = options_.clinical->history(type, id);
    if (!versions) return internal_error(versions.error());
    if (versions->empty()) return not_found("no such " + std::string(type));
    if (!*found && !versions->front().subject.empty()) {
      if (auto refused = check_subject(r, p, Endpoint::kClinicalRead, versions->front().subject, object)) return *refused;
    }
    JsonBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    write_member(w, "resourceType", "Bundle");
    write_member(w, "type", "history");
    write_key(w, "total");
    w.Uint64(versions->size());
    write_key(w, "entry");
    w.StartArray();
    for (std::size_t i = 0; i < versions->size(); ++i) {
      const auto& v = (*versions)[i];
      w.StartObject();
      write_member(w, "fullUrl", options_.base_url + "/" + v.type + "/" + v.id);
      write_key(w, "resource");
      w.RawValue(v.json.data(), v.json.size(), rapidjson::kObjectType);
      write_key(w, "request");
      w.StartObject();
      write_member(w, "method", v.version == 1 ? "POST" : "PUT");
      write_member(w, "url", v.version == 1 ? v.type : v.type + "/" + v.id);
      w.EndObject();
      write_key(w, "response");
      w.StartObject();
      write_member(w, "status", v.version == 1 ? "201 Created" : "200 OK");
      write_member(w, "etag", "W/\"" + std::to_string(v.version) + "\"");
      w.EndObject();
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
    return json_response(200, to_string(buffer));
  }

  // GET <Type>?... over the clinical records.
  Response clinical_search(const Request& r, const Principal& p, const std::string& type, std::string_view query) const {
    if (!options_.clinical) return not_found("unknown route");
    auto params = parse_query(query);
    if (!params) return error_response(400, "value", "malformed query string (bad percent-encoding)");
    bool strict = false;
    for (const auto& [k, v] : r.headers)
      if (k.size() == 6 && (k == "Prefer" || k == "prefer") && v.find("handling=strict") != std::string::npos) strict = true;
    auto search = parse_clinical_search(type, *params, {options_.base_url, options_.default_count, options_.max_count}, strict);
    if (!search) return outcome_response(400, search.error());
    // Patient data is searched per patient, within the care relation; types without a patient
    // (Organization, Practitioner, ...) may be searched without one.
    const std::string subject = search->query.subject.value_or("");
    if (p.kind == Principal::Kind::kGrant && subject.empty() && !subjectless_type(type))
      return error_response(403, "forbidden", "care clients search " + type + " by patient");
    if (!subject.empty()) {
      if (auto refused = check_subject(r, p, Endpoint::kClinicalSearch, subject, type, std::string(query))) return *refused;
    } else if (!audit(r, p, Endpoint::kClinicalSearch, "success", "", type, std::string(query))) {
      return audit_failed();
    }
    auto link = [&](const std::string& cursor) {
      std::string url = options_.base_url + "/" + type + "?";
      for (const auto& q : search->link_params) url += percent_encode(q.name) + "=" + percent_encode(q.value) + "&";
      url += "_count=" + std::to_string(search->query.limit);
      if (!cursor.empty()) url += "&_cursor=" + percent_encode(cursor);
      return url;
    };
    JsonBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    write_member(w, "resourceType", "Bundle");
    write_member(w, "type", "searchset");
    if (search->summary_count) {
      auto n = options_.clinical->count(search->query);
      if (!n) return internal_error(n.error());
      write_key(w, "total");
      w.Int64(*n);
      w.EndObject();
      return json_response(200, to_string(buffer));
    }
    auto page = options_.clinical->search(search->query);
    if (!page) {
      if (page.error().code == core::Code::kInvalidArgument) return error_response(400, "value", "bad _cursor or query");
      return internal_error(page.error());
    }
    write_key(w, "link");
    w.StartArray();
    w.StartObject();
    write_member(w, "relation", "self");
    write_member(w, "url", link(search->query.cursor));
    w.EndObject();
    if (!page->next_cursor.empty()) {
      w.StartObject();
      write_member(w, "relation", "next");
      write_member(w, "url", link(page->next_cursor));
      w.EndObject();
    }
    w.EndArray();
    if (!page->resources.empty() || !search->ignored.empty()) {
      write_key(w, "entry");
      w.StartArray();
      for (const auto& c : page->resources) write_entry(w, c, "match");
      if (!search->ignored.empty()) write_ignored_outcome(w, search->ignored);
      w.EndArray();
    }
    w.EndObject();
    return json_response(200, to_string(buffer));
  }

  static bool subjectless_type(std::string_view type) {
    return type == "Organization" || type == "Practitioner" || type == "PractitionerRole" || type == "Location" ||
           type == "Medication" || type == "Substance";
  }

  // POST /fhir: a transaction or batch Bundle (bundle_import.h). The care role imports for
  // patients it treats; a Patient in the Bundle (registration) declares the care relation, as
  // POST Patient does.
  Response import(const Request& r, const Principal& p) const {
    const auto& v = options_.privacy;
    if (!options_.clinical || !v.vault || !v.pseudonymiser)
      return error_response(503, "transient", "the clinical store or the identity vault is not available");
    if (p.kind == Principal::Kind::kGrant) {
      // Scopes per entry: 'c' for POST, 'u' for PUT, on the entry's resource type.
      rapidjson::Document d;
      d.Parse<rapidjson::kParseIterativeFlag>(r.body.data(), r.body.size());
      if (d.HasParseError() || !d.IsObject()) return error_response(400, "invalid", "the body is not a JSON Bundle");
      const rapidjson::Value& root = d;
      if (auto entries = root.FindMember("entry"); entries != root.MemberEnd() && entries->value.IsArray()) {
        for (const auto& e : entries->value.GetArray()) {
          if (!e.IsObject()) continue;
          const auto res = e.FindMember("resource");
          const auto req = e.FindMember("request");
          if (res == e.MemberEnd() || !res->value.IsObject()) continue;
          const auto rt = res->value.FindMember("resourceType");
          if (rt == res->value.MemberEnd() || !rt->value.IsString()) continue;
          const std::string type(rt->value.GetString(), rt->value.GetStringLength());
          char interaction = 'c';
          if (req != e.MemberEnd() && req->value.IsObject()) {
            const auto m = req->value.FindMember("method");
            if (m != req->value.MemberEnd() && m->value.IsString() && std::string_view(m->value.GetString()) == "PUT")
              interaction = 'u';
          }
          if (!p.grant.allows(type, interaction)) {
            audit(r, p, Endpoint::kBundle, "denied", "", "Bundle");
            auto denied = error_response(403, "forbidden",
                                         "the access token does not grant system/" + (printable_name(type) ? type : std::string("?")) +
                                             "." + std::string(1, interaction));
            return denied;
          }
        }
      }
      // Entries that name an existing patient directly need the care relation.
      for (std::size_t at = r.body.find("Patient/"); at != std::string::npos; at = r.body.find("Patient/", at + 8)) {
        const std::string_view candidate = std::string_view(r.body).substr(at + 8, 32);
        if (candidate.size() != 32 || !privacy::SubjectPseudonym::parse(candidate)) continue;
        auto ok = related(p, candidate);
        if (!ok) return internal_error(ok.error());
        if (!*ok) {
          audit(r, p, Endpoint::kBundle, "denied", std::string(candidate), "Bundle");
          return error_response(403, "forbidden", "no active care relation between your organisation and a patient in the Bundle");
        }
      }
    }
    ImportContext context{*v.vault, *v.pseudonymiser, store_.registry(), *options_.clinical, options_.base_url};
    auto result = import_bundle(r.body, context);
    if (!result) {
      const auto& e = result.error();
      if (e.code == core::Code::kInvalidArgument) return error_response(400, "invalid", e.message);
      if (e.code == core::Code::kFailedPrecondition) return error_response(412, "conflict", e.message);
      if (e.code == core::Code::kAlreadyExists) return error_response(409, "duplicate", e.message);
      return internal_error(e);
    }
    for (const auto& patient : result->patients) {
      if (p.kind == Principal::Kind::kGrant && p.role == kRoleCare) {
        if (!options_.auth.care_relations || p.organisation.empty())
          return error_response(503, "transient", "care relations are not available");
        auto added = options_.auth.care_relations->add(patient.pseudonym, p.organisation, core::system_clock().now(),
                                                       "fhir:" + p.user);
        if (!added) return internal_error(added.error());
      }
      if (!audit(r, p, Endpoint::kBundle, "success", patient.pseudonym, "Patient/" + patient.pseudonym)) return audit_failed();
    }
    if (result->patients.empty() && !audit(r, p, Endpoint::kBundle, "success", "", "Bundle")) return audit_failed();
    return json_response(200, response_bundle_json(*result, options_.base_url));
  }

  // GET Patient/<id>/$everything (http://hl7.org/fhir/R4/patient-operation-everything.html):
  // the Patient (identified for the care role), their Devices, the clinical records and the home
  // readings, paged: the first page starts with the Patient and Devices, then clinical records
  // in write order, then home readings in time order. _type limits the types, _since the
  // clinical records' lastUpdated, start/end the home readings' time; _count the page size.
  Response everything(const Request& r, const Principal& p, std::string_view id, std::string_view query) const {
    if (!privacy::SubjectPseudonym::parse(id)) return not_found("no such Patient");
    auto exists = store_.registry().subject_exists(id);
    if (!exists) return internal_error(exists.error());
    if (!*exists) return not_found("no such Patient");
    auto params = parse_query(query);
    if (!params) return error_response(400, "value", "malformed query string (bad percent-encoding)");
    std::size_t count = options_.default_count;
    std::vector<std::string> types;
    std::optional<core::TimePoint> since, start, end;
    std::string cursor;
    std::vector<QueryParam> link_params;
    for (const auto& q : *params) {
      if (q.name == "_count") {
        std::size_t n = 0;
        const auto [e, ec] = std::from_chars(q.value.data(), q.value.data() + q.value.size(), n);
        if (ec != std::errc() || e != q.value.data() + q.value.size() || n < 1)
          return error_response(400, "value", "_count must be a positive integer");
        count = std::min(n, options_.max_count);
        continue;
      }
      if (q.name == "_cursor") {
        cursor = q.value;
        continue;
      }
      if (q.name == "_type") {
        std::size_t b = 0;
        for (;;) {
          const auto c = q.value.find(',', b);
          const std::string t = q.value.substr(b, c == std::string::npos ? std::string::npos : c - b);
          if (!t.empty()) types.push_back(t);
          if (c == std::string::npos) break;
          b = c + 1;
        }
      } else if (q.name == "_since" || q.name == "start" || q.name == "end") {
        auto range = clinical::fhir_date_range(q.value);
        if (!range) return error_response(400, "value", q.name + " must be a FHIR date or dateTime");
        if (q.name == "_since") since = core::from_unix_millis(range->from_ms);
        else if (q.name == "start") start = core::from_unix_millis(range->from_ms);
        else end = core::from_unix_millis(range->to_ms);
      } else {
        return error_response(400, "not-supported", "$everything supports _count, _type, _since, start and end");
      }
      link_params.push_back(q);
    }
    const std::string object = "Patient/" + std::string(id);
    if (auto refused = check_subject(r, p, Endpoint::kEverything, std::string(id), object, std::string(query)))
      return *refused;
    auto wanted = [&](std::string_view type) {
      if (!types.empty() && std::find(types.begin(), types.end(), type) == types.end()) return false;
      return p.kind != Principal::Kind::kGrant || p.grant.allows(type, 'r');
    };

    JsonBuffer buffer;
    JsonWriter w(buffer);
    std::size_t room = count;
    std::string next;
    w.StartObject();
    write_member(w, "resourceType", "Bundle");
    write_member(w, "type", "searchset");
    // Entries first (into their own buffer), links after we know the next cursor.
    JsonBuffer entries_buffer;
    JsonWriter e(entries_buffer);
    e.StartArray();
    if (cursor.empty()) {
      if (wanted("Patient")) {
        Response patient = read_patient_body(p, id);
        if (patient.status != 200) return patient;
        write_raw_entry(e, options_.base_url + "/" + object, patient.body, "match");
      }
      if (wanted("Device")) {
        auto devices = store_.registry().devices_of(id);
        if (!devices) return internal_error(devices.error());
        for (const auto& d : *devices) {
          if (!valid_fhir_id(d.id)) continue;
          write_raw_entry(e, options_.base_url + "/Device/" + d.id, device_json(d), "include");
        }
      }
    }
    // Clinical records ("c:<cursor>", the first phase after the Patient).
    const bool home_phase = cursor.starts_with("h:");
    const bool env_phase = cursor.starts_with("e:");
    if (!home_phase && !env_phase && options_.clinical) {
      std::vector<std::string> clinical_types;
      for (const auto& t : types)
        if (t != "Patient" && t != "Device") clinical_types.push_back(t);
      if (types.empty() || !clinical_types.empty()) {
        // start/end: the care dates (http://hl7.org/fhir/R4/patient-operation-everything.html).
        std::optional<clinical::DateRange> care;
        if (start || end)
          care = clinical::DateRange{start ? core::to_unix_millis(*start) : INT64_MIN, end ? core::to_unix_millis(*end) : INT64_MAX};
        auto page = options_.clinical->of_subject(id, clinical_types, since, cursor.starts_with("c:") ? cursor.substr(2) : "",
                                                  static_cast<int>(room), care);
        if (!page) {
          if (page.error().code == core::Code::kInvalidArgument) return error_response(400, "value", "bad _cursor");
          return internal_error(page.error());
        }
        for (const auto& c : page->resources) {
          if (!wanted(c.type)) continue;
          write_entry(e, c, "match");
        }
        room -= std::min(room, page->resources.size());
        if (!page->next_cursor.empty()) next = "c:" + page->next_cursor;
      }
    }
    // Home readings ("h:<time>.<id>").
    if (!env_phase && next.empty() && room > 0 && wanted("Observation")) {
      storage::ObservationQuery q;
      q.subject = std::string(id);
      q.from = start;
      q.to = end;
      if (home_phase) {
        auto after = parse_cursor(cursor.substr(2));
        if (!after) return error_response(400, "value", "bad _cursor");
        q.after = *after;
      }
      q.limit = room;
      auto page = store_.observations().search(q);
      if (!page) return internal_error(page.error());
      for (const auto& o : page->items) write_home_entry(e, o);
      if (page->next) next = "h:" + format_cursor(*page->next);
    } else if (!env_phase && next.empty() && room == 0 && wanted("Observation") && !home_phase) {
      next = "h:";  // the clinical phase filled this page: the home readings follow
    }
    if (next == "h:") {
      // Only when there is a home reading at all: an empty last page is still a valid page.
      storage::ObservationQuery q;
      q.subject = std::string(id);
      q.from = start;
      q.to = end;
      q.limit = 1;
      auto any = store_.observations().search(q);
      if (!any) return internal_error(any.error());
      if (any->items.empty()) next.clear();
    }
    // The environment of the patient's home area ("e:<hour ms>.<component>"), last.
    if (next.empty() && wanted("Observation") && options_.environment) {
      auto env = environment_entries(id, start, end, env_phase ? cursor.substr(2) : "", room, e);
      if (!env) {
        if (env.error().code == core::Code::kInvalidArgument) return error_response(400, "value", "bad _cursor");
        return internal_error(env.error());
      }
      next = *env;
    }
    e.EndArray();
    auto link = [&](const std::string& c) {
      std::string url = options_.base_url + "/" + object + "/$everything?";
      for (const auto& q : link_params) url += percent_encode(q.name) + "=" + percent_encode(q.value) + "&";
      url += "_count=" + std::to_string(count);
      if (!c.empty()) url += "&_cursor=" + percent_encode(c);
      return url;
    };
    write_key(w, "link");
    w.StartArray();
    w.StartObject();
    write_member(w, "relation", "self");
    write_member(w, "url", link(cursor));
    w.EndObject();
    if (!next.empty()) {
      w.StartObject();
      write_member(w, "relation", "next");
      write_member(w, "url", link(next));
      w.EndObject();
    }
    w.EndArray();
    const std::string entries = to_string(entries_buffer);
    if (entries != "[]") {
      write_key(w, "entry");
      w.RawValue(entries.data(), entries.size(), rapidjson::kArrayType);
    }
    w.EndObject();
    return json_response(200, to_string(buffer));
  }

  // The PC4 area of a subject's home (the vault postcode), or "" when unknown.
  Result<std::string> home_area(std::string_view pseudonym) const {
    if (!options_.privacy.vault) return std::string();
    auto subject = options_.privacy.vault->find_by_pseudonym(pseudonym);
    if (!subject) return tl::unexpected(subject.error());
    if (!*subject) return std::string();
    auto person = options_.privacy.vault->get(**subject);
    if (!person) return tl::unexpected(person.error());
    if (!*person) return std::string();
    return environment::pc4_of_postcode((*person)->postcode);
  }

  // Writes up to `room` environment Observations of the subject's home area into `e`, after
  // `cursor` ("" = from the start of the period; "<hour ms>.<component index>"): over
  // [start, end), or without them over the hours of the subject's home readings. Returns the
  // next cursor ("e:...") or "" when the period is done.
  Result<std::string> environment_entries(std::string_view id, std::optional<core::TimePoint> start,
                                          std::optional<core::TimePoint> end, const std::string& cursor, std::size_t room,
                                          JsonWriter& e) const {
    std::int64_t after_hour = INT64_MIN, after_component = -1;
    if (!cursor.empty()) {
      const auto dot = cursor.find('.');
      if (dot == std::string::npos) return core::fail(core::Code::kInvalidArgument, "bad_cursor", "bad _cursor");
      const auto a = std::from_chars(cursor.data(), cursor.data() + dot, after_hour);
      const auto b = std::from_chars(cursor.data() + dot + 1, cursor.data() + cursor.size(), after_component);
      if (a.ec != std::errc() || b.ec != std::errc() || b.ptr != cursor.data() + cursor.size())
        return core::fail(core::Code::kInvalidArgument, "bad_cursor", "bad _cursor");
    }
    auto area = home_area(id);
    if (!area) return tl::unexpected(area.error());
    if (area->empty()) return std::string();
    // The period: as asked, else the span of the home readings.
    if (!start || !end) {
      storage::ObservationQuery q;
      q.subject = std::string(id);
      q.from = start;
      q.to = end;
      q.limit = 1;
      auto first = store_.observations().search(q);
      if (!first) return tl::unexpected(first.error());
      q.descending = true;
      auto last = store_.observations().search(q);
      if (!last) return tl::unexpected(last.error());
      if (first->items.empty() || last->items.empty()) return std::string();  // no readings: no period
      if (!start) start = std::chrono::floor<std::chrono::hours>(first->items.front().reading.time);
      if (!end) end = std::chrono::floor<std::chrono::hours>(last->items.front().reading.time) + std::chrono::hours(1);
    }
    if (!start || !end || *start >= *end) return std::string();
    core::TimePoint from = *start;
    if (after_hour != INT64_MIN) from = std::max(from, core::from_unix_millis(after_hour));
    if (from >= *end) return std::string();
    if (room == 0) return "e:" + cursor;
    // At most 6 values an hour: room + 1 hours hold the page and tell whether more follow.
    const core::TimePoint hour_of_from = std::chrono::floor<std::chrono::hours>(from);
    const core::TimePoint to = std::min(*end, hour_of_from + std::chrono::hours(static_cast<std::int64_t>(room) + 2));
    auto values = options_.environment->series(*area, hour_of_from, to);
    if (!values) return tl::unexpected(values.error());
    std::size_t written = 0;
    std::string last_key;
    bool more = false;
    for (const auto& v : *values) {
      const std::int64_t hour = core::to_unix_millis(v.hour);
      const auto component = static_cast<std::int64_t>(v.component);
      if (hour < core::to_unix_millis(*start)) continue;
      if (after_hour != INT64_MIN && (hour < after_hour || (hour == after_hour && component <= after_component))) continue;
      if (written == room) {
        more = true;
        break;
      }
      write_raw_entry(e, options_.base_url + "/Observation/" + environment::observation_id(v),
                      environment::observation_json(v, id), "match");
      ++written;
      last_key = std::to_string(hour) + "." + std::to_string(component);
    }
    if (more) return "e:" + last_key;  // the page is full (room > 0, so something was written)
    // Everything before `to` is written; hours from `to` on remain (a gap in the data can give
    // a page with fewer entries, never a repeated one).
    if (to < *end) return "e:" + std::to_string(core::to_unix_millis(to) - 3'600'000) + ".99";
    return std::string();
  }

  // ---- access control and audit (access.h, docs/security.md) ----

  // Whether the principal may see this subject's data: the local care setting and the open
  // (unauthenticated, pseudonymous) mode always; the care role only within an active care
  // relation of its organisation.
  Result<bool> related(const Principal& p, std::string_view subject) const {
    if (p.kind != Principal::Kind::kGrant) return true;
    if (p.role != kRoleCare || p.organisation.empty() || !options_.auth.care_relations) return false;
    return options_.auth.care_relations->active(subject, p.organisation, core::system_clock().now());
  }

  // Checks the care relation for `subject` and writes the audit record of the access (success
  // or denied). Returns the response that ends the request, or nothing when it may go on.
  std::optional<Response> check_subject(const Request& r, const Principal& p, Endpoint e, const std::string& subject,
                                        const std::string& object, std::string query = {}) const {
    auto ok = related(p, subject);
    if (!ok) return internal_error(ok.error());
    if (!*ok) {
      audit(r, p, e, "denied", subject, object, query);
      return error_response(403, "forbidden", "no active care relation between your organisation and this patient");
    }
    if (!audit(r, p, e, "success", subject, object, std::move(query))) return audit_failed();
    return std::nullopt;
  }

  // Writes the audit record of an access; false when it could not be written (then the caller
  // refuses the access). The open mode (no authentication configured) records only refusals
  // and identified accesses, as before; everything else is recorded for every principal.
  bool audit(const Request& r, const Principal& p, Endpoint e, std::string outcome, std::string subject,
             std::string objects, std::string query = {}) const {
    if (!options_.privacy.audit) return p.kind == Principal::Kind::kOpen;
    if (p.kind == Principal::Kind::kOpen && outcome == "success") return true;
    privacy::AuditRecord a;
    a.event_type = std::string(audit_event_type(e));
    a.action = audit_action(e);
    if (e == Endpoint::kPatientRead && p.kind == Principal::Kind::kLocal) a.event_type = "patient.read";
    a.outcome = std::move(outcome);
    a.user_id = p.user.empty() ? "anonymous" : p.user;
    a.role = p.role.empty() ? "none" : p.role;
    a.on_behalf_of = p.organisation;
    a.purpose = std::string(purpose_of_use(p));
    a.access_point = r.remote_address.empty() ? "unknown" : r.remote_address;
    a.subject = std::move(subject);
    a.objects = std::move(objects);
    // The query as received, capped: a client must not be able to write kilobytes into the log.
    if (query.size() > kMaxAuditedQuery) query = query.substr(0, kMaxAuditedQuery) + "...";
    a.query = std::move(query);
    a.source = "telehub serve";
    auto written = options_.privacy.audit->append(std::move(a));
    if (!written) core::log_error(kLogComponent, "audit record not written: " + written.error().to_string());
    return written.has_value();
  }

  Response audit_failed() const {
    return error_response(503, "transient", "access refused: the audit record could not be written");
  }

  // ---- identified data ----

  // The Patient for $everything: identified for the care role and the local care setting (the
  // vault's Person), pseudonymous otherwise. No audit here ($everything audits itself).
  Response read_patient_body(const Principal& p, std::string_view id) const {
    const auto& v = options_.privacy;
    if (p.kind != Principal::Kind::kOpen && v.vault) {
      auto subject = v.vault->find_by_pseudonym(id);
      if (!subject) return internal_error(subject.error());
      if (*subject) {
        auto person = v.vault->get(**subject);
        if (!person) return internal_error(person.error());
        if (*person) return json_response(200, identified_patient_json(id, **person));
      }
    }
    return read_pseudonymous_patient(id);
  }

  Response read_patient(const Request& r, const Principal& p, std::string_view id) const {
    if (!privacy::SubjectPseudonym::parse(id)) return not_found("no such Patient");
    if (p.kind == Principal::Kind::kOpen) return read_pseudonymous_patient(id);
    const std::string object = "Patient/" + std::string(id);
    if (auto refused = check_subject(r, p, Endpoint::kPatientRead, std::string(id), object)) return *refused;
    const auto& v = options_.privacy;
    if (!v.vault) return read_pseudonymous_patient(id);
    auto subject = v.vault->find_by_pseudonym(id);
    if (!subject) return internal_error(subject.error());
    if (!*subject) return read_pseudonymous_patient(id);  // not in the vault: only the pseudonymous Patient exists
    auto person = v.vault->get(**subject);
    if (!person) return internal_error(person.error());
    if (!*person) return read_pseudonymous_patient(id);
    return json_response(200, identified_patient_json(id, **person));
  }

  // GET Patient?identifier=system|value (care role): the identified Patient registered with
  // that BSN (http://fhir.nl/fhir/NamingSystem/bsn) or record number, when the client's
  // organisation has a care relation with them. Without one (or nobody registered) the Bundle is
  // empty, so the answer does not tell whether the person is known; the attempt is audited as
  // denied.
  Response search_patients(const Request& r, const Principal& p, std::string_view query) const {
    const auto& v = options_.privacy;
    if (!v.vault || !v.pseudonymiser) return error_response(503, "transient", "the identity vault is not available");
    auto params = parse_query(query);
    if (!params) return error_response(400, "value", "malformed query string (bad percent-encoding)");
    std::string identifier;
    int identifiers = 0;
    for (const auto& [k, val] : *params) {
      if (k == "identifier") {
        identifier = val;
        ++identifiers;
      } else if (k != "_count") {
        return error_response(400, "not-supported",
                              "Patient search supports only identifier=system|value; unknown parameter " +
                                  (printable_name(k) ? k : std::string("(unreadable name)")));
      }
    }
    const auto bar = identifier.find('|');
    if (identifiers != 1 || bar == std::string::npos || bar == 0 || bar + 1 == identifier.size())
      return error_response(400, "required", "Patient search needs one identifier=system|value");
    const std::string system = identifier.substr(0, bar), value = identifier.substr(bar + 1);
    auto found = system == "http://fhir.nl/fhir/NamingSystem/bsn" ? v.vault->find_by_bsn(value)
                                                                  : v.vault->find_by_record_number({system, value});
    if (!found) {
      if (found.error().code == core::Code::kInvalidArgument) return error_response(400, "value", found.error().message);
      return internal_error(found.error());
    }
    std::optional<privacy::Person> person;
    std::string pseudonym;
    if (*found) {
      pseudonym = v.pseudonymiser->subject(**found).str();
      auto related_ok = related(p, pseudonym);
      if (!related_ok) return internal_error(related_ok.error());
      if (*related_ok) {
        auto got = v.vault->get(**found);
        if (!got) return internal_error(got.error());
        person = std::move(*got);
      }
    }
    // The query names an identifier: the audit record keeps only the system, never the value.
    if (!audit(r, p, Endpoint::kPatientSearch, person ? "success" : "denied", person ? pseudonym : std::string(),
               "Patient", "identifier=" + system + "|(value)"))
      return audit_failed();
    JsonBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    write_member(w, "resourceType", "Bundle");
    write_member(w, "type", "searchset");
    write_key(w, "total");
    w.Uint(person ? 1 : 0);
    if (person) {
      write_key(w, "entry");
      w.StartArray();
      write_raw_entry(w, options_.base_url + "/Patient/" + pseudonym, identified_patient_json(pseudonym, *person), "match");
      w.EndArray();
    }
    w.EndObject();
    return json_response(200, to_string(buffer));
  }

  // POST Patient, or PUT Patient?identifier=system|value (conditional update,
  // http://hl7.org/fhir/R4/http.html#cond-update): registers the person in the vault. A care
  // client that registers a person thereby declares a care relation of its organisation with
  // that person (docs/security.md).
  Response write_patient(const Request& r, const Principal& p, Endpoint e, std::string_view query) const {
    const auto& v = options_.privacy;
    if (!v.vault || !v.pseudonymiser) return error_response(503, "transient", "the identity vault is not available");
    std::string identifier;  // PUT: the conditional update's "system|value"
    if (r.method == "PUT") {
      auto params = parse_query(query);
      if (!params) return error_response(400, "value", "malformed query string (bad percent-encoding)");
      int identifiers = 0;
      for (const auto& [k, val] : *params) {
        if (k == "identifier") {
          identifier = val;
          ++identifiers;
        } else {
          return error_response(400, "not-supported", "PUT Patient takes only ?identifier=system|value");
        }
      }
      if (identifiers != 1 || identifier.find('|') == std::string::npos || identifier.front() == '|' ||
          identifier.back() == '|')
        return error_response(400, "required", "PUT Patient needs one ?identifier=system|value (conditional update)");
    }
    auto person = person_from_patient(r.body);
    if (!person) return error_response(400, "invalid", person.error().message);
    if (!identifier.empty()) {
      // The conditional update's identifier must be one the body carries, so the person the
      // vault matches by the body is the one the URL names (http://hl7.org/fhir/R4/http.html#cond-update).
      const auto bar = identifier.find('|');
      const std::string_view system = std::string_view(identifier).substr(0, bar);
      const std::string_view value = std::string_view(identifier).substr(bar + 1);
      bool carried = system == "http://fhir.nl/fhir/NamingSystem/bsn" && value == person->bsn;
      for (const auto& rn : person->record_numbers) carried = carried || (rn.system == system && rn.value == value);
      if (!carried)
        return error_response(400, "invalid", "the identifier of the conditional update is not among the Patient's identifiers");
    }
    auto registered = v.vault->register_person(*person);
    if (!registered) {
      const auto& err = registered.error();
      if (err.code == core::Code::kInvalidArgument) return error_response(400, "invalid", err.message);
      if (err.code == core::Code::kFailedPrecondition) return error_response(409, "conflict", err.message);
      return internal_error(err);
    }
    const auto pseudonym = v.pseudonymiser->subject(registered->subject_id);
    if (auto s = v.vault->link_pseudonym(registered->subject_id, pseudonym.str()); !s) return internal_error(s.error());
    if (auto s = store_.registry().add_subject(pseudonym); !s) return internal_error(s.error());
    if (p.kind == Principal::Kind::kGrant && p.role == kRoleCare) {
      if (!options_.auth.care_relations || p.organisation.empty())
        return error_response(503, "transient", "care relations are not available");
      auto added = options_.auth.care_relations->add(pseudonym.str(), p.organisation, core::system_clock().now(),
                                                     "fhir:" + p.user);
      if (!added) return internal_error(added.error());
    }
    const std::string object = "Patient/" + pseudonym.str();
    if (!audit(r, p, registered->created ? Endpoint::kPatientCreate : Endpoint::kPatientUpdate, "success",
               pseudonym.str(), object))
      return audit_failed();
    (void)e;
    auto stored = v.vault->get(registered->subject_id);
    if (!stored || !*stored)
      return internal_error(stored ? core::make_error(core::Code::kInternal, "vault", "gone") : stored.error());
    auto response = json_response(registered->created ? 201 : 200, identified_patient_json(pseudonym.str(), **stored));
    response.headers.emplace_back("Location", options_.base_url + "/" + object);
    return response;
  }

  // GET AuditEvent[?patient=<pseudonym>]: the audit trail as FHIR AuditEvents (newest 1,000
  // without a patient).
  Response search_audit(const Request& r, const Principal& p, std::string_view query) const {
    if (!options_.privacy.audit) return error_response(503, "transient", "the audit log is not available");
    auto params = parse_query(query);
    if (!params) return error_response(400, "value", "malformed query string (bad percent-encoding)");
    std::string patient;
    for (const auto& [k, v] : *params) {
      if (k == "patient" || k == "entity") patient = v;
      else if (!k.starts_with("_"))
        return error_response(400, "not-supported", "unknown search parameter " + (printable_name(k) ? k : "(unreadable name)"));
    }
    if (patient.starts_with("Patient/")) patient = patient.substr(8);
    if (!patient.empty() && !privacy::SubjectPseudonym::parse(patient))
      return error_response(400, "value", "patient must be a Patient id (pseudonym)");
    if (!audit(r, p, Endpoint::kAuditEventSearch, "success", patient, "AuditEvent", std::string(query)))
      return audit_failed();
    auto records = patient.empty() ? options_.privacy.audit->recent(1000) : options_.privacy.audit->for_subject(patient);
    if (!records) return internal_error(records.error());
    JsonBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    write_member(w, "resourceType", "Bundle");
    write_member(w, "type", "searchset");
    write_key(w, "total");
    w.Uint64(records->size());
    write_key(w, "entry");
    w.StartArray();
    for (const auto& a : *records) {
      write_raw_entry(w, options_.base_url + "/AuditEvent/audit-" + std::to_string(a.sequence), audit_event_json(a), "match");
    }
    w.EndArray();
    w.EndObject();
    return json_response(200, to_string(buffer));
  }

  // POST Consent: a FHIR Consent of a subject (Consent.patient = Patient/<pseudonym>).
  Response write_consent(const Request& r, const Principal& p) const {
    if (!options_.privacy.consent) return error_response(503, "transient", "the consent records are not available");
    auto record = privacy::from_fhir_consent(r.body);
    if (!record) return error_response(400, "invalid", record.error().message);
    const std::string subject = record->subject;
    if (auto refused = check_subject(r, p, Endpoint::kConsentCreate, subject, "Consent")) return *refused;
    auto id = options_.privacy.consent->record(*record);
    if (!id) {
      if (id.error().code == core::Code::kInvalidArgument) return error_response(400, "invalid", id.error().message);
      return internal_error(id.error());
    }
    return error_response_with(201, "information", "informational",
                               "consent recorded as " + std::to_string(*id) + " for Patient/" + subject);
  }

  Response metrics() const {
    Response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = options_.metrics();
    return r;
  }

  // GET /fhir/.well-known/smart-configuration (SMART App Launch 2.x, "Conformance"): what a
  // Backend Services client needs to find the token endpoint.
  Response smart_configuration() const {
    JsonBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    write_member(w, "token_endpoint", options_.auth.token_url);
    auto array = [&w](std::string_view key, std::initializer_list<std::string_view> values) {
      write_key(w, key);
      w.StartArray();
      for (auto v : values) w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
      w.EndArray();
    };
    array("grant_types_supported", {"client_credentials"});
    array("token_endpoint_auth_methods_supported", {"private_key_jwt"});
    array("token_endpoint_auth_signing_alg_values_supported", {"RS384", "ES384"});
    array("scopes_supported", {"system/Observation.rs", "system/Patient.rs", "system/Patient.cu", "system/Device.rs",
                               "system/Consent.c", "system/AuditEvent.rs"});
    array("capabilities", {"client-confidential-asymmetric", "permission-v2", "permission-v1"});
    w.EndObject();
    Response r = json_response(200, to_string(buffer));
    r.content_type = "application/json";
    return r;
  }

 private:
  Response read_pseudonymous_patient(std::string_view id) const {
    auto exists = store_.registry().subject_exists(id);
    if (!exists) return internal_error(exists.error());
    if (!*exists) return not_found("no such Patient");
    return json_response(200, patient_json(id));
  }

  const formats::Plausibility& rules() const {
    return options_.plausibility ? *options_.plausibility : formats::Plausibility::defaults();
  }

  storage::Store& store_;
  const RouterOptions& options_;
};

Response denial_response(const Denial& d) {
  auto r = error_response(d.status, d.code, d.diagnostics);
  if (!d.www_authenticate.empty()) r.headers.emplace_back("WWW-Authenticate", d.www_authenticate);
  return r;
}

Response route(const Handlers& h, const Request& request, const RouterOptions& options) {
  const auto target = split_target(request.target);
  if (!target) return not_found("unknown route");
  const auto& s = target->segments;

  enum class Route {
    kMetadata, kSmart, kSearch, kObservation, kPatient, kDevice, kPatientType, kAuditEvent, kConsent,
    kBase, kEverything, kClinicalType, kClinicalRead, kClinicalHistory, kClinicalVread, kLastn,
    kExportSystem, kExportPatient, kExportGroup, kExportStatus, kExportFile, kSummary
  };
  // A clinical resource type: FHIR type syntax, not one of the routes above.
  auto clinical_type = [&](const std::string& t) {
    return options.clinical && !t.empty() && t[0] >= 'A' && t[0] <= 'Z' && t.size() <= 64 &&
           std::all_of(t.begin(), t.end(), [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }) &&
           t != "Patient" && t != "Device" && t != "AuditEvent" && t != "Consent";
  };
  std::optional<Route> matched;
  if (s.empty()) matched = Route::kBase;
  else if (s.size() == 1 && s[0] == "$export") matched = Route::kExportSystem;
  else if (s.size() == 2 && s[0] == "Patient" && s[1] == "$export") matched = Route::kExportPatient;
  else if (s.size() == 3 && s[0] == "Group" && s[2] == "$export") matched = Route::kExportGroup;
  else if (s.size() == 2 && s[0] == "$export-status") matched = Route::kExportStatus;
  else if (s.size() == 3 && s[0] == "$export-files") matched = Route::kExportFile;
  else if (s.size() == 1 && s[0] == "metadata") matched = Route::kMetadata;
  else if (s.size() == 3 && s[0] == "Patient" && s[2] == "$everything") matched = Route::kEverything;
  else if (s.size() == 3 && s[0] == "Patient" && s[2] == "$summary") matched = Route::kSummary;
  else if (s.size() == 3 && s[2] == "_history" && clinical_type(s[0])) matched = Route::kClinicalHistory;
  else if (s.size() == 4 && s[2] == "_history" && clinical_type(s[0])) matched = Route::kClinicalVread;
  else if (s.size() == 2 && s[0] == ".well-known" && s[1] == "smart-configuration" && options.auth.tokens)
    matched = Route::kSmart;
  else if (s.size() == 1 && s[0] == "Observation") matched = Route::kSearch;
  else if (s.size() == 2 && s[0] == "Observation" && s[1] == "$lastn") matched = Route::kLastn;
  else if (s.size() == 2 && s[0] == "Observation") matched = Route::kObservation;
  else if (s.size() == 2 && s[0] == "Patient") matched = Route::kPatient;
  else if (s.size() == 2 && s[0] == "Device") matched = Route::kDevice;
  else if (s.size() == 1 && s[0] == "Patient") matched = Route::kPatientType;
  else if (s.size() == 1 && s[0] == "AuditEvent") matched = Route::kAuditEvent;
  else if (s.size() == 1 && s[0] == "Consent") matched = Route::kConsent;
  else if (s.size() == 1 && clinical_type(s[0])) matched = Route::kClinicalType;
  else if (s.size() == 2 && clinical_type(s[0])) matched = Route::kClinicalRead;
  if (!matched) return not_found("unknown route");

  auto not_allowed = [](const char* allow) {
    auto r = error_response(405, "not-supported", std::string("method not allowed; allowed: ") + allow);
    r.headers.emplace_back("Allow", allow);
    return r;
  };
  Endpoint endpoint{};
  switch (*matched) {
    case Route::kMetadata:
    case Route::kSmart:
      if (request.method != "GET") return not_allowed("GET");
      return *matched == Route::kMetadata ? h.metadata() : h.smart_configuration();
    case Route::kPatientType:
      if (request.method != "GET" && request.method != "POST" && request.method != "PUT") return not_allowed("GET, POST, PUT");
      endpoint = request.method == "GET"    ? Endpoint::kPatientSearch
                 : request.method == "POST" ? Endpoint::kPatientCreate
                                            : Endpoint::kPatientUpdate;
      break;
    case Route::kConsent:
      if (request.method != "POST") return not_allowed("POST");
      endpoint = Endpoint::kConsentCreate;
      break;
    case Route::kBase:
      if (!options.clinical) return not_found("unknown route");
      if (request.method != "POST") return not_allowed("POST");
      endpoint = Endpoint::kBundle;
      break;
    case Route::kEverything:
      if (request.method != "GET") return not_allowed("GET");
      endpoint = Endpoint::kEverything;
      break;
    case Route::kLastn:
      if (request.method != "GET") return not_allowed("GET");
      endpoint = Endpoint::kLastn;
      break;
    case Route::kSummary:
      if (request.method != "GET") return not_allowed("GET");
      endpoint = Endpoint::kSummary;
      break;
    case Route::kExportStatus:
      if (request.method != "GET" && request.method != "DELETE") return not_allowed("GET, DELETE");
      endpoint = Endpoint::kExport;
      break;
    case Route::kExportSystem:
    case Route::kExportPatient:
    case Route::kExportGroup:
    case Route::kExportFile:
      if (request.method != "GET") return not_allowed("GET");
      endpoint = Endpoint::kExport;
      break;
    case Route::kClinicalType:
      if (request.method != "GET") return not_allowed("GET");
      endpoint = Endpoint::kClinicalSearch;
      break;
    case Route::kClinicalRead:
    case Route::kClinicalHistory:
    case Route::kClinicalVread:
      if (request.method != "GET") return not_allowed("GET");
      endpoint = Endpoint::kClinicalRead;
      break;
    default:
      if (request.method != "GET") return not_allowed("GET");
      endpoint = *matched == Route::kSearch        ? Endpoint::kObservationSearch
                 : *matched == Route::kObservation ? Endpoint::kObservationRead
                 : *matched == Route::kPatient     ? Endpoint::kPatientRead
                 : *matched == Route::kDevice      ? Endpoint::kDeviceRead
                                                   : Endpoint::kAuditEventSearch;
      break;
  }

  // The query as the audit log may keep it: identifier values (a BSN, a record number) of the
  // Patient routes are replaced by "(value)".
  std::string audited_query(target->query);
  if (endpoint == Endpoint::kPatientSearch || endpoint == Endpoint::kPatientUpdate) {
    auto params = parse_query(target->query);
    audited_query.clear();
    if (params)
      for (const auto& [k, v] : *params) {
        const auto bar = v.find('|');
        audited_query += (audited_query.empty() ? "" : "&") + (printable_name(k) ? k : std::string("?")) + "=" +
                         (k == "identifier" && bar != std::string::npos ? v.substr(0, bar) + "|(value)" : "(value)");
      }
  }

  // Who asks, and may they use this endpoint at all? Refusals are audited.
  const std::string object = s.empty()       ? std::string("Bundle")
                             : s.size() >= 2 ? s[0] + "/" + (valid_fhir_id(s[1]) ? s[1] : std::string("?"))
                                             : s[0];
  const std::string subject = (*matched == Route::kPatient || *matched == Route::kEverything || *matched == Route::kSummary) &&
                                      privacy::SubjectPseudonym::parse(s[1])
                                  ? s[1]
                                  : std::string();
  // The resource type whose scope the [7/8] endpoints need.
  const std::string scope_type = endpoint == Endpoint::kClinicalSearch || endpoint == Endpoint::kClinicalRead ? s[0]
                                 : endpoint == Endpoint::kObservationRead                                    ? "Observation"
                                                                                                             : "";
  auto resolved = resolve_principal(request, options);
  if (auto* denial = std::get_if<Denial>(&resolved)) {
    Principal anonymous;
    anonymous.kind = Principal::Kind::kLocal;  // so the refusal is recorded
    anonymous.user = "anonymous";
    anonymous.role = "none";
    h.audit(request, anonymous, endpoint, "denied", subject, object, audited_query);
    return denial_response(*denial);
  }
  const Principal& principal = std::get<Principal>(resolved);
  // The research role's exports are study exports (docs/research.md), polled like any export.
  if (principal.role == kRoleResearch) {
    if (*matched == Route::kExportGroup) endpoint = Endpoint::kResearchExport;
    else if (*matched == Route::kExportStatus || *matched == Route::kExportFile) endpoint = Endpoint::kResearchPoll;
  }
  if (auto denial = authorise(endpoint, principal, scope_type)) {
    h.audit(request, principal, endpoint, "denied", subject, object, audited_query);
    return denial_response(*denial);
  }

  switch (endpoint) {
    case Endpoint::kObservationSearch: return h.search_observations(request, principal, target->query);
    case Endpoint::kObservationRead: return h.read_observation(request, principal, s[1]);
    case Endpoint::kPatientRead: return h.read_patient(request, principal, s[1]);
    case Endpoint::kPatientSearch: return h.search_patients(request, principal, target->query);
    case Endpoint::kDeviceRead: return h.read_device(request, principal, s[1]);
    case Endpoint::kAuditEventSearch: return h.search_audit(request, principal, target->query);
    case Endpoint::kPatientCreate:
    case Endpoint::kPatientUpdate: return h.write_patient(request, principal, endpoint, target->query);
    case Endpoint::kConsentCreate: return h.write_consent(request, principal);
    case Endpoint::kBundle: return h.import(request, principal);
    case Endpoint::kEverything: return h.everything(request, principal, s[1], target->query);
    case Endpoint::kClinicalSearch: return h.clinical_search(request, principal, s[0], target->query);
    case Endpoint::kClinicalRead:
      return h.clinical_read(request, principal, s[0], s[1],
                             *matched == Route::kClinicalVread ? std::optional<std::string_view>(s[3]) : std::nullopt,
                             *matched == Route::kClinicalHistory);
    case Endpoint::kLastn: return h.lastn(request, principal, target->query);
    case Endpoint::kSummary: return h.summary(request, principal, s[1]);
    case Endpoint::kExport:
      switch (*matched) {
        case Route::kExportSystem: return h.export_kick_off(request, principal, "system", target->query);
        case Route::kExportPatient: return h.export_kick_off(request, principal, "patient", target->query);
        case Route::kExportGroup: return h.export_kick_off(request, principal, s[1], target->query);
        case Route::kExportStatus: return h.export_status(request, principal, s[1]);
        case Route::kExportFile: return h.export_file(principal, s[1], s[2]);
        default: break;
      }
      break;
    case Endpoint::kResearchExport: return h.research_export(request, principal, s[1], target->query);
    case Endpoint::kResearchPoll:
      if (*matched == Route::kExportStatus) return h.export_status(request, principal, s[1]);
      if (*matched == Route::kExportFile) return h.export_file(principal, s[1], s[2]);
      break;
    case Endpoint::kMetrics:
    case Endpoint::kResearchQuery: break;
  }
  return not_found("unknown route");
}

// GET /research/studies and /research/studies/<id>/aggregate?... (docs/research.md): the
// research role only; every answer and refusal is audited.
Response research_route(const Handlers& h, const Request& request, const RouterOptions& options) {
  const auto q = request.target.find('?');
  const std::string path = request.target.substr(0, q);
  const std::string query = q == std::string::npos ? "" : request.target.substr(q + 1);
  std::vector<std::string> s;
  for (std::size_t b = 1; b <= path.size();) {
    const auto e = std::min(path.find('/', b), path.size());
    s.push_back(path.substr(b, e - b));
    b = e + 1;
  }
  const bool list = s.size() == 2 && s[1] == "studies";
  const bool aggregate = s.size() == 4 && s[1] == "studies" && s[3] == "aggregate" && valid_fhir_id(s[2]);
  if ((!list && !aggregate) || (list && !options.research.studies) || (aggregate && !options.research.aggregate))
    return not_found("unknown route");
  if (request.method != "GET") {
    auto r = error_response(405, "not-supported", "method not allowed; allowed: GET");
    r.headers.emplace_back("Allow", "GET");
    return r;
  }
  const std::string object = aggregate ? "Group/" + s[2] : "Group";
  auto resolved = resolve_principal(request, options);
  if (auto* denial = std::get_if<Denial>(&resolved)) {
    Principal anonymous;
    anonymous.kind = Principal::Kind::kLocal;
    anonymous.user = "anonymous";
    anonymous.role = "none";
    h.audit(request, anonymous, Endpoint::kResearchQuery, "denied", "", object, query);
    return denial_response(*denial);
  }
  const Principal& principal = std::get<Principal>(resolved);
  if (auto denial = authorise(Endpoint::kResearchQuery, principal, "")) {
    h.audit(request, principal, Endpoint::kResearchQuery, "denied", "", object, query);
    return denial_response(*denial);
  }
  Result<std::string> body = std::string();
  if (list) {
    auto ids = options.research.studies();
    if (!ids) return internal_error(ids.error());
    std::string json = "{\"studies\":[";
    for (std::size_t i = 0; i < ids->size(); ++i) json += (i ? ",\"" : "\"") + (*ids)[i] + "\"";
    body = json + "]}";
  } else {
    auto params = parse_query(query);
    if (!params) return error_response(400, "value", "malformed query string (bad percent-encoding)");
    std::vector<std::pair<std::string, std::string>> pairs;
    for (const auto& p : *params) pairs.emplace_back(p.name, p.value);
    body = options.research.aggregate(s[2], pairs);
    if (!body && body.error().code == core::Code::kNotFound) {
      h.audit(request, principal, Endpoint::kResearchQuery, "denied", "", object, query);
      return not_found("no such study");
    }
    if (!body && body.error().code == core::Code::kInvalidArgument) return error_response(400, "value", body.error().message);
    if (!body) return internal_error(body.error());
  }
  // No record, no answer.
  if (!h.audit(request, principal, Endpoint::kResearchQuery, "success", "", object, query)) return h.audit_failed();
  Response r;
  r.content_type = "application/json";
  r.body = std::move(*body);
  return r;
}

// POST /auth/token (SMART Backend Services; RFC 6749 section 4.4 with an RFC 7523 client
// assertion): form in, JSON out, never cached (RFC 6749 section 5.1).
Response token_endpoint(const Request& request, const RouterOptions& options) {
  auto oauth = [](int status, std::string_view error, std::string description) {
    JsonBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    write_member(w, "error", error);
    if (!description.empty()) write_member(w, "error_description", description);
    w.EndObject();
    Response r;
    r.status = status;
    r.content_type = "application/json";
    r.body = to_string(buffer);
    r.headers.emplace_back("Cache-Control", "no-store");
    r.headers.emplace_back("Pragma", "no-cache");
    return r;
  };
  if (request.method != "POST") {
    auto r = oauth(405, "invalid_request", "the token endpoint takes POST");
    r.headers.emplace_back("Allow", "POST");
    return r;
  }
  std::string_view content_type;
  for (const auto& [k, v] : request.headers)
    if (k.size() == 12 && std::equal(k.begin(), k.end(), "content-type", [](char a, char b) {
          return (a >= 'A' && a <= 'Z' ? a + 32 : a) == b;
        }))
      content_type = v;
  if (!content_type.starts_with("application/x-www-form-urlencoded"))
    return oauth(400, "invalid_request", "the body must be application/x-www-form-urlencoded");
  auto form = auth::parse_form(request.body);
  if (!form) return oauth(400, "invalid_request", form.error().message);
  auto issued = options.auth.tokens->issue(*form, options.auth.token_url);
  if (!issued) {
    const auto code = auth::oauth_error(issued.error());
    if (code == auth::OAuthError::kNone) {
      core::log_error(kLogComponent, "token endpoint failure: " + issued.error().to_string());
      return oauth(500, "server_error", "internal error");
    }
    core::log_info(kLogComponent, "token request refused: " + issued.error().reason);
    return oauth(code == auth::OAuthError::kInvalidClient ? 401 : 400, auth::oauth_error_name(code),
                 issued.error().message);
  }
  JsonBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  write_member(w, "access_token", issued->access_token);
  write_member(w, "token_type", issued->token_type);
  write_key(w, "expires_in");
  w.Int64(issued->expires_in);
  write_member(w, "scope", issued->scope);
  w.EndObject();
  Response r;
  r.content_type = "application/json";
  r.body = to_string(buffer);
  r.headers.emplace_back("Cache-Control", "no-store");
  r.headers.emplace_back("Pragma", "no-cache");
  return r;
}

}  // namespace

Router::Router(storage::Store& store, RouterOptions options) : store_(store), options_(std::move(options)) {
  while (!options_.base_url.empty() && options_.base_url.back() == '/') options_.base_url.pop_back();
}

Response Router::handle(const Request& original) const {
  try {
    // _format, _pretty, Accept and If-None-Match (representation.h) around every route.
    Request request = original;
    Representation representation;
    if (auto refused = negotiate(request, representation)) return *refused;
    // HEAD is answered as GET (the HTTP server sends the headers only, RFC 9110 section 9.3.2),
    // except where GET is not safe: a Bulk Data kick-off starts an export job.
    const bool head = request.method == "HEAD";
    if (head) {
      const std::string_view path = std::string_view(request.target).substr(0, request.target.find('?'));
      const auto last = path.substr(path.rfind('/') + 1);
      if (last == "$export") {
        auto r = error_response(405, "not-supported", "HEAD would start an export; use GET");
        r.headers.emplace_back("Allow", "GET");
        return r;
      }
      request.method = "GET";
    }
    Response response = finish(request, representation, route_request(request));
    // Wherever GET is allowed, so is HEAD.
    for (auto& [name, value] : response.headers)
      if (name == "Allow" && (value == "GET" || value.starts_with("GET,")) && value.find("HEAD") == std::string::npos)
        value.insert(3, ", HEAD");
    return response;
  } catch (const std::exception& e) {
    core::log_error(kLogComponent, std::string("request failed: ") + e.what());
    return error_response(500, "exception", "internal error");
  }
}

Response Router::route_request(const Request& request) const {
  try {
    const Handlers handlers(store_, options_);
    if (request.target == "/auth/token" || request.target.starts_with("/auth/token?")) {
      if (!options_.auth.tokens) return not_found("unknown route");
      return token_endpoint(request, options_);
    }
    if (options_.metrics && (request.target == "/metrics" || request.target.starts_with("/metrics?"))) {
      if (request.method != "GET") {
        auto r = error_response(405, "not-supported", "method not allowed; this server only reads");
        r.headers.emplace_back("Allow", "GET");
        return r;
      }
      auto resolved = resolve_principal(request, options_);
      if (auto* denial = std::get_if<Denial>(&resolved)) return denial_response(*denial);
      if (auto denial = authorise(Endpoint::kMetrics, std::get<Principal>(resolved))) return denial_response(*denial);
      return handlers.metrics();
    }
    if (request.target == "/research" || request.target.starts_with("/research/") || request.target.starts_with("/research?"))
      return research_route(handlers, request, options_);
    return route(handlers, request, options_);
  } catch (const std::exception& e) {
    core::log_error(kLogComponent, std::string("request failed: ") + e.what());
    return error_response(500, "exception", "internal error");
  }
}

}  // namespace telehub::fhir
