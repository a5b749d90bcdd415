#include "node/pki/csr.h"

#include <openssl/err.h>

#include "absl/strings/str_cat.h"
#include "node/pki/absl_view.h"
#include "node/pki/keys.h"
#include "node/pki/x509.h"

namespace adcsc::pki {

absl::StatusOr<ParsedCsr> ParseCsr(ByteView der) {
  constexpr absl::string_view kNotPkcs10 = "pkcs10 is not a DER PKCS#10 request";
  if (der.empty()) return absl::InvalidArgumentError(absl::StrCat(kNotPkcs10, ": it is empty"));
  const unsigned char* p = der.data();
  X509ReqPtr request(d2i_X509_REQ(nullptr, &p, static_cast<long>(der.size())));
  if (request == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        kNotPkcs10, " (check that it is base64 of the DER form, BEGIN/END lines removed): ", LastOpenSslError()));
  }
  if (p != der.data() + der.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kNotPkcs10, ": ", der.data() + der.size() - p, " unexpected bytes follow the request"));
  }
  EVP_PKEY* key = X509_REQ_get0_pubkey(request.get());
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(kNotPkcs10, ": its public key cannot be decoded: ", LastOpenSslError()));
  }
  ParsedCsr parsed;
  parsed.key_type = KeyAlgorithmName(key);
  parsed.key_bits = EVP_PKEY_get_bits(key);
  parsed.subject = NameToString(X509_REQ_get_subject_name(request.get()));
  parsed.subject_alt_names = SubjectAltNames(request.get());
  parsed.signature_valid = X509_REQ_verify(request.get(), key) == 1;
  ERR_clear_error();
  parsed.request = std::move(request);
  return parsed;
}

absl::StatusOr<ParsedCsr> ParseVerifiedCsr(ByteView der) {
  absl::StatusOr<ParsedCsr> parsed = ParseCsr(der);
  if (!parsed.ok()) return parsed.status();
  if (!parsed->signature_valid) {
    return absl::InvalidArgumentError(absl::StrCat("CSR signature does not verify (the request for \"", parsed->subject,
                                                   "\" was altered or not signed by its own key)"));
  }
  return parsed;
}

absl::StatusOr<Bytes> CsrToDer(X509_REQ* request) {
  if (request == nullptr) return absl::InvalidArgumentError("CsrToDer: no request");
  const int len = i2d_X509_REQ(request, nullptr);
  if (len <= 0) return absl::InternalError(OpenSslFailure("encoding the request as DER"));
  Bytes der(static_cast<size_t>(len));
  unsigned char* p = der.data();
  if (i2d_X509_REQ(request, &p) != len) {
    return absl::InternalError(OpenSslFailure("encoding the request as DER"));
  }
  return der;
}

absl::StatusOr<Bytes> MakeCsr(EVP_PKEY* key, std::string common_name, std::vector<std::string> dns_sans) {
  if (key == nullptr) return absl::InvalidArgumentError("MakeCsr: no key");
  X509ReqPtr request(X509_REQ_new());
  if (request == nullptr) return absl::InternalError(OpenSslFailure("X509_REQ_new"));
  if (X509_REQ_set_version(request.get(), X509_REQ_VERSION_1) != 1) {
    return absl::InternalError(OpenSslFailure("X509_REQ_set_version"));
  }
  absl::StatusOr<X509NamePtr> name = CommonNameOnly(common_name);
  if (!name.ok()) return name.status();
  if (X509_REQ_set_subject_name(request.get(), name->get()) != 1 || X509_REQ_set_pubkey(request.get(), key) != 1) {
    return absl::InternalError(OpenSslFailure("filling in the request"));
  }
  if (!dns_sans.empty()) {
    absl::StatusOr<GeneralNamesPtr> sans = BuildSubjectAltNames(dns_sans);
    if (!sans.ok()) return sans.status();
    X509ExtensionStackPtr exts(sk_X509_EXTENSION_new_null());
    X509ExtensionPtr ext(X509V3_EXT_i2d(NID_subject_alt_name, 0, sans->get()));
    if (exts == nullptr || ext == nullptr || sk_X509_EXTENSION_push(exts.get(), ext.get()) == 0) {
      return absl::InternalError(OpenSslFailure("building the extension request"));
    }
    ext.release();  // now owned by `exts`
    if (X509_REQ_add_extensions(request.get(), exts.get()) != 1) {
      return absl::InternalError(OpenSslFailure("X509_REQ_add_extensions"));
    }
  }
  const int id = EVP_PKEY_get_base_id(key);
  const EVP_MD* md = (id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448) ? nullptr : EVP_sha256();
  if (X509_REQ_sign(request.get(), key, md) <= 0) {
    return absl::InternalError(OpenSslFailure("signing the request"));
  }
  return CsrToDer(request.get());
}

}  // namespace adcsc::pki
