// RequestStore: the durable memory of every CA request this node (and, later, the
// cluster) has seen, on SQLite in WAL mode with fsync on commit. WAL checkpoints run on a
// background thread (store/wal_checkpointer.h), not inside the commits.
//
// Thread-safety: all methods may be called concurrently from any thread. Writes from
// concurrent callers are group-committed: one transaction and one fsync per batch.
// A write returns only after its transaction is durable.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "store/clock.h"
#include "store/record.h"

namespace adcsc::store {

struct StoreOptions {
  std::filesystem::path path;       // the SQLite file; its directory must exist
  std::string node_id;              // origin stamped on local mutations
  const Clock* clock = nullptr;     // nullptr: SystemClock::Default()
  // Durable commits (PRAGMA synchronous=FULL). Tests may turn this off for speed.
  bool fsync = true;
  // Told when a background WAL checkpoint fails (see store/wal_checkpointer.h); writes go
  // on regardless. Called from a background thread or inside a commit, so it must be quick
  // and thread-safe. Empty: a line on stderr.
  std::function<void(const absl::Status&)> on_checkpoint_error;
};

// What a local write did.
struct WriteResult {
  RequestRecord record;   // the record as stored after merging
  bool changed = false;   // false when the existing record already dominated
  uint64_t sequence = 0;  // mutation log sequence (0 when nothing changed)
};

// Version vector: for each origin node, the highest mutation sequence held.
using VersionVector = std::map<std::string, uint64_t>;

class RequestStore {
 public:
  // Opens or creates the store, running schema migrations. Errors name the file and
  // what to check (permissions, disk space, a newer schema from a newer adcsc).
  static absl::StatusOr<std::unique_ptr<RequestStore>> Open(const StoreOptions& options);

  ~RequestStore();
  RequestStore(const RequestStore&) = delete;
  RequestStore& operator=(const RequestStore&) = delete;

  // Records a local change: merges `update` into the stored record with the same
  // (ca_config, request_id), stamps hlc/node_id/updated_ms, appends a mutation (origin =
  // this node) when the record changed, and commits durably.
  //
  // A local update is this node's newest knowledge, so its own hlc/node_id/created_ms/
  // updated_ms are ignored and the rule is, against the stored record S:
  //   - no S: stored as given;
  //   - rank(update) < rank(S): ignored (the lattice never moves down);
  //   - rank(update) == rank(S) but a different status (issued vs denied vs failed):
  //     ignored; a terminal outcome is final and only REVOKED may follow it;
  //   - otherwise the update replaces S's content, except that empty csr_sha256,
  //     template_name and requester keep S's values (a retrieve may not know them); if the
  //     rank is equal and the result matches S in status, disposition, message,
  //     certificate_der, hresult, csr_sha256, template_name and requester, it is ignored.
  // An ignored update returns changed=false, the stored record, sequence 0, and appends
  // nothing. A stored update gets hlc = HLC now (after S's hlc, so it also wins Merge on
  // every replica), node_id = this node, updated_ms = clock now, created_ms = S's (or
  // now). InvalidArgument for an empty ca_config, request_id 0, an unspecified/unknown
  // status, or a csr_sha256 that is not 32 bytes.
  absl::StatusOr<WriteResult> Put(const RequestRecord& update);

  // The record for (ca_config, request_id), or nullopt.
  absl::StatusOr<std::optional<RequestRecord>> Get(const std::string& ca_config,
                                                   uint32_t request_id) const;

  // Submit dedupe: the most recent record (by created_ms, then request_id) for the same
  // CA config, template and CSR SHA-256 (32 bytes, binary) created at or after
  // `not_before_ms`, or nullopt. Any status matches; the caller decides what to reuse.
  absl::StatusOr<std::optional<RequestRecord>> FindByDedupeKey(const std::string& ca_config,
                                                               const std::string& template_name,
                                                               const std::string& csr_sha256,
                                                               int64_t not_before_ms) const;

  // Mutations with origin `origin` and sequence > `after`, oldest first, at most `limit`.
  absl::StatusOr<std::vector<adcsc::store::v1::Mutation>> MutationsSince(const std::string& origin,
                                                                         uint64_t after,
                                                                         size_t limit) const;

  absl::StatusOr<VersionVector> GetVersionVector() const;
  absl::StatusOr<int64_t> CountRecords() const;

  // Cheap liveness probe: a read and, when `write` is true, a durable write to a scratch
  // row. Used by health checks.
  absl::Status Check(bool write) const;

  const std::string& node_id() const;
  // Current schema version of an open store.
  static constexpr int kSchemaVersion = 1;

 private:
  class Impl;
  explicit RequestStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace adcsc::store
