#include "node/cluster/peer_service.h"

#include "node/cluster/replication_grpc.h"
#include "node/cluster/tls.h"
#include "store/clock.h"

namespace adcsc::cluster {

namespace v1 = adcsc::cluster::v1;

PeerService::PeerService(const node::Config* config, store::RequestStore* store, store::Replicator* replicator)
    : config_(config), store_(store), replicator_(replicator) {}

grpc::Status PeerService::Info(grpc::ServerContext* context, const v1::NodeInfoRequest*, v1::NodeInfo* reply) {
  auto caller = AuthenticatedPeer(*context, config_->cluster, config_->node_id);
  if (!caller.ok()) return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, std::string(caller.status().message()));
  reply->mutable_from()->set_cluster_id(config_->cluster.id);
  reply->mutable_from()->set_node_id(config_->node_id);
  reply->set_ca_identity(config_->ca.identity);
  reply->set_version(ADCSC_VERSION);
  reply->set_now_unix_ms(SystemClock::Default()->NowUnixMillis());
  if (auto vv = store_->GetVersionVector(); vv.ok()) *reply->mutable_version_vector() = ToProto(*vv);
  if (auto n = store_->CountRecords(); n.ok()) reply->set_records(*n);
  reply->set_write_quorum(static_cast<uint32_t>(replicator_->write_quorum()));
  auto status = replicator_->Status();
  if (!status.ok()) return grpc::Status(grpc::StatusCode::INTERNAL, std::string(status.status().message()));
  reply->set_quorum_writes(status->quorum_writes);
  reply->set_under_replicated_writes(status->under_replicated_writes);
  reply->set_refused_writes(status->refused_writes);
  for (const store::PeerStatus& p : status->peers) {
    v1::PeerState* s = reply->add_peers();
    s->set_node_id(p.node_id);
    s->set_last_ack_unix_ms(p.last_ack_ms);
    s->set_lag_mutations(p.lag_mutations);
    *s->mutable_known_vector() = ToProto(p.known_vector);
    s->set_snapshot_in_progress(p.snapshot_in_progress);
  }
  return grpc::Status::OK;
}

}  // namespace adcsc::cluster
