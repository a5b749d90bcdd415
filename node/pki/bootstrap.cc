#include "node/pki/bootstrap.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <string.h>
#include <sys/stat.h>

#include <ctime>
#include <system_error>

#include "absl/strings/match.h"
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
constexpr int kMaxOverlapDays = 365;
constexpr int64_t kSecondsPerDay = 86'400;

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

// Fails naming every path of `paths` that exists (nothing has been written yet).
absl::Status RefuseExisting(const std::vector<std::filesystem::path>& paths, const std::string& hint) {
  std::vector<std::string> existing;
  for (const auto& path : paths) {
    std::error_code ec;
    if (std::filesystem::exists(std::filesystem::symlink_status(path, ec))) existing.push_back(path.string());
  }
  if (existing.empty()) return absl::OkStatus();
  return absl::AlreadyExistsError(absl::StrCat("refusing to overwrite existing ",
                                               existing.size() == 1 ? "file " : "files ", absl::StrJoin(existing, ", "),
                                               hint));
}

std::string CommonNameOf(X509* cert) {
  X509_NAME* name = X509_get_subject_name(cert);
  const int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (idx < 0) return "";
  unsigned char* utf8 = nullptr;
  const int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx)));
  if (len < 0) return "";
  std::string cn(reinterpret_cast<char*>(utf8), static_cast<size_t>(len));
  OPENSSL_free(utf8);
  return cn;
}

absl::StatusOr<X509Ptr> ReadCertFile(const std::filesystem::path& path) {
  absl::StatusOr<std::string> pem = ReadFileToString(path);
  if (!pem.ok()) return pem.status();
  absl::StatusOr<X509Ptr> cert = CertFromPem(*pem);
  if (!cert.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path.string(), ": not a PEM certificate (", cert.status().message(), ")"));
  }
  return cert;
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

absl::StatusOr<PkiRotateResult> RotateConnectorPki(const PkiRotateOptions& o) {
  std::vector<std::string> problems;
  if (o.from_dir.empty()) problems.push_back("--from is required: the directory `adcsc pki init` wrote");
  if (o.out_dir.empty()) problems.push_back("--out is required: a new directory for the new identities");
  if (!o.from_dir.empty() && !o.out_dir.empty() &&
      std::filesystem::weakly_canonical(o.from_dir) == std::filesystem::weakly_canonical(o.out_dir)) {
    problems.push_back("--out must differ from --from: the nodes keep using the old files until they reload");
  }
  if (o.client_years < 1 || o.client_years > kMaxYears) {
    problems.push_back(absl::StrCat("--client-years ", o.client_years, " is out of range (1..", kMaxYears, ")"));
  }
  if (o.server_years < 1 || o.server_years > kMaxYears) {
    problems.push_back(absl::StrCat("--server-years ", o.server_years, " is out of range (1..", kMaxYears, ")"));
  }
  if (o.overlap_days < 1 || o.overlap_days > kMaxOverlapDays) {
    problems.push_back(absl::StrCat("--overlap-days ", o.overlap_days, " is out of range (1..", kMaxOverlapDays, ")"));
  }
  if (o.jamf_pro_dn.size() > kMaxCommonNameLength) {
    problems.push_back(absl::StrCat("--jamf-pro-dn is longer than ", kMaxCommonNameLength,
                                    " characters, the limit for a certificate common name"));
  }
  if (!problems.empty()) return absl::InvalidArgumentError(absl::StrJoin(problems, "\n"));

  // The old identities.
  absl::StatusOr<EvpPkeyPtr> old_key = ReadPrivateKeyFile(o.from_dir / kServerKeyFile);
  if (!old_key.ok()) return old_key.status();
  absl::StatusOr<X509Ptr> old_server = ReadCertFile(o.from_dir / kServerCertPemFile);
  if (!old_server.ok()) return old_server.status();
  absl::StatusOr<X509Ptr> old_client = ReadCertFile(o.from_dir / kClientCertPemFile);
  if (!old_client.ok()) return old_client.status();
  const std::string fqdn = CommonNameOf(old_server->get());
  if (X509_check_private_key(old_server->get(), old_key->get()) != 1 || fqdn.empty() ||
      X509_NAME_entry_count(X509_get_subject_name(old_server->get())) != 1 ||
      X509_NAME_cmp(X509_get_subject_name(old_server->get()), X509_get_issuer_name(old_server->get())) != 0 ||
      X509_verify(old_server->get(), old_key->get()) != 1) {
    ERR_clear_error();
    return absl::FailedPreconditionError(
        absl::StrCat((o.from_dir / kServerCertPemFile).string(),
                     " is not a server identity `adcsc pki init` made (self-signed, CN "
                     "only, for ",
                     (o.from_dir / kServerKeyFile).string(),
                     "); renew a server certificate from your own CA there, "
                     "and make a client identity with `adcsc pki init` into a new directory"));
  }
  std::vector<std::string> sans;
  for (const std::string& san : SubjectAltNames(old_server->get())) {
    if (absl::StartsWith(san, "DNS:") || absl::StartsWith(san, "IP:")) {
      sans.push_back(san.substr(san.find(':') + 1));
    } else {
      return absl::FailedPreconditionError(
          absl::StrCat((o.from_dir / kServerCertPemFile).string(), ": a subjectAltName adcsc cannot renew: ", san));
    }
  }
  const std::string jamf_pro_dn = o.jamf_pro_dn.empty() ? CommonNameOf(old_client->get()) : o.jamf_pro_dn;
  if (jamf_pro_dn.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat((o.from_dir / kClientCertPemFile).string(), " has no common name: pass --jamf-pro-dn"));
  }

  const std::filesystem::path& dir = o.out_dir;
  std::vector<std::filesystem::path> outputs = {
      dir / kServerKeyFile, dir / kServerCertDerFile, dir / kServerCertPemFile, dir / kClientCaBundleFile,
      dir / kClientPfxFile, dir / kClientCertPemFile, dir / kClientPinFile,     dir / kRotationSnippetFile};
  if (!o.password_file.empty()) outputs.push_back(o.password_file);
  if (absl::Status s = RefuseExisting(outputs, " (`pki rotate` never overwrites: choose a new --out)"); !s.ok()) {
    return s;
  }
  if (absl::Status s = EnsureOutDir(dir); !s.ok()) return s;

  // The server identity: renewed on the same key unless asked otherwise.
  EvpPkeyPtr server_key = std::move(*old_key);
  if (o.new_server_key) {
    absl::StatusOr<EvpPkeyPtr> fresh = GenerateKey(o.key_type);
    if (!fresh.ok()) return fresh.status();
    server_key = std::move(*fresh);
  }
  SelfSignedCaOptions server_options;
  server_options.common_name = fqdn;
  server_options.san_dns = sans;
  server_options.years = o.server_years;
  server_options.ekus = ExtendedKeyUsages(old_server->get());
  server_options.now_unix_seconds = o.now_unix_seconds;
  absl::StatusOr<X509Ptr> server_cert = MakeSelfSignedCa(server_key.get(), server_options);
  if (!server_cert.ok()) return server_cert.status();

  // The new client identity, signed by the new server certificate.
  absl::StatusOr<EvpPkeyPtr> client_key = GenerateKey(o.key_type);
  if (!client_key.ok()) return client_key.status();
  std::vector<std::string> client_sans;
  if (LooksLikeHostName(jamf_pro_dn)) client_sans.push_back(jamf_pro_dn);
  absl::StatusOr<Bytes> client_csr = MakeCsr(client_key->get(), jamf_pro_dn, client_sans);
  if (!client_csr.ok()) return client_csr.status();
  absl::StatusOr<ParsedCsr> parsed = ParseVerifiedCsr(*client_csr);
  if (!parsed.ok()) return parsed.status();
  IssueOptions client_options;
  client_options.validity_days = o.client_years * kDaysPerYear + o.client_years / 4;
  client_options.ekus = {std::string(kEkuClientAuth)};
  client_options.now_unix_seconds = o.now_unix_seconds;
  absl::StatusOr<X509Ptr> client_cert =
      IssueCertificate(server_cert->get(), server_key.get(), parsed->request.get(), client_options);
  if (!client_cert.ok()) return client_cert.status();

  absl::StatusOr<std::string> password = RandomPassword(kClientPasswordLength);
  if (!password.ok()) return password.status();
  absl::StatusOr<Bytes> pfx =
      ExportPkcs12(client_key->get(), client_cert->get(), {server_cert->get()}, *password, jamf_pro_dn);
  if (!pfx.ok()) return pfx.status();
  absl::StatusOr<std::string> server_key_pem = PrivateKeyToPem(server_key.get());
  if (!server_key_pem.ok()) return server_key_pem.status();
  absl::StatusOr<Bytes> server_der = CertToDer(server_cert->get());
  if (!server_der.ok()) return server_der.status();
  absl::StatusOr<std::string> server_pem = CertToPem(server_cert->get());
  if (!server_pem.ok()) return server_pem.status();
  absl::StatusOr<std::string> old_server_pem = CertToPem(old_server->get());
  if (!old_server_pem.ok()) return old_server_pem.status();
  absl::StatusOr<std::string> client_pem = CertToPem(client_cert->get());
  if (!client_pem.ok()) return client_pem.status();

  PkiRotateResult result;
  result.old_client_pin = CertSha256Hex(old_client->get());
  result.client_pin = CertSha256Hex(client_cert->get());
  result.client_password = *password;
  result.server_key_kept = !o.new_server_key;
  // The old pin is mapped to the midnight (UTC) at least overlap_days from now.
  const int64_t now = o.now_unix_seconds.value_or(static_cast<int64_t>(std::time(nullptr)));
  result.overlap_until_unix = (now / kSecondsPerDay + o.overlap_days + 1) * kSecondsPerDay;
  result.overlap_until = UtcDateTime(result.overlap_until_unix);
  // Absolute paths: a node resolves relative ones against its configuration file's directory.
  std::error_code ec;
  const std::filesystem::path abs_dir = std::filesystem::absolute(dir, ec).lexically_normal();
  const std::string server_cert_line = absl::StrCat("cert_file = \"", (abs_dir / kServerCertPemFile).string(), "\"\n");
  const std::string server_key_line = absl::StrCat("key_file = \"", (abs_dir / kServerKeyFile).string(), "\"\n");
  result.snippet = absl::StrCat(
      "# adcsc pki rotate: set these in the [api] section of every node, then `adcsc ctl reload`.\n[api]\n",
      o.new_server_key
          ? absl::StrCat("# A new server key: keep cert_file/key_file as they are until Jamf Pro has the new\n"
                         "# adcs-proxy-ca.cer, then right after that upload, on every node:\n# ",
                         server_cert_line, "# ", server_key_line)
          : absl::StrCat(server_cert_line, server_key_line),
      "client_ca_file = \"", (abs_dir / kClientCaBundleFile).string(), "\"\n", "client_pins = [\n", "  { pin = \"",
      result.old_client_pin, "\", until = ", result.overlap_until, " },  # the old client identity\n", "  \"",
      result.client_pin, "\",  # the new one: ", (abs_dir / kClientPfxFile).string(), "\n]\n");

  auto write = [&](const std::filesystem::path& path, std::string_view data, mode_t mode) -> absl::Status {
    absl::Status s = WriteFileAtomic(path, data, mode, /*overwrite=*/false);
    if (s.ok()) result.files.push_back(path);
    return s;
  };
  absl::Status s = write(dir / kServerKeyFile, *server_key_pem, 0600);
  OPENSSL_cleanse(server_key_pem->data(), server_key_pem->size());
  if (!s.ok()) return s;
  if (s = write(dir / kServerCertDerFile, AsChars(*server_der), kPublicFileMode); !s.ok()) return s;
  if (s = write(dir / kServerCertPemFile, *server_pem, kPublicFileMode); !s.ok()) return s;
  if (s = write(dir / kClientCaBundleFile, *server_pem + *old_server_pem, kPublicFileMode); !s.ok()) return s;
  if (s = write(dir / kClientPfxFile, AsChars(*pfx), 0600); !s.ok()) return s;
  if (s = write(dir / kClientCertPemFile, *client_pem, kPublicFileMode); !s.ok()) return s;
  if (s = write(dir / kClientPinFile, absl::StrCat(result.client_pin, "\n"), kPublicFileMode); !s.ok()) return s;
  if (s = write(dir / kRotationSnippetFile, result.snippet, kPublicFileMode); !s.ok()) return s;
  if (!o.password_file.empty()) {
    std::string line = absl::StrCat(*password, "\n");
    s = write(o.password_file, line, 0600);
    OPENSSL_cleanse(line.data(), line.size());
    if (!s.ok()) return s;
  }
  OPENSSL_cleanse(password->data(), password->size());
  return result;
}

}  // namespace adcsc::pki
