// Implemented in issue [4/8]; see include/telehub/formats/plausibility.h.
#include "telehub/formats/plausibility.h"
