// Implemented in issue [4/8]; see include/telehub/formats/senml.h.
#include "telehub/formats/senml.h"
