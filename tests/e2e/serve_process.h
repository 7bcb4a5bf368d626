// A running `telehub serve` for the end-to-end tests: started with fork/exec, stopped with
// SIGTERM on destruction.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace telehub::testing {

// `<bin> serve --data <data> --http-port 0 <extra...>` with TELEHUB_KEK=<kek_hex>, its stdout
// and stderr in `log`. base() is the FHIR base URL from hub.json (empty when serve did not
// come up within 15 s).
class ServeProcess {
 public:
  ServeProcess(const std::string& bin, const std::string& kek_hex, const std::filesystem::path& data,
               const std::filesystem::path& log, const std::vector<std::string>& extra)
      : log_(log) {
    std::filesystem::remove(data / "hub.json");
    pid_ = fork();
    if (pid_ == 0) {
      std::freopen(log.c_str(), "w", stdout);
      std::freopen(log.c_str(), "a", stderr);
      ::setenv("TELEHUB_KEK", kek_hex.c_str(), 1);
      std::vector<std::string> args{bin, "serve", "--data", data.string(), "--http-port", "0"};
      args.insert(args.end(), extra.begin(), extra.end());
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    // serve writes hub.json once its broker is up, just before the API listens; the log line
    // "telehub: serving" follows once it listens.
    for (int i = 0; i < 300 && read(log).find("telehub: serving") == std::string::npos; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::smatch m;
    const std::string hub = read(data / "hub.json");
    if (std::regex_search(hub, m, std::regex("\"fhir\":\"([^\"]+)\""))) base_ = m[1];
  }
  ServeProcess(const ServeProcess&) = delete;
  ServeProcess& operator=(const ServeProcess&) = delete;
  ~ServeProcess() { (void)stop(); }
  const std::string& base() const { return base_; }
  std::string log() const { return read(log_); }
  // The port of base(), "0" when unknown.
  std::string port() const {
    std::smatch m;
    return std::regex_search(base_, m, std::regex(":([0-9]+)/fhir$")) ? m[1].str() : std::string("0");
  }
  // SIGTERM and wait; the exit status (-1 when already stopped or killed by a signal).
  int stop() {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  static std::string read(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::filesystem::path log_;
  pid_t pid_ = -1;
  std::string base_;
};

}  // namespace telehub::testing
