// Merge rules of store/record.h: lattice order, tie-breaks, and the CRDT properties
// (commutative, associative, idempotent) over many seeded random records.
#include "store/record.h"

#include <google/protobuf/util/message_differencer.h>

#include <algorithm>
#include <array>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace adcsc::store {
namespace {

using google::protobuf::util::MessageDifferencer;
using v1::RECORD_STATUS_DENIED;
using v1::RECORD_STATUS_FAILED;
using v1::RECORD_STATUS_ISSUED;
using v1::RECORD_STATUS_PENDING;
using v1::RECORD_STATUS_REVOKED;
using v1::RECORD_STATUS_SUBMITTED;
using v1::RECORD_STATUS_UNSPECIFIED;

// Fixed so a failure reproduces; the domains below are small so ties and equal ranks are
// common, which is where merge bugs hide.
constexpr uint64_t kSeed = 20240611;
constexpr int kPropertyIterations = 5000;

template <typename T, size_t N>
const T& Pick(std::mt19937_64& rng, const std::array<T, N>& choices) {
  return choices[std::uniform_int_distribution<size_t>(0, N - 1)(rng)];
}

RequestRecord RandomRecord(std::mt19937_64& rng) {
  static const std::array<RecordStatus, 7> kStatuses = {
      RECORD_STATUS_UNSPECIFIED, RECORD_STATUS_SUBMITTED, RECORD_STATUS_PENDING, RECORD_STATUS_ISSUED,
      RECORD_STATUS_DENIED,      RECORD_STATUS_FAILED,    RECORD_STATUS_REVOKED};
  static const std::array<std::string, 3> kNodes = {"", "node-a", "node-b"};
  static const std::array<std::string, 3> kText = {"", "Certificate issued", "Request denied"};
  static const std::array<std::string, 3> kBytes = {"", std::string("\x30\x82\x01", 3), std::string("\x30\x00\xff", 3)};
  static const std::array<uint64_t, 4> kHlcs = {0, 1, 2, uint64_t{1} << 40};
  static const std::array<int64_t, 4> kTimes = {0, 100, 200, 300};
  static const std::array<uint32_t, 3> kSmall = {0, 3, 5};
  static const std::array<uint32_t, 2> kHresults = {0, 0x80094011u};
  static const std::array<uint64_t, 4> kAdminStamps = {0, 0, 1, 2};  // mostly untouched by an administrator

  RequestRecord r;
  r.set_ca_config("ca01.contoso.com\\Contoso-CA");
  r.set_request_id(95);
  r.set_status(Pick(rng, kStatuses));
  r.set_disposition(Pick(rng, kSmall));
  r.set_message(Pick(rng, kText));
  r.set_certificate_der(Pick(rng, kBytes));
  r.set_csr_sha256(Pick(rng, kBytes));
  r.set_template_name(Pick(rng, kText));
  r.set_requester(Pick(rng, kNodes));
  r.set_node_id(Pick(rng, kNodes));
  r.set_created_ms(Pick(rng, kTimes));
  r.set_updated_ms(Pick(rng, kTimes));
  r.set_hlc(Pick(rng, kHlcs));
  r.set_hresult(Pick(rng, kHresults));
  r.set_admin_hlc(Pick(rng, kAdminStamps));
  return r;
}

RequestRecord WithStatus(RecordStatus status, uint64_t hlc, const std::string& node) {
  RequestRecord r;
  r.set_ca_config("ca01.contoso.com\\Contoso-CA");
  r.set_request_id(7);
  r.set_status(status);
  r.set_hlc(hlc);
  r.set_node_id(node);
  return r;
}

// A record's version: what decides which one wins (all but created_ms and the submit's facts).
RequestRecord VersionOnly(RequestRecord r) {
  r.clear_created_ms();
  r.clear_csr_sha256();
  r.clear_template_name();
  r.clear_requester();
  return r;
}

::testing::AssertionResult SameRecord(const RequestRecord& a, const RequestRecord& b) {
  if (MessageDifferencer::Equals(a, b)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\n  " << a.ShortDebugString() << "\n  vs\n  " << b.ShortDebugString();
}

TEST(StatusRankTest, MatchesTheLattice) {
  EXPECT_EQ(StatusRank(RECORD_STATUS_UNSPECIFIED), 0);
  EXPECT_EQ(StatusRank(RECORD_STATUS_SUBMITTED), 1);
  EXPECT_EQ(StatusRank(RECORD_STATUS_PENDING), 2);
  EXPECT_EQ(StatusRank(RECORD_STATUS_ISSUED), 3);
  EXPECT_EQ(StatusRank(RECORD_STATUS_DENIED), 3);
  EXPECT_EQ(StatusRank(RECORD_STATUS_FAILED), 3);
  EXPECT_EQ(StatusRank(RECORD_STATUS_REVOKED), 4);
  // A status from a newer build must never outrank one we understand.
  EXPECT_EQ(StatusRank(static_cast<RecordStatus>(42)), 0);
}

TEST(StatusNameTest, NamesEveryStatus) {
  EXPECT_EQ(StatusName(RECORD_STATUS_UNSPECIFIED), "unspecified");
  EXPECT_EQ(StatusName(RECORD_STATUS_SUBMITTED), "submitted");
  EXPECT_EQ(StatusName(RECORD_STATUS_PENDING), "pending");
  EXPECT_EQ(StatusName(RECORD_STATUS_ISSUED), "issued");
  EXPECT_EQ(StatusName(RECORD_STATUS_DENIED), "denied");
  EXPECT_EQ(StatusName(RECORD_STATUS_FAILED), "failed");
  EXPECT_EQ(StatusName(RECORD_STATUS_REVOKED), "revoked");
}

TEST(CaConfigKeyTest, LowercasesTheHostAndKeepsTheCaName) {
  EXPECT_EQ(CaConfigKey("CA01.Contoso.COM", "Contoso-Issuing-CA"), "ca01.contoso.com\\Contoso-Issuing-CA");
  EXPECT_EQ(CaConfigKey("ca01.contoso.com", "X"), CaConfigKey("CA01.CONTOSO.COM", "X"));
  EXPECT_EQ(CaConfigKey("h", "c").size(), 3u);  // exactly one backslash
}

TEST(MergeTest, TheSubmitsFactsSurviveALaterVersionThatLacksThem) {
  RequestRecord submitted = WithStatus(RECORD_STATUS_PENDING, 1, "a");
  submitted.set_csr_sha256(std::string(32, 'c'));
  submitted.set_template_name("JamfDevice");
  submitted.set_requester("EXAMPLE\\svc-a");
  // Recorded by a node that had never seen the submit: it knows only the CA's answer.
  RequestRecord retrieved = WithStatus(RECORD_STATUS_ISSUED, 2, "b");
  retrieved.clear_csr_sha256();
  retrieved.clear_template_name();
  retrieved.clear_requester();
  for (const RequestRecord& m : {Merge(submitted, retrieved), Merge(retrieved, submitted)}) {
    EXPECT_EQ(m.status(), RECORD_STATUS_ISSUED);
    EXPECT_EQ(m.csr_sha256(), std::string(32, 'c'));
    EXPECT_EQ(m.template_name(), "JamfDevice");
    EXPECT_EQ(m.requester(), "EXAMPLE\\svc-a");
  }
}

TEST(MergeTest, HigherRankWinsEvenWithAnOlderStamp) {
  const RequestRecord pending = WithStatus(RECORD_STATUS_PENDING, 100, "node-b");
  const RequestRecord issued = WithStatus(RECORD_STATUS_ISSUED, 1, "node-a");
  EXPECT_TRUE(SameRecord(Merge(pending, issued), issued));
  EXPECT_TRUE(SameRecord(Merge(issued, pending), issued));
  EXPECT_TRUE(Supersedes(issued, pending));
  EXPECT_FALSE(Supersedes(pending, issued));
}

TEST(MergeTest, AnAdministratorsActionWinsOverEverythingRecordedBeforeIt) {
  // Revoked by an administrator, then a retrieve recorded late on another node from an answer
  // the CA gave before the revocation, with a later stamp: the revocation stays.
  RequestRecord revoked = WithStatus(RECORD_STATUS_REVOKED, 100, "node-a");
  revoked.set_admin_hlc(100);
  const RequestRecord stale_issued = WithStatus(RECORD_STATUS_ISSUED, 200, "node-b");
  EXPECT_TRUE(SameRecord(Merge(revoked, stale_issued), revoked));
  EXPECT_TRUE(SameRecord(Merge(stale_issued, revoked), revoked));
  // Released from hold later: back to issued, below REVOKED in rank.
  RequestRecord released = WithStatus(RECORD_STATUS_ISSUED, 300, "node-c");
  released.set_admin_hlc(300);
  EXPECT_TRUE(SameRecord(Merge(revoked, released), released));
  EXPECT_TRUE(SameRecord(Merge(released, revoked), released));
  EXPECT_TRUE(Supersedes(released, revoked));
  EXPECT_FALSE(Supersedes(revoked, released));
}

TEST(MergeTest, EqualRankPicksHigherHlcThenHigherNodeId) {
  const RequestRecord older = WithStatus(RECORD_STATUS_PENDING, 5, "node-z");
  const RequestRecord newer = WithStatus(RECORD_STATUS_PENDING, 6, "node-a");
  EXPECT_TRUE(SameRecord(Merge(older, newer), newer));

  const RequestRecord from_a = WithStatus(RECORD_STATUS_DENIED, 9, "node-a");
  const RequestRecord from_b = WithStatus(RECORD_STATUS_ISSUED, 9, "node-b");
  EXPECT_TRUE(SameRecord(Merge(from_a, from_b), from_b));
  EXPECT_TRUE(SameRecord(Merge(from_b, from_a), from_b));
}

TEST(MergeTest, CreatedIsTheEarliestKnownTime) {
  RequestRecord a = WithStatus(RECORD_STATUS_PENDING, 1, "a");
  RequestRecord b = WithStatus(RECORD_STATUS_ISSUED, 2, "b");
  a.set_created_ms(500);
  b.set_created_ms(900);
  EXPECT_EQ(Merge(a, b).created_ms(), 500);
  EXPECT_EQ(Merge(b, a).created_ms(), 500);
  a.set_created_ms(0);  // unknown, not 1970
  EXPECT_EQ(Merge(a, b).created_ms(), 900);
  EXPECT_EQ(Merge(b, a).created_ms(), 900);
}

TEST(MergeTest, IdenticalRecordsDoNotSupersedeEachOther) {
  const RequestRecord r = WithStatus(RECORD_STATUS_ISSUED, 3, "a");
  EXPECT_FALSE(Supersedes(r, r));
}

TEST(MergePropertyTest, IsCommutative) {
  std::mt19937_64 rng(kSeed);
  for (int i = 0; i < kPropertyIterations; ++i) {
    const RequestRecord a = RandomRecord(rng);
    const RequestRecord b = RandomRecord(rng);
    ASSERT_TRUE(SameRecord(Merge(a, b), Merge(b, a))) << "iteration " << i;
  }
}

TEST(MergePropertyTest, IsAssociative) {
  std::mt19937_64 rng(kSeed + 1);
  for (int i = 0; i < kPropertyIterations; ++i) {
    const RequestRecord a = RandomRecord(rng);
    const RequestRecord b = RandomRecord(rng);
    const RequestRecord c = RandomRecord(rng);
    ASSERT_TRUE(SameRecord(Merge(Merge(a, b), c), Merge(a, Merge(b, c)))) << "iteration " << i;
  }
}

TEST(MergePropertyTest, IsIdempotent) {
  std::mt19937_64 rng(kSeed + 2);
  for (int i = 0; i < kPropertyIterations; ++i) {
    const RequestRecord a = RandomRecord(rng);
    const RequestRecord b = RandomRecord(rng);
    ASSERT_TRUE(SameRecord(Merge(a, a), a)) << "iteration " << i;
    const RequestRecord ab = Merge(a, b);
    ASSERT_TRUE(SameRecord(Merge(ab, b), ab)) << "iteration " << i;
    ASSERT_TRUE(SameRecord(Merge(ab, a), ab)) << "iteration " << i;
  }
}

TEST(MergePropertyTest, NeverMovesDownTheLattice) {
  std::mt19937_64 rng(kSeed + 3);
  for (int i = 0; i < kPropertyIterations; ++i) {
    const RequestRecord a = RandomRecord(rng);
    const RequestRecord b = RandomRecord(rng);
    const RequestRecord m = Merge(a, b);
    // The lattice is (admin_hlc, rank): the later administrator action wins, then the higher rank.
    ASSERT_EQ(m.admin_hlc(), std::max(a.admin_hlc(), b.admin_hlc())) << "iteration " << i;
    int top_rank = 0;
    for (const RequestRecord* r : {&a, &b}) {
      if (r->admin_hlc() == m.admin_hlc()) top_rank = std::max(top_rank, StatusRank(r->status()));
    }
    ASSERT_EQ(StatusRank(m.status()), top_rank) << "iteration " << i;
    // The winning version is one of the inputs (apart from created_ms and the submit's
    // facts), never a blend; each submit fact is one of the inputs' too.
    ASSERT_TRUE(MessageDifferencer::Equals(VersionOnly(m), VersionOnly(a)) ||
                MessageDifferencer::Equals(VersionOnly(m), VersionOnly(b)))
        << "iteration " << i;
    ASSERT_TRUE(m.csr_sha256() == a.csr_sha256() || m.csr_sha256() == b.csr_sha256()) << "iteration " << i;
    ASSERT_TRUE(m.requester() == a.requester() || m.requester() == b.requester()) << "iteration " << i;
    ASSERT_TRUE(m.template_name() == a.template_name() || m.template_name() == b.template_name()) << "iteration " << i;
    if (!a.csr_sha256().empty() || !b.csr_sha256().empty()) {
      ASSERT_FALSE(m.csr_sha256().empty()) << "a known CSR hash is never lost, iteration " << i;
    }
  }
}

TEST(MergePropertyTest, SupersedesAgreesWithMerge) {
  std::mt19937_64 rng(kSeed + 4);
  for (int i = 0; i < kPropertyIterations; ++i) {
    const RequestRecord current = RandomRecord(rng);
    const RequestRecord candidate = RandomRecord(rng);
    const bool candidate_wins =
        MessageDifferencer::Equals(VersionOnly(Merge(current, candidate)), VersionOnly(candidate)) &&
        !MessageDifferencer::Equals(VersionOnly(current), VersionOnly(candidate));
    ASSERT_EQ(Supersedes(candidate, current), candidate_wins) << "iteration " << i;
  }
}

TEST(MergePropertyTest, ReplicasConvergeWhateverTheDeliveryOrder) {
  constexpr int kUpdates = 8;
  constexpr int kOrders = 200;
  std::mt19937_64 rng(kSeed + 5);
  std::vector<RequestRecord> updates;
  for (int i = 0; i < kUpdates; ++i) updates.push_back(RandomRecord(rng));

  auto fold = [](const std::vector<RequestRecord>& order) {
    RequestRecord state = order.front();
    for (const RequestRecord& r : order) state = Merge(state, r);
    return state;
  };
  const RequestRecord expected = fold(updates);
  for (int i = 0; i < kOrders; ++i) {
    std::vector<RequestRecord> delivery = updates;
    // Duplicates, as a retrying replication stream would deliver them.
    for (int d = 0; d < 3; ++d) delivery.push_back(updates[rng() % updates.size()]);
    std::shuffle(delivery.begin(), delivery.end(), rng);
    ASSERT_TRUE(SameRecord(fold(delivery), expected)) << "order " << i;
  }
}

}  // namespace
}  // namespace adcsc::store
