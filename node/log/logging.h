// Operator-facing logs: JSON lines for events (one object per line, always with ts, level,
// node and event) and a W3C extended access log in the IIS field order admins of the
// original connector know. Never pass private keys, passwords, CSRs or certificate bodies.
// Thread-safe: every method may be called from any thread.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace spdlog {
class logger;
}

namespace adcsc::node {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

class EventLog {
 public:
  // Writes lines at `min_level` and above to `file`, or to standard output when it is empty.
  static absl::StatusOr<std::unique_ptr<EventLog>> Open(const std::filesystem::path& file, LogLevel min_level,
                                                        std::string node_id);
  // A logger that writes to stderr; for CLI tools and tests.
  static std::unique_ptr<EventLog> Stderr(std::string node_id, LogLevel min_level = LogLevel::kInfo);
  ~EventLog();

  void Log(LogLevel level, std::string_view event, nlohmann::json fields = nlohmann::json::object());
  void Debug(std::string_view event, nlohmann::json f = nlohmann::json::object()) {
    Log(LogLevel::kDebug, event, std::move(f));
  }
  void Info(std::string_view event, nlohmann::json f = nlohmann::json::object()) {
    Log(LogLevel::kInfo, event, std::move(f));
  }
  void Warn(std::string_view event, nlohmann::json f = nlohmann::json::object()) {
    Log(LogLevel::kWarn, event, std::move(f));
  }
  void Error(std::string_view event, nlohmann::json f = nlohmann::json::object()) {
    Log(LogLevel::kError, event, std::move(f));
  }
  void Flush();
  // Closes the log file and opens it again by name, creating it (mode 0640) if logrotate
  // moved it away; on SIGHUP. A no-op for standard output. On failure the old file stays in use.
  absl::Status Reopen();

 private:
  EventLog(std::shared_ptr<spdlog::logger> logger, std::string node_id, LogLevel min_level);
  std::shared_ptr<spdlog::logger> logger_;
  std::string node_id_;
  LogLevel min_level_;
};

// One access-log line's worth of facts, in IIS's default W3C fields.
struct AccessEntry {
  std::chrono::system_clock::time_point when;
  std::string server_ip;
  std::string method;
  std::string uri_stem;
  std::string uri_query;  // after '?', without it; empty: "-"
  uint16_t server_port = 0;
  std::string username;  // client certificate subject CN, "-" when none or refused
  std::string client_ip;
  std::string user_agent;
  std::string referer;
  int status = 0;
  int substatus = 0;          // sc-substatus: 7, 12, 16 or 17 for a refused client certificate
  uint32_t win32_status = 0;  // sc-win32-status, in decimal as IIS writes it
  int64_t time_taken_ms = 0;
};

// The W3C #Fields directive of the access log: IIS's default field set, in its order.
inline constexpr char kAccessLogFields[] =
    "date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) "
    "sc-status sc-substatus sc-win32-status time-taken";

class AccessLog {
 public:
  // Appends to `path`, first writing the #Software/#Version/#Date/#Fields directives, as IIS
  // does each time it starts a log: a reader always finds the fields of the lines below.
  static absl::StatusOr<std::unique_ptr<AccessLog>> Open(const std::filesystem::path& path);
  ~AccessLog();
  void Write(const AccessEntry& e);
  void Flush();
  // As EventLog::Reopen; a new file starts with the directives again, as IIS's do.
  absl::Status Reopen();
  // The line Write() would append (no newline); exposed for tests.
  static std::string FormatLine(const AccessEntry& e);

 private:
  explicit AccessLog(std::shared_ptr<spdlog::logger> logger);
  void WriteDirectives();
  std::shared_ptr<spdlog::logger> logger_;
};

absl::StatusOr<LogLevel> ParseLogLevel(std::string_view name);
// RFC 3339 UTC with milliseconds, e.g. 2026-11-24T15:30:00.123Z.
std::string FormatTimestamp(std::chrono::system_clock::time_point t);

}  // namespace adcsc::node
