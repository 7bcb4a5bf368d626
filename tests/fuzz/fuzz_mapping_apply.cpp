// libFuzzer harness: the input as a vendor payload, applied with every shipped mapping
// template (config/mappings/*.json, embedded below so the harness needs no files at run time;
// the Catch2 test "the mapping fuzz corpus goes through every shipped template ..." in
// tests/formats/mapping_test.cpp replays the corpus through the files themselves).
//
// Invariants (formats/include/telehub/formats/mapping.h): apply() never crashes or throws; on
// failure the error is invalid_argument with reason bad_payload, no_match or bad_unit and a
// message that starts with "template <name>: " or "payload: "; on success there are
// 1..kMaxReadings readings, each with a known code, a panel exactly when the code is one
// (components with known non-panel codes, no value or unit of its own), otherwise a finite
// value and a non-empty unit; every component value is finite; subject/device/sequence stay
// empty and device strings are at most 128 characters. Build and run: tests/fuzz/run.sh
// (FUZZ_TARGETS=mapping_apply), docs/fuzzing.md.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "telehub/core/codes.h"
#include "telehub/core/time.h"
#include "telehub/formats/mapping.h"

namespace {

// Keep in step with config/mappings/ (the Catch2 test checks the files themselves).
const std::pair<const char*, const char*> kTemplates[] = {
    {"acme-bp-cuff", R"json({
  "template": "acme-bp-cuff",
  "description": "Acme BP-200 upper-arm cuff through the Acme home gateway: one spot measurement per message, pressures in mmHg or kPa as the cuff is set up, pulse and the irregular-heartbeat flag.",
  "device": {
    "manufacturer": {"const": "Acme"},
    "model": {"pointer": "/meta/model"},
    "serial": {"pointer": "/meta/sn"}
  },
  "subject": {
    "bsn": {"pointer": "/patient/bsn"},
    "record_system": {"const": "https://acme.example.com/fhir/NamingSystem/patient-mrn"},
    "record_value": {"pointer": "/patient/mrn"}
  },
  "sets": [
    {
      "match": [{"pointer": "/kind", "equals": "bp"}],
      "time": {"pointer": "/measurement/takenAt", "format": "rfc3339"},
      "readings": [
        {"code": "85354-9", "components": [
          {"code": "8480-6", "value": {"pointer": "/measurement/sys"},
           "unit": {"pointer": "/measurement/unit", "map": {"mmHg": "mm[Hg]", "kPa": "kPa"}}},
          {"code": "8462-4", "value": {"pointer": "/measurement/dia"},
           "unit": {"pointer": "/measurement/unit", "map": {"mmHg": "mm[Hg]", "kPa": "kPa"}}},
          {"code": "irregular-heartbeat", "value": {"pointer": "/measurement/ihb", "type": "boolean"},
           "unit": {"const": "1"}, "optional": true}
        ]},
        {"code": "8867-4", "value": {"pointer": "/measurement/pulse"}, "unit": {"const": "/min"}}
      ]
    }
  ]
}
)json"},
    {"tenso-scale-lb", R"json({
  "template": "tenso-scale-lb",
  "description": "Tenso bathroom scale (US firmware) via the Tenso cloud relay: weight in tenths of a pound, unix milliseconds, numeric serial.",
  "device": {
    "manufacturer": {"const": "Tenso"},
    "model": {"pointer": "/device/model"},
    "serial": {"pointer": "/device/serial"}
  },
  "sets": [
    {
      "match": [{"pointer": "/event", "equals": "weigh-in"}, {"pointer": "/weighIn/stable", "equals": true}],
      "time": {"pointer": "/weighIn/ts", "format": "unix_ms"},
      "readings": [
        {"code": "29463-7", "value": {"pointer": "/weighIn/weight_dlb", "scale": 0.1}, "unit": {"const": "[lb_av]"}}
      ]
    }
  ]
}
)json"},
    {"oxi-pulse-oximeter", R"json({
  "template": "oxi-pulse-oximeter",
  "description": "Oxi fingertip pulse oximeter through its Bluetooth bridge app: spot check with SpO2, pulse rate and perfusion index, all sent as decimal strings, unix seconds.",
  "device": {
    "manufacturer": {"const": "Oxi"},
    "model": {"pointer": "/hw/model"},
    "serial": {"pointer": "/hw/serialNo"}
  },
  "sets": [
    {
      "match": [{"pointer": "/msgType", "equals": "spot"}, {"pointer": "/data/spo2", "exists": true}],
      "time": {"pointer": "/time", "format": "unix_s"},
      "readings": [
        {"code": "59408-5", "value": {"pointer": "/data/spo2", "type": "string-number"}, "unit": {"const": "%"}},
        {"code": "8867-4", "value": {"pointer": "/data/pr", "type": "string-number"}, "unit": {"const": "/min"}},
        {"code": "perfusion-index", "value": {"pointer": "/data/pi", "type": "string-number"}, "unit": {"const": "%"},
         "optional": true}
      ]
    }
  ]
}
)json"},
    {"fitband-wearable", R"json({
  "template": "fitband-wearable",
  "description": "Fitband wrist wearable daily sync: a batch of minute heart rates ({t, bpm}, unix seconds) and the step count of the day that ended.",
  "device": {
    "manufacturer": {"const": "Fitband"},
    "model": {"pointer": "/band/model"},
    "serial": {"pointer": "/band/id"}
  },
  "sets": [
    {
      "match": [{"pointer": "/schema", "equals": 3}, {"pointer": "/heartRate", "exists": true}],
      "each": "/heartRate",
      "time": {"pointer": "/t", "format": "unix_s"},
      "readings": [
        {"code": "8867-4", "value": {"pointer": "/bpm"}, "unit": {"const": "/min"}}
      ]
    },
    {
      "match": [{"pointer": "/schema", "equals": 3}, {"pointer": "/daily/steps", "exists": true}],
      "time": {"pointer": "/daily/dayEnd", "format": "unix_s"},
      "readings": [
        {"code": "41950-7", "value": {"pointer": "/daily/steps"}, "unit": {"const": "{count}"}}
      ]
    }
  ]
}
)json"},
};

[[noreturn]] void violated(const std::string& name, const std::string& why) {
  std::fprintf(stderr, "fuzz_mapping_apply: %s: invariant violated: %s\n", name.c_str(), why.c_str());
  std::abort();
}

const std::vector<telehub::formats::MappingTemplate>& templates() {
  static const auto all = [] {
    std::vector<telehub::formats::MappingTemplate> out;
    for (const auto& [name, text] : kTemplates) {
      auto t = telehub::formats::MappingTemplate::parse(text, name);
      if (!t) violated(name, "shipped template does not parse: " + t.error().to_string());
      out.push_back(std::move(*t));
    }
    return out;
  }();
  return all;
}

std::string check(const telehub::formats::MappingTemplate& t, std::span<const std::uint8_t> data) {
  const auto now = telehub::core::from_unix_millis(1795860000000);
  auto d = t.apply(data, now);
  if (!d) {
    const auto& e = d.error();
    if (e.code != telehub::core::Code::kInvalidArgument) return "unexpected error code: " + e.to_string();
    if (e.reason != "bad_payload" && e.reason != "no_match" && e.reason != "bad_unit") return "unexpected reason: " + e.to_string();
    if (e.message.rfind("template " + t.name() + ": ", 0) != 0 && e.message.rfind("payload: ", 0) != 0)
      return "message does not name the template: " + e.to_string();
    return {};
  }
  if (d->readings.empty() || d->readings.size() > telehub::formats::kMaxReadings)
    return "returned " + std::to_string(d->readings.size()) + " readings";
  if (d->device.manufacturer.size() > 128 || d->device.model.size() > 128 || d->device.serial.size() > 128)
    return "device string longer than 128 characters";
  for (const auto& r : d->readings) {
    const auto* info = telehub::core::find_code(r.code);
    if (!info) return "reading with an unknown code";
    if (!r.subject.empty() || !r.device.empty() || r.sequence != 0) return "reading has subject/device/sequence";
    if (info->panel) {
      if (r.components.empty() || r.value || !r.unit.empty()) return "panel without components or with a value";
      for (const auto& c : r.components) {
        const auto* ci = telehub::core::find_code(c.code);
        if (!ci || ci->panel) return "component with an unknown or panel code";
        if (!std::isfinite(c.value)) return "component value is not finite";
        if (c.unit.empty()) return "component with an empty unit";
      }
    } else {
      if (!r.components.empty() || !r.value) return "single reading without a value or with components";
      if (!std::isfinite(*r.value)) return "value is not finite";
      if (r.unit.empty()) return "reading with an empty unit";
    }
  }
  // Deterministic: the same input gives the same result.
  auto again = t.apply(data, now);
  if (!again || again->readings != d->readings || again->device != d->device) return "apply is not deterministic";
  return {};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  for (const auto& t : templates()) {
    const std::string why = check(t, {data, size});
    if (!why.empty()) violated(t.name(), why);
  }
  return 0;
}
