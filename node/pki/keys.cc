#include "node/pki/keys.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "node/pki/absl_view.h"

namespace adcsc::pki {
namespace {

constexpr size_t kSha256HexLength = 64;

std::string ErrnoText(int err) { return absl::StrCat(strerror(err), " (errno ", err, ")"); }

// PEM password callback that refuses: we never prompt on a terminal, and encrypted keys are
// not supported.
int RefusePassword(char*, int, int, void*) { return -1; }

// Closes a file descriptor on scope exit unless released.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) close(fd_);
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

bool IsHexDigit(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

}  // namespace

std::string_view KeyTypeName(KeyType type) {
  switch (type) {
    case KeyType::kRsa2048:
      return "rsa2048";
    case KeyType::kRsa3072:
      return "rsa3072";
    case KeyType::kEcP256:
      return "p256";
    case KeyType::kEcP384:
      return "p384";
  }
  return "unknown";
}

absl::StatusOr<KeyType> ParseKeyType(std::string_view text) {
  const std::string t = absl::AsciiStrToLower(absl::StripAsciiWhitespace(AbslView(text)));
  if (t == "p256" || t == "p-256" || t == "ec-p256" || t == "ecp256" || t == "prime256v1" || t == "secp256r1") {
    return KeyType::kEcP256;
  }
  if (t == "p384" || t == "p-384" || t == "ec-p384" || t == "ecp384" || t == "secp384r1") {
    return KeyType::kEcP384;
  }
  if (t == "rsa2048" || t == "rsa-2048" || t == "rsa") return KeyType::kRsa2048;
  if (t == "rsa3072" || t == "rsa-3072") return KeyType::kRsa3072;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown key type \"", AbslView(text), "\"; use one of p256, p384, rsa2048, rsa3072"));
}

absl::StatusOr<EvpPkeyPtr> GenerateKey(KeyType type) {
  EVP_PKEY* key = nullptr;
  switch (type) {
    case KeyType::kRsa2048:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048));
      break;
    case KeyType::kRsa3072:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(3072));
      break;
    case KeyType::kEcP256:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
      break;
    case KeyType::kEcP384:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384");
      break;
  }
  if (key == nullptr) {
    return absl::InternalError(
        OpenSslFailure(absl::StrCat("generating a ", AbslView(KeyTypeName(type)), " key failed")));
  }
  return EvpPkeyPtr(key);
}

std::string KeyAlgorithmName(const EVP_PKEY* key) {
  if (key == nullptr) return "none";
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS:
      return "RSA";
    case EVP_PKEY_EC:
      return "EC";
    case EVP_PKEY_ED25519:
      return "ED25519";
    case EVP_PKEY_ED448:
      return "ED448";
    case EVP_PKEY_DSA:
      return "DSA";
    default:
      break;
  }
  const char* name = EVP_PKEY_get0_type_name(key);
  return name != nullptr ? std::string(name) : std::string("unknown");
}

absl::StatusOr<std::string> PrivateKeyToPem(EVP_PKEY* key) {
  if (key == nullptr) return absl::InvalidArgumentError("PrivateKeyToPem: no key");
  // A secure-memory BIO: the buffer is cleansed when freed.
  BioPtr bio(BIO_new(BIO_s_secmem()));
  if (bio == nullptr) return absl::InternalError(OpenSslFailure("BIO_new"));
  if (PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return absl::InternalError(OpenSslFailure("encoding the private key as PEM failed"));
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

absl::StatusOr<EvpPkeyPtr> PrivateKeyFromPem(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (bio == nullptr) return absl::InternalError(OpenSslFailure("BIO_new_mem_buf"));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, RefusePassword, nullptr);
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        OpenSslFailure("cannot read the PEM private key (expected an unencrypted \"PRIVATE KEY\", \"RSA "
                       "PRIVATE KEY\" or \"EC PRIVATE KEY\" block)"));
  }
  return EvpPkeyPtr(key);
}

absl::StatusOr<std::string> ReadFileToString(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot open ", path.string(), ": ", ErrnoText(errno)));
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) {
    return absl::DataLossError(absl::StrCat("cannot read ", path.string(), ": ", ErrnoText(errno)));
  }
  return std::move(buffer).str();
}

absl::StatusOr<EvpPkeyPtr> ReadPrivateKeyFile(const std::filesystem::path& path, bool require_private_mode) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    const int err = errno;
    return absl::NotFoundError(absl::StrCat("cannot read private key file ", path.string(), ": ", ErrnoText(err)));
  }
  if (require_private_mode && (st.st_mode & 077) != 0) {
    return absl::PermissionDeniedError(
        absl::StrFormat("private key file %s is accessible by group or others (mode %04o); run: chmod 600 %s",
                        path.string(), st.st_mode & 07777, path.string()));
  }
  absl::StatusOr<std::string> pem = ReadFileToString(path);
  if (!pem.ok()) return pem.status();
  absl::StatusOr<EvpPkeyPtr> key = PrivateKeyFromPem(*pem);
  OPENSSL_cleanse(pem->data(), pem->size());
  if (!key.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": ", key.status().message()));
  }
  return key;
}

absl::Status WriteFileAtomic(const std::filesystem::path& path, std::string_view data, mode_t mode, bool overwrite) {
  if (path.empty() || !path.has_filename()) {
    return absl::InvalidArgumentError(absl::StrCat("not a file path: \"", path.string(), "\""));
  }
  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  absl::StatusOr<Bytes> suffix = SecureRandomBytes(8);
  if (!suffix.ok()) return suffix.status();
  const std::filesystem::path tmp = dir / absl::StrCat(".", path.filename().string(), ".tmp-", HexLower(*suffix));

  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) {
    const int err = errno;
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create a file in ", dir.string(), " (for ", path.string(), "): ", ErrnoText(err)));
  }
  FdCloser closer(fd);
  auto fail = [&](std::string_view what, int err) {
    close(closer.Release());
    unlink(tmp.c_str());
    return absl::InternalError(
        absl::StrCat(AbslView(what), " ", tmp.string(), " (for ", path.string(), "): ", ErrnoText(err)));
  };
  // The umask may have removed bits from `mode`; set exactly what was asked.
  if (fchmod(fd, mode) != 0) return fail("cannot set the mode of", errno);
  size_t written = 0;
  while (written < data.size()) {
    const ssize_t n = write(fd, data.data() + written, data.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("cannot write", errno);
    }
    written += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0) return fail("cannot fsync", errno);
  if (close(closer.Release()) != 0) {
    const int err = errno;
    unlink(tmp.c_str());
    return absl::InternalError(absl::StrCat("cannot close ", tmp.string(), ": ", ErrnoText(err)));
  }

  if (overwrite) {
    if (rename(tmp.c_str(), path.c_str()) != 0) {
      const int err = errno;
      unlink(tmp.c_str());
      return absl::InternalError(
          absl::StrCat("cannot move ", tmp.string(), " to ", path.string(), ": ", ErrnoText(err)));
    }
  } else {
    // Never replace an existing file: renameat2(RENAME_NOREPLACE), or link(2) where the
    // filesystem does not support that flag. Both fail with EEXIST atomically.
    int rc = renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE);
    int err = rc == 0 ? 0 : errno;
    if (rc != 0 && (err == EINVAL || err == ENOSYS)) {
      rc = link(tmp.c_str(), path.c_str());
      err = rc == 0 ? 0 : errno;
      unlink(tmp.c_str());
    }
    if (rc != 0) {
      unlink(tmp.c_str());
      if (err == EEXIST) {
        return absl::AlreadyExistsError(
            absl::StrCat("refusing to overwrite existing file ", path.string(), " (remove it or use force)"));
      }
      return absl::InternalError(
          absl::StrCat("cannot move ", tmp.string(), " to ", path.string(), ": ", ErrnoText(err)));
    }
  }
  // Make the new directory entry durable; best effort (some filesystems refuse).
  int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    fsync(dir_fd);
    close(dir_fd);
  }
  return absl::OkStatus();
}

absl::Status WritePrivateFile(const std::filesystem::path& path, std::string_view data, bool overwrite) {
  return WriteFileAtomic(path, data, 0600, overwrite);
}

std::string CertSha256Hex(X509* cert) {
  if (cert == nullptr) return "";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(cert, EVP_sha256(), md, &len) != 1) return "";
  return HexLower(ByteView(md, len));
}

absl::StatusOr<std::string> NormalizePin(std::string_view pin) {
  std::string_view p = StdView(absl::StripAsciiWhitespace(AbslView(pin)));
  for (std::string_view prefix : {"sha256 fingerprint=", "sha256:", "sha256="}) {
    if (absl::StartsWithIgnoreCase(AbslView(p), AbslView(prefix))) {
      p.remove_prefix(prefix.size());
      p = StdView(absl::StripAsciiWhitespace(AbslView(p)));
      break;
    }
  }
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid certificate pin \"", AbslView(pin), "\": ", AbslView(why),
                     "; expected the SHA-256 fingerprint as 64 hex digits, optionally as 32 colon-separated "
                     "pairs (AB:CD:...)"));
  };
  std::string out;
  out.reserve(kSha256HexLength);
  const bool colons = p.find(':') != std::string_view::npos;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (colons && i % 3 == 2) {
      if (c != ':') return bad(absl::StrFormat("expected ':' at position %d", i + 1));
      continue;
    }
    if (!IsHexDigit(c)) {
      return bad(absl::StrFormat("character '%c' at position %d is not a hex digit", c, i + 1));
    }
    out += absl::ascii_tolower(static_cast<unsigned char>(c));
  }
  if (colons && !p.empty() && p.back() == ':') return bad("trailing ':'");
  if (out.size() != kSha256HexLength) {
    return bad(absl::StrFormat("it has %d hex digits, not 64", out.size()));
  }
  return out;
}

}  // namespace adcsc::pki
