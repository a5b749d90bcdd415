#include "store/dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace adcsc::store {

absl::StatusOr<DirLock> DirLock::Acquire(const std::filesystem::path& dir) {
  const std::filesystem::path file = dir / "lock";
  const int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot open ", file.string(), ": ", std::strerror(errno),
                                                      " (check node.data_dir's permissions)"));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    ::close(fd);
    if (e == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrCat("another process holds ", file.string(),
                                                        ": an adcsc node runs on ", dir.string(),
                                                        " (stop it first; two nodes never share a data directory)"));
    }
    return absl::FailedPreconditionError(absl::StrCat("cannot lock ", file.string(), ": ", std::strerror(e)));
  }
  // Who holds it, for `adcsc ctl reload` and for people.
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    // Not fatal: the lock holds; only the pid is missing for `adcsc ctl reload`.
  }
  return DirLock(fd);
}

absl::StatusOr<int> DirLock::Holder(const std::filesystem::path& dir) {
  const std::filesystem::path file = dir / "lock";
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return absl::NotFoundError(absl::StrCat("no ", file.string(), ": is a node running on ", dir.string(), "?"));
  const bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  char buf[32] = {};
  const ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
  ::close(fd);
  if (!held) return absl::NotFoundError(absl::StrCat("no node runs on ", dir.string(), " (nothing holds its lock)"));
  const int pid = n > 0 ? std::atoi(buf) : 0;
  if (pid <= 1) return absl::NotFoundError(absl::StrCat(file.string(), " names no process"));
  return pid;
}

DirLock& DirLock::operator=(DirLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

DirLock::~DirLock() {
  if (fd_ >= 0) ::close(fd_);  // closing drops the flock
}

}  // namespace adcsc::store
