// Client-certificate authorization for the API port, the equivalent of IIS one-to-one
// mapping: a client is let in only if its certificate chains to the configured trust, is
// within its validity period, and its SHA-256 fingerprint is one of the configured pins — and,
// for a pin that carries an end (the old client identity during a rotation's overlap), the
// clock has not reached that end.
// Thread-safe after construction (X509_STORE verification is safe to share; the decision
// cache has its own lock).
#pragma once

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "node/api/client_identity.h"
#include "store/clock.h"

namespace adcsc::node {

class ClientAuthorizer {
 public:
  // `trust_pem_file`: the PEM bundle client certificates must chain to (intermediates may
  // be included). `pins`: normalised lowercase hex SHA-256 fingerprints. `clock` (borrowed):
  // the time certificates are checked against and decisions are cached by. `pin_until`: the
  // pins (each also in `pins`) that are mapped only until then (Unix seconds), refused from
  // that instant (api.client_pins' `until`, the end of a rotation's overlap).
  static absl::StatusOr<std::unique_ptr<ClientAuthorizer>> Create(const std::string& trust_pem_file,
                                                                  const std::vector<std::string>& pins,
                                                                  const Clock* clock = SystemClock::Default(),
                                                                  std::map<std::string, int64_t> pin_until = {});
  ~ClientAuthorizer();
  ClientAuthorizer(const ClientAuthorizer&) = delete;
  ClientAuthorizer& operator=(const ClientAuthorizer&) = delete;

  // Decides for a peer certificate `leaf` (may be null) with the chain it sent (may be null).
  ClientAuthResult Authorize(X509* leaf, STACK_OF(X509) * chain) const;
  // Convenience for a finished TLS handshake.
  ClientAuthResult AuthorizeSsl(SSL* ssl) const;

  // The pinned certificates this authorizer let in, one per pin: its subject (RFC 2253) and
  // notAfter (Unix seconds). The node reports their expiry (a pin is a hash: the certificate
  // itself is known only once a client presented it).
  struct Seen {
    std::string pin, subject;
    int64_t not_after_unix = 0;
    int64_t until_unix = 0;  // the pin's end of overlap; 0: none
  };
  std::vector<Seen> SeenCertificates() const;

 private:
  ClientAuthorizer(X509_STORE* store, std::set<std::string> pins, const Clock* clock,
                   std::map<std::string, int64_t> pin_until);
  ClientAuthResult Verify(X509* leaf, STACK_OF(X509) * chain, const std::string& pin) const;

  X509_STORE* store_;  // owned
  std::set<std::string> pins_;
  const Clock* clock_;
  const std::map<std::string, int64_t> pin_until_;  // pin -> Unix seconds it is refused from

  // Positive decisions by certificate fingerprint: a resumed connection from Jamf Pro does
  // not pay for chain verification again. An entry lives at most kDecisionTtl and never past
  // the certificate's notAfter; refusals are not cached (they are rare and cheap to redo).
  struct CachedDecision {
    ClientAuthResult result;
    // Used only from decided_at (a clock stepped back past it decides again) until
    // valid_until.
    std::chrono::system_clock::time_point decided_at;
    std::chrono::system_clock::time_point valid_until;
  };
  static constexpr std::chrono::seconds kDecisionTtl{60};
  static constexpr size_t kMaxCachedDecisions = 1024;
  mutable std::mutex cache_mu_;
  mutable std::mutex verify_mu_;  // serializes X509_verify_cert on store_
  mutable std::map<std::string, CachedDecision> cache_;
  mutable std::map<std::string, Seen> seen_;  // by pin, guarded by cache_mu_; at most one per pin
};

}  // namespace adcsc::node
