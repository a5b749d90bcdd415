// A CA administration operation (MS-CSRA over DCOM) run with a node's configuration and CA
// identity: approve (ResubmitRequest) or deny a pending request, revoke a certificate by
// serial or by request ID (its certificate is fetched over MS-ICPR for the serial), or read
// the CA's name and validity. Shared by `adcsc ctl revoke|approve|deny|ca-info --config` on a
// node's host and by the node's admin channel. Checks ca.allow first: the connector talks to
// allowed CAs only. Thread-safety: RunCaAdmin may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "node/ca/ca_backend.h"
#include "node/ca/icpr_auth.h"
#include "node/config/config.h"
#include "node/dcom/cert_admin_client.h"

namespace adcsc::node {

enum class CaAdminOp { kApprove, kDeny, kRevoke, kInfo };
// "approve", "deny", "revoke", "info"; and back (nullopt for other names).
std::string_view CaAdminOpName(CaAdminOp op);
std::optional<CaAdminOp> CaAdminOpByName(std::string_view name);

struct CaAdminRequest {
  CaAdminOp op = CaAdminOp::kInfo;
  std::string dc;
  std::string ca;
  uint32_t request_id = 0;  // approve, deny; revoke when serial is empty
  std::string serial;       // revoke: hex as the CA writes it
  uint32_t reason = 0;      // revoke: dcom::crl_reason
  // revoke: when the revocation takes effect, Unix seconds (UTC); 0 = now, at the CA.
  int64_t effective_unix_seconds = 0;
};

// FILETIME (100 ns since 1601-01-01 UTC) of a Unix time in seconds, as RevokeCertificate
// takes it; 0 for 0 (the CA's "now").
uint64_t UnixSecondsToFiletime(int64_t unix_seconds);

struct CaAdminOutcome {
  uint32_t request_id = 0;                                     // when known
  std::string serial;                                          // revoke
  ca::Disposition disposition = ca::Disposition::kIncomplete;  // what the request is now
  std::vector<uint8_t> cert_der;                               // revoke by request ID, approve: the certificate
  std::string mechanism;                                       // "ntlm", "negotiate/kerberos", ...
  dcom::CaInfo info;                                           // info
  // approve, deny, revoke by request ID: what an MS-ICPR retrieve answers afterwards (what
  // the store records); nullopt when that retrieve failed or the request ID is not known.
  std::optional<ca::CaResponse> after;
};

// INVALID_ARGUMENT for a CA not in ca.allow or a missing request ID/serial; CA errors as
// ca::CaError statuses (their HRESULT text).
// `allow`: the CA allowlist in force (a node's may have been reloaded since `config` was read).
absl::StatusOr<CaAdminOutcome> RunCaAdmin(const Config& config, const std::vector<AllowedCa>& allow,
                                          std::shared_ptr<ca::IcprAuthenticator> auth, const CaAdminRequest& request);

}  // namespace adcsc::node
