// The request store's SQLite schema, versioned with PRAGMA user_version, and the migrations
// that bring a database file up to the version this build expects.
// Thread-safety: migration needs the connection to itself; run it once at open, before the
// group-commit writer and the readers start.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "store/sqlite_db.h"

namespace adcsc::store::schema {

// The schema version this build writes. Bump it by appending a migration step.
inline constexpr int kLatestVersion = 3;

// PRAGMA application_id of an adcsc store ("adcs" in ASCII), so a stray SQLite file from
// another program is recognised instead of being altered.
inline constexpr int32_t kApplicationId = 0x61646373;

// One step: `sql` takes the schema from to_version - 1 to to_version.
struct Migration {
  int to_version;
  std::string_view description;
  std::string_view sql;
};

// All steps, oldest first; element i migrates to version i + 1.
std::span<const Migration> Migrations();

// The file's schema version (0 for a new, empty file).
absl::StatusOr<int> CurrentVersion(sqlite::Connection& connection);

// Applies each missing step up to `target_version` in its own transaction together with
// the user_version bump, so a crash leaves the file at a whole version. Fails without
// changing anything if the file is newer than `target_version` knows of (written by a newer
// adcsc) or is some other program's database. Tests use an older `target_version` to set up
// upgrade scenarios.
absl::Status Migrate(sqlite::Connection& connection, int target_version = kLatestVersion);

}  // namespace adcsc::store::schema
