// The SQLite layer: typed binds and columns, error messages, transactions, the group-commit
// writer (batching and per-function rollback) and the reader pool.
#include "store/sqlite_db.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <future>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/store/temp_dir.h"

namespace adcsc::store::sqlite {
namespace {

using ::testing::HasSubstr;

// Upper bound on waiting for other threads to reach a point; the tests wait on conditions,
// this only stops a broken build from hanging.
constexpr auto kConditionDeadline = std::chrono::seconds(10);

class SqliteDbTest : public ::testing::Test {
 protected:
  std::unique_ptr<Connection> OpenWriter() {
    absl::StatusOr<std::unique_ptr<Connection>> c =
        Connection::OpenConfigured(db_path_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                   ConnectionSettings{.writer = true, .fsync = false});
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }
  int64_t CountRows(Connection& c, const std::string& table) {
    absl::StatusOr<int64_t> n = c.QueryInt64(absl::StrCat("SELECT COUNT(*) FROM ", table));
    EXPECT_TRUE(n.ok()) << n.status();
    return n.value_or(-1);
  }

  testing::TempDir dir_;
  const std::filesystem::path db_path_ = dir_.File("test.db");
};

TEST_F(SqliteDbTest, BindsAndReadsEveryType) {
  auto c = OpenWriter();
  ASSERT_TRUE(c->Exec("CREATE TABLE t (i INTEGER, s TEXT, b BLOB, e BLOB, n TEXT)").ok());
  const std::string blob("\x00\x01\xff\x00", 4);  // embedded NULs must survive
  const std::string text = "Zertifikat ausgestellt \xc3\xa4";
  {
    absl::StatusOr<Statement> insert = c->Prepare("INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5)");
    ASSERT_TRUE(insert.ok()) << insert.status();
    insert->BindInt64(1, std::numeric_limits<int64_t>::min())
        .BindText(2, text)
        .BindBlob(3, blob)
        .BindBlob(4, std::string_view())
        .BindNull(5);
    ASSERT_TRUE(insert->Run().ok());
  }
  absl::StatusOr<Statement> select = c->Prepare("SELECT i, s, b, e, n, typeof(e) FROM t");
  ASSERT_TRUE(select.ok()) << select.status();
  absl::StatusOr<bool> row = select->Step();
  ASSERT_TRUE(row.ok() && *row) << row.status();
  EXPECT_EQ(select->ColumnInt64(0), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(select->ColumnText(1), text);
  EXPECT_EQ(select->ColumnBlob(2), blob);
  EXPECT_EQ(select->ColumnBlob(3), "");
  EXPECT_EQ(select->ColumnText(5), "blob");  // an empty blob is not NULL
  EXPECT_TRUE(select->ColumnIsNull(4));
  EXPECT_EQ(select->ColumnText(4), "");
  row = select->Step();
  ASSERT_TRUE(row.ok());
  EXPECT_FALSE(*row);
}

TEST_F(SqliteDbTest, ErrorsNameTheFileAndSqlitesMessage) {
  auto c = OpenWriter();
  absl::StatusOr<Statement> bad = c->Prepare("SELEC 1");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr(db_path_.string()));
  EXPECT_THAT(bad.status().message(), HasSubstr("syntax error"));
  EXPECT_THAT(bad.status().message(), HasSubstr("SELEC 1"));
}

TEST_F(SqliteDbTest, BindErrorIsReportedByStep) {
  auto c = OpenWriter();
  absl::StatusOr<Statement> st = c->Prepare("SELECT ?1");
  ASSERT_TRUE(st.ok());
  st->BindInt64(1, 1).BindInt64(5, 2);
  absl::StatusOr<bool> row = st->Step();
  ASSERT_FALSE(row.ok());
  EXPECT_THAT(row.status().message(), HasSubstr("binding parameter 5"));
}

TEST_F(SqliteDbTest, PrepareTakesOneStatement) {
  auto c = OpenWriter();
  absl::StatusOr<Statement> st = c->Prepare("SELECT 1; SELECT 2");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(c->Prepare("SELECT 1;  \n").ok());
}

TEST_F(SqliteDbTest, OpenInAMissingDirectoryNamesThePathAndWhatToCheck) {
  const std::filesystem::path missing = dir_.File("no-such-dir") / "store.db";
  absl::StatusOr<std::unique_ptr<Connection>> c =
      Connection::Open(missing, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr(missing.string()));
  EXPECT_THAT(c.status().message(), HasSubstr("check that the data directory exists"));
}

TEST_F(SqliteDbTest, AFileThatIsNotADatabaseIsDataLoss) {
  std::ofstream(db_path_) << "this is not an SQLite database, just some text long enough to "
                             "fill the header page that SQLite reads first when it opens";
  absl::StatusOr<std::unique_ptr<Connection>> c = Connection::OpenConfigured(
      db_path_, SQLITE_OPEN_READWRITE, ConnectionSettings{.writer = true});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kDataLoss) << c.status();
  EXPECT_THAT(c.status().message(), HasSubstr(db_path_.string()));
  EXPECT_THAT(c.status().message(), HasSubstr("not an adcsc store"));
}

TEST_F(SqliteDbTest, ReadWriteOpenOfAReadOnlyFileFailsAtOpen) {
  if (::geteuid() == 0) GTEST_SKIP() << "root ignores file permissions";
  { auto c = OpenWriter(); }
  std::filesystem::permissions(db_path_, std::filesystem::perms::owner_read);
  absl::StatusOr<std::unique_ptr<Connection>> c = Connection::Open(db_path_, SQLITE_OPEN_READWRITE);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kPermissionDenied) << c.status();
  EXPECT_THAT(c.status().message(), HasSubstr("mode 0600"));
}

TEST_F(SqliteDbTest, WriterUsesWal) {
  auto c = OpenWriter();
  absl::StatusOr<Statement> mode = c->Prepare("PRAGMA journal_mode");
  ASSERT_TRUE(mode.ok());
  ASSERT_TRUE(*mode->Step());
  EXPECT_EQ(mode->ColumnText(0), "wal");
  EXPECT_EQ(*c->QueryInt64("PRAGMA foreign_keys"), 1);
  EXPECT_EQ(*c->QueryInt64("PRAGMA synchronous"), 0);  // OFF: fsync=false
}

TEST_F(SqliteDbTest, TransactionRollsBackUnlessCommitted) {
  auto c = OpenWriter();
  ASSERT_TRUE(c->Exec("CREATE TABLE t (v INTEGER)").ok());
  {
    absl::StatusOr<Transaction> txn = Transaction::Begin(*c);
    ASSERT_TRUE(txn.ok());
    ASSERT_TRUE(c->Exec("INSERT INTO t VALUES (1)").ok());
  }
  EXPECT_EQ(CountRows(*c, "t"), 0);
  {
    absl::StatusOr<Transaction> txn = Transaction::Begin(*c);
    ASSERT_TRUE(txn.ok());
    ASSERT_TRUE(c->Exec("INSERT INTO t VALUES (1)").ok());
    ASSERT_TRUE(txn->Commit().ok());
  }
  EXPECT_EQ(CountRows(*c, "t"), 1);
  EXPECT_TRUE(c->autocommit());
}

class GroupCommitTest : public SqliteDbTest {
 protected:
  void SetUp() override {
    auto c = OpenWriter();
    ASSERT_TRUE(c->Exec("CREATE TABLE t (v INTEGER PRIMARY KEY)").ok());
    writer_ = std::make_unique<GroupCommitWriter>(std::move(c));
    readers_ = std::make_unique<ReaderPool>(db_path_, ConnectionSettings{.fsync = false});
  }
  void TearDown() override {
    readers_.reset();
    writer_.reset();
  }
  static absl::Status Insert(Connection& c, int64_t v) {
    absl::StatusOr<Statement> st = c.Prepare("INSERT INTO t (v) VALUES (?1)");
    if (!st.ok()) return st.status();
    st->BindInt64(1, v);
    return st->Run();
  }
  void WaitForQueued(size_t n) {
    const auto deadline = std::chrono::steady_clock::now() + kConditionDeadline;
    while (writer_->queued() < n && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    ASSERT_EQ(writer_->queued(), n);
  }
  int64_t CountCommitted() {
    absl::StatusOr<ReaderPool::Lease> r = readers_->Acquire();
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? CountRows(**r, "t") : -1;
  }

  std::unique_ptr<GroupCommitWriter> writer_;
  std::unique_ptr<ReaderPool> readers_;
};

TEST_F(GroupCommitTest, AFailingFunctionRollsBackOnlyItself) {
  // Hold the first batch so the next three land in one transaction together.
  std::promise<void> started;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  absl::Status blocked;
  std::thread blocker([&] {
    blocked = writer_->Write([&](Connection& c) {
      started.set_value();
      released.wait();
      return Insert(c, 1);
    });
  });
  ASSERT_EQ(started.get_future().wait_for(kConditionDeadline), std::future_status::ready);

  absl::Status ok_before, failing, ok_after;
  // Each caller is queued before the next starts, so the batch order is known.
  std::thread t1([&] { ok_before = writer_->Write([](Connection& c) { return Insert(c, 2); }); });
  WaitForQueued(1);
  std::thread t2([&] {
    failing = writer_->Write([](Connection& c) -> absl::Status {
      // Writes a row, then fails: the row must not survive.
      if (absl::Status s = Insert(c, 3); !s.ok()) return s;
      return absl::AbortedError("function 3 gave up");
    });
  });
  WaitForQueued(2);
  std::thread t3([&] { ok_after = writer_->Write([](Connection& c) { return Insert(c, 4); }); });
  WaitForQueued(3);
  release.set_value();
  for (std::thread* t : {&blocker, &t1, &t2, &t3}) t->join();

  EXPECT_TRUE(blocked.ok()) << blocked;
  EXPECT_TRUE(ok_before.ok()) << ok_before;
  EXPECT_EQ(failing.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(failing.message(), "function 3 gave up");
  EXPECT_TRUE(ok_after.ok()) << ok_after;
  EXPECT_EQ(CountCommitted(), 3);  // rows 1, 2, 4

  const GroupCommitWriter::Stats stats = writer_->stats();
  EXPECT_EQ(stats.batches, 2u);
  EXPECT_EQ(stats.writes, 4u);
  EXPECT_EQ(stats.largest_batch, 3u);
}

TEST_F(GroupCommitTest, AConstraintErrorFailsOnlyItsCaller) {
  ASSERT_TRUE(writer_->Write([](Connection& c) { return Insert(c, 1); }).ok());
  absl::Status dup = writer_->Write([](Connection& c) { return Insert(c, 1); });
  EXPECT_FALSE(dup.ok());
  EXPECT_THAT(dup.message(), HasSubstr("UNIQUE constraint failed"));
  EXPECT_TRUE(writer_->Write([](Connection& c) { return Insert(c, 2); }).ok());
  EXPECT_EQ(CountCommitted(), 2);
}

TEST_F(GroupCommitTest, ConcurrentWritersAllCommit) {
  constexpr int kThreads = 16;
  constexpr int kWritesPerThread = 50;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kWritesPerThread; ++i) {
        if (!writer_->Write([&](Connection& c) { return Insert(c, t * kWritesPerThread + i); })
                 .ok()) {
          ++failures;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(CountCommitted(), kThreads * kWritesPerThread);
  EXPECT_EQ(writer_->stats().writes, static_cast<uint64_t>(kThreads * kWritesPerThread));
  EXPECT_LE(writer_->stats().batches, writer_->stats().writes);
}

TEST_F(GroupCommitTest, ReadersSeeCommittedRowsAndCannotWrite) {
  ASSERT_TRUE(writer_->Write([](Connection& c) { return Insert(c, 7); }).ok());
  absl::StatusOr<ReaderPool::Lease> reader = readers_->Acquire();
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ(CountRows(**reader, "t"), 1);
  absl::Status write = (*reader)->Exec("INSERT INTO t (v) VALUES (8)");
  EXPECT_FALSE(write.ok());
}

TEST_F(GroupCommitTest, ReaderConnectionsAreReused) {
  Connection* first = nullptr;
  {
    absl::StatusOr<ReaderPool::Lease> reader = readers_->Acquire();
    ASSERT_TRUE(reader.ok());
    first = &**reader;
  }
  absl::StatusOr<ReaderPool::Lease> again = readers_->Acquire();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(&**again, first);
}

}  // namespace
}  // namespace adcsc::store::sqlite
