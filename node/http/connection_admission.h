// Who may hold the API port's connections, so that a hostile network cannot lock Jamf Pro
// out. A connection is "unverified" from accept until its client certificate is found
// mapped (then "mapped"); an unmapped one stays unverified until its 403 is written and it
// closes. The rules, checked at accept, before any TLS work:
//   - all connections together stay within max_connections;
//   - unverified ones share max_connections - reserved: the reserve is for mapped clients
//     only. When the shared part is full, the oldest unverified connection is closed to make
//     room (a new connection always gets its handshake; a connection parked half-open is
//     what goes);
//   - per source (text::SourceKey), at most max_per_source unverified connections, and a
//     token bucket of refusals (unmapped certificate, failed handshake, no request sent,
//     evicted): a source that has spent it gets its new connections closed unanswered until
//     it refills at refusals_per_s.
// Exempt sources (a TCP-mode balancer, through which every client arrives) skip the
// per-source rules. Plain logic with the time passed in; HttpsServer applies the decisions.
// Thread-safe.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "node/text/address_prefix.h"

namespace adcsc::node {

// Why the API port turned a connection away or ended it; each has a metric label.
enum class Refusal : int {
  kConnectionCap,        // max_connections held by mapped clients
  kSourceConnections,    // the source holds max_per_source unverified connections
  kSourceRate,           // the source spent its refusal budget: closed at accept
  kEvicted,              // closed to make room for a new connection
  kUnmappedCertificate,  // answered 403 (no certificate, untrusted, not pinned, expired)
  kHandshakeFailed,      // TLS handshake failed or timed out
  kSlowClient,           // no complete request within api.header_timeout_ms
};
inline constexpr int kRefusalKinds = 7;
// The metric label, e.g. "source_rate".
std::string_view RefusalName(Refusal r);
// What a log line says about it, naming the setting that decided.
std::string_view RefusalReason(Refusal r);

struct AdmissionLimits {
  size_t max_connections = 1024;
  size_t reserved_for_mapped = 128;
  size_t max_per_source = 32;
  double refusals_per_s = 5;
  double refusal_burst = 20;
  std::vector<text::AddressPrefix> exempt;
};

class ConnectionAdmission {
 public:
  using Time = std::chrono::steady_clock::time_point;
  explicit ConnectionAdmission(AdmissionLimits limits);

  struct Decision {
    bool admitted = false;
    Refusal refusal = Refusal::kConnectionCap;  // when not admitted
    uint64_t evict = 0;                         // nonzero: close this connection to make room
    std::string source;                         // the source key (for logs)
  };
  // A new connection `id` (increasing with age) from `remote`.
  Decision Admit(uint64_t id, const text::Address16& remote, Time now);
  // Its certificate is mapped: it leaves the unverified pool. False if it was evicted
  // meanwhile (the caller closes it).
  bool Mapped(uint64_t id);
  // A refusal of connection `id`: counted, and charged to its source's budget unless the
  // connection is mapped or exempt. Ignored for a connection evicted or closed already.
  void Refused(uint64_t id, Refusal kind, Time now);
  // The connection ended (evicted ones were accounted for at eviction).
  void Closed(uint64_t id);

  uint64_t refusals(Refusal kind) const;
  size_t unverified() const;
  size_t mapped() const;

 private:
  struct Source {
    size_t unverified = 0;
    double tokens = 0;
    Time refilled{};
  };
  struct Connection {
    std::string source;
    bool mapped = false;
  };
  Source& SourceFor(const std::string& key, Time now);
  void Refill(Source& s, Time now) const;
  void Charge(const std::string& key, Time now);
  void Forget(std::map<uint64_t, Connection>::iterator it);
  void SweepSources(Time now);
  bool Exempt(const text::Address16& a) const;

  const AdmissionLimits limits_;
  mutable std::mutex mu_;
  std::map<uint64_t, Connection> connections_;  // open ones, by id (oldest first)
  std::map<std::string, Source> sources_;
  size_t unverified_ = 0;
  size_t mapped_ = 0;
  std::array<uint64_t, kRefusalKinds> counts_{};
};

}  // namespace adcsc::node
