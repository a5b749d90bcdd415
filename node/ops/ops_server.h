// The ops listener: a small HTTP(S) server on its own port for load balancers and operators.
// It serves only GET /, /health/live, /health/ready, /health/lb, /status and /metrics and the
// admin calls below, never the API (and the API port never serves these). One request per connection, bounded in time
// and size, at most max_connections at once (more are closed at once and counted).
//   /health/live   200 "LIVE" while the process answers
//   /health/ready  200 or 503, the HealthReport as JSON (every check, and why it failed)
//   /health/lb     200 "UP", or 503 "DRAIN" (F5's receive-disable string) or "DOWN"
//   /status        200, JSON. Anyone: health only (status, ready, live, mode, ca_ping_ms). An
//                  administrator (a client certificate the admin authorizer accepts): also the
//                  node, version, the health report and the extra members (cluster, peers).
//   /metrics       200, Prometheus text (node/ops/metrics.h), when a provider is given
//   /              200, the cluster status page (HTML, node/ops/status_page.h), for
//                  administrators only (as POST /admin/mode; anyone else gets the generic 403),
//                  when a provider is given; rendered on a worker thread (it asks the peers).
//   POST /admin/mode   {"mode":"drain"|"active"|"maint"}: the admin channel (`adcsc ctl
//                  drain|resume|maint`). TLS only, and only for a client certificate the
//                  admin authorizer accepts (chain and pin, as the API maps Jamf's). A refused
//                  caller gets one generic 403 whatever the reason (the reason goes to
//                  on_refused, for the node's log), and never a 100 Continue.
//   POST /admin/ca     a CA administration operation (`adcsc ctl revoke|approve|deny --node`),
//                  for administrators as /admin/mode; run by on_ca_admin on a worker thread
//                  (CA calls take seconds: health checks are not held up meanwhile).
// TLS (the API port's policy, node/http/tls_settings.h) with the API's certificate by default;
// plain HTTP when configured. Thread-safety: Start/Stop from one thread; requests are served
// on its own thread; the counters may be read from any thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "node/http/client_auth.h"
#include "node/ops/health_monitor.h"

namespace adcsc::ops {

struct OpsServerOptions {
  std::string listen_address = "127.0.0.1";
  uint16_t listen_port = 0;     // 0: any free port (tests)
  size_t max_connections = 64;  // open at once; one more is closed at once (and counted)
  bool tls = true;
  std::filesystem::path cert_file;  // PEM chain, when tls
  std::filesystem::path key_file;   // PEM key, when tls
  std::string node_id;
  std::string version;
  std::function<std::string()> metrics;  // the Prometheus text; empty: no /metrics
  // Extra members of the /status object (a JSON object as text, e.g. {"cluster": {...}});
  // empty or unset: none.
  std::function<std::string()> status_extra;
  // GET /: the status page's HTML; unset: 404. Called on a worker thread.
  std::function<std::string()> status_page;
  // Who may change the service mode; null: nobody (POST /admin/mode answers 403). Not owned;
  // a Reload replaces it.
  const node::ClientAuthorizer* admin = nullptr;
  // Told after an administrator changed the mode (for the node's log): the new mode and the
  // administrator's certificate pin.
  std::function<void(ServiceMode, const std::string& pin)> on_mode_change;
  // POST /admin/ca: runs the operation the JSON body asks for, as the administrator with
  // certificate pin `pin`; answers an HTTP status and a JSON body. Unset: 404. Called on a
  // worker thread, at most kCaAdminWorkers at once.
  std::function<std::pair<int, std::string>(const std::string& body, const std::string& pin)> on_ca_admin;
  // Told why a caller was refused the admin channel (the caller only sees a generic 403):
  // the peer address, the path and the reason.
  std::function<void(const std::string& remote, const std::string& path, const std::string& reason)> on_refused;
};

class OpsServer {
 public:
  // `monitor` is not owned and must outlive the server.
  OpsServer(OpsServerOptions options, HealthMonitor* monitor);
  ~OpsServer();
  OpsServer(const OpsServer&) = delete;
  OpsServer& operator=(const OpsServer&) = delete;

  // Loads the TLS identity, binds and starts serving. Errors name the key or address at fault.
  absl::Status Start();
  uint16_t port() const;
  void Stop();
  // A reload (SIGHUP): new connections get the TLS identity in `cert_file`/`key_file` (when
  // the listener has TLS) and are judged by `admin` (null: the admin channel is off);
  // connections already open keep what they had. A bad identity changes nothing and is
  // returned. Thread-safe; after Start.
  absl::Status Reload(const std::filesystem::path& cert_file, const std::filesystem::path& key_file,
                      std::unique_ptr<const node::ClientAuthorizer> admin);

  size_t open_connections() const;
  uint64_t refused_connections() const;  // closed at once over max_connections, since Start

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace adcsc::ops
