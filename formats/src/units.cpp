// Implemented in issue [4/8]; see include/telehub/formats/units.h.
#include "telehub/formats/units.h"
