// StoreIntegrity: a damaged index is found, counted and mended by REINDEX (and the log says
// so); a damaged table is found and stays reported. The damage is real: bytes of the file
// overwritten while no store has it open.
#include "node/ops/store_integrity.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <thread>

#include "store/sqlite_db.h"
#include "tests/testing/temp_dir.h"

namespace adcsc::ops {
namespace {

class StoreIntegrityTest : public ::testing::Test {
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
  // Overwrites the root page of `object` (an index or a table) with garbage.
  void Damage(const std::string& object) {
    int64_t root = 0, page_size = 0;
    {
      auto raw = store::sqlite::Connection::Open(path_, SQLITE_OPEN_READWRITE);
      ASSERT_TRUE(raw.ok());
      ASSERT_TRUE((*raw)->Exec("PRAGMA wal_checkpoint(TRUNCATE)").ok());
      root = *(*raw)->QueryInt64("SELECT rootpage FROM sqlite_schema WHERE name = '" + object + "'");
      page_size = *(*raw)->QueryInt64("PRAGMA page_size");
    }
    ASSERT_GT(root, 1);
    std::fstream f(path_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp((root - 1) * page_size);
    const std::string garbage(static_cast<size_t>(page_size), '\x5a');
    f.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }

  adcsc::testing::TempDir dir_;
  const std::filesystem::path path_ = dir_.File("store.db");
  std::unique_ptr<node::EventLog> log_ = node::EventLog::Stderr("node-a", node::LogLevel::kError);
};

TEST_F(StoreIntegrityTest, ASoundStorePasses) {
  auto store = Open();
  StoreIntegrity integrity(store.get(), log_.get(), std::chrono::milliseconds(0));
  EXPECT_TRUE(integrity.CheckNow("start").ok());
  EXPECT_EQ(integrity.failures(), 0u);
  EXPECT_TRUE(integrity.last().ok());
}

// Garbage over an index's root page: found and counted, readiness fails, and REINDEX (which
// must read the old b-tree to clear it) cannot mend it while the store is open. The node
// rebuilds the file at its next start (store/repair.h; tests/unit/store/store_faults_test.cc).
TEST_F(StoreIntegrityTest, ADamagedIndexIsFoundCountedAndFailsReadiness) {
  Damage("requests_dedupe");
  auto store = Open();
  ASSERT_NE(store, nullptr) << "an index is not read at open";
  StoreIntegrity integrity(store.get(), log_.get(), std::chrono::milliseconds(0));
  absl::Status s = integrity.CheckNow("scheduled");
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find("quick_check"), std::string_view::npos) << s;
  EXPECT_EQ(integrity.failures(), 1u);
  EXPECT_FALSE(integrity.last().ok()) << "readiness keeps failing";
}

TEST_F(StoreIntegrityTest, TheScheduleFindsDamageOnItsOwn) {
  Damage("requests_dedupe");
  auto store = Open();
  ASSERT_NE(store, nullptr);
  StoreIntegrity integrity(store.get(), log_.get(), std::chrono::milliseconds(10));
  integrity.StartSchedule();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (integrity.failures() == 0) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the scheduled check never ran";
    std::this_thread::yield();
  }
  EXPECT_FALSE(integrity.last().ok());
}  // the destructor stops the schedule before the store goes

}  // namespace
}  // namespace adcsc::ops
