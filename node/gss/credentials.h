// Kerberos credentials for the GSS-API contexts: an initiator's (the connector's service
// account: keytab, password file or an existing credential cache) with its expiry and renewal
// before it, and an acceptor's (a service keytab, for the ADCS emulator).
// Thread-safety: Credentials and AcceptorCredentials are safe to share between threads; a
// context keeps the handle it started with alive (Handle()), so a renewal never pulls the
// credentials from under a handshake in progress.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace adcsc::gss {

namespace internal {
class CredHandle;  // a gss_cred_id_t and the private memory ccache behind it
}

// Where an initiator's credentials come from.
struct CredentialSource {
  enum class Kind {
    kKeytab,    // a client keytab: the service account's, or a realmd/adcli machine keytab
    kPassword,  // a password (read from a file with ReadPasswordFile)
    kCcache,    // an existing credential cache another tool keeps fresh (kinit, k5start, sssd)
  };
  Kind kind = Kind::kKeytab;
  // user@REALM (or HOST$@REALM for a machine keytab). Keytab: empty takes the keytab's first
  // principal. Password: required. Ccache: ignored (the cache's default principal).
  std::string principal;
  std::string keytab;    // kKeytab: a path or a keytab name ("FILE:/etc/adcsc/svc.keytab")
  std::string password;  // kPassword
  std::string ccache;    // kCcache: a ccache name ("FILE:/tmp/krb5cc_123", "KEYRING:...")

  static CredentialSource Keytab(std::string principal, std::string keytab);
  static CredentialSource Password(std::string principal, std::string password);
  static CredentialSource Ccache(std::string ccache);
};

// A password file: the password on its first line (the line break is not part of it). The
// file must not be readable by group or others (FAILED_PRECONDITION otherwise, naming it).
absl::StatusOr<std::string> ReadPasswordFile(const std::filesystem::path& path);

struct CredentialOptions {
  // Renew (re-acquire) once less than this is left of the ticket's life.
  std::chrono::seconds renew_margin{std::chrono::minutes(5)};
  // The wall clock; injectable so tests move time instead of waiting. Default: system_clock.
  std::function<std::chrono::system_clock::time_point()> now;
  // GSS_KRB5_CRED_NO_CI_FLAGS_X: leave CONF and INTEG out of the AP-REQ's checksum flags, so
  // an acceptor that sizes signatures from those flags expects a MIC at packet integrity.
  // Only for packet integrity; packet privacy (ADCS) wants them.
  bool no_ci_flags = false;
};

class Credentials {
 public:
  // Acquires initiator credentials for both krb5 and SPNEGO. Keytab and password sources get
  // a TGT now, into a memory ccache private to this object (processes and objects share no
  // state), so a wrong key, an unknown principal or an unreachable KDC shows here.
  static absl::StatusOr<std::shared_ptr<Credentials>> Acquire(CredentialSource source, CredentialOptions options = {});
  ~Credentials();
  Credentials(const Credentials&) = delete;
  Credentials& operator=(const Credentials&) = delete;

  // The client principal, e.g. "svc-adcsc@EXAMPLE.TEST".
  std::string principal() const;
  // When the current TGT stops being valid (gss_inquire_cred's lifetime, from the clock).
  std::chrono::system_clock::time_point expiry() const;
  // True once now() >= expiry() - renew_margin.
  bool NeedsRenewal() const;
  // True once now() >= expiry(): the ticket must not be used any more. Judged on the same
  // clock as expiry() (options.now), never the system clock beside an injected one.
  bool Expired() const;
  // Re-acquires when NeedsRenewal() (a new TGT for keytab and password sources; a ccache is
  // read again, in case its keeper renewed it). OK when nothing was due. On failure the
  // current credentials stay in use and the error says why (KDC unreachable, expired ccache).
  absl::Status RenewIfExpiring();
  // How many times the credentials were acquired (1 after Acquire); for tests and metrics.
  uint64_t generation() const;

  // The current handle, kept alive by whoever holds it (a context in progress).
  std::shared_ptr<const internal::CredHandle> Handle() const;

 private:
  Credentials(CredentialSource source, CredentialOptions options);
  absl::Status AcquireLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::chrono::system_clock::time_point Now() const;

  const CredentialSource source_;
  const CredentialOptions options_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const internal::CredHandle> handle_ ABSL_GUARDED_BY(mu_);
  std::string principal_ ABSL_GUARDED_BY(mu_);
  std::chrono::system_clock::time_point expiry_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
};

// An acceptor's credentials from a service keytab (gss_acquire_cred_from "keytab"), for any
// principal in it unless `principal` names one (e.g. "host/ca.example.test@EXAMPLE.TEST").
class AcceptorCredentials {
 public:
  static absl::StatusOr<std::shared_ptr<AcceptorCredentials>> FromKeytab(std::string keytab,
                                                                         std::string principal = "");
  ~AcceptorCredentials();
  AcceptorCredentials(const AcceptorCredentials&) = delete;
  AcceptorCredentials& operator=(const AcceptorCredentials&) = delete;
  std::shared_ptr<const internal::CredHandle> Handle() const { return handle_; }

 private:
  explicit AcceptorCredentials(std::shared_ptr<const internal::CredHandle> handle) : handle_(std::move(handle)) {}
  std::shared_ptr<const internal::CredHandle> handle_;
};

}  // namespace adcsc::gss
