#include "tools/adcs-emulator/emulator.h"

#include <algorithm>
#include <iostream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "node/ca/hresult.h"
#include "node/dcom/csra_stub.h"
#include "node/dcom/dcom_wire.h"
#include "node/pki/x509.h"
#include "node/rpc/client.h"
#include "node/rpc/epm_stub.h"
#include "node/rpc/icpr_stub.h"

namespace adcsc::emulator {
namespace {

using adcsc::ca::Disposition;
namespace hr = adcsc::ca::hr;

rpc::CertServerRequestOut CallFailed(uint32_t hresult) {
  rpc::CertServerRequestOut out;
  out.return_value = hresult;
  return out;
}

// A CA answer that carries an HRESULT where the disposition goes (how Windows reports a
// request its policy module refused), with the CA's text.
rpc::CertServerRequestOut Refused(uint32_t request_id, uint32_t hresult, std::string_view text) {
  rpc::CertServerRequestOut out;
  out.request_id = request_id;
  out.disposition = hresult;
  auto message =
      rpc::EncodeDispositionMessage(text.empty() ? std::string(adcsc::ca::HresultText(hresult)) : std::string(text));
  if (message.ok()) out.disposition_message = std::move(*message);
  return out;
}

rpc::CertServerRequestOut FromResponse(const adcsc::ca::CaResponse& r, bool submit) {
  if (submit && r.disposition == Disposition::kDenied && r.hresult != 0)
    return Refused(r.request_id, r.hresult, r.message);
  rpc::CertServerRequestOut out;
  out.request_id = r.request_id;
  out.disposition = static_cast<uint32_t>(r.disposition);
  out.encoded_cert = r.cert_der;
  if (!r.cert_der.empty()) {
    // As ADCS does: pctbCertChain is a PKCS#7 of the leaf and the CA's chain.
    std::vector<pki::X509Ptr> certs;
    if (auto leaf = pki::CertFromDer(r.cert_der); leaf.ok()) certs.push_back(std::move(*leaf));
    for (const auto& der : r.chain_der) {
      if (auto cert = pki::CertFromDer(der); cert.ok()) certs.push_back(std::move(*cert));
    }
    std::vector<X509*> raw;
    for (const auto& cert : certs) raw.push_back(cert.get());
    if (auto pkcs7 = pki::CertsToPkcs7Der(raw); pkcs7.ok()) out.cert_chain = std::move(*pkcs7);
  }
  auto message = rpc::EncodeDispositionMessage(r.message);
  if (message.ok()) out.disposition_message = std::move(*message);
  return out;
}

bool AccountMatches(const std::string& pattern, const std::string& account) {
  return pattern == "*" || absl::EqualsIgnoreCase(pattern, account);
}

}  // namespace

Emulator::Emulator(EmulatorConfig config) : config_(std::move(config)), faults_(config_.faults) {}

Emulator::~Emulator() { Stop(); }

EmulatorStats Emulator::stats() const {
  EmulatorStats s;
  s.connections = connections_.load();
  s.calls = calls_.load();
  s.submits = submits_.load();
  s.retrieves = retrieves_.load();
  s.refused_calls = refused_.load();
  s.dropped_calls = dropped_.load();
  s.failed_logons = failed_logons_.load();
  s.lost_answers = lost_answers_.load();
  s.ntlm_calls = ntlm_calls_.load();
  s.kerberos_calls = kerberos_calls_.load();
  std::lock_guard lock(mu_);
  s.admin_calls = admin_calls_;
  s.admin_refused = admin_refused_;
  return s;
}

Faults Emulator::faults() const {
  std::lock_guard lock(mu_);
  return faults_;
}

void Emulator::set_faults(const Faults& faults) {
  std::lock_guard lock(mu_);
  faults_ = faults;
}

bool Emulator::TakeOne(int Faults::*knob) {
  std::lock_guard lock(mu_);
  if (faults_.*knob <= 0) return false;
  --(faults_.*knob);
  return true;
}

absl::Status Emulator::Start() {
  auto ca = adcsc::ca::LocalCa::Open(config_.ca);
  if (!ca.ok()) return absl::Status(ca.status().code(), absl::StrCat("CA engine: ", ca.status().message()));
  ca_ = std::move(*ca);
  auto epm = rpc::TcpListener::Listen(config_.listen_address, config_.epm_port);
  if (!epm.ok()) return absl::Status(epm.status().code(), absl::StrCat("endpoint mapper: ", epm.status().message()));
  auto icpr = rpc::TcpListener::Listen(config_.listen_address, config_.icpr_port);
  if (!icpr.ok()) return absl::Status(icpr.status().code(), absl::StrCat("ICertPassage: ", icpr.status().message()));
  auto dcom = rpc::TcpListener::Listen(config_.listen_address, config_.dcom_port);
  if (!dcom.ok()) return absl::Status(dcom.status().code(), absl::StrCat("DCOM exporter: ", dcom.status().message()));
  epm_listener_ = std::move(*epm);
  icpr_listener_ = std::move(*icpr);
  dcom_listener_ = std::move(*dcom);
  epm_port_ = epm_listener_->port();
  icpr_port_ = icpr_listener_->port();
  dcom_port_ = dcom_listener_->port();

  auto report = [this](const std::string& peer, const absl::Status& s) {
    if (absl::IsPermissionDenied(s)) failed_logons_++;
    std::cerr << "adcs-emulator: " << peer << ": " << s.message() << "\n";
  };
  epm_options_.interface = rpc::kEpmSyntax;
  epm_options_.port = epm_port_;
  epm_options_.on_error = report;
  epm_handler_ = [this](const rpc::CallContext& caller, uint16_t opnum, rpc::ByteView stub) {
    if (caller.interface == dcom::kRemoteScmActivatorSyntax) return HandleActivation(caller, opnum, stub);
    return HandleEndpointMapper(opnum, stub);
  };
  icpr_options_.interface = rpc::kIcprSyntax;
  icpr_options_.port = icpr_port_;
  icpr_options_.names = config_.names;
  icpr_options_.on_error = report;
  if (!config_.kerberos_keytab.empty()) {
    auto acceptor = gss::AcceptorCredentials::FromKeytab(config_.kerberos_keytab.string(), config_.kerberos_principal);
    if (!acceptor.ok()) {
      return absl::Status(acceptor.status().code(), absl::StrCat("kerberos.keytab ", config_.kerberos_keytab.string(),
                                                                 ": ", acceptor.status().message()));
    }
    icpr_options_.kerberos = *std::move(acceptor);
    icpr_options_.realm_domain =
        config_.kerberos_realm_domain.empty() ? config_.names.netbios_domain : config_.kerberos_realm_domain;
  }
  if (config_.ntlm)
    icpr_options_.accounts = [this](std::string_view domain, std::string_view user) -> std::optional<ntlm::Key16> {
      // Called once per logon, where a Windows CA would ask a domain controller.
      if (const auto wait = faults().logon_latency; wait.count() > 0) std::this_thread::sleep_for(wait);
      for (const Account& a : config_.accounts) {
        if (absl::EqualsIgnoreCase(a.domain, absl::string_view(domain.data(), domain.size())) &&
            absl::EqualsIgnoreCase(a.user, absl::string_view(user.data(), user.size()))) {
          return a.nt_hash;
        }
      }
      return std::nullopt;
    };
  icpr_handler_ = [this](const rpc::CallContext& caller, uint16_t opnum, rpc::ByteView stub) {
    return HandleCertPassage(caller, opnum, stub);
  };
  // The endpoint mapper's port also takes DCOM activation, which must be authenticated: it
  // logs on the same accounts as ICertPassage (unauthenticated binds stay for ept_map).
  epm_options_.more_interfaces = {dcom::kRemoteScmActivatorSyntax};
  epm_options_.accounts = icpr_options_.accounts;
  epm_options_.names = icpr_options_.names;
  epm_options_.kerberos = icpr_options_.kerberos;
  epm_options_.realm_domain = icpr_options_.realm_domain;
  dcom_options_ = icpr_options_;
  dcom_options_.interface = dcom::kCertAdminD2Syntax;
  dcom_options_.more_interfaces = {dcom::kCertAdminDSyntax, dcom::kRemUnknownSyntax, dcom::kRemUnknown2Syntax};
  dcom_options_.port = dcom_port_;
  dcom_handler_ = [this](const rpc::CallContext& caller, uint16_t opnum, rpc::ByteView stub) {
    return HandleExporter(caller, opnum, stub);
  };
  oxid_ = std::random_device{}() | static_cast<uint64_t>(std::random_device{}()) << 32;
  ipid_rem_unknown_ = dcom::RandomUuid().wire();
  accept_threads_.emplace_back([this] { AcceptLoop(epm_listener_.get(), &epm_options_, &epm_handler_); });
  accept_threads_.emplace_back([this] { AcceptLoop(icpr_listener_.get(), &icpr_options_, &icpr_handler_); });
  accept_threads_.emplace_back([this] { AcceptLoop(dcom_listener_.get(), &dcom_options_, &dcom_handler_); });
  return absl::OkStatus();
}

void Emulator::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || accept_threads_.empty()) return;
    stopping_ = true;
  }
  epm_listener_->Close();
  icpr_listener_->Close();
  dcom_listener_->Close();
  for (auto& t : accept_threads_) t.join();
  accept_threads_.clear();
  // Closing the sockets makes new connections fail at once, as with a stopped CA service.
  epm_listener_.reset();
  icpr_listener_.reset();
  dcom_listener_.reset();
  std::unique_lock lock(mu_);
  for (rpc::TcpStream* s : open_) s->Shutdown();
  connections_done_.wait(lock, [this] { return open_.empty(); });
}

void Emulator::AcceptLoop(rpc::TcpListener* listener, const rpc::ServerOptions* options,
                          const rpc::CallHandler* handler) {
  for (;;) {
    auto accepted = listener->Accept();
    if (!accepted.ok()) {
      if (absl::IsCancelled(accepted.status())) return;
      continue;  // out of descriptors and the like: keep serving the connections we have
    }
    std::shared_ptr<rpc::TcpStream> stream = std::move(*accepted);
    {
      std::lock_guard lock(mu_);
      if (stopping_ || faults_.refuse_connections || open_.size() >= static_cast<size_t>(config_.max_connections)) {
        continue;  // the stream closes here
      }
      open_.insert(stream.get());
    }
    connections_++;
    std::thread([this, stream, options, handler] {
      rpc::ServeConnection(*stream, *options, *handler);
      std::lock_guard lock(mu_);
      open_.erase(stream.get());
      connections_done_.notify_all();
    }).detach();
  }
}

absl::StatusOr<rpc::Bytes> Emulator::HandleEndpointMapper(uint16_t opnum, rpc::ByteView stub) {
  if (opnum != rpc::kEptMapOpnum) return rpc::FaultError(rpc::fault::kOpRangeError, "endpoint mapper");
  auto request = rpc::DecodeEptMapRequest(stub);
  if (!request.ok()) return rpc::FaultError(rpc::fault::kNdr, "ept_map");
  rpc::EptMapResponse response;
  response.max_towers = request->max_towers;
  std::optional<rpc::TcpTower> asked;
  if (request->map_tower) {
    auto tower = rpc::ParseTcpTower(*request->map_tower);
    if (tower.ok()) asked = *tower;
  }
  if (asked && asked->interface_id == rpc::kIcprSyntax && request->max_towers > 0) {
    rpc::TcpTower answer = *asked;
    answer.port = icpr_port_;
    answer.ipv4 = {127, 0, 0, 1};
    response.towers.push_back(rpc::BuildTcpTower(answer));
  } else {
    response.status = rpc::kEptNotRegisteredDce;
  }
  return rpc::EncodeEptMapResponse(response);
}

bool Emulator::MayEnroll(const std::string& account, const std::string& template_name) const {
  const bool on_ca = std::any_of(config_.ca_enroll.begin(), config_.ca_enroll.end(),
                                 [&](const std::string& p) { return AccountMatches(p, account); });
  if (!on_ca) return false;
  for (const auto& [name, who] : config_.template_enroll) {
    if (absl::EqualsIgnoreCase(name, template_name)) {
      return std::any_of(who.begin(), who.end(), [&](const std::string& p) { return AccountMatches(p, account); });
    }
  }
  return true;
}

absl::StatusOr<rpc::Bytes> Emulator::HandleCertPassage(const rpc::CallContext& caller, uint16_t opnum,
                                                       rpc::ByteView stub) {
  calls_++;
  if (caller.mechanism == "ntlm") ntlm_calls_++;
  if (caller.mechanism == "kerberos" || caller.mechanism == "negotiate/kerberos") kerberos_calls_++;
  if (opnum != rpc::kCertServerRequestOpnum) return rpc::FaultError(rpc::fault::kOpRangeError, "ICertPassage");
  const Faults f = faults();
  if (f.latency.count() > 0) std::this_thread::sleep_for(f.latency);
  if (f.failure_rate > 0) {
    std::lock_guard lock(mu_);
    if (std::uniform_real_distribution<double>(0, 1)(rng_) < f.failure_rate) {
      dropped_++;
      return absl::UnavailableError("failure-rate knob: call dropped");
    }
  }
  auto in = rpc::DecodeCertServerRequestIn(stub);
  if (!in.ok()) return rpc::FaultError(rpc::fault::kNdr, "CertServerRequest");

  auto answer = [](const rpc::CertServerRequestOut& out) { return rpc::EncodeCertServerRequestOut(out); };
  // IF_ENFORCEENCRYPTICERTREQUEST: nothing below packet privacy gets in.
  if (caller.auth_level < rpc::authn_level::kPktPrivacy) {
    refused_++;
    return answer(CallFailed(hr::kAccessDenied));
  }
  if (!in->authority || !absl::EqualsIgnoreCase(*in->authority, config_.ca.ca_name)) {
    return answer(CallFailed(hr::kInvalidArg));
  }
  const std::string account = absl::StrCat(caller.domain, "\\", caller.user);
  const adcsc::ca::CaTarget target{config_.names.dns_computer, config_.ca.ca_name};

  if (in->request_id != 0) {
    retrieves_++;
    auto r = ca_->Retrieve({target, {account}, in->request_id});
    if (!r.ok()) {
      const uint32_t code = adcsc::ca::HresultOf(r.status()).value_or(hr::kFail);
      if (code == hr::kAccessDenied) {
        refused_++;
        return answer(CallFailed(code));
      }
      return answer(Refused(0, code, ""));
    }
    return answer(FromResponse(*r, /*submit=*/false));
  }

  // A new request. Windows rejects an attribute blob whose cb leaves out the NUL.
  const auto& attributes = in->attributes;
  if (!attributes.empty() && (attributes.size() % 2 != 0 || attributes[attributes.size() - 1] != 0 ||
                              attributes[attributes.size() - 2] != 0)) {
    return answer(CallFailed(hr::kInvalidArg));
  }
  std::string template_name;
  if (!attributes.empty()) {
    auto pairs = rpc::DecodeRequestAttributes(attributes);
    if (!pairs.ok()) return answer(CallFailed(hr::kInvalidArg));
    for (const auto& [name, value] : *pairs) {
      if (absl::EqualsIgnoreCase(name, "CertificateTemplate")) template_name = value;
    }
  }
  if (in->request.empty()) return answer(CallFailed(hr::kInvalidArg));
  const bool on_ca = std::any_of(config_.ca_enroll.begin(), config_.ca_enroll.end(),
                                 [&](const std::string& p) { return AccountMatches(p, account); });
  if (!on_ca) {
    refused_++;
    return answer(Refused(0, hr::kEnrollDenied, ""));
  }
  if (!MayEnroll(account, template_name.empty() ? config_.ca.default_template : template_name)) {
    refused_++;
    return answer(Refused(0, hr::kTemplateDenied, ""));
  }
  submits_++;
  auto r = ca_->Submit({target, {account}, in->request, template_name});
  if (!r.ok()) {
    const uint32_t code = adcsc::ca::HresultOf(r.status()).value_or(hr::kFail);
    if (code == hr::kInvalidArg || code == hr::kAccessDenied) return answer(CallFailed(code));
    return answer(Refused(0, code, ""));
  }
  if (f.submit_reply_latency.count() > 0) std::this_thread::sleep_for(f.submit_reply_latency);
  // The CA has the request now; these knobs lose its answer on the way back.
  if (TakeOne(&Faults::fault_after_accept)) {
    lost_answers_++;
    return rpc::FaultError(rpc::fault::kCantPerform, "fault_after_accept knob");
  }
  if (TakeOne(&Faults::drop_after_accept)) {
    lost_answers_++;
    return absl::UnavailableError("drop_after_accept knob: connection dropped after the submit was taken");
  }
  return answer(FromResponse(*r, /*submit=*/true));
}

}  // namespace adcsc::emulator
