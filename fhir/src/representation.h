// HTTP representation of FHIR answers (issue [7/8] item 6): content negotiation (_format,
// Accept), _pretty, ETag / If-None-Match, applied around every routed request. STUB: the
// negotiation accepts everything and finish() returns the response unchanged.
#pragma once

#include <optional>

#include "telehub/fhir/router.h"

namespace telehub::fhir {

struct Representation {
  bool pretty = false;
};

// Reads and removes _format and _pretty from request.target (so the routes never see them)
// and checks the Accept header. Returns the answer that ends the request (e.g. 406 for a
// format the server cannot produce), or nothing.
std::optional<Response> negotiate(Request& request, Representation& out);

// Applies the representation to a routed response: pretty-printing, ETag handling
// (If-None-Match → 304 for GET/HEAD when the response's ETag matches).
Response finish(const Request& request, const Representation& representation, Response response);

}  // namespace telehub::fhir
