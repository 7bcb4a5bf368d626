// HttpServer: serves a fhir::Router over HTTP/1.1, or HTTPS when HttpServerOptions::tls is
// set, with Boost.Beast (C++20 coroutines on Boost.Asio). One coroutine per connection; a
// failing connection is logged and closed without affecting others. Limits against hostile
// clients (docs/security.md, "Limits for hostile clients"): a body over max_body_bytes gets 413,
// headers over 8 KiB get 431, a header not complete within header_timeout or a request not
// complete within request_timeout closes the connection, connections over max_connections or
// max_connections_per_client are closed at once, and requests over the per-address rate get 429
// with Retry-After. Beast, OpenSSL and zlib types stay in src/.
//
// Content coding (RFC 9110 section 8.4; docs/api.md, "HTTP behaviour"): when the request's
// Accept-Encoding gives gzip (or "*") a q-value above 0, a response body of at least 1 KiB is
// sent gzip-compressed (Content-Encoding: gzip; an ETag becomes weak). Every body of at least
// 1 KiB carries Vary: Accept-Encoding. Answers to HEAD and 304 are never compressed; a body is
// sent as it is if compression fails.
//
// HTTPS (options.tls set): every connection is TLS; a client that does not complete the
// handshake within request_timeout, or speaks plain HTTP, is closed without a response. Every
// response carries `Strict-Transport-Security: max-age=<hsts_max_age>` (RFC 6797). The policy
// follows the NCSC "ICT-beveiligingsrichtlijnen voor Transport Layer Security" (v2.1; settings
// rated "good"); the TLS 1.2 list is the MQTT broker's, the TLS 1.3 set too (another order):
//   - protocol versions TLS 1.2 and TLS 1.3 only;
//   - TLS 1.2 cipher suites: ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 only, in this
//     order: ECDHE-ECDSA-AES256-GCM-SHA384, ECDHE-RSA-AES256-GCM-SHA384,
//     ECDHE-ECDSA-CHACHA20-POLY1305, ECDHE-RSA-CHACHA20-POLY1305, ECDHE-ECDSA-AES128-GCM-SHA256,
//     ECDHE-RSA-AES128-GCM-SHA256 (no CBC, no static RSA, no DHE);
//   - TLS 1.3 cipher suites: TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256,
//     TLS_AES_128_GCM_SHA256 (no AES-CCM);
//   - key exchange groups X25519, P-256, P-384;
//   - server cipher preference; no TLS compression; no renegotiation; no TLS 1.3 0-RTT (early
//     data);
//   - the server key must be RSA of at least 3072 bits, ECDSA on P-256, P-384 or P-521, or
//     Ed25519/Ed448; anything else (e.g. RSA-2048) makes start() fail.
// Mutual TLS (tls->client_ca_file set): the client must present a certificate that chains to a
// CA in that file, or the handshake fails; the certificate's subject CN (or first
// subjectAltName) reaches the router as Request::client_certificate.
//
// Lifetimes: the router must outlive the server. stop() (or the destructor) closes the
// listener and all connections and joins the I/O threads. The TLS files are read once, in
// start(); replacing them needs a restart.
//
// Error policy: start() returns Result: unavailable/http_bind when the address cannot be
// bound; with tls, invalid_argument/tls_certificate when the certificate or key cannot be
// loaded or do not match, invalid_argument/tls_client_ca when client_ca_file cannot be loaded,
// invalid_argument/weak_certificate when the key is weaker than the policy above. Nothing
// else throws.
//
// Thread-safety: start/stop from one owner thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "telehub/core/error.h"
#include "telehub/fhir/router.h"

namespace telehub::fhir {

struct TlsOptions {
  // The server certificate (PEM; the chain may follow the leaf) and its unencrypted private key
  // (PEM). REQUIRES: both set; the key matches the certificate and is strong enough (see above).
  std::filesystem::path cert_file;
  std::filesystem::path key_file;
  // CA certificates (PEM) that client certificates must chain to. Set: mutual TLS, a client
  // certificate is required. Default: empty = no client certificates asked for.
  std::filesystem::path client_ca_file;
  // With client_ca_file: true = a client certificate is required (the handshake fails
  // without one); false = it is asked for and verified when sent, but a client may connect
  // without one (then it authenticates with a bearer token). Default: true.
  bool require_client_certificate = true;
  // Strict-Transport-Security max-age. Default: 31536000 s (one year).
  std::chrono::seconds hsts_max_age{31536000};
};

struct HttpServerOptions {
  // Listen address. Default: 127.0.0.1.
  std::string host = "127.0.0.1";
  // Port; 0 picks a free one (see port()). Default: 8080.
  std::uint16_t port = 8080;
  // I/O threads. Default: 2.
  int threads = 2;
  // Largest request body accepted. Default: 1 MiB.
  std::size_t max_body_bytes = 1 << 20;
  // Largest body of POST /fhir (a transaction or batch Bundle from a hospital system: a whole
  // record is often over 1 MiB). Default: 64 MiB (fhir::kMaxBundleBytes of the importer).
  std::size_t max_bundle_bytes = std::size_t{64} << 20;
  // Time allowed to receive a request's body once its header is in, to complete the TLS
  // handshake, and to write a response. Default: 10 s.
  std::chrono::milliseconds request_timeout{10000};
  // Time allowed to receive a request's complete header, counted from the end of the previous
  // response on a kept-alive connection (so it also bounds idle keep-alive time) or from the
  // accept (after the TLS handshake). A client that sends its header byte by byte is closed
  // when it runs out. Default: 5 s.
  std::chrono::milliseconds header_timeout{5000};
  // Open connections, in total and per client IP address. A connection over either limit is
  // closed at once, before anything is read from it (no response; logged at debug).
  // Default: 512 and 32.
  std::size_t max_connections = 512;
  std::size_t max_connections_per_client = 32;
  // Requests per client IP address: a token bucket refilled at rate_limit_per_second up to
  // rate_limit_burst. A request without a token is answered 429 with Retry-After (whole
  // seconds until a token is back, at least 1) and an OperationOutcome (code "throttled"),
  // without reaching the router. 0 disables the limit. At most 65,536 addresses are tracked;
  // idle entries are dropped first. Default: 50 per second, burst 100.
  double rate_limit_per_second = 50;
  double rate_limit_burst = 100;
  // HTTPS with this configuration. The TLS handshake must finish within request_timeout.
  // Default: unset = plain HTTP.
  std::optional<TlsOptions> tls;
};

class HttpServer {
 public:
  [[nodiscard]] static Result<std::unique_ptr<HttpServer>> start(const HttpServerOptions& options, const Router& router);
  virtual ~HttpServer() = default;
  // The bound port (useful when options.port was 0).
  virtual std::uint16_t port() const = 0;
  // Connections open now (for tests and metrics).
  virtual std::size_t connections() const = 0;
  // Stops accepting, closes connections, joins threads. Idempotent.
  virtual void stop() = 0;
};

}  // namespace telehub::fhir
