#include "store/replication.h"

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace adcsc::store {
namespace {

using adcsc::store::v1::Mutation;

// How many mutations `theirs` holds that `ours` lacks, ignoring `skip` (our own origin:
// no peer can be ahead of us there, and counting it would only reflect stale reports).
uint64_t Behind(const VersionVector& ours, const VersionVector& theirs, const std::string& skip) {
  uint64_t total = 0;
  for (const auto& [origin, sequence] : theirs) {
    if (origin == skip) continue;
    auto it = ours.find(origin);
    const uint64_t have = it == ours.end() ? 0 : it->second;
    if (sequence > have) total += sequence - have;
  }
  return total;
}

void MaxInto(VersionVector& into, const VersionVector& from) {
  for (const auto& [origin, sequence] : from) {
    uint64_t& slot = into[origin];
    slot = std::max(slot, sequence);
  }
}

}  // namespace

// Pushes to one peer that may be unanswered at once, and the most mutations one carries.
constexpr size_t kMaxPushesInFlight = 2;
constexpr size_t kMaxPushMutations = 256;
// A push that failed at the transport is sent again this much later, while its writes wait
// for their quorum and the peer has not been failing for a whole quorum timeout.
constexpr int64_t kPushRetryDelayMs = 100;

class Replicator::Core : public std::enable_shared_from_this<Replicator::Core> {
 public:
  Core(RequestStore* store, PeerTransport* transport, Scheduler* scheduler, const Clock* clock,
       ReplicatorOptions options, size_t quorum)
      : store_(store),
        transport_(transport),
        scheduler_(scheduler),
        clock_(clock),
        options_(std::move(options)),
        quorum_(quorum) {
    for (const std::string& peer : options_.peers) peers_[peer].node_id = peer;
  }

  size_t quorum() const { return quorum_; }
  const std::string& self() const { return store_->node_id(); }

  void Shutdown() {
    std::vector<WriteDone> cancelled;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopped_ = true;
      for (auto& [sequence, pending] : pending_) cancelled.push_back(std::move(pending.done));
      pending_.clear();
    }
    for (WriteDone& done : cancelled) {
      done(absl::CancelledError("replicator shut down before the write reached its quorum"));
    }
    // The store goes once the Replicator has: no callback may be using it then.
    std::unique_lock<std::mutex> lock(gate_mu_);
    gate_closed_ = true;
    gate_cv_.wait(lock, [this] { return gate_active_ == 0; });
  }

  // Callbacks of the transport and the scheduler run on their own threads and can come after
  // the Replicator is gone (a call still connecting when the node stops), but the store they
  // use does not outlive it. Each runs inside an Entry: none starts once Shutdown began, and
  // Shutdown waits for those running.
  class Entry {
   public:
    explicit Entry(Core* core) : core_(core) {
      std::lock_guard<std::mutex> lock(core->gate_mu_);
      if (core->gate_closed_) {
        core_ = nullptr;
      } else {
        ++core->gate_active_;
      }
    }
    ~Entry() {
      if (core_ == nullptr) return;
      std::lock_guard<std::mutex> lock(core_->gate_mu_);
      if (--core_->gate_active_ == 0) core_->gate_cv_.notify_all();
    }
    Entry(const Entry&) = delete;
    Entry& operator=(const Entry&) = delete;
    explicit operator bool() const { return core_ != nullptr; }

   private:
    Core* core_;
  };

  void ScheduleTick() {
    std::weak_ptr<Core> weak = weak_from_this();
    scheduler_->RunAfter(options_.anti_entropy_interval_ms, [weak] {
      std::shared_ptr<Core> core = weak.lock();
      if (core == nullptr || core->Stopped()) return;
      Entry entry(core.get());
      if (!entry) return;
      core->AntiEntropyRound();
      core->ScheduleTick();
    });
  }

  bool Stopped() {
    std::lock_guard<std::mutex> lock(mu_);
    return stopped_;
  }

  void Replicate(const WriteResult& write, WriteDone done) {
    if (!write.changed || quorum_ <= 1) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (write.changed) ++status_.quorum_writes;
      }
      done(ReplicationOutcome{.quorum_reached = true, .acked_by = {}});
      return;
    }
    Mutation mutation;
    mutation.set_origin(self());
    mutation.set_sequence(write.sequence);
    *mutation.mutable_record() = write.record;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (stopped_) {
        lock.unlock();
        done(absl::CancelledError("replicator shut down"));
        return;
      }
      PendingWrite& pending = pending_[write.sequence];
      pending.done = std::move(done);
      // A peer may have pulled the mutation already (its vector told us so).
      for (const auto& [name, peer] : peers_) {
        auto it = peer.known_vector.find(self());
        if (it != peer.known_vector.end() && it->second >= write.sequence) {
          pending.acked.insert(name);
        }
      }
      for (const std::string& peer : options_.peers) outbox_[peer].queued.push_back(mutation);
    }
    std::weak_ptr<Core> weak = weak_from_this();
    const uint64_t sequence = write.sequence;
    for (const std::string& peer : options_.peers) FlushOutbox(peer);
    scheduler_->RunAfter(options_.quorum_timeout_ms, [weak, sequence] {
      if (std::shared_ptr<Core> core = weak.lock()) {
        if (Entry entry(core.get()); entry) core->OnWriteTimeout(sequence);
      }
    });
    CompleteReadyWrites();  // quorum may already hold (vectors reported earlier)
  }

  absl::StatusOr<PushAck> HandlePush(const PushRequest& request) {
    absl::StatusOr<RemoteApplyResult> applied = store_->ApplyRemote(request.mutations);
    if (!applied.ok()) return applied.status();
    return PushAck{.version_vector = std::move(applied->version_vector)};
  }

  absl::StatusOr<PullResponse> HandlePull(const PullRequest& request) {
    // The puller's vector says what it holds durably: that acknowledges our writes too.
    OnPeerVector(request.from, request.version_vector, {});  // ignored unless a configured peer
    const size_t limit = std::min(request.limit, options_.pull_batch_mutations);
    absl::StatusOr<VersionVector> ours = store_->GetVersionVector();
    if (!ours.ok()) return ours.status();
    absl::StatusOr<std::vector<Mutation>> missing =
        store_->MutationsMissing(request.version_vector, request.also_held, limit);
    if (!missing.ok()) return missing.status();
    return PullResponse{.mutations = *std::move(missing), .version_vector = *std::move(ours)};
  }

  absl::StatusOr<SnapshotPage> HandleSnapshot(const SnapshotRequest& request) {
    return store_->ReadSnapshotPage(request.after, std::min(request.limit, options_.snapshot_page_records));
  }

  absl::Status HandleJoin(const std::string& from, size_t batch_bytes,
                          absl::FunctionRef<absl::Status(const JoinHeader&)> on_header,
                          absl::FunctionRef<absl::Status(JoinBatch&)> on_batch) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) return absl::UnavailableError("replicator shut down");
      if (!joining_.empty()) {
        return absl::ResourceExhaustedError(
            absl::StrCat("node ", self(), " is serving a bulk join to ", joining_, "; join from another peer"));
      }
      joining_ = from;
    }
    absl::Status read = store_->ReadForJoin(batch_bytes, on_header, on_batch);
    std::lock_guard<std::mutex> lock(mu_);
    joining_.clear();
    return read;
  }

  void AntiEntropyRound() {
    absl::StatusOr<VersionVector> ours = store_->GetVersionVector();
    if (!ours.ok()) return;  // the store reports its own trouble; retry next round
    // A store rebuilt empty after damage copies a full snapshot first, whatever the vectors
    // say: records of its own origin come back no other way (a node ignores its own
    // mutations from peers), and the vectors exclude them.
    const bool rebuild = store_->RebuildFromPeersPending().value_or(false);
    const int64_t now = clock_->NowMonotonicMillis();
    std::vector<std::string> to_pull;
    std::vector<std::string> to_snapshot;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) return;
      for (auto& [name, peer] : peers_) {
        if (peer.request_id != 0 && now - peer.request_started_ms < options_.peer_request_timeout_ms) {
          continue;  // still waiting for its answer
        }
        peer.request_id = 0;  // abandon a lost request
        const uint64_t behind = Behind(*ours, peer.known_vector, self());
        if (!peer.snapshot.active &&
            (rebuild || behind > options_.snapshot_threshold_mutations || (peer.stalled && behind > 0))) {
          if (SnapshotRunningElsewhere(name, now)) continue;
          peer.snapshot = SnapshotState{};
          peer.snapshot.active = true;
          peer.snapshot.last_page_ms = now;
        }
        (peer.snapshot.active ? to_snapshot : to_pull).push_back(name);
      }
    }
    for (const std::string& peer : to_pull) SendPull(peer, *ours);
    for (const std::string& peer : to_snapshot) SendSnapshotRequest(peer);
    for (const std::string& peer : options_.peers) FlushOutbox(peer);  // after lost pushes
    MaybeCompact(now, *ours);
  }

  // Deletes the log prefix that this node and every peer hold (as far as their last reported
  // vectors say): nobody will ask for it again except a node that lost its store, and that
  // one copies a snapshot.
  void MaybeCompact(int64_t now, VersionVector held) {
    if (options_.compact_log_every_ms <= 0) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_ || now - last_compaction_ms_ < options_.compact_log_every_ms) return;
      last_compaction_ms_ = now;
      for (const auto& [name, peer] : peers_) {
        for (auto& [origin, sequence] : held) {
          auto it = peer.known_vector.find(origin);
          sequence = std::min<uint64_t>(sequence, it == peer.known_vector.end() ? 0 : it->second);
        }
      }
    }
    absl::StatusOr<int64_t> deleted = store_->CompactLog(held, options_.compact_log_batch);
    if (!deleted.ok()) return;  // the store reports its own trouble; next time
    std::lock_guard<std::mutex> lock(mu_);
    status_.mutations_compacted += static_cast<uint64_t>(*deleted);
  }

  absl::StatusOr<ReplicatorStatus> Status() {
    absl::StatusOr<VersionVector> ours = store_->GetVersionVector();
    if (!ours.ok()) return ours.status();
    ReplicatorStatus status;
    {
      std::lock_guard<std::mutex> lock(mu_);
      status = status_;
      const int64_t monotonic_now = clock_->NowMonotonicMillis();
      for (const auto& [name, peer] : peers_) {
        PeerStatus& p = status.peers.emplace_back(peer);
        if (peer.last_ack_monotonic_ms.has_value()) p.since_last_ack_ms = monotonic_now - *peer.last_ack_monotonic_ms;
        p.lag_mutations = Behind(peer.known_vector, *ours, "");
        p.snapshot_in_progress = peer.snapshot.active;
      }
    }
    // Lag in time: how long the oldest mutation the peer's vector lacks has waited, from the
    // last update of its record (the log sends records as they stand, so a record changed
    // again since counts from that later change). Wall time: updated_ms is a stored wall
    // time, possibly another node's; a clock step skews this figure, nothing else.
    const int64_t now = clock_->NowUnixMillis();
    for (PeerStatus& p : status.peers) {
      if (p.lag_mutations == 0) continue;
      int64_t oldest = now;
      for (const auto& [origin, sequence] : *ours) {
        auto known = p.known_vector.find(origin);
        const uint64_t have = known == p.known_vector.end() ? 0 : known->second;
        if (sequence <= have) continue;
        absl::StatusOr<std::vector<Mutation>> next = store_->MutationsSince(origin, have, 1);
        if (next.ok() && !next->empty()) oldest = std::min(oldest, next->front().record().updated_ms());
      }
      p.lag_ms = std::max<int64_t>(0, now - oldest);
    }
    return status;
  }

 private:
  struct SnapshotState {
    bool active = false;
    SnapshotCursor cursor;
    bool have_vector = false;
    VersionVector first_vector;  // from the first page; adopted after the last
    int64_t last_page_ms = 0;    // monotonic Clock time it started or last received a page
  };

  // True while a snapshot from a peer other than `peer` is making progress (a page within
  // twice the request timeout). A node copies one snapshot at a time: two would copy the
  // same records twice, and the second has little left to add once the first commits. One
  // that stopped making progress (its peer went away) no longer holds the others back.
  // Requires mu_.
  bool SnapshotRunningElsewhere(const std::string& peer, int64_t now) const {
    for (const auto& [name, other] : peers_) {
      if (name != peer && other.snapshot.active &&
          now - other.snapshot.last_page_ms < 2 * options_.peer_request_timeout_ms) {
        return true;
      }
    }
    return false;
  }
  // Every interval here is timed on the Clock's monotonic time: a wall clock stepped back
  // must not hold a push or a request "in flight" for minutes, nor a step forward declare a
  // peer down at once.
  struct Peer : PeerStatus {
    // Monotonic ms of the first push failure since the peer last answered; empty while it
    // answers. A peer failing for a whole quorum timeout is down: a write stops waiting for it.
    std::optional<int64_t> failing_since_ms;
    std::optional<int64_t> last_ack_monotonic_ms;  // the last answer; empty: never
    uint64_t request_id = 0;                       // the outstanding anti-entropy request, 0 if none
    int64_t request_started_ms = 0;                // monotonic
    bool stalled = false;                          // last pull made no progress although the peer is ahead
    SnapshotState snapshot;
  };
  // Pushes to a peer are coalesced: while kMaxPushesInFlight pushes to it are unanswered,
  // new local mutations wait here and leave together in the next push, which the peer
  // applies in one transaction (one fsync). One push per write would cost the peer one
  // fsync per write, since a peer's push stream is applied in order.
  struct Outbox {
    std::vector<Mutation> queued;           // in sequence order
    std::map<uint64_t, int64_t> in_flight;  // push id -> monotonic Clock ms it was sent
  };
  struct PendingWrite {
    WriteDone done;
    std::set<std::string> acked;
    std::set<std::string> push_failed;  // peers whose push failed at the transport
  };

  // Starts tracking an anti-entropy request to `peer`; returns its id.
  uint64_t BeginRequest(const std::string& peer) {
    std::lock_guard<std::mutex> lock(mu_);
    Peer& p = peers_[peer];
    p.request_id = ++next_request_id_;
    p.request_started_ms = clock_->NowMonotonicMillis();
    return p.request_id;
  }

  // True (and the request closed) when `id` is still the outstanding request to `peer`.
  bool EndRequest(const std::string& peer, uint64_t id) {
    std::lock_guard<std::mutex> lock(mu_);
    Peer& p = peers_[peer];
    if (stopped_ || p.request_id != id) return false;
    p.request_id = 0;
    return true;
  }

  void SendPull(const std::string& peer, const VersionVector& ours) {
    // Without this the peer would resend what we hold beyond a gap, batch after batch.
    absl::StatusOr<HeldSequences> held = store_->HeldBeyondVector(kMaxHeldSequencesPerOrigin);
    if (!held.ok()) return;  // the store reports its own trouble; retry next round
    const uint64_t id = BeginRequest(peer);
    std::weak_ptr<Core> weak = weak_from_this();
    transport_->Pull(peer,
                     PullRequest{.from = self(),
                                 .version_vector = ours,
                                 .also_held = *std::move(held),
                                 .limit = options_.pull_batch_mutations},
                     [weak, peer, id](absl::StatusOr<PullResponse> response) {
                       std::shared_ptr<Core> core = weak.lock();
                       if (core == nullptr) return;
                       Entry entry(core.get());
                       if (!entry || !core->EndRequest(peer, id) || !response.ok()) return;
                       core->OnPullResponse(peer, *std::move(response));
                     });
  }

  void OnPullResponse(const std::string& peer, PullResponse response) {
    absl::StatusOr<VersionVector> before = store_->GetVersionVector();
    if (!before.ok()) return;
    absl::StatusOr<RemoteApplyResult> applied = store_->ApplyRemote(response.mutations);
    if (!applied.ok()) return;
    const uint64_t fresh = static_cast<uint64_t>(std::count(applied->is_new.begin(), applied->is_new.end(), true));
    const bool progressed = Behind(*before, applied->version_vector, "") > 0;
    const uint64_t behind = Behind(applied->version_vector, response.version_vector, self());
    const bool full = response.mutations.size() >= options_.pull_batch_mutations;
    {
      std::lock_guard<std::mutex> lock(mu_);
      status_.mutations_pulled += fresh;
      // Behind, yet nothing it sent moved our vector: it holds state (adopted from a
      // snapshot) that its log cannot replay. The next round copies its records instead.
      peers_[peer].stalled = behind > 0 && !progressed;
    }
    OnPeerVector(peer, response.version_vector, {});
    if (behind > options_.snapshot_threshold_mutations) {
      // Its vector shows it far ahead: copying its records beats replaying its log.
      bool start = false;
      {
        std::lock_guard<std::mutex> lock(mu_);
        Peer& p = peers_[peer];
        const int64_t now = clock_->NowMonotonicMillis();
        if (!stopped_ && !p.snapshot.active && p.request_id == 0 && !SnapshotRunningElsewhere(peer, now)) {
          p.snapshot = SnapshotState{};
          p.snapshot.active = true;
          p.snapshot.last_page_ms = now;
          start = true;
        }
      }
      if (start) SendSnapshotRequest(peer);
      return;
    }
    // A full batch that brought something new: more is waiting, fetch it now.
    if (full && fresh > 0) SendPull(peer, applied->version_vector);
  }

  void SendSnapshotRequest(const std::string& peer) {
    SnapshotCursor cursor;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cursor = peers_[peer].snapshot.cursor;
    }
    const uint64_t id = BeginRequest(peer);
    std::weak_ptr<Core> weak = weak_from_this();
    transport_->FetchSnapshot(peer,
                              SnapshotRequest{.from = self(), .after = cursor, .limit = options_.snapshot_page_records},
                              [weak, peer, id](absl::StatusOr<SnapshotPage> page) {
                                std::shared_ptr<Core> core = weak.lock();
                                if (core == nullptr) return;
                                Entry entry(core.get());
                                if (!entry || !core->EndRequest(peer, id) || !page.ok()) return;
                                core->OnSnapshotPage(peer, *std::move(page));
                              });
  }

  void OnSnapshotPage(const std::string& peer, SnapshotPage page) {
    VersionVector adopt;
    bool first_page = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      SnapshotState& snap = peers_[peer].snapshot;
      if (!snap.active) return;
      if (!snap.have_vector) {
        snap.first_vector = page.version_vector;
        snap.have_vector = true;
        first_page = true;
      }
      if (page.done) adopt = snap.first_vector;
    }
    // Pages are staged and merged all at once with the vector; see
    // RequestStore::StageSnapshotPage for why. Leftovers of an earlier attempt go first.
    // On a store error the state stays put and the next round asks for the same page.
    if (first_page && !store_->DiscardSnapshot(peer).ok()) return;
    if (!store_->StageSnapshotPage(peer, page.records).ok()) return;
    if (page.done && !store_->CommitSnapshot(peer, adopt).ok()) return;
    OnPeerVector(peer, page.version_vector, {});
    bool more = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      Peer& p = peers_[peer];
      if (page.done) {
        p.snapshot = SnapshotState{};
        p.stalled = false;
        ++status_.snapshots_completed;
      } else {
        p.snapshot.cursor = page.next;
        p.snapshot.last_page_ms = clock_->NowMonotonicMillis();
        more = !stopped_;
      }
    }
    if (more) SendSnapshotRequest(peer);
  }

  // Sends what waits in `peer`'s outbox as one push, unless kMaxPushesInFlight pushes to it
  // are unanswered; those that went unanswered for peer_request_timeout_ms count as lost
  // (a transport need not answer), so a lost push cannot stall the outbox.
  void FlushOutbox(const std::string& peer) {
    PushRequest request{.from = self(), .mutations = {}};
    uint64_t push_id = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      Outbox& box = outbox_[peer];
      const int64_t now = clock_->NowMonotonicMillis();
      std::erase_if(box.in_flight,
                    [&](const auto& push) { return now - push.second >= options_.peer_request_timeout_ms; });
      if (stopped_ || box.queued.empty() || box.in_flight.size() >= kMaxPushesInFlight) return;
      if (box.queued.size() <= kMaxPushMutations) {
        request.mutations.swap(box.queued);
      } else {
        request.mutations.assign(box.queued.begin(), box.queued.begin() + kMaxPushMutations);
        box.queued.erase(box.queued.begin(), box.queued.begin() + kMaxPushMutations);
      }
      push_id = ++next_request_id_;
      box.in_flight.emplace(push_id, now);
    }
    std::vector<uint64_t> sequences;
    for (const Mutation& m : request.mutations) sequences.push_back(m.sequence());
    std::sort(sequences.begin(), sequences.end());                           // writes may queue out of order
    auto sent = std::make_shared<std::vector<Mutation>>(request.mutations);  // to send again on failure
    std::weak_ptr<Core> weak = weak_from_this();
    transport_->Push(peer, std::move(request),
                     [weak, peer, push_id, sent, sequences = std::move(sequences)](absl::StatusOr<PushAck> ack) {
                       std::shared_ptr<Core> core = weak.lock();
                       if (core == nullptr) return;
                       Entry entry(core.get());
                       if (!entry) return;
                       {
                         std::lock_guard<std::mutex> lock(core->mu_);
                         core->outbox_[peer].in_flight.erase(push_id);
                       }
                       if (ack.ok()) {
                         core->OnPeerVector(peer, ack->version_vector, sequences);
                         core->FlushOutbox(peer);  // what queued while this push was out
                       } else {
                         core->OnPushFailed(peer, *sent);  // flushes again later, if at all
                       }
                     });
  }

  // `peer` reported `vector` (and, for a push ack, that it holds our mutations
  // `acked_sequences` (ascending) durably, even beyond a gap in its vector).
  void OnPeerVector(const std::string& peer, const VersionVector& vector,
                    const std::vector<uint64_t>& acked_sequences) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = peers_.find(peer);
      if (it == peers_.end() || stopped_) return;
      Peer& p = it->second;
      MaxInto(p.known_vector, vector);
      p.last_ack_ms = clock_->NowUnixMillis();
      p.last_ack_monotonic_ms = clock_->NowMonotonicMillis();
      p.failing_since_ms.reset();
      auto own = p.known_vector.find(self());
      const uint64_t contiguous = own == p.known_vector.end() ? 0 : own->second;
      for (auto& [sequence, pending] : pending_) {
        if (sequence <= contiguous || std::binary_search(acked_sequences.begin(), acked_sequences.end(), sequence)) {
          pending.acked.insert(peer);
        }
      }
    }
    CompleteReadyWrites();
  }

  void CompleteReadyWrites() {
    std::vector<std::pair<WriteDone, ReplicationOutcome>> ready;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = pending_.begin(); it != pending_.end();) {
        if (it->second.acked.size() + 1 >= quorum_) {
          ++status_.quorum_writes;
          ready.emplace_back(std::move(it->second.done),
                             ReplicationOutcome{.quorum_reached = true,
                                                .acked_by = {it->second.acked.begin(), it->second.acked.end()}});
          it = pending_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (auto& [done, outcome] : ready) done(std::move(outcome));
  }

  // A push that failed at the transport (connection refused, peer restarting). While the
  // peer has been failing for less than a quorum timeout, the mutations whose writes still
  // wait for it are queued again and sent kPushRetryDelayMs later: a peer coming up, or a
  // connection being re-established, still makes the quorum. A peer failing for longer is
  // down; under policy serve, once the peers still able to answer cannot make a quorum, the
  // write is answered now instead of at the timeout (waiting would only delay the client,
  // and anti-entropy copies the write later either way). Under refuse the timeout stands (a
  // pull may still acknowledge the write).
  void OnPushFailed(const std::string& peer, const std::vector<Mutation>& sent) {
    std::vector<uint64_t> answer_now;
    bool retry = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) return;
      auto peer_it = peers_.find(peer);
      if (peer_it == peers_.end()) return;
      const int64_t now = clock_->NowMonotonicMillis();
      Peer& p = peer_it->second;
      if (!p.failing_since_ms.has_value()) p.failing_since_ms = now;
      const bool down = now - *p.failing_since_ms >= options_.quorum_timeout_ms;
      std::vector<Mutation> again;
      for (const Mutation& m : sent) {
        auto it = pending_.find(m.sequence());
        if (it == pending_.end() || it->second.acked.count(peer) != 0) continue;
        if (!down) {
          again.push_back(m);
          continue;
        }
        it->second.push_failed.insert(peer);
        if (options_.on_quorum_loss != QuorumLossPolicy::kServe) continue;
        size_t may_still_ack = 0;
        for (const std::string& other : options_.peers) {
          if (it->second.acked.count(other) != 0 || it->second.push_failed.count(other) == 0) ++may_still_ack;
        }
        if (may_still_ack + 1 < quorum_) answer_now.push_back(m.sequence());
      }
      if (!again.empty()) {
        std::vector<Mutation>& queued = outbox_[peer].queued;
        queued.insert(queued.end(), again.begin(), again.end());
        std::sort(queued.begin(), queued.end(),
                  [](const Mutation& a, const Mutation& b) { return a.sequence() < b.sequence(); });
        retry = true;
      }
    }
    for (uint64_t sequence : answer_now) OnWriteTimeout(sequence);
    if (retry) {
      std::weak_ptr<Core> weak = weak_from_this();
      scheduler_->RunAfter(kPushRetryDelayMs, [weak, peer] {
        if (std::shared_ptr<Core> core = weak.lock()) {
          if (Entry entry(core.get()); entry) core->FlushOutbox(peer);
        }
      });
    }
  }

  void OnWriteTimeout(uint64_t sequence) {
    WriteDone done;
    absl::StatusOr<ReplicationOutcome> result;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = pending_.find(sequence);
      if (it == pending_.end()) return;  // completed in time
      std::vector<std::string> silent;
      for (const std::string& peer : options_.peers) {
        if (it->second.acked.count(peer) == 0) silent.push_back(peer);
      }
      if (options_.on_quorum_loss == QuorumLossPolicy::kServe) {
        ++status_.under_replicated_writes;
        result =
            ReplicationOutcome{.quorum_reached = false, .acked_by = {it->second.acked.begin(), it->second.acked.end()}};
      } else {
        ++status_.refused_writes;
        result = absl::UnavailableError(
            absl::StrCat("write ", self(), "/", sequence, " reached ", it->second.acked.size() + 1, " of the ", quorum_,
                         " nodes its quorum needs within ", options_.quorum_timeout_ms,
                         " ms; no answer from: ", absl::StrJoin(silent, ", "),
                         ". It is stored on this node and will replicate when they return; check those nodes "
                         "and the network between them (policy on_quorum_loss = \"refuse\")"));
      }
      done = std::move(it->second.done);
      pending_.erase(it);
    }
    done(std::move(result));
  }

  RequestStore* const store_;
  PeerTransport* const transport_;
  Scheduler* const scheduler_;
  const Clock* const clock_;
  const ReplicatorOptions options_;
  const size_t quorum_;

  std::mutex mu_;
  bool stopped_ = false;  // guarded by mu_
  std::mutex gate_mu_;    // Entry's
  std::condition_variable gate_cv_;
  int gate_active_ = 0;                       // callbacks inside an Entry; guarded by gate_mu_
  bool gate_closed_ = false;                  // guarded by gate_mu_
  std::map<std::string, Peer> peers_;         // guarded by mu_; keys fixed at construction
  std::map<uint64_t, PendingWrite> pending_;  // guarded by mu_; by local sequence
  std::map<std::string, Outbox> outbox_;      // guarded by mu_; by peer
  uint64_t next_request_id_ = 0;              // guarded by mu_
  ReplicatorStatus status_;                   // guarded by mu_; peers left empty
  int64_t last_compaction_ms_ = 0;            // guarded by mu_
  std::string joining_;                       // guarded by mu_; the node a bulk join is served to
};

absl::StatusOr<std::unique_ptr<Replicator>> Replicator::Create(RequestStore* store, PeerTransport* transport,
                                                               Scheduler* scheduler, const Clock* clock,
                                                               ReplicatorOptions options) {
  if (store == nullptr || transport == nullptr || scheduler == nullptr || clock == nullptr) {
    return absl::InvalidArgumentError(
        "Replicator::Create: store, transport, scheduler and clock "
        "are all required");
  }
  std::set<std::string> seen;
  for (const std::string& peer : options.peers) {
    if (peer.empty() || peer == store->node_id() || !seen.insert(peer).second) {
      return absl::InvalidArgumentError(absl::StrCat("replication peers: '", peer, "' is empty, this node's own id (",
                                                     store->node_id(),
                                                     ") or listed twice; list every other node once"));
    }
  }
  const size_t nodes = options.peers.size() + 1;
  const size_t quorum = options.write_quorum == 0 ? nodes / 2 + 1 : options.write_quorum;
  if (quorum > nodes) {
    return absl::InvalidArgumentError(
        absl::StrCat("replication write_quorum ", quorum, " exceeds the ", nodes, " configured nodes"));
  }
  if (options.pull_batch_mutations == 0 || options.snapshot_page_records == 0 || options.quorum_timeout_ms <= 0 ||
      options.anti_entropy_interval_ms <= 0) {
    return absl::InvalidArgumentError(
        "replication: batch sizes, quorum timeout and anti-entropy interval must be positive");
  }
  return std::unique_ptr<Replicator>(
      new Replicator(std::make_shared<Core>(store, transport, scheduler, clock, std::move(options), quorum)));
}

Replicator::Replicator(std::shared_ptr<Core> core) : core_(std::move(core)) {}
Replicator::~Replicator() { core_->Shutdown(); }

void Replicator::Start() { core_->ScheduleTick(); }
void Replicator::Replicate(const WriteResult& write, WriteDone done) { core_->Replicate(write, std::move(done)); }
absl::StatusOr<PushAck> Replicator::HandlePush(const PushRequest& request) { return core_->HandlePush(request); }
absl::StatusOr<PullResponse> Replicator::HandlePull(const PullRequest& request) { return core_->HandlePull(request); }
absl::StatusOr<SnapshotPage> Replicator::HandleSnapshot(const SnapshotRequest& request) {
  return core_->HandleSnapshot(request);
}
absl::Status Replicator::HandleJoin(const std::string& from, size_t batch_bytes,
                                    absl::FunctionRef<absl::Status(const JoinHeader&)> on_header,
                                    absl::FunctionRef<absl::Status(JoinBatch&)> on_batch) {
  return core_->HandleJoin(from.empty() ? "a peer" : from, batch_bytes, on_header, on_batch);
}
void Replicator::RunAntiEntropyRound() { core_->AntiEntropyRound(); }
absl::StatusOr<ReplicatorStatus> Replicator::Status() const { return core_->Status(); }
size_t Replicator::write_quorum() const { return core_->quorum(); }

}  // namespace adcsc::store
