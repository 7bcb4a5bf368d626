// Gateway on Eclipse Paho MQTT C++ 1.2 (MQTT v5). Paho headers stay in this file.
#include "telehub/core/unique_fd.h"
#include "telehub/gateway/gateway.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mqtt/async_client.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <limits>
#include <string_view>
#include <system_error>
#include <thread>

#include "telehub/envelope/envelope.h"
#include "telehub/envelope/payload.h"
#include "telehub/envelope/receipt.h"
#include "outbox.h"
#include "telehub/core/log.h"

namespace telehub::gateway {
namespace {

using core::Code;

// Long enough that a gateway offline for a night finds its session (and any QoS 1 messages the
// broker still owes it) on reconnect; short enough that abandoned client ids do not pile up.
constexpr std::uint32_t kSessionExpirySeconds = 24 * 60 * 60;
// Messages Paho holds while reconnecting; publish() waits for each one, so few are ever queued.
constexpr int kMaxBufferedMessages = 100;
constexpr std::chrono::seconds kDisconnectTimeout{5};

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

using Fd = core::UniqueFd;

tl::unexpected<core::Error> state_error(Code code, std::string message) {
  return core::fail(code, "sequence_state", std::move(message));
}

// The last used sequence number, kept durable so that a (key id, sequence) pair - the AES-GCM
// nonce - is never used twice (docs/protocol.md section 4.1). The file holds the number in
// decimal. A sibling "<file>.lock" is flock()ed for the state's lifetime, because two gateways
// sharing one state file would reuse sequence numbers.
class SequenceState {
 public:
  [[nodiscard]] static Result<SequenceState> open(const std::filesystem::path& path) {
    SequenceState s;
    s.path_ = path;
    if (path.empty()) return s;  // in memory only (tests)

    auto lock_path = path;
    lock_path += ".lock";
    s.lock_.reset(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (s.lock_.get() < 0)
      return state_error(Code::kUnavailable, "cannot open " + lock_path.string() + ": " + errno_text(errno));
    if (::flock(s.lock_.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK)
        return state_error(Code::kFailedPrecondition,
                           "sequence file " + path.string() + " is in use by another gateway");
      return state_error(Code::kUnavailable, "cannot lock " + lock_path.string() + ": " + errno_text(errno));
    }

    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) {
      if (errno == ENOENT) return s;  // never published
      return state_error(Code::kUnavailable, "cannot open " + path.string() + ": " + errno_text(errno));
    }
    char buf[64];
    std::size_t len = 0;
    for (;;) {
      ssize_t n = ::read(fd.get(), buf + len, sizeof buf - len);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return state_error(Code::kUnavailable, "cannot read " + path.string() + ": " + errno_text(errno));
      if (n == 0) break;
      len += static_cast<std::size_t>(n);
      if (len == sizeof buf) return state_error(Code::kDataLoss, path.string() + " is not a sequence number");
    }
    std::string_view text(buf, len);
    if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
    // Refusing garbage matters: guessing a value could reuse a nonce under the device key.
    std::uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size())
      return state_error(Code::kDataLoss, path.string() + " is not a sequence number");
    s.last_ = value;
    return s;
  }

  std::uint64_t last() const { return last_; }

  // Makes `value` the last used sequence durably: write a temp file, fsync, rename, fsync the
  // directory. A crash leaves either the old or the new value, never a torn one.
  [[nodiscard]] Status store(std::uint64_t value) {
    if (!path_.empty()) {
      auto tmp = path_;
      tmp += ".tmp";
      const std::string text = std::to_string(value) + "\n";
      Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
      if (fd.get() < 0) return state_error(Code::kUnavailable, "cannot write " + tmp.string() + ": " + errno_text(errno));
      for (std::size_t off = 0; off < text.size();) {
        ssize_t n = ::write(fd.get(), text.data() + off, text.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return state_error(Code::kUnavailable, "cannot write " + tmp.string() + ": " + errno_text(errno));
        off += static_cast<std::size_t>(n);
      }
      if (::fsync(fd.get()) != 0)
        return state_error(Code::kUnavailable, "cannot fsync " + tmp.string() + ": " + errno_text(errno));
      fd.reset();
      if (::rename(tmp.c_str(), path_.c_str()) != 0)
        return state_error(Code::kUnavailable, "cannot rename to " + path_.string() + ": " + errno_text(errno));
      auto parent = path_.parent_path();
      if (parent.empty()) parent = ".";
      Fd dir(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (dir.get() < 0 || ::fsync(dir.get()) != 0)
        return state_error(Code::kUnavailable, "cannot fsync directory of " + path_.string() + ": " + errno_text(errno));
    }
    last_ = value;
    return {};
  }

 private:
  std::filesystem::path path_;
  Fd lock_;
  std::uint64_t last_ = 0;
};

// TLS 1.2 suites the gateway offers (the broker enforces the same policy): ECDHE with AES-GCM
// or ChaCha20-Poly1305. TLS 1.3 suites are all AEAD and left at OpenSSL's defaults.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256";

tl::unexpected<core::Error> tls_error(const std::string& message) {
  return core::fail(Code::kUnavailable, "mqtt_connect", message);
}

// Paho C reads the trust store, certificate and key from files (at every connect, reconnects
// included), while the provisioning file carries them as PEM text. So they are written to a
// private directory, mkdtemp() under $TMPDIR (mode 0700, files 0600), that lives as long as
// the Gateway and is removed by its destructor. A crash can leave it behind; it is readable only
// by the user who can read the provisioning file anyway.
class TlsFiles {
 public:
  [[nodiscard]] static Result<std::unique_ptr<TlsFiles>> write(const Provisioning& p) {
    std::error_code ec;
    auto base = std::filesystem::temp_directory_path(ec);
    if (ec) base = "/tmp";
    std::string templ = (base / "telehub-gateway-tls-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr)
      return tls_error("cannot create a private directory for the TLS files: " + errno_text(errno));
    auto files = std::unique_ptr<TlsFiles>(new TlsFiles(templ));
    if (auto st = files->put("ca.pem", p.ca_pem); !st) return tl::unexpected(st.error());
    if (auto st = files->put("cert.pem", p.cert_pem); !st) return tl::unexpected(st.error());
    if (auto st = files->put("key.pem", p.key_pem); !st) return tl::unexpected(st.error());
    return files;
  }
  ~TlsFiles() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  TlsFiles(const TlsFiles&) = delete;
  TlsFiles& operator=(const TlsFiles&) = delete;

  std::string ca() const { return (dir_ / "ca.pem").string(); }
  std::string cert() const { return (dir_ / "cert.pem").string(); }
  std::string key() const { return (dir_ / "key.pem").string(); }

 private:
  explicit TlsFiles(std::filesystem::path dir) : dir_(std::move(dir)) {}

  [[nodiscard]] Status put(const char* name, const std::string& text) {
    const auto path = dir_ / name;
    Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (fd.get() < 0) return tls_error("cannot create TLS file " + path.string() + ": " + errno_text(errno));
    for (std::size_t off = 0; off < text.size();) {
      ssize_t n = ::write(fd.get(), text.data() + off, text.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return tls_error("cannot write TLS file " + path.string() + ": " + errno_text(errno));
      off += static_cast<std::size_t>(n);
    }
    return {};
  }

  std::filesystem::path dir_;
};

class PahoGateway final : public Gateway {
 public:
  PahoGateway(Provisioning p, GatewayOptions options, SequenceState sequence, std::unique_ptr<Outbox> outbox)
      : p_(std::move(p)), options_(std::move(options)), sequence_(std::move(sequence)), outbox_(std::move(outbox)),
        receipts_topic_(envelope::receipts_topic_for(p_.device_id)) {}

  ~PahoGateway() override { disconnect(); }

  [[nodiscard]] Status connect() {
    const std::string client_id = options_.client_id.empty() ? p_.device_id : options_.client_id;
    if (p_.has_tls()) {
      auto files = TlsFiles::write(p_);
      if (!files) return tl::unexpected(files.error());
      tls_files_ = std::move(*files);
    }
    try {
      // Paho C refuses MQTT v5 connect options unless the client was also created for v5.
      // No client persistence: publish() waits for each PUBACK, and the sequence file, not
      // Paho, is what must survive a crash.
      auto create = mqtt::create_options_builder()
                        .mqtt_version(MQTTVERSION_5)
                        .send_while_disconnected(true, false)
                        .max_buffered_messages(kMaxBufferedMessages)
                        .finalize();
      client_ = std::make_unique<mqtt::async_client>(p_.broker_uri, client_id, create);
      // clean_start(false) + a session expiry: the broker keeps our session across a dropped
      // connection, so QoS 1 messages in flight are retransmitted on reconnect instead of lost.
      // set_mqtt_version(5) also clears Paho's v3 clean-session flag, which v5 connects must not
      // set. Built in a member, not with connect_options_builder: Paho C++ 1.2.0 does not re-point
      // the C struct's connectProperties when connect_options is copied (fixed in 1.3.0,
      // eclipse/paho.mqtt.cpp #426/#445), so the copy that finalize() returns points into the
      // destroyed builder and the session expiry silently never reaches the broker.
      connect_options_.set_mqtt_version(MQTTVERSION_5);
      connect_options_.set_clean_start(false);
      connect_options_.set_properties(
          mqtt::properties{mqtt::property(mqtt::property::SESSION_EXPIRY_INTERVAL, static_cast<int>(kSessionExpirySeconds))});
      connect_options_.set_keep_alive_interval(std::chrono::seconds(30));
      connect_options_.set_connect_timeout(std::chrono::seconds(timeout_seconds()));
      connect_options_.set_automatic_reconnect(std::chrono::seconds(1), std::chrono::seconds(30));
      if (tls_files_) {
        // Mutual TLS: the broker's certificate must chain to the provisioned CA and name the
        // host in the URI (verify); ours (CN = device id) is the broker's proof of who we are.
        mqtt::ssl_options ssl;
        ssl.set_trust_store(tls_files_->ca());
        ssl.set_key_store(tls_files_->cert());
        ssl.set_private_key(tls_files_->key());
        ssl.set_enable_server_cert_auth(true);
        ssl.set_verify(true);
        ssl.set_enabled_cipher_suites(kTls12Ciphers);
        connect_options_.set_ssl(std::move(ssl));
      }
      client_->set_message_callback([this](mqtt::const_message_ptr msg) { on_receipt(msg); });
      // The session keeps the subscription, but subscribing on every (re)connect also covers a
      // broker that lost its state.
      client_->set_connected_handler([this](const std::string&) {
        try {
          client_->subscribe(receipts_topic_, 1);
        } catch (const std::exception& e) {
          core::log_warn("gateway", std::string("cannot subscribe to receipts: ") + e.what());
        }
      });
      auto token = client_->connect(connect_options_);
      if (!token->wait_for(options_.publish_timeout)) {
        drop_client();
        return core::fail(Code::kUnavailable, "mqtt_connect", "broker did not accept the connection in time");
      }
      if (!client_->subscribe(receipts_topic_, 1)->wait_for(options_.publish_timeout)) {
        drop_client();
        return core::fail(Code::kUnavailable, "mqtt_connect", "receipts subscription not confirmed in time");
      }
    } catch (const std::exception& e) {
      drop_client();
      return core::fail(Code::kUnavailable, "mqtt_connect", std::string("cannot connect to broker: ") + e.what());
    }
    // What a previous run left in the outbox goes out first.
    if (auto r = resend_pending(); !r)
      core::log_warn("gateway", "outbox not resent yet: " + r.error().message);
    return {};
  }

  Result<std::uint64_t> publish(std::span<const core::Reading> readings) override {
    if (!client_) return not_connected();
    auto payload = envelope::encode_payload(readings);
    if (!payload) return tl::unexpected(payload.error());
    return publish_payload(core::as_bytes(*payload));
  }

  Result<std::uint64_t> publish_payload(std::span<const std::uint8_t> plaintext) override {
    if (!client_) return not_connected();
    if (sequence_.last() == std::numeric_limits<std::uint64_t>::max())
      return state_error(Code::kOutOfRange, "sequence numbers exhausted for this device");
    const std::uint64_t next = sequence_.last() + 1;
    // Durable before sealing: after a crash we skip a number rather than reuse a nonce.
    if (auto st = sequence_.store(next); !st) return tl::unexpected(st.error());
    envelope::Header header{
        .version = envelope::kVersion, .device_id = p_.device_id, .key_id = p_.key_id, .sequence = next};
    auto sealed = envelope::seal(header, p_.key, plaintext);
    if (!sealed) return tl::unexpected(sealed.error());
    // In the outbox before the first send: from here on only a receipt lets it go.
    if (auto st = outbox_->add(next, *sealed); !st) return tl::unexpected(st.error());
    outbox_->mark_sent(next, Outbox::Clock::now());
    if (auto st = send(*sealed); !st) return tl::unexpected(st.error());
    return next;
  }

  Status publish_raw(std::span<const std::uint8_t> bytes) override {
    if (!client_) return not_connected();
    return send(bytes);
  }

  std::uint64_t last_sequence() const override { return sequence_.last(); }
  std::size_t pending() const override { return outbox_->size(); }
  std::uint64_t rejected() const override { return outbox_->rejected(); }

  Result<std::size_t> resend_pending() override {
    if (!client_) return not_connected();
    const auto now = Outbox::Clock::now();
    std::size_t sent = 0;
    for (const auto& [seq, sealed] : outbox_->due(now - options_.receipt_timeout)) {
      outbox_->mark_sent(seq, now);
      if (auto st = send(sealed); !st) return tl::unexpected(st.error());
      ++sent;
    }
    return sent;
  }

  bool wait_for_receipts(std::chrono::milliseconds timeout) override {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (outbox_->size() > 0 && std::chrono::steady_clock::now() < deadline) {
      (void)resend_pending();  // errors: keep waiting; the messages stay in the outbox
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return outbox_->size() == 0;
  }

  void disconnect() override {
    if (!client_) return;
    try {
      if (client_->is_connected()) client_->disconnect()->wait_for(kDisconnectTimeout);
    } catch (const std::exception&) {
      // Nothing useful to do: the session stays on the broker until it expires.
    }
    drop_client();
  }

 private:
  static tl::unexpected<core::Error> not_connected() {
    return core::fail(Code::kFailedPrecondition, "mqtt_publish", "gateway is disconnected");
  }

  int timeout_seconds() const {
    auto s = std::chrono::ceil<std::chrono::seconds>(options_.publish_timeout).count();
    return static_cast<int>(std::clamp<decltype(s)>(s, 1, 3600));
  }

  // On timeout the message stays queued in Paho and may still reach the broker later, with the
  // same bytes and sequence, which the hub recognises as a duplicate (protocol section 4.2).
  [[nodiscard]] Status send(std::span<const std::uint8_t> bytes) {
    try {
      auto msg = mqtt::make_message(p_.readings_topic, bytes.data(), bytes.size(), 1, false);
      auto token = client_->publish(msg);
      if (!token->wait_for(options_.publish_timeout))
        return core::fail(Code::kUnavailable, "mqtt_publish",
                          "broker did not acknowledge within " + std::to_string(options_.publish_timeout.count()) + " ms");
      return {};
    } catch (const std::exception& e) {
      return core::fail(Code::kUnavailable, "mqtt_publish", std::string("publish failed: ") + e.what());
    }
  }

  void drop_client() noexcept {
    try {
      client_.reset();
    } catch (...) {
    }
  }

  // Runs on Paho's callback thread; must not throw.
  void on_receipt(const mqtt::const_message_ptr& msg) noexcept {
    try {
      const auto& payload = msg->get_payload();
      auto r = envelope::decode_receipt(core::as_bytes(payload));
      if (!r || r->device_id != p_.device_id) {
        core::log_warn("gateway", "ignoring a malformed or foreign receipt");
        return;
      }
      const bool rejected = r->status == envelope::Receipt::Status::kRejected;
      if (outbox_->settle(r->sequence, rejected) && rejected)
        core::log_warn("gateway", "the hub rejected sequence " + std::to_string(r->sequence) + " (" + r->reason +
                                      "); kept under the outbox's rejected/ folder");
    } catch (const std::exception& e) {
      core::log_error("gateway", std::string("receipt handling failed: ") + e.what());
    }
  }

  Provisioning p_;
  GatewayOptions options_;
  SequenceState sequence_;
  std::unique_ptr<Outbox> outbox_;
  std::string receipts_topic_;
  // Before client_: destroyed after it, so the files outlive every (re)connect.
  std::unique_ptr<TlsFiles> tls_files_;
  mqtt::connect_options connect_options_;
  std::unique_ptr<mqtt::async_client> client_;
};

}  // namespace

Result<std::unique_ptr<Gateway>> Gateway::connect(const Provisioning& p, const GatewayOptions& options) {
  if (!envelope::valid_device_id(p.device_id))
    return core::fail(Code::kInvalidArgument, "bad_provisioning", "device_id: not a valid device id");
  if (p.key.size() != envelope::kKeySize)
    return core::fail(Code::kInvalidArgument, "bad_provisioning", "key: expected 32 bytes");
  auto sequence = SequenceState::open(options.sequence_file);
  if (!sequence) return tl::unexpected(sequence.error());
  auto outbox_dir = options.outbox_dir;
  if (outbox_dir.empty() && !options.sequence_file.empty())
    outbox_dir = std::filesystem::path(options.sequence_file).replace_extension(".outbox");
  auto outbox = Outbox::open(outbox_dir);
  if (!outbox) return tl::unexpected(outbox.error());
  auto gw = std::make_unique<PahoGateway>(p, options, std::move(*sequence), std::move(*outbox));
  if (auto st = gw->connect(); !st) return tl::unexpected(st.error());
  return std::unique_ptr<Gateway>(std::move(gw));
}

}  // namespace telehub::gateway
