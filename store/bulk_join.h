// Bulk join, the receiving side: a node whose store holds nothing takes a peer's whole store in
// one go instead of merging snapshot pages record by record. The peer reads everything in one
// read transaction (RequestStore::ReadForJoin) and streams it in key order; JoinWriter writes
// it straight into a fresh database file beside the store, "<store>.joining", with no journal,
// no fsync per commit and no secondary index (each is built once, after the last record), then
// syncs the file and renames it into place before the store is opened. A join cut short (the
// node killed, the peer gone) leaves only that file, which the next attempt removes.
//
// Why no record is logged as this node's own mutation, as a merged snapshot logs each
// (store/snapshot.cc, SnapshotMerger): snapshot pages are read in many transactions after the
// vector, so a page can carry mutations no vector claims, and if their origin is gone the
// receiver may be the only node that has them. A bulk join's records, vector and held
// mutations come from one transaction, so the records carry exactly the mutations the vector
// claims plus those the sender holds beyond it. The joined store adopts the vector and logs the
// held mutations under their own origins and sequences, as the sender holds them: anything a
// peer lacks it finds in that log or, for what the vector claims without a log behind it, in a
// snapshot of this node (the replicator's "stalled" rule), exactly as it would from the sender.
//
// Thread-safety: a JoinWriter is used by one thread at a time. The file functions assume no
// RequestStore has the store open (a node holds its data directory's lock while it joins).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "store/request_store.h"
#include "store/sqlite_db.h"

namespace adcsc::store {

// "<store>.joining": where a bulk join builds the store it will put in place.
std::filesystem::path JoinFilePath(const std::filesystem::path& store_path);

// Removes what an interrupted join left for `store_path` (the .joining file and any journal of
// it). OK when there is nothing.
absl::Status DiscardJoinFile(const std::filesystem::path& store_path);

// True when the store at `options.path` does not exist, or holds nothing
// (RequestStore::HoldsNothing): a bulk join may replace it. Opens and closes the store when
// the file exists; its errors (another node's store, a damaged file) are returned.
absl::StatusOr<bool> StoreIsEmpty(const StoreOptions& options);

// Removes the store file and its -wal and -shm. For a store StoreIsEmpty() said holds nothing,
// before a join takes its place; never for one that holds anything.
absl::Status RemoveEmptyStore(const std::filesystem::path& store_path);

struct JoinWriterOptions {
  std::filesystem::path store_path;  // the store the joined file becomes
  std::string node_id;               // this node: the store is claimed for it
  int64_t now_ms = 0;                // the store's creation time
  // fsync the file (and the directory after the rename). Tests may turn this off.
  bool fsync = true;
  // SQLite's page cache while writing, and what an index sort keeps in memory.
  int64_t cache_bytes = 8 << 20;
  // Threads SQLite may sort an index with (PRAGMA threads), besides the writing one. On two
  // cores none pays: the writing thread is busy reading the table for the sort.
  int sort_threads = 0;
};

class JoinWriter {
 public:
  // Removes what an earlier attempt left, creates the .joining file (mode 0600) with the
  // current schema, claimed for options.node_id, without its secondary indexes.
  static absl::StatusOr<std::unique_ptr<JoinWriter>> Create(const JoinWriterOptions& options);
  // Removes the .joining file unless Install() put it in place.
  ~JoinWriter();
  JoinWriter(const JoinWriter&) = delete;
  JoinWriter& operator=(const JoinWriter&) = delete;

  // A mutation the sender holds beyond its vector, logged under its origin and sequence (one
  // of this node's own origin is skipped: a node is the authority on its own log).
  absl::Status AddHeld(const HeldMutation& held);
  // The next record; keys must be valid and strictly ascending (the sender's key order),
  // otherwise INVALID_ARGUMENT and the join is void.
  absl::Status Add(const RequestRecord& record);
  // After the last record: checks that `header.records` arrived, adopts the vector (this
  // node's own entry too: a node id that held writes before numbers its next one after what
  // the sender holds of it), builds the secondary indexes, and syncs and closes the file.
  absl::Status Finish(const JoinHeader& header);
  // Renames the finished file into place as the store (FAILED_PRECONDITION while a store file
  // is still there: RemoveEmptyStore() first) and syncs the directory.
  absl::Status Install();

  int64_t records() const { return records_; }
  const std::filesystem::path& path() const { return path_; }
  // Where Finish spent its time: building the secondary indexes, and syncing the file.
  double index_seconds() const { return index_seconds_; }
  double sync_seconds() const { return sync_seconds_; }

 private:
  explicit JoinWriter(const JoinWriterOptions& options);

  JoinWriterOptions options_;
  std::filesystem::path path_;
  std::unique_ptr<sqlite::Connection> c_;
  class Writeback;
  std::unique_ptr<Writeback> writeback_;  // with fsync only
  sqlite::Statement insert_record_;
  sqlite::Statement insert_held_;
  std::vector<std::string> index_sql_;  // the secondary indexes, built by Finish
  std::string last_ca_config_;
  uint32_t last_request_id_ = 0;
  int64_t records_ = 0;
  bool finished_ = false;
  bool installed_ = false;
  double index_seconds_ = 0;
  double sync_seconds_ = 0;
};

}  // namespace adcsc::store
