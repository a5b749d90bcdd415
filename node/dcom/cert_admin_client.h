// A client of a CA's admin interface (MS-CSRA ICertAdminD2) over DCOM: activates CCertAdminD
// on the CA host's activation port (135) through IRemoteSCMActivator::RemoteCreateInstance,
// opens a second authenticated connection at packet privacy to the object exporter's port
// from the OXID bindings, calls the object (object UUID = its IPID, ORPCTHIS/ORPCTHAT) and
// finally releases it with IRemUnknown::RemRelease. Connections come from a Connector, in
// practice the icpr backend's IcprAuthenticator, so NTLM, Kerberos and negotiate work exactly
// as for MS-ICPR. Every failure is a status built by ca::CaError: the HRESULT text the rest of
// adcsc shows ("Access is denied. 0x80070005 (WIN32: 5 ERROR_ACCESS_DENIED)").
// Thread-safety: a session is used by one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "node/dcom/csra_stub.h"
#include "node/dcom/dcom_wire.h"
#include "node/rpc/client.h"

namespace adcsc::dcom {

// Opens an authenticated connection binding `interfaces` (presentation contexts 0, 1, ...)
// at `level` (rpc::authn_level).
using Connector = std::function<absl::StatusOr<std::unique_ptr<rpc::ClientConnection>>(
    rpc::ClientOptions, const std::vector<SyntaxId>& interfaces, uint8_t level)>;

struct CertAdminOptions {
  std::string host;                // the CA host (Jamf's config.dc)
  std::string authority;           // the CA name (config.ca)
  uint16_t activation_port = 135;  // the DCOM activation (endpoint mapper) port
  std::chrono::milliseconds connect_timeout{3'000};
  std::chrono::milliseconds call_timeout{10'000};
  // Activation at packet integrity at least (Microsoft's DCOM hardening); admin calls at
  // packet privacy (IF_ENFORCEENCRYPTICERTADMIN). Lower values exist only so tests can show
  // that the CA refuses them.
  uint8_t activation_level = rpc::authn_level::kPktPrivacy;
  uint8_t call_level = rpc::authn_level::kPktPrivacy;
};

// What GetCAProperty tells about the CA.
struct CaInfo {
  std::string name;               // CR_PROP_CANAME
  std::vector<uint8_t> cert_der;  // CR_PROP_CASIGCERT, index 0
  int64_t not_before_unix = 0;    // of that certificate
  int64_t not_after_unix = 0;
  std::string subject;
};

class CertAdminSession {
 public:
  // Activates the object and connects to its exporter. Errors name the step (activation,
  // exporter connection) and carry an HRESULT.
  static absl::StatusOr<std::unique_ptr<CertAdminSession>> Open(const CertAdminOptions& options, Connector connect);
  // Releases the object if Release() was not called (errors ignored).
  ~CertAdminSession();
  CertAdminSession(const CertAdminSession&) = delete;
  CertAdminSession& operator=(const CertAdminSession&) = delete;

  // ResubmitRequest: the disposition the request has afterwards (cr_disp values), or an
  // error: an HRESULT in the disposition (the request is not there: CERTSRV_E_PROPERTY_EMPTY)
  // or as the call's result (no Officer right: E_ACCESSDENIED).
  absl::StatusOr<uint32_t> Resubmit(uint32_t request_id);
  absl::Status Deny(uint32_t request_id);
  // `serial` is sent as given: the CA compares it case-sensitively with the hex it wrote.
  // `filetime` 0 means now.
  absl::Status Revoke(const std::string& serial, uint32_t reason, uint64_t filetime);
  absl::StatusOr<CaInfo> GetCaInfo();
  // IRemUnknown::RemRelease of the object's references; then the session is closed.
  absl::Status Release();

  uint16_t exporter_port() const { return exporter_port_; }
  const Uuid& ipid() const { return ipid_; }
  std::string mechanism() const { return connection_ ? connection_->mechanism() : "none"; }

 private:
  CertAdminSession() = default;
  // One ORPC call on the object (context 0, object = IPID) or on IRemUnknown (context 1,
  // object = ipidRemUnknown).
  absl::StatusOr<Bytes> CallObject(uint16_t opnum, const Bytes& stub, std::string_view what, bool rem_unknown = false);
  OrpcThis NewOrpcThis() const;

  CertAdminOptions options_;
  std::unique_ptr<rpc::ClientConnection> connection_;
  uint16_t exporter_port_ = 0;
  Uuid ipid_;
  Uuid ipid_rem_unknown_;
  uint32_t public_refs_ = 0;
  Uuid causality_;
  bool released_ = false;
};

}  // namespace adcsc::dcom
