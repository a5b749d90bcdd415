// Node-to-node mutual TLS on loopback: a peer with its own certificate gets through and is
// identified; a server that is not the node the client meant, a client from another
// cluster's CA, and a client without TLS are all refused.
#include "node/cluster/tls.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "adcsc/cluster/v1/cluster.grpc.pb.h"
#include "node/pki/cluster.h"
#include "node/pki/keys.h"
#include "tests/testing/temp_dir.h"

namespace adcsc::cluster {
namespace {

namespace v1 = adcsc::cluster::v1;

// Answers Info with the ID of the peer that called (or PERMISSION_DENIED).
class InfoService final : public v1::Peer::Service {
 public:
  explicit InfoService(node::ClusterConfig config) : config_(std::move(config)) {}
  grpc::Status Info(grpc::ServerContext* context, const v1::NodeInfoRequest*, v1::NodeInfo* reply) override {
    auto peer = AuthenticatedPeer(*context, config_);
    if (!peer.ok()) return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, std::string(peer.status().message()));
    reply->mutable_from()->set_node_id(*peer);
    return grpc::Status::OK;
  }

 private:
  node::ClusterConfig config_;
};

class ClusterTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(pki::InitClusterPki({"prod", {"a", "b", "c"}, dir_.path() / "prod"}).ok());
    ASSERT_TRUE(pki::InitClusterPki({"other", {"b"}, dir_.path() / "other"}).ok());
  }

  node::ClusterConfig ConfigFor(const std::string& cluster, const std::string& node) {
    node::ClusterConfig c;
    c.enabled = true;
    c.id = cluster;
    c.ca_file = dir_.path() / cluster / pki::kClusterCaCertFile;
    c.cert_file = dir_.path() / cluster / node / pki::kNodeCertFile;
    c.key_file = dir_.path() / cluster / node / pki::kNodeKeyFile;
    for (const char* p : {"a", "b", "c"}) {
      if (node != p) c.peers.push_back({p, "127.0.0.1:0"});
    }
    return c;
  }

  // Starts node `a` of "prod"; returns its address.
  std::string StartServer() {
    server_config_ = ConfigFor("prod", "a");
    service_ = std::make_unique<InfoService>(server_config_);
    auto creds = MakeServerCredentials(server_config_);
    EXPECT_TRUE(creds.ok()) << creds.status();
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", *creds, &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    return "127.0.0.1:" + std::to_string(port);
  }

  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  grpc::Status CallInfo(std::shared_ptr<grpc::Channel> channel, v1::NodeInfo* reply) {
    auto stub = v1::Peer::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    return stub->Info(&ctx, v1::NodeInfoRequest(), reply);
  }

  testing::TempDir dir_;
  node::ClusterConfig server_config_;
  std::unique_ptr<InfoService> service_;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(ClusterTlsTest, APeerIsIdentifiedByItsCertificate) {
  const std::string address = StartServer();
  auto channel = MakePeerChannel(ConfigFor("prod", "b"), {"a", address});
  ASSERT_TRUE(channel.ok()) << channel.status();
  v1::NodeInfo reply;
  grpc::Status s = CallInfo(*channel, &reply);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(reply.from().node_id(), "b");
}

TEST_F(ClusterTlsTest, TheServerMustBeTheNodeTheClientMeant) {
  const std::string address = StartServer();                               // node a answers at this address
  auto channel = MakePeerChannel(ConfigFor("prod", "b"), {"c", address});  // b expects c there
  ASSERT_TRUE(channel.ok());
  v1::NodeInfo reply;
  grpc::Status s = CallInfo(*channel, &reply);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
}

TEST_F(ClusterTlsTest, ANodeOfAnotherClusterIsRefused) {
  const std::string address = StartServer();
  node::ClusterConfig other = ConfigFor("other", "b");
  other.ca_file = dir_.path() / "prod" / pki::kClusterCaCertFile;  // even trusting prod's CA
  other.id = "prod";
  auto channel = MakePeerChannel(other, {"a", address});
  ASSERT_TRUE(channel.ok());
  v1::NodeInfo reply;
  grpc::Status s = CallInfo(*channel, &reply);
  EXPECT_FALSE(s.ok()) << "a client certificate from another CA must not get in";
}

TEST_F(ClusterTlsTest, PlaintextIsRefused) {
  const std::string address = StartServer();
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  v1::NodeInfo reply;
  grpc::Status s = CallInfo(channel, &reply);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
}

// The cluster CA and a node's identity rotate on disk, without a restart: a bundle of the old
// and the new CA first (a node of the new CA gets in), then the node's new certificate (a
// client trusting only the new CA accepts it). Files are replaced whole (write, rename), as
// docs/operations.md says.
TEST_F(ClusterTlsTest, FilesReplacedOnDiskServeNewHandshakesWithoutARestart) {
  ASSERT_TRUE(pki::InitClusterPki({"prod", {"a", "b"}, dir_.path() / "next"}).ok());
  const std::string address = StartServer();
  node::ClusterConfig b_next = ConfigFor("prod", "b");
  b_next.ca_file = dir_.path() / "next" / pki::kClusterCaCertFile;
  b_next.cert_file = dir_.path() / "next" / "b" / pki::kNodeCertFile;
  b_next.key_file = dir_.path() / "next" / "b" / pki::kNodeKeyFile;
  auto read = [](const std::filesystem::path& p) { return *pki::ReadFileToString(p); };
  auto replace = [](const std::filesystem::path& p, const std::string& text) {
    const std::filesystem::path tmp = p.string() + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << text;
    }
    std::filesystem::rename(tmp, p);
  };
  auto call_until_ok = [&](const node::ClusterConfig& client) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    grpc::Status s;
    do {
      auto channel = MakePeerChannel(client, {"a", address});
      EXPECT_TRUE(channel.ok());
      v1::NodeInfo reply;
      s = CallInfo(*channel, &reply);
    } while (!s.ok() && std::chrono::steady_clock::now() < deadline);
    return s;
  };
  // b with the next CA's certificate, trusting both CAs: refused until a trusts the next CA.
  b_next.ca_file = dir_.path() / "both.pem";
  const std::string both =
      read(dir_.path() / "prod" / pki::kClusterCaCertFile) + read(dir_.path() / "next" / pki::kClusterCaCertFile);
  replace(b_next.ca_file, both);
  {
    auto channel = MakePeerChannel(b_next, {"a", address});
    ASSERT_TRUE(channel.ok());
    v1::NodeInfo reply;
    EXPECT_FALSE(CallInfo(*channel, &reply).ok()) << "a does not trust the next CA yet";
  }
  replace(server_config_.ca_file, both);
  grpc::Status s = call_until_ok(b_next);
  EXPECT_TRUE(s.ok()) << "a took the CA bundle from disk: " << s.error_message();

  // a's own certificate from the next CA: a client trusting only the next CA gets through.
  node::ClusterConfig b_only_next = b_next;
  b_only_next.ca_file = dir_.path() / "next" / pki::kClusterCaCertFile;
  replace(server_config_.cert_file, read(dir_.path() / "next" / "a" / pki::kNodeCertFile));
  replace(server_config_.key_file, read(dir_.path() / "next" / "a" / pki::kNodeKeyFile));
  s = call_until_ok(b_only_next);
  EXPECT_TRUE(s.ok()) << "a presents its new certificate: " << s.error_message();
}

TEST_F(ClusterTlsTest, MissingFilesAreNamed) {
  node::ClusterConfig c = ConfigFor("prod", "a");
  c.key_file = dir_.path() / "nope.pem";
  auto creds = MakeServerCredentials(c);
  ASSERT_FALSE(creds.ok());
  EXPECT_NE(creds.status().message().find("cluster.key_file"), std::string_view::npos) << creds.status();
}

}  // namespace
}  // namespace adcsc::cluster
