// k-anonymity by global recoding and suppression (docs/research.md, "What was done to protect
// the participants"): records (one per subject) carry quasi-identifiers; each quasi-identifier
// has a generalisation ladder, level 0 the most detailed value a study keeps, the last level
// "*" (everything). The algorithm (Samarati/Sweeney style, greedy):
//   1. group the records into equivalence classes by their generalised quasi-identifiers;
//   2. if the records in classes smaller than k are at most floor(max_suppression * n), suppress
//      them and stop;
//   3. otherwise generalise one step the quasi-identifier that has the most distinct values at
//      its current level (ties: the first in the order given) and is not at "*" yet; go to 1;
//   4. when every quasi-identifier is at "*" there is one class: kept when it has at least k
//      records, else every record is suppressed.
// So every class kept holds at least k records, and at most max(floor(max_suppression * n),
// records of the last step) records are suppressed. The levels are global: every record is
// generalised to the same level of a quasi-identifier (one column means one thing).
//
// Standard ladders (the raw values the caller gives):
//   age_ladder(w):    raw = age in whole years ("" unknown). Level i: bands of w*2^i years
//                     aligned to multiples of the width ("40-49"), up to width >= 120; then "*".
//   region_ladder(d): raw = a PC4 area ("1234", "" unknown). Levels: the first d digits (d = 4, 3
//                     or 2), then d-1, ... 1 digits, then "*".
//   sex_ladder():     raw = FHIR administrative gender ("" = "unknown"). Levels: as is, "*".
// An unknown raw value generalises to "*" at every level (it is its own, and the widest, group).
//
// Thread-safety: pure functions; ladders are immutable values safe to share.
#pragma once

#include <cstddef>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "telehub/core/error.h"

namespace telehub::privacy {

// One quasi-identifier's generalisation ladder.
struct Ladder {
  std::string name;  // column name, e.g. "age_band"
  // Number of levels, the last being "*". REQUIRES: >= 1.
  int levels = 1;
  // The raw value generalised to `level` (0 .. levels-1); at levels-1 always "*".
  std::function<std::string(std::string_view raw, int level)> generalise;
  // What a level means, for the manifest ("10 years", "pc3", "kept", "*").
  std::function<std::string(int level)> describe;
};

Ladder age_ladder(int band_years);   // REQUIRES: band_years >= 1
Ladder region_ladder(int digits);    // REQUIRES: digits in 2..4
Ladder sex_ladder();

struct KAnonymityOptions {
  // Smallest class size kept. REQUIRES: >= 1. Default: 5.
  std::size_t k = 5;
  // Share of the records that may be suppressed before generalising further. REQUIRES: 0..1.
  // Default: 0.05.
  double max_suppression = 0.05;
};

struct EquivalenceClass {
  std::vector<std::string> key;  // generalised values, in ladder order
  std::size_t size = 0;
};

struct KAnonymityResult {
  std::vector<int> levels;                // level reached per ladder
  std::vector<std::vector<std::string>> keys;  // per record: its generalised values
  std::vector<bool> suppressed;           // per record
  std::size_t suppressed_count = 0;
  std::vector<EquivalenceClass> classes;  // classes kept (size >= k), sorted by key
};

// Runs the algorithm above. `records[i][j]` is record i's raw value of ladder j. Fails with
// invalid_argument/bad_k_anonymity when a record has not one value per ladder, a ladder has no
// levels or function, k is 0 or max_suppression is outside 0..1. No ladders: one class of all.
[[nodiscard]] Result<KAnonymityResult> k_anonymise(const std::vector<std::vector<std::string>>& records,
                                                   std::span<const Ladder> ladders, const KAnonymityOptions& options);

}  // namespace telehub::privacy
