// The embedded CA engine: a CaBackend that signs CSRs itself with OpenSSL, keeps every request
// in SQLite like ADCS keeps its database, and applies per-template policies (issue, hold for a
// manager, deny, minimum key size). Used by the `local` backend, the ADCS emulator and tests.
// Thread-safety: all methods may be called concurrently from any thread; signing runs in
// parallel, only the database accesses are serialised. WAL checkpoints of the database run on
// a background thread (store/wal_checkpointer.h), not inside a submit's commit.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "node/ca/ca_backend.h"
#include "node/pki/keys.h"
#include "node/pki/openssl_ptr.h"

namespace adcsc::store::sqlite {
class Connection;
class WalCheckpointer;
}  // namespace adcsc::store::sqlite

namespace adcsc::ca {

// What the CA does with a request for a template once the CSR and key size are acceptable.
enum class IssuancePolicy {
  kIssue,    // sign at once: CR_DISP_ISSUED
  kPending,  // CR_DISP_UNDER_SUBMISSION until pending_seconds pass or Approve()/Deny()
  kDeny,     // CR_DISP_DENIED with CERTSRV_E_ADMIN_DENIED_REQUEST
};

struct TemplatePolicy {
  std::string name;               // matched case-insensitively, like AD template names
  std::vector<std::string> ekus;  // dotted OIDs or names: serverAuth, clientAuth, ...
  int validity_days = 365;        // capped at the CA certificate's notAfter
  int min_key_bits = 2048;        // minimum RSA (and DSA) modulus size
  int min_ec_key_bits = 256;      // minimum EC field size
  IssuancePolicy policy = IssuancePolicy::kIssue;
  // For kPending: the request is issued by the first Retrieve at least this long after the
  // submit. 0: it stays pending until Approve() or Deny().
  int64_t pending_seconds = 0;
};

struct LocalCaOptions {
  // Holds ca-key.pem (0600), ca-cert.pem and requests.db; created (0700) if absent.
  std::filesystem::path dir;
  // The CA instance name this CA answers for (Jamf's "config.ca"), compared
  // case-insensitively. A request for another name fails with E_INVALIDARG
  // (0x80070057, "The parameter is incorrect."), which is what ADCS returns for an unknown
  // CA name (MS-WCCE 3.2.1.4.2.1.1).
  std::string ca_name;
  std::string common_name;  // CN of a newly created CA certificate; empty: ca_name
  pki::KeyType key_type = pki::KeyType::kEcP256;
  int ca_years = 10;
  std::vector<TemplatePolicy> templates;
  // A request with an empty template name uses the template named "" if one is configured,
  // else this one if set, else fails with CERTSRV_E_NO_CERT_TYPE (as an enterprise CA does).
  std::string default_template;
  // SQLite synchronous=FULL (every request survives power loss) or NORMAL (WAL, faster; the
  // last transactions may be lost on power loss but the database stays consistent).
  bool durable = true;
  // Wall clock in milliseconds since the epoch; empty: the system clock. Tests move it to
  // release pending requests. Also used as the start of issued certificates' validity.
  // Called from any thread, so it must be thread-safe.
  std::function<int64_t()> now_unix_millis;
  // Told when a background WAL checkpoint of the database fails; requests go on regardless.
  // Called from a background thread or inside a commit, so it must be quick and thread-safe.
  // Empty: a line on stderr.
  std::function<void(const absl::Status&)> on_checkpoint_error;
};

// Every problem with `options`, one per line ("templates[2].ekus: unknown ..."); OK if none.
// Open() calls it; the config loader may call it to report problems at start-up.
absl::Status ValidateLocalCaOptions(const LocalCaOptions& options);

// One row of the request database, as the admin methods return it (the CSR is left out).
struct LocalCaRequest {
  uint32_t request_id = 0;
  std::string requester;      // CallerIdentity::name of the submitter
  std::string template_name;  // the resolved template
  std::string subject;        // of the CSR, RFC 2253
  Disposition disposition = Disposition::kIncomplete;
  uint32_t hresult = 0;
  std::string message;
  std::vector<uint8_t> cert_der;  // when issued
  std::string serial_hex;         // when issued
  int64_t submitted_unix_millis = 0;
  int64_t resolved_unix_millis = 0;           // issued or denied; 0 while pending
  std::optional<uint32_t> revocation_reason;  // CRL reason while revoked
  int64_t revoked_unix_millis = 0;            // when the revocation takes effect
};

class LocalCa final : public CaBackend {
 public:
  // Opens the CA in options.dir: on first start generates the CA key and self-signed
  // certificate, afterwards loads them (the key file must be mode 0600 or stricter, and
  // the certificate must match it). An existing CA is kept as it is even if common_name,
  // key_type or ca_years changed.
  static absl::StatusOr<std::unique_ptr<LocalCa>> Open(LocalCaOptions options);

  ~LocalCa() override;
  LocalCa(const LocalCa&) = delete;
  LocalCa& operator=(const LocalCa&) = delete;

  // Errors (no request ID is consumed): wrong CA name -> E_INVALIDARG; CSR not DER ->
  // CRYPT_E_ASN1_BADTAG; bad CSR signature -> NTE_BAD_SIGNATURE; no template ->
  // CERTSRV_E_NO_CERT_TYPE; unknown template -> CERTSRV_E_UNSUPPORTED_CERT_TYPE.
  // Otherwise a new sequential request ID with: empty subject and no SAN -> DENIED
  // (CERTSRV_E_BAD_REQUESTSUBJECT); key below the template minimum -> DENIED
  // (CERTSRV_E_KEY_LENGTH); policy deny -> DENIED (CERTSRV_E_ADMIN_DENIED_REQUEST); policy
  // pending -> UNDER_SUBMISSION; else ISSUED with the certificate.
  absl::StatusOr<CaResponse> Submit(const SubmitRequest& request) override;

  // The request's current state; a pending request whose time has come is issued first.
  // Unknown ID -> CERTSRV_E_PROPERTY_EMPTY; caller other than the submitter (names compared
  // case-insensitively, like Windows accounts) -> E_ACCESSDENIED.
  absl::StatusOr<CaResponse> Retrieve(const RetrieveRequest& request) override;

  // OK when target.ca is this CA's name; E_INVALIDARG otherwise.
  absl::Status Ping(const CaTarget& target, const CallerIdentity& caller) override;

  std::string Kind() const override { return "local"; }

  // Admin (the emulator and tests). A pending request -> issued / denied (by "CA
  // administrator"). Other states -> CERTSRV_E_BAD_REQUESTSTATUS; unknown ID ->
  // CERTSRV_E_PROPERTY_EMPTY.
  absl::StatusOr<CaResponse> Approve(uint32_t request_id);
  absl::StatusOr<CaResponse> Deny(uint32_t request_id);

  // RevokeCertificate (MS-CSRA 3.1.4.1.8) as the emulator serves it: the issued certificate
  // whose serial is `serial_hex` exactly (case-sensitive) becomes revoked with `reason` from
  // `effective_unix_millis` (0: now); revoking again updates reason and date. Reason
  // 0xffffffff takes a certificateHold (6) back: issued again. Unknown serial -> E_INVALIDARG;
  // releasing a certificate not on hold -> CERTSRV_E_BAD_REQUESTSTATUS. Returns the row after.
  absl::StatusOr<LocalCaRequest> Revoke(const std::string& serial_hex, uint32_t reason, int64_t effective_unix_millis);

  // Requests with ID > after_id, oldest first, at most `limit`.
  absl::StatusOr<std::vector<LocalCaRequest>> List(uint32_t after_id = 0, size_t limit = 10'000) const;
  absl::StatusOr<uint64_t> RequestCount() const;

  std::vector<uint8_t> CaCertificateDer() const { return ca_cert_der_; }
  std::string CaCertificatePem() const;
  // The CA certificate (shared, read-only; lives as long as this LocalCa).
  X509* ca_certificate() const { return ca_cert_.get(); }
  const LocalCaOptions& options() const { return options_; }

 private:
  struct Row;
  struct Decision;

  explicit LocalCa(LocalCaOptions options);
  absl::Status LoadOrCreateCa();
  absl::Status OpenDatabase();
  int64_t NowMillis() const;
  bool ServesCa(const std::string& ca) const;
  const TemplatePolicy* FindTemplate(const std::string& name) const;
  // Signs `csr_der` per the snapshot of template settings stored with the request.
  absl::StatusOr<std::vector<uint8_t>> Sign(const std::vector<uint8_t>& csr_der, const std::string& ekus,
                                            int validity_days, std::string* serial_hex) const;
  // The same for a request already parsed (the caller keeps ownership of `csr`).
  absl::StatusOr<std::vector<uint8_t>> Sign(X509_REQ* csr, const std::string& ekus, int validity_days,
                                            std::string* serial_hex) const;
  // `context` ("Retrieve", "Approve", ...) starts error messages.
  absl::StatusOr<Row> LoadRow(uint32_t request_id, bool with_csr, std::string_view context) const;
  // Moves a pending row to issued (signing outside the lock) or denied; returns the row as
  // it is afterwards (another thread may have resolved it first).
  absl::StatusOr<Row> ResolvePending(const Row& row, bool issue, std::string_view message);
  CaResponse ToResponse(const Row& row) const;  // with this CA's certificate as the chain

  const LocalCaOptions options_;
  pki::EvpPkeyPtr ca_key_;
  pki::X509Ptr ca_cert_;
  std::vector<uint8_t> ca_cert_der_;

  mutable std::mutex mu_;
  std::unique_ptr<store::sqlite::Connection> db_ ABSL_GUARDED_BY(mu_);
  // Checkpoints db_'s WAL off the commit path. Guarded by mu_ because starting and stopping
  // it uses db_; destroyed before db_ closes.
  std::unique_ptr<store::sqlite::WalCheckpointer> checkpointer_ ABSL_GUARDED_BY(mu_);
};

}  // namespace adcsc::ca
