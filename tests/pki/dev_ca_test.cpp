// pki::DevCa: the CA files, the certificates it issues (checked with OpenSSL's own verifier and
// with the `openssl verify` command as an independent peer).
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fstream>
#include <iterator>
#include <memory>

#include "telehub/pki/dev_ca.h"
#include "test_support.h"

namespace telehub::pki {
namespace {

using telehub::testing::run_command;
using telehub::testing::TempDir;

struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

X509Ptr parse_cert(const std::string& pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  REQUIRE(bio);
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  REQUIRE(cert);
  return cert;
}

std::string common_name(X509* cert) {
  char buf[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf);
  return buf;
}

// X509_verify_cert with a store holding only the CA, for the given purpose.
bool verifies(const DevCa& ca, X509* cert, int purpose) {
  auto ca_cert = parse_cert(ca.ca_pem());
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), &X509_STORE_free);
  REQUIRE(X509_STORE_add_cert(store.get(), ca_cert.get()) == 1);
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx(X509_STORE_CTX_new(), &X509_STORE_CTX_free);
  REQUIRE(X509_STORE_CTX_init(ctx.get(), store.get(), cert, nullptr) == 1);
  X509_STORE_CTX_set_purpose(ctx.get(), purpose);
  const bool ok = X509_verify_cert(ctx.get()) == 1;
  INFO(X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get())));
  return ok;
}

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

mode_t mode_of(const std::filesystem::path& p) {
  struct stat st {};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

}  // namespace

TEST_CASE("the CA is created once and reused", "[pki]") {
  TempDir dir;
  const auto ca_dir = dir.path() / "ca";
  auto first = DevCa::open_or_create(ca_dir);
  INFO((first ? std::string() : first.error().to_string()));
  REQUIRE(first);
  CHECK(first->ca_file() == ca_dir / "ca.pem");
  CHECK(mode_of(ca_dir / "ca.key") == 0600);
  CHECK(read_text(ca_dir / "ca.pem") == first->ca_pem());

  auto ca_cert = parse_cert(first->ca_pem());
  CHECK(common_name(ca_cert.get()) == "telehub development CA");
  CHECK(X509_check_ca(ca_cert.get()) >= 1);
  CHECK((X509_get_key_usage(ca_cert.get()) & KU_KEY_CERT_SIGN) != 0);
  // 10 years, give or take leap days.
  int days = 0, secs = 0;
  REQUIRE(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(ca_cert.get()), X509_get0_notAfter(ca_cert.get())) == 1);
  CHECK(days == 3650);

  auto second = DevCa::open_or_create(ca_dir);
  REQUIRE(second);
  CHECK(second->ca_pem() == first->ca_pem());
  // A certificate issued by the reopened CA chains to the original.
  auto id = second->issue("dev-0001", CertKind::kClient);
  REQUIRE(id);
  auto cert = parse_cert(id->cert_pem);
  CHECK(verifies(*first, cert.get(), X509_PURPOSE_SSL_CLIENT));
}

TEST_CASE("a CA directory with only one of the two files is refused", "[pki]") {
  TempDir dir;
  REQUIRE(DevCa::open_or_create(dir.path()));
  std::filesystem::remove(dir.path() / "ca.pem");
  auto again = DevCa::open_or_create(dir.path());
  REQUIRE_FALSE(again);
  CHECK(again.error().reason == "pki_io");
}

TEST_CASE("a CA key that does not match its certificate is refused", "[pki]") {
  TempDir a, b;
  REQUIRE(DevCa::open_or_create(a.path()));
  REQUIRE(DevCa::open_or_create(b.path()));
  std::filesystem::copy_file(b.path() / "ca.key", a.path() / "ca.key", std::filesystem::copy_options::overwrite_existing);
  auto mixed = DevCa::open_or_create(a.path());
  REQUIRE_FALSE(mixed);
  CHECK(mixed.error().reason == "pki_crypto");
}

TEST_CASE("client certificates have the CN and clientAuth, and verify against the CA", "[pki]") {
  TempDir dir;
  auto ca = DevCa::open_or_create(dir.path() / "ca");
  REQUIRE(ca);
  auto id = ca->issue("dev-3f9c0a", CertKind::kClient);
  REQUIRE(id);
  CHECK(id->key_pem.find("-----BEGIN PRIVATE KEY-----") == 0);
  auto cert = parse_cert(id->cert_pem);
  CHECK(common_name(cert.get()) == "dev-3f9c0a");
  CHECK(X509_check_ca(cert.get()) == 0);
  CHECK((X509_get_extended_key_usage(cert.get()) & XKU_SSL_CLIENT) != 0);
  CHECK((X509_get_extended_key_usage(cert.get()) & XKU_SSL_SERVER) == 0);
  CHECK(verifies(*ca, cert.get(), X509_PURPOSE_SSL_CLIENT));
  CHECK_FALSE(verifies(*ca, cert.get(), X509_PURPOSE_SSL_SERVER));
  int days = 0, secs = 0;
  REQUIRE(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(cert.get()), X509_get0_notAfter(cert.get())) == 1);
  CHECK(days == 365);

  // Two issues give different keys and serials.
  auto other = ca->issue("dev-3f9c0a", CertKind::kClient);
  REQUIRE(other);
  auto other_cert = parse_cert(other->cert_pem);
  CHECK(other->key_pem != id->key_pem);
  CHECK(ASN1_INTEGER_cmp(X509_get0_serialNumber(cert.get()), X509_get0_serialNumber(other_cert.get())) != 0);

  // A certificate from another CA does not verify.
  TempDir dir2;
  auto ca2 = DevCa::open_or_create(dir2.path());
  REQUIRE(ca2);
  CHECK_FALSE(verifies(*ca2, cert.get(), X509_PURPOSE_SSL_CLIENT));
}

TEST_CASE("server certificates have serverAuth and the loopback names", "[pki]") {
  TempDir dir;
  auto ca = DevCa::open_or_create(dir.path());
  REQUIRE(ca);
  auto id = ca->issue("telehub-broker", CertKind::kServer, {"hub.example.org", "10.1.2.3"});
  REQUIRE(id);
  auto cert = parse_cert(id->cert_pem);
  CHECK((X509_get_extended_key_usage(cert.get()) & XKU_SSL_SERVER) != 0);
  CHECK(verifies(*ca, cert.get(), X509_PURPOSE_SSL_SERVER));
  CHECK(X509_check_ip_asc(cert.get(), "127.0.0.1", 0) == 1);
  CHECK(X509_check_ip_asc(cert.get(), "10.1.2.3", 0) == 1);
  CHECK(X509_check_ip_asc(cert.get(), "10.1.2.4", 0) == 0);
  CHECK(X509_check_host(cert.get(), "localhost", 0, 0, nullptr) == 1);
  CHECK(X509_check_host(cert.get(), "hub.example.org", 0, 0, nullptr) == 1);
  CHECK(X509_check_host(cert.get(), "evil.example.org", 0, 0, nullptr) == 0);
  int days = 0, secs = 0;
  REQUIRE(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(cert.get()), X509_get0_notAfter(cert.get())) == 1);
  CHECK(days == 730);
}

TEST_CASE("bad names are refused", "[pki]") {
  TempDir dir;
  auto ca = DevCa::open_or_create(dir.path());
  REQUIRE(ca);
  CHECK_FALSE(ca->issue("", CertKind::kClient));
  CHECK_FALSE(ca->issue(std::string(65, 'a'), CertKind::kClient));
  CHECK_FALSE(ca->issue("a\nb", CertKind::kClient));
  CHECK_FALSE(ca->issue("broker", CertKind::kServer, {"a,DNS:evil"}));
  Identity id{"x", "y"};
  CHECK_FALSE(write_identity(dir.path(), "../x", id));
  CHECK_FALSE(write_identity(dir.path(), "", id));
}

TEST_CASE("write_identity writes 0600 keys that `openssl verify` accepts", "[pki]") {
  TempDir dir;
  auto ca = DevCa::open_or_create(dir.path() / "ca");
  REQUIRE(ca);
  auto id = ca->issue("telehub-hub", CertKind::kClient);
  REQUIRE(id);
  auto files = write_identity(dir.path() / "certs", "telehub-hub", *id);
  INFO((files ? std::string() : files.error().to_string()));
  REQUIRE(files);
  CHECK(files->cert == dir.path() / "certs" / "telehub-hub.pem");
  CHECK(files->key == dir.path() / "certs" / "telehub-hub.key");
  CHECK(mode_of(files->key) == 0600);
  CHECK(mode_of(dir.path() / "certs") == 0700);
  CHECK(read_text(files->cert) == id->cert_pem);
  CHECK(read_text(files->key) == id->key_pem);

  auto r = run_command("openssl verify -purpose sslclient -CAfile '" + ca->ca_file().string() + "' '" +
                       files->cert.string() + "'");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find(": OK") != std::string::npos);

  // The key matches the certificate (same public key).
  auto pub_cert = run_command("openssl x509 -noout -pubkey -in '" + files->cert.string() + "'");
  auto pub_key = run_command("openssl pkey -pubout -in '" + files->key.string() + "'");
  CHECK(pub_cert.exit_code == 0);
  CHECK(pub_cert.output == pub_key.output);
}

}  // namespace telehub::pki
