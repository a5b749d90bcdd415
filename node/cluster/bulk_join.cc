#include "node/cluster/bulk_join.h"

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "adcsc/cluster/v1/cluster.grpc.pb.h"
#include "node/api/crash_point.h"
#include "node/cluster/replication_grpc.h"
#include "node/cluster/tls.h"
#include "store/bulk_join.h"
#include "store/clock.h"

namespace adcsc::cluster {
namespace {

namespace v1 = adcsc::cluster::v1;
using Clock = std::chrono::steady_clock;

// A chunk parsed into an arena of its own: its hundreds of strings take a few large blocks,
// freed at once, instead of an allocation (and a free on another thread) each.
struct ArenaChunk {
  static google::protobuf::ArenaOptions Options() {
    google::protobuf::ArenaOptions o;
    o.start_block_size = 64 << 10;
    o.max_block_size = 1 << 20;
    return o;
  }
  ArenaChunk() : arena(Options()), chunk(google::protobuf::Arena::CreateMessage<v1::JoinChunk>(&arena)) {}
  google::protobuf::Arena arena;
  v1::JoinChunk* chunk;  // on `arena`
};

// The stream of one Join call, read on a thread of its own: parsing a chunk (protobuf) runs
// there while the caller writes the previous one into SQLite. At most `max_queued` parsed
// chunks wait; beyond that the reader stops reading, and gRPC's flow control stops the sender.
class ChunkReader {
 public:
  ChunkReader(v1::Replication::Stub& stub, const v1::JoinRequest& request, size_t max_queued)
      : max_queued_(std::max<size_t>(max_queued, 1)) {
    stream_ = stub.Join(&context_, request);
    thread_ = std::thread([this] { Run(); });
  }
  ~ChunkReader() {
    Cancel();
    thread_.join();
  }

  // The next chunk; nullptr when the stream ended (then status() says how) or nothing came
  // within `idle` (then the call is cancelled and status() says so too).
  std::unique_ptr<ArenaChunk> Next(std::chrono::milliseconds idle) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, idle, [this] { return !queue_.empty() || ended_; })) {
      timed_out_ = idle;
      lock.unlock();
      Cancel();
      return nullptr;
    }
    if (queue_.empty()) return nullptr;
    std::unique_ptr<ArenaChunk> chunk = std::move(queue_.front());
    queue_.pop_front();
    cv_.notify_all();
    return chunk;
  }

  // How the stream ended: waits for the reader thread to see the end.
  grpc::Status status() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return ended_; });
    if (timed_out_.has_value()) {
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                          absl::StrCat("nothing received for ", timed_out_->count(), " ms"));
    }
    return final_;
  }

  // How long the reader waited for room (the writer was behind), so far.
  double full_seconds() {
    std::lock_guard lock(mu_);
    return full_seconds_;
  }

  void Cancel() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    context_.TryCancel();
    cv_.notify_all();
  }

 private:
  void Run() {
    while (true) {
      auto chunk = std::make_unique<ArenaChunk>();
      if (!stream_->Read(chunk->chunk)) break;
      std::unique_lock lock(mu_);
      const auto waiting = Clock::now();
      cv_.wait(lock, [this] { return queue_.size() < max_queued_ || stopping_; });
      full_seconds_ += std::chrono::duration<double>(Clock::now() - waiting).count();
      if (stopping_) break;
      queue_.push_back(std::move(chunk));
      cv_.notify_all();
    }
    // After a cancel Finish returns at once (CANCELLED); otherwise every message has been read.
    grpc::Status status = stream_->Finish();
    std::lock_guard lock(mu_);
    final_ = std::move(status);
    ended_ = true;
    cv_.notify_all();
  }

  const size_t max_queued_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::JoinChunk>> stream_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<ArenaChunk>> queue_;       // guarded by mu_
  bool stopping_ = false;                               // guarded by mu_
  bool ended_ = false;                                  // guarded by mu_
  std::optional<std::chrono::milliseconds> timed_out_;  // guarded by mu_; how long Next waited
  grpc::Status final_;                                  // guarded by mu_
  double full_seconds_ = 0;                             // guarded by mu_
  std::thread thread_;                                  // last: started once the rest exists
};

enum class Attempt { kJoined, kNothing, kFailed, kUnimplemented };

struct AttemptState {
  bool store_removed = false;  // the empty store file is gone (a join began writing)
  bool began = false;          // this attempt began writing a join file
  int64_t records = 0;
  int64_t held = 0;
  double index_seconds = 0;
  double sync_seconds = 0;
  double starved_seconds = 0;  // the writer waited for chunks
  double full_seconds = 0;     // the reader waited for the writer
  std::string why;             // for kFailed
};

Attempt JoinFrom(const node::Config& config, const node::PeerConfig& peer, const store::StoreOptions& store,
                 const BulkJoinOptions& options, AttemptState& state) {
  // Its own channel (one connection for this stream alone), whose flow-control window is fixed:
  // gRPC's bandwidth-delay probing would otherwise let the transport take in tens of MiB
  // ahead of a writer that is slower than the network.
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      MakePeerChannel(config.cluster, peer, nullptr, [&options](grpc::ChannelArguments& args) {
        args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
        args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, static_cast<int>(options.window_bytes));
        args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      });
  if (!channel.ok()) {
    state.why = std::string(channel.status().message());
    return Attempt::kFailed;
  }
  std::unique_ptr<v1::Replication::Stub> stub = v1::Replication::NewStub(*channel);
  v1::JoinRequest request;
  request.mutable_from()->set_cluster_id(config.cluster.id);
  request.mutable_from()->set_node_id(config.node_id);
  ChunkReader reader(*stub, request, options.max_queued_chunks);

  std::unique_ptr<store::JoinWriter> writer;
  store::JoinHeader header;
  bool first = true;
  bool last = false;
  auto next_progress = Clock::now() + options.progress_every;
  auto fail = [&](const absl::Status& s) {
    reader.Cancel();
    state.why = std::string(s.message());
    return Attempt::kFailed;
  };
  while (!last) {
    const auto waiting = Clock::now();
    const std::chrono::milliseconds patience = first ? options.first_chunk_timeout : options.idle_timeout;
    std::unique_ptr<ArenaChunk> parsed = reader.Next(patience);
    state.starved_seconds += std::chrono::duration<double>(Clock::now() - waiting).count();
    if (parsed == nullptr) break;
    const v1::JoinChunk* chunk = parsed->chunk;
    if (first) {
      first = false;
      header.version_vector = FromProto(chunk->version_vector());
      header.records = chunk->records_total();
      if (header.records == 0 && header.version_vector.empty() && chunk->held().empty() && chunk->last()) {
        return Attempt::kNothing;
      }
      // From here on the join replaces the store, which holds nothing.
      if (!state.store_removed) {
        if (absl::Status s = store::RemoveEmptyStore(store.path); !s.ok()) return fail(s);
        state.store_removed = true;
      }
      store::JoinWriterOptions wo;
      wo.store_path = store.path;
      wo.node_id = config.node_id;
      wo.now_ms = SystemClock::Default()->NowUnixMillis();
      wo.fsync = options.fsync;
      wo.cache_bytes = options.cache_bytes;
      wo.sort_threads = options.sort_threads;
      absl::StatusOr<std::unique_ptr<store::JoinWriter>> created = store::JoinWriter::Create(wo);
      if (!created.ok()) return fail(created.status());
      writer = std::move(*created);
      state.began = true;
    }
    for (const v1::JoinHeld& h : chunk->held()) {
      store::HeldMutation m{h.origin(), h.sequence(), h.hlc(), h.ca_config(), h.request_id()};
      if (absl::Status s = writer->AddHeld(m); !s.ok()) return fail(s);
      ++state.held;
    }
    for (const store::RequestRecord& r : chunk->records()) {
      if (absl::Status s = writer->Add(r); !s.ok()) return fail(s);
    }
    state.records = writer->records();
    last = chunk->last();
    // For the tests of a join cut short: a node killed with half the records written.
    if (header.records > 0 && state.records * 2 >= header.records && !last) node::CrashPoint("mid-join");
    if (options.progress && Clock::now() >= next_progress) {
      options.progress(peer.id, state.records, header.records);
      next_progress = Clock::now() + options.progress_every;
    }
  }
  const grpc::Status ended = reader.status();
  if (!ended.ok()) {
    if (ended.error_code() == grpc::StatusCode::UNIMPLEMENTED) return Attempt::kUnimplemented;
    state.why = absl::StrCat(FromGrpc(ended, peer.id, "join").message());
    return Attempt::kFailed;
  }
  if (!last || writer == nullptr) {
    state.why = "the stream ended before its last chunk";
    return Attempt::kFailed;
  }
  if (absl::Status s = writer->Finish(header); !s.ok()) return fail(s);
  state.index_seconds = writer->index_seconds();
  state.full_seconds = reader.full_seconds();
  state.sync_seconds = writer->sync_seconds();
  if (absl::Status s = writer->Install(); !s.ok()) return fail(s);
  return Attempt::kJoined;
}

}  // namespace

const char* OutcomeName(BulkJoinResult::Outcome outcome) {
  switch (outcome) {
    case BulkJoinResult::Outcome::kNotEmpty:
      return "not_empty";
    case BulkJoinResult::Outcome::kJoined:
      return "joined";
    case BulkJoinResult::Outcome::kNothing:
      return "nothing_to_join";
    case BulkJoinResult::Outcome::kNoPeer:
      return "no_peer";
  }
  return "unknown";
}

absl::StatusOr<BulkJoinResult> JoinIfEmpty(const node::Config& config, const store::StoreOptions& store,
                                           const BulkJoinOptions& options) {
  const auto start = Clock::now();
  BulkJoinResult result;
  auto done = [&](BulkJoinResult::Outcome outcome) {
    result.outcome = outcome;
    result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return result;
  };
  // What a join cut short left goes first, whether or not this start joins.
  if (absl::Status s = store::DiscardJoinFile(store.path); !s.ok()) return s;
  absl::StatusOr<bool> empty = store::StoreIsEmpty(store);
  if (!empty.ok()) return empty.status();
  if (!*empty) return done(BulkJoinResult::Outcome::kNotEmpty);
  if (config.cluster.peers.empty()) return done(BulkJoinResult::Outcome::kNothing);
  size_t answered_empty = 0;
  bool store_removed = false;
  for (const node::PeerConfig& peer : config.cluster.peers) {
    AttemptState state;
    state.store_removed = store_removed;
    const Attempt attempt = JoinFrom(config, peer, store, options, state);
    store_removed = state.store_removed;
    switch (attempt) {
      case Attempt::kJoined:
        result.peer = peer.id;
        result.records = state.records;
        result.held = state.held;
        result.index_seconds = state.index_seconds;
        result.sync_seconds = state.sync_seconds;
        result.starved_seconds = state.starved_seconds;
        result.full_seconds = state.full_seconds;
        return done(BulkJoinResult::Outcome::kJoined);
      case Attempt::kNothing:
        ++answered_empty;
        break;
      case Attempt::kUnimplemented:
        result.peer_without_join = true;
        result.failures.push_back(absl::StrCat(peer.id, ": has no bulk join (an older adcsc)"));
        break;
      case Attempt::kFailed:
        result.failures.push_back(absl::StrCat(peer.id, ": ", state.why));
        result.abandoned = result.abandoned || state.began;
        break;
    }
  }
  return done(answered_empty > 0 && result.failures.empty() ? BulkJoinResult::Outcome::kNothing
                                                            : BulkJoinResult::Outcome::kNoPeer);
}

}  // namespace adcsc::cluster
