#include "node/pki/bootstrap.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "node/pki/csr.h"
#include "node/pki/pkcs12.h"
#include "node/pki/x509.h"

namespace adcsc::pki {
namespace {

constexpr size_t kClientPasswordLength = 20;
constexpr int kMaxYears = 100;
constexpr size_t kMaxCommonNameLength = 64;  // ub-common-name, RFC 5280
constexpr int kDaysPerYear = 365;
constexpr mode_t kOutDirMode = 0700;
constexpr mode_t kPublicFileMode = 0644;

bool LooksLikeHostName(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '.' || c == '_' || c == '*' || c == ':';
    if (!ok) return false;
  }
  return true;
}

absl::Status ValidateOptions(const PkiInitOptions& o) {
  std::vector<std::string> problems;
  if (o.fqdn.empty()) {
    problems.push_back("--fqdn is required: the connector's DNS name as Jamf Pro reaches it");
  } else if (!LooksLikeHostName(o.fqdn)) {
    problems.push_back(absl::StrCat("--fqdn \"", o.fqdn, "\" is not a host name (letters, digits, '-', '.')"));
  } else if (o.fqdn.size() > kMaxCommonNameLength) {
    problems.push_back(absl::StrCat("--fqdn is longer than ", kMaxCommonNameLength,
                                    " characters, the limit for a certificate common name"));
  }
  if (o.jamf_pro_dn.empty()) {
    problems.push_back(
        "--jamf-pro-dn is required: the Jamf Pro host name for the client "
        "certificate");
  } else if (o.jamf_pro_dn.size() > kMaxCommonNameLength) {
    problems.push_back(absl::StrCat("--jamf-pro-dn is longer than ", kMaxCommonNameLength,
                                    " characters, the limit for a certificate common name"));
  }
  if (o.out_dir.empty()) problems.push_back("--out is required: the directory to write to");
  if (o.client_years < 1 || o.client_years > kMaxYears) {
    problems.push_back(absl::StrCat("--client-years ", o.client_years, " is out of range (1..", kMaxYears, ")"));
  }
  if (o.server_years < 1 || o.server_years > kMaxYears) {
    problems.push_back(absl::StrCat("--server-years ", o.server_years, " is out of range (1..", kMaxYears, ")"));
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrJoin(problems, "\n"));
}

absl::Status EnsureOutDir(const std::filesystem::path& dir) {
  std::error_code ec;
  const auto status = std::filesystem::status(dir, ec);
  if (std::filesystem::exists(status)) {
    if (!std::filesystem::is_directory(status)) {
      return absl::FailedPreconditionError(absl::StrCat(dir.string(), " exists and is not a directory"));
    }
    return absl::OkStatus();
  }
  const std::filesystem::path parent = dir.parent_path();
  if (!parent.empty()) {
    std::filesystem::create_directories(parent, ec);
    if (ec) {
      return absl::PermissionDeniedError(absl::StrCat("cannot create directory ", parent.string(), ": ", ec.message()));
    }
  }
  if (mkdir(dir.c_str(), kOutDirMode) != 0 && errno != EEXIST) {
    const int err = errno;
    return absl::PermissionDeniedError(absl::StrCat("cannot create directory ", dir.string(), ": ", strerror(err)));
  }
  if (chmod(dir.c_str(), kOutDirMode) != 0) {
    const int err = errno;
    return absl::PermissionDeniedError(absl::StrCat("cannot set mode 0700 on ", dir.string(), ": ", strerror(err)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<PkiInitResult> InitConnectorPki(const PkiInitOptions& options) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  const std::filesystem::path& dir = options.out_dir;
  const std::filesystem::path server_key_path = dir / kServerKeyFile;
  const std::filesystem::path server_der_path = dir / kServerCertDerFile;
  const std::filesystem::path server_pem_path = dir / kServerCertPemFile;
  const std::filesystem::path pfx_path = dir / kClientPfxFile;
  const std::filesystem::path client_pem_path = dir / kClientCertPemFile;
  const std::filesystem::path pin_path = dir / kClientPinFile;

  std::vector<std::filesystem::path> outputs = {server_key_path, server_der_path, server_pem_path,
                                                pfx_path,        client_pem_path, pin_path};
  if (!options.password_file.empty()) outputs.push_back(options.password_file);
  if (!options.force) {
    std::vector<std::string> existing;
    for (const auto& path : outputs) {
      std::error_code ec;
      if (std::filesystem::exists(std::filesystem::symlink_status(path, ec))) {
        existing.push_back(path.string());
      }
    }
    if (!existing.empty()) {
      return absl::AlreadyExistsError(absl::StrCat(
          "refusing to overwrite existing ", existing.size() == 1 ? "file " : "files ", absl::StrJoin(existing, ", "),
          "; move them away or pass --force to replace them (Jamf Pro must then get the new "
          "client-cert.pfx and adcs-proxy-ca.cer)"));
    }
  }
  if (absl::Status s = EnsureOutDir(dir); !s.ok()) return s;

  // Server identity: a self-signed CA certificate for the FQDN, also the TLS server cert.
  absl::StatusOr<EvpPkeyPtr> server_key = GenerateKey(options.key_type);
  if (!server_key.ok()) return server_key.status();
  SelfSignedCaOptions server_options;
  server_options.common_name = options.fqdn;
  server_options.san_dns = {options.fqdn};
  server_options.years = options.server_years;
  server_options.ekus = {std::string(kEkuServerAuth), std::string(kEkuClientAuth)};
  absl::StatusOr<X509Ptr> server_cert = MakeSelfSignedCa(server_key->get(), server_options);
  if (!server_cert.ok()) return server_cert.status();

  // Client identity for Jamf Pro, signed by the server identity.
  absl::StatusOr<EvpPkeyPtr> client_key = GenerateKey(options.key_type);
  if (!client_key.ok()) return client_key.status();
  std::vector<std::string> client_sans;
  if (LooksLikeHostName(options.jamf_pro_dn)) client_sans.push_back(options.jamf_pro_dn);
  absl::StatusOr<Bytes> client_csr = MakeCsr(client_key->get(), options.jamf_pro_dn, client_sans);
  if (!client_csr.ok()) return client_csr.status();
  absl::StatusOr<ParsedCsr> parsed = ParseVerifiedCsr(*client_csr);
  if (!parsed.ok()) return parsed.status();
  IssueOptions client_options;
  client_options.validity_days = options.client_years * kDaysPerYear + options.client_years / 4;
  client_options.ekus = {std::string(kEkuClientAuth)};
  absl::StatusOr<X509Ptr> client_cert =
      IssueCertificate(server_cert->get(), server_key->get(), parsed->request.get(), client_options);
  if (!client_cert.ok()) return client_cert.status();

  absl::StatusOr<std::string> password = RandomPassword(kClientPasswordLength);
  if (!password.ok()) return password.status();
  absl::StatusOr<Bytes> pfx =
      ExportPkcs12(client_key->get(), client_cert->get(), {server_cert->get()}, *password, options.jamf_pro_dn);
  if (!pfx.ok()) return pfx.status();

  absl::StatusOr<std::string> server_key_pem = PrivateKeyToPem(server_key->get());
  if (!server_key_pem.ok()) return server_key_pem.status();
  absl::StatusOr<Bytes> server_der = CertToDer(server_cert->get());
  if (!server_der.ok()) return server_der.status();
  absl::StatusOr<std::string> server_pem = CertToPem(server_cert->get());
  if (!server_pem.ok()) return server_pem.status();
  absl::StatusOr<std::string> client_pem = CertToPem(client_cert->get());
  if (!client_pem.ok()) return client_pem.status();

  PkiInitResult result;
  result.client_pin = CertSha256Hex(client_cert->get());
  result.server_pin = CertSha256Hex(server_cert->get());
  result.client_password = *password;

  const bool overwrite = options.force;
  auto write = [&](const std::filesystem::path& path, std::string_view data, mode_t mode) -> absl::Status {
    absl::Status s = WriteFileAtomic(path, data, mode, overwrite);
    if (s.ok()) result.files.push_back(path);
    return s;
  };
  absl::Status s = write(server_key_path, *server_key_pem, 0600);
  OPENSSL_cleanse(server_key_pem->data(), server_key_pem->size());
  if (!s.ok()) return s;
  if (s = write(server_der_path, AsChars(*server_der), kPublicFileMode); !s.ok()) return s;
  if (s = write(server_pem_path, *server_pem, kPublicFileMode); !s.ok()) return s;
  if (s = write(pfx_path, AsChars(*pfx), 0600); !s.ok()) return s;
  if (s = write(client_pem_path, *client_pem, kPublicFileMode); !s.ok()) return s;
  if (s = write(pin_path, absl::StrCat(result.client_pin, "\n"), kPublicFileMode); !s.ok()) {
    return s;
  }
  if (!options.password_file.empty()) {
    std::string line = absl::StrCat(*password, "\n");
    s = write(options.password_file, line, 0600);
    OPENSSL_cleanse(line.data(), line.size());
    if (!s.ok()) return s;
  }
  OPENSSL_cleanse(password->data(), password->size());
  return result;
}

}  // namespace adcsc::pki
