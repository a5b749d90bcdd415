// The old primitives NTLM is built on — MD4, MD5, HMAC-MD5 and RC4 — on OpenSSL 3 EVP.
// MD4 and RC4 live only in OpenSSL's legacy provider, which is loaded once per process.
// Thread-safety: the free functions are safe from any thread. An Rc4 object is one keystream
// with state: use each object from one thread at a time.
#pragma once

#include <initializer_list>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "node/ntlm/bytes.h"

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;

namespace adcsc::ntlm {

// Loads OpenSSL's "legacy" and "default" providers into the default library context (once,
// whatever the number of callers) and fetches the algorithms NTLM needs. Every function below
// calls it; call it early to fail fast with a clear message when legacy.so is missing.
absl::Status EnsureLegacyCrypto();

// MD4 of `data` (NTOWF: the NT hash is MD4 of the UTF-16LE password).
absl::StatusOr<Key16> Md4(ByteView data);

// MD5 of the concatenation of `parts`.
absl::StatusOr<Key16> Md5(std::initializer_list<ByteView> parts);

// HMAC-MD5 keyed with `key` over the concatenation of `parts`.
absl::StatusOr<Key16> HmacMd5(ByteView key, std::initializer_list<ByteView> parts);

// An RC4 keystream. NTLM keeps one per direction for the whole connection, so the state is
// carried from one Apply() to the next rather than reset per message.
class Rc4 {
 public:
  // `key` must be 1 to 256 bytes.
  static absl::StatusOr<Rc4> Create(ByteView key);

  Rc4(Rc4&& other) noexcept;
  Rc4& operator=(Rc4&& other) noexcept;
  Rc4(const Rc4&) = delete;
  Rc4& operator=(const Rc4&) = delete;
  ~Rc4();

  // XORs `data` in place with the next data.size() keystream bytes (encrypts or decrypts).
  absl::Status Apply(std::span<uint8_t> data);

 private:
  explicit Rc4(EVP_CIPHER_CTX* ctx) : ctx_(ctx) {}
  EVP_CIPHER_CTX* ctx_;
};

// RC4 of `data` under a fresh keystream keyed with `key` (the one-shot uses in NTLM: the
// encrypted random session key).
absl::StatusOr<Bytes> Rc4Once(ByteView key, ByteView data);

}  // namespace adcsc::ntlm
