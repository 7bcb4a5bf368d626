// Helpers shared by the Catch2 tests: temporary directories, paths to ../shared, running
// the independent FHIR validator and child commands.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "telehub/core/time.h"

namespace telehub::testing {

// A fresh directory under $TMPDIR, removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// ../shared beside the source tree (read-only inputs: FHIR examples, synthea, tools).
std::filesystem::path shared_dir();
std::filesystem::path source_dir();

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs a shell command, capturing its output.
CommandResult run_command(const std::string& command);

// Writes `json` to files in a temp dir and runs ../shared/tools/fhir-validate/fhir-validate on
// them. Returns the validator's exit code (0 = all valid) and its output.
CommandResult fhir_validate(const std::vector<std::string>& json_documents);

// The current minute (system clock, floored) minus `back`: reading times for tests that go
// through the hub's pipeline with the real clock, whose time windows (ingest::PipelineOptions)
// refuse readings far in the past or in the future. Fixed dates would expire.
core::TimePoint minutes_ago(int back);

}  // namespace telehub::testing
