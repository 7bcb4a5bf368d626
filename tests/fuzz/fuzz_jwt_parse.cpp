// libFuzzer harness for auth/include/telehub/auth/jwt.h: untrusted client assertions and key
// sets. Every input goes through four paths:
//   1. base64url_decode(data): on success base64url_encode() gives `data` back (strictness).
//   2. parse_jws(data): never crashes; fails only with invalid_argument/bad_jws; on success
//      alg, header, claims and signature are non-empty, re-encoding the decoded parts gives
//      the input exactly, the signing input is the first two parts, and verify() with fixed
//      RSA-3072 and P-384 keys fails (nobody can forge them) with one of its reasons.
//   3. data as the claims JSON of an otherwise valid ES384 JWS (structure-aware: reaches the
//      claim parsing that random bytes rarely reach through base64url).
//   4. parse_jwks(data): never crashes; fails only with bad_jwks, weak_key or unsupported_key;
//      on success 1..32 keys with non-empty unique kids, and each key's canonical JSON parses
//      again to a key of the same type and size.
// A violation prints one line and aborts.
//
// Not built by tests/fuzz/run.sh (which compiles only the core/envelope/formats/store codec
// sources). Build and run from the repository root:
//   clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
//     -fsanitize-ignorelist=tests/fuzz/ubsan-ignorelist.txt \
//     -Icore/include -Ienvelope/include -Iauth/include -Itests/auth \
//     tests/fuzz/fuzz_jwt_parse.cpp auth/src/jwt.cpp envelope/src/json.cpp core/src/*.cpp \
//     -lcrypto -o build-fuzz/fuzz_jwt_parse
//   cp -r tests/fuzz/corpus/jwt /tmp/jwt-corpus
//   build-fuzz/fuzz_jwt_parse -max_total_time=60 -max_len=9000 /tmp/jwt-corpus
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "telehub/auth/jwt.h"
#include "test_signer.h"

namespace {

using namespace telehub;
using namespace telehub::auth;

[[noreturn]] void violated(const char* why) {
  std::fprintf(stderr, "fuzz_jwt_parse: invariant violated: %s\n", why);
  std::abort();
}

const Jwks& fixed_keys() {
  static const Jwks keys = [] {
    auto jwks = parse_jwks(test::jwks_json({test::jwk_json(test::rsa_key(3072), "rsa"), test::jwk_json(test::ec_key(), "ec")}));
    if (!jwks) violated("the fixed key set does not parse");
    return *jwks;
  }();
  return keys;
}

void check_base64url(std::string_view text) {
  auto bytes = base64url_decode(text);
  if (!bytes) {
    if (bytes.error().reason != "bad_base64url") violated("base64url_decode failed with another reason");
    return;
  }
  if (base64url_encode(*bytes) != text) violated("base64url_decode accepted a non-canonical text");
}

void check_jws(std::string_view text) {
  auto jws = parse_jws(text);
  if (!jws) {
    if (jws.error().reason != "bad_jws" || jws.error().code != core::Code::kInvalidArgument)
      violated("parse_jws failed with another reason or code");
    return;
  }
  if (jws->header.alg.empty() || jws->header_json.empty() || jws->claims.raw.empty() || jws->signature.empty())
    violated("parse_jws succeeded with an empty part");
  const std::string input = base64url_encode(core::as_bytes(jws->header_json)) + "." +
                            base64url_encode(core::as_bytes(jws->claims.raw));
  if (input != jws->signing_input) violated("signing input is not the first two parts");
  if (input + "." + base64url_encode(jws->signature) != text) violated("parts do not re-encode to the input");
  for (const auto& key : fixed_keys().keys) {
    auto v = verify(*jws, key);
    if (v) violated("verify() accepted a signature nobody could make");
    const std::string& r = v.error().reason;
    if (r != "unsupported_alg" && r != "alg_mismatch" && r != "bad_signature") violated("verify() failed with another reason");
  }
}

void check_jwks(std::string_view text) {
  auto jwks = parse_jwks(text);
  if (!jwks) {
    const std::string& r = jwks.error().reason;
    if (r != "bad_jwks" && r != "weak_key" && r != "unsupported_key") violated("parse_jwks failed with another reason");
    return;
  }
  if (jwks->keys.empty() || jwks->keys.size() > kMaxJwksKeys) violated("parse_jwks key count out of range");
  std::set<std::string> kids;
  for (const auto& key : jwks->keys) {
    if (key.kid().empty() || !kids.insert(key.kid()).second) violated("empty or duplicate kid");
    if (key.pkey() == nullptr) violated("key without an OpenSSL key");
    if (key.type() == KeyType::kRsa && (key.bits() < kMinRsaBits || key.bits() > kMaxRsaBits))
      violated("RSA key size out of range");
    auto again = parse_jwks(R"({"keys":[)" + key.json() + "]}");
    if (!again || again->keys.size() != 1 || again->keys[0].type() != key.type() ||
        again->keys[0].bits() != key.bits() || again->keys[0].json() != key.json())
      violated("canonical key JSON does not parse to the same key");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)fixed_keys();
  check_base64url(text);
  check_jws(text);
  if (size <= kMaxJwsSize) {
    check_jws(base64url_encode(core::as_bytes(R"({"alg":"ES384","kid":"ec"})")) + "." +
              base64url_encode(core::as_bytes(text)) + "." + std::string(128, 'A'));
  }
  check_jwks(text);
  return 0;
}
