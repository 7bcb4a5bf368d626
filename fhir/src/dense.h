// Dense views of home readings as FHIR R4 (docs/dense.md): hourly and daily aggregate
// Observations (the telehub extension parameter `_aggregate` on GET Observation) and
// the parameters of Observation/$lastn (http://hl7.org/fhir/R4/observation-operation-lastn.html).
// The router parses a request with parse_aggregate_request() / parse_lastn_request(), reads
// storage::ObservationStore::aggregate() / latest() (and, for $lastn, the clinical store), and
// writes the aggregate Bundle with the writer below ($lastn's Bundle, which mixes home readings
// and clinical Observations, is the router's).
//
// An aggregate Observation (one per bucket and series):
//   - id "agg.<h|d>.<bucket index>.<subject pseudonym>.<code>" (aggregate_observation_id());
//   - meta.tag https://telehub.example.org/fhir/CodeSystem/observation-tag#aggregate-hour or
//     #aggregate-day: a derived aggregate, not a measurement;
//   - status final, category and code as the single-reading Observation (LOINC + MDC),
//     subject, effectivePeriod [start, end) of the bucket (end exclusive, as the docs say);
//   - valueQuantity: the mean in the code's canonical unit (value series);
//   - component: the statistics, each coded with
//     http://terminology.hl7.org/CodeSystem/observation-statistics (R4 4.0.1:
//     http://hl7.org/fhir/R4/codesystem-observation-statistics.html) average, minimum,
//     maximum (valueQuantity) and count (valueInteger). For a panel (blood pressure) the
//     components are first the panel members with their means (as the vital-signs BP profile
//     requires), then the statistics of each member, which carry the extension
//     https://telehub.example.org/fhir/StructureDefinition/statistic-of (valueCoding: the
//     member's LOINC code) naming the member they describe.
// Only readings in the code's canonical unit (core::CodeInfo::ucum; ingest stores every reading
// so) are summarised; a slot in another unit is left out.
//
// Thread-safety: pure functions over their arguments.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "json.h"
#include "search_params.h"
#include "telehub/storage/store.h"

namespace telehub::fhir {

// ---------------------------------------------------------------- ids

// The id of an aggregate Observation: "agg.h.<unix hour>.<pseudonym>.<code>" or
// "agg.d.<unix day>.<pseudonym>.<code>" (index = bucket start / bucket size since
// 1970-01-01T00:00Z). '.' separates the parts: LOINC codes, telehub codes, pseudonyms (32
// lower-case hex) and decimal numbers contain none. When that would exceed the 64 characters of
// a FHIR id (http://hl7.org/fhir/R4/datatypes.html#id: a code longer than about 20 characters)
// the pseudonym is left out ("agg.h.<index>.<code>"): such an id is unique only together with
// the patient, and a later GET Observation/<id> needs the patient from the request context.
// Returns std::nullopt when even that is not a valid id (a code with characters outside
// [A-Za-z0-9-] or too long).
std::optional<std::string> aggregate_observation_id(std::string_view subject, std::string_view code,
                                                    storage::BucketSize size, core::TimePoint start);

// What an aggregate id names; std::nullopt when `id` is not one (for GET Observation/<id>).
struct AggregateId {
  storage::BucketSize size = storage::BucketSize::kHour;
  core::TimePoint start{};
  std::string subject;  // empty when the id leaves the pseudonym out
  std::string code;
};
std::optional<AggregateId> parse_aggregate_observation_id(std::string_view id);

// ---------------------------------------------------------------- aggregate Observations

// One aggregate Observation for a bucket of the series (subject, code). Writes nothing and
// returns false when the bucket holds no statistic in the canonical unit (nothing to show) or
// no valid id can be formed.
bool write_aggregate_observation(JsonWriter& w, const storage::AggregateBucket& bucket, std::string_view subject,
                                 std::string_view code, storage::BucketSize size);
// The same as a JSON document; empty when write_aggregate_observation() would write nothing.
std::string aggregate_observation_json(const storage::AggregateBucket& bucket, std::string_view subject,
                                       std::string_view code, storage::BucketSize size);

// A page of aggregates: the buckets of one or more series (a code token may stand for several
// stored codes), each series' buckets in time order.
struct AggregateSeries {
  std::string code;  // stored code
  std::vector<storage::AggregateBucket> buckets;
};

struct BundleLinks {
  std::string base_url;  // entries get fullUrl <base_url>/Observation/<id>
  std::string self;      // Bundle.link self (absolute URL)
  std::string next;      // Bundle.link next; empty: none
};

// searchset Bundle (http://hl7.org/fhir/R4/bundle.html): link self (and next), total = the
// entries written, one entry per aggregate Observation with search.mode match.
std::string aggregate_bundle_json(const std::vector<AggregateSeries>& series, std::string_view subject,
                                  storage::BucketSize size, const BundleLinks& links);

// ---------------------------------------------------------------- request parameters

// GET Observation?_aggregate=hour|day&patient=...&code=...[&date=...]: `_aggregate` is a
// telehub extension parameter (not in FHIR R4); the others as in a search (search_params.h).
struct AggregateRequest {
  std::string subject;              // subject pseudonym
  bool matches_nothing = false;     // e.g. not a pseudonym, a foreign code system, an empty date range
  storage::BucketSize size = storage::BucketSize::kHour;
  std::vector<std::string> codes;   // stored codes the code token stands for (one series each); non-empty
  std::optional<core::TimePoint> from;  // inclusive
  std::optional<core::TimePoint> to;    // exclusive
  std::vector<QueryParam> link_params;  // the parameters applied, `_aggregate` included, for the self link
  std::vector<std::string> ignored;     // names of parameters that were not understood
};

// True when the query carries `_aggregate` (the router then calls parse_aggregate_request()).
bool wants_aggregate(const std::vector<QueryParam>& params);

// Fails (Issue, for a 400 OperationOutcome; diagnostics name the parameter, never its value)
// with: value (`_aggregate` not hour or day, given twice, or a bad date), required (no patient,
// no code), not-supported (`_cursor`, modifiers, OR-lists of patients or dates, and what
// parse_observation_search() refuses).
[[nodiscard]] SearchResult<AggregateRequest> parse_aggregate_request(const std::vector<QueryParam>& params,
                                                                     const SearchLimits& limits);

// GET Observation/$lastn?patient=...[&code=a,b][&max=n]
struct LastnRequest {
  std::string subject;
  bool matches_nothing = false;
  std::vector<std::string> codes;  // stored codes; empty: every code
  std::size_t max = 1;             // 1..1000
  std::vector<QueryParam> link_params;
  std::vector<std::string> ignored;
};

// Fails with required (no patient), value (max not an integer 1..1000, given twice),
// not-supported (date, _cursor, and what parse_observation_search() refuses).
[[nodiscard]] SearchResult<LastnRequest> parse_lastn_request(const std::vector<QueryParam>& params,
                                                             const SearchLimits& limits);

}  // namespace telehub::fhir
