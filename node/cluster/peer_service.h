// The Peer gRPC service of a clustered node: what the other nodes ask of it besides
// replication. Lookup and LookupByDedupeKey read this node's store (a peer whose replica is
// behind asks them); ForwardRetrieve runs a CA retrieve under this node's CA identity for a
// peer that runs as another one or cannot reach the CA; ForwardSubmit runs a submit for a
// peer that cannot reach the CA; Info is this node's view of the cluster (identity, version
// vector, replication counters, how it sees each peer, the CAs it cannot reach), which
// `adcsc ctl status` and the peers' PeerDirectory read. Thread-safety: gRPC calls it from its
// own threads; everything it reads is thread-safe.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "adcsc/cluster/v1/cluster.grpc.pb.h"
#include "node/api/api_service.h"
#include "node/ca/outage_switch.h"
#include "node/cluster/replication_grpc.h"
#include "node/config/config.h"
#include "store/replication.h"
#include "store/request_store.h"

namespace adcsc::cluster {

class PeerService final : public adcsc::cluster::v1::Peer::Service {
 public:
  // Nothing is owned; all must outlive the service.
  // While `transport` (optional) is cut off by fault injection, peers' calls are refused;
  // SetFault (from this node's own certificate) cuts it off and heals it. `api` (optional)
  // runs the retrieves peers forward here and holds their announced submits; without it
  // (a replication-only member, as in the benchmarks) those calls are refused. `ca_switch`
  // (optional): the node's CA backend switch for the ca-outage fault.
  PeerService(const node::Config* config, store::RequestStore* store, store::Replicator* replicator,
              GrpcPeerTransport* transport = nullptr, node::ApiService* api = nullptr,
              ca::OutageSwitch* ca_switch = nullptr);

  grpc::Status Lookup(grpc::ServerContext* context, const adcsc::cluster::v1::LookupRequest* request,
                      adcsc::cluster::v1::LookupResponse* reply) override;
  grpc::Status LookupByDedupeKey(grpc::ServerContext* context, const adcsc::cluster::v1::DedupeLookupRequest* request,
                                 adcsc::cluster::v1::LookupResponse* reply) override;
  grpc::Status ForwardRetrieve(grpc::ServerContext* context, const adcsc::cluster::v1::ForwardRetrieveRequest* request,
                               adcsc::cluster::v1::ForwardRetrieveResponse* reply) override;
  // A peer's submit it could not take to the CA: run through this node's full submit path
  // (ApiService::SubmitForPeer), never forwarded again.
  grpc::Status ForwardSubmit(grpc::ServerContext* context, const adcsc::cluster::v1::ForwardSubmitRequest* request,
                             adcsc::cluster::v1::ForwardSubmitResponse* reply) override;
  grpc::Status SetFault(grpc::ServerContext* context, const adcsc::cluster::v1::FaultRequest* request,
                        adcsc::cluster::v1::FaultState* reply) override;
  // A peer's claim on a CSR (node/api/submit_leases.h): answered from this node's lease
  // table, or its release. UNAVAILABLE on a node without an API.
  grpc::Status AnnounceSubmit(grpc::ServerContext* context, const adcsc::cluster::v1::AnnounceSubmitRequest* request,
                              adcsc::cluster::v1::AnnounceSubmitResponse* reply) override;
  grpc::Status Info(grpc::ServerContext* context, const adcsc::cluster::v1::NodeInfoRequest* request,
                    adcsc::cluster::v1::NodeInfo* reply) override;
  // What Info answers, for this node's own /status and status page; with its API activity
  // when `include_activity` (NodeInfoRequest.include_activity).
  absl::Status Describe(adcsc::cluster::v1::NodeInfo* reply, bool include_activity = false) const;
  // Where Info's certificates come from (the node's health); until set, Info reports none
  // and certificates_reported stays false. Setting it (nullptr included) waits for a call of
  // the previous source in progress, so a node clears it before what the source reads goes.
  using CertificateSource = std::function<std::vector<adcsc::cluster::v1::NodeCertificate>()>;
  void SetCertificateSource(CertificateSource source);
  // Where Info's health and activity come from (it sets health/health_reported and, when
  // asked, activity/activity_reported); as SetCertificateSource.
  using StatusSource = std::function<void(bool include_activity, adcsc::cluster::v1::NodeInfo* reply)>;
  void SetStatusSource(StatusSource source);

 private:
  // The fault switches' state (cut_off, link, disk), for SetFault's answer and Info.
  void DescribeFaults(adcsc::cluster::v1::FaultState* state) const;

  const node::Config* config_;
  store::RequestStore* store_;
  store::Replicator* replicator_;
  GrpcPeerTransport* transport_;
  node::ApiService* const api_;
  ca::OutageSwitch* const ca_switch_;
  mutable std::mutex certificates_mu_;
  CertificateSource certificates_;  // guarded by certificates_mu_
  StatusSource status_;             // guarded by certificates_mu_

  // The calling peer, after the checks every call gets.
  absl::StatusOr<std::string> Caller(const grpc::ServerContext& context,
                                     const adcsc::cluster::v1::PeerHeader& from) const;
  void Stamp(adcsc::cluster::v1::PeerHeader* header) const;
};

}  // namespace adcsc::cluster
