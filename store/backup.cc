#include "store/backup.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <system_error>

#include "absl/strings/str_cat.h"
#include "store/dir_lock.h"
#include "store/schema.h"
#include "store/sqlite_db.h"
#include "store/store_rows.h"

namespace adcsc::store {
namespace {

namespace fs = std::filesystem;
using sqlite::Connection;

// Flushes `path` (a file or a directory) to disk.
absl::Status SyncPath(const fs::path& path, bool directory) {
  const int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot open ", path.string(), " to sync it"));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return absl::InternalError(absl::StrCat("fsync of ", path.string(), " failed"));
  return absl::OkStatus();
}

absl::StatusOr<BackupInfo> Describe(Connection& c, const fs::path& file) {
  BackupInfo info;
  absl::StatusOr<int64_t> app = c.QueryInt64("PRAGMA application_id");
  absl::StatusOr<int64_t> version = c.QueryInt64("PRAGMA user_version");
  if (!app.ok() || !version.ok()) return !app.ok() ? app.status() : version.status();
  if (*app != schema::kApplicationId) {
    return absl::InvalidArgumentError(absl::StrCat(file.string(), ": not an adcsc request store"));
  }
  if (*version > schema::kLatestVersion) {
    return absl::FailedPreconditionError(absl::StrCat(file.string(), ": store schema version ", *version,
                                                      ", newer than this build reads (", schema::kLatestVersion,
                                                      "); restore it with the adcsc version that wrote it"));
  }
  info.schema_version = static_cast<int>(*version);
  absl::StatusOr<sqlite::Statement> owner = c.Prepare("SELECT value FROM meta WHERE key = 'node_id'");
  if (!owner.ok()) return owner.status();
  absl::StatusOr<bool> row = owner->Step();
  if (!row.ok()) return row.status();
  if (*row) info.node_id = owner->ColumnText(0);
  absl::StatusOr<int64_t> records = c.QueryInt64("SELECT COUNT(*) FROM requests");
  if (!records.ok()) return records.status();
  info.records = *records;
  absl::StatusOr<sqlite::Statement> vv = c.Prepare("SELECT origin, sequence FROM version_vector");
  if (!vv.ok()) return vv.status();
  for (;;) {
    absl::StatusOr<bool> more = vv->Step();
    if (!more.ok()) return more.status();
    if (!*more) break;
    info.version_vector[vv->ColumnText(0)] = static_cast<uint64_t>(vv->ColumnInt64(1));
  }
  std::error_code ec;
  info.bytes = static_cast<int64_t>(fs::file_size(file, ec));
  return info;
}

}  // namespace

absl::StatusOr<BackupInfo> BackupStore(const fs::path& db, const fs::path& out) {
  std::error_code ec;
  if (!fs::exists(db, ec)) {
    return absl::NotFoundError(absl::StrCat(db.string(), ": no request store there (check node.data_dir)"));
  }
  if (fs::exists(out, ec)) {
    return absl::AlreadyExistsError(absl::StrCat(out.string(), " exists; choose a new file (backups never overwrite)"));
  }
  const fs::path partial = out.string() + ".partial";
  fs::remove(partial, ec);
  {
    // Read-only: a backup never writes the store; VACUUM INTO reads in one transaction.
    absl::StatusOr<std::unique_ptr<Connection>> c = Connection::Open(db, SQLITE_OPEN_READONLY);
    if (!c.ok()) return c.status();
    if (absl::Status s = (*c)->Exec("PRAGMA busy_timeout = 10000"); !s.ok()) return s;
    absl::StatusOr<sqlite::Statement> vacuum = (*c)->Prepare("VACUUM INTO ?1");
    if (!vacuum.ok()) return vacuum.status();
    vacuum->BindText(1, partial.string());
    if (absl::Status s = vacuum->Run(); !s.ok()) {
      fs::remove(partial, ec);
      return s;
    }
  }
  ::chmod(partial.c_str(), 0600);
  if (absl::Status s = SyncPath(partial, false); !s.ok()) return s;
  fs::rename(partial, out, ec);
  if (ec)
    return absl::InternalError(
        absl::StrCat("cannot rename ", partial.string(), " to ", out.string(), ": ", ec.message()));
  (void)SyncPath(out.has_parent_path() ? out.parent_path() : fs::path("."), true);
  return InspectBackup(out);
}

absl::StatusOr<BackupInfo> InspectBackup(const fs::path& file) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) return absl::NotFoundError(absl::StrCat(file.string(), ": no such backup file"));
  absl::StatusOr<std::unique_ptr<Connection>> c = Connection::Open(file, SQLITE_OPEN_READONLY);
  if (!c.ok()) return c.status();
  absl::StatusOr<sqlite::Statement> check = (*c)->Prepare("PRAGMA integrity_check");
  if (!check.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file.string(), ": not a readable SQLite database (", check.status().message(), ")"));
  }
  absl::StatusOr<bool> row = check->Step();
  if (!row.ok()) return absl::DataLossError(absl::StrCat(file.string(), ": damaged (", row.status().message(), ")"));
  if (!*row || check->ColumnText(0) != "ok") {
    return absl::DataLossError(
        absl::StrCat(file.string(), ": damaged (integrity_check: ", *row ? check->ColumnText(0) : "no answer", ")"));
  }
  return Describe(**c, file);
}

absl::StatusOr<BackupInfo> RestoreStore(const fs::path& from, const fs::path& db, const RestoreOptions& options) {
  std::error_code ec;
  fs::create_directories(db.parent_path(), ec);
  absl::StatusOr<DirLock> lock = DirLock::Acquire(db.parent_path());  // no node runs on it meanwhile
  if (!lock.ok()) return lock.status();
  absl::StatusOr<BackupInfo> info = InspectBackup(from);
  if (!info.ok()) return info.status();
  if (!info->node_id.empty() && info->node_id != options.node_id) {
    return absl::FailedPreconditionError(
        absl::StrCat(from.string(), " is a backup of node '", info->node_id, "', not of '", options.node_id,
                     "': a node's store is restored only on that node (a new node joins empty and copies its peers)"));
  }
  if (fs::exists(db, ec)) {
    if (!options.replace) {
      return absl::AlreadyExistsError(absl::StrCat(
          db.string(),
          " exists: stop the node and pass --replace to move it aside (a restore never overwrites a store)"));
    }
    const fs::path aside = absl::StrCat(db.string(), ".replaced-", options.now_ms);
    fs::rename(db, aside, ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot move ", db.string(), " aside: ", ec.message()));
    for (const char* suffix : {"-wal", "-shm"}) {
      const fs::path side = db.string() + suffix;
      if (fs::exists(side, ec)) fs::rename(side, aside.string() + suffix, ec);
    }
  }
  const fs::path partial = db.string() + ".restoring";
  fs::remove(partial, ec);
  fs::copy_file(from, partial, ec);
  if (ec)
    return absl::InternalError(
        absl::StrCat("cannot copy ", from.string(), " to ", partial.string(), ": ", ec.message()));
  ::chmod(partial.c_str(), 0600);
  if (options.complete_from_peers) {
    absl::StatusOr<std::unique_ptr<Connection>> c = Connection::Open(partial, SQLITE_OPEN_READWRITE);
    if (!c.ok()) return c.status();
    if (absl::Status s = (*c)->Exec(rows::kMarkRebuildSql); !s.ok()) return s;
  }
  if (absl::Status s = SyncPath(partial, false); !s.ok()) return s;
  fs::rename(partial, db, ec);
  if (ec)
    return absl::InternalError(
        absl::StrCat("cannot rename ", partial.string(), " to ", db.string(), ": ", ec.message()));
  (void)SyncPath(db.parent_path(), true);
  return info;
}

}  // namespace adcsc::store
