// Envelope v1 (docs/protocol.md): header parsing and AES-256-GCM through OpenSSL 3 EVP.
#include "telehub/envelope/envelope.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <memory>

namespace telehub::envelope {
namespace {

using core::Code;

constexpr std::uint8_t kMagic[2] = {'T', 'H'};
// Bytes of the header besides the device id: magic 2, version 1, length 1, key id 4, sequence 8.
constexpr std::size_t kFixedHeaderSize = 16;

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

tl::unexpected<core::Error> not_envelope(const char* why) {
  return core::fail(Code::kInvalidArgument, "not_envelope", why);
}
tl::unexpected<core::Error> bad_header(const char* why) {
  return core::fail(Code::kInvalidArgument, "bad_header", why);
}
tl::unexpected<core::Error> bad_key() {
  return core::fail(Code::kInvalidArgument, "bad_key", "key must be 32 bytes");
}
tl::unexpected<core::Error> bad_seal() {
  return core::fail(Code::kUnauthenticated, "bad_seal", "authentication failed (wrong key or altered bytes)");
}
tl::unexpected<core::Error> crypto_failure() {
  return core::fail(Code::kInternal, "crypto", "OpenSSL AES-256-GCM operation failed");
}

void put_be(std::uint8_t* out, std::uint64_t v, int n) {
  for (int i = n - 1; i >= 0; --i, v >>= 8) out[i] = static_cast<std::uint8_t>(v);
}

std::uint64_t get_be(const std::uint8_t* in, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = v << 8 | in[i];
  return v;
}

// Header checks shared by seal() (what it writes) and peek() (what it reads).
Status check_header(std::string_view device_id, std::uint64_t sequence) {
  if (!valid_device_id(device_id)) return bad_header("device id must be 1..64 characters of [A-Za-z0-9._-]");
  if (sequence == 0) return bad_header("sequence must be at least 1");
  return {};
}

// Feeds `in` to EVP_{En,De}cryptUpdate in int-sized chunks. `out` null means `in` is AAD.
template <class Update>
bool update(EVP_CIPHER_CTX* ctx, Update fn, std::uint8_t* out, std::span<const std::uint8_t> in) {
  constexpr std::size_t kChunk = 1u << 30;
  for (std::size_t off = 0; off < in.size(); off += kChunk) {
    const int n = static_cast<int>(std::min(kChunk, in.size() - off));
    int written = 0;
    if (fn(ctx, out ? out + off : nullptr, &written, in.data() + off, n) != 1) return false;
  }
  return true;
}

}  // namespace

bool valid_device_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxDeviceIdLength) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-';
  });
}

std::array<std::uint8_t, kNonceSize> nonce_for(std::uint32_t key_id, std::uint64_t sequence) {
  std::array<std::uint8_t, kNonceSize> nonce{};
  put_be(nonce.data(), key_id, 4);
  put_be(nonce.data() + 4, sequence, 8);
  return nonce;
}

Result<core::Bytes> seal(const Header& header, std::span<const std::uint8_t> key,
                         std::span<const std::uint8_t> plaintext) {
  if (key.size() != kKeySize) return bad_key();
  if (header.version != kVersion)
    return core::fail(Code::kInvalidArgument, "unsupported_version", "only envelope version 1 can be sealed");
  if (auto ok = check_header(header.device_id, header.sequence); !ok) return tl::unexpected(ok.error());

  const std::size_t header_size = kFixedHeaderSize + header.device_id.size();
  core::Bytes out(header_size + plaintext.size() + kTagSize);
  std::uint8_t* p = out.data();
  p[0] = kMagic[0];
  p[1] = kMagic[1];
  p[2] = kVersion;
  p[3] = static_cast<std::uint8_t>(header.device_id.size());
  std::copy(header.device_id.begin(), header.device_id.end(), p + 4);
  const auto nonce = nonce_for(header.key_id, header.sequence);
  std::copy(nonce.begin(), nonce.end(), p + 4 + header.device_id.size());  // key id || sequence

  CipherCtx ctx(EVP_CIPHER_CTX_new());
  int final_len = 0;
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), nonce.data()) != 1 ||
      !update(ctx.get(), EVP_EncryptUpdate, nullptr, {p, header_size}) ||
      !update(ctx.get(), EVP_EncryptUpdate, p + header_size, plaintext) ||
      EVP_EncryptFinal_ex(ctx.get(), p + header_size + plaintext.size(), &final_len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagSize),
                          p + header_size + plaintext.size()) != 1)
    return crypto_failure();
  return out;
}

Result<Header> peek(std::span<const std::uint8_t> sealed) {
  if (sealed.size() < 4 || sealed[0] != kMagic[0] || sealed[1] != kMagic[1])
    return not_envelope("does not start with the envelope magic bytes");
  if (sealed[2] != kVersion) return core::fail(Code::kInvalidArgument, "unsupported_version", "envelope version is not 1");
  const std::size_t id_len = sealed[3];
  if (id_len < 1 || id_len > kMaxDeviceIdLength) return bad_header("device id length must be 1..64");
  if (sealed.size() < kFixedHeaderSize + id_len + kTagSize) return not_envelope("shorter than header and tag");

  Header h;
  h.version = kVersion;
  h.device_id.assign(reinterpret_cast<const char*>(sealed.data() + 4), id_len);
  h.key_id = static_cast<std::uint32_t>(get_be(sealed.data() + 4 + id_len, 4));
  h.sequence = get_be(sealed.data() + 8 + id_len, 8);
  if (auto ok = check_header(h.device_id, h.sequence); !ok) return tl::unexpected(ok.error());
  return h;
}

Result<core::Bytes> open(std::span<const std::uint8_t> sealed, std::span<const std::uint8_t> key) {
  if (key.size() != kKeySize) return bad_key();
  auto header = peek(sealed);
  if (!header) return tl::unexpected(std::move(header.error()));

  const std::size_t header_size = kFixedHeaderSize + header->device_id.size();
  const auto aad = sealed.first(header_size);
  const auto ciphertext = sealed.subspan(header_size, sealed.size() - header_size - kTagSize);
  // EVP_CTRL_GCM_SET_TAG takes a non-const pointer; copy the tag rather than cast.
  std::array<std::uint8_t, kTagSize> tag{};
  std::copy(sealed.end() - kTagSize, sealed.end(), tag.begin());
  const auto nonce = nonce_for(header->key_id, header->sequence);

  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), nonce.data()) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagSize), tag.data()) != 1)
    return crypto_failure();

  core::Bytes plaintext(ciphertext.size());
  int final_len = 0;
  // A failed Update only happens on internal errors; a wrong tag shows up in Final. Either way
  // nothing decrypted is returned unless the tag verifies.
  if (!update(ctx.get(), EVP_DecryptUpdate, nullptr, aad) ||
      !update(ctx.get(), EVP_DecryptUpdate, plaintext.data(), ciphertext) ||
      EVP_DecryptFinal_ex(ctx.get(), plaintext.data() + plaintext.size(), &final_len) != 1) {
    OPENSSL_cleanse(plaintext.data(), plaintext.size());
    return bad_seal();
  }
  return plaintext;
}

}  // namespace telehub::envelope
