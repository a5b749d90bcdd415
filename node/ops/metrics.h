// The node's Prometheus metrics, on prometheus-cpp's registry (Debian's prometheus-cpp-dev,
// core only; the ops listener serves the text). Counted as they happen: API calls by
// endpoint and outcome, their latency, CA call latency and errors, signing policy denials by rule, calls under /api/
// not served. Read at scrape time: health and service mode, certificate expiry, replication lag and write counts, the
// peers' cluster protocols and refusals, connections open on the API port and the CA connection pool. Reference:
// docs/operations.md, "Metrics". Thread-safety: every method from any thread.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "node/api/api_service.h"
#include "node/ops/health.h"
#include "store/replication.h"

namespace adcsc::ops {

// What is read at scrape time.
struct ScrapeState {
  int64_t now_ms = 0;
  HealthReport health;
  ServiceMode mode = ServiceMode::kActive;
  int64_t certificate_not_after_ms = 0;
  std::optional<store::ReplicatorStatus> replication;  // nullopt: a single node
  struct PeerProtocol {
    std::string node_id;
    uint32_t speaks = 0;
    bool refused = false;
  };
  std::vector<PeerProtocol> peer_protocols;               // the peers heard from (node/cluster/protocol.h)
  int64_t api_connections = -1;                           // open on the API port; < 0: unknown
  std::map<std::string, uint64_t> api_refusals;           // by kind (connection_admission.h)
  int64_t ops_connections = -1;                           // open on the ops port; < 0: unknown
  uint64_t ops_refused_connections = 0;                   // over ops.max_connections, since start
  std::map<std::string, size_t> ca_idle_connections;      // per CA host (icpr backend)
  uint64_t ca_connections_opened = 0;                     // icpr: authenticated binds made
  uint64_t ca_connections_reused = 0;                     // icpr: calls on a pooled connection
  std::map<std::string, uint64_t> ca_binds_by_mechanism;  // icpr: "kerberos", "ntlm"
  uint64_t ca_ntlm_fallbacks = 0;                         // icpr negotiate: NTLM because Kerberos could not start
  uint64_t ca_ticket_renewals = 0;                        // icpr: Kerberos TGTs renewed
  int64_t ca_ticket_expiry_unix = 0;                      // icpr: when the TGT ends; 0: none
  uint64_t store_integrity_failures = 0;                  // quick_check found damage (since start)
  uint64_t store_integrity_repairs = 0;                   // of those, mended
  uint64_t store_records_pruned = 0;                      // by retention, since start
  int64_t store_free_bytes = -1;                          // free to the node on the data directory's volume; -1 unknown
  int64_t store_min_free_bytes = 0;                       // store.min_free_bytes (0: no floor)
};

class NodeMetrics final : public node::ApiObserver {
 public:
  NodeMetrics();

  void ObserveCall(std::string_view endpoint, std::string_view outcome, int http_status, double latency_ms,
                   double ca_ms) override;
  void ObservePolicyDenial(std::string_view rule) override;
  // A CA administration action through the admin channel (revoke, approve, deny, info) and
  // its outcome ("ok", "ca_error", "refused").
  void ObserveCaAdmin(std::string_view operation, std::string_view outcome);
  void ObserveUnserved(std::string_view method, std::string_view path_label) override;

  // The Prometheus text exposition, with the scrape-time gauges set from `state`.
  std::string Scrape(const ScrapeState& state);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& request_seconds_;
  prometheus::Family<prometheus::Histogram>& ca_seconds_;
  prometheus::Family<prometheus::Counter>& ca_errors_;
  prometheus::Family<prometheus::Counter>& policy_denials_;
  prometheus::Family<prometheus::Counter>& ca_admin_actions_;
  prometheus::Family<prometheus::Counter>& unserved_;
  prometheus::Family<prometheus::Gauge>& ready_;
  prometheus::Family<prometheus::Gauge>& check_ok_;
  prometheus::Family<prometheus::Gauge>& mode_;
  prometheus::Family<prometheus::Gauge>& certificate_expiry_;
  prometheus::Family<prometheus::Gauge>& certificates_expiry_;
  std::vector<prometheus::Gauge*> certificate_gauges_;  // last scrape's, removed when gone (a reload)
  prometheus::Family<prometheus::Gauge>& lag_mutations_;
  prometheus::Family<prometheus::Gauge>& lag_seconds_;
  prometheus::Family<prometheus::Gauge>& peer_last_answer_;
  prometheus::Family<prometheus::Gauge>& peer_protocol_;
  prometheus::Family<prometheus::Gauge>& peer_refused_;
  prometheus::Family<prometheus::Gauge>& replicated_writes_;
  prometheus::Family<prometheus::Gauge>& api_connections_;
  prometheus::Family<prometheus::Gauge>& api_refusals_;
  prometheus::Family<prometheus::Gauge>& ops_connections_;
  prometheus::Family<prometheus::Gauge>& ops_refused_;
  prometheus::Family<prometheus::Gauge>& ca_idle_;
  prometheus::Family<prometheus::Gauge>& ca_connections_;
  prometheus::Family<prometheus::Gauge>& ca_binds_;
  prometheus::Family<prometheus::Gauge>& ca_ntlm_fallbacks_;
  prometheus::Family<prometheus::Gauge>& ca_ticket_renewals_;
  prometheus::Family<prometheus::Gauge>& ca_ticket_expiry_;
  prometheus::Family<prometheus::Gauge>& store_integrity_;
  prometheus::Family<prometheus::Gauge>& store_pruned_;
  prometheus::Family<prometheus::Gauge>& store_free_;
  prometheus::Family<prometheus::Gauge>& store_min_free_;
  std::mutex scrape_mu_;  // one scrape at a time sets the gauges, then serializes
};

}  // namespace adcsc::ops
