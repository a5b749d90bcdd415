// RequestStore, snapshots: a page of records in key order for a peer that is far behind,
// and on the receiving side staging pages until the last one, then merging them in one
// transaction and adopting the sender's version vector. Also the sender's side of a bulk
// join: the whole store in one read transaction (the receiver is store/bulk_join.cc).
#include <algorithm>
#include <limits>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "store/request_store.h"
#include "store/store_rows.h"

namespace adcsc::store {

using rows::AdvanceContiguous;
using rows::CachedStatement;
using rows::Connection;
using rows::kAppendMutationSql;
using rows::kRecordColumns;
using rows::MergeIntoStore;
using rows::ReadVectorEntry;
using rows::RowToRecord;
using rows::Statement;
using rows::WriteVectorEntry;
namespace {

// Merges the records of a snapshot, in one transaction. A change is logged as a mutation
// of this node (`self`), content untouched: the snapshot's vector was read before its
// records, so a record may carry mutations the vector does not claim, and if their origin
// is gone this node may be the only one that has them. Logged, they reach every peer by
// ordinary anti-entropy, where merging them again is a no-op. The log's sequences are
// allocated in one go and the vector written once at the end (Finish), instead of a read
// and a write of the vector per record.
class SnapshotMerger {
 public:
  SnapshotMerger(Connection& c, const std::string& self) : c_(c), self_(self) {}

  absl::Status Merge(const RequestRecord& r) {
    absl::StatusOr<std::optional<RequestRecord>> changed = MergeIntoStore(c_, r);
    if (!changed.ok()) return changed.status();
    if (!changed->has_value()) return absl::OkStatus();
    if (next_ == 0) {
      absl::StatusOr<uint64_t> entry = ReadVectorEntry(c_, self_);
      if (!entry.ok()) return entry.status();
      next_ = *entry + 1;
    }
    absl::StatusOr<CachedStatement> append = c_.PrepareCached(kAppendMutationSql);
    if (!append.ok()) return append.status();
    (*append)
        ->BindText(1, self_)
        .BindInt64(2, static_cast<int64_t>(next_))
        .BindInt64(3, static_cast<int64_t>((*changed)->hlc()))
        .BindText(4, (*changed)->ca_config())
        .BindInt64(5, (*changed)->request_id());
    if (absl::Status s = (*append)->Run(); !s.ok()) return s;
    ++next_;
    return absl::OkStatus();
  }

  // Advances this node's vector entry over what was logged.
  absl::Status Finish() { return next_ == 0 ? absl::OkStatus() : WriteVectorEntry(c_, self_, next_ - 1); }

 private:
  Connection& c_;
  const std::string& self_;
  uint64_t next_ = 0;  // the next sequence to log; 0 until the first change
};

// Snapshot pages wait here until the last one arrives. A TEMP table lives on the writer
// connection only (every staging call runs on it) and vanishes on close, which is what a
// snapshot interrupted by a restart wants anyway: it starts over from the first page.
constexpr char kCreateStagingSql[] =
    "CREATE TEMP TABLE IF NOT EXISTS snapshot_staging ("
    "source TEXT NOT NULL, ca_config TEXT NOT NULL, request_id INTEGER NOT NULL, "
    "record BLOB NOT NULL, PRIMARY KEY (source, ca_config, request_id))";
// A page fetched again after a lost reply carries the same or newer (higher) records.
constexpr char kStageRecordSql[] =
    "INSERT INTO temp.snapshot_staging (source, ca_config, request_id, record) "
    "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (source, ca_config, request_id) "
    "DO UPDATE SET record = excluded.record";
constexpr char kStagedRecordsSql[] = "SELECT record FROM temp.snapshot_staging WHERE source = ?1";
constexpr char kDropStagedSql[] = "DELETE FROM temp.snapshot_staging WHERE source = ?1";

absl::Status ValidateSnapshotRecords(const std::vector<RequestRecord>& records) {
  for (const RequestRecord& r : records) {
    if (r.ca_config().empty() || r.request_id() == 0) {
      return absl::InvalidArgumentError(absl::StrCat("request store snapshot: a record for '", r.ca_config(), "' #",
                                                     r.request_id(),
                                                     " has no valid key; the peer that sent it is faulty"));
    }
  }
  return absl::OkStatus();
}

// Adopts the entries of `version_vector` that are ahead of ours, except `self`'s.
absl::Status AdoptVector(Connection& c, const std::string& self, const VersionVector& version_vector) {
  for (const auto& [origin, sequence] : version_vector) {
    if (origin == self || origin.empty()) continue;
    absl::StatusOr<uint64_t> ours = ReadVectorEntry(c, origin);
    if (!ours.ok()) return ours.status();
    if (absl::Status s = AdvanceContiguous(c, origin, std::max(*ours, sequence)); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status DropStaged(Connection& c, const std::string& source) {
  if (absl::Status s = c.Exec(kCreateStagingSql); !s.ok()) return s;
  absl::StatusOr<CachedStatement> drop = c.PrepareCached(kDropStagedSql);
  if (!drop.ok()) return drop.status();
  (*drop)->BindText(1, source);
  return (*drop)->Run();
}

// Merges what is staged from `source` (see SnapshotMerger) and drops it; returns the highest
// stamp merged.
absl::StatusOr<uint64_t> MergeStaged(Connection& c, const std::string& self, const std::string& source) {
  if (absl::Status s = c.Exec(kCreateStagingSql); !s.ok()) return s;
  uint64_t max_hlc = 0;
  SnapshotMerger merger(c, self);
  {
    absl::StatusOr<CachedStatement> staged = c.PrepareCached(kStagedRecordsSql);
    if (!staged.ok()) return staged.status();
    (*staged)->BindText(1, source);
    while (true) {
      absl::StatusOr<bool> row = (*staged)->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      RequestRecord r;
      if (!r.ParseFromString((*staged)->ColumnBlob(0))) {
        return absl::DataLossError("request store: a staged snapshot record does not parse");
      }
      max_hlc = std::max(max_hlc, r.hlc());
      if (absl::Status s = merger.Merge(r); !s.ok()) return s;
    }
  }
  if (absl::Status s = merger.Finish(); !s.ok()) return s;
  if (absl::Status s = DropStaged(c, source); !s.ok()) return s;
  return max_hlc;
}

}  // namespace

absl::StatusOr<SnapshotPage> RequestStore::ReadSnapshotPage(const SnapshotCursor& after, size_t limit) const {
  SnapshotPage page;
  // Read first, before the records: see SnapshotPage.
  absl::StatusOr<VersionVector> vv = GetVersionVector();
  if (!vv.ok()) return vv.status();
  page.version_vector = *std::move(vv);
  page.next = after;
  if (limit == 0) return page;
  absl::StatusOr<sqlite::ReaderPool::Lease> reader = impl_->Reader();
  if (!reader.ok()) return reader.status();
  static const std::string* const kPageSql =
      new std::string(absl::StrCat("SELECT ", kRecordColumns,
                                   " FROM requests WHERE (ca_config, request_id) > (?1, ?2) "
                                   "ORDER BY ca_config, request_id LIMIT ?3"));
  absl::StatusOr<CachedStatement> st = (*reader)->PrepareCached(*kPageSql);
  if (!st.ok()) return st.status();
  (*st)
      ->BindText(1, after.ca_config)
      .BindInt64(2, after.request_id)
      .BindInt64(3, static_cast<int64_t>(std::min<size_t>(limit, std::numeric_limits<int32_t>::max())));
  while (true) {
    absl::StatusOr<bool> row = (*st)->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    page.records.push_back(RowToRecord(**st));
  }
  page.done = page.records.size() < limit;
  if (!page.records.empty()) {
    page.next.ca_config = page.records.back().ca_config();
    page.next.request_id = page.records.back().request_id();
  }
  return page;
}

namespace {

// Ends the read transaction a bulk join's read opened, however the read ends.
class ReadTransaction {
 public:
  static absl::StatusOr<ReadTransaction> Begin(Connection& c) {
    if (absl::Status s = c.Exec("BEGIN"); !s.ok()) return s;
    return ReadTransaction(&c);
  }
  ReadTransaction(ReadTransaction&& other) noexcept : c_(std::exchange(other.c_, nullptr)) {}
  ReadTransaction& operator=(ReadTransaction&&) = delete;
  ~ReadTransaction() {
    if (c_ != nullptr && !c_->autocommit()) c_->Exec("ROLLBACK").IgnoreError();
  }

 private:
  explicit ReadTransaction(Connection* c) : c_(c) {}
  Connection* c_;
};

// The mutations held beyond the vector, with the key of the record each changed (a row
// logged by schema 1 carries a copy of the record instead).
constexpr char kHeldForJoinSql[] =
    "SELECT m.origin, m.sequence, m.hlc, m.ca_config, m.request_id, m.record FROM mutations m "
    "LEFT JOIN version_vector v ON v.origin = m.origin WHERE m.sequence > IFNULL(v.sequence, 0) "
    "ORDER BY m.origin, m.sequence";

// What a record costs in a batch, near enough to bound a batch's size without serializing.
size_t ApproximateBytes(const RequestRecord& r) {
  return r.ca_config().size() + r.message().size() + r.certificate_der().size() + r.csr_sha256().size() +
         r.template_name().size() + r.requester().size() + r.node_id().size() + 48;
}

}  // namespace

absl::Status RequestStore::ReadForJoin(size_t batch_bytes, absl::FunctionRef<absl::Status(const JoinHeader&)> on_header,
                                       absl::FunctionRef<absl::Status(JoinBatch&)> on_batch) const {
  absl::StatusOr<sqlite::ReaderPool::Lease> reader = impl_->Reader();
  if (!reader.ok()) return reader.status();
  Connection& c = **reader;
  // Every read below sees the same state of the file.
  absl::StatusOr<ReadTransaction> txn = ReadTransaction::Begin(c);
  if (!txn.ok()) return txn.status();
  JoinHeader header;
  {
    absl::StatusOr<Statement> st = c.Prepare(rows::kVersionVectorSql);
    if (!st.ok()) return st.status();
    while (true) {
      absl::StatusOr<bool> row = st->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      header.version_vector[st->ColumnText(0)] = static_cast<uint64_t>(st->ColumnInt64(1));
    }
  }
  absl::StatusOr<int64_t> count = c.QueryInt64("SELECT COUNT(*) FROM requests");
  if (!count.ok()) return count.status();
  header.records = *count;
  if (absl::Status s = on_header(header); !s.ok()) return s;

  const size_t limit = std::max<size_t>(batch_bytes, 1);
  JoinBatch batch;
  size_t bytes = 0;
  auto flush = [&]() -> absl::Status {
    if (batch.held.empty() && batch.records.empty()) return absl::OkStatus();
    absl::Status s = on_batch(batch);
    batch.held.clear();
    batch.records.clear();
    bytes = 0;
    return s;
  };
  {
    absl::StatusOr<Statement> st = c.Prepare(kHeldForJoinSql);
    if (!st.ok()) return st.status();
    while (true) {
      absl::StatusOr<bool> row = st->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      HeldMutation& m = batch.held.emplace_back();
      m.origin = st->ColumnText(0);
      m.sequence = static_cast<uint64_t>(st->ColumnInt64(1));
      m.hlc = static_cast<uint64_t>(st->ColumnInt64(2));
      if (!st->ColumnIsNull(3)) {
        m.ca_config = st->ColumnText(3);
        m.request_id = static_cast<uint32_t>(st->ColumnInt64(4));
      } else {  // logged by schema 1, with a copy of the record
        RequestRecord copy;
        if (!copy.ParseFromString(st->ColumnBlob(5))) {
          return absl::DataLossError(absl::StrCat("request store ", impl_->options().path.string(), ": mutation ",
                                                  m.origin, "/", m.sequence, " does not parse as a RequestRecord"));
        }
        m.ca_config = copy.ca_config();
        m.request_id = copy.request_id();
      }
      bytes += m.origin.size() + m.ca_config.size() + 32;
      if (bytes >= limit) {
        if (absl::Status s = flush(); !s.ok()) return s;
      }
    }
  }
  {
    static const std::string* const kAllSql =
        new std::string(absl::StrCat("SELECT ", kRecordColumns, " FROM requests ORDER BY ca_config, request_id"));
    absl::StatusOr<Statement> st = c.Prepare(*kAllSql);
    if (!st.ok()) return st.status();
    while (true) {
      absl::StatusOr<bool> row = st->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      bytes += ApproximateBytes(batch.records.emplace_back(RowToRecord(*st)));
      if (bytes >= limit) {
        if (absl::Status s = flush(); !s.ok()) return s;
      }
    }
  }
  return flush();
}

absl::Status RequestStore::ApplySnapshot(const std::vector<RequestRecord>& records,
                                         const VersionVector& version_vector) {
  if (absl::Status s = ValidateSnapshotRecords(records); !s.ok()) return s;
  Impl& impl = *impl_;
  absl::Status written = impl.Write([&](Connection& c) -> absl::Status {
    SnapshotMerger merger(c, impl.options().node_id);
    for (const RequestRecord& r : records) {
      if (absl::Status s = merger.Merge(r); !s.ok()) return s;
    }
    if (absl::Status s = merger.Finish(); !s.ok()) return s;
    if (absl::Status s = c.Exec(rows::kClearRebuildSql); !s.ok()) return s;
    return AdoptVector(c, impl.options().node_id, version_vector);
  });
  if (!written.ok()) return written;
  for (const RequestRecord& r : records) impl.hlc().Observe(r.hlc());
  return absl::OkStatus();
}

absl::Status RequestStore::StageSnapshotPage(const std::string& source, const std::vector<RequestRecord>& records) {
  if (absl::Status s = ValidateSnapshotRecords(records); !s.ok()) return s;
  return impl_->Write([&](Connection& c) -> absl::Status {
    if (absl::Status s = c.Exec(kCreateStagingSql); !s.ok()) return s;
    for (const RequestRecord& r : records) {
      absl::StatusOr<CachedStatement> stage = c.PrepareCached(kStageRecordSql);
      if (!stage.ok()) return stage.status();
      (*stage)
          ->BindText(1, source)
          .BindText(2, r.ca_config())
          .BindInt64(3, r.request_id())
          .BindBlob(4, r.SerializeAsString());
      if (absl::Status s = (*stage)->Run(); !s.ok()) return s;
    }
    return absl::OkStatus();
  });
}

absl::Status RequestStore::CommitSnapshot(const std::string& source, const VersionVector& version_vector) {
  Impl& impl = *impl_;
  uint64_t max_hlc = 0;
  absl::Status written = impl.Write([&](Connection& c) -> absl::Status {
    absl::StatusOr<uint64_t> merged = MergeStaged(c, impl.options().node_id, source);
    if (!merged.ok()) return merged.status();
    max_hlc = *merged;
    if (absl::Status s = c.Exec(rows::kClearRebuildSql); !s.ok()) return s;
    return AdoptVector(c, impl.options().node_id, version_vector);
  });
  if (!written.ok()) return written;
  impl.hlc().Observe(max_hlc);
  return absl::OkStatus();
}

absl::Status RequestStore::DiscardSnapshot(const std::string& source) {
  return impl_->Write([&](Connection& c) { return DropStaged(c, source); });
}

}  // namespace adcsc::store
