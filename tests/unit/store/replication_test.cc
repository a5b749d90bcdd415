// Replicator, driven by hand over the fake network and clock: quorum acknowledgement, the
// serve/refuse policies on quorum loss, anti-entropy pull, snapshots for a node far behind,
// and the status counters.
#include "store/replication.h"

#include <functional>
#include <map>
#include <optional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"
#include "tests/unit/store/sim_cluster.h"

namespace adcsc::store {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int64_t kQuorumTimeoutMs = 1000;
constexpr int64_t kAntiEntropyMs = 500;
constexpr int64_t kNetDelayMs = 10;

const std::string kCa = CaConfigKey("ca01.contoso.com", "Issuing");

RequestRecord Submitted(uint32_t id) {
  RequestRecord r;
  r.set_ca_config(kCa);
  r.set_request_id(id);
  r.set_status(v1::RECORD_STATUS_SUBMITTED);
  return r;
}

ReplicatorOptions Options(QuorumLossPolicy policy) {
  ReplicatorOptions o;
  o.on_quorum_loss = policy;
  o.quorum_timeout_ms = kQuorumTimeoutMs;
  o.anti_entropy_interval_ms = kAntiEntropyMs;
  o.peer_request_timeout_ms = 2 * kAntiEntropyMs;
  return o;
}

class ReplicatorTest : public ::testing::Test {
 protected:
  void Make(int nodes, ReplicatorOptions options) {
    cluster_.emplace(dir_.path(), nodes, options, /*seed=*/1);
    cluster_->net().faults() = sim::NetworkFaults{.min_delay_ms = kNetDelayMs, .max_delay_ms = kNetDelayMs};
    ASSERT_TRUE(cluster_->StartAll().ok());
  }
  // Puts on `node` and replicates; the outcome lands in `out` when the write completes.
  void Write(const std::string& node, uint32_t id, std::optional<absl::StatusOr<ReplicationOutcome>>& out) {
    sim::SimCluster::Node& n = cluster_->node(node);
    absl::StatusOr<WriteResult> w = n.store->Put(Submitted(id));
    ASSERT_TRUE(w.ok()) << w.status();
    n.replicator->Replicate(*w, [&out](absl::StatusOr<ReplicationOutcome> o) { out = o; });
  }
  bool Has(const std::string& node, uint32_t id) {
    auto got = cluster_->node(node).store->Get(kCa, id);
    return got.ok() && got->has_value();
  }

  adcsc::testing::TempDir dir_;
  std::optional<sim::SimCluster> cluster_;
};

TEST_F(ReplicatorTest, MajorityQuorumAcknowledgesAfterPeerIsDurable) {
  Make(3, Options(QuorumLossPolicy::kRefuse));
  EXPECT_EQ(cluster_->node("n0").replicator->write_quorum(), 2u);
  std::optional<absl::StatusOr<ReplicationOutcome>> out;
  Write("n0", 1, out);
  EXPECT_FALSE(out.has_value());  // nothing answers before the network delivers
  ASSERT_TRUE(cluster_->loop().RunUntilCondition([&] { return out.has_value(); }, kQuorumTimeoutMs));
  ASSERT_TRUE(out->ok()) << out->status();
  EXPECT_TRUE((*out)->quorum_reached);
  ASSERT_FALSE((*out)->acked_by.empty());
  for (const std::string& peer : (*out)->acked_by) EXPECT_TRUE(Has(peer, 1)) << peer;
}

TEST_F(ReplicatorTest, QuorumLossServeCountsUnderReplicated) {
  Make(3, Options(QuorumLossPolicy::kServe));
  cluster_->net().Partition({{"n0", 1}});
  std::optional<absl::StatusOr<ReplicationOutcome>> out;
  Write("n0", 1, out);
  ASSERT_TRUE(cluster_->loop().RunUntilCondition([&] { return out.has_value(); }, 2 * kQuorumTimeoutMs));
  ASSERT_TRUE(out->ok());
  EXPECT_FALSE((*out)->quorum_reached);
  absl::StatusOr<ReplicatorStatus> status = cluster_->node("n0").replicator->Status();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->under_replicated_writes, 1u);
  EXPECT_EQ(status->quorum_writes, 0u);
  // Lag, in mutations and in time: the write is the oldest mutation the peers lack.
  const int64_t written_ms = cluster_->clock().NowUnixMillis() - 2 * kQuorumTimeoutMs;
  cluster_->loop().RunFor(300);
  status = cluster_->node("n0").replicator->Status();
  for (const PeerStatus& p : status->peers) {
    EXPECT_EQ(p.lag_mutations, 1u) << p.node_id;
    EXPECT_GE(p.lag_ms, 300) << p.node_id;
    EXPECT_LE(p.lag_ms, cluster_->clock().NowUnixMillis() - written_ms) << p.node_id;
  }
  // After the partition heals, anti-entropy delivers the write and lag drops to zero.
  cluster_->net().Heal();
  ASSERT_TRUE(cluster_->loop().RunUntilCondition([&] { return Has("n1", 1) && Has("n2", 1); }, 10 * kAntiEntropyMs));
  cluster_->loop().RunFor(3 * kAntiEntropyMs);
  status = cluster_->node("n0").replicator->Status();
  ASSERT_EQ(status->peers.size(), 2u);
  for (const PeerStatus& p : status->peers) {
    EXPECT_EQ(p.lag_mutations, 0u) << p.node_id;
    EXPECT_EQ(p.lag_ms, 0) << p.node_id;
    EXPECT_GT(p.last_ack_ms, 0) << p.node_id;
  }
}

TEST_F(ReplicatorTest, QuorumLossRefuseNamesSilentPeers) {
  Make(3, Options(QuorumLossPolicy::kRefuse));
  cluster_->net().Partition({{"n0", 1}});
  std::optional<absl::StatusOr<ReplicationOutcome>> out;
  Write("n0", 1, out);
  ASSERT_TRUE(cluster_->loop().RunUntilCondition([&] { return out.has_value(); }, 2 * kQuorumTimeoutMs));
  ASSERT_FALSE(out->ok());
  EXPECT_EQ(out->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(out->status().message(), HasSubstr("n1, n2"));
  EXPECT_EQ(cluster_->node("n0").replicator->Status()->refused_writes, 1u);
}

TEST_F(ReplicatorTest, DroppedPushIsAcknowledgedThroughAntiEntropy) {
  ReplicatorOptions o = Options(QuorumLossPolicy::kRefuse);
  o.quorum_timeout_ms = 4 * kAntiEntropyMs;  // room for a pull round to carry the ack
  Make(2, o);
  cluster_->net().faults().drop = 1.0;
  std::optional<absl::StatusOr<ReplicationOutcome>> out;
  Write("n0", 1, out);  // the push is lost
  cluster_->net().faults().drop = 0;
  ASSERT_TRUE(cluster_->loop().RunUntilCondition([&] { return out.has_value(); }, 2 * o.quorum_timeout_ms));
  ASSERT_TRUE(out->ok()) << out->status();
  EXPECT_TRUE((*out)->quorum_reached);
  EXPECT_THAT((*out)->acked_by, ElementsAre("n1"));
}

TEST_F(ReplicatorTest, FarBehindNodeCatchesUpBySnapshot) {
  ReplicatorOptions o = Options(QuorumLossPolicy::kServe);
  o.snapshot_threshold_mutations = 5;
  o.snapshot_page_records = 4;
  o.pull_batch_mutations = 3;  // the first pull learns how far behind it is
  Make(2, o);
  cluster_->Crash("n1");
  constexpr uint32_t kWrites = 20;
  std::vector<std::optional<absl::StatusOr<ReplicationOutcome>>> outs(kWrites);
  for (uint32_t i = 0; i < kWrites; ++i) Write("n0", i + 1, outs[i]);
  cluster_->loop().RunFor(2 * kQuorumTimeoutMs);
  ASSERT_TRUE(cluster_->Start("n1").ok());
  ASSERT_TRUE(cluster_->loop().RunUntilCondition(
      [&] { return cluster_->node("n1").replicator->Status()->snapshots_completed >= 1 && cluster_->Converged(); },
      20 * kAntiEntropyMs));
  EXPECT_EQ(*cluster_->node("n1").store->CountRecords(), kWrites);
  EXPECT_EQ(cluster_->node("n1").store->GetVersionVector()->at("n0"), kWrites);
}

TEST_F(ReplicatorTest, CrashCancelsPendingWritesAndLateRepliesAreIgnored) {
  Make(3, Options(QuorumLossPolicy::kRefuse));
  std::optional<absl::StatusOr<ReplicationOutcome>> out;
  Write("n0", 1, out);
  cluster_->Crash("n0");  // the pushes are in flight; their acks must find nobody
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->status().code(), absl::StatusCode::kCancelled);
  cluster_->loop().RunFor(2 * kQuorumTimeoutMs);
  EXPECT_TRUE(Has("n1", 1));
  // Restarted from disk, it still holds the write and its peers converge on it.
  ASSERT_TRUE(cluster_->Start("n0").ok());
  EXPECT_TRUE(Has("n0", 1));
  ASSERT_TRUE(
      cluster_->loop().RunUntilCondition([&] { return Has("n2", 1) && cluster_->Converged(); }, 10 * kAntiEntropyMs));
}

TEST_F(ReplicatorTest, RejectsBadMembership) {
  sim::SimLoop loop(nullptr);
  FakeClock clock;
  StoreOptions so;
  so.path = dir_.File("x.db");
  so.node_id = "x";
  so.fsync = false;
  auto store = RequestStore::Open(so);
  ASSERT_TRUE(store.ok());
  sim::SimTransport transport(nullptr, "x");
  ReplicatorOptions o;
  o.peers = {"y", "x"};
  EXPECT_FALSE(Replicator::Create(store->get(), &transport, &loop, &clock, o).ok());
  o.peers = {"y", "y"};
  EXPECT_FALSE(Replicator::Create(store->get(), &transport, &loop, &clock, o).ok());
  o.peers = {"y"};
  o.write_quorum = 3;
  EXPECT_FALSE(Replicator::Create(store->get(), &transport, &loop, &clock, o).ok());
}

// A transport whose first `failures` pushes fail at once (connection refused) and whose
// later pushes are acknowledged as durable by the peer; pulls and snapshots go unanswered.
class FlakyTransport final : public PeerTransport {
 public:
  explicit FlakyTransport(int failures) : failures_(failures) {}
  void Push(const std::string& peer, PushRequest request, ReplyCallback<PushAck> done) override {
    ++pushes;
    if (failures_ < 0 || failures_-- > 0) {
      done(absl::UnavailableError("connection refused by " + peer));
      return;
    }
    PushAck ack;
    for (const auto& m : request.mutations) ack.version_vector[m.origin()] = m.sequence();
    done(ack);
  }
  void Pull(const std::string&, PullRequest, ReplyCallback<PullResponse>) override {}
  void FetchSnapshot(const std::string&, SnapshotRequest, ReplyCallback<SnapshotPage>) override {}
  int pushes = 0;

 private:
  int failures_;  // < 0: every push fails
};

// Runs what is due when the test says so.
class ManualScheduler final : public Scheduler {
 public:
  explicit ManualScheduler(FakeClock* clock) : clock_(clock) {}
  void RunAfter(int64_t delay_ms, std::function<void()> fn) override {
    due_.emplace(clock_->NowMonotonicMillis() + delay_ms, std::move(fn));
  }
  void Advance(int64_t ms) {
    clock_->AdvanceMillis(ms);
    while (!due_.empty() && due_.begin()->first <= clock_->NowMonotonicMillis()) {
      auto fn = std::move(due_.begin()->second);
      due_.erase(due_.begin());
      fn();
    }
  }

 private:
  FakeClock* clock_;
  std::multimap<int64_t, std::function<void()>> due_;
};

class ReplicatorPeersDown : public ::testing::Test {
 protected:
  void SetUp() override {
    StoreOptions so;
    so.path = dir_.path() / "n0.db";
    so.node_id = "n0";
    so.fsync = false;
    auto store = RequestStore::Open(so);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  std::unique_ptr<Replicator> Make(PeerTransport* transport, QuorumLossPolicy policy, std::vector<std::string> peers) {
    ReplicatorOptions o = Options(policy);
    o.peers = std::move(peers);
    auto replicator = Replicator::Create(store_.get(), transport, &scheduler_, &clock_, o);
    EXPECT_TRUE(replicator.ok()) << replicator.status();
    return replicator.ok() ? std::move(*replicator) : nullptr;
  }
  void Write(Replicator& r, uint32_t id, std::optional<absl::StatusOr<ReplicationOutcome>>& out) {
    auto w = store_->Put(Submitted(id));
    ASSERT_TRUE(w.ok());
    r.Replicate(*w, [&out](absl::StatusOr<ReplicationOutcome> o) { out = o; });
  }

  adcsc::testing::TempDir dir_;
  FakeClock clock_{1'000'000};
  ManualScheduler scheduler_{&clock_};
  std::unique_ptr<RequestStore> store_;
};

TEST_F(ReplicatorPeersDown, APushThatFailsWhileThePeerRestartsIsSentAgainAndMakesTheQuorum) {
  FlakyTransport transport(/*failures=*/3);
  std::optional<absl::StatusOr<ReplicationOutcome>> out;
  auto replicator = Make(&transport, QuorumLossPolicy::kServe, {"n1"});
  Write(*replicator, 1, out);
  EXPECT_FALSE(out.has_value()) << "a peer failing for less than a quorum timeout may be restarting";
  for (int i = 0; i < 5 && !out.has_value(); ++i) scheduler_.Advance(100);
  ASSERT_TRUE(out.has_value());
  ASSERT_TRUE(out->ok()) << out->status();
  EXPECT_TRUE((*out)->quorum_reached) << "sent again until the peer took it";
  EXPECT_EQ(transport.pushes, 4);
  EXPECT_EQ(replicator->Status()->under_replicated_writes, 0u);
}

// The wall clock stepping (NTP, an operator, a VM resume) is no time passing: a peer is down
// after a quorum timeout of monotonic time, whichever way the wall clock jumped meanwhile.
TEST_F(ReplicatorPeersDown, AWallClockStepNeitherDeclaresAPeerDownNorKeepsItUp) {
  constexpr int64_t kStepMs = 5 * 60'000;
  FlakyTransport transport(/*failures=*/-1);
  std::optional<absl::StatusOr<ReplicationOutcome>> first, second;
  auto replicator = Make(&transport, QuorumLossPolicy::kServe, {"n1", "n2"});
  Write(*replicator, 31, first);
  clock_.SetUnixMillis(clock_.NowUnixMillis() + kStepMs);
  scheduler_.Advance(100);
  EXPECT_FALSE(first.has_value()) << "5 minutes forward on the wall clock: the peers failed only 100 ms ago";

  clock_.SetUnixMillis(clock_.NowUnixMillis() - 2 * kStepMs);
  scheduler_.Advance(kQuorumTimeoutMs - 100);
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(first->ok());
  EXPECT_FALSE((*first)->quorum_reached);
  Write(*replicator, 32, second);
  ASSERT_TRUE(second.has_value()) << "5 minutes back on the wall clock: the peers are still down after a timeout";
  EXPECT_FALSE((*second)->quorum_reached);
}

TEST_F(ReplicatorPeersDown, ServeAnswersAtOnceOnceThePeersAreDownButRefuseWaitsForTheTimeout) {
  FlakyTransport transport(/*failures=*/-1);
  for (QuorumLossPolicy policy : {QuorumLossPolicy::kServe, QuorumLossPolicy::kRefuse}) {
    const uint32_t base = policy == QuorumLossPolicy::kServe ? 10 : 20;
    // Declared before the replicator: destroying it completes a still-waiting write (CANCELLED)
    // into them, which must still exist then.
    std::optional<absl::StatusOr<ReplicationOutcome>> first, second;
    auto replicator = Make(&transport, policy, {"n1", "n2"});
    Write(*replicator, base + 1, first);
    EXPECT_FALSE(first.has_value()) << "the peers only just failed";
    scheduler_.Advance(kQuorumTimeoutMs - 1);
    if (policy == QuorumLossPolicy::kServe) {
      // Failing for a whole quorum timeout (the retries told us): down. The first write is
      // answered now, and a new write at once, without waiting for its own timeout.
      EXPECT_FALSE(first.has_value());
      scheduler_.Advance(1);
      ASSERT_TRUE(first.has_value());
      ASSERT_TRUE(first->ok());
      EXPECT_FALSE((*first)->quorum_reached);
      Write(*replicator, base + 2, second);
      ASSERT_TRUE(second.has_value()) << "answered without waiting for the quorum timeout";
      ASSERT_TRUE(second->ok());
      EXPECT_FALSE((*second)->quorum_reached);
      EXPECT_EQ(replicator->Status()->under_replicated_writes, 2u);
    } else {
      Write(*replicator, base + 2, second);
      EXPECT_FALSE(second.has_value()) << "refuse waits: a pull may still acknowledge the write";
      scheduler_.Advance(1);
      ASSERT_TRUE(first.has_value());
      EXPECT_EQ(first->status().code(), absl::StatusCode::kUnavailable) << "refused at its timeout";
      replicator.reset();
      ASSERT_TRUE(second.has_value());
      EXPECT_EQ(second->status().code(), absl::StatusCode::kCancelled) << "shutdown completes waiting writes";
    }
  }
}

}  // namespace
}  // namespace adcsc::store
