// formats::Decoded is a plain value type; this file anchors the module's library.
#include "telehub/formats/decoded.h"
