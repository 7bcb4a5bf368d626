// ConsentStore over SQLite and the FHIR R4 Consent reader; see
// include/telehub/privacy/consent.h for the decision rule and the FHIR mapping.
#include "telehub/privacy/consent.h"

#include <algorithm>
#include <mutex>

#include "telehub/envelope/json.h"
#include "telehub/privacy/pseudonym.h"
#include "telehub/sqlite/sqlite.h"

namespace telehub::privacy {

namespace {

constexpr std::string_view kResearchPrefix = "research:";
constexpr std::string_view kStudySystem = "https://telehub.example.org/fhir/NamingSystem/study";
constexpr std::string_view kActReason = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
constexpr std::string_view kConsentScope = "http://terminology.hl7.org/CodeSystem/consentscope";

tl::unexpected<core::Error> bad(std::string message) {
  return core::fail(core::Code::kInvalidArgument, "bad_consent", std::move(message));
}

// Database failures keep their code (unavailable for busy/open, internal otherwise) under one
// reason, so callers see consent_io whatever SQLite said.
tl::unexpected<core::Error> io(const core::Error& e) {
  return core::fail(e.code, "consent_io", "consent store: " + e.message);
}

bool valid_study_id(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
}

bool valid_scope(std::string_view scope) {
  if (scope == "care" || scope == "research") return true;
  return scope.starts_with(kResearchPrefix) && valid_study_id(scope.substr(kResearchPrefix.size()));
}

Status check_subject(std::string_view subject) {
  if (!SubjectPseudonym::parse(subject)) return bad("subject is not a pseudonym");
  return {};
}

Status check_scope(std::string_view scope) {
  if (!valid_scope(scope)) return bad("scope must be care, research or research:<study id>");
  return {};
}

struct Row {
  std::string scope;
  bool permit = false;
  std::int64_t from_ms = 0;
  std::optional<std::int64_t> withdrawn_ms;
};

// The decision for one subject given the records of its scope family (any order).
bool decide(const std::vector<Row>& rows, std::string_view scope, std::int64_t at) {
  auto newest_of = [&](std::string_view s) -> const Row* {
    // Rows come ordered by (from_ms, id), so the last applicable one is the newest.
    const Row* best = nullptr;
    for (const auto& r : rows)
      if (r.scope == s && r.from_ms <= at) best = &r;
    return best;
  };
  const Row* row = newest_of(scope);
  if (!row && scope.starts_with(kResearchPrefix)) row = newest_of("research");
  if (!row || !row->permit) return false;
  return !row->withdrawn_ms || *row->withdrawn_ms > at;
}

class SqliteConsentStore final : public ConsentStore {
 public:
  explicit SqliteConsentStore(sqlite::Database db) : db_(std::move(db)) {}

  Result<std::int64_t> record(ConsentRecord r) override {
    if (auto s = check_subject(r.subject); !s) return tl::unexpected(s.error());
    if (auto s = check_scope(r.scope); !s) return tl::unexpected(s.error());
    std::lock_guard lock(mu_);
    auto ins = db_.prepare(
        "INSERT INTO consent(subject, scope, permit, from_ms, withdrawn_ms, source) VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
    if (!ins) return io(ins.error());
    ins->bind(1, r.subject).bind(2, r.scope).bind(3, std::int64_t{r.permit ? 1 : 0});
    ins->bind(4, core::to_unix_millis(r.from));
    if (r.withdrawn)
      ins->bind(5, core::to_unix_millis(*r.withdrawn));
    else
      ins->bind_null(5);
    ins->bind(6, r.source);
    if (auto s = ins->run(); !s) return io(s.error());
    return db_.last_insert_rowid();
  }

  Result<int> withdraw(std::string_view subject, std::string_view scope, core::TimePoint at) override {
    if (auto s = check_subject(subject); !s) return tl::unexpected(s.error());
    if (auto s = check_scope(scope); !s) return tl::unexpected(s.error());
    std::lock_guard lock(mu_);
    // ?3 is the "research:" prefix when withdrawing overall research, else a value no scope has.
    // substr() instead of LIKE: study ids may contain '_', which LIKE treats as a wildcard.
    auto upd = db_.prepare(
        "UPDATE consent SET withdrawn_ms = ?4 WHERE subject = ?1 AND permit = 1 "
        "AND (scope = ?2 OR substr(scope, 1, length(?3)) = ?3) "
        "AND (withdrawn_ms IS NULL OR withdrawn_ms > ?4)");
    if (!upd) return io(upd.error());
    upd->bind(1, subject).bind(2, scope);
    upd->bind(3, scope == "research" ? std::string_view(kResearchPrefix) : std::string_view("\x01"));
    upd->bind(4, core::to_unix_millis(at));
    if (auto s = upd->run(); !s) return io(s.error());
    return db_.changes();
  }

  Result<bool> permitted(std::string_view subject, std::string_view scope, core::TimePoint at) override {
    if (auto s = check_subject(subject); !s) return tl::unexpected(s.error());
    if (auto s = check_scope(scope); !s) return tl::unexpected(s.error());
    std::lock_guard lock(mu_);
    auto rows = load(subject, scope);
    if (!rows) return tl::unexpected(rows.error());
    return decide(*rows, scope, core::to_unix_millis(at));
  }

  Result<std::vector<std::string>> permitted_subjects(std::string_view scope, core::TimePoint at) override {
    if (auto s = check_scope(scope); !s) return tl::unexpected(s.error());
    std::lock_guard lock(mu_);
    std::vector<std::string> subjects;
    {
      auto q = db_.prepare("SELECT DISTINCT subject FROM consent WHERE scope = ?1 OR scope = ?2 ORDER BY subject");
      if (!q) return io(q.error());
      q->bind(1, scope).bind(2, family_parent(scope));
      for (;;) {
        auto row = q->step();
        if (!row) return io(row.error());
        if (!*row) break;
        subjects.push_back(q->column_text(0));
      }
    }
    std::vector<std::string> out;
    const auto at_ms = core::to_unix_millis(at);
    for (auto& s : subjects) {
      auto rows = load(s, scope);
      if (!rows) return tl::unexpected(rows.error());
      if (decide(*rows, scope, at_ms)) out.push_back(std::move(s));
    }
    return out;
  }

  Result<std::vector<ConsentRecord>> of_subject(std::string_view subject) override {
    if (auto s = check_subject(subject); !s) return tl::unexpected(s.error());
    std::lock_guard lock(mu_);
    auto q = db_.prepare(
        "SELECT id, subject, scope, permit, from_ms, withdrawn_ms, source FROM consent WHERE subject = ?1 "
        "ORDER BY from_ms, id");
    if (!q) return io(q.error());
    q->bind(1, subject);
    std::vector<ConsentRecord> out;
    for (;;) {
      auto row = q->step();
      if (!row) return io(row.error());
      if (!*row) break;
      ConsentRecord r;
      r.id = q->column_int64(0);
      r.subject = q->column_text(1);
      r.scope = q->column_text(2);
      r.permit = q->column_int64(3) != 0;
      r.from = core::from_unix_millis(q->column_int64(4));
      if (!q->column_is_null(5)) r.withdrawn = core::from_unix_millis(q->column_int64(5));
      r.source = q->column_text(6);
      out.push_back(std::move(r));
    }
    return out;
  }

  Result<int> erase_subject(std::string_view subject) override {
    if (auto s = check_subject(subject); !s) return tl::unexpected(s.error());
    std::lock_guard lock(mu_);
    auto del = db_.prepare("DELETE FROM consent WHERE subject = ?1");
    if (!del) return io(del.error());
    del->bind(1, subject);
    if (auto s = del->run(); !s) return io(s.error());
    return db_.changes();
  }

 private:
  // "research" for a study scope (its fallback), else the scope itself.
  static std::string_view family_parent(std::string_view scope) {
    return scope.starts_with(kResearchPrefix) ? std::string_view("research") : scope;
  }

  // The subject's records for `scope` and its fallback, ordered by (from, id). Caller holds mu_.
  Result<std::vector<Row>> load(std::string_view subject, std::string_view scope) {
    auto q = db_.prepare(
        "SELECT scope, permit, from_ms, withdrawn_ms FROM consent WHERE subject = ?1 AND (scope = ?2 OR scope = ?3) "
        "ORDER BY from_ms, id");
    if (!q) return io(q.error());
    q->bind(1, subject).bind(2, scope).bind(3, family_parent(scope));
    std::vector<Row> rows;
    for (;;) {
      auto row = q->step();
      if (!row) return io(row.error());
      if (!*row) break;
      Row r;
      r.scope = q->column_text(0);
      r.permit = q->column_int64(1) != 0;
      r.from_ms = q->column_int64(2);
      if (!q->column_is_null(3)) r.withdrawn_ms = q->column_int64(3);
      rows.push_back(std::move(r));
    }
    return rows;
  }

  std::mutex mu_;
  sqlite::Database db_;
};

// ---- FHIR R4 Consent -------------------------------------------------------------------------

using Value = rapidjson::Value;

const Value* member(const Value& obj, const char* name) {
  if (!obj.IsObject()) return nullptr;
  auto it = obj.FindMember(name);
  return it == obj.MemberEnd() ? nullptr : &it->value;
}

std::optional<std::string_view> string_member(const Value& obj, const char* name) {
  const Value* v = member(obj, name);
  if (!v || !v->IsString()) return std::nullopt;
  return std::string_view(v->GetString(), v->GetStringLength());
}

// A FHIR dateTime/date: a full RFC 3339 date-time, or a date (YYYY-MM-DD, taken as 00:00 UTC).
// Year-only and year-month values are too coarse for a consent decision and are refused.
Result<core::TimePoint> fhir_time(const Value& obj, const char* name, const std::string& path) {
  auto text = string_member(obj, name);
  if (!text) return bad(path + " must be a string");
  if (text->size() == 10) {
    auto t = core::parse_rfc3339(std::string(*text) + "T00:00:00Z");
    if (t) return *t;
  } else if (auto t = core::parse_rfc3339(*text)) {
    return *t;
  }
  return bad(path + " must be a FHIR date (YYYY-MM-DD) or a dateTime with time and offset");
}

bool valid_fhir_id(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-';
  });
}

// The scope named by provision.purpose (HL7 v3 ActReason), or nullopt when there is none.
Result<std::optional<std::string>> scope_from_purpose(const Value& provision) {
  const Value* purpose = member(provision, "purpose");
  if (!purpose) return std::optional<std::string>();
  if (!purpose->IsArray()) return bad("Consent.provision.purpose must be an array");
  std::optional<std::string> scope;
  for (rapidjson::SizeType i = 0; i < purpose->Size(); ++i) {
    const std::string path = "Consent.provision.purpose[" + std::to_string(i) + "]";
    const Value& coding = (*purpose)[i];
    auto system = string_member(coding, "system");
    auto code = string_member(coding, "code");
    if (!system || !code) return bad(path + " needs system and code");
    std::string s;
    if (*system == kActReason && (*code == "TREAT" || *code == "CAREMGT"))
      s = "care";
    else if (*system == kActReason && (*code == "HRESCH" || *code == "CLINTRCH"))
      s = "research";
    else
      return bad(path + " is not a purpose telehub knows (v3-ActReason TREAT, CAREMGT, HRESCH, CLINTRCH)");
    if (scope && *scope != s) return bad(path + " mixes care and research purposes in one Consent");
    scope = s;
  }
  return scope;
}

// The scope named by Consent.scope (consentscope "treatment" or "research").
Result<std::string> scope_from_consent_scope(const Value& doc) {
  const Value* scope = member(doc, "scope");
  if (!scope) return bad("Consent.provision.purpose or Consent.scope is required");
  const Value* codings = member(*scope, "coding");
  if (!codings || !codings->IsArray()) return bad("Consent.scope.coding must be an array");
  for (rapidjson::SizeType i = 0; i < codings->Size(); ++i) {
    auto system = string_member((*codings)[i], "system");
    auto code = string_member((*codings)[i], "code");
    if (!system || !code || *system != kConsentScope) continue;
    if (*code == "treatment") return std::string("care");
    if (*code == "research") return std::string("research");
  }
  return bad("Consent.scope is not treatment or research and Consent.provision.purpose is absent");
}

// The study named by Consent.identifier with the telehub study system, if any.
Result<std::optional<std::string>> study_of(const Value& doc) {
  const Value* ids = member(doc, "identifier");
  if (!ids) return std::optional<std::string>();
  if (!ids->IsArray()) return bad("Consent.identifier must be an array");
  std::optional<std::string> study;
  for (rapidjson::SizeType i = 0; i < ids->Size(); ++i) {
    const std::string path = "Consent.identifier[" + std::to_string(i) + "]";
    auto system = string_member((*ids)[i], "system");
    if (!system || *system != kStudySystem) continue;
    auto value = string_member((*ids)[i], "value");
    if (!value || !valid_study_id(*value)) return bad(path + ".value must be a study id ([A-Za-z0-9._-]{1,64})");
    if (study) return bad(path + " names a second study");
    study = std::string(*value);
  }
  return study;
}

}  // namespace

Result<std::unique_ptr<ConsentStore>> ConsentStore::open(const std::filesystem::path& file) {
  sqlite::OpenOptions options;
  options.wal = true;
  options.full_sync = true;
  auto db = sqlite::Database::open(file, options);
  if (!db) return io(db.error());
  auto schema = db->exec(
      "CREATE TABLE IF NOT EXISTS consent("
      " id INTEGER PRIMARY KEY,"
      " subject TEXT NOT NULL,"
      " scope TEXT NOT NULL,"
      " permit INTEGER NOT NULL CHECK (permit IN (0, 1)),"
      " from_ms INTEGER NOT NULL,"
      " withdrawn_ms INTEGER,"
      " source TEXT NOT NULL);"
      "CREATE INDEX IF NOT EXISTS consent_subject_scope ON consent(subject, scope);");
  if (!schema) return io(schema.error());
  return std::unique_ptr<ConsentStore>(new SqliteConsentStore(std::move(*db)));
}

Result<ConsentRecord> from_fhir_consent(std::string_view json) {
  // Parsing limits (docs/security.md, "Injection, traversal and parsing limits"): at most
  // 1 MiB (the FHIR server's default body limit); envelope::parse_json is iterative and refuses
  // nesting deeper than envelope::kMaxJsonDepth (16) before parsing, so no body exhausts the
  // stack. Everything read here sits at depth 5 or less. Its reasons never quote the body.
  constexpr std::size_t kMaxConsentBytes = 1 << 20;
  static_assert(kMaxConsentBytes == 1 << 20, "the message below states the limit");
  if (json.size() > kMaxConsentBytes) return bad("Consent: body larger than 1 MiB");
  rapidjson::Document doc;
  if (auto s = envelope::parse_json(json, doc); !s) {
    std::string reason = s.error().message;
    if (reason.starts_with("payload: ")) reason.erase(0, 9);  // a Consent is no device payload
    return bad("Consent: not valid JSON: " + reason);
  }
  if (!doc.IsObject()) return bad("Consent must be a JSON object");
  if (string_member(doc, "resourceType") != std::optional<std::string_view>("Consent"))
    return bad("resourceType must be Consent");

  ConsentRecord r;
  r.source = "fhir:Consent";
  if (const Value* id = member(doc, "id")) {
    if (!id->IsString() || !valid_fhir_id(std::string_view(id->GetString(), id->GetStringLength())))
      return bad("Consent.id must be a FHIR id");
    r.source += "/" + std::string(id->GetString(), id->GetStringLength());
  }

  // Consent.patient: "Patient/<pseudonym>".
  {
    const Value* patient = member(doc, "patient");
    auto ref = patient ? string_member(*patient, "reference") : std::nullopt;
    constexpr std::string_view kPrefix = "Patient/";
    if (!ref || !ref->starts_with(kPrefix) || !SubjectPseudonym::parse(ref->substr(kPrefix.size())))
      return bad("Consent.patient must reference Patient/<pseudonym>");
    r.subject = std::string(ref->substr(kPrefix.size()));
  }

  static const Value kEmpty(rapidjson::kObjectType);
  const Value* provision = member(doc, "provision");
  if (provision && !provision->IsObject()) return bad("Consent.provision must be an object");
  if (!provision) provision = &kEmpty;

  // Consent.status (http://hl7.org/fhir/R4/valueset-consent-state-codes.html).
  auto status = string_member(doc, "status");
  if (!status) return bad("Consent.status is required");
  if (*status == "active") {
    auto type = string_member(*provision, "type");
    if (member(*provision, "type") && !type) return bad("Consent.provision.type must be permit or deny");
    if (!type || *type == "permit")
      r.permit = true;
    else if (*type == "deny")
      r.permit = false;
    else
      return bad("Consent.provision.type must be permit or deny");
  } else if (*status == "inactive" || *status == "rejected" || *status == "entered-in-error") {
    r.permit = false;
  } else {
    return bad("Consent.status must be active, inactive, rejected or entered-in-error (draft and proposed are "
               "not in force)");
  }

  // From: provision.period.start, else dateTime. A permit's provision.period.end becomes its
  // withdrawal date.
  const Value* period = member(*provision, "period");
  if (period && !period->IsObject()) return bad("Consent.provision.period must be an object");
  if (period && member(*period, "start")) {
    auto t = fhir_time(*period, "start", "Consent.provision.period.start");
    if (!t) return tl::unexpected(t.error());
    r.from = *t;
  } else if (member(doc, "dateTime")) {
    auto t = fhir_time(doc, "dateTime", "Consent.dateTime");
    if (!t) return tl::unexpected(t.error());
    r.from = *t;
  } else {
    return bad("Consent.provision.period.start or Consent.dateTime is required");
  }
  if (period && member(*period, "end")) {
    auto t = fhir_time(*period, "end", "Consent.provision.period.end");
    if (!t) return tl::unexpected(t.error());
    if (*t < r.from) return bad("Consent.provision.period.end is before its start");
    if (r.permit) r.withdrawn = *t;
  }

  // Scope: provision.purpose, else Consent.scope; a study from Consent.identifier.
  auto purpose = scope_from_purpose(*provision);
  if (!purpose) return tl::unexpected(purpose.error());
  if (*purpose) {
    r.scope = **purpose;
  } else {
    auto s = scope_from_consent_scope(doc);
    if (!s) return tl::unexpected(s.error());
    r.scope = *s;
  }
  auto study = study_of(doc);
  if (!study) return tl::unexpected(study.error());
  if (*study) {
    if (r.scope != "research") return bad("Consent.identifier names a study but the Consent is not for research");
    r.scope = std::string(kResearchPrefix) + **study;
  }
  return r;
}

}  // namespace telehub::privacy
