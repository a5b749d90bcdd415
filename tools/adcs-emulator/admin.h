// The emulator's admin channel: a Unix socket (mode 0600) taking one command per connection,
// "approve 5", "deny 5", "list", "stats", "set latency_ms 200", and answering one JSON line.
// `adcs-emulator ctl` is its client. Thread-safety: AdminServer runs its own thread.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tools/adcs-emulator/emulator.h"

namespace adcsc::emulator {

// Runs one admin command against `emulator`; the JSON answer has "ok" and either the result
// or "error".
std::string RunAdminCommand(Emulator& emulator, const std::string& command);

class AdminServer {
 public:
  // Listens on `path` (replacing a stale socket file) until destroyed.
  static absl::StatusOr<std::unique_ptr<AdminServer>> Start(Emulator& emulator, const std::filesystem::path& path);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

 private:
  AdminServer(Emulator& emulator, int fd, int wake_fd, std::filesystem::path path);
  void Loop();

  Emulator& emulator_;
  int fd_;
  int wake_fd_;
  std::filesystem::path path_;
  std::thread thread_;
};

// Client side: sends `command` to the socket and returns the JSON answer.
absl::StatusOr<std::string> SendAdminCommand(const std::filesystem::path& path, const std::string& command);

}  // namespace adcsc::emulator
