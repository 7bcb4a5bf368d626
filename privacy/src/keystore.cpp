#include "telehub/privacy/keystore.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>

namespace telehub::privacy {
namespace {

using core::Code;

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\n' || s.front() == '\r' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n' || s.back() == '\r' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

// True when `path` is `dir` or lies below it (after resolving symlinks and "..").
bool inside(const std::filesystem::path& path, const std::filesystem::path& dir) {
  std::error_code ec;
  auto p = std::filesystem::weakly_canonical(std::filesystem::absolute(path, ec), ec);
  auto d = std::filesystem::weakly_canonical(std::filesystem::absolute(dir, ec), ec);
  if (d.empty()) return false;
  auto pi = p.begin();
  for (auto di = d.begin(); di != d.end(); ++di, ++pi) {
    if (di->empty()) continue;  // trailing separator
    if (pi == p.end() || *pi != *di) return false;
  }
  return true;
}

}  // namespace

std::string key_ad(std::string_view purpose, std::string_view id) {
  std::string ad = "telehub-key-v1|";
  ad += purpose;
  ad += '|';
  ad += id;
  return ad;
}

std::string device_key_ad(std::string_view device_id, std::uint32_t key_id) {
  return key_ad("device", std::string(device_id) + "#" + std::to_string(key_id));
}

Kek::~Kek() { OPENSSL_cleanse(key_.data(), key_.size()); }

Result<Kek> Kek::from_bytes(std::span<const std::uint8_t> bytes) {
  if (bytes.size() != kSize) return core::fail(Code::kInvalidArgument, "bad_kek", "the KEK must be 32 bytes");
  Kek k;
  std::copy(bytes.begin(), bytes.end(), k.key_.begin());
  return k;
}

Result<Kek> Kek::from_hex(std::string_view hex) {
  hex = trim(hex);
  if (hex.size() != 2 * kSize)
    return core::fail(Code::kInvalidArgument, "bad_kek", "the KEK must be 64 hexadecimal characters");
  auto bytes = core::from_hex(hex);
  if (!bytes) return core::fail(Code::kInvalidArgument, "bad_kek", "the KEK must be 64 hexadecimal characters");
  auto k = from_bytes(*bytes);
  OPENSSL_cleanse(bytes->data(), bytes->size());
  return k;
}

Result<Kek> Kek::from_env() {
  const char* v = std::getenv(kEnvVar);
  if (v == nullptr || *v == '\0') return core::fail(Code::kNotFound, "no_kek", "TELEHUB_KEK is not set");
  auto k = from_hex(v);
  if (!k) return core::fail(Code::kInvalidArgument, "bad_kek", "TELEHUB_KEK must be 64 hexadecimal characters");
  return k;
}

Result<Kek> Kek::from_file(const std::filesystem::path& path, const std::filesystem::path& data_dir) {
  if (!data_dir.empty() && inside(path, data_dir))
    return core::fail(Code::kFailedPrecondition, "kek_inside_data",
                      "the KEK file " + path.string() + " lies inside the data directory; keep it apart from the data");
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return core::fail(Code::kNotFound, "no_kek", "KEK file " + path.string() + " does not exist");
    return core::fail(Code::kUnavailable, "bad_kek", "cannot read KEK file " + path.string());
  }
  if (!S_ISREG(st.st_mode)) return core::fail(Code::kInvalidArgument, "bad_kek", path.string() + " is not a file");
  if ((st.st_mode & 077) != 0)
    return core::fail(Code::kPermissionDenied, "bad_kek",
                      "KEK file " + path.string() + " is accessible by group or others; run chmod 600 on it");
  std::ifstream in(path, std::ios::binary);
  if (!in) return core::fail(Code::kUnavailable, "bad_kek", "cannot read KEK file " + path.string());
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Result<Kek> k = content.size() == kSize ? from_bytes(core::as_bytes(content)) : from_hex(content);
  OPENSSL_cleanse(content.data(), content.size());
  if (!k)
    return core::fail(Code::kInvalidArgument, "bad_kek",
                      "KEK file " + path.string() + " must hold 32 raw bytes or 64 hexadecimal characters");
  return k;
}

Result<Kek> Kek::open_or_create_file(const std::filesystem::path& path, const std::filesystem::path& data_dir) {
  if (!data_dir.empty() && inside(path, data_dir))
    return core::fail(Code::kFailedPrecondition, "kek_inside_data",
                      "the KEK file " + path.string() + " lies inside the data directory; keep it apart from the data");
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    const auto parent = path.parent_path();
    if (!parent.empty() && !std::filesystem::exists(parent, ec)) {
      std::filesystem::create_directories(parent, ec);
      if (ec) return core::fail(Code::kUnavailable, "bad_kek", "cannot create directory " + parent.string());
      ::chmod(parent.c_str(), 0700);
    }
    auto key = core::random_bytes(kSize);
    if (!key) return tl::unexpected(key.error());
    std::string text = core::to_hex(*key) + "\n";
    OPENSSL_cleanse(key->data(), key->size());
    // O_EXCL: two processes creating the KEK at once must not end up with different keys.
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
      bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
      ::close(fd);
      OPENSSL_cleanse(text.data(), text.size());
      if (!ok) return core::fail(Code::kUnavailable, "bad_kek", "cannot write KEK file " + path.string());
    } else if (errno != EEXIST) {
      return core::fail(Code::kUnavailable, "bad_kek", "cannot create KEK file " + path.string());
    }
  }
  return from_file(path, data_dir);
}

Result<std::filesystem::path> Kek::default_dev_path() {
  const char* home = std::getenv("HOME");
  if (home == nullptr || *home == '\0')
    return core::fail(Code::kNotFound, "no_kek", "no KEK: pass --kek-file or set TELEHUB_KEK (HOME is not set)");
  return std::filesystem::path(home) / ".config" / "telehub" / "kek";
}

Result<Kek> Kek::resolve(const std::filesystem::path& file, const std::filesystem::path& data_dir) {
  if (!file.empty()) return from_file(file, data_dir);
  const char* v = std::getenv(kEnvVar);
  if (v != nullptr && *v != '\0') return from_env();
  auto path = default_dev_path();
  if (!path) return tl::unexpected(path.error());
  return open_or_create_file(*path, data_dir);
}

Result<core::Bytes> Kek::wrap(std::span<const std::uint8_t> key, std::string_view ad) const {
  auto nonce = core::random_bytes(kNonceSize);
  if (!nonce) return tl::unexpected(nonce.error());
  core::Bytes out;
  out.reserve(1 + kNonceSize + key.size() + kTagSize);
  out.push_back(kBlobVersion);
  out.insert(out.end(), nonce->begin(), nonce->end());
  out.resize(1 + kNonceSize + key.size() + kTagSize);
  Ctx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  const auto* aad = reinterpret_cast<const unsigned char*>(ad.data());
  bool ok = ctx && EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(kNonceSize), nullptr) == 1 &&
            EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, key_.data(), nonce->data()) == 1 &&
            EVP_EncryptUpdate(ctx.get(), nullptr, &len, aad, static_cast<int>(ad.size())) == 1 &&
            EVP_EncryptUpdate(ctx.get(), out.data() + 1 + kNonceSize, &len, key.data(), static_cast<int>(key.size())) == 1 &&
            EVP_EncryptFinal_ex(ctx.get(), out.data() + 1 + kNonceSize + len, &len) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagSize),
                                out.data() + 1 + kNonceSize + key.size()) == 1;
  if (!ok) return core::fail(Code::kInternal, "wrap_failed", "AES-256-GCM key wrapping failed");
  return out;
}

Result<core::Bytes> Kek::unwrap(std::span<const std::uint8_t> blob, std::string_view ad) const {
  auto failed = [] {
    return core::fail(Code::kDataLoss, "unwrap_failed",
                      "wrapped key does not open under this KEK (wrong KEK, or damaged key blob)");
  };
  if (blob.size() < 1 + kNonceSize + kTagSize || blob[0] != kBlobVersion) return failed();
  const std::size_t n = blob.size() - 1 - kNonceSize - kTagSize;
  core::Bytes out(n);
  Ctx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  const auto* aad = reinterpret_cast<const unsigned char*>(ad.data());
  // The tag is set before the final call, as OpenSSL requires; it is not modified.
  auto* tag = const_cast<std::uint8_t*>(blob.data() + 1 + kNonceSize + n);
  bool ok = ctx && EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(kNonceSize), nullptr) == 1 &&
            EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, key_.data(), blob.data() + 1) == 1 &&
            EVP_DecryptUpdate(ctx.get(), nullptr, &len, aad, static_cast<int>(ad.size())) == 1 &&
            EVP_DecryptUpdate(ctx.get(), out.data(), &len, blob.data() + 1 + kNonceSize, static_cast<int>(n)) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagSize), tag) == 1 &&
            EVP_DecryptFinal_ex(ctx.get(), out.data() + len, &len) == 1;
  if (!ok) {
    OPENSSL_cleanse(out.data(), out.size());
    return failed();
  }
  return out;
}

Result<core::Bytes> open_or_create_wrapped_key(const std::filesystem::path& path, const Kek& kek, std::string_view ad,
                                               std::size_t size, std::string_view what) {
  const std::string name(what);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    std::filesystem::create_directories(path.parent_path(), ec);
    auto key = core::random_bytes(size);
    if (!key) return tl::unexpected(key.error());
    auto blob = kek.wrap(*key, ad);
    OPENSSL_cleanse(key->data(), key->size());
    if (!blob) return tl::unexpected(blob.error());
    // O_EXCL: two processes creating the key at once must not end up with different keys.
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
      bool ok = ::write(fd, blob->data(), blob->size()) == static_cast<ssize_t>(blob->size()) && ::fsync(fd) == 0;
      ::close(fd);
      if (!ok) {
        ::unlink(path.c_str());
        return core::fail(core::Code::kUnavailable, "key_file", "cannot write the " + name + " file");
      }
    } else if (errno != EEXIST) {
      return core::fail(core::Code::kUnavailable, "key_file", "cannot create the " + name + " file");
    }
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return core::fail(core::Code::kUnavailable, "key_file", "cannot read the " + name + " file");
  core::Bytes blob((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (blob.size() == size)
    return core::fail(core::Code::kDataLoss, "bad_key_file",
                      "the " + name + " file holds an unwrapped key (written before keys were wrapped under a KEK); "
                      "start from a new data directory");
  if (blob.empty()) return core::fail(core::Code::kDataLoss, "bad_key_file", "the " + name + " file is empty");
  auto key = kek.unwrap(blob, ad);
  if (!key)
    return core::fail(core::Code::kDataLoss, "unwrap_failed",
                      "the " + name + " file does not unwrap under this KEK (wrong KEK, or damaged file)");
  return key;
}

}  // namespace telehub::privacy
