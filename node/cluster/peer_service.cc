#include "node/cluster/peer_service.h"

#include "node/ca/hresult.h"
#include "node/cluster/lease_wire.h"
#include "node/cluster/replication_grpc.h"
#include "node/cluster/tls.h"
#include "store/clock.h"
#include "store/fault_vfs.h"

namespace adcsc::cluster {

namespace v1 = adcsc::cluster::v1;

PeerService::PeerService(const node::Config* config, store::RequestStore* store, store::Replicator* replicator,
                         GrpcPeerTransport* transport, node::ApiService* api, ca::OutageSwitch* ca_switch)
    : config_(config),
      store_(store),
      replicator_(replicator),
      transport_(transport),
      api_(api),
      ca_switch_(ca_switch) {}

absl::StatusOr<std::string> PeerService::Caller(const grpc::ServerContext& context, const v1::PeerHeader& from) const {
  if (transport_ != nullptr) {
    if (auto admitted = transport_->link().AdmitIncoming(); !admitted.ok()) return admitted;
  }
  auto peer = CheckPeerCaller(context, config_->cluster, from);
  if (!peer.ok() || transport_ == nullptr) return peer;
  if (auto readable = transport_->protocols().AdmitIncoming(context, *peer); !readable.ok()) return readable;
  return peer;
}

void PeerService::Stamp(v1::PeerHeader* header) const {
  header->set_cluster_id(config_->cluster.id);
  header->set_node_id(config_->node_id);
}

grpc::Status PeerService::Lookup(grpc::ServerContext* context, const v1::LookupRequest* request,
                                 v1::LookupResponse* reply) {
  auto caller = Caller(*context, request->from());
  if (!caller.ok()) return ToGrpc(caller.status());
  Stamp(reply->mutable_from());
  auto record = store_->Get(request->ca_config(), request->request_id());
  if (!record.ok()) return ToGrpc(record.status());
  if (record->has_value()) *reply->mutable_record() = **record;
  return grpc::Status::OK;
}

grpc::Status PeerService::LookupByDedupeKey(grpc::ServerContext* context, const v1::DedupeLookupRequest* request,
                                            v1::LookupResponse* reply) {
  auto caller = Caller(*context, request->from());
  if (!caller.ok()) return ToGrpc(caller.status());
  if (request->csr_sha256().size() != 32) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "csr_sha256 must be 32 bytes");
  }
  Stamp(reply->mutable_from());
  auto record = store_->FindByDedupeKey(request->ca_config(), request->template_name(), request->csr_sha256(),
                                        request->not_before_ms());
  if (!record.ok()) return ToGrpc(record.status());
  if (record->has_value()) *reply->mutable_record() = **record;
  return grpc::Status::OK;
}

grpc::Status PeerService::AnnounceSubmit(grpc::ServerContext* context, const v1::AnnounceSubmitRequest* request,
                                         v1::AnnounceSubmitResponse* reply) {
  auto caller = Caller(*context, request->from());
  if (!caller.ok()) return ToGrpc(caller.status());
  node::ApiService* api = api_;
  if (api == nullptr) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "node " + config_->node_id + " serves no API");
  const v1::SubmitIntent& in = request->intent();
  if (in.csr_sha256().size() != 32 || in.ca_config().empty() || in.claim_id() == 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "a claim needs a ca_config, a 32-byte csr_sha256 and a claim_id");
  }
  node::SubmitIntent claim = IntentFromWire(in);
  Stamp(reply->mutable_from());
  if (request->done() && request->holder_gone()) {
    // Another node found the claim's node gone: lapse the claim as that node's.
    api->leases().Release(claim, /*settled=*/false);
    return grpc::Status::OK;
  }
  claim.node_id = *caller;  // the node is the authenticated caller, whatever the message says
  if (request->done()) {
    api->leases().Release(claim, request->settled());
  } else {
    AnswerToWire(api->leases().Claim(claim, config_->node_id), reply);
  }
  return grpc::Status::OK;
}

grpc::Status PeerService::ForwardRetrieve(grpc::ServerContext* context, const v1::ForwardRetrieveRequest* request,
                                          v1::ForwardRetrieveResponse* reply) {
  auto caller = Caller(*context, request->from());
  if (!caller.ok()) return ToGrpc(caller.status());
  node::ApiService* api = api_;
  if (api == nullptr) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "node " + config_->node_id + " serves no API");
  Stamp(reply->mutable_from());
  auto record = api->RetrieveForPeer(*caller, request->identity(), ca::CaTarget{request->dc(), request->ca()},
                                     request->request_id());
  if (record.ok()) {
    *reply->mutable_record() = *record;
    return grpc::Status::OK;
  }
  if (auto hr = ca::HresultOf(record.status()); hr && *hr != 0) {
    reply->set_hresult(*hr);
    reply->set_error(std::string(record.status().message()));
    return grpc::Status::OK;
  }
  return ToGrpc(record.status());
}

grpc::Status PeerService::ForwardSubmit(grpc::ServerContext* context, const v1::ForwardSubmitRequest* request,
                                        v1::ForwardSubmitResponse* reply) {
  auto caller = Caller(*context, request->from());
  if (!caller.ok()) return ToGrpc(caller.status());
  node::ApiService* api = api_;
  if (api == nullptr) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "node " + config_->node_id + " serves no API");
  Stamp(reply->mutable_from());
  node::ApiResponse answer = api->SubmitForPeer(*caller, request->body(), request->client_pin(), request->remote());
  reply->set_http_status(answer.status);
  reply->set_body(answer.body);
  reply->set_outcome(answer.outcome);
  // This node could not reach the CA either, and sent it nothing: the sender may ask another.
  reply->set_ca_unreachable(answer.outcome == "ca_unavailable");
  return grpc::Status::OK;
}

grpc::Status PeerService::SetFault(grpc::ServerContext* context, const v1::FaultRequest* request,
                                   v1::FaultState* reply) {
  auto caller = CheckPeerCaller(*context, config_->cluster, request->from(), config_->node_id);
  if (!caller.ok()) return ToGrpc(caller.status());
  if (*caller != config_->node_id) {
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        "fault injection is set by an operator on the node itself (adcsc ctl fault), not by a peer");
  }
  if (!config_->cluster.allow_fault_injection) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "fault injection is off on node " + config_->node_id +
                            " (set cluster.allow_fault_injection = true in its config and restart it)");
  }
  if (transport_ == nullptr) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "no peer transport");
  ca::OutageSwitch* ca_switch = ca_switch_;
  if (request->has_ca_outage() && ca_switch == nullptr) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "node " + config_->node_id + " has no CA switch");
  }
  if (request->has_cut_off()) transport_->SetCutOff(request->cut_off());
  if (request->has_link()) {
    const v1::LinkFault& l = request->link();
    transport_->SetLinkFault({.cut_in = l.cut_in(),
                              .cut_out = l.cut_out(),
                              .loss = l.loss(),
                              .delay_ms = static_cast<int64_t>(l.delay_ms())});
  }
  if (request->has_disk()) {
    store::SetDiskFault(
        {.write_delay_ms = request->disk().write_delay_ms(), .sync_delay_ms = request->disk().sync_delay_ms()});
  }
  if (request->has_ca_outage()) ca_switch->set_outage(request->ca_outage());
  Stamp(reply->mutable_from());
  DescribeFaults(reply);
  reply->set_ca_outage(ca_switch != nullptr && ca_switch->outage());
  return grpc::Status::OK;
}

void PeerService::DescribeFaults(v1::FaultState* state) const {
  if (transport_ != nullptr) {
    const LinkFault link = transport_->link().Get();
    state->set_cut_off(link.cut_off());
    state->mutable_link()->set_cut_in(link.cut_in);
    state->mutable_link()->set_cut_out(link.cut_out);
    state->mutable_link()->set_loss(link.loss);
    state->mutable_link()->set_delay_ms(static_cast<uint32_t>(link.delay_ms));
  }
  const store::DiskFault disk = store::CurrentDiskFault();
  state->mutable_disk()->set_write_delay_ms(static_cast<uint32_t>(disk.write_delay_ms));
  state->mutable_disk()->set_sync_delay_ms(static_cast<uint32_t>(disk.sync_delay_ms));
}

grpc::Status PeerService::Info(grpc::ServerContext* context, const v1::NodeInfoRequest* request, v1::NodeInfo* reply) {
  auto caller = AuthenticatedPeer(*context, config_->cluster, config_->node_id);
  if (!caller.ok()) return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, std::string(caller.status().message()));
  if (transport_ != nullptr && transport_->link().Get().cut_in && *caller != config_->node_id) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "this node is cut off from its peers (fault injection)");
  }
  // Operator tools on this node (its own certificate) are not peers: any release may ask.
  if (transport_ != nullptr && *caller != config_->node_id) {
    if (auto readable = transport_->protocols().AdmitIncoming(*context, *caller); !readable.ok()) {
      return ToGrpc(readable);
    }
  }
  if (auto s = Describe(reply, request->include_activity()); !s.ok()) return ToGrpc(s);
  return grpc::Status::OK;
}

void PeerService::SetStatusSource(StatusSource source) {
  std::lock_guard lock(certificates_mu_);
  status_ = std::move(source);
}

void PeerService::SetCertificateSource(CertificateSource source) {
  std::lock_guard lock(certificates_mu_);
  certificates_ = std::move(source);
}

absl::Status PeerService::Describe(v1::NodeInfo* reply, bool include_activity) const {
  reply->set_cut_off(transport_ != nullptr && transport_->cut_off());
  const ca::OutageSwitch* ca_switch = ca_switch_;
  reply->set_ca_outage(ca_switch != nullptr && ca_switch->outage());
  DescribeFaults(reply->mutable_faults());
  reply->mutable_faults()->set_ca_outage(reply->ca_outage());
  if (api_ != nullptr) {
    reply->set_ca_health_reported(true);
    for (const std::string& ca_config : api_->ca_reachability().Unreachable()) reply->add_cas_unreachable(ca_config);
  }
  {
    // Called under the lock, so SetCertificateSource(nullptr) waits for a call in progress.
    std::lock_guard lock(certificates_mu_);
    if (certificates_) {
      reply->set_certificates_reported(true);
      for (v1::NodeCertificate& c : certificates_()) *reply->add_certificates() = std::move(c);
    }
    if (status_) status_(include_activity, reply);
  }
  reply->mutable_from()->set_cluster_id(config_->cluster.id);
  reply->mutable_from()->set_node_id(config_->node_id);
  reply->set_ca_identity(config_->ca.identity);
  reply->set_version(ADCSC_VERSION);
  reply->set_now_unix_ms(SystemClock::Default()->NowUnixMillis());
  if (auto vv = store_->GetVersionVector(); vv.ok()) *reply->mutable_version_vector() = ToProto(*vv);
  if (auto n = store_->CountRecords(); n.ok()) reply->set_records(*n);
  reply->set_write_quorum(static_cast<uint32_t>(replicator_->write_quorum()));
  auto status = replicator_->Status();
  if (!status.ok()) return status.status();
  reply->set_quorum_writes(status->quorum_writes);
  reply->set_under_replicated_writes(status->under_replicated_writes);
  reply->set_refused_writes(status->refused_writes);
  for (const store::PeerStatus& p : status->peers) {
    v1::PeerState* s = reply->add_peers();
    s->set_node_id(p.node_id);
    s->set_last_ack_unix_ms(p.last_ack_ms);
    s->set_lag_mutations(p.lag_mutations);
    s->set_lag_ms(p.lag_ms);
    *s->mutable_known_vector() = ToProto(p.known_vector);
    s->set_snapshot_in_progress(p.snapshot_in_progress);
    if (transport_ != nullptr) {
      if (auto protocol = transport_->protocols().Get(p.node_id); protocol.has_value() && protocol->range) {
        s->set_cluster_protocol(protocol->range->speaks);
        s->set_cluster_protocol_oldest(protocol->range->oldest);
        s->set_refused_for_version(protocol->refusal);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace adcsc::cluster
