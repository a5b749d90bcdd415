#include "node/ca/hresult.h"

#include <array>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "node/pki/absl_view.h"

namespace adcsc::ca {
namespace {

// The payload key under which CaError() stores the HRESULT, as 8 lowercase hex digits.
constexpr char kHresultPayloadKey[] = "adcsc.hresult";

constexpr uint32_t kFacilityWin32Prefix = 0x80070000;
constexpr uint32_t kAsn1First = 0x80093000;
constexpr uint32_t kAsn1Last = 0x800931ff;

struct HresultInfo {
  uint32_t code;
  std::string_view symbol;
  std::string_view text;  // the Windows message text (FormatMessage), trailing period kept
};

// Texts as Windows prints them (winerror.h message table), so operators can search for them.
constexpr std::array<HresultInfo, 23> kKnown = {{
    {hr::kOk, "S_OK", "The operation completed successfully."},
    {hr::kAccessDenied, "ERROR_ACCESS_DENIED", "Access is denied."},
    {hr::kInvalidArg, "ERROR_INVALID_PARAMETER", "The parameter is incorrect."},
    {hr::kFail, "E_FAIL", "Unspecified error"},
    {hr::kUnexpected, "E_UNEXPECTED", "Catastrophic failure"},
    {hr::kRpcServerUnavailable, "RPC_S_SERVER_UNAVAILABLE", "The RPC server is unavailable."},
    {hr::kRpcCallFailed, "RPC_S_CALL_FAILED", "The remote procedure call failed."},
    {hr::kTimeout, "ERROR_TIMEOUT", "This operation returned because the timeout period expired."},
    {hr::kSecPkgError, "RPC_S_SEC_PKG_ERROR", "A security package specific error occurred."},
    {hr::kPropertyEmpty, "CERTSRV_E_PROPERTY_EMPTY", "The requested property value is empty."},
    {hr::kBadRequestSubject, "CERTSRV_E_BAD_REQUESTSUBJECT", "The request subject name is invalid or too long."},
    {hr::kNoRequest, "CERTSRV_E_NO_REQUEST", "The request does not exist."},
    {hr::kBadRequestStatus, "CERTSRV_E_BAD_REQUESTSTATUS",
     "The request's current status does not allow this operation."},
    {hr::kEnrollDenied, "CERTSRV_E_ENROLL_DENIED",
     "The permissions on this certification authority do not allow the current user to enroll "
     "for certificates."},
    {hr::kTemplateDenied, "CERTSRV_E_TEMPLATE_DENIED",
     "The permissions on the certificate template do not allow the current user to enroll for "
     "this type of certificate."},
    {hr::kAdminDeniedRequest, "CERTSRV_E_ADMIN_DENIED_REQUEST",
     "The request was denied by a certificate manager or CA administrator."},
    {hr::kUnsupportedCertType, "CERTSRV_E_UNSUPPORTED_CERT_TYPE",
     "The requested certificate template is not supported by this CA."},
    {hr::kNoCertType, "CERTSRV_E_NO_CERT_TYPE", "The request contains no certificate template information."},
    {hr::kKeyLength, "CERTSRV_E_KEY_LENGTH",
     "The public key does not meet the minimum size required by the specified certificate "
     "template."},
    {hr::kBadSignature, "NTE_BAD_SIGNATURE", "Invalid Signature."},
    {hr::kAsn1BadTag, "CRYPT_E_ASN1_BADTAG", "ASN1 bad tag value met."},
    // Not a Windows HRESULT name: the status ADCS reports with a request taken under
    // submission. Named after the disposition operators see in Jamf Pro's log.
    {hr::kRequestPending, "CR_DISP_UNDER_SUBMISSION", "Taken Under Submission"},
    {0x80004001, "E_NOTIMPL", "Not implemented"},
}};

const HresultInfo* Find(uint32_t hresult) {
  for (const HresultInfo& info : kKnown) {
    if (info.code == hresult) return &info;
  }
  return nullptr;
}

absl::StatusCode CodeFor(uint32_t hresult) {
  switch (hresult) {
    case hr::kRpcServerUnavailable:
    case hr::kRpcCallFailed:
    case hr::kTimeout:
    case hr::kSecPkgError:
      return absl::StatusCode::kUnavailable;
    case hr::kAccessDenied:
    case hr::kEnrollDenied:
    case hr::kTemplateDenied:
      return absl::StatusCode::kPermissionDenied;
    case hr::kPropertyEmpty:
    case hr::kNoRequest:
      return absl::StatusCode::kNotFound;
    default:
      return absl::StatusCode::kInternal;
  }
}

}  // namespace

std::string_view HresultSymbol(uint32_t hresult) {
  const HresultInfo* info = Find(hresult);
  return info != nullptr ? info->symbol : std::string_view("HRESULT");
}

std::string_view HresultText(uint32_t hresult) {
  const HresultInfo* info = Find(hresult);
  return info != nullptr ? info->text : std::string_view();
}

std::string FormatHresult(uint32_t hresult) {
  const std::string_view text = HresultText(hresult);
  const std::string_view symbol = HresultSymbol(hresult);
  std::string detail;
  if ((hresult & 0xffff0000) == kFacilityWin32Prefix) {
    detail = absl::StrFormat("WIN32: %u %s", hresult & 0xffff, symbol);
  } else if (hresult >= kAsn1First && hresult <= kAsn1Last) {
    detail = absl::StrFormat("ASN: %u %s", hresult - kAsn1First, symbol);
  } else {
    detail = absl::StrFormat("%d %s", static_cast<int32_t>(hresult), symbol);
  }
  return absl::StrFormat("%s%s0x%08x (%s)", text, text.empty() ? "" : " ", hresult, detail);
}

absl::Status CaError(uint32_t hresult, std::string_view context) {
  std::string message =
      context.empty() ? FormatHresult(hresult) : absl::StrCat(pki::AbslView(context), ": ", FormatHresult(hresult));
  absl::Status status(CodeFor(hresult), message);
  status.SetPayload(kHresultPayloadKey, absl::Cord(absl::StrFormat("%08x", hresult)));
  return status;
}

std::optional<uint32_t> HresultOf(const absl::Status& status) {
  auto payload = status.GetPayload(kHresultPayloadKey);
  if (!payload.has_value()) return std::nullopt;
  uint32_t value = 0;
  if (!absl::SimpleHexAtoi(std::string(*payload), &value)) return std::nullopt;
  return value;
}

}  // namespace adcsc::ca
