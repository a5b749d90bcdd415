// The SQLite layer: typed binds and columns, error messages, transactions, the statement
// cache, the group-commit writer (batching and per-function rollback) and the reader pool.
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
#include "tests/testing/temp_dir.h"

namespace adcsc::store::sqlite {
namespace {

using ::testing::HasSubstr;

// Upper bound on waiting for other threads to reach a point; the tests wait on conditions,
// this only stops a broken build from hanging.
constexpr auto kConditionDeadline = std::chrono::seconds(10);

class SqliteDbTest : public ::testing::Test {
 protected:
  std::unique_ptr<Connection> OpenWriter() {
    absl::StatusOr<std::unique_ptr<Connection>> c = Connection::OpenConfigured(
        db_path_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, ConnectionSettings{.writer = true, .fsync = false});
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }
  int64_t CountRows(Connection& c, const std::string& table) {
    absl::StatusOr<int64_t> n = c.QueryInt64(absl::StrCat("SELECT COUNT(*) FROM ", table));
    EXPECT_TRUE(n.ok()) << n.status();
    return n.value_or(-1);
  }

  adcsc::testing::TempDir dir_;
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
  absl::StatusOr<std::unique_ptr<Connection>> c = Connection::Open(missing, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr(missing.string()));
  EXPECT_THAT(c.status().message(), HasSubstr("check that the data directory exists"));
}

TEST_F(SqliteDbTest, AFileThatIsNotADatabaseIsDataLoss) {
  std::ofstream(db_path_) << "this is not an SQLite database, just some text long enough to "
                             "fill the header page that SQLite reads first when it opens";
  absl::StatusOr<std::unique_ptr<Connection>> c =
      Connection::OpenConfigured(db_path_, SQLITE_OPEN_READWRITE, ConnectionSettings{.writer = true});
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

// Prepared statements alive on `c`, from SQLite's own list (cached, lent out or one-off).
int LiveStatements(Connection& c) {
  int n = 0;
  for (sqlite3_stmt* st = sqlite3_next_stmt(c.raw(), nullptr); st != nullptr; st = sqlite3_next_stmt(c.raw(), st)) {
    ++n;
  }
  return n;
}

// Statements on `c` that have stepped and not been reset (they may hold a read transaction).
int BusyStatements(Connection& c) {
  int n = 0;
  for (sqlite3_stmt* st = sqlite3_next_stmt(c.raw(), nullptr); st != nullptr; st = sqlite3_next_stmt(c.raw(), st)) {
    if (sqlite3_stmt_busy(st) != 0) ++n;
  }
  return n;
}

// Steps `st`, failing the test (rather than crashing it) on an error; true when a row came.
bool NextRow(Statement& st) {
  absl::StatusOr<bool> row = st.Step();
  EXPECT_TRUE(row.ok()) << row.status();
  return row.ok() && *row;
}

TEST_F(SqliteDbTest, CachedStatementIsPreparedOnceAndReused) {
  auto c = OpenWriter();
  constexpr std::string_view kSql = "SELECT ?1 + 1";
  Statement* first = nullptr;
  for (int64_t i = 0; i < 3; ++i) {
    absl::StatusOr<CachedStatement> st = c->PrepareCached(kSql);
    ASSERT_TRUE(st.ok()) << st.status();
    if (first == nullptr) first = &**st;
    EXPECT_EQ(&**st, first) << "use " << i;
    (*st)->BindInt64(1, i);
    absl::StatusOr<bool> row = (*st)->Step();
    ASSERT_TRUE(row.ok() && *row) << row.status();
    EXPECT_EQ((*st)->ColumnInt64(0), i + 1);
  }
  // The text is the key, not the pointer: an equal string from elsewhere hits the cache.
  const std::string copy(kSql);
  absl::StatusOr<CachedStatement> again = c->PrepareCached(copy);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(&**again, first);
  EXPECT_EQ(c->cached_statements(), 1u);
  EXPECT_EQ(LiveStatements(*c), 1);
}

TEST_F(SqliteDbTest, BindingsFromAPreviousUseDoNotLeakIntoTheNext) {
  auto c = OpenWriter();
  constexpr std::string_view kSql = "SELECT ?1, ?2";
  {
    absl::StatusOr<CachedStatement> st = c->PrepareCached(kSql);
    ASSERT_TRUE(st.ok());
    (*st)->BindText(1, "first").BindInt64(2, 42);
    ASSERT_TRUE(NextRow(**st));
    EXPECT_EQ((*st)->ColumnInt64(1), 42);
  }
  {
    // Only ?1 this time: ?2 must be NULL again, not 42 from the previous borrower.
    absl::StatusOr<CachedStatement> st = c->PrepareCached(kSql);
    ASSERT_TRUE(st.ok());
    (*st)->BindText(1, "second");
    absl::StatusOr<bool> row = (*st)->Step();
    ASSERT_TRUE(row.ok() && *row) << row.status();
    EXPECT_EQ((*st)->ColumnText(0), "second");
    EXPECT_TRUE((*st)->ColumnIsNull(1));
  }
  {
    // A bind error is remembered until the next Step(); it must not outlive the borrower.
    absl::StatusOr<CachedStatement> st = c->PrepareCached(kSql);
    ASSERT_TRUE(st.ok());
    (*st)->BindInt64(7, 1);
  }
  absl::StatusOr<CachedStatement> st = c->PrepareCached(kSql);
  ASSERT_TRUE(st.ok());
  (*st)->BindInt64(1, 3);
  absl::StatusOr<bool> row = (*st)->Step();
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_TRUE(*row);
}

TEST_F(SqliteDbTest, AStatementLeftMidStepIsResetBeforeReuse) {
  auto c = OpenWriter();
  ASSERT_TRUE(c->Exec("CREATE TABLE t (v INTEGER PRIMARY KEY)").ok());
  ASSERT_TRUE(c->Exec("INSERT INTO t VALUES (1), (2), (3)").ok());
  // Reads the first row at or above `min` and returns without finishing the statement,
  // the way a lookup returns as soon as it has its answer.
  auto first_at_least = [&c](int64_t min) -> absl::StatusOr<int64_t> {
    absl::StatusOr<CachedStatement> st = c->PrepareCached("SELECT v FROM t WHERE v >= ?1 ORDER BY v");
    if (!st.ok()) return st.status();
    (*st)->BindInt64(1, min);
    absl::StatusOr<bool> row = (*st)->Step();
    if (!row.ok()) return row.status();
    if (!*row) return absl::NotFoundError("no row");
    return (*st)->ColumnInt64(0);
  };
  absl::StatusOr<int64_t> v = first_at_least(1);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, 1);
  // Not left running: it would keep a read transaction (and its WAL snapshot) open.
  EXPECT_EQ(BusyStatements(*c), 0);
  // Continuing the old run would give 2; a fresh run with the new binding gives 1 again.
  v = first_at_least(0);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, 1);
  v = first_at_least(3);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, 3);
  EXPECT_EQ(c->cached_statements(), 1u);
}

TEST_F(SqliteDbTest, ACachedStatementIsReusableAfterAFailedStep) {
  auto c = OpenWriter();
  ASSERT_TRUE(c->Exec("CREATE TABLE t (v INTEGER PRIMARY KEY)").ok());
  auto insert = [&c](int64_t v) -> absl::Status {
    absl::StatusOr<CachedStatement> st = c->PrepareCached("INSERT INTO t (v) VALUES (?1)");
    if (!st.ok()) return st.status();
    (*st)->BindInt64(1, v);
    return (*st)->Run();
  };
  ASSERT_TRUE(insert(1).ok());
  absl::Status dup = insert(1);
  EXPECT_THAT(dup.message(), HasSubstr("UNIQUE constraint failed"));
  EXPECT_TRUE(insert(2).ok());
  EXPECT_EQ(CountRows(*c, "t"), 2);
  EXPECT_EQ(BusyStatements(*c), 0);
}

TEST_F(SqliteDbTest, ANestedUseOfTheSameSqlGetsItsOwnStatement) {
  auto c = OpenWriter();
  ASSERT_TRUE(c->Exec("CREATE TABLE t (v INTEGER PRIMARY KEY)").ok());
  ASSERT_TRUE(c->Exec("INSERT INTO t VALUES (1), (2)").ok());
  constexpr std::string_view kSql = "SELECT v FROM t ORDER BY v";
  Statement* cached = nullptr;
  {
    absl::StatusOr<CachedStatement> outer = c->PrepareCached(kSql);
    ASSERT_TRUE(outer.ok());
    cached = &**outer;
    ASSERT_TRUE(NextRow(**outer));
    EXPECT_EQ((*outer)->ColumnInt64(0), 1);
    {
      // Sharing the outer statement would rewind it under the outer loop.
      absl::StatusOr<CachedStatement> inner = c->PrepareCached(kSql);
      ASSERT_TRUE(inner.ok());
      EXPECT_NE(&**inner, cached);
      ASSERT_TRUE(NextRow(**inner));
      EXPECT_EQ((*inner)->ColumnInt64(0), 1);
      EXPECT_EQ(LiveStatements(*c), 2);
    }
    ASSERT_TRUE(NextRow(**outer));
    EXPECT_EQ((*outer)->ColumnInt64(0), 2);
  }
  EXPECT_EQ(c->cached_statements(), 1u);
  EXPECT_EQ(LiveStatements(*c), 1);  // the nested one was finalized
  absl::StatusOr<CachedStatement> again = c->PrepareCached(kSql);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(&**again, cached);
}

TEST_F(SqliteDbTest, AMovedHandleReleasesOnce) {
  auto c = OpenWriter();
  Statement* cached = nullptr;
  {
    absl::StatusOr<CachedStatement> st = c->PrepareCached("SELECT 1");
    ASSERT_TRUE(st.ok());
    cached = &**st;
    CachedStatement moved(*std::move(st));
    EXPECT_EQ(&*moved, cached);
    ASSERT_TRUE(NextRow(*moved));
  }
  EXPECT_EQ(BusyStatements(*c), 0);
  absl::StatusOr<CachedStatement> again = c->PrepareCached("SELECT 1");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(&**again, cached);  // released, so lent again rather than a one-off
}

TEST_F(SqliteDbTest, AFailedPrepareIsReportedAndNotCached) {
  auto c = OpenWriter();
  absl::StatusOr<CachedStatement> bad = c->PrepareCached("SELEC 1");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("syntax error"));
  EXPECT_THAT(bad.status().message(), HasSubstr("SELEC 1"));
  EXPECT_EQ(c->PrepareCached("SELECT 1; SELECT 2").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->cached_statements(), 0u);
  EXPECT_EQ(LiveStatements(*c), 0);
}

TEST_F(SqliteDbTest, TheCacheIsBounded) {
  auto c = OpenWriter();
  const int kDistinct = static_cast<int>(Connection::kMaxCachedStatements) + 5;
  for (int i = 0; i < kDistinct; ++i) {
    absl::StatusOr<CachedStatement> st = c->PrepareCached(absl::StrCat("SELECT ", i));
    ASSERT_TRUE(st.ok()) << st.status();
    absl::StatusOr<bool> row = (*st)->Step();
    ASSERT_TRUE(row.ok() && *row) << row.status();
    EXPECT_EQ((*st)->ColumnInt64(0), i);  // past the bound it still works, uncached
  }
  EXPECT_EQ(c->cached_statements(), Connection::kMaxCachedStatements);
  EXPECT_EQ(LiveStatements(*c), static_cast<int>(Connection::kMaxCachedStatements));
}

TEST_F(SqliteDbTest, ClosingFinalizesCachedStatements) {
  {
    auto c = OpenWriter();
    ASSERT_TRUE(c->Exec("CREATE TABLE t (v INTEGER)").ok());
    absl::StatusOr<CachedStatement> st = c->PrepareCached("INSERT INTO t (v) VALUES (?1)");
    ASSERT_TRUE(st.ok());
    (*st)->BindInt64(1, 5);
    ASSERT_TRUE((*st)->Run().ok());
  }
  // The last connection to a WAL database checkpoints and deletes the WAL when it really
  // closes; a statement left unfinalized would have kept it open (a zombie) instead.
  std::filesystem::path wal = db_path_;
  wal += "-wal";
  EXPECT_FALSE(std::filesystem::exists(wal));
  auto c = OpenWriter();
  EXPECT_EQ(CountRows(*c, "t"), 1);
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
        if (!writer_->Write([&](Connection& c) { return Insert(c, t * kWritesPerThread + i); }).ok()) {
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

TEST_F(GroupCommitTest, ConcurrentCallersShareTheCachesOneThreadAtATime) {
  // Every writer's function uses the writer connection's cached INSERT and every reader
  // its lease's cached SELECT; the group-commit leader and the pool's leases are what keep
  // two threads off one cached statement (ASan/TSan builds would flag a violation).
  constexpr int kThreads = 8;
  constexpr int kOpsPerThread = 40;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kOpsPerThread; ++i) {
        const int64_t v = t * kOpsPerThread + i;
        absl::Status w = writer_->Write([v](Connection& c) -> absl::Status {
          absl::StatusOr<CachedStatement> st = c.PrepareCached("INSERT INTO t (v) VALUES (?1)");
          if (!st.ok()) return st.status();
          (*st)->BindInt64(1, v);
          return (*st)->Run();
        });
        if (!w.ok()) ++failures;
        absl::StatusOr<ReaderPool::Lease> r = readers_->Acquire();
        if (!r.ok()) {
          ++failures;
          continue;
        }
        absl::StatusOr<CachedStatement> st = (*r)->PrepareCached("SELECT v FROM t WHERE v = ?1");
        if (!st.ok()) {
          ++failures;
          continue;
        }
        (*st)->BindInt64(1, v);
        absl::StatusOr<bool> row = (*st)->Step();
        // Committed before Write() returned, so every reader must see it.
        if (!row.ok() || !*row || (*st)->ColumnInt64(0) != v) ++failures;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(CountCommitted(), kThreads * kOpsPerThread);
  ASSERT_TRUE(writer_
                  ->Write([](Connection& c) {
                    // One INSERT text, so one cached statement however many threads wrote.
                    EXPECT_EQ(c.cached_statements(), 1u);
                    return absl::OkStatus();
                  })
                  .ok());
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
