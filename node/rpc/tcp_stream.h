// Blocking TCP sockets with deadlines, for the DCE/RPC client (one call at a time per
// connection) and the ADCS emulator (a thread per connection). Every operation takes a
// deadline, so no peer can hold a caller longer than the caller allows.
// Thread-safety: a TcpStream is used by one thread at a time; Shutdown() may be called from
// any thread to unblock it. TcpListener::Accept() and Close() may race safely.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace adcsc::rpc {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

inline Deadline DeadlineIn(std::chrono::milliseconds d) { return Clock::now() + d; }

class TcpStream {
 public:
  // Resolves `host` (name or IP literal) and connects to the first address that answers
  // within `timeout`. Errors: UNAVAILABLE naming host:port and the system's reason
  // ("Connection refused", "No route to host", name resolution failures), or
  // DEADLINE_EXCEEDED when nothing answered in time.
  static absl::StatusOr<std::unique_ptr<TcpStream>> Connect(const std::string& host, uint16_t port,
                                                            std::chrono::milliseconds timeout);

  // Takes ownership of a connected socket (from TcpListener::Accept).
  explicit TcpStream(int fd);
  ~TcpStream();
  TcpStream(const TcpStream&) = delete;
  TcpStream& operator=(const TcpStream&) = delete;

  // Writes all of `data`. UNAVAILABLE if the peer is gone, DEADLINE_EXCEEDED on timeout.
  absl::Status WriteAll(std::span<const uint8_t> data, Deadline deadline);
  // Fills `out` completely. UNAVAILABLE on end of stream ("connection closed by peer") or a
  // socket error, DEADLINE_EXCEEDED on timeout.
  absl::Status ReadExact(std::span<uint8_t> out, Deadline deadline);

  // For an idle connection: true when the peer has closed it or sent something unasked
  // (either way it must not be reused). Does not block.
  bool ClosedOrUnexpectedInput() const;

  // Wakes a blocked read or write (it fails with UNAVAILABLE) and stops further I/O.
  void Shutdown();

  // "127.0.0.1:49152" / "[::1]:49152" of the other end.
  const std::string& peer() const { return peer_; }

 private:
  absl::Status WaitFor(short events, Deadline deadline, const char* what);

  int fd_;
  std::string peer_;
};

class TcpListener {
 public:
  // Binds and listens on address:port (port 0: any free port; see port()).
  static absl::StatusOr<std::unique_ptr<TcpListener>> Listen(const std::string& address, uint16_t port);
  ~TcpListener();
  TcpListener(const TcpListener&) = delete;
  TcpListener& operator=(const TcpListener&) = delete;

  // The next connection; CANCELLED after Close().
  absl::StatusOr<std::unique_ptr<TcpStream>> Accept();
  // Makes Accept() return CANCELLED, now and later.
  void Close();
  uint16_t port() const { return port_; }

 private:
  TcpListener(int fd, int wake_fd, uint16_t port) : fd_(fd), wake_fd_(wake_fd), port_(port) {}
  int fd_;
  int wake_fd_;  // eventfd that Close() signals
  uint16_t port_;
};

}  // namespace adcsc::rpc
