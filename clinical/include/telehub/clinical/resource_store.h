// clinical::ResourceStore: versioned FHIR R4 resources imported from hospital systems
// (docs/clinical.md), in their own SQLite file (<data>/clinical.db), never the measurement
// store and never the identity vault.
//
// Privacy (docs/privacy.md): the store holds no Patient resource. A resource's subject is the
// pseudonym in its first "Patient/<pseudonym>" reference among subject, patient and
// beneficiary; callers (fhir::import_bundle, the router) rewrite references to the Patient
// before writing. erase_subject() removes every version of every resource of a subject.
//
// Versions (http://hl7.org/fhir/R4/http.html#versioning): every write makes a new version; the
// store sets id, meta.versionId ("1", "2", ...) and meta.lastUpdated (RFC 3339, UTC "Z", from
// the injected Clock) in the stored JSON, keeping the other meta members (tag, profile). read()
// gives the current version, vread() any kept version, history() all of them newest first.
//
// Identical-content dedupe: a create with no id whose content (same type, same subject, same
// JSON after reference rewriting, ignoring id and meta, member order and insignificant
// whitespace) equals a current resource is not stored again; the result is kExisting with the
// existing id and version. An update whose content equals the current version is kUnchanged
// (no new version). So re-importing a Bundle stores nothing new.
//
// Search: the store extracts index entries from the JSON at write time, for the current version
// only (the table of parameters is index_table() and docs/clinical.md); search() takes a
// structured Query (no FHIR URL parsing here: the caller maps search parameters and prefixes
// onto it). Paging is keyset paging with an opaque cursor: a page continues after the last
// resource of the previous one in the sort order, so resources created meanwhile never shift
// or repeat the remaining pages.
//
// Error policy: Result, never throws. Bad arguments (unknown type syntax, malformed JSON, a
// resourceType that is not `type`, bad cursor): invalid_argument with reasons bad_resource /
// bad_query, messages naming the element, never quoting values. A create with an id already
// taken: already_exists/resource_exists. Database failures: reason clinical_io, keeping the
// sqlite wrapper's code (unavailable/db_busy is retryable).
//
// Thread-safety: safe from several threads (one connection, serialised by a mutex inside).
// Lifetime: the Clock passed to open() must outlive the store.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "telehub/core/error.h"
#include "telehub/core/time.h"

namespace telehub::clinical {

// A time range [from_ms, to_ms) in Unix milliseconds (UTC).
struct DateRange {
  std::int64_t from_ms = 0;
  std::int64_t to_ms = 0;
};

// The range a FHIR date, dateTime or instant covers (http://hl7.org/fhir/R4/datatypes.html#dateTime,
// http://hl7.org/fhir/R4/search.html#date): "2019" → the year, "2019-05" → the month,
// "2019-05-02" → the day (UTC), "2019-05-02T10:00:00+02:00" → that second, with a fraction that
// millisecond. Used by the store for resource values and by callers for search values. Fails with
// invalid_argument/bad_date (the message never quotes the text).
[[nodiscard]] Result<DateRange> fhir_date_range(std::string_view text);

// FHIR search prefixes (http://hl7.org/fhir/R4/search.html#prefix).
enum class Prefix { kEq, kNe, kGt, kLt, kGe, kLe, kSa, kEb };

// A token parameter: one value of `param` (code, category, clinical-status, ...). An empty
// system matches any system. Several TokenParams with the same param are OR-ed, different
// params AND-ed.
struct TokenParam {
  std::string param;
  std::string system;  // Default: "" (any system)
  std::string code;    // REQUIRES: non-empty
};

// A date parameter ("date", the resource's clinically relevant time; docs/clinical.md) against
// the search value's range [range.from_ms, range.to_ms) (fhir_date_range of the value). With the
// resource's range [rf, rt):
//   eq: rf >= from and rt <= to       ne: not eq
//   gt: rt > to                       lt: rf < from
//   ge: gt or eq                      le: lt or eq
//   sa: rf >= to                      eb: rt <= from
// A resource without that time never matches. Several DateParams are AND-ed.
struct DateParam {
  Prefix prefix = Prefix::kEq;
  DateRange range;
};

// Observation value-quantity (valueQuantity.value; system and code optional, empty = any).
// eq and ne compare with [low, high) (the caller derives it from the value's precision, e.g.
// 5.4 → [5.35, 5.45)); gt, lt, ge, le compare with `value`; sa and eb are treated as gt and lt.
struct QuantityParam {
  Prefix prefix = Prefix::kEq;
  double value = 0;
  double low = 0;
  double high = 0;
  std::string system;  // Default: "" (any)
  std::string code;    // Default: "" (any)
};

enum class SortBy { kLastUpdated, kDate };

struct Query {
  // REQUIRES: a FHIR resource type name ("Observation").
  std::string type;
  // Only resources of this subject pseudonym (patient / subject). Default: any.
  std::optional<std::string> subject;
  // _id: any of these ids. Default: empty (any id).
  std::vector<std::string> ids;
  // _lastUpdated in [from, to) (either end optional). Default: unbounded.
  std::optional<core::TimePoint> last_updated_from;
  std::optional<core::TimePoint> last_updated_to;
  std::vector<TokenParam> tokens;
  std::vector<DateParam> dates;
  std::vector<QuantityParam> quantities;
  // Sort by date (resources without one first when ascending) or _lastUpdated, then id.
  // Default: _lastUpdated ascending.
  SortBy sort = SortBy::kLastUpdated;
  bool descending = false;
  // Continue after this cursor (Page::next_cursor of the previous page). Default: "" (first page).
  std::string cursor;
  // Page size. REQUIRES: 1..1000. Default: 50.
  int limit = 50;
};

struct StoredResource {
  std::string type;
  std::string id;
  std::int64_t version = 0;
  core::TimePoint last_updated;
  std::string subject;  // pseudonym, or "" when the resource has none
  std::string json;     // with id, meta.versionId and meta.lastUpdated set
  // Set by search() only: the resource's key in the query's sort order (the start of its date
  // range in Unix ms, INT64_MIN without one, for SortBy::kDate; lastUpdated in ms otherwise).
  // With cursor_after(), a caller that merges a page with another sorted source and uses only
  // part of it can continue right after the last one used.
  std::int64_t sort_key = 0;
};

struct Page {
  std::vector<StoredResource> resources;
  // The cursor of the next page, or "" when this is the last one.
  std::string next_cursor;
};

struct ResourceWrite {
  enum class Mode { kCreate, kUpdate };
  // kCreate: a new resource. kUpdate: create-or-update with `id` (FHIR PUT Type/id).
  // Default: kCreate.
  Mode mode = Mode::kCreate;
  // REQUIRES: a resource type name ([A-Z][A-Za-z]{0,63}), not "Patient".
  std::string type;
  // kCreate: "" = the store assigns 32 random hex and dedupes by content; an id given is used
  // as is, without dedupe (callers that assign ids themselves, to resolve references before
  // writing, call find_identical() first), and fails with already_exists when taken.
  // kUpdate: REQUIRES a FHIR id ([A-Za-z0-9.-]{1,64}).
  std::string id;
  // The resource JSON (an object whose resourceType is `type`); its id and meta.versionId /
  // meta.lastUpdated are replaced.
  std::string json;
};

enum class WriteOutcome {
  kCreated,    // new resource, version 1
  kUpdated,    // new version of an existing resource
  kExisting,   // create deduped: an identical resource exists (its id and version returned)
  kUnchanged,  // update identical to the current version: no new version
};

struct WriteResult {
  WriteOutcome outcome = WriteOutcome::kCreated;
  std::string type;
  std::string id;
  std::int64_t version = 0;
  core::TimePoint last_updated;
};

// The cursor (as Page::next_cursor) that continues query `q` right after `r`, a resource of a
// page search(q) returned.
std::string cursor_after(const Query& q, const StoredResource& r);

// The search parameters the store indexes, per type (docs/clinical.md has the same table).
struct IndexedParam {
  std::string type;
  std::string param;
  std::string kind;      // "token", "date" or "quantity"
  std::string elements;  // the FHIR elements read, e.g. "effectiveDateTime | effectivePeriod | issued"
};
const std::vector<IndexedParam>& index_table();

class ResourceStore {
 public:
  // Opens (creating when missing, mode 0600) the store file. Fails with unavailable/clinical_io.
  [[nodiscard]] static Result<std::unique_ptr<ResourceStore>> open(const std::filesystem::path& path,
                                                                  const core::Clock& clock);
  virtual ~ResourceStore() = default;

  // One write in its own transaction. Fails as described at the top and on ResourceWrite.
  [[nodiscard]] virtual Result<WriteResult> write(const ResourceWrite& w) = 0;
  // Several writes in one SQLite transaction: all are stored or, on the first failure, none
  // (the error names the write's index: "write[3]: ..."). Results in the order of `writes`.
  [[nodiscard]] virtual Result<std::vector<WriteResult>> write_all(std::span<const ResourceWrite> writes) = 0;
  // The current resource of `type` whose content equals `json` (the dedupe rule above), if any.
  [[nodiscard]] virtual Result<std::optional<WriteResult>> find_identical(std::string_view type,
                                                                         std::string_view json) = 0;

  // The current version, or nullopt when unknown (or erased).
  [[nodiscard]] virtual Result<std::optional<StoredResource>> read(std::string_view type, std::string_view id) = 0;
  // A given version, or nullopt when unknown.
  [[nodiscard]] virtual Result<std::optional<StoredResource>> vread(std::string_view type, std::string_view id,
                                                                   std::int64_t version) = 0;
  // Every version, newest first; empty when unknown.
  [[nodiscard]] virtual Result<std::vector<StoredResource>> history(std::string_view type, std::string_view id) = 0;

  // A page of current resources matching `q`. Fails with invalid_argument/bad_query for a bad
  // type, limit or cursor (a cursor of another sort order is refused).
  [[nodiscard]] virtual Result<Page> search(const Query& q) = 0;
  // How many current resources match `q` (cursor and limit ignored), for _summary=count.
  [[nodiscard]] virtual Result<std::int64_t> count(const Query& q) = 0;

  // Patient/$everything: the subject's current resources of `types` (empty = all types) last
  // updated at or after `since` (when given), in write order (stable while resources arrive),
  // after `cursor` (Page::next_cursor of the previous call; "" = first page), at most `limit`
  // (1..1000). `care`: only resources whose clinical date (the "date" index, docs/clinical.md)
  // overlaps [care.from_ms, care.to_ms), and those without one (an allergy without onset is
  // still part of the care in any period) — $everything's start and end. Fails with
  // invalid_argument/bad_query.
  [[nodiscard]] virtual Result<Page> of_subject(std::string_view pseudonym, const std::vector<std::string>& types,
                                                std::optional<core::TimePoint> since, std::string_view cursor,
                                                int limit, std::optional<DateRange> care = std::nullopt) = 0;

  // GDPR erasure: deletes every version and index entry of the subject's resources in one
  // transaction (secure_delete on), then truncates the WAL. Returns the number of resources
  // (not versions) deleted.
  [[nodiscard]] virtual Result<std::int64_t> erase_subject(std::string_view pseudonym) = 0;

  // (type, number of current resources), by type; for diagnostics.
  [[nodiscard]] virtual Result<std::vector<std::pair<std::string, std::int64_t>>> count_by_type() = 0;
};

}  // namespace telehub::clinical
