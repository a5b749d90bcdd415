// RequestStore, the local side: opening and claiming the file, local writes (Put) and the
// reads the API makes (Get, MaxRequestId, FindByDedupeKey, CountRecords, Check).
#include "store/request_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "store/schema.h"
#include "store/store_rows.h"

namespace adcsc::store {
namespace {

using rows::AppendMutation;
using rows::CachedStatement;
using rows::Connection;
using rows::kMetaCreatedMs;
using rows::kMetaNodeId;
using rows::ReadRecord;
using rows::RowToRecord;
using rows::SelectByDedupeKeySql;
using rows::Statement;
using rows::WriteRecord;

static_assert(RequestStore::kSchemaVersion == schema::kLatestVersion,
              "RequestStore::kSchemaVersion must track the schema migrations");

// The DB file holds issued certificates and the cluster's request history: owner only.
constexpr mode_t kStoreFileMode = 0600;
// Node ids appear in every mutation and log line; keep them short and printable.
constexpr size_t kMaxNodeIdBytes = 128;
// A CSR digest is a binary SHA-256.
constexpr size_t kCsrSha256Bytes = 32;

constexpr char kAppendProbeSql[] =
    "INSERT INTO append_probe (id, payload) VALUES (1, randomblob(?1)) "
    "ON CONFLICT (id) DO UPDATE SET payload = excluded.payload";

constexpr char kHealthWriteSql[] =
    "INSERT INTO health_scratch (id, written_ms, node_id) VALUES (1, ?1, ?2) "
    "ON CONFLICT (id) DO UPDATE SET written_ms = excluded.written_ms, "
    "node_id = excluded.node_id";

// The fields a local write can change, compared to decide whether it changes anything.
bool SameContent(const RequestRecord& a, const RequestRecord& b) {
  return a.status() == b.status() && a.disposition() == b.disposition() && a.message() == b.message() &&
         a.certificate_der() == b.certificate_der() && a.hresult() == b.hresult() && a.csr_sha256() == b.csr_sha256() &&
         a.template_name() == b.template_name() && a.requester() == b.requester() && a.admin_hlc() == b.admin_hlc();
}

// The local-write rule documented on RequestStore::Put: the unstamped record to store, or
// nullopt when `update` changes nothing.
std::optional<RequestRecord> ApplyLocalUpdate(const std::optional<RequestRecord>& existing, const RequestRecord& update,
                                              bool admin_action) {
  const uint64_t admin_hlc = existing.has_value() ? existing->admin_hlc() : 0;
  if (admin_action) {
    // Always recorded, even when this node's copy says the same: another node may hold a
    // version from an earlier action that this one has not received yet. The caller stamps
    // admin_hlc.
    RequestRecord next = update;
    if (existing.has_value()) {
      if (next.csr_sha256().empty()) next.set_csr_sha256(existing->csr_sha256());
      if (next.template_name().empty()) next.set_template_name(existing->template_name());
      if (next.requester().empty()) next.set_requester(existing->requester());
    }
    return next;
  }
  if (!existing.has_value()) {
    RequestRecord first = update;
    first.set_admin_hlc(0);
    return first;
  }
  const int update_rank = StatusRank(update.status());
  const int existing_rank = StatusRank(existing->status());
  if (update_rank < existing_rank) return std::nullopt;
  // Terminal outcomes share a rank but are final: a later issued/denied/failed of a
  // different kind (say, a transient error recorded as FAILED over an ISSUED record) must
  // not replace it. Only REVOKED, one rank up, follows them.
  if (update_rank == existing_rank && update.status() != existing->status()) return std::nullopt;

  RequestRecord merged = update;
  merged.set_admin_hlc(admin_hlc);  // only an administrator's action moves it
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

absl::StatusOr<WriteResult> RequestStore::Put(const RequestRecord& update) { return Put(update, nullptr); }

absl::StatusOr<WriteResult> RequestStore::Put(const RequestRecord& update, const SubmitKey* settles) {
  return Write(update, settles, /*admin_action=*/false);
}

absl::StatusOr<WriteResult> RequestStore::PutAdminOutcome(const RequestRecord& update) {
  return Write(update, nullptr, /*admin_action=*/true);
}

absl::StatusOr<WriteResult> RequestStore::Write(const RequestRecord& update, const SubmitKey* settles,
                                                bool admin_action) {
  if (absl::Status s = ValidateUpdate(update); !s.ok()) return s;
  Impl& impl = *impl_;
  WriteResult result;
  absl::Status written = impl.Write([&](Connection& c) -> absl::Status {
    absl::StatusOr<std::optional<RequestRecord>> existing = ReadRecord(c, update.ca_config(), update.request_id());
    if (!existing.ok()) return existing.status();

    if (settles != nullptr) {
      if (absl::Status s = rows::DeleteSubmitIntent(c, *settles); !s.ok()) return s;
    }
    std::optional<RequestRecord> next = ApplyLocalUpdate(*existing, update, admin_action);
    if (!next.has_value()) {
      result = WriteResult{.record = **existing, .changed = false, .sequence = 0};
      return absl::OkStatus();
    }
    // Stamp after everything stored for this key, even a peer's stamp from a clock that
    // runs ahead of ours; otherwise replicas would prefer the old version on merge.
    if (existing->has_value()) impl.hlc().Observe((*existing)->hlc());
    const int64_t now_ms = impl.clock().NowUnixMillis();
    next->set_hlc(impl.hlc().Now());
    if (admin_action) next->set_admin_hlc(next->hlc());
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

absl::StatusOr<std::vector<RequestRecord>> RequestStore::FindByCertificateBytes(const std::string& ca_config,
                                                                                const std::string& bytes,
                                                                                size_t limit) const {
  if (bytes.empty()) return absl::InvalidArgumentError("RequestStore::FindByCertificateBytes: nothing to search for");
  absl::StatusOr<sqlite::ReaderPool::Lease> reader = impl_->Reader();
  if (!reader.ok()) return reader.status();
  // instr() on two BLOBs searches bytes, not text.
  absl::StatusOr<Statement> st = (*reader)->Prepare(absl::StrCat(
      "SELECT ", rows::kRecordColumns,
      " FROM requests WHERE ca_config = ?1 AND instr(certificate_der, ?2) > 0 ORDER BY request_id LIMIT ?3"));
  if (!st.ok()) return st.status();
  st->BindText(1, ca_config).BindBlob(2, bytes).BindInt64(3, static_cast<int64_t>(limit));
  std::vector<RequestRecord> found;
  for (;;) {
    absl::StatusOr<bool> row = st->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    found.push_back(RowToRecord(*st));
  }
  return found;
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
  if (const int64_t floor = impl_->options().min_free_bytes; floor > 0) {
    const std::filesystem::path& path = impl_->options().path;
    std::error_code ec;
    const std::filesystem::space_info space =
        std::filesystem::space(path.has_parent_path() ? path.parent_path() : ".", ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("request store ", path.string(), ": cannot read the free space of its volume: ", ec.message()));
    }
    if (space.available < static_cast<uintmax_t>(floor)) {
      return absl::ResourceExhaustedError(
          absl::StrCat("request store ", path.string(), ": ", space.available,
                       " bytes free on its volume, under store.min_free_bytes (", floor,
                       "); free space there, or this node stays not ready (writes could fail and lose outcomes)"));
    }
  }
  // After a failed write, only a write that commits shows the disk is fit again; without
  // `write` there is nothing to show it, so the failure stands.
  const absl::Status failed_write = impl_->last_write_error();
  if (!failed_write.ok() && !write) {
    return absl::Status(failed_write.code(), absl::StrCat("request store ", impl_->options().path.string(),
                                                          ": the last write failed: ", failed_write.message()));
  }
  if (!write) return absl::OkStatus();
  const int64_t now_ms = impl_->clock().NowUnixMillis();
  const std::string& node = impl_->options().node_id;
  absl::Status probed = impl_->Write([&](Connection& c) -> absl::Status {
    absl::StatusOr<CachedStatement> st = c.PrepareCached(kHealthWriteSql);
    if (!st.ok()) return st.status();
    (*st)->BindInt64(1, now_ms).BindText(2, node);
    if (absl::Status s = (*st)->Run(); !s.ok()) return s;
    if (failed_write.ok()) return absl::OkStatus();
    // Rewriting one small row fits in pages the file already has; an append needs new ones.
    absl::StatusOr<CachedStatement> probe = c.PrepareCached(kAppendProbeSql);
    if (!probe.ok()) return probe.status();
    (*probe)->BindInt64(1, static_cast<int64_t>(kAppendProbeBytes));
    return (*probe)->Run();
  });
  if (probed.ok()) return probed;
  return absl::Status(probed.code(), absl::StrCat("request store ", impl_->options().path.string(),
                                                  failed_write.ok() ? ": the health check write failed: "
                                                                    : ": writes fail (the last one, and a probe): ",
                                                  probed.message()));
}

absl::StatusOr<bool> RequestStore::HoldsNothing() const {
  absl::StatusOr<sqlite::ReaderPool::Lease> reader = impl_->Reader();
  if (!reader.ok()) return reader.status();
  absl::StatusOr<int64_t> held = (*reader)->QueryInt64(
      "SELECT EXISTS (SELECT 1 FROM requests) OR EXISTS (SELECT 1 FROM mutations) OR "
      "EXISTS (SELECT 1 FROM version_vector) OR EXISTS (SELECT 1 FROM submit_intents) OR "
      "EXISTS (SELECT 1 FROM meta WHERE key = 'rebuild_from_peers')");
  if (!held.ok()) return held.status();
  return *held == 0;
}

absl::Status RequestStore::RebuildIndexes() {
  return impl_->Write([](Connection& c) { return c.Exec("REINDEX"); });
}

absl::Status RequestStore::QuickCheck() const {
  absl::StatusOr<sqlite::ReaderPool::Lease> reader = impl_->Reader();
  if (!reader.ok()) return reader.status();
  absl::StatusOr<Statement> st = (*reader)->Prepare("PRAGMA quick_check(8)");
  if (!st.ok()) return st.status();
  std::vector<std::string> problems;
  for (;;) {
    absl::StatusOr<bool> row = st->Step();
    if (!row.ok()) {
      return absl::DataLossError(
          absl::StrCat("request store ", impl_->options().path.string(),
                       ": the integrity check could not read the file: ", row.status().message()));
    }
    if (!*row) break;
    std::string line = st->ColumnText(0);
    if (line != "ok") problems.push_back(std::move(line));
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::DataLossError(absl::StrCat("request store ", impl_->options().path.string(),
                                          ": PRAGMA quick_check found damage: ", absl::StrJoin(problems, "; ")));
}

}  // namespace adcsc::store
