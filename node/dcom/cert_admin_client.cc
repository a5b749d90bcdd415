// The MS-CSRA-over-DCOM client; see cert_admin_client.h.
#include "node/dcom/cert_admin_client.h"

#include <openssl/x509.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "node/ca/hresult.h"
#include "node/ca/icpr_backend.h"
#include "node/pki/x509.h"

namespace adcsc::dcom {
namespace {

namespace hr = adcsc::ca::hr;

constexpr uint16_t kObjectContext = 0;
constexpr uint16_t kRemUnknownContext = 1;

bool Failed(uint32_t hresult) { return (hresult & 0x80000000u) != 0; }

// A transport or protocol error with the step it happened in, as a CA error.
absl::Status StepError(const absl::Status& error, std::string_view step, bool during_call) {
  if (adcsc::ca::HresultOf(error)) return error;
  absl::Status mapped = adcsc::ca::RpcErrorToCaError(error, during_call);
  const uint32_t code = adcsc::ca::HresultOf(mapped).value_or(hr::kRpcCallFailed);
  return adcsc::ca::CaError(code, absl::StrCat(rpc::AbslView(step), ": ", error.message()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<CertAdminSession>> CertAdminSession::Open(const CertAdminOptions& options,
                                                                         Connector connect) {
  std::unique_ptr<CertAdminSession> session(new CertAdminSession());
  session->options_ = options;
  session->causality_ = RandomUuid();
  const std::string where = absl::StrCat(options.host, ":", options.activation_port);

  rpc::ClientOptions base;
  base.host = options.host;
  base.port = options.activation_port;
  base.connect_timeout = options.connect_timeout;
  base.call_timeout = options.call_timeout;
  ActivationReply reply;
  {
    auto activator = connect(base, {kRemoteScmActivatorSyntax}, options.activation_level);
    if (!activator.ok()) {
      return StepError(activator.status(), absl::StrCat("DCOM activation: connecting to ", where), false);
    }
    ActivationRequest request;
    request.orpc = session->NewOrpcThis();
    request.clsid = kClsidCertAdminD;
    request.iids = {kCertAdminD2Syntax.uuid};
    auto stub = EncodeRemoteCreateInstanceIn(request);
    if (!stub.ok()) return stub.status();
    auto answer = (*activator)->Call(kRemoteCreateInstanceOpnum, *stub);
    if (!answer.ok()) return StepError(answer.status(), absl::StrCat("DCOM activation at ", where), true);
    auto decoded = DecodeRemoteCreateInstanceOut(*answer);
    if (!decoded.ok()) {
      return adcsc::ca::CaError(
          hr::kRpcCallFailed, absl::StrCat("DCOM activation at ", where, ": bad answer: ", decoded.status().message()));
    }
    reply = *std::move(decoded);
  }
  const std::string what = absl::StrCat("activating the CA admin object (CCertAdminD) at ", where);
  if (Failed(reply.error_code)) return adcsc::ca::CaError(reply.error_code, what);
  if (reply.interfaces.empty() || Failed(reply.interfaces[0].hresult) || !reply.interfaces[0].objref) {
    const uint32_t code = reply.interfaces.empty() ? hr::kUnexpected : reply.interfaces[0].hresult;
    return adcsc::ca::CaError(Failed(code) ? code : hr::kUnexpected, absl::StrCat(what, ": no ICertAdminD2"));
  }
  auto port = TcpPortOf(reply.oxid_bindings);
  if (!port.ok())
    return adcsc::ca::CaError(hr::kRpcServerUnavailable, absl::StrCat(what, ": ", port.status().message()));
  session->exporter_port_ = *port;
  session->ipid_ = reply.interfaces[0].objref->std.ipid;
  session->public_refs_ = reply.interfaces[0].objref->std.public_refs;
  session->ipid_rem_unknown_ = reply.ipid_rem_unknown;

  // The exporter's host is the one we activated on: the bindings name it as the CA knows
  // itself (a NetBIOS name, an address of another network), only the port is ours to use.
  base.port = *port;
  auto connection = connect(base, {kCertAdminD2Syntax, kRemUnknownSyntax}, options.call_level);
  if (!connection.ok()) {
    return StepError(connection.status(),
                     absl::StrCat("connecting to the CA's DCOM port ", options.host, ":", *port,
                                  " (the object exporter the activation named)"),
                     false);
  }
  session->connection_ = *std::move(connection);
  return session;
}

CertAdminSession::~CertAdminSession() {
  if (!released_ && connection_ && !connection_->broken()) (void)Release();
}

OrpcThis CertAdminSession::NewOrpcThis() const {
  OrpcThis orpc;
  orpc.cid = causality_;
  return orpc;
}

absl::StatusOr<Bytes> CertAdminSession::CallObject(uint16_t opnum, const Bytes& stub, std::string_view what,
                                                   bool rem_unknown) {
  if (!connection_ || released_) return absl::FailedPreconditionError("the CA admin session is closed");
  // IRemUnknown's opnums overlap ICertAdminD's (RemRelease and ResubmitRequest are both 5):
  // the presentation context and the object UUID say which interface a call is for.
  rpc::ClientConnection::CallTarget target;
  target.context_id = rem_unknown ? kRemUnknownContext : kObjectContext;
  target.object = rem_unknown ? ipid_rem_unknown_ : ipid_;
  auto answer = connection_->Call(opnum, stub, target);
  if (!answer.ok()) {
    return StepError(answer.status(), absl::StrCat(rpc::AbslView(what), " on ", options_.host, ":", exporter_port_),
                     true);
  }
  return answer;
}

absl::StatusOr<uint32_t> CertAdminSession::Resubmit(uint32_t request_id) {
  const std::string what = absl::StrCat("ResubmitRequest(", request_id, ") on \"", options_.authority, "\"");
  auto stub = EncodeRequestIdIn({NewOrpcThis(), options_.authority, request_id});
  if (!stub.ok()) return stub.status();
  auto answer = CallObject(kResubmitRequestOpnum, *stub, what);
  if (!answer.ok()) return answer.status();
  auto out = DecodeResubmitOut(*answer);
  if (!out.ok()) return adcsc::ca::CaError(hr::kRpcCallFailed, absl::StrCat(what, ": ", out.status().message()));
  if (Failed(out->hresult)) return adcsc::ca::CaError(out->hresult, what);
  // MS-CSRA 3.1.4.1.3: an unknown request is an HRESULT in the disposition, with success.
  if (Failed(out->disposition)) return adcsc::ca::CaError(out->disposition, what);
  return out->disposition;
}

absl::Status CertAdminSession::Deny(uint32_t request_id) {
  const std::string what = absl::StrCat("DenyRequest(", request_id, ") on \"", options_.authority, "\"");
  auto stub = EncodeRequestIdIn({NewOrpcThis(), options_.authority, request_id});
  if (!stub.ok()) return stub.status();
  auto answer = CallObject(kDenyRequestOpnum, *stub, what);
  if (!answer.ok()) return answer.status();
  auto result = DecodeOrpcThatAndHresult(*answer, "DenyRequest response");
  if (!result.ok()) return adcsc::ca::CaError(hr::kRpcCallFailed, absl::StrCat(what, ": ", result.status().message()));
  return *result == 0 ? absl::OkStatus() : adcsc::ca::CaError(*result, what);
}

absl::Status CertAdminSession::Revoke(const std::string& serial, uint32_t reason, uint64_t filetime) {
  const std::string what = absl::StrCat("RevokeCertificate(", serial, ", ", rpc::AbslView(CrlReasonName(reason)),
                                        ") on \"", options_.authority, "\"");
  RevokeIn in;
  in.orpc = NewOrpcThis();
  in.authority = options_.authority;
  in.serial = serial;
  in.reason = reason;
  in.filetime = filetime;
  auto stub = EncodeRevokeIn(in);
  if (!stub.ok()) return stub.status();
  auto answer = CallObject(kRevokeCertificateOpnum, *stub, what);
  if (!answer.ok()) return answer.status();
  auto result = DecodeOrpcThatAndHresult(*answer, "RevokeCertificate response");
  if (!result.ok()) return adcsc::ca::CaError(hr::kRpcCallFailed, absl::StrCat(what, ": ", result.status().message()));
  return *result == 0 ? absl::OkStatus() : adcsc::ca::CaError(*result, what);
}

absl::StatusOr<CaInfo> CertAdminSession::GetCaInfo() {
  auto property = [this](int32_t id, int32_t type) -> absl::StatusOr<Bytes> {
    const std::string what = absl::StrCat("GetCAProperty(", id, ") on \"", options_.authority, "\"");
    GetCaPropertyIn in;
    in.orpc = NewOrpcThis();
    in.authority = options_.authority;
    in.prop_id = id;
    in.prop_index = 0;
    in.prop_type = type;
    auto stub = EncodeGetCaPropertyIn(in);
    if (!stub.ok()) return stub.status();
    auto answer = CallObject(kGetCAPropertyOpnum, *stub, what);
    if (!answer.ok()) return answer.status();
    auto out = DecodeGetCaPropertyOut(*answer);
    if (!out.ok()) return adcsc::ca::CaError(hr::kRpcCallFailed, absl::StrCat(what, ": ", out.status().message()));
    if (Failed(out->hresult)) return adcsc::ca::CaError(out->hresult, what);
    return out->value;
  };
  CaInfo info;
  auto name = property(ca_prop::kCaName, ca_prop::kTypeString);
  if (!name.ok()) return name.status();
  auto text = rpc::LeBytesToUtf16(*name, "CR_PROP_CANAME");
  if (!text.ok()) return text.status();
  if (auto nul = text->find(u'\0'); nul != std::u16string::npos) text->resize(nul);
  info.name = rpc::Utf16ToUtf8Lossy(*text);
  auto cert = property(ca_prop::kCaSigCert, ca_prop::kTypeBinary);
  if (!cert.ok()) return cert.status();
  info.cert_der = *std::move(cert);
  auto parsed = pki::CertFromDer(info.cert_der);
  if (parsed.ok()) {
    info.not_before_unix = pki::NotBeforeUnix(parsed->get());
    info.not_after_unix = pki::NotAfterUnix(parsed->get());
    info.subject = pki::NameToString(X509_get_subject_name(parsed->get()));
  }
  return info;
}

absl::Status CertAdminSession::Release() {
  if (released_) return absl::OkStatus();
  RemReleaseIn in;
  in.orpc = NewOrpcThis();
  in.refs.push_back({ipid_, static_cast<int32_t>(public_refs_ == 0 ? 1 : public_refs_), 0});
  auto stub = EncodeRemReleaseIn(in);
  if (!stub.ok()) return stub.status();
  auto answer = CallObject(kRemReleaseOpnum, *stub, "IRemUnknown::RemRelease", /*rem_unknown=*/true);
  released_ = true;
  if (!answer.ok()) return answer.status();
  auto result = DecodeOrpcThatAndHresult(*answer, "RemRelease response");
  if (!result.ok()) return result.status();
  return *result == 0 ? absl::OkStatus() : adcsc::ca::CaError(*result, "IRemUnknown::RemRelease");
}

}  // namespace adcsc::dcom
