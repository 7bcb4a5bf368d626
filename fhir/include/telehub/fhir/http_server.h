// HttpServer: serves a fhir::Router over HTTP/1.1 with Boost.Beast (C++20 coroutines on
// Boost.Asio). One coroutine per connection; a failing connection is logged and closed
// without affecting others. A body over the limit gets 413, headers over 8 KiB get 431, and
// slow clients are cut off by the deadline. Beast types stay in src/.
//
// Lifetimes: the router must outlive the server. stop() (or the destructor) closes the
// listener and all connections and joins the I/O threads.
//
// Error policy: start() returns Result (unavailable/http_bind when the address cannot be
// bound); nothing else throws.
//
// Thread-safety: start/stop from one owner thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "telehub/core/error.h"
#include "telehub/fhir/router.h"

namespace telehub::fhir {

struct HttpServerOptions {
  // Listen address. Default: 127.0.0.1.
  std::string host = "127.0.0.1";
  // Port; 0 picks a free one (see port()). Default: 8080.
  std::uint16_t port = 8080;
  // I/O threads. Default: 2.
  int threads = 2;
  // Largest request body accepted. Default: 1 MiB.
  std::size_t max_body_bytes = 1 << 20;
  // Time allowed to receive one request (headers and body). Default: 10 s.
  std::chrono::milliseconds request_timeout{10000};
};

class HttpServer {
 public:
  [[nodiscard]] static Result<std::unique_ptr<HttpServer>> start(const HttpServerOptions& options, const Router& router);
  virtual ~HttpServer() = default;
  // The bound port (useful when options.port was 0).
  virtual std::uint16_t port() const = 0;
  // Stops accepting, closes connections, joins threads. Idempotent.
  virtual void stop() = 0;
};

}  // namespace telehub::fhir
