#include "node/log/logging.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "node/log/log_throttle.h"
#include "node/pki/absl_view.h"
#include "spdlog/details/file_helper.h"
#include "spdlog/sinks/base_sink.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace adcsc::node {
namespace {

// Buffered lines reach the file at least this often; warnings and errors at once.
constexpr std::chrono::seconds kFlushInterval{1};
std::atomic<int> logger_counter{0};

std::string UniqueLoggerName(std::string_view kind) {
  return absl::StrCat("adcsc-", pki::AbslView(kind), "-", logger_counter++);
}

std::shared_ptr<spdlog::logger> MakeLogger(std::string_view kind, spdlog::sink_ptr sink) {
  auto logger = std::make_shared<spdlog::logger>(UniqueLoggerName(kind), std::move(sink));
  logger->set_pattern("%v");
  logger->set_level(spdlog::level::trace);
  logger->flush_on(spdlog::level::warn);
  // Registered so that spdlog's periodic flusher (flush_every) reaches it.
  spdlog::register_logger(logger);
  return logger;
}

void StartPeriodicFlush() {
  static std::once_flag once;
  std::call_once(once, [] { spdlog::flush_every(kFlushInterval); });
}

const char* LevelName(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

spdlog::level::level_enum SpdLevel(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug:
      return spdlog::level::debug;
    case LogLevel::kInfo:
      return spdlog::level::info;
    case LogLevel::kWarn:
      return spdlog::level::warn;
    case LogLevel::kError:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

// Fields a client chooses (path, query, User-Agent, Referer, certificate name) are cut to
// this length, so one request cannot write an arbitrarily long line.
constexpr size_t kMaxW3cFieldBytes = 512;

// A string field of an event-log line is cut to this length (with a note of its full size).
constexpr size_t kMaxEventFieldBytes = 2048;

// W3C fields may not contain spaces; IIS writes '+' for them. Other control characters
// would break the line and become '?'.
std::string W3cField(std::string_view v) {
  if (v.empty()) return "-";
  std::string out(v.substr(0, kMaxW3cFieldBytes));
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      c = '+';
    } else if (u < 0x20 || u == 0x7f) {
      c = '?';
    }
  }
  return out;
}

// Log files are created owner read-write, group read (an operator's group may read them;
// they carry request metadata, never secrets).
constexpr mode_t kLogFileMode = 0640;

// Creates `path` with kLogFileMode if it does not exist (fopen would use 0666 & ~umask, and
// the unit's UMask=0077 would make it 0600); a file that exists keeps the mode it has.
void CreateLogFile(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, kLogFileMode);
  if (fd < 0) return;  // it exists (or cannot be made: opening it says why)
  ::fchmod(fd, kLogFileMode);
  ::close(fd);
}

// A file sink that can close and open its file again (after logrotate renamed it). Writes
// and the reopen take the sink's mutex, so no line is split between the two files.
class ReopenableFileSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit ReopenableFileSink(std::filesystem::path path) : path_(std::move(path)) {
    CreateLogFile(path_);
    file_.open(path_.string(), /*truncate=*/false);
  }
  void Reopen() {
    std::lock_guard<std::mutex> lock(mutex_);
    CreateLogFile(path_);
    file_.reopen(/*truncate=*/false);
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    file_.write(formatted);
  }
  void flush_() override { file_.flush(); }

 private:
  const std::filesystem::path path_;
  spdlog::details::file_helper file_;
};

absl::StatusOr<std::shared_ptr<ReopenableFileSink>> FileSink(const std::filesystem::path& path, std::string_view what) {
  try {
    return std::make_shared<ReopenableFileSink>(path);
  } catch (const std::exception& e) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open ", pki::AbslView(what), " ", path.string(), ": ", e.what(),
                     " (check that the directory exists and is writable by the service user)"));
  }
}

// Reopens `sink` if it is a file sink; errors (a full or missing directory) leave the old
// file in use and are reported.
absl::Status ReopenSink(const spdlog::sink_ptr& sink, const char* what) {
  auto file = std::dynamic_pointer_cast<ReopenableFileSink>(sink);
  if (file == nullptr) return absl::OkStatus();
  try {
    file->Reopen();
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot reopen ", what, ": ", e.what()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LogLevel> ParseLogLevel(std::string_view name) {
  if (name == "debug" || name == "trace") return LogLevel::kDebug;
  if (name == "info") return LogLevel::kInfo;
  if (name == "warn" || name == "warning") return LogLevel::kWarn;
  if (name == "error") return LogLevel::kError;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown log level \"", pki::AbslView(name), "\" (use debug, info, warn or error)"));
}

std::string FormatTimestamp(std::chrono::system_clock::time_point t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

EventLog::EventLog(std::shared_ptr<spdlog::logger> logger, std::string node_id, LogLevel min_level)
    : logger_(std::move(logger)), node_id_(std::move(node_id)), min_level_(min_level) {}

EventLog::~EventLog() {
  Flush();
  spdlog::drop(logger_->name());
}

absl::StatusOr<std::unique_ptr<EventLog>> EventLog::Open(const std::filesystem::path& file, LogLevel min_level,
                                                         std::string node_id) {
  spdlog::sink_ptr sink;
  if (file.empty()) {
    sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
  } else {
    auto s = FileSink(file, "log.file");
    if (!s.ok()) return s.status();
    sink = *s;
  }
  StartPeriodicFlush();
  return std::unique_ptr<EventLog>(new EventLog(MakeLogger("events", sink), std::move(node_id), min_level));
}

std::unique_ptr<EventLog> EventLog::Stderr(std::string node_id, LogLevel min_level) {
  return std::unique_ptr<EventLog>(new EventLog(MakeLogger("stderr", std::make_shared<spdlog::sinks::stderr_sink_mt>()),
                                                std::move(node_id), min_level));
}

void EventLog::Log(LogLevel level, std::string_view event, nlohmann::json fields) {
  if (level < min_level_) return;
  nlohmann::ordered_json line;
  line["ts"] = FormatTimestamp(std::chrono::system_clock::now());
  line["level"] = LevelName(level);
  line["node"] = node_id_;
  line["event"] = event;
  if (fields.is_object()) {
    for (auto& [k, v] : fields.items()) {
      // No field makes a line longer than this, whatever a client put into it.
      if (v.is_string() && v.get_ref<const std::string&>().size() > kMaxEventFieldBytes) {
        line[k] = UntrustedField(v.get_ref<const std::string&>(), kMaxEventFieldBytes);
      } else {
        line[k] = v;
      }
    }
  }
  logger_->log(SpdLevel(level), "{}", line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
}

void EventLog::Flush() { logger_->flush(); }

absl::Status EventLog::Reopen() {
  logger_->flush();
  for (const spdlog::sink_ptr& sink : logger_->sinks()) {
    if (absl::Status s = ReopenSink(sink, "log.file"); !s.ok()) return s;
  }
  return absl::OkStatus();
}

AccessLog::AccessLog(std::shared_ptr<spdlog::logger> logger) : logger_(std::move(logger)) {}
AccessLog::~AccessLog() {
  Flush();
  spdlog::drop(logger_->name());
}

absl::StatusOr<std::unique_ptr<AccessLog>> AccessLog::Open(const std::filesystem::path& path) {
  auto sink = FileSink(path, "log.access_log");
  if (!sink.ok()) return sink.status();
  auto logger = MakeLogger("access", *sink);
  logger->flush_on(spdlog::level::off);
  std::unique_ptr<AccessLog> log(new AccessLog(std::move(logger)));
  log->WriteDirectives();
  StartPeriodicFlush();
  return log;
}

std::string AccessLog::FormatLine(const AccessEntry& e) {
  std::string ts = FormatTimestamp(e.when);
  return absl::StrCat(ts.substr(0, 10), " ", ts.substr(11, 8), " ", W3cField(e.server_ip), " ", W3cField(e.method), " ",
                      W3cField(e.uri_stem), " ", W3cField(e.uri_query), " ", e.server_port, " ", W3cField(e.username),
                      " ", W3cField(e.client_ip), " ", W3cField(e.user_agent), " ", W3cField(e.referer), " ", e.status,
                      " ", e.substatus, " ", e.win32_status, " ", e.time_taken_ms);
}

void AccessLog::Write(const AccessEntry& e) { logger_->info("{}", FormatLine(e)); }
void AccessLog::Flush() { logger_->flush(); }

absl::Status AccessLog::Reopen() {
  logger_->flush();
  for (const spdlog::sink_ptr& sink : logger_->sinks()) {
    if (absl::Status s = ReopenSink(sink, "log.access_log"); !s.ok()) return s;
  }
  WriteDirectives();
  return absl::OkStatus();
}

void AccessLog::WriteDirectives() {
  const std::string ts = FormatTimestamp(std::chrono::system_clock::now());  // 2026-11-24T15:30:00.123Z
  logger_->info("#Software: adcsc {}", ADCSC_VERSION);
  logger_->info("#Version: 1.0");
  logger_->info("#Date: {} {}", ts.substr(0, 10), ts.substr(11, 8));
  logger_->info("#Fields: {}", kAccessLogFields);
  logger_->flush();
}

}  // namespace adcsc::node
