#include "telehub/research/research_key.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <fstream>
#include <iterator>

namespace telehub::research {
namespace {

std::array<unsigned char, 32> hmac(const core::Bytes& key, const std::string& message) {
  std::array<unsigned char, 32> mac{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(message.data()),
       message.size(), mac.data(), &len);
  return mac;
}

}  // namespace

ResearchKey::~ResearchKey() {
  if (!key_.empty()) OPENSSL_cleanse(key_.data(), key_.size());
}

Result<ResearchKey> ResearchKey::from_key(std::span<const std::uint8_t> key) {
  if (key.size() != kKeySize) return core::fail(core::Code::kInvalidArgument, "bad_key", "research key must be 32 bytes");
  ResearchKey k;
  k.key_.assign(key.begin(), key.end());
  return k;
}

std::string ResearchKey::key_ad() { return privacy::key_ad("research", "study"); }

Result<ResearchKey> ResearchKey::open_wrapped_key_file(const std::filesystem::path& path, const privacy::Kek& kek) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    std::filesystem::create_directories(path.parent_path(), ec);
    auto key = core::random_bytes(kKeySize);
    if (!key) return tl::unexpected(key.error());
    auto blob = kek.wrap(*key, key_ad());
    OPENSSL_cleanse(key->data(), key->size());
    if (!blob) return tl::unexpected(blob.error());
    // O_EXCL: two processes creating the key at once must not end up with different keys.
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
      bool ok = ::write(fd, blob->data(), blob->size()) == static_cast<ssize_t>(blob->size()) && ::fsync(fd) == 0;
      ::close(fd);
      if (!ok) {
        ::unlink(path.c_str());
        return core::fail(core::Code::kUnavailable, "key_file", "cannot write the research key file");
      }
    } else if (errno != EEXIST) {
      return core::fail(core::Code::kUnavailable, "key_file", "cannot create the research key file");
    }
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return core::fail(core::Code::kUnavailable, "key_file", "cannot read the research key file");
  core::Bytes blob((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (blob.empty()) return core::fail(core::Code::kDataLoss, "bad_key_file", "the research key file is empty");
  auto key = kek.unwrap(blob, key_ad());
  if (!key)
    return core::fail(core::Code::kDataLoss, "unwrap_failed",
                      "the research key file does not unwrap under this KEK (wrong KEK, or damaged file)");
  auto k = from_key(*key);
  OPENSSL_cleanse(key->data(), key->size());
  return k;
}

std::string ResearchKey::study_pseudonym(std::string_view study_id, std::string_view subject_pseudonym) const {
  std::string message = "study|";
  message.append(study_id).append("|").append(subject_pseudonym);
  auto mac = hmac(key_, message);
  return core::to_hex(std::span<const std::uint8_t>(mac.data(), 16));
}

int ResearchKey::shift_days(std::string_view study_id, std::string_view subject_pseudonym) const {
  std::string message = "shift|";
  message.append(study_id).append("|").append(subject_pseudonym);
  auto mac = hmac(key_, message);
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | mac[static_cast<std::size_t>(i)];
  const int days = 1 + static_cast<int>(v % kMaxShiftDays);
  return (mac[8] & 1) ? -days : days;
}

}  // namespace telehub::research
