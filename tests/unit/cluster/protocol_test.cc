// Cluster protocol versioning: which ranges get along, the operator's message, the once-per-
// change notices, and over real gRPC with mutual TLS: a node stamps its calls and answers,
// refuses a peer of an unreadable protocol with that message, learns a peer's range from an
// answer (an error-only one too), and takes a peer that sends none (adcsc 0.1.0) as protocol 1.
#include "node/cluster/protocol.h"

#include <gtest/gtest.h>

#include "adcsc/cluster/v1/cluster.grpc.pb.h"
#include "node/cluster/tls.h"
#include "node/pki/cluster.h"
#include "tests/testing/temp_dir.h"

namespace adcsc::cluster {
namespace {

namespace v1 = adcsc::cluster::v1;

constexpr ProtocolRange kThisBuild{};
constexpr ProtocolRange kUnversioned{.speaks = 1, .oldest = 1};  // adcsc 0.1.0

TEST(ClusterProtocol, AdjacentReleasesGetAlongAndDistantOnesDoNot) {
  EXPECT_EQ(kThisBuild.speaks, kClusterProtocol);
  EXPECT_TRUE(Compatible(kThisBuild, kThisBuild));
  EXPECT_TRUE(Compatible(kThisBuild, kUnversioned));
  // A next release that still reads this one's protocol, and one that no longer does.
  EXPECT_TRUE(Compatible(kThisBuild, {.speaks = kClusterProtocol + 1, .oldest = kClusterProtocol}));
  EXPECT_FALSE(Compatible(kThisBuild, {.speaks = kClusterProtocol + 1, .oldest = kClusterProtocol + 1}));
  EXPECT_FALSE(Compatible(kThisBuild, {.speaks = 9, .oldest = 9}));
  // Symmetric: both sides reach the same verdict.
  for (const ProtocolRange& a : {kUnversioned, kThisBuild, ProtocolRange{.speaks = 3, .oldest = 3}}) {
    for (const ProtocolRange& b : {kUnversioned, kThisBuild, ProtocolRange{.speaks = 9, .oldest = 2}}) {
      EXPECT_EQ(Compatible(a, b), Compatible(b, a)) << a.ToMetadata() << " vs " << b.ToMetadata();
    }
  }
}

TEST(ClusterProtocol, RangesParseFromMetadata) {
  auto r = ParseProtocolRange("3;2");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, (ProtocolRange{.speaks = 3, .oldest = 2}));
  EXPECT_EQ(r->ToMetadata(), "3;2");
  r = ParseProtocolRange("4");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, (ProtocolRange{.speaks = 4, .oldest = 4}));
  for (const char* bad : {"", "x", "0", "2;3", "2;1;0", "2;", "-1"}) {
    EXPECT_FALSE(ParseProtocolRange(bad).ok()) << bad;
  }
}

TEST(ClusterProtocol, TheRefusalSaysWhichNodeToUpgradeOrRollBack) {
  const std::string newer = RefusalMessage("node-a", {.speaks = 2, .oldest = 1}, "node-b", {.speaks = 4, .oldest = 3});
  EXPECT_NE(newer.find("peer node-b speaks cluster protocol 4 and reads 3..4; this node (node-a, adcsc "),
            std::string::npos)
      << newer;
  EXPECT_NE(newer.find("speaks cluster protocol 2 and reads 1..2"), std::string::npos) << newer;
  EXPECT_NE(newer.find("upgrade node-a to a release that reads protocol 4, or roll node-b back to one that reads "
                       "protocol 2"),
            std::string::npos)
      << newer;
  const std::string older = RefusalMessage("node-a", {.speaks = 4, .oldest = 3}, "node-b", {.speaks = 2, .oldest = 1});
  EXPECT_NE(older.find("upgrade node-b to a release that reads protocol 4, or roll node-a back"), std::string::npos)
      << older;
}

TEST(ClusterProtocol, ARefusalIsNotedOncePerChangeNotPerCall) {
  PeerProtocols protocols("node-a", kThisBuild);
  std::vector<std::string> notices;
  protocols.SetOnChange([&](const std::string& peer, const ProtocolRange& theirs, const std::string& message) {
    notices.push_back(peer + " " + theirs.ToMetadata() + (message.empty() ? " accepted" : " refused"));
  });
  protocols.SawAnswer("node-b", std::nullopt);  // adcsc 0.1.0 sends nothing: protocol 1, readable
  EXPECT_TRUE(protocols.AdmitOutgoing("node-b").ok());
  ASSERT_TRUE(protocols.Get("node-b").has_value());
  EXPECT_EQ(protocols.Get("node-b")->range, kUnversioned);
  for (int i = 0; i < 3; ++i) protocols.SawAnswer("node-b", "9;9");
  const absl::Status refused = protocols.AdmitOutgoing("node-b");
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.message().find("peer node-b speaks cluster protocol 9"), std::string_view::npos) << refused;
  EXPECT_EQ(protocols.Get("node-b")->refused_calls, 1u);
  protocols.SawAnswer("node-b", "2;1");  // rolled back
  EXPECT_TRUE(protocols.AdmitOutgoing("node-b").ok());
  EXPECT_TRUE(protocols.AdmitOutgoing("node-c").ok());  // never heard of: not refused
  EXPECT_EQ(notices, (std::vector<std::string>{"node-b 9;9 refused", "node-b 2;1 accepted"}));
  protocols.SawAnswer("node-b", "garbage");  // a range nothing reads
  EXPECT_FALSE(protocols.AdmitOutgoing("node-b").ok());
}

// Node "a" of cluster "prod" answering Info: it stamps its answers with `range` and, when
// asked to check, admits each caller through its own PeerProtocols (a node of this build);
// without a range it is a node from before the versioning (no stamp, no check).
class VersionedInfo final : public v1::Peer::Service {
 public:
  VersionedInfo(node::ClusterConfig config, std::optional<ProtocolRange> range, bool check)
      : config_(std::move(config)), protocols_("a", range.value_or(kThisBuild)), check_(check) {}
  grpc::Status Info(grpc::ServerContext* context, const v1::NodeInfoRequest*, v1::NodeInfo* reply) override {
    auto peer = AuthenticatedPeer(*context, config_);
    if (!peer.ok()) return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, std::string(peer.status().message()));
    if (check_) {
      if (auto s = protocols_.AdmitIncoming(*context, *peer); !s.ok()) {
        return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, std::string(s.message()));
      }
    }
    reply->mutable_from()->set_node_id(*peer);
    return grpc::Status::OK;
  }
  PeerProtocols& protocols() { return protocols_; }

 private:
  node::ClusterConfig config_;
  PeerProtocols protocols_;
  bool check_;
};

class ProtocolOverGrpcTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(pki::InitClusterPki({"prod", {"a", "b"}, dir_.path() / "prod"}).ok()); }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  node::ClusterConfig ConfigFor(const std::string& node, const std::string& peer) {
    node::ClusterConfig c;
    c.enabled = true;
    c.id = "prod";
    c.ca_file = dir_.path() / "prod" / pki::kClusterCaCertFile;
    c.cert_file = dir_.path() / "prod" / node / pki::kNodeCertFile;
    c.key_file = dir_.path() / "prod" / node / pki::kNodeKeyFile;
    c.peers.push_back({peer, "127.0.0.1:0"});
    return c;
  }

  // Starts node a; returns its address.
  std::string Start(std::optional<ProtocolRange> range, bool check) {
    service_ = std::make_unique<VersionedInfo>(ConfigFor("a", "b"), range, check);
    auto creds = MakeServerCredentials(ConfigFor("a", "b"));
    EXPECT_TRUE(creds.ok()) << creds.status();
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", *creds, &port);
    builder.RegisterService(service_.get());
    if (range.has_value()) {
      std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
      interceptors.push_back(PeerProtocols::ServerInterceptor(*range));
      builder.experimental().SetInterceptorCreators(std::move(interceptors));
    }
    server_ = builder.BuildAndStart();
    return "127.0.0.1:" + std::to_string(port);
  }

  // Node b (this build) calls a's Info, learning a's range into client_.
  grpc::Status CallFromB(const std::string& address) {
    auto channel = MakePeerChannel(ConfigFor("b", "a"), {"a", address}, client_);
    EXPECT_TRUE(channel.ok()) << channel.status();
    auto stub = v1::Peer::NewStub(*channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::NodeInfo reply;
    return stub->Info(&ctx, v1::NodeInfoRequest(), &reply);
  }

  testing::TempDir dir_;
  std::unique_ptr<VersionedInfo> service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<PeerProtocols> client_ = std::make_shared<PeerProtocols>("b", LocalProtocolRange());
};

TEST_F(ProtocolOverGrpcTest, NodesOfThisBuildTellEachOtherTheirRange) {
  const std::string address = Start(kThisBuild, /*check=*/true);
  grpc::Status s = CallFromB(address);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_TRUE(client_->Get("a").has_value());
  EXPECT_EQ(client_->Get("a")->range, kThisBuild);
  ASSERT_TRUE(service_->protocols().Get("b").has_value());
  EXPECT_EQ(service_->protocols().Get("b")->range, kThisBuild);  // b's request carried it
}

TEST_F(ProtocolOverGrpcTest, ANodeThatSendsNoRangeSpeaksProtocolOne) {
  const std::string address = Start(std::nullopt, /*check=*/false);  // as adcsc 0.1.0 answers
  grpc::Status s = CallFromB(address);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(client_->Get("a")->range, kUnversioned);
  EXPECT_TRUE(client_->AdmitOutgoing("a").ok());
}

TEST_F(ProtocolOverGrpcTest, ANodeOfAnUnreadableProtocolRefusesAndIsRefused) {
  const std::string address = Start(ProtocolRange{.speaks = 9, .oldest = 9}, /*check=*/true);
  grpc::Status s = CallFromB(address);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  // a's own refusal of b, word for word.
  EXPECT_NE(s.error_message().find("peer b speaks cluster protocol " + std::to_string(kClusterProtocol)),
            std::string::npos)
      << s.error_message();
  EXPECT_NE(s.error_message().find("this node (a, adcsc "), std::string::npos) << s.error_message();
  // b learnt a's range from the error's trailers, and refuses a in turn.
  ASSERT_TRUE(client_->Get("a").has_value());
  EXPECT_EQ(client_->Get("a")->range, (ProtocolRange{.speaks = 9, .oldest = 9}));
  EXPECT_EQ(client_->AdmitOutgoing("a").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(service_->protocols().Get("b")->refused_calls, 1u);
}

TEST_F(ProtocolOverGrpcTest, AnAnswerInAnUnreadableProtocolIsNotUsed) {
  // A node that does not check its callers (it reads b, say) but answers in protocol 9.
  const std::string address = Start(ProtocolRange{.speaks = 9, .oldest = 9}, /*check=*/false);
  grpc::Status s = CallFromB(address);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("peer a speaks cluster protocol 9 and reads 9..9; this node (b, adcsc "),
            std::string::npos)
      << s.error_message();
}

}  // namespace
}  // namespace adcsc::cluster
