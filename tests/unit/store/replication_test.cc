// Replicator, driven by hand over the fake network and clock: quorum acknowledgement, the
// serve/refuse policies on quorum loss, anti-entropy pull, snapshots for a node far behind,
// and the status counters.
#include "store/replication.h"

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
  // After the partition heals, anti-entropy delivers the write and lag drops to zero.
  cluster_->net().Heal();
  ASSERT_TRUE(cluster_->loop().RunUntilCondition([&] { return Has("n1", 1) && Has("n2", 1); }, 10 * kAntiEntropyMs));
  cluster_->loop().RunFor(3 * kAntiEntropyMs);
  status = cluster_->node("n0").replicator->Status();
  ASSERT_EQ(status->peers.size(), 2u);
  for (const PeerStatus& p : status->peers) {
    EXPECT_EQ(p.lag_mutations, 0u) << p.node_id;
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

// A transport whose pushes fail at once (every peer down, connection refused) and a
// scheduler that never fires: only the early answer can complete a write.
class RefusingTransport final : public PeerTransport {
 public:
  void Push(const std::string& peer, PushRequest, ReplyCallback<PushAck> done) override {
    done(absl::UnavailableError("connection refused by " + peer));
  }
  void Pull(const std::string&, PullRequest, ReplyCallback<PullResponse>) override {}
  void FetchSnapshot(const std::string&, SnapshotRequest, ReplyCallback<SnapshotPage>) override {}
};
class NeverScheduler final : public Scheduler {
 public:
  void RunAfter(int64_t, std::function<void()>) override {}
};

TEST(ReplicatorPeersDown, ServeAnswersAtOnceWhenPushesFailButRefuseWaitsForTheTimeout) {
  adcsc::testing::TempDir dir;
  StoreOptions so;
  so.path = dir.path() / "n0.db";
  so.node_id = "n0";
  so.fsync = false;
  auto store = RequestStore::Open(so);
  ASSERT_TRUE(store.ok()) << store.status();
  RefusingTransport transport;
  NeverScheduler scheduler;
  FakeClock clock(1'000'000);
  for (QuorumLossPolicy policy : {QuorumLossPolicy::kServe, QuorumLossPolicy::kRefuse}) {
    // Declared before the replicator: destroying it completes a still-waiting write (CANCELLED)
    // into `out`, which must still exist then.
    std::optional<absl::StatusOr<ReplicationOutcome>> out;
    ReplicatorOptions o = Options(policy);
    o.peers = {"n1", "n2"};
    auto replicator = Replicator::Create(store->get(), &transport, &scheduler, &clock, o);
    ASSERT_TRUE(replicator.ok()) << replicator.status();
    auto w = (*store)->Put(Submitted(policy == QuorumLossPolicy::kServe ? 1 : 2));
    ASSERT_TRUE(w.ok());
    (*replicator)->Replicate(*w, [&out](absl::StatusOr<ReplicationOutcome> o) { out = o; });
    if (policy == QuorumLossPolicy::kServe) {
      ASSERT_TRUE(out.has_value()) << "answered without waiting for the quorum timeout";
      ASSERT_TRUE(out->ok());
      EXPECT_FALSE((*out)->quorum_reached);
      EXPECT_EQ((*replicator)->Status()->under_replicated_writes, 1u);
    } else {
      EXPECT_FALSE(out.has_value()) << "refuse waits: a pull may still acknowledge the write";
      replicator->reset();
      ASSERT_TRUE(out.has_value());
      EXPECT_EQ(out->status().code(), absl::StatusCode::kCancelled) << "shutdown completes waiting writes";
    }
  }
}

}  // namespace
}  // namespace adcsc::store
