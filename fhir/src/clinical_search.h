// FHIR search over the clinical records (clinical::ResourceStore, docs/clinical.md): the URL
// query of GET /fhir/<Type>?... mapped onto a clinical::Query (http://hl7.org/fhir/R4/search.html).
//
// Parameters:
//   patient / subject      Patient/<pseudonym>, <base>/Patient/<pseudonym> or the bare pseudonym
//   _id                    comma-separated ids (OR)
//   _lastUpdated           [prefix]date, repeatable (AND); prefixes eq ne gt lt ge le sa eb
//   date                   the same, on the resource's clinically relevant time (index table)
//   <token params>         the type's token parameters of clinical::index_table(): [system|]code,
//                          comma-separated (OR), repeatable (AND); "|code" matches any system
//   value-quantity         Observation: [prefix]number[|system|code]
//   _count                 1..max (default 50); _sort: date, -date, _lastUpdated, -_lastUpdated
//   _summary=count         only the total; _cursor: telehub's paging cursor (next links)
//   _format, _pretty       handled before routing (representation.h)
// Unknown parameters (and modifiers other than none) are listed in `ignored` (lenient handling:
// the caller reports them in an OperationOutcome entry), or refused with Prefer:
// handling=strict (http://hl7.org/fhir/R4/search.html#errors).
//
// Failures are Issues for a 400 OperationOutcome; diagnostics name parameters, never values.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "search_params.h"
#include "telehub/clinical/resource_store.h"

namespace telehub::fhir {

struct ClinicalSearch {
  clinical::Query query;
  bool summary_count = false;
  std::vector<QueryParam> link_params;  // applied parameters (not _count/_cursor), for links
  std::vector<std::string> ignored;     // names of parameters not understood
};

// REQUIRES: `type` names a resource type. `strict`: Prefer: handling=strict.
[[nodiscard]] SearchResult<ClinicalSearch> parse_clinical_search(const std::string& type,
                                                                 const std::vector<QueryParam>& params,
                                                                 const SearchLimits& limits, bool strict);

}  // namespace telehub::fhir
