// The TLS policy every listener of a node shares (the API port and the ops port): TLS 1.2 and
// 1.3 only, forward-secret AEAD suites, X25519/P-256/P-384, the server's cipher preference, no
// renegotiation, no compression; and loading a listener's certificate chain and key with errors
// that name the configuration keys. Stateless functions; call them while setting a context up,
// before it serves any connection.
#pragma once

#include <openssl/ssl.h>

#include <filesystem>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace adcsc::node {

// TLS 1.2 suites: ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 only. TLS 1.3 keeps
// OpenSSL's default suites (all of them AEAD and forward secret).
inline constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
inline constexpr const char* kTlsGroups = "X25519:P-256:P-384";

// Applies the policy above to `ctx` (not owned).
absl::Status ApplyServerTlsPolicy(SSL_CTX* ctx);

// Loads the PEM chain (leaf first) and the unencrypted PEM key into `ctx` and checks that they
// match. `cert_key` and `key_key` are the configuration keys named in errors ("api.cert_file").
absl::Status LoadServerIdentity(SSL_CTX* ctx, const std::filesystem::path& cert_file, std::string_view cert_key,
                                const std::filesystem::path& key_file, std::string_view key_key);

}  // namespace adcsc::node
