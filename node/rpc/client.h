// A DCE/RPC client connection (ncacn_ip_tcp): connects, binds one interface with NDR20,
// optionally authenticates (NTLMv2, or Kerberos through GSS-API: SPNEGO or raw krb5) at
// connect, packet integrity or packet privacy, and
// makes calls with fragmentation in both directions. Used by the `icpr` CA backend, the
// endpoint-mapper lookup and `adcsc ctl ca-ping`.
// Thread-safety: one call at a time per connection (the icpr backend pools connections);
// Abort() may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "node/gss/context.h"
#include "node/gss/credentials.h"
#include "node/ntlm/ntlm.h"
#include "node/rpc/pdu.h"
#include "node/rpc/security.h"
#include "node/rpc/tcp_stream.h"
#include "node/rpc/uuid.h"

namespace adcsc::rpc {

// Kerberos instead of NTLM: the service account's credentials (renewed by their owner), the
// CA's service principal and the GSS mechanism (auth type 9 or 16).
struct KerberosAuth {
  std::shared_ptr<gss::Credentials> credentials;
  gss::TargetName target;
  gss::Mech mech = gss::Mech::kSpnego;
};

struct ClientAuth {
  ntlm::Credentials credentials;  // NTLM, unless `kerberos` is set
  // authn_level::kConnect, kPktIntegrity or kPktPrivacy (what ADCS demands).
  uint8_t level = authn_level::kPktPrivacy;
  // Randomness for NTLM (client challenge, session key); empty: OpenSSL's RAND_bytes.
  ntlm::RandomSource random;
  // The server's SPN, sent as NTLM's MsvAvTargetName (e.g. "host/ca01.corp.example.com");
  // empty: not sent.
  std::string target_spn;
  // Set: authenticate with Kerberos; `credentials`, `random` and `target_spn` are unused.
  std::optional<KerberosAuth> kerberos;
};

struct ClientOptions {
  std::string host;
  uint16_t port = 0;
  std::chrono::milliseconds connect_timeout{3'000};
  // Bound on the whole bind, and on each call from its first byte sent to its last received.
  std::chrono::milliseconds call_timeout{10'000};
  // Our largest fragment in both directions; the server may negotiate it down.
  uint16_t max_frag = kWindowsDefaultFragSize;
  size_t max_response_bytes = kDefaultMaxReassembledSize;
  std::optional<ClientAuth> auth;  // none: unauthenticated (the endpoint mapper)
};

// A failed call's fault status travels in the Status (payload "adcsc.rpc_fault").
absl::Status FaultError(uint32_t fault_status, std::string_view context);
std::optional<uint32_t> FaultOf(const absl::Status& status);

// True when a failed Call() may have run at the server: its request started going out and
// no definite answer came back (the connection broke or timed out afterwards, the answer
// could not be read, or a fault arrived that the session did not sign, which anyone on the
// path could have forged). A fault signed at the negotiated level is the server's definite
// answer and is not marked. Payload "adcsc.rpc_request_sent".
bool RequestMayHaveRun(const absl::Status& status);

// True when Connect() failed in our own first authentication leg, before the bind went out:
// for Kerberos, no ticket for the CA could be had (no credentials, KDC unreachable, unknown
// SPN, clock skew with the KDC). What "negotiate" falls back to NTLM on. Payload
// "adcsc.rpc_auth_not_started".
bool AuthFailedBeforeBind(const absl::Status& status);
absl::Status MarkAuthNotStarted(absl::Status status);

class ClientConnection {
 public:
  // Connects and binds `interface` (NDR20). Errors: UNAVAILABLE (cannot connect, connection
  // reset), DEADLINE_EXCEEDED, PERMISSION_DENIED (bind_nak for authentication, a CHALLENGE we
  // refuse), FAILED_PRECONDITION (the interface is not served: provider rejection),
  // INTERNAL (protocol violations), each naming host:port and the step.
  static absl::StatusOr<std::unique_ptr<ClientConnection>> Connect(const ClientOptions& options,
                                                                   const SyntaxId& interface);
  // The same with several interfaces in one bind, presentation context i for interfaces[i]
  // (DCOM binds an object's interface and IRemUnknown on one connection). Every context
  // must be accepted.
  static absl::StatusOr<std::unique_ptr<ClientConnection>> Connect(const ClientOptions& options,
                                                                   const std::vector<SyntaxId>& interfaces);
  ~ClientConnection();
  ClientConnection(const ClientConnection&) = delete;
  ClientConnection& operator=(const ClientConnection&) = delete;

  // One request/response. A fault answer returns FaultError(status); a response whose
  // signature does not verify is PERMISSION_DENIED and breaks the connection. After any
  // transport or protocol error the connection is broken() and must not be reused. A
  // failure after the request started going out is marked (RequestMayHaveRun) unless it is
  // a signed fault.
  absl::StatusOr<Bytes> Call(uint16_t opnum, ByteView stub);
  // Per-call options of a DCOM call: which bound interface (presentation context) and the
  // object UUID (an IPID) the request carries with PFC_OBJECT_UUID.
  struct CallTarget {
    uint16_t context_id = 0;
    std::optional<Uuid> object;
  };
  absl::StatusOr<Bytes> Call(uint16_t opnum, ByteView stub, const CallTarget& target);

  bool broken() const { return broken_; }
  // Fit to be handed out again by a pool: not broken, and not closed by the server while idle.
  bool Reusable() const { return !broken_ && !stream_->ClosedOrUnexpectedInput(); }
  const std::string& peer() const { return peer_; }
  // Negotiated fragment sizes (after the bind).
  uint16_t max_xmit_frag() const { return max_xmit_frag_; }
  uint16_t max_recv_frag() const { return max_recv_frag_; }
  // "ntlm", "kerberos", "negotiate/kerberos"; "none" without authentication.
  std::string mechanism() const { return security_ ? security_->mechanism() : "none"; }
  // Both sides agreed on PFC_SUPPORT_HEADER_SIGN (Kerberos signs header and sec_trailer then).
  bool header_signing() const { return security_ && security_->header_signing(); }
  // Unblocks a call in progress from another thread (it fails with UNAVAILABLE).
  void Abort();

 private:
  ClientConnection(ClientOptions options, std::unique_ptr<TcpStream> stream);
  absl::Status Bind(const std::vector<SyntaxId>& interfaces, Deadline deadline);
  // Call() without the mark; `sent` tells whether the request started going out, `definite`
  // whether the failure is a signed fault.
  absl::StatusOr<Bytes> CallUnmarked(uint16_t opnum, ByteView stub, const CallTarget& target, bool* sent,
                                     bool* definite);
  absl::Status Send(Bytes bytes, Deadline deadline);
  absl::StatusOr<Bytes> ReceivePdu(Deadline deadline);
  absl::Status Fail(absl::Status status);

  ClientOptions options_;
  std::unique_ptr<TcpStream> stream_;
  // Sends `token` in an alter_context and returns the server's answer token (may be empty).
  absl::StatusOr<Bytes> AlterContext(uint32_t call_id, const BindBody& bind, Bytes token, Deadline deadline);
  absl::Status SecurityError(std::string_view step, const absl::Status& status);

  std::unique_ptr<SecurityProvider> security_;
  uint16_t auth_value_length_ = 0;
  std::string peer_;
  uint32_t next_call_id_ = 1;
  uint16_t max_xmit_frag_ = kMustRecvFragSize;
  uint16_t max_recv_frag_ = kMustRecvFragSize;
  static constexpr uint32_t kAuthContextId = 0;
  bool broken_ = false;
};

}  // namespace adcsc::rpc
