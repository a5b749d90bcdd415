#include "node/ntlm/legacy_crypto.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#include <algorithm>
#include <climits>
#include <memory>
#include <mutex>
#include <string>

namespace adcsc::ntlm {
namespace {

constexpr char kLegacyProviderMissing[] =
    "OpenSSL legacy provider not available (MD4/RC4 needed for NTLM): check that "
    "ossl-modules/legacy.so from libssl3 is installed";

constexpr size_t kRc4MaxKeyBytes = 256;

// Fetched once and kept for the life of the process: fetching per call would cost a provider
// lookup per message. Never freed on purpose (they must outlive every caller).
struct Algorithms {
  EVP_MD* md4 = nullptr;
  EVP_MD* md5 = nullptr;
  EVP_MAC* hmac = nullptr;
  EVP_CIPHER* rc4 = nullptr;
};

struct LoadResult {
  absl::Status status;
  Algorithms algorithms;
};

LoadResult LoadAlgorithms() {
  LoadResult result;
  // Loading any provider explicitly turns off the implicit loading of "default", so both are
  // loaded: the rest of the process keeps its usual algorithms.
  if (OSSL_PROVIDER_load(nullptr, "legacy") == nullptr) {
    ERR_clear_error();
    result.status = absl::FailedPreconditionError(kLegacyProviderMissing);
    return result;
  }
  if (OSSL_PROVIDER_load(nullptr, "default") == nullptr) {
    ERR_clear_error();
    result.status =
        absl::FailedPreconditionError("OpenSSL default provider could not be loaded (MD5/HMAC needed for NTLM)");
    return result;
  }
  Algorithms& algs = result.algorithms;
  algs.md4 = EVP_MD_fetch(nullptr, "MD4", nullptr);
  algs.rc4 = EVP_CIPHER_fetch(nullptr, "RC4", nullptr);
  algs.md5 = EVP_MD_fetch(nullptr, "MD5", nullptr);
  algs.hmac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (algs.md4 == nullptr || algs.rc4 == nullptr) {
    ERR_clear_error();
    result.status = absl::FailedPreconditionError(kLegacyProviderMissing);
  } else if (algs.md5 == nullptr || algs.hmac == nullptr) {
    ERR_clear_error();
    result.status = absl::FailedPreconditionError("OpenSSL provides no MD5 or HMAC (needed for NTLM)");
  }
  return result;
}

absl::StatusOr<const Algorithms*> GetAlgorithms() {
  static std::once_flag once;
  static LoadResult* loaded = nullptr;
  std::call_once(once, [] { loaded = new LoadResult(LoadAlgorithms()); });
  if (!loaded->status.ok()) return loaded->status;
  return &loaded->algorithms;
}

absl::Status OpenSslError(const char* what) {
  unsigned long code = ERR_get_error();
  std::string message = std::string("OpenSSL ") + what + " failed";
  if (code != 0) {
    char reason[256];
    ERR_error_string_n(code, reason, sizeof(reason));
    message += ": ";
    message += reason;
  }
  ERR_clear_error();
  return absl::InternalError(message);
}

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
struct MacCtxDeleter {
  void operator()(EVP_MAC_CTX* ctx) const { EVP_MAC_CTX_free(ctx); }
};

absl::StatusOr<Key16> Digest(const EVP_MD* md, std::initializer_list<ByteView> parts, const char* name) {
  std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
  if (ctx == nullptr || EVP_DigestInit_ex2(ctx.get(), md, nullptr) != 1) return OpenSslError(name);
  for (ByteView part : parts) {
    if (!part.empty() && EVP_DigestUpdate(ctx.get(), part.data(), part.size()) != 1) return OpenSslError(name);
  }
  Key16 digest;
  unsigned int length = 0;
  if (EVP_DigestFinal_ex(ctx.get(), digest.data(), &length) != 1 || length != digest.size()) {
    return OpenSslError(name);
  }
  return digest;
}

}  // namespace

absl::Status EnsureLegacyCrypto() { return GetAlgorithms().status(); }

absl::StatusOr<Key16> Md4(ByteView data) {
  absl::StatusOr<const Algorithms*> algs = GetAlgorithms();
  if (!algs.ok()) return algs.status();
  return Digest((*algs)->md4, {data}, "MD4");
}

absl::StatusOr<Key16> Md5(std::initializer_list<ByteView> parts) {
  absl::StatusOr<const Algorithms*> algs = GetAlgorithms();
  if (!algs.ok()) return algs.status();
  return Digest((*algs)->md5, parts, "MD5");
}

absl::StatusOr<Key16> HmacMd5(ByteView key, std::initializer_list<ByteView> parts) {
  absl::StatusOr<const Algorithms*> algs = GetAlgorithms();
  if (!algs.ok()) return algs.status();
  std::unique_ptr<EVP_MAC_CTX, MacCtxDeleter> ctx(EVP_MAC_CTX_new((*algs)->hmac));
  if (ctx == nullptr) return OpenSslError("HMAC-MD5");
  char digest_name[] = "MD5";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
      OSSL_PARAM_construct_end(),
  };
  // An empty key still needs a non-null pointer, or OpenSSL keeps the previous (absent) key.
  static const uint8_t kNoKey = 0;
  const uint8_t* key_data = key.empty() ? &kNoKey : key.data();
  if (EVP_MAC_init(ctx.get(), key_data, key.size(), params) != 1) return OpenSslError("HMAC-MD5");
  for (ByteView part : parts) {
    if (!part.empty() && EVP_MAC_update(ctx.get(), part.data(), part.size()) != 1) return OpenSslError("HMAC-MD5");
  }
  Key16 mac;
  size_t length = 0;
  if (EVP_MAC_final(ctx.get(), mac.data(), &length, mac.size()) != 1 || length != mac.size()) {
    return OpenSslError("HMAC-MD5");
  }
  return mac;
}

absl::StatusOr<Rc4> Rc4::Create(ByteView key) {
  if (key.empty() || key.size() > kRc4MaxKeyBytes) {
    return absl::InvalidArgumentError("RC4 key must be 1 to 256 bytes");
  }
  absl::StatusOr<const Algorithms*> algs = GetAlgorithms();
  if (!algs.ok()) return algs.status();
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  if (ctx == nullptr) return OpenSslError("RC4 context allocation");
  Rc4 rc4(ctx);  // Owns ctx from here on, so every error path frees it.
  if (EVP_CipherInit_ex2(ctx, (*algs)->rc4, nullptr, nullptr, /*enc=*/1, nullptr) != 1 ||
      EVP_CIPHER_CTX_set_key_length(ctx, static_cast<int>(key.size())) != 1 ||
      EVP_CipherInit_ex2(ctx, nullptr, key.data(), nullptr, /*enc=*/1, nullptr) != 1) {
    return OpenSslError("RC4 key setup");
  }
  return rc4;
}

Rc4::Rc4(Rc4&& other) noexcept : ctx_(other.ctx_) { other.ctx_ = nullptr; }

Rc4& Rc4::operator=(Rc4&& other) noexcept {
  if (this != &other) {
    EVP_CIPHER_CTX_free(ctx_);
    ctx_ = other.ctx_;
    other.ctx_ = nullptr;
  }
  return *this;
}

Rc4::~Rc4() { EVP_CIPHER_CTX_free(ctx_); }

absl::Status Rc4::Apply(std::span<uint8_t> data) {
  if (ctx_ == nullptr) return absl::FailedPreconditionError("RC4 keystream was moved from");
  // EVP takes int lengths; NTLM messages are far smaller, but stay correct for any span.
  constexpr size_t kMaxChunkBytes = INT_MAX / 2;
  size_t done = 0;
  while (done < data.size()) {
    size_t chunk = std::min(kMaxChunkBytes, data.size() - done);
    int written = 0;
    if (EVP_CipherUpdate(ctx_, data.data() + done, &written, data.data() + done, static_cast<int>(chunk)) != 1 ||
        written != static_cast<int>(chunk)) {
      return OpenSslError("RC4");
    }
    done += chunk;
  }
  return absl::OkStatus();
}

absl::StatusOr<Bytes> Rc4Once(ByteView key, ByteView data) {
  absl::StatusOr<Rc4> rc4 = Rc4::Create(key);
  if (!rc4.ok()) return rc4.status();
  Bytes out(data.begin(), data.end());
  absl::Status applied = rc4->Apply(out);
  if (!applied.ok()) return applied;
  return out;
}

}  // namespace adcsc::ntlm
