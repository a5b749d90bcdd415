#include "store/bulk_join.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "store/schema.h"
#include "store/store_rows.h"

namespace adcsc::store {
namespace {

using rows::kRecordColumns;

// How often (in records) JoinWriter::Add starts the writeback of what SQLite has written.
constexpr int64_t kWritebackEveryRecords = 8192;

// The store file's companions, and the .joining file's (none with journal_mode=OFF, unless an
// older build or a crash left one).
constexpr const char* kCompanions[] = {"-wal", "-shm", "-journal"};

absl::Status RemoveWithCompanions(const std::filesystem::path& path) {
  std::error_code ec;
  for (const char* suffix : kCompanions) {
    std::filesystem::remove(path.string() + suffix, ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot remove ", path.string(), suffix, ": ", ec.message()));
  }
  std::filesystem::remove(path, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot remove ", path.string(), ": ", ec.message()));
  return absl::OkStatus();
}

absl::Status SyncPath(const std::filesystem::path& path, bool directory) {
  const int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDWR) | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return absl::InternalError(absl::StrCat("cannot open ", path.string(), " to sync it: ", std::strerror(err)));
  }
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return absl::InternalError(absl::StrCat("fsync of ", path.string(), " failed: ", std::strerror(err)));
  return absl::OkStatus();
}

std::filesystem::path DirectoryOf(const std::filesystem::path& path) {
  return path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
}

const std::string& InsertRecordSql() {
  static const std::string* const kSql =
      new std::string(absl::StrCat("INSERT INTO requests (", kRecordColumns,
                                   ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"));
  return *kSql;
}

}  // namespace

// Starts the kernel's writeback of the file (sync_file_range, which waits for nothing to reach
// the disk) whenever Kick() asks, on a thread of its own: submitting the writes takes a
// while, and the writing thread is what a join waits for.
class JoinWriter::Writeback {
 public:
  explicit Writeback(int fd) : fd_(fd), thread_([this] { Run(); }) {}
  // Closes the descriptor: only once SQLite's connection to the file is closed (closing any
  // descriptor of a file drops the process's POSIX locks on it, SQLite's included).
  ~Writeback() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_one();
    thread_.join();
    ::close(fd_);
  }
  void Kick() {
    {
      std::lock_guard lock(mu_);
      kicked_ = true;
    }
    cv_.notify_one();
  }

 private:
  void Run() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [this] { return kicked_ || stopping_; });
      if (stopping_) return;
      kicked_ = false;
      lock.unlock();
      ::sync_file_range(fd_, 0, 0, SYNC_FILE_RANGE_WRITE);
      lock.lock();
    }
  }

  const int fd_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool kicked_ = false;    // guarded by mu_
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;     // last: started once the rest exists
};

std::filesystem::path JoinFilePath(const std::filesystem::path& store_path) { return store_path.string() + ".joining"; }

absl::Status DiscardJoinFile(const std::filesystem::path& store_path) {
  return RemoveWithCompanions(JoinFilePath(store_path));
}

absl::StatusOr<bool> StoreIsEmpty(const StoreOptions& options) {
  std::error_code ec;
  if (!std::filesystem::exists(options.path, ec)) {
    if (ec) return absl::InternalError(absl::StrCat("cannot look for ", options.path.string(), ": ", ec.message()));
    return true;
  }
  absl::StatusOr<std::unique_ptr<RequestStore>> store = RequestStore::Open(options);
  if (!store.ok()) return store.status();
  return (*store)->HoldsNothing();
}

absl::Status RemoveEmptyStore(const std::filesystem::path& store_path) { return RemoveWithCompanions(store_path); }

JoinWriter::JoinWriter(const JoinWriterOptions& options) : options_(options), path_(JoinFilePath(options.store_path)) {}

JoinWriter::~JoinWriter() {
  insert_record_ = sqlite::Statement();
  insert_held_ = sqlite::Statement();
  c_.reset();
  writeback_.reset();  // after the connection: see Writeback
  if (!installed_) RemoveWithCompanions(path_).IgnoreError();
}

absl::StatusOr<std::unique_ptr<JoinWriter>> JoinWriter::Create(const JoinWriterOptions& options) {
  if (options.node_id.empty()) return absl::InvalidArgumentError("bulk join: the node id is empty");
  std::unique_ptr<JoinWriter> w(new JoinWriter(options));
  if (absl::Status s = RemoveWithCompanions(w->path_); !s.ok()) return s;
  const int fd = ::open(w->path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int err = errno;
    return absl::PermissionDeniedError(
        absl::StrCat("bulk join: cannot create ", w->path_.string(), ": ", std::strerror(err),
                     "; check that the adcsc service user can write the data directory"));
  }
  if (options.fsync) {
    w->writeback_ = std::make_unique<Writeback>(fd);
  } else {
    ::close(fd);
  }
  absl::StatusOr<std::unique_ptr<sqlite::Connection>> c =
      sqlite::Connection::Open(w->path_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (!c.ok()) return c.status();
  w->c_ = std::move(*c);
  sqlite::Connection& db = *w->c_;
  // Nothing here needs to survive a crash: a join cut short starts over from an empty file.
  // No journal, no sync per commit, one connection holding the file to itself.
  if (absl::Status s = db.Exec(absl::StrCat("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; "
                                            "PRAGMA locking_mode=EXCLUSIVE; PRAGMA temp_store=FILE; "
                                            "PRAGMA cache_size=-",
                                            std::max<int64_t>(options.cache_bytes / 1024, 2048),
                                            "; PRAGMA threads=", std::max(options.sort_threads, 0)));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = schema::Migrate(db); !s.ok()) return s;
  // Secondary indexes are built once the rows are in (Finish): one sort each instead of a
  // B-tree insert per row in an order unrelated to the key. A primary key's own index
  // (sql IS NULL) stays; records arrive in its order, so it only ever grows at its end.
  {
    absl::StatusOr<sqlite::Statement> st =
        db.Prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL ORDER BY name");
    if (!st.ok()) return st.status();
    std::vector<std::string> names;
    while (true) {
      absl::StatusOr<bool> row = st->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      names.push_back(st->ColumnText(0));
      w->index_sql_.push_back(st->ColumnText(1));
    }
    st->Reset();
    for (const std::string& name : names) {
      if (absl::Status s = db.Exec(absl::StrCat("DROP INDEX \"", name, "\"")); !s.ok()) return s;
    }
  }
  {
    absl::StatusOr<sqlite::Statement> claim = db.Prepare("INSERT INTO meta (key, value) VALUES (?1, ?2), (?3, ?4)");
    if (!claim.ok()) return claim.status();
    claim->BindText(1, rows::kMetaNodeId)
        .BindText(2, options.node_id)
        .BindText(3, rows::kMetaCreatedMs)
        .BindText(4, absl::StrCat(options.now_ms));
    if (absl::Status s = claim->Run(); !s.ok()) return s;
  }
  // One transaction for every row: with no journal a commit writes nothing a spill of the
  // page cache would not, and the end of the transaction is Finish's.
  if (absl::Status s = db.Exec("BEGIN"); !s.ok()) return s;
  absl::StatusOr<sqlite::Statement> insert = db.Prepare(InsertRecordSql());
  if (!insert.ok()) return insert.status();
  w->insert_record_ = *std::move(insert);
  absl::StatusOr<sqlite::Statement> held = db.Prepare(rows::kAppendMutationSql);
  if (!held.ok()) return held.status();
  w->insert_held_ = *std::move(held);
  return w;
}

absl::Status JoinWriter::AddHeld(const HeldMutation& held) {
  if (finished_ || c_ == nullptr) return absl::FailedPreconditionError("bulk join: the join file is finished");
  if (held.origin.empty() || held.sequence == 0 || held.ca_config.empty() || held.request_id == 0) {
    return absl::InvalidArgumentError(absl::StrCat("bulk join: held mutation '", held.origin, "'/", held.sequence,
                                                   " lacks an origin, a sequence or a record key; the peer is faulty"));
  }
  if (held.origin == options_.node_id) return absl::OkStatus();
  insert_held_.BindText(1, held.origin)
      .BindInt64(2, static_cast<int64_t>(held.sequence))
      .BindInt64(3, static_cast<int64_t>(held.hlc))
      .BindText(4, held.ca_config)
      .BindInt64(5, held.request_id);
  absl::Status s = insert_held_.Run();
  insert_held_.Reset();
  return s;
}

absl::Status JoinWriter::Add(const RequestRecord& r) {
  if (finished_ || c_ == nullptr) return absl::FailedPreconditionError("bulk join: the join file is finished");
  if (r.ca_config().empty() || r.request_id() == 0) {
    return absl::InvalidArgumentError(absl::StrCat("bulk join: a record for '", r.ca_config(), "' #", r.request_id(),
                                                   " has no valid key; the peer that sent it is faulty"));
  }
  // std::string orders bytes as SQLite's BINARY collation does (memcmp, then length).
  if (records_ > 0) {
    const int order = r.ca_config().compare(last_ca_config_);
    if (order < 0 || (order == 0 && r.request_id() <= last_request_id_)) {
      return absl::InvalidArgumentError(absl::StrCat("bulk join: record '", r.ca_config(), "' #", r.request_id(),
                                                     " arrived after '", last_ca_config_, "' #", last_request_id_,
                                                     ", out of key order; the peer that sent it is faulty"));
    }
  }
  // Unowned: `r` outlives the step, and a bulk insert need not copy each value once more.
  insert_record_.BindTextUnowned(1, r.ca_config())
      .BindInt64(2, r.request_id())
      .BindInt64(3, r.status())
      .BindInt64(4, r.disposition())
      .BindTextUnowned(5, r.message())
      .BindBlobUnowned(6, r.certificate_der())
      .BindBlobUnowned(7, r.csr_sha256())
      .BindTextUnowned(8, r.template_name())
      .BindTextUnowned(9, r.requester())
      .BindTextUnowned(10, r.node_id())
      .BindInt64(11, r.created_ms())
      .BindInt64(12, r.updated_ms())
      .BindInt64(13, static_cast<int64_t>(r.hlc()))
      .BindInt64(14, r.hresult())
      .BindInt64(15, static_cast<int64_t>(r.admin_hlc()));
  absl::Status s = insert_record_.Run();
  insert_record_.Reset();
  if (!s.ok()) return s;
  if (r.ca_config() != last_ca_config_) last_ca_config_ = r.ca_config();
  last_request_id_ = r.request_id();
  ++records_;
  // Nothing is synced until Finish, and the kernel would hold every written page dirty until
  // then (the file is far under its writeback thresholds): have them written out now, so the
  // final fsync has little left and the disk works while the records stream in.
  if (writeback_ != nullptr && records_ % kWritebackEveryRecords == 0) writeback_->Kick();
  return absl::OkStatus();
}

absl::Status JoinWriter::Finish(const JoinHeader& header) {
  if (finished_ || c_ == nullptr) return absl::FailedPreconditionError("bulk join: the join file is finished");
  if (header.records != records_) {
    return absl::DataLossError(absl::StrCat("bulk join: the peer announced ", header.records, " records and sent ",
                                            records_, "; the join is void"));
  }
  sqlite::Connection& db = *c_;
  insert_record_ = sqlite::Statement();
  insert_held_ = sqlite::Statement();
  for (const auto& [origin, sequence] : header.version_vector) {
    if (origin.empty() || sequence == 0) continue;
    if (absl::Status s = rows::WriteVectorEntry(db, origin, sequence); !s.ok()) return s;
  }
  if (absl::Status s = db.Exec("COMMIT"); !s.ok()) return s;
  const auto indexing = std::chrono::steady_clock::now();
  for (const std::string& sql : index_sql_) {
    if (absl::Status s = db.Exec(sql); !s.ok()) return s;
  }
  c_.reset();
  writeback_.reset();  // after the connection: see Writeback
  const auto syncing = std::chrono::steady_clock::now();
  index_seconds_ = std::chrono::duration<double>(syncing - indexing).count();
  if (options_.fsync) {
    if (absl::Status s = SyncPath(path_, /*directory=*/false); !s.ok()) return s;
  }
  sync_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - syncing).count();
  finished_ = true;
  return absl::OkStatus();
}

absl::Status JoinWriter::Install() {
  if (!finished_) return absl::FailedPreconditionError("bulk join: the join file is not finished");
  if (installed_) return absl::OkStatus();
  std::error_code ec;
  if (std::filesystem::exists(options_.store_path, ec)) {
    return absl::FailedPreconditionError(absl::StrCat("bulk join: ", options_.store_path.string(),
                                                      " exists; a join replaces only a store that holds nothing, "
                                                      "removed first"));
  }
  // A -wal or -shm left without its database would be read as the new file's.
  for (const char* suffix : kCompanions) {
    std::filesystem::remove(options_.store_path.string() + suffix, ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("cannot remove ", options_.store_path.string(), suffix, ": ", ec.message()));
    }
  }
  std::filesystem::rename(path_, options_.store_path, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("bulk join: cannot rename ", path_.string(), " to ",
                                            options_.store_path.string(), ": ", ec.message()));
  }
  installed_ = true;
  if (options_.fsync) return SyncPath(DirectoryOf(options_.store_path), /*directory=*/true);
  return absl::OkStatus();
}

}  // namespace adcsc::store
