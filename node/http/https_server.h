// The API port: HTTPS (TLS 1.2/1.3 only, client certificate required at the handshake)
// with HTTP/1.1 keep-alive on Boost.Beast. One coroutine per connection on its own strand;
// requests are handed to a worker pool (CA calls may block) and answered by ApiService.
// Limits (body size, header/idle/request timeouts, connection caps) come from ApiConfig;
// who may hold a connection is connection_admission.h's decision.
//
// Thread-safety: Start/BeginShutdown/WaitIdle/Stop are called from one controlling thread.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "node/api/api_service.h"
#include "node/config/config.h"
#include "node/http/client_auth.h"
#include "node/http/connection_admission.h"
#include "node/log/logging.h"

namespace adcsc::node {

struct ServerCounters {
  std::atomic<uint64_t> connections_accepted{0};
  std::atomic<uint64_t> connections_refused{0};  // closed at accept (admission; see refusals())
  std::atomic<uint64_t> handshake_failures{0};
  std::atomic<uint64_t> handshakes_resumed{0};
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> header_timeouts{0};
};

class HttpsServer {
 public:
  // Borrows everything; all must outlive the server. `access_log` may be null.
  HttpsServer(const ApiConfig& config, ApiService* service, const ClientAuthorizer* authorizer, EventLog* log,
              AccessLog* access_log);
  ~HttpsServer();
  HttpsServer(const HttpsServer&) = delete;
  HttpsServer& operator=(const HttpsServer&) = delete;

  // Loads the TLS identity, binds and starts the I/O and worker threads. Errors name the
  // config key or address that failed.
  absl::Status Start();
  // Reload without restart: new connections get the identity of `fresh` (api.cert_file,
  // api.key_file, api.client_ca_file) and are mapped by `authorizer` (its pins); connections
  // already open keep what they were accepted with. On an error (a key that does not match,
  // an unreadable file) nothing changes. Safe while serving, from any thread.
  absl::Status ReloadIdentity(const ApiConfig& fresh, std::unique_ptr<const ClientAuthorizer> authorizer);
  // The pinned client certificates the current authorizer let in (ClientAuthorizer::SeenCertificates).
  std::vector<ClientAuthorizer::Seen> SeenClientCertificates() const;
  // The bound port (useful with listen port 0).
  uint16_t port() const;
  // Stops accepting; connections finish the request in progress and close; idle
  // keep-alive connections close at once.
  void BeginShutdown();
  // Waits until no connection is open or `grace` passes; true when idle.
  bool WaitIdle(std::chrono::milliseconds grace);
  // Stops all threads; open connections are dropped.
  void Stop();

  size_t active_connections() const;
  const ServerCounters& counters() const;
  // Connections turned away or ended by admission and the refusals charged to sources, by kind.
  uint64_t refusals(Refusal kind) const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace adcsc::node
