// HttpServer on Boost.Beast 1.74 with C++20 coroutines (see http_server.h). The only file of
// the module that includes Beast.
//
// Shape: one accept coroutine; each accepted socket gets its own strand and one session
// coroutine that reads requests (keep-alive) with http::request_parser, calls Router::handle
// and writes the response. beast::tcp_stream deadlines bound the time to receive a request
// and to write a response, so an idle keep-alive connection is closed after request_timeout.
// An error ends only its own connection (logged at debug).
//
// stop(): stop the io_context and join its threads, then (no handler can run now) close the
// acceptor and every open connection, and run the io_context once more on the calling thread
// so the session coroutines see their closed sockets and finish.
#include "telehub/fhir/http_server.h"

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <array>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
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

constexpr std::string_view kLogComponent = "fhir.http";
constexpr std::uint32_t kHeaderLimit = 8 * 1024;
// After refusing a request whose body we do not read, read and discard at most this much
// (for at most kDrainTime) so the client receives the response before our close resets it.
constexpr std::size_t kMaxDrainBytes = 16 << 20;
constexpr std::chrono::seconds kDrainTime{2};

void log_connection_error(std::string_view what, const beast::error_code& ec) {
  core::log_debug(kLogComponent, std::string(what) + ": " + ec.message());
}

class BeastServer final : public HttpServer {
 public:
  BeastServer(const HttpServerOptions& options, const Router& router)
      : options_(options), router_(router), acceptor_(ioc_) {}

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
    Registration(BeastServer& server, beast::tcp_stream& stream) : server_(server), stream_(&stream) {
      std::lock_guard lock(server_.mutex_);
      server_.sessions_.insert(stream_);
    }
    ~Registration() {
      std::lock_guard lock(server_.mutex_);
      server_.sessions_.erase(stream_);
    }
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;

   private:
    BeastServer& server_;
    beast::tcp_stream* stream_;
  };

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
      auto executor = socket.get_executor();
      net::co_spawn(executor, session(beast::tcp_stream(std::move(socket))), [](std::exception_ptr e) {
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          core::log_debug(kLogComponent, std::string("connection ended by exception: ") + ex.what());
        } catch (...) {
          core::log_debug(kLogComponent, "connection ended by exception");
        }
      });
    }
  }

  net::awaitable<void> session(beast::tcp_stream stream) {
    if (stopping_) co_return;  // accepted just before stop(): close at once
    Registration registration(*this, stream);
    beast::flat_buffer buffer;
    beast::error_code ec;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(kHeaderLimit);
      parser.body_limit(options_.max_body_bytes);
      stream.expires_after(options_.request_timeout);
      co_await http::async_read(stream, buffer, parser, net::redirect_error(net::use_awaitable, ec));
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
      {
        beast::error_code peer_ec;
        const auto peer = stream.socket().remote_endpoint(peer_ec);
        if (!peer_ec) {
          request.remote_address = peer.address().to_string() + ":" + std::to_string(peer.port());
          request.remote_loopback = peer.address().is_loopback();
        }
      }
      const bool keep_alive = req.keep_alive();
      const bool head = req.method() == http::verb::head;

      Response response = router_.handle(request);
      co_await write(stream, std::move(response), req.version(), keep_alive, head, ec);
      if (ec) {
        log_connection_error("write", ec);
        co_return;
      }
      if (!keep_alive) break;
    }
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  net::awaitable<void> write(beast::tcp_stream& stream, Response response, unsigned version, bool keep_alive,
                             bool head, beast::error_code& ec) {
    http::response<http::string_body> res{static_cast<http::status>(response.status), version};
    res.set(http::field::server, "telehub");
    res.set(http::field::content_type, response.content_type);
    for (const auto& [name, value] : response.headers) res.set(name, value);
    res.body() = std::move(response.body);
    res.keep_alive(keep_alive);
    res.prepare_payload();
    stream.expires_after(options_.request_timeout);
    if (head) {  // no body in a response to HEAD (RFC 9110 section 9.3.2)
      http::response_serializer<http::string_body> serializer{res};
      co_await http::async_write_header(stream, serializer, net::redirect_error(net::use_awaitable, ec));
    } else {
      co_await http::async_write(stream, res, net::redirect_error(net::use_awaitable, ec));
    }
  }

  // Answers a request that will not be read to its end with an OperationOutcome, then closes
  // the connection, first draining what the client still sends.
  net::awaitable<void> refuse(beast::tcp_stream& stream, http::status status, std::string diagnostics) {
    const bool too_long = status != http::status::bad_request;
    Response response;
    response.status = static_cast<int>(status);
    response.content_type = "application/fhir+json; charset=utf-8";
    response.body = operation_outcome_json({Issue{"error", too_long ? "too-long" : "structure", std::move(diagnostics)}});
    beast::error_code ec;
    co_await write(stream, std::move(response), 11, false, false, ec);
    if (ec) {
      log_connection_error("write", ec);
      co_return;
    }
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    std::array<char, 16 * 1024> scratch;
    std::size_t drained = 0;
    stream.expires_after(kDrainTime);
    while (drained < kMaxDrainBytes) {
      const std::size_t n =
          co_await stream.async_read_some(net::buffer(scratch), net::redirect_error(net::use_awaitable, ec));
      if (ec) break;
      drained += n;
    }
  }

  HttpServerOptions options_;
  const Router& router_;
  std::mutex mutex_;                              // guards sessions_
  std::unordered_set<beast::tcp_stream*> sessions_;  // open connections
  net::io_context ioc_;                           // after mutex_/sessions_: its handlers use them
  tcp::acceptor acceptor_;
  std::vector<std::thread> threads_;
  std::uint16_t port_ = 0;
  bool stopped_ = false;                // owner thread only
  std::atomic<bool> stopping_ = false;  // read by the session coroutines
};

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::start(const HttpServerOptions& options, const Router& router) {
  auto server = std::make_unique<BeastServer>(options, router);
  if (auto listening = server->listen(); !listening) return tl::unexpected(listening.error());
  if (auto running = server->run(); !running) return tl::unexpected(running.error());
  core::log_info(kLogComponent, "FHIR API listening on port " + std::to_string(server->port()));
  return std::unique_ptr<HttpServer>(std::move(server));
}

}  // namespace telehub::fhir
