// formats::Decoded: what a device payload decoder (payload v1, SenML, a vendor mapping
// template) makes of one opened message, before units are normalised and values checked.
//
// Readings carry code, value or components, unit and time as the device sent them (the unit
// may still be "[lb_av]" or "kPa": units::normalise() converts). subject, device and sequence
// stay empty: the pipeline fills them in from the device binding and the envelope.
//
// Device metadata comes from the payload when the format carries it. `serial` is the device's
// serial number in clear: it is an identifier, so the pipeline pseudonymises it before it is
// stored anywhere (docs/payloads.md, "No identifiers stored").
//
// Thread-safety: value types.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "telehub/core/reading.h"

namespace telehub::formats {

struct DeviceInfo {
  std::string manufacturer;
  std::string model;
  std::string serial;  // clear text; never stored (see above)

  bool empty() const { return manufacturer.empty() && model.empty() && serial.empty(); }
  bool operator==(const DeviceInfo&) const = default;
};

// Identifiers of the patient a payload names (a mapping template's "subject"), only so the
// pipeline can check them against the identity vault: the device's subject must be the person
// they name (docs/payloads.md, "No identifiers stored"). Never stored, never logged.
struct SubjectIdentifiers {
  std::string bsn;
  std::string record_system;
  std::string record_value;

  bool empty() const { return bsn.empty() && record_value.empty(); }
};

struct Decoded {
  std::vector<core::Reading> readings;
  DeviceInfo device;
  SubjectIdentifiers subject;
};

// Most readings one message may carry, whatever its format (payload v1's limit).
inline constexpr std::size_t kMaxReadings = 1000;

// The payload formats a device can be enrolled with (storage keeps the name per device):
// "native" (payload v1, docs/protocol.md), "senml" (RFC 8428 JSON), or the name of a mapping
// template ("template:<name>", config/mappings/<name>.json).
inline constexpr std::string_view kNativeFormat = "native";
inline constexpr std::string_view kSenmlFormat = "senml";
inline constexpr std::string_view kTemplatePrefix = "template:";

}  // namespace telehub::formats
