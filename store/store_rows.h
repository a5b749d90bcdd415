// How the request store keeps records, the mutation log and version vectors in SQLite: the
// SQL it runs and the row helpers that the local writes (request_store.cc), the mutation log
// (mutation_log.cc) and snapshots (snapshot.cc) share. Internal to store/; every function runs
// on the connection it is given, inside the caller's transaction when it writes.
#pragma once

#include <algorithm>
#include <filesystem>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "store/hlc.h"
#include "store/record.h"
#include "store/request_store.h"
#include "store/sqlite_db.h"
#include "store/wal_checkpointer.h"

namespace adcsc::store::rows {

using adcsc::store::v1::Mutation;
using sqlite::CachedStatement;
using sqlite::Connection;
using sqlite::Statement;

// Column order shared by every SELECT of a request row and by RowToRecord().
constexpr char kRecordColumns[] =
    "ca_config, request_id, status, disposition, message, certificate_der, csr_sha256, "
    "template_name, requester, node_id, created_ms, updated_ms, hlc, hresult, admin_hlc";

// The SQL of the statements run on every request. Built once: connections cache statements
// by their text (Connection::PrepareCached), and rebuilding the text per call would cost an
// allocation and a copy each time for nothing.
const std::string& SelectRecordSql();

const std::string& UpsertRecordSql();

const std::string& SelectByDedupeKeySql();

constexpr char kSelectLocalSequenceSql[] = "SELECT sequence FROM version_vector WHERE origin = ?1";
constexpr char kAppendMutationSql[] =
    "INSERT INTO mutations (origin, sequence, hlc, record, ca_config, request_id) "
    "VALUES (?1, ?2, ?3, x'', ?4, ?5)";
constexpr char kAdvanceVersionVectorSql[] =
    "INSERT INTO version_vector (origin, sequence) VALUES (?1, ?2) "
    "ON CONFLICT (origin) DO UPDATE SET sequence = excluded.sequence";
// A mutation logged by reference (schema 2) is sent as its record stands now; one logged by
// an older version carries its own copy in `record`.
const std::string& MutationsSinceSql();
constexpr char kVersionVectorSql[] = "SELECT origin, sequence FROM version_vector";
constexpr char kMutationHeldSql[] = "SELECT 1 FROM mutations WHERE origin = ?1 AND sequence = ?2";
constexpr char kLoggedAfterSql[] =
    "SELECT sequence FROM mutations WHERE origin = ?1 AND sequence > ?2 ORDER BY sequence";
constexpr char kLoggedOriginsSql[] = "SELECT DISTINCT origin FROM mutations ORDER BY origin";
// The meta rows that say which node a store belongs to and when it was made.
constexpr char kMetaNodeId[] = "node_id";
constexpr char kMetaCreatedMs[] = "created_ms";
// The mark of a store being rebuilt from its peers (RequestStore::MarkRebuildFromPeers).
constexpr char kMarkRebuildSql[] =
    "INSERT INTO meta (key, value) VALUES ('rebuild_from_peers', '1') ON CONFLICT (key) DO NOTHING";
constexpr char kClearRebuildSql[] = "DELETE FROM meta WHERE key = 'rebuild_from_peers'";

// The record in kRecordColumns order, starting at column `first`.
RequestRecord RowToRecord(const Statement& row, int first = 0);

absl::StatusOr<std::optional<RequestRecord>> ReadRecord(Connection& c, const std::string& ca_config,
                                                        uint32_t request_id);

absl::Status WriteRecord(Connection& c, const RequestRecord& r);

// Appends a change of `record` (stored already, in this transaction) to the mutation log as
// the next sequence of `origin`, and advances the version vector in the same transaction, so
// the log and the vector never disagree. The log holds the record's key, not a copy.
absl::StatusOr<uint64_t> AppendMutation(Connection& c, const std::string& origin, const RequestRecord& record);

// Highest contiguous sequence recorded for `origin` in the version vector (0 if none).
absl::StatusOr<uint64_t> ReadVectorEntry(Connection& c, const std::string& origin);

absl::Status WriteVectorEntry(Connection& c, const std::string& origin, uint64_t sequence);

// Moves the vector entry of `origin` from `from` over the run of logged sequences that
// follows it without a gap, so mutations that arrived ahead of a gap count once it fills.
absl::Status AdvanceContiguous(Connection& c, const std::string& origin, uint64_t from);

// Merges `incoming` into the stored record with the same key; writes only on change.
// Returns the stored record when it changed, nullopt when it did not.
absl::StatusOr<std::optional<RequestRecord>> MergeIntoStore(Connection& c, const RequestRecord& incoming);

// Reads the logged mutations of `origin` after `after` (oldest first, at most `limit`) on
// `c` and appends them to `out`.
absl::Status ReadMutationsSince(Connection& c, const std::filesystem::path& path, const std::string& origin,
                                uint64_t after, size_t limit, std::vector<Mutation>& out);

// Removes the submit intent for `key`, if any (submit_intents.cc).
absl::Status DeleteSubmitIntent(Connection& c, const SubmitKey& key);

}  // namespace adcsc::store::rows

namespace adcsc::store {

// The state behind a RequestStore: its options and clock, the hybrid logical clock, the
// group-commit writer, the read connections and the WAL checkpointer.
class RequestStore::Impl {
 public:
  Impl(StoreOptions options, const Clock* clock, std::unique_ptr<sqlite::Connection> writer,
       std::unique_ptr<sqlite::WalCheckpointer> checkpointer)
      : options_(std::move(options)),
        clock_(clock),
        hlc_(clock),
        writer_(std::move(writer)),
        readers_(options_.path, sqlite::ConnectionSettings{.writer = false, .fsync = options_.fsync}),
        checkpointer_(std::move(checkpointer)) {}

  const StoreOptions& options() const { return options_; }
  const Clock& clock() const { return *clock_; }
  HybridLogicalClock& hlc() { return hlc_; }
  // Runs `fn` in the next group commit and remembers whether the disk took it: a write that
  // failed for want of space or an I/O error is kept as last_write_error() until a later
  // write commits (RequestStore::Check reports it).
  absl::Status Write(sqlite::GroupCommitWriter::WriteFn fn) {
    absl::Status s = writer_.Write(fn);
    NoteWrite(s);
    return s;
  }
  absl::Status last_write_error() const {
    std::lock_guard lock(write_error_mu_);
    return last_write_error_;
  }
  absl::StatusOr<sqlite::ReaderPool::Lease> Reader() { return readers_.Acquire(); }

 private:
  // A failure of the disk or the file, as opposed to a refused update (InvalidArgument) or a
  // lock held elsewhere (Unavailable): what makes a node unfit to take submits.
  static bool IsDiskFailure(const absl::Status& s) {
    switch (s.code()) {
      case absl::StatusCode::kResourceExhausted:
      case absl::StatusCode::kPermissionDenied:
      case absl::StatusCode::kDataLoss:
      case absl::StatusCode::kInternal:
      case absl::StatusCode::kAborted:
      case absl::StatusCode::kFailedPrecondition:
        return true;
      default:
        return false;
    }
  }
  void NoteWrite(const absl::Status& s) {
    if (!s.ok() && !IsDiskFailure(s)) return;
    std::lock_guard lock(write_error_mu_);
    last_write_error_ = s;
  }

  const StoreOptions options_;
  const Clock* const clock_;
  mutable std::mutex write_error_mu_;
  absl::Status last_write_error_;  // guarded by write_error_mu_
  HybridLogicalClock hlc_;
  // Declared before readers_ so the read connections close first and the writer's close
  // can checkpoint and remove the WAL.
  sqlite::GroupCommitWriter writer_;
  sqlite::ReaderPool readers_;
  // Declared last so it is destroyed first: its hook on the writer connection and its own
  // connection must be gone before the writer closes (as the last connection, which is what
  // lets that close checkpoint and remove the WAL).
  std::unique_ptr<sqlite::WalCheckpointer> checkpointer_;
};

}  // namespace adcsc::store
