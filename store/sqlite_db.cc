#include "store/sqlite_db.h"

#include <algorithm>
#include <cassert>
#include <limits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "store/fault_vfs.h"

namespace adcsc::store::sqlite {
namespace {

// Longest SQL excerpt quoted in an error message; migration scripts are long and the first
// line is enough to recognise the statement.
constexpr size_t kMaxSqlInMessage = 120;

// Debian 12's abseil has its own string_view type (ABSL_OPTION_USE_STD_STRING_VIEW is 0),
// so std::string_view must be converted before it meets absl::StrCat and friends.
absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Savepoint that brackets each function of a group-commit batch.
constexpr std::string_view kBatchSavepoint = "adcsc_batch_item";

std::string SqlExcerpt(std::string_view sql) {
  const absl::string_view trimmed = absl::StripAsciiWhitespace(Sv(sql));
  if (trimmed.size() <= kMaxSqlInMessage) return std::string(trimmed);
  return absl::StrCat(trimmed.substr(0, kMaxSqlInMessage), "...");
}

// What an operator should look at for a given primary result code.
std::string_view HintFor(int primary_rc) {
  switch (primary_rc) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return "another process holds a lock on the database; check that only one adcsc node "
             "uses this data directory";
    case SQLITE_CANTOPEN:
      return "check that the data directory exists and that the adcsc service user can read "
             "and write both the directory and the database file";
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_AUTH:
      return "check the owner and mode of the database file and its directory (the file should "
             "be mode 0600, owned by the adcsc service user) and that the filesystem is not "
             "mounted read-only";
    case SQLITE_FULL:
      return "check free space on the filesystem holding the data directory";
    case SQLITE_IOERR:
      return "check the disk and filesystem for I/O errors (dmesg) and free space";
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return "the file is damaged or is not an adcsc store; see docs/operations.md \"A damaged store\" "
             "(do not start a cluster node on an empty store in its place: its new writes would not replicate)";
    case SQLITE_NOMEM:
      return "the process ran out of memory; check the service's memory limits";
    case SQLITE_CONSTRAINT:
      return "a write broke a schema constraint, which is a bug in adcsc; report it with this "
             "message";
    case SQLITE_PROTOCOL:
      return "WAL locking failed; check that the data directory is on a local filesystem, not "
             "NFS or SMB";
    default:
      return "see https://www.sqlite.org/rescode.html for the code";
  }
}

absl::StatusCode CodeFor(int primary_rc) {
  switch (primary_rc) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_PROTOCOL:
      return absl::StatusCode::kUnavailable;
    case SQLITE_CANTOPEN:
      return absl::StatusCode::kFailedPrecondition;
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_AUTH:
      return absl::StatusCode::kPermissionDenied;
    case SQLITE_FULL:
    case SQLITE_NOMEM:
      return absl::StatusCode::kResourceExhausted;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::StatusCode::kDataLoss;
    default:
      return absl::StatusCode::kInternal;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Statement

Statement::~Statement() { sqlite3_finalize(stmt_); }

Statement::Statement(Statement&& other) noexcept
    : connection_(std::exchange(other.connection_, nullptr)),
      stmt_(std::exchange(other.stmt_, nullptr)),
      bind_status_(std::move(other.bind_status_)) {}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(stmt_);
    connection_ = std::exchange(other.connection_, nullptr);
    stmt_ = std::exchange(other.stmt_, nullptr);
    bind_status_ = std::move(other.bind_status_);
  }
  return *this;
}

void Statement::NoteBindResult(int rc, int index) {
  if (rc != SQLITE_OK && bind_status_.ok()) {
    bind_status_ = connection_->Error(rc, absl::StrCat("binding parameter ", index, " of ", SqlExcerpt(sql())));
  }
}

Statement& Statement::BindInt64(int index, int64_t value) {
  NoteBindResult(sqlite3_bind_int64(stmt_, index, value), index);
  return *this;
}

Statement& Statement::BindText(int index, std::string_view value) {
  // A null data pointer would bind SQL NULL; an empty string_view may carry one.
  const char* data = value.data() != nullptr ? value.data() : "";
  NoteBindResult(sqlite3_bind_text64(stmt_, index, data, value.size(), SQLITE_TRANSIENT, SQLITE_UTF8), index);
  return *this;
}

Statement& Statement::BindBlob(int index, std::string_view value) {
  const char* data = value.data() != nullptr ? value.data() : "";
  NoteBindResult(sqlite3_bind_blob64(stmt_, index, data, value.size(), SQLITE_TRANSIENT), index);
  return *this;
}

Statement& Statement::BindTextUnowned(int index, std::string_view value) {
  const char* data = value.data() != nullptr ? value.data() : "";
  NoteBindResult(sqlite3_bind_text64(stmt_, index, data, value.size(), SQLITE_STATIC, SQLITE_UTF8), index);
  return *this;
}

Statement& Statement::BindBlobUnowned(int index, std::string_view value) {
  const char* data = value.data() != nullptr ? value.data() : "";
  NoteBindResult(sqlite3_bind_blob64(stmt_, index, data, value.size(), SQLITE_STATIC), index);
  return *this;
}

Statement& Statement::BindNull(int index) {
  NoteBindResult(sqlite3_bind_null(stmt_, index), index);
  return *this;
}

absl::StatusOr<bool> Statement::Step() {
  if (!bind_status_.ok()) return bind_status_;
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return connection_->Error(rc, absl::StrCat("running ", SqlExcerpt(sql())));
}

absl::Status Statement::Run() {
  absl::StatusOr<bool> row = Step();
  if (!row.ok()) return row.status();
  // A statement that yields rows here is a caller bug; drain it so it does not hold a
  // read transaction open.
  while (*row) {
    row = Step();
    if (!row.ok()) return row.status();
  }
  return absl::OkStatus();
}

void Statement::Reset() {
  // sqlite3_reset repeats the last step's error, which Step() already reported.
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  bind_status_ = absl::OkStatus();
}

int64_t Statement::ColumnInt64(int column) const { return sqlite3_column_int64(stmt_, column); }

std::string Statement::ColumnText(int column) const {
  // Call order matters: the pointer first, then the byte count for that representation.
  const unsigned char* text = sqlite3_column_text(stmt_, column);
  const int size = sqlite3_column_bytes(stmt_, column);
  if (text == nullptr) return std::string();
  return std::string(reinterpret_cast<const char*>(text), static_cast<size_t>(size));
}

std::string Statement::ColumnBlob(int column) const {
  const void* blob = sqlite3_column_blob(stmt_, column);
  const int size = sqlite3_column_bytes(stmt_, column);
  if (blob == nullptr) return std::string();
  return std::string(static_cast<const char*>(blob), static_cast<size_t>(size));
}

bool Statement::ColumnIsNull(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }

std::string_view Statement::sql() const {
  const char* text = stmt_ != nullptr ? sqlite3_sql(stmt_) : nullptr;
  return text != nullptr ? std::string_view(text) : std::string_view();
}

// ---------------------------------------------------------------------------------------------
// CachedStatement

CachedStatement::CachedStatement(Connection* connection, Statement* statement, bool* in_use)
    : connection_(connection), statement_(statement), in_use_(in_use) {
  *in_use_ = true;
  ++connection_->lent_;
}

CachedStatement::CachedStatement(Connection* connection, std::unique_ptr<Statement> one_off)
    : connection_(connection), statement_(one_off.get()), in_use_(nullptr), one_off_(std::move(one_off)) {
  ++connection_->lent_;
}

CachedStatement::CachedStatement(CachedStatement&& other) noexcept
    : connection_(std::exchange(other.connection_, nullptr)),
      statement_(std::exchange(other.statement_, nullptr)),
      in_use_(std::exchange(other.in_use_, nullptr)),
      one_off_(std::move(other.one_off_)) {}

CachedStatement::~CachedStatement() {
  if (connection_ == nullptr) return;  // moved from
  --connection_->lent_;
  if (in_use_ == nullptr) return;  // a one-off: one_off_ finalizes it
  // The reset is what makes reuse safe: it rewinds a statement left mid-step and ends the
  // read transaction it holds, and clears bindings so none leak into the next borrower.
  statement_->Reset();
  *in_use_ = false;
}

// ---------------------------------------------------------------------------------------------
// Connection

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(const std::filesystem::path& path, int flags) {
  if (sqlite3_threadsafe() == 0) {
    return absl::FailedPreconditionError(
        "the linked SQLite library was built without thread support (SQLITE_THREADSAFE=0); "
        "adcsc needs the distribution's libsqlite3");
  }
  // Every database goes through the slow-disk shim; with no fault set it only forwards.
  if (absl::Status registered = RegisterFaultVfs(); !registered.ok()) return registered;
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, kFaultVfsName);
  if (db == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("sqlite: cannot allocate a connection for ", path.string()));
  }
  // Owned from here on, so the handle is closed on every return path.
  std::unique_ptr<Connection> connection(new Connection(db, path));
  if (rc != SQLITE_OK) return connection->Error(rc, "opening the database");
  sqlite3_extended_result_codes(db, 1);
  if ((flags & SQLITE_OPEN_READWRITE) != 0 && sqlite3_db_readonly(db, "main") == 1) {
    return connection->Error(SQLITE_READONLY, "opening the database for writing");
  }
  return connection;
}

absl::StatusOr<std::unique_ptr<Connection>> Connection::OpenConfigured(const std::filesystem::path& path, int flags,
                                                                       const ConnectionSettings& settings) {
  absl::StatusOr<std::unique_ptr<Connection>> opened = Open(path, flags);
  if (!opened.ok()) return opened.status();
  Connection& c = **opened;

  const int busy_ms =
      static_cast<int>(std::clamp<int64_t>(settings.busy_timeout.count(), 0, std::numeric_limits<int>::max()));
  if (const int rc = sqlite3_busy_timeout(c.db_, busy_ms); rc != SQLITE_OK) {
    return c.Error(rc, "setting busy_timeout");
  }
  if (settings.writer) {
    // WAL: readers do not block the writer nor each other, and a commit is one append +
    // one fsync of the WAL. The mode is stored in the file, so readers inherit it.
    absl::StatusOr<Statement> wal = c.Prepare("PRAGMA journal_mode=WAL");
    if (!wal.ok()) return wal.status();
    absl::StatusOr<bool> row = wal->Step();
    if (!row.ok()) return row.status();
    const std::string mode = *row ? absl::AsciiStrToLower(wal->ColumnText(0)) : "";
    if (mode != "wal") {
      return absl::FailedPreconditionError(
          absl::StrCat("sqlite: ", path.string(), ": could not switch to WAL journal mode (got '", mode,
                       "'); check that the data directory is on a local filesystem that supports shared "
                       "memory (not NFS or SMB)"));
    }
    absl::Status sync = c.Exec(settings.fsync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=OFF");
    if (!sync.ok()) return sync;
  }
  if (absl::Status s = c.Exec("PRAGMA foreign_keys=ON"); !s.ok()) return s;
  if (!settings.writer) {
    // All writes go through the group-commit writer; a write here would be a bug.
    if (absl::Status s = c.Exec("PRAGMA query_only=ON"); !s.ok()) return s;
  }
  return opened;
}

Connection::~Connection() {
  // A handle still out would reset a finalized statement when it is destroyed.
  assert(lent_ == 0 && "a CachedStatement outlived its Connection");
  // Finalize first so the close really closes (sqlite3_close_v2 would otherwise leave a
  // zombie connection, holding the file and its locks, until the last statement went).
  cache_.clear();
  sqlite3_close_v2(db_);
}

absl::Status Connection::Exec(std::string_view sql) {
  const std::string owned(sql);  // sqlite3_exec wants a NUL-terminated string
  const int rc = sqlite3_exec(db_, owned.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return Error(rc, absl::StrCat("running ", SqlExcerpt(sql)));
  return absl::OkStatus();
}

absl::StatusOr<Statement> Connection::Prepare(std::string_view sql) { return PrepareWithFlags(sql, 0); }

absl::StatusOr<CachedStatement> Connection::PrepareCached(std::string_view sql) {
  auto it = cache_.find(sql);
  if (it != cache_.end() && !it->second.in_use) {
    return CachedStatement(this, &it->second.statement, &it->second.in_use);
  }
  if (it == cache_.end() && cache_.size() < kMaxCachedStatements) {
    // PERSISTENT: the statement lives as long as the connection, so SQLite should not
    // take its memory from the lookaside pool meant for short-lived allocations.
    absl::StatusOr<Statement> prepared = PrepareWithFlags(sql, SQLITE_PREPARE_PERSISTENT);
    if (!prepared.ok()) return prepared.status();
    it = cache_.try_emplace(std::string(sql), CacheEntry{.statement = *std::move(prepared)}).first;
    return CachedStatement(this, &it->second.statement, &it->second.in_use);
  }
  // Lent out already (a nested use on this connection) or the cache is full: the borrower
  // gets its own statement rather than one whose state another borrower depends on.
  absl::StatusOr<Statement> prepared = PrepareWithFlags(sql, 0);
  if (!prepared.ok()) return prepared.status();
  return CachedStatement(this, std::make_unique<Statement>(*std::move(prepared)));
}

absl::StatusOr<Statement> Connection::PrepareWithFlags(std::string_view sql, unsigned int flags) {
  sqlite3_stmt* stmt = nullptr;
  const char* tail = nullptr;
  const int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), flags, &stmt, &tail);
  Statement statement(this, stmt);  // finalizes on every return path
  if (rc != SQLITE_OK) return Error(rc, absl::StrCat("preparing ", SqlExcerpt(sql)));
  if (stmt == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("sqlite: ", path_.string(), ": no SQL statement in '", SqlExcerpt(sql), "'"));
  }
  const size_t consumed = static_cast<size_t>(tail - sql.data());
  if (!absl::StripAsciiWhitespace(Sv(sql.substr(consumed))).empty()) {
    return absl::InvalidArgumentError(absl::StrCat("sqlite: ", path_.string(),
                                                   ": Prepare takes one statement; trailing SQL after '",
                                                   SqlExcerpt(sql.substr(0, consumed)), "'"));
  }
  return statement;
}

absl::StatusOr<int64_t> Connection::QueryInt64(std::string_view sql) {
  absl::StatusOr<Statement> statement = Prepare(sql);
  if (!statement.ok()) return statement.status();
  absl::StatusOr<bool> row = statement->Step();
  if (!row.ok()) return row.status();
  if (!*row) {
    return absl::InternalError(absl::StrCat("sqlite: ", path_.string(), ": no row from ", SqlExcerpt(sql)));
  }
  return statement->ColumnInt64(0);
}

absl::Status Connection::Error(int rc, std::string_view what) const { return ErrorStatus(db_, path_, rc, what); }

absl::Status ErrorStatus(sqlite3* db, const std::filesystem::path& path, int rc, std::string_view what) {
  // The connection's message describes its most recent failure; if that is not the one we
  // are reporting (e.g. a check we made ourselves), fall back to the generic text.
  const bool connection_knows = db != nullptr && sqlite3_extended_errcode(db) == rc;
  const char* message = connection_knows ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  const int primary = rc & 0xff;
  return absl::Status(CodeFor(primary),
                      absl::StrCat("sqlite error on ", path.string(), " while ", Sv(what), ": ", message, " (",
                                   sqlite3_errstr(rc), ", code ", rc, "); ", Sv(HintFor(primary))));
}

// ---------------------------------------------------------------------------------------------
// Transaction

absl::StatusOr<Transaction> Transaction::Begin(Connection& connection) {
  // IMMEDIATE takes the write lock now, so a conflict shows up here (after busy_timeout)
  // rather than as an unretryable SQLITE_BUSY in the middle of the work.
  if (absl::Status s = connection.Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
  return Transaction(&connection);
}

Transaction::Transaction(Transaction&& other) noexcept : connection_(std::exchange(other.connection_, nullptr)) {}

Transaction::~Transaction() {
  if (connection_ != nullptr && !connection_->autocommit()) {
    // Best effort: the caller is already returning the error that got us here.
    connection_->Exec("ROLLBACK").IgnoreError();
  }
}

absl::Status Transaction::Commit() {
  Connection* connection = std::exchange(connection_, nullptr);
  if (connection == nullptr) return absl::FailedPreconditionError("transaction already finished");
  absl::Status s = connection->Exec("COMMIT");
  if (!s.ok() && !connection->autocommit()) connection->Exec("ROLLBACK").IgnoreError();
  return s;
}

// ---------------------------------------------------------------------------------------------
// GroupCommitWriter

GroupCommitWriter::GroupCommitWriter(std::unique_ptr<Connection> connection, size_t max_batch)
    : connection_(std::move(connection)), max_batch_(std::max<size_t>(max_batch, 1)) {}

absl::Status GroupCommitWriter::Write(WriteFn fn) {
  Pending pending(fn);
  std::unique_lock<std::mutex> lock(mu_);
  queue_.push_back(&pending);
  while (!pending.done) {
    if (leader_active_) {
      cv_.wait(lock);
      continue;
    }
    // Become the leader: take what is queued (possibly not including ourselves, if more
    // than max_batch_ are ahead of us; then we lead again on the next turn).
    leader_active_ = true;
    std::vector<Pending*> batch;
    while (!queue_.empty() && batch.size() < max_batch_) {
      batch.push_back(queue_.front());
      queue_.pop_front();
    }
    lock.unlock();
    RunBatch(batch);
    lock.lock();
    for (Pending* p : batch) p->done = true;
    ++stats_.batches;
    stats_.writes += batch.size();
    stats_.largest_batch = std::max<uint64_t>(stats_.largest_batch, batch.size());
    leader_active_ = false;
    cv_.notify_all();
  }
  return pending.result;
}

void GroupCommitWriter::RunBatch(const std::vector<Pending*>& batch) {
  Connection& c = *connection_;
  // Gives every function that has not already failed on its own the batch's error: none
  // of their changes survive.
  auto fail_batch = [&batch](const absl::Status& error) {
    for (Pending* p : batch) {
      if (p->result.ok()) p->result = error;
    }
  };

  if (absl::Status s = c.Exec("BEGIN IMMEDIATE"); !s.ok()) {
    fail_batch(s);
    return;
  }
  const std::string savepoint = absl::StrCat("SAVEPOINT ", Sv(kBatchSavepoint));
  const std::string release = absl::StrCat("RELEASE ", Sv(kBatchSavepoint));
  const std::string rollback_to = absl::StrCat("ROLLBACK TO ", Sv(kBatchSavepoint));

  for (Pending* p : batch) {
    if (absl::Status s = c.Exec(savepoint); !s.ok()) {
      p->result = s;
      continue;
    }
    absl::Status result = p->fn(c);
    if (c.autocommit()) {
      // SQLite rolled the whole transaction back by itself (it does on some I/O and
      // out-of-memory errors): everything before this function is gone too.
      fail_batch(result.ok() ? absl::AbortedError(absl::StrCat("sqlite: ", c.path().string(),
                                                               ": the batch transaction was rolled back by SQLite"))
                             : result);
      return;
    }
    if (result.ok()) {
      result = c.Exec(release);
    } else {
      absl::Status undo = c.Exec(rollback_to);
      if (undo.ok()) undo = c.Exec(release);
      if (!undo.ok()) {
        // Cannot isolate this function's changes, so keep none of the batch.
        p->result = result;
        if (!c.autocommit()) c.Exec("ROLLBACK").IgnoreError();
        fail_batch(undo);
        return;
      }
    }
    p->result = result;
  }

  if (absl::Status s = c.Exec("COMMIT"); !s.ok()) {
    if (!c.autocommit()) c.Exec("ROLLBACK").IgnoreError();
    fail_batch(s);
  }
}

GroupCommitWriter::Stats GroupCommitWriter::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

size_t GroupCommitWriter::queued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

// ---------------------------------------------------------------------------------------------
// ReaderPool

ReaderPool::Lease::~Lease() {
  if (connection_ != nullptr) pool_->Release(std::move(connection_));
}

ReaderPool::ReaderPool(std::filesystem::path path, ConnectionSettings settings, size_t max_connections)
    : path_(std::move(path)), settings_(settings), max_connections_(std::max<size_t>(max_connections, 1)) {}

absl::StatusOr<ReaderPool::Lease> ReaderPool::Acquire() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (!idle_.empty()) {
      std::unique_ptr<Connection> connection = std::move(idle_.back());
      idle_.pop_back();
      return Lease(this, std::move(connection));
    }
    if (open_ < max_connections_) {
      ++open_;
      lock.unlock();  // opening touches the disk; do not hold up other readers
      // READWRITE (not READONLY) because a WAL reader must be able to update the -shm
      // index; query_only in the settings keeps it from writing rows.
      absl::StatusOr<std::unique_ptr<Connection>> opened =
          Connection::OpenConfigured(path_, SQLITE_OPEN_READWRITE, settings_);
      if (!opened.ok()) {
        lock.lock();
        --open_;
        cv_.notify_one();
        return opened.status();
      }
      return Lease(this, std::move(*opened));
    }
    cv_.wait(lock);
  }
}

void ReaderPool::Release(std::unique_ptr<Connection> connection) {
  std::lock_guard<std::mutex> lock(mu_);
  idle_.push_back(std::move(connection));
  cv_.notify_one();
}

}  // namespace adcsc::store::sqlite
