// Three ClusterRuntimes in one process over real gRPC with mutual TLS: the Peer service's
// lookups and forwarded retrieves, through the PeerDirectory the API uses. Nodes a and b run
// as one CA identity, c as another; anti-entropy is slowed down so a record written straight
// into one store stays there, as when replication is behind.
#include "node/cluster/peer_directory.h"

#include <gtest/gtest.h>

#include "node/ca/hresult.h"
#include "node/cluster/runtime.h"
#include "node/cluster/tls.h"
#include "node/pki/cluster.h"
#include "node/pki/csr.h"
#include "node/pki/encoding.h"
#include "node/pki/keys.h"
#include "store/clock.h"
#include "tests/testing/fake_ca_backend.h"
#include "tests/testing/freezable_proxy.h"
#include "tests/testing/temp_dir.h"
#include "tests/unit/cluster/cluster_fixture.h"

namespace adcsc::cluster {
namespace {

namespace v1 = adcsc::cluster::v1;

constexpr char kCaConfig[] = "ca1.example.test\\Example-CA";
constexpr size_t kAllAnswers = 99;  // more grants than there are peers: wait for every answer
const ca::CaTarget kTarget{"ca1.example.test", "Example-CA"};

struct TestNode {
  node::Config config;
  std::unique_ptr<store::RequestStore> store;
  testing::FakeCaBackend ca;
  std::unique_ptr<node::EventLog> log;
  std::unique_ptr<node::ApiService> api;
  std::unique_ptr<ClusterRuntime> runtime;
};

class PeerDirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto cluster = testing::TestCluster::Make(dir_.path(), {"a", "b", "c"});
    for (const auto& id : cluster.ids) {
      auto n = std::make_unique<TestNode>();
      node::Config& c = n->config;
      c.node_id = id;
      c.ca.identity = id == "c" ? "EXAMPLE\\svc-two" : "EXAMPLE\\svc-one";
      c.ca.allow.emplace_back();
      c.ca.allow.back().dc = kTarget.dc;
      c.ca.allow.back().ca = kTarget.ca;
      c.cluster = cluster.ConfigFor(id);
      c.cluster.anti_entropy_interval = std::chrono::hours(1);
      c.cluster.lookup_timeout = std::chrono::milliseconds(2000);
      c.ca.submit_lease = std::chrono::milliseconds(1000);  // also the restart grace
      store::StoreOptions so;
      so.path = dir_.path() / (id + ".db");
      so.node_id = id;
      so.fsync = false;
      n->store = std::move(*store::RequestStore::Open(so));
      n->log = node::EventLog::Stderr(id, node::LogLevel::kError);
      auto rt = ClusterRuntime::Create(n->config, n->store.get());
      ASSERT_TRUE(rt.ok()) << rt.status();
      n->runtime = std::move(*rt);
      n->api =
          std::make_unique<node::ApiService>(n->config, &n->ca, n->store.get(), n->log.get(), SystemClock::Default());
      ASSERT_TRUE(n->runtime->Serve(n->api.get(), nullptr).ok());
      nodes_[id] = std::move(n);
    }
    // Each node started before the others listened, so its first connections failed; wait
    // (bounded) until every node has heard from every peer.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (auto& [id, n] : nodes_) {
      for (;;) {
        n->runtime->directory().Refresh();
        const auto peers = n->runtime->directory().Peers();
        if (std::all_of(peers.begin(), peers.end(), [](const PeerView& p) { return !p.ca_identity.empty(); })) break;
        ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "node " << id << " never reached all its peers";
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
  }

  static store::RequestRecord Record(uint32_t id, store::RecordStatus status, const std::string& requester) {
    store::RequestRecord r;
    r.set_ca_config(kCaConfig);
    r.set_request_id(id);
    r.set_status(status);
    r.set_disposition(status == store::v1::RECORD_STATUS_ISSUED ? 3 : 5);
    if (status == store::v1::RECORD_STATUS_ISSUED) r.set_certificate_der("cert");
    r.set_requester(requester);
    r.set_template_name("JamfDevice");
    r.set_csr_sha256(std::string(32, 'h'));
    return r;
  }

  // Written into one node's store only, as if replication had not carried it yet.
  void PutOnlyOn(const std::string& node, const store::RequestRecord& r) {
    ASSERT_TRUE(nodes_[node]->store->Put(r).ok());
  }

  PeerDirectory& Directory(const std::string& node) { return nodes_[node]->runtime->directory(); }

  testing::TempDir dir_;
  std::map<std::string, std::unique_ptr<TestNode>> nodes_;
};

TEST_F(PeerDirectoryTest, LookupFindsWhatOnlyAPeerHolds) {
  PutOnlyOn("c", Record(5, store::v1::RECORD_STATUS_ISSUED, "EXAMPLE\\svc-two"));
  auto found = Directory("a").Lookup(kCaConfig, 5);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->status(), store::v1::RECORD_STATUS_ISSUED);
  EXPECT_EQ(found->certificate_der(), "cert");
  EXPECT_FALSE(Directory("a").Lookup(kCaConfig, 6).has_value()) << "nobody holds it";
}

TEST_F(PeerDirectoryTest, LookupMergesTheAnswersUpTheLattice) {
  PutOnlyOn("b", Record(7, store::v1::RECORD_STATUS_PENDING, "EXAMPLE\\svc-one"));
  PutOnlyOn("c", Record(7, store::v1::RECORD_STATUS_ISSUED, "EXAMPLE\\svc-one"));
  auto found = Directory("a").Lookup(kCaConfig, 7);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->status(), store::v1::RECORD_STATUS_ISSUED);
}

TEST_F(PeerDirectoryTest, DedupeLookupMatchesOnlyTheSameCsr) {
  PutOnlyOn("b", Record(8, store::v1::RECORD_STATUS_PENDING, "EXAMPLE\\svc-one"));
  auto same = Directory("a").LookupByDedupeKey(kCaConfig, "JamfDevice", std::string(32, 'h'), 0);
  ASSERT_TRUE(same.has_value());
  EXPECT_EQ(same->request_id(), 8u);
  EXPECT_FALSE(Directory("a").LookupByDedupeKey(kCaConfig, "JamfDevice", std::string(32, 'x'), 0).has_value());
  EXPECT_FALSE(Directory("a").LookupByDedupeKey(kCaConfig, "Other", std::string(32, 'h'), 0).has_value());
  const int64_t later = SystemClock::Default()->NowUnixMillis() + 60'000;
  EXPECT_FALSE(Directory("a").LookupByDedupeKey(kCaConfig, "JamfDevice", std::string(32, 'h'), later).has_value())
      << "outside the dedupe window";
}

// A peer that is there but silent (its process frozen: the connection stays, nothing
// answers) costs one lookup its deadline; after that, lookups leave it out until it answers
// again, so a frozen node does not make every submit on the others wait (issue 22).
TEST_F(PeerDirectoryTest, APeerThatLetsALookupTimeOutIsLeftOutUntilItAnswersAgain) {
  PutOnlyOn("b", Record(8, store::v1::RECORD_STATUS_PENDING, "EXAMPLE\\svc-one"));
  // Node a reaches c through a relay the test can freeze.
  testing::FreezableProxy relay(nodes_["c"]->config.cluster.listen_port);
  TestNode& a = *nodes_["a"];
  a.runtime.reset();
  for (node::PeerConfig& p : a.config.cluster.peers) {
    if (p.id == "c") p.address = "127.0.0.1:" + std::to_string(relay.port());
  }
  a.config.cluster.lookup_timeout = std::chrono::milliseconds(500);
  auto rt = ClusterRuntime::Create(a.config, a.store.get());
  ASSERT_TRUE(rt.ok()) << rt.status();
  a.runtime = std::move(*rt);
  ASSERT_TRUE(a.runtime->Serve(a.api.get(), nullptr).ok());
  auto view = [&](const std::string& peer) {
    for (const PeerView& p : Directory("a").Peers()) {
      if (p.node_id == peer) return p;
    }
    return PeerView{};
  };
  // The restarted a's channels are new: wait until it has heard from b directly and from c
  // through the relay, or the first lookup below would spend its deadline connecting to b.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (view("c").ca_identity.empty() || view("b").ca_identity.empty()) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "a never reached b, and c through the relay";
    Directory("a").Refresh();
  }

  relay.Freeze();
  auto first = Directory("a").LookupByDedupeKey(kCaConfig, "JamfDevice", std::string(32, 'h'), 0);
  ASSERT_TRUE(first.has_value()) << "b answered";
  EXPECT_EQ(first->request_id(), 8u);
  EXPECT_EQ(Directory("a").skipped_lookups(), 0u) << "the first lookup asked c and ran out its deadline";
  EXPECT_GT(view("c").quiet_until_ms, 0);
  EXPECT_EQ(view("b").quiet_until_ms, 0) << "b answered: never quiet";

  auto second = Directory("a").LookupByDedupeKey(kCaConfig, "JamfDevice", std::string(32, 'h'), 0);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(Directory("a").skipped_lookups(), 1u) << "c was left out";
  EXPECT_TRUE(Directory("a").Lookup(kCaConfig, 8).has_value());
  EXPECT_EQ(Directory("a").skipped_lookups(), 2u);

  // c wakes: its next answer (an Info refresh) ends the quiet, and lookups ask it again.
  relay.Thaw();
  const auto back = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (view("c").quiet_until_ms != 0) {
    ASSERT_LT(std::chrono::steady_clock::now(), back) << "c's answers never ended its quiet";
    Directory("a").Refresh();
  }
  EXPECT_TRUE(Directory("a").LookupByDedupeKey(kCaConfig, "JamfDevice", std::string(32, 'h'), 0).has_value());
  EXPECT_EQ(Directory("a").skipped_lookups(), 2u) << "c was asked again";
  EXPECT_EQ(view("c").quiet_until_ms, 0);
}

// The quiet period runs on the monotonic clock: the wall clock stepping 5 minutes forward
// does not end it early, stepping back does not stretch it to 5 minutes; 5 s of monotonic
// time end it whatever the wall clock did.
TEST_F(PeerDirectoryTest, AQuietPeerIsAskedAgainAfterFiveSecondsOfMonotonicTimeWhateverTheWallClockDoes) {
  testing::FreezableProxy relay(nodes_["c"]->config.cluster.listen_port);
  TestNode& a = *nodes_["a"];
  a.runtime.reset();
  for (node::PeerConfig& p : a.config.cluster.peers) {
    if (p.id == "c") p.address = "127.0.0.1:" + std::to_string(relay.port());
  }
  auto rt = ClusterRuntime::Create(a.config, a.store.get());
  ASSERT_TRUE(rt.ok()) << rt.status();
  a.runtime = std::move(*rt);
  constexpr int64_t kStart = 1'800'000'000'000;
  constexpr int64_t kStepMs = 5 * 60'000;
  FakeClock clock(kStart);
  PeerDirectory directory(a.config, &a.runtime->transport(), std::chrono::milliseconds(500),
                          std::chrono::milliseconds(500), &clock);
  auto view = [&](const std::string& peer) {
    for (const PeerView& p : directory.Peers()) {
      if (p.node_id == peer) return p;
    }
    return PeerView{};
  };
  auto c_view = [&] { return view("c"); };
  // New channels: b must answer within the lookups' 500 ms too, or it would go quiet as well.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (c_view().ca_identity.empty() || view("b").ca_identity.empty()) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "never reached b, and c through the relay";
    directory.Refresh();
  }
  auto lookup = [&] { directory.LookupByDedupeKey(kCaConfig, "JamfDevice", std::string(32, 'q'), 0); };

  relay.Freeze();
  lookup();  // c lets it run out its deadline
  ASSERT_GT(c_view().quiet_until_ms, 0);
  ASSERT_EQ(directory.skipped_lookups(), 0u);

  clock.SetUnixMillis(kStart + kStepMs);
  lookup();
  EXPECT_EQ(directory.skipped_lookups(), 1u) << "5 minutes forward on the wall clock: still quiet";
  clock.SetUnixMillis(kStart - kStepMs);
  clock.AdvanceMillis(4'999);
  lookup();
  EXPECT_EQ(directory.skipped_lookups(), 2u) << "4.999 s of monotonic time: still quiet";
  clock.AdvanceMillis(1);
  lookup();
  EXPECT_EQ(directory.skipped_lookups(), 2u) << "5 s of monotonic time: asked again, wall clock 5 minutes back";
}

// The lease protocol over the wire: a claim is held by every peer under the name in the
// sender's certificate, a rival hears who holds it, and an unsettled release is told to the
// next claimant as lapsed.
TEST_F(PeerDirectoryTest, AClaimIsHeldUnderTheSendersNameAndARivalHearsWhoHoldsIt) {
  node::SubmitIntent claim;
  claim.ca_config = kCaConfig;
  claim.template_name = "JamfDevice";
  claim.csr_sha256 = std::string(32, 'h');
  claim.after_request_id = 41;
  claim.ca_identity = "EXAMPLE\\svc-one";
  claim.node_id = "c";  // a lie: the certificate says "a", and that is what peers record
  claim.claim_id = 1;
  // Every node just started: each grants nothing until its restart grace has passed.
  std::vector<node::LeaseAnswer> answers;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (;;) {
    answers = Directory("a").ClaimSubmit(claim, kAllAnswers);
    if (answers.size() == 2 && std::all_of(answers.begin(), answers.end(), [](const node::LeaseAnswer& a) {
          return a.grant == node::LeaseGrant::kGranted;
        })) {
      break;
    }
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the peers never granted the claim";
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (const char* peer : {"b", "c"}) {
    auto held = nodes_[peer]->api->leases().Holder(kCaConfig, "JamfDevice", std::string(32, 'h'));
    ASSERT_TRUE(held.has_value()) << peer;
    EXPECT_EQ(held->node_id, "a");
    EXPECT_EQ(held->after_request_id, 41u);
    EXPECT_EQ(held->ca_identity, "EXAMPLE\\svc-one");
  }
  EXPECT_EQ(nodes_["a"]->api->leases().held(), 0u) << "the directory asks the peers only";

  node::SubmitIntent rival = claim;
  rival.claim_id = 2;
  auto rivals = Directory("b").ClaimSubmit(rival, kAllAnswers);
  ASSERT_EQ(rivals.size(), 2u);
  for (const node::LeaseAnswer& a : rivals) {
    if (a.node_id == "c") {
      EXPECT_EQ(a.grant, node::LeaseGrant::kHeld);
      ASSERT_TRUE(a.holder.has_value());
      EXPECT_EQ(a.holder->node_id, "a");
    } else {
      EXPECT_EQ(a.node_id, "a");
      EXPECT_EQ(a.grant, node::LeaseGrant::kGranted) << "a holds nothing in its own table";
    }
  }

  Directory("a").ReleaseSubmit(claim, /*settled=*/false);  // not waited for
  while (nodes_["c"]->api->leases().Holder(kCaConfig, "JamfDevice", std::string(32, 'h')).has_value()) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "c never saw the release";
    nodes_["c"]->api->leases().WaitForChange(std::chrono::milliseconds(50));
  }
  for (const node::LeaseAnswer& a : Directory("b").ClaimSubmit(rival, kAllAnswers)) {
    if (a.node_id != "c") continue;
    EXPECT_EQ(a.grant, node::LeaseGrant::kGranted);
    ASSERT_TRUE(a.lapsed.has_value()) << "the next claimant must search for a's request first";
    EXPECT_EQ(a.lapsed->after_request_id, 41u);
  }
}

TEST_F(PeerDirectoryTest, PeersAdvertiseTheirCaIdentity) {
  std::map<std::string, std::string> identities;
  for (const PeerView& p : Directory("a").Peers()) {
    identities[p.node_id] = p.ca_identity;
    EXPECT_GT(p.last_seen_ms, 0) << p.node_id;
  }
  EXPECT_EQ(identities["b"], "EXAMPLE\\svc-one");
  EXPECT_EQ(identities["c"], "EXAMPLE\\svc-two");
}

TEST_F(PeerDirectoryTest, ARetrieveIsForwardedToTheNodeOfTheRightIdentityAndRecordedThere) {
  nodes_["c"]->ca.Issue(12);
  auto forwarded = Directory("a").ForwardRetrieve("example\\SVC-TWO", kTarget, 12);
  ASSERT_TRUE(forwarded.ok()) << forwarded.status();
  EXPECT_EQ(forwarded->node_id, "c");
  EXPECT_EQ(forwarded->record.status(), store::v1::RECORD_STATUS_ISSUED);
  EXPECT_EQ(nodes_["c"]->ca.retrieves(), 1);
  EXPECT_EQ(nodes_["a"]->ca.retrieves() + nodes_["b"]->ca.retrieves(), 0);
  auto on_c = nodes_["c"]->store->Get(kCaConfig, 12);
  ASSERT_TRUE(on_c.ok() && on_c->has_value()) << "the node that asked the CA recorded the answer";
  EXPECT_EQ((*on_c)->requester(), "EXAMPLE\\svc-two");
}

TEST_F(PeerDirectoryTest, AForwardedCaFailureComesBackWithItsHresult) {
  nodes_["c"]->ca.fail_hresult = 0x800706BA;
  auto forwarded = Directory("a").ForwardRetrieve("EXAMPLE\\svc-two", kTarget, 13);
  ASSERT_FALSE(forwarded.ok());
  EXPECT_EQ(ca::HresultOf(forwarded.status()), 0x800706BAu) << forwarded.status();
}

TEST_F(PeerDirectoryTest, NoLivePeerOfAnIdentityIsUnavailableAndSaysWhoIsThere) {
  auto nobody = Directory("a").ForwardRetrieve("EXAMPLE\\svc-three", kTarget, 14);
  ASSERT_EQ(nobody.status().code(), absl::StatusCode::kUnavailable) << nobody.status();
  EXPECT_NE(nobody.status().message().find("c=EXAMPLE\\svc-two"), std::string_view::npos) << nobody.status();

  nodes_["c"]->runtime.reset();  // the only node running as svc-two goes away
  auto gone = Directory("a").ForwardRetrieve("EXAMPLE\\svc-two", kTarget, 14);
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kUnavailable) << gone.status();
  EXPECT_FALSE(Directory("a").Lookup(kCaConfig, 14).has_value()) << "a lookup still ends";
}

// A submit body as Jamf Pro sends it, for a fresh CSR.
std::string SubmitBody(const std::string& cn) {
  auto key = pki::GenerateKey(pki::KeyType::kEcP256);
  EXPECT_TRUE(key.ok());
  auto der = pki::MakeCsr(key->get(), cn, {});
  EXPECT_TRUE(der.ok());
  nlohmann::json body = {{"pkcs10", pki::Base64Encode(*der)},
                         {"template", "JamfDevice"},
                         {"config", {{"dc", kTarget.dc}, {"ca", kTarget.ca}}}};
  return body.dump();
}

// Node b says in its Info answer that it cannot reach the CA: a's failover skips it, and c
// runs the submit through its own full path and records it.
TEST_F(PeerDirectoryTest, ASubmitGoesToAPeerThatReachesTheCaNotToOneThatReportsItUnreachable) {
  nodes_["b"]->api->ca_reachability().Note(kCaConfig, false);
  Directory("a").Refresh();
  for (const PeerView& p : Directory("a").Peers()) {
    EXPECT_EQ(ReportsCaUnreachable(p, kCaConfig), p.node_id == "b") << p.node_id;
  }
  node::SubmitToForward submit{kCaConfig, SubmitBody("forwarded-1"), "pin", "192.0.2.1"};
  auto forwarded = Directory("a").ForwardSubmit(submit);
  ASSERT_TRUE(forwarded.ok()) << forwarded.status();
  EXPECT_EQ(forwarded->node_id, "c");
  EXPECT_EQ(forwarded->http_status, 200);
  EXPECT_EQ(forwarded->outcome, "issued");
  EXPECT_NE(forwarded->body.find("CR_DISP_ISSUED"), std::string::npos) << forwarded->body;
  EXPECT_EQ(nodes_["b"]->ca.submits(), 0);
  EXPECT_EQ(nodes_["c"]->ca.submits(), 1);
  EXPECT_EQ(*nodes_["c"]->store->CountRecords(), 1) << "recorded where it was submitted";
}

// b reported the CA unreachable and has reached it since, but a has not refreshed: with c
// unable to reach the CA, a asks again before giving up, and b takes the submit.
TEST_F(PeerDirectoryTest, APeerWhoseReportIsStaleIsAskedAgainBeforeASubmitFails) {
  nodes_["b"]->api->ca_reachability().Note(kCaConfig, false);
  Directory("a").Refresh();
  nodes_["b"]->api->ca_reachability().Note(kCaConfig, true);
  nodes_["c"]->ca.fail_hresult = ca::hr::kRpcServerUnavailable;
  auto forwarded = Directory("a").ForwardSubmit({kCaConfig, SubmitBody("forwarded-stale"), "pin", "192.0.2.1"});
  ASSERT_TRUE(forwarded.ok()) << forwarded.status();
  EXPECT_EQ(forwarded->node_id, "b");
  EXPECT_EQ(forwarded->outcome, "issued");
  EXPECT_EQ(nodes_["b"]->ca.submits(), 1);
  // Still unreachable when asked again: not sent there, and the failover says why.
  nodes_["b"]->api->ca_reachability().Note(kCaConfig, false);
  Directory("a").Refresh();
  auto none = Directory("a").ForwardSubmit({kCaConfig, SubmitBody("forwarded-stale-2"), "pin", "192.0.2.1"});
  ASSERT_EQ(none.status().code(), absl::StatusCode::kUnavailable) << none.status();
  EXPECT_NE(none.status().message().find("b reports the CA unreachable"), std::string_view::npos) << none.status();
  EXPECT_EQ(nodes_["b"]->ca.submits(), 1);
}

// A peer that cannot reach the CA either says so (and sent nothing): the next is tried, and
// with none left the failover is UNAVAILABLE, naming each.
TEST_F(PeerDirectoryTest, APeerThatCannotReachTheCaEitherIsFollowedByTheNext) {
  nodes_["b"]->ca.fail_hresult = ca::hr::kRpcServerUnavailable;
  nodes_["c"]->ca.fail_hresult = ca::hr::kRpcServerUnavailable;
  auto none = Directory("a").ForwardSubmit({kCaConfig, SubmitBody("forwarded-2"), "pin", "192.0.2.1"});
  ASSERT_EQ(none.status().code(), absl::StatusCode::kUnavailable) << none.status();
  EXPECT_NE(none.status().message().find("b cannot reach the CA either"), std::string_view::npos) << none.status();
  EXPECT_NE(none.status().message().find("c cannot reach the CA either"), std::string_view::npos) << none.status();
  for (const PeerView& p : Directory("a").Peers()) EXPECT_TRUE(ReportsCaUnreachable(p, kCaConfig)) << p.node_id;
  EXPECT_FALSE(ca::IsOutcomeUnknown(none.status()));
}

// A retrieve this node cannot take to the CA: not sent to a peer that reports the CA
// unreachable; that peer's word is the answer, with the HRESULT.
TEST_F(PeerDirectoryTest, ARetrieveIsNotForwardedToAPeerThatReportsTheCaUnreachable) {
  nodes_["b"]->api->ca_reachability().Note(kCaConfig, false);
  Directory("a").Refresh();
  auto forwarded = Directory("a").ForwardRetrieve("EXAMPLE\\svc-one", kTarget, 21);
  ASSERT_FALSE(forwarded.ok());
  EXPECT_EQ(ca::HresultOf(forwarded.status()), ca::hr::kRpcServerUnavailable) << forwarded.status();
  EXPECT_EQ(nodes_["b"]->ca.retrieves(), 0);
}

TEST_F(PeerDirectoryTest, ANodeRefusesAForwardForAnIdentityItDoesNotRunAs) {
  // b runs as svc-one; a claims b runs as svc-two by asking it directly.
  auto channel = nodes_["a"]->runtime->transport().ChannelFor("b");
  ASSERT_TRUE(channel.ok());
  auto stub = v1::Peer::NewStub(*channel);
  grpc::ClientContext context;
  v1::ForwardRetrieveRequest request;
  request.mutable_from()->set_cluster_id("prod");
  request.mutable_from()->set_node_id("a");
  request.set_dc(kTarget.dc);
  request.set_ca(kTarget.ca);
  request.set_request_id(15);
  request.set_identity("EXAMPLE\\svc-two");
  v1::ForwardRetrieveResponse reply;
  grpc::Status status = stub->ForwardRetrieve(&context, request, &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
  EXPECT_EQ(nodes_["b"]->ca.retrieves(), 0);
}

TEST_F(PeerDirectoryTest, ALookupSignedForAnotherClusterOrNodeIsRefused) {
  auto channel = nodes_["a"]->runtime->transport().ChannelFor("b");
  ASSERT_TRUE(channel.ok());
  auto stub = v1::Peer::NewStub(*channel);
  for (const auto& [cluster, node] : std::vector<std::pair<std::string, std::string>>{{"other", "a"}, {"prod", "c"}}) {
    grpc::ClientContext context;
    v1::LookupRequest request;
    request.mutable_from()->set_cluster_id(cluster);
    request.mutable_from()->set_node_id(node);
    request.set_ca_config(kCaConfig);
    request.set_request_id(1);
    v1::LookupResponse reply;
    EXPECT_EQ(stub->Lookup(&context, request, &reply).error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << cluster << "/" << node;
  }
}

TEST_F(PeerDirectoryTest, ACutOffNodeNeitherAsksNorAnswers) {
  PutOnlyOn("c", Record(16, store::v1::RECORD_STATUS_ISSUED, "EXAMPLE\\svc-two"));
  nodes_["a"]->runtime->transport().SetCutOff(true);
  EXPECT_FALSE(Directory("a").Lookup(kCaConfig, 16).has_value());
  nodes_["a"]->runtime->transport().SetCutOff(false);
  EXPECT_TRUE(Directory("a").Lookup(kCaConfig, 16).has_value());
  nodes_["c"]->runtime->transport().SetCutOff(true);
  EXPECT_FALSE(Directory("a").Lookup(kCaConfig, 16).has_value()) << "c refuses while cut off";
}

// SetFault through a node's own listener, as `adcsc ctl fault` does, signed as `as`.
grpc::Status SetFault(const node::Config& config, const std::string& as, bool cut_off) {
  node::PeerConfig self{config.node_id, "127.0.0.1:" + std::to_string(config.cluster.listen_port)};
  node::ClusterConfig signer = config.cluster;
  if (as != config.node_id) {  // a peer's certificate
    const auto dir = config.cluster.cert_file.parent_path().parent_path() / as;
    signer.cert_file = dir / pki::kNodeCertFile;
    signer.key_file = dir / pki::kNodeKeyFile;
  }
  auto channel = MakePeerChannel(signer, self);
  if (!channel.ok()) return grpc::Status(grpc::StatusCode::INTERNAL, std::string(channel.status().message()));
  auto stub = v1::Peer::NewStub(*channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  // The node may just have been restarted on this port: wait for it rather than fail on the
  // first connection attempt.
  context.set_wait_for_ready(true);
  v1::FaultRequest request;
  request.mutable_from()->set_cluster_id(config.cluster.id);
  request.mutable_from()->set_node_id(as);
  request.set_cut_off(cut_off);
  v1::FaultState state;
  return stub->SetFault(&context, request, &state);
}

TEST_F(PeerDirectoryTest, ASecondNodeOnATakenPortFailsToServeInsteadOfSharingIt) {
  // gRPC's default SO_REUSEPORT would let this bind succeed and split a's peers between two
  // processes; a node must refuse to start instead.
  store::StoreOptions so;
  so.path = dir_.path() / "a-second.db";
  so.node_id = "a";
  so.fsync = false;
  auto second_store = store::RequestStore::Open(so);
  ASSERT_TRUE(second_store.ok()) << second_store.status();
  auto second = ClusterRuntime::Create(nodes_["a"]->config, second_store->get());
  ASSERT_TRUE(second.ok()) << second.status();
  const absl::Status served = (*second)->Serve(nodes_["a"]->api.get(), nullptr);
  EXPECT_EQ(served.code(), absl::StatusCode::kUnavailable) << served;
  EXPECT_NE(served.message().find("cannot listen"), std::string::npos) << served;
  second->reset();
  PutOnlyOn("a", Record(22, store::v1::RECORD_STATUS_ISSUED, "EXAMPLE\\svc-one"));
  EXPECT_TRUE(Directory("b").Lookup(kCaConfig, 22).has_value()) << "a still serves its peers";
}

TEST_F(PeerDirectoryTest, TheFaultSwitchIsOffByDefaultAndOnlyForTheNodeItself) {
  const grpc::Status off = SetFault(nodes_["a"]->config, "a", true);
  EXPECT_EQ(off.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << off.error_message();
  EXPECT_NE(off.error_message().find("allow_fault_injection"), std::string::npos) << off.error_message();
  EXPECT_FALSE(nodes_["a"]->runtime->transport().cut_off());
}

TEST_F(PeerDirectoryTest, TheFaultSwitchCutsBothDirectionsAndHeals) {
  // Restart node a with the switch allowed.
  nodes_["a"]->runtime.reset();
  nodes_["a"]->config.cluster.allow_fault_injection = true;
  auto rt = ClusterRuntime::Start(nodes_["a"]->config, nodes_["a"]->store.get());
  ASSERT_TRUE(rt.ok()) << rt.status();
  nodes_["a"]->runtime = std::move(*rt);

  const grpc::Status by_peer = SetFault(nodes_["a"]->config, "b", true);
  EXPECT_EQ(by_peer.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << "a peer may not cut a node off: " << by_peer.error_message();

  PutOnlyOn("a", Record(20, store::v1::RECORD_STATUS_ISSUED, "EXAMPLE\\svc-one"));
  PutOnlyOn("c", Record(21, store::v1::RECORD_STATUS_ISSUED, "EXAMPLE\\svc-two"));
  ASSERT_TRUE(SetFault(nodes_["a"]->config, "a", true).ok());
  EXPECT_TRUE(nodes_["a"]->runtime->transport().cut_off());
  EXPECT_FALSE(Directory("b").Lookup(kCaConfig, 20).has_value()) << "a answers no peer";
  EXPECT_FALSE(Directory("a").Lookup(kCaConfig, 21).has_value()) << "a reaches no peer";

  ASSERT_TRUE(SetFault(nodes_["a"]->config, "a", false).ok());
  EXPECT_TRUE(Directory("b").Lookup(kCaConfig, 20).has_value());
  EXPECT_TRUE(Directory("a").Lookup(kCaConfig, 21).has_value());
}

}  // namespace
}  // namespace adcsc::cluster
