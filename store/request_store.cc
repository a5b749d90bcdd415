#include "store/request_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "store/hlc.h"
#include "store/schema.h"
#include "store/sqlite_db.h"
#include "store/wal_checkpointer.h"

namespace adcsc::store {
namespace {

using adcsc::store::v1::Mutation;
using sqlite::CachedStatement;
using sqlite::Connection;
using sqlite::Statement;

static_assert(RequestStore::kSchemaVersion == schema::kLatestVersion,
              "RequestStore::kSchemaVersion must track the schema migrations");

// The DB file holds issued certificates and the cluster's request history: owner only.
constexpr mode_t kStoreFileMode = 0600;
// Node ids appear in every mutation and log line; keep them short and printable.
constexpr size_t kMaxNodeIdBytes = 128;
// A CSR digest is a binary SHA-256.
constexpr size_t kCsrSha256Bytes = 32;

constexpr char kMetaNodeId[] = "node_id";
constexpr char kMetaCreatedMs[] = "created_ms";

// Column order shared by every SELECT of a request row and by RowToRecord().
constexpr char kRecordColumns[] =
    "ca_config, request_id, status, disposition, message, certificate_der, csr_sha256, "
    "template_name, requester, node_id, created_ms, updated_ms, hlc, hresult";

// The SQL of the statements run on every request. Built once: connections cache statements
// by their text (Connection::PrepareCached), and rebuilding the text per call would cost an
// allocation and a copy each time for nothing.
const std::string& SelectRecordSql() {
  static const std::string* const kSql = new std::string(
      absl::StrCat("SELECT ", kRecordColumns, " FROM requests WHERE ca_config = ?1 AND request_id = ?2"));
  return *kSql;
}

const std::string& UpsertRecordSql() {
  static const std::string* const kSql =
      new std::string(absl::StrCat("INSERT INTO requests (", kRecordColumns,
                                   ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) "
                                   "ON CONFLICT (ca_config, request_id) DO UPDATE SET "
                                   "status = excluded.status, disposition = excluded.disposition, "
                                   "message = excluded.message, certificate_der = excluded.certificate_der, "
                                   "csr_sha256 = excluded.csr_sha256, template_name = excluded.template_name, "
                                   "requester = excluded.requester, node_id = excluded.node_id, "
                                   "created_ms = excluded.created_ms, updated_ms = excluded.updated_ms, "
                                   "hlc = excluded.hlc, hresult = excluded.hresult"));
  return *kSql;
}

const std::string& SelectByDedupeKeySql() {
  static const std::string* const kSql =
      new std::string(absl::StrCat("SELECT ", kRecordColumns,
                                   " FROM requests WHERE ca_config = ?1 AND template_name = ?2 AND csr_sha256 = ?3 "
                                   "AND created_ms >= ?4 ORDER BY created_ms DESC, request_id DESC LIMIT 1"));
  return *kSql;
}

constexpr char kSelectLocalSequenceSql[] = "SELECT sequence FROM version_vector WHERE origin = ?1";
constexpr char kAppendMutationSql[] =
    "INSERT INTO mutations (origin, sequence, hlc, record, ca_config, request_id) "
    "VALUES (?1, ?2, ?3, x'', ?4, ?5)";
constexpr char kAdvanceVersionVectorSql[] =
    "INSERT INTO version_vector (origin, sequence) VALUES (?1, ?2) "
    "ON CONFLICT (origin) DO UPDATE SET sequence = excluded.sequence";
// A mutation logged by reference (schema 2) is sent as its record stands now; one logged by
// an older version carries its own copy in `record`.
const std::string& MutationsSinceSql() {
  static const std::string* const kSql = new std::string(absl::StrCat(
      "SELECT m.sequence, m.record, r.", absl::StrReplaceAll(kRecordColumns, {{", ", ", r."}}),
      " FROM mutations m LEFT JOIN requests r ON r.ca_config = m.ca_config AND r.request_id = m.request_id "
      "WHERE m.origin = ?1 AND m.sequence > ?2 ORDER BY m.sequence LIMIT ?3"));
  return *kSql;
}
constexpr char kVersionVectorSql[] = "SELECT origin, sequence FROM version_vector";
constexpr char kMutationHeldSql[] = "SELECT 1 FROM mutations WHERE origin = ?1 AND sequence = ?2";
constexpr char kLoggedAfterSql[] =
    "SELECT sequence FROM mutations WHERE origin = ?1 AND sequence > ?2 ORDER BY sequence";
constexpr char kLoggedOriginsSql[] = "SELECT DISTINCT origin FROM mutations ORDER BY origin";
constexpr char kHealthWriteSql[] =
    "INSERT INTO health_scratch (id, written_ms, node_id) VALUES (1, ?1, ?2) "
    "ON CONFLICT (id) DO UPDATE SET written_ms = excluded.written_ms, "
    "node_id = excluded.node_id";

// The record in kRecordColumns order, starting at column `first`.
RequestRecord RowToRecord(const Statement& row, int first = 0) {
  RequestRecord r;
  r.set_ca_config(row.ColumnText(first + 0));
  r.set_request_id(static_cast<uint32_t>(row.ColumnInt64(first + 1)));
  r.set_status(static_cast<RecordStatus>(row.ColumnInt64(first + 2)));
  r.set_disposition(static_cast<uint32_t>(row.ColumnInt64(first + 3)));
  r.set_message(row.ColumnText(first + 4));
  r.set_certificate_der(row.ColumnBlob(first + 5));
  r.set_csr_sha256(row.ColumnBlob(first + 6));
  r.set_template_name(row.ColumnText(first + 7));
  r.set_requester(row.ColumnText(first + 8));
  r.set_node_id(row.ColumnText(first + 9));
  r.set_created_ms(row.ColumnInt64(first + 10));
  r.set_updated_ms(row.ColumnInt64(first + 11));
  r.set_hlc(static_cast<uint64_t>(row.ColumnInt64(first + 12)));  // stored bit for bit
  r.set_hresult(static_cast<uint32_t>(row.ColumnInt64(first + 13)));
  return r;
}

absl::StatusOr<std::optional<RequestRecord>> ReadRecord(Connection& c, const std::string& ca_config,
                                                        uint32_t request_id) {
  absl::StatusOr<CachedStatement> st = c.PrepareCached(SelectRecordSql());
  if (!st.ok()) return st.status();
  (*st)->BindText(1, ca_config).BindInt64(2, request_id);
  absl::StatusOr<bool> row = (*st)->Step();
  if (!row.ok()) return row.status();
  if (!*row) return std::nullopt;
  return RowToRecord(**st);
}

absl::Status WriteRecord(Connection& c, const RequestRecord& r) {
  absl::StatusOr<CachedStatement> st = c.PrepareCached(UpsertRecordSql());
  if (!st.ok()) return st.status();
  (*st)
      ->BindText(1, r.ca_config())
      .BindInt64(2, r.request_id())
      .BindInt64(3, r.status())
      .BindInt64(4, r.disposition())
      .BindText(5, r.message())
      .BindBlob(6, r.certificate_der())
      .BindBlob(7, r.csr_sha256())
      .BindText(8, r.template_name())
      .BindText(9, r.requester())
      .BindText(10, r.node_id())
      .BindInt64(11, r.created_ms())
      .BindInt64(12, r.updated_ms())
      .BindInt64(13, static_cast<int64_t>(r.hlc()))
      .BindInt64(14, r.hresult());
  return (*st)->Run();
}

// Appends a change of `record` (stored already, in this transaction) to the mutation log as
// the next sequence of `origin`, and advances the version vector in the same transaction, so
// the log and the vector never disagree. The log holds the record's key, not a copy.
absl::StatusOr<uint64_t> AppendMutation(Connection& c, const std::string& origin, const RequestRecord& record) {
  uint64_t sequence = 0;
  {
    // Scoped so the read is reset before the writes below touch the same table.
    absl::StatusOr<CachedStatement> read = c.PrepareCached(kSelectLocalSequenceSql);
    if (!read.ok()) return read.status();
    (*read)->BindText(1, origin);
    absl::StatusOr<bool> row = (*read)->Step();
    if (!row.ok()) return row.status();
    sequence = (*row ? static_cast<uint64_t>((*read)->ColumnInt64(0)) : 0) + 1;
  }

  absl::StatusOr<CachedStatement> append = c.PrepareCached(kAppendMutationSql);
  if (!append.ok()) return append.status();
  (*append)
      ->BindText(1, origin)
      .BindInt64(2, static_cast<int64_t>(sequence))
      .BindInt64(3, static_cast<int64_t>(record.hlc()))
      .BindText(4, record.ca_config())
      .BindInt64(5, record.request_id());
  if (absl::Status s = (*append)->Run(); !s.ok()) return s;

  absl::StatusOr<CachedStatement> advance = c.PrepareCached(kAdvanceVersionVectorSql);
  if (!advance.ok()) return advance.status();
  (*advance)->BindText(1, origin).BindInt64(2, static_cast<int64_t>(sequence));
  if (absl::Status s = (*advance)->Run(); !s.ok()) return s;
  return sequence;
}

// Highest contiguous sequence recorded for `origin` in the version vector (0 if none).
absl::StatusOr<uint64_t> ReadVectorEntry(Connection& c, const std::string& origin) {
  absl::StatusOr<CachedStatement> read = c.PrepareCached(kSelectLocalSequenceSql);
  if (!read.ok()) return read.status();
  (*read)->BindText(1, origin);
  absl::StatusOr<bool> row = (*read)->Step();
  if (!row.ok()) return row.status();
  return *row ? static_cast<uint64_t>((*read)->ColumnInt64(0)) : 0;
}

absl::Status WriteVectorEntry(Connection& c, const std::string& origin, uint64_t sequence) {
  absl::StatusOr<CachedStatement> advance = c.PrepareCached(kAdvanceVersionVectorSql);
  if (!advance.ok()) return advance.status();
  (*advance)->BindText(1, origin).BindInt64(2, static_cast<int64_t>(sequence));
  return (*advance)->Run();
}

// Moves the vector entry of `origin` from `from` over the run of logged sequences that
// follows it without a gap, so mutations that arrived ahead of a gap count once it fills.
absl::Status AdvanceContiguous(Connection& c, const std::string& origin, uint64_t from) {
  uint64_t next = from;
  {
    absl::StatusOr<CachedStatement> scan = c.PrepareCached(kLoggedAfterSql);
    if (!scan.ok()) return scan.status();
    (*scan)->BindText(1, origin).BindInt64(2, static_cast<int64_t>(from));
    while (true) {
      absl::StatusOr<bool> row = (*scan)->Step();
      if (!row.ok()) return row.status();
      if (!*row || static_cast<uint64_t>((*scan)->ColumnInt64(0)) != next + 1) break;
      ++next;
    }
  }
  return WriteVectorEntry(c, origin, next);
}

// Merges `incoming` into the stored record with the same key; writes only on change.
// Returns the stored record when it changed, nullopt when it did not.
absl::StatusOr<std::optional<RequestRecord>> MergeIntoStore(Connection& c, const RequestRecord& incoming) {
  absl::StatusOr<std::optional<RequestRecord>> existing = ReadRecord(c, incoming.ca_config(), incoming.request_id());
  if (!existing.ok()) return existing.status();
  RequestRecord merged = existing->has_value() ? Merge(**existing, incoming) : incoming;
  if (existing->has_value() && merged.SerializeAsString() == (*existing)->SerializeAsString()) {
    return std::nullopt;
  }
  if (absl::Status s = WriteRecord(c, merged); !s.ok()) return s;
  return merged;
}

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

// Reads the logged mutations of `origin` after `after` (oldest first, at most `limit`) on
// `c` and appends them to `out`.
absl::Status ReadMutationsSince(Connection& c, const std::filesystem::path& path, const std::string& origin,
                                uint64_t after, size_t limit, std::vector<Mutation>& out) {
  constexpr uint64_t kMaxStoredSequence = std::numeric_limits<int64_t>::max();
  if (limit == 0 || after >= kMaxStoredSequence) return absl::OkStatus();
  absl::StatusOr<CachedStatement> st = c.PrepareCached(MutationsSinceSql());
  if (!st.ok()) return st.status();
  (*st)
      ->BindText(1, origin)
      .BindInt64(2, static_cast<int64_t>(after))
      .BindInt64(3, static_cast<int64_t>(std::min<uint64_t>(limit, kMaxStoredSequence)));
  while (true) {
    absl::StatusOr<bool> row = (*st)->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    Mutation& m = out.emplace_back();
    m.set_origin(origin);
    m.set_sequence(static_cast<uint64_t>((*st)->ColumnInt64(0)));
    const std::string copy = (*st)->ColumnBlob(1);
    if (copy.empty()) {  // logged by reference: the record as it stands
      *m.mutable_record() = RowToRecord(**st, 2);
      if (m.record().ca_config().empty()) {
        return absl::DataLossError(absl::StrCat("request store ", path.string(), ": mutation ", origin, "/",
                                                m.sequence(),
                                                " names a record that is not in the store; the file is damaged. "
                                                "Restore it from a backup or let the node resync from its peers"));
      }
    } else if (!m.mutable_record()->ParseFromString(copy)) {
      return absl::DataLossError(absl::StrCat("request store ", path.string(), ": mutation ", origin, "/", m.sequence(),
                                              " does not parse as a RequestRecord; the file is damaged. Restore it "
                                              "from a backup or let the node resync from its peers"));
    }
  }
  return absl::OkStatus();
}

// The fields a local write can change, compared to decide whether it changes anything.
bool SameContent(const RequestRecord& a, const RequestRecord& b) {
  return a.status() == b.status() && a.disposition() == b.disposition() && a.message() == b.message() &&
         a.certificate_der() == b.certificate_der() && a.hresult() == b.hresult() && a.csr_sha256() == b.csr_sha256() &&
         a.template_name() == b.template_name() && a.requester() == b.requester();
}

// The local-write rule documented on RequestStore::Put: the unstamped record to store, or
// nullopt when `update` changes nothing.
std::optional<RequestRecord> ApplyLocalUpdate(const std::optional<RequestRecord>& existing,
                                              const RequestRecord& update) {
  if (!existing.has_value()) return update;
  const int update_rank = StatusRank(update.status());
  const int existing_rank = StatusRank(existing->status());
  if (update_rank < existing_rank) return std::nullopt;
  // Terminal outcomes share a rank but are final: a later issued/denied/failed of a
  // different kind (say, a transient error recorded as FAILED over an ISSUED record) must
  // not replace it. Only REVOKED, one rank up, follows them.
  if (update_rank == existing_rank && update.status() != existing->status()) return std::nullopt;

  RequestRecord merged = update;
  // A retrieve often does not know how the request was submitted; keep what we know.
  if (merged.csr_sha256().empty()) merged.set_csr_sha256(existing->csr_sha256());
  if (merged.template_name().empty()) merged.set_template_name(existing->template_name());
  if (merged.requester().empty()) merged.set_requester(existing->requester());
  if (update_rank == existing_rank && SameContent(merged, *existing)) return std::nullopt;
  return merged;
}

absl::Status ValidateUpdate(const RequestRecord& update) {
  auto invalid = [&update](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("RequestStore::Put(ca_config='", update.ca_config(),
                                                   "', request_id=", update.request_id(), "): ", why));
  };
  if (update.ca_config().empty()) return invalid("ca_config is empty; build it with CaConfigKey()");
  if (update.request_id() == 0) {
    return invalid("request_id 0 is not an ID the CA assigned; only record answered requests");
  }
  if (StatusRank(update.status()) == 0) {
    return invalid(absl::StrCat("status ", static_cast<int>(update.status()), " is unspecified or unknown"));
  }
  if (!update.csr_sha256().empty() && update.csr_sha256().size() != kCsrSha256Bytes) {
    return invalid(absl::StrCat("csr_sha256 must be the 32-byte binary digest, got ", update.csr_sha256().size(),
                                " bytes (hex by mistake?)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateOptions(const StoreOptions& options) {
  if (options.path.empty()) {
    return absl::InvalidArgumentError("request store: no database path configured");
  }
  if (options.node_id.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("request store ", options.path.string(), ": node_id is empty; set the node's id"));
  }
  if (options.node_id.size() > kMaxNodeIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("request store ", options.path.string(), ": node_id is longer than ", kMaxNodeIdBytes, " bytes"));
  }
  return absl::OkStatus();
}

// Creates the file owner-only before SQLite sees it; SQLite gives its -wal and -shm files
// the same mode. An existing file keeps the mode the operator gave it.
absl::Status CreateFileIfAbsent(const std::filesystem::path& path) {
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : ".";
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return absl::FailedPreconditionError(
        absl::StrCat("request store ", path.string(), ": directory ", dir.string(),
                     " does not exist or is not a directory; create it, owned by the adcsc service user"));
  }
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, kStoreFileMode);
  if (fd < 0) {
    const int err = errno;
    return absl::PermissionDeniedError(
        absl::StrCat("request store ", path.string(), ": cannot open or create the file: ", std::strerror(err),
                     "; check that the adcsc service user can read and write it and its directory"));
  }
  ::close(fd);
  return absl::OkStatus();
}

// Records the node id in a new store, or checks it against the one already there.
absl::Status ClaimForNode(Connection& c, const std::string& node_id, int64_t now_ms) {
  absl::StatusOr<sqlite::Transaction> txn = sqlite::Transaction::Begin(c);
  if (!txn.ok()) return txn.status();
  absl::StatusOr<Statement> read = c.Prepare("SELECT value FROM meta WHERE key = ?1");
  if (!read.ok()) return read.status();
  read->BindText(1, kMetaNodeId);
  absl::StatusOr<bool> row = read->Step();
  if (!row.ok()) return row.status();
  if (*row) {
    const std::string owner = read->ColumnText(0);
    if (owner != node_id) {
      return absl::FailedPreconditionError(
          absl::StrCat("request store ", c.path().string(), " belongs to node '", owner,
                       "' but this node is configured as '", node_id,
                       "'; a data directory belongs to one node. Check node_id in the configuration, or "
                       "give this node its own data directory"));
    }
    return absl::OkStatus();  // nothing written; the empty transaction rolls back
  }
  absl::StatusOr<Statement> insert = c.Prepare("INSERT INTO meta (key, value) VALUES (?1, ?2), (?3, ?4)");
  if (!insert.ok()) return insert.status();
  insert->BindText(1, kMetaNodeId).BindText(2, node_id).BindText(3, kMetaCreatedMs).BindText(4, absl::StrCat(now_ms));
  if (absl::Status s = insert->Run(); !s.ok()) return s;
  return txn->Commit();
}

// The highest stamp already on disk, so that after a restart (maybe with the wall clock
// stepped back) new local stamps still order after old ones.
absl::StatusOr<uint64_t> MaxStoredHlc(Connection& c) {
  absl::StatusOr<int64_t> max_hlc = c.QueryInt64(
      "SELECT MAX(IFNULL((SELECT MAX(hlc) FROM requests), 0), "
      "IFNULL((SELECT MAX(hlc) FROM mutations), 0))");
  if (!max_hlc.ok()) return max_hlc.status();
  return static_cast<uint64_t>(*max_hlc);
}

}  // namespace

class RequestStore::Impl {
 public:
  Impl(StoreOptions options, const Clock* clock, std::unique_ptr<Connection> writer,
       std::unique_ptr<sqlite::WalCheckpointer> checkpointer)
      : options_(std::move(options)),
        clock_(clock),
        hlc_(clock),
        writer_(std::move(writer)),
        readers_(options_.path, sqlite::ConnectionSettings{.writer = false, .fsync = options_.fsync}),
        checkpointer_(std::move(checkpointer)) {}

  const StoreOptions& options() const { return options_; }
  const Clock& clock() const { return *clock_; }
  HybridLogicalClock& hlc() { return hlc_; }
  sqlite::GroupCommitWriter& writer() { return writer_; }
  absl::StatusOr<sqlite::ReaderPool::Lease> Reader() { return readers_.Acquire(); }

 private:
  const StoreOptions options_;
  const Clock* const clock_;
  HybridLogicalClock hlc_;
  // Declared before readers_ so the read connections close first and the writer's close
  // can checkpoint and remove the WAL.
  sqlite::GroupCommitWriter writer_;
  sqlite::ReaderPool readers_;
  // Declared last so it is destroyed first: its hook on the writer connection and its own
  // connection must be gone before the writer closes (as the last connection, which is what
  // lets that close checkpoint and remove the WAL).
  std::unique_ptr<sqlite::WalCheckpointer> checkpointer_;
};

absl::StatusOr<std::unique_ptr<RequestStore>> RequestStore::Open(const StoreOptions& options) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  const Clock* clock = options.clock != nullptr ? options.clock : SystemClock::Default();
  if (absl::Status s = CreateFileIfAbsent(options.path); !s.ok()) return s;

  absl::StatusOr<std::unique_ptr<Connection>> writer =
      Connection::OpenConfigured(options.path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                 sqlite::ConnectionSettings{.writer = true, .fsync = options.fsync});
  if (!writer.ok()) return writer.status();
  if (absl::Status s = schema::Migrate(**writer); !s.ok()) return s;
  if (absl::Status s = ClaimForNode(**writer, options.node_id, clock->NowUnixMillis()); !s.ok()) {
    return s;
  }
  absl::StatusOr<uint64_t> max_hlc = MaxStoredHlc(**writer);
  if (!max_hlc.ok()) return max_hlc.status();

  // Started last: from here on, checkpoints happen off the commit path. Its fsync follows the
  // writer's, since a checkpoint that does not sync could lose what a synced commit kept.
  sqlite::WalCheckpointerOptions checkpoint_options;
  checkpoint_options.fsync = options.fsync;
  checkpoint_options.on_error = options.on_checkpoint_error;
  absl::StatusOr<std::unique_ptr<sqlite::WalCheckpointer>> checkpointer =
      sqlite::WalCheckpointer::Start((*writer)->raw(), std::move(checkpoint_options));
  if (!checkpointer.ok()) return checkpointer.status();

  auto impl = std::make_unique<Impl>(options, clock, std::move(*writer), std::move(*checkpointer));
  impl->hlc().Observe(*max_hlc);
  return std::unique_ptr<RequestStore>(new RequestStore(std::move(impl)));
}

RequestStore::RequestStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RequestStore::~RequestStore() = default;

const std::string& RequestStore::node_id() const { return impl_->options().node_id; }

absl::StatusOr<WriteResult> RequestStore::Put(const RequestRecord& update) {
  if (absl::Status s = ValidateUpdate(update); !s.ok()) return s;
  Impl& impl = *impl_;
  WriteResult result;
  absl::Status written = impl.writer().Write([&](Connection& c) -> absl::Status {
    absl::StatusOr<std::optional<RequestRecord>> existing = ReadRecord(c, update.ca_config(), update.request_id());
    if (!existing.ok()) return existing.status();

    std::optional<RequestRecord> next = ApplyLocalUpdate(*existing, update);
    if (!next.has_value()) {
      result = WriteResult{.record = **existing, .changed = false, .sequence = 0};
      return absl::OkStatus();
    }
    // Stamp after everything stored for this key, even a peer's stamp from a clock that
    // runs ahead of ours; otherwise replicas would prefer the old version on merge.
    if (existing->has_value()) impl.hlc().Observe((*existing)->hlc());
    const int64_t now_ms = impl.clock().NowUnixMillis();
    next->set_hlc(impl.hlc().Now());
    next->set_node_id(impl.options().node_id);
    next->set_updated_ms(now_ms);
    next->set_created_ms(existing->has_value() && (*existing)->created_ms() != 0 ? (*existing)->created_ms() : now_ms);
    if (existing->has_value() && !Supersedes(*next, **existing)) {
      return absl::InternalError(absl::StrCat("RequestStore::Put: the stamped update for ", update.ca_config(), " #",
                                              update.request_id(),
                                              " does not supersede the stored record; this is a bug"));
    }

    if (absl::Status s = WriteRecord(c, *next); !s.ok()) return s;
    absl::StatusOr<uint64_t> sequence = AppendMutation(c, impl.options().node_id, *next);
    if (!sequence.ok()) return sequence.status();
    result = WriteResult{.record = *std::move(next), .changed = true, .sequence = *sequence};
    return absl::OkStatus();
  });
  if (!written.ok()) return written;
  return result;
}

absl::StatusOr<std::optional<RequestRecord>> RequestStore::Get(const std::string& ca_config,
                                                               uint32_t request_id) const {
  absl::StatusOr<sqlite::ReaderPool::Lease> reader = impl_->Reader();
  if (!reader.ok()) return reader.status();
  return ReadRecord(**reader, ca_config, request_id);
}

absl::StatusOr<uint32_t> RequestStore::MaxRequestId(const std::string& ca_config) const {
  absl::StatusOr<sqlite::ReaderPool::Lease> reader = impl_->Reader();
  if (!reader.ok()) return reader.status();
  // The primary key (ca_config, request_id) answers this from one index page.
  absl::StatusOr<CachedStatement> st =
      (*reader)->PrepareCached("SELECT coalesce(max(request_id), 0) FROM requests WHERE ca_config = ?1");
  if (!st.ok()) return st.status();
  (*st)->BindText(1, ca_config);
  absl::StatusOr<bool> row = (*st)->Step();
  if (!row.ok()) return row.status();
  if (!*row) return 0u;
  return static_cast<uint32_t>((*st)->ColumnInt64(0));
}

absl::StatusOr<std::optional<RequestRecord>> RequestStore::FindByDedupeKey(const std::string& ca_config,
                                                                           const std::string& template_name,
                                                                           const std::string& csr_sha256,
                                                                           int64_t not_before_ms) const {
  if (csr_sha256.size() != kCsrSha256Bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("RequestStore::FindByDedupeKey: csr_sha256 must be the 32-byte binary "
                     "digest, got ",
                     csr_sha256.size(), " bytes"));
  }
  absl::StatusOr<sqlite::ReaderPool::Lease> reader = impl_->Reader();
  if (!reader.ok()) return reader.status();
  absl::StatusOr<CachedStatement> st = (*reader)->PrepareCached(SelectByDedupeKeySql());
  if (!st.ok()) return st.status();
  (*st)->BindText(1, ca_config).BindText(2, template_name).BindBlob(3, csr_sha256).BindInt64(4, not_before_ms);
  absl::StatusOr<bool> row = (*st)->Step();
  if (!row.ok()) return row.status();
  if (!*row) return std::nullopt;
  return RowToRecord(**st);
}

namespace {

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

absl::StatusOr<std::vector<Mutation>> RequestStore::MutationsSince(const std::string& origin, uint64_t after,
                                                                   size_t limit) const {
  std::vector<Mutation> mutations;
  if (limit == 0) return mutations;
  absl::StatusOr<sqlite::ReaderPool::Lease> reader = impl_->Reader();
  if (!reader.ok()) return reader.status();
  if (absl::Status s = ReadMutationsSince(**reader, impl_->options().path, origin, after, limit, mutations); !s.ok()) {
    return s;
  }
  return mutations;
}

absl::StatusOr<RemoteApplyResult> RequestStore::ApplyRemote(const std::vector<Mutation>& mutations) {
  for (const Mutation& m : mutations) {
    if (m.origin().empty() || m.sequence() == 0 || m.record().ca_config().empty() || m.record().request_id() == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("RequestStore::ApplyRemote: mutation '", m.origin(), "'/", m.sequence(), " for '",
                       m.record().ca_config(), "' #", m.record().request_id(),
                       " lacks an origin, a sequence or a record key; the peer that sent it is faulty"));
    }
  }
  Impl& impl = *impl_;
  const std::string& self = impl.options().node_id;
  RemoteApplyResult result;
  absl::Status written = impl.writer().Write([&](Connection& c) -> absl::Status {
    // Reset per attempt: the writer may run this function once only, but the result must
    // describe exactly what this transaction did.
    result.is_new.assign(mutations.size(), false);
    std::map<std::string, uint64_t> touched;  // origin -> vector entry before this batch
    for (size_t i = 0; i < mutations.size(); ++i) {
      const Mutation& m = mutations[i];
      if (m.origin() == self) continue;  // we are the authority on our own log
      auto [it, inserted] = touched.try_emplace(m.origin(), 0);
      if (inserted) {
        absl::StatusOr<uint64_t> entry = ReadVectorEntry(c, m.origin());
        if (!entry.ok()) return entry.status();
        it->second = *entry;
      }
      if (m.sequence() <= it->second) continue;
      {
        absl::StatusOr<CachedStatement> held = c.PrepareCached(kMutationHeldSql);
        if (!held.ok()) return held.status();
        (*held)->BindText(1, m.origin()).BindInt64(2, static_cast<int64_t>(m.sequence()));
        absl::StatusOr<bool> row = (*held)->Step();
        if (!row.ok()) return row.status();
        if (*row) continue;
      }
      absl::StatusOr<CachedStatement> append = c.PrepareCached(kAppendMutationSql);
      if (!append.ok()) return append.status();
      (*append)
          ->BindText(1, m.origin())
          .BindInt64(2, static_cast<int64_t>(m.sequence()))
          .BindInt64(3, static_cast<int64_t>(m.record().hlc()))
          .BindText(4, m.record().ca_config())
          .BindInt64(5, m.record().request_id());
      if (absl::Status s = (*append)->Run(); !s.ok()) return s;
      if (absl::Status s = MergeIntoStore(c, m.record()).status(); !s.ok()) return s;
      result.is_new[i] = true;
    }
    for (const auto& [origin, before] : touched) {
      if (absl::Status s = AdvanceContiguous(c, origin, before); !s.ok()) return s;
    }
    return absl::OkStatus();
  });
  if (!written.ok()) return written;
  // Later local writes must order after what peers stamped, as after a restart.
  for (const Mutation& m : mutations) impl.hlc().Observe(m.record().hlc());
  absl::StatusOr<VersionVector> vv = GetVersionVector();
  if (!vv.ok()) return vv.status();
  result.version_vector = *std::move(vv);
  return result;
}

absl::StatusOr<std::vector<Mutation>> RequestStore::MutationsMissing(const VersionVector& theirs, size_t limit) const {
  return MutationsMissing(theirs, HeldSequences{}, limit);
}

absl::StatusOr<HeldSequences> RequestStore::HeldBeyondVector(size_t max_per_origin) const {
  HeldSequences held;
  if (max_per_origin == 0) return held;
  absl::StatusOr<sqlite::ReaderPool::Lease> reader = impl_->Reader();
  if (!reader.ok()) return reader.status();
  absl::StatusOr<CachedStatement> st = (*reader)->PrepareCached(
      "SELECT m.origin, m.sequence FROM mutations m LEFT JOIN version_vector v ON v.origin = m.origin "
      "WHERE m.sequence > IFNULL(v.sequence, 0) ORDER BY m.origin, m.sequence");
  if (!st.ok()) return st.status();
  while (true) {
    absl::StatusOr<bool> row = (*st)->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    std::vector<uint64_t>& seqs = held[(*st)->ColumnText(0)];
    if (seqs.size() < max_per_origin) seqs.push_back(static_cast<uint64_t>((*st)->ColumnInt64(1)));
  }
  return held;
}

absl::StatusOr<std::vector<Mutation>> RequestStore::MutationsMissing(const VersionVector& theirs,
                                                                     const HeldSequences& also_held,
                                                                     size_t limit) const {
  std::vector<Mutation> mutations;
  if (limit == 0) return mutations;
  absl::StatusOr<sqlite::ReaderPool::Lease> reader = impl_->Reader();
  if (!reader.ok()) return reader.status();
  std::vector<std::string> origins;
  {
    absl::StatusOr<CachedStatement> st = (*reader)->PrepareCached(kLoggedOriginsSql);
    if (!st.ok()) return st.status();
    while (true) {
      absl::StatusOr<bool> row = (*st)->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      origins.push_back((*st)->ColumnText(0));
    }
  }
  for (const std::string& origin : origins) {
    if (mutations.size() >= limit) break;
    auto it = theirs.find(origin);
    const uint64_t after = it == theirs.end() ? 0 : it->second;
    auto held_it = also_held.find(origin);
    static const std::vector<uint64_t> kNone;
    const std::vector<uint64_t>& held = held_it == also_held.end() ? kNone : held_it->second;
    // Read enough rows that skipping every held one still leaves the room we have.
    const size_t first_new = mutations.size();
    if (absl::Status s = ReadMutationsSince(**reader, impl_->options().path, origin, after,
                                            limit - mutations.size() + held.size(), mutations);
        !s.ok()) {
      return s;
    }
    auto skip = [&held](const Mutation& m) { return std::binary_search(held.begin(), held.end(), m.sequence()); };
    mutations.erase(std::remove_if(mutations.begin() + static_cast<std::ptrdiff_t>(first_new), mutations.end(), skip),
                    mutations.end());
    if (mutations.size() > limit) mutations.resize(limit);
  }
  return mutations;
}

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

absl::Status RequestStore::ApplySnapshot(const std::vector<RequestRecord>& records,
                                         const VersionVector& version_vector) {
  if (absl::Status s = ValidateSnapshotRecords(records); !s.ok()) return s;
  Impl& impl = *impl_;
  absl::Status written = impl.writer().Write([&](Connection& c) -> absl::Status {
    SnapshotMerger merger(c, impl.options().node_id);
    for (const RequestRecord& r : records) {
      if (absl::Status s = merger.Merge(r); !s.ok()) return s;
    }
    if (absl::Status s = merger.Finish(); !s.ok()) return s;
    return AdoptVector(c, impl.options().node_id, version_vector);
  });
  if (!written.ok()) return written;
  for (const RequestRecord& r : records) impl.hlc().Observe(r.hlc());
  return absl::OkStatus();
}

absl::Status RequestStore::StageSnapshotPage(const std::string& source, const std::vector<RequestRecord>& records) {
  if (absl::Status s = ValidateSnapshotRecords(records); !s.ok()) return s;
  return impl_->writer().Write([&](Connection& c) -> absl::Status {
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
  absl::Status written = impl.writer().Write([&](Connection& c) -> absl::Status {
    absl::StatusOr<uint64_t> merged = MergeStaged(c, impl.options().node_id, source);
    if (!merged.ok()) return merged.status();
    max_hlc = *merged;
    return AdoptVector(c, impl.options().node_id, version_vector);
  });
  if (!written.ok()) return written;
  impl.hlc().Observe(max_hlc);
  return absl::OkStatus();
}

absl::Status RequestStore::DiscardSnapshot(const std::string& source) {
  return impl_->writer().Write([&](Connection& c) { return DropStaged(c, source); });
}

absl::StatusOr<VersionVector> RequestStore::GetVersionVector() const {
  absl::StatusOr<sqlite::ReaderPool::Lease> reader = impl_->Reader();
  if (!reader.ok()) return reader.status();
  absl::StatusOr<CachedStatement> st = (*reader)->PrepareCached(kVersionVectorSql);
  if (!st.ok()) return st.status();
  VersionVector vv;
  while (true) {
    absl::StatusOr<bool> row = (*st)->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    vv[(*st)->ColumnText(0)] = static_cast<uint64_t>((*st)->ColumnInt64(1));
  }
  return vv;
}

absl::StatusOr<int64_t> RequestStore::CountRecords() const {
  absl::StatusOr<sqlite::ReaderPool::Lease> reader = impl_->Reader();
  if (!reader.ok()) return reader.status();
  return (*reader)->QueryInt64("SELECT COUNT(*) FROM requests");
}

absl::Status RequestStore::Check(bool write) const {
  {
    absl::StatusOr<sqlite::ReaderPool::Lease> reader = impl_->Reader();
    if (!reader.ok()) return reader.status();
    absl::StatusOr<int64_t> owners = (*reader)->QueryInt64("SELECT COUNT(*) FROM meta WHERE key = 'node_id'");
    if (!owners.ok()) return owners.status();
    if (*owners != 1) {
      return absl::DataLossError(absl::StrCat("request store ", impl_->options().path.string(),
                                              ": the node_id row is missing from meta; was the "
                                              "file replaced while the node was running?"));
    }
  }
  if (!write) return absl::OkStatus();
  const int64_t now_ms = impl_->clock().NowUnixMillis();
  const std::string& node = impl_->options().node_id;
  return impl_->writer().Write([&](Connection& c) -> absl::Status {
    absl::StatusOr<CachedStatement> st = c.PrepareCached(kHealthWriteSql);
    if (!st.ok()) return st.status();
    (*st)->BindInt64(1, now_ms).BindText(2, node);
    return (*st)->Run();
  });
}

}  // namespace adcsc::store
