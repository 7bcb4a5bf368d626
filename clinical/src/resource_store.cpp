// clinical::ResourceStore on SQLite (include/telehub/clinical/resource_store.h).
//
// File layout (WAL, synchronous=FULL, secure_delete=ON, mode 0600):
//
//   versions(type, id, version, last_updated_ms, subject, json) PRIMARY KEY(type, id, version)
//       every version of every resource, the JSON as served (id and meta set).
//   current(rid AUTOINCREMENT, type, id, version, last_updated_ms, subject, content_hash,
//           has_date, date_from, date_to, date_sort) UNIQUE(type, id)
//       one row per resource, pointing at its current version; rid is stable across updates
//       (of_subject pages by it). content_hash = SHA-256 of the canonical JSON (members sorted,
//       top-level id and meta dropped) for dedupe. [date_from, date_to) is the "date" search
//       value (index_table()); date_sort = date_from, or INT64_MIN without a date.
//   tokens(rid, param, system, code), quantities(rid, param, value, system, code)
//       index entries of the current version, replaced on every write.
//
// Queries are whole SQL literals with bound parameters (scripts/check_sql.sh): optional filters
// are "?N IS NULL OR ..." and the lists (ids, token groups, dates, quantities) are bound as JSON
// text and read with json_each(), so no SQL text is ever composed.
#include "telehub/clinical/resource_store.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <functional>
#include <limits>
#include <map>
#include <mutex>

#include "telehub/core/bytes.h"
#include "telehub/envelope/json.h"
#include "telehub/sqlite/sqlite.h"

namespace telehub::clinical {
namespace {

using core::Code;
using rapidjson::Value;
using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();

core::Error io_error(const core::Error& e) { return core::make_error(e.code, "clinical_io", "clinical store: " + e.message); }

tl::unexpected<core::Error> bad_resource(std::string message) {
  return core::fail(Code::kInvalidArgument, "bad_resource", std::move(message));
}
tl::unexpected<core::Error> bad_query(std::string message) {
  return core::fail(Code::kInvalidArgument, "bad_query", std::move(message));
}

bool valid_type(std::string_view t) {
  if (t.empty() || t.size() > 64 || t[0] < 'A' || t[0] > 'Z') return false;
  return std::all_of(t.begin(), t.end(), [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); });
}

bool valid_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
  });
}

// ---- index specification -------------------------------------------------------------------

enum class TokenKind { kConcept, kCoding, kCode };
struct TokenSpec {
  const char* type;
  const char* param;
  TokenKind kind;
  const char* element;
};
// http://hl7.org/fhir/R4/searchparameter-registry.html (the elements each parameter reads).
constexpr TokenSpec kTokenSpecs[] = {
    {"Observation", "code", TokenKind::kConcept, "code"},
    {"Observation", "category", TokenKind::kConcept, "category"},
    {"Condition", "code", TokenKind::kConcept, "code"},
    {"Condition", "clinical-status", TokenKind::kConcept, "clinicalStatus"},
    {"Condition", "category", TokenKind::kConcept, "category"},
    {"Encounter", "type", TokenKind::kConcept, "type"},
    {"Encounter", "class", TokenKind::kCoding, "class"},
    {"Encounter", "status", TokenKind::kCode, "status"},
    {"MedicationRequest", "code", TokenKind::kConcept, "medicationCodeableConcept"},
    {"MedicationRequest", "status", TokenKind::kCode, "status"},
    {"Procedure", "code", TokenKind::kConcept, "code"},
    {"Immunization", "vaccine-code", TokenKind::kConcept, "vaccineCode"},
    {"DiagnosticReport", "code", TokenKind::kConcept, "code"},
    {"DiagnosticReport", "category", TokenKind::kConcept, "category"},
    {"CarePlan", "category", TokenKind::kConcept, "category"},
    {"CarePlan", "status", TokenKind::kCode, "status"},
    {"AllergyIntolerance", "code", TokenKind::kConcept, "code"},
    {"AllergyIntolerance", "clinical-status", TokenKind::kConcept, "clinicalStatus"},
};

// The "date" parameter: the first present element, in this order. "...Period"/"period" is a
// Period, the others a date/dateTime/instant.
struct DateSpec {
  const char* type;
  std::initializer_list<const char*> elements;
};
const DateSpec kDateSpecs[] = {
    {"Observation", {"effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued"}},
    {"Condition", {"onsetDateTime", "onsetPeriod", "recordedDate"}},
    {"Encounter", {"period"}},
    {"MedicationRequest", {"authoredOn"}},
    {"Procedure", {"performedDateTime", "performedPeriod"}},
    {"Immunization", {"occurrenceDateTime"}},
    {"DiagnosticReport", {"effectiveDateTime", "effectivePeriod", "issued"}},
    {"CarePlan", {"period"}},
    {"AllergyIntolerance", {"onsetDateTime", "onsetPeriod", "recordedDate"}},
    {"Goal", {"startDate"}},
    {"Claim", {"created"}},
    {"ExplanationOfBenefit", {"created"}},
    {"ImagingStudy", {"started"}},
};

// ---- dates ---------------------------------------------------------------------------------

std::int64_t days_ms(int y, unsigned m, unsigned d) {
  using namespace std::chrono;
  return duration_cast<milliseconds>(sys_days(year(y) / month(m) / day(d)).time_since_epoch()).count();
}

bool digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

int to_int(std::string_view s) {
  int v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

// ---- JSON helpers --------------------------------------------------------------------------

std::string str(const Value& v) { return std::string(v.GetString(), v.GetStringLength()); }

const Value* member(const Value& o, const char* name) {
  if (!o.IsObject()) return nullptr;
  auto it = o.FindMember(name);
  return it == o.MemberEnd() ? nullptr : &it->value;
}

std::string string_at(const Value& o, const char* name) {
  const Value* v = member(o, name);
  return v && v->IsString() ? str(*v) : std::string();
}

// Writes `v` with object members sorted by name (canonical form for the content hash).
void write_canonical(const Value& v, Writer& w, bool top) {
  if (v.IsObject()) {
    std::vector<const Value::Member*> members;
    for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
      std::string_view name(it->name.GetString(), it->name.GetStringLength());
      if (top && (name == "id" || name == "meta")) continue;
      members.push_back(&*it);
    }
    std::sort(members.begin(), members.end(), [](const Value::Member* a, const Value::Member* b) {
      return std::string_view(a->name.GetString(), a->name.GetStringLength()) <
             std::string_view(b->name.GetString(), b->name.GetStringLength());
    });
    w.StartObject();
    for (const auto* m : members) {
      w.Key(m->name.GetString(), m->name.GetStringLength());
      write_canonical(m->value, w, false);
    }
    w.EndObject();
  } else if (v.IsArray()) {
    w.StartArray();
    for (const auto& e : v.GetArray()) write_canonical(e, w, false);
    w.EndArray();
  } else {
    v.Accept(w);
  }
}

core::Bytes sha256(std::string_view text) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), md, &len, EVP_sha256(), nullptr);
  return core::Bytes(md, md + len);
}

// ---- a parsed write ------------------------------------------------------------------------

struct Token {
  std::string param, system, code;
};
struct Quantity {
  std::string param;
  double value = 0;
  std::string system, code;
};

struct Prepared {
  rapidjson::Document doc;
  core::Bytes hash;
  std::string subject;
  std::vector<Token> tokens;
  std::vector<Quantity> quantities;
  std::optional<DateRange> date;
};

void add_concept_tokens(const Value& cc, const char* param, std::vector<Token>& out) {
  const Value* codings = member(cc, "coding");
  if (!codings || !codings->IsArray()) return;
  for (const auto& c : codings->GetArray()) {
    std::string code = string_at(c, "code");
    if (!code.empty()) out.push_back({param, string_at(c, "system"), std::move(code)});
  }
}

void extract(const std::string& type, Prepared& p) {
  const Value& doc = p.doc;
  for (const char* name : {"subject", "patient", "beneficiary"}) {
    const Value* ref = member(doc, name);
    std::string r = ref ? string_at(*ref, "reference") : std::string();
    if (r.starts_with("Patient/") && r.size() > 8) {
      p.subject = r.substr(8);
      break;
    }
  }
  if (const Value* ids = member(doc, "identifier"); ids && ids->IsArray()) {
    for (const auto& i : ids->GetArray()) {
      std::string value = string_at(i, "value");
      if (!value.empty()) p.tokens.push_back({"identifier", string_at(i, "system"), std::move(value)});
    }
  }
  for (const auto& spec : kTokenSpecs) {
    if (type != spec.type) continue;
    const Value* v = member(doc, spec.element);
    if (!v) continue;
    switch (spec.kind) {
      case TokenKind::kConcept:
        if (v->IsArray()) {
          for (const auto& c : v->GetArray()) add_concept_tokens(c, spec.param, p.tokens);
        } else {
          add_concept_tokens(*v, spec.param, p.tokens);
        }
        break;
      case TokenKind::kCoding: {
        std::string code = string_at(*v, "code");
        if (!code.empty()) p.tokens.push_back({spec.param, string_at(*v, "system"), std::move(code)});
        break;
      }
      case TokenKind::kCode:
        if (v->IsString() && v->GetStringLength() > 0) p.tokens.push_back({spec.param, "", str(*v)});
        break;
    }
  }
  for (const auto& spec : kDateSpecs) {
    if (type != spec.type) continue;
    for (const char* element : spec.elements) {
      const Value* v = member(doc, element);
      if (!v) continue;
      std::string_view name(element);
      if (name == "period" || name.ends_with("Period")) {
        std::string start = string_at(*v, "start"), end = string_at(*v, "end");
        if (start.empty() && end.empty()) continue;
        DateRange r{kMin, kMax};
        if (!start.empty()) {
          auto s = fhir_date_range(start);
          if (!s) continue;
          r.from_ms = s->from_ms;
        }
        if (!end.empty()) {
          auto e = fhir_date_range(end);
          if (!e) continue;
          r.to_ms = e->to_ms;
        }
        p.date = r;
      } else if (v->IsString()) {
        auto r = fhir_date_range(str(*v));
        if (!r) continue;
        p.date = *r;
      }
      if (p.date) break;
    }
  }
  if (type == "Observation") {
    if (const Value* q = member(doc, "valueQuantity"); q && q->IsObject()) {
      const Value* value = member(*q, "value");
      if (value && value->IsNumber())
        p.quantities.push_back({"value-quantity", value->GetDouble(), string_at(*q, "system"), string_at(*q, "code")});
    }
  }
}

Result<Prepared> prepare_write(const ResourceWrite& w) {
  if (!valid_type(w.type)) return bad_resource("resource type must be [A-Z][A-Za-z]{0,63}");
  if (w.type == "Patient") return bad_resource("Patient resources belong in the identity vault, not the clinical store");
  if (w.mode == ResourceWrite::Mode::kUpdate && !valid_id(w.id)) return bad_resource("id must be [A-Za-z0-9.-]{1,64}");
  if (w.mode == ResourceWrite::Mode::kCreate && !w.id.empty() && !valid_id(w.id))
    return bad_resource("id must be [A-Za-z0-9.-]{1,64}");
  Prepared p;
  if (auto s = envelope::parse_json(w.json, p.doc); !s) {
    std::string reason = s.error().message;
    if (reason.starts_with("payload: ")) reason.erase(0, 9);
    return bad_resource(w.type + ": not valid JSON: " + reason);
  }
  if (!p.doc.IsObject()) return bad_resource(w.type + ": must be a JSON object");
  if (string_at(p.doc, "resourceType") != w.type) return bad_resource(w.type + ".resourceType: must be " + w.type);
  if (const Value* meta = member(p.doc, "meta"); meta && !meta->IsObject())
    return bad_resource(w.type + ".meta: must be an object");
  rapidjson::StringBuffer buffer;
  Writer writer(buffer);
  write_canonical(p.doc, writer, true);
  p.hash = sha256(std::string_view(buffer.GetString(), buffer.GetSize()));
  extract(w.type, p);
  return p;
}

// The JSON as stored: resourceType, id, meta (versionId, lastUpdated, then the source's other
// meta members), then the other members in their order.
std::string stored_json(const Value& doc, std::string_view id, std::int64_t version, core::TimePoint updated) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  w.Key("resourceType");
  doc["resourceType"].Accept(w);
  w.Key("id");
  w.String(id.data(), static_cast<rapidjson::SizeType>(id.size()));
  w.Key("meta");
  w.StartObject();
  const std::string v = std::to_string(version);
  const std::string lu = core::format_rfc3339(updated);
  w.Key("versionId");
  w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
  w.Key("lastUpdated");
  w.String(lu.data(), static_cast<rapidjson::SizeType>(lu.size()));
  if (const Value* meta = member(doc, "meta")) {
    for (auto it = meta->MemberBegin(); it != meta->MemberEnd(); ++it) {
      std::string_view name(it->name.GetString(), it->name.GetStringLength());
      if (name == "versionId" || name == "lastUpdated") continue;
      it->name.Accept(w);
      it->value.Accept(w);
    }
  }
  w.EndObject();
  for (auto it = doc.MemberBegin(); it != doc.MemberEnd(); ++it) {
    std::string_view name(it->name.GetString(), it->name.GetStringLength());
    if (name == "resourceType" || name == "id" || name == "meta") continue;
    it->name.Accept(w);
    it->value.Accept(w);
  }
  w.EndObject();
  return std::string(buffer.GetString(), buffer.GetSize());
}

// ---- cursors -------------------------------------------------------------------------------
// Text "<tag>|<key>|<id>" in hex, tag naming the order it belongs to ("uA", "uD", "dA", "dD", "s").

std::string make_cursor(std::string_view tag, std::int64_t key, std::string_view id) {
  std::string text = std::string(tag) + "|" + std::to_string(key) + "|" + std::string(id);
  return core::to_hex(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

// The order a search cursor belongs to: "dA", "dD", "uA" or "uD".
std::string sort_tag(const Query& q) {
  return std::string(q.sort == SortBy::kDate ? "d" : "u") + (q.descending ? "D" : "A");
}

Result<std::pair<std::int64_t, std::string>> parse_cursor(std::string_view cursor, std::string_view tag) {
  auto bytes = core::from_hex(cursor);
  if (!bytes) return bad_query("the cursor is not one this store issued");
  std::string text(bytes->begin(), bytes->end());
  auto a = text.find('|');
  auto b = a == std::string::npos ? a : text.find('|', a + 1);
  if (b == std::string::npos || std::string_view(text).substr(0, a) != tag)
    return bad_query("the cursor belongs to another query order");
  std::int64_t key = 0;
  auto [end, ec] = std::from_chars(text.data() + a + 1, text.data() + b, key);
  if (ec != std::errc() || end != text.data() + b) return bad_query("the cursor is not one this store issued");
  return std::make_pair(key, text.substr(b + 1));
}

// ---- query parameters as JSON --------------------------------------------------------------

std::string json_text(const std::function<void(Writer&)>& body) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  body(w);
  return std::string(buffer.GetString(), buffer.GetSize());
}

void wstr(Writer& w, std::string_view s) { w.String(s.data(), static_cast<rapidjson::SizeType>(s.size())); }

// The filter shared by the searches and the count: type, subject, _id, _lastUpdated, token,
// date and quantity parameters (?1..?8). A macro of adjacent literals, so every statement stays
// one compile-time literal (scripts/check_sql.sh).
#define TELEHUB_CLINICAL_FILTER \
    " WHERE c.type = ?1" \
    " AND (?2 IS NULL OR c.subject = ?2)" \
    " AND (?3 IS NULL OR c.id IN (SELECT value FROM json_each(?3)))" \
    " AND (?4 IS NULL OR c.last_updated_ms >= ?4)" \
    " AND (?5 IS NULL OR c.last_updated_ms < ?5)" \
    " AND NOT EXISTS (SELECT 1 FROM json_each(?6) AS g WHERE NOT EXISTS (" \
    "   SELECT 1 FROM tokens t, json_each(g.value, '$.v') AS tv" \
    "   WHERE t.rid = c.rid AND t.param = json_extract(g.value, '$.p') AND t.code = json_extract(tv.value, '$.c')" \
    "   AND (json_extract(tv.value, '$.s') = '' OR t.system = json_extract(tv.value, '$.s'))))" \
    " AND NOT EXISTS (SELECT 1 FROM json_each(?7) AS d WHERE NOT (c.has_date = 1 AND CASE json_extract(d.value, '$.p')" \
    "   WHEN 0 THEN c.date_from >= json_extract(d.value, '$.f') AND c.date_to <= json_extract(d.value, '$.t')" \
    "   WHEN 1 THEN NOT (c.date_from >= json_extract(d.value, '$.f') AND c.date_to <= json_extract(d.value, '$.t'))" \
    "   WHEN 2 THEN c.date_to > json_extract(d.value, '$.t')" \
    "   WHEN 3 THEN c.date_from < json_extract(d.value, '$.f')" \
    "   WHEN 4 THEN c.date_to > json_extract(d.value, '$.t')" \
    "     OR (c.date_from >= json_extract(d.value, '$.f') AND c.date_to <= json_extract(d.value, '$.t'))" \
    "   WHEN 5 THEN c.date_from < json_extract(d.value, '$.f')" \
    "     OR (c.date_from >= json_extract(d.value, '$.f') AND c.date_to <= json_extract(d.value, '$.t'))" \
    "   WHEN 6 THEN c.date_from >= json_extract(d.value, '$.t')" \
    "   WHEN 7 THEN c.date_to <= json_extract(d.value, '$.f')" \
    "   ELSE 0 END))" \
    " AND NOT EXISTS (SELECT 1 FROM json_each(?8) AS q WHERE NOT EXISTS (" \
    "   SELECT 1 FROM quantities x WHERE x.rid = c.rid" \
    "   AND (json_extract(q.value, '$.s') = '' OR x.system = json_extract(q.value, '$.s'))" \
    "   AND (json_extract(q.value, '$.c') = '' OR x.code = json_extract(q.value, '$.c'))" \
    "   AND CASE json_extract(q.value, '$.p')" \
    "     WHEN 0 THEN x.value >= json_extract(q.value, '$.lo') AND x.value < json_extract(q.value, '$.hi')" \
    "     WHEN 1 THEN NOT (x.value >= json_extract(q.value, '$.lo') AND x.value < json_extract(q.value, '$.hi'))" \
    "     WHEN 2 THEN x.value > json_extract(q.value, '$.v')" \
    "     WHEN 6 THEN x.value > json_extract(q.value, '$.v')" \
    "     WHEN 3 THEN x.value < json_extract(q.value, '$.v')" \
    "     WHEN 7 THEN x.value < json_extract(q.value, '$.v')" \
    "     WHEN 4 THEN x.value >= json_extract(q.value, '$.v')" \
    "     WHEN 5 THEN x.value <= json_extract(q.value, '$.v')" \
    "     ELSE 0 END))"

constexpr const char* kSearchAsc =
    "SELECT c.type, c.id, c.version, c.last_updated_ms, c.subject, v.json,"
    " CASE WHEN ?10 = 1 THEN c.date_sort ELSE c.last_updated_ms END AS k"
    " FROM current c JOIN versions v ON v.type = c.type AND v.id = c.id AND v.version = c.version"
    TELEHUB_CLINICAL_FILTER
    " AND (?9 IS NULL OR k > ?9 OR (k = ?9 AND c.id > ?11))"
    " ORDER BY k, c.id LIMIT ?12";

constexpr const char* kSearchDesc =
    "SELECT c.type, c.id, c.version, c.last_updated_ms, c.subject, v.json,"
    " CASE WHEN ?10 = 1 THEN c.date_sort ELSE c.last_updated_ms END AS k"
    " FROM current c JOIN versions v ON v.type = c.type AND v.id = c.id AND v.version = c.version"
    TELEHUB_CLINICAL_FILTER
    " AND (?9 IS NULL OR k < ?9 OR (k = ?9 AND c.id < ?11))"
    " ORDER BY k DESC, c.id DESC LIMIT ?12";

constexpr const char* kCount = "SELECT count(*) FROM current c" TELEHUB_CLINICAL_FILTER;

#undef TELEHUB_CLINICAL_FILTER

constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS versions("
    "  type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL, last_updated_ms INTEGER NOT NULL,"
    "  subject TEXT NOT NULL, json TEXT NOT NULL, PRIMARY KEY(type, id, version)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS versions_subject ON versions(subject);"
    "CREATE TABLE IF NOT EXISTS current("
    "  rid INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,"
    "  last_updated_ms INTEGER NOT NULL, subject TEXT NOT NULL, content_hash BLOB NOT NULL,"
    "  has_date INTEGER NOT NULL, date_from INTEGER NOT NULL, date_to INTEGER NOT NULL, date_sort INTEGER NOT NULL,"
    "  UNIQUE(type, id));"
    "CREATE INDEX IF NOT EXISTS current_hash ON current(type, content_hash);"
    "CREATE INDEX IF NOT EXISTS current_subject ON current(subject, rid);"
    "CREATE INDEX IF NOT EXISTS current_updated ON current(type, last_updated_ms, id);"
    "CREATE INDEX IF NOT EXISTS current_date ON current(type, date_sort, id);"
    "CREATE TABLE IF NOT EXISTS tokens(rid INTEGER NOT NULL, param TEXT NOT NULL, system TEXT NOT NULL,"
    "  code TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS tokens_code ON tokens(param, code, rid);"
    "CREATE INDEX IF NOT EXISTS tokens_rid ON tokens(rid);"
    "CREATE TABLE IF NOT EXISTS quantities(rid INTEGER NOT NULL, param TEXT NOT NULL, value REAL NOT NULL,"
    "  system TEXT NOT NULL, code TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS quantities_rid ON quantities(rid);";

class SqliteResourceStore final : public ResourceStore {
 public:
  SqliteResourceStore(sqlite::Database db, const core::Clock& clock) : db_(std::move(db)), clock_(clock) {}

  Result<WriteResult> write(const ResourceWrite& w) override {
    std::lock_guard lock(mu_);
    if (auto s = db_.exec("BEGIN IMMEDIATE"); !s) return tl::unexpected(io_error(s.error()));
    auto r = write_locked(w);
    if (!r) {
      rollback();
      return r;
    }
    if (auto s = db_.exec("COMMIT"); !s) {
      rollback();
      return tl::unexpected(io_error(s.error()));
    }
    return r;
  }

  Result<std::vector<WriteResult>> write_all(std::span<const ResourceWrite> writes) override {
    std::lock_guard lock(mu_);
    if (auto s = db_.exec("BEGIN IMMEDIATE"); !s) return tl::unexpected(io_error(s.error()));
    std::vector<WriteResult> results;
    results.reserve(writes.size());
    for (std::size_t i = 0; i < writes.size(); ++i) {
      auto r = write_locked(writes[i]);
      if (!r) {
        rollback();
        auto e = r.error();
        e.message = "write[" + std::to_string(i) + "]: " + e.message;
        return tl::unexpected(std::move(e));
      }
      results.push_back(std::move(*r));
    }
    if (auto s = db_.exec("COMMIT"); !s) {
      rollback();
      return tl::unexpected(io_error(s.error()));
    }
    return results;
  }

  Result<std::optional<WriteResult>> find_identical(std::string_view type, std::string_view json) override {
    ResourceWrite w;
    w.type = std::string(type);
    w.json = std::string(json);
    auto p = prepare_write(w);
    if (!p) return tl::unexpected(p.error());
    std::lock_guard lock(mu_);
    return by_hash(w.type, p->hash);
  }

  Result<std::optional<StoredResource>> read(std::string_view type, std::string_view id) override {
    std::lock_guard lock(mu_);
    auto st = db_.prepare(
        "SELECT c.type, c.id, c.version, c.last_updated_ms, c.subject, v.json FROM current c JOIN versions v"
        " ON v.type = c.type AND v.id = c.id AND v.version = c.version WHERE c.type = ?1 AND c.id = ?2");
    if (!st) return tl::unexpected(io_error(st.error()));
    st->bind(1, type).bind(2, id);
    return one(*st);
  }

  Result<std::optional<StoredResource>> vread(std::string_view type, std::string_view id,
                                              std::int64_t version) override {
    std::lock_guard lock(mu_);
    auto st = db_.prepare(
        "SELECT type, id, version, last_updated_ms, subject, json FROM versions"
        " WHERE type = ?1 AND id = ?2 AND version = ?3");
    if (!st) return tl::unexpected(io_error(st.error()));
    st->bind(1, type).bind(2, id).bind(3, version);
    return one(*st);
  }

  Result<std::vector<StoredResource>> history(std::string_view type, std::string_view id) override {
    std::lock_guard lock(mu_);
    auto st = db_.prepare(
        "SELECT type, id, version, last_updated_ms, subject, json FROM versions"
        " WHERE type = ?1 AND id = ?2 ORDER BY version DESC");
    if (!st) return tl::unexpected(io_error(st.error()));
    st->bind(1, type).bind(2, id);
    std::vector<StoredResource> out;
    for (;;) {
      auto row = st->step();
      if (!row) return tl::unexpected(io_error(row.error()));
      if (!*row) break;
      out.push_back(from_row(*st));
    }
    return out;
  }

  Result<Page> search(const Query& q) override {
    if (q.limit < 1 || q.limit > 1000) return bad_query("limit must be 1..1000");
    auto bound = bind_query(q);
    if (!bound) return tl::unexpected(bound.error());
    const std::string tag = sort_tag(q);
    std::optional<std::pair<std::int64_t, std::string>> after;
    if (!q.cursor.empty()) {
      auto c = parse_cursor(q.cursor, tag);
      if (!c) return tl::unexpected(c.error());
      after = *c;
    }
    std::lock_guard lock(mu_);
    auto st = q.descending ? db_.prepare(kSearchDesc) : db_.prepare(kSearchAsc);
    if (!st) return tl::unexpected(io_error(st.error()));
    bind_filters(*st, q, *bound);
    st->bind(10, static_cast<std::int64_t>(q.sort == SortBy::kDate ? 1 : 0));
    if (after) {
      st->bind(9, after->first).bind(11, after->second);
    } else {
      st->bind_null(9).bind_null(11);
    }
    st->bind(12, static_cast<std::int64_t>(q.limit) + 1);
    Page page;
    std::int64_t last_key = 0;
    for (;;) {
      auto row = st->step();
      if (!row) return tl::unexpected(io_error(row.error()));
      if (!*row) break;
      if (page.resources.size() == static_cast<std::size_t>(q.limit)) {
        page.next_cursor = make_cursor(tag, last_key, page.resources.back().id);
        break;
      }
      page.resources.push_back(from_row(*st));
      last_key = st->column_int64(6);
      page.resources.back().sort_key = last_key;
    }
    return page;
  }

  Result<std::int64_t> count(const Query& q) override {
    auto bound = bind_query(q);
    if (!bound) return tl::unexpected(bound.error());
    std::lock_guard lock(mu_);
    auto st = db_.prepare(kCount);
    if (!st) return tl::unexpected(io_error(st.error()));
    bind_filters(*st, q, *bound);
    auto row = st->step();
    if (!row) return tl::unexpected(io_error(row.error()));
    return st->column_int64(0);
  }

  Result<Page> of_subject(std::string_view pseudonym, const std::vector<std::string>& types,
                          std::optional<core::TimePoint> since, std::string_view cursor, int limit,
                          std::optional<DateRange> care) override {
    if (limit < 1 || limit > 1000) return bad_query("limit must be 1..1000");
    if (pseudonym.empty()) return bad_query("an empty subject");
    for (const auto& t : types)
      if (!valid_type(t)) return bad_query("resource type must be [A-Z][A-Za-z]{0,63}");
    std::int64_t after = 0;
    if (!cursor.empty()) {
      auto c = parse_cursor(cursor, "s");
      if (!c) return tl::unexpected(c.error());
      after = c->first;
    }
    std::lock_guard lock(mu_);
    auto st = db_.prepare(
        "SELECT c.type, c.id, c.version, c.last_updated_ms, c.subject, v.json, c.rid FROM current c"
        " JOIN versions v ON v.type = c.type AND v.id = c.id AND v.version = c.version"
        " WHERE c.subject = ?1 AND (?2 IS NULL OR c.type IN (SELECT value FROM json_each(?2)))"
        " AND (?3 IS NULL OR c.last_updated_ms >= ?3) AND c.rid > ?4"
        " AND (?6 IS NULL OR c.has_date = 0 OR (c.date_from < ?7 AND c.date_to > ?6)) ORDER BY c.rid LIMIT ?5");
    if (!st) return tl::unexpected(io_error(st.error()));
    st->bind(1, pseudonym);
    if (types.empty()) {
      st->bind_null(2);
    } else {
      st->bind(2, json_text([&](Writer& w) {
        w.StartArray();
        for (const auto& t : types) wstr(w, t);
        w.EndArray();
      }));
    }
    if (since) st->bind(3, core::to_unix_millis(*since));
    else st->bind_null(3);
    st->bind(4, after).bind(5, static_cast<std::int64_t>(limit) + 1);
    if (care) st->bind(6, care->from_ms).bind(7, care->to_ms);
    else st->bind_null(6).bind_null(7);
    Page page;
    std::int64_t last_rid = 0;
    for (;;) {
      auto row = st->step();
      if (!row) return tl::unexpected(io_error(row.error()));
      if (!*row) break;
      if (page.resources.size() == static_cast<std::size_t>(limit)) {
        page.next_cursor = make_cursor("s", last_rid, "");
        break;
      }
      page.resources.push_back(from_row(*st));
      last_rid = st->column_int64(6);
    }
    return page;
  }

  Result<std::int64_t> erase_subject(std::string_view pseudonym) override {
    if (pseudonym.empty()) return bad_query("an empty subject");
    std::lock_guard lock(mu_);
    if (auto s = db_.exec("BEGIN IMMEDIATE"); !s) return tl::unexpected(io_error(s.error()));
    std::int64_t resources = 0;
    {
      auto st = db_.prepare("SELECT count(*) FROM current WHERE subject = ?1");
      if (!st) return rollback_with(st.error());
      st->bind(1, pseudonym);
      auto row = st->step();
      if (!row) return rollback_with(row.error());
      resources = st->column_int64(0);
    }
    auto run = [&](Result<sqlite::Statement> st) -> Status {
      if (!st) return tl::unexpected(st.error());
      st->bind(1, pseudonym);
      return st->run();
    };
    Status s = run(db_.prepare("DELETE FROM tokens WHERE rid IN (SELECT rid FROM current WHERE subject = ?1)"));
    if (s) s = run(db_.prepare("DELETE FROM quantities WHERE rid IN (SELECT rid FROM current WHERE subject = ?1)"));
    if (s)
      s = run(db_.prepare("DELETE FROM versions WHERE subject = ?1"
                          " OR (type, id) IN (SELECT type, id FROM current WHERE subject = ?1)"));
    if (s) s = run(db_.prepare("DELETE FROM current WHERE subject = ?1"));
    if (!s) return rollback_with(s.error());
    if (auto s = db_.exec("COMMIT"); !s) return rollback_with(s.error());
    // As the identity vault does: move the zeroed pages into the file and drop older WAL frames.
    (void)db_.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    return resources;
  }

  Result<std::vector<std::pair<std::string, std::int64_t>>> count_by_type() override {
    std::lock_guard lock(mu_);
    auto st = db_.prepare("SELECT type, count(*) FROM current GROUP BY type ORDER BY type");
    if (!st) return tl::unexpected(io_error(st.error()));
    std::vector<std::pair<std::string, std::int64_t>> out;
    for (;;) {
      auto row = st->step();
      if (!row) return tl::unexpected(io_error(row.error()));
      if (!*row) break;
      out.emplace_back(st->column_text(0), st->column_int64(1));
    }
    return out;
  }

 private:
  struct BoundQuery {
    std::optional<std::string> ids, tokens, dates, quantities;
  };

  void rollback() { (void)db_.exec("ROLLBACK"); }
  tl::unexpected<core::Error> rollback_with(const core::Error& e) {
    rollback();
    return tl::unexpected(io_error(e));
  }

  static StoredResource from_row(const sqlite::Statement& st) {
    StoredResource r;
    r.type = st.column_text(0);
    r.id = st.column_text(1);
    r.version = st.column_int64(2);
    r.last_updated = core::from_unix_millis(st.column_int64(3));
    r.subject = st.column_text(4);
    r.json = st.column_text(5);
    return r;
  }

  Result<std::optional<StoredResource>> one(sqlite::Statement& st) {
    auto row = st.step();
    if (!row) return tl::unexpected(io_error(row.error()));
    if (!*row) return std::optional<StoredResource>();
    return std::optional<StoredResource>(from_row(st));
  }

  static Result<BoundQuery> bind_query(const Query& q) {
    if (!valid_type(q.type)) return bad_query("resource type must be [A-Z][A-Za-z]{0,63}");
    BoundQuery b;
    if (!q.ids.empty()) {
      b.ids = json_text([&](Writer& w) {
        w.StartArray();
        for (const auto& id : q.ids) wstr(w, id);
        w.EndArray();
      });
    }
    std::map<std::string, std::vector<const TokenParam*>> groups;
    for (const auto& t : q.tokens) {
      if (t.param.empty() || t.code.empty()) return bad_query("a token parameter needs a name and a code");
      groups[t.param].push_back(&t);
    }
    b.tokens = json_text([&](Writer& w) {
      w.StartArray();
      for (const auto& [param, values] : groups) {
        w.StartObject();
        w.Key("p");
        wstr(w, param);
        w.Key("v");
        w.StartArray();
        for (const auto* t : values) {
          w.StartObject();
          w.Key("s");
          wstr(w, t->system);
          w.Key("c");
          wstr(w, t->code);
          w.EndObject();
        }
        w.EndArray();
        w.EndObject();
      }
      w.EndArray();
    });
    b.dates = json_text([&](Writer& w) {
      w.StartArray();
      for (const auto& d : q.dates) {
        w.StartObject();
        w.Key("p");
        w.Int(static_cast<int>(d.prefix));
        w.Key("f");
        w.Int64(d.range.from_ms);
        w.Key("t");
        w.Int64(d.range.to_ms);
        w.EndObject();
      }
      w.EndArray();
    });
    b.quantities = json_text([&](Writer& w) {
      w.StartArray();
      for (const auto& x : q.quantities) {
        w.StartObject();
        w.Key("p");
        w.Int(static_cast<int>(x.prefix));
        w.Key("v");
        w.Double(x.value);
        w.Key("lo");
        w.Double(x.low);
        w.Key("hi");
        w.Double(x.high);
        w.Key("s");
        wstr(w, x.system);
        w.Key("c");
        wstr(w, x.code);
        w.EndObject();
      }
      w.EndArray();
    });
    return b;
  }

  static void bind_filters(sqlite::Statement& st, const Query& q, const BoundQuery& b) {
    st.bind(1, q.type);
    if (q.subject) st.bind(2, *q.subject);
    else st.bind_null(2);
    if (b.ids) st.bind(3, *b.ids);
    else st.bind_null(3);
    if (q.last_updated_from) st.bind(4, core::to_unix_millis(*q.last_updated_from));
    else st.bind_null(4);
    if (q.last_updated_to) st.bind(5, core::to_unix_millis(*q.last_updated_to));
    else st.bind_null(5);
    st.bind(6, *b.tokens).bind(7, *b.dates).bind(8, *b.quantities);
  }

  Result<std::optional<WriteResult>> by_hash(const std::string& type, const core::Bytes& hash) {
    auto st = db_.prepare(
        "SELECT id, version, last_updated_ms FROM current WHERE type = ?1 AND content_hash = ?2 ORDER BY rid LIMIT 1");
    if (!st) return tl::unexpected(io_error(st.error()));
    st->bind(1, type).bind_blob(2, hash);
    auto row = st->step();
    if (!row) return tl::unexpected(io_error(row.error()));
    if (!*row) return std::optional<WriteResult>();
    WriteResult r;
    r.outcome = WriteOutcome::kExisting;
    r.type = type;
    r.id = st->column_text(0);
    r.version = st->column_int64(1);
    r.last_updated = core::from_unix_millis(st->column_int64(2));
    return std::optional<WriteResult>(std::move(r));
  }

  // The body of a write, inside a transaction the caller commits or rolls back.
  Result<WriteResult> write_locked(const ResourceWrite& w) {
    auto p = prepare_write(w);
    if (!p) return tl::unexpected(p.error());
    WriteResult result;
    result.type = w.type;
    result.id = w.id;
    std::int64_t version = 1;
    if (w.mode == ResourceWrite::Mode::kCreate && w.id.empty()) {
      auto existing = by_hash(w.type, p->hash);
      if (!existing) return tl::unexpected(existing.error());
      if (*existing) return **existing;
      auto random = core::random_bytes(16);
      if (!random) return tl::unexpected(random.error());
      result.id = core::to_hex(*random);
    } else {
      auto st = db_.prepare("SELECT version, content_hash, last_updated_ms FROM current WHERE type = ?1 AND id = ?2");
      if (!st) return tl::unexpected(io_error(st.error()));
      st->bind(1, w.type).bind(2, w.id);
      auto row = st->step();
      if (!row) return tl::unexpected(io_error(row.error()));
      if (*row) {
        if (w.mode == ResourceWrite::Mode::kCreate)
          return core::fail(Code::kAlreadyExists, "resource_exists", w.type + ": a resource with this id exists");
        auto blob = st->column_blob_view(1);
        if (core::Bytes(blob.begin(), blob.end()) == p->hash) {
          result.outcome = WriteOutcome::kUnchanged;
          result.version = st->column_int64(0);
          result.last_updated = core::from_unix_millis(st->column_int64(2));
          return result;
        }
        version = st->column_int64(0) + 1;
      }
    }
    result.outcome = version == 1 ? WriteOutcome::kCreated : WriteOutcome::kUpdated;
    result.version = version;
    result.last_updated = clock_.now();
    const std::int64_t updated_ms = core::to_unix_millis(result.last_updated);
    const std::string json = stored_json(p->doc, result.id, version, result.last_updated);

    auto ins = db_.prepare(
        "INSERT INTO versions(type, id, version, last_updated_ms, subject, json) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    if (!ins) return tl::unexpected(io_error(ins.error()));
    ins->bind(1, w.type).bind(2, result.id).bind(3, version).bind(4, updated_ms).bind(5, p->subject).bind(6, json);
    if (auto s = ins->run(); !s) return tl::unexpected(io_error(s.error()));

    const bool has_date = p->date.has_value();
    const std::int64_t from = has_date ? p->date->from_ms : 0, to = has_date ? p->date->to_ms : 0;
    auto up = db_.prepare(
        "INSERT INTO current(type, id, version, last_updated_ms, subject, content_hash, has_date, date_from, date_to,"
        " date_sort) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        " ON CONFLICT(type, id) DO UPDATE SET version = excluded.version, last_updated_ms = excluded.last_updated_ms,"
        " subject = excluded.subject, content_hash = excluded.content_hash, has_date = excluded.has_date,"
        " date_from = excluded.date_from, date_to = excluded.date_to, date_sort = excluded.date_sort");
    if (!up) return tl::unexpected(io_error(up.error()));
    up->bind(1, w.type).bind(2, result.id).bind(3, version).bind(4, updated_ms).bind(5, p->subject);
    up->bind_blob(6, p->hash).bind(7, static_cast<std::int64_t>(has_date ? 1 : 0)).bind(8, from).bind(9, to);
    up->bind(10, has_date ? from : kMin);
    if (auto s = up->run(); !s) return tl::unexpected(io_error(s.error()));

    auto rid_st = db_.prepare("SELECT rid FROM current WHERE type = ?1 AND id = ?2");
    if (!rid_st) return tl::unexpected(io_error(rid_st.error()));
    rid_st->bind(1, w.type).bind(2, result.id);
    auto row = rid_st->step();
    if (!row) return tl::unexpected(io_error(row.error()));
    const std::int64_t rid = rid_st->column_int64(0);

    auto run = [&](Result<sqlite::Statement> st) -> Status {
      if (!st) return tl::unexpected(io_error(st.error()));
      st->bind(1, rid);
      if (auto r = st->run(); !r) return tl::unexpected(io_error(r.error()));
      return {};
    };
    if (auto s = run(db_.prepare("DELETE FROM tokens WHERE rid = ?1")); !s) return tl::unexpected(s.error());
    if (auto s = run(db_.prepare("DELETE FROM quantities WHERE rid = ?1")); !s) return tl::unexpected(s.error());
    for (const auto& t : p->tokens) {
      auto st = db_.prepare("INSERT INTO tokens(rid, param, system, code) VALUES (?1, ?2, ?3, ?4)");
      if (!st) return tl::unexpected(io_error(st.error()));
      st->bind(1, rid).bind(2, t.param).bind(3, t.system).bind(4, t.code);
      if (auto s = st->run(); !s) return tl::unexpected(io_error(s.error()));
    }
    for (const auto& x : p->quantities) {
      auto st = db_.prepare("INSERT INTO quantities(rid, param, value, system, code) VALUES (?1, ?2, ?3, ?4, ?5)");
      if (!st) return tl::unexpected(io_error(st.error()));
      st->bind(1, rid).bind(2, x.param).bind(3, x.value).bind(4, x.system).bind(5, x.code);
      if (auto s = st->run(); !s) return tl::unexpected(io_error(s.error()));
    }
    return result;
  }

  std::mutex mu_;
  sqlite::Database db_;
  const core::Clock& clock_;
};

}  // namespace

Result<DateRange> fhir_date_range(std::string_view t) {
  auto bad = [] { return core::fail(Code::kInvalidArgument, "bad_date", "not a FHIR date, dateTime or instant"); };
  if (t.size() < 4 || !digits(t.substr(0, 4))) return bad();
  const int y = to_int(t.substr(0, 4));
  if (t.size() == 4) return DateRange{days_ms(y, 1, 1), days_ms(y + 1, 1, 1)};
  if (t.size() < 7 || t[4] != '-' || !digits(t.substr(5, 2))) return bad();
  const unsigned m = static_cast<unsigned>(to_int(t.substr(5, 2)));
  if (m < 1 || m > 12) return bad();
  if (t.size() == 7) return DateRange{days_ms(y, m, 1), m == 12 ? days_ms(y + 1, 1, 1) : days_ms(y, m + 1, 1)};
  if (t.size() < 10 || t[7] != '-' || !digits(t.substr(8, 2))) return bad();
  const unsigned d = static_cast<unsigned>(to_int(t.substr(8, 2)));
  using namespace std::chrono;
  if (!year_month_day(year(y), month(m), day(d)).ok()) return bad();
  if (t.size() == 10) return DateRange{days_ms(y, m, d), days_ms(y, m, d) + 86'400'000};
  auto point = core::parse_rfc3339(t);
  if (!point) return bad();
  const std::int64_t ms = core::to_unix_millis(*point);
  const bool fraction = t.size() > 19 && t[19] == '.';
  return DateRange{ms, ms + (fraction ? 1 : 1000)};
}

const std::vector<IndexedParam>& index_table() {
  static const std::vector<IndexedParam> table = [] {
    std::vector<IndexedParam> t;
    for (const auto& s : kTokenSpecs) t.push_back({s.type, s.param, "token", s.element});
    for (const auto& s : kDateSpecs) {
      std::string elements;
      for (const char* e : s.elements) elements += (elements.empty() ? "" : " | ") + std::string(e);
      t.push_back({s.type, "date", "date", elements});
    }
    t.push_back({"Observation", "value-quantity", "quantity", "valueQuantity"});
    t.push_back({"(every type)", "identifier", "token", "identifier"});
    t.push_back({"(every type)", "patient / subject", "reference", "subject | patient | beneficiary"});
    return t;
  }();
  return table;
}

std::string cursor_after(const Query& q, const StoredResource& r) { return make_cursor(sort_tag(q), r.sort_key, r.id); }

Result<std::unique_ptr<ResourceStore>> ResourceStore::open(const std::filesystem::path& path,
                                                           const core::Clock& clock) {
  std::error_code ec;
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return core::fail(Code::kUnavailable, "clinical_io", "cannot create the clinical store file");
  ::close(fd);
  auto db = sqlite::Database::open(path);
  if (!db) return tl::unexpected(io_error(db.error()));
  if (auto s = db->exec("PRAGMA secure_delete=ON;"); !s) return tl::unexpected(io_error(s.error()));
  if (auto s = db->exec(kSchema); !s) return tl::unexpected(io_error(s.error()));
  return std::unique_ptr<ResourceStore>(new SqliteResourceStore(std::move(*db), clock));
}

}  // namespace telehub::clinical
