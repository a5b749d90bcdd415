// Per-PDU protection with an NTLM session at packet integrity or privacy: sign (and seal) an
// outgoing PDU built with a placeholder verifier, verify (and unseal) a received one in place.
// The whole PDU up to the sec_trailer is signed; only the stub and its padding are sealed.
// Thread-safety: as ntlm::Session (one sender and one receiver at a time).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "node/ntlm/session.h"
#include "node/rpc/pdu.h"

namespace adcsc::rpc {

// Signs (kPktIntegrity) or seals and signs (kPktPrivacy) `pdu` in place and writes the
// signature over its placeholder auth_value.
void ProtectPdu(ntlm::Session& session, uint8_t level, OutgoingPdu& pdu);

// Verifies (kPktIntegrity) or unseals and verifies (kPktPrivacy) a received PDU in place.
// PERMISSION_DENIED when the signature does not match; the session's receive side is then
// unusable and the connection must be dropped.
absl::Status UnprotectPdu(ntlm::Session& session, uint8_t level, Bytes& pdu, size_t max_frag_length = kMaxFragLength);

}  // namespace adcsc::rpc
