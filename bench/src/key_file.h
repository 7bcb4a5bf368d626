// The soak's device key file: the devices telehub-bench-enroll enrolled, with their keys in
// clear, for telehub-bench-soak-publish only (the gateway's provisioning files, one JSON file
// per device, would be a million files). Not a telehub format; it holds secrets (test keys of
// a bench data directory), so it is written with mode 0600. Layout:
//   the line "telehub-bench-keys 1\n", then per device
//   u8 device-id length | device id | u32 key id (big-endian) | 32 key bytes
// in enrolment order (subject index 0, 1, 2, ...).
//
// Error policy: the functions return false and set `error` on a missing, foreign or truncated
// file or a failed write. Thread-safety: plain functions and values.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "read_file.h"

namespace telehub::bench {

struct DeviceKey {
  std::string device_id;
  std::uint32_t key_id = 0;
  std::array<std::uint8_t, 32> key{};
};

inline constexpr const char* kKeyFileMagic = "telehub-bench-keys 1\n";

inline bool write_key_file(const std::string& path, const std::vector<DeviceKey>& devices, std::string& error) {
  ::unlink(path.c_str());
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  std::FILE* f = fd >= 0 ? ::fdopen(fd, "wb") : nullptr;
  if (!f) {
    if (fd >= 0) ::close(fd);
    error = "cannot create " + path;
    return false;
  }
  std::string buf = kKeyFileMagic;
  bool ok = true;
  for (const auto& d : devices) {
    if (d.device_id.empty() || d.device_id.size() > 255) {
      error = "device id length out of range";
      ok = false;
      break;
    }
    buf.push_back(static_cast<char>(d.device_id.size()));
    buf += d.device_id;
    for (int shift = 24; shift >= 0; shift -= 8) buf.push_back(static_cast<char>((d.key_id >> shift) & 0xff));
    buf.append(reinterpret_cast<const char*>(d.key.data()), d.key.size());
    if (buf.size() >= (1 << 20)) {
      ok = std::fwrite(buf.data(), 1, buf.size(), f) == buf.size();
      buf.clear();
      if (!ok) break;
    }
  }
  if (ok && !buf.empty()) ok = std::fwrite(buf.data(), 1, buf.size(), f) == buf.size();
  if (std::fclose(f) != 0) ok = false;
  if (!ok && error.empty()) error = "cannot write " + path;
  return ok;
}

// Reads at most `limit` devices (0: all).
inline bool read_key_file(const std::string& path, std::vector<DeviceKey>& devices, std::size_t limit,
                          std::string& error) {
  std::string data;
  if (!read_whole_file(path, data, error)) return false;
  const std::string magic = kKeyFileMagic;
  if (data.compare(0, magic.size(), magic) != 0) {
    error = path + " is not a telehub-bench-enroll key file";
    return false;
  }
  std::size_t pos = magic.size();
  while (pos < data.size() && (limit == 0 || devices.size() < limit)) {
    const std::size_t len = static_cast<unsigned char>(data[pos]);
    if (len == 0 || data.size() - pos < 1 + len + 4 + 32) {
      error = path + " is truncated";
      return false;
    }
    DeviceKey d;
    d.device_id.assign(data, pos + 1, len);
    pos += 1 + len;
    for (int i = 0; i < 4; ++i) d.key_id = (d.key_id << 8) | static_cast<unsigned char>(data[pos + i]);
    pos += 4;
    for (std::size_t i = 0; i < d.key.size(); ++i) d.key[i] = static_cast<std::uint8_t>(data[pos + i]);
    pos += d.key.size();
    devices.push_back(std::move(d));
  }
  return true;
}

}  // namespace telehub::bench
