#include "store/dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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
  return DirLock(fd);
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
