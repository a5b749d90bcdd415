// Bulk join over real gRPC with mutual TLS on loopback (node/cluster/bulk_join.h): a fresh
// node takes a peer's whole store and then replicates as usual; peers that are down, empty,
// older than the RPC (UNIMPLEMENTED), busy with another join or silent mid-stream are passed
// over for the next, and what a failed attempt wrote is gone.
#include "node/cluster/bulk_join.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "node/cluster/replication_grpc.h"
#include "node/cluster/tls.h"
#include "store/bulk_join.h"
#include "store/clock.h"
#include "tests/testing/temp_dir.h"
#include "tests/unit/cluster/cluster_fixture.h"

namespace adcsc::cluster {
namespace {

namespace v1 = adcsc::cluster::v1;

const std::string kCa = "ca1.example.test\\Example-CA";

store::RequestRecord Record(uint32_t id) {
  store::RequestRecord r;
  r.set_ca_config(kCa);
  r.set_request_id(id);
  r.set_status(store::v1::RECORD_STATUS_ISSUED);
  r.set_disposition(3);
  r.set_certificate_der(std::string(1500, static_cast<char>(id)));
  r.set_csr_sha256(std::string(32, static_cast<char>(id % 7)));
  r.set_template_name("JamfComputer");
  return r;
}

// A peer that has no bulk join: an adcsc from before it (every method UNIMPLEMENTED).
class OldReplicationService final : public v1::Replication::Service {};

// A peer that starts a join and then falls silent (it hangs until the joiner gives up).
class StallingService final : public v1::Replication::Service {
 public:
  grpc::Status Join(grpc::ServerContext* context, const v1::JoinRequest*,
                    grpc::ServerWriter<v1::JoinChunk>* writer) override {
    v1::JoinChunk chunk;
    chunk.set_records_total(1000);
    (*chunk.mutable_version_vector()->mutable_entries())["stall"] = 1000;
    *chunk.add_records() = Record(1);
    writer->Write(chunk);
    while (!context->IsCancelled()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return grpc::Status::CANCELLED;
  }
};

struct TestNode {
  std::string id;
  node::Config config;
  store::StoreOptions store_options;
  std::unique_ptr<store::RequestStore> store;
  std::unique_ptr<GrpcPeerTransport> transport;
  std::unique_ptr<TimerScheduler> scheduler;
  std::unique_ptr<store::Replicator> replicator;
  std::unique_ptr<grpc::Service> service;
  std::unique_ptr<grpc::Server> server;

  ~TestNode() {
    if (server) server->Shutdown(std::chrono::system_clock::now());
    server.reset();
    replicator.reset();
    scheduler.reset();
    transport.reset();
  }
};

class BulkJoinGrpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = testing::TestCluster::Make(dir_.path(), {"a", "b", "c"});
    for (const auto& id : cluster_.ids) {
      auto n = std::make_unique<TestNode>();
      n->id = id;
      n->config.node_id = id;
      n->config.cluster = cluster_.ConfigFor(id);
      n->store_options.path = dir_.path() / (id + ".db");
      n->store_options.node_id = id;
      n->store_options.fsync = false;
      nodes_[id] = std::move(n);
    }
  }

  // Opens the node's store and starts its replicator and server (the real ReplicationServer,
  // or `service` instead).
  void Run(const std::string& id, std::unique_ptr<grpc::Service> service = nullptr) {
    TestNode& n = *nodes_[id];
    auto store = store::RequestStore::Open(n.store_options);
    ASSERT_TRUE(store.ok()) << store.status();
    n.store = std::move(*store);
    n.transport = std::move(*GrpcPeerTransport::Create(n.config.cluster, id, std::chrono::seconds(5)));
    n.scheduler = std::make_unique<TimerScheduler>();
    store::ReplicatorOptions ro;
    for (const auto& p : n.config.cluster.peers) ro.peers.push_back(p.id);
    ro.anti_entropy_interval_ms = 100;
    auto r = store::Replicator::Create(n.store.get(), n.transport.get(), n.scheduler.get(), SystemClock::Default(), ro);
    ASSERT_TRUE(r.ok()) << r.status();
    n.replicator = std::move(*r);
    n.service = service != nullptr
                    ? std::move(service)
                    : std::make_unique<ReplicationServer>(n.replicator.get(), &n.config.cluster, id, n.transport.get());
    grpc::ServerBuilder builder;
    builder.SetMaxReceiveMessageSize(kPeerMaxMessageBytes);
    builder.AddListeningPort("127.0.0.1:" + std::to_string(cluster_.ports.at(id)),
                             *MakeServerCredentials(n.config.cluster));
    builder.RegisterService(n.service.get());
    n.server = builder.BuildAndStart();
    ASSERT_NE(n.server, nullptr);
    n.replicator->Start();
  }

  void Fill(const std::string& id, uint32_t first, uint32_t count) {
    for (uint32_t i = first; i < first + count; ++i) ASSERT_TRUE(nodes_[id]->store->Put(Record(i)).ok());
  }

  absl::StatusOr<BulkJoinResult> Join(const std::string& id, BulkJoinOptions options = {}) {
    options.fsync = false;
    return JoinIfEmpty(nodes_[id]->config, nodes_[id]->store_options, options);
  }

  bool Eventually(const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  testing::TempDir dir_;
  testing::TestCluster cluster_;
  std::map<std::string, std::unique_ptr<TestNode>> nodes_;
};

TEST_F(BulkJoinGrpcTest, AFreshNodeTakesAPeersWholeStoreThenReplicatesAsUsual) {
  Run("a");
  Run("b");
  Fill("a", 1, 3000);  // about 5 MB: several chunks
  ASSERT_TRUE(Eventually([&] { return nodes_["b"]->store->CountRecords().value_or(0) == 3000; }));
  std::vector<std::string> progress;
  BulkJoinOptions options;
  options.progress_every = std::chrono::milliseconds(0);
  options.progress = [&](const std::string& peer, int64_t written, int64_t total) {
    progress.push_back(peer + ":" + std::to_string(written) + "/" + std::to_string(total));
  };
  auto joined = Join("c", options);
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_EQ(joined->outcome, BulkJoinResult::Outcome::kJoined);
  EXPECT_EQ(joined->peer, "a");  // the first configured peer
  EXPECT_EQ(joined->records, 3000);
  EXPECT_TRUE(joined->failures.empty());
  EXPECT_GE(progress.size(), 3u);
  EXPECT_EQ(progress.back(), "a:3000/3000");
  EXPECT_FALSE(std::filesystem::exists(store::JoinFilePath(nodes_["c"]->store_options.path)));

  Run("c");
  auto& c = *nodes_["c"]->store;
  EXPECT_EQ(c.CountRecords().value_or(0), 3000);
  auto a_vector = nodes_["a"]->store->GetVersionVector();
  ASSERT_TRUE(a_vector.ok());
  EXPECT_EQ(c.GetVersionVector().value_or(store::VersionVector{}), *a_vector);
  // Afterwards it replicates like any node: a write on a reaches it, and one on it reaches b.
  Fill("a", 5000, 1);
  EXPECT_TRUE(Eventually([&] { return c.Get(kCa, 5000).value_or(std::nullopt).has_value(); }));
  auto put = c.Put(Record(6000));
  ASSERT_TRUE(put.ok());
  EXPECT_EQ(put->sequence, 1u);
  EXPECT_TRUE(Eventually([&] { return nodes_["b"]->store->Get(kCa, 6000).value_or(std::nullopt).has_value(); }));
  // A restart finds its store not empty: no second join.
  nodes_["c"].reset();
  nodes_["c"] = std::make_unique<TestNode>();
  nodes_["c"]->config.node_id = "c";
  nodes_["c"]->config.cluster = cluster_.ConfigFor("c");
  nodes_["c"]->store_options.path = dir_.path() / "c.db";
  nodes_["c"]->store_options.node_id = "c";
  nodes_["c"]->store_options.fsync = false;
  auto again = Join("c");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->outcome, BulkJoinResult::Outcome::kNotEmpty);
}

TEST_F(BulkJoinGrpcTest, APeerWithoutTheRpcIsPassedOverAndWithNoneTheStoreIsLeftAsItWas) {
  Run("a", std::make_unique<OldReplicationService>());
  Run("b");
  Fill("b", 1, 50);
  auto joined = Join("c");
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_EQ(joined->outcome, BulkJoinResult::Outcome::kJoined);
  EXPECT_EQ(joined->peer, "b");
  EXPECT_TRUE(joined->peer_without_join);
  ASSERT_EQ(joined->failures.size(), 1u);
  EXPECT_NE(joined->failures[0].find("a: has no bulk join"), std::string::npos) << joined->failures[0];

  // Every peer an older adcsc: no join, no file; the node starts empty and its replicator
  // copies snapshot pages (the path before the bulk join).
  nodes_["b"].reset();
  nodes_["b"] = std::make_unique<TestNode>();
  nodes_["b"]->config.node_id = "b";
  nodes_["b"]->config.cluster = cluster_.ConfigFor("b");
  nodes_["b"]->store_options.path = dir_.path() / "b2.db";
  nodes_["b"]->store_options.node_id = "b";
  nodes_["b"]->store_options.fsync = false;
  Run("b", std::make_unique<OldReplicationService>());
  nodes_["c"]->store_options.path = dir_.path() / "c2.db";
  auto none = Join("c");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->outcome, BulkJoinResult::Outcome::kNoPeer);
  EXPECT_TRUE(none->peer_without_join);
  EXPECT_EQ(none->failures.size(), 2u);
  EXPECT_FALSE(std::filesystem::exists(dir_.path() / "c2.db"));
  EXPECT_FALSE(std::filesystem::exists(store::JoinFilePath(dir_.path() / "c2.db")));
}

TEST_F(BulkJoinGrpcTest, DownEmptyAndNotEmpty) {
  // Nobody listens: every peer fails at once, and the start goes on.
  const auto start = std::chrono::steady_clock::now();
  auto down = Join("c");
  ASSERT_TRUE(down.ok()) << down.status();
  EXPECT_EQ(down->outcome, BulkJoinResult::Outcome::kNoPeer);
  EXPECT_EQ(down->failures.size(), 2u);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));

  // A new cluster: the peers hold nothing either; the empty store stays as it was.
  Run("a");
  Run("b");
  { ASSERT_TRUE(store::RequestStore::Open(nodes_["c"]->store_options).ok()); }
  auto nothing = Join("c");
  ASSERT_TRUE(nothing.ok()) << nothing.status();
  EXPECT_EQ(nothing->outcome, BulkJoinResult::Outcome::kNothing);
  EXPECT_TRUE(std::filesystem::exists(nodes_["c"]->store_options.path));

  // A store that holds anything is never replaced.
  Fill("a", 1, 10);
  {
    auto c = store::RequestStore::Open(nodes_["c"]->store_options);
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE((*c)->Put(Record(77)).ok());
  }
  auto kept = Join("c");
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(kept->outcome, BulkJoinResult::Outcome::kNotEmpty);
  auto c = store::RequestStore::Open(nodes_["c"]->store_options);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ((*c)->CountRecords().value_or(0), 1);
}

TEST_F(BulkJoinGrpcTest, APeerThatFallsSilentMidStreamIsGivenUpAndItsPartDiscarded) {
  Run("a", std::make_unique<StallingService>());
  Run("b");
  Fill("b", 1, 20);
  BulkJoinOptions options;
  options.idle_timeout = std::chrono::milliseconds(300);
  auto joined = Join("c", options);
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_EQ(joined->outcome, BulkJoinResult::Outcome::kJoined);
  EXPECT_EQ(joined->peer, "b");
  ASSERT_EQ(joined->failures.size(), 1u);
  EXPECT_NE(joined->failures[0].find("nothing received for 300 ms"), std::string::npos) << joined->failures[0];
  Run("c");
  EXPECT_EQ(nodes_["c"]->store->CountRecords().value_or(0), 20);  // none of a's one record
  auto vector = nodes_["c"]->store->GetVersionVector();
  ASSERT_TRUE(vector.ok());
  EXPECT_EQ(vector->count("stall"), 0u);
}

TEST_F(BulkJoinGrpcTest, ANodeServesOneJoinAtATime) {
  Run("a");
  Fill("a", 1, 5);
  absl::Status second;
  absl::Status first = nodes_["a"]->replicator->HandleJoin(
      "c", 1 << 20,
      [&](const store::JoinHeader&) {
        second = nodes_["a"]->replicator->HandleJoin(
            "d", 1 << 20, [](const store::JoinHeader&) { return absl::OkStatus(); },
            [](store::JoinBatch&) { return absl::OkStatus(); });
        return absl::OkStatus();
      },
      [](store::JoinBatch&) { return absl::OkStatus(); });
  EXPECT_TRUE(first.ok()) << first;
  EXPECT_EQ(second.code(), absl::StatusCode::kResourceExhausted) << second;
  EXPECT_NE(second.message().find("serving a bulk join to c"), std::string::npos) << second;
  // Once it ended, the next one is served.
  EXPECT_TRUE(nodes_["a"]
                  ->replicator
                  ->HandleJoin(
                      "d", 1 << 20, [](const store::JoinHeader&) { return absl::OkStatus(); },
                      [](store::JoinBatch&) { return absl::OkStatus(); })
                  .ok());
}

}  // namespace
}  // namespace adcsc::cluster
