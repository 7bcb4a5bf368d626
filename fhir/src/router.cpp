// Routes of the FHIR API (see router.h). Resource mapping lives in resources.cpp, search
// parameter parsing in search_params.cpp; this file matches the request, reads the store
// and turns failures into OperationOutcomes (http://hl7.org/fhir/R4/http.html).
#include "telehub/fhir/router.h"

#include <algorithm>
#include <charconv>
#include <exception>

#include "json.h"
#include "resources.h"
#include "patient.h"
#include "search_params.h"
#include "telehub/fhir/audit_event.h"
#include "telehub/core/log.h"
#include "telehub/privacy/pseudonym.h"

namespace telehub::fhir {
namespace {

constexpr std::string_view kLogComponent = "fhir";
constexpr std::string_view kContentType = "application/fhir+json; charset=utf-8";

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
  if (path.empty() || path[0] != '/') return std::nullopt;
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

// The route handlers, with the router's state passed in.
class Handlers {
 public:
  Handlers(storage::Store& store, const RouterOptions& options) : store_(store), options_(options) {}

  Response metadata() const { return json_response(200, capability_statement_json({options_.base_url})); }

  // http://hl7.org/fhir/R4/search.html; the searchset Bundle: http://hl7.org/fhir/R4/bundle.html
  Response search_observations(std::string_view query) const {
    auto params = parse_query(query);
    if (!params) return error_response(400, "value", "malformed query string (bad percent-encoding)");
    auto search = parse_observation_search(*params, {options_.base_url, options_.default_count, options_.max_count});
    if (!search) return outcome_response(400, search.error());

    std::vector<storage::StoredObservation> items;
    std::optional<storage::Cursor> next;
    if (!search->matches_nothing) {
      // One store query per matching code (a token may stand for several stored codes, e.g.
      // 2708-6 also matches 59408-5 readings), merged in (time, id) order. Each query returns
      // its first `count` rows after the cursor, so the first `count` of the merge are the first
      // `count` of the union.
      std::vector<std::optional<std::string>> codes;
      if (search->codes) codes.assign(search->codes->begin(), search->codes->end());
      else codes.emplace_back(std::nullopt);
      bool more = false;
      for (const auto& code : codes) {
        storage::ObservationQuery q;
        q.subject = search->subject;
        q.code = code;
        q.from = search->from;
        q.to = search->to;
        q.after = search->after;
        q.limit = search->count;
        auto page = store_.observations().search(q);
        if (!page) return internal_error(page.error());
        more = more || page->next.has_value();
        std::move(page->items.begin(), page->items.end(), std::back_inserter(items));
      }
      std::sort(items.begin(), items.end(), [](const auto& a, const auto& b) {
        return std::pair(a.reading.time, a.id) < std::pair(b.reading.time, b.id);
      });
      if (items.size() > search->count) {
        items.resize(search->count);
        more = true;
      }
      if (more && !items.empty()) next = storage::Cursor{core::to_unix_millis(items.back().reading.time), items.back().id};
    }

    JsonBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    write_member(w, "resourceType", "Bundle");
    write_member(w, "type", "searchset");
    write_key(w, "link");
    w.StartArray();
    w.StartObject();
    write_member(w, "relation", "self");
    write_member(w, "url", search_url(options_.base_url, *search, search->after));
    w.EndObject();
    if (next) {
      w.StartObject();
      write_member(w, "relation", "next");
      write_member(w, "url", search_url(options_.base_url, *search, next));
      w.EndObject();
    }
    w.EndArray();
    if (!items.empty() || !search->ignored.empty()) {
      write_key(w, "entry");
      w.StartArray();
      for (const auto& o : items) {
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
      if (!search->ignored.empty()) {
        // Lenient handling: unknown parameters are ignored and reported in an outcome entry
        // (http://hl7.org/fhir/R4/search.html#errors).
        std::string names;
        for (const auto& n : search->ignored) names += (names.empty() ? "" : ", ") + n;
        w.StartObject();
        write_key(w, "resource");
        write_operation_outcome(w, {Issue{"warning", "not-supported", "parameters not supported and ignored: " + names}});
        write_key(w, "search");
        w.StartObject();
        write_member(w, "mode", "outcome");
        w.EndObject();
        w.EndObject();
      }
      w.EndArray();
    }
    w.EndObject();
    return json_response(200, to_string(buffer));
  }

  Response read_observation(std::string_view id_text) const {
    const auto id = parse_observation_id(id_text);
    if (!id) return not_found("no such Observation");
    auto found = store_.observations().get(*id);
    if (!found) return internal_error(found.error());
    if (!*found) return not_found("no such Observation");
    return json_response(200, observation_json(**found, rules()));
  }

  Response read_patient(std::string_view id) const {
    if (!privacy::SubjectPseudonym::parse(id)) return not_found("no such Patient");
    auto exists = store_.registry().subject_exists(id);
    if (!exists) return internal_error(exists.error());
    if (!*exists) return not_found("no such Patient");
    return json_response(200, patient_json(id));
  }

  Response read_device(std::string_view id) const {
    // A device id that is not a FHIR id (it may contain '_') cannot be a Device id.
    if (!valid_fhir_id(id)) return not_found("no such Device");
    auto found = store_.registry().find_device(id);
    if (!found) return internal_error(found.error());
    if (!*found) return not_found("no such Device");
    return json_response(200, device_json(**found));
  }

 private:
  storage::Store& store_;
 public:
  // ---- identified data: the local care setting (RouterOptions::privacy) ----

  bool care_allowed(const Request& r) const {
    const auto& p = options_.privacy;
    return p.care_local && r.remote_loopback && p.vault && p.audit && p.pseudonymiser;
  }

  // Writes the audit record of an access; false when it could not be written (then the caller
  // refuses the access).
  bool audit(const Request& r, std::string event, char action, std::string outcome, std::string subject,
             std::string objects, std::string query = {}) const {
    if (!options_.privacy.audit) return false;
    privacy::AuditRecord a;
    a.event_type = std::move(event);
    a.action = action;
    a.outcome = std::move(outcome);
    a.user_id = "local";
    a.role = "care";
    a.purpose = "treatment";
    a.access_point = r.remote_address.empty() ? "unknown" : r.remote_address;
    a.subject = std::move(subject);
    a.objects = std::move(objects);
    a.query = std::move(query);
    a.source = "telehub serve";
    auto written = options_.privacy.audit->append(std::move(a));
    if (!written) core::log_error(kLogComponent, "audit record not written: " + written.error().to_string());
    return written.has_value();
  }

  Response audit_failed() const {
    return error_response(503, "transient", "access refused: the audit record could not be written");
  }

  // 403 for identified data outside the local care setting; the attempt is audited (best effort).
  Response forbidden(const Request& r, std::string event, char action, std::string subject) const {
    audit(r, std::move(event), action, "denied", std::move(subject), "", std::string(r.target));
    return error_response(403, "forbidden",
                          "identified data is served only with `serve --care-local`, to clients on this machine "
                          "(authentication arrives with issue [6/8])");
  }

  Response read_patient(const Request& r, std::string_view id) const {
    if (!care_allowed(r)) return read_patient(id);
    if (!privacy::SubjectPseudonym::parse(id)) return not_found("no such Patient");
    const std::string object = "Patient/" + std::string(id);
    if (!audit(r, "patient.read", 'R', "success", std::string(id), object)) return audit_failed();
    auto subject = options_.privacy.vault->find_by_pseudonym(id);
    if (!subject) return internal_error(subject.error());
    if (!*subject) return read_patient(id);  // not in the vault: only the pseudonymous Patient exists
    auto person = options_.privacy.vault->get(**subject);
    if (!person) return internal_error(person.error());
    if (!*person) return read_patient(id);
    return json_response(200, identified_patient_json(id, **person));
  }

  // POST Patient, or PUT Patient?identifier=system|value (conditional update,
  // http://hl7.org/fhir/R4/http.html#cond-update): registers the person in the vault.
  Response write_patient(const Request& r, std::string_view query) const {
    const char action = r.method == "POST" ? 'C' : 'U';
    if (!care_allowed(r)) return forbidden(r, "subject.register", action, "");
    if (r.method == "PUT") {
      auto params = parse_query(query);
      if (!params) return error_response(400, "value", "malformed query string (bad percent-encoding)");
      bool has_identifier = false;
      for (const auto& [k, v] : *params) has_identifier = has_identifier || (k == "identifier" && !v.empty());
      if (!has_identifier)
        return error_response(400, "required", "PUT Patient needs ?identifier=system|value (conditional update)");
    }
    auto person = person_from_patient(r.body);
    if (!person) return error_response(400, "invalid", person.error().message);
    auto registered = options_.privacy.vault->register_person(*person);
    if (!registered) {
      const auto& e = registered.error();
      if (e.code == core::Code::kInvalidArgument) return error_response(400, "invalid", e.message);
      if (e.code == core::Code::kFailedPrecondition) return error_response(409, "conflict", e.message);
      return internal_error(e);
    }
    const auto pseudonym = options_.privacy.pseudonymiser->subject(registered->subject_id);
    if (auto s = options_.privacy.vault->link_pseudonym(registered->subject_id, pseudonym.str()); !s)
      return internal_error(s.error());
    if (auto s = store_.registry().add_subject(pseudonym); !s) return internal_error(s.error());
    const std::string object = "Patient/" + pseudonym.str();
    if (!audit(r, "subject.register", registered->created ? 'C' : 'U', "success", pseudonym.str(), object))
      return audit_failed();
    auto stored = options_.privacy.vault->get(registered->subject_id);
    if (!stored || !*stored) return internal_error(stored ? core::make_error(core::Code::kInternal, "vault", "gone") : stored.error());
    auto response = json_response(registered->created ? 201 : 200, identified_patient_json(pseudonym.str(), **stored));
    response.headers.emplace_back("Location", options_.base_url + "/" + object);
    return response;
  }

  // GET AuditEvent[?patient=<pseudonym>]: the audit trail as FHIR AuditEvents (newest 1,000
  // without a patient).
  Response search_audit(const Request& r, std::string_view query) const {
    auto params = parse_query(query);
    if (!params) return error_response(400, "value", "malformed query string (bad percent-encoding)");
    std::string patient;
    for (const auto& [k, v] : *params) {
      if (k == "patient" || k == "entity") patient = v;
      else if (!k.starts_with("_"))
        return error_response(400, "not-supported", "unknown search parameter " + (printable_name(k) ? k : "(unreadable name)"));
    }
    if (patient.starts_with("Patient/")) patient = patient.substr(8);
    if (!care_allowed(r)) return forbidden(r, "audit.read", 'R', patient);
    if (!patient.empty() && !privacy::SubjectPseudonym::parse(patient))
      return error_response(400, "value", "patient must be a Patient id (pseudonym)");
    if (!audit(r, "audit.read", 'R', "success", patient, "AuditEvent", std::string(query))) return audit_failed();
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
      w.StartObject();
      write_member(w, "fullUrl", options_.base_url + "/AuditEvent/audit-" + std::to_string(a.sequence));
      write_key(w, "resource");
      const std::string event = audit_event_json(a);
      w.RawValue(event.data(), event.size(), rapidjson::kObjectType);
      write_key(w, "search");
      w.StartObject();
      write_member(w, "mode", "match");
      w.EndObject();
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
    return json_response(200, to_string(buffer));
  }

  // POST Consent: a FHIR Consent of a subject (Consent.patient = Patient/<pseudonym>).
  Response write_consent(const Request& r) const {
    if (!care_allowed(r) || !options_.privacy.consent) return forbidden(r, "consent.update", 'C', "");
    auto record = privacy::from_fhir_consent(r.body);
    if (!record) return error_response(400, "invalid", record.error().message);
    const std::string subject = record->subject;
    if (!audit(r, "consent.update", 'C', "success", subject, "Consent")) return audit_failed();
    auto id = options_.privacy.consent->record(*record);
    if (!id) {
      if (id.error().code == core::Code::kInvalidArgument) return error_response(400, "invalid", id.error().message);
      return internal_error(id.error());
    }
    return error_response_with(201, "information", "informational",
                               "consent recorded as " + std::to_string(*id) + " for Patient/" + subject);
  }

 private:
  const formats::Plausibility& rules() const {
    return options_.plausibility ? *options_.plausibility : formats::Plausibility::defaults();
  }

  const RouterOptions& options_;
};

Response route(const Handlers& h, const Request& request) {
  const auto target = split_target(request.target);
  if (!target) return not_found("unknown route");
  const auto& s = target->segments;

  enum class Route { kMetadata, kSearch, kObservation, kPatient, kDevice, kPatientType, kAuditEvent, kConsent };
  std::optional<Route> matched;
  if (s.size() == 1 && s[0] == "metadata") matched = Route::kMetadata;
  else if (s.size() == 1 && s[0] == "Observation") matched = Route::kSearch;
  else if (s.size() == 2 && s[0] == "Observation") matched = Route::kObservation;
  else if (s.size() == 2 && s[0] == "Patient") matched = Route::kPatient;
  else if (s.size() == 2 && s[0] == "Device") matched = Route::kDevice;
  else if (s.size() == 1 && s[0] == "Patient") matched = Route::kPatientType;
  else if (s.size() == 1 && s[0] == "AuditEvent") matched = Route::kAuditEvent;
  else if (s.size() == 1 && s[0] == "Consent") matched = Route::kConsent;
  if (!matched) return not_found("unknown route");

  auto not_allowed = [](const char* allow) {
    auto r = error_response(405, "not-supported", std::string("method not allowed; allowed: ") + allow);
    r.headers.emplace_back("Allow", allow);
    return r;
  };
  if (*matched == Route::kPatientType) {
    if (request.method == "GET") return not_found("unknown route (Patient search is not supported)");
    if (request.method != "POST" && request.method != "PUT") return not_allowed("POST, PUT");
    return h.write_patient(request, target->query);
  }
  if (*matched == Route::kConsent) {
    if (request.method != "POST") return not_allowed("POST");
    return h.write_consent(request);
  }
  if (request.method != "GET") return not_allowed("GET");
  switch (*matched) {
    case Route::kMetadata: return h.metadata();
    case Route::kSearch: return h.search_observations(target->query);
    case Route::kObservation: return h.read_observation(s[1]);
    case Route::kPatient: return h.read_patient(request, s[1]);
    case Route::kDevice: return h.read_device(s[1]);
    case Route::kAuditEvent: return h.search_audit(request, target->query);
    default: break;
  }
  return not_found("unknown route");
}

}  // namespace

Router::Router(storage::Store& store, RouterOptions options) : store_(store), options_(std::move(options)) {
  while (!options_.base_url.empty() && options_.base_url.back() == '/') options_.base_url.pop_back();
}

Response Router::handle(const Request& request) const {
  try {
    if (options_.metrics && (request.target == "/metrics" || request.target.starts_with("/metrics?"))) {
      if (request.method != "GET") {
        auto r = error_response(405, "not-supported", "method not allowed; this server only reads");
        r.headers.emplace_back("Allow", "GET");
        return r;
      }
      Response r;
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      r.body = options_.metrics();
      return r;
    }
    return route(Handlers(store_, options_), request);
  } catch (const std::exception& e) {
    core::log_error(kLogComponent, std::string("request failed: ") + e.what());
    return error_response(500, "exception", "internal error");
  }
}

}  // namespace telehub::fhir
