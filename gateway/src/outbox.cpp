#include "outbox.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <fstream>
#include <iterator>

#include "telehub/core/log.h"
#include "telehub/core/unique_fd.h"

namespace telehub::gateway {
namespace {

using core::Code;

tl::unexpected<core::Error> io_error(const std::string& what) {
  return core::fail(Code::kUnavailable, "outbox_io", what + ": " + std::error_code(errno, std::generic_category()).message());
}

Status fsync_dir(const std::filesystem::path& dir) {
  core::UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0 || ::fsync(fd.get()) != 0) return io_error("cannot fsync " + dir.string());
  return {};
}

}  // namespace

std::filesystem::path Outbox::file_for(std::uint64_t sequence) const {
  return dir_ / (std::to_string(sequence) + ".env");
}

Result<std::unique_ptr<Outbox>> Outbox::open(const std::filesystem::path& dir) {
  std::unique_ptr<Outbox> box(new Outbox(dir));
  if (dir.empty()) return box;
  std::error_code ec;
  std::filesystem::create_directories(dir / "rejected", ec);
  if (ec) return core::fail(Code::kUnavailable, "outbox_io", "cannot create " + dir.string() + ": " + ec.message());
  ::chmod(dir.c_str(), 0700);
  for (const auto& item : std::filesystem::directory_iterator(dir, ec)) {
    if (!item.is_regular_file()) continue;
    const std::string name = item.path().filename().string();
    if (name.ends_with(".tmp")) {  // a write that a crash interrupted: it was never published
      std::filesystem::remove(item.path(), ec);
      continue;
    }
    std::uint64_t seq = 0;
    auto [end, err] = std::from_chars(name.data(), name.data() + name.size(), seq);
    if (err != std::errc() || std::string_view(end) != ".env")
      return core::fail(Code::kDataLoss, "outbox_io", "unexpected file in outbox: " + item.path().string());
    std::ifstream in(item.path(), std::ios::binary);
    core::Bytes bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) return io_error("cannot read " + item.path().string());
    box->entries_[seq] = Entry{std::move(bytes), std::nullopt};
  }
  if (ec) return core::fail(Code::kUnavailable, "outbox_io", "cannot list " + dir.string() + ": " + ec.message());
  return box;
}

Status Outbox::add(std::uint64_t sequence, const core::Bytes& sealed) {
  if (!dir_.empty()) {
    auto file = file_for(sequence);
    auto tmp = file;
    tmp += ".tmp";
    core::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (fd.get() < 0) return io_error("cannot write " + tmp.string());
    for (std::size_t off = 0; off < sealed.size();) {
      ssize_t n = ::write(fd.get(), sealed.data() + off, sealed.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return io_error("cannot write " + tmp.string());
      off += static_cast<std::size_t>(n);
    }
    if (::fsync(fd.get()) != 0) return io_error("cannot fsync " + tmp.string());
    fd.reset();
    if (::rename(tmp.c_str(), file.c_str()) != 0) return io_error("cannot rename " + tmp.string());
    if (auto s = fsync_dir(dir_); !s) return s;
  }
  std::lock_guard lock(mutex_);
  entries_[sequence] = Entry{sealed, std::nullopt};
  return {};
}

bool Outbox::settle(std::uint64_t sequence, bool rejected) {
  {
    std::lock_guard lock(mutex_);
    if (entries_.erase(sequence) == 0) return false;
    if (rejected) ++rejected_;
  }
  if (!dir_.empty()) {
    std::error_code ec;
    if (rejected)
      std::filesystem::rename(file_for(sequence), dir_ / "rejected" / file_for(sequence).filename(), ec);
    else
      std::filesystem::remove(file_for(sequence), ec);
    // A file left behind is only resent and answered as a duplicate: log, don't fail.
    if (ec) core::log_warn("gateway", "outbox: cannot settle " + file_for(sequence).string() + ": " + ec.message());
  }
  return true;
}

std::vector<std::pair<std::uint64_t, core::Bytes>> Outbox::due(Clock::time_point cutoff) const {
  std::vector<std::pair<std::uint64_t, core::Bytes>> out;
  std::lock_guard lock(mutex_);
  for (const auto& [seq, e] : entries_)
    if (!e.last_sent || *e.last_sent < cutoff) out.emplace_back(seq, e.sealed);
  return out;
}

void Outbox::mark_sent(std::uint64_t sequence, Clock::time_point when) {
  std::lock_guard lock(mutex_);
  if (auto it = entries_.find(sequence); it != entries_.end()) it->second.last_sent = when;
}

std::size_t Outbox::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

std::uint64_t Outbox::rejected() const {
  std::lock_guard lock(mutex_);
  return rejected_;
}

}  // namespace telehub::gateway
