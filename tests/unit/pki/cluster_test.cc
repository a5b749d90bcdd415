// The cluster PKI: node certificates chain to the cluster CA and name their node and
// cluster; the peer check accepts exactly the expected node; existing files are protected.
#include "node/pki/cluster.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "node/pki/x509.h"
#include "tests/testing/temp_dir.h"

namespace adcsc::pki {
namespace {

X509Ptr Load(const std::filesystem::path& p) { return std::move(*CertFromPem(*ReadFileToString(p))); }

TEST(ClusterPki, NodeCertificatesNameTheirNodeAndChainToTheClusterCa) {
  testing::TempDir dir;
  ClusterPkiOptions o{"prod", {"a", "b", "c"}, dir.path() / "cluster"};
  auto r = InitClusterPki(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->reused_ca);
  EXPECT_EQ(r->files.size(), 2u + 3u * 2u);
  X509Ptr ca = Load(dir.path() / "cluster" / kClusterCaCertFile);
  for (const char* id : {"a", "b", "c"}) {
    X509Ptr node = Load(dir.path() / "cluster" / id / kNodeCertFile);
    EXPECT_TRUE(VerifyChain(node.get(), {ca.get()}).ok());
    EXPECT_TRUE(CheckPeerIdentity(node.get(), "prod", id).ok());
    EXPECT_EQ(testing::FileMode(dir.path() / "cluster" / id / kNodeKeyFile), 0600);
  }
  EXPECT_EQ(testing::FileMode(dir.path() / "cluster" / kClusterCaKeyFile), 0600);
  X509Ptr a = Load(dir.path() / "cluster" / "a" / kNodeCertFile);
  auto wrong_node = CheckPeerIdentity(a.get(), "prod", "b");
  EXPECT_TRUE(absl::IsPermissionDenied(wrong_node));
  EXPECT_NE(wrong_node.message().find("a.prod.adcsc-cluster"), std::string_view::npos) << wrong_node;
  EXPECT_TRUE(absl::IsPermissionDenied(CheckPeerIdentity(a.get(), "staging", "a"))) << "another cluster";
}

TEST(ClusterPki, AddingANodeLaterReusesTheCaAndExistingFilesAreProtected) {
  testing::TempDir dir;
  const auto out = dir.path() / "cluster";
  ASSERT_TRUE(InitClusterPki({"prod", {"a", "b"}, out}).ok());
  auto again = InitClusterPki({"prod", {"a"}, out});
  ASSERT_FALSE(again.ok());
  EXPECT_TRUE(absl::IsAlreadyExists(again.status()));
  EXPECT_NE(again.status().message().find("--force"), std::string_view::npos);
  auto added = InitClusterPki({"prod", {"c"}, out});
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_TRUE(added->reused_ca);
  X509Ptr ca = Load(out / kClusterCaCertFile);
  X509Ptr c = Load(out / "c" / kNodeCertFile);
  EXPECT_TRUE(VerifyChain(c.get(), {ca.get()}).ok()) << "signed by the same CA as a and b";
}

TEST(ClusterPki, RejectsIdsThatCannotBeCertificateNames) {
  testing::TempDir dir;
  for (const std::string bad : {"A", "node_1", "-a", "a.b", ""}) {
    auto r = InitClusterPki({"prod", {bad}, dir.path()});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << bad;
  }
  EXPECT_FALSE(InitClusterPki({"Prod", {"a"}, dir.path()}).ok());
  EXPECT_FALSE(InitClusterPki({"prod", {}, dir.path()}).ok());
}

}  // namespace
}  // namespace adcsc::pki
