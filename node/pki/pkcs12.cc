#include "node/pki/pkcs12.h"

#include <openssl/err.h>
#include <openssl/pkcs12.h>

#include "absl/strings/str_cat.h"

namespace adcsc::pki {
namespace {

// PBKDF2 and MAC iterations: OpenSSL's default for both.
constexpr int kIterations = PKCS12_DEFAULT_ITER;

}  // namespace

absl::StatusOr<Bytes> ExportPkcs12(EVP_PKEY* key, X509* cert, const std::vector<X509*>& chain,
                                   std::string_view password, std::string_view friendly_name) {
  if (key == nullptr || cert == nullptr) {
    return absl::InvalidArgumentError("ExportPkcs12: a key and a certificate are required");
  }
  if (X509_check_private_key(cert, key) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError("ExportPkcs12: the private key does not belong to the certificate");
  }
  X509StackPtr ca(sk_X509_new_null());
  if (ca == nullptr) return absl::InternalError(OpenSslFailure("sk_X509_new_null"));
  for (X509* c : chain) {
    X509Ptr ref = ShareX509(c);
    if (sk_X509_push(ca.get(), ref.get()) == 0) {
      return absl::InternalError(OpenSslFailure("sk_X509_push"));
    }
    ref.release();
  }
  const std::string pass(password);
  const std::string name(friendly_name);
  // nid_key = nid_cert = 0 selects OpenSSL 3's defaults: PBES2 (PBKDF2, AES-256-CBC); the MAC
  // defaults to SHA-256.
  Pkcs12Ptr p12(PKCS12_create(pass.c_str(), name.empty() ? nullptr : name.c_str(), key, cert, ca.get(), 0, 0,
                              kIterations, kIterations, 0));
  if (p12 == nullptr) return absl::InternalError(OpenSslFailure("building the PKCS#12 file"));
  const int len = i2d_PKCS12(p12.get(), nullptr);
  if (len <= 0) return absl::InternalError(OpenSslFailure("encoding the PKCS#12 file"));
  Bytes der(static_cast<size_t>(len));
  unsigned char* p = der.data();
  if (i2d_PKCS12(p12.get(), &p) != len) {
    return absl::InternalError(OpenSslFailure("encoding the PKCS#12 file"));
  }
  return der;
}

absl::StatusOr<Pkcs12Contents> LoadPkcs12(ByteView der, std::string_view password) {
  const unsigned char* p = der.data();
  Pkcs12Ptr p12(d2i_PKCS12(nullptr, &p, static_cast<long>(der.size())));
  if (p12 == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("not a DER PKCS#12 (.pfx/.p12) file: ", LastOpenSslError()));
  }
  const std::string pass(password);
  if (PKCS12_mac_present(p12.get()) && PKCS12_verify_mac(p12.get(), pass.c_str(), static_cast<int>(pass.size())) != 1) {
    ERR_clear_error();
    return absl::PermissionDeniedError(
        "wrong password for the PKCS#12 file (or the file is corrupt: its MAC does not verify)");
  }
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  STACK_OF(X509)* ca = nullptr;
  if (PKCS12_parse(p12.get(), pass.c_str(), &key, &cert, &ca) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("cannot decrypt the PKCS#12 file: ", LastOpenSslError()));
  }
  Pkcs12Contents out;
  out.key.reset(key);
  out.cert.reset(cert);
  X509StackPtr chain(ca);
  if (chain != nullptr) {
    while (sk_X509_num(chain.get()) > 0) out.chain.emplace_back(sk_X509_shift(chain.get()));
  }
  if (out.key == nullptr || out.cert == nullptr) {
    return absl::InvalidArgumentError("the PKCS#12 file does not hold both a private key and its certificate");
  }
  return out;
}

}  // namespace adcsc::pki
