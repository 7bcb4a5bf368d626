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
  auto key = privacy::open_or_create_wrapped_key(path, kek, key_ad(), kKeySize, "research key");
  if (!key) return tl::unexpected(key.error());
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
