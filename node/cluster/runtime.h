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
  // Starts the listener on cluster.listen and the anti-entropy timer. `store` is not owned
  // and must outlive the runtime. Errors name the file or address at fault.
  static absl::StatusOr<std::unique_ptr<ClusterRuntime>> Start(const node::Config& config, store::RequestStore* store);
  ~ClusterRuntime() override;  // closes the listener, then stops replicating

  absl::Status Replicate(const store::WriteResult& write) override;
  // For the API: lookups on the peers and forwarded retrieves.
  node::PeerLookup* peers() { return directory_.get(); }
  PeerDirectory& directory() { return *directory_; }
  // The API that runs the retrieves peers forward here; until set they are refused.
  void set_api(node::ApiService* api) { peer_service_->set_api(api); }
  void set_ca_switch(ca::OutageSwitch* ca_switch) { peer_service_->set_ca_switch(ca_switch); }
  // This node's view of the cluster, as Peer.Info answers it.
  absl::Status Describe(adcsc::cluster::v1::NodeInfo* info) const { return peer_service_->Describe(info); }
  absl::StatusOr<store::ReplicatorStatus> Status() const;
  GrpcPeerTransport& transport() { return *transport_; }
  int port() const { return port_; }

 private:
  ClusterRuntime() = default;

  node::Config node_config_;
  node::ClusterConfig config_;
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
