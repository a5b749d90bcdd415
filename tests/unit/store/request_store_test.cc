// RequestStore: the local write rule, durability, the mutation log and version vector,
// submit dedupe, concurrency, and the checks made when a store is opened.
#include "store/request_store.h"

#include <google/protobuf/util/message_differencer.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/hlc.h"
#include "store/schema.h"
#include "store/sqlite_db.h"
#include "tests/testing/temp_dir.h"

namespace adcsc::store {
namespace {

using google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;
using v1::Mutation;
using v1::RECORD_STATUS_FAILED;
using v1::RECORD_STATUS_ISSUED;
using v1::RECORD_STATUS_PENDING;
using v1::RECORD_STATUS_REVOKED;
using v1::RECORD_STATUS_SUBMITTED;
using v1::RECORD_STATUS_UNSPECIFIED;

constexpr int64_t kStartMs = 1'700'000'000'000;
constexpr int64_t kDedupeWindowMs = int64_t{10} * 60 * 1000;
const std::string kCa = CaConfigKey("CA01.contoso.com", "Contoso-Issuing-CA");

std::string Digest(char fill) { return std::string(32, fill); }

RequestRecord Submitted(uint32_t id, char csr = 'a', const std::string& tmpl = "JamfDevice") {
  RequestRecord r;
  r.set_ca_config(kCa);
  r.set_request_id(id);
  r.set_status(RECORD_STATUS_SUBMITTED);
  r.set_csr_sha256(Digest(csr));
  r.set_template_name(tmpl);
  r.set_requester("CONTOSO\\svc-adcsc");
  return r;
}

RequestRecord Outcome(uint32_t id, RecordStatus status, uint32_t disposition, const std::string& message) {
  RequestRecord r;
  r.set_ca_config(kCa);
  r.set_request_id(id);
  r.set_status(status);
  r.set_disposition(disposition);
  r.set_message(message);
  if (status == RECORD_STATUS_ISSUED) r.set_certificate_der(std::string("\x30\x82\x03\xad", 4));
  return r;
}

class RequestStoreTest : public ::testing::Test {
 protected:
  StoreOptions Options(const std::string& node_id = "node-a") const {
    return StoreOptions{.path = path_,
                        .node_id = node_id,
                        .clock = &clock_,
                        .fsync = false,
                        // No test here expects a checkpoint to fail (gtest assertions are thread-safe).
                        .on_checkpoint_error = [](const absl::Status& s) { ADD_FAILURE() << s; }};
  }
  std::unique_ptr<RequestStore> OpenStore(const std::string& node_id = "node-a") {
    absl::StatusOr<std::unique_ptr<RequestStore>> store = RequestStore::Open(Options(node_id));
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }
  // A raw connection, for inspecting or tampering with the file while no store is open.
  std::unique_ptr<sqlite::Connection> Raw() {
    absl::StatusOr<std::unique_ptr<sqlite::Connection>> c =
        sqlite::Connection::Open(path_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }
  static RequestRecord MustPut(RequestStore& store, const RequestRecord& r, bool changed = true) {
    absl::StatusOr<WriteResult> w = store.Put(r);
    EXPECT_TRUE(w.ok()) << w.status();
    if (!w.ok()) return {};
    EXPECT_EQ(w->changed, changed) << r.ShortDebugString();
    return w->record;
  }
  static std::optional<RequestRecord> MustGet(RequestStore& store, uint32_t id) {
    absl::StatusOr<std::optional<RequestRecord>> r = store.Get(kCa, id);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : std::nullopt;
  }

  adcsc::testing::TempDir dir_;
  const std::filesystem::path path_ = dir_.File("store.db");
  FakeClock clock_{kStartMs};
};

TEST_F(RequestStoreTest, PutThenGetRoundTripsEveryField) {
  auto store = OpenStore();
  RequestRecord r = Outcome(95, RECORD_STATUS_ISSUED, 3, "Certificate issued");
  r.set_csr_sha256(Digest('\0'));  // binary, with NULs
  r.set_template_name("JamfDevice");
  r.set_requester("CONTOSO\\svc-adcsc");
  r.set_hresult(0x80094011u);
  const RequestRecord stored = MustPut(*store, r);

  EXPECT_EQ(stored.node_id(), "node-a");
  EXPECT_EQ(stored.created_ms(), kStartMs);
  EXPECT_EQ(stored.updated_ms(), kStartMs);
  EXPECT_EQ(HybridLogicalClock::PhysicalMillis(stored.hlc()), kStartMs);

  std::optional<RequestRecord> got = MustGet(*store, 95);
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(MessageDifferencer::Equals(*got, stored)) << got->ShortDebugString() << "\nvs\n"
                                                        << stored.ShortDebugString();
  EXPECT_EQ(got->hresult(), 0x80094011u);
  EXPECT_EQ(got->csr_sha256(), Digest('\0'));
}

TEST_F(RequestStoreTest, GetOfAnUnknownKeyIsEmpty) {
  auto store = OpenStore();
  EXPECT_FALSE(MustGet(*store, 1).has_value());
  MustPut(*store, Submitted(1));
  absl::StatusOr<std::optional<RequestRecord>> other = store->Get(CaConfigKey("ca02", "X"), 1);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->has_value());
}

TEST_F(RequestStoreTest, LaterWritesKeepCreatedAndAdvanceTheStamp) {
  auto store = OpenStore();
  const RequestRecord first = MustPut(*store, Submitted(10));
  clock_.AdvanceMillis(1500);
  const RequestRecord second = MustPut(*store, Outcome(10, RECORD_STATUS_PENDING, 5, "Taken"));
  EXPECT_EQ(second.created_ms(), kStartMs);
  EXPECT_EQ(second.updated_ms(), kStartMs + 1500);
  EXPECT_GT(second.hlc(), first.hlc());
  EXPECT_TRUE(Supersedes(second, first));
}

TEST_F(RequestStoreTest, ALowerRankNeverOverwrites) {
  auto store = OpenStore();
  const RequestRecord issued = MustPut(*store, Outcome(20, RECORD_STATUS_ISSUED, 3, "Issued"));
  absl::StatusOr<WriteResult> late = store->Put(Outcome(20, RECORD_STATUS_PENDING, 5, "Taken"));
  ASSERT_TRUE(late.ok()) << late.status();
  EXPECT_FALSE(late->changed);
  EXPECT_EQ(late->sequence, 0u);
  EXPECT_EQ(late->record.status(), RECORD_STATUS_ISSUED);
  EXPECT_TRUE(MessageDifferencer::Equals(*MustGet(*store, 20), issued));
  EXPECT_EQ((*store->GetVersionVector())["node-a"], 1u);
}

TEST_F(RequestStoreTest, SameRankWithNewContentIsStoredButARepeatIsNot) {
  auto store = OpenStore();
  MustPut(*store, Outcome(30, RECORD_STATUS_PENDING, 5, "Taken under submission"));
  const RequestRecord updated = MustPut(*store, Outcome(30, RECORD_STATUS_PENDING, 5, "Waiting for a PKI admin"));
  EXPECT_EQ(updated.message(), "Waiting for a PKI admin");

  absl::StatusOr<WriteResult> repeat = store->Put(Outcome(30, RECORD_STATUS_PENDING, 5, "Waiting for a PKI admin"));
  ASSERT_TRUE(repeat.ok());
  EXPECT_FALSE(repeat->changed);
  EXPECT_TRUE(MessageDifferencer::Equals(repeat->record, updated));
  EXPECT_EQ((*store->GetVersionVector())["node-a"], 2u);
}

TEST_F(RequestStoreTest, ATerminalOutcomeIsFinalExceptForRevocation) {
  auto store = OpenStore();
  MustPut(*store, Outcome(40, RECORD_STATUS_ISSUED, 3, "Issued"));
  const RequestRecord failed =
      MustPut(*store, Outcome(40, RECORD_STATUS_FAILED, 1, "RPC server unavailable"), /*changed=*/false);
  EXPECT_EQ(failed.status(), RECORD_STATUS_ISSUED);
  const RequestRecord revoked = MustPut(*store, Outcome(40, RECORD_STATUS_REVOKED, 6, "Revoked"));
  EXPECT_EQ(revoked.status(), RECORD_STATUS_REVOKED);
}

TEST_F(RequestStoreTest, AnAdministratorsOutcomeMovesARecordAnywhereOneGenerationUp) {
  auto store = OpenStore();
  MustPut(*store, Submitted(45, 'q'));
  const RequestRecord issued = MustPut(*store, Outcome(45, RECORD_STATUS_ISSUED, 3, "Issued"));
  EXPECT_EQ(issued.admin_hlc(), 0u);
  // Held (revoked, reason certificate-hold) by an administrator.
  absl::StatusOr<WriteResult> held = store->PutAdminOutcome(Outcome(45, RECORD_STATUS_REVOKED, 6, "Revoked"));
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_TRUE(held->changed);
  EXPECT_EQ(held->record.admin_hlc(), held->record.hlc());
  EXPECT_EQ(held->record.csr_sha256(), Digest('q')) << "the submit's facts are kept";
  // A retrieve's answer recorded late (the CA said issued before the hold): ignored.
  clock_.AdvanceMillis(10);
  MustPut(*store, Outcome(45, RECORD_STATUS_ISSUED, 3, "Issued"), /*changed=*/false);
  // Released from hold: REVOKED back to ISSUED, which a plain Put never does.
  absl::StatusOr<WriteResult> released = store->PutAdminOutcome(Outcome(45, RECORD_STATUS_ISSUED, 3, "Issued"));
  ASSERT_TRUE(released.ok()) << released.status();
  EXPECT_TRUE(released->changed);
  EXPECT_EQ(released->record.status(), RECORD_STATUS_ISSUED);
  EXPECT_GT(released->record.admin_hlc(), held->record.admin_hlc());
  EXPECT_TRUE(Supersedes(released->record, held->record));
  // The same action again is recorded again (another node may hold an earlier action's answer).
  absl::StatusOr<WriteResult> again = store->PutAdminOutcome(Outcome(45, RECORD_STATUS_ISSUED, 3, "Issued"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->changed);
  EXPECT_GT(again->record.admin_hlc(), released->record.admin_hlc());
  // A later ordinary write keeps the stamp of the last action.
  const RequestRecord later = MustPut(*store, Outcome(45, RECORD_STATUS_REVOKED, 6, "Revoked"));
  EXPECT_EQ(later.admin_hlc(), again->record.admin_hlc());
  EXPECT_EQ(MustGet(*store, 45)->admin_hlc(), again->record.admin_hlc()) << "stored and read back";
}

TEST_F(RequestStoreTest, FindByCertificateBytesSearchesTheCertificatesOfOneCa) {
  auto store = OpenStore();
  RequestRecord a = Outcome(60, RECORD_STATUS_ISSUED, 3, "Issued");
  a.set_certificate_der(std::string("\x30\x82\x01\x0a\x02\x03\x61\x00\x07\x30", 10));
  RequestRecord b = Outcome(61, RECORD_STATUS_ISSUED, 3, "Issued");
  b.set_certificate_der(std::string("\x30\x82\x01\x0a\x02\x03\x61\x00\x08\x30", 10));
  MustPut(*store, a);
  MustPut(*store, b);
  MustPut(*store, Submitted(62));
  auto found = store->FindByCertificateBytes(kCa, std::string("\x61\x00\x08", 3), 10);
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ(found->front().request_id(), 61u);
  found = store->FindByCertificateBytes(kCa, std::string("\x61\x00", 2), 10);
  ASSERT_TRUE(found.ok());
  ASSERT_EQ(found->size(), 2u);
  EXPECT_EQ(found->front().request_id(), 60u);
  found = store->FindByCertificateBytes(kCa, std::string("\x61\x00", 2), 1);
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->size(), 1u) << "at most `limit`";
  found = store->FindByCertificateBytes(CaConfigKey("ca02", "X"), std::string("\x61\x00", 2), 10);
  ASSERT_TRUE(found.ok());
  EXPECT_TRUE(found->empty()) << "another CA's records are not searched";
  EXPECT_FALSE(store->FindByCertificateBytes(kCa, "", 10).ok());
}

TEST_F(RequestStoreTest, AnUpdateWithoutSubmitDetailsKeepsTheStoredOnes) {
  auto store = OpenStore();
  MustPut(*store, Submitted(50, 'z', "JamfUser"));
  const RequestRecord issued = MustPut(*store, Outcome(50, RECORD_STATUS_ISSUED, 3, "Issued"));
  EXPECT_EQ(issued.csr_sha256(), Digest('z'));
  EXPECT_EQ(issued.template_name(), "JamfUser");
  EXPECT_EQ(issued.requester(), "CONTOSO\\svc-adcsc");
}

TEST_F(RequestStoreTest, InvalidUpdatesAreRefused) {
  auto store = OpenStore();
  RequestRecord no_ca = Submitted(1);
  no_ca.clear_ca_config();
  RequestRecord no_id = Submitted(0);
  RequestRecord no_status = Submitted(1);
  no_status.set_status(RECORD_STATUS_UNSPECIFIED);
  RequestRecord hex_digest = Submitted(1);
  hex_digest.set_csr_sha256(std::string(64, 'f'));
  for (const RequestRecord& r : {no_ca, no_id, no_status, hex_digest}) {
    absl::StatusOr<WriteResult> w = store->Put(r);
    EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument) << r.ShortDebugString();
  }
  EXPECT_THAT(store->Put(hex_digest).status().message(), HasSubstr("32-byte"));
  EXPECT_EQ(*store->CountRecords(), 0);
}

TEST_F(RequestStoreTest, DataSurvivesCloseAndReopen) {
  StoreOptions options = Options();
  options.fsync = true;  // the point of this test
  RequestRecord stored;
  {
    absl::StatusOr<std::unique_ptr<RequestStore>> store = RequestStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    MustPut(**store, Submitted(60));
    stored = MustPut(**store, Outcome(60, RECORD_STATUS_ISSUED, 3, "Issued"));
  }
  absl::StatusOr<std::unique_ptr<RequestStore>> reopened = RequestStore::Open(options);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  std::optional<RequestRecord> got = MustGet(**reopened, 60);
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(MessageDifferencer::Equals(*got, stored));
  EXPECT_EQ(*(*reopened)->CountRecords(), 1);
  EXPECT_EQ((*(*reopened)->GetVersionVector())["node-a"], 2u);
  // Sequences continue after a restart.
  absl::StatusOr<WriteResult> next = (*reopened)->Put(Submitted(61));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->sequence, 3u);
}

TEST_F(RequestStoreTest, WritesPastTheCheckpointThresholdSurviveReopen) {
  // Enough commits to take the WAL past 1000 pages several times over, so the background
  // checkpointer copies pages while Put() and Get() go on (a failure would fail the test
  // through on_checkpoint_error).
  constexpr uint32_t kRecords = 1500;
  {
    auto store = OpenStore();
    for (uint32_t id = 1; id <= kRecords; ++id) {
      RequestRecord r = Submitted(id, static_cast<char>('a' + id % 26));
      r.set_message(std::string(1000, static_cast<char>('A' + id % 26)));  // ~1 KB a row
      MustPut(*store, r);
      if (id % 100 == 0) {
        ASSERT_TRUE(MustGet(*store, id / 2).has_value());
      }
    }
  }
  auto store = OpenStore();
  EXPECT_EQ(*store->CountRecords(), kRecords);
  EXPECT_EQ((*store->GetVersionVector())["node-a"], kRecords);
  for (uint32_t id : {1u, kRecords / 2, kRecords}) {
    std::optional<RequestRecord> got = MustGet(*store, id);
    ASSERT_TRUE(got.has_value()) << id;
    EXPECT_EQ(got->message(), std::string(1000, static_cast<char>('A' + id % 26)));
  }
  absl::StatusOr<std::vector<Mutation>> log = store->MutationsSince("node-a", 0, kRecords + 1);
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_EQ(log->size(), kRecords);
}

TEST_F(RequestStoreTest, AcknowledgedWritesSurviveAProcessCrash) {
  // The child acknowledges a write and dies without closing anything: no destructors, no
  // checkpoint. What Put() acknowledged must be in the WAL.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    StoreOptions options = Options();
    options.fsync = true;
    absl::StatusOr<std::unique_ptr<RequestStore>> store = RequestStore::Open(options);
    const bool ok = store.ok() && (*store)->Put(Submitted(65)).ok() &&
                    (*store)->Put(Outcome(65, RECORD_STATUS_ISSUED, 3, "Issued")).ok();
    std::_Exit(ok ? 0 : 1);
  }
  int wstatus = 0;
  ASSERT_EQ(::waitpid(child, &wstatus, 0), child);
  ASSERT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);

  auto store = OpenStore();
  std::optional<RequestRecord> got = MustGet(*store, 65);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->status(), RECORD_STATUS_ISSUED);
  EXPECT_EQ((*store->GetVersionVector())["node-a"], 2u);
}

TEST_F(RequestStoreTest, MutationLogIsContiguousAndMatchesTheVersionVector) {
  auto store = OpenStore();
  std::vector<RequestRecord> changes;
  for (uint32_t id = 1; id <= 10; ++id) {
    changes.push_back(MustPut(*store, Submitted(id)));
    MustPut(*store, Submitted(id), /*changed=*/false);  // no-ops append nothing
    if (id % 2 == 0) changes.push_back(MustPut(*store, Outcome(id, RECORD_STATUS_ISSUED, 3, "ok")));
  }
  absl::StatusOr<std::vector<Mutation>> log = store->MutationsSince("node-a", 0, 1000);
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_EQ(log->size(), changes.size());
  for (size_t i = 0; i < log->size(); ++i) {
    const Mutation& m = (*log)[i];
    EXPECT_EQ(m.origin(), "node-a");
    EXPECT_EQ(m.sequence(), i + 1);
    // Each change is sent as its record stands now: the last change of that request.
    const RequestRecord* last = nullptr;
    for (const RequestRecord& c : changes) {
      if (c.request_id() == changes[i].request_id()) last = &c;
    }
    EXPECT_TRUE(MessageDifferencer::Equals(m.record(), *last)) << "sequence " << i + 1;
  }
  absl::StatusOr<VersionVector> vv = store->GetVersionVector();
  ASSERT_TRUE(vv.ok());
  EXPECT_EQ(*vv, (VersionVector{{"node-a", changes.size()}}));

  absl::StatusOr<std::vector<Mutation>> page = store->MutationsSince("node-a", 5, 3);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 3u);
  EXPECT_EQ((*page)[0].sequence(), 6u);
  EXPECT_EQ((*page)[2].sequence(), 8u);
  EXPECT_TRUE(store->MutationsSince("node-b", 0, 10)->empty());
  EXPECT_TRUE(store->MutationsSince("node-a", changes.size(), 10)->empty());
  EXPECT_TRUE(store->MutationsSince("node-a", 0, 0)->empty());
}

TEST_F(RequestStoreTest, ADamagedMutationFailsEveryReadButDoesNotWedgeTheReader) {
  {
    auto store = OpenStore();
    for (uint32_t id = 1; id <= 3; ++id) MustPut(*store, Submitted(id));
  }
  {
    auto raw = Raw();
    ASSERT_TRUE(raw->Exec("UPDATE mutations SET record = x'ff' WHERE sequence = 2").ok());
  }
  auto store = OpenStore();
  // The read gives up at mutation 2 with its cached statement mid-iteration; the reader
  // connection goes back to the pool and the next read on it must start from the top.
  for (int attempt = 0; attempt < 2; ++attempt) {
    absl::StatusOr<std::vector<Mutation>> log = store->MutationsSince("node-a", 0, 10);
    EXPECT_EQ(log.status().code(), absl::StatusCode::kDataLoss) << attempt << log.status();
    EXPECT_THAT(log.status().message(), HasSubstr("node-a/2")) << attempt;
  }
  absl::StatusOr<std::vector<Mutation>> after = store->MutationsSince("node-a", 2, 10);
  ASSERT_TRUE(after.ok()) << after.status();
  ASSERT_EQ(after->size(), 1u);
  EXPECT_EQ((*after)[0].sequence(), 3u);
  // Nor does the abandoned read pin an old snapshot: a later write is visible.
  MustPut(*store, Submitted(4));
  EXPECT_TRUE(MustGet(*store, 4).has_value());
  after = store->MutationsSince("node-a", 2, 10);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->size(), 2u);
}

TEST_F(RequestStoreTest, DedupeFindsTheNewestMatchInsideTheWindow) {
  auto store = OpenStore();
  MustPut(*store, Submitted(70, 'a'));
  clock_.AdvanceMillis(1000);
  MustPut(*store, Submitted(71, 'a'));                   // same key, newer
  MustPut(*store, Submitted(72, 'b'));                   // other CSR
  MustPut(*store, Submitted(73, 'a', "OtherTemplate"));  // other template
  RequestRecord other_ca = Submitted(74, 'a');
  other_ca.set_ca_config(CaConfigKey("ca02.contoso.com", "Other-CA"));
  MustPut(*store, other_ca);

  auto find = [&](char csr, const std::string& tmpl, int64_t not_before) {
    absl::StatusOr<std::optional<RequestRecord>> r = store->FindByDedupeKey(kCa, tmpl, Digest(csr), not_before);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && r->has_value() ? (*r)->request_id() : 0u;
  };
  const int64_t window_start = clock_.NowUnixMillis() - kDedupeWindowMs;
  EXPECT_EQ(find('a', "JamfDevice", window_start), 71u);
  EXPECT_EQ(find('b', "JamfDevice", window_start), 72u);
  EXPECT_EQ(find('a', "OtherTemplate", window_start), 73u);
  EXPECT_EQ(find('c', "JamfDevice", window_start), 0u);
  EXPECT_EQ(find('a', "jamfdevice", window_start), 0u);  // template names match exactly
  // The window is inclusive of its start and excludes anything older.
  EXPECT_EQ(find('a', "JamfDevice", kStartMs + 1000), 71u);
  EXPECT_EQ(find('a', "JamfDevice", kStartMs + 1001), 0u);
  EXPECT_EQ(find('b', "JamfDevice", kStartMs + 1001), 0u);
}

TEST_F(RequestStoreTest, DedupeKeepsCreatedTimeAcrossUpdates) {
  auto store = OpenStore();
  MustPut(*store, Submitted(80, 'a'));
  clock_.AdvanceMillis(kDedupeWindowMs + 1);
  MustPut(*store, Outcome(80, RECORD_STATUS_ISSUED, 3, "Issued"));  // does not renew it
  absl::StatusOr<std::optional<RequestRecord>> r =
      store->FindByDedupeKey(kCa, "JamfDevice", Digest('a'), clock_.NowUnixMillis() - kDedupeWindowMs);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
}

TEST_F(RequestStoreTest, DedupeRefusesAHexDigest) {
  auto store = OpenStore();
  absl::StatusOr<std::optional<RequestRecord>> r = store->FindByDedupeKey(kCa, "JamfDevice", std::string(64, 'a'), 0);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(RequestStoreTest, ConcurrentPutsFromSixteenThreadsAreAllRecorded) {
  constexpr int kThreads = 16;
  constexpr int kRecordsPerThread = 25;
  auto store = OpenStore();
  std::vector<std::thread> threads;
  std::vector<std::vector<uint64_t>> sequences(kThreads);
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRecordsPerThread; ++i) {
        const uint32_t id = static_cast<uint32_t>(1 + t * kRecordsPerThread + i);
        for (const RequestRecord& r : {Submitted(id), Outcome(id, RECORD_STATUS_ISSUED, 3, "Issued")}) {
          absl::StatusOr<WriteResult> w = store->Put(r);
          if (!w.ok() || !w->changed) {
            ++failures;
            continue;
          }
          sequences[t].push_back(w->sequence);
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_EQ(failures.load(), 0);

  constexpr uint64_t kExpected = uint64_t{kThreads} * kRecordsPerThread * 2;
  std::vector<uint64_t> all;
  for (const auto& s : sequences) {
    EXPECT_TRUE(std::is_sorted(s.begin(), s.end()));  // each caller sees its writes in order
    all.insert(all.end(), s.begin(), s.end());
  }
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), kExpected);
  for (uint64_t i = 0; i < kExpected; ++i) ASSERT_EQ(all[i], i + 1) << "unique and contiguous";

  EXPECT_EQ(*store->CountRecords(), kThreads * kRecordsPerThread);
  EXPECT_EQ((*store->GetVersionVector())["node-a"], kExpected);
  absl::StatusOr<std::vector<Mutation>> log = store->MutationsSince("node-a", 0, kExpected + 1);
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(log->size(), kExpected);
  for (uint32_t id = 1; id <= kThreads * kRecordsPerThread; ++id) {
    std::optional<RequestRecord> r = MustGet(*store, id);
    ASSERT_TRUE(r.has_value()) << id;
    EXPECT_EQ(r->status(), RECORD_STATUS_ISSUED) << id;
  }
}

TEST_F(RequestStoreTest, AStoreFromANewerSchemaIsRefused) {
  { auto store = OpenStore(); }
  ASSERT_TRUE(Raw()->Exec(absl::StrCat("PRAGMA user_version = ", schema::kLatestVersion + 1)).ok());
  absl::StatusOr<std::unique_ptr<RequestStore>> store = RequestStore::Open(Options());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(), HasSubstr(path_.string()));
  EXPECT_THAT(store.status().message(), HasSubstr(absl::StrCat("schema version ", schema::kLatestVersion + 1)));
  EXPECT_THAT(store.status().message(), HasSubstr("newer adcsc"));
}

TEST_F(RequestStoreTest, AStoreOfThePreviousReleaseGainsTheAdditiveColumnOnOpenAndKeepsItsVersion) {
  {
    auto store = OpenStore();
    MustPut(*store, Outcome(70, RECORD_STATUS_ISSUED, 3, "Issued"));
  }
  // As the previous release left it: no admin_hlc column.
  ASSERT_TRUE(Raw()->Exec("ALTER TABLE requests DROP COLUMN admin_hlc").ok());
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(MustGet(*store, 70)->admin_hlc(), 0u);
    absl::StatusOr<WriteResult> revoked = store->PutAdminOutcome(Outcome(70, RECORD_STATUS_REVOKED, 6, "Revoked"));
    ASSERT_TRUE(revoked.ok()) << revoked.status();
    EXPECT_EQ(MustGet(*store, 70)->admin_hlc(), revoked->record.hlc());
  }
  // The version stays, so the previous release still opens the file after a rollback.
  EXPECT_EQ(*Raw()->QueryInt64("PRAGMA user_version"), schema::kLatestVersion);
  EXPECT_GT(*Raw()->QueryInt64("SELECT admin_hlc FROM requests WHERE request_id = 70"), 0);
}

TEST_F(RequestStoreTest, AStoreBelongsToOneNode) {
  { auto store = OpenStore("node-a"); }
  absl::StatusOr<std::unique_ptr<RequestStore>> other = RequestStore::Open(Options("node-b"));
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(other.status().message(), HasSubstr("'node-a'"));
  EXPECT_THAT(other.status().message(), HasSubstr("'node-b'"));
  EXPECT_THAT(other.status().message(), HasSubstr(path_.string()));
  auto same = OpenStore("node-a");
  ASSERT_NE(same, nullptr);
  EXPECT_EQ(same->node_id(), "node-a");
}

TEST_F(RequestStoreTest, TheFileIsOwnerOnly) {
  auto store = OpenStore();
  MustPut(*store, Submitted(1));  // the WAL exists while the store is open
  for (const char* suffix : {"", "-wal", "-shm"}) {
    struct stat st {};
    const std::string file = path_.string() + suffix;
    ASSERT_EQ(::stat(file.c_str(), &st), 0) << file;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << file;
  }
}

TEST_F(RequestStoreTest, OpenNamesAMissingDirectory) {
  StoreOptions options = Options();
  options.path = dir_.File("missing") / "store.db";
  absl::StatusOr<std::unique_ptr<RequestStore>> store = RequestStore::Open(options);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(store.status().message(), HasSubstr((dir_.File("missing")).string()));
  EXPECT_THAT(store.status().message(), HasSubstr("create it"));
}

TEST_F(RequestStoreTest, AnotherProgramsDatabaseIsLeftAlone) {
  ASSERT_TRUE(Raw()->Exec("CREATE TABLE photos (id INTEGER)").ok());
  absl::StatusOr<std::unique_ptr<RequestStore>> store = RequestStore::Open(Options());
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(store.status().message(), HasSubstr("not an adcsc store"));
  EXPECT_EQ(*Raw()->QueryInt64("PRAGMA user_version"), 0);
}

TEST_F(RequestStoreTest, AVersion1StoreIsMigratedAndItsLoggedCopiesStillServe) {
  // A store as version 1 wrote it: the mutation log holds a copy of each record.
  RequestRecord old = Submitted(1);
  old.set_hlc(42);
  old.set_node_id("node-a");
  old.set_created_ms(kStartMs);
  old.set_updated_ms(kStartMs);
  {
    auto raw = Raw();
    ASSERT_TRUE(schema::Migrate(*raw, 1).ok());
    ASSERT_TRUE(raw->Exec("INSERT INTO requests (ca_config, request_id, status, created_ms, updated_ms, hlc, node_id) "
                          "VALUES ('" +
                          old.ca_config() + "', 1, " + std::to_string(old.status()) + ", " + std::to_string(kStartMs) +
                          ", " + std::to_string(kStartMs) + ", 42, 'node-a')")
                    .ok());
    auto insert = raw->Prepare("INSERT INTO mutations (origin, sequence, hlc, record) VALUES ('node-a', 1, 42, ?1)");
    ASSERT_TRUE(insert.ok()) << insert.status();
    insert->BindBlob(1, old.SerializeAsString());
    ASSERT_TRUE(insert->Run().ok());
    ASSERT_TRUE(raw->Exec("INSERT INTO version_vector (origin, sequence) VALUES ('node-a', 1)").ok());
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*Raw()->QueryInt64("PRAGMA user_version"), RequestStore::kSchemaVersion);
  MustPut(*store, Submitted(2));  // logged by reference
  absl::StatusOr<std::vector<Mutation>> log = store->MutationsSince("node-a", 0, 10);
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_EQ(log->size(), 2u);
  EXPECT_EQ((*log)[0].record().request_id(), 1u);
  EXPECT_EQ((*log)[0].record().hlc(), 42u) << "read from the copy version 1 logged";
  EXPECT_EQ((*log)[1].record().request_id(), 2u);
  EXPECT_EQ((*log)[1].sequence(), 2u);
}

TEST_F(RequestStoreTest, TheLogSendsARecordAsItStandsNow) {
  auto store = OpenStore();
  MustPut(*store, Submitted(1));
  RequestRecord issued = Submitted(1);
  issued.set_status(RECORD_STATUS_ISSUED);
  issued.set_certificate_der("cert");
  MustPut(*store, issued);
  absl::StatusOr<std::vector<Mutation>> log = store->MutationsSince("node-a", 0, 10);
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_EQ(log->size(), 2u);
  // Both changes are logged; each is sent as the record stands, which merges into whatever
  // a peer holds exactly as the older version and then the newer would.
  for (const Mutation& m : *log) EXPECT_EQ(m.record().status(), RECORD_STATUS_ISSUED) << m.sequence();
  EXPECT_EQ(*Raw()->QueryInt64("SELECT COUNT(*) FROM mutations WHERE length(record) > 0"), 0) << "no copies";
}

TEST_F(RequestStoreTest, ANewStoreIsAtTheLatestSchema) {
  { auto store = OpenStore(); }
  auto raw = Raw();
  EXPECT_EQ(*raw->QueryInt64("PRAGMA user_version"), RequestStore::kSchemaVersion);
  EXPECT_EQ(*raw->QueryInt64("PRAGMA application_id"), schema::kApplicationId);
  EXPECT_EQ(*raw->QueryInt64("SELECT COUNT(*) FROM meta WHERE key = 'node_id'"), 1);
}

// Under the free-space floor the probe fails with what to do, and passes again once the floor
// is met (here by the floor, not the disk: no test fills a volume).
TEST_F(RequestStoreTest, CheckFailsUnderTheFreeSpaceFloor) {
  StoreOptions o = Options();
  o.min_free_bytes = int64_t{1} << 50;  // a petabyte: more than any test volume has free
  auto store = RequestStore::Open(o);
  ASSERT_TRUE(store.ok()) << store.status();
  absl::Status s = (*store)->Check(/*write=*/true);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(s.message().find("store.min_free_bytes"), std::string_view::npos) << s;
  EXPECT_NE(s.message().find("free space"), std::string_view::npos) << s;
  store->reset();
  o.min_free_bytes = 1;
  auto roomy = RequestStore::Open(o);
  ASSERT_TRUE(roomy.ok()) << roomy.status();
  EXPECT_TRUE((*roomy)->Check(/*write=*/true).ok());
}

TEST_F(RequestStoreTest, CheckReadsAndWrites) {
  auto store = OpenStore();
  EXPECT_TRUE(store->Check(/*write=*/false).ok());
  EXPECT_TRUE(store->Check(/*write=*/true).ok());
  clock_.AdvanceMillis(5);
  EXPECT_TRUE(store->Check(/*write=*/true).ok());
  store.reset();
  EXPECT_EQ(*Raw()->QueryInt64("SELECT written_ms FROM health_scratch"), kStartMs + 5);
  EXPECT_EQ(*Raw()->QueryInt64("SELECT COUNT(*) FROM mutations"), 0);  // not a mutation
}

TEST_F(RequestStoreTest, StampsStayAheadAfterARestartWithTheClockSteppedBack) {
  RequestRecord before;
  {
    auto store = OpenStore();
    before = MustPut(*store, Submitted(90));
  }
  clock_.SetUnixMillis(kStartMs - 3'600'000);
  auto store = OpenStore();
  const RequestRecord other = MustPut(*store, Submitted(91));
  EXPECT_GT(other.hlc(), before.hlc());
  const RequestRecord after = MustPut(*store, Outcome(90, RECORD_STATUS_PENDING, 5, "Taken"));
  EXPECT_GT(after.hlc(), before.hlc());
}

TEST_F(RequestStoreTest, ALocalWriteOutranksAStoredStampFromAFastPeer) {
  const uint64_t peer_stamp = HybridLogicalClock::Pack(kStartMs + 86'400'000, 3);
  {
    auto store = OpenStore();
    MustPut(*store, Outcome(95, RECORD_STATUS_PENDING, 5, "Taken"));
  }
  // As if replication had stored a peer's version stamped by a clock a day ahead.
  {
    auto raw = Raw();
    absl::StatusOr<sqlite::Statement> st =
        raw->Prepare("UPDATE requests SET hlc = ?1, node_id = 'node-b' WHERE request_id = 95");
    ASSERT_TRUE(st.ok());
    st->BindInt64(1, static_cast<int64_t>(peer_stamp));
    ASSERT_TRUE(st->Run().ok());
  }
  auto store = OpenStore();
  const std::optional<RequestRecord> stored = MustGet(*store, 95);
  const RequestRecord mine = MustPut(*store, Outcome(95, RECORD_STATUS_PENDING, 5, "Still waiting"));
  EXPECT_GT(mine.hlc(), peer_stamp);
  EXPECT_TRUE(Supersedes(mine, *stored));
}

}  // namespace
}  // namespace adcsc::store
