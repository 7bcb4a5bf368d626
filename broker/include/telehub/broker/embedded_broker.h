// EmbeddedBroker: a Mosquitto broker run as a child process on a loopback port, for
// `telehub serve` with no configuration, the demo, and the tests.
//
// start() writes a mosquitto.conf into options.dir, starts `mosquitto -c <conf>`, and returns
// once the broker accepts TCP connections on its port. The broker persists its queue under
// options.dir. stop() sends SIGTERM, waits (then SIGKILL after a timeout) and reaps the child;
// the destructor calls stop().
//
// Error policy: Result, never throws. Reasons: broker_config (cannot write config),
// broker_exec (cannot start the program), broker_start (exited or did not listen in time; the
// message includes the tail of the broker log).
//
// Thread-safety: not thread-safe; one owner.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "telehub/core/error.h"

namespace telehub::broker {

struct BrokerOptions {
  // Directory for mosquitto.conf, the persistence file and the log. Created if missing.
  // REQUIRES: non-empty. Default: none.
  std::filesystem::path dir;
  // Listen address. Default: 127.0.0.1 (loopback only).
  std::string host = "127.0.0.1";
  // Port; 0 picks a free port. Default: 0.
  std::uint16_t port = 0;
  // Keep the queue on disk across broker restarts. Default: true.
  bool persistence = true;
  // Seconds between saves of the in-memory queue to disk (Mosquitto autosave_interval).
  // Default: 1 (Mosquitto's own default of 1800 s loses up to half an hour on a crash).
  int autosave_interval_s = 1;
  // Per-client queue limits; 0 means unlimited. Mosquitto's default (1000 messages) silently
  // drops the excess for a slow subscriber. Default: 0 (unlimited).
  int max_queued_messages = 0;
  // The mosquitto program. Default: "mosquitto" found on PATH, else /usr/sbin/mosquitto.
  std::string program = "mosquitto";
  // How long to wait for the port to accept connections. Default: 10 s.
  std::chrono::milliseconds start_timeout{10000};
};

class EmbeddedBroker {
 public:
  [[nodiscard]] static Result<std::unique_ptr<EmbeddedBroker>> start(const BrokerOptions& options);
  virtual ~EmbeddedBroker() = default;

  virtual std::uint16_t port() const = 0;
  virtual const std::string& host() const = 0;
  // "tcp://127.0.0.1:PORT", the form Paho takes.
  virtual std::string uri() const = 0;
  // Child process id (0 after stop()).
  virtual int pid() const = 0;
  // Stops the broker (SIGTERM, then SIGKILL after 5 s). Idempotent.
  virtual void stop() = 0;
};

// A TCP port on `host` that was free when asked (bind to port 0, read it, close).
[[nodiscard]] Result<std::uint16_t> find_free_port(const std::string& host = "127.0.0.1");

}  // namespace telehub::broker
