// Damages a SQLite file the way a failing disk does: garbage over the root page of one table
// or index, written while no connection has the file open (its WAL checkpointed first). For
// tests of integrity checks and repair. Returns what went wrong, or OK.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "store/sqlite_db.h"

namespace adcsc::testing {

inline absl::Status DamageRootPage(const std::filesystem::path& db, const std::string& object) {
  int64_t root = 0, page_size = 0;
  {
    auto raw = store::sqlite::Connection::Open(db, SQLITE_OPEN_READWRITE);
    if (!raw.ok()) return raw.status();
    if (absl::Status s = (*raw)->Exec("PRAGMA wal_checkpoint(TRUNCATE)"); !s.ok()) return s;
    auto r = (*raw)->QueryInt64("SELECT rootpage FROM sqlite_schema WHERE name = '" + object + "'");
    if (!r.ok()) return r.status();
    auto p = (*raw)->QueryInt64("PRAGMA page_size");
    if (!p.ok()) return p.status();
    root = *r;
    page_size = *p;
  }
  if (root <= 1) return absl::NotFoundError(absl::StrCat("no b-tree named ", object, " in ", db.string()));
  std::fstream f(db, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp((root - 1) * page_size);
  const std::string garbage(static_cast<size_t>(page_size), '\x5a');
  f.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  return f ? absl::OkStatus() : absl::DataLossError("could not write the garbage");
}

}  // namespace adcsc::testing
