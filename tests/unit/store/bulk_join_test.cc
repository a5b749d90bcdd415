// Bulk join (store/bulk_join.h): the sender's one-transaction read (RequestStore::ReadForJoin)
// piped into a JoinWriter, as the gRPC glue does. Every record arrives, the secondary indexes
// are built and used, the vector is adopted, mutations the sender held beyond its vector still
// spread from the joined node (the guarantee a snapshot gets by logging each record as its
// own), and a join cut short leaves nothing behind.
#include "store/bulk_join.h"

#include <google/protobuf/util/message_differencer.h>

#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/sqlite_db.h"
#include "store/store_rows.h"
#include "tests/testing/temp_dir.h"

namespace adcsc::store {
namespace {

using google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using v1::Mutation;

constexpr int64_t kStartMs = 1'700'000'000'000;
const std::string kCaA = CaConfigKey("ca1.example.test", "Example-CA-A");
const std::string kCaB = CaConfigKey("ca2.example.test", "Example-CA-B");

RequestRecord Issued(const std::string& ca, uint32_t id) {
  RequestRecord r;
  r.set_ca_config(ca);
  r.set_request_id(id);
  r.set_status(v1::RECORD_STATUS_ISSUED);
  r.set_disposition(3);
  r.set_message("Issued");
  r.set_certificate_der(std::string(600, static_cast<char>('A' + id % 26)));
  r.set_csr_sha256(std::string(32, static_cast<char>(id % 251)));
  r.set_template_name(id % 2 == 0 ? "JamfComputer" : "JamfUser");
  r.set_requester("EXAMPLE\\svc-adcsc");
  return r;
}

// A remote mutation of `origin`, its record stamped as that node would have.
Mutation Remote(const std::string& origin, uint64_t sequence, const std::string& ca, uint32_t id) {
  Mutation m;
  m.set_origin(origin);
  m.set_sequence(sequence);
  *m.mutable_record() = Issued(ca, id);
  m.mutable_record()->set_node_id(origin);
  m.mutable_record()->set_hlc((static_cast<uint64_t>(kStartMs) << 16) + sequence);
  m.mutable_record()->set_created_ms(kStartMs);
  m.mutable_record()->set_updated_ms(kStartMs);
  return m;
}

// Every record of `store`, in key order (snapshot pages).
std::vector<RequestRecord> AllRecords(const RequestStore& store) {
  std::vector<RequestRecord> out;
  SnapshotCursor cursor;
  while (true) {
    absl::StatusOr<SnapshotPage> page = store.ReadSnapshotPage(cursor, 1000);
    EXPECT_TRUE(page.ok()) << page.status();
    if (!page.ok()) return out;
    out.insert(out.end(), page->records.begin(), page->records.end());
    cursor = page->next;
    if (page->done) return out;
  }
}

class BulkJoinTest : public ::testing::Test {
 protected:
  StoreOptions Options(const std::filesystem::path& path, const std::string& node_id) const {
    StoreOptions o;
    o.path = path;
    o.node_id = node_id;
    o.clock = &clock_;
    o.fsync = false;
    return o;
  }
  std::unique_ptr<RequestStore> Open(const std::filesystem::path& path, const std::string& node_id) {
    absl::StatusOr<std::unique_ptr<RequestStore>> store = RequestStore::Open(Options(path, node_id));
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }
  JoinWriterOptions WriterOptions(const std::filesystem::path& to, const std::string& node_id) const {
    return JoinWriterOptions{.store_path = to, .node_id = node_id, .now_ms = kStartMs, .fsync = false};
  }

  // The gRPC glue's job, in one process: the sender's read piped into a writer, then Install.
  absl::Status CopyByJoin(const RequestStore& from, const std::filesystem::path& to, const std::string& node_id,
                          size_t batch_bytes = 4096) {
    std::unique_ptr<JoinWriter> writer;
    JoinHeader header;
    absl::Status read = from.ReadForJoin(
        batch_bytes,
        [&](const JoinHeader& h) -> absl::Status {
          header = h;
          absl::StatusOr<std::unique_ptr<JoinWriter>> w = JoinWriter::Create(WriterOptions(to, node_id));
          if (!w.ok()) return w.status();
          writer = std::move(*w);
          return absl::OkStatus();
        },
        [&](JoinBatch& batch) -> absl::Status {
          ++batches_;
          for (const HeldMutation& m : batch.held) {
            if (absl::Status s = writer->AddHeld(m); !s.ok()) return s;
          }
          for (const RequestRecord& r : batch.records) {
            if (absl::Status s = writer->Add(r); !s.ok()) return s;
          }
          return absl::OkStatus();
        });
    if (!read.ok()) return read;
    if (absl::Status s = writer->Finish(header); !s.ok()) return s;
    return writer->Install();
  }

  // A sender with records of two CAs written locally and some from a peer.
  void FillSender(RequestStore& sender, uint32_t per_ca) {
    for (uint32_t id = 1; id <= per_ca; ++id) {
      ASSERT_TRUE(sender.Put(Issued(kCaA, id)).ok());
      ASSERT_TRUE(sender.Put(Issued(kCaB, 1000 + id)).ok());
    }
    std::vector<Mutation> remote;
    for (uint64_t seq = 1; seq <= 20; ++seq) remote.push_back(Remote("node-x", seq, kCaB, 5000 + seq));
    ASSERT_TRUE(sender.ApplyRemote(remote).ok());
  }

  testing::TempDir dir_;
  FakeClock clock_{kStartMs};
  int batches_ = 0;
};

TEST_F(BulkJoinTest, EveryRecordArrivesWithItsIndexesBuiltAndUsed) {
  std::unique_ptr<RequestStore> sender = Open(dir_.File("a.db"), "node-a");
  FillSender(*sender, 300);
  const std::filesystem::path joined_path = dir_.File("c.db");
  ASSERT_TRUE(CopyByJoin(*sender, joined_path, "node-c").ok());
  EXPECT_GT(batches_, 10);  // small batches: the records crossed many of them
  EXPECT_FALSE(std::filesystem::exists(JoinFilePath(joined_path)));

  std::unique_ptr<RequestStore> joined = Open(joined_path, "node-c");
  ASSERT_NE(joined, nullptr);
  const std::vector<RequestRecord> want = AllRecords(*sender);
  const std::vector<RequestRecord> got = AllRecords(*joined);
  ASSERT_EQ(got.size(), 620u);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_TRUE(MessageDifferencer::Equals(got[i], want[i])) << i;
  EXPECT_TRUE(joined->QuickCheck().ok());

  // The dedupe index exists again, with the schema's own definition, and the dedupe lookup uses it.
  auto c = sqlite::Connection::Open(joined_path, SQLITE_OPEN_READONLY);
  ASSERT_TRUE(c.ok()) << c.status();
  auto index = (*c)->Prepare("SELECT sql FROM sqlite_schema WHERE type = 'index' AND name = 'requests_dedupe'");
  ASSERT_TRUE(index.ok());
  ASSERT_TRUE(*index->Step());
  EXPECT_EQ(index->ColumnText(0),
            "CREATE INDEX requests_dedupe ON requests (ca_config, template_name, csr_sha256, created_ms)");
  index->Reset();
  auto plan = (*c)->Prepare(absl::StrCat("EXPLAIN QUERY PLAN ", rows::SelectByDedupeKeySql()));
  ASSERT_TRUE(plan.ok());
  std::string details;
  while (*plan->Step()) details += plan->ColumnText(3) + "\n";
  EXPECT_THAT(details, HasSubstr("USING INDEX requests_dedupe")) << details;
  auto integrity = (*c)->Prepare("PRAGMA integrity_check");
  ASSERT_TRUE(integrity.ok());
  ASSERT_TRUE(*integrity->Step());
  EXPECT_EQ(integrity->ColumnText(0), "ok");
  plan->Reset();
  integrity->Reset();

  const RequestRecord probe = Issued(kCaB, 1007);
  auto found = joined->FindByDedupeKey(kCaB, probe.template_name(), probe.csr_sha256(), 0);
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->request_id(), 1007u);
  auto max = joined->MaxRequestId(kCaA);
  ASSERT_TRUE(max.ok());
  EXPECT_EQ(*max, 300u);
}

TEST_F(BulkJoinTest, TheJoinedStoreAdoptsTheVectorAndLogsNothingOfItsOwn) {
  std::unique_ptr<RequestStore> sender = Open(dir_.File("a.db"), "node-a");
  FillSender(*sender, 50);
  const std::filesystem::path joined_path = dir_.File("c.db");
  ASSERT_TRUE(CopyByJoin(*sender, joined_path, "node-c").ok());
  std::unique_ptr<RequestStore> joined = Open(joined_path, "node-c");
  ASSERT_NE(joined, nullptr);
  auto vector = joined->GetVersionVector();
  ASSERT_TRUE(vector.ok());
  EXPECT_THAT(*vector, ElementsAre(Pair("node-a", 100u), Pair("node-x", 20u)));
  // Nothing logged: its peers have nothing to pull back from it (a merged snapshot would have
  // logged every record as node-c's).
  auto logged = joined->MutationsMissing({}, 1000);
  ASSERT_TRUE(logged.ok());
  EXPECT_TRUE(logged->empty());
  // It is node-c's store: its next write is node-c's first mutation, and it refuses node-a.
  auto put = joined->Put(Issued(kCaA, 9999));
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->sequence, 1u);
  EXPECT_FALSE(RequestStore::Open(Options(joined_path, "node-a")).ok());
}

TEST_F(BulkJoinTest, ANodeIdThatWroteBeforeNumbersAfterWhatTheSenderHoldsOfIt) {
  std::unique_ptr<RequestStore> sender = Open(dir_.File("a.db"), "node-a");
  FillSender(*sender, 5);
  ASSERT_TRUE(sender->ApplyRemote({Remote("node-c", 1, kCaA, 700), Remote("node-c", 2, kCaA, 701)}).ok());
  const std::filesystem::path joined_path = dir_.File("c.db");
  ASSERT_TRUE(CopyByJoin(*sender, joined_path, "node-c").ok());
  std::unique_ptr<RequestStore> joined = Open(joined_path, "node-c");
  auto put = joined->Put(Issued(kCaA, 9999));
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->sequence, 3u);  // not 1: the peers hold node-c's 1 and 2 already
}

// The guarantee SnapshotMerger keeps by logging each record as the receiver's own mutation:
// a mutation no vector claims (held beyond a gap) must still reach the other nodes from the
// joined one, even once its origin and the sender are gone.
TEST_F(BulkJoinTest, MutationsHeldBeyondTheSendersVectorStillSpreadFromTheJoinedNode) {
  std::unique_ptr<RequestStore> sender = Open(dir_.File("a.db"), "node-a");
  FillSender(*sender, 10);
  // node-y's 1 and 3 arrived, 2 never did: the vector says node-y=1, and 3 is held beyond it.
  ASSERT_TRUE(sender->ApplyRemote({Remote("node-y", 1, kCaA, 801), Remote("node-y", 3, kCaA, 803)}).ok());
  auto held_by_sender = sender->HeldBeyondVector(10);
  ASSERT_TRUE(held_by_sender.ok());
  ASSERT_THAT(*held_by_sender, ElementsAre(Pair("node-y", ElementsAre(3u))));

  const std::filesystem::path joined_path = dir_.File("c.db");
  ASSERT_TRUE(CopyByJoin(*sender, joined_path, "node-c").ok());
  sender.reset();  // the sender (and node-y) are gone for good
  std::filesystem::remove(dir_.File("a.db"));

  std::unique_ptr<RequestStore> joined = Open(joined_path, "node-c");
  auto vector = joined->GetVersionVector();
  ASSERT_TRUE(vector.ok());
  EXPECT_EQ((*vector)["node-y"], 1u);
  auto held = joined->HeldBeyondVector(10);
  ASSERT_TRUE(held.ok());
  EXPECT_THAT(*held, ElementsAre(Pair("node-y", ElementsAre(3u))));

  // A third node that has node-y's 1 only pulls from the joined node and gets 3, as it
  // would have from the sender.
  std::unique_ptr<RequestStore> third = Open(dir_.File("b.db"), "node-b");
  ASSERT_TRUE(third->ApplyRemote({Remote("node-y", 1, kCaA, 801)}).ok());
  auto theirs = third->GetVersionVector();
  ASSERT_TRUE(theirs.ok());
  auto missing = joined->MutationsMissing(*theirs, 1000);
  ASSERT_TRUE(missing.ok());
  bool found = false;
  for (const Mutation& m : *missing) {
    if (m.origin() == "node-y" && m.sequence() == 3) {
      found = true;
      EXPECT_EQ(m.record().request_id(), 803u);
      EXPECT_EQ(m.record().node_id(), "node-y");
    }
  }
  EXPECT_TRUE(found);
  ASSERT_TRUE(third->ApplyRemote(*missing).ok());
  auto got = third->Get(kCaA, 803);
  ASSERT_TRUE(got.ok() && got->has_value());
}

// The sender's read is one transaction: a write that commits while the stream is under way
// is not in it, and the vector sent first describes exactly the records that follow.
TEST_F(BulkJoinTest, TheSendersReadIsOneTransaction) {
  std::unique_ptr<RequestStore> sender = Open(dir_.File("a.db"), "node-a");
  FillSender(*sender, 20);
  JoinHeader header;
  std::vector<RequestRecord> records;
  bool wrote = false;
  absl::Status read = sender->ReadForJoin(
      1024,
      [&](const JoinHeader& h) {
        header = h;
        return absl::OkStatus();
      },
      [&](JoinBatch& batch) {
        if (!wrote) {  // mid-stream: a new record and a change to one already sent
          wrote = true;
          EXPECT_TRUE(sender->Put(Issued(kCaA, 500)).ok());
          RequestRecord revoked = Issued(kCaA, 1);
          revoked.set_status(v1::RECORD_STATUS_REVOKED);
          EXPECT_TRUE(sender->Put(revoked).ok());
        }
        records.insert(records.end(), batch.records.begin(), batch.records.end());
        return absl::OkStatus();
      });
  ASSERT_TRUE(read.ok()) << read;
  EXPECT_EQ(header.records, 60);
  ASSERT_EQ(records.size(), 60u);
  EXPECT_EQ(header.version_vector.at("node-a"), 40u);
  for (const RequestRecord& r : records) {
    EXPECT_NE(r.request_id(), 500u);
    if (r.ca_config() == kCaA && r.request_id() == 1) {
      EXPECT_EQ(r.status(), v1::RECORD_STATUS_ISSUED);
    }
  }
  auto now = sender->GetVersionVector();
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->at("node-a"), 42u);  // the writes did commit
}

TEST_F(BulkJoinTest, AJoinCutShortLeavesNothingAndTheNextOneStartsOver) {
  std::unique_ptr<RequestStore> sender = Open(dir_.File("a.db"), "node-a");
  FillSender(*sender, 30);
  const std::filesystem::path joined_path = dir_.File("c.db");
  {
    auto writer = JoinWriter::Create(WriterOptions(joined_path, "node-c"));
    ASSERT_TRUE(writer.ok()) << writer.status();
    ASSERT_TRUE((*writer)->Add(Issued(kCaA, 1)).ok());
    EXPECT_TRUE(std::filesystem::exists(JoinFilePath(joined_path)));
  }  // the peer went away: the writer is dropped unfinished
  EXPECT_FALSE(std::filesystem::exists(JoinFilePath(joined_path)));
  EXPECT_FALSE(std::filesystem::exists(joined_path));

  // A node killed mid-join leaves a partial file behind (no journal: it is garbage).
  { std::ofstream(JoinFilePath(joined_path)) << "half a database"; }
  { std::ofstream(JoinFilePath(joined_path).string() + "-journal") << "junk"; }
  ASSERT_TRUE(DiscardJoinFile(joined_path).ok());
  EXPECT_FALSE(std::filesystem::exists(JoinFilePath(joined_path)));
  EXPECT_FALSE(std::filesystem::exists(JoinFilePath(joined_path).string() + "-journal"));

  // And a writer made over such leftovers starts from an empty file.
  { std::ofstream(JoinFilePath(joined_path)) << "half a database"; }
  ASSERT_TRUE(CopyByJoin(*sender, joined_path, "node-c").ok());
  std::unique_ptr<RequestStore> joined = Open(joined_path, "node-c");
  auto count = joined->CountRecords();
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 80);
}

TEST_F(BulkJoinTest, AFaultySenderVoidsTheJoin) {
  const std::filesystem::path joined_path = dir_.File("c.db");
  {
    auto writer = JoinWriter::Create(WriterOptions(joined_path, "node-c"));
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE((*writer)->Add(Issued(kCaA, 2)).ok());
    EXPECT_EQ((*writer)->Add(Issued(kCaA, 2)).code(), absl::StatusCode::kInvalidArgument);  // a repeat
    EXPECT_EQ((*writer)->Add(Issued(kCaA, 1)).code(), absl::StatusCode::kInvalidArgument);  // backwards
    EXPECT_EQ((*writer)->Add(Issued("", 3)).code(), absl::StatusCode::kInvalidArgument);
    ASSERT_TRUE((*writer)->Add(Issued(kCaB, 1)).ok());  // a later CA restarts the IDs
    // Fewer records than announced: not installed.
    const absl::Status finished = (*writer)->Finish(JoinHeader{.version_vector = {{"node-a", 5}}, .records = 3});
    EXPECT_EQ(finished.code(), absl::StatusCode::kDataLoss) << finished;
    EXPECT_EQ((*writer)->Install().code(), absl::StatusCode::kFailedPrecondition);
  }
  EXPECT_FALSE(std::filesystem::exists(joined_path));
  EXPECT_FALSE(std::filesystem::exists(JoinFilePath(joined_path)));
}

TEST_F(BulkJoinTest, OnlyAStoreThatHoldsNothingMayBeReplaced) {
  const std::filesystem::path path = dir_.File("c.db");
  auto empty = StoreIsEmpty(Options(path, "node-c"));
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(*empty);  // absent
  EXPECT_FALSE(std::filesystem::exists(path));
  { Open(path, "node-c"); }
  empty = StoreIsEmpty(Options(path, "node-c"));
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(*empty);  // opened once, never written

  // Another node's file is not examined (let alone replaced).
  EXPECT_FALSE(StoreIsEmpty(Options(path, "node-d")).ok());

  {
    std::unique_ptr<RequestStore> s = Open(path, "node-c");
    SubmitIntentRow intent;
    intent.key = {kCaA, "JamfComputer", std::string(32, 'x')};
    intent.requester = "EXAMPLE\\svc-adcsc";
    intent.csr_der = "csr";
    ASSERT_TRUE(s->RecordSubmitIntent(intent).ok());
  }
  empty = StoreIsEmpty(Options(path, "node-c"));
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(*empty);  // a CA call whose outcome is unknown lives only here

  const std::filesystem::path marked = dir_.File("m.db");
  { ASSERT_TRUE(Open(marked, "node-c")->MarkRebuildFromPeers().ok()); }
  empty = StoreIsEmpty(Options(marked, "node-c"));
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(*empty);

  const std::filesystem::path written = dir_.File("w.db");
  { ASSERT_TRUE(Open(written, "node-c")->Put(Issued(kCaA, 1)).ok()); }
  empty = StoreIsEmpty(Options(written, "node-c"));
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(*empty);

  // Install never replaces a store file that is still there.
  std::unique_ptr<RequestStore> sender = Open(dir_.File("a.db"), "node-a");
  FillSender(*sender, 3);
  EXPECT_EQ(CopyByJoin(*sender, written, "node-c").code(), absl::StatusCode::kFailedPrecondition);
  std::unique_ptr<RequestStore> kept = Open(written, "node-c");
  auto count = kept->CountRecords();
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 1);
  EXPECT_FALSE(std::filesystem::exists(JoinFilePath(written)));
}

TEST_F(BulkJoinTest, AnEmptySenderStreamsItsHeaderAlone) {
  std::unique_ptr<RequestStore> sender = Open(dir_.File("a.db"), "node-a");
  int headers = 0;
  int batches = 0;
  ASSERT_TRUE(sender
                  ->ReadForJoin(
                      1024,
                      [&](const JoinHeader& h) {
                        ++headers;
                        EXPECT_EQ(h.records, 0);
                        EXPECT_TRUE(h.version_vector.empty());
                        return absl::OkStatus();
                      },
                      [&](JoinBatch&) {
                        ++batches;
                        return absl::OkStatus();
                      })
                  .ok());
  EXPECT_EQ(headers, 1);
  EXPECT_EQ(batches, 0);
  // A callback's error ends the read with it.
  FillSender(*sender, 5);
  const absl::Status stopped = sender->ReadForJoin(
      64, [](const JoinHeader&) { return absl::OkStatus(); },
      [](JoinBatch&) { return absl::CancelledError("the joiner went away"); });
  EXPECT_EQ(stopped.code(), absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace adcsc::store
