// The seam between the connector and a certificate authority: submit a CSR, retrieve a
// request by ID, ping. Implementations: `icpr` (MS-ICPR over DCE/RPC, later), `local` (the
// embedded CA engine in local_ca.h) and fakes in tests.
//
// Thread-safety: implementations must allow concurrent calls from any thread.
// Errors: a CA that answers with a disposition (issued, pending, denied) is a successful
// call; transport failures and HRESULT errors are returned as absl::Status built with
// CaError() so the HRESULT travels with them.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/cord.h"
#include "absl/strings/string_view.h"

namespace adcsc::ca {

// The CA a request is for, as Jamf sends it in "config": host FQDN and CA instance name.
struct CaTarget {
  std::string dc;
  std::string ca;
};

// Who the CA sees as the caller (DOMAIN\user). ADCS only lets the identity that submitted a
// request retrieve it.
struct CallerIdentity {
  std::string name;
};

// CR_DISP_* values as ADCS returns them.
enum class Disposition : uint32_t {
  kIncomplete = 0,
  kError = 1,
  kDenied = 2,
  kIssued = 3,
  kIssuedOutOfBand = 4,
  kUnderSubmission = 5,
  kRevoked = 6,
};

struct SubmitRequest {
  CaTarget target;
  CallerIdentity caller;
  std::vector<uint8_t> csr_der;
  std::string template_name;  // may be empty (standalone CA)
};

struct RetrieveRequest {
  CaTarget target;
  CallerIdentity caller;
  uint32_t request_id = 0;
};

struct CaResponse {
  uint32_t request_id = 0;
  Disposition disposition = Disposition::kIncomplete;
  uint32_t hresult = 0;           // status accompanying the disposition (0 = S_OK)
  std::string message;            // the CA's disposition message (may be empty)
  std::vector<uint8_t> cert_der;  // issued leaf certificate; empty unless issued/revoked
  // The certificates above the leaf as the CA sent them (ADCS: pctbCertChain's PKCS#7 without
  // the leaf), DER, issuing CA first when the CA orders them so; may be empty.
  std::vector<std::vector<uint8_t>> chain_der{};
};

// A backend's pooled connections to its CAs, for the metrics (backends without a pool: none).
struct CaConnectionStats {
  std::map<std::string, size_t> idle_by_host;  // authenticated connections waiting, per CA host
  uint64_t connections_opened = 0;
  uint64_t connections_reused = 0;
  // Authenticated binds by mechanism ("kerberos", "ntlm"), negotiate's fallbacks to NTLM, and
  // Kerberos ticket renewals.
  std::map<std::string, uint64_t> binds_by_mechanism;
  uint64_t ntlm_fallbacks = 0;
  uint64_t ticket_renewals = 0;
  int64_t ticket_expiry_unix = 0;  // when the Kerberos TGT ends; 0: none
};

// A submit whose request may have reached the CA although no definite answer came back: a
// timeout or a connection lost after the request went out, an answer that could not be
// read, a fault the CA did not sign. The CA may hold a request for it, so the caller must
// not take the failure as "not submitted" (node/api resolves it by searching the CA). The
// mark travels as a payload, so it survives copies of the status.
inline constexpr char kOutcomeUnknownPayload[] = "adcsc.ca_outcome_unknown";
inline absl::Status MarkOutcomeUnknown(absl::Status status) {
  if (!status.ok()) status.SetPayload(kOutcomeUnknownPayload, absl::Cord("1"));
  return status;
}
inline bool IsOutcomeUnknown(const absl::Status& status) {
  return !status.ok() && status.GetPayload(kOutcomeUnknownPayload).has_value();
}

// A failure to authenticate to the CA from this host: Kerberos could not get a ticket for it
// (KDC unreachable, stale keytab, clock skew) or the CA refused the bind. Its HRESULT alone
// ("The RPC server is unavailable") would send an operator to the network, so the detail —
// what failed and what to check — travels with the status (payload, survives copies) and
// goes into the client's answer as well as the log.
inline constexpr char kAuthFailurePayload[] = "adcsc.ca_auth_failure";
inline absl::Status MarkAuthFailure(absl::Status status, absl::string_view detail) {
  if (!status.ok()) status.SetPayload(kAuthFailurePayload, absl::Cord(detail));
  return status;
}
inline std::optional<std::string> AuthFailureOf(const absl::Status& status) {
  if (status.ok()) return std::nullopt;
  auto detail = status.GetPayload(kAuthFailurePayload);
  if (!detail.has_value()) return std::nullopt;
  return std::string(*detail);
}

class CaBackend {
 public:
  virtual ~CaBackend() = default;
  // A failure that leaves open whether the CA took the request carries MarkOutcomeUnknown.
  virtual absl::StatusOr<CaResponse> Submit(const SubmitRequest& request) = 0;
  virtual absl::StatusOr<CaResponse> Retrieve(const RetrieveRequest& request) = 0;
  // Checks that the CA is reachable and accepts this identity.
  virtual absl::Status Ping(const CaTarget& target, const CallerIdentity& caller) = 0;
  // Short name for logs and metrics, e.g. "local" or "icpr".
  virtual std::string Kind() const = 0;
  // The call a failure message names, as operators search for it: the wire call for a real CA
  // ("ICertPassage::CertServerRequest"), else the backend.
  virtual std::string CallName() const { return "CA backend \"" + Kind() + "\""; }
  // The connection pool's figures; nullopt for a backend without one.
  virtual std::optional<CaConnectionStats> ConnectionStats() { return std::nullopt; }
};

}  // namespace adcsc::ca
