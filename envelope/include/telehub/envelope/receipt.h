// Receipts: the hub's word to a gateway about one of its messages (docs/protocol.md,
// "Receipts"). Published by the hub on `telehub/v1/devices/<device id>/receipts` at QoS 1
// after the message's readings are committed and synced to disk (or after it was refused), and
// only for messages that were opened with the device's key.
//
//   {"v":1,"device":"dev-3f9c0a","sequence":42,"status":"stored"}
//   {"v":1,"device":"dev-3f9c0a","sequence":43,"status":"rejected","reason":"bad_unit"}
//
// status: "stored" (committed now), "duplicate" (committed earlier), "rejected" (quarantined
// with `reason`; resending the same bytes cannot help).
//
// Error policy: Result, never throws; decode fails with invalid_argument/bad_receipt.
// Thread-safety: stateless functions.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "telehub/core/error.h"

namespace telehub::envelope {

struct Receipt {
  enum class Status { kStored, kDuplicate, kRejected };
  std::string device_id;
  std::uint64_t sequence = 0;
  Status status = Status::kStored;
  std::string reason;  // set for kRejected

  bool operator==(const Receipt&) const = default;
};

// "telehub/v1/devices/<device id>/receipts"
std::string receipts_topic_for(const std::string& device_id);

[[nodiscard]] Result<std::string> encode_receipt(const Receipt& receipt);
[[nodiscard]] Result<Receipt> decode_receipt(std::span<const std::uint8_t> json);

}  // namespace telehub::envelope
