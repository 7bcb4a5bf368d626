#include "args.h"

#include <charconv>

namespace telehub::apps {

std::string Args::get(const std::string& name, const std::string& fallback) const {
  auto it = options.find(name);
  return it == options.end() ? fallback : it->second;
}

Result<long long> Args::get_int(const std::string& name, long long fallback, long long min, long long max) const {
  auto it = options.find(name);
  if (it == options.end()) return fallback;
  long long v = 0;
  const auto& s = it->second;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < min || v > max)
    return core::fail(core::Code::kInvalidArgument, "bad_option",
                      "--" + name + " must be a whole number from " + std::to_string(min) + " to " + std::to_string(max));
  return v;
}

Result<Args> parse_args(int argc, char** argv, int first, const std::set<std::string>& value_options,
                        const std::set<std::string>& flags) {
  Args a;
  for (int i = first; i < argc; ++i) {
    std::string w = argv[i];
    if (w.rfind("--", 0) != 0) {
      a.words.push_back(w);
      continue;
    }
    std::string name = w.substr(2), value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      if (!value_options.count(name))
        return core::fail(core::Code::kInvalidArgument, "bad_option", "unknown option --" + name);
    } else if (flags.count(name)) {
      value = "true";
    } else if (value_options.count(name)) {
      if (i + 1 >= argc) return core::fail(core::Code::kInvalidArgument, "bad_option", "--" + name + " needs a value");
      value = argv[++i];
    } else {
      return core::fail(core::Code::kInvalidArgument, "bad_option", "unknown option --" + name);
    }
    a.options[name] = value;
  }
  return a;
}

}  // namespace telehub::apps
