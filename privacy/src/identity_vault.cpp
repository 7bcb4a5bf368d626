// Implemented in issue [5/8]; see include/telehub/privacy/identity_vault.h.
#include "telehub/privacy/identity_vault.h"
