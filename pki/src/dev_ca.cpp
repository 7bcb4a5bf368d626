// Development CA on OpenSSL 3 (EVP_EC_gen, X509_*, PEM_*_bio_*); no deprecated APIs.
#include "telehub/pki/dev_ca.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <fstream>
#include <iterator>
#include <string_view>
#include <system_error>

namespace telehub::pki {
namespace {

using core::Code;

constexpr const char* kCaCommonName = "telehub development CA";
constexpr long kCaDays = 3650;      // 10 years
constexpr long kClientDays = 365;   // 1 year
constexpr long kServerDays = 730;   // 2 years
constexpr int kSerialBits = 128;

struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Deleter {
  void operator()(X509* p) const { X509_free(p); }
};
struct BioDeleter {
  void operator()(BIO* p) const { BIO_free_all(p); }
};
struct NameDeleter {
  void operator()(X509_NAME* p) const { X509_NAME_free(p); }
};
struct ExtDeleter {
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
};
struct BnDeleter {
  void operator()(BIGNUM* p) const { BN_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using NamePtr = std::unique_ptr<X509_NAME, NameDeleter>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, ExtDeleter>;
using BnPtr = std::unique_ptr<BIGNUM, BnDeleter>;

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

// The OpenSSL error queue's first entry (a library/reason text; never key material), cleared.
tl::unexpected<core::Error> crypto_error(const std::string& what) {
  unsigned long e = ERR_get_error();
  std::string detail;
  if (e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    detail = std::string(": ") + buf;
  }
  ERR_clear_error();
  return core::fail(Code::kInternal, "pki_crypto", what + detail);
}

tl::unexpected<core::Error> io_error(Code code, const std::string& what) {
  return core::fail(code, "pki_io", what);
}

bool has_control_char(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return true;
  return false;
}

[[nodiscard]] Result<PkeyPtr> new_ec_key() {
  PkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return crypto_error("cannot generate an EC P-256 key");
  return key;
}

[[nodiscard]] Result<std::string> bio_text(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  if (len <= 0 || data == nullptr) return crypto_error("cannot read PEM buffer");
  return std::string(data, static_cast<std::size_t>(len));
}

[[nodiscard]] Result<std::string> cert_to_pem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return crypto_error("cannot encode certificate as PEM");
  return bio_text(bio.get());
}

// PKCS#8, unencrypted.
[[nodiscard]] Result<std::string> key_to_pem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1)
    return crypto_error("cannot encode private key as PEM");
  return bio_text(bio.get());
}

[[nodiscard]] Result<std::string> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return io_error(Code::kUnavailable, "cannot open " + path.string());
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return io_error(Code::kUnavailable, "cannot read " + path.string());
  return text;
}

// Atomic write: <path>.tmp created with `mode` (O_EXCL, then fchmod so umask cannot widen or
// narrow it), written, fsynced, renamed over path; then the directory is fsynced.
[[nodiscard]] Status write_file_atomic(const std::filesystem::path& path, std::string_view data, mode_t mode) {
  auto tmp = path;
  tmp += ".tmp";
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return io_error(Code::kUnavailable, "cannot create " + tmp.string() + ": " + errno_text(errno));
  auto abandon = [&](const char* what) {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return io_error(Code::kUnavailable, std::string(what) + " " + tmp.string() + ": " + errno_text(err));
  };
  if (::fchmod(fd, mode) != 0) return abandon("cannot chmod");
  for (std::size_t off = 0; off < data.size();) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return abandon("cannot write");
    off += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) return abandon("cannot fsync");
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return io_error(Code::kUnavailable, "cannot close " + tmp.string() + ": " + errno_text(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return io_error(Code::kUnavailable, "cannot rename to " + path.string() + ": " + errno_text(err));
  }
  auto parent = path.parent_path();
  if (parent.empty()) parent = ".";
  int dfd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

[[nodiscard]] Status ensure_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  if (std::filesystem::is_directory(dir, ec)) return {};
  std::filesystem::create_directories(dir, ec);
  if (ec) return io_error(Code::kUnavailable, "cannot create " + dir.string() + ": " + ec.message());
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
  if (ec) return io_error(Code::kUnavailable, "cannot chmod " + dir.string() + ": " + ec.message());
  return {};
}

[[nodiscard]] Status add_ext(X509* cert, X509V3_CTX* ctx, int nid, const std::string& value) {
  ExtPtr ext(X509V3_EXT_nconf_nid(nullptr, ctx, nid, value.c_str()));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1)
    return crypto_error(std::string("cannot add extension ") + OBJ_nid2sn(nid));
  return {};
}

// A certificate for `subject_cn` with `key`'s public key, not yet signed; issuer is `issuer`
// (nullptr: self-issued).
[[nodiscard]] Result<X509Ptr> new_cert(const std::string& subject_cn, EVP_PKEY* key, X509* issuer, long days) {
  X509Ptr cert(X509_new());
  if (!cert || X509_set_version(cert.get(), X509_VERSION_3) != 1) return crypto_error("cannot create certificate");

  BnPtr serial(BN_new());
  if (!serial || BN_rand(serial.get(), kSerialBits, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
      BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) == nullptr)
    return crypto_error("cannot set serial number");

  if (X509_gmtime_adj(X509_getm_notBefore(cert.get()), 0) == nullptr ||
      X509_time_adj_ex(X509_getm_notAfter(cert.get()), static_cast<int>(days), 0, nullptr) == nullptr)
    return crypto_error("cannot set validity");
  if (X509_set_pubkey(cert.get(), key) != 1) return crypto_error("cannot set public key");

  NamePtr name(X509_NAME_new());
  if (!name ||
      X509_NAME_add_entry_by_txt(name.get(), "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(subject_cn.data()),
                                 static_cast<int>(subject_cn.size()), -1, 0) != 1 ||
      X509_set_subject_name(cert.get(), name.get()) != 1)
    return crypto_error("cannot set subject name");
  X509_NAME* issuer_name = issuer ? X509_get_subject_name(issuer) : name.get();
  if (X509_set_issuer_name(cert.get(), issuer_name) != 1) return crypto_error("cannot set issuer name");
  return cert;
}

}  // namespace

struct DevCa::Impl {
  std::filesystem::path ca_file;
  std::string ca_pem;
  X509Ptr cert;
  PkeyPtr key;
};

DevCa::DevCa(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DevCa::DevCa(DevCa&&) noexcept = default;
DevCa& DevCa::operator=(DevCa&&) noexcept = default;
DevCa::~DevCa() = default;

const std::string& DevCa::ca_pem() const { return impl_->ca_pem; }
const std::filesystem::path& DevCa::ca_file() const { return impl_->ca_file; }

Result<DevCa> DevCa::open_or_create(const std::filesystem::path& dir) {
  if (dir.empty()) return io_error(Code::kInvalidArgument, "CA directory is empty");
  const auto cert_path = dir / "ca.pem";
  const auto key_path = dir / "ca.key";
  std::error_code ec;
  const bool have_cert = std::filesystem::exists(cert_path, ec);
  const bool have_key = std::filesystem::exists(key_path, ec);
  auto impl = std::make_unique<Impl>();
  impl->ca_file = cert_path;

  if (have_cert != have_key)
    return io_error(Code::kFailedPrecondition, dir.string() + " holds only one of ca.pem and ca.key");

  if (have_cert) {
    auto cert_text = read_file(cert_path);
    if (!cert_text) return tl::unexpected(cert_text.error());
    auto key_text = read_file(key_path);
    if (!key_text) return tl::unexpected(key_text.error());
    BioPtr cbio(BIO_new_mem_buf(cert_text->data(), static_cast<int>(cert_text->size())));
    if (!cbio) return crypto_error("cannot read " + cert_path.string());
    impl->cert.reset(PEM_read_bio_X509(cbio.get(), nullptr, nullptr, nullptr));
    if (!impl->cert) return crypto_error(cert_path.string() + " is not a PEM certificate");
    BioPtr kbio(BIO_new_mem_buf(key_text->data(), static_cast<int>(key_text->size())));
    if (!kbio) return crypto_error("cannot read " + key_path.string());
    impl->key.reset(PEM_read_bio_PrivateKey(kbio.get(), nullptr, nullptr, nullptr));
    if (!impl->key) return crypto_error(key_path.string() + " is not a PEM private key");
    if (X509_check_private_key(impl->cert.get(), impl->key.get()) != 1)
      return crypto_error(key_path.string() + " does not match " + cert_path.string());
    impl->ca_pem = std::move(*cert_text);
    return DevCa(std::move(impl));
  }

  if (auto st = ensure_dir(dir); !st) return tl::unexpected(st.error());
  auto key = new_ec_key();
  if (!key) return tl::unexpected(key.error());
  auto cert = new_cert(kCaCommonName, key->get(), nullptr, kCaDays);
  if (!cert) return tl::unexpected(cert.error());
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, cert->get(), cert->get(), nullptr, nullptr, 0);
  for (auto [nid, value] : {std::pair{NID_basic_constraints, "critical,CA:TRUE"},
                            std::pair{NID_key_usage, "critical,keyCertSign,cRLSign"},
                            std::pair{NID_subject_key_identifier, "hash"}})
    if (auto st = add_ext(cert->get(), &ctx, nid, value); !st) return tl::unexpected(st.error());
  if (X509_sign(cert->get(), key->get(), EVP_sha256()) <= 0) return crypto_error("cannot sign the CA certificate");

  auto cert_pem = cert_to_pem(cert->get());
  if (!cert_pem) return tl::unexpected(cert_pem.error());
  auto key_pem = key_to_pem(key->get());
  if (!key_pem) return tl::unexpected(key_pem.error());
  // Key first: a crash in between leaves only ca.key, which open_or_create reports instead of
  // silently making a second CA that no issued certificate chains to.
  if (auto st = write_file_atomic(key_path, *key_pem, 0600); !st) return tl::unexpected(st.error());
  if (auto st = write_file_atomic(cert_path, *cert_pem, 0644); !st) return tl::unexpected(st.error());
  impl->cert = std::move(*cert);
  impl->key = std::move(*key);
  impl->ca_pem = std::move(*cert_pem);
  return DevCa(std::move(impl));
}

Result<Identity> DevCa::issue(const std::string& common_name, CertKind kind,
                              const std::vector<std::string>& extra_hosts) const {
  if (common_name.empty() || common_name.size() > 64 || has_control_char(common_name))
    return core::fail(Code::kInvalidArgument, "pki_crypto",
                      "common name must be 1..64 characters without control characters");
  std::string san = "IP:127.0.0.1,DNS:localhost";
  for (const auto& host : extra_hosts) {
    if (host.empty() || host.find(',') != std::string::npos || has_control_char(host))
      return core::fail(Code::kInvalidArgument, "pki_crypto", "extra host names must be non-empty, without ','");
    unsigned char buf[sizeof(in6_addr)];
    const bool ip = ::inet_pton(AF_INET, host.c_str(), buf) == 1 || ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
    san += (ip ? ",IP:" : ",DNS:") + host;
  }

  auto key = new_ec_key();
  if (!key) return tl::unexpected(key.error());
  const bool server = kind == CertKind::kServer;
  auto cert = new_cert(common_name, key->get(), impl_->cert.get(), server ? kServerDays : kClientDays);
  if (!cert) return tl::unexpected(cert.error());
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, impl_->cert.get(), cert->get(), nullptr, nullptr, 0);
  if (auto st = add_ext(cert->get(), &ctx, NID_basic_constraints, "critical,CA:FALSE"); !st) return tl::unexpected(st.error());
  if (auto st = add_ext(cert->get(), &ctx, NID_key_usage, "critical,digitalSignature"); !st) return tl::unexpected(st.error());
  if (auto st = add_ext(cert->get(), &ctx, NID_ext_key_usage, server ? "serverAuth" : "clientAuth"); !st)
    return tl::unexpected(st.error());
  if (auto st = add_ext(cert->get(), &ctx, NID_subject_key_identifier, "hash"); !st) return tl::unexpected(st.error());
  if (auto st = add_ext(cert->get(), &ctx, NID_authority_key_identifier, "keyid"); !st) return tl::unexpected(st.error());
  if (server)
    if (auto st = add_ext(cert->get(), &ctx, NID_subject_alt_name, san); !st) return tl::unexpected(st.error());
  if (X509_sign(cert->get(), impl_->key.get(), EVP_sha256()) <= 0) return crypto_error("cannot sign the certificate");

  auto cert_pem = cert_to_pem(cert->get());
  if (!cert_pem) return tl::unexpected(cert_pem.error());
  auto key_pem = key_to_pem(key->get());
  if (!key_pem) return tl::unexpected(key_pem.error());
  return Identity{std::move(*cert_pem), std::move(*key_pem)};
}

Result<IdentityFiles> write_identity(const std::filesystem::path& dir, const std::string& name,
                                     const Identity& identity) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos || has_control_char(name))
    return io_error(Code::kInvalidArgument, "identity name must be a plain file name");
  if (auto st = ensure_dir(dir); !st) return tl::unexpected(st.error());
  IdentityFiles files{dir / (name + ".pem"), dir / (name + ".key")};
  if (auto st = write_file_atomic(files.key, identity.key_pem, 0600); !st) return tl::unexpected(st.error());
  if (auto st = write_file_atomic(files.cert, identity.cert_pem, 0644); !st) return tl::unexpected(st.error());
  return files;
}

}  // namespace telehub::pki
