// One side of one connection's authentication, whatever the mechanism: the tokens of the
// bind's legs and, once established, the protection of each request/response fragment.
// NTLM (auth type 10) and Kerberos through GSS-API (SPNEGO, type 9; raw krb5, type 16)
// implement it; ClientConnection and ServerConnection only move tokens and call
// Protect/Unprotect, so the connection logic is the same for every mechanism.
// Thread-safety: none; a provider belongs to one connection, which makes one call at a time.
//
// The legs (MS-RPCE 3.3.1.5.2): the client's first token goes in the bind, the server's
// answer in the bind_ack. NTLM ends with the client's third token in AUTH3 (no answer).
// Kerberos sends the client's third token in an alter_context and the server answers in the
// alter_context_resp, possibly with a token (SPNEGO's accept-completed) the client still
// has to consume; the client keeps stepping until done() rather than counting legs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "node/gss/context.h"
#include "node/ntlm/ntlm.h"
#include "node/rpc/pdu.h"

namespace adcsc::rpc {

struct Leg {
  Bytes token;        // to send when not empty
  bool done = false;  // established (after sending `token`, if any)
};

// Who authenticated, on the server side.
struct PeerIdentity {
  std::string domain;      // NTLM: the account's domain; Kerberos: the realm, mapped (ServerAuth)
  std::string user;        // the account name without domain or realm
  std::string principal;   // Kerberos: "svc-adcsc@EXAMPLE.TEST"; NTLM: "DOMAIN\user"
  std::string target_spn;  // NTLM: the client's MsvAvTargetName; Kerberos: empty
};

class SecurityProvider {
 public:
  virtual ~SecurityProvider() = default;

  // authn::kWinNt, kGssNegotiate or kGssKerberos: what goes into the sec_trailer.
  virtual uint8_t auth_type() const = 0;
  // "ntlm", "kerberos" (raw krb5) or "negotiate/kerberos" (SPNEGO with krb5 under it): what
  // ca-ping and the logs show.
  virtual std::string mechanism() const = 0;
  // The next leg: the peer's auth_value in (empty for the client's first), ours out.
  virtual absl::StatusOr<Leg> Step(ByteView peer_token) = 0;
  virtual bool done() const = 0;
  // NTLM's third leg goes in AUTH3; Kerberos's in an alter_context.
  virtual bool third_leg_in_auth3() const = 0;
  // Whether this mechanism signs the PDU header and sec_trailer only when both sides agreed on
  // PFC_SUPPORT_HEADER_SIGN (Kerberos); NTLM signs them always.
  virtual bool negotiates_header_signing() const = 0;
  void set_header_signing(bool on) { header_signing_ = on; }
  bool header_signing() const { return header_signing_; }

  // After done(): the auth_value length of a fragment at `level` (integrity or privacy), for
  // FragmentStub's placeholder. NTLM: 16. Kerberos: asked from GSS (76 for AES at privacy).
  virtual absl::StatusOr<uint16_t> AuthValueLength(uint8_t level) const = 0;
  // Signs (integrity) or seals and signs (privacy) an outgoing fragment in place.
  virtual absl::Status Protect(uint8_t level, OutgoingPdu& pdu) = 0;
  // Verifies (and unseals) a received fragment in place. PERMISSION_DENIED when it does not
  // verify; the connection must then be dropped.
  virtual absl::Status Unprotect(uint8_t level, Bytes& pdu, size_t max_frag_length) = 0;

  // Server side, after done(): who the client is.
  virtual PeerIdentity identity() const { return {}; }

 protected:
  bool header_signing_ = false;
};

// --- NTLM -------------------------------------------------------------------------------------

std::unique_ptr<SecurityProvider> NtlmClientSecurity(ntlm::Credentials credentials, ntlm::RandomSource random,
                                                     std::string target_spn);
// A failed logon (third leg) leaves the provider not done(): the connection stays up and its
// calls are refused, as Windows does.
std::unique_ptr<SecurityProvider> NtlmServerSecurity(const ntlm::AccountLookup& accounts,
                                                     const ntlm::ServerNames& names);

// --- Kerberos (GSS-API) -----------------------------------------------------------------------

// `level` is the RPC level the connection binds at (privacy asks GSS for confidentiality).
absl::StatusOr<std::unique_ptr<SecurityProvider>> GssClientSecurity(const gss::Credentials& credentials,
                                                                    gss::TargetName target, gss::Mech mech,
                                                                    uint8_t level);
// `realm_domain`: maps the client's realm to the domain PeerIdentity reports (Windows shows a
// Kerberos caller as NETBIOSDOMAIN\user); empty: the realm's first label, upper case.
std::unique_ptr<SecurityProvider> GssServerSecurity(std::shared_ptr<gss::AcceptorCredentials> credentials,
                                                    gss::Mech mech, std::string realm_domain);

// "ntlm" / "kerberos" / "negotiate/kerberos" for an auth type, for messages.
std::string_view AuthTypeName(uint8_t auth_type);

}  // namespace adcsc::rpc
