// The bench programs' whole-file read (message files, key files). Not a telehub format helper.
// Error policy: returns false and sets `error` when the file cannot be opened.
#pragma once

#include <cstdio>
#include <string>

namespace telehub::bench {

inline bool read_whole_file(const std::string& path, std::string& data, std::string& error) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    error = "cannot open " + path;
    return false;
  }
  data.clear();
  char chunk[1 << 16];
  for (std::size_t n; (n = std::fread(chunk, 1, sizeof chunk, f)) > 0;) data.append(chunk, n);
  std::fclose(f);
  return true;
}

}  // namespace telehub::bench
