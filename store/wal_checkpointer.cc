#include "store/wal_checkpointer.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace adcsc::store::sqlite {
namespace {

// Only for opening the checkpoint connection (its first read may wait for a recovery run
// by another connection). Checkpoints themselves are PASSIVE and never wait.
constexpr int kOpenBusyTimeoutMillis = 5'000;

// How long one attempt of the hard-limit checkpoint waits for readers before it is retried;
// see BlockingCheckpoint() for why one long wait would not do.
constexpr int kBlockingAttemptMillis = 10;

// Runs a query on a raw handle and returns the first column of its first row as text.
absl::StatusOr<std::string> QueryText(sqlite3* db, const std::filesystem::path& path, const char* sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return ErrorStatus(db, path, rc, absl::StrCat("preparing ", sql));
  }
  rc = sqlite3_step(stmt);
  if (rc != SQLITE_ROW) {
    absl::Status error = rc == SQLITE_DONE
                             ? absl::InternalError(absl::StrCat("sqlite: ", path.string(), ": no row from ", sql))
                             : ErrorStatus(db, path, rc, absl::StrCat("running ", sql));
    sqlite3_finalize(stmt);
    return error;
  }
  const unsigned char* text = sqlite3_column_text(stmt, 0);
  std::string value = text != nullptr ? reinterpret_cast<const char*>(text) : "";
  sqlite3_finalize(stmt);
  return value;
}

absl::Status ValidateOptions(const WalCheckpointerOptions& options) {
  if (options.threshold_pages < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("WAL checkpointer: threshold_pages must be at least 1, not ", options.threshold_pages));
  }
  if (options.hard_limit_pages < 0 ||
      (options.hard_limit_pages > 0 && options.hard_limit_pages <= options.threshold_pages)) {
    return absl::InvalidArgumentError(absl::StrCat("WAL checkpointer: hard_limit_pages (", options.hard_limit_pages,
                                                   ") must be 0 (no limit) or above threshold_pages (",
                                                   options.threshold_pages, ")"));
  }
  if (options.interval.count() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("WAL checkpointer: interval must be at least 1 ms, not ", options.interval.count()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<WalCheckpointer>> WalCheckpointer::Start(sqlite3* writer,
                                                                        WalCheckpointerOptions options) {
  if (writer == nullptr) {
    return absl::InvalidArgumentError("WAL checkpointer: no writer connection");
  }
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;

  const char* filename = sqlite3_db_filename(writer, "main");
  if (filename == nullptr || filename[0] == '\0') {
    return absl::FailedPreconditionError(
        "WAL checkpointer: the writer's database is in memory or temporary; there is no file "
        "for a second connection to checkpoint");
  }
  const std::filesystem::path path(filename);

  absl::StatusOr<std::string> mode = QueryText(writer, path, "PRAGMA journal_mode");
  if (!mode.ok()) return mode.status();
  if (absl::AsciiStrToLower(*mode) != "wal") {
    return absl::FailedPreconditionError(
        absl::StrCat("WAL checkpointer: ", path.string(), " is in journal mode '", *mode,
                     "', not WAL; switch the writer to WAL before attaching a checkpointer"));
  }
  absl::StatusOr<std::string> autocheckpoint = QueryText(writer, path, "PRAGMA wal_autocheckpoint");
  if (!autocheckpoint.ok()) return autocheckpoint.status();
  int saved_autocheckpoint = 0;
  if (!absl::SimpleAtoi(*autocheckpoint, &saved_autocheckpoint)) {
    return absl::InternalError(absl::StrCat("WAL checkpointer: ", path.string(),
                                            ": PRAGMA wal_autocheckpoint returned '", *autocheckpoint, "'"));
  }
  absl::StatusOr<std::string> busy_timeout = QueryText(writer, path, "PRAGMA busy_timeout");
  if (!busy_timeout.ok()) return busy_timeout.status();
  int writer_busy_timeout_ms = 0;
  if (!absl::SimpleAtoi(*busy_timeout, &writer_busy_timeout_ms)) {
    return absl::InternalError(
        absl::StrCat("WAL checkpointer: ", path.string(), ": PRAGMA busy_timeout returned '", *busy_timeout, "'"));
  }

  // Read-write: a checkpoint writes the main file. Its own connection, so that checkpoints
  // run beside commits instead of queueing for the writer.
  absl::StatusOr<std::unique_ptr<Connection>> connection = Connection::Open(path, SQLITE_OPEN_READWRITE);
  if (!connection.ok()) return connection.status();
  Connection& c = **connection;
  if (const int rc = sqlite3_busy_timeout(c.raw(), kOpenBusyTimeoutMillis); rc != SQLITE_OK) {
    return c.Error(rc, "setting busy_timeout on the checkpoint connection");
  }
  // Checkpoints sync (or not) by the setting of the connection that runs them.
  if (absl::Status s = c.Exec(options.fsync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=OFF"); !s.ok()) {
    return s;
  }
  // A connection finds out that the file is in WAL mode, and opens the WAL, only when it
  // first reads; before that a checkpoint on it would do nothing.
  if (absl::StatusOr<int64_t> v = c.QueryInt64("PRAGMA schema_version"); !v.ok()) {
    return v.status();
  }

  std::unique_ptr<WalCheckpointer> checkpointer(new WalCheckpointer(
      writer, *std::move(connection), path, saved_autocheckpoint, writer_busy_timeout_ms, std::move(options)));
  WalCheckpointer* const self = checkpointer.get();
  try {
    self->thread_ = std::thread([self] { self->Run(); });
  } catch (const std::system_error& e) {
    // The destructor restores the writer's (unchanged) setting; nothing else to undo.
    return absl::ResourceExhaustedError(
        absl::StrCat("WAL checkpointer for ", path.string(), ": cannot start its thread: ", e.what()));
  }
  // Order matters: this PRAGMA works by installing SQLite's own WAL hook (or removing it),
  // so ours must be installed after it, and nothing may set it again while we are attached.
  if (const int rc = sqlite3_exec(writer, "PRAGMA wal_autocheckpoint=0", nullptr, nullptr, nullptr); rc != SQLITE_OK) {
    return ErrorStatus(writer, path, rc, "turning off automatic checkpoints on the writer");
  }
  sqlite3_wal_hook(writer, &WalCheckpointer::OnCommit, self);
  return checkpointer;
}

WalCheckpointer::WalCheckpointer(sqlite3* writer, std::unique_ptr<Connection> connection, std::filesystem::path path,
                                 int saved_autocheckpoint, int writer_busy_timeout_ms, WalCheckpointerOptions options)
    : writer_(writer),
      connection_(std::move(connection)),
      path_(std::move(path)),
      saved_autocheckpoint_(saved_autocheckpoint),
      writer_busy_timeout_ms_(writer_busy_timeout_ms),
      options_(std::move(options)),
      next_blocking_at_(options_.hard_limit_pages) {}

WalCheckpointer::~WalCheckpointer() {
  // Detach first, so that no commit calls into an object that is going away. Restoring the
  // setting replaces our hook with SQLite's own (or with none, if it was 0), so the writer
  // behaves as before Start() if it is used further.
  sqlite3_wal_autocheckpoint(writer_, saved_autocheckpoint_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_cv_.notify_all();
  if (thread_.joinable()) {
    // A checkpoint of a large WAL can take seconds; shutdown should not. Interrupting it is
    // safe (frames copied so far are simply copied again later). The connection stays open
    // until after the join, as sqlite3_interrupt requires. If the thread is between
    // checkpoints, it sees stopping_ first and the flag goes unused.
    sqlite3_interrupt(connection_->raw());
    thread_.join();
  }
  // connection_ closes when the members are destroyed, now that no thread uses it.
}

int WalCheckpointer::OnCommit(void* self, sqlite3* /*db*/, const char* db_name, int pages) {
  // An ATTACHed database has its own WAL; this object looks after "main" only.
  if (db_name != nullptr && std::strcmp(db_name, "main") == 0) {
    static_cast<WalCheckpointer*>(self)->NoteCommit(pages);
  }
  // Always OK: the commit has already happened, and an error code here would make the
  // statement report failure for a write that is durable.
  return SQLITE_OK;
}

void WalCheckpointer::NoteCommit(int pages) {
  commits_.fetch_add(1, std::memory_order_relaxed);
  wal_pages_.store(pages, std::memory_order_relaxed);
  // Hook calls never overlap (the writer connection is used by one thread at a time), so a
  // plain load-compare-store cannot lose a larger value.
  if (pages > max_wal_pages_.load(std::memory_order_relaxed)) {
    max_wal_pages_.store(pages, std::memory_order_relaxed);
  }

  const int hard_limit = options_.hard_limit_pages;
  if (hard_limit > 0) {
    if (pages < hard_limit) {
      next_blocking_at_ = hard_limit;
    } else if (pages >= next_blocking_at_) {
      if (BlockingCheckpoint()) {
        next_blocking_at_ = hard_limit;
        return;  // the WAL is copied back and will restart: nothing for the thread to do
      }
      next_blocking_at_ = pages + std::max(1, hard_limit / 4);
    }
  }

  // Only the first commit of a round over the threshold takes mu_; the rest see the flag.
  if (pages >= options_.threshold_pages && !wake_pending_.exchange(true)) {
    std::lock_guard<std::mutex> lock(mu_);
    wake_requested_ = true;
    wake_cv_.notify_one();
  }
}

bool WalCheckpointer::BlockingCheckpoint() {
  int log_frames = -1;
  int checkpointed = -1;
  int rc;
  {
    std::lock_guard<std::mutex> lock(checkpoint_mu_);
    // Inside the WAL hook the commit has released its locks, so the writer may checkpoint
    // here (SQLite's own automatic checkpoint runs at this very point). RESTART waits, via
    // the writer's busy handler, for readers to leave the WAL, so that the next commit
    // starts it again from the beginning.
    //
    // In short attempts, retried until the writer's busy_timeout, rather than one long
    // wait: a waiting checkpoint keeps asking for the same reader slot without re-reading
    // its mark, and a busy reader takes that slot again (already up to date) for each new
    // query, so a single wait would starve for the whole timeout. Each new attempt re-reads
    // the marks. SQLite's busy handler does the waiting; the timeout is put back after.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(writer_busy_timeout_ms_);
    sqlite3_busy_timeout(writer_, kBlockingAttemptMillis);
    do {
      rc = sqlite3_wal_checkpoint_v2(writer_, "main", SQLITE_CHECKPOINT_RESTART, &log_frames, &checkpointed);
      // log_frames < 0: the checkpoint lock itself was taken (by another process); that
      // fails at once without waiting, so retrying would only spin.
    } while ((rc & 0xff) == SQLITE_BUSY && log_frames >= 0 && std::chrono::steady_clock::now() < deadline);
    sqlite3_busy_timeout(writer_, writer_busy_timeout_ms_);
  }
  const bool complete = rc == SQLITE_OK;
  if (complete) {
    RecordSuccess();
  } else if ((rc & 0xff) == SQLITE_BUSY) {
    RecordFailure(absl::UnavailableError(
        absl::StrCat("WAL of ", path_.string(), " is past its limit of ", options_.hard_limit_pages,
                     " pages and a checkpoint inside a commit could not reset it: another connection (a "
                     "long read, or a checkpoint from another process) kept using it beyond the busy "
                     "timeout; the WAL keeps growing until it lets go")));
  } else {
    RecordFailure(ErrorStatus(writer_, path_, rc, "checkpointing the WAL at its size limit in a commit"));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.blocking_checkpoints;
    if (!complete) ++stats_.blocking_incomplete;
  }
  progress_cv_.notify_all();
  return complete;
}

void WalCheckpointer::Run() {
  // Frames committed before Start() (schema set-up, say) are checkpointed on the first tick.
  bool dirty = true;
  uint64_t commits_seen = 0;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    const bool woken = wake_cv_.wait_for(lock, options_.interval, [this] { return stopping_ || wake_requested_; });
    if (stopping_) return;
    wake_requested_ = false;
    lock.unlock();
    // Cleared before checkpointing, so that a commit during the checkpoint that still finds
    // the WAL over the threshold asks for another round.
    wake_pending_.store(false);
    const uint64_t commits = commits_.load(std::memory_order_relaxed);
    // On a timer tick, only if something happened since the last complete checkpoint.
    if (woken || dirty || commits != commits_seen) {
      commits_seen = commits;
      dirty = !CheckpointOnce();
    }
    lock.lock();
  }
}

bool WalCheckpointer::CheckpointOnce() {
  if (options_.before_checkpoint) options_.before_checkpoint();
  int log_frames = -1;
  int checkpointed = -1;
  int rc;
  {
    std::lock_guard<std::mutex> lock(checkpoint_mu_);
    rc = sqlite3_wal_checkpoint_v2(connection_->raw(), "main", SQLITE_CHECKPOINT_PASSIVE, &log_frames, &checkpointed);
  }
  switch (rc & 0xff) {
    case SQLITE_OK: {
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++stats_.checkpoints;
        stats_.last_log_frames = log_frames;
        stats_.last_checkpointed_frames = checkpointed;
      }
      const bool complete = log_frames == checkpointed;
      // Partial (a reader still needs older pages) is normal but does not show that a
      // reported problem has gone away, so only a complete checkpoint counts as recovery.
      if (complete) {
        RecordSuccess();
      } else {
        progress_cv_.notify_all();
      }
      return complete;
    }
    case SQLITE_BUSY:
      // Another connection is checkpointing: it does the work; the next tick looks again.
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++stats_.busy;
      }
      progress_cv_.notify_all();
      return false;
    case SQLITE_INTERRUPT:
      // Only the destructor interrupts us.
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++stats_.interrupted;
      }
      progress_cv_.notify_all();
      return false;
    default:
      RecordFailure(connection_->Error(rc, "checkpointing the WAL in the background"));
      return false;
  }
}

WalCheckpointer::Stats WalCheckpointer::StatsLocked() const {
  Stats s = stats_;
  s.commits = commits_.load(std::memory_order_relaxed);
  s.wal_pages = wal_pages_.load(std::memory_order_relaxed);
  s.max_wal_pages = max_wal_pages_.load(std::memory_order_relaxed);
  return s;
}

WalCheckpointer::Stats WalCheckpointer::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return StatsLocked();
}

absl::Status WalCheckpointer::last_error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_error_;
}

bool WalCheckpointer::WaitFor(absl::FunctionRef<bool(const Stats&)> done, std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock<std::mutex> lock(mu_);
  while (!done(StatsLocked())) {
    if (progress_cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
      return done(StatsLocked());
    }
  }
  return true;
}

void WalCheckpointer::RecordSuccess() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    failing_ = false;  // a later failure is news again
  }
  progress_cv_.notify_all();
}

void WalCheckpointer::RecordFailure(absl::Status error) {
  bool report;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.errors;
    // A failure that repeats every tick (a full disk, say) is reported once, not every
    // second; a different one, or the same after a success, is reported again.
    report = !failing_ || error.message() != last_error_.message();
    failing_ = true;
    last_error_ = error;
  }
  progress_cv_.notify_all();
  if (!report) return;
  // Outside mu_: the callback may well call stats().
  if (options_.on_error) {
    options_.on_error(error);
  } else {
    std::fprintf(stderr, "adcsc: WAL checkpointer: %s\n", error.ToString().c_str());
  }
}

}  // namespace adcsc::store::sqlite
