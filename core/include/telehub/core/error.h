// telehub::core::Error and telehub::Result<T>: how every telehub module reports that it could
// not finish an operation.
//
// An Error carries a canonical code (the abseil/gRPC status codes, so callers can decide on
// retries without parsing text), a stable reason token that tests, metrics and quarantine
// records use (`bad_seal`, `unknown_device`, ...), and a human-readable message. The message
// must never contain an identifier, a key or payload bytes: errors are logged and stored.
//
// Validation findings are not errors; only "could not finish" is.
//
// Thread-safety: values; safe to copy between threads.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include <tl/expected.hpp>

namespace telehub::core {

// Canonical codes, as in abseil's status-codes guide.
enum class Code {
  kOk = 0,
  kCancelled,
  kUnknown,
  kInvalidArgument,
  kDeadlineExceeded,
  kNotFound,
  kAlreadyExists,
  kPermissionDenied,
  kResourceExhausted,
  kFailedPrecondition,
  kAborted,
  kOutOfRange,
  kUnimplemented,
  kInternal,
  kUnavailable,
  kDataLoss,
  kUnauthenticated,
};

// The lower_snake_case name of a code ("invalid_argument").
std::string_view code_name(Code code);

struct Error {
  Code code = Code::kUnknown;
  std::string reason;   // stable token, e.g. "bad_seal"; never contains input data
  std::string message;  // safe to log; never contains identifiers or payload bytes

  // "invalid_argument/bad_seal: authentication tag does not match"
  std::string to_string() const;
};

// Builds an Error; use as `return tl::unexpected(core::make_error(...))` or via fail().
Error make_error(Code code, std::string reason, std::string message);

// Shorthand for returning an error from a function returning Result<T>.
inline tl::unexpected<Error> fail(Code code, std::string reason, std::string message) {
  return tl::unexpected<Error>(make_error(code, std::move(reason), std::move(message)));
}

}  // namespace telehub::core

namespace telehub {

template <class T>
using Result = tl::expected<T, core::Error>;

// Result of an operation that yields nothing on success.
using Status = Result<void>;

}  // namespace telehub
