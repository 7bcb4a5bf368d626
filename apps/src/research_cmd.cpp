// Placeholder: `telehub research` of issue [8/8].
#include <cstdio>

#include "commands.h"

namespace telehub::apps {

int cmd_research(int, char**) {
  std::fputs("telehub: research: not built yet\n", stderr);
  return 2;
}

}  // namespace telehub::apps
