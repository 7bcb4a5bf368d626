// FHIR R4 search parameters for Observation (http://hl7.org/fhir/R4/search.html): query
// string decoding, token, reference and date values, _count, and telehub's paging cursor.
//
// Failures are returned as an Issue (error severity, FHIR issue-type code) for a 400
// OperationOutcome; the diagnostics name parameters but never echo values.
//
// Thread-safety: pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <tl/expected.hpp>

#include "resources.h"
#include "telehub/core/time.h"
#include "telehub/storage/store.h"

namespace telehub::fhir {

template <class T>
using SearchResult = tl::expected<T, Issue>;

struct QueryParam {
  std::string name;   // decoded, with any ":modifier"
  std::string value;  // decoded
};

// Decodes RFC 3986 percent-escapes. '+' stays '+' (not a space): FHIR values such as
// "2026-11-01T10:00:00+01:00" then work even when a client forgets to escape the '+'.
// std::nullopt on a malformed escape.
std::optional<std::string> percent_decode(std::string_view text);
// Escapes everything except unreserved characters and ":/@" (allowed in a query).
std::string percent_encode(std::string_view text);

// Splits "a=1&b=2" into decoded pairs (empty pieces skipped). std::nullopt on a bad escape.
std::optional<std::vector<QueryParam>> parse_query(std::string_view query);

// The effective-time bounds one `date` value selects: from inclusive, to exclusive.
struct DateBounds {
  std::optional<core::TimePoint> from;
  std::optional<core::TimePoint> to;
};

// One `date` value: [prefix]YYYY[-MM[-DD[Thh:mm[:ss[.fff]][Z|(+|-)hh:mm]]]]. The value stands
// for the range its precision implies (search.html#date); values without a zone are in the
// server's time zone, which for telehub is UTC. Prefixes eq (default), gt, ge, lt, le;
// ne, sa, eb and ap fail with not-supported; anything else with value.
[[nodiscard]] SearchResult<DateBounds> parse_date_param(std::string_view value);

// `_cursor` text of a keyset position, "<time_ms>.<id>", and back.
std::string format_cursor(const storage::Cursor& cursor);
std::optional<storage::Cursor> parse_cursor(std::string_view text);

struct SearchLimits {
  std::string base_url;         // to accept absolute Patient references
  std::size_t default_count = 50;
  std::size_t max_count = 1000;  // further capped at the store's 1000
};

// A parsed Observation search.
struct ObservationSearch {
  std::string subject;                           // subject pseudonym
  bool matches_nothing = false;                  // e.g. not a pseudonym, foreign code system, empty date range
  std::optional<std::vector<std::string>> codes; // stored LOINC codes, any of which matches; nullopt = any code
  std::optional<core::TimePoint> from;           // inclusive
  std::optional<core::TimePoint> to;             // exclusive
  std::optional<storage::Cursor> after;
  std::size_t count = 50;
  std::vector<QueryParam> link_params;  // the parameters applied (not _count/_cursor), for self/next links
  std::vector<std::string> ignored;     // names of parameters that were not understood
};

// Reads the Observation search parameters. Fails with required (no patient/subject), value
// (bad date, _count or _cursor) or not-supported (ne/sa/eb/ap, OR-lists of patients or dates,
// modifiers). Unknown parameters are ignored and listed in `ignored` (lenient handling,
// http://hl7.org/fhir/R4/search.html#errors).
[[nodiscard]] SearchResult<ObservationSearch> parse_observation_search(const std::vector<QueryParam>& params,
                                                                       const SearchLimits& limits);

}  // namespace telehub::fhir
