#include "store/repair.h"

#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "store/schema.h"
#include "store/sqlite_db.h"

namespace adcsc::store {
namespace {

// SQLite's quoting of an identifier (table names come from the damaged file's own schema).
std::string QuoteIdentifier(const std::string& name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string QuoteLiteral(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

void MoveAside(const std::filesystem::path& from, const std::filesystem::path& to) {
  std::error_code ec;
  if (std::filesystem::exists(from, ec)) std::filesystem::rename(from, to, ec);
}

}  // namespace

absl::StatusOr<std::filesystem::path> RebuildStoreFromTables(const std::filesystem::path& path, int64_t now_unix_ms) {
  const std::filesystem::path fresh = path.string() + ".rebuild";
  std::error_code ec;
  std::filesystem::remove(fresh, ec);
  std::filesystem::remove(fresh.string() + "-wal", ec);
  std::filesystem::remove(fresh.string() + "-shm", ec);
  const int fd = ::open(fresh.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return absl::PermissionDeniedError(absl::StrCat("cannot create ", fresh.string()));
  ::close(fd);
  {
    auto c = sqlite::Connection::OpenConfigured(fresh, SQLITE_OPEN_READWRITE,
                                                sqlite::ConnectionSettings{.writer = true, .fsync = true});
    if (!c.ok()) return c.status();
    sqlite::Connection& db = **c;
    if (absl::Status s = schema::Migrate(db); !s.ok()) return s;
    if (absl::Status s = db.Exec(absl::StrCat("ATTACH DATABASE ", QuoteLiteral(path.string()), " AS damaged"));
        !s.ok()) {
      return s;
    }
    auto version = db.QueryInt64("PRAGMA damaged.user_version");
    if (!version.ok()) return version.status();
    if (*version != schema::kLatestVersion) {
      return absl::FailedPreconditionError(absl::StrCat(path.string(), " is at schema version ", *version, ", not ",
                                                        schema::kLatestVersion,
                                                        "; it cannot be rebuilt by this adcsc"));
    }
    // Every table of the damaged file, read by a scan of the table itself, not its indexes.
    std::vector<std::pair<std::string, std::string>> tables;
    {
      auto st =
          db.Prepare("SELECT name, sql FROM damaged.sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'");
      if (!st.ok()) return st.status();
      for (;;) {
        auto row = st->Step();
        if (!row.ok()) return row.status();
        if (!*row) break;
        tables.emplace_back(st->ColumnText(0), st->ColumnText(1));
      }
    }
    auto txn = sqlite::Transaction::Begin(db);
    if (!txn.ok()) return txn.status();
    for (const auto& [name, sql] : tables) {
      auto known = db.Prepare("SELECT COUNT(*) FROM main.sqlite_schema WHERE type = 'table' AND name = ?1");
      if (!known.ok()) return known.status();
      known->BindText(1, name);
      auto row = known->Step();
      if (!row.ok()) return row.status();
      if (known->ColumnInt64(0) == 0) {
        if (absl::Status s = db.Exec(sql); !s.ok()) return s;  // a table the migrations do not make
      }
      // The damaged file's columns by name: it may lack a column added on open since
      // (schema.cc, additive columns), which the fresh file then fills with its default.
      std::vector<std::string> columns;
      {
        auto cols = db.Prepare("SELECT name FROM pragma_table_info(?1, 'damaged')");
        if (!cols.ok()) return cols.status();
        cols->BindText(1, name);
        for (;;) {
          auto col = cols->Step();
          if (!col.ok()) return col.status();
          if (!*col) break;
          columns.push_back(QuoteIdentifier(cols->ColumnText(0)));
        }
      }
      const std::string list = absl::StrJoin(columns, ", ");
      // Row by row from the table b-tree, never a damaged index: NOT INDEXED keeps the
      // planner off the indexes, and the WHERE clause keeps SQLite from its transfer
      // optimisation, which would copy the source's index b-trees as they are.
      if (absl::Status s = db.Exec(absl::StrCat("INSERT INTO main.", QuoteIdentifier(name), " (", list, ") SELECT ",
                                                list, " FROM damaged.", QuoteIdentifier(name), " NOT INDEXED WHERE 1"));
          !s.ok()) {
        return absl::DataLossError(
            absl::StrCat("table ", name, " of ", path.string(),
                         " cannot be read, so the store cannot be rebuilt from it: ", s.message()));
      }
    }
    if (absl::Status s = txn->Commit(); !s.ok()) return s;
    if (absl::Status s = db.Exec("DETACH DATABASE damaged"); !s.ok()) return s;
    if (absl::Status s = db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); !s.ok()) return s;
  }
  absl::StatusOr<std::filesystem::path> kept = MoveStoreAside(path, now_unix_ms);
  if (!kept.ok()) return kept.status();
  std::filesystem::remove(fresh.string() + "-wal", ec);
  std::filesystem::remove(fresh.string() + "-shm", ec);
  std::filesystem::rename(fresh, path, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("cannot move the rebuilt store into place (", fresh.string(), " -> ",
                                            path.string(), "): ", ec.message(), "; the damaged file is ",
                                            kept->string()));
  }
  return kept;
}

absl::StatusOr<std::filesystem::path> MoveStoreAside(const std::filesystem::path& path, int64_t now_unix_ms) {
  const std::filesystem::path kept = absl::StrCat(path.string(), ".damaged-", now_unix_ms);
  MoveAside(path.string() + "-wal", kept.string() + "-wal");
  MoveAside(path.string() + "-shm", kept.string() + "-shm");
  std::error_code ec;
  std::filesystem::rename(path, kept, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot move ", path.string(), " aside: ", ec.message()));
  return kept;
}

}  // namespace adcsc::store
