#include "node/cluster/fault_client.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "adcsc/cluster/v1/cluster.grpc.pb.h"
#include "node/cluster/tls.h"

namespace adcsc::cluster {

node::PeerConfig SelfAsPeer(const node::Config& config) {
  const auto& c = config.cluster;
  std::string host = c.listen_address == "0.0.0.0" ? "127.0.0.1" : c.listen_address == "::" ? "::1" : c.listen_address;
  if (host.find(':') != std::string::npos) host = absl::StrCat("[", host, "]");
  return {config.node_id, absl::StrCat(host, ":", c.listen_port)};
}

absl::StatusOr<v1::FaultState> SetNodeFault(const node::Config& config, const FaultChange& change) {
  if (!config.cluster.enabled) {
    return absl::FailedPreconditionError(
        absl::StrCat(config.source.string(), " has no [cluster] section: fault injection is for clustered nodes"));
  }
  const node::PeerConfig self = SelfAsPeer(config);
  auto channel = MakePeerChannel(config.cluster, self);
  if (!channel.ok()) return channel.status();
  auto stub = v1::Peer::NewStub(*channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  v1::FaultRequest request;
  request.mutable_from()->set_cluster_id(config.cluster.id);
  request.mutable_from()->set_node_id(config.node_id);
  if (change.cut_off.has_value()) request.set_cut_off(*change.cut_off);
  if (change.ca_outage.has_value()) request.set_ca_outage(*change.ca_outage);
  if (change.link.has_value()) *request.mutable_link() = *change.link;
  if (change.disk.has_value()) *request.mutable_disk() = *change.disk;
  v1::FaultState state;
  grpc::Status s = stub->SetFault(&ctx, request, &state);
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                        absl::StrCat("node ", self.id, " (", self.address, "): ", s.error_message()));
  }
  return state;
}

}  // namespace adcsc::cluster
