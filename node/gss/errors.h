// Turns GSS-API / Kerberos failures into absl::Status errors whose message says what failed and
// what an operator should check (NTP for clock skew, krb5.conf for an unreachable KDC, the
// keytab for a key mismatch), followed by MIT's own texts for the major and minor status.
// Thread-safety: pure functions (gss_display_status is thread-safe in MIT krb5).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "node/gss/mech.h"

namespace adcsc::gss {

// Where the failure happened: the same Kerberos code means different things to an initiator
// getting a ticket and to an acceptor decrypting one.
enum class Stage {
  kAcquireInitiator,  // getting the client's TGT (keytab, password) or reading its ccache
  kAcquireAcceptor,   // opening the service keytab
  kInitiate,          // gss_init_sec_context (TGS-REQ to the KDC, then the server's AP-REP)
  kAccept,            // gss_accept_sec_context (decrypting the client's ticket)
  kProtect,           // wrapping or signing a PDU
  kUnprotect,         // unwrapping or verifying a PDU
};

struct Failure {
  std::string what;  // the operation, e.g. "acquiring credentials for svc@EXAMPLE.TEST from keytab /etc/x"
  Stage stage = Stage::kInitiate;
  uint32_t major = 0;  // GSS major status (routine error and supplementary bits)
  uint32_t minor = 0;  // mechanism status: a krb5 com_err code for the krb5 mech and SPNEGO over it
  Mech mech = Mech::kKerberos;
  std::string realm;  // for "cannot reach the KDC for realm X"; may be empty
};

// The status for `failure`: UNAVAILABLE (KDC unreachable), FAILED_PRECONDITION (clock skew,
// keytab or configuration problems, expired or missing credentials), UNAUTHENTICATED (wrong
// password or key, unknown principal), PERMISSION_DENIED (a PDU's signature, replay or
// sequence check failed), INTERNAL (anything else), each with a hint and MIT's texts.
absl::Status GssError(const Failure& failure);

// MIT's text for a status: the major's routine and supplementary messages, or the minor's.
std::string DisplayMajor(uint32_t major);
std::string DisplayMinor(uint32_t minor, Mech mech);

}  // namespace adcsc::gss
