// ingest::MqttSubscriber: the Paho MQTT C++ adapter that feeds a Pipeline from a broker.
//
// It connects with MQTT 5, clean start off and a session expiry, so the broker keeps the
// subscription and queues QoS 1 messages while the hub is away; it subscribes at QoS 1 to
// `telehub/v1/devices/+/readings` (optionally as the shared subscription
// `$share/<group>/...`), and reconnects automatically.
//
// Acknowledge after commit: Paho C 1.3 sends the PUBACK only after the message callback
// returns, so the callback runs the pipeline (which returns after the SQLite commit) and only
// then returns. When the pipeline says kRetry (storage unavailable), the callback retries with
// backoff and does not return; if the subscriber is stopped while a message still cannot be
// committed, the process exits at once with status 75 (EX_TEMPFAIL) rather than let Paho
// acknowledge an uncommitted message — the broker then redelivers it to the persistent session.
// The consumer queue (start_consuming) is never used: it acknowledges on enqueue.
//
// TLS: with ca_file, cert_file and key_file set, the server URI is ssl://host:port and the hub
// presents its client certificate (CN = the hub identity the broker's ACL names, by default
// "telehub-hub"), trusting only ca_file and checking that the broker's certificate names the
// URI's host. The broker then refuses receipts from anyone else.
//
// Error policy: start() returns unavailable/mqtt_connect when the first connection or the
// subscription fails (including a failed TLS handshake), and invalid_argument/mqtt_connect when
// only some TLS files are set; later connection losses are logged and retried. No Paho exception
// escapes this class. No Paho type appears in this header.
//
// Thread-safety: start/stop from one owner thread; the callback runs on Paho's thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "telehub/core/error.h"
#include "telehub/ingest/pipeline.h"

namespace telehub::ingest {

struct SubscriberOptions {
  // Broker URI, "tcp://host:port", or "ssl://host:port" with TLS. REQUIRES: non-empty.
  // Default: none.
  std::string server_uri;
  // TLS: PEM files of the CA the broker's certificate must chain to, the hub's client
  // certificate and its private key (e.g. pki::DevCa + pki::write_identity). Paho reads them at
  // every (re)connect, so they must stay in place. REQUIRES: all three set or none.
  // Default: empty = no TLS.
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  // Client id; the broker keys the persistent session on it. Default: "telehub-hub".
  std::string client_id = "telehub-hub";
  // Subscribe through `$share/<share_group>/...` so several hubs split the load. Default: off.
  bool shared = false;
  std::string share_group = "telehub";
  // How long the broker keeps the session (and queues messages) while the hub is away.
  // Default: 7 days.
  std::chrono::seconds session_expiry{7 * 24 * 3600};
  // Publish a receipt (envelope/receipt.h) to telehub/v1/devices/<id>/receipts for every
  // message opened with the device's key, once its outcome is durable. Receipts go out at QoS 1
  // with at most half the broker's Receive Maximum (at most 32) unacknowledged; the rest wait
  // in memory (up to 100,000; beyond that they are dropped and logged, and the gateway resends
  // the message). Default: true.
  bool send_receipts = true;
  // How long start() waits for the first connection and subscription. Default: 10 s.
  std::chrono::milliseconds connect_timeout{10000};
};

class MqttSubscriber {
 public:
  // Connects and subscribes; messages flow to pipeline.process() from then on.
  // The pipeline must outlive the subscriber.
  [[nodiscard]] static Result<std::unique_ptr<MqttSubscriber>> start(const SubscriberOptions& options,
                                                                     Pipeline& pipeline);
  virtual ~MqttSubscriber() = default;
  virtual bool connected() const = 0;
  // True while a message cannot be committed: the callback is retrying and holds back its
  // acknowledgement (back-pressure: the broker queues the rest). Logged when it starts and ends.
  virtual bool stalled() const = 0;
  // Disconnects (waiting for the callback in progress to finish). Idempotent.
  virtual void stop() = 0;
};

}  // namespace telehub::ingest
