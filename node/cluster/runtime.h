// What a clustered node runs beside its API: the store's Replicator over gRPC with mutual
// TLS, its timer, and the node-to-node listener. It is the API's WriteReplication: a
// recorded outcome is pushed to the peers and the API answers once a write quorum holds it.
// Thread-safety: Replicate and Status from any thread.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "node/api_service.h"
#include "node/cluster/peer_service.h"
#include "node/cluster/replication_grpc.h"
#include "node/config.h"
#include "store/replication.h"
#include "store/request_store.h"

namespace adcsc::cluster {

class ClusterRuntime final : public node::WriteReplication {
 public:
  // Starts the listener on cluster.listen and the anti-entropy timer. `store` is not owned
  // and must outlive the runtime. Errors name the file or address at fault.
  static absl::StatusOr<std::unique_ptr<ClusterRuntime>> Start(const node::Config& config, store::RequestStore* store);
  ~ClusterRuntime() override;  // closes the listener, then stops replicating

  absl::Status Replicate(const store::WriteResult& write) override;
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
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace adcsc::cluster
