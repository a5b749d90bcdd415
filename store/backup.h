// Online backup of a node's request store, and putting a backup back on a node whose disk was
// lost (`adcsc ctl backup`, `adcsc node restore`). A backup is `VACUUM INTO`: one read
// transaction, so it is consistent while the node keeps serving (WAL readers never block the
// writer), compact, and a plain SQLite database file. A restore checks the file (integrity,
// schema, the node it belongs to), copies it into place with mode 0600 and, in a cluster,
// marks it to be completed from the peers: the node then copies their records and numbers its
// own next writes after every one they hold, so nothing written after the backup is lost and
// no sequence number is used twice. No sockets; callers hold no store open on `db`.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "absl/status/statusor.h"
#include "store/request_store.h"

namespace adcsc::store {

struct BackupInfo {
  std::string node_id;  // the node whose store it is
  int schema_version = 0;
  int64_t records = 0;
  VersionVector version_vector;
  int64_t bytes = 0;
};

// Writes a consistent copy of the store `db` to `out` (written beside it as `out`.partial,
// synced, then renamed; mode 0600). Refuses an `out` that exists. Safe while a node serves
// from `db`.
absl::StatusOr<BackupInfo> BackupStore(const std::filesystem::path& db, const std::filesystem::path& out);

// Reads what a backup holds, after PRAGMA integrity_check; an error names the file and what
// is wrong with it (not SQLite, not a store, damaged, a newer schema than this build reads).
absl::StatusOr<BackupInfo> InspectBackup(const std::filesystem::path& file);

struct RestoreOptions {
  std::string node_id;               // the node it is restored for: must be the backup's
  bool complete_from_peers = false;  // a cluster node: mark the store to be completed from its peers
  bool replace = false;              // move an existing store aside (store.db.replaced-<ms>) instead of refusing
  int64_t now_ms = 0;                // for the aside name
};

// Puts the backup `from` in place as the store `db`. Refuses when `db` exists (a node may be
// running on it) unless `replace`, and a backup of another node.
absl::StatusOr<BackupInfo> RestoreStore(const std::filesystem::path& from, const std::filesystem::path& db,
                                        const RestoreOptions& options);

}  // namespace adcsc::store
