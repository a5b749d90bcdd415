// What a clustered node runs beside its API: the store's Replicator over gRPC with mutual
// TLS, its timer, the node-to-node listener (Replication and Peer services), and the
// PeerDirectory with a thread that keeps the peers' CA identities fresh. It is the API's
// WriteReplication (a recorded outcome is pushed to the peers and the API answers once a
// write quorum holds it) and, through peers(), its PeerLookup.
// Thread-safety: every method from any thread.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/status/statusor.h"
#include "node/api/api_service.h"
#include "node/cluster/peer_directory.h"
#include "node/cluster/peer_service.h"
#include "node/cluster/replication_grpc.h"
#include "node/config/config.h"
#include "store/replication.h"
#include "store/request_store.h"

namespace adcsc::cluster {

// How often each peer's Info (its CA identity, liveness) is asked for in the background.
inline constexpr std::chrono::milliseconds kPeerRefreshInterval{2'000};

class ClusterRuntime final : public node::WriteReplication {
 public:
  // Builds the outgoing side: the peer transport, the replicator and the peer directory, so
  // that the API can be built with them (the runtime is its WriteReplication, peers() its
  // PeerLookup). Nothing listens or runs yet: Serve() starts that. `store` is not owned and
  // must outlive the runtime. Errors name the file or address at fault.
  static absl::StatusOr<std::unique_ptr<ClusterRuntime>> Create(const node::Config& config, store::RequestStore* store);
  // Starts the listener on cluster.listen (Replication and Peer services), the anti-entropy
  // timer and the directory's refresher. `api` (optional) answers what peers forward here
  // and `ca_switch` (optional) is the ca-outage fault's switch; both borrowed. Once only.
  absl::Status Serve(node::ApiService* api, ca::OutageSwitch* ca_switch);
  // For a store being rebuilt from its peers (RequestStore::RebuildFromPeersPending): asks
  // every peer for its version vector (until `wait` runs out) and moves this node's own
  // sequence past the highest any of them holds from it. Every peer must answer: one that did
  // not could hold more of this node's mutations. UNAVAILABLE naming the silent peers. Call
  // between Create and Serve, before anything is written; a no-op for a store not rebuilding.
  absl::Status AdoptOwnSequenceFromPeers(std::chrono::milliseconds wait);
  // Create, then Serve without an API: a replication-only member (benchmarks, tests).
  static absl::StatusOr<std::unique_ptr<ClusterRuntime>> Start(const node::Config& config, store::RequestStore* store);
  ~ClusterRuntime() override;  // closes the listener, then stops replicating

  absl::Status Replicate(const store::WriteResult& write) override;
  // For the API: lookups on the peers and forwarded retrieves.
  node::PeerLookup* peers() { return directory_.get(); }
  PeerDirectory& directory() { return *directory_; }
  // This node's view of the cluster, as Peer.Info answers it (FAILED_PRECONDITION before Serve).
  absl::Status Describe(adcsc::cluster::v1::NodeInfo* info, bool include_activity = false) const;
  // The certificates Peer.Info reports (PeerService::SetCertificateSource); after Serve.
  void SetCertificateSource(PeerService::CertificateSource source) {
    if (peer_service_ != nullptr) peer_service_->SetCertificateSource(std::move(source));
  }
  // Peer.Info's health and activity (PeerService::SetStatusSource); after Serve.
  void SetStatusSource(PeerService::StatusSource source) {
    if (peer_service_ != nullptr) peer_service_->SetStatusSource(std::move(source));
  }
  absl::StatusOr<store::ReplicatorStatus> Status() const;
  GrpcPeerTransport& transport() { return *transport_; }
  int port() const { return port_; }

 private:
  ClusterRuntime() = default;

  node::Config node_config_;
  node::ClusterConfig config_;
  store::RequestStore* store_ = nullptr;
  std::unique_ptr<GrpcPeerTransport> transport_;
  std::unique_ptr<TimerScheduler> scheduler_;
  std::unique_ptr<store::Replicator> replicator_;
  std::unique_ptr<ReplicationServer> service_;
  std::unique_ptr<PeerService> peer_service_;
  std::unique_ptr<PeerDirectory> directory_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;

  // Refreshes the directory every kPeerRefreshInterval until stopped.
  void RefreshLoop();
  std::mutex refresh_mu_;
  std::condition_variable refresh_cv_;
  bool stopping_ = false;
  std::thread refresher_;
};

}  // namespace adcsc::cluster
