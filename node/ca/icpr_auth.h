// How the connector authenticates to an ADCS CA host for MS-ICPR: NTLMv2, Kerberos (SPNEGO or
// raw krb5 through MIT's GSS-API, as the domain service account or the host's machine
// account), or "negotiate" — Kerberos, and NTLM only when Kerberos cannot be used from here
// and NTLM credentials are configured. Shared by the icpr backend's connection pool and
// `adcsc ctl ca-ping`, so both speak exactly the same way.
// Thread-safety: Connect() and the accessors may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "node/gss/credentials.h"
#include "node/gss/mech.h"
#include "node/ntlm/ntlm.h"
#include "node/rpc/client.h"

namespace adcsc::ca {

enum class IcprAuthMode { kNtlm, kKerberos, kNegotiate };
// "ntlm", "kerberos", "negotiate".
std::string_view IcprAuthModeName(IcprAuthMode mode);

struct IcprAuthOptions {
  IcprAuthMode mode = IcprAuthMode::kNtlm;
  // Packet privacy is what ADCS requires; lower levels exist to test that the CA refuses them.
  uint8_t level = rpc::authn_level::kPktPrivacy;
  // NTLM: required for kNtlm; for kNegotiate, set to allow the fallback.
  std::optional<ntlm::Credentials> ntlm;
  // Kerberos: required for kKerberos and kNegotiate. Acquired on first use and renewed before
  // the ticket expires (a KDC that is down at start-up does not keep the node from starting).
  std::optional<gss::CredentialSource> kerberos;
  gss::CredentialOptions kerberos_options;
  gss::Mech mech = gss::Mech::kSpnego;
  // The CA's service principal; "{host}" becomes the CA host name (config.dc) in lower case.
  // A name with '@' is a full principal; else "service/host" is a host-based service name.
  std::string spn = "host/{host}";
};

// What the last successful bind used, and how often negotiate fell back to NTLM.
struct IcprAuthStats {
  std::string last_mechanism;  // "ntlm", "kerberos", "negotiate/kerberos"; empty before any bind
  uint64_t kerberos_binds = 0;
  uint64_t ntlm_binds = 0;
  uint64_t ntlm_fallbacks = 0;  // negotiate binds that used NTLM because Kerberos could not be used
  uint64_t credential_renewals = 0;
  // When the current TGT ends (seconds since the epoch); 0: no Kerberos credentials yet.
  int64_t ticket_expiry_unix = 0;
};

class IcprAuthenticator {
 public:
  // Checks the options (INVALID_ARGUMENT naming what is missing); acquires nothing yet.
  static absl::StatusOr<std::shared_ptr<IcprAuthenticator>> Create(IcprAuthOptions options);

  // Connects to host:port and binds `interface` with the configured mechanism. `base` gives
  // host, port and timeouts; its auth is replaced. The connection's mechanism() says which
  // mechanism was used.
  absl::StatusOr<std::unique_ptr<rpc::ClientConnection>> Connect(rpc::ClientOptions base,
                                                                 const rpc::SyntaxId& interface);
  // The same binding several interfaces at once (DCOM: the object's interface and IRemUnknown),
  // at `level` instead of the configured one when set (DCOM activation may use integrity).
  absl::StatusOr<std::unique_ptr<rpc::ClientConnection>> Connect(rpc::ClientOptions base,
                                                                 const std::vector<rpc::SyntaxId>& interfaces,
                                                                 std::optional<uint8_t> level = std::nullopt);

  // Renews the Kerberos ticket when it is within the renewal margin of its end (nothing for
  // NTLM, or before the first bind). The icpr backend calls it on every call, pooled or not,
  // and the readiness probe's periodic CA ping keeps it going on an idle node, so a pool of
  // long-lived connections never lets the TGT lapse. A failure is retried on the next call.
  void RenewIfDue();

  // The SPN for a CA host, e.g. "host/ca01.example.com".
  std::string SpnFor(const std::string& host) const;
  // "kerberos (spnego) as svc@EXAMPLE.TEST to host/{host}", "ntlm as EXAMPLE\svc",
  // "negotiate: ..."; for logs and ca-ping. With `host`, the SPN is the one for that host.
  std::string Describe(const std::string& host = "") const;
  IcprAuthMode mode() const { return options_.mode; }
  IcprAuthStats stats() const;

 private:
  explicit IcprAuthenticator(IcprAuthOptions options) : options_(std::move(options)) {}
  // Acquires on first use, renews when due. An error says why Kerberos cannot be used.
  absl::StatusOr<std::shared_ptr<gss::Credentials>> KerberosCredentials();
  absl::StatusOr<std::unique_ptr<rpc::ClientConnection>> ConnectKerberos(const rpc::ClientOptions& base,
                                                                         const std::vector<rpc::SyntaxId>& interfaces,
                                                                         uint8_t level);
  absl::StatusOr<std::unique_ptr<rpc::ClientConnection>> ConnectNtlm(const rpc::ClientOptions& base,
                                                                     const std::vector<rpc::SyntaxId>& interfaces,
                                                                     uint8_t level);
  void Used(const rpc::ClientConnection& connection);

  const IcprAuthOptions options_;
  mutable absl::Mutex mu_;
  std::shared_ptr<gss::Credentials> credentials_ ABSL_GUARDED_BY(mu_);
  std::string last_mechanism_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> kerberos_binds_{0}, ntlm_binds_{0}, ntlm_fallbacks_{0}, renewals_{0};
};

}  // namespace adcsc::ca
