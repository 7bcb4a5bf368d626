// libFuzzer harness: the input as the query string of a FHIR Observation search, through
// fhir::parse_query and fhir::parse_observation_search (fhir/src/search_params.h). Build and
// run: FUZZ_TARGETS=search_params tests/fuzz/run.sh (docs/fuzzing.md); seeds:
// tests/fuzz/corpus/search/.
//
// The check is a plain function so the Catch2 replay (tests/fhir/fuzz_replay_test.cpp) can
// include this file with TELEHUB_FUZZ_NO_ENTRY defined and run the seeds and saved inputs
// through the same invariants. What is checked (contracts of search_params.h):
//   - parse_query fails only on a '%' not followed by two hex digits; every decoded name and
//     value survives percent_encode + percent_decode unchanged.
//   - parse_observation_search, on failure: an Issue of severity error, code required | value |
//     not-supported (all answered with 400), and diagnostics that are non-empty, printable
//     ASCII, at most 160 bytes, and start with the parameter's name ("patient", "subject",
//     "code", "date", "_count", "_cursor"): the header promises they "name parameters but never
//     echo values"; the one echo (the unsupported date prefix) must be two lower-case letters.
//   - on success: count in 1..max_count; a subject is a valid pseudonym (32 lower-case hex)
//     unless the search matches nothing; codes sorted, unique, non-empty, without ','; an empty
//     code list or an empty date range means matches_nothing; a cursor has id >= 1; link params
//     are patient/subject/code/date with non-empty values; ignored names are "safe" (at most 64
//     of [A-Za-z0-9_.:-]) or "(unreadable name)".
//   - the next link the router builds from link_params, _count and _cursor (percent-encoded)
//     parses back to the same search (subject, codes, bounds, count, cursor, matches_nothing).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../../fhir/src/search_params.h"
#include "telehub/privacy/pseudonym.h"

namespace telehub::fuzz {

inline const fhir::SearchLimits kSearchFuzzLimits{"http://fhir.test/fhir", 50, 1000};

namespace search_detail {

inline bool has_bad_escape(std::string_view text) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); };
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') continue;
    if (i + 2 >= text.size() || !hex(text[i + 1]) || !hex(text[i + 2])) return true;
    i += 2;
  }
  return false;
}

inline std::string check_issue(const fhir::Issue& issue) {
  if (issue.severity != "error") return "issue severity is not error: " + issue.severity;
  if (issue.code != "required" && issue.code != "value" && issue.code != "not-supported")
    return "issue code is not required/value/not-supported: " + issue.code;
  const std::string& d = issue.diagnostics;
  if (d.empty()) return "issue diagnostics are empty";
  if (d.size() > 160) return "issue diagnostics longer than 160 bytes";
  if (!std::all_of(d.begin(), d.end(), [](char c) { return c >= 0x20 && c < 0x7f; }))
    return "issue diagnostics hold a control or non-ASCII byte";
  static constexpr std::string_view kNames[] = {"patient", "subject", "code", "date", "_count", "_cursor"};
  if (!std::any_of(std::begin(kNames), std::end(kNames), [&](std::string_view n) { return d.starts_with(n); }))
    return "issue diagnostics do not start with a parameter name: " + d;
  // The only value echoed: "date: the prefix 'xx' is not supported ...".
  std::string unquoted = d;  // "(',')" names the list separator, a fixed text
  for (auto pos = unquoted.find("(',')"); pos != std::string::npos; pos = unquoted.find("(',')")) unquoted.erase(pos, 5);
  if (const auto quote = unquoted.find('\''); quote != std::string::npos) {
    if (!d.starts_with("date: the prefix '") || quote + 3 >= unquoted.size() || unquoted[quote + 3] != '\'')
      return "issue diagnostics quote something: " + d;
    const std::string prefix = unquoted.substr(quote + 1, 2);
    if (prefix != "ne" && prefix != "sa" && prefix != "eb" && prefix != "ap")
      return "issue diagnostics quote an unexpected date prefix";
  }
  return {};
}

inline bool safe_ignored(const std::string& name) {
  if (name == "(unreadable name)") return true;
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.' || c == ':';
  });
}

inline std::string check_search(const fhir::ObservationSearch& s, const fhir::SearchLimits& limits) {
  if (s.count < 1 || s.count > std::min<std::size_t>(limits.max_count, 1000)) return "count outside 1..max_count";
  if (!s.subject.empty() && !privacy::SubjectPseudonym::parse(s.subject)) return "subject is not a pseudonym";
  if (!s.matches_nothing && s.subject.empty()) return "a search that can match has no subject";
  if (s.codes) {
    if (s.codes->empty() && !s.matches_nothing) return "an empty code list does not mean matches_nothing";
    if (!std::is_sorted(s.codes->begin(), s.codes->end()) ||
        std::adjacent_find(s.codes->begin(), s.codes->end()) != s.codes->end())
      return "codes are not sorted and unique";
    for (const auto& c : *s.codes)
      if (c.empty() || c.find(',') != std::string::npos) return "a code is empty or holds ','";
  }
  if (s.from && s.to && *s.from >= *s.to && !s.matches_nothing) return "an empty date range does not mean matches_nothing";
  if (s.after && s.after->id < 1) return "cursor id below 1";
  for (const auto& p : s.link_params) {
    const std::string_view base = std::string_view(p.name).substr(0, p.name.find(':'));
    if (base != "patient" && base != "subject" && base != "code" && base != "date")
      return "link param that is not patient/subject/code/date";
    if (p.value.empty()) return "link param with an empty value";
  }
  for (const auto& n : s.ignored)
    if (!safe_ignored(n)) return "an ignored name is not safe to show";
  return {};
}

}  // namespace search_detail

inline std::string check_search_params(std::span<const std::uint8_t> data) {
  using namespace search_detail;
  const std::string_view query(reinterpret_cast<const char*>(data.data()), data.size());
  const auto params = fhir::parse_query(query);
  if (!params) {
    if (!has_bad_escape(query)) return "parse_query failed on a query without a bad escape";
    return {};
  }
  if (has_bad_escape(query)) return "parse_query accepted a bad escape";
  for (const auto& p : *params) {
    if (fhir::percent_decode(fhir::percent_encode(p.name)) != p.name ||
        fhir::percent_decode(fhir::percent_encode(p.value)) != p.value)
      return "percent_decode(percent_encode(x)) != x";
  }

  const auto search = fhir::parse_observation_search(*params, kSearchFuzzLimits);
  if (!search) return check_issue(search.error());
  if (auto why = check_search(*search, kSearchFuzzLimits); !why.empty()) return why;

  // The router's next link: link params, _count and _cursor, percent-encoded (router.cpp search_url).
  std::string link;
  for (const auto& p : search->link_params) link += fhir::percent_encode(p.name) + "=" + fhir::percent_encode(p.value) + "&";
  link += "_count=" + std::to_string(search->count);
  if (search->after) link += "&_cursor=" + fhir::format_cursor(*search->after);
  const auto params_again = fhir::parse_query(link);
  if (!params_again) return "the next link does not parse as a query";
  const auto again = fhir::parse_observation_search(*params_again, kSearchFuzzLimits);
  if (!again) return "the next link is refused: " + again.error().diagnostics;
  if (again->subject != search->subject || again->matches_nothing != search->matches_nothing ||
      again->codes != search->codes || again->from != search->from || again->to != search->to ||
      again->count != search->count || again->after != search->after)
    return "the next link parses to another search";
  return {};
}

}  // namespace telehub::fuzz

#ifndef TELEHUB_FUZZ_NO_ENTRY
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string why = telehub::fuzz::check_search_params({data, size});
  if (!why.empty()) {
    std::fprintf(stderr, "fuzz_search_params: invariant violated: %s\n", why.c_str());
    std::abort();
  }
  return 0;
}
#endif
