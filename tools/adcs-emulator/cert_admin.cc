// The emulator's CA admin interface over DCOM: IRemoteSCMActivator::RemoteCreateInstance for
// CCertAdminD, and the object exporter's ICertAdminD/ICertAdminD2 and IRemUnknown. What a
// Windows CA checks and the connector can observe: activation at packet integrity or higher
// (KB5004442 hardening), admin calls at packet privacy (IF_ENFORCEENCRYPTICERTADMIN), the
// Officer right ("Issue and Manage Certificates") per account for approve/deny/revoke, the CA
// name (E_INVALIDARG), and the MS-CSRA results for unknown requests and serials.
#include <algorithm>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "node/ca/hresult.h"
#include "node/dcom/csra_stub.h"
#include "node/dcom/dcom_wire.h"
#include "node/rpc/client.h"
#include "tools/adcs-emulator/emulator.h"

namespace adcsc::emulator {
namespace {

namespace hr = adcsc::ca::hr;
using dcom::Bytes;

constexpr uint32_t kNoInterface = 0x80004002;         // E_NOINTERFACE
constexpr uint32_t kClassNotRegistered = 0x80040154;  // REGDB_E_CLASSNOTREG
constexpr uint32_t kObjectDisconnected = 0x80010108;  // RPC_E_DISCONNECTED: no such IPID here
// References handed out with each interface pointer (what a Windows exporter gives, 5).
constexpr uint32_t kPublicRefs = 5;
// Live objects kept at most (oldest dropped): clients that never release cannot grow it.
constexpr size_t kMaxObjects = 10'000;
// RPC_C_AUTHN_WINNT and RPC_C_AUTHN_GSS_KERBEROS in the security bindings.
constexpr uint16_t kAuthnWinNt = 10;
constexpr uint16_t kAuthnGssKerberos = 16;

std::string OperationName(uint16_t opnum) {
  switch (opnum) {
    case dcom::kResubmitRequestOpnum:
      return "ResubmitRequest";
    case dcom::kDenyRequestOpnum:
      return "DenyRequest";
    case dcom::kRevokeCertificateOpnum:
      return "RevokeCertificate";
    case dcom::kGetCAPropertyOpnum:
      return "GetCAProperty";
    default:
      return absl::StrCat("opnum ", opnum);
  }
}

bool AccountMatches(const std::string& pattern, const std::string& account) {
  return pattern == "*" || absl::EqualsIgnoreCase(pattern, account);
}

// The drop_admin_after_apply knob: the change is made, the connection dropped unanswered.
absl::Status AnswerLost(const std::string& operation) {
  return absl::UnavailableError(absl::StrCat("drop_admin_after_apply knob: ", operation, " done, answer dropped"));
}

bool ValidReason(uint32_t reason) {
  return reason <= dcom::crl_reason::kCertificateHold || reason == dcom::crl_reason::kRemoveFromCrl ||
         reason == dcom::crl_reason::kReleaseFromHold;
}

}  // namespace

bool Emulator::IsOfficer(const std::string& account) const {
  return std::any_of(config_.ca_officers.begin(), config_.ca_officers.end(),
                     [&](const std::string& p) { return AccountMatches(p, account); });
}

void Emulator::CountAdminCall(const std::string& operation, bool refused) {
  std::lock_guard lock(mu_);
  admin_calls_[operation]++;
  if (refused) admin_refused_++;
}

absl::StatusOr<rpc::Bytes> Emulator::HandleActivation(const rpc::CallContext& caller, uint16_t opnum,
                                                      rpc::ByteView stub) {
  if (opnum != dcom::kRemoteCreateInstanceOpnum) {
    return rpc::FaultError(rpc::fault::kOpRangeError, "IRemoteSCMActivator");
  }
  auto request = dcom::DecodeRemoteCreateInstanceIn(stub);
  if (!request.ok()) return rpc::FaultError(rpc::fault::kNdr, "RemoteCreateInstance");
  dcom::ActivationReply reply;
  // Microsoft's DCOM hardening: activation below packet integrity is refused.
  if (caller.auth_level < rpc::authn_level::kPktIntegrity) {
    CountAdminCall("RemoteCreateInstance", true);
    reply.error_code = hr::kAccessDenied;
    return dcom::EncodeRemoteCreateInstanceOut(reply);
  }
  if (request->clsid != dcom::kClsidCertAdminD) {
    CountAdminCall("RemoteCreateInstance", true);
    reply.error_code = kClassNotRegistered;
    return dcom::EncodeRemoteCreateInstanceOut(reply);
  }
  CountAdminCall("RemoteCreateInstance", false);
  const std::string host = config_.names.dns_computer.empty() ? config_.listen_address : config_.names.dns_computer;
  reply.oxid = oxid_;
  reply.oxid_bindings.strings.push_back({dcom::kTowerIdTcp, absl::StrCat(host, "[", dcom_port_, "]")});
  if (host != config_.listen_address) {
    reply.oxid_bindings.strings.push_back(
        {dcom::kTowerIdTcp, absl::StrCat(config_.listen_address, "[", dcom_port_, "]")});
  }
  if (config_.ntlm) reply.oxid_bindings.security.push_back({kAuthnWinNt, ""});
  if (!config_.kerberos_keytab.empty()) reply.oxid_bindings.security.push_back({kAuthnGssKerberos, ""});
  reply.ipid_rem_unknown = rpc::Uuid(ipid_rem_unknown_);
  reply.authn_hint = rpc::authn_level::kPktPrivacy;
  for (const rpc::Uuid& iid : request->iids) {
    dcom::ActivatedInterface result;
    result.iid = iid;
    if (iid != dcom::kCertAdminDSyntax.uuid && iid != dcom::kCertAdminD2Syntax.uuid) {
      result.hresult = kNoInterface;
      reply.interfaces.push_back(std::move(result));
      continue;
    }
    dcom::StandardObjRef objref;
    objref.iid = iid;
    objref.std.public_refs = kPublicRefs;
    objref.std.oxid = oxid_;
    objref.std.oid = std::random_device{}();
    objref.std.ipid = dcom::RandomUuid();
    objref.resolver_address = reply.oxid_bindings;
    {
      std::lock_guard lock(mu_);
      if (objects_.size() >= kMaxObjects) objects_.erase(objects_.begin());
      objects_[objref.std.ipid.wire()] = kPublicRefs;
    }
    result.objref = std::move(objref);
    reply.interfaces.push_back(std::move(result));
  }
  return dcom::EncodeRemoteCreateInstanceOut(reply);
}

absl::StatusOr<rpc::Bytes> Emulator::HandleExporter(const rpc::CallContext& caller, uint16_t opnum,
                                                    rpc::ByteView stub) {
  if (caller.interface == dcom::kRemUnknownSyntax || caller.interface == dcom::kRemUnknown2Syntax) {
    if (!caller.object || caller.object->wire() != ipid_rem_unknown_) {
      return rpc::FaultError(kObjectDisconnected, "IRemUnknown");
    }
    if (opnum != dcom::kRemReleaseOpnum) return rpc::FaultError(rpc::fault::kOpRangeError, "IRemUnknown");
    auto in = dcom::DecodeRemReleaseIn(stub);
    if (!in.ok()) return rpc::FaultError(rpc::fault::kNdr, "RemRelease");
    CountAdminCall("RemRelease", false);
    std::lock_guard lock(mu_);
    for (const dcom::InterfaceRef& ref : in->refs) {
      auto it = objects_.find(ref.ipid.wire());
      if (it == objects_.end()) continue;
      const uint32_t drop = ref.public_refs > 0 ? static_cast<uint32_t>(ref.public_refs) : 0;
      if (drop >= it->second) {
        objects_.erase(it);
      } else {
        it->second -= drop;
      }
    }
    return dcom::EncodeOrpcThatAndHresult(hr::kOk);
  }
  {
    std::lock_guard lock(mu_);
    if (!caller.object || objects_.count(caller.object->wire()) == 0) {
      return rpc::FaultError(kObjectDisconnected, "ICertAdminD");
    }
  }
  return HandleCertAdmin(caller, opnum, stub);
}

absl::StatusOr<rpc::Bytes> Emulator::HandleCertAdmin(const rpc::CallContext& caller, uint16_t opnum,
                                                     rpc::ByteView stub) {
  const std::string operation = OperationName(opnum);
  const bool privacy = caller.auth_level >= rpc::authn_level::kPktPrivacy;
  const std::string account = absl::StrCat(caller.domain, "\\", caller.user);
  const Faults f = faults();
  if (f.latency.count() > 0) std::this_thread::sleep_for(f.latency);
  if (f.failure_rate > 0) {
    std::lock_guard lock(mu_);
    if (std::uniform_real_distribution<double>(0, 1)(rng_) < f.failure_rate) {
      dropped_++;
      return absl::UnavailableError("failure-rate knob: admin call dropped");
    }
  }
  // Every refusal answers with the call's HRESULT, as the CA's ICertAdminD does.
  auto refuse = [&](uint32_t hresult) -> absl::StatusOr<rpc::Bytes> {
    CountAdminCall(operation, true);
    if (opnum == dcom::kResubmitRequestOpnum) return dcom::EncodeResubmitOut({0, hresult});
    if (opnum == dcom::kGetCAPropertyOpnum) return dcom::EncodeGetCaPropertyOut({{}, hresult});
    return dcom::EncodeOrpcThatAndHresult(hresult);
  };
  auto wrong_ca = [&](const std::string& authority) { return !absl::EqualsIgnoreCase(authority, config_.ca.ca_name); };

  switch (opnum) {
    case dcom::kResubmitRequestOpnum:
    case dcom::kDenyRequestOpnum: {
      auto in = dcom::DecodeRequestIdIn(stub);
      if (!in.ok()) return rpc::FaultError(rpc::fault::kNdr, operation);
      if (!privacy || !IsOfficer(account)) return refuse(hr::kAccessDenied);
      if (wrong_ca(in->authority)) return refuse(hr::kInvalidArg);
      CountAdminCall(operation, false);
      if (opnum == dcom::kResubmitRequestOpnum) {
        auto r = ca_->Approve(in->request_id);
        if (!r.ok()) {
          const uint32_t code = adcsc::ca::HresultOf(r.status()).value_or(hr::kFail);
          // MS-CSRA 3.1.4.1.3: an unknown request is CERTSRV_E_PROPERTY_EMPTY in the
          // disposition, and the call succeeds.
          if (code == hr::kPropertyEmpty) return dcom::EncodeResubmitOut({code, hr::kOk});
          return dcom::EncodeResubmitOut({0, code});
        }
        if (TakeOne(&Faults::drop_admin_after_apply)) return AnswerLost(operation);
        return dcom::EncodeResubmitOut({static_cast<uint32_t>(r->disposition), hr::kOk});
      }
      auto r = ca_->Deny(in->request_id);
      if (!r.ok()) return dcom::EncodeOrpcThatAndHresult(adcsc::ca::HresultOf(r.status()).value_or(hr::kFail));
      if (TakeOne(&Faults::drop_admin_after_apply)) return AnswerLost(operation);
      return dcom::EncodeOrpcThatAndHresult(hr::kOk);
    }
    case dcom::kRevokeCertificateOpnum: {
      auto in = dcom::DecodeRevokeIn(stub);
      if (!in.ok()) return rpc::FaultError(rpc::fault::kNdr, operation);
      if (!privacy || !IsOfficer(account)) return refuse(hr::kAccessDenied);
      if (wrong_ca(in->authority) || !ValidReason(in->reason) || in->serial.empty()) return refuse(hr::kInvalidArg);
      CountAdminCall(operation, false);
      const int64_t when = in->filetime == 0 ? 0 : dcom::UnixMillisFromFiletime(in->filetime);
      auto r = ca_->Revoke(in->serial, in->reason, when);
      if (!r.ok()) return dcom::EncodeOrpcThatAndHresult(adcsc::ca::HresultOf(r.status()).value_or(hr::kFail));
      if (TakeOne(&Faults::drop_admin_after_apply)) return AnswerLost(operation);
      return dcom::EncodeOrpcThatAndHresult(hr::kOk);
    }
    case dcom::kGetCAPropertyOpnum: {
      auto in = dcom::DecodeGetCaPropertyIn(stub);
      if (!in.ok()) return rpc::FaultError(rpc::fault::kNdr, operation);
      if (!privacy) return refuse(hr::kAccessDenied);
      if (wrong_ca(in->authority)) return refuse(hr::kInvalidArg);
      if (in->prop_id == dcom::ca_prop::kCaName && in->prop_type == dcom::ca_prop::kTypeString) {
        CountAdminCall(operation, false);
        auto wide = rpc::Utf8ToUtf16(config_.ca.ca_name);
        if (!wide.ok()) return refuse(hr::kUnexpected);
        wide->push_back(u'\0');
        return dcom::EncodeGetCaPropertyOut({rpc::Utf16ToLeBytes(*wide), hr::kOk});
      }
      if (in->prop_id == dcom::ca_prop::kCaSigCert && in->prop_type == dcom::ca_prop::kTypeBinary &&
          in->prop_index == 0) {
        CountAdminCall(operation, false);
        return dcom::EncodeGetCaPropertyOut({ca_->CaCertificateDer(), hr::kOk});
      }
      return refuse(hr::kInvalidArg);
    }
    default:
      return rpc::FaultError(rpc::fault::kOpRangeError, "ICertAdminD");
  }
}

}  // namespace adcsc::emulator
