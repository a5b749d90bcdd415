// The API's view of the other nodes (node::PeerLookup over gRPC): a bounded fan-out to every
// peer's Peer service for a record or a dedupe key this node does not hold yet, and the
// forwarding of a CA retrieve to a live peer that runs as a given CA identity, and of a
// submit or retrieve this node could not take to its CA to a peer that reaches it. It learns
// each peer's identity and the CAs it cannot reach from its Info answer, refreshed in the
// background (Refresh) and on demand when a forward finds no peer with the identity it needs.
// Thread-safety: every method may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "adcsc/cluster/v1/cluster.grpc.pb.h"
#include "node/api/peer_lookup.h"
#include "node/cluster/replication_grpc.h"
#include "node/config/config.h"
#include "store/clock.h"

namespace adcsc::cluster {

// How a peer was last seen by Refresh or a call.
struct PeerView {
  std::string node_id;
  std::string ca_identity;   // empty: not known yet
  int64_t last_seen_ms = 0;  // monotonic Clock time of the last answer; 0: never
  // The peer's version vector in its last Info answer; has_vector false until one came.
  store::VersionVector version_vector;
  bool has_vector = false;
  // The CA configs the peer reported it cannot reach (its last Info answer, or a forwarded
  // call that found it so); ca_outage: cut off from every CA by fault injection.
  std::vector<std::string> cas_unreachable;
  bool ca_outage = false;
  // The peer let a lookup run out its deadline (frozen, swamped, a black-holed link): lookups
  // leave it out until it answers anything again, or until this passes (then one lookup tries
  // it again). Monotonic Clock time, so a wall clock step neither stretches nor ends the quiet.
  // 0: not quiet.
  int64_t quiet_until_ms = 0;
};

// One peer's answer to a survey (PeerDirectory::Survey).
struct PeerSurvey {
  std::string node_id;
  std::string address;
  std::string error;  // empty: `info` holds its answer
  adcsc::cluster::v1::NodeInfo info;
};

// Whether `peer` reported `ca_config` ("dc\ca") unreachable.
bool ReportsCaUnreachable(const PeerView& peer, const std::string& ca_config);

class PeerDirectory final : public node::PeerLookup {
 public:
  // `transport` (not owned, must outlive this) provides the channels and the fault-injection
  // cut-off. `lookup_timeout` bounds lookups and Info; `forward_timeout` bounds one forwarded
  // retrieve (it includes the peer's CA call); a forwarded submit, which also takes the
  // CSR's lease at the peer, gets forward_timeout + lookup_timeout for all its attempts.
  // `clock` (not owned, must outlive this) times how long a peer stays quiet; the timeouts
  // above run on steady_clock, as gRPC's do.
  PeerDirectory(const node::Config& config, const GrpcPeerTransport* transport,
                std::chrono::milliseconds lookup_timeout, std::chrono::milliseconds forward_timeout,
                const Clock* clock = SystemClock::Default());
  ~PeerDirectory() override;

  std::optional<store::RequestRecord> Lookup(const std::string& ca_config, uint32_t request_id) override;
  std::optional<store::RequestRecord> LookupByDedupeKey(const std::string& ca_config, const std::string& template_name,
                                                        const std::string& csr_sha256, int64_t not_before_ms) override;
  absl::StatusOr<node::ForwardedRetrieve> ForwardRetrieve(const std::string& identity, const ca::CaTarget& target,
                                                          uint32_t request_id) override;
  absl::StatusOr<node::ForwardedSubmit> ForwardSubmit(const node::SubmitToForward& submit) override;
  // Waits for every reachable peer's answer, at most lookup_timeout.
  std::vector<node::LeaseAnswer> ClaimSubmit(const node::SubmitIntent& claim, size_t grants_enough) override;
  // Sent to every reachable peer; not waited for.
  void ReleaseSubmit(const node::SubmitIntent& claim, bool settled) override;
  void LapseSubmit(const node::SubmitIntent& claim) override;

  // Asks every peer for its Info and waits (at most lookup_timeout) for the answers.
  void Refresh();
  // Asks every configured peer for its Info (with its API activity when `include_activity`),
  // in parallel, for at most lookup_timeout; one entry per peer in configuration order, an
  // unreachable, refused or silent peer with its error. For the status page.
  std::vector<PeerSurvey> Survey(bool include_activity) const;
  std::vector<PeerView> Peers() const;
  // Peer lookups that left out a peer gone quiet (PeerView::quiet_until_ms), since start.
  uint64_t skipped_lookups() const;

 private:
  // What outlives the directory while calls are in flight: their callbacks update it.
  struct Shared {
    explicit Shared(const Clock* c) : clock(c) {}
    const Clock* const clock;
    mutable std::mutex mu;
    std::vector<PeerView> peers;  // one per configured peer, in config order
    void Seen(const std::string& node_id, const std::string* identity);
    void SawVector(const std::string& node_id, store::VersionVector vector);
    void SawCaHealth(const std::string& node_id, std::vector<std::string> cas_unreachable, bool ca_outage);
    // A forwarded call found the peer's CA unreachable: not asked again until its next Info.
    void SawCaUnreachable(const std::string& node_id, const std::string& ca_config);
    // A lookup to the peer ran out its deadline: quiet for `for_ms`.
    void WentQuiet(const std::string& node_id, int64_t for_ms);
    bool Quiet(const std::string& node_id) const;
    uint64_t skipped_lookups = 0;  // lookups that left a quiet peer out (guarded by mu)
  };
  using StartLookup = std::function<void(adcsc::cluster::v1::Peer::Stub*, grpc::ClientContext*,
                                         adcsc::cluster::v1::LookupResponse*, std::function<void(grpc::Status)>)>;
  using Accept = std::function<bool(const store::RequestRecord&)>;
  // Sends a lookup (`start`) to every reachable peer at once and merges the records that
  // `accept` lets through, until every peer answered, `stop_early` holds for the merged
  // record, or lookup_timeout passes; calls still running then are cancelled. `merge`
  // combines two accepted records.
  std::optional<store::RequestRecord> LookupAll(
      const StartLookup& start, const Accept& accept,
      const std::function<store::RequestRecord(const store::RequestRecord&, const store::RequestRecord&)>& merge,
      const Accept& stop_early);
  void Stamp(adcsc::cluster::v1::PeerHeader* header) const;
  // A release (or, with holder_gone, a lapse on the claim's node's behalf) to every peer.
  void SendRelease(const node::SubmitIntent& claim, bool settled, bool holder_gone);

  const node::Config config_;
  const GrpcPeerTransport* transport_;
  const std::chrono::milliseconds lookup_timeout_;
  const std::chrono::milliseconds forward_timeout_;
  std::shared_ptr<Shared> shared_;
};

}  // namespace adcsc::cluster
