// WalCheckpointer: checkpoints run on the background thread (on the threshold and on the
// timer) with the writer's auto-checkpoint off; the hard limit bounds the WAL under a tight
// write loop; failures reach on_error, never the commit; data written before and during
// checkpoints survives a reopen; shutdown in the middle of a checkpoint is clean.
#include "store/wal_checkpointer.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <future>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/sqlite_db.h"
#include "tests/testing/temp_dir.h"

namespace adcsc::store::sqlite {
namespace {

using ::testing::HasSubstr;

// Upper bound on waiting for the background thread; the tests wait on conditions, this only
// stops a broken build from hanging.
constexpr auto kDeadline = std::chrono::seconds(10);
// With the default 4 KiB page, a row this size fills a table leaf page on its own, so rows
// written and WAL pages grow together.
constexpr size_t kPayloadBytes = 3000;
// A timer that never fires during a test, to show that the threshold alone triggers.
constexpr auto kNever = std::chrono::hours(1);

std::string Payload(int64_t id) { return std::string(kPayloadBytes, static_cast<char>('a' + id % 26)); }

// Lets a test hold the background thread at the start of a checkpoint.
class Gate {
 public:
  // Blocks until Open() (or the deadline, so that a failing test cannot hang).
  void Pass() {
    std::unique_lock<std::mutex> lock(mu_);
    ++waiting_;
    cv_.notify_all();
    cv_.wait_for(lock, kDeadline * 3, [this] { return open_; });
  }
  bool WaitUntilSomeoneWaits() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, kDeadline, [this] { return waiting_ > 0; });
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int waiting_ = 0;
  bool open_ = false;
};

class WalCheckpointerTest : public ::testing::Test {
 protected:
  std::unique_ptr<Connection> OpenWriter(const std::filesystem::path& path,
                                         std::chrono::milliseconds busy_timeout = std::chrono::milliseconds(5000)) {
    absl::StatusOr<std::unique_ptr<Connection>> c =
        Connection::OpenConfigured(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                   ConnectionSettings{.writer = true, .fsync = false, .busy_timeout = busy_timeout});
    EXPECT_TRUE(c.ok()) << c.status();
    if (!c.ok()) return nullptr;
    EXPECT_TRUE((*c)->Exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)").ok());
    return std::move(*c);
  }
  std::unique_ptr<Connection> OpenWriter() { return OpenWriter(db_path_); }

  // Options for a test writer (synchronous=OFF); any failure fails the test.
  static WalCheckpointerOptions TestOptions() {
    WalCheckpointerOptions o;
    o.fsync = false;
    o.on_error = [](const absl::Status& s) { ADD_FAILURE() << "unexpected: " << s; };
    return o;
  }

  std::unique_ptr<WalCheckpointer> MustStart(Connection& writer, WalCheckpointerOptions options) {
    absl::StatusOr<std::unique_ptr<WalCheckpointer>> started = WalCheckpointer::Start(writer.raw(), std::move(options));
    EXPECT_TRUE(started.ok()) << started.status();
    return started.ok() ? std::move(*started) : nullptr;
  }

  // Inserts rows first..first+count-1, `per_transaction` to a commit.
  static void Insert(Connection& c, int64_t first, int64_t count, int64_t per_transaction = 1) {
    absl::StatusOr<Statement> insert = c.Prepare("INSERT INTO t (id, payload) VALUES (?1, ?2)");
    ASSERT_TRUE(insert.ok()) << insert.status();
    for (int64_t id = first; id < first + count;) {
      absl::StatusOr<Transaction> txn = Transaction::Begin(c);
      ASSERT_TRUE(txn.ok()) << txn.status();
      for (int64_t n = 0; n < per_transaction && id < first + count; ++n, ++id) {
        insert->BindInt64(1, id).BindBlob(2, Payload(id));
        ASSERT_TRUE(insert->Run().ok()) << id;
        insert->Reset();
      }
      ASSERT_TRUE(txn->Commit().ok());
    }
  }

  // The hard limit held: a commit adds a handful of pages, so the WAL never grows past the
  // limit by more than that, in the stats and on disk.
  void ExpectWalBounded(const WalCheckpointer::Stats& stats, int64_t page, int hard_limit) const {
    constexpr int kPagesPerCommit = 8;
    EXPECT_LE(stats.max_wal_pages, hard_limit + kPagesPerCommit);
    EXPECT_LE(FileSize(WalOf(db_path_)), 32 + (hard_limit + kPagesPerCommit) * (page + 24));
  }

  // Reopens `path` with a fresh connection and checks rows 1..count, every byte.
  static void ExpectIntact(const std::filesystem::path& path, int64_t count) {
    absl::StatusOr<std::unique_ptr<Connection>> c =
        Connection::OpenConfigured(path, SQLITE_OPEN_READWRITE, ConnectionSettings{.fsync = false});
    ASSERT_TRUE(c.ok()) << c.status();
    absl::StatusOr<Statement> check = (*c)->Prepare("PRAGMA integrity_check");
    ASSERT_TRUE(check.ok());
    absl::StatusOr<bool> row = check->Step();
    ASSERT_TRUE(row.ok() && *row);
    EXPECT_EQ(check->ColumnText(0), "ok");
    absl::StatusOr<Statement> select = (*c)->Prepare("SELECT id, payload FROM t ORDER BY id");
    ASSERT_TRUE(select.ok());
    int64_t expected = 1;
    while (true) {
      row = select->Step();
      ASSERT_TRUE(row.ok()) << row.status();
      if (!*row) break;
      ASSERT_EQ(select->ColumnInt64(0), expected);
      ASSERT_EQ(select->ColumnBlob(1), Payload(expected)) << "row " << expected;
      ++expected;
    }
    EXPECT_EQ(expected - 1, count);
  }

  static int64_t FileSize(const std::filesystem::path& path) {
    std::error_code ec;
    const uintmax_t size = std::filesystem::file_size(path, ec);
    return ec ? -1 : static_cast<int64_t>(size);
  }
  static std::filesystem::path WalOf(const std::filesystem::path& path) {
    std::filesystem::path wal = path;
    wal += "-wal";
    return wal;
  }
  int64_t PageSize(Connection& c) { return c.QueryInt64("PRAGMA page_size").value_or(-1); }

  adcsc::testing::TempDir dir_;
  const std::filesystem::path db_path_ = dir_.File("test.db");
};

TEST_F(WalCheckpointerTest, TurnsTheWritersAutoCheckpointOffAndBackOn) {
  auto writer = OpenWriter();
  ASSERT_NE(writer, nullptr);
  const int64_t page = PageSize(*writer);
  EXPECT_EQ(*writer->QueryInt64("PRAGMA wal_autocheckpoint"), 1000);  // SQLite's default
  WalCheckpointerOptions options = TestOptions();
  options.threshold_pages = 1'000'000;  // the thread never gets asked...
  options.hard_limit_pages = 0;
  options.interval = kNever;  // ...nor wakes by itself
  auto checkpointer = MustStart(*writer, std::move(options));
  ASSERT_NE(checkpointer, nullptr);
  EXPECT_EQ(*writer->QueryInt64("PRAGMA wal_autocheckpoint"), 0);

  // One commit far past SQLite's automatic checkpoint point (1000 pages).
  Insert(*writer, 1, 1500, /*per_transaction=*/1500);
  const WalCheckpointer::Stats stats = checkpointer->stats();
  EXPECT_EQ(stats.commits, 1u);
  EXPECT_GE(stats.wal_pages, 1500);
  EXPECT_EQ(stats.checkpoints, 0u);
  // Nothing was copied into the main file: the commit did not checkpoint.
  EXPECT_LT(FileSize(db_path_), 100 * page);
  EXPECT_GE(FileSize(WalOf(db_path_)), 1500 * page);

  checkpointer.reset();
  EXPECT_EQ(*writer->QueryInt64("PRAGMA wal_autocheckpoint"), 1000);
}

TEST_F(WalCheckpointerTest, TheBackgroundThreadCheckpointsOnceTheWalPassesTheThreshold) {
  auto writer = OpenWriter();
  ASSERT_NE(writer, nullptr);
  const int64_t page = PageSize(*writer);
  WalCheckpointerOptions options = TestOptions();
  options.threshold_pages = 100;
  options.hard_limit_pages = 0;
  options.interval = kNever;  // only the hook's signal can start a checkpoint in time
  auto checkpointer = MustStart(*writer, std::move(options));
  ASSERT_NE(checkpointer, nullptr);

  // One commit: the WAL cannot restart before the checkpoint, so "covers every frame"
  // below means this commit's frames.
  Insert(*writer, 1, 200, /*per_transaction=*/200);
  const int64_t wal_pages = checkpointer->stats().wal_pages;
  ASSERT_GE(wal_pages, 200);
  // The writer never calls a checkpoint; wait for the thread's to cover every frame.
  EXPECT_TRUE(checkpointer->WaitFor(
      [&](const WalCheckpointer::Stats& s) {
        return s.checkpoints >= 1 && s.last_checkpointed_frames >= wal_pages &&
               s.last_checkpointed_frames == s.last_log_frames;
      },
      kDeadline))
      << "checkpoints=" << checkpointer->stats().checkpoints;
  const WalCheckpointer::Stats stats = checkpointer->stats();
  EXPECT_EQ(stats.blocking_checkpoints, 0u);
  EXPECT_EQ(stats.errors, 0u);
  EXPECT_TRUE(checkpointer->last_error().ok());
  // The pages really are in the main file now.
  EXPECT_GE(FileSize(db_path_), 200 * page);
}

TEST_F(WalCheckpointerTest, AnIdleDatabaseIsCheckpointedOnTheTimer) {
  auto writer = OpenWriter();
  ASSERT_NE(writer, nullptr);
  const int64_t page = PageSize(*writer);
  WalCheckpointerOptions options = TestOptions();
  options.threshold_pages = 1'000'000;  // never reached: only the timer can do it
  options.hard_limit_pages = 0;
  options.interval = std::chrono::milliseconds(20);
  auto checkpointer = MustStart(*writer, std::move(options));
  ASSERT_NE(checkpointer, nullptr);

  Insert(*writer, 1, 10, /*per_transaction=*/10);  // one commit, as above
  const int64_t wal_pages = checkpointer->stats().wal_pages;
  EXPECT_TRUE(checkpointer->WaitFor(
      [&](const WalCheckpointer::Stats& s) {
        return s.last_checkpointed_frames >= wal_pages && s.last_checkpointed_frames == s.last_log_frames;
      },
      kDeadline));
  EXPECT_GE(FileSize(db_path_), 10 * page);
}

TEST_F(WalCheckpointerTest, TheHardLimitBoundsTheWalWhenTheThreadFallsBehind) {
  auto writer = OpenWriter();
  ASSERT_NE(writer, nullptr);
  const int64_t page = PageSize(*writer);
  constexpr int kHardLimit = 256;
  Gate gate;  // holds the background thread in its first checkpoint: it has fallen behind
  WalCheckpointerOptions options = TestOptions();
  options.threshold_pages = 32;
  options.hard_limit_pages = kHardLimit;
  options.interval = kNever;
  options.before_checkpoint = [&gate] { gate.Pass(); };
  auto checkpointer = MustStart(*writer, std::move(options));
  ASSERT_NE(checkpointer, nullptr);

  // A tight loop of single-row commits: ~3000 pages in all, over ten times the limit.
  constexpr int kRows = 1500;
  Insert(*writer, 1, kRows);
  ASSERT_TRUE(gate.WaitUntilSomeoneWaits());  // the thread was asked, and is stuck
  const WalCheckpointer::Stats stats = checkpointer->stats();
  EXPECT_EQ(stats.commits, static_cast<uint64_t>(kRows));
  EXPECT_EQ(stats.checkpoints, 0u);
  EXPECT_GE(stats.blocking_checkpoints, 5u);
  EXPECT_EQ(stats.blocking_incomplete, 0u);
  ExpectWalBounded(stats, page, kHardLimit);

  gate.Open();
  checkpointer.reset();
  writer.reset();
  ExpectIntact(db_path_, kRows);
}

TEST_F(WalCheckpointerTest, TheHardLimitBoundsTheWalUnderATightWriteLoop) {
  auto writer = OpenWriter();
  ASSERT_NE(writer, nullptr);
  const int64_t page = PageSize(*writer);
  constexpr int kHardLimit = 256;
  WalCheckpointerOptions options = TestOptions();
  options.threshold_pages = 32;
  options.hard_limit_pages = kHardLimit;
  auto checkpointer = MustStart(*writer, std::move(options));
  ASSERT_NE(checkpointer, nullptr);

  // Whether the thread keeps up or not (commits with fsync off outrun it), the bound holds.
  constexpr int kRows = 1500;
  Insert(*writer, 1, kRows);
  const WalCheckpointer::Stats stats = checkpointer->stats();
  EXPECT_EQ(stats.commits, static_cast<uint64_t>(kRows));
  EXPECT_EQ(stats.blocking_incomplete, 0u);
  ExpectWalBounded(stats, page, kHardLimit);
  checkpointer.reset();
  writer.reset();
  ExpectIntact(db_path_, kRows);
}

TEST_F(WalCheckpointerTest, AFailedCheckpointIsReportedButNeverFailsTheCommit) {
  // A short busy timeout, so that the hard-limit checkpoint gives up on the reader quickly.
  auto writer = OpenWriter(db_path_, std::chrono::milliseconds(20));
  ASSERT_NE(writer, nullptr);
  Insert(*writer, 1, 1);
  // A reader that keeps its snapshot: no checkpoint can copy or reset the frames after it.
  absl::StatusOr<std::unique_ptr<Connection>> reader =
      Connection::OpenConfigured(db_path_, SQLITE_OPEN_READWRITE, ConnectionSettings{.fsync = false});
  ASSERT_TRUE(reader.ok()) << reader.status();
  ASSERT_TRUE((*reader)->Exec("BEGIN").ok());
  ASSERT_EQ(*(*reader)->QueryInt64("SELECT COUNT(*) FROM t"), 1);

  constexpr int kHardLimit = 64;
  std::atomic<int> reported{0};
  WalCheckpointerOptions options = TestOptions();
  options.threshold_pages = 16;
  options.hard_limit_pages = kHardLimit;
  options.on_error = [&reported](const absl::Status& s) {
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    EXPECT_THAT(s.message(), HasSubstr("past its limit"));
    reported.fetch_add(1);
  };
  auto checkpointer = MustStart(*writer, std::move(options));
  ASSERT_NE(checkpointer, nullptr);

  // Every commit succeeds although the limit cannot be held; bounded in count.
  int64_t next = 2;
  for (int i = 0; i < 400 && checkpointer->stats().blocking_incomplete < 3; ++i) {
    Insert(*writer, next++, 1);
    if (HasFatalFailure()) return;
  }
  WalCheckpointer::Stats stats = checkpointer->stats();
  EXPECT_GE(stats.blocking_incomplete, 3u);
  EXPECT_GT(stats.max_wal_pages, kHardLimit);
  EXPECT_EQ(reported.load(), 1);  // the same failure again is counted, not re-reported
  EXPECT_GE(stats.errors, 3u);
  EXPECT_EQ(checkpointer->last_error().code(), absl::StatusCode::kUnavailable);
  // Retries back off: at most one per quarter-limit of growth, not one per commit.
  EXPECT_LE(stats.blocking_checkpoints,
            static_cast<uint64_t>((stats.max_wal_pages - kHardLimit) / (kHardLimit / 4) + 1));

  // Once the reader lets go, the WAL restarts (after the thread's checkpoint or the next
  // hard-limit attempt, whichever comes first).
  ASSERT_TRUE((*reader)->Exec("COMMIT").ok());
  for (int i = 0; i < 400 && checkpointer->stats().wal_pages >= kHardLimit; ++i) {
    Insert(*writer, next++, 1);
    if (HasFatalFailure()) return;
  }
  EXPECT_LT(checkpointer->stats().wal_pages, kHardLimit);
  checkpointer.reset();
  reader->reset();
  writer.reset();
  ExpectIntact(db_path_, next - 1);
}

TEST_F(WalCheckpointerTest, DataWrittenBeforeAndDuringCheckpointsIsIntactAfterReopen) {
  auto writer = OpenWriter();
  ASSERT_NE(writer, nullptr);
  constexpr int64_t kBefore = 300;  // in the WAL before the checkpointer exists
  Insert(*writer, 1, kBefore, /*per_transaction=*/50);

  WalCheckpointerOptions options = TestOptions();
  options.threshold_pages = 50;
  options.hard_limit_pages = 400;
  options.interval = std::chrono::milliseconds(5);
  auto checkpointer = MustStart(*writer, std::move(options));
  ASSERT_NE(checkpointer, nullptr);

  // A reader on another thread checks that what it sees only grows while pages move.
  std::atomic<bool> writing{true};
  std::atomic<int64_t> reads{0};
  std::thread reader_thread([&] {
    absl::StatusOr<std::unique_ptr<Connection>> reader =
        Connection::OpenConfigured(db_path_, SQLITE_OPEN_READWRITE, ConnectionSettings{.fsync = false});
    ASSERT_TRUE(reader.ok()) << reader.status();
    int64_t last = 0;
    while (writing.load()) {
      absl::StatusOr<int64_t> n = (*reader)->QueryInt64("SELECT COUNT(*) FROM t");
      ASSERT_TRUE(n.ok()) << n.status();
      ASSERT_GE(*n, last);
      last = *n;
      reads.fetch_add(1);
    }
  });

  constexpr int64_t kDuring = 2000;
  constexpr int64_t kRound = 400;
  for (int64_t first = kBefore + 1; first <= kBefore + kDuring; first += kRound) {
    const uint64_t checkpoints = checkpointer->stats().checkpoints;
    Insert(*writer, first, kRound, /*per_transaction=*/5);
    // Guarantees that checkpoints interleave with the writes (they also overlap them).
    EXPECT_TRUE(
        checkpointer->WaitFor([&](const WalCheckpointer::Stats& s) { return s.checkpoints > checkpoints; }, kDeadline));
  }
  writing.store(false);
  reader_thread.join();
  EXPECT_GT(reads.load(), 0);
  EXPECT_GE(checkpointer->stats().checkpoints, static_cast<uint64_t>(kDuring / kRound));

  checkpointer.reset();
  writer.reset();
  // The writer closed last, so SQLite checkpointed and removed the WAL.
  EXPECT_FALSE(std::filesystem::exists(WalOf(db_path_)));
  ExpectIntact(db_path_, kBefore + kDuring);
}

TEST_F(WalCheckpointerTest, ShutdownWhileACheckpointIsRunningIsClean) {
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    const std::filesystem::path path = dir_.File(absl::StrCat("shutdown", round, ".db"));
    auto writer = OpenWriter(path);
    ASSERT_NE(writer, nullptr);
    std::promise<void> started;
    std::atomic<bool> told{false};
    WalCheckpointerOptions options = TestOptions();
    options.fsync = true;  // a slower checkpoint, more likely still running when we stop
    options.threshold_pages = 1000;
    options.hard_limit_pages = 0;
    options.interval = kNever;
    options.before_checkpoint = [&] {
      if (!told.exchange(true)) started.set_value();
    };
    auto checkpointer = MustStart(*writer, std::move(options));
    ASSERT_NE(checkpointer, nullptr);

    constexpr int kRows = 4000;  // ~16 MiB of WAL for the checkpoint to copy
    Insert(*writer, 1, kRows, /*per_transaction=*/kRows);
    ASSERT_EQ(started.get_future().wait_for(kDeadline), std::future_status::ready);
    // Stop right away, on another thread so a hang shows up as a failure here. The writer
    // is idle meanwhile, as the destructor requires.
    std::future<void> stopped = std::async(std::launch::async, [&] { checkpointer.reset(); });
    ASSERT_EQ(stopped.wait_for(kDeadline), std::future_status::ready);
    stopped.get();

    // The writer is as before and another checkpointer can take over.
    EXPECT_EQ(*writer->QueryInt64("PRAGMA wal_autocheckpoint"), 1000);
    auto again = MustStart(*writer, TestOptions());
    ASSERT_NE(again, nullptr);
    Insert(*writer, kRows + 1, 1);
    again.reset();
    writer.reset();
    ExpectIntact(path, kRows + 1);
  }
}

TEST_F(WalCheckpointerTest, StartRefusesWhatItCannotCheckpoint) {
  absl::StatusOr<std::unique_ptr<Connection>> memory =
      Connection::Open(":memory:", SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  ASSERT_TRUE(memory.ok());
  absl::StatusOr<std::unique_ptr<WalCheckpointer>> c = WalCheckpointer::Start((*memory)->raw(), TestOptions());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition);

  // A rollback-journal database: nothing to checkpoint, and the writer is left alone.
  absl::StatusOr<std::unique_ptr<Connection>> journal =
      Connection::Open(db_path_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  ASSERT_TRUE(journal.ok());
  ASSERT_TRUE((*journal)->Exec("CREATE TABLE t (v INTEGER)").ok());
  c = WalCheckpointer::Start((*journal)->raw(), TestOptions());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(c.status().message(), HasSubstr("not WAL"));
  EXPECT_THAT(c.status().message(), HasSubstr(db_path_.string()));
  EXPECT_EQ(*(*journal)->QueryInt64("PRAGMA wal_autocheckpoint"), 1000);
  journal->reset();

  auto writer = OpenWriter();
  ASSERT_NE(writer, nullptr);
  WalCheckpointerOptions bad = TestOptions();
  bad.threshold_pages = 0;
  c = WalCheckpointer::Start(writer->raw(), bad);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  bad = TestOptions();
  bad.hard_limit_pages = bad.threshold_pages;
  c = WalCheckpointer::Start(writer->raw(), bad);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("hard_limit_pages"));
  EXPECT_EQ(*writer->QueryInt64("PRAGMA wal_autocheckpoint"), 1000);
}

}  // namespace
}  // namespace adcsc::store::sqlite
