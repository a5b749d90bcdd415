// A TCP relay on 127.0.0.1 in front of one upstream port that a test can freeze: while
// frozen it accepts and keeps every connection but moves no byte either way, as a peer whose
// process is stopped (SIGSTOP, a VM pause) looks from the other side — its kernel still holds
// the connection, nothing answers. Thaw() lets the bytes through again. One thread accepts,
// two pump each connection; all are joined on destruction.
// Thread-safety: Freeze/Thaw from any thread.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace adcsc::testing {

class FreezableProxy {
 public:
  explicit FreezableProxy(uint16_t upstream_port) : upstream_(upstream_port) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = Loopback(0);
    ::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(listener_, 64);
    socklen_t len = sizeof a;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }
  ~FreezableProxy() {
    stopping_ = true;
    ::shutdown(listener_, SHUT_RDWR);
    accept_thread_.join();
    ::close(listener_);
    std::lock_guard lock(mu_);
    for (auto& t : pumps_) t.join();
    for (int fd : fds_) ::close(fd);
  }
  FreezableProxy(const FreezableProxy&) = delete;
  FreezableProxy& operator=(const FreezableProxy&) = delete;

  uint16_t port() const { return port_; }
  void Freeze() { frozen_ = true; }
  void Thaw() { frozen_ = false; }

 private:
  static constexpr int kPollMs = 20;  // how soon a pump notices stop, freeze or thaw

  static sockaddr_in Loopback(uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    return a;
  }

  void AcceptLoop() {
    while (!stopping_) {
      const int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) return;
      const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in up = Loopback(upstream_);
      if (::connect(server, reinterpret_cast<sockaddr*>(&up), sizeof up) != 0) {
        ::close(client);
        ::close(server);
        continue;
      }
      std::lock_guard lock(mu_);
      fds_.push_back(client);
      fds_.push_back(server);
      pumps_.emplace_back([this, client, server] { Pump(client, server); });
      pumps_.emplace_back([this, client, server] { Pump(server, client); });
    }
  }

  // Copies `from` to `to` until either side closes or the proxy stops; holds still while frozen.
  void Pump(int from, int to) {
    char buf[16384];
    while (!stopping_) {
      if (frozen_) {
        std::this_thread::sleep_for(std::chrono::milliseconds(kPollMs));
        continue;
      }
      pollfd p{from, POLLIN, 0};
      if (::poll(&p, 1, kPollMs) <= 0) continue;
      if (frozen_) continue;  // froze while waiting: leave the bytes in the kernel
      const ssize_t n = ::read(from, buf, sizeof buf);
      if (n <= 0) break;
      for (ssize_t sent = 0; sent < n;) {
        const ssize_t w = ::send(to, buf + sent, static_cast<size_t>(n - sent), MSG_NOSIGNAL);
        if (w <= 0) return;
        sent += w;
      }
    }
    ::shutdown(to, SHUT_WR);
  }

  const uint16_t upstream_;
  int listener_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false}, frozen_{false};
  std::thread accept_thread_;
  std::mutex mu_;
  std::vector<std::thread> pumps_;
  std::vector<int> fds_;
};

}  // namespace adcsc::testing
