// Loopback helpers for the rpc connection tests: a server that runs ServeConnection for every
// accepted connection (and keeps what it reported through on_error), and a proxy that passes
// one connection's PDUs through, letting a test read or change each one on the way.
// Thread-safety: LoopbackServer's accessors may be called from any thread; a PduProxy's edit
// function is called from its two pump threads (one per direction), concurrently.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "node/rpc/pdu.h"
#include "node/rpc/server.h"
#include "node/rpc/tcp_stream.h"

namespace adcsc::testing {

using rpc::Bytes;
using rpc::CallHandler;
using rpc::ServerOptions;
using rpc::TcpListener;
using rpc::TcpStream;

// Serves every accepted connection on its own thread until destroyed. `options.port` and
// `options.on_error` are set here.
class LoopbackServer {
 public:
  LoopbackServer(ServerOptions options, CallHandler handler)
      : options_(std::move(options)), handler_(std::move(handler)) {
    listener_ = std::move(*TcpListener::Listen("127.0.0.1", 0));
    options_.port = listener_->port();
    options_.on_error = [this](const std::string&, const absl::Status& s) {
      std::lock_guard lock(mu_);
      errors_.push_back(s);
      changed_.notify_all();
    };
    thread_ = std::thread([this] {
      for (;;) {
        auto stream = listener_->Accept();
        if (!stream.ok()) return;
        std::shared_ptr<TcpStream> s = std::move(*stream);
        workers_.emplace_back([this, s] { rpc::ServeConnection(*s, options_, handler_); });
      }
    });
  }
  ~LoopbackServer() {
    listener_->Close();
    thread_.join();
    for (auto& w : workers_) w.join();  // clients have closed by now
  }
  LoopbackServer(const LoopbackServer&) = delete;
  LoopbackServer& operator=(const LoopbackServer&) = delete;

  uint16_t port() const { return options_.port; }
  int errors() const {
    std::lock_guard lock(mu_);
    return static_cast<int>(errors_.size());
  }
  // Waits until the server has reported an error whose message contains `text` (a connection
  // ends on the server's thread, after the client already has its answer); the reports so far
  // joined with " | " when none does by `timeout`, else empty.
  std::string WaitForError(const std::string& text, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock lock(mu_);
    const bool found = changed_.wait_for(lock, timeout, [&] {
      for (const absl::Status& s : errors_) {
        if (s.message().find(text) != std::string_view::npos) return true;
      }
      return false;
    });
    if (found) return "";
    std::string all = "no server error containing \"" + text + "\"; reported:";
    for (const absl::Status& s : errors_) all += " | " + s.ToString();
    return all;
  }

 private:
  ServerOptions options_;
  CallHandler handler_;
  std::unique_ptr<TcpListener> listener_;
  std::thread thread_;
  std::vector<std::thread> workers_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::vector<absl::Status> errors_;
};

// Forwards one connection to 127.0.0.1:upstream, PDU by PDU. `edit` sees every PDU (whole,
// with its index in its direction, from 0) before it is passed on and may change it.
class PduProxy {
 public:
  enum class Direction { kToServer, kToClient };
  using Edit = std::function<void(Direction, int index, Bytes& pdu)>;

  PduProxy(uint16_t upstream, Edit edit) : upstream_(upstream), edit_(std::move(edit)) {
    listener_ = std::move(*TcpListener::Listen("127.0.0.1", 0));
    thread_ = std::thread([this] { Run(); });
  }
  ~PduProxy() {
    listener_->Close();
    thread_.join();
  }
  PduProxy(const PduProxy&) = delete;
  PduProxy& operator=(const PduProxy&) = delete;
  uint16_t port() const { return listener_->port(); }

  // An Edit that flips the low bit of byte `offset` of the `index`th PDU towards the client.
  static Edit FlipToClient(int index, size_t offset) {
    return [index, offset](Direction d, int n, Bytes& pdu) {
      if (d == Direction::kToClient && n == index && offset < pdu.size()) pdu[offset] ^= 0x01;
    };
  }

 private:
  static constexpr std::chrono::seconds kIoTimeout{10};

  void Pump(TcpStream& from, TcpStream& to, Direction direction) {
    for (int n = 0;; ++n) {
      Bytes pdu(rpc::kCommonHeaderSize);
      if (!from.ReadExact(pdu, rpc::DeadlineIn(kIoTimeout)).ok()) return;
      auto size = rpc::NextPduSize(pdu);
      if (!size.ok()) return;
      pdu.resize(*size);
      if (!from.ReadExact(std::span<uint8_t>(pdu).subspan(rpc::kCommonHeaderSize), rpc::DeadlineIn(kIoTimeout)).ok())
        return;
      if (edit_) edit_(direction, n, pdu);
      if (!to.WriteAll(pdu, rpc::DeadlineIn(kIoTimeout)).ok()) return;
    }
  }
  void Run() {
    auto client = listener_->Accept();
    if (!client.ok()) return;
    auto server = TcpStream::Connect("127.0.0.1", upstream_, std::chrono::seconds(5));
    if (!server.ok()) return;
    std::thread up([&] {
      Pump(**client, **server, Direction::kToServer);
      (*server)->Shutdown();
    });
    Pump(**server, **client, Direction::kToClient);
    (*client)->Shutdown();
    up.join();
  }

  uint16_t upstream_;
  Edit edit_;
  std::unique_ptr<TcpListener> listener_;
  std::thread thread_;
};

}  // namespace adcsc::testing
