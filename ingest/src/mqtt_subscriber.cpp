// Paho MQTT C++ adapter for ingest::Pipeline. Paho headers stay in this file.
#include "telehub/ingest/mqtt_subscriber.h"

#include <mqtt/async_client.h>

#include <atomic>
#include <cstdlib>
#include <thread>

#include "telehub/core/log.h"
#include "telehub/envelope/receipt.h"

namespace telehub::ingest {
namespace {

// TLS 1.2 suites offered: ECDHE with AES-GCM or ChaCha20-Poly1305 (TLS 1.3 suites are all AEAD).
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256";

class PahoSubscriber final : public MqttSubscriber {
 public:
  PahoSubscriber(const SubscriberOptions& options, Pipeline& pipeline)
      : options_(options),
        pipeline_(pipeline),
        client_(options.server_uri, options.client_id, mqtt::create_options(MQTTVERSION_5)) {
    filter_ = options.shared ? "$share/" + options.share_group + "/" + std::string(kReadingsFilter)
                             : std::string(kReadingsFilter);
  }

  ~PahoSubscriber() override { stop(); }

  Status start() {
    try {
      client_.set_message_callback([this](mqtt::const_message_ptr msg) { on_message(msg); });
      client_.set_connection_lost_handler([this](const std::string&) {
        connected_ = false;
        core::log_warn("ingest", "connection to broker lost; reconnecting");
      });
      // With a persistent session the broker keeps the subscription, but subscribing again on
      // every (re)connect also covers a broker that lost its state.
      client_.set_connected_handler([this](const std::string&) {
        connected_ = true;
        try {
          client_.subscribe(filter_, 1);
        } catch (const std::exception& e) {
          core::log_error("ingest", std::string("resubscribe failed: ") + e.what());
        }
      });
      // Paho C++ 1.2.0 loses the CONNECT properties when connect_options is copied (the
      // builder copies; fixed upstream in 1.3.0), which silently drops the session expiry.
      // So the options are set on a member that outlives connect(), without a builder.
      connect_options_.set_mqtt_version(MQTTVERSION_5);  // also clears the v3 cleansession flag
      connect_options_.set_clean_start(false);
      connect_options_.set_properties(mqtt::properties{
          mqtt::property(mqtt::property::SESSION_EXPIRY_INTERVAL, static_cast<int>(options_.session_expiry.count()))});
      connect_options_.set_keep_alive_interval(std::chrono::seconds(20));
      connect_options_.set_connect_timeout(std::chrono::duration_cast<std::chrono::seconds>(options_.connect_timeout));
      connect_options_.set_automatic_reconnect(std::chrono::seconds(1), std::chrono::seconds(30));
      if (!options_.ca_file.empty()) {
        // Mutual TLS: the broker must chain to ca_file and name the URI's host (verify).
        mqtt::ssl_options ssl;
        ssl.set_trust_store(options_.ca_file);
        ssl.set_key_store(options_.cert_file);
        ssl.set_private_key(options_.key_file);
        ssl.set_enable_server_cert_auth(true);
        ssl.set_verify(true);
        ssl.set_enabled_cipher_suites(kTls12Ciphers);
        connect_options_.set_ssl(std::move(ssl));
      }
      if (!client_.connect(connect_options_)->wait_for(options_.connect_timeout))
        return core::fail(core::Code::kUnavailable, "mqtt_connect", "broker did not answer in time");
      auto sub = client_.subscribe(filter_, 1);
      if (!sub->wait_for(options_.connect_timeout))
        return core::fail(core::Code::kUnavailable, "mqtt_connect", "subscription not confirmed in time");
      connected_ = true;
      core::log_info("ingest", "subscribed to " + filter_ + " at " + options_.server_uri);
      return {};
    } catch (const mqtt::exception& e) {
      return core::fail(core::Code::kUnavailable, "mqtt_connect", std::string("cannot connect to broker: ") + e.what());
    } catch (const std::exception& e) {
      return core::fail(core::Code::kUnavailable, "mqtt_connect", e.what());
    }
  }

  // From the connection handlers, not client_.is_connected(): Paho C keeps a lock while our
  // message callback runs, so asking Paho during a stall would block /metrics until it ends.
  bool connected() const override { return connected_; }

  bool stalled() const override { return stalled_; }

  void stop() override {
    if (stopping_.exchange(true)) return;
    connected_ = false;
    try {
      if (client_.is_connected()) client_.disconnect()->wait_for(std::chrono::seconds(5));
    } catch (const std::exception& e) {
      core::log_warn("ingest", std::string("disconnect: ") + e.what());
    }
  }

 private:
  // Runs on Paho's callback thread. Returning acknowledges the message (PUBACK), so it returns
  // only once the pipeline committed, de-duplicated or quarantined it. Nothing may throw out.
  void on_message(const mqtt::const_message_ptr& msg) noexcept {
    try {
      InboundMessage in;
      in.topic = msg->get_topic();
      const auto& payload = msg->get_payload();
      in.payload.assign(payload.begin(), payload.end());
      in.received_at = core::system_clock().now();
      auto backoff = std::chrono::milliseconds(50);
      const auto first_failure = std::chrono::steady_clock::now();
      for (;;) {
        Disposition d = pipeline_.process(in);
        if (d.acknowledge()) {
          if (d.authenticated && options_.send_receipts) send_receipt(d);
          if (stalled_.exchange(false)) {
            const auto s = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - first_failure);
            core::log_warn("ingest", "resumed: storage commits again after " + std::to_string(s.count()) +
                                         " s; nothing was acknowledged before it was committed");
          }
          return;
        }
        if (!stalled_.exchange(true))
          core::log_error("ingest", "stalled: cannot commit (" + d.reason +
                                        "); holding back acknowledgements and retrying until storage recovers");
        if (stopping_) {
          core::log_error("ingest", "stopping with an uncommitted message; exiting without acknowledging it");
          std::_Exit(75);
        }
        std::this_thread::sleep_for(backoff);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
      }
    } catch (const std::exception& e) {
      core::log_error("ingest", std::string("message handler failed; exiting without acknowledging: ") + e.what());
      std::_Exit(75);
    }
  }

  // Publishes the receipt at QoS 1 without waiting: the readings are already committed with
  // synchronous=FULL, so the receipt may promise durability. A receipt lost on the way is made
  // good by the gateway resending (same bytes: a duplicate, which gets a receipt again).
  void send_receipt(const Disposition& d) noexcept {
    using envelope::Receipt;
    Receipt r;
    r.device_id = d.device_id;
    r.sequence = d.sequence;
    r.status = d.kind == Disposition::Kind::kStored      ? Receipt::Status::kStored
               : d.kind == Disposition::Kind::kDuplicate ? Receipt::Status::kDuplicate
                                                         : Receipt::Status::kRejected;
    if (r.status == Receipt::Status::kRejected) r.reason = d.reason;
    auto text = envelope::encode_receipt(r);
    if (!text) {
      core::log_error("ingest", "cannot encode receipt: " + text.error().to_string());
      return;
    }
    try {
      client_.publish(envelope::receipts_topic_for(r.device_id), text->data(), text->size(), 1, false);
    } catch (const std::exception& e) {
      core::log_warn("ingest", std::string("receipt not sent (the gateway will resend): ") + e.what());
    }
  }

  SubscriberOptions options_;
  Pipeline& pipeline_;
  mutable mqtt::async_client client_;
  mqtt::connect_options connect_options_;
  std::string filter_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> stalled_{false};
  std::atomic<bool> connected_{false};
};

}  // namespace

Result<std::unique_ptr<MqttSubscriber>> MqttSubscriber::start(const SubscriberOptions& options, Pipeline& pipeline) {
  if (options.server_uri.empty())
    return core::fail(core::Code::kInvalidArgument, "mqtt_connect", "no broker URI configured");
  const int tls_files = !options.ca_file.empty() + !options.cert_file.empty() + !options.key_file.empty();
  if (tls_files != 0 && tls_files != 3)
    return core::fail(core::Code::kInvalidArgument, "mqtt_connect", "ca_file, cert_file and key_file must be set together");
  std::unique_ptr<PahoSubscriber> s;
  try {
    s = std::make_unique<PahoSubscriber>(options, pipeline);
  } catch (const std::exception& e) {
    return core::fail(core::Code::kInvalidArgument, "mqtt_connect", std::string("bad broker URI: ") + e.what());
  }
  if (auto st = s->start(); !st) return tl::unexpected(st.error());
  return std::unique_ptr<MqttSubscriber>(std::move(s));
}

}  // namespace telehub::ingest
