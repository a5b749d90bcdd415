#include "store/schema.h"

#include <array>

#include "absl/strings/str_cat.h"

namespace adcsc::store::schema {
namespace {

// Version 1. Column names in `requests` mirror RequestRecord (record.proto) one to one.
// Unsigned proto fields (request_id, disposition, hresult, hlc) are stored in SQLite's
// signed 64-bit INTEGER: the 32-bit ones fit as they are, and hlc is stored bit for bit.
constexpr std::string_view kSchemaV1 = R"sql(
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);

CREATE TABLE requests (
  ca_config       TEXT    NOT NULL,
  request_id      INTEGER NOT NULL,
  status          INTEGER NOT NULL,
  disposition     INTEGER NOT NULL DEFAULT 0,
  message         TEXT    NOT NULL DEFAULT '',
  certificate_der BLOB    NOT NULL DEFAULT x'',
  csr_sha256      BLOB    NOT NULL DEFAULT x'',
  template_name   TEXT    NOT NULL DEFAULT '',
  requester       TEXT    NOT NULL DEFAULT '',
  node_id         TEXT    NOT NULL DEFAULT '',
  created_ms      INTEGER NOT NULL,
  updated_ms      INTEGER NOT NULL,
  hlc             INTEGER NOT NULL,
  hresult         INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (ca_config, request_id)
);

-- Submit dedupe: equality on the first three columns, newest created_ms first.
CREATE INDEX requests_dedupe ON requests (ca_config, template_name, csr_sha256, created_ms);

-- The mutation log: every local change, per origin node, in sequence order. `record` is
-- the serialized adcsc.store.v1.RequestRecord as it stood after the change.
CREATE TABLE mutations (
  origin   TEXT    NOT NULL,
  sequence INTEGER NOT NULL,
  hlc      INTEGER NOT NULL,
  record   BLOB    NOT NULL,
  PRIMARY KEY (origin, sequence)
);

-- Highest mutation sequence held per origin; updated in the transaction that appends.
CREATE TABLE version_vector (
  origin   TEXT    PRIMARY KEY,
  sequence INTEGER NOT NULL
);

-- One row rewritten by write health checks, to prove the disk still takes commits.
CREATE TABLE health_scratch (
  id         INTEGER PRIMARY KEY CHECK (id = 1),
  written_ms INTEGER NOT NULL,
  node_id    TEXT    NOT NULL
);
)sql";

// Version 2. A mutation is logged as a reference to its record's key instead of a copy of
// the record: a peer is sent the record as it stands now, which under the lattice merge
// includes everything the logged version had. This halves what a node writes per change.
// Rows logged by version 1 keep their copy in `record` and are read from it; new rows have
// an empty `record` and the key columns set.
constexpr std::string_view kSchemaV2 = R"sql(
ALTER TABLE mutations ADD COLUMN ca_config TEXT;
ALTER TABLE mutations ADD COLUMN request_id INTEGER;
)sql";

// Version 3. Submit intents: what this node sent or is about to send to the CA and has not
// recorded an answer for (store/request_store.h, SubmitIntentRow). Local to the node.
constexpr std::string_view kSchemaV3 = R"sql(
CREATE TABLE submit_intents (
  ca_config        TEXT    NOT NULL,
  template_name    TEXT    NOT NULL,
  csr_sha256       BLOB    NOT NULL,
  after_request_id INTEGER NOT NULL,
  requester        TEXT    NOT NULL,
  csr_der          BLOB    NOT NULL,
  created_ms       INTEGER NOT NULL,
  updated_ms       INTEGER NOT NULL,
  attempts         INTEGER NOT NULL,
  PRIMARY KEY (ca_config, template_name, csr_sha256)
);

-- Rewritten by a health check after a failed write, with a blob as large as an append, to
-- tell when the disk takes writes again.
CREATE TABLE append_probe (
  id      INTEGER PRIMARY KEY CHECK (id = 1),
  payload BLOB    NOT NULL
);
)sql";

// Additions a previous release can live with: columns with a default, which its statements
// (every one names its columns) neither read nor need to write. They are made on open without
// a version bump, so that release still opens the store after a rollback; it leaves them as
// they are on the rows it updates, and new rows get the default.
struct AdditiveColumn {
  const char* table;
  const char* column;
  const char* definition;
};
constexpr std::array kAdditiveColumns = {
    // RequestRecord.admin_hlc (store/record.h).
    AdditiveColumn{"requests", "admin_hlc", "INTEGER NOT NULL DEFAULT 0"},
};

constexpr std::array kMigrations = {
    Migration{1, "initial schema: meta, requests, mutations, version_vector, health_scratch", kSchemaV1},
    Migration{2, "the mutation log references records by key instead of copying them", kSchemaV2},
    Migration{3, "submit intents (CA calls whose outcome is not recorded yet) and the append probe", kSchemaV3},
};
static_assert(kMigrations.size() == kLatestVersion, "one migration step per schema version");

// Refuses files that are not (or not yet) adcsc stores, before anything is written to them.
absl::Status CheckOwnership(sqlite::Connection& connection, int version) {
  absl::StatusOr<int64_t> app_id = connection.QueryInt64("PRAGMA application_id");
  if (!app_id.ok()) return app_id.status();
  if (*app_id != 0 && *app_id != kApplicationId) {
    return absl::FailedPreconditionError(absl::StrCat("database ", connection.path().string(),
                                                      " belongs to another application (application_id ", *app_id,
                                                      "); check the store path in the configuration"));
  }
  if (version == 0) {
    absl::StatusOr<int64_t> objects = connection.QueryInt64("SELECT COUNT(*) FROM sqlite_schema");
    if (!objects.ok()) return objects.status();
    if (*objects != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("database ", connection.path().string(),
                       " already holds tables but no adcsc schema version; it is not an adcsc store. Check "
                       "the store path in the configuration"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::span<const Migration> Migrations() { return kMigrations; }

absl::StatusOr<int> CurrentVersion(sqlite::Connection& connection) {
  absl::StatusOr<int64_t> version = connection.QueryInt64("PRAGMA user_version");
  if (!version.ok()) return version.status();
  return static_cast<int>(*version);
}

absl::Status Migrate(sqlite::Connection& connection, int target_version) {
  if (target_version < 0 || target_version > kLatestVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("schema version ", target_version, " is not one this build knows (0..", kLatestVersion, ")"));
  }
  while (true) {
    // The version is read inside the transaction that would change it, so two processes
    // opening the same new file cannot both apply a step.
    absl::StatusOr<sqlite::Transaction> txn = sqlite::Transaction::Begin(connection);
    if (!txn.ok()) return txn.status();
    absl::StatusOr<int> version = CurrentVersion(connection);
    if (!version.ok()) return version.status();
    if (*version > kLatestVersion) {
      return absl::FailedPreconditionError(
          absl::StrCat("database ", connection.path().string(), " has schema version ", *version,
                       ", newer than the newest this adcsc build knows (", kLatestVersion,
                       "): it was written by a newer adcsc. Run that newer version, or restore a backup taken "
                       "before the upgrade; downgrading a store in place is not supported"));
    }
    if (absl::Status s = CheckOwnership(connection, *version); !s.ok()) return s;
    if (*version >= target_version) {
      if (*version < kLatestVersion) return absl::OkStatus();  // a test's older schema: as it was
      bool added = false;
      for (const AdditiveColumn& a : kAdditiveColumns) {
        auto st = connection.Prepare("SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2");
        if (!st.ok()) return st.status();
        st->BindText(1, a.table).BindText(2, a.column);
        absl::StatusOr<bool> row = st->Step();
        if (!row.ok()) return row.status();
        if (*row && st->ColumnInt64(0) > 0) continue;
        if (absl::Status s =
                connection.Exec(absl::StrCat("ALTER TABLE ", a.table, " ADD COLUMN ", a.column, " ", a.definition));
            !s.ok()) {
          return absl::Status(s.code(),
                              absl::StrCat("adding column ", a.table, ".", a.column, ": ", std::string(s.message())));
        }
        added = true;
      }
      if (!added) return absl::OkStatus();  // rolls back the empty txn
      return txn->Commit();
    }

    const Migration& step = kMigrations[static_cast<size_t>(*version)];
    if (absl::Status s = connection.Exec(step.sql); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("migrating to schema version ", step.to_version, " (",
                                                 std::string(step.description), "): ", s.message()));
    }
    if (absl::Status s = connection.Exec(
            absl::StrCat("PRAGMA user_version = ", step.to_version, "; PRAGMA application_id = ", kApplicationId));
        !s.ok()) {
      return s;
    }
    if (absl::Status s = txn->Commit(); !s.ok()) return s;
  }
}

}  // namespace adcsc::store::schema
