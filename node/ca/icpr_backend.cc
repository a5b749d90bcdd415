#include "node/ca/icpr_backend.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "node/ca/hresult.h"
#include "node/pki/x509.h"
#include "node/rpc/endpoint_mapper.h"
#include "node/rpc/pdu.h"

namespace adcsc::ca {
namespace {

// A request ID no CA hands out soon: the ping's status call for it must come back "not found".
constexpr uint32_t kPingRequestId = 0xFFFFFFFF;

bool IsHresult(uint32_t value) { return (value & 0x80000000u) != 0; }

Disposition ToDisposition(uint32_t wire) {
  switch (wire) {
    case rpc::cr_disp::kIncomplete:
      return Disposition::kIncomplete;
    case rpc::cr_disp::kError:
      return Disposition::kError;
    case rpc::cr_disp::kDenied:
      return Disposition::kDenied;
    case rpc::cr_disp::kIssued:
      return Disposition::kIssued;
    case rpc::cr_disp::kIssuedOutOfBand:
      return Disposition::kIssuedOutOfBand;
    case rpc::cr_disp::kUnderSubmission:
      return Disposition::kUnderSubmission;
    case rpc::cr_disp::kRevoked:
      return Disposition::kRevoked;
    default:
      return Disposition::kError;
  }
}

}  // namespace

absl::Status RpcErrorToCaError(const absl::Status& e, bool during_call) {
  const std::string detail(e.message());
  // No Kerberos ticket for the CA from this node: nothing reached the CA, and another node
  // (its own clock, its own path to the KDC) may do better.
  if (rpc::AuthFailedBeforeBind(e)) return CaError(hr::kSecPkgError, detail);
  if (auto fault = rpc::FaultOf(e)) {
    if (*fault == rpc::fault::kAccessDenied) return CaError(hr::kAccessDenied, detail);
    // Win32 codes in a fault become HRESULT_FROM_WIN32; DCE nca_s_* codes a failed call.
    if (*fault < 0x10000) return CaError(0x80070000u | *fault, detail);
    return CaError(hr::kRpcCallFailed, detail);
  }
  switch (e.code()) {
    case absl::StatusCode::kPermissionDenied:
      return CaError(hr::kAccessDenied, detail);
    case absl::StatusCode::kDeadlineExceeded:
      return CaError(during_call ? hr::kTimeout : hr::kRpcServerUnavailable, detail);
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
      return CaError(during_call ? hr::kRpcCallFailed : hr::kRpcServerUnavailable, detail);
    default:
      return CaError(hr::kRpcCallFailed, detail);
  }
}

IcprBackend::IcprBackend(IcprBackendOptions options) : options_(std::move(options)) {}
IcprBackend::~IcprBackend() = default;

IcprBackendCounters IcprBackend::counters() const {
  IcprBackendCounters c{
      connections_opened_.load(), connections_reused_.load(), endpoint_lookups_.load(), retries_.load(), {}};
  if (options_.auth) c.auth = options_.auth->stats();
  return c;
}

std::optional<CaConnectionStats> IcprBackend::ConnectionStats() {
  CaConnectionStats stats;
  stats.idle_by_host = IdleConnections();
  const IcprBackendCounters c = counters();
  stats.connections_opened = c.connections_opened;
  stats.connections_reused = c.connections_reused;
  stats.binds_by_mechanism = {{"kerberos", c.auth.kerberos_binds}, {"ntlm", c.auth.ntlm_binds}};
  stats.ntlm_fallbacks = c.auth.ntlm_fallbacks;
  stats.ticket_renewals = c.auth.credential_renewals;
  stats.ticket_expiry_unix = c.auth.ticket_expiry_unix;
  return stats;
}

std::map<std::string, size_t> IcprBackend::IdleConnections() {
  std::map<std::string, size_t> out;
  std::lock_guard lock(pools_mu_);
  for (auto& [host, pool] : pools_) {
    std::lock_guard pool_lock(pool->mu);
    out[host] = pool->idle.size();
  }
  return out;
}

IcprBackend::HostPool& IcprBackend::PoolFor(const std::string& host) {
  std::lock_guard lock(pools_mu_);
  auto& pool = pools_[absl::AsciiStrToLower(host)];
  if (!pool) pool = std::make_unique<HostPool>();
  return *pool;
}

void IcprBackend::ForgetEndpoint(const std::string& host) {
  HostPool& pool = PoolFor(host);
  std::lock_guard lock(pool.mu);
  pool.port.reset();  // the CA may have restarted on another port
  pool.idle.clear();
}

absl::StatusOr<IcprBackend::Lease> IcprBackend::Acquire(const std::string& host) {
  if (!options_.auth) return absl::FailedPreconditionError("the icpr backend has no authentication configured");
  options_.auth->RenewIfDue();
  HostPool& pool = PoolFor(host);
  std::optional<uint16_t> port;
  {
    std::lock_guard lock(pool.mu);
    while (!pool.idle.empty()) {
      std::unique_ptr<rpc::ClientConnection> c = std::move(pool.idle.back());
      pool.idle.pop_back();
      if (c->Reusable()) {
        connections_reused_++;
        return Lease{std::move(c), true};
      }
    }
    port = pool.port;
  }
  // A cached port may be stale (the CA service restarted on another one): on a failed connect
  // ask the endpoint mapper again, once. Nothing was sent yet, so this is safe for submits.
  const bool cached = port.has_value();
  for (int round = 0;; ++round) {
    if (!port) {
      endpoint_lookups_++;
      auto mapped = rpc::MapTcpEndpoint(host, options_.epm_port, rpc::kIcprSyntax, options_.connect_timeout,
                                        options_.call_timeout);
      if (!mapped.ok()) {
        return RpcErrorToCaError(absl::Status(mapped.status().code(), absl::StrCat("cannot reach the CA at ", host,
                                                                                   ": ", mapped.status().message())),
                                 false);
      }
      port = *mapped;
      std::lock_guard lock(pool.mu);
      pool.port = port;
    }
    rpc::ClientOptions o;
    o.host = host;
    o.port = *port;
    o.connect_timeout = options_.connect_timeout;
    o.call_timeout = options_.call_timeout;
    auto connection = options_.auth->Connect(o, rpc::kIcprSyntax);
    if (connection.ok()) {
      connections_opened_++;
      return Lease{std::move(*connection), false};
    }
    // Refused by the CA, or no Kerberos ticket for it: asking the endpoint mapper again
    // would not help, and the client's answer says why (ca_backend.h, MarkAuthFailure).
    if (absl::IsPermissionDenied(connection.status()) || rpc::AuthFailedBeforeBind(connection.status())) {
      return MarkAuthFailure(RpcErrorToCaError(connection.status(), false), connection.status().message());
    }
    ForgetEndpoint(host);
    if (cached && round == 0) {
      port.reset();
      continue;
    }
    return RpcErrorToCaError(
        absl::Status(connection.status().code(),
                     absl::StrCat("cannot reach the CA at ", host, ":", *port, ": ", connection.status().message())),
        false);
  }
}

void IcprBackend::Release(const std::string& host, std::unique_ptr<rpc::ClientConnection> connection) {
  if (!connection || connection->broken()) return;
  HostPool& pool = PoolFor(host);
  std::lock_guard lock(pool.mu);
  if (pool.idle.size() < options_.max_idle_connections) pool.idle.push_back(std::move(connection));
}

absl::StatusOr<rpc::CertServerRequestOut> IcprBackend::Call(const CaTarget& target, const rpc::CertServerRequestIn& in,
                                                            bool idempotent) {
  auto stub = rpc::EncodeCertServerRequestIn(in);
  if (!stub.ok()) return CaError(hr::kInvalidArg, absl::StrCat("cannot encode the request: ", stub.status().message()));
  for (int attempt = 0;; ++attempt) {
    auto lease = Acquire(target.dc);
    if (!lease.ok()) return lease.status();
    auto answer = lease->connection->Call(rpc::kCertServerRequestOpnum, *stub);
    if (answer.ok()) {
      Release(target.dc, std::move(lease->connection));
      auto out = rpc::DecodeCertServerRequestOut(*answer);
      if (!out.ok()) {
        absl::Status unreadable =
            CaError(hr::kRpcCallFailed,
                    absl::StrCat("the CA at ", target.dc, " sent an answer we cannot read: ", out.status().message()));
        // The CA ran the call; what it did is in the answer we cannot read.
        return idempotent ? unreadable : MarkOutcomeUnknown(std::move(unreadable));
      }
      return out;
    }
    const bool transport_failure = lease->connection->broken() && !rpc::FaultOf(answer.status());
    if (!transport_failure) Release(target.dc, std::move(lease->connection));
    if (transport_failure && idempotent && attempt == 0) {
      retries_++;
      ForgetEndpoint(target.dc);
      continue;
    }
    absl::Status failed = RpcErrorToCaError(answer.status(), true);
    // A submit that may have run is not "not submitted" (ca_backend.h).
    if (!idempotent && rpc::RequestMayHaveRun(answer.status())) failed = MarkOutcomeUnknown(std::move(failed));
    return failed;
  }
}

// The CA certificates of pctbCertChain (a PKCS#7 of the leaf and its chain), without the leaf.
// The chain is for reporting the CA's expiry: a chain that does not parse is left out, never
// an error of the request.
namespace {
std::vector<std::vector<uint8_t>> ChainWithoutLeaf(const std::vector<uint8_t>& pkcs7,
                                                   const std::vector<uint8_t>& leaf) {
  std::vector<std::vector<uint8_t>> out;
  if (pkcs7.empty()) return out;
  auto certs = pki::CertsFromPkcs7Der(pkcs7);
  if (!certs.ok()) return out;
  for (const pki::X509Ptr& cert : *certs) {
    auto der = pki::CertToDer(cert.get());
    if (der.ok() && *der != leaf) out.push_back(std::move(*der));
  }
  return out;
}
}  // namespace

absl::StatusOr<CaResponse> IcprBackend::Submit(const SubmitRequest& request) {
  rpc::CertServerRequestIn in;
  in.flags = rpc::cr_in::kFormatAny;
  in.authority = request.target.ca;
  in.request_id = 0;
  if (!request.template_name.empty()) {
    auto attributes = rpc::CertificateTemplateAttribute(request.template_name);
    if (!attributes.ok())
      return CaError(hr::kInvalidArg, absl::StrCat("template name: ", attributes.status().message()));
    in.attributes = std::move(*attributes);
  }
  in.request.assign(request.csr_der.begin(), request.csr_der.end());
  auto out = Call(request.target, in, /*idempotent=*/false);
  if (!out.ok()) return out.status();
  if (out->return_value != 0) return CaError(out->return_value, "ICertPassage::CertServerRequest");
  CaResponse r;
  r.request_id = out->request_id;
  auto message = rpc::DecodeDispositionMessage(out->disposition_message);
  if (message.ok()) r.message = std::move(*message);
  if (IsHresult(out->disposition)) {
    if (out->request_id == 0) return CaError(out->disposition, r.message);
    r.disposition = Disposition::kDenied;
    r.hresult = out->disposition;
    return r;
  }
  r.disposition = ToDisposition(out->disposition);
  r.chain_der = ChainWithoutLeaf(out->cert_chain, out->encoded_cert);
  r.cert_der = std::move(out->encoded_cert);
  return r;
}

absl::StatusOr<CaResponse> IcprBackend::Retrieve(const RetrieveRequest& request) {
  rpc::CertServerRequestIn in;
  in.flags = rpc::cr_in::kFormatAny;
  in.authority = request.target.ca;
  in.request_id = request.request_id;
  auto out = Call(request.target, in, /*idempotent=*/true);
  if (!out.ok()) return out.status();
  if (out->return_value != 0) return CaError(out->return_value, "ICertPassage::CertServerRequest");
  CaResponse r;
  r.request_id = request.request_id;
  auto message = rpc::DecodeDispositionMessage(out->disposition_message);
  if (message.ok()) r.message = std::move(*message);
  if (IsHresult(out->disposition)) {
    // Retrieving a request the CA failed or cannot find: the HRESULT is the answer.
    if (out->disposition == hr::kPropertyEmpty || out->request_id == 0) return CaError(out->disposition, r.message);
    r.disposition = Disposition::kDenied;
    r.hresult = out->disposition;
    return r;
  }
  r.disposition = ToDisposition(out->disposition);
  if (r.disposition == Disposition::kDenied && r.hresult == 0) r.hresult = hr::kAdminDeniedRequest;
  r.chain_der = ChainWithoutLeaf(out->cert_chain, out->encoded_cert);
  r.cert_der = std::move(out->encoded_cert);
  return r;
}

absl::Status IcprBackend::Ping(const CaTarget& target, const CallerIdentity&) {
  rpc::CertServerRequestIn in;
  in.authority = target.ca;
  in.request_id = kPingRequestId;
  auto out = Call(target, in, /*idempotent=*/true);
  if (!out.ok()) return out.status();
  // "No such request", wherever the CA puts it, proves it heard us, knows the CA name and
  // accepted our logon.
  if (out->return_value == hr::kPropertyEmpty) return absl::OkStatus();
  if (out->return_value != 0) return CaError(out->return_value, "ICertPassage::CertServerRequest");
  if (IsHresult(out->disposition) && out->disposition != hr::kPropertyEmpty) {
    return CaError(out->disposition, "ICertPassage::CertServerRequest");
  }
  return absl::OkStatus();
}

}  // namespace adcsc::ca
