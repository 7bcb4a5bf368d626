// See representation.h. STUB.
#include "representation.h"

namespace telehub::fhir {

std::optional<Response> negotiate(Request&, Representation&) { return std::nullopt; }

Response finish(const Request&, const Representation&, Response response) { return response; }

}  // namespace telehub::fhir
