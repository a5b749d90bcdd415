// Client-certificate authorization for the API port, the equivalent of IIS one-to-one
// mapping: a client is let in only if its certificate chains to the configured trust, is
// within its validity period, and its SHA-256 fingerprint is one of the configured pins.
// Thread-safe after construction (X509_STORE verification is safe to share; the decision
// cache has its own lock).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "absl/status/statusor.h"

namespace adcsc::node {

// IIS's sub-status codes for a refused client certificate (the access log's sc-substatus).
inline constexpr int kIisNoCertificate = 7;     // 403.7  client certificate required
inline constexpr int kIisMapperDenied = 12;     // 403.12 mapper denied access (not in api.client_pins)
inline constexpr int kIisUntrusted = 16;        // 403.16 client certificate untrusted or invalid
inline constexpr int kIisExpired = 17;          // 403.17 client certificate expired or not yet valid

// Windows error codes IIS logs beside them (the access log's sc-win32-status, in decimal).
inline constexpr uint32_t kWin32AccessDenied = 5;             // ERROR_ACCESS_DENIED
inline constexpr uint32_t kCertEUntrustedRoot = 0x800B0109;   // CERT_E_UNTRUSTEDROOT, 2148204809
inline constexpr uint32_t kCertEExpired = 0x800B0101;         // CERT_E_EXPIRED, 2148204801
inline constexpr uint32_t kCertEWrongUsage = 0x800B0110;      // CERT_E_WRONG_USAGE, 2148204816
inline constexpr uint32_t kTrustECertSignature = 0x80096004;  // TRUST_E_CERT_SIGNATURE, 2148098052

struct ClientAuthResult {
  bool ok = false;
  std::string pin;      // SHA-256 of the leaf, lowercase hex; empty without a certificate
  std::string subject;  // CN of the leaf (for the access log's cs-username)
  std::string reason;   // why it was refused: the 403 message, says what to check
  int iis_substatus = 0;      // 403.x as IIS would log it (kIis*), 0 when let in
  uint32_t win32_status = 0;  // what IIS logs as sc-win32-status for that refusal, 0 when let in
};

class ClientAuthorizer {
 public:
  // `trust_pem_file`: the PEM bundle client certificates must chain to (intermediates may
  // be included). `pins`: normalised lowercase hex SHA-256 fingerprints.
  static absl::StatusOr<std::unique_ptr<ClientAuthorizer>> Create(const std::string& trust_pem_file,
                                                                 const std::vector<std::string>& pins);
  ~ClientAuthorizer();
  ClientAuthorizer(const ClientAuthorizer&) = delete;
  ClientAuthorizer& operator=(const ClientAuthorizer&) = delete;

  // Decides for a peer certificate `leaf` (may be null) with the chain it sent (may be null).
  ClientAuthResult Authorize(X509* leaf, STACK_OF(X509) * chain) const;
  // Convenience for a finished TLS handshake.
  ClientAuthResult AuthorizeSsl(SSL* ssl) const;

 private:
  ClientAuthorizer(X509_STORE* store, std::set<std::string> pins);
  ClientAuthResult Verify(X509* leaf, STACK_OF(X509) * chain, const std::string& pin) const;

  X509_STORE* store_;  // owned
  std::set<std::string> pins_;

  // Positive decisions by certificate fingerprint: a resumed connection from Jamf Pro does
  // not pay for chain verification again. An entry lives at most kDecisionTtl and never past
  // the certificate's notAfter; refusals are not cached (they are rare and cheap to redo).
  struct CachedDecision {
    ClientAuthResult result;
    std::chrono::system_clock::time_point valid_until;
  };
  static constexpr std::chrono::seconds kDecisionTtl{60};
  static constexpr size_t kMaxCachedDecisions = 1024;
  mutable std::mutex cache_mu_;
  mutable std::mutex verify_mu_;  // serializes X509_verify_cert on store_
  mutable std::map<std::string, CachedDecision> cache_;
};

}  // namespace adcsc::node
