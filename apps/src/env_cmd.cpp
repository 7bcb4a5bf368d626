// Placeholder: `telehub env` of issue [8/8].
#include <cstdio>

#include "commands.h"

namespace telehub::apps {

int cmd_env(int, char**) {
  std::fputs("telehub: env: not built yet\n", stderr);
  return 2;
}

}  // namespace telehub::apps
