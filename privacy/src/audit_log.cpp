// Implemented in issue [5/8]; see include/telehub/privacy/audit_log.h.
#include "telehub/privacy/audit_log.h"
