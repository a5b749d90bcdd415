#include "lb-agent/agent.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lb-agent/agent_reply.h"
#include "node/client/https_client.h"
#include "store/clock.h"

namespace adcsc::lbagent {
namespace {

// Monotonic: it only ages the last poll. On the wall clock, a step back would keep a hung
// node's last "up" fresh for minutes, and a step forward would report "down" until the next poll.
int64_t NowMs() { return SystemClock::Default()->NowMonotonicMillis(); }

// host and port of "http://host:port".
bool SplitHostPort(std::string_view url, std::string* host, std::string* port) {
  std::string_view rest = url.substr(url.find("://") + 3);
  if (auto slash = rest.find('/'); slash != std::string_view::npos) rest = rest.substr(0, slash);
  auto colon = rest.rfind(':');
  if (colon == std::string_view::npos) return false;
  *host = std::string(rest.substr(0, colon));
  *port = std::string(rest.substr(colon + 1));
  if (host->size() > 2 && host->front() == '[') *host = host->substr(1, host->size() - 2);
  return !host->empty() && !port->empty();
}

// One plain-HTTP GET with a deadline on every step; the body when the status is 200.
std::optional<std::string> HttpGet(const std::string& url, const std::string& path, std::chrono::milliseconds timeout) {
  std::string host, port;
  if (!SplitHostPort(url, &host, &port)) return std::nullopt;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) return std::nullopt;
  int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  const int rc = fd < 0 ? -1 : ::connect(fd, res->ai_addr, res->ai_addrlen);
  ::freeaddrinfo(res);
  if (fd < 0) return std::nullopt;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto wait = [&](short events) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    return ::poll(&p, 1, static_cast<int>(left.count())) == 1 && (p.revents & (events | POLLHUP)) != 0;
  };
  std::optional<std::string> body;
  do {
    if (rc != 0 && (errno != EINPROGRESS || !wait(POLLOUT))) break;
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) break;
    const std::string request =
        absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: ", host, "\r\nConnection: close\r\n\r\n");
    if (!wait(POLLOUT) ||
        ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size()))
      break;
    std::string raw;
    char buf[4096];
    bool complete = false;
    while (raw.size() < (1 << 20) && wait(POLLIN)) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) {
        complete = n == 0;
        break;
      }
      raw.append(buf, static_cast<size_t>(n));
    }
    // 503 carries a body worth reading too: /health/ready's report of a node that is not ready.
    if (!complete || !(absl::StartsWith(raw, "HTTP/1.1 200") || absl::StartsWith(raw, "HTTP/1.1 503"))) break;
    if (auto b = raw.find("\r\n\r\n"); b != std::string::npos) body = raw.substr(b + 4);
  } while (false);
  ::close(fd);
  return body;
}

}  // namespace

class Agent::Impl {
 public:
  explicit Impl(AgentOptions options) : options_(std::move(options)) {}
  ~Impl() { Stop(); }

  absl::Status Start() {
    const bool https = absl::StartsWith(options_.node_url, "https://");
    if (!https && !absl::StartsWith(options_.node_url, "http://")) {
      return absl::InvalidArgumentError(
          "--node-url: expected http://HOST:PORT or https://HOST:PORT of the node's ops listener");
    }
    if (https) {
      node::HttpsClientOptions o;
      o.url = options_.node_url;
      o.server_ca_file = options_.ca_file;
      o.keep_alive = false;
      o.timeout = options_.timeout;
      auto client = node::HttpsClient::Create(o);
      if (!client.ok())
        return absl::InvalidArgumentError(absl::StrCat("--node-url/--ca-file: ", client.status().message()));
      https_ = std::move(*client);
    }
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(options_.listen_port);
    if (::inet_pton(AF_INET, options_.listen_address.c_str(), &a.sin_addr) != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("--listen: \"", options_.listen_address, "\" is not an IPv4 address"));
    }
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_fd_, 64) != 0) {
      return absl::UnavailableError(absl::StrCat("--listen: cannot listen on ", options_.listen_address, ":",
                                                 options_.listen_port, ": ", std::strerror(errno)));
    }
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    poller_ = std::thread([this] { PollLoop(); });
    server_ = std::thread([this] { ServeLoop(); });
    return absl::OkStatus();
  }

  void Stop() {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_all();
    if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);
    if (poller_.joinable()) poller_.join();
    if (server_.joinable()) server_.join();
    if (listen_fd_ >= 0) ::close(listen_fd_);
    listen_fd_ = -1;
  }

  std::string Reply() const {
    std::lock_guard lock(mu_);
    return AgentReply(last_, NowMs(), options_.stale.count());
  }

  uint16_t port_ = 0;

 private:
  // A body from the node's ops listener (200, or 503 for a report of a node not ready).
  std::optional<std::string> Get(const std::string& path) {
    if (!https_) return HttpGet(options_.node_url, path, options_.timeout);
    auto r = https_->Get(path);
    if (!r.ok() || (r->status != 200 && r->status != 503)) return std::nullopt;
    return r->body;
  }

  void PollLoop() {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      lock.unlock();
      const std::optional<std::string> body = Get("/status");
      std::optional<NodeView> view = body ? ParseStatus(*body, NowMs()) : std::nullopt;
      if (view.has_value() && view->lb == "DOWN" && view->mode != "maint" && view->reason.empty()) {
        // /status tells a caller without an administrator's certificate only that the node is
        // down; the failing check is on /health/ready.
        if (const std::optional<std::string> ready = Get("/health/ready"); ready.has_value()) {
          view->reason = FirstFailingCheck(*ready);
        }
      }
      lock.lock();
      if (view.has_value()) last_ = view;  // a failed poll leaves the last answer to age
      cv_.wait_for(lock, options_.interval, [this] { return stopping_; });
    }
  }

  // Each agent-check connection gets its line at once (HAProxy may send a line first; it is
  // not needed and not read) and is closed.
  void ServeLoop() {
    while (true) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        std::lock_guard lock(mu_);
        if (stopping_) return;
        if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) continue;
        return;
      }
      const std::string line = Reply();
      timeval tv{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      (void)::send(fd, line.data(), line.size(), MSG_NOSIGNAL);
      ::shutdown(fd, SHUT_WR);
      ::close(fd);
    }
  }

  const AgentOptions options_;
  std::unique_ptr<node::HttpsClient> https_;
  int listen_fd_ = -1;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::optional<NodeView> last_;
  std::thread poller_;
  std::thread server_;
};

Agent::Agent(AgentOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Agent::~Agent() = default;
absl::Status Agent::Start() { return impl_->Start(); }
uint16_t Agent::port() const { return impl_->port_; }
void Agent::Stop() { impl_->Stop(); }
std::string Agent::Reply() const { return impl_->Reply(); }

}  // namespace adcsc::lbagent
