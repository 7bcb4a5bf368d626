#include "telehub/privacy/pseudonym.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <iterator>

namespace telehub::privacy {

Result<SubjectPseudonym> SubjectPseudonym::parse(std::string_view text) {
  bool ok = text.size() == 32;
  for (char c : text) ok = ok && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
  if (!ok) return core::fail(core::Code::kInvalidArgument, "bad_pseudonym", "not a subject pseudonym");
  return SubjectPseudonym(std::string(text));
}

PseudonymousReading PseudonymousReading::bind(core::Reading reading, const SubjectPseudonym& subject) {
  reading.subject = subject.str();
  return PseudonymousReading(subject, std::move(reading));
}

Result<std::unique_ptr<Pseudonymiser>> Pseudonymiser::from_key(std::span<const std::uint8_t> key) {
  if (key.size() != kKeySize) return core::fail(core::Code::kInvalidArgument, "bad_key", "pseudonym key must be 32 bytes");
  return std::unique_ptr<Pseudonymiser>(new Pseudonymiser(core::Bytes(key.begin(), key.end())));
}

Result<std::unique_ptr<Pseudonymiser>> Pseudonymiser::open_key_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    std::filesystem::create_directories(path.parent_path(), ec);
    auto key = core::random_bytes(kKeySize);
    if (!key) return tl::unexpected(key.error());
    // O_EXCL: two processes creating the key at once must not end up with different keys.
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
      bool ok = ::write(fd, key->data(), key->size()) == static_cast<ssize_t>(key->size()) && ::fsync(fd) == 0;
      ::close(fd);
      if (!ok) return core::fail(core::Code::kUnavailable, "key_file", "cannot write pseudonym key file");
    } else if (errno != EEXIST) {
      return core::fail(core::Code::kUnavailable, "key_file", "cannot create pseudonym key file");
    }
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return core::fail(core::Code::kUnavailable, "key_file", "cannot read pseudonym key file");
  core::Bytes key((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (key.size() != kKeySize)
    return core::fail(core::Code::kDataLoss, "bad_key_file", "pseudonym key file does not hold a 32-byte key");
  return from_key(key);
}

std::string Pseudonymiser::pseudonym_key_ad() { return key_ad("pseudonym", "subject"); }

Result<std::unique_ptr<Pseudonymiser>> Pseudonymiser::open_wrapped_key_file(const std::filesystem::path& path,
                                                                          const Kek& kek) {
  auto key = open_or_create_wrapped_key(path, kek, pseudonym_key_ad(), kKeySize, "pseudonym key");
  if (!key) return tl::unexpected(key.error());
  auto p = from_key(*key);
  OPENSSL_cleanse(key->data(), key->size());
  return p;
}

std::string Pseudonymiser::device_serial(std::string_view serial) const {
  std::string message = "serial:";
  message += serial;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()), reinterpret_cast<const unsigned char*>(message.data()),
       message.size(), mac, &len);
  return core::to_hex(std::span<const std::uint8_t>(mac, 16));
}

SubjectPseudonym Pseudonymiser::subject(std::string_view subject_id) const {
  std::string message = "subject:";
  message += subject_id;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()), reinterpret_cast<const unsigned char*>(message.data()),
       message.size(), mac, &len);
  return SubjectPseudonym(core::to_hex(std::span<const std::uint8_t>(mac, 16)));
}

}  // namespace telehub::privacy
