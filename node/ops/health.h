// What the load balancer and operators are told about a node: whether it is ready for
// traffic, and why not. Evaluate() is a pure function from what the node last observed
// (store write check, CA pings, cluster state, certificate expiry, service mode) to a report,
// so the rules are unit-tested without sockets or time; the ops listener serves the report on
// /health/ready (200/503 with every check) and /health/lb (UP / DRAIN / DOWN).
//
// The rules (docs/operations.md, "Health"):
//   - store: the last durable write check succeeded and is recent — a node that cannot
//     record outcomes must not take submits;
//   - ca <dc\ca>: the last ping of each allowlisted CA succeeded and is recent — a node cut off
//     from the CA would fail every request that reaches the CA;
//   - cluster: not copying a snapshot (a joining node is not caught up yet), and not cut off
//     from every peer when on_quorum_loss = "refuse" (it would refuse every write); a peer
//     refused for its release (cluster protocol) is named in the detail, without failing it;
//   - certificate: the API server certificate has not expired (a warning from
//     warn_certificate_days before);
//   - mode: active. A draining node reports DRAIN to the load balancer (F5's receive-disable
//     string) so it gets no new connections but keeps its in-flight ones; a node in
//     maintenance reports DOWN.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "node/ops/service_mode.h"

namespace adcsc::ops {

// The last result of a periodic probe.
struct Probe {
  bool ok = false;
  std::string detail;       // the error, or what was checked
  int64_t at_ms = 0;        // Unix ms when it ran; 0: never yet
  int64_t duration_ms = 0;  // how long it took
};

struct CaProbe {
  std::string ca_config;  // "dc\ca"
  Probe probe;
};

// One certificate the node owns or trusts, and when it expires (docs/operations.md,
// "Certificate expiry").
struct CertificateExpiry {
  std::string role;     // "api identity", "api client CA", "jamf client (pinned)", "cluster identity", ...
  std::string subject;  // RFC 2253
  std::string source;   // the file it came from, or "seen at a handshake"
  int64_t not_after_ms = 0;
  // A pinned client certificate mapped only until then (Unix ms): the old identity during a
  // rotation's overlap (api.client_pins `until`). 0: no end.
  int64_t mapped_until_ms = 0;
};

// The role of the API server certificate in the inventory: health's certificate check and
// adcsc_api_certificate_expiry_seconds follow it.
inline constexpr char kApiIdentityRole[] = "api identity";

// ok, warning (under warn_certificate_days), critical (under critical_certificate_days) or
// expired, at `now_ms`.
std::string_view ExpiryState(const CertificateExpiry& c, int64_t now_ms, int warn_days, int critical_days);

struct HealthObservations {
  int64_t now_ms = 0;
  ServiceMode mode = ServiceMode::kActive;
  Probe store;
  std::vector<CaProbe> cas;
  bool clustered = false;
  size_t peers = 0;            // configured peers
  size_t peers_reachable = 0;  // answered recently
  bool refuse_on_quorum_loss = false;
  bool snapshot_in_progress = false;
  uint64_t lag_mutations = 0;  // the most any peer lacks of ours (informational)
  // Peers refused for their cluster protocol (a release this node cannot replicate with), one
  // message each: informational, as the node serves on with the others.
  std::vector<std::string> refused_for_version;
  int64_t certificate_not_after_ms = 0;         // API server certificate; 0: unknown
  std::vector<CertificateExpiry> certificates;  // every certificate the node owns or trusts
};

struct HealthPolicy {
  int64_t max_probe_age_ms = 30'000;  // an older probe result counts as failed
  // A durable write check that took longer than this, or is still running after it, fails:
  // the store's disk is stalled or very slow, and the node's submits wait on it (a gray
  // failure the load balancer should route around).
  int64_t max_store_write_ms = 2'000;
  int warn_certificate_days = 30;
  int critical_certificate_days = 7;
};

enum class LbState { kUp, kDrain, kDown };
std::string_view LbWord(LbState state);  // "UP", "DRAIN", "DOWN"

struct HealthCheck {
  std::string name;  // "store", "ca ca01.example.com\Issuing CA", "cluster", "certificate", "mode"
  bool ok = false;
  std::string detail;  // what was seen, and what to check when it failed
};

struct HealthReport {
  bool ready = false;  // every check passed
  LbState lb = LbState::kDown;
  std::vector<HealthCheck> checks;
  int64_t ca_ping_ms = 0;  // the slowest CA's last ping: a hint for load-balancer weights
  struct Certificate {
    CertificateExpiry certificate;
    int64_t days_left = 0;
    std::string state;  // ok, warning, critical, expired
  };
  std::vector<Certificate> certificates;
  // {"ready":false,"lb":"DRAIN","ca_ping_ms":3,"checks":[{"name":..,"ok":..,"detail":..},...],
  //  "certificates":[{"role":..,"subject":..,"source":..,"not_after_ms":..,"days_left":..,"state":..
  //                    [,"mapped_until_ms":..]},...]}
  std::string ToJson() const;
};

HealthReport Evaluate(const HealthObservations& seen, const HealthPolicy& policy);

}  // namespace adcsc::ops
