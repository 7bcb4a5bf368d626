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
//     "subject": {                           // optional: where the payload names the patient, to be
//       "bsn": {"pointer": "/patient/bsn"},  //   checked against the identity vault (never stored):
//       "record_system": {"const": "..."},   //   bsn and/or record_system + record_value
//       "record_value": {"pointer": "/patient/mrn"}},
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
// Pointers are RFC 6901 JSON pointers ("" is the whole document or element, "~0" is '~', "~1"
// is '/', array indices are decimal without leading zeros; "-" finds nothing). JSON null counts
// as missing. A value source is {"const": number} or {"pointer": p} with an optional "type"
// ("number" (default), "boolean" (true/false -> 1/0), "string-number" (a decimal number written
// as a string, read strictly by std::from_chars: no spaces, no '+', no hex, finite)) and, except
// for booleans, an optional "scale" (a finite non-zero factor, e.g. 0.1 for a vendor that sends
// tenths; a scaled value that is not finite is refused). A unit source is {"const": "mm[Hg]"} or
// {"pointer": p} with an optional "map" of exact unit strings to UCUM codes ({"lbs": "[lb_av]"});
// a string not in the map, or without a map an empty one or one over 64 characters, is refused
// (bad_unit). Units are passed on as sent or mapped; units::normalise converts them to canonical.
// A device source is {"const": string} or {"pointer": p} to a string of at most 128 characters
// or an integer (its decimal text); a device pointer that finds nothing leaves the field empty.
//
// Scope: "match" and "device" pointers are resolved against the whole payload; with "each",
// "time" and the reading pointers are resolved against each element of the array (processed in
// order), otherwise against the whole payload. Sets are tried in order and every set whose
// conditions hold contributes readings, in template order. "equals" compares with the same JSON
// type only (2 equals 2.0, but not "2"); "exists" tests presence (null is absent).
//
// Times: "rfc3339" via core::parse_rfc3339; "unix_s" and "unix_ms" accept integers and
// fractions (truncated to milliseconds) between 1970-01-01 and 9999-12-31. A set with a "time"
// whose pointer finds nothing is refused; a set without "time" uses `now`.
//
// Template validation (parse): every member above is checked, and an unknown or duplicated
// member is refused, so a typo cannot be silently ignored. "template" is [a-z0-9-]{1,64};
// 1..16 sets; 1..16 match conditions when "match" is given; 1..32 readings per set; codes must be
// in core::find_code; a panel code (CodeInfo::panel) needs 1..16 "components" and has no "value"
// or "unit"; any other code needs both and has no "components"; components are not panels.
//
// Payload semantics: a payload no set matches is refused (no_match); one that matches but yields
// no readings, or more than kMaxReadings, is refused (bad_payload); "each" that is not an array
// is refused (bad_payload). "optional": true lets a reading or component be missing (then it is
// skipped); a wrong type is refused even when optional. A required component that is missing
// skips its panel if the panel is optional, otherwise refuses the payload; a panel with no
// components left is skipped. Messages name the template, the path in the template and the
// pointer text, e.g. "template acme-bp-cuff: sets[0].readings[1].value: /pulse missing" (with
// "each", the element index: "sets[0].each[3].readings[0]..."), never a payload value. Fields
// not named by the template are never read, so whatever else a vendor payload carries (names,
// birth dates, BSNs) never leaves the decoder.
//
// Error policy: parse()/load_dir() return Result (invalid_argument/bad_template naming the
// file and the JSON path in the template: "acme-bp.json: sets[0].readings[1].code: not a known
// code"; a code not in the code table is caught here); apply() returns Result, all
// invalid_argument: bad_payload (including JSON that parse_json refuses), no_match, bad_unit.
// Never throws (except std::bad_alloc).
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
  // Loads every regular *.json file (other files are ignored), in file-name order. Fails with
  // invalid_argument/bad_template on the first file that does not parse, cannot be read or
  // whose "template" differs from its file name without ".json"; not_found/no_mappings if
  // `dir` does not exist; unavailable/io if it cannot be listed. An empty directory gives an
  // empty set.
  [[nodiscard]] static Result<MappingSet> load_dir(const std::filesystem::path& dir);

  // nullptr when there is no template of that name.
  const MappingTemplate* find(std::string_view name) const;
  std::vector<std::string> names() const;
  // Adds `t`, replacing a template of the same name.
  void add(MappingTemplate t);

 private:
  std::map<std::string, MappingTemplate, std::less<>> templates_;
};

}  // namespace telehub::formats
