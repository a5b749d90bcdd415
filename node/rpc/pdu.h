// Connection-oriented DCE/RPC PDUs (DCE 1.1 chapter 12, MS-RPCE 2.2.2): encode/decode of every
// type, auth verifier layout for NTLM sign/seal, framing, fragmentation and reassembly.
// Thread-safety: pure functions and value types; a Reassembler belongs to one call at a time.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "node/rpc/uuid.h"

namespace adcsc::rpc {

// ---------------------------------------------------------------------------------------------
// Constants

enum class PduType : uint8_t {
  kRequest = 0,
  kResponse = 2,
  kFault = 3,
  kBind = 11,
  kBindAck = 12,
  kBindNak = 13,
  kAlterContext = 14,
  kAlterContextResp = 15,
  kAuth3 = 16,
  kShutdown = 17,
  kCoCancel = 18,
  kOrphaned = 19,
};
// "request", "bind_ack", ...; "unknown" for values outside the enum.
std::string_view PduTypeName(PduType type);

// pfc_flags bits.
namespace pfc {
inline constexpr uint8_t kFirstFrag = 0x01;
inline constexpr uint8_t kLastFrag = 0x02;
inline constexpr uint8_t kPendingCancel = 0x04;      // request/response: a cancel is pending
inline constexpr uint8_t kSupportHeaderSign = 0x04;  // bind/alter_context (MS-RPCE 2.2.2.3)
inline constexpr uint8_t kReserved1 = 0x08;
inline constexpr uint8_t kConcMpx = 0x10;
inline constexpr uint8_t kDidNotExecute = 0x20;
inline constexpr uint8_t kMaybe = 0x40;
inline constexpr uint8_t kObjectUuid = 0x80;
}  // namespace pfc

inline constexpr uint8_t kRpcVersion = 5;
inline constexpr uint8_t kRpcVersionMinor = 0;
// Integers little-endian, characters ASCII, floats IEEE: the only representation adcsc speaks.
inline constexpr std::array<uint8_t, 4> kLittleEndianDrep = {0x10, 0x00, 0x00, 0x00};

inline constexpr size_t kCommonHeaderSize = 16;
inline constexpr size_t kRequestHeaderSize = 24;  // + 16 when PFC_OBJECT_UUID is set
inline constexpr size_t kResponseHeaderSize = 24;
inline constexpr size_t kFaultHeaderSize = 32;
inline constexpr size_t kSecTrailerSize = 8;
// Largest frag_length the 16-bit field can express, in bytes.
inline constexpr size_t kMaxFragLength = 0xFFFF;
// Every implementation must accept fragments of this many bytes (DCE 1.1 MustRecvFragSize);
// a bind must not negotiate below it.
inline constexpr uint16_t kMustRecvFragSize = 1432;
// Windows' default max_xmit_frag / max_recv_frag in a bind, in bytes.
inline constexpr uint16_t kWindowsDefaultFragSize = 5840;
// Default bound on a reassembled stub (bytes); ADCS responses are a few KiB to tens of KiB.
inline constexpr size_t kDefaultMaxReassembledSize = 4 * 1024 * 1024;
// MS-RPCE 2.2.2.11: the sec_trailer starts 16-byte aligned from the start of the stub in
// request/response/fault PDUs (Windows pads to this; 4 would be the minimum for NTLM).
inline constexpr size_t kStubAuthPadAlignment = 16;
// In other PDUs the sec_trailer is 4-byte aligned relative to the start of the PDU.
inline constexpr size_t kTrailerAlignment = 4;
// NTLM's auth_value for signed/sealed PDUs: the 16-byte NTLMSSP_MESSAGE_SIGNATURE.
inline constexpr uint16_t kNtlmSignatureSize = 16;

// auth_type values (MS-RPCE 2.2.1.1.7).
namespace authn {
inline constexpr uint8_t kNone = 0x00;
inline constexpr uint8_t kGssNegotiate = 0x09;
inline constexpr uint8_t kWinNt = 0x0A;  // NTLM
inline constexpr uint8_t kGssSchannel = 0x0E;
inline constexpr uint8_t kGssKerberos = 0x10;
inline constexpr uint8_t kNetlogon = 0x44;
inline constexpr uint8_t kDefault = 0xFF;
}  // namespace authn

// auth_level values (MS-RPCE 2.2.1.1.8).
namespace authn_level {
inline constexpr uint8_t kDefault = 0;
inline constexpr uint8_t kNone = 1;
inline constexpr uint8_t kConnect = 2;
inline constexpr uint8_t kCall = 3;
inline constexpr uint8_t kPkt = 4;
inline constexpr uint8_t kPktIntegrity = 5;
inline constexpr uint8_t kPktPrivacy = 6;
}  // namespace authn_level

// Result of one presentation context in bind_ack / alter_context_resp.
namespace context_result {
inline constexpr uint16_t kAcceptance = 0;
inline constexpr uint16_t kUserRejection = 1;
inline constexpr uint16_t kProviderRejection = 2;
inline constexpr uint16_t kNegotiateAck = 3;  // answer to bind-time feature negotiation (MS-RPCE)
}  // namespace context_result
// Reasons accompanying a provider rejection.
namespace context_reason {
inline constexpr uint16_t kNotSpecified = 0;
inline constexpr uint16_t kAbstractSyntaxNotSupported = 1;
inline constexpr uint16_t kProposedTransferSyntaxesNotSupported = 2;
inline constexpr uint16_t kLocalLimitExceeded = 3;
}  // namespace context_reason

// bind_nak provider_reject_reason values.
namespace bind_nak_reason {
inline constexpr uint16_t kNotSpecified = 0;
inline constexpr uint16_t kTemporaryCongestion = 1;
inline constexpr uint16_t kLocalLimitExceeded = 2;
inline constexpr uint16_t kCalledPaddrUnknown = 3;
inline constexpr uint16_t kProtocolVersionNotSupported = 4;
inline constexpr uint16_t kDefaultContextNotSupported = 5;
inline constexpr uint16_t kUserDataNotReadable = 6;
inline constexpr uint16_t kNoPsapAvailable = 7;
inline constexpr uint16_t kAuthenticationTypeNotRecognized = 8;  // MS-RPCE
inline constexpr uint16_t kInvalidChecksum = 9;                  // MS-RPCE
}  // namespace bind_nak_reason
std::string_view BindNakReasonName(uint16_t reason);

// Fault PDU status codes (DCE 1.1 appendix E and the Windows values MS-RPCE uses).
namespace fault {
inline constexpr uint32_t kOther = 0x00000001;              // nca_s_fault_other
inline constexpr uint32_t kAccessDenied = 0x00000005;       // nca_s_fault_access_denied
inline constexpr uint32_t kUnknownIf = 0x000006B5;          // RPC_S_UNKNOWN_IF
inline constexpr uint32_t kServerTooBusy = 0x000006BB;      // RPC_S_SERVER_TOO_BUSY
inline constexpr uint32_t kProtocolError = 0x000006C0;      // RPC_S_PROTOCOL_ERROR
inline constexpr uint32_t kInvalidBound = 0x000006C6;       // RPC_X_INVALID_BOUND
inline constexpr uint32_t kProcnumOutOfRange = 0x000006D1;  // RPC_S_PROCNUM_OUT_OF_RANGE
inline constexpr uint32_t kCantPerform = 0x000006D8;        // nca_s_fault_cant_perform
inline constexpr uint32_t kCannotSupport = 0x000006E4;      // rpc_s_cannot_support
inline constexpr uint32_t kNullRefPointer = 0x000006F4;     // RPC_X_NULL_REF_POINTER
inline constexpr uint32_t kNdr = 0x000006F7;                // nca_s_fault_ndr (RPC_X_BAD_STUB_DATA)
inline constexpr uint32_t kCallCancelled = 0x0000071A;      // RPC_S_CALL_CANCELLED
inline constexpr uint32_t kSecPkgError = 0x00000721;        // nca_s_fault_sec_pkg_error
inline constexpr uint32_t kIntDivByZero = 0x1C000001;
inline constexpr uint32_t kAddrError = 0x1C000002;
inline constexpr uint32_t kFpDivZero = 0x1C000003;
inline constexpr uint32_t kFpUnderflow = 0x1C000004;
inline constexpr uint32_t kFpOverflow = 0x1C000005;
inline constexpr uint32_t kInvalidTag = 0x1C000006;
inline constexpr uint32_t kFaultInvalidBound = 0x1C000007;
inline constexpr uint32_t kRpcVersionMismatch = 0x1C000008;
inline constexpr uint32_t kUnspecReject = 0x1C000009;
inline constexpr uint32_t kBadActid = 0x1C00000A;
inline constexpr uint32_t kWhoAreYouFailed = 0x1C00000B;
inline constexpr uint32_t kManagerNotEntered = 0x1C00000C;
inline constexpr uint32_t kCancel = 0x1C00000D;
inline constexpr uint32_t kIllInst = 0x1C00000E;
inline constexpr uint32_t kFpError = 0x1C00000F;
inline constexpr uint32_t kIntOverflow = 0x1C000010;
inline constexpr uint32_t kUnspec = 0x1C000012;
inline constexpr uint32_t kRemoteCommFailure = 0x1C000013;
inline constexpr uint32_t kPipeEmpty = 0x1C000014;
inline constexpr uint32_t kPipeClosed = 0x1C000015;
inline constexpr uint32_t kPipeOrder = 0x1C000016;
inline constexpr uint32_t kPipeDiscipline = 0x1C000017;
inline constexpr uint32_t kPipeCommError = 0x1C000018;
inline constexpr uint32_t kPipeMemory = 0x1C000019;
inline constexpr uint32_t kContextMismatch = 0x1C00001A;
inline constexpr uint32_t kRemoteNoMemory = 0x1C00001B;
inline constexpr uint32_t kInvalidPresContextId = 0x1C00001C;
inline constexpr uint32_t kUnsupportedAuthnLevel = 0x1C00001D;
inline constexpr uint32_t kInvalidChecksum = 0x1C00001F;
inline constexpr uint32_t kInvalidCrc = 0x1C000020;
inline constexpr uint32_t kUserDefined = 0x1C000021;
inline constexpr uint32_t kTxOpenFailed = 0x1C000022;
inline constexpr uint32_t kCodesetConvError = 0x1C000023;
inline constexpr uint32_t kObjectNotFound = 0x1C000024;
inline constexpr uint32_t kNoClientStub = 0x1C000025;
inline constexpr uint32_t kCommFailure = 0x1C010001;
inline constexpr uint32_t kOpRangeError = 0x1C010002;  // nca_s_op_rng_error
inline constexpr uint32_t kUnkIf = 0x1C010003;         // nca_s_unk_if
inline constexpr uint32_t kWrongBootTime = 0x1C010006;
inline constexpr uint32_t kYouCrashed = 0x1C010009;
inline constexpr uint32_t kProtoError = 0x1C01000B;  // nca_s_proto_error
inline constexpr uint32_t kOutArgsTooBig = 0x1C010013;
inline constexpr uint32_t kNcaServerTooBusy = 0x1C010014;  // nca_s_server_too_busy
inline constexpr uint32_t kStringTooLong = 0x1C010015;
inline constexpr uint32_t kUnsupportedType = 0x1C010017;
}  // namespace fault
// The symbolic name of a fault status ("nca_s_op_rng_error", "nca_s_fault_ndr", ...), or
// "unknown" when the code is not in the table.
std::string_view FaultStatusName(uint32_t status);

// ---------------------------------------------------------------------------------------------
// PDU model

struct CommonHeader {
  uint8_t rpc_vers = kRpcVersion;
  uint8_t rpc_vers_minor = kRpcVersionMinor;
  PduType type = PduType::kRequest;
  uint8_t flags = pfc::kFirstFrag | pfc::kLastFrag;
  std::array<uint8_t, 4> drep = kLittleEndianDrep;
  uint16_t frag_length = 0;  // computed by EncodePdu
  uint16_t auth_length = 0;  // computed by EncodePdu
  uint32_t call_id = 0;
};

struct SecTrailer {
  uint8_t auth_type = authn::kNone;
  uint8_t auth_level = authn_level::kNone;
  uint8_t auth_pad_length = 0;  // computed by EncodePdu
  uint8_t auth_reserved = 0;
  uint32_t auth_context_id = 0;
};

struct AuthVerifier {
  SecTrailer trailer;
  Bytes auth_value;  // auth_length bytes (an NTLM token or signature)
};

// p_cont_elem_t: one presentation context offered in bind / alter_context.
struct ContextElement {
  uint16_t context_id = 0;
  SyntaxId abstract_syntax;
  std::vector<SyntaxId> transfer_syntaxes;
};

// bind and alter_context.
struct BindBody {
  uint16_t max_xmit_frag = kWindowsDefaultFragSize;
  uint16_t max_recv_frag = kWindowsDefaultFragSize;
  uint32_t assoc_group_id = 0;
  std::vector<ContextElement> contexts;
};

// p_result_t.
struct ContextResult {
  uint16_t result = context_result::kAcceptance;
  // A context_reason value, or for kNegotiateAck the accepted bind_feature bitmask.
  uint16_t reason = context_reason::kNotSpecified;
  SyntaxId transfer_syntax;  // all zero when rejected or for kNegotiateAck
};

// bind_ack and alter_context_resp.
struct BindAckBody {
  uint16_t max_xmit_frag = kWindowsDefaultFragSize;
  uint16_t max_recv_frag = kWindowsDefaultFragSize;
  uint32_t assoc_group_id = 0;
  // port_any_t as text without its NUL: Windows sends the server's port ("49667"), sent as
  // length 6 including the NUL; empty is sent as length 0 (alter_context_resp does that).
  std::string secondary_address;
  std::vector<ContextResult> results;
};

struct BindNakBody {
  uint16_t reject_reason = bind_nak_reason::kNotSpecified;
  std::vector<std::pair<uint8_t, uint8_t>> versions;  // supported (major, minor) pairs
  Bytes extra;                                        // MS-RPCE's optional signature + extended error, kept opaque
};

struct RequestBody {
  uint32_t alloc_hint = 0;
  uint16_t context_id = 0;
  uint16_t opnum = 0;
  std::optional<Uuid> object;  // present iff PFC_OBJECT_UUID (EncodePdu sets the flag)
  Bytes stub;                  // without auth padding
};

struct ResponseBody {
  uint32_t alloc_hint = 0;
  uint16_t context_id = 0;
  uint8_t cancel_count = 0;
  uint8_t reserved = 0;
  Bytes stub;  // without auth padding
};

struct FaultBody {
  uint32_t alloc_hint = 0;
  uint16_t context_id = 0;
  uint8_t cancel_count = 0;
  uint8_t reserved = 0;  // MS-RPCE uses bit 0x01 to flag extended error info in the stub
  uint32_t status = 0;
  uint32_t reserved2 = 0;
  Bytes stub;  // optional extended error data; usually empty
};

// rpc_auth_3: four ignored pad bytes, then the verifier with the NTLM AUTHENTICATE message.
struct Auth3Body {};

// shutdown, co_cancel, orphaned: header (and for the last two an optional verifier) only.
struct EmptyBody {};

using PduBody =
    std::variant<RequestBody, ResponseBody, FaultBody, BindBody, BindAckBody, BindNakBody, Auth3Body, EmptyBody>;

struct Pdu {
  CommonHeader header;
  PduBody body;
  std::optional<AuthVerifier> auth;
};

// A Pdu of `type` with FIRST_FRAG|LAST_FRAG and the body variant that type needs.
Pdu MakePdu(PduType type, uint32_t call_id, PduBody body);

// ---------------------------------------------------------------------------------------------
// Encode / decode

// Serializes `pdu`. frag_length, auth_length and auth_pad_length are computed (the values in
// the struct are ignored); PFC_OBJECT_UUID follows RequestBody::object. With an auth verifier,
// request/response/fault stubs are zero-padded to a multiple of kStubAuthPadAlignment and other
// PDUs to a 4-byte-aligned sec_trailer. Fails if the body does not match header.type or the
// result exceeds 65535 bytes.
absl::StatusOr<Bytes> EncodePdu(const Pdu& pdu);

// Validates the 16-byte common header at the start of `bytes`: rpc_vers 5 (minor 0 or 1),
// little-endian/ASCII/IEEE drep, a connection-oriented PDU type, 16 <= frag_length <=
// max_frag_length, and room for the sec_trailer and auth_value when auth_length != 0.
absl::StatusOr<CommonHeader> DecodeCommonHeader(ByteView bytes, size_t max_frag_length = kMaxFragLength);

// Framing for a socket reader: how many bytes the PDU starting at `buffered` occupies. With
// fewer than 16 bytes buffered returns kCommonHeaderSize (read that much first); otherwise
// validates the header (as DecodeCommonHeader) and returns frag_length. Read until
// buffered.size() reaches the answer, then DecodePdu exactly that many bytes.
absl::StatusOr<size_t> NextPduSize(ByteView buffered, size_t max_frag_length = kMaxFragLength);

// Decodes exactly one PDU; `bytes` must be frag_length long. Sealed stubs are returned as
// they are (unseal first using LocateAuth). Stubs exclude the auth padding.
absl::StatusOr<Pdu> DecodePdu(ByteView bytes, size_t max_frag_length = kMaxFragLength);

// ---------------------------------------------------------------------------------------------
// Auth verifier layout (for the NTLM layer's in-place sign/seal)

// Byte offsets inside one PDU carrying an auth verifier.
struct AuthLayout {
  size_t stub_offset = 0;     // first stub byte (after the PDU-specific header)
  size_t stub_length = 0;     // stub bytes, excluding padding
  size_t pad_length = 0;      // auth_pad_length
  size_t trailer_offset = 0;  // the 8-byte sec_trailer
  size_t auth_value_offset = 0;
  size_t auth_value_length = 0;

  // Encrypted with packet privacy: stub plus its padding, [seal_offset, +seal_length).
  size_t seal_offset() const { return stub_offset; }
  size_t seal_length() const { return trailer_offset - stub_offset; }
  // Covered by the signature: header through sec_trailer, [0, sign_length).
  size_t sign_length() const { return auth_value_offset; }
};

// Describes what an auth verifier will carry; the auth_value is filled in later.
struct AuthSpec {
  uint8_t auth_type = authn::kWinNt;
  uint8_t auth_level = authn_level::kPktPrivacy;
  uint32_t context_id = 0;
  uint16_t auth_value_length = kNtlmSignatureSize;
};

// Where the stub, padding, sec_trailer and auth_value of a received PDU lie (header validated;
// the auth verifier must be present). For PDUs without a stub (bind, auth3...) the "stub" is
// the PDU body after the common header.
absl::StatusOr<AuthLayout> LocateAuth(ByteView pdu, size_t max_frag_length = kMaxFragLength);

// A serialized PDU ready to send, and where to sign/seal it when it has an auth verifier.
struct OutgoingPdu {
  Bytes bytes;
  std::optional<AuthLayout> auth;
};

// Encodes `pdu` (whose `auth` is ignored) with a verifier described by `spec` whose
// auth_value is `spec.auth_value_length` zero bytes: frag_length and auth_length are final,
// so the NTLM layer seals [seal_offset, +seal_length) and writes the signature over the
// placeholder at auth_value_offset.
absl::StatusOr<OutgoingPdu> EncodeWithAuthPlaceholder(const Pdu& pdu, const AuthSpec& spec);

// ---------------------------------------------------------------------------------------------
// Fragmentation and reassembly

// Identity of one outgoing call's fragments.
struct CallFragmentHeader {
  PduType type = PduType::kRequest;  // kRequest or kResponse
  uint32_t call_id = 0;
  uint16_t context_id = 0;
  uint16_t opnum = 0;          // requests only
  std::optional<Uuid> object;  // requests only
  uint8_t extra_flags = 0;     // e.g. pfc::kPendingCancel; FIRST/LAST are set here
};

// Splits `stub` into request or response fragments no longer than `max_frag_length` bytes
// (the peer's negotiated max_recv_frag), each with FIRST_FRAG / LAST_FRAG as appropriate and
// alloc_hint = stub bytes still to send (this fragment included). With `auth`, each fragment
// carries a placeholder verifier (see EncodeWithAuthPlaceholder) and every fragment but the
// last carries a multiple of 16 stub bytes so that only the last needs padding. An empty
// stub yields one fragment. Fails when max_frag_length leaves no room for stub bytes; sizes
// below kMustRecvFragSize are accepted (tests use tiny ones), so callers should refuse a bind
// that negotiates less than that.
absl::StatusOr<std::vector<OutgoingPdu>> FragmentStub(const CallFragmentHeader& header, ByteView stub,
                                                      size_t max_frag_length, const std::optional<AuthSpec>& auth);

// Collects the fragments of one request or response (already unsealed and decoded), in
// order. Checks: the first has FIRST_FRAG, later ones do not; all share the PDU type, call_id,
// context id (and opnum for requests); alloc_hint and the accumulated stub stay within the
// bound. Any error resets the reassembler (the call is unusable; fault it or drop the
// connection).
class Reassembler {
 public:
  explicit Reassembler(size_t max_stub_size = kDefaultMaxReassembledSize) : max_stub_size_(max_stub_size) {}

  // Adds one fragment; true when it carried LAST_FRAG and the stub is complete.
  absl::StatusOr<bool> Add(const Pdu& fragment);
  // The assembled stub; the reassembler then accepts a new call.
  Bytes TakeStub();

  bool in_progress() const { return first_.has_value(); }
  // The first fragment's header and body with an empty stub (opnum, context id, object...);
  // valid while a call is in progress or complete and not yet taken.
  const std::optional<Pdu>& first_fragment() const { return first_; }
  void Reset();

 private:
  size_t max_stub_size_;
  std::optional<Pdu> first_;
  Bytes stub_;
  bool complete_ = false;
};

}  // namespace adcsc::rpc
