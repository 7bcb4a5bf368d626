// Replays the seed corpora and saved inputs of the FHIR-side fuzz harnesses (search
// parameters, Patient/Consent JSON, the router; tests/fuzz/fuzz_{search_params,fhir_patient,
// router}.cpp) through the harnesses' own invariant checks, in the normal build (no
// sanitizers; docs/fuzzing.md). Inputs in tests/fuzz/regressions/ named after a harness
// ("<harness>-...") go through that harness only.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#define TELEHUB_FUZZ_NO_ENTRY
#include "../fuzz/fuzz_fhir_patient.cpp"
#include "../fuzz/fuzz_router.cpp"
#include "../fuzz/fuzz_search_params.cpp"

namespace fs = std::filesystem;

namespace {

std::vector<std::uint8_t> read_bytes(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The seeds of `corpus` plus the saved inputs of `harness`, sorted by name.
std::vector<fs::path> inputs(const std::string& corpus, const std::string& harness) {
  std::vector<fs::path> files;
  const fs::path fuzz = fs::path(TELEHUB_SOURCE_DIR) / "tests/fuzz";
  for (const auto& e : fs::directory_iterator(fuzz / "corpus" / corpus))
    if (e.is_regular_file()) files.push_back(e.path());
  if (fs::is_directory(fuzz / "regressions"))
    for (const auto& e : fs::directory_iterator(fuzz / "regressions"))
      if (e.is_regular_file() && e.path().filename().string().starts_with(harness + "-")) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

template <class Check>
std::size_t replay(const std::string& corpus, const std::string& harness, Check check) {
  std::size_t n = 0;
  for (const auto& file : inputs(corpus, harness)) {
    const auto bytes = read_bytes(file);
    INFO(file.filename().string());
    CHECK(check(std::span<const std::uint8_t>(bytes)) == "");
    ++n;
  }
  return n;
}

}  // namespace

TEST_CASE("search parameter fuzzing seeds replay through the harness checks", "[fhir][fuzz]") {
  CHECK(replay("search", "search_params", telehub::fuzz::check_search_params) >= 12);
  // Inputs that are not in the corpus, each through the same check.
  for (const char* q : {"", "&", "=", "patient", "patient=%", "patient=%4", "_count=1&_count=1", "date=ap2026",
                        "patient=0123456789abcdef0123456789abcdef&date=9999-12-31T23:59:59.999999999-14:00"}) {
    const std::string_view s(q);
    INFO(q);
    CHECK(telehub::fuzz::check_search_params({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}) == "");
  }
}

TEST_CASE("Patient and Consent JSON fuzzing seeds replay through the harness checks", "[fhir][fuzz]") {
  CHECK(replay("fhir_json", "fhir_patient", telehub::fuzz::check_fhir_patient) >= 12);
}

TEST_CASE("router fuzzing seeds replay through the harness checks", "[fhir][fuzz]") {
  CHECK(replay("router", "router", telehub::fuzz::check_router) >= 30);
  // The seeded patient is re-identified for a loopback client, and only pseudonymous otherwise.
  const std::string care = "0/fhir/Patient/@P", remote = "\x80/fhir/Patient/@P";
  const auto& router = *telehub::fuzz::router_detail::env().router;
  auto as_request = [](const std::string& s) {
    return telehub::fuzz::router_fuzz_request({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()});
  };
  const auto identified = router.handle(as_request(care));
  CHECK(identified.status == 200);
  CHECK(identified.body.find("Jansen") != std::string::npos);
  const auto pseudonymous = router.handle(as_request(remote));
  CHECK(pseudonymous.status == 200);
  CHECK(pseudonymous.body.find("Jansen") == std::string::npos);
  const auto bundle = router.handle(as_request("0/fhir/Observation?patient=@P")).body;
  std::size_t entries = 0;
  for (auto pos = bundle.find("\"fullUrl\""); pos != std::string::npos; pos = bundle.find("\"fullUrl\"", pos + 1)) ++entries;
  CHECK(entries == 6);

  // The authenticated router (input bit 6): the care client within its care relation sees the
  // identified patient; no token is a 401; the operator reads no patient; a signed assertion
  // gets a token.
  CHECK(telehub::fuzz::check_router({reinterpret_cast<const std::uint8_t*>("p"), 1}) == "");
  const auto& auth_router = *telehub::fuzz::router_detail::env().auth_router;
  const auto care_read = auth_router.handle(as_request("p/fhir/Patient/@P\nAuthorization: Bearer @T\n\n"));
  CHECK(care_read.status == 200);
  CHECK(care_read.body.find("Jansen") != std::string::npos);
  CHECK(auth_router.handle(as_request("p/fhir/Patient/@P\n\n")).status == 401);
  CHECK(auth_router.handle(as_request("p/fhir/Patient/@P\nAuthorization: Bearer @O\n\n")).status == 403);
  const auto token = auth_router.handle(as_request(
      "q/auth/token\nContent-Type: application/x-www-form-urlencoded\n\ngrant_type=client_credentials&scope=system%2F"
      "Observation.rs&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&"
      "client_assertion=@A"));
  CHECK(token.status == 200);
  CHECK(token.body.find("\"access_token\"") != std::string::npos);
}

TEST_CASE("fuzz finding: a given name or address line holding U+0000 is kept whole", "[fhir][fuzz]") {
  // person_from_patient used GetString() (NUL-terminated) for these two fields only, so
  // "An\u0000na" was silently registered as "An".
  const auto p = telehub::fhir::person_from_patient(
      R"({"resourceType":"Patient","name":[{"given":["An\u0000na","B"]}],"address":[{"line":["Kerk\u0000straat 1"]}]})");
  REQUIRE(p);
  CHECK(p->given_name == std::string("An\0na B", 7));
  CHECK(p->address_line == std::string("Kerk\0straat 1", 13));
}

TEST_CASE("fuzz finding: GET AuditEvent with an unknown parameter does not copy its name unchecked", "[fhir][fuzz]") {
  // The decoded name went into the OperationOutcome as is: "%FF" made the body invalid UTF-8.
  const auto& router = *telehub::fuzz::router_detail::env().router;
  telehub::fhir::Request bad{"GET", "/fhir/AuditEvent?%01%FF=1", {}, "", "127.0.0.1:50000", true};
  const auto r = router.handle(bad);
  CHECK(r.status == 400);
  CHECK(r.body.find("unknown search parameter (unreadable name)") != std::string::npos);
  telehub::fhir::Request plain{"GET", "/fhir/AuditEvent?kind=1", {}, "", "127.0.0.1:50000", true};
  CHECK(router.handle(plain).body.find("unknown search parameter kind") != std::string::npos);
}
