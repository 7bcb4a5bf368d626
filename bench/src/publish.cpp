// telehub-bench-publish: a lean QoS 1 publisher on libmosquitto (Paho MQTT C++ publishes only
// 13-20 k msg/s, too slow to load a broker). Replays a message file (message_file.h) to a
// broker's plaintext listener, keeping at most --window messages unacknowledged, and waits for
// every PUBACK.
//
//   telehub-bench-publish --port P --in FILE [--host 127.0.0.1] [--part I --parts K]
//                         [--window 1000] [--protocol 5|311] [--timeout-s 120]
//
// With MQTT 5 the broker's Receive Maximum caps the window (Mosquitto sends its
// max_inflight_messages, 20 in telehub's configuration), which makes one publisher wait on round
// trips; MQTT 3.1.1 has no such flow control, so bench/run.mjs publishes with --protocol 311.
// With --parts K it publishes only messages I, I+K, I+2K, ... so K processes can share a file.
// Prints one JSON line: {"published":N,"acked":N,"refused":N,"elapsed_s":S,"rate":R}, where
// elapsed is first publish to last PUBACK and `refused` counts PUBACKs with a failure reason.
// Exit status 0 only when every message was acknowledged without a failure reason.
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
#include <vector>

#include "message_file.h"

namespace {

using Clock = std::chrono::steady_clock;

struct State {
  std::mutex mutex;
  std::condition_variable changed;
  bool connected = false;
  int connect_result = -1;
  long acked = 0;
  long refused = 0;
  Clock::time_point last_ack;
};

void on_connect(mosquitto*, void* ctx, int rc, int, const mosquitto_property*) {
  auto* s = static_cast<State*>(ctx);
  std::lock_guard lock(s->mutex);
  s->connected = rc == 0;
  s->connect_result = rc;
  s->changed.notify_all();
}

void on_publish(mosquitto*, void* ctx, int, int reason_code, const mosquitto_property*) {
  auto* s = static_cast<State*>(ctx);
  std::lock_guard lock(s->mutex);
  ++s->acked;
  if (reason_code >= 0x80) ++s->refused;
  s->last_ack = Clock::now();
  s->changed.notify_all();
}

int usage(const std::string& why) {
  std::cerr << "telehub-bench-publish: " << why
            << "\nusage: telehub-bench-publish --port P --in FILE [--host H] [--part I --parts K] [--window N] "
               "[--protocol 5|311] [--timeout-s T]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> opt{{"host", "127.0.0.1"}, {"part", "0"},     {"parts", "1"},
                                         {"window", "1000"},    {"protocol", "5"}, {"timeout-s", "120"}};
  if (argc % 2 == 0) return usage("every option needs a value");
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string name = argv[i];
    if (name.rfind("--", 0) != 0) return usage("unexpected argument " + name);
    opt[name.substr(2)] = argv[i + 1];
  }
  if (!opt.count("port") || !opt.count("in")) return usage("--port and --in are required");
  const int port = std::atoi(opt["port"].c_str());
  const long part = std::atol(opt["part"].c_str());
  const long parts = std::atol(opt["parts"].c_str());
  const long window = std::atol(opt["window"].c_str());
  const int timeout_s = std::atoi(opt["timeout-s"].c_str());
  if (parts < 1 || part < 0 || part >= parts || window < 1 || timeout_s < 1) return usage("bad --part/--parts/--window/--timeout-s");

  std::vector<telehub::bench::Message> all;
  std::string error;
  if (!telehub::bench::read_message_file(opt["in"], all, error)) return usage(error);
  std::vector<const telehub::bench::Message*> mine;
  for (std::size_t i = static_cast<std::size_t>(part); i < all.size(); i += static_cast<std::size_t>(parts))
    mine.push_back(&all[i]);

  mosquitto_lib_init();
  State state;
  const std::string client_id = "bench-pub-" + std::to_string(::getpid());
  mosquitto* mosq = mosquitto_new(client_id.c_str(), true, &state);
  if (!mosq) return usage("mosquitto_new failed");
  const bool v5 = opt["protocol"] == "5";
  mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, v5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
  mosquitto_int_option(mosq, MOSQ_OPT_TCP_NODELAY, 1);
  // libmosquitto holds back publishes beyond its in-flight limit (and, with MQTT 5, beyond the
  // broker's Receive Maximum) and sends them as PUBACKs come in; our own window bounds memory.
  if (!v5) mosquitto_max_inflight_messages_set(mosq, static_cast<unsigned int>(window));
  mosquitto_connect_v5_callback_set(mosq, on_connect);
  mosquitto_publish_v5_callback_set(mosq, on_publish);
  if (int rc = mosquitto_connect_bind_v5(mosq, opt["host"].c_str(), port, 60, nullptr, nullptr); rc != MOSQ_ERR_SUCCESS)
    return usage(std::string("cannot connect: ") + mosquitto_strerror(rc));
  mosquitto_loop_start(mosq);
  const auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  {
    std::unique_lock lock(state.mutex);
    if (!state.changed.wait_until(lock, deadline, [&] { return state.connect_result >= 0; }) || !state.connected) {
      std::cerr << "telehub-bench-publish: not connected (" << state.connect_result << ")\n";
      return 1;
    }
  }

  const auto t0 = Clock::now();
  long published = 0;
  bool timed_out = false;
  for (const auto* m : mine) {
    {
      std::unique_lock lock(state.mutex);
      if (!state.changed.wait_until(lock, deadline, [&] { return published - state.acked < window; })) {
        timed_out = true;
        break;
      }
    }
    int rc = mosquitto_publish_v5(mosq, nullptr, m->topic.c_str(), static_cast<int>(m->payload.size()),
                                  m->payload.data(), 1, false, nullptr);
    if (rc != MOSQ_ERR_SUCCESS) {
      std::cerr << "telehub-bench-publish: publish failed: " << mosquitto_strerror(rc) << "\n";
      break;
    }
    ++published;
  }
  long acked = 0, refused = 0;
  Clock::time_point last;
  {
    std::unique_lock lock(state.mutex);
    if (!state.changed.wait_until(lock, deadline, [&] { return state.acked >= published; })) timed_out = true;
    acked = state.acked;
    refused = state.refused;
    last = state.last_ack;
  }
  mosquitto_disconnect(mosq);
  mosquitto_loop_stop(mosq, false);
  mosquitto_destroy(mosq);
  mosquitto_lib_cleanup();

  const double elapsed = std::chrono::duration<double>((acked > 0 ? last : Clock::now()) - t0).count();
  std::printf("{\"published\":%ld,\"acked\":%ld,\"refused\":%ld,\"elapsed_s\":%.6f,\"rate\":%.1f,\"timed_out\":%s}\n",
              published, acked, refused, elapsed, elapsed > 0 ? static_cast<double>(acked) / elapsed : 0.0,
              timed_out ? "true" : "false");
  std::fflush(stdout);
  const bool ok = !timed_out && published == static_cast<long>(mine.size()) && acked == published && refused == 0;
  return ok ? 0 : 1;
}
