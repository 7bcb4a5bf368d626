// Implemented in issue [4/8]; see include/telehub/formats/mapping.h.
#include "telehub/formats/mapping.h"
