// Windows HRESULTs the CA path can produce, with the names and texts operators search for,
// and the glue that carries an HRESULT inside an absl::Status. Thread-safe (pure functions).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace adcsc::ca {

namespace hr {
inline constexpr uint32_t kOk = 0x00000000;
inline constexpr uint32_t kAccessDenied = 0x80070005;          // E_ACCESSDENIED
inline constexpr uint32_t kInvalidArg = 0x80070057;            // E_INVALIDARG
inline constexpr uint32_t kFail = 0x80004005;                  // E_FAIL
inline constexpr uint32_t kUnexpected = 0x8000FFFF;            // E_UNEXPECTED
inline constexpr uint32_t kRpcServerUnavailable = 0x800706BA;  // RPC_S_SERVER_UNAVAILABLE
inline constexpr uint32_t kRpcCallFailed = 0x800706BE;         // RPC_S_CALL_FAILED
inline constexpr uint32_t kTimeout = 0x800705B4;               // ERROR_TIMEOUT
// RPC_S_SEC_PKG_ERROR: what Windows' RPC runtime reports when its security package cannot
// authenticate the call; adcsc uses it when Kerberos cannot start from this node (no ticket).
inline constexpr uint32_t kSecPkgError = 0x80070721;
inline constexpr uint32_t kPropertyEmpty = 0x80094004;        // CERTSRV_E_PROPERTY_EMPTY
inline constexpr uint32_t kBadRequestSubject = 0x80094001;    // CERTSRV_E_BAD_REQUESTSUBJECT
inline constexpr uint32_t kNoRequest = 0x80094002;            // CERTSRV_E_NO_REQUEST
inline constexpr uint32_t kBadRequestStatus = 0x80094003;     // CERTSRV_E_BAD_REQUESTSTATUS
inline constexpr uint32_t kEnrollDenied = 0x80094011;         // CERTSRV_E_ENROLL_DENIED
inline constexpr uint32_t kTemplateDenied = 0x80094012;       // CERTSRV_E_TEMPLATE_DENIED
inline constexpr uint32_t kAdminDeniedRequest = 0x80094014;   // CERTSRV_E_ADMIN_DENIED_REQUEST
inline constexpr uint32_t kUnsupportedCertType = 0x80094800;  // CERTSRV_E_UNSUPPORTED_CERT_TYPE
inline constexpr uint32_t kNoCertType = 0x80094801;           // CERTSRV_E_NO_CERT_TYPE
inline constexpr uint32_t kKeyLength = 0x80094811;            // CERTSRV_E_KEY_LENGTH
inline constexpr uint32_t kBadSignature = 0x80090006;         // NTE_BAD_SIGNATURE
inline constexpr uint32_t kAsn1BadTag = 0x8009310B;           // CRYPT_E_ASN1_BADTAG
inline constexpr uint32_t kRequestPending = 0x00094001;       // not an error: under submission
}  // namespace hr

// "CERTSRV_E_ENROLL_DENIED"; "HRESULT" for codes we do not know. Win32 errors carry
// their Win32 name as certutil prints it (kAccessDenied: "ERROR_ACCESS_DENIED",
// kInvalidArg: "ERROR_INVALID_PARAMETER"); kRequestPending is "CR_DISP_UNDER_SUBMISSION".
std::string_view HresultSymbol(uint32_t hresult);

// The Windows text for the code, e.g. "The permissions on this certification authority do
// not allow the current user to enroll for certificates."; empty when unknown.
std::string_view HresultText(uint32_t hresult);

// "<text> 0x80094011 (-2146877423 CERTSRV_E_ENROLL_DENIED)", the form the original
// connector's messages use (hex, signed decimal, symbol). As certutil does, Win32 errors
// (facility 7) show their Win32 code ("0x800706ba (WIN32: 1722 RPC_S_SERVER_UNAVAILABLE)")
// and ASN.1 errors theirs ("0x8009310b (ASN: 267 CRYPT_E_ASN1_BADTAG)"); hex is lowercase.
// Unknown codes: "0x80001234 (-2147478988 HRESULT)".
std::string FormatHresult(uint32_t hresult);

// An absl::Status carrying `hresult`, with message "<context>: <FormatHresult>" (just
// FormatHresult when context is empty); the status code is chosen from the HRESULT
// (UNAVAILABLE for RPC/transport incl. timeout, PERMISSION_DENIED for access errors,
// NOT_FOUND for a missing request, INTERNAL otherwise). The HRESULT travels as the payload
// "adcsc.hresult" (8 lowercase hex digits), so it survives copies of the status.
absl::Status CaError(uint32_t hresult, std::string_view context);

// The HRESULT a status carries, if it was built by CaError().
std::optional<uint32_t> HresultOf(const absl::Status& status);

}  // namespace adcsc::ca
