#include "node/drill/haproxy_stats.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace adcsc::drill {

absl::StatusOr<std::map<std::string, std::string>> ParseHaproxyStat(std::string_view csv, const std::string& backend) {
  std::vector<std::string> lines = absl::StrSplit(absl::string_view(csv.data(), csv.size()), '\n', absl::SkipEmpty());
  if (lines.empty() || !absl::StartsWith(lines[0], "# ")) {
    return absl::InvalidArgumentError("HAProxy's \"show stat\" answer has no header line");
  }
  std::vector<std::string> header = absl::StrSplit(absl::StripPrefix(lines[0], "# "), ',');
  int px = -1, sv = -1, st = -1;
  for (int i = 0; i < static_cast<int>(header.size()); ++i) {
    if (header[i] == "pxname") px = i;
    if (header[i] == "svname") sv = i;
    if (header[i] == "status") st = i;
  }
  if (px < 0 || sv < 0 || st < 0) return absl::InvalidArgumentError("HAProxy's stat header lacks pxname/svname/status");
  std::map<std::string, std::string> out;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<std::string> f = absl::StrSplit(lines[i], ',');
    if (static_cast<int>(f.size()) <= std::max({px, sv, st})) continue;
    if (f[px] != backend || f[sv] == "BACKEND" || f[sv] == "FRONTEND") continue;
    out[f[sv]] = f[st];
  }
  if (out.empty()) return absl::NotFoundError(absl::StrCat("HAProxy has no servers in backend \"", backend, "\""));
  return out;
}

absl::StatusOr<std::map<std::string, std::string>> ReadHaproxyStatus(const std::filesystem::path& socket_path,
                                                                     const std::string& backend) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.string().size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat(socket_path.string(), ": path too long for a Unix socket"));
  }
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof(addr.sun_path) - 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  auto fail = [&](const std::string& what) {
    ::close(fd);
    return absl::UnavailableError(absl::StrCat(socket_path.string(), ": ", what));
  };
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return fail(strerror(errno));
  const std::string command = "show stat\n";
  if (::write(fd, command.data(), command.size()) != static_cast<ssize_t>(command.size())) return fail("write failed");
  std::string answer;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  char buf[8192];
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return fail("no complete answer within 2 s");
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) return fail(strerror(errno));
    if (n == 0) break;  // HAProxy closes after one command
    answer.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return ParseHaproxyStat(answer, backend);
}

}  // namespace adcsc::drill
