// Private keys and the files that hold secrets: key generation, PEM in and out, writing a
// file with mode 0600 without ever exposing it, and certificate fingerprints / pins.
// Thread-safety: free functions, safe from any thread. An EVP_PKEY may be shared between
// threads for signing once created; do not modify it concurrently.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "node/pki/encoding.h"
#include "node/pki/openssl_ptr.h"

namespace adcsc::pki {

enum class KeyType { kRsa2048, kRsa3072, kEcP256, kEcP384 };

// "rsa2048", "rsa3072", "p256", "p384".
std::string_view KeyTypeName(KeyType type);

// Parses a key type as written in the CLI or a config file, case-insensitively:
// "p256" / "p-256" / "ec-p256" / "prime256v1" / "secp256r1", "p384" / "p-384" / "secp384r1",
// "rsa2048" / "rsa-2048", "rsa3072" / "rsa-3072".
absl::StatusOr<KeyType> ParseKeyType(std::string_view text);

// A fresh key pair.
absl::StatusOr<EvpPkeyPtr> GenerateKey(KeyType type);

// "RSA", "EC", "ED25519", "ED448", "DSA" or OpenSSL's name for other key types.
std::string KeyAlgorithmName(const EVP_PKEY* key);

// Unencrypted PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----"). The result is secret: never log it.
absl::StatusOr<std::string> PrivateKeyToPem(EVP_PKEY* key);

// Reads a PEM private key (PKCS#8, or traditional RSA/EC); encrypted keys are refused.
absl::StatusOr<EvpPkeyPtr> PrivateKeyFromPem(std::string_view pem);

// The whole content of a file.
absl::StatusOr<std::string> ReadFileToString(const std::filesystem::path& path);

// Reads a PEM private key file. When `require_private_mode` is true, refuses a file that
// group or others can access (the mode must be 0600 or stricter).
absl::StatusOr<EvpPkeyPtr> ReadPrivateKeyFile(const std::filesystem::path& path, bool require_private_mode = true);

// Writes `data` to `path` atomically with permission bits `mode`: the data goes to a new
// temporary file in the same directory (O_CREAT|O_EXCL, created with `mode` and fchmod'ed to
// it regardless of umask), is fsync'ed, then moved into place. Without `overwrite`, an
// existing `path` is never replaced (the move is link(2), which fails if the name exists) and
// the error names the file. The directory must exist.
absl::Status WriteFileAtomic(const std::filesystem::path& path, std::string_view data, mode_t mode,
                             bool overwrite = false);

// WriteFileAtomic with mode 0600: for private keys, PKCS#12 files, passwords.
absl::Status WritePrivateFile(const std::filesystem::path& path, std::string_view data, bool overwrite = false);
inline absl::Status WritePrivateFile(const std::filesystem::path& path, ByteView data, bool overwrite = false) {
  return WritePrivateFile(path, AsChars(data), overwrite);
}

// SHA-256 over the certificate's DER encoding, lowercase hex (64 characters): the pin
// format. Empty only if the certificate cannot be encoded.
std::string CertSha256Hex(X509* cert);

// Normalises a SHA-256 certificate pin as an operator might paste it: upper- or lower-case
// hex, either 64 digits or 32 colon-separated pairs (the form `openssl x509 -fingerprint`
// prints), optionally with a "sha256:" or "SHA256 Fingerprint=" prefix and surrounding
// whitespace. Returns 64 lowercase hex characters, or InvalidArgument saying what is wrong.
absl::StatusOr<std::string> NormalizePin(std::string_view pin);

}  // namespace adcsc::pki
