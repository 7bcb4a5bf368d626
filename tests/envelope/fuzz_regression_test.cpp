// Replays the fuzzing seed corpus (tests/fuzz/corpus/**) and every saved crash input
// (tests/fuzz/regressions/*) through the same invariant checks as the libFuzzer harnesses
// (tests/fuzz/fuzz_checks.h), in the normal build, so a fixed crash stays fixed.
// docs/fuzzing.md describes how an input gets here.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "../fuzz/fuzz_checks.h"
#include "test_support.h"

namespace fs = std::filesystem;

namespace {

// Every regular file under `dir` (recursively), sorted; README files are documentation.
std::vector<fs::path> inputs_under(const fs::path& dir) {
  std::vector<fs::path> files;
  if (!fs::is_directory(dir)) return files;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file() && entry.path().filename().string().rfind("README", 0) != 0)
      files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

telehub::core::Bytes read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  return telehub::core::Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("fuzz corpus and regression inputs keep every harness invariant", "[envelope][fuzz]") {
  const fs::path fuzz_dir = telehub::testing::source_dir() / "tests" / "fuzz";
  std::vector<fs::path> files = inputs_under(fuzz_dir / "corpus");
  const std::size_t corpus_files = files.size();
  const auto regressions = inputs_under(fuzz_dir / "regressions");
  files.insert(files.end(), regressions.begin(), regressions.end());

  // The seed corpus has 36 files; fewer means the path is wrong or the corpus was lost.
  REQUIRE(corpus_files >= 30);
  REQUIRE(regressions.size() >= 1);

  for (const auto& path : files) {
    INFO(fs::relative(path, fuzz_dir).string());
    const auto bytes = read_file(path);
    // check_envelope() also runs check_payload() on the input sealed as a plaintext.
    CHECK(telehub::fuzz::check_envelope(bytes) == "");
    CHECK(telehub::fuzz::check_payload(bytes) == "");
  }
}

TEST_CASE("fuzz checks reach the post-authentication path with the protocol vectors", "[envelope][fuzz]") {
  const fs::path corpus = telehub::testing::source_dir() / "tests" / "fuzz" / "corpus";
  // Vector 1 opens with the fixed fuzzing key, so the post-authentication checks ran on it.
  const auto vector1 = read_file(corpus / "envelope" / "vector1-heart-rate.bin");
  auto opened = telehub::envelope::open(vector1, telehub::fuzz::kFuzzKey);
  REQUIRE(opened);
  CHECK(telehub::fuzz::check_payload(*opened) == "");
  // A payload decode accepts is round-tripped; refusals are fine as long as they are bad_payload.
  CHECK(telehub::fuzz::check_payload(telehub::core::as_bytes("not json")) == "");
  CHECK(telehub::fuzz::check_envelope({}) == "");
}
