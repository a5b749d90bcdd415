// WalCheckpointer: runs the WAL checkpoints of one SQLite database on a background thread,
// so no commit waits while pages are copied into the main file and fsynced.
//
// Thread-safety and ownership: a WalCheckpointer is attached to one writer connection, a
// sqlite3* it does not own and that must outlive it (destroy the checkpointer first). It
// owns a background thread and that thread's own connection to the same file; the
// destructor stops the thread and closes that connection. Start() and the destructor use
// the writer connection (to swap its WAL hook), so call them where using the writer is
// allowed: on a thread that may use it, with no statement running on it. The WAL hook runs
// inside every commit on the writer, on the committing thread. stats(), last_error() and
// WaitFor() may be called from any thread at any time.
//
// How it works: Start() turns SQLite's automatic checkpoint off on the writer (PRAGMA
// wal_autocheckpoint=0) and installs a WAL hook. After each commit the hook records the
// WAL size and, once it reaches `threshold_pages`, wakes the thread, which runs a PASSIVE
// checkpoint (it never waits for the writer or for readers). The thread also wakes every
// `interval`, so an idle database is checkpointed too.
//
// Trade-off at the hard limit: a passive checkpoint cannot reset the WAL while writes keep arriving
// (or while a reader still uses old frames), so under sustained writes the WAL could grow without
// end, and with it disk use, read cost and recovery time. Once a commit leaves the WAL at
// `hard_limit_pages` or more, the hook itself runs a RESTART checkpoint on the writer: that commit
// (and, in a group-commit writer, every write queued behind it) waits until the WAL is copied back
// and the readers have moved off it (at most the writer's busy_timeout, as it was at Start(); it is
// lowered during the checkpoint and put back after). So latency spikes return only when the disk
// cannot keep up or a reader holds on, and the WAL stays bounded unless a reader pins it (which
// only ending that read can fix). RESTART rather than TRUNCATE keeps the WAL file's blocks
// allocated, so the commits after it overwrite in place instead of growing the file (which would
// add a metadata flush to every fsync); while readers let it restart, the file stays at most about
// hard_limit_pages frames long. If the RESTART cannot finish (a reader held on), the next attempt
// waits until the WAL has grown by another quarter of the hard limit, so a reader that pins the WAL
// costs one busy_timeout stall per quarter-limit of writes, not one per commit.
//
// Errors never reach the commit that triggered them (the commit has happened; failing it
// would make a durable write look lost). They are counted, kept as last_error(), and passed
// to `on_error`: the first of a run of failures and each change of message.
#pragma once

#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "store/sqlite_db.h"

namespace adcsc::store::sqlite {

struct WalCheckpointerOptions {
  // WAL size (pages) after a commit that wakes the background thread. 1000 is SQLite's own
  // auto-checkpoint point: about 4 MiB at the default 4 KiB page, small enough that one
  // checkpoint is short and readers' lookups in the WAL index stay cheap.
  int threshold_pages = 1000;
  // WAL size (pages) at which the committing thread checkpoints itself (RESTART; see the
  // trade-off above). 16384 pages (64 MiB at 4 KiB) is 16 times the threshold: reached only
  // when the background thread has fallen far behind. 0 disables the limit (tests).
  int hard_limit_pages = 16384;
  // How often the thread checkpoints without being woken, if anything was committed since
  // its last complete checkpoint.
  std::chrono::milliseconds interval{1000};
  // Fsync during checkpoints (synchronous=FULL on the checkpoint connection). Must be true
  // whenever the writer relies on fsync (synchronous NORMAL or FULL): a checkpoint that does
  // not sync the main file before the WAL is reused can lose committed data on power loss.
  // False only for tests that run the writer with synchronous=OFF.
  bool fsync = true;
  // Told about failed checkpoints (see the file comment). Runs on the background thread or
  // inside a commit, so it must be quick and thread-safe. Empty: one line on stderr.
  std::function<void(const absl::Status&)> on_error;
  // Test hook: runs on the background thread just before each checkpoint it starts.
  std::function<void()> before_checkpoint;
};

class WalCheckpointer {
 public:
  // Attaches to `writer`, which must be a WAL-mode connection to a database file (not
  // in-memory or temporary), and starts the thread. On error the writer is left as it was.
  // Set the writer's busy_timeout before: it is read here (and a custom busy handler would
  // be replaced by the hard-limit checkpoint). Nothing may set wal_autocheckpoint or a WAL
  // hook on the writer while attached: either would replace this object's hook.
  static absl::StatusOr<std::unique_ptr<WalCheckpointer>> Start(sqlite3* writer, WalCheckpointerOptions options = {});

  // Detaches from the writer (its auto-checkpoint setting is restored), interrupts a
  // checkpoint in progress (the work is not lost: the next checkpoint, or the writer's own
  // close, redoes it) and waits for the thread. There is no final checkpoint here: when the
  // writer then closes as the last connection, SQLite checkpoints and deletes the WAL.
  ~WalCheckpointer();
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

  struct Stats {
    uint64_t commits = 0;       // commits the WAL hook saw
    int64_t wal_pages = 0;      // WAL size (frames) after the latest commit
    int64_t max_wal_pages = 0;  // largest WAL size any commit left
    // Background checkpoints that ran (PASSIVE, SQLITE_OK), and what the latest reported:
    // frames in the WAL and frames now copied to the main file (equal: complete).
    uint64_t checkpoints = 0;
    int64_t last_log_frames = 0;
    int64_t last_checkpointed_frames = 0;
    uint64_t busy = 0;         // skipped: another connection held the checkpoint lock
    uint64_t interrupted = 0;  // cut short by shutdown
    // Hard-limit checkpoints run inside a commit, and those that could not finish.
    uint64_t blocking_checkpoints = 0;
    uint64_t blocking_incomplete = 0;
    uint64_t errors = 0;  // failed checkpoints of either kind
  };
  Stats stats() const;
  // The most recent failure; OK if none yet.
  absl::Status last_error() const;

  // Waits until `done(stats())` holds or `timeout` passes; returns whether it holds. The
  // predicate is re-checked each time a checkpoint (background or hard-limit) finishes, so
  // it should depend on those results; it runs under an internal lock and must not call
  // back into this object.
  bool WaitFor(absl::FunctionRef<bool(const Stats&)> done, std::chrono::milliseconds timeout) const;

  const std::filesystem::path& path() const { return path_; }

 private:
  WalCheckpointer(sqlite3* writer, std::unique_ptr<Connection> connection, std::filesystem::path path,
                  int saved_autocheckpoint, int writer_busy_timeout_ms, WalCheckpointerOptions options);

  // The sqlite3_wal_hook callback; `self` is the WalCheckpointer.
  static int OnCommit(void* self, sqlite3* db, const char* db_name, int pages);
  // The hook's work: bookkeeping, a wake-up, and at the hard limit the blocking checkpoint.
  void NoteCommit(int pages);
  // The hard-limit RESTART on the writer; true when it reset the WAL.
  bool BlockingCheckpoint();
  void Run();
  // One PASSIVE checkpoint on the background connection; true when it copied every frame.
  bool CheckpointOnce();
  Stats StatsLocked() const;  // requires mu_
  void RecordSuccess();
  void RecordFailure(absl::Status error);

  sqlite3* const writer_;                         // not owned
  const std::unique_ptr<Connection> connection_;  // the thread's own; closed after join
  const std::filesystem::path path_;
  const int saved_autocheckpoint_;  // the writer's setting before Start(), restored after
  // The writer's busy_timeout at Start(): the hard-limit checkpoint's time budget, and what
  // the writer gets back after that checkpoint's shorter waits.
  const int writer_busy_timeout_ms_;
  const WalCheckpointerOptions options_;

  // Written by the hook only; atomics so that stats() can read them from any thread.
  std::atomic<uint64_t> commits_{0};
  std::atomic<int64_t> wal_pages_{0};
  std::atomic<int64_t> max_wal_pages_{0};
  // Set by the hook when it has asked for a checkpoint, cleared by the thread when it starts
  // one: the hook takes mu_ only for the first request of each round, not on every commit.
  std::atomic<bool> wake_pending_{false};
  // WAL size at which the hook next tries a blocking checkpoint. Touched only inside the
  // hook, whose calls the writer's users already serialise.
  int next_blocking_at_;

  // Held around every checkpoint this object runs, so the hard-limit RESTART waits for a
  // passive checkpoint in flight instead of failing at once with SQLITE_BUSY (SQLite does
  // not call the busy handler for the checkpoint lock). A passive checkpoint waits for no
  // lock, so holding this never waits on the writer: no deadlock.
  std::mutex checkpoint_mu_;

  // Never held across I/O or a callback, so the hook's rare use of it waits only for a few
  // instructions.
  mutable std::mutex mu_;
  std::condition_variable wake_cv_;              // the thread waits here
  mutable std::condition_variable progress_cv_;  // WaitFor() waits here
  bool stopping_ = false;                        // guarded by mu_
  bool wake_requested_ = false;                  // guarded by mu_
  Stats stats_;                                  // guarded by mu_; hook-owned fields unused
  absl::Status last_error_;                      // guarded by mu_
  bool failing_ = false;                         // guarded by mu_; the latest checkpoint failed

  std::thread thread_;  // last: started once everything above is set up
};

}  // namespace adcsc::store::sqlite
