// Runs a node's health probes on a timer and keeps their last results: a durable write check
// of the request store, a ping of every allowlisted CA (as the node's own identity), and the
// cluster's state. Report() turns them into the HealthReport the ops listener serves
// (node/ops/health.h). The probes are functions, so the monitor knows nothing of the store,
// the CA backend or gRPC; node_main wires them.
// Thread-safety: every method may be called from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "node/ops/health.h"
#include "node/ops/service_mode.h"
#include "store/clock.h"

namespace adcsc::ops {

// What the cluster runtime reports, for the cluster check.
struct ClusterView {
  size_t peers = 0;
  size_t peers_reachable = 0;
  bool refuse_on_quorum_loss = false;
  bool snapshot_in_progress = false;
  uint64_t lag_mutations = 0;
  std::vector<std::string> refused_for_version;  // one message per peer refused for its protocol
};

struct HealthSources {
  std::function<absl::Status()> store_check;  // a durable write check
  struct Ca {
    std::string ca_config;               // "dc\ca"
    std::function<absl::Status()> ping;  // the backend's Ping as this node's identity
  };
  std::vector<Ca> cas;
  std::function<std::optional<ClusterView>()> cluster;  // empty, or nullopt: a single node
  // Every certificate the node owns or trusts, from its files (a reload replaces the list;
  // the kApiIdentityRole entry is the API certificate the health check judges), and the
  // pinned client certificates seen at handshakes since the start (may be empty).
  std::vector<CertificateExpiry> certificates;
  std::function<std::vector<CertificateExpiry>()> seen_clients;
  ServiceModeStore* mode = nullptr;  // not owned; required
  const Clock* clock = nullptr;      // not owned; required
};

class HealthMonitor {
 public:
  HealthMonitor(HealthSources sources, std::chrono::milliseconds interval, HealthPolicy policy = {});
  ~HealthMonitor();  // stops the probe thread
  HealthMonitor(const HealthMonitor&) = delete;
  HealthMonitor& operator=(const HealthMonitor&) = delete;

  // Probes once now, then every `interval` on a thread of its own.
  void Start();
  // One round of probes on the calling thread (also what the thread runs).
  void ProbeNow();

  HealthObservations Observations() const;
  // The certificates from the node's files, after a reload replaced them.
  void SetCertificates(std::vector<CertificateExpiry> certificates);
  // The CAs to ping, after a reload changed the allowlist: results of CAs still listed are
  // kept, those of CAs removed go at once, and a round of probes starts now so that a CA
  // added is reported (and judged) after its first ping.
  void SetCas(std::vector<HealthSources::Ca> cas);
  // The API server certificate's notAfter (Unix ms); 0 when unknown.
  int64_t certificate_not_after_ms() const;
  HealthReport Report() const;
  ServiceModeStore& mode() { return *sources_.mode; }

 private:
  void Loop();
  int64_t ApiNotAfterLocked() const;  // from certificates_; mu_ held

  const HealthSources sources_;
  const std::chrono::milliseconds interval_;
  const HealthPolicy policy_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool probe_requested_ = false;                 // SetCas wants a round now; guarded by mu_
  std::vector<HealthSources::Ca> ca_sources_;    // what to ping; guarded by mu_
  std::vector<CertificateExpiry> certificates_;  // guarded by mu_
  bool probed_ = false;                          // store_ and cas_ hold results, timed on the monotonic clock
  std::optional<int64_t> store_started_ms_;      // monotonic: a store check runs since then
  Probe store_;
  std::vector<CaProbe> cas_;
  std::optional<ClusterView> cluster_;
  std::thread thread_;
};

}  // namespace adcsc::ops
