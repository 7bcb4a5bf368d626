// Placeholder: implemented in the environment work of issue [8/8].
#include "telehub/environment/env_store.h"
