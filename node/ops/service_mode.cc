#include "node/ops/service_mode.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace adcsc::ops {
namespace {

absl::Status Errno(std::string_view what, const std::filesystem::path& path) {
  return absl::InternalError(absl::StrCat(std::string(what), " ", path.string(), ": ", std::strerror(errno),
                                          " (check the data directory's owner, permissions and free space)"));
}

absl::Status FsyncPath(const std::filesystem::path& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return Errno("cannot open", path);
  const int rc = ::fsync(fd);
  ::close(fd);
  return rc == 0 ? absl::OkStatus() : Errno("cannot fsync", path);
}

}  // namespace

std::string_view ModeName(ServiceMode mode) {
  switch (mode) {
    case ServiceMode::kActive:
      return "active";
    case ServiceMode::kDrain:
      return "drain";
    case ServiceMode::kMaint:
      return "maint";
  }
  return "active";
}

absl::StatusOr<ServiceMode> ParseMode(std::string_view name) {
  for (ServiceMode m : {ServiceMode::kActive, ServiceMode::kDrain, ServiceMode::kMaint}) {
    if (name == ModeName(m)) return m;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown service mode \"", std::string(name), "\" (expected active, drain or maint)"));
}

absl::StatusOr<std::unique_ptr<ServiceModeStore>> ServiceModeStore::Open(std::filesystem::path file) {
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) {
    if (ec) return absl::InternalError(absl::StrCat("cannot check ", file.string(), ": ", ec.message()));
    return std::unique_ptr<ServiceModeStore>(new ServiceModeStore(std::move(file), ServiceMode::kActive));
  }
  std::ifstream in(file);
  if (!in) return Errno("cannot read", file);
  std::stringstream text;
  text << in.rdbuf();
  const std::string content = text.str();
  const absl::string_view stripped = absl::StripAsciiWhitespace(content);
  auto mode = ParseMode(std::string_view(stripped.data(), stripped.size()));
  if (!mode.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(file.string(), ": ", mode.status().message(),
                                                      "; fix it with `adcsc ctl resume|drain|maint` or remove it"));
  }
  return std::unique_ptr<ServiceModeStore>(new ServiceModeStore(std::move(file), *mode));
}

ServiceMode ServiceModeStore::mode() const {
  std::lock_guard lock(mu_);
  return mode_;
}

absl::Status ServiceModeStore::Set(ServiceMode mode) {
  std::lock_guard lock(mu_);
  const std::filesystem::path tmp = file_.string() + ".tmp";
  {
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return Errno("cannot write", tmp);
    const std::string text = std::string(ModeName(mode)) + "\n";
    const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!written) return Errno("cannot write", tmp);
  }
  if (::rename(tmp.c_str(), file_.c_str()) != 0) return Errno("cannot replace", file_);
  if (absl::Status s = FsyncPath(file_.parent_path().empty() ? "." : file_.parent_path(), O_RDONLY | O_DIRECTORY);
      !s.ok()) {
    return s;
  }
  mode_ = mode;
  return absl::OkStatus();
}

}  // namespace adcsc::ops
