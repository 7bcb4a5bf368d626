// Paho MQTT C++ adapter for ingest::Pipeline. Paho headers stay in this file.
#include "telehub/ingest/mqtt_subscriber.h"

#include <mqtt/async_client.h>

#include <algorithm>
#include <chrono>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <mutex>
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

// Receipts waiting for a free slot in the window; beyond this many, new ones are dropped (and
// logged): their gateways send the messages again after their receipt timeout. About 200 bytes
// each.
constexpr std::size_t kMaxQueuedReceipts = 100000;
// Most receipts handed to Paho and not yet acknowledged by the broker; at most half the
// broker's Receive Maximum (MQTT 5 CONNACK; Mosquitto sends its max_inflight_messages, 20 by
// default), so Paho never has to hold one back for flow control.
constexpr int kMaxReceiptWindow = 32;

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
    syncer_ = std::thread([this] { syncer_loop(); });
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
        // Receipts in flight on the old connection are Paho's to retry or fail now; whatever
        // they report later no longer counts against the window.
        {
          std::lock_guard lock(receipts_mutex_);
          ++receipts_generation_;
          receipts_in_flight_ = 0;
        }
        pump_receipts();
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
      auto connecting = client_.connect(connect_options_);
      if (!connecting->wait_for(options_.connect_timeout))
        return core::fail(core::Code::kUnavailable, "mqtt_connect", "broker did not answer in time");
      set_receipt_window(*connecting);
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
    // Last receipts first (one more sync), while the connection is still up.
    {
      std::lock_guard lock(receipts_mutex_);
      syncer_stop_ = true;
    }
    sync_cv_.notify_one();
    if (syncer_.joinable()) syncer_.join();
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

  // Receipts leave through a window. Paho C runs the message callback holding its client lock,
  // which its send thread needs, so a receipt published from the callback waits in Paho's
  // queue. That queue takes at most 100 publishes (more are refused), and a publish beyond the
  // broker's Receive Maximum waits for the send thread's one-second timer rather than for the
  // broker's PUBACK. A backlog delivered message after message (after a stall, or when the hub
  // comes back) would overflow it and then drain at one window per second. So the callback
  // queues the receipt here, and Paho gets the next one when the window has room: from the
  // callback, or when the broker acknowledges an earlier receipt (on Paho's receive thread,
  // where publishing does not wait for Paho's lock, and the publish wakes the send thread).
  // The receipt still follows the commit; it may reach the broker after the message's PUBACK.
  class ReceiptListener final : public mqtt::iaction_listener {
   public:
    explicit ReceiptListener(PahoSubscriber& s) : s_(s) {}
    void on_success(const mqtt::token& t) override { s_.receipt_settled(t, true); }
    void on_failure(const mqtt::token& t) override { s_.receipt_settled(t, false); }

   private:
    PahoSubscriber& s_;
  };

  struct PendingReceipt {
    std::string topic;
    std::string text;
  };

  // Half the broker's Receive Maximum (65535 when the CONNACK has none), 1..kMaxReceiptWindow.
  void set_receipt_window(const mqtt::token& connected) noexcept {
    int receive_maximum = 65535;
    try {
      const auto& props = connected.get_connect_response().get_properties();
      if (props.contains(mqtt::property::RECEIVE_MAXIMUM))
        receive_maximum = mqtt::get<uint16_t>(props, mqtt::property::RECEIVE_MAXIMUM);
    } catch (const std::exception&) {
      // No CONNACK properties: keep the MQTT 5 default.
    }
    std::lock_guard lock(receipts_mutex_);
    receipt_window_ = std::clamp(receive_maximum / 2, 1, kMaxReceiptWindow);
  }

  // Queues the receipt for a message whose outcome is committed; the syncer thread sends it
  // once the commit is durable, so the receipt may promise durability. A receipt lost on the way (queue
  // full, connection lost) is made good by the gateway resending (same bytes: a duplicate,
  // which gets a receipt again).
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
      std::lock_guard lock(receipts_mutex_);
      if (receipts_.size() + unsynced_.size() >= kMaxQueuedReceipts) {
        // One line per 10 s with the count, not one per message (a backlog drops thousands).
        ++receipts_dropped_;
        const auto now = std::chrono::steady_clock::now();
        if (now - last_drop_log_ >= std::chrono::seconds(10)) {
          core::log_warn("ingest", std::to_string(receipts_dropped_) + " receipt(s) not sent (their gateways will resend): " +
                                       std::to_string(kMaxQueuedReceipts) + " receipts already waiting");
          receipts_dropped_ = 0;
          last_drop_log_ = now;
        }
        return;
      }
      unsynced_.push_back({envelope::receipts_topic_for(r.device_id), std::move(*text)});
    } catch (const std::exception& e) {
      core::log_warn("ingest", std::string("receipt not sent (the gateway will resend): ") + e.what());
      return;
    }
    sync_cv_.notify_one();
  }

  // The syncer thread: receipts wait in unsynced_ until the store has made their commits
  // durable (Pipeline::sync(), an fdatasync of the WAL: a no-op when the store fsyncs every
  // commit); then they join the send queue. One sync covers every receipt queued before it,
  // so the cost of an fsync is shared by all messages committed meanwhile.
  void syncer_loop() noexcept {
    auto backoff = std::chrono::milliseconds(100);
    // At most one sync per kMinSyncInterval: under load a sync covers the receipts of 10 ms
    // (an fdatasync writes back everything dirty; back to back they cost CPU the commits need).
    constexpr auto kMinSyncInterval = std::chrono::milliseconds(10);
    auto last_sync = std::chrono::steady_clock::now() - kMinSyncInterval;
    for (;;) {
      std::deque<PendingReceipt> batch;
      {
        std::unique_lock lock(receipts_mutex_);
        sync_cv_.wait(lock, [this] { return syncer_stop_ || !unsynced_.empty(); });
        if (unsynced_.empty()) return;  // stopping, nothing left
        if (!syncer_stop_) {
          const auto due = last_sync + kMinSyncInterval;
          if (std::chrono::steady_clock::now() < due) {
            lock.unlock();
            std::this_thread::sleep_until(due);
            lock.lock();
          }
        }
        batch.swap(unsynced_);
      }
      last_sync = std::chrono::steady_clock::now();
      if (auto s = pipeline_.sync(); !s) {
        core::log_error("ingest", "cannot sync the store, receipts held back: " + s.error().to_string());
        {
          std::lock_guard lock(receipts_mutex_);
          for (auto it = batch.rbegin(); it != batch.rend(); ++it) unsynced_.push_front(std::move(*it));
          if (syncer_stop_) return;  // gateways resend what got no receipt
        }
        std::this_thread::sleep_for(backoff);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
        continue;
      }
      backoff = std::chrono::milliseconds(100);
      {
        std::lock_guard lock(receipts_mutex_);
        for (auto& r : batch) receipts_.push_back(std::move(r));
      }
      pump_receipts();
    }
  }

  // Hands queued receipts to Paho while the window has room. Runs on the syncer thread and on
  // Paho's receive thread (connected handler, acknowledgement of a receipt), and calls Paho
  // without holding receipts_mutex_.
  void pump_receipts() noexcept {
    for (;;) {
      PendingReceipt next;
      std::uint64_t generation = 0;
      {
        std::lock_guard lock(receipts_mutex_);
        if (receipts_.empty() || receipts_in_flight_ >= receipt_window_) return;
        next = std::move(receipts_.front());
        receipts_.pop_front();
        ++receipts_in_flight_;
        generation = receipts_generation_;
      }
      try {
        client_.publish(next.topic, next.text.data(), next.text.size(), 1, false,
                        reinterpret_cast<void*>(static_cast<std::uintptr_t>(generation)), receipt_listener_);
      } catch (const std::exception& e) {
        {
          std::lock_guard lock(receipts_mutex_);
          if (generation == receipts_generation_ && receipts_in_flight_ > 0) --receipts_in_flight_;
        }
        core::log_warn("ingest", std::string("receipt not sent (the gateway will resend): ") + e.what());
        return;  // try again with the next message or acknowledgement
      }
    }
  }

  // The broker acknowledged a receipt (or Paho gave up on it): its slot is free. Only an
  // acknowledgement, which arrives on Paho's receive thread, sends the next one; a failure may
  // be reported from another thread, so it only frees the slot.
  void receipt_settled(const mqtt::token& t, bool acknowledged) noexcept {
    {
      std::lock_guard lock(receipts_mutex_);
      const auto generation = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(t.get_user_context()));
      if (generation == receipts_generation_ && receipts_in_flight_ > 0) --receipts_in_flight_;
    }
    if (acknowledged)
      pump_receipts();
    else if (!stopping_)
      core::log_warn("ingest", "receipt not confirmed by the broker (the gateway will resend)");
  }

  SubscriberOptions options_;
  Pipeline& pipeline_;
  std::uint64_t receipts_dropped_ = 0;                   // guarded by receipts_mutex_
  std::chrono::steady_clock::time_point last_drop_log_;  // guarded by receipts_mutex_
  // Before client_: Paho reports outstanding receipts as failed while client_ is destroyed,
  // and the callbacks read these.
  ReceiptListener receipt_listener_{*this};
  std::mutex receipts_mutex_;
  std::deque<PendingReceipt> receipts_;    // guarded by receipts_mutex_; durable, to send
  std::deque<PendingReceipt> unsynced_;    // guarded by receipts_mutex_; committed, not yet synced
  std::condition_variable sync_cv_;        // with receipts_mutex_
  bool syncer_stop_ = false;               // guarded by receipts_mutex_
  std::thread syncer_;
  int receipts_in_flight_ = 0;             // guarded by receipts_mutex_
  int receipt_window_ = 1;                 // guarded by receipts_mutex_; set at connect
  std::uint64_t receipts_generation_ = 0;  // guarded by receipts_mutex_; +1 per connection
  std::atomic<bool> stopping_{false};
  std::atomic<bool> stalled_{false};
  std::atomic<bool> connected_{false};
  mutable mqtt::async_client client_;
  mqtt::connect_options connect_options_;
  std::string filter_;
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
