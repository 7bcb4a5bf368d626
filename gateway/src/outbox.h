// The gateway's outbox: every sealed message stays here, on disk, until a hub receipt covers
// it (docs/protocol.md, "Receipts"). One file per message, `<dir>/<sequence>.env`, written
// with fsync before the message is first published; a message the hub rejected moves to
// `<dir>/rejected/` for the operator. An empty dir keeps the outbox in memory (tests).
//
// Thread-safety: all methods may be called from any thread (Paho's callback settles entries
// while the owner publishes).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "telehub/core/bytes.h"
#include "telehub/core/error.h"

namespace telehub::gateway {

class Outbox {
 public:
  using Clock = std::chrono::steady_clock;

  // Creates the directory (0700) and loads what a previous run left. Fails with
  // unavailable/outbox_io, or data_loss/outbox_io for a file that is not "<number>.env".
  [[nodiscard]] static Result<std::unique_ptr<Outbox>> open(const std::filesystem::path& dir);

  // Keeps a sealed message durably (temp file, fsync, rename, fsync directory).
  [[nodiscard]] Status add(std::uint64_t sequence, const core::Bytes& sealed);
  // A receipt arrived. Returns false when the sequence was not pending (already settled, or
  // never ours). Rejected messages are kept under rejected/.
  bool settle(std::uint64_t sequence, bool rejected);
  // Messages never sent, or last sent before `cutoff`, oldest sequence first.
  std::vector<std::pair<std::uint64_t, core::Bytes>> due(Clock::time_point cutoff) const;
  void mark_sent(std::uint64_t sequence, Clock::time_point when);

  std::size_t size() const;
  std::uint64_t rejected() const;

 private:
  struct Entry {
    core::Bytes sealed;
    std::optional<Clock::time_point> last_sent;
  };
  explicit Outbox(std::filesystem::path dir) : dir_(std::move(dir)) {}
  std::filesystem::path file_for(std::uint64_t sequence) const;

  std::filesystem::path dir_;
  mutable std::mutex mutex_;
  std::map<std::uint64_t, Entry> entries_;
  std::uint64_t rejected_ = 0;
};

}  // namespace telehub::gateway
