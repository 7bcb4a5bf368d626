// telehub-bench-raw-sub: a raw libmosquitto subscriber that only counts: the broker limit. The
// same MQTT 5 session settings as the hub (clean start off, session expiry 7 days, QoS 1
// subscription to telehub/v1/devices/+/readings); libmosquitto sends each PUBACK itself.
//
//   telehub-bench-raw-sub --port P --expect N [--host 127.0.0.1] [--client-id ID] [--timeout-s 120]
//
// Prints "ready" once the subscription is granted, then, when N messages arrived or the timeout
// (counted from "ready") passed, one JSON line {"received":N,"elapsed_s":S,"rate":R} (first to
// last message, rate = (received - 1) / elapsed), and ends its session (session expiry 0).
#include <mosquitto.h>
#include <mqtt_protocol.h>
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

struct State {
  std::mutex mutex;
  std::condition_variable changed;
  int connect_result = -1;
  bool subscribed = false;
  long expect = 0;
  long received = 0;
  Clock::time_point first, last;
};

void on_connect(mosquitto* mosq, void* ctx, int rc, int, const mosquitto_property*) {
  auto* s = static_cast<State*>(ctx);
  if (rc == 0) mosquitto_subscribe_v5(mosq, nullptr, "telehub/v1/devices/+/readings", 1, 0, nullptr);
  std::lock_guard lock(s->mutex);
  s->connect_result = rc;
  s->changed.notify_all();
}

void on_subscribe(mosquitto*, void* ctx, int, int count, const int* granted, const mosquitto_property*) {
  auto* s = static_cast<State*>(ctx);
  std::lock_guard lock(s->mutex);
  s->subscribed = count == 1 && granted[0] == 1;
  s->changed.notify_all();
}

void on_message(mosquitto*, void* ctx, const mosquitto_message*, const mosquitto_property*) {
  auto* s = static_cast<State*>(ctx);
  const auto now = Clock::now();
  std::lock_guard lock(s->mutex);
  if (s->received == 0) s->first = now;
  s->last = now;
  if (++s->received == s->expect) s->changed.notify_all();
}

int usage(const std::string& why) {
  std::cerr << "telehub-bench-raw-sub: " << why
            << "\nusage: telehub-bench-raw-sub --port P --expect N [--host H] [--client-id ID] [--timeout-s T]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> opt{
      {"host", "127.0.0.1"}, {"timeout-s", "120"}, {"client-id", "bench-raw-" + std::to_string(::getpid())}};
  if (argc % 2 == 0) return usage("every option needs a value");
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string name = argv[i];
    if (name.rfind("--", 0) != 0) return usage("unexpected argument " + name);
    opt[name.substr(2)] = argv[i + 1];
  }
  if (!opt.count("port") || !opt.count("expect")) return usage("--port and --expect are required");
  State state;
  state.expect = std::atol(opt["expect"].c_str());
  const int timeout_s = std::atoi(opt["timeout-s"].c_str());
  if (state.expect < 1 || timeout_s < 1) return usage("--expect and --timeout-s must be positive");

  mosquitto_lib_init();
  mosquitto* mosq = mosquitto_new(opt["client-id"].c_str(), /*clean_session=*/false, &state);
  if (!mosq) return usage("mosquitto_new failed");
  mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
  mosquitto_int_option(mosq, MOSQ_OPT_TCP_NODELAY, 1);
  mosquitto_connect_v5_callback_set(mosq, on_connect);
  mosquitto_subscribe_v5_callback_set(mosq, on_subscribe);
  mosquitto_message_v5_callback_set(mosq, on_message);
  mosquitto_property* props = nullptr;
  mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, 7 * 24 * 3600);
  int rc = mosquitto_connect_bind_v5(mosq, opt["host"].c_str(), std::atoi(opt["port"].c_str()), 20, nullptr, props);
  mosquitto_property_free_all(&props);
  if (rc != MOSQ_ERR_SUCCESS) return usage(std::string("cannot connect: ") + mosquitto_strerror(rc));
  mosquitto_loop_start(mosq);
  {
    std::unique_lock lock(state.mutex);
    if (!state.changed.wait_for(lock, std::chrono::seconds(10), [&] { return state.subscribed; })) {
      std::cerr << "telehub-bench-raw-sub: not subscribed (connect result " << state.connect_result << ")\n";
      return 1;
    }
  }
  std::cout << "ready" << std::endl;
  long n;
  double elapsed;
  {
    std::unique_lock lock(state.mutex);
    state.changed.wait_for(lock, std::chrono::seconds(timeout_s), [&] { return state.received >= state.expect; });
    n = state.received;
    elapsed = n > 0 ? std::chrono::duration<double>(state.last - state.first).count() : 0.0;
  }
  std::printf("{\"received\":%ld,\"elapsed_s\":%.6f,\"rate\":%.1f}\n", n, elapsed,
              elapsed > 0 ? static_cast<double>(n - 1) / elapsed : 0.0);
  std::fflush(stdout);
  props = nullptr;
  mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, 0);
  mosquitto_disconnect_v5(mosq, 0, props);
  mosquitto_property_free_all(&props);
  mosquitto_loop_stop(mosq, false);
  mosquitto_destroy(mosq);
  mosquitto_lib_cleanup();
  return n == state.expect ? 0 : 1;
}
