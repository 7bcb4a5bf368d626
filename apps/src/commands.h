// The telehub subcommands. Each returns the process exit status: 0 success, 1 runtime
// failure, 2 usage error. Errors are printed as "telehub: <message>" on stderr.
#pragma once

#include "telehub/core/error.h"

namespace telehub::apps {

int cmd_serve(int argc, char** argv);
int cmd_device(int argc, char** argv);
int cmd_simulate(int argc, char** argv);
int cmd_quarantine(int argc, char** argv);
int cmd_subject(int argc, char** argv);
int cmd_audit(int argc, char** argv);
int cmd_consent(int argc, char** argv);
int cmd_retention(int argc, char** argv);
int cmd_client(int argc, char** argv);
int cmd_token(int argc, char** argv);
int cmd_care(int argc, char** argv);
int cmd_import(int argc, char** argv);
int cmd_env(int argc, char** argv);       // env_cmd.cpp (docs/environment.md)
int cmd_research(int argc, char** argv);  // research_cmd.cpp (docs/research.md)

// Prints "telehub: <message> [<reason>]" on stderr and returns 1.
int fail_with(const core::Error& e);

}  // namespace telehub::apps
