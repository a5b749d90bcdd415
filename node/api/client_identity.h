// Who is calling the API, as the transport decided it: whether the caller's client
// certificate was let in, its pin and name, and for a refusal IIS's reason codes. The API
// decides on this value and logs it; it never sees a certificate or a socket. Plain data.
#pragma once

#include <cstdint>
#include <string>

namespace adcsc::node {

// IIS's sub-status codes for a refused client certificate (the access log's sc-substatus).
inline constexpr int kIisNoCertificate = 7;  // 403.7  client certificate required
inline constexpr int kIisMapperDenied = 12;  // 403.12 mapper denied access (not in api.client_pins)
inline constexpr int kIisUntrusted = 16;     // 403.16 client certificate untrusted or invalid
inline constexpr int kIisExpired = 17;       // 403.17 client certificate expired or not yet valid

// Windows error codes IIS logs beside them (the access log's sc-win32-status, in decimal).
inline constexpr uint32_t kWin32AccessDenied = 5;             // ERROR_ACCESS_DENIED
inline constexpr uint32_t kCertEUntrustedRoot = 0x800B0109;   // CERT_E_UNTRUSTEDROOT, 2148204809
inline constexpr uint32_t kCertEExpired = 0x800B0101;         // CERT_E_EXPIRED, 2148204801
inline constexpr uint32_t kCertEWrongUsage = 0x800B0110;      // CERT_E_WRONG_USAGE, 2148204816
inline constexpr uint32_t kTrustECertSignature = 0x80096004;  // TRUST_E_CERT_SIGNATURE, 2148098052

struct ClientAuthResult {
  bool ok = false;
  std::string pin;            // SHA-256 of the leaf, lowercase hex; empty without a certificate
  std::string subject;        // CN of the leaf (for the access log's cs-username)
  std::string reason;         // why it was refused: the 403 message, says what to check
  int iis_substatus = 0;      // 403.x as IIS would log it (kIis*), 0 when let in
  uint32_t win32_status = 0;  // what IIS logs as sc-win32-status for that refusal, 0 when let in
};

}  // namespace adcsc::node
