#include "node/app/backend_factory.h"

#include <stdlib.h>

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "node/ca/icpr_backend.h"
#include "node/ca/local_ca.h"

namespace adcsc::node {
namespace {

absl::StatusOr<std::string> FirstLine(const std::filesystem::path& path, std::string_view key) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) {
    return absl::NotFoundError(absl::StrCat(path.string(), ": ", std::string(key), ": cannot read the first line"));
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

}  // namespace

absl::StatusOr<std::shared_ptr<adcsc::ca::IcprAuthenticator>> MakeIcprAuthenticator(const Config& config) {
  const IcprConfig& icpr = config.ca.icpr;
  using adcsc::ca::IcprAuthMode;
  adcsc::ca::IcprAuthOptions o;
  o.mode = icpr.auth == "kerberos"    ? IcprAuthMode::kKerberos
           : icpr.auth == "negotiate" ? IcprAuthMode::kNegotiate
                                      : IcprAuthMode::kNtlm;
  if (!icpr.password_file.empty() || !icpr.nt_hash_file.empty()) {
    auto ntlm = LoadIcprCredentials(config);
    if (!ntlm.ok()) return ntlm.status();
    // Kerberos-only keeps no NTLM secret in memory.
    if (o.mode != IcprAuthMode::kKerberos) o.ntlm = *std::move(ntlm);
  }
  if (o.mode != IcprAuthMode::kNtlm) {
    if (!icpr.krb5_conf.empty()) ::setenv("KRB5_CONFIG", icpr.krb5_conf.c_str(), 1);
    const std::string& identity = config.ca.identity;
    const std::string account = identity.substr(identity.find('\\') + 1);
    if (!icpr.keytab.empty()) {
      o.kerberos = gss::CredentialSource::Keytab(icpr.kerberos_principal, icpr.keytab.string());
    } else if (!icpr.ccache.empty()) {
      o.kerberos = gss::CredentialSource::Ccache(icpr.ccache);
    } else {
      auto password = gss::ReadPasswordFile(icpr.password_file);
      if (!password.ok()) {
        return absl::Status(password.status().code(),
                            absl::StrCat("ca.icpr.password_file: ", password.status().message()));
      }
      o.kerberos = gss::CredentialSource::Password(icpr.kerberos_principal.empty() ? account : icpr.kerberos_principal,
                                                   *std::move(password));
    }
    o.kerberos_options.renew_margin = icpr.ticket_renew_margin;
    o.mech = icpr.kerberos_mechanism == "krb5" ? gss::Mech::kKerberos : gss::Mech::kSpnego;
    o.spn = icpr.spn;
  }
  return adcsc::ca::IcprAuthenticator::Create(std::move(o));
}

absl::StatusOr<ntlm::Credentials> LoadIcprCredentials(const Config& config) {
  ntlm::Credentials c;
  const std::string& identity = config.ca.identity;
  const size_t slash = identity.find('\\');
  if (slash == std::string::npos)
    return absl::InvalidArgumentError("ca.identity must be DOMAIN\\user for backend \"icpr\"");
  c.domain = identity.substr(0, slash);
  c.user = identity.substr(slash + 1);
  c.workstation = config.ca.icpr.workstation;
  if (c.workstation.empty()) c.workstation = absl::AsciiStrToUpper(config.node_id.substr(0, 15));
  const IcprConfig& icpr = config.ca.icpr;
  if (!icpr.nt_hash_file.empty()) {
    auto line = FirstLine(icpr.nt_hash_file, "ca.icpr.nt_hash_file");
    if (!line.ok()) return line.status();
    auto hash = ntlm::ParseNtHashHex(*line);
    if (!hash.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(icpr.nt_hash_file.string(), ": ca.icpr.nt_hash_file: ", hash.status().message()));
    }
    c.nt_hash = *hash;
  } else {
    auto line = FirstLine(icpr.password_file, "ca.icpr.password_file");
    if (!line.ok()) return line.status();
    auto hash = ntlm::NtHash(*line);
    if (!hash.ok()) return hash.status();
    c.nt_hash = *hash;
  }
  return c;
}

absl::StatusOr<std::unique_ptr<adcsc::ca::CaBackend>> MakeCaBackend(const Config& config) {
  if (config.ca.backend == "icpr") {
    auto auth = MakeIcprAuthenticator(config);
    if (!auth.ok()) return auth.status();
    adcsc::ca::IcprBackendOptions o;
    o.auth = *std::move(auth);
    o.epm_port = config.ca.icpr.epm_port;
    o.connect_timeout = config.ca.icpr.connect_timeout;
    o.call_timeout = config.ca.icpr.call_timeout;
    o.max_idle_connections = static_cast<size_t>(config.ca.icpr.max_idle_connections);
    return std::unique_ptr<adcsc::ca::CaBackend>(std::make_unique<adcsc::ca::IcprBackend>(std::move(o)));
  }
  auto local = adcsc::ca::LocalCa::Open(config.ca.local);
  if (!local.ok()) return local.status();
  return std::unique_ptr<adcsc::ca::CaBackend>(std::move(*local));
}

}  // namespace adcsc::node
