// HTTP representation of FHIR answers (issue [7/8] item 6, http://hl7.org/fhir/R4/http.html):
// content negotiation (_format, Accept), _pretty, ETag / If-None-Match, applied by
// Router::handle around every routed request. The gzip content coding is the HTTP server's
// (http_server.cpp), not this file's.
//
// Scope: negotiate() acts only on targets under /fhir ("/fhir" or "/fhir/..."); finish() only on
// responses whose content type is application/fhir+json. Everything else (/metrics text, the
// token endpoint's application/json) passes through untouched.
//
// Error policy: nothing here fails. A refused negotiation is an answer (406 OperationOutcome),
// a body that is not JSON is left as it is, and malformed headers count as absent.
//
// Thread-safety: stateless free functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "telehub/fhir/router.h"

namespace telehub::fhir {

// What negotiate() decided for one request; finish() applies it.
struct Representation {
  // The target is under /fhir, so finish() applies the representation. Default: false.
  bool fhir = false;
  // _pretty=true: JSON bodies indented with 2 spaces. Default: false (compact).
  bool pretty = false;
  // The client asked only for application/json (Accept, or _format=application/json): FHIR
  // responses carry "application/json; charset=utf-8" instead of application/fhir+json.
  // Default: false.
  bool plain_json = false;
  // _elements (http://hl7.org/fhir/R4/search.html#elements): the top-level elements to keep in
  // each resource (a read's resource, every entry resource of a Bundle). resourceType, id, meta
  // and the elements a resource must have (see subset_resource in representation.cpp) are
  // always kept; the resource gets meta.tag SUBSETTED. Resource types without a table entry
  // are returned whole. Default: empty = no subsetting.
  std::vector<std::string> elements;
};

// Reads and removes every _format and _pretty parameter from request.target, keeping the other
// parameters byte for byte and in order (a query left empty loses its '?'), so the routes never
// see them; then decides the content type.
//   _format (http://hl7.org/fhir/R4/http.html#mime-type): json, application/json,
//     application/fhir+json (also written application/fhir json, i.e. '+' sent as a space, and
//     the legacy application/json+fhir), optionally with parameters (charset, fhirVersion=4.0 or
//     4.0.1). It overrides Accept. Anything else (xml, application/fhir+xml, ttl, html, another
//     fhirVersion) → 406.
//   Accept (RFC 9110 section 12.5.1): absent or empty = anything. Otherwise the most specific
//     matching range gives each of application/fhir+json and application/json its q-value;
//     application/*, */* and the ranges above count, with q-values. Neither acceptable (q = 0
//     or no range matches) → 406. application/json is chosen (plain_json) only when it has a
//     higher q-value than application/fhir+json.
//   _pretty: "true" sets out.pretty; any other value means compact.
// Returns the answer that ends the request (406 OperationOutcome, code "not-supported", content
// type application/fhir+json), or nothing. Targets outside /fhir are left unchanged.
std::optional<Response> negotiate(Request& request, Representation& out);

// Applies the representation to a routed response whose content type is application/fhir+json
// (others are returned unchanged):
//   - ETag (http://hl7.org/fhir/R4/http.html#concurrency, RFC 9110 section 8.8.3): a 200
//     answer to GET or HEAD without an ETag header gets W/"<first 16 hex digits of the SHA-256
//     of the compact body>". With an ETag (the route's or that one), a request If-None-Match
//     (RFC 9110 section 13.1.2: "*" or a list of entity-tags, compared weakly) that matches
//     turns the answer into 304 with no body and no content type, keeping its headers (ETag
//     included); nothing else below applies to it. Without If-None-Match, an If-Modified-Since
//     (IMF-fixdate) not earlier than the answer's Last-Modified header (set by a route; IMF-fixdate)
//     does the same (RFC 9110 section 13.1.3); an unreadable date is ignored.
//   - _pretty: the body is re-serialised with 2-space indentation (numbers byte for byte); a
//     body that does not parse as JSON is left as it is.
//   - plain_json: content type "application/json; charset=utf-8", except for errors (status
//     >= 400), which stay application/fhir+json OperationOutcomes (router.h).
Response finish(const Request& request, const Representation& representation, Response response);

// W/"<first 16 hex digits of SHA-256(body)>": the weak ETag finish() gives answers without one.
std::string body_etag(std::string_view body);

}  // namespace telehub::fhir
