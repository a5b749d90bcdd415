// CA administration with a node's identity; see ca_admin.h.
#include "node/app/ca_admin.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "node/ca/hresult.h"
#include "node/ca/icpr_backend.h"
#include "node/pki/x509.h"

namespace adcsc::node {

std::string_view CaAdminOpName(CaAdminOp op) {
  switch (op) {
    case CaAdminOp::kApprove:
      return "approve";
    case CaAdminOp::kDeny:
      return "deny";
    case CaAdminOp::kRevoke:
      return "revoke";
    case CaAdminOp::kInfo:
      return "info";
  }
  return "unknown";
}

std::optional<CaAdminOp> CaAdminOpByName(std::string_view name) {
  for (CaAdminOp op : {CaAdminOp::kApprove, CaAdminOp::kDeny, CaAdminOp::kRevoke, CaAdminOp::kInfo}) {
    if (CaAdminOpName(op) == name) return op;
  }
  return std::nullopt;
}

uint64_t UnixSecondsToFiletime(int64_t unix_seconds) {
  if (unix_seconds <= 0) return 0;
  constexpr uint64_t kFiletimeAtUnixEpoch = 116'444'736'000'000'000ULL;  // 1970-01-01 in FILETIME
  return kFiletimeAtUnixEpoch + static_cast<uint64_t>(unix_seconds) * 10'000'000ULL;
}

absl::StatusOr<CaAdminOutcome> RunCaAdmin(const Config& config, const std::vector<AllowedCa>& allow,
                                          std::shared_ptr<ca::IcprAuthenticator> auth, const CaAdminRequest& request) {
  if (FindAllowedCa(allow, request.dc, request.ca) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("\"", request.dc, "\\", request.ca,
                                                   "\" is not in ca.allow (the connector only talks to allowed CAs)"));
  }
  if ((request.op == CaAdminOp::kApprove || request.op == CaAdminOp::kDeny) && request.request_id == 0) {
    return absl::InvalidArgumentError("a request ID is needed");
  }
  if (request.op == CaAdminOp::kRevoke && request.request_id == 0 && request.serial.empty()) {
    return absl::InvalidArgumentError("a request ID or a serial number is needed");
  }
  const IcprConfig& icpr = config.ca.icpr;
  const ca::CaTarget target{request.dc, request.ca};
  const ca::CallerIdentity caller{config.ca.identity};
  ca::IcprBackendOptions icpr_options;
  icpr_options.auth = auth;
  icpr_options.epm_port = icpr.epm_port;
  icpr_options.connect_timeout = icpr.connect_timeout;
  icpr_options.call_timeout = icpr.call_timeout;
  icpr_options.max_idle_connections = 0;

  CaAdminOutcome outcome;
  outcome.request_id = request.request_id;
  outcome.serial = request.serial;
  if (request.op == CaAdminOp::kRevoke && request.serial.empty()) {
    // The serial of the request's certificate, as the CA wrote it (lowercase hex).
    ca::IcprBackend icpr_backend(icpr_options);
    auto r = icpr_backend.Retrieve({target, caller, request.request_id});
    if (!r.ok()) return r.status();
    if (r->cert_der.empty()) {
      return ca::CaError(ca::hr::kBadRequestStatus,
                         absl::StrCat("request ", request.request_id, " has no certificate to revoke"));
    }
    auto cert = pki::CertFromDer(r->cert_der);
    if (!cert.ok()) return cert.status();
    outcome.serial = pki::SerialHex(cert->get());
    outcome.cert_der = r->cert_der;
  }

  dcom::CertAdminOptions options;
  options.host = request.dc;
  options.authority = request.ca;
  options.activation_port = icpr.epm_port;
  options.connect_timeout = icpr.connect_timeout;
  options.call_timeout = icpr.call_timeout;
  auto session = dcom::CertAdminSession::Open(
      options, [auth](rpc::ClientOptions base, const std::vector<rpc::SyntaxId>& interfaces, uint8_t level) {
        return auth->Connect(std::move(base), interfaces, level);
      });
  if (!session.ok()) return session.status();
  outcome.mechanism = (*session)->mechanism();
  absl::Status done;
  switch (request.op) {
    case CaAdminOp::kApprove: {
      auto disposition = (*session)->Resubmit(request.request_id);
      done = disposition.status();
      if (disposition.ok()) outcome.disposition = static_cast<ca::Disposition>(*disposition);
      break;
    }
    case CaAdminOp::kDeny:
      done = (*session)->Deny(request.request_id);
      outcome.disposition = ca::Disposition::kDenied;
      break;
    case CaAdminOp::kRevoke:
      done = (*session)->Revoke(outcome.serial, request.reason, UnixSecondsToFiletime(request.effective_unix_seconds));
      outcome.disposition =
          request.reason == dcom::crl_reason::kReleaseFromHold ? ca::Disposition::kIssued : ca::Disposition::kRevoked;
      break;
    case CaAdminOp::kInfo: {
      auto info = (*session)->GetCaInfo();
      done = info.status();
      if (info.ok()) outcome.info = *std::move(info);
      break;
    }
  }
  (void)(*session)->Release();
  if (!done.ok()) return done;
  if (request.op != CaAdminOp::kInfo && outcome.request_id != 0) {
    // The CA's own answer now (certificate, message), for the store to answer from.
    ca::IcprBackend icpr_backend(icpr_options);
    if (auto r = icpr_backend.Retrieve({target, caller, outcome.request_id}); r.ok()) {
      r->request_id = outcome.request_id;
      if (!r->cert_der.empty()) outcome.cert_der = r->cert_der;
      outcome.after = *std::move(r);
    }
  }
  return outcome;
}

}  // namespace adcsc::node
