// X.509 certificates: the self-signed CA certificate that serves as the connector's server
// identity (and as the embedded CA's root), issuing a leaf certificate from a PKCS#10
// request, chain verification, and DER/PEM conversions.
// Thread-safety: free functions, safe from any thread; the issuer certificate and key passed
// in are only read, so one issuer may sign from many threads at once.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "node/pki/encoding.h"
#include "node/pki/openssl_ptr.h"

namespace adcsc::pki {

// Well-known extended key usage OIDs.
inline constexpr std::string_view kEkuServerAuth = "1.3.6.1.5.5.7.3.1";
inline constexpr std::string_view kEkuClientAuth = "1.3.6.1.5.5.7.3.2";

// Resolves an extended key usage given as a dotted OID ("1.3.6.1.5.5.7.3.2") or an OpenSSL
// short or long name ("clientAuth", "TLS Web Client Authentication") to its dotted OID.
absl::StatusOr<std::string> ResolveEku(std::string_view eku);

// A subjectAltName value from entries as an operator writes them: IP literals become
// iPAddress names, anything else a dNSName (printable ASCII without spaces).
absl::StatusOr<GeneralNamesPtr> BuildSubjectAltNames(const std::vector<std::string>& names);

// The name CN=<common_name> (UTF-8, 1..64 characters).
absl::StatusOr<X509NamePtr> CommonNameOnly(const std::string& common_name);

// What to put in a self-signed CA certificate.
struct SelfSignedCaOptions {
  std::string common_name;
  // subjectAltName entries: IP literals become iPAddress names, anything else dNSName.
  std::vector<std::string> san_dns;
  int years = 10;
  // extendedKeyUsage entries (see ResolveEku); empty: no EKU extension.
  std::vector<std::string> ekus;
  // Time the validity starts from (seconds since the epoch); unset: now. notBefore is this
  // minus 1 hour, to tolerate clocks behind or stepped back.
  std::optional<int64_t> now_unix_seconds;
};

// A self-signed certificate for `key`: subject CN=<common_name>, basicConstraints CA:TRUE
// (critical), keyUsage keyCertSign, cRLSign, digitalSignature (+ keyEncipherment for RSA)
// (critical), the given EKUs and SANs, SKI and AKI, 16 random serial bytes, SHA-256
// (Ed25519/Ed448: their own digest).
absl::StatusOr<X509Ptr> MakeSelfSignedCa(EVP_PKEY* key, const SelfSignedCaOptions& options);

// The same with the arguments spelled out.
absl::StatusOr<X509Ptr> MakeSelfSignedCa(EVP_PKEY* key, std::string common_name, std::vector<std::string> san_dns,
                                         int years, std::vector<std::string> ekus);

// How to issue a certificate from a request.
struct IssueOptions {
  int validity_days = 365;
  // extendedKeyUsage entries (see ResolveEku); empty: no EKU extension.
  std::vector<std::string> ekus;
  // Copy the request's subject. When false, the subject is CN=<subject_cn>.
  bool copy_subject = true;
  std::string subject_cn;
  // Copy the subjectAltName from the request's extension request, if it has one (made
  // critical when the subject is empty, as RFC 5280 requires).
  bool copy_san = true;
  // Time the validity starts from (seconds since the epoch); unset: now.
  std::optional<int64_t> now_unix_seconds;
};

// Signs a certificate for the request's public key with `issuer_key`: serial = 16 random
// bytes (positive), notBefore = now - 1 h, notAfter = now + validity_days capped at the
// issuer's notAfter, basicConstraints CA:FALSE (critical), keyUsage digitalSignature
// (+ keyEncipherment for RSA keys) (critical), EKUs, SKI, AKI (issuer's key ID), SHA-256.
// The request's signature is not checked here; callers verify it first (see csr.h).
absl::StatusOr<X509Ptr> IssueCertificate(X509* issuer_cert, EVP_PKEY* issuer_key, X509_REQ* request,
                                         const IssueOptions& options);

// Verifies `leaf` against the trust anchors `roots` with optional `intermediates`, at
// `at_unix_seconds` (unset: now), for any purpose. Error names OpenSSL's reason.
// `extra_flags` are X509_V_FLAG_* bits (e.g. X509_V_FLAG_X509_STRICT).
absl::Status VerifyChain(X509* leaf, const std::vector<X509*>& roots, const std::vector<X509*>& intermediates = {},
                         std::optional<int64_t> at_unix_seconds = std::nullopt, unsigned long extra_flags = 0);

// Conversions. PEM output is one "CERTIFICATE" block with "\n" line ends.
absl::StatusOr<Bytes> CertToDer(X509* cert);
absl::StatusOr<X509Ptr> CertFromDer(ByteView der);
absl::StatusOr<std::string> CertToPem(X509* cert);
// The first certificate of a PEM text.
absl::StatusOr<X509Ptr> CertFromPem(std::string_view pem);
// Every certificate of a PEM bundle, in order; an error if there is none.
absl::StatusOr<std::vector<X509Ptr>> CertsFromPem(std::string_view pem);

// A certs-only PKCS#7 SignedData (no signers), DER: the form of the chain an ADCS CA answers in
// CertServerRequest's pctbCertChain (MS-WCCE), leaf and issuers.
absl::StatusOr<Bytes> CertsToPkcs7Der(const std::vector<X509*>& certs);
// The certificates of a PKCS#7 SignedData (DER), in the order the structure holds them.
absl::StatusOr<std::vector<X509Ptr>> CertsFromPkcs7Der(ByteView der);
// The subject or issuer as an RFC 2253 string ("CN=a,O=b").
std::string NameToString(const X509_NAME* name);
// The certificate's serial as lowercase hex.
std::string SerialHex(X509* cert);
// notBefore / notAfter in seconds since the epoch (0 on a malformed time).
int64_t NotBeforeUnix(X509* cert);
int64_t NotAfterUnix(X509* cert);
// A Unix time as RFC 3339 in UTC, "2027-01-15T00:00:00Z" (also a TOML date-time).
std::string UtcDateTime(int64_t unix_seconds);
// The subjectAltName entries in order, as "DNS:name", "IP:addr", "email:addr", "URI:uri"
// (other name forms as "othername"/"dirName:..."); empty without the extension.
std::vector<std::string> SubjectAltNames(X509* cert);
// The same for a request's extension request.
std::vector<std::string> SubjectAltNames(X509_REQ* request);
// The dotted OIDs of the extendedKeyUsage extension, in order.
std::vector<std::string> ExtendedKeyUsages(X509* cert);

}  // namespace adcsc::pki
