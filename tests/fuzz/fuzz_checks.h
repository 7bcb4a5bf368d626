// Invariant checks shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.cpp, built by
// tests/fuzz/run.sh with clang and sanitizers) and by the Catch2 regression test
// (tests/envelope/fuzz_regression_test.cpp, normal build), so a saved input is judged the
// same way in both. No libFuzzer dependency; header-only. See docs/fuzzing.md.
//
// Each check takes arbitrary bytes and returns an empty string when every invariant holds,
// otherwise a one-line description of the first violation (the harness prints it and aborts;
// the Catch2 test reports it). Crashes and sanitizer reports are not caught here: they end the
// process, which is what the fuzzer needs.
//
// What is checked (contracts of envelope.h and payload.h, docs/protocol.md sections 3.5, 5):
//   check_envelope(data)
//     - data as a sealed envelope: peek() and open() with kFuzzKey never crash; open() fails
//       with peek()'s reason when peek() fails, and only with bad_seal otherwise; when open()
//       succeeds, the plaintext has the length the layout implies and sealing it again with
//       the peeked header gives exactly `data` (AES-GCM is deterministic); the opened
//       plaintext then goes through check_payload().
//     - data as a plaintext (structure-aware path, reaching the code after authentication):
//       seal(kFuzzHeader, kFuzzKey, data) succeeds, peek() returns kFuzzHeader, open()
//       returns data, open() of the envelope with one bit flipped fails, and check_payload()
//       holds for the opened plaintext.
//   check_payload(data)
//     - decode_payload() never crashes; on failure the reason is bad_payload (invalid_argument)
//       and the message is "<path>: <problem>"; on success there are 1..1000 readings, each a
//       single value or a panel as section 5.2 defines, with no subject/device/sequence;
//       every decoded number equals strtod() of its literal (differential check);
//       encode_payload(decoded) succeeds, decodes to the same readings, and encoding those
//       gives the same text again.
//
// Thread-safety: stateless functions.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <rapidjson/document.h>

#include "telehub/core/bytes.h"
#include "telehub/core/error.h"
#include "telehub/core/reading.h"
#include "telehub/envelope/envelope.h"
#include "telehub/envelope/payload.h"

namespace telehub::fuzz {

// The key of docs/protocol.md test vector 1, so that vector opens in check_envelope().
inline const core::Bytes kFuzzKey = [] {
  core::Bytes key(envelope::kKeySize);
  for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<std::uint8_t>(i);
  return key;
}();

// The header the structure-aware path seals with (vector 1's).
inline const envelope::Header kFuzzHeader{envelope::kVersion, "dev-0001", 1, 1};

namespace detail {

inline std::string describe(const core::Error& e) { return e.to_string(); }

// Checks one decoded reading against payload v1, section 5.2.
inline std::string check_reading_shape(const core::Reading& r) {
  if (!r.subject.empty() || !r.device.empty() || r.sequence != 0) return "decoded reading has subject/device/sequence";
  if (r.code.empty()) return "decoded reading has an empty code";
  if (r.components.empty()) {
    if (!r.value) return "decoded single-value reading has no value";
    if (!std::isfinite(*r.value)) return "decoded value is not finite";
    if (r.unit.empty()) return "decoded single-value reading has an empty unit";
    return {};
  }
  if (r.value || !r.unit.empty()) return "decoded panel has a value or unit";
  for (const auto& c : r.components) {
    if (c.code.empty() || c.unit.empty()) return "decoded component has an empty code or unit";
    if (!std::isfinite(c.value)) return "decoded component value is not finite";
  }
  return {};
}

// Differential check of the number parser: parses `text` again keeping numbers as text and
// requires each decoded value to equal glibc strtod() of its literal (both round correctly;
// RFC 8259 section 6). REQUIRES: decode_payload(text) succeeded and gave `decoded`.
inline std::string check_numbers(std::string_view text, const std::vector<core::Reading>& decoded) {
  constexpr unsigned kFlags = rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag |
                              rapidjson::kParseNumbersAsStringsFlag;
  rapidjson::Document doc;
  doc.Parse<kFlags>(text.data(), text.size());
  if (doc.HasParseError()) return "numbers: document does not parse with numbers kept as text";
  const auto literal_matches = [](const rapidjson::Value& object, double value) {
    const auto it = object.FindMember("value");  // the first occurrence, as decode_payload uses
    if (it == object.MemberEnd() || !it->value.IsString()) return false;
    const std::string literal(it->value.GetString(), it->value.GetStringLength());
    const double expected = std::strtod(literal.c_str(), nullptr);
    return expected == value;
  };
  const auto& list = doc.FindMember("readings")->value;
  for (rapidjson::SizeType i = 0; i < list.Size() && i < decoded.size(); ++i) {
    const core::Reading& r = decoded[i];
    const std::string where = "readings[" + std::to_string(i) + "]";
    if (r.value && !literal_matches(list[i], *r.value)) return where + ".value: decoded value differs from strtod()";
    if (r.components.empty()) continue;
    const auto& components = list[i].FindMember("components")->value;
    for (rapidjson::SizeType j = 0; j < components.Size() && j < r.components.size(); ++j) {
      if (!literal_matches(components[j], r.components[j].value))
        return where + ".components[" + std::to_string(j) + "].value: decoded value differs from strtod()";
    }
  }
  return {};
}

}  // namespace detail

inline std::string check_payload(std::span<const std::uint8_t> data) {
  auto decoded = envelope::decode_payload(data);
  if (!decoded) {
    const core::Error& e = decoded.error();
    if (e.code != core::Code::kInvalidArgument || e.reason != "bad_payload")
      return "decode_payload failed with an unexpected error: " + detail::describe(e);
    if (e.message.find(": ") == std::string::npos || e.message.rfind(": ", 0) == 0)
      return "decode_payload error message is not \"<path>: <problem>\": " + detail::describe(e);
    return {};
  }
  if (decoded->empty() || decoded->size() > envelope::kMaxReadingsPerPayload)
    return "decode_payload returned " + std::to_string(decoded->size()) + " readings (must be 1..1000)";
  for (std::size_t i = 0; i < decoded->size(); ++i) {
    if (auto why = detail::check_reading_shape((*decoded)[i]); !why.empty())
      return "readings[" + std::to_string(i) + "]: " + why;
  }
  const std::string_view text(reinterpret_cast<const char*>(data.data()), data.size());
  if (auto why = detail::check_numbers(text, *decoded); !why.empty()) return why;

  auto encoded = envelope::encode_payload(*decoded);
  if (!encoded) return "round trip: encode_payload refused what decode_payload accepted: " + detail::describe(encoded.error());
  auto again = envelope::decode_payload(core::as_bytes(*encoded));
  if (!again) return "round trip: decode_payload refused what encode_payload wrote: " + detail::describe(again.error());
  if (*again != *decoded) return "round trip: decode(encode(decoded)) differs from decoded";
  auto encoded_again = envelope::encode_payload(*again);
  if (!encoded_again || *encoded_again != *encoded) return "round trip: encoding is not stable (encode(decode(e)) != e)";
  return {};
}

inline std::string check_envelope(std::span<const std::uint8_t> data) {
  // 1. The input as a sealed envelope.
  const auto header = envelope::peek(data);
  const auto opened = envelope::open(data, kFuzzKey);
  if (!header) {
    if (opened) return "open succeeded where peek failed: " + detail::describe(header.error());
    if (opened.error().reason != header.error().reason)
      return "open and peek disagree: " + detail::describe(opened.error()) + " vs " + detail::describe(header.error());
  } else {
    if (!envelope::valid_device_id(header->device_id) || header->sequence == 0 || header->version != envelope::kVersion)
      return "peek returned an invalid header";
    if (!opened) {
      if (opened.error().reason != "bad_seal" || opened.error().code != core::Code::kUnauthenticated)
        return "open failed after peek succeeded with something other than bad_seal: " +
               detail::describe(opened.error());
    } else {
      if (opened->size() + 32 + header->device_id.size() != data.size())
        return "open returned a plaintext of the wrong length";
      auto resealed = envelope::seal(*header, kFuzzKey, *opened);
      if (!resealed) return "seal refused a header peek accepted: " + detail::describe(resealed.error());
      if (!std::equal(resealed->begin(), resealed->end(), data.begin(), data.end()))
        return "seal(peek(x), open(x)) != x";
      if (auto why = check_payload(*opened); !why.empty()) return "opened plaintext: " + why;
    }
  }

  // 2. The input as a plaintext, sealed with a fixed header and key (structure-aware path).
  auto sealed = envelope::seal(kFuzzHeader, kFuzzKey, data);
  if (!sealed) return "seal failed: " + detail::describe(sealed.error());
  if (sealed->size() != data.size() + 32 + kFuzzHeader.device_id.size()) return "seal returned the wrong length";
  auto peeked = envelope::peek(*sealed);
  if (!peeked || *peeked != kFuzzHeader) return "peek(seal(h, k, x)) != h";
  auto plain = envelope::open(*sealed, kFuzzKey);
  if (!plain) return "open(seal(x)) failed: " + detail::describe(plain.error());
  if (!std::equal(plain->begin(), plain->end(), data.begin(), data.end())) return "open(seal(x)) != x";
  core::Bytes tampered = *sealed;
  const std::size_t bit = (data.size() * 131 + (data.empty() ? 0 : data[0])) % (tampered.size() * 8);
  tampered[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
  if (envelope::open(tampered, kFuzzKey)) return "open accepted an envelope with a flipped bit";
  if (auto why = check_payload(*plain); !why.empty()) return "sealed plaintext: " + why;
  return {};
}

}  // namespace telehub::fuzz
