#include "node/cluster/replication_grpc.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "node/cluster/tls.h"

namespace adcsc::cluster {

namespace v1 = adcsc::cluster::v1;

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  grpc::StatusCode code = grpc::StatusCode::INTERNAL;
  switch (s.code()) {
    case absl::StatusCode::kPermissionDenied:
      code = grpc::StatusCode::PERMISSION_DENIED;
      break;
    case absl::StatusCode::kInvalidArgument:
      code = grpc::StatusCode::INVALID_ARGUMENT;
      break;
    case absl::StatusCode::kUnavailable:
      code = grpc::StatusCode::UNAVAILABLE;
      break;
    case absl::StatusCode::kFailedPrecondition:
      code = grpc::StatusCode::FAILED_PRECONDITION;
      break;
    default:
      break;
  }
  return grpc::Status(code, std::string(s.message()));
}

absl::Status FromGrpc(const grpc::Status& s, const std::string& peer, const char* what) {
  if (s.ok()) return absl::OkStatus();
  const std::string message = absl::StrCat(what, " to peer ", peer, ": ", s.error_message());
  switch (s.error_code()) {
    case grpc::StatusCode::PERMISSION_DENIED:
      return absl::PermissionDeniedError(message);
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return absl::DeadlineExceededError(message);
    case grpc::StatusCode::INVALID_ARGUMENT:
      return absl::InvalidArgumentError(message);
    default:
      return absl::UnavailableError(message);
  }
}

v1::VersionVector ToProto(const store::VersionVector& v) {
  v1::VersionVector out;
  for (const auto& [origin, seq] : v) (*out.mutable_entries())[origin] = seq;
  return out;
}

store::VersionVector FromProto(const v1::VersionVector& v) {
  store::VersionVector out;
  for (const auto& [origin, seq] : v.entries()) out[origin] = seq;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Server

ReplicationServer::ReplicationServer(store::Replicator* replicator, const node::ClusterConfig* config,
                                     std::string node_id, const GrpcPeerTransport* transport)
    : replicator_(replicator), config_(config), node_id_(std::move(node_id)), transport_(transport) {}

void ReplicationServer::Stamp(v1::PeerHeader* header) const {
  header->set_cluster_id(config_->id);
  header->set_node_id(node_id_);
}

absl::StatusOr<std::string> CheckPeerCaller(const grpc::ServerContext& context, const node::ClusterConfig& config,
                                            const v1::PeerHeader& from, const std::string& self_id) {
  auto peer = AuthenticatedPeer(context, config, self_id);
  if (!peer.ok()) return peer.status();
  if (from.cluster_id() != config.id) {
    return absl::PermissionDeniedError(
        absl::StrCat("a message for cluster \"", from.cluster_id(), "\"; this is \"", config.id, "\""));
  }
  if (from.node_id() != *peer) {
    return absl::PermissionDeniedError(
        absl::StrCat("peer ", *peer, " sent a message signed as node \"", from.node_id(), "\""));
  }
  return peer;
}

absl::StatusOr<std::string> ReplicationServer::Caller(const grpc::ServerContext& context,
                                                      const v1::PeerHeader& from) const {
  if (transport_ != nullptr) {
    if (auto admitted = transport_->link().AdmitIncoming(); !admitted.ok()) return admitted;
  }
  auto peer = CheckPeerCaller(context, *config_, from);
  if (!peer.ok() || transport_ == nullptr) return peer;
  if (auto readable = transport_->protocols().AdmitIncoming(context, *peer); !readable.ok()) return readable;
  return peer;
}

grpc::Status ReplicationServer::Push(grpc::ServerContext* context,
                                     grpc::ServerReaderWriter<v1::PushAck, v1::PushBatch>* stream) {
  v1::PushBatch batch;
  while (stream->Read(&batch)) {
    auto peer = Caller(*context, batch.from());
    if (!peer.ok()) return ToGrpc(peer.status());
    store::PushRequest request;
    request.from = *peer;
    request.mutations.assign(batch.mutations().begin(), batch.mutations().end());
    auto ack = replicator_->HandlePush(request);  // returns once the batch is durable here
    if (!ack.ok()) return ToGrpc(ack.status());
    v1::PushAck reply;
    Stamp(reply.mutable_from());
    reply.set_batch_id(batch.batch_id());
    *reply.mutable_version_vector() = ToProto(ack->version_vector);
    if (!stream->Write(reply)) break;
  }
  return grpc::Status::OK;
}

grpc::Status ReplicationServer::Pull(grpc::ServerContext* context, const v1::PullRequest* request,
                                     v1::PullResponse* reply) {
  auto peer = Caller(*context, request->from());
  if (!peer.ok()) return ToGrpc(peer.status());
  store::PullRequest pull;
  pull.from = *peer;
  pull.version_vector = FromProto(request->have());
  for (const auto& [origin, list] : request->also_held()) {
    pull.also_held[origin].assign(list.sequences().begin(), list.sequences().end());
  }
  pull.limit = request->limit();
  auto answer = replicator_->HandlePull(pull);
  if (!answer.ok()) return ToGrpc(answer.status());
  Stamp(reply->mutable_from());
  for (auto& m : answer->mutations) *reply->add_mutations() = std::move(m);
  *reply->mutable_version_vector() = ToProto(answer->version_vector);
  return grpc::Status::OK;
}

grpc::Status ReplicationServer::Snapshot(grpc::ServerContext* context, const v1::SnapshotRequest* request,
                                         v1::SnapshotChunk* reply) {
  auto peer = Caller(*context, request->from());
  if (!peer.ok()) return ToGrpc(peer.status());
  store::SnapshotRequest snap;
  snap.from = *peer;
  snap.after = {request->after_ca_config(), request->after_request_id()};
  snap.limit = request->limit();
  auto page = replicator_->HandleSnapshot(snap);
  if (!page.ok()) return ToGrpc(page.status());
  Stamp(reply->mutable_from());
  for (auto& r : page->records) *reply->add_records() = std::move(r);
  *reply->mutable_version_vector() = ToProto(page->version_vector);
  reply->set_last(page->done);
  reply->set_next_ca_config(page->next.ca_config);
  reply->set_next_request_id(page->next.request_id);
  return grpc::Status::OK;
}

grpc::Status ReplicationServer::Join(grpc::ServerContext* context, const v1::JoinRequest* request,
                                     grpc::ServerWriter<v1::JoinChunk>* writer) {
  auto peer = Caller(*context, request->from());
  if (!peer.ok()) return ToGrpc(peer.status());
  v1::JoinChunk chunk;
  auto send = [&](bool last) -> absl::Status {
    Stamp(chunk.mutable_from());
    chunk.set_last(last);
    // Blocks while the joiner's flow-control window is full: memory stays at a chunk or two.
    if (!writer->Write(chunk)) return absl::CancelledError(absl::StrCat("the joining node ", *peer, " went away"));
    chunk.Clear();
    return absl::OkStatus();
  };
  absl::Status read = replicator_->HandleJoin(
      *peer, kJoinChunkBytes,
      [&](const store::JoinHeader& header) {
        // Sent with the first batch (or alone, as the last chunk, from an empty store).
        *chunk.mutable_version_vector() = ToProto(header.version_vector);
        chunk.set_records_total(header.records);
        return absl::OkStatus();
      },
      [&](store::JoinBatch& batch) {
        for (const store::HeldMutation& m : batch.held) {
          v1::JoinHeld* held = chunk.add_held();
          held->set_origin(m.origin);
          held->set_sequence(m.sequence);
          held->set_hlc(m.hlc);
          held->set_ca_config(m.ca_config);
          held->set_request_id(m.request_id);
        }
        chunk.mutable_records()->Reserve(static_cast<int>(batch.records.size()));
        for (store::RequestRecord& r : batch.records) *chunk.add_records() = std::move(r);
        return send(/*last=*/false);
      });
  if (read.ok()) read = send(/*last=*/true);
  if (read.code() == absl::StatusCode::kResourceExhausted) {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, std::string(read.message()));
  }
  if (read.code() == absl::StatusCode::kCancelled)
    return grpc::Status(grpc::StatusCode::CANCELLED, std::string(read.message()));
  return ToGrpc(read);
}

// ---------------------------------------------------------------------------------------------
// Client transport

// One persistent Push stream to a peer. A reader thread matches acks to waiting callbacks by
// batch ID; when the stream ends, every waiting callback fails and the next Push opens a new
// stream. A stream is retired, not destroyed, when replaced, because the replacement may be
// requested from its own reader thread (inside a callback).
struct GrpcPeerTransport::PushStream {
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReaderWriter<v1::PushBatch, v1::PushAck>> stream;
  std::mutex write_mu;  // one Write at a time
  std::mutex mu;        // guards the fields below
  std::map<uint64_t, store::ReplyCallback<store::PushAck>> pending;
  uint64_t next_batch = 1;
  bool broken = false;
  std::thread reader;

  ~PushStream() {
    context.TryCancel();
    if (reader.joinable()) reader.join();
  }

  void FailAll(const absl::Status& why) {
    std::map<uint64_t, store::ReplyCallback<store::PushAck>> failed;
    {
      std::lock_guard lock(mu);
      broken = true;
      failed.swap(pending);
    }
    for (auto& [id, done] : failed) done(why);
  }

  void ReadLoop(std::string peer) {
    v1::PushAck ack;
    while (stream->Read(&ack)) {
      store::ReplyCallback<store::PushAck> done;
      {
        std::lock_guard lock(mu);
        auto it = pending.find(ack.batch_id());
        if (it == pending.end()) continue;
        done = std::move(it->second);
        pending.erase(it);
      }
      done(store::PushAck{FromProto(ack.version_vector())});
    }
    FailAll(FromGrpc(stream->Finish(), peer, "push stream"));
  }
};

GrpcPeerTransport::GrpcPeerTransport(node::ClusterConfig config, std::string node_id,
                                     std::chrono::milliseconds request_timeout)
    : config_(std::move(config)),
      node_id_(std::move(node_id)),
      request_timeout_(request_timeout),
      protocols_(std::make_shared<PeerProtocols>(node_id_, LocalProtocolRange())) {}

absl::StatusOr<std::unique_ptr<GrpcPeerTransport>> GrpcPeerTransport::Create(
    const node::ClusterConfig& config, std::string node_id, std::chrono::milliseconds request_timeout) {
  std::unique_ptr<GrpcPeerTransport> t(new GrpcPeerTransport(config, std::move(node_id), request_timeout));
  for (const node::PeerConfig& p : config.peers) {
    auto channel = MakePeerChannel(config, p, t->protocols_);
    if (!channel.ok()) return channel.status();
    Peer peer;
    peer.channel = *channel;
    peer.stub = v1::Replication::NewStub(peer.channel);
    t->peers_.emplace(p.id, std::move(peer));
  }
  return t;
}

GrpcPeerTransport::~GrpcPeerTransport() {
  std::map<std::string, Peer> peers;
  {
    std::lock_guard lock(mu_);
    peers.swap(peers_);
  }
  // PushStream destructors cancel their streams and join their readers here, outside mu_.
}

void GrpcPeerTransport::Stamp(v1::PeerHeader* header) const {
  header->set_cluster_id(config_.id);
  header->set_node_id(node_id_);
}

bool GrpcPeerTransport::cut_off() const { return link_.Get().cut_off(); }

void GrpcPeerTransport::SetCutOff(bool cut_off) {
  LinkFault fault = link_.Get();
  fault.cut_in = fault.cut_out = cut_off;
  SetLinkFault(fault);
}

void GrpcPeerTransport::SetLinkFault(const LinkFault& fault) {
  link_.Set(fault);
  if (!fault.cut_out) return;
  std::vector<std::shared_ptr<PushStream>> streams;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, p] : peers_) {
      if (p.push) streams.push_back(p.push);
    }
  }
  for (auto& s : streams) s->context.TryCancel();  // in-flight pushes fail now
}

void GrpcPeerTransport::Push(const std::string& peer, store::PushRequest request,
                             store::ReplyCallback<store::PushAck> done) {
  std::shared_ptr<PushStream> s;
  std::shared_ptr<PushStream> retired;  // released after the lock, possibly joined then
  {
    if (auto admitted = link_.AdmitOutgoing(peer); !admitted.ok()) {
      done(admitted);
      return;
    }
    if (auto readable = protocols_->AdmitOutgoing(peer); !readable.ok()) {
      done(readable);
      return;
    }
    std::lock_guard lock(mu_);
    auto it = peers_.find(peer);
    if (it == peers_.end()) {
      done(absl::InvalidArgumentError(absl::StrCat("unknown peer \"", peer, "\"")));
      return;
    }
    Peer& p = it->second;
    bool broken = true;
    if (p.push) {
      std::lock_guard stream_lock(p.push->mu);
      broken = p.push->broken;
    }
    if (broken) {
      retired = std::move(p.push);
      auto fresh = std::make_shared<PushStream>();
      fresh->stream = p.stub->Push(&fresh->context);
      PushStream* raw = fresh.get();
      fresh->reader = std::thread([raw, peer] { raw->ReadLoop(peer); });
      p.push = std::move(fresh);
    }
    s = p.push;
  }
  if (retired && retired->reader.joinable() && retired->reader.get_id() == std::this_thread::get_id()) {
    // Replaced from its own reader thread: that thread is about to finish; let it.
    retired->reader.detach();
  }
  retired.reset();

  uint64_t id = 0;
  {
    std::lock_guard lock(s->mu);
    id = s->next_batch++;
    s->pending.emplace(id, std::move(done));
  }
  v1::PushBatch batch;
  Stamp(batch.mutable_from());
  batch.set_batch_id(id);
  for (auto& m : request.mutations) *batch.add_mutations() = std::move(m);
  bool written = false;
  {
    std::lock_guard lock(s->write_mu);
    written = s->stream->Write(batch);
  }
  if (!written) {
    store::ReplyCallback<store::PushAck> failed;
    {
      std::lock_guard lock(s->mu);
      s->broken = true;
      auto it = s->pending.find(id);
      if (it != s->pending.end()) {
        failed = std::move(it->second);
        s->pending.erase(it);
      }
    }
    if (failed) failed(absl::UnavailableError(absl::StrCat("push to peer ", peer, ": the stream is closed")));
  }
}

absl::StatusOr<v1::Replication::Stub*> GrpcPeerTransport::StubFor(const std::string& peer) {
  if (auto admitted = link_.AdmitOutgoing(peer); !admitted.ok()) return admitted;
  if (auto readable = protocols_->AdmitOutgoing(peer); !readable.ok()) return readable;
  std::lock_guard lock(mu_);
  auto it = peers_.find(peer);
  if (it == peers_.end()) return absl::InvalidArgumentError(absl::StrCat("unknown peer \"", peer, "\""));
  return it->second.stub.get();
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> GrpcPeerTransport::ChannelFor(const std::string& peer,
                                                                             bool handshake) const {
  if (auto admitted = link_.AdmitOutgoing(peer); !admitted.ok()) return admitted;
  if (!handshake) {
    if (auto readable = protocols_->AdmitOutgoing(peer); !readable.ok()) return readable;
  }
  std::lock_guard lock(mu_);
  auto it = peers_.find(peer);
  if (it == peers_.end()) return absl::InvalidArgumentError(absl::StrCat("unknown peer \"", peer, "\""));
  return it->second.channel;
}

void GrpcPeerTransport::Pull(const std::string& peer, store::PullRequest request,
                             store::ReplyCallback<store::PullResponse> done) {
  auto stub = StubFor(peer);
  if (!stub.ok()) {
    done(stub.status());
    return;
  }
  struct Call {
    grpc::ClientContext context;
    v1::PullRequest request;
    v1::PullResponse reply;
  };
  auto call = std::make_shared<Call>();
  call->context.set_deadline(std::chrono::system_clock::now() + request_timeout_);
  Stamp(call->request.mutable_from());
  *call->request.mutable_have() = ToProto(request.version_vector);
  for (const auto& [origin, sequences] : request.also_held) {
    auto& list = (*call->request.mutable_also_held())[origin];
    for (uint64_t seq : sequences) list.add_sequences(seq);
  }
  call->request.set_limit(static_cast<uint32_t>(request.limit));
  (*stub)->async()->Pull(&call->context, &call->request, &call->reply,
                         [call, peer, done = std::move(done)](grpc::Status s) {
                           if (!s.ok()) {
                             done(FromGrpc(s, peer, "pull"));
                             return;
                           }
                           store::PullResponse r;
                           r.mutations.assign(call->reply.mutations().begin(), call->reply.mutations().end());
                           r.version_vector = FromProto(call->reply.version_vector());
                           done(std::move(r));
                         });
}

void GrpcPeerTransport::FetchSnapshot(const std::string& peer, store::SnapshotRequest request,
                                      store::ReplyCallback<store::SnapshotPage> done) {
  auto stub = StubFor(peer);
  if (!stub.ok()) {
    done(stub.status());
    return;
  }
  struct Call {
    grpc::ClientContext context;
    v1::SnapshotRequest request;
    v1::SnapshotChunk reply;
  };
  auto call = std::make_shared<Call>();
  call->context.set_deadline(std::chrono::system_clock::now() + request_timeout_);
  Stamp(call->request.mutable_from());
  call->request.set_after_ca_config(request.after.ca_config);
  call->request.set_after_request_id(request.after.request_id);
  call->request.set_limit(static_cast<uint32_t>(request.limit));
  (*stub)->async()->Snapshot(&call->context, &call->request, &call->reply,
                             [call, peer, done = std::move(done)](grpc::Status s) {
                               if (!s.ok()) {
                                 done(FromGrpc(s, peer, "snapshot"));
                                 return;
                               }
                               store::SnapshotPage page;
                               page.records.assign(call->reply.records().begin(), call->reply.records().end());
                               page.version_vector = FromProto(call->reply.version_vector());
                               page.next = {call->reply.next_ca_config(), call->reply.next_request_id()};
                               page.done = call->reply.last();
                               done(std::move(page));
                             });
}

// ---------------------------------------------------------------------------------------------
// Scheduler

TimerScheduler::TimerScheduler() : thread_([this] { Loop(); }) {}

TimerScheduler::~TimerScheduler() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void TimerScheduler::RunAfter(int64_t delay_ms, std::function<void()> fn) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    queue_.emplace(std::chrono::steady_clock::now() + std::chrono::milliseconds(delay_ms), std::move(fn));
  }
  cv_.notify_all();
}

void TimerScheduler::Loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (queue_.empty()) {
      cv_.wait(lock);
      continue;
    }
    const auto when = queue_.begin()->first;
    if (std::chrono::steady_clock::now() < when) {
      cv_.wait_until(lock, when);
      continue;
    }
    auto fn = std::move(queue_.begin()->second);
    queue_.erase(queue_.begin());
    lock.unlock();
    fn();
    lock.lock();
  }
}

}  // namespace adcsc::cluster
