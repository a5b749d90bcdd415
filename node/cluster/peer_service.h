// The Peer gRPC service of a clustered node. Today it answers Info: this node's view of the
// cluster (its version vector, replication counters, and how it sees each peer), which
// `adcsc ctl status` collects from every node. Lookup and forwarding come with the retrieve
// fan-out. Thread-safety: gRPC calls it from its own threads; everything it reads is
// thread-safe.
#pragma once

#include <string>

#include "adcsc/cluster/v1/cluster.grpc.pb.h"
#include "node/config.h"
#include "store/replication.h"
#include "store/request_store.h"

namespace adcsc::cluster {

class PeerService final : public adcsc::cluster::v1::Peer::Service {
 public:
  // Nothing is owned; all must outlive the service.
  PeerService(const node::Config* config, store::RequestStore* store, store::Replicator* replicator);

  grpc::Status Info(grpc::ServerContext* context, const adcsc::cluster::v1::NodeInfoRequest* request,
                    adcsc::cluster::v1::NodeInfo* reply) override;

 private:
  const node::Config* config_;
  store::RequestStore* store_;
  store::Replicator* replicator_;
};

}  // namespace adcsc::cluster
