// A thin RAII layer over the SQLite C API for the request store: connections, prepared
// statements, a group-commit writer and a pool of read connections. Errors come back as
// absl::Status naming the database file, SQLite's own text, and what an operator should check.
//
// Thread-safety: a Connection, its statement cache, and every Statement or CachedStatement
// it made are used by one thread at a time; nothing in them locks (connections are opened
// with SQLITE_OPEN_NOMUTEX). GroupCommitWriter and ReaderPool are safe to use from any
// number of threads and are what keeps that rule: the writer connection is touched only by
// the group-commit leader (one at a time, elected under the writer's mutex), and a read
// connection only by the holder of its ReaderPool::Lease (handed over under the pool's
// mutex). Those mutexes also order one thread's use of a connection, cache included, before
// the next thread's.
#pragma once

#include <sqlite3.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace adcsc::store::sqlite {

class Connection;

// A prepared statement. Owns its sqlite3_stmt and finalizes it on destruction; must not
// outlive the Connection that prepared it. Move-only.
//
// Bind* methods use SQLite's 1-based parameter indexes and copy their arguments (but the
// *Unowned ones). A bind
// error is remembered and returned by the next Step()/Run(), so a run of binds needs no
// error check of its own. Column* methods use 0-based indexes and are valid only after
// Step() returned true.
class Statement {
 public:
  Statement() = default;
  ~Statement();
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& BindInt64(int index, int64_t value);
  Statement& BindText(int index, std::string_view value);
  // Binds bytes as a BLOB; an empty value binds a zero-length BLOB, not NULL.
  Statement& BindBlob(int index, std::string_view value);
  Statement& BindNull(int index);
  // As BindText/BindBlob without the copy: `value` must stay unchanged until the statement is
  // stepped to completion and reset (or the parameter bound again). For bulk inserts.
  Statement& BindTextUnowned(int index, std::string_view value);
  Statement& BindBlobUnowned(int index, std::string_view value);

  // Advances to the next row: true when a row is available, false when the statement has
  // finished.
  absl::StatusOr<bool> Step();
  // Steps a statement that returns no rows (INSERT, UPDATE, ...) to completion.
  absl::Status Run();
  // Makes the statement runnable again and clears its bindings. Also ends the implicit
  // read transaction a half-read SELECT holds open.
  void Reset();

  int64_t ColumnInt64(int column) const;
  std::string ColumnText(int column) const;  // NULL reads as ""
  std::string ColumnBlob(int column) const;  // NULL reads as ""
  bool ColumnIsNull(int column) const;

  // The SQL text, for error messages.
  std::string_view sql() const;

 private:
  friend class Connection;
  Statement(Connection* connection, sqlite3_stmt* stmt) : connection_(connection), stmt_(stmt) {}
  void NoteBindResult(int rc, int index);

  Connection* connection_ = nullptr;  // not owned
  sqlite3_stmt* stmt_ = nullptr;      // owned
  absl::Status bind_status_;
};

// A statement lent out by Connection::PrepareCached(). Use it through -> and * like a
// Statement. Destroying the handle resets the statement and clears its bindings, so
// whatever path the borrower left by (an early return mid-iteration, a failed step, a bind
// error) the next borrower starts clean, and a half-read SELECT does not keep its read
// transaction (and with it an old WAL snapshot) open. Move-only. Must not outlive the
// Connection, and the Statement must not be moved out of it (it belongs to the cache).
class CachedStatement {
 public:
  CachedStatement(CachedStatement&& other) noexcept;
  CachedStatement& operator=(CachedStatement&&) = delete;
  CachedStatement(const CachedStatement&) = delete;
  CachedStatement& operator=(const CachedStatement&) = delete;
  ~CachedStatement();

  Statement& operator*() const { return *statement_; }
  Statement* operator->() const { return statement_; }

 private:
  friend class Connection;
  // A statement from the cache; `in_use` is its entry's flag, cleared on release.
  CachedStatement(Connection* connection, Statement* statement, bool* in_use);
  // A statement prepared for this borrower alone, finalized on release.
  CachedStatement(Connection* connection, std::unique_ptr<Statement> one_off);

  Connection* connection_;              // not owned; nullptr once moved from
  Statement* statement_;                // the cache's or one_off_'s
  bool* in_use_;                        // nullptr for a one-off
  std::unique_ptr<Statement> one_off_;  // set only when the cache could not lend
};

// Status for a failed SQLite call on `db` (a connection to `path`): names the file, what we
// were doing, SQLite's message and code, and a hint on what to check. `rc` is the code the
// call returned. For code that holds a raw handle; Connection::Error() is the same.
absl::Status ErrorStatus(sqlite3* db, const std::filesystem::path& path, int rc, std::string_view what);

// Per-connection settings applied right after opening.
struct ConnectionSettings {
  // Writer connections switch the file to WAL (persistent) and set synchronous; readers
  // are made query_only so a bug cannot write outside the group-commit writer.
  bool writer = false;
  // synchronous=FULL (fsync the WAL on every commit) when true; OFF when false (tests).
  bool fsync = true;
  // How long a statement waits for a lock held by another connection before SQLITE_BUSY.
  std::chrono::milliseconds busy_timeout{5000};
};

// An open database connection with a cache of prepared statements. Finalizes the cached
// statements and closes on destruction.
class Connection {
 public:
  // Opens `path` with sqlite3_open_v2 `flags` (SQLITE_OPEN_NOMUTEX is always added), through
  // the "adcsc-fault" VFS (store/fault_vfs.h), which only forwards unless a disk fault is set.
  // When the flags ask for read-write but SQLite could only open the file read-only (file
  // permissions), fails instead of deferring the surprise to the first write.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const std::filesystem::path& path, int flags);
  // Open() followed by the PRAGMAs for `settings` (WAL, synchronous, busy_timeout,
  // foreign_keys, query_only).
  static absl::StatusOr<std::unique_ptr<Connection>> OpenConfigured(const std::filesystem::path& path, int flags,
                                                                    const ConnectionSettings& settings);

  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs one or more SQL statements that return no rows of interest.
  absl::Status Exec(std::string_view sql);
  // Compiles one statement.
  absl::StatusOr<Statement> Prepare(std::string_view sql);
  // Like Prepare(), for statements run over and over: each distinct `sql` text is compiled
  // once per connection (with SQLITE_PREPARE_PERSISTENT) and kept until the connection
  // closes, because parsing costs more than running most of our statements. Meant for
  // fixed SQL text; text built from data would fill the cache with one-use entries. If the
  // statement for `sql` is already lent out on this connection (a nested use), or the
  // cache is full, the handle holds a statement prepared for it alone instead. A failed
  // compile is not cached.
  absl::StatusOr<CachedStatement> PrepareCached(std::string_view sql);
  // Statements held by the cache, lent out or not.
  size_t cached_statements() const { return cache_.size(); }
  // Runs a query expected to return one integer (e.g. "PRAGMA user_version").
  absl::StatusOr<int64_t> QueryInt64(std::string_view sql);

  // Status for a failed SQLite call: names the file, what we were doing, SQLite's message
  // and code, and a hint on what to check. `rc` is the code the call returned.
  absl::Status Error(int rc, std::string_view what) const;

  // True when not inside an explicit transaction.
  bool autocommit() const { return sqlite3_get_autocommit(db_) != 0; }
  const std::filesystem::path& path() const { return path_; }
  sqlite3* raw() { return db_; }
  // The rowid of the last row this connection inserted (sqlite3_last_insert_rowid).
  int64_t LastInsertRowId() const { return sqlite3_last_insert_rowid(db_); }

  // Upper bound on cached statements, so a caller that passes varying SQL text by mistake
  // costs a prepare per call rather than unbounded memory. RequestStore caches six on its
  // writer connection and four on each reader.
  static constexpr size_t kMaxCachedStatements = 64;

 private:
  friend class CachedStatement;

  struct CacheEntry {
    Statement statement;
    bool in_use = false;  // lent to a CachedStatement right now
  };
  // Lets the cache be searched with a string_view, without copying the SQL into a string.
  struct SqlHash {
    using is_transparent = void;
    size_t operator()(std::string_view sql) const { return std::hash<std::string_view>()(sql); }
  };

  Connection(sqlite3* db, std::filesystem::path path) : db_(db), path_(std::move(path)) {}
  absl::StatusOr<Statement> PrepareWithFlags(std::string_view sql, unsigned int flags);

  sqlite3* db_;  // owned
  const std::filesystem::path path_;
  // Keyed by SQL text. std::unordered_map never moves its elements, so a CachedStatement
  // may point into an entry while others are added.
  std::unordered_map<std::string, CacheEntry, SqlHash, std::equal_to<>> cache_;
  int lent_ = 0;  // CachedStatements not yet destroyed; must be 0 at close
};

// A BEGIN IMMEDIATE ... COMMIT scope. Rolls back on destruction unless Commit() succeeded.
// The connection must outlive it.
class Transaction {
 public:
  static absl::StatusOr<Transaction> Begin(Connection& connection);
  ~Transaction();
  Transaction(Transaction&& other) noexcept;
  Transaction& operator=(Transaction&&) = delete;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  absl::Status Commit();

 private:
  explicit Transaction(Connection* connection) : connection_(connection) {}
  Connection* connection_;  // not owned; nullptr once committed or moved from
};

// The only writer to a database. Concurrent callers of Write() are batched: the first to
// arrive while no batch is running becomes the leader, runs every queued function inside
// one BEGIN IMMEDIATE ... COMMIT (each function within its own SAVEPOINT), commits once
// (one fsync for the whole batch) and wakes the others. Callers are never run concurrently
// and always on the leader's thread.
class GroupCommitWriter {
 public:
  // A write step. It runs inside a transaction on the writer connection; it must not
  // BEGIN/COMMIT itself and must not call Write() (that would deadlock). Returning an error
  // rolls back this function's changes only. The connection, and any CachedStatement taken
  // from it, must not be kept past the function's return: the next leader uses it.
  using WriteFn = absl::FunctionRef<absl::Status(Connection&)>;

  // Upper bound on functions per transaction, so one commit cannot grow without limit
  // while callers keep arriving.
  static constexpr size_t kDefaultMaxBatch = 256;

  explicit GroupCommitWriter(std::unique_ptr<Connection> connection, size_t max_batch = kDefaultMaxBatch);
  // Callers must have returned from Write() before destruction.
  ~GroupCommitWriter() = default;
  GroupCommitWriter(const GroupCommitWriter&) = delete;
  GroupCommitWriter& operator=(const GroupCommitWriter&) = delete;

  // Runs `fn` in the next batch and returns once that batch has committed (durably, when
  // the connection syncs). Returns fn's own error if fn failed (its changes rolled back),
  // or the commit error if the batch could not commit (then nothing in it was kept).
  absl::Status Write(WriteFn fn);

  struct Stats {
    uint64_t batches = 0;        // transactions attempted
    uint64_t writes = 0;         // functions run
    uint64_t largest_batch = 0;  // most functions in one transaction
  };
  Stats stats() const;
  // Functions waiting for a leader to pick them up (not counting a batch being run).
  size_t queued() const;

 private:
  struct Pending {
    explicit Pending(WriteFn f) : fn(f) {}
    WriteFn fn;
    absl::Status result;
    bool done = false;
  };
  // Runs one batch on the connection; fills each Pending's result. Called without mu_.
  void RunBatch(const std::vector<Pending*>& batch);

  const std::unique_ptr<Connection> connection_;
  const size_t max_batch_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending*> queue_;  // guarded by mu_; entries owned by their waiting callers
  bool leader_active_ = false;  // guarded by mu_
  Stats stats_;                 // guarded by mu_
};

// Read connections for WAL's concurrent readers. Connections are opened lazily, at most
// `max_connections`; Acquire() waits when all are lent out.
class ReaderPool {
 public:
  // Returns its connection to the pool when destroyed. Move-only. CachedStatements taken
  // from the connection must be destroyed first: the next holder uses the same cache.
  class Lease {
   public:
    Lease(ReaderPool* pool, std::unique_ptr<Connection> connection) : pool_(pool), connection_(std::move(connection)) {}
    Lease(Lease&&) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    Connection& operator*() const { return *connection_; }
    Connection* operator->() const { return connection_.get(); }

   private:
    ReaderPool* pool_;
    std::unique_ptr<Connection> connection_;
  };

  static constexpr size_t kDefaultMaxConnections = 4;

  ReaderPool(std::filesystem::path path, ConnectionSettings settings, size_t max_connections = kDefaultMaxConnections);
  // All leases must have been returned.
  ~ReaderPool() = default;
  ReaderPool(const ReaderPool&) = delete;
  ReaderPool& operator=(const ReaderPool&) = delete;

  absl::StatusOr<Lease> Acquire();

 private:
  void Release(std::unique_ptr<Connection> connection);

  const std::filesystem::path path_;
  const ConnectionSettings settings_;
  const size_t max_connections_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Connection>> idle_;  // guarded by mu_
  size_t open_ = 0;                                // guarded by mu_; idle + lent out
};

}  // namespace adcsc::store::sqlite
