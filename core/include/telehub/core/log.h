// Minimal structured logging to stderr: "2026-11-28T10:15:00.000Z INFO ingest: message".
//
// Messages must not contain identifiers, keys or payload bytes (pseudonyms and device ids are
// fine). The level is process-wide; set it once at start-up.
//
// Thread-safety: log() may be called from any thread; lines are written whole.
#pragma once

#include <string_view>

namespace telehub::core {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();

void log(LogLevel level, std::string_view component, std::string_view message);

inline void log_info(std::string_view component, std::string_view message) { log(LogLevel::kInfo, component, message); }
inline void log_warn(std::string_view component, std::string_view message) { log(LogLevel::kWarn, component, message); }
inline void log_error(std::string_view component, std::string_view message) { log(LogLevel::kError, component, message); }
inline void log_debug(std::string_view component, std::string_view message) { log(LogLevel::kDebug, component, message); }

}  // namespace telehub::core
