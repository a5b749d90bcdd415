// PKCS#10 certificate requests: parsing and checking the CSRs Jamf Pro sends, and making
// CSRs for tests, the `adcsc client` command and benchmarks.
// Thread-safety: free functions, safe from any thread. A ParsedCsr is a plain value that
// owns its X509_REQ; share it read-only.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "node/pki/encoding.h"
#include "node/pki/openssl_ptr.h"

namespace adcsc::pki {

struct ParsedCsr {
  X509ReqPtr request;                          // owned
  std::string key_type;                        // "RSA", "EC", "ED25519", ... (see KeyAlgorithmName)
  int key_bits = 0;                            // RSA modulus size, EC field size, ...
  std::string subject;                         // RFC 2253, e.g. "CN=device-42,O=Example"
  std::vector<std::string> subject_alt_names;  // "DNS:x", "IP:y", ... from the extension request
  bool signature_valid = false;                // the self-signature verifies with the request's key
};

// Parses a DER PKCS#10 request. Fails with InvalidArgument "pkcs10 is not a DER PKCS#10
// request: ..." when the bytes do not decode (or have trailing data) or carry no usable
// public key. A bad self-signature is NOT an error here: see signature_valid, or use
// ParseVerifiedCsr.
absl::StatusOr<ParsedCsr> ParseCsr(ByteView der);

// ParseCsr, then InvalidArgument "CSR signature does not verify" unless signature_valid.
absl::StatusOr<ParsedCsr> ParseVerifiedCsr(ByteView der);

// One subjectAltName entry a request asks for.
struct CsrSan {
  enum class Type {
    kDns,        // dNSName
    kEmail,      // rfc822Name
    kUri,        // uniformResourceIdentifier
    kIp,         // iPAddress
    kUpn,        // otherName of type Microsoft UPN (1.3.6.1.4.1.311.20.2.3)
    kOtherName,  // any other otherName
    kOther,      // directoryName, registeredID, x400Address, ediPartyName
  };
  Type type = Type::kOther;
  // The text as sent (DNS, email, URI, UPN), the address as text (IP), the otherName's type
  // OID, or the general name's kind ("directoryName", ...). Untrusted: may hold any bytes.
  std::string value;
};

// What the API needs to know about a request before it goes to a CA: its key, and what it
// asks to have certified (what a signing policy judges, csr_policy.h).
struct CsrFacts {
  std::string key_type;  // "RSA", "EC", ...
  int key_bits = 0;
  std::string ec_curve;  // EC keys: "P-256", "P-384", "P-521", or OpenSSL's name of another curve
  std::string subject;   // RFC 2253, most specific RDN first, e.g. "CN=device-42,O=Example"
  // From every subjectAltName extension in every extension request attribute (PKCS#9
  // extensionRequest and Microsoft's 1.3.6.1.4.1.311.2.1.14), in order.
  std::vector<CsrSan> subject_alt_names;
  // Other extensions the extension requests carry, as dotted OIDs.
  std::vector<std::string> other_extension_oids;
  // Microsoft enrollment name/value pairs (attribute 1.3.6.1.4.1.311.13.2.1), e.g.
  // {"ValidityPeriod", "Years"}: ADCS reads these as request attributes.
  std::vector<std::pair<std::string, std::string>> name_value_pairs;
  // Not empty when an extension request or name/value pair attribute could not be decoded
  // (the request itself is well-formed; what it asks for is unknown).
  std::string undecodable;
};

// Checks that `der` is exactly one well-formed DER PKCS#10 request (version, subject,
// SubjectPublicKeyInfo, attributes; signature algorithm and value) whose self-signature
// verifies, with the same error messages as ParseVerifiedCsr. For RSA and EC keys with
// PKCS#1 v1.5 or ECDSA signatures (what Jamf Pro and nearly every client sends) it decodes
// the key with OpenSSL's legacy decoders and verifies the signature over the request's bytes
// directly, which is several times cheaper than d2i_X509_REQ in OpenSSL 3.0 (whose provider
// decoder set-up dominates a submit's CPU); anything else goes through ParseVerifiedCsr.
// The facts include the request's subject, SANs and name/value pairs; an attribute whose
// contents do not decode is not an error here (see CsrFacts::undecodable).
absl::StatusOr<CsrFacts> CheckCsr(ByteView der);

// A DER PKCS#10 request for `key` with subject CN=<common_name> and, when `dns_sans` is not
// empty, an extension request with a subjectAltName (IP literals become iPAddress names).
// Signed with SHA-256 (EdDSA keys: their own digest).
absl::StatusOr<Bytes> MakeCsr(EVP_PKEY* key, std::string common_name, std::vector<std::string> dns_sans = {});

// True when the DER certificate `cert_der` certifies the public key of the DER PKCS#10
// request `csr_der` (how a submit cut short is recognised among a CA's issued requests).
// InvalidArgument when either does not parse.
absl::StatusOr<bool> CertifiesCsrKey(ByteView cert_der, ByteView csr_der);

// The request's DER encoding.
absl::StatusOr<Bytes> CsrToDer(X509_REQ* request);

}  // namespace adcsc::pki
