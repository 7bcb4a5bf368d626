// libFuzzer harness for research/include/telehub/research/study.h and query.h: untrusted study
// definitions and aggregate query parameters.
//   1. parse_study(data): never crashes; fails only with invalid_argument/bad_study, with a
//      message naming a member ("<member>: ..."); on success the id matches
//      [A-Za-z0-9._-]{1,64}, k is 2..1000, max_suppression 0..1, at least one variable, the
//      consent scope is "research" or "research:<id>", and age band 0..120, region 0/2/3/4.
//   2. data split at '&' and '=' as query parameters for parse_study_query(): never crashes;
//      fails only with bad_query; on success the code is non-empty, percentiles in 0..100,
//      min_subjects 0 or >= 2.
// A violation prints one line and aborts. Built and run by tests/fuzz/run.sh (target study_parse).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "telehub/research/query.h"
#include "telehub/research/study.h"

namespace {

using namespace telehub;

[[noreturn]] void violated(const char* why) {
  std::fprintf(stderr, "fuzz_study_parse: invariant violated: %s\n", why);
  std::abort();
}

bool id_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto study = research::parse_study(text);
  if (!study) {
    if (study.error().reason != "bad_study" || study.error().code != core::Code::kInvalidArgument) violated("study error");
    if (study.error().message.find(": ") == std::string::npos) violated("a study error that names no member");
  } else {
    const auto& s = *study;
    if (s.id.empty() || s.id.size() > 64) violated("id length");
    for (char c : s.id)
      if (!id_char(c)) violated("id character");
    if (s.k < 2 || s.k > 1000) violated("k");
    if (!(s.max_suppression >= 0 && s.max_suppression <= 1)) violated("max_suppression");
    if (s.variables.empty()) violated("no variable");
    if (s.consent_scope != "research" && s.consent_scope != "research:" + s.id) violated("consent scope");
    const auto& q = s.quasi_identifiers;
    if (q.age_band_years < 0 || q.age_band_years > 120) violated("age band");
    if (q.region_digits != 0 && q.region_digits != 2 && q.region_digits != 3 && q.region_digits != 4) violated("region");
  }
  std::vector<std::pair<std::string, std::string>> params;
  for (std::size_t b = 0; b <= text.size();) {
    const auto e = std::min(text.find('&', b), text.size());
    const auto pair = text.substr(b, e - b);
    const auto eq = pair.find('=');
    params.emplace_back(std::string(pair.substr(0, eq)), eq == std::string_view::npos ? "" : std::string(pair.substr(eq + 1)));
    b = e + 1;
  }
  auto query = research::parse_study_query(params);
  if (!query) {
    if (query.error().reason != "bad_query") violated("query error");
  } else {
    if (query->code.empty()) violated("empty code");
    for (double p : query->percentiles)
      if (!(p >= 0 && p <= 100)) violated("percentile");
    if (query->min_subjects == 1 || query->min_subjects < 0) violated("min_subjects");
  }
  return 0;
}
