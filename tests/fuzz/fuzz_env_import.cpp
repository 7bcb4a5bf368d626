// libFuzzer harness for environment/include/telehub/environment/env_store.h: untrusted air-quality
// files. Every input goes, on one store file per process (under /dev/shm, else /tmp), through:
//   1. import_csv(data): never crashes; fails only with invalid_argument/bad_env_file; on
//      success values <= 6 * rows, refused <= rows, at most 20 problems each "line N: ...",
//      areas sorted and each 4 digits, first <= last, and every area it names has values.
//   2. import_lml(data) with three fixed stations and areas: the same rules (refused counts
//      cells, so no bound by rows).
//   3. parse_stations_csv / parse_areas_csv(data): never crash; on success every latitude in
//      -90..90, longitude in -180..180, area 4 digits.
// A violation prints one line and aborts. Built and run by tests/fuzz/run.sh (target env_import).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

#include "telehub/environment/env_store.h"

namespace {

using namespace telehub;

[[noreturn]] void violated(const char* why) {
  std::fprintf(stderr, "fuzz_env_import: invariant violated: %s\n", why);
  std::abort();
}

environment::EnvStore& store() {
  static std::unique_ptr<environment::EnvStore> s = [] {
    const std::filesystem::path dir = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
    const auto file = dir / ("telehub-fuzz-env-" + std::to_string(::getpid()) + ".db");
    std::filesystem::remove(file);
    auto opened = environment::EnvStore::open(file);
    if (!opened) violated("cannot open the store");
    return std::move(*opened);
  }();
  return *s;
}

void check(const Result<environment::ImportReport>& r, bool csv) {
  if (!r) {
    if (r.error().reason != "bad_env_file" || r.error().code != core::Code::kInvalidArgument) violated("unexpected error");
    return;
  }
  if (r->values < 0 || r->refused < 0 || r->replaced > r->values) violated("negative or inconsistent counts");
  if (csv && (r->values > 6 * r->rows || r->refused > r->rows)) violated("more values or refusals than rows allow");
  if (r->problems.size() > 20 || static_cast<std::int64_t>(r->problems.size()) > r->refused) violated("problems");
  for (const auto& p : r->problems)
    if (!p.starts_with("line ")) violated("a problem without its line");
  for (std::size_t i = 0; i < r->areas.size(); ++i) {
    const auto& a = r->areas[i];
    if (a.size() != 4 || a[0] < '1' || a[0] > '9') violated("a stored area that is not a PC4");
    if (i > 0 && !(r->areas[i - 1] < a)) violated("areas not sorted");
  }
  if (r->values > 0 && (!r->first || !r->last || *r->first > *r->last)) violated("first/last");
  if (r->values > 0 && r->areas.empty()) violated("values without areas");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check(store().import_csv(text, "fuzz.csv"), true);
  static const environment::StationMapping mapping{
      {{"NL1", "a", 52.1, 5.1}, {"NL2", "b", 52.0, 5.2}, {"NL01485", "c", 52.3, 4.9}},
      {{"3500", 52.1, 5.1}, {"3501", 52.0, 5.19}, {"1011", 52.3, 4.9}},
      25};
  check(store().import_lml(text, mapping, "fuzz.csv", 1), false);
  if (auto s = environment::parse_stations_csv(text))
    for (const auto& st : *s)
      if (st.lat < -90 || st.lat > 90 || st.lon < -180 || st.lon > 180 || st.id.empty()) violated("station");
  if (auto a = environment::parse_areas_csv(text))
    for (const auto& ar : *a)
      if (ar.area.size() != 4 || ar.lat < -90 || ar.lat > 90) violated("area");
  return 0;
}
