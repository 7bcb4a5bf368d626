// Strict JSON parsing shared by every decoder of device payloads (payload v1, SenML, vendor
// mapping templates): RFC 8259 text into a rapidjson::Document, with the same limits
// everywhere, so a hostile payload meets the same defences whatever format its device uses.
//
//  - nesting deeper than kMaxJsonDepth arrays/objects is refused before parsing (one linear scan);
//  - every string and member name must be valid UTF-8 after its escapes are decoded (a lone
//    surrogate escape such as "\udc00" is refused);
//  - numbers are converted with std::from_chars: an integer literal that fits 64 bits becomes an
//    integer value, everything else the correctly rounded double; a literal longer than 1100
//    characters, beyond the double range, or non-zero but rounding to zero is refused.
//
// Error policy: returns Status; never throws. Failure: invalid_argument/bad_payload with a
// message "payload: <why> at byte N" that never quotes the document's content.
//
// Thread-safety: stateless.
#pragma once

#include <rapidjson/document.h>

#include <cstddef>
#include <string_view>

#include "telehub/core/error.h"

namespace telehub::envelope {

inline constexpr std::size_t kMaxJsonDepth = 16;

[[nodiscard]] Status parse_json(std::string_view text, rapidjson::Document& doc);

}  // namespace telehub::envelope
