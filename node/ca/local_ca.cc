#include "node/ca/local_ca.h"

#include <errno.h>
#include <openssl/err.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/stat.h>

#include <chrono>
#include <limits>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "node/ca/hresult.h"
#include "node/pki/absl_view.h"
#include "node/pki/csr.h"
#include "node/pki/x509.h"
#include "store/sqlite_db.h"
#include "store/wal_checkpointer.h"

namespace adcsc::ca {
namespace {

constexpr char kCaKeyFile[] = "ca-key.pem";
constexpr char kCaCertFile[] = "ca-cert.pem";
constexpr char kDatabaseFile[] = "requests.db";
// 2: revocation (revocation_reason, revoked_ms), added to version-1 databases on open.
constexpr int kSchemaVersion = 2;
constexpr int kBusyTimeoutMillis = 5'000;
constexpr int kMaxCaYears = 100;
constexpr mode_t kCaDirMode = 0700;
constexpr mode_t kCaCertMode = 0644;

constexpr char kMessageIssued[] = "Issued";
constexpr char kMessagePending[] = "Taken Under Submission";
constexpr char kMessagePolicyDenied[] = "Denied by Policy Module";
constexpr char kMessageAdminDenied[] = "Denied by CA administrator";
constexpr char kMessageRevoked[] = "Revoked";
// RevokeCertificate's reason for certificateHold, and the one that takes a hold back.
constexpr uint32_t kReasonCertificateHold = 6;
constexpr uint32_t kReasonReleaseFromHold = 0xffffffff;

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS requests (
  id               INTEGER PRIMARY KEY AUTOINCREMENT,
  requester        TEXT    NOT NULL,
  template         TEXT    NOT NULL,
  subject          TEXT    NOT NULL,
  csr              BLOB    NOT NULL,
  ekus             TEXT    NOT NULL,   -- dotted OIDs, comma-separated, as of the submit
  validity_days    INTEGER NOT NULL,   -- as of the submit
  disposition      INTEGER NOT NULL,   -- CR_DISP_*
  hresult          INTEGER NOT NULL,
  message          TEXT    NOT NULL,
  cert             BLOB,
  serial           TEXT,
  submitted_ms     INTEGER NOT NULL,
  pending_until_ms INTEGER,            -- NULL: pending until Approve/Deny
  resolved_ms      INTEGER,
  revocation_reason INTEGER,           -- CRL reason while revoked, else NULL
  revoked_ms       INTEGER             -- when the revocation takes effect
);
)sql";

std::string_view DispositionName(Disposition d) {
  switch (d) {
    case Disposition::kIncomplete:
      return "incomplete";
    case Disposition::kError:
      return "error";
    case Disposition::kDenied:
      return "denied";
    case Disposition::kIssued:
      return "issued";
    case Disposition::kIssuedOutOfBand:
      return "issued out of band";
    case Disposition::kUnderSubmission:
      return "pending";
    case Disposition::kRevoked:
      return "revoked";
  }
  return "unknown";
}

using store::sqlite::Statement;

// Bytes as a BLOB column value; an empty value is stored as NULL, as before.
void BindBytes(Statement& st, int index, const std::vector<uint8_t>& bytes) {
  if (bytes.empty()) {
    st.BindNull(index);
  } else {
    st.BindBlob(index, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  }
}

std::vector<uint8_t> ColumnBytes(const Statement& st, int column) {
  const std::string blob = st.ColumnBlob(column);
  return std::vector<uint8_t>(blob.begin(), blob.end());
}

std::string DbErrorText(const std::filesystem::path& dir, std::string_view what, const std::string& detail) {
  return absl::StrCat("local CA database ", (dir / kDatabaseFile).string(), ": ", pki::AbslView(what), ": ", detail);
}

absl::Status DbError(const std::filesystem::path& dir, std::string_view what, const std::string& detail) {
  return absl::InternalError(DbErrorText(dir, what, detail));
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return absl::EqualsIgnoreCase(pki::AbslView(a), pki::AbslView(b));
}

std::string Quote(std::string_view s) { return absl::StrCat("\"", pki::AbslView(s), "\""); }

}  // namespace

// A request row. csr is filled only when asked for.
struct LocalCa::Row {
  uint32_t id = 0;
  std::string requester;
  std::string template_name;
  std::string subject;
  std::vector<uint8_t> csr;
  std::string ekus;
  int validity_days = 0;
  Disposition disposition = Disposition::kIncomplete;
  uint32_t hresult = 0;
  std::string message;
  std::vector<uint8_t> cert;
  std::string serial;
  int64_t submitted_ms = 0;
  int64_t pending_until_ms = 0;  // 0: none
  int64_t resolved_ms = 0;
};

absl::Status ValidateLocalCaOptions(const LocalCaOptions& o) {
  std::vector<std::string> problems;
  if (o.dir.empty()) problems.push_back("dir: required (where the CA key and database live)");
  if (o.ca_name.empty()) problems.push_back("ca_name: required (the CA instance name, Jamf's \"ca\")");
  if (o.ca_years < 1 || o.ca_years > kMaxCaYears) {
    problems.push_back(absl::StrCat("ca_years: ", o.ca_years, " is out of range (1..", kMaxCaYears, ")"));
  }
  bool default_found = o.default_template.empty();
  for (size_t i = 0; i < o.templates.size(); ++i) {
    const TemplatePolicy& t = o.templates[i];
    const std::string where = absl::StrCat("templates[", i, "] (", Quote(t.name), ")");
    for (size_t j = 0; j < i; ++j) {
      if (EqualsIgnoreCase(o.templates[j].name, t.name)) {
        problems.push_back(absl::StrCat(where, ".name: duplicate of templates[", j, "]"));
        break;
      }
    }
    for (const std::string& eku : t.ekus) {
      absl::StatusOr<std::string> oid = pki::ResolveEku(eku);
      if (!oid.ok()) problems.push_back(absl::StrCat(where, ".ekus: ", oid.status().message()));
    }
    if (t.validity_days < 1) {
      problems.push_back(absl::StrCat(where, ".validity_days: must be at least 1, not ", t.validity_days));
    }
    if (t.min_key_bits < 0) problems.push_back(absl::StrCat(where, ".min_key_bits: must not be negative"));
    if (t.min_ec_key_bits < 0) {
      problems.push_back(absl::StrCat(where, ".min_ec_key_bits: must not be negative"));
    }
    if (t.pending_seconds < 0) {
      problems.push_back(absl::StrCat(where, ".pending_seconds: must not be negative"));
    }
    if (!default_found && EqualsIgnoreCase(t.name, o.default_template)) default_found = true;
  }
  if (!default_found) {
    problems.push_back(
        absl::StrCat("default_template: ", Quote(o.default_template), " is not one of the configured templates"));
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrJoin(problems, "\n"));
}

LocalCa::LocalCa(LocalCaOptions options) : options_(std::move(options)) {}

LocalCa::~LocalCa() {
  std::lock_guard<std::mutex> lock(mu_);
  // First: its hook points into db_, and its own connection must close before db_ does, so
  // that db_'s close, as the last one, checkpoints and removes the WAL.
  checkpointer_.reset();
  db_.reset();
}

absl::StatusOr<std::unique_ptr<LocalCa>> LocalCa::Open(LocalCaOptions options) {
  if (absl::Status s = ValidateLocalCaOptions(options); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("local CA options are invalid:\n", s.message()));
  }
  // Store EKUs as dotted OIDs so later comparisons and issuance need no lookups.
  for (TemplatePolicy& t : options.templates) {
    for (std::string& eku : t.ekus) eku = *pki::ResolveEku(eku);
  }
  if (options.common_name.empty()) options.common_name = options.ca_name;
  std::unique_ptr<LocalCa> ca(new LocalCa(std::move(options)));
  if (absl::Status s = ca->LoadOrCreateCa(); !s.ok()) return s;
  if (absl::Status s = ca->OpenDatabase(); !s.ok()) return s;
  return ca;
}

absl::Status LocalCa::LoadOrCreateCa() {
  const std::filesystem::path& dir = options_.dir;
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) {
    if (!dir.parent_path().empty()) std::filesystem::create_directories(dir.parent_path(), ec);
    if (mkdir(dir.c_str(), kCaDirMode) != 0 && errno != EEXIST) {
      const int err = errno;
      return absl::PermissionDeniedError(
          absl::StrCat("cannot create the local CA directory ", dir.string(), ": ", strerror(err)));
    }
  } else if (!std::filesystem::is_directory(dir, ec)) {
    return absl::FailedPreconditionError(
        absl::StrCat("local CA directory ", dir.string(), " exists and is not a directory"));
  }
  const std::filesystem::path key_path = dir / kCaKeyFile;
  const std::filesystem::path cert_path = dir / kCaCertFile;
  const bool have_key = std::filesystem::exists(key_path, ec);
  const bool have_cert = std::filesystem::exists(cert_path, ec);

  if (have_key != have_cert) {
    return absl::FailedPreconditionError(
        absl::StrCat("local CA in ", dir.string(), ": ", have_key ? cert_path.string() : key_path.string(),
                     " is missing but ", have_key ? key_path.string() : cert_path.string(),
                     " exists; restore the missing file, or remove both to create a new CA (certificates "
                     "it issued will no longer chain)"));
  }
  if (have_key) {
    absl::StatusOr<pki::EvpPkeyPtr> key = pki::ReadPrivateKeyFile(key_path);
    if (!key.ok()) return key.status();
    absl::StatusOr<std::string> pem = pki::ReadFileToString(cert_path);
    if (!pem.ok()) return pem.status();
    absl::StatusOr<pki::X509Ptr> cert = pki::CertFromPem(*pem);
    if (!cert.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(cert_path.string(), ": ", cert.status().message()));
    }
    if (X509_check_private_key(cert->get(), key->get()) != 1) {
      ERR_clear_error();
      return absl::FailedPreconditionError(
          absl::StrCat("local CA: ", cert_path.string(), " does not match the key in ", key_path.string()));
    }
    ca_key_ = std::move(*key);
    ca_cert_ = std::move(*cert);
  } else {
    absl::StatusOr<pki::EvpPkeyPtr> key = pki::GenerateKey(options_.key_type);
    if (!key.ok()) return key.status();
    pki::SelfSignedCaOptions ca_options;
    ca_options.common_name = options_.common_name;
    ca_options.years = options_.ca_years;
    ca_options.now_unix_seconds = NowMillis() / 1000;
    absl::StatusOr<pki::X509Ptr> cert = pki::MakeSelfSignedCa(key->get(), ca_options);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key_pem = pki::PrivateKeyToPem(key->get());
    if (!key_pem.ok()) return key_pem.status();
    absl::StatusOr<std::string> cert_pem = pki::CertToPem(cert->get());
    if (!cert_pem.ok()) return cert_pem.status();
    absl::Status s = pki::WritePrivateFile(key_path, *key_pem);
    OPENSSL_cleanse(key_pem->data(), key_pem->size());
    if (!s.ok()) return s;
    if (s = pki::WriteFileAtomic(cert_path, *cert_pem, kCaCertMode); !s.ok()) return s;
    ca_key_ = std::move(*key);
    ca_cert_ = std::move(*cert);
  }
  absl::StatusOr<pki::Bytes> der = pki::CertToDer(ca_cert_.get());
  if (!der.ok()) return der.status();
  ca_cert_der_ = std::move(*der);
  // Decode and cache the certificate's extensions now, before threads share it for signing.
  X509_check_purpose(ca_cert_.get(), -1, 0);
  ERR_clear_error();
  return absl::OkStatus();
}

absl::Status LocalCa::OpenDatabase() {
  const std::filesystem::path path = options_.dir / kDatabaseFile;
  std::lock_guard<std::mutex> lock(mu_);
  auto db = store::sqlite::Connection::Open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (!db.ok()) return DbError(options_.dir, "cannot open", std::string(db.status().message()));
  db_ = std::move(*db);
  const std::string pragmas = absl::StrCat("PRAGMA busy_timeout=", kBusyTimeoutMillis, "; PRAGMA journal_mode=WAL; ",
                                           "PRAGMA synchronous=", options_.durable ? "FULL" : "NORMAL", ";");
  for (const char* sql : {pragmas.c_str(), kSchema}) {
    if (absl::Status s = db_->Exec(sql); !s.ok()) {
      return DbError(options_.dir, "cannot set up the schema", std::string(s.message()));
    }
  }
  absl::StatusOr<int64_t> found = db_->QueryInt64("PRAGMA user_version");
  if (!found.ok()) return DbError(options_.dir, "user_version", std::string(found.status().message()));
  if (*found > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat("local CA database ", path.string(), " has schema version ",
                                                      *found, ", newer than this program's ", kSchemaVersion,
                                                      "; run a newer adcsc"));
  }
  if (*found < kSchemaVersion) {
    // A version-1 database lacks the revocation columns (a new one has them from kSchema).
    absl::StatusOr<int64_t> has_revocation =
        db_->QueryInt64("SELECT COUNT(*) FROM pragma_table_info('requests') WHERE name = 'revocation_reason'");
    if (!has_revocation.ok()) {
      return DbError(options_.dir, "cannot inspect the schema", std::string(has_revocation.status().message()));
    }
    if (*has_revocation == 0) {
      if (absl::Status s = db_->Exec("ALTER TABLE requests ADD COLUMN revocation_reason INTEGER; "
                                     "ALTER TABLE requests ADD COLUMN revoked_ms INTEGER;");
          !s.ok()) {
        return DbError(options_.dir, "cannot add the revocation columns", std::string(s.message()));
      }
    }
    if (absl::Status s = db_->Exec(absl::StrCat("PRAGMA user_version=", kSchemaVersion)); !s.ok()) {
      return DbError(options_.dir, "cannot set user_version", std::string(s.message()));
    }
  }
  // Every submit commits here; without this, the commit that crosses SQLite's automatic
  // checkpoint point would copy the WAL into the database file before its request returns.
  // Checkpoints fsync even when !durable: synchronous=NORMAL still syncs at checkpoints,
  // which is what keeps the database consistent after a power loss.
  store::sqlite::WalCheckpointerOptions checkpoint_options;
  checkpoint_options.fsync = true;
  checkpoint_options.on_error = options_.on_checkpoint_error;
  absl::StatusOr<std::unique_ptr<store::sqlite::WalCheckpointer>> checkpointer =
      store::sqlite::WalCheckpointer::Start(db_->raw(), std::move(checkpoint_options));
  if (!checkpointer.ok()) {
    return DbError(options_.dir, "cannot start the WAL checkpointer", std::string(checkpointer.status().message()));
  }
  checkpointer_ = std::move(*checkpointer);
  return absl::OkStatus();
}

int64_t LocalCa::NowMillis() const {
  if (options_.now_unix_millis) return options_.now_unix_millis();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool LocalCa::ServesCa(const std::string& ca) const { return EqualsIgnoreCase(ca, options_.ca_name); }

const TemplatePolicy* LocalCa::FindTemplate(const std::string& name) const {
  for (const TemplatePolicy& t : options_.templates) {
    if (EqualsIgnoreCase(t.name, name)) return &t;
  }
  return nullptr;
}

absl::StatusOr<std::vector<uint8_t>> LocalCa::Sign(const std::vector<uint8_t>& csr_der, const std::string& ekus,
                                                   int validity_days, std::string* serial_hex) const {
  absl::StatusOr<pki::ParsedCsr> csr = pki::ParseCsr(csr_der);
  if (!csr.ok()) return csr.status();
  return Sign(csr->request.get(), ekus, validity_days, serial_hex);
}

absl::StatusOr<std::vector<uint8_t>> LocalCa::Sign(X509_REQ* csr, const std::string& ekus, int validity_days,
                                                   std::string* serial_hex) const {
  pki::IssueOptions issue;
  issue.validity_days = validity_days;
  for (absl::string_view oid : absl::StrSplit(ekus, ',', absl::SkipEmpty())) {
    issue.ekus.emplace_back(oid);
  }
  issue.now_unix_seconds = NowMillis() / 1000;
  absl::StatusOr<pki::X509Ptr> cert = pki::IssueCertificate(ca_cert_.get(), ca_key_.get(), csr, issue);
  if (!cert.ok()) return cert.status();
  *serial_hex = pki::SerialHex(cert->get());
  return pki::CertToDer(cert->get());
}

CaResponse LocalCa::ToResponse(const Row& row) const {
  CaResponse response;
  response.request_id = row.id;
  response.disposition = row.disposition;
  response.hresult = row.hresult;
  response.message = row.message;
  if (row.disposition == Disposition::kIssued || row.disposition == Disposition::kRevoked) {
    response.cert_der = row.cert;
    response.chain_der = {ca_cert_der_};
  }
  return response;
}

absl::StatusOr<CaResponse> LocalCa::Submit(const SubmitRequest& request) {
  if (!ServesCa(request.target.ca)) {
    return CaError(hr::kInvalidArg, absl::StrCat("Submit: this CA is ", Quote(options_.ca_name), ", not ",
                                                 Quote(request.target.ca), " (check the CA name in the config)"));
  }
  absl::StatusOr<pki::ParsedCsr> csr = pki::ParseCsr(request.csr_der);
  if (!csr.ok()) return CaError(hr::kAsn1BadTag, absl::StrCat("Submit: ", csr.status().message()));
  if (!csr->signature_valid) {
    return CaError(hr::kBadSignature,
                   absl::StrCat("Submit: CSR signature does not verify (subject ", Quote(csr->subject), ")"));
  }

  const TemplatePolicy* policy = nullptr;
  if (request.template_name.empty()) {
    policy = FindTemplate("");
    if (policy == nullptr && !options_.default_template.empty()) {
      policy = FindTemplate(options_.default_template);
    }
    if (policy == nullptr) {
      return CaError(hr::kNoCertType, absl::StrCat("Submit: the request names no certificate template and CA ",
                                                   Quote(options_.ca_name), " has no default template"));
    }
  } else {
    policy = FindTemplate(request.template_name);
    if (policy == nullptr) {
      std::vector<std::string> offered;
      for (const TemplatePolicy& t : options_.templates) offered.push_back(Quote(t.name));
      return CaError(hr::kUnsupportedCertType,
                     absl::StrCat("Submit: template ", Quote(request.template_name), " is not offered by CA ",
                                  Quote(options_.ca_name),
                                  " (offered: ", offered.empty() ? "none" : absl::StrJoin(offered, ", "), ")"));
    }
  }

  const int64_t now = NowMillis();
  Row row;
  row.requester = request.caller.name;
  row.template_name = policy->name;
  row.subject = csr->subject;
  row.csr = request.csr_der;
  row.ekus = absl::StrJoin(policy->ekus, ",");
  row.validity_days = policy->validity_days;
  row.submitted_ms = now;

  const bool is_ec = csr->key_type == "EC";
  const bool is_rsa_like = csr->key_type == "RSA" || csr->key_type == "DSA";
  const int min_bits = is_ec ? policy->min_ec_key_bits : is_rsa_like ? policy->min_key_bits : 0;
  if (csr->subject.empty() && csr->subject_alt_names.empty()) {
    row.disposition = Disposition::kDenied;
    row.hresult = hr::kBadRequestSubject;
    row.message = absl::StrCat(kMessagePolicyDenied, ": ", pki::AbslView(HresultText(hr::kBadRequestSubject)),
                               " (the CSR has an empty subject and no subjectAltName)");
    row.resolved_ms = now;
  } else if (csr->key_bits < min_bits) {
    row.disposition = Disposition::kDenied;
    row.hresult = hr::kKeyLength;
    row.message = absl::StrCat(kMessagePolicyDenied, ": ", pki::AbslView(HresultText(hr::kKeyLength)), " (",
                               csr->key_type, " key of ", csr->key_bits, " bits; template ", Quote(policy->name),
                               " requires at least ", min_bits, ")");
    row.resolved_ms = now;
  } else if (policy->policy == IssuancePolicy::kDeny) {
    row.disposition = Disposition::kDenied;
    row.hresult = hr::kAdminDeniedRequest;
    row.message = absl::StrCat(kMessagePolicyDenied, ": template ", Quote(policy->name), " denies all requests");
    row.resolved_ms = now;
  } else if (policy->policy == IssuancePolicy::kPending) {
    row.disposition = Disposition::kUnderSubmission;
    row.hresult = hr::kRequestPending;
    row.message = kMessagePending;
    if (policy->pending_seconds > 0) row.pending_until_ms = now + policy->pending_seconds * 1000;
  } else {
    // Sign before taking the database lock, so submits sign in parallel; the request parsed
    // above is reused (parsing a public key is costly in OpenSSL 3.0).
    absl::StatusOr<std::vector<uint8_t>> cert = Sign(csr->request.get(), row.ekus, row.validity_days, &row.serial);
    if (!cert.ok()) {
      return CaError(hr::kFail, absl::StrCat("Submit: signing failed: ", cert.status().message()));
    }
    row.cert = std::move(*cert);
    row.disposition = Disposition::kIssued;
    row.hresult = hr::kOk;
    row.message = kMessageIssued;
    row.resolved_ms = now;
  }

  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<Statement> insert = db_->Prepare(
      "INSERT INTO requests (requester, template, subject, csr, ekus, validity_days, "
      "disposition, hresult, message, cert, serial, submitted_ms, pending_until_ms, "
      "resolved_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)");
  if (!insert.ok()) {
    return CaError(hr::kFail,
                   DbErrorText(options_.dir, "cannot record the request", std::string(insert.status().message())));
  }
  insert->BindText(1, row.requester)
      .BindText(2, row.template_name)
      .BindText(3, row.subject)
      .BindInt64(6, row.validity_days)
      .BindInt64(7, static_cast<int64_t>(row.disposition))
      .BindInt64(8, row.hresult)
      .BindText(9, row.message)
      .BindInt64(12, row.submitted_ms);
  BindBytes(*insert, 4, row.csr);
  insert->BindText(5, row.ekus);
  BindBytes(*insert, 10, row.cert);
  if (row.serial.empty()) {
    insert->BindNull(11);
  } else {
    insert->BindText(11, row.serial);
  }
  if (row.pending_until_ms == 0) {
    insert->BindNull(13);
  } else {
    insert->BindInt64(13, row.pending_until_ms);
  }
  if (row.resolved_ms == 0) {
    insert->BindNull(14);
  } else {
    insert->BindInt64(14, row.resolved_ms);
  }
  if (absl::Status s = insert->Run(); !s.ok()) {
    return CaError(hr::kFail, DbErrorText(options_.dir, "cannot record the request", std::string(s.message())));
  }
  const int64_t id = db_->LastInsertRowId();
  if (id <= 0 || id > std::numeric_limits<uint32_t>::max()) {
    return CaError(hr::kFail, absl::StrCat("Submit: request ID ", id, " is out of range"));
  }
  row.id = static_cast<uint32_t>(id);
  return ToResponse(row);
}

absl::StatusOr<LocalCa::Row> LocalCa::LoadRow(uint32_t request_id, bool with_csr, std::string_view context) const {
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<Statement> select = db_->Prepare(
      "SELECT id, requester, template, subject, ekus, validity_days, disposition, "
      "hresult, message, cert, serial, submitted_ms, pending_until_ms, resolved_ms, "
      "CASE WHEN ?2 THEN csr END FROM requests WHERE id = ?1");
  auto read_error = [&](const absl::Status& s) {
    return CaError(hr::kFail, absl::StrCat(pki::AbslView(context), ": ",
                                           DbErrorText(options_.dir, absl::StrCat("cannot read request ", request_id),
                                                       std::string(s.message()))));
  };
  if (!select.ok()) return read_error(select.status());
  select->BindInt64(1, request_id).BindInt64(2, with_csr ? 1 : 0);
  absl::StatusOr<bool> found = select->Step();
  if (!found.ok()) return read_error(found.status());
  if (!*found) {
    return CaError(hr::kPropertyEmpty, absl::StrCat(pki::AbslView(context), ": request ID ", request_id,
                                                    " does not exist on CA ", Quote(options_.ca_name)));
  }
  const Statement& r = *select;
  Row row;
  row.id = static_cast<uint32_t>(r.ColumnInt64(0));
  row.requester = r.ColumnText(1);
  row.template_name = r.ColumnText(2);
  row.subject = r.ColumnText(3);
  row.ekus = r.ColumnText(4);
  row.validity_days = static_cast<int>(r.ColumnInt64(5));
  row.disposition = static_cast<Disposition>(r.ColumnInt64(6));
  row.hresult = static_cast<uint32_t>(r.ColumnInt64(7));
  row.message = r.ColumnText(8);
  row.cert = ColumnBytes(r, 9);
  row.serial = r.ColumnText(10);
  row.submitted_ms = r.ColumnInt64(11);
  row.pending_until_ms = r.ColumnIsNull(12) ? 0 : r.ColumnInt64(12);
  row.resolved_ms = r.ColumnIsNull(13) ? 0 : r.ColumnInt64(13);
  if (with_csr) row.csr = ColumnBytes(r, 14);
  return row;
}

absl::StatusOr<LocalCa::Row> LocalCa::ResolvePending(const Row& pending, bool issue, std::string_view message) {
  absl::StatusOr<Row> full = LoadRow(pending.id, /*with_csr=*/issue, "Resolve");
  if (!full.ok()) return full.status();
  if (full->disposition != Disposition::kUnderSubmission) return full;  // resolved meanwhile
  const int64_t now = NowMillis();
  std::vector<uint8_t> cert;
  std::string serial;
  if (issue) {
    absl::StatusOr<std::vector<uint8_t>> signed_cert = Sign(full->csr, full->ekus, full->validity_days, &serial);
    if (!signed_cert.ok()) {
      return CaError(hr::kFail,
                     absl::StrCat("issuing pending request ", pending.id, ": ", signed_cert.status().message()));
    }
    cert = std::move(*signed_cert);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    absl::StatusOr<Statement> update = db_->Prepare(
        "UPDATE requests SET disposition = ?2, hresult = ?3, message = ?4, cert = ?5, "
        "serial = ?6, resolved_ms = ?7 WHERE id = ?1 AND disposition = ?8");
    absl::Status done = update.status();
    if (done.ok()) {
      update->BindInt64(1, pending.id)
          .BindInt64(2, static_cast<int64_t>(issue ? Disposition::kIssued : Disposition::kDenied))
          .BindInt64(3, issue ? hr::kOk : hr::kAdminDeniedRequest)
          .BindText(4, message)
          .BindInt64(7, now)
          .BindInt64(8, static_cast<int64_t>(Disposition::kUnderSubmission));
      BindBytes(*update, 5, cert);
      if (serial.empty()) {
        update->BindNull(6);
      } else {
        update->BindText(6, serial);
      }
      done = update->Run();
    }
    if (!done.ok()) {
      return CaError(hr::kFail, DbErrorText(options_.dir, absl::StrCat("cannot update request ", pending.id),
                                            std::string(done.message())));
    }
  }
  // Whoever won the race, the row now holds the final state.
  return LoadRow(pending.id, /*with_csr=*/false, "Resolve");
}

absl::StatusOr<CaResponse> LocalCa::Retrieve(const RetrieveRequest& request) {
  if (!ServesCa(request.target.ca)) {
    return CaError(hr::kInvalidArg, absl::StrCat("Retrieve: this CA is ", Quote(options_.ca_name), ", not ",
                                                 Quote(request.target.ca), " (check the CA name in the config)"));
  }
  absl::StatusOr<Row> row = LoadRow(request.request_id, /*with_csr=*/false, "Retrieve");
  if (!row.ok()) return row.status();
  if (!EqualsIgnoreCase(row->requester, request.caller.name)) {
    return CaError(hr::kAccessDenied, absl::StrCat("Retrieve: request ", request.request_id,
                                                   " was submitted by "
                                                   "another identity than ",
                                                   Quote(request.caller.name),
                                                   "; only the submitter may retrieve it (run every node as the same "
                                                   "service account)"));
  }
  if (row->disposition == Disposition::kUnderSubmission && row->pending_until_ms > 0 &&
      NowMillis() >= row->pending_until_ms) {
    row = ResolvePending(*row, /*issue=*/true, kMessageIssued);
    if (!row.ok()) return row.status();
  }
  return ToResponse(*row);
}

absl::Status LocalCa::Ping(const CaTarget& target, const CallerIdentity& /*caller*/) {
  if (!ServesCa(target.ca)) {
    return CaError(hr::kInvalidArg,
                   absl::StrCat("Ping: this CA is ", Quote(options_.ca_name), ", not ", Quote(target.ca)));
  }
  if (ca_key_ == nullptr || ca_cert_ == nullptr) return CaError(hr::kUnexpected, "Ping: CA not loaded");
  return absl::OkStatus();
}

absl::StatusOr<CaResponse> LocalCa::Approve(uint32_t request_id) {
  absl::StatusOr<Row> row = LoadRow(request_id, /*with_csr=*/false, "Approve");
  if (!row.ok()) return row.status();
  if (row->disposition != Disposition::kUnderSubmission) {
    return CaError(hr::kBadRequestStatus,
                   absl::StrCat("Approve: request ", request_id, " is ",
                                pki::AbslView(DispositionName(row->disposition)), ", not pending"));
  }
  row = ResolvePending(*row, /*issue=*/true, kMessageIssued);
  if (!row.ok()) return row.status();
  return ToResponse(*row);
}

absl::StatusOr<CaResponse> LocalCa::Deny(uint32_t request_id) {
  absl::StatusOr<Row> row = LoadRow(request_id, /*with_csr=*/false, "Deny");
  if (!row.ok()) return row.status();
  if (row->disposition != Disposition::kUnderSubmission) {
    return CaError(hr::kBadRequestStatus,
                   absl::StrCat("Deny: request ", request_id, " is ", pki::AbslView(DispositionName(row->disposition)),
                                ", not pending"));
  }
  row = ResolvePending(*row, /*issue=*/false, kMessageAdminDenied);
  if (!row.ok()) return row.status();
  return ToResponse(*row);
}

absl::StatusOr<LocalCaRequest> LocalCa::Revoke(const std::string& serial_hex, uint32_t reason,
                                               int64_t effective_unix_millis) {
  const bool release = reason == kReasonReleaseFromHold;
  uint32_t request_id = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // TEXT = compares bytes: the serial must be written as this CA writes it.
    absl::StatusOr<Statement> select =
        db_->Prepare("SELECT id, disposition, revocation_reason FROM requests WHERE serial = ?1");
    if (!select.ok()) return DbError(options_.dir, "cannot look up a serial", std::string(select.status().message()));
    select->BindText(1, serial_hex);
    absl::StatusOr<bool> found = select->Step();
    if (!found.ok()) return DbError(options_.dir, "cannot look up a serial", std::string(found.status().message()));
    if (!*found) {
      return CaError(hr::kInvalidArg, absl::StrCat("Revoke: no certificate with serial number ", Quote(serial_hex),
                                                   " on CA ", Quote(options_.ca_name),
                                                   " (serials are compared as the CA writes them, case-sensitively)"));
    }
    request_id = static_cast<uint32_t>(select->ColumnInt64(0));
    const auto disposition = static_cast<Disposition>(select->ColumnInt64(1));
    const bool on_hold = !select->ColumnIsNull(2) && select->ColumnInt64(2) == kReasonCertificateHold;
    if (release && !(disposition == Disposition::kRevoked && on_hold)) {
      return CaError(hr::kBadRequestStatus,
                     absl::StrCat("Revoke: the certificate with serial number ", Quote(serial_hex), " is not on hold"));
    }
    absl::StatusOr<Statement> update = db_->Prepare(
        "UPDATE requests SET disposition = ?2, message = ?3, revocation_reason = ?4, revoked_ms = ?5 WHERE id = ?1");
    absl::Status done = update.status();
    if (done.ok()) {
      update->BindInt64(1, request_id)
          .BindInt64(2, static_cast<int64_t>(release ? Disposition::kIssued : Disposition::kRevoked))
          .BindText(3, release ? kMessageIssued : kMessageRevoked);
      if (release) {
        update->BindNull(4).BindNull(5);
      } else {
        update->BindInt64(4, reason).BindInt64(5, effective_unix_millis > 0 ? effective_unix_millis : NowMillis());
      }
      done = update->Run();
    }
    if (!done.ok()) {
      return CaError(hr::kFail, DbErrorText(options_.dir, absl::StrCat("cannot revoke request ", request_id),
                                            std::string(done.message())));
    }
  }
  auto rows = List(request_id - 1, 1);
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return CaError(hr::kFail, "Revoke: the request vanished");
  return rows->front();
}

absl::StatusOr<std::vector<LocalCaRequest>> LocalCa::List(uint32_t after_id, size_t limit) const {
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<Statement> select = db_->Prepare(
      "SELECT id, requester, template, subject, disposition, hresult, message, cert, "
      "serial, submitted_ms, resolved_ms, revocation_reason, revoked_ms FROM requests WHERE id > ?1 ORDER BY id "
      "LIMIT ?2");
  if (!select.ok()) return DbError(options_.dir, "cannot list requests", std::string(select.status().message()));
  const int64_t max_limit = std::numeric_limits<int64_t>::max();
  select->BindInt64(1, after_id)
      .BindInt64(2, limit > static_cast<size_t>(max_limit) ? max_limit : static_cast<int64_t>(limit));
  std::vector<LocalCaRequest> out;
  for (;;) {
    absl::StatusOr<bool> row = select->Step();
    if (!row.ok()) return DbError(options_.dir, "cannot list requests", std::string(row.status().message()));
    if (!*row) break;
    const Statement& q = *select;
    LocalCaRequest r;
    r.request_id = static_cast<uint32_t>(q.ColumnInt64(0));
    r.requester = q.ColumnText(1);
    r.template_name = q.ColumnText(2);
    r.subject = q.ColumnText(3);
    r.disposition = static_cast<Disposition>(q.ColumnInt64(4));
    r.hresult = static_cast<uint32_t>(q.ColumnInt64(5));
    r.message = q.ColumnText(6);
    r.cert_der = ColumnBytes(q, 7);
    r.serial_hex = q.ColumnText(8);
    r.submitted_unix_millis = q.ColumnInt64(9);
    r.resolved_unix_millis = q.ColumnIsNull(10) ? 0 : q.ColumnInt64(10);
    if (!q.ColumnIsNull(11)) r.revocation_reason = static_cast<uint32_t>(q.ColumnInt64(11));
    r.revoked_unix_millis = q.ColumnIsNull(12) ? 0 : q.ColumnInt64(12);
    out.push_back(std::move(r));
  }
  return out;
}

absl::StatusOr<uint64_t> LocalCa::RequestCount() const {
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<int64_t> count = db_->QueryInt64("SELECT COUNT(*) FROM requests");
  if (!count.ok()) return DbError(options_.dir, "cannot count requests", std::string(count.status().message()));
  return static_cast<uint64_t>(*count);
}

std::string LocalCa::CaCertificatePem() const {
  absl::StatusOr<std::string> pem = pki::CertToPem(ca_cert_.get());
  return pem.ok() ? *pem : std::string();
}

}  // namespace adcsc::ca
