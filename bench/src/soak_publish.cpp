// telehub-bench-soak-publish: the soak's paced publisher. For --seconds it publishes --rate
// messages a second (QoS 1, MQTT 3.1.1, libmosquitto as telehub-bench-publish) to a broker's
// plaintext listener, round robin over the first --devices devices of a key file written by
// telehub-bench-enroll (key_file.h), sealing each message when it is due, exactly as a gateway
// does (envelope::encode_payload, envelope::seal): one heart rate (LOINC 8867-4, 60-99 /min),
// reading time = now, each device's sequence counting up from --first-sequence.
//
//   telehub-bench-soak-publish --port P --keys FILE [--rate 16700] [--seconds 600] [--devices 0]
//                              [--connections 2] [--first-sequence 1] [--interval-s 10]
//                              [--window 5000] [--host 127.0.0.1] [--ack-timeout-s 120]
//
// --devices 0 means every device in the file. The load is split over --connections MQTT
// connections, each driven by its own thread (no libmosquitto network thread, which more than
// halves the system time per message) that seals, publishes each burst of due messages under
// TCP_CORK and reads the PUBACKs in between. Connection c owns the devices c, c+C, c+2C, ...
// and sends message j at t0 + j / (rate / C) by the monotonic clock (checked every
// millisecond; a connection that fell behind sends what is due at once, so the schedule, not
// the rate, is kept). At most --window messages per connection are unacknowledged; a
// connection that waits on its window falls behind, which shows as lag.
//
// Output (stdout): {"event":"start",...} once connected, just before the first publish; then one
// JSON line per --interval-s from the first publish:
//   {"interval":K,"t_s":T,"published":N,"acked":A,"rate":R,"max_lag_ms":L}
// with N and A cumulative, R = messages published in that interval / its length, L = how late
// the most overdue message of the interval was sent. Then one summary line:
//   {"published":N,"acked":A,"refused":F,"offered_rate":R,"seconds":S,"elapsed_s":E,
//    "rate":N/E,"min_interval_rate":M,"max_lag_ms":L,"devices":D,"connections":C,"timed_out":B}
// where elapsed is first publish to last publish (to within 5 ms). Exit status 0 only when
// every message was published and acknowledged without a failure reason.
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "key_file.h"
#include "telehub/core/reading.h"
#include "telehub/core/time.h"
#include "telehub/envelope/envelope.h"
#include "telehub/envelope/payload.h"
#include "telehub/gateway/provisioning.h"

namespace {

namespace core = telehub::core;
namespace envelope = telehub::envelope;
using telehub::bench::DeviceKey;
using Clock = std::chrono::steady_clock;

// One MQTT connection, driven by one thread without libmosquitto's network thread: that
// thread publishes (libmosquitto writes each message at once) and calls mosquitto_loop() to
// read PUBACKs, so the callbacks run on it. The atomics are for the reporter.
struct Connection {
  mosquitto* mosq = nullptr;
  int connect_result = -1;  // owning thread only (set in on_connect)
  std::atomic<long> published{0};
  std::atomic<long> acked{0};
  std::atomic<long> refused{0};
  std::atomic<std::int64_t> max_lag_us{0};  // since the reporter last took it
  std::atomic<bool> finished{false};        // the thread has published its share, or stopped
  std::mutex mutex;
  std::string error;                        // guarded by mutex; set when the thread stops early

  void fail(std::string why) {
    std::lock_guard lock(mutex);
    error = std::move(why);
  }
};

void on_connect(mosquitto*, void* ctx, int rc, int, const mosquitto_property*) {
  static_cast<Connection*>(ctx)->connect_result = rc;
}

void on_publish(mosquitto*, void* ctx, int, int reason_code, const mosquitto_property*) {
  auto* c = static_cast<Connection*>(ctx);
  if (reason_code >= 0x80) c->refused.fetch_add(1, std::memory_order_relaxed);
  c->acked.fetch_add(1, std::memory_order_relaxed);
}

// TCP_CORK around a burst of publishes: the kernel sends the burst in full segments, so the
// broker reads many messages per read instead of one (like many gateways' traffic arriving at
// once, not one connection's per-message round of syscalls).
void cork(mosquitto* mosq, int on) {
  const int fd = mosquitto_socket(mosq);
  if (fd >= 0) ::setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on);
}

void note_lag(std::atomic<std::int64_t>& max, std::int64_t us) {
  for (std::int64_t cur = max.load(std::memory_order_relaxed);
       us > cur && !max.compare_exchange_weak(cur, us, std::memory_order_relaxed);) {
  }
}

int usage(const std::string& why) {
  std::cerr << "telehub-bench-soak-publish: " << why
            << "\nusage: telehub-bench-soak-publish --port P --keys FILE [--rate R] [--seconds S] [--devices D] "
               "[--connections C] [--first-sequence Q] [--interval-s I] [--window W] [--host H] [--ack-timeout-s T]\n";
  return 2;
}

// One sealed single heart rate for device `d`'s message with this sequence.
bool seal_one(const DeviceKey& d, std::size_t device_index, std::uint64_t sequence, std::string& topic,
              std::vector<std::uint8_t>& out, std::string& error) {
  core::Reading r;
  r.code = "8867-4";
  r.value = static_cast<double>(60 + (device_index * 31 + sequence * 7) % 40);
  r.unit = "/min";
  r.time = core::system_clock().now();
  auto payload = envelope::encode_payload(std::span(&r, 1));
  if (!payload) {
    error = payload.error().to_string();
    return false;
  }
  envelope::Header h;
  h.device_id = d.device_id;
  h.key_id = d.key_id;
  h.sequence = sequence;
  auto sealed = envelope::seal(h, d.key, std::span(reinterpret_cast<const std::uint8_t*>(payload->data()), payload->size()));
  if (!sealed) {
    error = sealed.error().to_string();
    return false;
  }
  out = std::move(*sealed);
  topic = telehub::gateway::readings_topic_for(d.device_id);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> opt{{"host", "127.0.0.1"}, {"rate", "16700"},      {"seconds", "600"},
                                         {"devices", "0"},      {"connections", "2"},    {"first-sequence", "1"},
                                         {"interval-s", "10"},  {"window", "5000"},      {"ack-timeout-s", "120"}};
  if (argc % 2 == 0) return usage("every option needs a value");
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string name = argv[i];
    if (name.rfind("--", 0) != 0) return usage("unexpected argument " + name);
    opt[name.substr(2)] = argv[i + 1];
  }
  if (!opt.count("port") || !opt.count("keys")) return usage("--port and --keys are required");
  const int port = std::atoi(opt["port"].c_str());
  const long rate = std::atol(opt["rate"].c_str());
  const long seconds = std::atol(opt["seconds"].c_str());
  const long want_devices = std::atol(opt["devices"].c_str());
  const long connections = std::atol(opt["connections"].c_str());
  const long first_sequence = std::atol(opt["first-sequence"].c_str());
  const long interval_s = std::atol(opt["interval-s"].c_str());
  const long window = std::atol(opt["window"].c_str());
  const long ack_timeout_s = std::atol(opt["ack-timeout-s"].c_str());
  if (rate < 1 || seconds < 1 || want_devices < 0 || connections < 1 || connections > 64 || first_sequence < 1 ||
      interval_s < 1 || window < 1 || ack_timeout_s < 1)
    return usage("--rate, --seconds, --connections (<= 64), --first-sequence, --interval-s, --window and "
                 "--ack-timeout-s must be >= 1, --devices >= 0");

  std::vector<DeviceKey> devices;
  std::string error;
  if (!telehub::bench::read_key_file(opt["keys"], devices, static_cast<std::size_t>(want_devices), error))
    return usage(error);
  if (devices.empty() || (want_devices > 0 && static_cast<long>(devices.size()) < want_devices))
    return usage("the key file holds " + std::to_string(devices.size()) + " devices, fewer than --devices");
  const long device_count = static_cast<long>(devices.size());
  if (device_count < connections) return usage("fewer devices than --connections");
  const long total = rate * seconds;

  mosquitto_lib_init();
  std::vector<std::unique_ptr<Connection>> conns;
  const auto connect_deadline = Clock::now() + std::chrono::seconds(20);
  for (long c = 0; c < connections; ++c) {
    auto conn = std::make_unique<Connection>();
    const std::string client_id = "bench-soak-" + std::to_string(::getpid()) + "-" + std::to_string(c);
    conn->mosq = mosquitto_new(client_id.c_str(), true, conn.get());
    if (!conn->mosq) return usage("mosquitto_new failed");
    mosquitto_int_option(conn->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_int_option(conn->mosq, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_max_inflight_messages_set(conn->mosq, static_cast<unsigned int>(window));
    mosquitto_connect_v5_callback_set(conn->mosq, on_connect);
    mosquitto_publish_v5_callback_set(conn->mosq, on_publish);
    if (int rc = mosquitto_connect_bind_v5(conn->mosq, opt["host"].c_str(), port, 60, nullptr, nullptr);
        rc != MOSQ_ERR_SUCCESS)
      return usage(std::string("cannot connect: ") + mosquitto_strerror(rc));
    while (conn->connect_result < 0 && Clock::now() < connect_deadline)
      if (mosquitto_loop(conn->mosq, 100, 1) != MOSQ_ERR_SUCCESS) break;
    if (conn->connect_result != 0) {
      std::cerr << "telehub-bench-soak-publish: connection " << c << " not accepted (" << conn->connect_result << ")\n";
      return 1;
    }
    conns.push_back(std::move(conn));
  }

  // Connection c: devices c, c+C, ...; its share of the messages, evenly paced.
  const auto t0 = Clock::now() + std::chrono::milliseconds(50);
  std::printf("{\"event\":\"start\",\"devices\":%ld,\"connections\":%ld}\n", device_count, connections);
  std::fflush(stdout);
  std::vector<std::thread> threads;
  for (long c = 0; c < connections; ++c)
    threads.emplace_back([&, c] {
      Connection& conn = *conns[static_cast<std::size_t>(c)];
      const long my_devices = (device_count - c + connections - 1) / connections;
      const long my_total = total / connections + (c < total % connections ? 1 : 0);
      const double my_rate = static_cast<double>(rate) / static_cast<double>(connections);
      const auto due = [&](long j) {
        return t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(j / my_rate));
      };
      const auto give_up = t0 + std::chrono::seconds(seconds + ack_timeout_s);
      std::string topic;
      std::vector<std::uint8_t> payload;
      std::string why;
      long j = 0;
      auto stop = [&](std::string reason) {
        conn.fail(std::move(reason));
        conn.finished = true;
      };
      std::this_thread::sleep_until(t0);
      while (j < my_total) {
        const auto now = Clock::now();
        const long due_now =
            std::min(my_total, static_cast<long>(std::chrono::duration<double>(now - t0).count() * my_rate) + 1);
        if (j < due_now)
          note_lag(conn.max_lag_us, std::chrono::duration_cast<std::chrono::microseconds>(now - due(j)).count());
        cork(conn.mosq, 1);
        for (; j < due_now && conn.published.load(std::memory_order_relaxed) - conn.acked.load() < window; ++j) {
          const long slot = j % my_devices;
          const auto index = static_cast<std::size_t>(c + slot * connections);
          const auto sequence = static_cast<std::uint64_t>(first_sequence + j / my_devices);
          if (!seal_one(devices[index], index, sequence, topic, payload, why)) return stop("seal failed: " + why);
          const int rc = mosquitto_publish_v5(conn.mosq, nullptr, topic.c_str(), static_cast<int>(payload.size()),
                                              payload.data(), 1, false, nullptr);
          if (rc != MOSQ_ERR_SUCCESS) return stop(std::string("publish failed: ") + mosquitto_strerror(rc));
          conn.published.fetch_add(1, std::memory_order_relaxed);
        }
        cork(conn.mosq, 0);
        // Read the PUBACKs that came in (and write what the socket did not take yet).
        if (int rc = mosquitto_loop(conn.mosq, 0, 1); rc != MOSQ_ERR_SUCCESS)
          return stop(std::string("connection lost: ") + mosquitto_strerror(rc));
        if (j < due_now) {  // the window is full: wait for PUBACKs
          if (Clock::now() >= give_up) return stop("timed out waiting for PUBACKs");
          if (int rc = mosquitto_loop(conn.mosq, 1, 1); rc != MOSQ_ERR_SUCCESS)
            return stop(std::string("connection lost: ") + mosquitto_strerror(rc));
          continue;
        }
        if (j < my_total) std::this_thread::sleep_until(std::max(due(j), Clock::now() + std::chrono::milliseconds(1)));
      }
      conn.finished = true;
      while (conn.acked.load() < conn.published.load() && Clock::now() < give_up)
        if (int rc = mosquitto_loop(conn.mosq, 10, 1); rc != MOSQ_ERR_SUCCESS)
          return stop(std::string("connection lost: ") + mosquitto_strerror(rc));
    });

  // Report every interval until every thread has published its share (or stopped).
  struct Interval {
    double t_s;
    long published;
    double rate;
    double max_lag_ms;
  };
  std::vector<Interval> intervals;
  long last_published = 0;
  double last_t = 0;
  double overall_max_lag_ms = 0;
  auto sum = [&](auto field) {
    long n = 0;
    for (auto& c : conns) n += field(*c);
    return n;
  };
  auto all_done = [&] {
    for (auto& c : conns)
      if (!c->finished.load()) return false;
    return true;
  };
  for (long k = 1;; ++k) {
    // The last interval ends when every thread has sent its share (the last messages are due
    // within a millisecond of --seconds), so no sliver of an interval is left over.
    const bool last = k * interval_s >= seconds;
    const auto boundary = last ? t0 + std::chrono::seconds(seconds + ack_timeout_s) : t0 + std::chrono::seconds(k * interval_s);
    while (Clock::now() < boundary && !all_done())
      std::this_thread::sleep_until(std::min(boundary, Clock::now() + std::chrono::milliseconds(5)));
    const bool done = all_done();
    const double t = std::chrono::duration<double>(Clock::now() - t0).count();
    const long published = sum([](Connection& c) { return c.published.load(); });
    const long acked = sum([](Connection& c) { return c.acked.load(); });
    std::int64_t lag_us = 0;
    for (auto& c : conns) lag_us = std::max(lag_us, c->max_lag_us.exchange(0));
    const double lag_ms = static_cast<double>(lag_us) / 1000.0;
    overall_max_lag_ms = std::max(overall_max_lag_ms, lag_ms);
    const double rate_k = t > last_t ? static_cast<double>(published - last_published) / (t - last_t) : 0;
    // A last interval shorter than --interval-s (--seconds not a multiple) is printed but kept
    // out of the minimum unless it is the only one.
    if (!last || t - last_t >= interval_s * 0.999 || intervals.empty())
      intervals.push_back({t, published - last_published, rate_k, lag_ms});
    std::printf("{\"interval\":%ld,\"t_s\":%.3f,\"published\":%ld,\"acked\":%ld,\"rate\":%.1f,\"max_lag_ms\":%.1f}\n", k, t,
                published, acked, rate_k, lag_ms);
    std::fflush(stdout);
    last_published = published;
    last_t = t;
    if (done || last) break;
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();

  // Then every PUBACK (each thread waits for its own, until t0 + --seconds + --ack-timeout-s).
  for (auto& th : threads) th.join();
  bool timed_out = false;
  long published = 0, acked = 0, refused = 0;
  for (auto& c : conns) {
    published += c->published.load();
    acked += c->acked.load();
    refused += c->refused.load();
    if (c->acked.load() < c->published.load()) timed_out = true;
    if (!c->error.empty()) {
      std::cerr << "telehub-bench-soak-publish: " << c->error << "\n";
      timed_out = true;
    }
  }
  for (auto& c : conns) {
    mosquitto_disconnect(c->mosq);
    mosquitto_destroy(c->mosq);
  }
  mosquitto_lib_cleanup();

  double min_rate = intervals.empty() ? 0 : intervals.front().rate;
  for (const auto& i : intervals) min_rate = std::min(min_rate, i.rate);
  std::printf("{\"published\":%ld,\"acked\":%ld,\"refused\":%ld,\"offered_rate\":%ld,\"seconds\":%ld,\"elapsed_s\":%.3f,"
              "\"rate\":%.1f,\"min_interval_rate\":%.1f,\"max_lag_ms\":%.1f,\"devices\":%ld,\"connections\":%ld,"
              "\"timed_out\":%s}\n",
              published, acked, refused, rate, seconds, elapsed, elapsed > 0 ? static_cast<double>(published) / elapsed : 0.0,
              min_rate, overall_max_lag_ms, device_count, connections, timed_out ? "true" : "false");
  std::fflush(stdout);
  const bool ok = !timed_out && published == total && acked == published && refused == 0;
  return ok ? 0 : 1;
}
