// Initiator and acceptor credentials on MIT GSS-API; see credentials.h.
#include "node/gss/credentials.h"

#include <krb5.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "node/gss/errors.h"
#include "node/gss/internal.h"

namespace adcsc::gss {
namespace internal {

gss_OID MechOid(Mech mech) {
  static gss_OID_desc spnego{6, const_cast<char*>("\x2b\x06\x01\x05\x05\x02")};  // 1.3.6.1.5.5.2
  return mech == Mech::kSpnego ? &spnego : const_cast<gss_OID>(gss_mech_krb5);
}

gss_OID_set BothMechs() {
  static gss_OID_desc mechs[2] = {*MechOid(Mech::kKerberos), *MechOid(Mech::kSpnego)};
  static gss_OID_set_desc set{2, mechs};
  return &set;
}

OwnedBuffer::~OwnedBuffer() {
  OM_uint32 minor = 0;
  gss_release_buffer(&minor, &buffer_);
}

Bytes OwnedBuffer::ToBytes() const {
  const auto* data = static_cast<const uint8_t*>(buffer_.value);
  return data == nullptr ? Bytes{} : Bytes(data, data + buffer_.length);
}

std::string OwnedBuffer::ToString() const {
  return buffer_.value == nullptr ? std::string()
                                  : std::string(static_cast<const char*>(buffer_.value), buffer_.length);
}

Name::~Name() {
  OM_uint32 minor = 0;
  gss_release_name(&minor, &name_);
}

Name& Name::operator=(Name&& other) noexcept {
  if (this != &other) {
    OM_uint32 minor = 0;
    gss_release_name(&minor, &name_);
    name_ = std::exchange(other.name_, GSS_C_NO_NAME);
  }
  return *this;
}

std::string Name::Display() const {
  if (name_ == GSS_C_NO_NAME) return "";
  OM_uint32 minor = 0;
  OwnedBuffer text;
  if (GSS_ERROR(gss_display_name(&minor, name_, text.get(), nullptr))) return "";
  return text.ToString();
}

CredHandle::~CredHandle() {
  OM_uint32 minor = 0;
  gss_release_cred(&minor, &cred_);
  if (owned_memory_ccache_.empty()) return;
  krb5_context context = nullptr;
  if (krb5_init_context(&context) != 0) return;
  krb5_ccache ccache = nullptr;
  if (krb5_cc_resolve(context, owned_memory_ccache_.c_str(), &ccache) == 0) krb5_cc_destroy(context, ccache);
  krb5_free_context(context);
}

std::string RealmOf(const std::string& principal) {
  if (auto at = principal.rfind('@'); at != std::string::npos) return principal.substr(at + 1);
  krb5_context context = nullptr;
  if (krb5_init_context(&context) != 0) return "";
  char* realm = nullptr;
  std::string result;
  if (krb5_get_default_realm(context, &realm) == 0) {
    result = realm;
    krb5_free_default_realm(context, realm);
  }
  krb5_free_context(context);
  return result;
}

}  // namespace internal

namespace {

using internal::CredHandle;
using internal::Name;

// A memory ccache name no other object in this process uses.
std::string NewMemoryCcacheName() {
  static std::atomic<uint64_t> counter{0};
  return absl::StrCat("MEMORY:adcsc-gss-", ::getpid(), "-", counter.fetch_add(1));
}

absl::StatusOr<Name> ImportPrincipal(const std::string& principal, const std::string& what) {
  Name name;
  if (principal.empty()) return name;
  OM_uint32 minor = 0;
  gss_buffer_desc text{principal.size(), const_cast<char*>(principal.data())};
  OM_uint32 major = gss_import_name(&minor, &text, GSS_KRB5_NT_PRINCIPAL_NAME, name.out());
  if (GSS_ERROR(major)) {
    return GssError({absl::StrCat(what, ": the principal name '", principal, "' is not valid"),
                     Stage::kAcquireInitiator, major, minor, Mech::kKerberos, ""});
  }
  return name;
}

}  // namespace

CredentialSource CredentialSource::Keytab(std::string principal, std::string keytab) {
  CredentialSource s;
  s.kind = Kind::kKeytab;
  s.principal = std::move(principal);
  s.keytab = std::move(keytab);
  return s;
}

CredentialSource CredentialSource::Password(std::string principal, std::string password) {
  CredentialSource s;
  s.kind = Kind::kPassword;
  s.principal = std::move(principal);
  s.password = std::move(password);
  return s;
}

CredentialSource CredentialSource::Ccache(std::string ccache) {
  CredentialSource s;
  s.kind = Kind::kCcache;
  s.ccache = std::move(ccache);
  return s;
}

absl::StatusOr<std::string> ReadPasswordFile(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat("password file ", path.string(), " cannot be read: it does not exist"));
  }
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("password file ", path.string(), " is readable by group or others: chmod 600 it"));
  }
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line) || line.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("password file ", path.string(), " is empty or unreadable: put the password on its first line"));
  }
  if (line.back() == '\r') line.pop_back();
  return line;
}

Credentials::Credentials(CredentialSource source, CredentialOptions options)
    : source_(std::move(source)), options_(std::move(options)) {}

Credentials::~Credentials() = default;

absl::StatusOr<std::shared_ptr<Credentials>> Credentials::Acquire(CredentialSource source, CredentialOptions options) {
  if (source.kind == CredentialSource::Kind::kPassword && source.principal.empty()) {
    return absl::InvalidArgumentError("password credentials need a principal (user@REALM)");
  }
  std::shared_ptr<Credentials> credentials(new Credentials(std::move(source), std::move(options)));
  absl::MutexLock lock(&credentials->mu_);
  if (absl::Status status = credentials->AcquireLocked(); !status.ok()) return status;
  return credentials;
}

std::chrono::system_clock::time_point Credentials::Now() const {
  return options_.now ? options_.now() : std::chrono::system_clock::now();
}

absl::Status Credentials::AcquireLocked() {
  std::string what;
  switch (source_.kind) {
    case CredentialSource::Kind::kKeytab:
      what = absl::StrCat("getting a Kerberos ticket for ",
                          source_.principal.empty() ? "the first principal" : source_.principal, " from keytab ",
                          source_.keytab);
      break;
    case CredentialSource::Kind::kPassword:
      what = absl::StrCat("getting a Kerberos ticket for ", source_.principal, " with its password");
      break;
    case CredentialSource::Kind::kCcache:
      what = absl::StrCat("reading Kerberos credentials from ccache ", source_.ccache);
      break;
  }
  const std::string realm = internal::RealmOf(source_.principal);
  absl::StatusOr<Name> name = ImportPrincipal(source_.principal, what);
  if (!name.ok()) return name.status();

  OM_uint32 minor = 0;
  OM_uint32 major = GSS_S_COMPLETE;
  gss_cred_id_t cred = GSS_C_NO_CREDENTIAL;
  std::string owned_ccache;
  if (source_.kind == CredentialSource::Kind::kPassword) {
    gss_buffer_desc password{source_.password.size(), const_cast<char*>(source_.password.data())};
    major = gss_acquire_cred_with_password(&minor, name->get(), &password, GSS_C_INDEFINITE, internal::BothMechs(),
                                           GSS_C_INITIATE, &cred, nullptr, nullptr);
  } else {
    std::vector<gss_key_value_element_desc> elements;
    if (source_.kind == CredentialSource::Kind::kKeytab) {
      owned_ccache = NewMemoryCcacheName();
      elements.push_back({"client_keytab", source_.keytab.c_str()});
      elements.push_back({"ccache", owned_ccache.c_str()});
    } else {
      elements.push_back({"ccache", source_.ccache.c_str()});
    }
    gss_key_value_set_desc store{static_cast<OM_uint32>(elements.size()), elements.data()};
    major = gss_acquire_cred_from(&minor, name->get(), GSS_C_INDEFINITE, internal::BothMechs(), GSS_C_INITIATE, &store,
                                  &cred, nullptr, nullptr);
  }
  if (GSS_ERROR(major)) {
    auto handle = std::make_shared<CredHandle>(cred, owned_ccache);  // frees what was made
    return GssError({what, Stage::kAcquireInitiator, major, minor, Mech::kKerberos, realm});
  }
  auto handle = std::make_shared<const CredHandle>(cred, owned_ccache);

  if (options_.no_ci_flags) {
    gss_buffer_desc empty{0, nullptr};
    gss_cred_id_t same = cred;  // with a credential given, MIT sets the option on it in place
    major = gss_set_cred_option(&minor, &same, const_cast<gss_OID>(GSS_KRB5_CRED_NO_CI_FLAGS_X), &empty);
    if (GSS_ERROR(major)) {
      return GssError({absl::StrCat(what, ": setting GSS_KRB5_CRED_NO_CI_FLAGS_X"), Stage::kAcquireInitiator, major,
                       minor, Mech::kKerberos, realm});
    }
  }

  // The TGT's remaining life. A keytab or password source has just fetched one; a ccache may
  // hold an expired one, which is better reported now than at the first bind.
  // The lifetime is asked first without the name: MIT 1.20's mechglue leaks the name it made
  // when the mechanism then reports the credentials expired (LeakSanitizer showed it).
  OM_uint32 lifetime = 0;
  major = gss_inquire_cred(&minor, cred, nullptr, &lifetime, nullptr, nullptr);
  if (GSS_ERROR(major)) {
    return GssError({what, Stage::kAcquireInitiator, major, minor, Mech::kKerberos, realm});
  }
  Name cred_name;
  if (lifetime != 0) {
    major = gss_inquire_cred(&minor, cred, cred_name.out(), &lifetime, nullptr, nullptr);
    if (GSS_ERROR(major)) {
      return GssError({what, Stage::kAcquireInitiator, major, minor, Mech::kKerberos, realm});
    }
  }
  if (lifetime == 0) {
    return GssError({absl::StrCat(what, ": the credentials have expired"), Stage::kAcquireInitiator,
                     GSS_S_CREDENTIALS_EXPIRED, 0, Mech::kKerberos, realm});
  }
  const auto now = Now();
  expiry_ = lifetime == GSS_C_INDEFINITE ? std::chrono::system_clock::time_point::max()
                                         : now + std::chrono::seconds(lifetime);
  principal_ = cred_name.Display();
  handle_ = std::move(handle);
  ++generation_;
  return absl::OkStatus();
}

std::string Credentials::principal() const {
  absl::MutexLock lock(&mu_);
  return principal_;
}

std::chrono::system_clock::time_point Credentials::expiry() const {
  absl::MutexLock lock(&mu_);
  return expiry_;
}

bool Credentials::NeedsRenewal() const {
  absl::MutexLock lock(&mu_);
  if (expiry_ == std::chrono::system_clock::time_point::max()) return false;
  return Now() >= expiry_ - options_.renew_margin;
}

bool Credentials::Expired() const {
  absl::MutexLock lock(&mu_);
  return Now() >= expiry_;
}

absl::Status Credentials::RenewIfExpiring() {
  absl::MutexLock lock(&mu_);
  if (expiry_ != std::chrono::system_clock::time_point::max() && Now() < expiry_ - options_.renew_margin) {
    return absl::OkStatus();
  }
  return AcquireLocked();
}

uint64_t Credentials::generation() const {
  absl::MutexLock lock(&mu_);
  return generation_;
}

std::shared_ptr<const internal::CredHandle> Credentials::Handle() const {
  absl::MutexLock lock(&mu_);
  return handle_;
}

AcceptorCredentials::~AcceptorCredentials() = default;

absl::StatusOr<std::shared_ptr<AcceptorCredentials>> AcceptorCredentials::FromKeytab(std::string keytab,
                                                                                     std::string principal) {
  const std::string what = absl::StrCat("opening service keytab ", keytab,
                                        principal.empty() ? std::string() : absl::StrCat(" for ", principal));
  absl::StatusOr<Name> name = ImportPrincipal(principal, what);
  if (!name.ok()) return name.status();
  gss_key_value_element_desc element{"keytab", keytab.c_str()};
  gss_key_value_set_desc store{1, &element};
  OM_uint32 minor = 0;
  gss_cred_id_t cred = GSS_C_NO_CREDENTIAL;
  OM_uint32 major = gss_acquire_cred_from(&minor, name->get(), GSS_C_INDEFINITE, internal::BothMechs(), GSS_C_ACCEPT,
                                          &store, &cred, nullptr, nullptr);
  auto handle = std::make_shared<const internal::CredHandle>(cred, "");
  if (GSS_ERROR(major)) {
    return GssError({what, Stage::kAcquireAcceptor, major, minor, Mech::kKerberos, internal::RealmOf(principal)});
  }
  return std::shared_ptr<AcceptorCredentials>(new AcceptorCredentials(std::move(handle)));
}

}  // namespace adcsc::gss
