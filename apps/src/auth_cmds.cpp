// `telehub client ...`, `telehub token ...` and `telehub care ...`: API clients, API tokens and
// care relations (docs/security.md). STUB until implemented.
#include <iostream>

#include "commands.h"

namespace telehub::apps {

int cmd_client(int, char**) {
  std::cerr << "telehub: client: not implemented yet\n";
  return 1;
}
int cmd_token(int, char**) {
  std::cerr << "telehub: token: not implemented yet\n";
  return 1;
}
int cmd_care(int, char**) {
  std::cerr << "telehub: care: not implemented yet\n";
  return 1;
}

}  // namespace telehub::apps
