// NTLM, Kerberos and negotiate for the connections to ADCS; see icpr_auth.h.
#include "node/ca/icpr_auth.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace adcsc::ca {

std::string_view IcprAuthModeName(IcprAuthMode mode) {
  switch (mode) {
    case IcprAuthMode::kNtlm:
      return "ntlm";
    case IcprAuthMode::kKerberos:
      return "kerberos";
    case IcprAuthMode::kNegotiate:
      return "negotiate";
  }
  return "unknown";
}

absl::StatusOr<std::shared_ptr<IcprAuthenticator>> IcprAuthenticator::Create(IcprAuthOptions options) {
  if (options.mode == IcprAuthMode::kNtlm && !options.ntlm) {
    return absl::InvalidArgumentError("auth \"ntlm\" needs the service account's NTLM credentials");
  }
  if (options.mode != IcprAuthMode::kNtlm && !options.kerberos) {
    return absl::InvalidArgumentError(
        absl::StrCat("auth \"", std::string(IcprAuthModeName(options.mode)),
                     "\" needs Kerberos credentials (a keytab, password file or ccache)"));
  }
  if (options.spn.empty()) return absl::InvalidArgumentError("the CA's SPN template is empty");
  return std::shared_ptr<IcprAuthenticator>(new IcprAuthenticator(std::move(options)));
}

std::string IcprAuthenticator::SpnFor(const std::string& host) const {
  return absl::StrReplaceAll(options_.spn, {{"{host}", absl::AsciiStrToLower(host)}});
}

std::string IcprAuthenticator::Describe(const std::string& host) const {
  std::string kerberos;
  if (options_.kerberos) {
    std::string who = options_.kerberos->principal;
    {
      absl::MutexLock lock(&mu_);
      if (credentials_) who = credentials_->principal();
    }
    if (who.empty()) who = "the keytab's first principal";
    kerberos = absl::StrCat("kerberos (", std::string(gss::MechName(options_.mech)), ") as ", who, " to ",
                            host.empty() ? options_.spn : SpnFor(host));
  }
  const std::string ntlm =
      options_.ntlm ? absl::StrCat("ntlm as ", options_.ntlm->domain, "\\", options_.ntlm->user) : "";
  switch (options_.mode) {
    case IcprAuthMode::kNtlm:
      return ntlm;
    case IcprAuthMode::kKerberos:
      return kerberos;
    case IcprAuthMode::kNegotiate:
      return absl::StrCat("negotiate: ", kerberos,
                          options_.ntlm ? absl::StrCat("; else ", ntlm) : "; NTLM not allowed (no NTLM secret)");
  }
  return "";
}

IcprAuthStats IcprAuthenticator::stats() const {
  IcprAuthStats s;
  {
    absl::MutexLock lock(&mu_);
    s.last_mechanism = last_mechanism_;
  }
  s.kerberos_binds = kerberos_binds_.load();
  s.ntlm_binds = ntlm_binds_.load();
  s.ntlm_fallbacks = ntlm_fallbacks_.load();
  s.credential_renewals = renewals_.load();
  absl::MutexLock lock(&mu_);
  if (credentials_) {
    s.ticket_expiry_unix =
        std::chrono::duration_cast<std::chrono::seconds>(credentials_->expiry().time_since_epoch()).count();
  }
  return s;
}

absl::StatusOr<std::shared_ptr<gss::Credentials>> IcprAuthenticator::KerberosCredentials() {
  absl::MutexLock lock(&mu_);
  if (!credentials_) {
    auto acquired = gss::Credentials::Acquire(*options_.kerberos, options_.kerberos_options);
    if (!acquired.ok()) return acquired.status();
    credentials_ = *std::move(acquired);
    return credentials_;
  }
  if (credentials_->NeedsRenewal()) {
    const uint64_t before = credentials_->generation();
    absl::Status renewed = credentials_->RenewIfExpiring();
    if (credentials_->generation() != before) renewals_++;
    // A failed renewal keeps the current ticket while it lasts; past its end it is an error.
    // (On the credentials' own clock: expiry() was computed on it.)
    if (!renewed.ok() && credentials_->Expired()) return renewed;
  }
  return credentials_;
}

void IcprAuthenticator::RenewIfDue() {
  if (options_.mode == IcprAuthMode::kNtlm) return;
  {
    absl::MutexLock lock(&mu_);
    if (!credentials_ || !credentials_->NeedsRenewal()) return;
  }
  (void)KerberosCredentials();  // renews; a failure shows at the next bind that needs a ticket
}

void IcprAuthenticator::Used(const rpc::ClientConnection& connection) {
  const std::string mechanism = connection.mechanism();
  (mechanism == "ntlm" ? ntlm_binds_ : kerberos_binds_)++;
  absl::MutexLock lock(&mu_);
  last_mechanism_ = mechanism;
}

absl::StatusOr<std::unique_ptr<rpc::ClientConnection>> IcprAuthenticator::ConnectKerberos(
    const rpc::ClientOptions& base, const std::vector<rpc::SyntaxId>& interfaces, uint8_t level) {
  auto credentials = KerberosCredentials();
  if (!credentials.ok()) {
    // Nothing reached the CA: negotiate may fall back, as for a failed first leg.
    return rpc::MarkAuthNotStarted(
        absl::Status(credentials.status().code(),
                     absl::StrCat("Kerberos credentials for ", base.host, ": ", credentials.status().message())));
  }
  rpc::ClientOptions o = base;
  rpc::ClientAuth auth;
  auth.level = level;
  const std::string spn = SpnFor(base.host);
  gss::TargetName target;
  if (spn.find('@') != std::string::npos) {
    target = gss::TargetName::Principal(spn);
  } else {
    const size_t slash = spn.find('/');
    target = slash == std::string::npos
                 ? gss::TargetName::Host(spn)
                 : gss::TargetName{gss::TargetName::Type::kHostBasedService,
                                   absl::StrCat(spn.substr(0, slash), "@", spn.substr(slash + 1))};
  }
  auth.kerberos = rpc::KerberosAuth{*credentials, std::move(target), options_.mech};
  o.auth = std::move(auth);
  return rpc::ClientConnection::Connect(o, interfaces);
}

absl::StatusOr<std::unique_ptr<rpc::ClientConnection>> IcprAuthenticator::ConnectNtlm(
    const rpc::ClientOptions& base, const std::vector<rpc::SyntaxId>& interfaces, uint8_t level) {
  rpc::ClientOptions o = base;
  rpc::ClientAuth auth;
  auth.credentials = *options_.ntlm;
  auth.level = level;
  // The SPN goes into NTLM's target info (MsvAvTargetName): a response relayed to another
  // service does not verify there.
  auth.target_spn = SpnFor(base.host);
  o.auth = std::move(auth);
  return rpc::ClientConnection::Connect(o, interfaces);
}

absl::StatusOr<std::unique_ptr<rpc::ClientConnection>> IcprAuthenticator::Connect(rpc::ClientOptions base,
                                                                                  const rpc::SyntaxId& interface) {
  return Connect(std::move(base), std::vector<rpc::SyntaxId>{interface});
}

absl::StatusOr<std::unique_ptr<rpc::ClientConnection>> IcprAuthenticator::Connect(
    rpc::ClientOptions base, const std::vector<rpc::SyntaxId>& interfaces, std::optional<uint8_t> level_override) {
  const uint8_t level = level_override.value_or(options_.level);
  absl::StatusOr<std::unique_ptr<rpc::ClientConnection>> c;
  if (options_.mode == IcprAuthMode::kNtlm) {
    c = ConnectNtlm(base, interfaces, level);
  } else {
    c = ConnectKerberos(base, interfaces, level);
    if (!c.ok() && options_.mode == IcprAuthMode::kNegotiate && options_.ntlm &&
        rpc::AuthFailedBeforeBind(c.status())) {
      // Kerberos could not even start (no ticket for the CA from here): NTLM, as Windows'
      // Negotiate does. A CA that refused our ticket is not a reason to fall back.
      ntlm_fallbacks_++;
      c = ConnectNtlm(base, interfaces, level);
    }
  }
  if (c.ok()) Used(**c);
  return c;
}

}  // namespace adcsc::ca
