// Device mapping templates (config/mappings/<name>.json): a declarative description of where a
// vendor's JSON payload keeps its values, codes, units and times, in the manner of the device
// mapping templates of cloud IoMT connectors. docs/payloads.md, "Mapping templates", is the
// normative description; in short:
//
//   {
//     "template": "acme-bp-cuff",            // REQUIRED, = the file name without .json
//     "description": "...",
//     "device": {                            // optional: device metadata, each a value source
//       "manufacturer": {"const": "Acme"}, "model": {"pointer": "/meta/model"},
//       "serial": {"pointer": "/meta/sn"}},
//     "sets": [                              // REQUIRED, 1..16 sets, each tried on the payload
//       {
//         "match": [{"pointer": "/type", "equals": "bp"}],   // optional: all must hold, else the set is skipped
//         "each": "/measurements",           // optional: array pointer; the rest is relative to each element
//         "time": {"pointer": "/ts", "format": "rfc3339" | "unix_s" | "unix_ms"},
//         "readings": [                      // 1..32 reading specs
//           {"code": "8867-4", "value": {"pointer": "/pulse"}, "unit": {"const": "/min"},
//            "optional": false},
//           {"code": "85354-9", "components": [
//              {"code": "8480-6", "value": {"pointer": "/sys"}, "unit": {"pointer": "/unit"}},
//              {"code": "8462-4", "value": {"pointer": "/dia"}, "unit": {"pointer": "/unit"}},
//              {"code": "irregular-heartbeat", "value": {"pointer": "/ihb", "type": "boolean"},
//               "unit": {"const": "1"}, "optional": true}]}
//         ]
//       }
//     ]
//   }
//
// Pointers are RFC 6901 JSON pointers. A value source is {"const": x} or {"pointer": p} with an
// optional "type" ("number" (default), "boolean" (true/false -> 1/0), "string-number" (a number
// written as a string)), an optional "map" for unit strings ({"lbs": "[lb_av]"}) and, for
// numbers, an optional "scale" (a factor applied first, e.g. 0.1 for a vendor that sends
// tenths). Units are UCUM codes after mapping; units::normalise converts them to canonical.
// Type matching: a set's "match" conditions compare the value at a pointer with "equals"
// (string, number or boolean) or test "exists": true/false. A payload no set matches is
// refused (reason no_match); a required field that is missing or of the wrong type is refused
// (bad_payload, naming the template, the set index and the pointer, never the value). An
// optional field that is missing skips that reading (or component); a panel with no
// components left is skipped. Fields not named by the template are never read, so whatever
// else a vendor payload carries (names, birth dates, BSNs) never leaves the decoder.
//
// Error policy: parse()/load_dir() return Result (invalid_argument/bad_template naming the
// file and the JSON path in the template); apply() returns Result (bad_payload, no_match,
// unknown_code for a code not in the code table is caught at parse time). Never throws.
//
// Thread-safety: immutable after parse; apply() may be called from any thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "telehub/core/error.h"
#include "telehub/core/time.h"
#include "telehub/formats/decoded.h"

namespace telehub::formats {

class MappingTemplate {
 public:
  // `json`: the template text. `source`: where it came from, for error messages.
  [[nodiscard]] static Result<MappingTemplate> parse(std::string_view json, std::string_view source);

  // Decodes a vendor payload. `now` is the receive time (unused unless a set has no "time":
  // then its readings get `now`).
  [[nodiscard]] Result<Decoded> apply(std::span<const std::uint8_t> payload, core::TimePoint now) const;

  const std::string& name() const;

  MappingTemplate(MappingTemplate&&) noexcept;
  MappingTemplate& operator=(MappingTemplate&&) noexcept;
  ~MappingTemplate();

 private:
  struct Impl;
  explicit MappingTemplate(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// All templates of a directory (every *.json file; the name inside must equal the file name).
class MappingSet {
 public:
  MappingSet() = default;
  // Fails with bad_template on the first bad file, or not_found/no_mappings if `dir` does not exist.
  [[nodiscard]] static Result<MappingSet> load_dir(const std::filesystem::path& dir);

  // nullptr when there is no template of that name.
  const MappingTemplate* find(std::string_view name) const;
  std::vector<std::string> names() const;
  void add(MappingTemplate t);

 private:
  std::map<std::string, MappingTemplate, std::less<>> templates_;
};

}  // namespace telehub::formats
