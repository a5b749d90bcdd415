// RequestStore's replication surface: ApplyRemote (idempotence, merge, gaps, own origin),
// MutationsMissing, the snapshot reader/ApplySnapshot, and what becomes of a record field
// this release does not know.
#include <google/protobuf/unknown_field_set.h>

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/request_store.h"
#include "tests/testing/temp_dir.h"

namespace adcsc::store {
namespace {

using ::testing::ElementsAre;
using v1::Mutation;

const std::string kCa = CaConfigKey("CA01.contoso.com", "Issuing");

RequestRecord Rec(uint32_t id, RecordStatus status, uint64_t hlc, const std::string& node) {
  RequestRecord r;
  r.set_ca_config(kCa);
  r.set_request_id(id);
  r.set_status(status);
  r.set_hlc(hlc);
  r.set_node_id(node);
  r.set_created_ms(1000);
  r.set_updated_ms(1000);
  return r;
}

Mutation Mut(const std::string& origin, uint64_t seq, const RequestRecord& r) {
  Mutation m;
  m.set_origin(origin);
  m.set_sequence(seq);
  *m.mutable_record() = r;
  return m;
}

class ApplyRemoteTest : public ::testing::Test {
 protected:
  std::unique_ptr<RequestStore> OpenStore(const std::string& node, const std::string& file) {
    StoreOptions o;
    o.path = dir_.File(file);
    o.node_id = node;
    o.clock = &clock_;
    o.fsync = false;
    absl::StatusOr<std::unique_ptr<RequestStore>> s = RequestStore::Open(o);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }
  void SetUp() override { store_ = OpenStore("a", "a.db"); }

  adcsc::testing::TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<RequestStore> store_;
};

TEST_F(ApplyRemoteTest, AppliesMergesAndIsIdempotent) {
  std::vector<Mutation> batch = {Mut("b", 1, Rec(7, v1::RECORD_STATUS_SUBMITTED, 10, "b")),
                                 Mut("b", 2, Rec(7, v1::RECORD_STATUS_ISSUED, 20, "b"))};
  absl::StatusOr<RemoteApplyResult> r = store_->ApplyRemote(batch);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->is_new, ElementsAre(true, true));
  EXPECT_EQ(r->version_vector.at("b"), 2u);
  auto got = store_->Get(kCa, 7);
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->status(), v1::RECORD_STATUS_ISSUED);

  r = store_->ApplyRemote(batch);
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(r->is_new, ElementsAre(false, false));
  // An older state arriving late does not move the record down the lattice.
  r = store_->ApplyRemote({Mut("c", 1, Rec(7, v1::RECORD_STATUS_PENDING, 15, "c"))});
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(r->is_new, ElementsAre(true));
  got = store_->Get(kCa, 7);
  EXPECT_EQ((*got)->status(), v1::RECORD_STATUS_ISSUED);
  // Logged under the origin so a third node can be given it, as the record now stands (which
  // includes what the mutation brought).
  auto since = store_->MutationsSince("c", 0, 10);
  ASSERT_TRUE(since.ok());
  ASSERT_EQ(since->size(), 1u);
  EXPECT_EQ((*since)[0].origin(), "c");
  EXPECT_EQ((*since)[0].record().status(), v1::RECORD_STATUS_ISSUED);
}

// The rule docs/architecture.md ("Versions") states for record fields: the store keeps a
// record as one column per field it knows, so a field added by a newer release (here 99,
// which this schema lacks) is gone when this node passes the record on; the fields it knows
// travel intact. A change to the store that keeps unknown fields flips this test.
TEST_F(ApplyRemoteTest, ARecordFieldThisReleaseLacksIsNotPassedOn) {
  RequestRecord newer = Rec(5, v1::RECORD_STATUS_ISSUED, 30, "b");
  newer.set_certificate_der("DER");
  newer.GetReflection()->MutableUnknownFields(&newer)->AddVarint(99, 42);
  ASSERT_FALSE(newer.GetReflection()->GetUnknownFields(newer).empty());
  ASSERT_TRUE(store_->ApplyRemote({Mut("b", 1, newer)}).ok());
  auto since = store_->MutationsSince("b", 0, 10);
  ASSERT_TRUE(since.ok()) << since.status();
  ASSERT_EQ(since->size(), 1u);
  const RequestRecord& passed_on = (*since)[0].record();
  EXPECT_TRUE(passed_on.GetReflection()->GetUnknownFields(passed_on).empty());
  EXPECT_EQ(passed_on.status(), v1::RECORD_STATUS_ISSUED);
  EXPECT_EQ(passed_on.certificate_der(), "DER");
  EXPECT_EQ(passed_on.hlc(), 30u);
}

TEST_F(ApplyRemoteTest, GapHoldsVectorUntilFilled) {
  auto r = store_->ApplyRemote({Mut("b", 1, Rec(1, v1::RECORD_STATUS_SUBMITTED, 1, "b")),
                                Mut("b", 3, Rec(3, v1::RECORD_STATUS_SUBMITTED, 3, "b")),
                                Mut("b", 4, Rec(4, v1::RECORD_STATUS_SUBMITTED, 4, "b"))});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->version_vector.at("b"), 1u);
  // Out-of-order ones are durable and merged already.
  EXPECT_TRUE(store_->Get(kCa, 4)->has_value());
  // Survives a reopen.
  store_.reset();
  store_ = OpenStore("a", "a.db");
  EXPECT_EQ(store_->GetVersionVector()->at("b"), 1u);
  r = store_->ApplyRemote({Mut("b", 2, Rec(2, v1::RECORD_STATUS_SUBMITTED, 2, "b"))});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->version_vector.at("b"), 4u);
}

TEST_F(ApplyRemoteTest, IgnoresOwnOriginAndRejectsMalformed) {
  auto r = store_->ApplyRemote({Mut("a", 1, Rec(1, v1::RECORD_STATUS_SUBMITTED, 1, "a"))});
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(r->is_new, ElementsAre(false));
  EXPECT_FALSE(store_->Get(kCa, 1)->has_value());
  EXPECT_EQ(store_->ApplyRemote({Mut("", 1, Rec(1, v1::RECORD_STATUS_SUBMITTED, 1, "b"))}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->ApplyRemote({Mut("b", 0, Rec(1, v1::RECORD_STATUS_SUBMITTED, 1, "b"))}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ApplyRemoteTest, MutationsMissingCoversEveryOriginBounded) {
  RequestRecord local = Rec(100, v1::RECORD_STATUS_SUBMITTED, 0, "");
  ASSERT_TRUE(store_->Put(local).ok());
  ASSERT_TRUE(store_->Put(Rec(101, v1::RECORD_STATUS_SUBMITTED, 0, "")).ok());
  ASSERT_TRUE(store_
                  ->ApplyRemote({Mut("b", 1, Rec(1, v1::RECORD_STATUS_SUBMITTED, 1, "b")),
                                 Mut("b", 3, Rec(3, v1::RECORD_STATUS_SUBMITTED, 3, "b"))})
                  .ok());
  auto all = store_->MutationsMissing({}, 100);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 4u);
  auto some = store_->MutationsMissing({{"a", 1}, {"b", 1}}, 100);
  ASSERT_TRUE(some.ok());
  ASSERT_EQ(some->size(), 2u);
  EXPECT_EQ((*some)[0].origin(), "a");
  EXPECT_EQ((*some)[0].sequence(), 2u);
  EXPECT_EQ((*some)[1].origin(), "b");
  EXPECT_EQ((*some)[1].sequence(), 3u);
  EXPECT_EQ(store_->MutationsMissing({}, 3)->size(), 3u);
}

// Regression: a peer holding b/2..b/5 beyond a gap at b/1 was sent them again on every pull,
// and with a pull limit of 4 never got b/6 on.
TEST_F(ApplyRemoteTest, HeldBeyondGapIsNotResent) {
  std::vector<Mutation> all;
  for (uint64_t seq = 2; seq <= 8; ++seq) all.push_back(Mut("b", seq, Rec(seq, v1::RECORD_STATUS_SUBMITTED, seq, "b")));
  ASSERT_TRUE(store_->ApplyRemote(all).ok());
  std::unique_ptr<RequestStore> peer = OpenStore("c", "c.db");
  ASSERT_TRUE(peer->ApplyRemote({all[0], all[1], all[2], all[3]}).ok());
  absl::StatusOr<HeldSequences> held = peer->HeldBeyondVector(100);
  ASSERT_TRUE(held.ok());
  EXPECT_THAT((*held)["b"], ElementsAre(2, 3, 4, 5));
  auto missing = store_->MutationsMissing(*peer->GetVersionVector(), *held, 4);
  ASSERT_TRUE(missing.ok());
  std::vector<uint64_t> seqs;
  for (const Mutation& m : *missing) seqs.push_back(m.sequence());
  EXPECT_THAT(seqs, ElementsAre(6, 7, 8));
}

TEST_F(ApplyRemoteTest, SnapshotPagesCopyEverythingAndAdoptVector) {
  for (uint32_t id = 1; id <= 7; ++id) {
    ASSERT_TRUE(store_->Put(Rec(id, v1::RECORD_STATUS_SUBMITTED, 0, "")).ok());
  }
  ASSERT_TRUE(store_->ApplyRemote({Mut("b", 1, Rec(50, v1::RECORD_STATUS_ISSUED, 5, "b"))}).ok());
  std::unique_ptr<RequestStore> other = OpenStore("c", "c.db");
  // A later out-of-order mutation held by the receiver advances once the vector is adopted.
  ASSERT_TRUE(other->ApplyRemote({Mut("a", 8, Rec(8, v1::RECORD_STATUS_SUBMITTED, 8, "a"))}).ok());

  SnapshotCursor cursor;
  VersionVector first_vector;
  bool first = true;
  int pages = 0;
  while (true) {
    auto page = store_->ReadSnapshotPage(cursor, 3);
    ASSERT_TRUE(page.ok()) << page.status();
    if (first) first_vector = page->version_vector;
    first = false;
    ++pages;
    ASSERT_TRUE(other->StageSnapshotPage("a", page->records).ok());
    // Staged pages stay invisible until the commit adopts them with the vector.
    EXPECT_EQ(*other->CountRecords(), 1);
    cursor = page->next;
    if (page->done) break;
  }
  ASSERT_TRUE(other->CommitSnapshot("a", first_vector).ok());
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(*other->CountRecords(), 9);
  VersionVector vv = *other->GetVersionVector();
  EXPECT_EQ(vv.at("a"), 8u);
  EXPECT_EQ(vv.at("b"), 1u);
  // ApplySnapshot (one call) is idempotent.
  ASSERT_TRUE(other->ApplySnapshot(store_->ReadSnapshotPage({}, 100)->records, first_vector).ok());
  EXPECT_EQ(*other->CountRecords(), 9);
  EXPECT_EQ(other->GetVersionVector()->at("a"), 8u);
}

TEST_F(ApplyRemoteTest, DiscardedSnapshotLeavesNothingBehind) {
  ASSERT_TRUE(store_->StageSnapshotPage("b", {Rec(1, v1::RECORD_STATUS_ISSUED, 5, "b")}).ok());
  ASSERT_TRUE(store_->StageSnapshotPage("c", {Rec(2, v1::RECORD_STATUS_ISSUED, 5, "c")}).ok());
  ASSERT_TRUE(store_->DiscardSnapshot("b").ok());
  ASSERT_TRUE(store_->CommitSnapshot("b", {{"b", 4}}).ok());
  EXPECT_EQ(*store_->CountRecords(), 0);
  EXPECT_EQ(store_->GetVersionVector()->at("b"), 4u);
  ASSERT_TRUE(store_->CommitSnapshot("c", {}).ok());
  EXPECT_EQ(*store_->CountRecords(), 1);
  // Staging does not survive a restart: an interrupted snapshot starts over.
  ASSERT_TRUE(store_->StageSnapshotPage("c", {Rec(3, v1::RECORD_STATUS_ISSUED, 5, "c")}).ok());
  store_.reset();
  store_ = OpenStore("a", "a.db");
  ASSERT_TRUE(store_->CommitSnapshot("c", {}).ok());
  EXPECT_EQ(*store_->CountRecords(), 1);
}

}  // namespace
}  // namespace adcsc::store
