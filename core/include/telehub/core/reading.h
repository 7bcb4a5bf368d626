// core::Reading: one measurement taken at a patient's home, as it flows through telehub.
//
// A Reading is a plain value. Who it is about (`subject`) depends on the layer: ingest fills
// in the subject pseudonym of the device's binding; storage only accepts readings wrapped by
// privacy (privacy::PseudonymousReading), so a reading still carrying an identifier cannot
// reach it. Panels (blood pressure 85354-9) have no value of their own and carry components.
//
// Thread-safety: value type.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "telehub/core/time.h"

namespace telehub::core {

struct Component {
  std::string code;  // LOINC
  double value = 0;
  std::string unit;  // UCUM

  bool operator==(const Component&) const = default;
};

struct Reading {
  std::string subject;      // subject reference as known to the current layer (a pseudonym in storage)
  std::string device;       // telehub device id
  std::string code;         // LOINC
  std::optional<double> value;  // empty for panels
  std::string unit;         // UCUM; empty for panels
  TimePoint time{};         // effective time (UTC, ms)
  std::uint64_t sequence = 0;  // envelope sequence number of the message that carried it
  std::vector<Component> components;  // panel members, in payload order

  bool operator==(const Reading&) const = default;
};

}  // namespace telehub::core
