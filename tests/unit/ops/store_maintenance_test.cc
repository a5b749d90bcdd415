// StoreMaintenance: a damaged index is found, counted and mended by REINDEX (and the log says
// so); a damaged table is found and stays reported. The damage is real: bytes of the file
// overwritten while no store has it open.
#include "node/ops/store_maintenance.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <thread>

#include "store/clock.h"
#include "store/sqlite_db.h"
#include "tests/testing/damage.h"
#include "tests/testing/temp_dir.h"

namespace adcsc::ops {
namespace {

class StoreMaintenanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = Open();
    for (uint32_t id = 1; id <= 50; ++id) {
      store::RequestRecord r;
      r.set_ca_config("dc\\ca");
      r.set_request_id(id);
      r.set_status(store::v1::RECORD_STATUS_ISSUED);
      r.set_csr_sha256(std::string(32, static_cast<char>('a' + id % 20)));
      r.set_template_name("JamfDevice");
      r.set_certificate_der(std::string(700, 'c'));
      ASSERT_TRUE(store->Put(r).ok());
    }
  }
  std::unique_ptr<store::RequestStore> Open() {
    store::StoreOptions o;
    o.path = path_;
    o.node_id = "node-a";
    o.fsync = false;
    auto s = store::RequestStore::Open(o);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }
  void Damage(const std::string& object) { ASSERT_TRUE(adcsc::testing::DamageRootPage(path_, object).ok()); }

  adcsc::testing::TempDir dir_;
  const std::filesystem::path path_ = dir_.File("store.db");
  std::unique_ptr<node::EventLog> log_ = node::EventLog::Stderr("node-a", node::LogLevel::kError);
};

TEST_F(StoreMaintenanceTest, ASoundStorePasses) {
  auto store = Open();
  StoreMaintenance integrity(store.get(), log_.get(), {});
  EXPECT_TRUE(integrity.CheckNow("start").ok());
  EXPECT_EQ(integrity.failures(), 0u);
  EXPECT_TRUE(integrity.last().ok());
}

// Garbage over an index's root page: found and counted, readiness fails, and REINDEX (which
// must read the old b-tree to clear it) cannot mend it while the store is open. The node
// rebuilds the file at its next start (store/repair.h; tests/unit/store/store_faults_test.cc).
TEST_F(StoreMaintenanceTest, ADamagedIndexIsFoundCountedAndFailsReadiness) {
  Damage("requests_dedupe");
  auto store = Open();
  ASSERT_NE(store, nullptr) << "an index is not read at open";
  StoreMaintenance integrity(store.get(), log_.get(), {});
  absl::Status s = integrity.CheckNow("scheduled");
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find("quick_check"), std::string_view::npos) << s;
  EXPECT_EQ(integrity.failures(), 1u);
  EXPECT_FALSE(integrity.last().ok()) << "readiness keeps failing";
}

TEST_F(StoreMaintenanceTest, TheScheduleFindsDamageOnItsOwn) {
  Damage("requests_dedupe");
  auto store = Open();
  ASSERT_NE(store, nullptr);
  StoreMaintenanceOptions o;
  o.integrity_interval = std::chrono::milliseconds(10);
  StoreMaintenance integrity(store.get(), log_.get(), o);
  integrity.StartSchedule();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (integrity.failures() == 0) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the scheduled check never ran";
    std::this_thread::yield();
  }
  EXPECT_FALSE(integrity.last().ok());
}  // the destructor stops the schedule before the store goes

// Damage in a table (here the version vector, which opening the store does not read): found,
// REINDEX cannot help, readiness keeps failing.
TEST_F(StoreMaintenanceTest, ADamagedTableStaysReported) {
  Damage("version_vector");
  auto store = Open();
  ASSERT_NE(store, nullptr);
  StoreMaintenance integrity(store.get(), log_.get(), {});
  absl::Status s = integrity.CheckNow("scheduled");
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_EQ(integrity.failures(), 1u);
  EXPECT_EQ(integrity.repairs(), 0u);
  EXPECT_FALSE(integrity.last().ok());
}

// Retention on a single node: once its own log is compacted, settled records older than the
// retention period go; younger ones and pending ones stay; and the disk stops growing.
TEST(StoreMaintenanceRetention, OldSettledRecordsArePrunedOnceTheLogLetsThemGo) {
  adcsc::testing::TempDir dir;
  FakeClock clock(1'700'000'000'000);
  store::StoreOptions so;
  so.path = dir.File("store.db");
  so.node_id = "node-a";
  so.fsync = false;
  so.clock = &clock;
  auto store = std::move(*store::RequestStore::Open(so));
  auto log = node::EventLog::Stderr("node-a", node::LogLevel::kError);
  StoreMaintenanceOptions o;
  o.retention = std::chrono::hours(24 * 400);
  o.clock = &clock;
  StoreMaintenance maintenance(store.get(), log.get(), o);
  auto put = [&](uint32_t id, store::RecordStatus status) {
    store::RequestRecord r;
    r.set_ca_config("dc\\ca");
    r.set_request_id(id);
    r.set_status(status);
    r.set_csr_sha256(std::string(32, 'x'));
    ASSERT_TRUE(store->Put(r).ok());
  };
  for (uint32_t id = 1; id <= 100; ++id) put(id, store::v1::RECORD_STATUS_ISSUED);
  put(101, store::v1::RECORD_STATUS_PENDING);
  clock.AdvanceMillis(int64_t{401} * 86'400'000);
  for (uint32_t id = 102; id <= 110; ++id) put(id, store::v1::RECORD_STATUS_DENIED);
  EXPECT_EQ(maintenance.PruneNow(), 0) << "the log still refers to them";
  EXPECT_EQ(maintenance.CompactNow(), 110);
  EXPECT_EQ(maintenance.PruneNow(), 100);
  EXPECT_EQ(maintenance.pruned(), 100u);
  EXPECT_EQ(*store->CountRecords(), 10);
  EXPECT_TRUE(store->Get("dc\\ca", 101)->has_value()) << "pending is never pruned";
}

}  // namespace
}  // namespace adcsc::ops
