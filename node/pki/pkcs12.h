// PKCS#12 (.pfx/.p12) files: the client identity Jamf Pro uploads, and loading identities
// operators bring. Written with OpenSSL 3 defaults (AES-256-CBC with PBKDF2 for key and
// certificates, HMAC-SHA-256 MAC), which Java 17 keytool and Jamf Pro read.
// Thread-safety: free functions, safe from any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "node/pki/encoding.h"
#include "node/pki/openssl_ptr.h"

namespace adcsc::pki {

// Bundles `key` and its certificate `cert` with `chain` (issuer certificates, leaf's issuer
// first), protected by `password`. `friendly_name` becomes the entry's alias in Java
// keystores. The result is secret: store it with WritePrivateFile.
absl::StatusOr<Bytes> ExportPkcs12(EVP_PKEY* key, X509* cert, const std::vector<X509*>& chain,
                                   std::string_view password, std::string_view friendly_name);

struct Pkcs12Contents {
  EvpPkeyPtr key;
  X509Ptr cert;
  std::vector<X509Ptr> chain;  // the other certificates, in file order
};

// Opens a PKCS#12 file. A wrong password is PermissionDenied ("wrong password for the
// PKCS#12 file"); undecodable bytes are InvalidArgument.
absl::StatusOr<Pkcs12Contents> LoadPkcs12(ByteView der, std::string_view password);

}  // namespace adcsc::pki
