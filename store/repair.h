// Mends a request store whose indexes are damaged but whose tables still read: copies every
// table's rows into a new file with the current schema (indexes built fresh), keeps the
// damaged file beside it, and puts the new one in its place. Run only while no RequestStore
// has the file open (a node does it at start, node/app/run_node.cc). Damage in a table
// itself makes the copy fail, and the file is left as it was.
#pragma once

#include <filesystem>

#include "absl/status/statusor.h"

namespace adcsc::store {

// Returns where the damaged file was kept ("<path>.damaged-<unix ms>", with its -wal and
// -shm). DATA_LOSS naming the table that could not be read when the tables are damaged too.
absl::StatusOr<std::filesystem::path> RebuildStoreFromTables(const std::filesystem::path& path, int64_t now_unix_ms);

// Moves the store's files (and its -wal and -shm) aside as "<path>.damaged-<unix ms>", so a
// new store can be made in their place; returns the new name of the database file.
absl::StatusOr<std::filesystem::path> MoveStoreAside(const std::filesystem::path& path, int64_t now_unix_ms);

}  // namespace adcsc::store
