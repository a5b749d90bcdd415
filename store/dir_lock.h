// An exclusive lock on a node's data directory (flock on <data_dir>/lock), held by a running
// node for its lifetime and taken by `adcsc node restore`: two nodes never share a data
// directory, and a store is never replaced under a running node. The kernel drops the lock
// when the process dies, so a killed node leaves nothing to clean up.
#pragma once

#include <filesystem>

#include "absl/status/statusor.h"

namespace adcsc::store {

class DirLock {
 public:
  // Takes the lock or fails at once (FAILED_PRECONDITION, naming the directory) when another
  // process holds it.
  static absl::StatusOr<DirLock> Acquire(const std::filesystem::path& dir);
  // The process ID of the node that holds `dir`'s lock (written into the lock file); NOT_FOUND
  // when no process holds it.
  static absl::StatusOr<int> Holder(const std::filesystem::path& dir);
  DirLock(DirLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  DirLock& operator=(DirLock&& other) noexcept;
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;
  ~DirLock();

 private:
  explicit DirLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace adcsc::store
