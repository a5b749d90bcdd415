// The gRPC glue of store replication: ReplicationServer answers peers' Push (a persistent
// stream, one ack per durable batch), Pull, Snapshot and Join through the local Replicator;
// GrpcPeerTransport is the Replicator's PeerTransport over mutual-TLS channels to each peer;
// TimerScheduler is its Scheduler on a timer thread. Every message names the sender's cluster
// and node, which must match the certificate the peer presented, and every call carries the
// sender's cluster protocol range, which this node must read (protocol.h).
// Thread-safety: all classes are safe to use from any thread.
#pragma once

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "adcsc/cluster/v1/cluster.grpc.pb.h"
#include "node/cluster/link_fault.h"
#include "node/cluster/protocol.h"
#include "node/config/config.h"
#include "store/replication.h"

namespace adcsc::cluster {

// Converts between the store's types and the proto messages.
adcsc::cluster::v1::VersionVector ToProto(const store::VersionVector& v);
store::VersionVector FromProto(const adcsc::cluster::v1::VersionVector& v);

// An absl::Status as the gRPC status a service returns (same code where one maps).
grpc::Status ToGrpc(const absl::Status& s);
// A gRPC failure of a call to `peer` as an absl::Status naming the call and the peer.
absl::Status FromGrpc(const grpc::Status& s, const std::string& peer, const char* what);

// Server side: the authenticated peer's ID, after checking that the message header `from`
// names this cluster and the node whose certificate the caller presented. `self_id`, when
// given, is accepted too (operator tools on a node, with its identity).
absl::StatusOr<std::string> CheckPeerCaller(const grpc::ServerContext& context, const node::ClusterConfig& config,
                                            const adcsc::cluster::v1::PeerHeader& from,
                                            const std::string& self_id = "");

class GrpcPeerTransport;

// About how many bytes of records a Join chunk carries: large enough that per-message costs
// vanish, small enough that a few in flight keep a joining node's memory low.
inline constexpr size_t kJoinChunkBytes = 1 << 20;

class ReplicationServer final : public adcsc::cluster::v1::Replication::Service {
 public:
  // No pointer is owned; all must outlive the server. While `transport` is cut off (fault
  // injection), incoming requests are refused too, so a partition cuts both directions.
  ReplicationServer(store::Replicator* replicator, const node::ClusterConfig* config, std::string node_id,
                    const GrpcPeerTransport* transport = nullptr);

  grpc::Status Push(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<adcsc::cluster::v1::PushAck, adcsc::cluster::v1::PushBatch>* stream) override;
  grpc::Status Pull(grpc::ServerContext* context, const adcsc::cluster::v1::PullRequest* request,
                    adcsc::cluster::v1::PullResponse* reply) override;
  grpc::Status Snapshot(grpc::ServerContext* context, const adcsc::cluster::v1::SnapshotRequest* request,
                        adcsc::cluster::v1::SnapshotChunk* reply) override;
  // The whole store for an empty node, in chunks of about kJoinChunkBytes (node/cluster/bulk_join.h).
  grpc::Status Join(grpc::ServerContext* context, const adcsc::cluster::v1::JoinRequest* request,
                    grpc::ServerWriter<adcsc::cluster::v1::JoinChunk>* writer) override;

 private:
  // The authenticated peer's ID, after checking that `from` names it in this cluster.
  absl::StatusOr<std::string> Caller(const grpc::ServerContext& context,
                                     const adcsc::cluster::v1::PeerHeader& from) const;
  void Stamp(adcsc::cluster::v1::PeerHeader* header) const;

  store::Replicator* replicator_;
  const node::ClusterConfig* config_;
  std::string node_id_;
  const GrpcPeerTransport* transport_;
};

class GrpcPeerTransport final : public store::PeerTransport {
 public:
  // Opens a channel to every configured peer (connections are made lazily by gRPC).
  static absl::StatusOr<std::unique_ptr<GrpcPeerTransport>> Create(const node::ClusterConfig& config,
                                                                   std::string node_id,
                                                                   std::chrono::milliseconds request_timeout);
  ~GrpcPeerTransport() override;

  void Push(const std::string& peer, store::PushRequest request, store::ReplyCallback<store::PushAck> done) override;
  void Pull(const std::string& peer, store::PullRequest request,
            store::ReplyCallback<store::PullResponse> done) override;
  void FetchSnapshot(const std::string& peer, store::SnapshotRequest request,
                     store::ReplyCallback<store::SnapshotPage> done) override;

  // Fault injection for drills: while cut off, every request fails at once with UNAVAILABLE
  // (and a ReplicationServer given this transport refuses incoming ones). SetCutOff sets both
  // directions of the link fault; link() is what the services ask before handling a peer's
  // request (LinkFaultSwitch::AdmitIncoming).
  void SetCutOff(bool cut_off);
  bool cut_off() const;  // both directions cut
  void SetLinkFault(const LinkFault& fault);
  LinkFaultSwitch& link() const { return link_; }

  // The channel to `peer`, for the other node-to-node services (one connection per peer);
  // UNAVAILABLE while cut off (or the message is lost, see LinkFault), INVALID_ARGUMENT for an
  // unknown peer, FAILED_PRECONDITION while the peer is refused for its cluster protocol
  // (protocol.h) unless `handshake` (the Info refresh, which learns when that changed).
  absl::StatusOr<std::shared_ptr<grpc::Channel>> ChannelFor(const std::string& peer, bool handshake = false) const;

  // What this node knows of its peers' cluster protocols; the services admit each request
  // through it, and every channel's calls report the peers' answers to it.
  PeerProtocols& protocols() const { return *protocols_; }

 private:
  struct PushStream;
  struct Peer {
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<adcsc::cluster::v1::Replication::Stub> stub;
    std::shared_ptr<PushStream> push;  // the persistent Push stream, opened on first use
  };
  GrpcPeerTransport(node::ClusterConfig config, std::string node_id, std::chrono::milliseconds request_timeout);
  void Stamp(adcsc::cluster::v1::PeerHeader* header) const;
  // The stub for `peer`; UNAVAILABLE while cut off, INVALID_ARGUMENT for an unknown peer.
  absl::StatusOr<adcsc::cluster::v1::Replication::Stub*> StubFor(const std::string& peer);

  node::ClusterConfig config_;
  std::string node_id_;
  std::chrono::milliseconds request_timeout_;
  mutable std::mutex mu_;
  std::map<std::string, Peer> peers_;
  mutable LinkFaultSwitch link_;
  // Shared with the channels' interceptors, which calls in flight may keep past the transport.
  std::shared_ptr<PeerProtocols> protocols_;
};

// Runs functions after a delay on one timer thread (real time; the Replicator's Clock is the
// system clock in production).
class TimerScheduler final : public store::Scheduler {
 public:
  TimerScheduler();
  ~TimerScheduler() override;  // drops what has not run yet
  void RunAfter(int64_t delay_ms, std::function<void()> fn) override;

 private:
  void Loop();
  std::mutex mu_;
  std::condition_variable cv_;
  std::multimap<std::chrono::steady_clock::time_point, std::function<void()>> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace adcsc::cluster
