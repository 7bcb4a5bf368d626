// telehub-bench-paho-sub: a bare Eclipse Paho MQTT C++ subscriber that only counts: the
// client-library limit for the hub. It uses the hub's session settings
// (ingest/src/mqtt_subscriber.cpp): MQTT 5, clean start off, session expiry 7 days, keep-alive
// 20 s, QoS 1 subscription to telehub/v1/devices/+/readings, messages through
// set_message_callback (the PUBACK goes out when the callback returns), and with --ca/--cert/--key
// the same TLS client settings.
//
//   telehub-bench-paho-sub --uri tcp://127.0.0.1:P --expect N [--client-id ID] [--timeout-s 120]
//                          [--ca F --cert F --key F]
//
// Prints "ready" once subscribed, then, when N messages arrived or the timeout (counted from
// "ready") passed, one JSON line: {"received":N,"elapsed_s":S,"rate":R} with elapsed from the
// first to the last message and rate = (received - 1) / elapsed. It then ends its session
// (DISCONNECT with session expiry 0) so the broker keeps nothing for it.
#include <mqtt/async_client.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>
#include <string>

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256";

int usage(const std::string& why) {
  std::cerr << "telehub-bench-paho-sub: " << why
            << "\nusage: telehub-bench-paho-sub --uri URI --expect N [--client-id ID] [--timeout-s T] "
               "[--ca F --cert F --key F]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> opt{{"timeout-s", "120"},
                                         {"client-id", "bench-paho-" + std::to_string(::getpid())}};
  if (argc % 2 == 0) return usage("every option needs a value");
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string name = argv[i];
    if (name.rfind("--", 0) != 0) return usage("unexpected argument " + name);
    opt[name.substr(2)] = argv[i + 1];
  }
  if (!opt.count("uri") || !opt.count("expect")) return usage("--uri and --expect are required");
  const long expect = std::atol(opt["expect"].c_str());
  const int timeout_s = std::atoi(opt["timeout-s"].c_str());
  if (expect < 1 || timeout_s < 1) return usage("--expect and --timeout-s must be positive");

  std::mutex mutex;
  std::condition_variable done;
  long received = 0;
  Clock::time_point first, last;
  try {
    mqtt::async_client client(opt["uri"], opt["client-id"], mqtt::create_options(MQTTVERSION_5));
    client.set_message_callback([&](mqtt::const_message_ptr) {
      const auto now = Clock::now();
      std::lock_guard lock(mutex);
      if (received == 0) first = now;
      last = now;
      if (++received == expect) done.notify_all();
    });
    // Set on an object that outlives connect(), as the hub does (Paho C++ 1.2.0 drops CONNECT
    // properties when connect_options is copied).
    mqtt::connect_options co;
    co.set_mqtt_version(MQTTVERSION_5);
    co.set_clean_start(false);
    co.set_properties(mqtt::properties{mqtt::property(mqtt::property::SESSION_EXPIRY_INTERVAL, 7 * 24 * 3600)});
    co.set_keep_alive_interval(std::chrono::seconds(20));
    co.set_connect_timeout(std::chrono::seconds(10));
    if (opt.count("ca")) {
      mqtt::ssl_options ssl;
      ssl.set_trust_store(opt["ca"]);
      ssl.set_key_store(opt["cert"]);
      ssl.set_private_key(opt["key"]);
      ssl.set_enable_server_cert_auth(true);
      ssl.set_verify(true);
      ssl.set_enabled_cipher_suites(kTls12Ciphers);
      co.set_ssl(std::move(ssl));
    }
    client.connect(co)->wait();
    client.subscribe("telehub/v1/devices/+/readings", 1)->wait();
    std::cout << "ready" << std::endl;
    {
      std::unique_lock lock(mutex);
      done.wait_for(lock, std::chrono::seconds(timeout_s), [&] { return received >= expect; });
    }
    long n;
    double elapsed;
    {
      std::lock_guard lock(mutex);
      n = received;
      elapsed = n > 0 ? std::chrono::duration<double>(last - first).count() : 0.0;
    }
    std::printf("{\"received\":%ld,\"elapsed_s\":%.6f,\"rate\":%.1f}\n", n, elapsed,
                elapsed > 0 ? static_cast<double>(n - 1) / elapsed : 0.0);
    std::fflush(stdout);
    mqtt::disconnect_options dop;
    dop.set_properties(mqtt::properties{mqtt::property(mqtt::property::SESSION_EXPIRY_INTERVAL, 0)});
    client.disconnect(dop)->wait_for(std::chrono::seconds(5));
    return n == expect ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "telehub-bench-paho-sub: " << e.what() << "\n";
    return 1;
  }
}
