// The slow-disk shim (store/fault_vfs.h): connections go through it, a set fault delays and
// counts writes and fsyncs without changing the data, WAL works through it, and clearing the
// fault releases a stalled write. No assertion on how long anything took.
#include "store/fault_vfs.h"

#include <sqlite3.h>

#include <chrono>
#include <future>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/sqlite_db.h"
#include "tests/testing/temp_dir.h"

namespace adcsc::store {
namespace {

using sqlite::Connection;
using sqlite::ConnectionSettings;
using ::testing::StartsWith;

// Upper bound on waiting for a condition; only stops a broken build from hanging.
constexpr auto kConditionDeadline = std::chrono::seconds(10);

// The setting is process-wide and other tests share the binary: each test starts and ends
// with no fault.
class FaultVfsTest : public ::testing::Test {
 protected:
  void SetUp() override { SetDiskFault(DiskFault{}); }
  void TearDown() override { SetDiskFault(DiskFault{}); }

  std::unique_ptr<Connection> Open(bool writer) {
    absl::StatusOr<std::unique_ptr<Connection>> c =
        Connection::OpenConfigured(db_path_, writer ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY,
                                   ConnectionSettings{.writer = writer, .fsync = true});
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }
  static void Insert(Connection& c, int first, int count) {
    ASSERT_TRUE(c.Exec("BEGIN IMMEDIATE").ok());
    for (int i = first; i < first + count; ++i) {
      ASSERT_TRUE(c.Exec(absl::StrCat("INSERT INTO t VALUES (", i, ", 'row-", i, "')")).ok());
    }
    ASSERT_TRUE(c.Exec("COMMIT").ok());
  }
  // Rows 0..n-1 are all there with their values.
  static void ExpectRows(Connection& c, int n) {
    absl::StatusOr<sqlite::Statement> select = c.Prepare("SELECT id, v FROM t ORDER BY id");
    ASSERT_TRUE(select.ok()) << select.status();
    int next = 0;
    for (;;) {
      absl::StatusOr<bool> row = select->Step();
      ASSERT_TRUE(row.ok()) << row.status();
      if (!*row) break;
      EXPECT_EQ(select->ColumnInt64(0), next);
      EXPECT_EQ(select->ColumnText(1), absl::StrCat("row-", next));
      ++next;
    }
    EXPECT_EQ(next, n);
  }

  adcsc::testing::TempDir dir_;
  const std::filesystem::path db_path_ = dir_.File("fault.db");
};

TEST_F(FaultVfsTest, ConnectionsOpenThroughTheShim) {
  ASSERT_TRUE(RegisterFaultVfs().ok());
  sqlite3_vfs* shim = sqlite3_vfs_find(kFaultVfsName);
  ASSERT_NE(shim, nullptr);
  EXPECT_NE(sqlite3_vfs_find(nullptr), shim) << "the shim must not become SQLite's default VFS";

  auto c = Open(/*writer=*/true);
  ASSERT_NE(c, nullptr);
  sqlite3_vfs* used = nullptr;
  ASSERT_EQ(sqlite3_file_control(c->raw(), "main", SQLITE_FCNTL_VFS_POINTER, &used), SQLITE_OK);
  EXPECT_EQ(used, shim);
  char* name = nullptr;
  ASSERT_EQ(sqlite3_file_control(c->raw(), "main", SQLITE_FCNTL_VFSNAME, &name), SQLITE_OK);
  ASSERT_NE(name, nullptr);
  EXPECT_THAT(name, StartsWith("adcsc-fault"));
  sqlite3_free(name);
}

TEST_F(FaultVfsTest, DelaysAreClampedToTheirRange) {
  SetDiskFault(DiskFault{.write_delay_ms = -5, .sync_delay_ms = kMaxDiskFaultDelayMs * 100});
  EXPECT_EQ(CurrentDiskFault().write_delay_ms, 0);
  EXPECT_EQ(CurrentDiskFault().sync_delay_ms, kMaxDiskFaultDelayMs);
  SetDiskFault(DiskFault{.write_delay_ms = 3, .sync_delay_ms = 4});
  EXPECT_EQ(CurrentDiskFault().write_delay_ms, 3);
  EXPECT_EQ(CurrentDiskFault().sync_delay_ms, 4);
}

TEST_F(FaultVfsTest, DelayedWritesAndSyncsAreCountedAndKeepTheData) {
  auto writer = Open(/*writer=*/true);
  ASSERT_NE(writer, nullptr);
  absl::StatusOr<sqlite::Statement> mode = writer->Prepare("PRAGMA journal_mode");
  ASSERT_TRUE(mode.ok() && mode->Step().value_or(false));
  EXPECT_EQ(mode->ColumnText(0), "wal");
  mode->Reset();
  ASSERT_TRUE(writer->Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)").ok());

  const DiskFaultStats before = GetDiskFaultStats();
  SetDiskFault(DiskFault{.write_delay_ms = 1, .sync_delay_ms = 1});
  for (int batch = 0; batch < 5; ++batch) Insert(*writer, batch * 10, 10);
  const DiskFaultStats during = GetDiskFaultStats();
  EXPECT_GT(during.delayed_writes, before.delayed_writes);
  EXPECT_GT(during.delayed_syncs, before.delayed_syncs);
  // Checkpointing copies the WAL into the database: the shared-memory index, writes and
  // syncs of both files, all through the shim.
  ASSERT_TRUE(writer->Exec("PRAGMA wal_checkpoint(TRUNCATE)").ok());

  auto reader = Open(/*writer=*/false);
  ASSERT_NE(reader, nullptr);
  ExpectRows(*reader, 50);

  SetDiskFault(DiskFault{});
  const DiskFaultStats cleared = GetDiskFaultStats();
  for (int batch = 5; batch < 10; ++batch) Insert(*writer, batch * 10, 10);
  ASSERT_TRUE(writer->Exec("PRAGMA wal_checkpoint(TRUNCATE)").ok());
  const DiskFaultStats after = GetDiskFaultStats();
  EXPECT_EQ(after.delayed_writes, cleared.delayed_writes);
  EXPECT_EQ(after.delayed_syncs, cleared.delayed_syncs);
  ExpectRows(*reader, 100);

  // The file holds the same data for a connection that does not use the shim.
  writer.reset();
  reader.reset();
  sqlite3* plain = nullptr;
  ASSERT_EQ(sqlite3_open_v2(db_path_.c_str(), &plain, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* check = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(plain, "PRAGMA integrity_check", -1, &check, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(check), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(check, 0)), "ok");
  sqlite3_finalize(check);
  sqlite3_close(plain);
}

TEST_F(FaultVfsTest, ClearingTheFaultReleasesAStalledCommitAndReadsGoOn) {
  auto writer = Open(/*writer=*/true);
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(writer->Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)").ok());
  Insert(*writer, 0, 10);
  auto reader = Open(/*writer=*/false);
  ASSERT_NE(reader, nullptr);

  // A disk that stops answering: the commit's fsync waits for the longest delay there is.
  const uint64_t syncs_before = GetDiskFaultStats().delayed_syncs;
  SetDiskFault(DiskFault{.sync_delay_ms = kMaxDiskFaultDelayMs});
  std::future<void> commit = std::async(std::launch::async, [&] { Insert(*writer, 10, 10); });
  const auto deadline = std::chrono::steady_clock::now() + kConditionDeadline;
  while (GetDiskFaultStats().delayed_syncs == syncs_before && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_GT(GetDiskFaultStats().delayed_syncs, syncs_before) << "the commit never reached its fsync";
  EXPECT_NE(commit.wait_for(std::chrono::seconds(0)), std::future_status::ready);

  // WAL readers do not wait for the writer's disk: they see the last commit.
  ExpectRows(*reader, 10);

  SetDiskFault(DiskFault{});
  ASSERT_EQ(commit.wait_for(kConditionDeadline), std::future_status::ready) << "clearing the fault left it stalled";
  commit.get();
  ExpectRows(*reader, 20);
}

}  // namespace
}  // namespace adcsc::store
