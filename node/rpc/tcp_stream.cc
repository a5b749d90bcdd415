#include "node/rpc/tcp_stream.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace adcsc::rpc {
namespace {

std::string Errno(int e) { return std::strerror(e); }

std::string FormatAddress(const sockaddr* sa) {
  char host[INET6_ADDRSTRLEN] = {};
  uint16_t port = 0;
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    port = ntohs(in->sin_port);
    return absl::StrCat(host, ":", port);
  }
  if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    port = ntohs(in6->sin6_port);
    return absl::StrCat("[", host, "]:", port);
  }
  return "?";
}

int RemainingMs(Deadline deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return 0;
  return left > 60'000'000 ? 60'000'000 : static_cast<int>(left);
}

void SetCommonOptions(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // RPC is request/response
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);  // pooled connections sit idle
}

}  // namespace

absl::StatusOr<std::unique_ptr<TcpStream>> TcpStream::Connect(const std::string& host, uint16_t port,
                                                              std::chrono::milliseconds timeout) {
  const Deadline deadline = DeadlineIn(timeout);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port_text = std::to_string(port);
  if (int rc = getaddrinfo(host.c_str(), port_text.c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError(absl::StrCat("cannot resolve ", host, ": ", gai_strerror(rc)));
  }
  std::string last_error = "no address";
  bool timed_out = false;
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last_error = Errno(errno);
      continue;
    }
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      rc = poll(&p, 1, RemainingMs(deadline));
      if (rc == 0) {
        close(fd);
        timed_out = true;
        last_error = "timed out";
        break;
      }
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      rc = err == 0 ? 0 : -1;
      errno = err;
    }
    if (rc != 0) {
      last_error = Errno(errno);
      close(fd);
      continue;
    }
    SetCommonOptions(fd);
    freeaddrinfo(found);
    return std::make_unique<TcpStream>(fd);
  }
  freeaddrinfo(found);
  std::string what = absl::StrCat("cannot connect to ", host, ":", port, ": ", last_error);
  if (timed_out) {
    return absl::DeadlineExceededError(absl::StrCat(what, " (no answer within ", timeout.count(), " ms)"));
  }
  return absl::UnavailableError(what);
}

TcpStream::TcpStream(int fd) : fd_(fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getpeername(fd_, reinterpret_cast<sockaddr*>(&ss), &len) == 0)
    peer_ = FormatAddress(reinterpret_cast<sockaddr*>(&ss));
  int flags = fcntl(fd_, F_GETFL);
  if (flags >= 0 && !(flags & O_NONBLOCK)) fcntl(fd_, F_SETFL, flags | O_NONBLOCK);
}

TcpStream::~TcpStream() {
  if (fd_ >= 0) close(fd_);
}

bool TcpStream::ClosedOrUnexpectedInput() const {
  pollfd p{fd_, static_cast<short>(POLLIN | POLLRDHUP), 0};
  return poll(&p, 1, 0) != 0;
}

void TcpStream::Shutdown() { ::shutdown(fd_, SHUT_RDWR); }

absl::Status TcpStream::WaitFor(short events, Deadline deadline, const char* what) {
  for (;;) {
    pollfd p{fd_, events, 0};
    int rc = poll(&p, 1, RemainingMs(deadline));
    if (rc > 0) return absl::OkStatus();
    if (rc == 0) return absl::DeadlineExceededError(absl::StrCat("timed out ", what, " ", peer_));
    if (errno != EINTR)
      return absl::UnavailableError(absl::StrCat("poll failed ", what, " ", peer_, ": ", Errno(errno)));
  }
}

absl::Status TcpStream::WriteAll(std::span<const uint8_t> data, Deadline deadline) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (auto s = WaitFor(POLLOUT, deadline, "sending to"); !s.ok()) return s;
      continue;
    }
    return absl::UnavailableError(absl::StrCat("cannot send to ", peer_, ": ", Errno(errno)));
  }
  return absl::OkStatus();
}

absl::Status TcpStream::ReadExact(std::span<uint8_t> out, Deadline deadline) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::recv(fd_, out.data() + done, out.size() - done, 0);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n == 0) return absl::UnavailableError(absl::StrCat("connection closed by ", peer_));
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (auto s = WaitFor(POLLIN, deadline, "waiting for"); !s.ok()) return s;
      continue;
    }
    return absl::UnavailableError(absl::StrCat("cannot read from ", peer_, ": ", Errno(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<TcpListener>> TcpListener::Listen(const std::string& address, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
  addrinfo* found = nullptr;
  const std::string port_text = std::to_string(port);
  if (int rc = getaddrinfo(address.c_str(), port_text.c_str(), &hints, &found); rc != 0) {
    return absl::InvalidArgumentError(absl::StrCat("bad listen address \"", address, "\": ", gai_strerror(rc)));
  }
  int fd = socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    freeaddrinfo(found);
    return absl::InternalError(absl::StrCat("socket: ", Errno(errno)));
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, found->ai_addr, found->ai_addrlen) != 0 || listen(fd, 128) != 0) {
    const int e = errno;
    freeaddrinfo(found);
    close(fd);
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address, ":", port, ": ", Errno(e)));
  }
  freeaddrinfo(found);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  uint16_t bound = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                            : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  int wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) {
    close(fd);
    return absl::InternalError(absl::StrCat("eventfd: ", Errno(errno)));
  }
  return std::unique_ptr<TcpListener>(new TcpListener(fd, wake, bound));
}

TcpListener::~TcpListener() {
  close(fd_);
  close(wake_fd_);
}

void TcpListener::Close() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof one);
}

absl::StatusOr<std::unique_ptr<TcpStream>> TcpListener::Accept() {
  for (;;) {
    pollfd p[2] = {{fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    int rc = poll(p, 2, -1);
    if (rc < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat("poll: ", Errno(errno)));
    }
    if (p[1].revents != 0) return absl::CancelledError("listener closed");
    int fd = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE) {
        return absl::ResourceExhaustedError(absl::StrCat("accept: ", Errno(errno)));
      }
      return absl::InternalError(absl::StrCat("accept: ", Errno(errno)));
    }
    SetCommonOptions(fd);
    return std::make_unique<TcpStream>(fd);
  }
}

}  // namespace adcsc::rpc
