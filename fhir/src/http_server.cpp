// HttpServer on Boost.Beast 1.74 with C++20 coroutines (see http_server.h). The only file of
// the module that includes Beast (and, for HTTPS, Asio SSL and OpenSSL).
//
// Shape: one accept coroutine; each accepted socket gets its own strand and one session
// coroutine that reads requests (keep-alive) with http::request_parser, calls Router::handle
// and writes the response. beast::tcp_stream deadlines bound the time to receive a request
// and to write a response, so an idle keep-alive connection is closed after request_timeout.
// An error ends only its own connection (logged at debug).
//
// HTTPS: the session coroutine is a template over the stream; with options.tls it runs on a
// beast::ssl_stream<beast::tcp_stream> that first completes the server handshake under the
// request_timeout deadline. One ssl::context, built and checked in start() (make_tls_context),
// serves all connections; it is read-only afterwards, so the I/O threads share it.
//
// stop(): stop the io_context and join its threads, then (no handler can run now) close the
// acceptor and every open connection, and run the io_context once more on the calling thread
// so the session coroutines see their closed sockets and finish.
#include "telehub/fhir/http_server.h"
#include "telehub/core/unique_fd.h"

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <charconv>
#include <cmath>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "resources.h"
#include "telehub/core/log.h"

namespace telehub::fhir {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
namespace ssl = net::ssl;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

constexpr std::string_view kLogComponent = "fhir.http";
constexpr std::uint32_t kHeaderLimit = 8 * 1024;
// After refusing a request whose body we do not read, read and discard at most this much
// (for at most kDrainTime) so the client receives the response before our close resets it.
constexpr std::size_t kMaxDrainBytes = 16 << 20;
constexpr std::chrono::seconds kDrainTime{2};

// Bodies smaller than this are sent as they are: gzip would save little or grow them.
constexpr std::size_t kMinGzipBytes = 1024;

char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return ascii_lower(x) == ascii_lower(y); });
}

std::string_view trim_ows(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// Whether Accept-Encoding (RFC 9110 section 12.5.3; all its fields joined with ',') allows
// gzip: the q-value of "gzip" (or its alias "x-gzip"), else of "*", must be above 0. An
// element with an invalid q-value counts as absent; no header or no mention: no gzip.
bool accepts_gzip(std::string_view header) {
  std::optional<double> gzip_q, any_q;
  while (!header.empty()) {
    const auto comma = header.find(',');
    const auto element = header.substr(0, comma);
    header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
    const auto semicolon = element.find(';');
    const auto coding = trim_ows(element.substr(0, semicolon));
    double q = 1;
    bool valid = true;
    if (semicolon != std::string_view::npos) {
      auto params = element.substr(semicolon + 1);
      while (!params.empty()) {
        const auto next = params.find(';');
        const auto param = trim_ows(params.substr(0, next));
        params = next == std::string_view::npos ? std::string_view() : params.substr(next + 1);
        const auto eq = param.find('=');
        if (eq == std::string_view::npos || !iequals(trim_ows(param.substr(0, eq)), "q")) continue;
        const auto value = trim_ows(param.substr(eq + 1));
        const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), q);
        valid = ec == std::errc() && end == value.data() + value.size() && q >= 0 && q <= 1 && value.size() <= 5;
      }
    }
    if (!valid || coding.empty()) continue;
    if (iequals(coding, "gzip") || iequals(coding, "x-gzip")) gzip_q = std::max(gzip_q.value_or(0), q);
    else if (coding == "*") any_q = std::max(any_q.value_or(0), q);
  }
  if (gzip_q) return *gzip_q > 0;
  return any_q && *any_q > 0;
}

// The gzip file format (RFC 1952) of `body`, deflated in one shot; nullopt if zlib fails.
std::optional<std::string> gzip(const std::string& body) {
  z_stream z{};
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return std::nullopt;
  std::string out(deflateBound(&z, static_cast<uLong>(body.size())) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(body.data()));
  z.avail_in = static_cast<uInt>(body.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int result = deflate(&z, Z_FINISH);
  const auto written = z.total_out;
  deflateEnd(&z);
  if (result != Z_STREAM_END) return std::nullopt;
  out.resize(written);
  return out;
}

void log_connection_error(std::string_view what, const beast::error_code& ec) {
  core::log_debug(kLogComponent, std::string(what) + ": " + ec.message());
}

// The TLS policy (see http_server.h; NCSC TLS guidelines v2.1, "good" settings). The TLS 1.2
// list is the broker's kTls12Ciphers (broker/src/embedded_broker.cpp).
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256";
constexpr const char* kTls13Ciphers = "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256";
constexpr const char* kTlsGroups = "X25519:P-256:P-384";
constexpr int kMinRsaBits = 3072;
// Session resumption with client certificates needs a session id context (SSL_CTX_set_session_id_context(3)).
constexpr std::string_view kSessionIdContext = "telehub-fhir";
// After a completed exchange, wait at most this long for the client's close_notify.
constexpr std::chrono::seconds kTlsShutdownTime{2};

// Whether the server key meets the policy: RSA >= 3072 bits, EC on P-256/P-384/P-521, Ed25519,
// Ed448.
bool strong_enough(EVP_PKEY* key) {
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS:
      return EVP_PKEY_get_bits(key) >= kMinRsaBits;
    case EVP_PKEY_EC: {
      char group[64] = {};
      std::size_t length = 0;
      if (EVP_PKEY_get_group_name(key, group, sizeof group, &length) != 1) return false;
      const std::string_view name(group, length);
      return name == "prime256v1" || name == "secp384r1" || name == "secp521r1";
    }
    case EVP_PKEY_ED25519:
    case EVP_PKEY_ED448:
      return true;
    default:
      return false;
  }
}

// Builds the server's ssl::context from options.tls with the policy of http_server.h.
Result<std::unique_ptr<ssl::context>> make_tls_context(const TlsOptions& tls) {
  using core::Code;
  std::unique_ptr<ssl::context> context;
  try {
    context = std::make_unique<ssl::context>(ssl::context::tls_server);
  } catch (const boost::system::system_error&) {
    return core::fail(Code::kInternal, "tls_context", "cannot create the TLS context");
  }
  SSL_CTX* ctx = context->native_handle();
  const bool policy_set =
      SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1 && SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) == 1 &&
      SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) == 1 && SSL_CTX_set_ciphersuites(ctx, kTls13Ciphers) == 1 &&
      SSL_CTX_set1_groups_list(ctx, kTlsGroups) == 1 && SSL_CTX_set_max_early_data(ctx, 0) == 1 &&
      SSL_CTX_set_session_id_context(ctx, reinterpret_cast<const unsigned char*>(kSessionIdContext.data()),
                                     static_cast<unsigned>(kSessionIdContext.size())) == 1;
  if (!policy_set) return core::fail(Code::kInternal, "tls_context", "the TLS library refused the TLS policy");
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_clear_options(ctx, SSL_OP_ALLOW_CLIENT_RENEGOTIATION | SSL_OP_ALLOW_UNSAFE_LEGACY_RENEGOTIATION);

  if (tls.cert_file.empty() || tls.key_file.empty())
    return core::fail(Code::kInvalidArgument, "tls_certificate", "TLS needs a certificate file and a key file");
  if (SSL_CTX_use_certificate_chain_file(ctx, tls.cert_file.c_str()) != 1)
    return core::fail(Code::kInvalidArgument, "tls_certificate",
                      "cannot load the TLS certificate " + tls.cert_file.string());
  if (SSL_CTX_use_PrivateKey_file(ctx, tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
    return core::fail(Code::kInvalidArgument, "tls_certificate", "cannot load the TLS key " + tls.key_file.string());
  if (SSL_CTX_check_private_key(ctx) != 1)
    return core::fail(Code::kInvalidArgument, "tls_certificate",
                      "the TLS key " + tls.key_file.string() + " does not match the certificate");
  if (!strong_enough(SSL_CTX_get0_privatekey(ctx)))
    return core::fail(Code::kInvalidArgument, "weak_certificate",
                      "the TLS key " + tls.key_file.string() +
                          " is too weak (needs RSA >= 3072 bits or ECDSA on P-256/P-384/P-521)");

  if (!tls.client_ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, tls.client_ca_file.c_str(), nullptr) != 1)
      return core::fail(Code::kInvalidArgument, "tls_client_ca",
                        "cannot load the client CA file " + tls.client_ca_file.string());
    // The CA names in the CertificateRequest, so clients pick a matching certificate.
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(tls.client_ca_file.c_str());
    if (names == nullptr)
      return core::fail(Code::kInvalidArgument, "tls_client_ca",
                        "no CA certificate in the client CA file " + tls.client_ca_file.string());
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, tls.require_client_certificate ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER,
                       nullptr);
  }
  return context;
}

std::string asn1_to_utf8(const ASN1_STRING* text) {
  unsigned char* utf8 = nullptr;
  const int length = ASN1_STRING_to_UTF8(&utf8, text);
  if (length < 0) return {};
  std::string out(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(length));
  OPENSSL_free(utf8);
  return out;
}

// The verified peer certificate's subject CN, else its first subjectAltName (DNS, email, URI
// or IP address); empty without a peer certificate.
std::string peer_identity(SSL* ssl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr) return {};
  if (const X509_NAME* subject = X509_get_subject_name(cert)) {
    const int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (index >= 0) {
      std::string cn = asn1_to_utf8(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index)));
      if (!cn.empty()) return cn;
    }
  }
  std::string first;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return first;
  if (sk_GENERAL_NAME_num(names) > 0) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, 0);
    switch (name->type) {
      case GEN_DNS:
      case GEN_EMAIL:
      case GEN_URI:
        first = asn1_to_utf8(name->d.ia5);
        break;
      case GEN_IPADD: {
        const auto* bytes = ASN1_STRING_get0_data(name->d.ip);
        const int length = ASN1_STRING_length(name->d.ip);
        if (length == 4) {
          net::ip::address_v4::bytes_type b;
          std::copy(bytes, bytes + 4, b.begin());
          first = net::ip::address_v4(b).to_string();
        } else if (length == 16) {
          net::ip::address_v6::bytes_type b;
          std::copy(bytes, bytes + 16, b.begin());
          first = net::ip::address_v6(b).to_string();
        }
        break;
      }
      default:
        break;
    }
  }
  GENERAL_NAMES_free(names);
  return first;
}

// Per-address token buckets (HttpServerOptions::rate_limit_*). Thread-safe.
class RateLimiter {
 public:
  RateLimiter(double rate, double burst) : rate_(rate), burst_(std::max(1.0, burst)) {}

  // 0 when the request may go on, else the whole seconds until a token is back (>= 1).
  int take(const std::string& address) {
    if (rate_ <= 0) return 0;
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(mutex_);
    auto it = buckets_.find(address);
    if (it == buckets_.end()) {
      if (buckets_.size() >= kMaxTracked) prune(now);
      it = buckets_.emplace(address, Bucket{burst_, now}).first;
    }
    Bucket& b = it->second;
    b.tokens = std::min(burst_, b.tokens + rate_ * std::chrono::duration<double>(now - b.last).count());
    b.last = now;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return std::max(1, static_cast<int>(std::ceil((1 - b.tokens) / rate_)));
  }

 private:
  static constexpr std::size_t kMaxTracked = 65536;
  struct Bucket {
    double tokens;
    std::chrono::steady_clock::time_point last;
  };

  // Drops the addresses whose bucket would be full again (they have been idle long enough to be
  // forgotten without giving anyone more than a fresh burst); if that frees nothing, all.
  void prune(std::chrono::steady_clock::time_point now) {
    std::erase_if(buckets_, [&](const auto& entry) {
      const Bucket& b = entry.second;
      return b.tokens + rate_ * std::chrono::duration<double>(now - b.last).count() >= burst_;
    });
    if (buckets_.size() >= kMaxTracked) buckets_.clear();
  }

  const double rate_;
  const double burst_;
  std::mutex mutex_;
  std::unordered_map<std::string, Bucket> buckets_;
};

beast::tcp_stream& tcp_layer(beast::tcp_stream& stream) { return stream; }
beast::tcp_stream& tcp_layer(TlsStream& stream) { return stream.next_layer(); }

class BeastServer final : public HttpServer {
 public:
  // tls_context: set exactly when options.tls is (see make_tls_context).
  BeastServer(const HttpServerOptions& options, const Router& router, std::unique_ptr<ssl::context> tls_context)
      : options_(options),
        router_(router),
        tls_context_(std::move(tls_context)),
        limiter_(options.rate_limit_per_second, options.rate_limit_burst),
        acceptor_(ioc_) {
    if (options_.tls) hsts_ = "max-age=" + std::to_string(options_.tls->hsts_max_age.count());
  }

  ~BeastServer() override { stop(); }

  Status listen() {
    beast::error_code ec;
    tcp::resolver resolver(ioc_);
    auto endpoints = resolver.resolve(options_.host, std::to_string(options_.port),
                                      tcp::resolver::passive | tcp::resolver::numeric_service, ec);
    if (ec || endpoints.empty())
      return core::fail(core::Code::kInvalidArgument, "http_host", "cannot resolve the listen address");
    const tcp::endpoint endpoint = endpoints.begin()->endpoint();
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec) return core::fail(core::Code::kUnavailable, "http_bind", "cannot listen on the address: " + ec.message());
    port_ = acceptor_.local_endpoint(ec).port();
    if (ec) return core::fail(core::Code::kUnavailable, "http_bind", "cannot read the bound port: " + ec.message());
    return {};
  }

  Status run() {
    net::co_spawn(ioc_, accept_loop(), [](std::exception_ptr e) {
      if (e) core::log_error(kLogComponent, "accept loop ended with an exception");
    });
    try {
      const int n = options_.threads < 1 ? 1 : options_.threads;
      for (int i = 0; i < n; ++i) threads_.emplace_back([this] { run_io(); });
    } catch (const std::system_error&) {
      stop();
      return core::fail(core::Code::kUnavailable, "http_threads", "cannot start the I/O threads");
    }
    return {};
  }

  std::uint16_t port() const override { return port_; }

  std::size_t connections() const override {
    std::lock_guard lock(mutex_);
    return sessions_.size();
  }

  void stop() override {
    if (stopped_) return;
    stopped_ = true;
    stopping_ = true;
    ioc_.stop();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    threads_.clear();
    beast::error_code ec;
    acceptor_.close(ec);
    {
      std::lock_guard lock(mutex_);
      for (auto* stream : sessions_) {
        stream->socket().shutdown(tcp::socket::shutdown_both, ec);
        stream->close();
      }
    }
    ioc_.restart();
    ioc_.run_for(std::chrono::seconds(1));
  }

 private:
  // Registers a live connection so stop() can close it.
  class Registration {
   public:
    // The connection was admitted (admit()) under `address`; this releases that count too.
    Registration(BeastServer& server, beast::tcp_stream& stream, std::string address)
        : server_(server), stream_(&stream), address_(std::move(address)) {
      std::lock_guard lock(server_.mutex_);
      server_.sessions_.insert(stream_);
    }
    ~Registration() {
      std::lock_guard lock(server_.mutex_);
      server_.sessions_.erase(stream_);
      server_.release_locked(address_);
    }
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;

   private:
    BeastServer& server_;
    beast::tcp_stream* stream_;
    std::string address_;
  };

  // Counts a new connection from `address` unless that would exceed max_connections or
  // max_connections_per_client; false: refuse it.
  bool admit(const std::string& address) {
    std::lock_guard lock(mutex_);
    if (admitted_ >= options_.max_connections) return false;
    auto& n = per_client_[address];
    if (n >= options_.max_connections_per_client) {
      if (n == 0) per_client_.erase(address);
      return false;
    }
    ++n;
    ++admitted_;
    return true;
  }

  // REQUIRES: mutex_ held.
  void release_locked(const std::string& address) {
    auto it = per_client_.find(address);
    if (it == per_client_.end()) return;
    --admitted_;
    if (--it->second == 0) per_client_.erase(it);
  }

  void run_io() {
    for (;;) {
      try {
        ioc_.run();
        return;
      } catch (const std::exception& e) {
        // Handlers do not throw by design; keep serving if one does.
        core::log_error(kLogComponent, std::string("I/O handler threw: ") + e.what());
      }
    }
  }

  net::awaitable<void> accept_loop() {
    for (;;) {
      tcp::socket socket(net::make_strand(ioc_));
      beast::error_code ec;
      co_await acceptor_.async_accept(socket, net::redirect_error(net::use_awaitable, ec));
      if (ec == net::error::operation_aborted || !acceptor_.is_open()) co_return;
      if (ec) {
        // E.g. out of file descriptors: back off briefly instead of spinning.
        core::log_warn(kLogComponent, "accept failed: " + ec.message());
        net::steady_timer timer(ioc_, std::chrono::milliseconds(50));
        co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
        continue;
      }
      beast::error_code peer_ec;
      const auto peer = socket.remote_endpoint(peer_ec);
      if (peer_ec) {  // already gone
        socket.close(peer_ec);
        continue;
      }
      // No Nagle delay: a response is written as header, then body pieces; with Nagle and the
      // client's delayed ACK, each response could wait ~40 ms before its body.
      socket.set_option(tcp::no_delay(true), peer_ec);
      Peer who{peer.address().to_string(), peer.address().to_string() + ":" + std::to_string(peer.port()),
               peer.address().is_loopback()};
      if (!admit(who.ip)) {
        core::log_debug(kLogComponent, "connection from " + who.ip + " refused: connection limit reached");
        socket.shutdown(tcp::socket::shutdown_both, peer_ec);
        socket.close(peer_ec);
        continue;
      }
      auto executor = socket.get_executor();
      if (tls_context_)
        net::co_spawn(executor, session(TlsStream(std::move(socket), *tls_context_), std::move(who)), log_session_end);
      else
        net::co_spawn(executor, session(beast::tcp_stream(std::move(socket)), std::move(who)), log_session_end);
    }
  }

  static void log_session_end(std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      core::log_debug(kLogComponent, std::string("connection ended by exception: ") + ex.what());
    } catch (...) {
      core::log_debug(kLogComponent, "connection ended by exception");
    }
  }

  // Stream: beast::tcp_stream (HTTP) or TlsStream (HTTPS).
  struct Peer {
    std::string ip;       // the limits' key
    std::string address;  // "ip:port", for Request::remote_address
    bool loopback = false;
  };

  template <class Stream>
  net::awaitable<void> session(Stream stream, Peer peer) {
    constexpr bool kTls = std::is_same_v<Stream, TlsStream>;
    beast::tcp_stream& transport = tcp_layer(stream);
    Registration registration(*this, transport, peer.ip);
    if (stopping_) co_return;  // accepted just before stop(): close at once
    beast::flat_buffer buffer;
    beast::error_code ec;
    std::string client_certificate;
    if constexpr (kTls) {
      // Under the request deadline: a client that stalls the handshake is cut off like one that
      // stalls its request. A plain-HTTP client ends here too (no TLS record): no response.
      transport.expires_after(options_.request_timeout);
      co_await stream.async_handshake(ssl::stream_base::server, net::redirect_error(net::use_awaitable, ec));
      if (ec) {
        log_connection_error("TLS handshake", ec);
        co_return;
      }
      client_certificate = peer_identity(stream.native_handle());
    }
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(kHeaderLimit);
      parser.body_limit(std::max(options_.max_body_bytes, options_.max_bundle_bytes));
      // The header within header_timeout (this also ends an idle kept-alive connection), then
      // the body within request_timeout.
      transport.expires_after(options_.header_timeout);
      co_await http::async_read_header(stream, buffer, parser, net::redirect_error(net::use_awaitable, ec));
      if (!ec && !parser.is_done()) {
        // Only POST /fhir (a transaction or batch Bundle) may send up to max_bundle_bytes.
        const auto target = parser.get().target();
        const std::string_view whole(target.data(), target.size());
        const std::string_view path = whole.substr(0, whole.find('?'));
        const bool bundle = parser.get().method() == http::verb::post && (path == "/fhir" || path == "/fhir/");
        if (!bundle) {
          if (parser.content_length() && *parser.content_length() > options_.max_body_bytes) {
            co_await refuse(stream, http::status::payload_too_large, "request body too large");
            co_return;
          }
          parser.body_limit(options_.max_body_bytes);
        }
        transport.expires_after(options_.request_timeout);
        co_await http::async_read(stream, buffer, parser, net::redirect_error(net::use_awaitable, ec));
      }
      if (ec == http::error::end_of_stream) break;  // the client closed between requests
      if (ec == http::error::body_limit) {
        co_await refuse(stream, http::status::payload_too_large, "request body too large");
        co_return;
      }
      if (ec == http::error::header_limit) {
        co_await refuse(stream, http::status::request_header_fields_too_large, "request header too large");
        co_return;
      }
      if (ec && ec.category() == beast::http::make_error_code(http::error::bad_target).category() &&
          ec != http::error::partial_message) {
        co_await refuse(stream, http::status::bad_request, "malformed HTTP request");
        co_return;
      }
      if (ec) {
        log_connection_error("read", ec);
        co_return;
      }

      auto& req = parser.get();
      Request request;
      request.method = std::string(req.method_string());
      request.target = std::string(req.target());
      for (const auto& field : req) request.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
      request.body = std::move(req.body());
      request.remote_address = peer.address;
      request.remote_loopback = peer.loopback;
      request.client_certificate = client_certificate;
      const bool keep_alive = req.keep_alive();
      const bool head = req.method() == http::verb::head;
      std::string accept_encoding;
      for (const auto& field : req)
        if (field.name() == http::field::accept_encoding) {
          if (!accept_encoding.empty()) accept_encoding += ',';
          accept_encoding.append(field.value().data(), field.value().size());
        }
      const bool gzip_ok = accepts_gzip(accept_encoding);

      Response response;
      if (const int wait = limiter_.take(peer.ip); wait > 0) {
        response.status = 429;
        response.content_type = "application/fhir+json; charset=utf-8";
        response.headers.emplace_back("Retry-After", std::to_string(wait));
        response.body = operation_outcome_json(
            {Issue{"error", "throttled", "too many requests from this address; retry after " + std::to_string(wait) + " s"}});
      } else {
        response = router_.handle(request);
      }
      co_await write(stream, std::move(response), req.version(), keep_alive, head, gzip_ok, ec);
      if (ec) {
        log_connection_error("write", ec);
        co_return;
      }
      if (!keep_alive) break;
    }
    if constexpr (kTls) {
      // close_notify, then wait (briefly) for the client's.
      transport.expires_after(kTlsShutdownTime);
      co_await stream.async_shutdown(net::redirect_error(net::use_awaitable, ec));
    }
    transport.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  // gzip_ok: the request's Accept-Encoding allows gzip (accepts_gzip). A body of at least
  // kMinGzipBytes (not for 304, 204 or 1xx) is then sent gzip-coded, except to HEAD, with its
  // ETag made weak (RFC 9110 section 8.8.3: the coded bytes differ); every such body carries
  // Vary: Accept-Encoding, compressed or not, HEAD included.
  template <class Stream>
  net::awaitable<void> write(Stream& stream, Response response, unsigned version, bool keep_alive, bool head,
                             bool gzip_ok, beast::error_code& ec) {
    if (!response.file.empty()) {
      co_await write_file(stream, std::move(response), version, keep_alive, head, ec);
      co_return;
    }
    http::response<http::string_body> res{static_cast<http::status>(response.status), version};
    res.set(http::field::server, "telehub");
    if (!response.content_type.empty()) res.set(http::field::content_type, response.content_type);  // none on a 304
    for (const auto& [name, value] : response.headers) res.set(name, value);
    if (!hsts_.empty()) res.set(http::field::strict_transport_security, hsts_);  // RFC 6797 section 6.1
    const bool has_body = response.status >= 200 && response.status != 204 && response.status != 304;
    if (has_body && response.body.size() >= kMinGzipBytes && res.find(http::field::content_encoding) == res.end()) {
      const auto vary = res.find(http::field::vary);
      if (vary == res.end()) res.set(http::field::vary, "Accept-Encoding");
      else res.set(http::field::vary, std::string(vary->value()) + ", Accept-Encoding");
      if (gzip_ok && !head) {  // HEAD: the same Vary as GET, the length of the identity body
        if (auto coded = gzip(response.body)) {
          response.body = std::move(*coded);
          res.set(http::field::content_encoding, "gzip");
          const auto etag = res.find(http::field::etag);
          if (etag != res.end() && !etag->value().starts_with("W/")) res.set(http::field::etag, "W/" + std::string(etag->value()));
        }
      }
    }
    res.body() = std::move(response.body);
    res.keep_alive(keep_alive);
    res.prepare_payload();
    tcp_layer(stream).expires_after(options_.request_timeout);
    if (head) {  // no body in a response to HEAD (RFC 9110 section 9.3.2)
      http::response_serializer<http::string_body> serializer{res};
      co_await http::async_write_header(stream, serializer, net::redirect_error(net::use_awaitable, ec));
    } else {
      co_await http::async_write(stream, res, net::redirect_error(net::use_awaitable, ec));
    }
  }

  // A response whose body is a file (Response::file): the header (with the file's size as
  // Content-Length), then the file read and written in pieces of kFilePiece bytes, so a large
  // Bulk Data file never sits in memory whole; not gzip-coded. The write deadline applies to
  // each piece, not to the whole file: a large export over a slow link is not cut off, a
  // stalled reader still is. A file that cannot be opened is answered 404 like a missing one.
  static constexpr std::size_t kFilePiece = 256 * 1024;
  template <class Stream>
  net::awaitable<void> write_file(Stream& stream, Response response, unsigned version, bool keep_alive, bool head,
                                  beast::error_code& ec) {
    const int fd = ::open(response.file.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      if (fd >= 0) ::close(fd);
      Response missing;
      missing.status = 404;
      missing.content_type = "application/fhir+json; charset=utf-8";
      missing.body = operation_outcome_json({Issue{"error", "not-found", "no such file"}});
      co_await write(stream, std::move(missing), version, keep_alive, head, false, ec);
      co_return;
    }
    core::UniqueFd file(fd);
    http::response<http::empty_body> res{static_cast<http::status>(response.status), version};
    res.set(http::field::server, "telehub");
    if (!response.content_type.empty()) res.set(http::field::content_type, response.content_type);
    for (const auto& [name, value] : response.headers) res.set(name, value);
    if (!hsts_.empty()) res.set(http::field::strict_transport_security, hsts_);
    res.keep_alive(keep_alive);
    res.content_length(static_cast<std::uint64_t>(st.st_size));
    tcp_layer(stream).expires_after(options_.request_timeout);
    http::response_serializer<http::empty_body> serializer{res};
    co_await http::async_write_header(stream, serializer, net::redirect_error(net::use_awaitable, ec));
    if (ec || head) co_return;
    std::vector<char> piece(kFilePiece);
    auto left = static_cast<std::uint64_t>(st.st_size);
    while (left > 0) {
      const ssize_t n = ::read(file.get(), piece.data(), static_cast<std::size_t>(std::min<std::uint64_t>(left, piece.size())));
      if (n <= 0) {  // the file shrank or cannot be read: the response cannot be completed
        ec = beast::error_code(EIO, beast::generic_category());
        co_return;
      }
      tcp_layer(stream).expires_after(options_.request_timeout);
      co_await net::async_write(stream, net::buffer(piece.data(), static_cast<std::size_t>(n)),
                                net::redirect_error(net::use_awaitable, ec));
      if (ec) co_return;
      left -= static_cast<std::uint64_t>(n);
    }
  }

  // Answers a request that will not be read to its end with an OperationOutcome, then closes
  // the connection, first draining what the client still sends.
  template <class Stream>
  net::awaitable<void> refuse(Stream& stream, http::status status, std::string diagnostics) {
    const bool too_long = status != http::status::bad_request;
    Response response;
    response.status = static_cast<int>(status);
    response.content_type = "application/fhir+json; charset=utf-8";
    response.body = operation_outcome_json({Issue{"error", too_long ? "too-long" : "structure", std::move(diagnostics)}});
    beast::error_code ec;
    co_await write(stream, std::move(response), 11, false, false, false, ec);
    if (ec) {
      log_connection_error("write", ec);
      co_return;
    }
    tcp_layer(stream).socket().shutdown(tcp::socket::shutdown_send, ec);
    std::array<char, 16 * 1024> scratch;
    std::size_t drained = 0;
    tcp_layer(stream).expires_after(kDrainTime);
    while (drained < kMaxDrainBytes) {
      const std::size_t n =
          co_await stream.async_read_some(net::buffer(scratch), net::redirect_error(net::use_awaitable, ec));
      if (ec) break;
      drained += n;
    }
  }

  HttpServerOptions options_;
  const Router& router_;
  std::unique_ptr<ssl::context> tls_context_;  // null = plain HTTP; before ioc_: sessions use it
  std::string hsts_;                            // Strict-Transport-Security value; empty = none
  RateLimiter limiter_;
  mutable std::mutex mutex_;                      // guards sessions_, per_client_, admitted_
  std::unordered_set<beast::tcp_stream*> sessions_;  // open connections
  std::unordered_map<std::string, std::size_t> per_client_;  // admitted connections per IP address
  std::size_t admitted_ = 0;
  net::io_context ioc_;                           // after mutex_/sessions_: its handlers use them
  tcp::acceptor acceptor_;
  std::vector<std::thread> threads_;
  std::uint16_t port_ = 0;
  bool stopped_ = false;                // owner thread only
  std::atomic<bool> stopping_ = false;  // read by the session coroutines
};

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::start(const HttpServerOptions& options, const Router& router) {
  std::unique_ptr<ssl::context> tls_context;
  if (options.tls) {
    auto made = make_tls_context(*options.tls);
    if (!made) return tl::unexpected(made.error());
    tls_context = std::move(*made);
  }
  auto server = std::make_unique<BeastServer>(options, router, std::move(tls_context));
  if (auto listening = server->listen(); !listening) return tl::unexpected(listening.error());
  if (auto running = server->run(); !running) return tl::unexpected(running.error());
  core::log_info(kLogComponent, std::string(options.tls ? "FHIR API listening (HTTPS" : "FHIR API listening (HTTP") +
                                    (options.tls && !options.tls->client_ca_file.empty() ? ", client certificates" : "") +
                                    ") on port " + std::to_string(server->port()));
  return std::unique_ptr<HttpServer>(std::move(server));
}

}  // namespace telehub::fhir
