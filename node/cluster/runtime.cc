#include "node/cluster/runtime.h"

#include <algorithm>
#include <future>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "node/cluster/tls.h"
#include "store/clock.h"

namespace adcsc::cluster {

absl::StatusOr<std::unique_ptr<ClusterRuntime>> ClusterRuntime::Start(const node::Config& config,
                                                                      store::RequestStore* store) {
  auto rt = Create(config, store);
  if (!rt.ok()) return rt.status();
  if (auto s = (*rt)->Serve(nullptr, nullptr); !s.ok()) return s;
  return rt;
}

absl::StatusOr<std::unique_ptr<ClusterRuntime>> ClusterRuntime::Create(const node::Config& config,
                                                                       store::RequestStore* store) {
  std::unique_ptr<ClusterRuntime> rt(new ClusterRuntime());
  rt->store_ = store;
  rt->node_config_ = config;
  rt->config_ = config.cluster;
  const node::ClusterConfig& c = rt->config_;
  auto transport = GrpcPeerTransport::Create(c, config.node_id, std::chrono::milliseconds(5000));
  if (!transport.ok()) return transport.status();
  rt->transport_ = std::move(*transport);
  rt->scheduler_ = std::make_unique<TimerScheduler>();
  store::ReplicatorOptions o;
  for (const node::PeerConfig& p : c.peers) o.peers.push_back(p.id);
  o.write_quorum = static_cast<size_t>(c.write_quorum);
  o.on_quorum_loss = c.on_quorum_loss == "refuse" ? store::QuorumLossPolicy::kRefuse : store::QuorumLossPolicy::kServe;
  o.quorum_timeout_ms = c.quorum_timeout.count();
  o.anti_entropy_interval_ms = c.anti_entropy_interval.count();
  auto replicator =
      store::Replicator::Create(store, rt->transport_.get(), rt->scheduler_.get(), SystemClock::Default(), o);
  if (!replicator.ok()) return replicator.status();
  rt->replicator_ = std::move(*replicator);
  // A forwarded retrieve includes the peer's CA call: bound it by the CA's own timeouts.
  std::chrono::milliseconds forward_timeout = c.lookup_timeout + std::chrono::milliseconds(10'000);
  if (config.ca.backend == "icpr") {
    forward_timeout = c.lookup_timeout + config.ca.icpr.connect_timeout + config.ca.icpr.call_timeout;
  }
  rt->directory_ =
      std::make_unique<PeerDirectory>(rt->node_config_, rt->transport_.get(), c.lookup_timeout, forward_timeout);
  return rt;
}

absl::Status ClusterRuntime::Serve(node::ApiService* api, ca::OutageSwitch* ca_switch) {
  if (server_ != nullptr) return absl::FailedPreconditionError("the cluster runtime is already serving");
  const node::ClusterConfig& c = config_;
  service_ = std::make_unique<ReplicationServer>(replicator_.get(), &config_, node_config_.node_id, transport_.get());
  peer_service_ =
      std::make_unique<PeerService>(&node_config_, store_, replicator_.get(), transport_.get(), api, ca_switch);
  auto credentials = MakeServerCredentials(c);
  if (!credentials.ok()) return credentials.status();
  const std::string address = c.listen_address.find(':') != std::string::npos
                                  ? absl::StrCat("[", c.listen_address, "]:", c.listen_port)
                                  : absl::StrCat(c.listen_address, ":", c.listen_port);
  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(kPeerMaxMessageBytes);
  // gRPC sets SO_REUSEPORT by default, which lets a second process bind the same port and take
  // a share of the peers' connections. One port, one node: a second bind fails loudly below.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(address, *credentials, &port_);
  builder.RegisterService(service_.get());
  builder.RegisterService(peer_service_.get());
  // Every answer says which cluster protocol this node speaks (protocol.h).
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(PeerProtocols::ServerInterceptor(transport_->protocols().self()));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cluster.listen: cannot listen on ", address, " (in use, or not an address of this host?)"));
  }
  replicator_->Start();
  refresher_ = std::thread([this] { RefreshLoop(); });
  return absl::OkStatus();
}

absl::Status ClusterRuntime::AdoptOwnSequenceFromPeers(std::chrono::milliseconds wait) {
  absl::StatusOr<bool> pending = store_->RebuildFromPeersPending();
  if (!pending.ok()) return pending.status();
  if (!*pending) return absl::OkStatus();
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    directory_->Refresh();
    std::vector<std::string> silent;
    uint64_t highest = 0;
    for (const PeerView& p : directory_->Peers()) {
      if (!p.has_vector) {
        silent.push_back(p.node_id);
        continue;
      }
      auto it = p.version_vector.find(node_config_.node_id);
      if (it != p.version_vector.end()) highest = std::max(highest, it->second);
    }
    if (silent.empty()) return store_->AdoptOwnSequence(highest);
    if (std::chrono::steady_clock::now() >= deadline) {
      return absl::UnavailableError(
          absl::StrCat("rebuilding this node's store from its peers needs an answer from every peer, and ",
                       absl::StrJoin(silent, ", "), " did not answer within ", wait.count(),
                       " ms; start the node again once they run (the rebuild stays pending in the data directory)"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

absl::Status ClusterRuntime::Describe(adcsc::cluster::v1::NodeInfo* info, bool include_activity) const {
  if (peer_service_ == nullptr) return absl::FailedPreconditionError("the cluster runtime is not serving yet");
  return peer_service_->Describe(info, include_activity);
}

void ClusterRuntime::RefreshLoop() {
  std::unique_lock lock(refresh_mu_);
  while (!stopping_) {
    lock.unlock();
    directory_->Refresh();
    lock.lock();
    refresh_cv_.wait_for(lock, kPeerRefreshInterval, [this] { return stopping_; });
  }
}

ClusterRuntime::~ClusterRuntime() {
  {
    std::lock_guard lock(refresh_mu_);
    stopping_ = true;
  }
  refresh_cv_.notify_all();
  if (refresher_.joinable()) refresher_.join();
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  server_.reset();
  replicator_.reset();  // waiting writes complete with CANCELLED
  scheduler_.reset();
  directory_.reset();
  transport_.reset();
}

absl::Status ClusterRuntime::Replicate(const store::WriteResult& write) {
  auto done = std::make_shared<std::promise<absl::Status>>();
  auto result = done->get_future();
  replicator_->Replicate(write, [done](absl::StatusOr<store::ReplicationOutcome> outcome) {
    done->set_value(outcome.ok() ? absl::OkStatus() : outcome.status());
  });
  return result.get();
}

absl::StatusOr<store::ReplicatorStatus> ClusterRuntime::Status() const { return replicator_->Status(); }

}  // namespace adcsc::cluster
