// RequestStore, what keeps a node's disk bounded: compaction of the mutation log once every
// node holds a prefix, and pruning of settled records past the retention period.
#include <algorithm>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "store/request_store.h"
#include "store/store_rows.h"

namespace adcsc::store {
namespace {

using rows::CachedStatement;
using rows::Connection;

// By rowid through the (origin, sequence) index, a bounded batch per statement.
constexpr char kCompactSql[] =
    "DELETE FROM mutations WHERE rowid IN (SELECT rowid FROM mutations WHERE origin = ?1 AND sequence <= ?2 "
    "LIMIT ?3)";

// Settled: ISSUED (3), DENIED (4), FAILED (5), REVOKED (6); see record.proto.
constexpr char kPruneSql[] =
    "DELETE FROM requests WHERE rowid IN (SELECT r.rowid FROM requests r WHERE r.status IN (3, 4, 5, 6) AND "
    "r.updated_ms < ?1 AND NOT EXISTS (SELECT 1 FROM mutations m WHERE m.ca_config = r.ca_config AND "
    "m.request_id = r.request_id) LIMIT ?2)";

}  // namespace

absl::StatusOr<int64_t> RequestStore::CompactLog(const VersionVector& held_by_all, size_t limit) {
  absl::StatusOr<VersionVector> ours = GetVersionVector();
  if (!ours.ok()) return ours.status();
  int64_t deleted = 0;
  absl::Status written = impl_->Write([&](Connection& c) -> absl::Status {
    deleted = 0;
    for (const auto& [origin, through] : held_by_all) {
      if (deleted >= static_cast<int64_t>(limit)) break;
      auto mine = ours->find(origin);
      const uint64_t upto = std::min<uint64_t>(through, mine == ours->end() ? 0 : mine->second);
      if (upto == 0) continue;
      absl::StatusOr<CachedStatement> st = c.PrepareCached(kCompactSql);
      if (!st.ok()) return st.status();
      (*st)
          ->BindText(1, origin)
          .BindInt64(2, static_cast<int64_t>(upto))
          .BindInt64(3, static_cast<int64_t>(limit) - deleted);
      if (absl::Status s = (*st)->Run(); !s.ok()) return s;
      deleted += sqlite3_changes(c.raw());
    }
    return absl::OkStatus();
  });
  if (!written.ok()) return written;
  return deleted;
}

absl::StatusOr<int64_t> RequestStore::PruneSettled(int64_t cutoff_ms, size_t limit) {
  int64_t deleted = 0;
  absl::Status written = impl_->Write([&](Connection& c) -> absl::Status {
    absl::StatusOr<CachedStatement> st = c.PrepareCached(kPruneSql);
    if (!st.ok()) return st.status();
    (*st)->BindInt64(1, cutoff_ms).BindInt64(2, static_cast<int64_t>(limit));
    if (absl::Status s = (*st)->Run(); !s.ok()) return s;
    deleted = sqlite3_changes(c.raw());
    return absl::OkStatus();
  });
  if (!written.ok()) return written;
  return deleted;
}

absl::Status RequestStore::MarkRebuildFromPeers() {
  return impl_->Write([](Connection& c) { return c.Exec(rows::kMarkRebuildSql); });
}

absl::StatusOr<bool> RequestStore::RebuildFromPeersPending() const {
  absl::StatusOr<sqlite::ReaderPool::Lease> reader = impl_->Reader();
  if (!reader.ok()) return reader.status();
  absl::StatusOr<int64_t> n = (*reader)->QueryInt64("SELECT COUNT(*) FROM meta WHERE key = 'rebuild_from_peers'");
  if (!n.ok()) return n.status();
  return *n > 0;
}

absl::Status RequestStore::AdoptOwnSequence(uint64_t sequence) {
  const std::string& self = impl_->options().node_id;
  return impl_->Write([&](Connection& c) -> absl::Status {
    absl::StatusOr<uint64_t> ours = rows::ReadVectorEntry(c, self);
    if (!ours.ok()) return ours.status();
    if (*ours >= sequence) return absl::OkStatus();
    return rows::WriteVectorEntry(c, self, sequence);
  });
}

int64_t RequestStore::BytesOnDisk() const {
  int64_t total = 0;
  const std::string base = impl_->options().path.string();
  for (const std::string& f : {base, base + "-wal", base + "-shm"}) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(f, ec);
    if (!ec) total += static_cast<int64_t>(size);
  }
  return total;
}

}  // namespace adcsc::store
