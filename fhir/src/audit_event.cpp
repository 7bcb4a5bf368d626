// Implemented in issue [5/8]; see include/telehub/fhir/audit_event.h.
#include "telehub/fhir/audit_event.h"
