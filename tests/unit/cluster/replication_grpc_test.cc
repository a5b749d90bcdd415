// Three replicators in one process, talking real gRPC with mutual TLS on loopback: a write
// reaches its quorum and every node; with one node down the quorum of two still holds; a
// record a peer missed arrives by anti-entropy; a cut-off node cannot reach its quorum.
#include "node/cluster/replication_grpc.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>

#include "node/cluster/tls.h"
#include "node/pki/cluster.h"
#include "store/clock.h"
#include "tests/testing/temp_dir.h"
#include "tests/unit/cluster/cluster_fixture.h"

namespace adcsc::cluster {
namespace {

struct TestNode {
  std::string id;
  node::ClusterConfig config;
  std::unique_ptr<store::RequestStore> store;
  std::unique_ptr<GrpcPeerTransport> transport;
  std::unique_ptr<TimerScheduler> scheduler;
  std::unique_ptr<store::Replicator> replicator;
  std::unique_ptr<ReplicationServer> service;
  std::unique_ptr<grpc::Server> server;

  void StopServer() {
    if (server) server->Shutdown(std::chrono::system_clock::now());
    server.reset();
  }
  ~TestNode() {
    StopServer();
    replicator.reset();
    scheduler.reset();
    transport.reset();
  }
};

class ReplicationGrpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto cluster = testing::TestCluster::Make(dir_.path(), {"a", "b", "c"});
    for (const auto& id : cluster.ids) {
      auto n = std::make_unique<TestNode>();
      n->id = id;
      n->config = cluster.ConfigFor(id);
      store::StoreOptions so;
      so.path = dir_.path() / (id + ".db");
      so.node_id = id;
      so.fsync = false;
      n->store = std::move(*store::RequestStore::Open(so));
      n->transport = std::move(*GrpcPeerTransport::Create(n->config, id, std::chrono::seconds(5)));
      n->scheduler = std::make_unique<TimerScheduler>();
      store::ReplicatorOptions ro;
      for (const auto& p : n->config.peers) ro.peers.push_back(p.id);
      ro.quorum_timeout_ms = 3000;
      ro.anti_entropy_interval_ms = 100;
      auto r =
          store::Replicator::Create(n->store.get(), n->transport.get(), n->scheduler.get(), SystemClock::Default(), ro);
      ASSERT_TRUE(r.ok()) << r.status();
      n->replicator = std::move(*r);
      n->service = std::make_unique<ReplicationServer>(n->replicator.get(), &n->config, id, n->transport.get());
      grpc::ServerBuilder builder;
      builder.AddListeningPort("127.0.0.1:" + std::to_string(cluster.ports.at(id)), *MakeServerCredentials(n->config));
      builder.RegisterService(n->service.get());
      n->server = builder.BuildAndStart();
      ASSERT_NE(n->server, nullptr);
      nodes_[id] = std::move(n);
    }
    for (auto& [id, n] : nodes_) n->replicator->Start();
  }

  store::RequestRecord Record(uint32_t id) {
    store::RequestRecord r;
    r.set_ca_config("ca1.example.test\\Example-CA");
    r.set_request_id(id);
    r.set_status(store::v1::RECORD_STATUS_ISSUED);
    r.set_disposition(3);
    r.set_certificate_der("cert");
    return r;
  }

  absl::StatusOr<store::ReplicationOutcome> WriteOn(const std::string& node, uint32_t id) {
    auto put = nodes_[node]->store->Put(Record(id));
    if (!put.ok()) return put.status();
    std::promise<absl::StatusOr<store::ReplicationOutcome>> done;
    nodes_[node]->replicator->Replicate(*put,
                                        [&done](absl::StatusOr<store::ReplicationOutcome> o) { done.set_value(o); });
    return done.get_future().get();
  }

  bool Has(const std::string& node, uint32_t id) {
    auto r = nodes_[node]->store->Get("ca1.example.test\\Example-CA", id);
    return r.ok() && r->has_value();
  }

  // Polls until `node` has record `id` or 10 s pass.
  bool Eventually(const std::string& node, uint32_t id) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (Has(node, id)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  testing::TempDir dir_;
  std::map<std::string, std::unique_ptr<TestNode>> nodes_;
};

TEST_F(ReplicationGrpcTest, AWriteReachesItsQuorumAndEveryNode) {
  auto outcome = WriteOn("a", 1);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_TRUE(outcome->quorum_reached);
  EXPECT_FALSE(outcome->acked_by.empty());
  EXPECT_TRUE(Eventually("b", 1));
  EXPECT_TRUE(Eventually("c", 1));
}

TEST_F(ReplicationGrpcTest, WithOneNodeDownTheQuorumOfTwoStillHolds) {
  nodes_["c"]->StopServer();
  auto outcome = WriteOn("a", 2);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_TRUE(outcome->quorum_reached);
  EXPECT_EQ(outcome->acked_by, std::vector<std::string>{"b"});
  EXPECT_TRUE(Eventually("b", 2));
}

TEST_F(ReplicationGrpcTest, ARecordAPeerMissedArrivesByAntiEntropy) {
  // Written on b without being pushed: only anti-entropy can carry it.
  ASSERT_TRUE(nodes_["b"]->store->Put(Record(3)).ok());
  EXPECT_TRUE(Eventually("a", 3));
  EXPECT_TRUE(Eventually("c", 3));
}

TEST_F(ReplicationGrpcTest, ACutOffNodeServesUnderReplicatedByDefaultPolicy) {
  nodes_["a"]->transport->SetCutOff(true);
  auto outcome = WriteOn("a", 4);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_FALSE(outcome->quorum_reached) << "no peer can hold it while a is cut off";
  EXPECT_FALSE(Has("b", 4));
  nodes_["a"]->transport->SetCutOff(false);
  EXPECT_TRUE(Eventually("b", 4)) << "healed: anti-entropy copies it";
  auto status = nodes_["a"]->replicator->Status();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->under_replicated_writes, 1u);
}

}  // namespace
}  // namespace adcsc::cluster
