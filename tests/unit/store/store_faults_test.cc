// RequestStore under the faults issue 13 is about: submit intents (durable before a CA call,
// settled in the transaction that records the answer), a disk that stops taking writes (the
// health check fails until it takes them again), and a damaged file (QuickCheck).
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/repair.h"
#include "store/request_store.h"
#include "store/sqlite_db.h"
#include "tests/testing/damage.h"
#include "tests/testing/temp_dir.h"

namespace adcsc::store {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kStartMs = 1'700'000'000'000;
const std::string kCa = CaConfigKey("CA01.contoso.com", "Contoso-Issuing-CA");

SubmitKey Key(char csr, const std::string& tmpl = "JamfDevice") { return SubmitKey{kCa, tmpl, std::string(32, csr)}; }

SubmitIntentRow Intent(char csr, uint32_t after) {
  SubmitIntentRow i;
  i.key = Key(csr);
  i.after_request_id = after;
  i.requester = "CONTOSO\\svc-adcsc";
  i.csr_der = std::string("\x30\x82\x01\x0a", 4) + std::string(200, csr);
  return i;
}

RequestRecord Issued(uint32_t id, char csr) {
  RequestRecord r;
  r.set_ca_config(kCa);
  r.set_request_id(id);
  r.set_status(v1::RECORD_STATUS_ISSUED);
  r.set_disposition(3);
  r.set_csr_sha256(std::string(32, csr));
  r.set_template_name("JamfDevice");
  r.set_certificate_der(std::string(900, 'c'));
  return r;
}

class StoreFaultsTest : public ::testing::Test {
 protected:
  StoreOptions Options() const {
    StoreOptions o;
    o.path = path_;
    o.node_id = "node-a";
    o.clock = &clock_;
    o.fsync = false;
    return o;
  }
  std::unique_ptr<RequestStore> OpenStore() {
    auto store = RequestStore::Open(Options());
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  void DamageRootPage(const std::string& object) { ASSERT_TRUE(adcsc::testing::DamageRootPage(path_, object).ok()); }

  adcsc::testing::TempDir dir_;
  const std::filesystem::path path_ = dir_.File("store.db");
  FakeClock clock_{kStartMs};
};

TEST_F(StoreFaultsTest, AnIntentIsKeptUntilItsAnswerIsRecorded) {
  {
    auto store = OpenStore();
    ASSERT_TRUE(store->RecordSubmitIntent(Intent('a', 40)).ok());
    clock_.AdvanceMillis(10);
    ASSERT_TRUE(store->RecordSubmitIntent(Intent('b', 41)).ok());
  }
  // Durable: a new process sees both, oldest first, every field intact.
  auto store = OpenStore();
  auto open = store->OpenSubmitIntents(10);
  ASSERT_TRUE(open.ok()) << open.status();
  ASSERT_EQ(open->size(), 2u);
  EXPECT_EQ((*open)[0].key.csr_sha256, std::string(32, 'a'));
  EXPECT_EQ((*open)[0].after_request_id, 40u);
  EXPECT_EQ((*open)[0].requester, "CONTOSO\\svc-adcsc");
  EXPECT_EQ((*open)[0].csr_der, Intent('a', 40).csr_der);
  EXPECT_EQ((*open)[0].created_ms, kStartMs);
  EXPECT_EQ((*open)[0].attempts, 1);
  EXPECT_EQ((*open)[1].key.csr_sha256, std::string(32, 'b'));

  // The answer and the end of the intent are one commit.
  const SubmitKey a = Key('a');
  auto put = store->Put(Issued(42, 'a'), &a);
  ASSERT_TRUE(put.ok()) << put.status();
  auto gone = store->FindSubmitIntent(a);
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone->has_value());
  auto still = store->FindSubmitIntent(Key('b'));
  ASSERT_TRUE(still.ok());
  EXPECT_TRUE(still->has_value());
  ASSERT_TRUE(store->DropSubmitIntent(Key('b')).ok());
  EXPECT_TRUE(store->OpenSubmitIntents(10)->empty());
}

TEST_F(StoreFaultsTest, ARepeatedAttemptKeepsItsStartAndTheLowestRequestId) {
  auto store = OpenStore();
  ASSERT_TRUE(store->RecordSubmitIntent(Intent('a', 40)).ok());
  clock_.AdvanceMillis(1000);
  ASSERT_TRUE(store->RecordSubmitIntent(Intent('a', 55)).ok());
  auto got = store->FindSubmitIntent(Key('a'));
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->after_request_id, 40u);  // the first attempt's request is after 40 too
  EXPECT_EQ((*got)->created_ms, kStartMs);
  EXPECT_EQ((*got)->updated_ms, kStartMs + 1000);
  EXPECT_EQ((*got)->attempts, 2);
  // Another template is another intent.
  SubmitIntentRow other = Intent('a', 60);
  other.key.template_name = "JamfUser";
  ASSERT_TRUE(store->RecordSubmitIntent(other).ok());
  EXPECT_EQ(store->OpenSubmitIntents(10)->size(), 2u);
}

TEST_F(StoreFaultsTest, InvalidIntentsAreRefused) {
  auto store = OpenStore();
  SubmitIntentRow hex = Intent('a', 1);
  hex.key.csr_sha256 = std::string(64, 'f');
  EXPECT_EQ(store->RecordSubmitIntent(hex).code(), absl::StatusCode::kInvalidArgument);
  SubmitIntentRow no_ca = Intent('a', 1);
  no_ca.key.ca_config.clear();
  EXPECT_EQ(store->RecordSubmitIntent(no_ca).code(), absl::StatusCode::kInvalidArgument);
  SubmitIntentRow no_csr = Intent('a', 1);
  no_csr.csr_der.clear();
  EXPECT_EQ(store->RecordSubmitIntent(no_csr).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->FindSubmitIntent(hex.key).status().code(), absl::StatusCode::kInvalidArgument);
  // A refused update is the caller's mistake, not the disk's: health is unaffected.
  EXPECT_TRUE(store->Check(/*write=*/false).ok());
}

// A child process caps its file size (RLIMIT_FSIZE, as a full disk refuses growth), writes
// until the store refuses, and checks that the health check fails, then that it recovers on
// its own once the cap is lifted. Exit codes name the step that went wrong.
TEST_F(StoreFaultsTest, AFailedAppendFailsTheHealthCheckUntilTheDiskTakesWritesAgain) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::signal(SIGXFSZ, SIG_IGN);  // get EFBIG instead of being killed
    auto store = RequestStore::Open(Options());
    if (!store.ok() || !(*store)->Check(true).ok()) std::_Exit(10);
    rlimit cap{};
    ::getrlimit(RLIMIT_FSIZE, &cap);
    const rlimit original = cap;
    cap.rlim_cur = 512 * 1024;
    if (::setrlimit(RLIMIT_FSIZE, &cap) != 0) std::_Exit(11);
    absl::Status failed;
    for (uint32_t id = 1; id < 100'000 && failed.ok(); ++id) {
      auto put = (*store)->Put(Issued(id, static_cast<char>('a' + id % 20)));
      if (!put.ok()) failed = put.status();
    }
    if (failed.ok()) std::_Exit(12);
    absl::Status unready = (*store)->Check(/*write=*/false);
    if (unready.ok() || unready.message().find("the last write failed") == std::string_view::npos) std::_Exit(13);
    if ((*store)->Check(/*write=*/true).ok()) std::_Exit(14);  // the probe cannot append either
    if (::setrlimit(RLIMIT_FSIZE, &original) != 0) std::_Exit(15);
    if (!(*store)->Check(/*write=*/true).ok()) std::_Exit(16);
    if (!(*store)->Check(/*write=*/false).ok()) std::_Exit(17);
    std::_Exit(0);
  }
  int wstatus = 0;
  ASSERT_EQ(::waitpid(child, &wstatus, 0), child);
  ASSERT_TRUE(WIFEXITED(wstatus)) << "child died with signal " << (WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0);
  EXPECT_EQ(WEXITSTATUS(wstatus), 0) << "see the exit codes in the child above";
}

TEST_F(StoreFaultsTest, QuickCheckPassesAHealthyStore) {
  auto store = OpenStore();
  for (uint32_t id = 1; id <= 50; ++id) ASSERT_TRUE(store->Put(Issued(id, static_cast<char>('a' + id % 20))).ok());
  EXPECT_TRUE(store->QuickCheck().ok());
}

// Garbage over the dedupe index's root page, as a failing disk leaves it: the store still
// opens (SQLite reads the index only when a query uses it), and QuickCheck names the damage.
TEST_F(StoreFaultsTest, QuickCheckFindsADamagedIndex) {
  {
    auto store = OpenStore();
    for (uint32_t id = 1; id <= 50; ++id) ASSERT_TRUE(store->Put(Issued(id, static_cast<char>('a' + id % 20))).ok());
  }
  DamageRootPage("requests_dedupe");
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  absl::Status s = store->QuickCheck();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(path_.string()));
  EXPECT_THAT(std::string(s.message()), HasSubstr("quick_check"));
}

// A store whose index is damaged is rebuilt from its tables into a sound file with every
// record, intent and mutation; the damaged file is kept beside it.
TEST_F(StoreFaultsTest, ADamagedIndexIsRebuiltFromTheTables) {
  {
    auto store = OpenStore();
    for (uint32_t id = 1; id <= 50; ++id) ASSERT_TRUE(store->Put(Issued(id, static_cast<char>('a' + id % 20))).ok());
    ASSERT_TRUE(store->RecordSubmitIntent(Intent('z', 50)).ok());
  }
  DamageRootPage("requests_dedupe");
  {
    auto damaged = OpenStore();
    ASSERT_FALSE(damaged->QuickCheck().ok());
  }
  auto kept = RebuildStoreFromTables(path_, kStartMs);
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_TRUE(std::filesystem::exists(*kept));
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(store->QuickCheck().ok());
  EXPECT_EQ(*store->CountRecords(), 50);
  auto found = store->FindByDedupeKey(kCa, "JamfDevice", std::string(32, 'a' + 7), 0);
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_TRUE(found->has_value()) << "the dedupe index answers again";
  EXPECT_EQ((*found)->request_id(), 47u);  // the newest of 7, 27 and 47
  EXPECT_EQ(store->OpenSubmitIntents(10)->size(), 1u);
  EXPECT_EQ((*store->GetVersionVector())["node-a"], 50u) << "the mutation log and vector came along";
}

TEST_F(StoreFaultsTest, ADamagedTableIsNotRebuiltAndTheFileIsLeftAsItWas) {
  {
    auto store = OpenStore();
    for (uint32_t id = 1; id <= 50; ++id) ASSERT_TRUE(store->Put(Issued(id, static_cast<char>('a' + id % 20))).ok());
  }
  DamageRootPage("requests");
  const auto size = std::filesystem::file_size(path_);
  auto kept = RebuildStoreFromTables(path_, kStartMs);
  ASSERT_FALSE(kept.ok());
  EXPECT_EQ(kept.status().code(), absl::StatusCode::kDataLoss) << kept.status();
  EXPECT_NE(kept.status().message().find("table requests"), std::string_view::npos) << kept.status();
  EXPECT_EQ(std::filesystem::file_size(path_), size);
}

// Compaction deletes only what every node holds (and this node holds); the vector stays.
TEST_F(StoreFaultsTest, CompactionDeletesTheLogPrefixEveryNodeHolds) {
  auto store = OpenStore();
  for (uint32_t id = 1; id <= 30; ++id) ASSERT_TRUE(store->Put(Issued(id, 'a')).ok());
  auto deleted = store->CompactLog({{"node-a", 20}, {"node-b", 99}}, 1000);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 20);
  auto left = store->MutationsSince("node-a", 0, 100);
  ASSERT_TRUE(left.ok());
  ASSERT_EQ(left->size(), 10u);
  EXPECT_EQ(left->front().sequence(), 21u);
  EXPECT_EQ((*store->GetVersionVector())["node-a"], 30u) << "the vector says what was held";
  // Never beyond this node's own vector, and in bounded batches.
  EXPECT_EQ(*store->CompactLog({{"node-a", 1000}}, 4), 4);
  EXPECT_EQ(*store->CompactLog({{"node-a", 1000}}, 1000), 6);
  // New writes go on from the vector, not from what is left in the log.
  auto next = store->Put(Issued(31, 'b'));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->sequence, 31u);
}

TEST_F(StoreFaultsTest, RetentionPrunesOldSettledRecordsTheLogNoLongerNeeds) {
  auto store = OpenStore();
  RequestRecord pending = Issued(1, 'p');
  pending.set_status(v1::RECORD_STATUS_PENDING);
  pending.set_certificate_der("");
  ASSERT_TRUE(store->Put(pending).ok());
  for (uint32_t id = 2; id <= 10; ++id) ASSERT_TRUE(store->Put(Issued(id, 'a')).ok());
  clock_.AdvanceMillis(1000);
  for (uint32_t id = 11; id <= 15; ++id) ASSERT_TRUE(store->Put(Issued(id, 'b')).ok());
  const int64_t cutoff = kStartMs + 500;
  // The log still refers to every record: nothing may go yet.
  EXPECT_EQ(*store->PruneSettled(cutoff, 100), 0);
  ASSERT_EQ(*store->CompactLog({{"node-a", 12}}, 1000), 12);
  auto pruned = store->PruneSettled(cutoff, 100);
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(*pruned, 9) << "2..10: old and settled; 1 is pending; 11..15 are recent";
  EXPECT_EQ(*store->CountRecords(), 6);
  EXPECT_TRUE(store->Get(kCa, 1)->has_value());
  EXPECT_FALSE(store->Get(kCa, 5)->has_value());
  EXPECT_TRUE(store->Get(kCa, 11)->has_value());
  EXPECT_TRUE(store->QuickCheck().ok());
  EXPECT_GT(store->BytesOnDisk(), 0);
}

}  // namespace
}  // namespace adcsc::store
