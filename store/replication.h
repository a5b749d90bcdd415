// Replicator: pushes this node's new mutations to its peers and waits for a write quorum,
// and runs anti-entropy (pull by version vector; snapshot pages for a node far behind). It
// never touches sockets: the peer transport, the timer and time are injected interfaces, so
// a simulation drives it deterministically.
//
// Thread-safety: public methods may be called from any thread, and transport/scheduler
// callbacks may arrive on any thread (or inside the call that started them). One internal
// mutex guards the state; it is never held while calling the store, the transport, the
// scheduler or a completion callback.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "store/clock.h"
#include "store/request_store.h"

namespace adcsc::store {

// Messages between replicators. The gRPC glue maps each to a proto message one to one.
struct PushRequest {
  std::string from;  // sender's node id
  std::vector<adcsc::store::v1::Mutation> mutations;
};
// Sent only after the pushed batch is durable on the receiver.
struct PushAck {
  VersionVector version_vector;  // the receiver's, after applying the batch
};
struct PullRequest {
  std::string from;
  VersionVector version_vector;  // what the puller already has
  HeldSequences also_held;       // and what it holds beyond the vector
  size_t limit = 0;              // most mutations wanted
};
struct PullResponse {
  std::vector<adcsc::store::v1::Mutation> mutations;
  VersionVector version_vector;  // the responder's
};
struct SnapshotRequest {
  std::string from;
  SnapshotCursor after;
  size_t limit = 0;  // most records wanted
};

template <typename T>
using ReplyCallback = std::function<void(absl::StatusOr<T>)>;

// Sends one request to a peer and reports its answer. `done` is called at most once, with
// the answer or an error, on any thread, possibly before the call returns. It may also never
// be called (a lost message): the Replicator keeps its own Clock-based timeouts, so an
// implementation need not guarantee a reply. A gRPC implementation calls the peer's
// Replicator::Handle* through a unary RPC (or a message on a stream) per request.
class PeerTransport {
 public:
  virtual ~PeerTransport() = default;
  virtual void Push(const std::string& peer, PushRequest request, ReplyCallback<PushAck> done) = 0;
  virtual void Pull(const std::string& peer, PullRequest request, ReplyCallback<PullResponse> done) = 0;
  virtual void FetchSnapshot(const std::string& peer, SnapshotRequest request, ReplyCallback<SnapshotPage> done) = 0;
};

// Runs functions later. Production: an asio timer; tests: a queue fired by a fake clock.
class Scheduler {
 public:
  virtual ~Scheduler() = default;
  // Runs `fn` once, `delay_ms` of monotonic Clock time from now, on any thread.
  virtual void RunAfter(int64_t delay_ms, std::function<void()> fn) = 0;
};

// What a write does when its quorum does not answer within quorum_timeout_ms.
enum class QuorumLossPolicy {
  kServe,   // succeed; the write counts as under-replicated (anti-entropy catches up later)
  kRefuse,  // fail with UNAVAILABLE naming the peers that did not answer
};

inline constexpr int64_t kDefaultQuorumTimeoutMs = 2000;
inline constexpr int64_t kDefaultAntiEntropyIntervalMs = 1000;
inline constexpr int64_t kDefaultPeerRequestTimeoutMs = 5000;
inline constexpr size_t kDefaultPullBatchMutations = 512;
inline constexpr size_t kDefaultSnapshotPageRecords = 512;
inline constexpr uint64_t kDefaultSnapshotThresholdMutations = 10000;
// A pull lists at most this many held-beyond-a-gap sequences per origin.
inline constexpr size_t kMaxHeldSequencesPerOrigin = 1024;

struct ReplicatorOptions {
  // The other configured nodes (static membership). Must not contain the store's node id.
  std::vector<std::string> peers;
  // Nodes (self included) that must hold a write before it is acknowledged. 0: a majority
  // of the configured nodes, (peers.size() + 1) / 2 + 1.
  size_t write_quorum = 0;
  QuorumLossPolicy on_quorum_loss = QuorumLossPolicy::kServe;
  int64_t quorum_timeout_ms = kDefaultQuorumTimeoutMs;
  int64_t anti_entropy_interval_ms = kDefaultAntiEntropyIntervalMs;
  // An anti-entropy request unanswered for this long is abandoned and sent again.
  int64_t peer_request_timeout_ms = kDefaultPeerRequestTimeoutMs;
  size_t pull_batch_mutations = kDefaultPullBatchMutations;
  size_t snapshot_page_records = kDefaultSnapshotPageRecords;
  // When a peer's vector is ahead of ours by more than this many mutations, copy its
  // records with snapshot pages instead of replaying its log.
  uint64_t snapshot_threshold_mutations = kDefaultSnapshotThresholdMutations;
  // Every this often (Clock ms, checked each anti-entropy round) the mutation log is
  // compacted up to what this node and every peer hold (RequestStore::CompactLog), at most
  // compact_log_batch rows a time; 0 never. A peer that has never answered holds nothing, so
  // it keeps the whole log; one that is gone for good must be removed from the peers.
  int64_t compact_log_every_ms = 60'000;
  size_t compact_log_batch = 10'000;
};

// How a replicated write ended (when it did not fail).
struct ReplicationOutcome {
  bool quorum_reached = false;        // false: served under-replicated by policy
  std::vector<std::string> acked_by;  // peers that hold it durably, sorted
};

struct PeerStatus {
  std::string node_id;
  int64_t last_ack_ms = 0;            // wall Clock time of the last answer (for people); 0: never
  int64_t since_last_ack_ms = -1;     // monotonic ms since that answer (for timeouts); -1: never
  uint64_t lag_mutations = 0;         // how many of our mutations its last known vector lacks
  int64_t lag_ms = 0;                 // how long the oldest of them has waited (Clock ms, from
                                      // its record's last update); 0 when none
  VersionVector known_vector;         // its vector as last reported
  bool snapshot_in_progress = false;  // we are copying its records
};

struct ReplicatorStatus {
  uint64_t quorum_writes = 0;            // acknowledged by a write quorum
  uint64_t under_replicated_writes = 0;  // served without a quorum (policy serve)
  uint64_t refused_writes = 0;           // failed without a quorum (policy refuse)
  uint64_t mutations_pulled = 0;         // new mutations applied from pulls
  uint64_t snapshots_completed = 0;
  uint64_t mutations_compacted = 0;  // log rows every node held, deleted
  std::vector<PeerStatus> peers;
};

class Replicator {
 public:
  using WriteDone = std::function<void(absl::StatusOr<ReplicationOutcome>)>;

  // None of the pointers is owned; all must outlive the Replicator, and the store must stay
  // open until the transport and scheduler will call no more callbacks it handed them
  // (callbacks arriving after destruction are ignored, but may still be running).
  static absl::StatusOr<std::unique_ptr<Replicator>> Create(RequestStore* store, PeerTransport* transport,
                                                            Scheduler* scheduler, const Clock* clock,
                                                            ReplicatorOptions options);
  // Writes still waiting for their quorum complete with CANCELLED.
  ~Replicator();
  Replicator(const Replicator&) = delete;
  Replicator& operator=(const Replicator&) = delete;

  // Starts the anti-entropy timer (every anti_entropy_interval_ms).
  void Start();

  // Pushes a local write's mutation to every peer; `done` runs once a write quorum holds it
  // durably (counting this node, where it already is), or at quorum_timeout_ms per the
  // policy — under kServe sooner, as soon as failed pushes make the quorum unreachable. A write that changed nothing
  // completes at once with quorum_reached = true.
  void Replicate(const WriteResult& write, WriteDone done);

  // Server side, called by the transport when a peer's request arrives.
  absl::StatusOr<PushAck> HandlePush(const PushRequest& request);
  absl::StatusOr<PullResponse> HandlePull(const PullRequest& request);
  absl::StatusOr<SnapshotPage> HandleSnapshot(const SnapshotRequest& request);
  // A bulk join (RequestStore::ReadForJoin) for the empty node `from`. One at a time: a
  // second join while one is served is refused (RESOURCE_EXHAUSTED; the joiner tries another
  // peer), as each holds a read connection and a read transaction for its whole length.
  absl::Status HandleJoin(const std::string& from, size_t batch_bytes,
                          absl::FunctionRef<absl::Status(const JoinHeader&)> on_header,
                          absl::FunctionRef<absl::Status(JoinBatch&)> on_batch);

  // One anti-entropy round now (the timer calls this too): a pull or the next snapshot page
  // from every peer without a live request outstanding.
  void RunAntiEntropyRound();

  absl::StatusOr<ReplicatorStatus> Status() const;
  size_t write_quorum() const;

 private:
  class Core;
  explicit Replicator(std::shared_ptr<Core> core);
  // Shared with callbacks through weak pointers, so late callbacks find it gone.
  std::shared_ptr<Core> core_;
};

}  // namespace adcsc::store
