// The server side of a DCE/RPC connection (ncacn_ip_tcp) for one interface: answers bind
// (optionally authenticated: NTLM with CHALLENGE in the bind_ack and AUTHENTICATE in auth3,
// or Kerberos through MIT's GSS-API acceptor, SPNEGO or raw krb5, DCE style, its third leg
// in an alter_context or auth3), reassembles
// requests, verifies / unseals them at the bound level, calls a handler and fragments,
// signs and seals its answer. Used by the ADCS emulator (tests/adcs-emulator) for both its
// endpoint mapper and its ICertPassage server.
// Thread-safety: ServeConnection runs one connection on the calling thread; the handler is
// called on that thread, so a server with a thread per connection calls it concurrently.
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
#include "node/gss/credentials.h"
#include "node/ntlm/ntlm.h"
#include "node/rpc/pdu.h"
#include "node/rpc/tcp_stream.h"
#include "node/rpc/uuid.h"

namespace adcsc::rpc {

// Who is calling, as the handler sees it.
struct CallContext {
  uint8_t auth_level = authn_level::kNone;  // kNone: the client bound without authentication
  std::string domain;                       // the account's domain (Kerberos: the realm, mapped)
  std::string user;                         // empty when unauthenticated
  std::string principal;                    // Kerberos "user@REALM"; NTLM "DOMAIN\user"
  std::string mechanism;                    // "ntlm", "kerberos", "negotiate/kerberos"; "none"
  std::string target_spn;                   // the SPN the client meant (NTLM MsvAvTargetName); empty if none
  std::string peer;                         // "127.0.0.1:50312"
  SyntaxId interface;                       // the interface of the call's presentation context
  std::optional<Uuid> object;               // the request's object UUID (DCOM: the IPID), if any
};

// Handles one complete request. Answer with the response stub, or with FaultError(status) to
// send a fault PDU; UNAVAILABLE drops the connection without an answer (how a test server
// plays a CA that fails mid-call); any other error becomes fault nca_s_fault_cant_perform.
using CallHandler = std::function<absl::StatusOr<Bytes>(const CallContext&, uint16_t opnum, ByteView stub)>;

struct ServerOptions {
  SyntaxId interface;
  // Further interfaces served on the same connections (a DCOM object exporter serves the
  // object's interfaces and IRemUnknown); the handler tells them apart by CallContext::interface.
  std::vector<SyntaxId> more_interfaces;
  // When set, clients may authenticate with NTLM (auth type 10) at any level; the handler
  // decides what each level may do. Unset: an authenticated bind is refused.
  std::optional<ntlm::AccountLookup> accounts;
  ntlm::ServerNames names;
  // When set, clients may authenticate with Kerberos (auth types 9 and 16) against this
  // service keytab. `realm_domain` is the domain a Kerberos caller is reported under
  // (Windows shows NETBIOSDOMAIN\user); empty: the realm's first label.
  std::shared_ptr<gss::AcceptorCredentials> kerberos;
  std::string realm_domain;
  uint16_t max_frag = kWindowsDefaultFragSize;
  size_t max_request_bytes = kDefaultMaxReassembledSize;
  // A connection that sends nothing for this long is closed.
  std::chrono::milliseconds idle_timeout{60'000};
  // The port we listen on, sent back in bind_ack's secondary address as Windows does.
  uint16_t port = 0;
  // Told about connections that ended on an error (bad PDU, failed logon...); may be empty.
  std::function<void(const std::string& peer, const absl::Status&)> on_error;
};

// Serves `stream` until the client closes it, the idle timeout passes, or a protocol error
// (then the error is reported through options.on_error and the connection is dropped).
void ServeConnection(TcpStream& stream, const ServerOptions& options, const CallHandler& handler);

}  // namespace adcsc::rpc
