// Implemented in issue [5/8]; see audit_event.h.
#include "audit_event.h"
