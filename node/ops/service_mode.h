// The node's service mode for load balancers: active, draining (finish in-flight work, take
// no new work, still answer what reaches it) or in maintenance (out of the pool). The mode is
// kept in a small file in the data directory, so a drained node stays drained across a
// restart until an operator resumes it.
// Thread-safety: every method may be called from any thread.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace adcsc::ops {

enum class ServiceMode { kActive, kDrain, kMaint };

// "active", "drain", "maint".
std::string_view ModeName(ServiceMode mode);
// The mode a name stands for; InvalidArgument naming the accepted ones.
absl::StatusOr<ServiceMode> ParseMode(std::string_view name);

// The file's name in the data directory.
inline constexpr char kServiceModeFile[] = "service-mode";

class ServiceModeStore {
 public:
  // Reads `file` (absent: active). Errors name the file and what to check.
  static absl::StatusOr<std::unique_ptr<ServiceModeStore>> Open(std::filesystem::path file);

  ServiceMode mode() const;
  // Makes `mode` durable (a 0600 file written beside the old one, fsynced and renamed over
  // it), then switches to it. On failure the mode is unchanged.
  absl::Status Set(ServiceMode mode);

 private:
  explicit ServiceModeStore(std::filesystem::path file, ServiceMode mode) : file_(std::move(file)), mode_(mode) {}
  const std::filesystem::path file_;
  mutable std::mutex mu_;
  ServiceMode mode_;
};

}  // namespace adcsc::ops
