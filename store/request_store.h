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

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "store/clock.h"
#include "store/record.h"

namespace adcsc::store {

struct StoreOptions {
  std::filesystem::path path;    // the SQLite file; its directory must exist
  std::string node_id;           // origin stamped on local mutations
  const Clock* clock = nullptr;  // nullptr: SystemClock::Default()
  // Durable commits (PRAGMA synchronous=FULL). Tests may turn this off for speed.
  bool fsync = true;
  // Told when a background WAL checkpoint fails (see store/wal_checkpointer.h); writes go
  // on regardless. Called from a background thread or inside a commit, so it must be quick
  // and thread-safe. Empty: a line on stderr.
  std::function<void(const absl::Status&)> on_checkpoint_error;
  // Check() fails while the file's volume has fewer free bytes than this (0: no floor), so a
  // node stops taking traffic before its writes start failing for lack of space.
  int64_t min_free_bytes = 0;
};

// The key submit dedupe, intents and leases share: one CSR for one template at one CA.
struct SubmitKey {
  std::string ca_config;      // "dc\\ca" (CaConfigKey)
  std::string template_name;  // may be empty (standalone CA)
  std::string csr_sha256;     // SHA-256 of the DER CSR, 32 bytes, binary
};

// A submit this node is about to send, or sent, to the CA whose outcome is not recorded yet:
// written durably before every CA call, removed in the transaction that records the CA's
// answer (Put with `settles`) or when the call failed before anything reached the CA. An
// intent still here after a crash, a timeout or a lost answer means "outcome unknown": the
// node resolves it by searching the CA (node/api/ca_request_search.h), never by submitting
// blindly again. Local to the node (not replicated); peers learn of it through the lease.
struct SubmitIntentRow {
  SubmitKey key;
  uint32_t after_request_id = 0;  // highest request ID for key.ca_config known when it began
  std::string requester;          // the CA identity that submits
  std::string csr_der;            // the CSR, to recognise the CA's answer by its public key
  int64_t created_ms = 0;         // first attempt (clock of this node)
  int64_t updated_ms = 0;         // latest attempt
  int attempts = 0;               // CA submits made under this intent
};

// What a local write did.
struct WriteResult {
  RequestRecord record;   // the record as stored after merging
  bool changed = false;   // false when the existing record already dominated
  uint64_t sequence = 0;  // mutation log sequence (0 when nothing changed)
};

// Version vector: for each origin node N, "every mutation of N up to this sequence has been
// merged here". Out-of-order mutations beyond a gap are kept in the log but not counted.
using VersionVector = std::map<std::string, uint64_t>;

// Per origin, sequences held in the mutation log beyond the version vector (arrived ahead of
// a gap), ascending. With the vector it tells a peer exactly what not to send again.
using HeldSequences = std::map<std::string, std::vector<uint64_t>>;

// What RequestStore::ApplyRemote did with a batch.
struct RemoteApplyResult {
  // is_new[i]: mutation i was not held before and is now durable (merged and logged).
  std::vector<bool> is_new;
  // This node's version vector after the batch committed.
  VersionVector version_vector;
};

// Position in a snapshot scan: the last (ca_config, request_id) returned. The default value
// (empty ca_config) starts at the beginning, since every real key has a non-empty ca_config.
struct SnapshotCursor {
  std::string ca_config;
  uint32_t request_id = 0;
};

// One bounded page of a snapshot: records in key order after the cursor, and the node's
// version vector read BEFORE those records. A receiver keeps the vector of the FIRST page
// and adopts it after the last page: records only move up the lattice, so records read
// later include every mutation the earlier vector claims.
struct SnapshotPage {
  std::vector<RequestRecord> records;
  VersionVector version_vector;
  SnapshotCursor next;  // pass to the next call
  bool done = false;    // no records after this page
};

// Bulk join (store/bulk_join.h): a mutation the sender holds beyond its version vector
// (arrived ahead of a gap), by reference to the record it changed.
struct HeldMutation {
  std::string origin;
  uint64_t sequence = 0;
  uint64_t hlc = 0;
  std::string ca_config;
  uint32_t request_id = 0;
};

// What a bulk join reads first, in the same read transaction as everything after it.
struct JoinHeader {
  VersionVector version_vector;
  int64_t records = 0;  // how many records the read will hand on
};

// One batch of a bulk join's read: held mutations come before the first record.
struct JoinBatch {
  std::vector<HeldMutation> held;
  std::vector<RequestRecord> records;  // in key order, continuing the previous batch
};

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
  // updated_ms/admin_hlc are ignored (the stored record's admin_hlc is kept) and the rule is,
  // against the stored record S:
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
  // The same, and in the same transaction removes the submit intent `settles` (when it is
  // not null): the CA's answer and the end of the "outcome unknown" window are one commit.
  absl::StatusOr<WriteResult> Put(const RequestRecord& update, const SubmitKey* settles);
  // The CA's answer after an administrator's action on the request (revoke, release from
  // hold, approve, deny): replaces S's content whatever its status (a release moves REVOKED
  // back to ISSUED) and is stamped admin_hlc = hlc, so it wins Merge over every version
  // recorded before it on any node (store/record.h). Always recorded, even when S says the
  // same (another node may hold an earlier action's answer). Empty csr_sha256, template_name
  // and requester keep S's. Otherwise as Put.
  absl::StatusOr<WriteResult> PutAdminOutcome(const RequestRecord& update);

  // Writes `intent` durably (one group commit, fsynced) before a CA call. An intent already
  // held for the same key keeps its created_ms and the lower after_request_id, and counts
  // one more attempt. InvalidArgument for an empty ca_config, a digest that is not 32
  // bytes or an empty CSR; a disk or I/O error is returned as the store's error.
  absl::Status RecordSubmitIntent(const SubmitIntentRow& intent);
  // The intent held for `key`, or nullopt.
  absl::StatusOr<std::optional<SubmitIntentRow>> FindSubmitIntent(const SubmitKey& key) const;
  // Intents held, oldest first, at most `limit`.
  absl::StatusOr<std::vector<SubmitIntentRow>> OpenSubmitIntents(size_t limit) const;
  // Removes the intent for `key` (nothing reached the CA, or the outcome was recorded).
  absl::Status DropSubmitIntent(const SubmitKey& key);

  // The record for (ca_config, request_id), or nullopt.
  absl::StatusOr<std::optional<RequestRecord>> Get(const std::string& ca_config, uint32_t request_id) const;

  // The highest request ID held for `ca_config`, or 0 when none.
  absl::StatusOr<uint32_t> MaxRequestId(const std::string& ca_config) const;

  // Submit dedupe: the most recent record (by created_ms, then request_id) for the same
  // CA config, template and CSR SHA-256 (32 bytes, binary) created at or after
  // `not_before_ms`, or nullopt. Any status matches; the caller decides what to reuse.
  absl::StatusOr<std::optional<RequestRecord>> FindByDedupeKey(const std::string& ca_config,
                                                               const std::string& template_name,
                                                               const std::string& csr_sha256,
                                                               int64_t not_before_ms) const;

  // Records of `ca_config` whose certificate contains `bytes` (a byte search, e.g. for a
  // serial number's encoding; the caller checks each candidate), lowest request ID first, at
  // most `limit`. A full scan of the CA's records: for operator commands, not the API path.
  absl::StatusOr<std::vector<RequestRecord>> FindByCertificateBytes(const std::string& ca_config,
                                                                    const std::string& bytes, size_t limit) const;

  // Mutations with origin `origin` and sequence > `after`, oldest first, at most `limit`.
  absl::StatusOr<std::vector<adcsc::store::v1::Mutation>> MutationsSince(const std::string& origin, uint64_t after,
                                                                         size_t limit) const;

  // Applies mutations received from peers, in one transaction (one fsync, group-committed).
  // For each mutation: ignored if its origin is this node, or if it is already held (its
  // (origin, sequence) is in the log or covered by the version vector), so re-applying is a
  // no-op. Otherwise its record is merged with Merge() (the lattice), it is logged under its
  // origin and sequence (so it can be handed on to a third node), and the version vector of
  // its origin advances over the contiguous run of logged sequences: a gap stops it, and the
  // mutations after the gap stay durable until the gap fills. InvalidArgument (nothing
  // applied) for a mutation with an empty origin, sequence 0, or an invalid record key.
  absl::StatusOr<RemoteApplyResult> ApplyRemote(const std::vector<adcsc::store::v1::Mutation>& mutations);

  // Every logged mutation (any origin, including out-of-order ones) that `theirs` does not
  // cover, oldest sequence first within each origin, at most `limit` in all.
  absl::StatusOr<std::vector<adcsc::store::v1::Mutation>> MutationsMissing(const VersionVector& theirs,
                                                                           size_t limit) const;
  // As above, also skipping what `also_held` lists (the peer's HeldBeyondVector()), so
  // mutations the peer holds beyond a gap do not crowd out the ones it lacks.
  absl::StatusOr<std::vector<adcsc::store::v1::Mutation>> MutationsMissing(const VersionVector& theirs,
                                                                           const HeldSequences& also_held,
                                                                           size_t limit) const;

  // The mutations this node holds beyond its version vector, at most `max_per_origin` per
  // origin (the lowest ones).
  absl::StatusOr<HeldSequences> HeldBeyondVector(size_t max_per_origin) const;

  // Snapshot reader: up to `limit` records after `after` in key order, plus the version
  // vector (see SnapshotPage for why the vector comes first). Pages are not one
  // transaction; concurrent writes are fine because every record only moves up.
  absl::StatusOr<SnapshotPage> ReadSnapshotPage(const SnapshotCursor& after, size_t limit) const;

  // Merges snapshot records and adopts `version_vector` entries that are ahead of ours
  // (never for this node's own origin), then advances each origin over logged mutations
  // that follow; one transaction. Idempotent. A record that changes the stored one is also
  // logged as a mutation of this node (content unchanged): the vector is read before the
  // records, so a record can hold mutations no vector claims, and this makes them reach the
  // other nodes by ordinary anti-entropy even if their origin is gone. For a snapshot that
  // fits in one call; a paged snapshot goes through StageSnapshotPage/CommitSnapshot.
  absl::Status ApplySnapshot(const std::vector<RequestRecord>& records, const VersionVector& version_vector);

  // Paged snapshot from peer `source`: pages are staged (invisible to reads, kept only
  // while the store is open) and CommitSnapshot merges them all and adopts the vector in
  // one transaction (merging as ApplySnapshot does). Why not merge page by page: a source
  // that fails or a restart mid-snapshot then leaves the store as it was, instead of holding
  // part of the records (each re-logged for every peer to pull) without the vector.
  // DiscardSnapshot drops what is staged (call it before restarting a snapshot).
  absl::Status StageSnapshotPage(const std::string& source, const std::vector<RequestRecord>& records);
  absl::Status CommitSnapshot(const std::string& source, const VersionVector& version_vector);
  absl::Status DiscardSnapshot(const std::string& source);

  // Bulk join, the sender's side (the receiver is store/bulk_join.h): in ONE read
  // transaction, the version vector and the record count (`on_header`), then the mutations
  // held beyond the vector and every record in key order (`on_batch`, batches of about
  // `batch_bytes`). One transaction, unlike snapshot pages: the records then carry exactly
  // the mutations the vector and the held list name, so a receiver that adopts them need not
  // log each record as its own mutation. The callbacks may block (a stream's flow control);
  // the read transaction stays open meanwhile, so WAL checkpoints cannot pass it until the
  // read ends. Stops with the first error a callback returns. Holds one read connection.
  absl::Status ReadForJoin(size_t batch_bytes, absl::FunctionRef<absl::Status(const JoinHeader&)> on_header,
                           absl::FunctionRef<absl::Status(JoinBatch&)> on_batch) const;

  // True when the store holds nothing a peer could not give it back: no records, no logged
  // mutation, an empty version vector, no submit intent and no rebuild mark. Such a store may
  // be replaced by a bulk join (store/bulk_join.h).
  absl::StatusOr<bool> HoldsNothing() const;

  absl::StatusOr<VersionVector> GetVersionVector() const;
  absl::StatusOr<int64_t> CountRecords() const;

  // Cheap liveness probe: a read and, when `write` is true, a durable write to a scratch
  // row, and the free space of the volume against StoreOptions::min_free_bytes
  // (RESOURCE_EXHAUSTED under it). Used by health checks. After a write of the store failed
  // for want of space or an I/O error, it fails with that error until a write succeeds
  // again; with `write` it then probes with a write big enough (kAppendProbeBytes) to show
  // the disk takes appends again, so readiness comes back by itself once space returns.
  absl::Status Check(bool write) const;
  static constexpr size_t kAppendProbeBytes = 256 * 1024;

  // Mutation-log compaction: deletes the logged mutations every node holds, per origin those
  // with sequence <= held_by_all[origin] (and never beyond this node's own vector), at most
  // `limit` rows per call. The version vector stays: it says what was held, not what is
  // logged. A peer whose vector is behind what is left asks in vain and copies a snapshot
  // instead (replication.h, "stalled"). Returns the rows deleted.
  absl::StatusOr<int64_t> CompactLog(const VersionVector& held_by_all, size_t limit);

  // Retention: deletes up to `limit` settled records (issued, denied, failed, revoked) last
  // changed before `cutoff_ms` that no logged mutation still refers to (so the log never
  // points at a missing record). Pending and submitted records are kept, whatever their age.
  // Returns the records deleted.
  absl::StatusOr<int64_t> PruneSettled(int64_t cutoff_ms, size_t limit);

  // Rebuilding a node's store from its peers (after its own was damaged): the mark is kept
  // in the store, so a restart before the rebuild is over resumes it, and a snapshot that
  // commits (ApplySnapshot, CommitSnapshot) clears it in the same transaction. While it is
  // set the replicator copies a full snapshot from a peer whatever the vectors say.
  absl::Status MarkRebuildFromPeers();
  absl::StatusOr<bool> RebuildFromPeersPending() const;
  // Moves this node's own entry of the version vector up to `sequence` (never down), so the
  // next local mutation is numbered after every one its peers already hold from it: a store
  // rebuilt empty would otherwise number from 1 again, and peers would take its new writes
  // for ones they hold.
  absl::Status AdoptOwnSequence(uint64_t sequence);

  // Bytes the store's files take on disk (the database, its WAL and shared memory).
  int64_t BytesOnDisk() const;

  // SQLite's PRAGMA quick_check over the whole file (b-tree structure, page and index
  // formats; not whether index entries match their rows). DATA_LOSS naming the file and the
  // first problems found when it is not "ok". Reads only; takes a read connection for as
  // long as the file takes to scan.
  absl::Status QuickCheck() const;
  // REINDEX: builds every index again from its table, in one group commit. Mends a damaged
  // index (what QuickCheck reports for it), not a damaged table.
  absl::Status RebuildIndexes();

  const std::string& node_id() const;
  // Current schema version of an open store.
  static constexpr int kSchemaVersion = 3;

 private:
  absl::StatusOr<WriteResult> Write(const RequestRecord& update, const SubmitKey* settles, bool admin_action);
  class Impl;
  explicit RequestStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace adcsc::store
