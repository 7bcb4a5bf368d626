// Command-line parsing for the telehub commands: positional words, then --name value pairs
// (or --flag). Unknown options are errors, so a typo never silently changes behaviour.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "telehub/core/error.h"

namespace telehub::apps {

struct Args {
  std::vector<std::string> words;              // positional
  std::map<std::string, std::string> options;  // --name value; flags map to "true"

  bool has(const std::string& name) const { return options.count(name) > 0; }
  std::string get(const std::string& name, const std::string& fallback = "") const;
  // Integer option in [min, max]; fails with invalid_argument/bad_option naming the option.
  [[nodiscard]] Result<long long> get_int(const std::string& name, long long fallback, long long min, long long max) const;
};

// Parses argv[first..]. `value_options` take a value; `flags` do not.
[[nodiscard]] Result<Args> parse_args(int argc, char** argv, int first, const std::set<std::string>& value_options,
                                      const std::set<std::string>& flags);

}  // namespace telehub::apps
