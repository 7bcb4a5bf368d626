// The benchmark's message file: the sealed MQTT messages a run publishes, written once by
// telehub-bench-seal and replayed by telehub-bench-publish. A sequence of records, each
//   u32 topic length (big-endian) | topic bytes | u32 payload length (big-endian) | payload bytes
// Not a telehub format; only the bench programs read it.
//
// Error policy: read_message_file returns false and sets `error` on a missing or truncated file.
// Thread-safety: plain functions and values.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "read_file.h"

namespace telehub::bench {

struct Message {
  std::string topic;
  std::string payload;  // sealed envelope bytes (binary)
};

inline void put_u32(std::string& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

inline bool write_message_file(const std::string& path, const std::vector<Message>& messages, std::string& error) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) {
    error = "cannot create " + path;
    return false;
  }
  std::string buf;
  for (const auto& m : messages) {
    buf.clear();
    put_u32(buf, static_cast<std::uint32_t>(m.topic.size()));
    buf += m.topic;
    put_u32(buf, static_cast<std::uint32_t>(m.payload.size()));
    buf += m.payload;
    if (std::fwrite(buf.data(), 1, buf.size(), f) != buf.size()) {
      std::fclose(f);
      error = "cannot write " + path;
      return false;
    }
  }
  if (std::fclose(f) != 0) {
    error = "cannot write " + path;
    return false;
  }
  return true;
}

inline bool read_message_file(const std::string& path, std::vector<Message>& messages, std::string& error) {
  std::string data;
  if (!read_whole_file(path, data, error)) return false;
  std::size_t pos = 0;
  auto get_u32 = [&](std::uint32_t& v) {
    if (data.size() - pos < 4) return false;
    v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(data[pos + i]);
    pos += 4;
    return true;
  };
  while (pos < data.size()) {
    Message m;
    std::uint32_t len = 0;
    if (!get_u32(len) || data.size() - pos < len) break;
    m.topic.assign(data, pos, len);
    pos += len;
    if (!get_u32(len) || data.size() - pos < len) break;
    m.payload.assign(data, pos, len);
    pos += len;
    messages.push_back(std::move(m));
  }
  if (pos != data.size()) {
    error = path + " is truncated";
    return false;
  }
  return true;
}

}  // namespace telehub::bench
