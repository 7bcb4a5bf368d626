// Implemented in issue [5/8]; see include/telehub/privacy/consent.h.
#include "telehub/privacy/consent.h"
