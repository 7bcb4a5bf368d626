// EmbeddedBroker: a Mosquitto broker run as a child process on a loopback port, for
// `telehub serve` with no configuration, the demo, and the tests.
//
// start() writes a mosquitto.conf into options.dir, starts `mosquitto -c <conf>`, and returns
// once the broker accepts TCP connections on its port. The broker persists its queue under
// options.dir (mosquitto.db) and logs to options.dir/mosquitto.log. stop() sends SIGTERM, waits
// (then SIGKILL after a timeout) and reaps the child; the destructor calls stop().
//
// Two modes:
// - Plain (no TLS files in the options): one plaintext listener, anonymous clients allowed, no
//   ACL. Only safe because it listens on loopback; for tests and old provisioning files.
// - TLS (ca_file, cert_file and key_file all set): one TLS listener (TLS 1.2 minimum, 1.3
//   allowed; ECDHE with AES-GCM or ChaCha20-Poly1305 only) that requires a client certificate
//   signed by ca_file and takes the client's identity (its MQTT user name) from the
//   certificate's CN (use_identity_as_username). The client id is forced to that identity too
//   (use_username_as_clientid), so no client can take over another's session. Anonymous
//   clients are refused and an ACL (`<dir>/acl`, rewritten on every start) lets the hub
//   identity read every device's readings and write every device's receipts, and each other
//   identity (a device id) write only telehub/v1/devices/<its id>/readings and read only
//   telehub/v1/devices/<its id>/receipts. A second, plaintext loopback listener without
//   authentication or ACL exists only when plaintext_listener_port is set.
//
// Error policy: Result, never throws. Reasons: broker_config (bad options, cannot resolve the
// host, cannot write config), broker_exec (program not found or cannot be executed),
// broker_start (port already in use, exited or did not listen in time; the message includes the
// tail of the broker log).
//
// Lifetimes: the child runs in its own process group (a terminal's Ctrl-C does not reach it) and
// gets SIGTERM when its owner dies (PR_SET_PDEATHSIG). Linux sends that signal when the *thread*
// that called start() exits, so call start() from a thread that lives as long as the broker
// (normally the main thread). When run as root, the broker stays root (`user root`) so that it
// can use options.dir.
//
// Thread-safety: not thread-safe; one owner.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "telehub/core/error.h"

namespace telehub::broker {

struct BrokerOptions {
  // Directory for mosquitto.conf, the persistence file and the log. Created if missing.
  // REQUIRES: non-empty. Default: none.
  std::filesystem::path dir;
  // Listen address. Default: 127.0.0.1 (loopback only).
  std::string host = "127.0.0.1";
  // Port; 0 picks a free port (and picks again if it is taken before Mosquitto binds it).
  // Default: 0.
  std::uint16_t port = 0;
  // Keep the queue on disk across broker restarts. Default: true.
  bool persistence = true;
  // Seconds between saves of the in-memory queue to disk (Mosquitto autosave_interval).
  // Default: 1 (Mosquitto's own default of 1800 s loses up to half an hour on a crash).
  int autosave_interval_s = 1;
  // Per-client queue limits; 0 means unlimited. Mosquitto's default (1000 messages) silently
  // drops the excess for a slow subscriber. Default: 0 (unlimited).
  int max_queued_messages = 0;
  // The mosquitto program: a path, or a name looked up on PATH, then in /usr/sbin and
  // /usr/local/sbin. Default: "mosquitto".
  std::string program = "mosquitto";
  // How long to wait for the port to accept connections. Default: 10 s.
  std::chrono::milliseconds start_timeout{10000};

  // TLS (see the header comment). PEM files: the CA that signs client certificates (and the
  // broker's own), the broker's certificate (serverAuth, a subjectAltName for `host`) and its
  // private key, e.g. from pki::DevCa. Mosquitto reads them at start; they must stay in place.
  // REQUIRES: all three set or none (else broker_config). Default: empty = plain mode.
  std::filesystem::path ca_file;
  std::filesystem::path cert_file;
  std::filesystem::path key_file;
  // The certificate CN of the hub, the only identity allowed to read readings and write
  // receipts of every device. TLS mode only. REQUIRES: non-empty, no whitespace, '+', '#',
  // '/' or '%'. Default: "telehub-hub".
  std::string hub_identity = "telehub-hub";
  // TLS mode only: when non-zero, also listen for plaintext MQTT on 127.0.0.1 at this port,
  // with anonymous clients allowed and no ACL (anyone on this machine may then publish and
  // subscribe to anything on it, receipts included). For gateways provisioned before TLS.
  // REQUIRES: TLS mode and a port other than `port`. Default: 0 (no plaintext listener).
  std::uint16_t plaintext_listener_port = 0;
  // TLS mode only: identities (certificate CNs) refused everything by the ACL (`topic deny #`),
  // e.g. revoked devices. Mosquitto applies deny entries before the grants. See also
  // EmbeddedBroker::deny_identities(). REQUIRES: each like hub_identity, and not hub_identity.
  // Default: none.
  std::vector<std::string> denied_identities;
};

class EmbeddedBroker {
 public:
  [[nodiscard]] static Result<std::unique_ptr<EmbeddedBroker>> start(const BrokerOptions& options);
  virtual ~EmbeddedBroker() = default;

  virtual std::uint16_t port() const = 0;
  virtual const std::string& host() const = 0;
  // "tcp://127.0.0.1:PORT" (plain mode) or "ssl://127.0.0.1:PORT" (TLS mode), the form Paho takes.
  virtual std::string uri() const = 0;
  // Whether the main listener is TLS (all TLS files given).
  virtual bool tls() const = 0;
  // The plaintext loopback listener's port in TLS mode; 0 when there is none.
  virtual std::uint16_t plaintext_port() const = 0;
  // TLS mode: replaces the denied identities (BrokerOptions::denied_identities) and restarts
  // the broker on the same port so that the new ACL applies to every connection at once. The
  // restart is graceful (SIGTERM: Mosquitto saves every session), takes well under a second,
  // and clients reconnect and resume their sessions; a denied client may connect but can then
  // neither publish nor receive. (Not SIGHUP: Mosquitto 2.0.11's reload leaves offline
  // persistent sessions of certificate-identified clients without a valid ACL.) Fails with
  // broker_config (bad identity, plain mode) or broker_start (could not start again; the
  // broker is then stopped).
  [[nodiscard]] virtual Status deny_identities(const std::vector<std::string>& identities) = 0;
  // Child process id (0 after stop()).
  virtual int pid() const = 0;
  // Stops the broker (SIGTERM, then SIGKILL after 5 s). Idempotent.
  virtual void stop() = 0;
};

// A TCP port on `host` that was free when asked (bind to port 0, read it, close). Fails with
// broker_config when the host cannot be resolved or bound.
[[nodiscard]] Result<std::uint16_t> find_free_port(const std::string& host = "127.0.0.1");

}  // namespace telehub::broker
