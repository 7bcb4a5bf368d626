#include "test_support.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sys/wait.h>

namespace telehub::testing {

TempDir::TempDir() {
  std::random_device rd;
  auto base = std::filesystem::temp_directory_path();
  for (;;) {
    auto candidate = base / ("telehub-test-" + std::to_string(rd()) + std::to_string(rd()));
    if (std::filesystem::create_directory(candidate)) {
      path_ = candidate;
      break;
    }
  }
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::filesystem::path shared_dir() { return TELEHUB_SHARED_DIR; }
std::filesystem::path source_dir() { return TELEHUB_SOURCE_DIR; }

CommandResult run_command(const std::string& command) {
  CommandResult r;
  std::string full = command + " 2>&1";
  FILE* pipe = ::popen(full.c_str(), "r");
  if (!pipe) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) r.output.append(buf, n);
  int status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

CommandResult fhir_validate(const std::vector<std::string>& json_documents) {
  TempDir dir;
  std::string args;
  for (std::size_t i = 0; i < json_documents.size(); ++i) {
    auto file = dir.path() / ("resource-" + std::to_string(i) + ".json");
    std::ofstream(file) << json_documents[i];
    args += " '" + file.string() + "'";
  }
  auto tool = shared_dir() / "tools" / "fhir-validate" / "fhir-validate";
  return run_command("'" + tool.string() + "'" + args);
}

core::TimePoint minutes_ago(int back) {
  return std::chrono::floor<std::chrono::minutes>(core::system_clock().now()) - std::chrono::minutes(back);
}

}  // namespace telehub::testing
