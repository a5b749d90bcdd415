#include "node/http/tls_settings.h"

#include "absl/strings/str_cat.h"
#include "node/pki/openssl_ptr.h"

namespace adcsc::node {

absl::Status ApplyServerTlsPolicy(SSL_CTX* ctx) {
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) {
    return absl::InternalError("cannot limit TLS to versions 1.2 and 1.3: " + adcsc::pki::LastOpenSslError());
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1)
    return absl::InternalError("cannot set TLS 1.2 ciphers: " + adcsc::pki::LastOpenSslError());
  if (SSL_CTX_set1_groups_list(ctx, kTlsGroups) != 1)
    return absl::InternalError("cannot set TLS groups: " + adcsc::pki::LastOpenSslError());
  return absl::OkStatus();
}

absl::Status LoadServerIdentity(SSL_CTX* ctx, const std::filesystem::path& cert_file, std::string_view cert_key,
                                const std::filesystem::path& key_file, std::string_view key_key) {
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(cert_key), ": cannot load ", cert_file.string(), ": ",
                                                   adcsc::pki::LastOpenSslError(),
                                                   " (expect PEM, leaf certificate first)"));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(key_key), ": cannot load ", key_file.string(), ": ",
                                                   adcsc::pki::LastOpenSslError(),
                                                   " (expect an unencrypted PEM private key)"));
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(key_key), ": ", key_file.string(),
                                                   " does not match the certificate in ", cert_file.string()));
  }
  return absl::OkStatus();
}

}  // namespace adcsc::node
