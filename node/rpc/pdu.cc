#include "node/rpc/pdu.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace adcsc::rpc {
namespace {

// Offsets of the common header fields.
constexpr size_t kOffVers = 0;
constexpr size_t kOffVersMinor = 1;
constexpr size_t kOffType = 2;
constexpr size_t kOffFlags = 3;
constexpr size_t kOffDrep = 4;
constexpr size_t kOffFragLength = 8;
constexpr size_t kOffAuthLength = 10;
constexpr size_t kOffCallId = 12;

// DCE 1.1 allows minor version 1 as well; Windows sends 0 but accepts both.
constexpr uint8_t kMaxRpcVersionMinor = 1;
// drep[0]: high nibble integer representation (1 = little-endian), low nibble character set
// (0 = ASCII); drep[1]: floating point (0 = IEEE).
constexpr uint8_t kDrepLittleEndianAscii = 0x10;
constexpr uint8_t kDrepIeeeFloat = 0x00;

// Fixed parts of bodies, in bytes, after the common header.
constexpr size_t kBindFixedSize = 12;           // max_xmit, max_recv, assoc_group, n + reserved
constexpr size_t kContextElementFixedSize = 4;  // p_cont_id, n_transfer_syn, reserved
constexpr size_t kBindAckFixedSize = 10;        // max_xmit, max_recv, assoc_group, sec_addr length
constexpr size_t kResultListFixedSize = 4;      // n_results + reserved
constexpr size_t kContextResultSize = 4 + SyntaxId::kWireSize;
constexpr size_t kAuth3PadSize = 4;
constexpr size_t kObjectUuidSize = Uuid::kWireSize;
constexpr size_t kMaxListEntries = 0xFF;  // n_context_elem, n_transfer_syn, n_results are u8

// --- little-endian helpers over a byte vector / span (PDU layouts are fixed, not NDR) -------

void PutU8(Bytes* out, uint8_t v) { out->push_back(v); }
void PutU16(Bytes* out, uint16_t v) {
  out->push_back(static_cast<uint8_t>(v));
  out->push_back(static_cast<uint8_t>(v >> 8));
}
void PutU32(Bytes* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutBytes(Bytes* out, ByteView b) { out->insert(out->end(), b.begin(), b.end()); }
void PutSyntax(Bytes* out, const SyntaxId& s) {
  PutBytes(out, s.uuid.wire());
  PutU16(out, s.major);
  PutU16(out, s.minor);
}
void SetU16(Bytes* out, size_t at, uint16_t v) {
  (*out)[at] = static_cast<uint8_t>(v);
  (*out)[at + 1] = static_cast<uint8_t>(v >> 8);
}

uint16_t GetU16(ByteView b, size_t at) { return static_cast<uint16_t>(b[at] | b[at + 1] << 8); }
uint32_t GetU32(ByteView b, size_t at) {
  return static_cast<uint32_t>(b[at]) | static_cast<uint32_t>(b[at + 1]) << 8 | static_cast<uint32_t>(b[at + 2]) << 16 |
         static_cast<uint32_t>(b[at + 3]) << 24;
}

absl::Status PduError(PduType type, std::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("RPC ", AbslView(PduTypeName(type)), " PDU: ", AbslView(problem)));
}

// Sequential bounds-checked reader over a PDU body.
class BodyReader {
 public:
  BodyReader(ByteView bytes, size_t start, size_t end, PduType type)
      : bytes_(bytes), pos_(start), end_(end), type_(type) {}

  absl::Status Need(size_t n, std::string_view field) const {
    if (n > end_ - pos_) {
      return PduError(type_, absl::StrCat(AbslView(field), " needs ", n, " bytes at offset ", pos_,
                                          " but the body ends at ", end_));
    }
    return absl::OkStatus();
  }
  absl::Status U8(std::string_view field, uint8_t* v) {
    if (absl::Status s = Need(1, field); !s.ok()) return s;
    *v = bytes_[pos_++];
    return absl::OkStatus();
  }
  absl::Status U16(std::string_view field, uint16_t* v) {
    if (absl::Status s = Need(2, field); !s.ok()) return s;
    *v = GetU16(bytes_, pos_);
    pos_ += 2;
    return absl::OkStatus();
  }
  absl::Status U32(std::string_view field, uint32_t* v) {
    if (absl::Status s = Need(4, field); !s.ok()) return s;
    *v = GetU32(bytes_, pos_);
    pos_ += 4;
    return absl::OkStatus();
  }
  absl::Status Raw(std::string_view field, size_t n, ByteView* v) {
    if (absl::Status s = Need(n, field); !s.ok()) return s;
    *v = bytes_.subspan(pos_, n);
    pos_ += n;
    return absl::OkStatus();
  }
  absl::Status Syntax(std::string_view field, SyntaxId* s) {
    ByteView raw;
    if (absl::Status st = Raw(field, SyntaxId::kWireSize, &raw); !st.ok()) return st;
    s->uuid = Uuid::FromWire(raw);
    s->major = GetU16(raw, Uuid::kWireSize);
    s->minor = GetU16(raw, Uuid::kWireSize + 2);
    return absl::OkStatus();
  }
  absl::Status Skip(size_t n, std::string_view field) {
    if (absl::Status s = Need(n, field); !s.ok()) return s;
    pos_ += n;
    return absl::OkStatus();
  }
  size_t pos() const { return pos_; }
  size_t left() const { return end_ - pos_; }

 private:
  ByteView bytes_;
  size_t pos_;
  size_t end_;
  PduType type_;
};

bool IsKnownType(uint8_t t) {
  switch (static_cast<PduType>(t)) {
    case PduType::kRequest:
    case PduType::kResponse:
    case PduType::kFault:
    case PduType::kBind:
    case PduType::kBindAck:
    case PduType::kBindNak:
    case PduType::kAlterContext:
    case PduType::kAlterContextResp:
    case PduType::kAuth3:
    case PduType::kShutdown:
    case PduType::kCoCancel:
    case PduType::kOrphaned:
      return true;
  }
  return false;
}

bool CarriesStub(PduType t) { return t == PduType::kRequest || t == PduType::kResponse || t == PduType::kFault; }

// Size of the type-specific header preceding the stub (or body) for a PDU with these flags.
size_t StubOffsetFor(PduType type, uint8_t flags) {
  switch (type) {
    case PduType::kRequest:
      return kRequestHeaderSize + ((flags & pfc::kObjectUuid) != 0 ? kObjectUuidSize : 0);
    case PduType::kResponse:
      return kResponseHeaderSize;
    case PduType::kFault:
      return kFaultHeaderSize;
    default:
      return kCommonHeaderSize;
  }
}

template <typename T>
absl::StatusOr<const T*> BodyAs(const Pdu& pdu) {
  const T* body = std::get_if<T>(&pdu.body);
  if (body == nullptr) return PduError(pdu.header.type, "the body does not match the PDU type");
  return body;
}

// Serializes everything but the auth verifier; reports where the stub starts and how long it
// is (stub PDUs) and the flags after OBJECT_UUID adjustment.
absl::Status EncodeBody(const Pdu& pdu, Bytes* out, uint8_t* flags, size_t* stub_offset, size_t* stub_length) {
  const PduType type = pdu.header.type;
  *stub_offset = out->size();
  *stub_length = 0;
  switch (type) {
    case PduType::kRequest: {
      absl::StatusOr<const RequestBody*> b = BodyAs<RequestBody>(pdu);
      if (!b.ok()) return b.status();
      PutU32(out, (*b)->alloc_hint);
      PutU16(out, (*b)->context_id);
      PutU16(out, (*b)->opnum);
      if ((*b)->object.has_value()) {
        *flags |= pfc::kObjectUuid;
        PutBytes(out, (*b)->object->wire());
      } else {
        *flags &= static_cast<uint8_t>(~pfc::kObjectUuid);
      }
      *stub_offset = out->size();
      *stub_length = (*b)->stub.size();
      PutBytes(out, (*b)->stub);
      return absl::OkStatus();
    }
    case PduType::kResponse: {
      absl::StatusOr<const ResponseBody*> b = BodyAs<ResponseBody>(pdu);
      if (!b.ok()) return b.status();
      PutU32(out, (*b)->alloc_hint);
      PutU16(out, (*b)->context_id);
      PutU8(out, (*b)->cancel_count);
      PutU8(out, (*b)->reserved);
      *stub_offset = out->size();
      *stub_length = (*b)->stub.size();
      PutBytes(out, (*b)->stub);
      return absl::OkStatus();
    }
    case PduType::kFault: {
      absl::StatusOr<const FaultBody*> b = BodyAs<FaultBody>(pdu);
      if (!b.ok()) return b.status();
      PutU32(out, (*b)->alloc_hint);
      PutU16(out, (*b)->context_id);
      PutU8(out, (*b)->cancel_count);
      PutU8(out, (*b)->reserved);
      PutU32(out, (*b)->status);
      PutU32(out, (*b)->reserved2);
      *stub_offset = out->size();
      *stub_length = (*b)->stub.size();
      PutBytes(out, (*b)->stub);
      return absl::OkStatus();
    }
    case PduType::kBind:
    case PduType::kAlterContext: {
      absl::StatusOr<const BindBody*> b = BodyAs<BindBody>(pdu);
      if (!b.ok()) return b.status();
      if ((*b)->contexts.size() > kMaxListEntries) return PduError(type, "more than 255 presentation contexts");
      PutU16(out, (*b)->max_xmit_frag);
      PutU16(out, (*b)->max_recv_frag);
      PutU32(out, (*b)->assoc_group_id);
      PutU8(out, static_cast<uint8_t>((*b)->contexts.size()));
      PutU8(out, 0);
      PutU16(out, 0);
      for (const ContextElement& c : (*b)->contexts) {
        if (c.transfer_syntaxes.size() > kMaxListEntries) return PduError(type, "more than 255 transfer syntaxes");
        PutU16(out, c.context_id);
        PutU8(out, static_cast<uint8_t>(c.transfer_syntaxes.size()));
        PutU8(out, 0);
        PutSyntax(out, c.abstract_syntax);
        for (const SyntaxId& t : c.transfer_syntaxes) PutSyntax(out, t);
      }
      return absl::OkStatus();
    }
    case PduType::kBindAck:
    case PduType::kAlterContextResp: {
      absl::StatusOr<const BindAckBody*> b = BodyAs<BindAckBody>(pdu);
      if (!b.ok()) return b.status();
      if ((*b)->results.size() > kMaxListEntries) return PduError(type, "more than 255 context results");
      const std::string& addr = (*b)->secondary_address;
      if (addr.size() >= kMaxFragLength) return PduError(type, "secondary address too long");
      PutU16(out, (*b)->max_xmit_frag);
      PutU16(out, (*b)->max_recv_frag);
      PutU32(out, (*b)->assoc_group_id);
      PutU16(out, static_cast<uint16_t>(addr.empty() ? 0 : addr.size() + 1));
      if (!addr.empty()) {
        out->insert(out->end(), addr.begin(), addr.end());
        PutU8(out, 0);
      }
      // The result list starts 4-byte aligned relative to the start of the PDU.
      out->resize(out->size() + (kTrailerAlignment - out->size() % kTrailerAlignment) % kTrailerAlignment, 0);
      PutU8(out, static_cast<uint8_t>((*b)->results.size()));
      PutU8(out, 0);
      PutU16(out, 0);
      for (const ContextResult& r : (*b)->results) {
        PutU16(out, r.result);
        PutU16(out, r.reason);
        PutSyntax(out, r.transfer_syntax);
      }
      return absl::OkStatus();
    }
    case PduType::kBindNak: {
      absl::StatusOr<const BindNakBody*> b = BodyAs<BindNakBody>(pdu);
      if (!b.ok()) return b.status();
      if ((*b)->versions.size() > kMaxListEntries) return PduError(type, "more than 255 versions");
      PutU16(out, (*b)->reject_reason);
      PutU8(out, static_cast<uint8_t>((*b)->versions.size()));
      for (const auto& [major, minor] : (*b)->versions) {
        PutU8(out, major);
        PutU8(out, minor);
      }
      PutBytes(out, (*b)->extra);
      return absl::OkStatus();
    }
    case PduType::kAuth3: {
      absl::StatusOr<const Auth3Body*> b = BodyAs<Auth3Body>(pdu);
      if (!b.ok()) return b.status();
      out->resize(out->size() + kAuth3PadSize, 0);
      return absl::OkStatus();
    }
    case PduType::kShutdown:
    case PduType::kCoCancel:
    case PduType::kOrphaned: {
      absl::StatusOr<const EmptyBody*> b = BodyAs<EmptyBody>(pdu);
      if (!b.ok()) return b.status();
      return absl::OkStatus();
    }
  }
  return PduError(type, "unknown PDU type");
}

// Encodes `pdu` with `auth` (may be null) and reports the verifier layout when present.
absl::StatusOr<Bytes> EncodeInternal(const Pdu& pdu, const AuthVerifier* auth, AuthLayout* layout) {
  if (!IsKnownType(static_cast<uint8_t>(pdu.header.type))) {
    return absl::InvalidArgumentError(
        absl::StrCat("RPC PDU type ", static_cast<int>(pdu.header.type), " is not connection-oriented"));
  }
  Bytes out(kCommonHeaderSize, 0);
  uint8_t flags = pdu.header.flags;
  size_t stub_offset = 0;
  size_t stub_length = 0;
  if (absl::Status s = EncodeBody(pdu, &out, &flags, &stub_offset, &stub_length); !s.ok()) return s;

  uint16_t auth_length = 0;
  if (auth != nullptr) {
    if (auth->auth_value.size() > kMaxFragLength) return PduError(pdu.header.type, "auth_value too long");
    size_t pad = 0;
    if (CarriesStub(pdu.header.type)) {
      pad = (kStubAuthPadAlignment - stub_length % kStubAuthPadAlignment) % kStubAuthPadAlignment;
    } else {
      stub_offset = kCommonHeaderSize;
      stub_length = out.size() - kCommonHeaderSize;
      pad = (kTrailerAlignment - out.size() % kTrailerAlignment) % kTrailerAlignment;
    }
    out.resize(out.size() + pad, 0);
    const size_t trailer_offset = out.size();
    PutU8(&out, auth->trailer.auth_type);
    PutU8(&out, auth->trailer.auth_level);
    PutU8(&out, static_cast<uint8_t>(pad));
    PutU8(&out, auth->trailer.auth_reserved);
    PutU32(&out, auth->trailer.auth_context_id);
    const size_t auth_value_offset = out.size();
    PutBytes(&out, auth->auth_value);
    auth_length = static_cast<uint16_t>(auth->auth_value.size());
    if (layout != nullptr) {
      *layout = AuthLayout{stub_offset, stub_length, pad, trailer_offset, auth_value_offset, auth->auth_value.size()};
    }
  }
  if (out.size() > kMaxFragLength) {
    return PduError(pdu.header.type, absl::StrCat("encodes to ", out.size(),
                                                  " bytes, over the 65535-byte limit "
                                                  "of one fragment (fragment the stub)"));
  }
  out[kOffVers] = pdu.header.rpc_vers;
  out[kOffVersMinor] = pdu.header.rpc_vers_minor;
  out[kOffType] = static_cast<uint8_t>(pdu.header.type);
  out[kOffFlags] = flags;
  std::copy(pdu.header.drep.begin(), pdu.header.drep.end(), out.begin() + kOffDrep);
  SetU16(&out, kOffFragLength, static_cast<uint16_t>(out.size()));
  SetU16(&out, kOffAuthLength, auth_length);
  for (int i = 0; i < 4; ++i) out[kOffCallId + i] = static_cast<uint8_t>(pdu.header.call_id >> (8 * i));
  return out;
}

absl::Status DecodeBindBody(BodyReader& r, BindBody* b) {
  uint8_t n = 0, reserved8 = 0;
  uint16_t reserved16 = 0;
  if (absl::Status s = r.U16("max_xmit_frag", &b->max_xmit_frag); !s.ok()) return s;
  if (absl::Status s = r.U16("max_recv_frag", &b->max_recv_frag); !s.ok()) return s;
  if (absl::Status s = r.U32("assoc_group_id", &b->assoc_group_id); !s.ok()) return s;
  if (absl::Status s = r.U8("n_context_elem", &n); !s.ok()) return s;
  if (absl::Status s = r.U8("reserved", &reserved8); !s.ok()) return s;
  if (absl::Status s = r.U16("reserved2", &reserved16); !s.ok()) return s;
  // Each element is at least 4 + 20 bytes: check before reserving.
  if (absl::Status s = r.Need(n * (kContextElementFixedSize + SyntaxId::kWireSize), "p_cont_elem list"); !s.ok()) {
    return s;
  }
  b->contexts.reserve(n);
  for (int i = 0; i < n; ++i) {
    ContextElement c;
    uint8_t n_transfer = 0;
    if (absl::Status s = r.U16("p_cont_id", &c.context_id); !s.ok()) return s;
    if (absl::Status s = r.U8("n_transfer_syn", &n_transfer); !s.ok()) return s;
    if (absl::Status s = r.U8("reserved", &reserved8); !s.ok()) return s;
    if (absl::Status s = r.Syntax("abstract_syntax", &c.abstract_syntax); !s.ok()) return s;
    if (absl::Status s = r.Need(n_transfer * SyntaxId::kWireSize, "transfer_syntaxes"); !s.ok()) return s;
    c.transfer_syntaxes.resize(n_transfer);
    for (SyntaxId& t : c.transfer_syntaxes) {
      if (absl::Status s = r.Syntax("transfer_syntax", &t); !s.ok()) return s;
    }
    b->contexts.push_back(std::move(c));
  }
  return absl::OkStatus();
}

absl::Status DecodeBindAckBody(BodyReader& r, BindAckBody* b) {
  uint16_t addr_len = 0, reserved16 = 0;
  uint8_t n = 0, reserved8 = 0;
  if (absl::Status s = r.U16("max_xmit_frag", &b->max_xmit_frag); !s.ok()) return s;
  if (absl::Status s = r.U16("max_recv_frag", &b->max_recv_frag); !s.ok()) return s;
  if (absl::Status s = r.U32("assoc_group_id", &b->assoc_group_id); !s.ok()) return s;
  if (absl::Status s = r.U16("sec_addr length", &addr_len); !s.ok()) return s;
  ByteView addr;
  if (absl::Status s = r.Raw("sec_addr port_spec", addr_len, &addr); !s.ok()) return s;
  if (!addr.empty() && addr.back() == 0) addr = addr.first(addr.size() - 1);
  b->secondary_address.assign(addr.begin(), addr.end());
  if (absl::Status s = r.Skip((kTrailerAlignment - r.pos() % kTrailerAlignment) % kTrailerAlignment, "sec_addr pad");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = r.U8("n_results", &n); !s.ok()) return s;
  if (absl::Status s = r.U8("reserved", &reserved8); !s.ok()) return s;
  if (absl::Status s = r.U16("reserved2", &reserved16); !s.ok()) return s;
  if (absl::Status s = r.Need(n * kContextResultSize, "p_result list"); !s.ok()) return s;
  b->results.resize(n);
  for (ContextResult& res : b->results) {
    if (absl::Status s = r.U16("result", &res.result); !s.ok()) return s;
    if (absl::Status s = r.U16("reason", &res.reason); !s.ok()) return s;
    if (absl::Status s = r.Syntax("transfer_syntax", &res.transfer_syntax); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// Splits the PDU into body and verifier; fills `auth` and returns where the body ends.
absl::StatusOr<size_t> SplitAuth(ByteView bytes, const CommonHeader& h, std::optional<AuthVerifier>* auth) {
  if (h.auth_length == 0) return bytes.size();
  const size_t trailer_offset = h.frag_length - h.auth_length - kSecTrailerSize;  // validated in the header
  AuthVerifier v;
  v.trailer.auth_type = bytes[trailer_offset];
  v.trailer.auth_level = bytes[trailer_offset + 1];
  v.trailer.auth_pad_length = bytes[trailer_offset + 2];
  v.trailer.auth_reserved = bytes[trailer_offset + 3];
  v.trailer.auth_context_id = GetU32(bytes, trailer_offset + 4);
  const size_t value_offset = trailer_offset + kSecTrailerSize;
  v.auth_value.assign(bytes.begin() + value_offset, bytes.begin() + value_offset + h.auth_length);
  *auth = std::move(v);
  return trailer_offset;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Names

std::string_view PduTypeName(PduType type) {
  switch (type) {
    case PduType::kRequest:
      return "request";
    case PduType::kResponse:
      return "response";
    case PduType::kFault:
      return "fault";
    case PduType::kBind:
      return "bind";
    case PduType::kBindAck:
      return "bind_ack";
    case PduType::kBindNak:
      return "bind_nak";
    case PduType::kAlterContext:
      return "alter_context";
    case PduType::kAlterContextResp:
      return "alter_context_resp";
    case PduType::kAuth3:
      return "auth3";
    case PduType::kShutdown:
      return "shutdown";
    case PduType::kCoCancel:
      return "co_cancel";
    case PduType::kOrphaned:
      return "orphaned";
  }
  return "unknown";
}

std::string_view BindNakReasonName(uint16_t reason) {
  switch (reason) {
    case bind_nak_reason::kNotSpecified:
      return "reason_not_specified";
    case bind_nak_reason::kTemporaryCongestion:
      return "temporary_congestion";
    case bind_nak_reason::kLocalLimitExceeded:
      return "local_limit_exceeded";
    case bind_nak_reason::kCalledPaddrUnknown:
      return "called_paddr_unknown";
    case bind_nak_reason::kProtocolVersionNotSupported:
      return "protocol_version_not_supported";
    case bind_nak_reason::kDefaultContextNotSupported:
      return "default_context_not_supported";
    case bind_nak_reason::kUserDataNotReadable:
      return "user_data_not_readable";
    case bind_nak_reason::kNoPsapAvailable:
      return "no_psap_available";
    case bind_nak_reason::kAuthenticationTypeNotRecognized:
      return "authentication_type_not_recognized";
    case bind_nak_reason::kInvalidChecksum:
      return "invalid_checksum";
  }
  return "unknown";
}

std::string_view FaultStatusName(uint32_t status) {
  struct Entry {
    uint32_t code;
    std::string_view name;
  };
  static constexpr Entry kTable[] = {
      {fault::kOther, "nca_s_fault_other"},
      {fault::kAccessDenied, "nca_s_fault_access_denied"},
      {fault::kUnknownIf, "rpc_s_unknown_if"},
      {fault::kServerTooBusy, "rpc_s_server_too_busy"},
      {fault::kProtocolError, "rpc_s_protocol_error"},
      {fault::kInvalidBound, "rpc_x_invalid_bound"},
      {fault::kProcnumOutOfRange, "rpc_s_procnum_out_of_range"},
      {fault::kCantPerform, "nca_s_fault_cant_perform"},
      {fault::kCannotSupport, "rpc_s_cannot_support"},
      {fault::kNullRefPointer, "rpc_x_null_ref_pointer"},
      {fault::kNdr, "nca_s_fault_ndr"},
      {fault::kCallCancelled, "rpc_s_call_cancelled"},
      {fault::kSecPkgError, "nca_s_fault_sec_pkg_error"},
      {fault::kIntDivByZero, "nca_s_fault_int_div_by_zero"},
      {fault::kAddrError, "nca_s_fault_addr_error"},
      {fault::kFpDivZero, "nca_s_fault_fp_div_zero"},
      {fault::kFpUnderflow, "nca_s_fault_fp_underflow"},
      {fault::kFpOverflow, "nca_s_fault_fp_overflow"},
      {fault::kInvalidTag, "nca_s_fault_invalid_tag"},
      {fault::kFaultInvalidBound, "nca_s_fault_invalid_bound"},
      {fault::kRpcVersionMismatch, "nca_s_rpc_version_mismatch"},
      {fault::kUnspecReject, "nca_s_unspec_reject"},
      {fault::kBadActid, "nca_s_bad_actid"},
      {fault::kWhoAreYouFailed, "nca_s_who_are_you_failed"},
      {fault::kManagerNotEntered, "nca_s_manager_not_entered"},
      {fault::kCancel, "nca_s_fault_cancel"},
      {fault::kIllInst, "nca_s_fault_ill_inst"},
      {fault::kFpError, "nca_s_fault_fp_error"},
      {fault::kIntOverflow, "nca_s_fault_int_overflow"},
      {fault::kUnspec, "nca_s_fault_unspec"},
      {fault::kRemoteCommFailure, "nca_s_fault_remote_comm_failure"},
      {fault::kPipeEmpty, "nca_s_fault_pipe_empty"},
      {fault::kPipeClosed, "nca_s_fault_pipe_closed"},
      {fault::kPipeOrder, "nca_s_fault_pipe_order"},
      {fault::kPipeDiscipline, "nca_s_fault_pipe_discipline"},
      {fault::kPipeCommError, "nca_s_fault_pipe_comm_error"},
      {fault::kPipeMemory, "nca_s_fault_pipe_memory"},
      {fault::kContextMismatch, "nca_s_fault_context_mismatch"},
      {fault::kRemoteNoMemory, "nca_s_fault_remote_no_memory"},
      {fault::kInvalidPresContextId, "nca_s_invalid_pres_context_id"},
      {fault::kUnsupportedAuthnLevel, "nca_s_unsupported_authn_level"},
      {fault::kInvalidChecksum, "nca_s_invalid_checksum"},
      {fault::kInvalidCrc, "nca_s_invalid_crc"},
      {fault::kUserDefined, "nca_s_fault_user_defined"},
      {fault::kTxOpenFailed, "nca_s_fault_tx_open_failed"},
      {fault::kCodesetConvError, "nca_s_fault_codeset_conv_error"},
      {fault::kObjectNotFound, "nca_s_fault_object_not_found"},
      {fault::kNoClientStub, "nca_s_fault_no_client_stub"},
      {fault::kCommFailure, "nca_s_comm_failure"},
      {fault::kOpRangeError, "nca_s_op_rng_error"},
      {fault::kUnkIf, "nca_s_unk_if"},
      {fault::kWrongBootTime, "nca_s_wrong_boot_time"},
      {fault::kYouCrashed, "nca_s_you_crashed"},
      {fault::kProtoError, "nca_s_proto_error"},
      {fault::kOutArgsTooBig, "nca_s_out_args_too_big"},
      {fault::kNcaServerTooBusy, "nca_s_server_too_busy"},
      {fault::kStringTooLong, "nca_s_fault_string_too_long"},
      {fault::kUnsupportedType, "nca_s_unsupported_type"},
  };
  for (const Entry& e : kTable) {
    if (e.code == status) return e.name;
  }
  return "unknown";
}

Pdu MakePdu(PduType type, uint32_t call_id, PduBody body) {
  Pdu pdu;
  pdu.header.type = type;
  pdu.header.call_id = call_id;
  pdu.body = std::move(body);
  return pdu;
}

// ---------------------------------------------------------------------------------------------
// Encode / decode

absl::StatusOr<Bytes> EncodePdu(const Pdu& pdu) {
  return EncodeInternal(pdu, pdu.auth.has_value() ? &*pdu.auth : nullptr, nullptr);
}

absl::StatusOr<CommonHeader> DecodeCommonHeader(ByteView bytes, size_t max_frag_length) {
  if (bytes.size() < kCommonHeaderSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("RPC PDU header truncated: ", bytes.size(), " of ", kCommonHeaderSize, " bytes"));
  }
  CommonHeader h;
  h.rpc_vers = bytes[kOffVers];
  h.rpc_vers_minor = bytes[kOffVersMinor];
  const uint8_t raw_type = bytes[kOffType];
  h.flags = bytes[kOffFlags];
  std::copy_n(bytes.begin() + kOffDrep, h.drep.size(), h.drep.begin());
  h.frag_length = GetU16(bytes, kOffFragLength);
  h.auth_length = GetU16(bytes, kOffAuthLength);
  h.call_id = GetU32(bytes, kOffCallId);
  if (h.rpc_vers != kRpcVersion || h.rpc_vers_minor > kMaxRpcVersionMinor) {
    return absl::InvalidArgumentError(absl::StrCat("RPC PDU has version ", h.rpc_vers, ".", h.rpc_vers_minor,
                                                   "; only connection-oriented 5.0/5.1 is spoken"));
  }
  if (!IsKnownType(raw_type)) {
    return absl::InvalidArgumentError(
        absl::StrCat("RPC PDU type ", raw_type, " is not a connection-oriented PDU type"));
  }
  h.type = static_cast<PduType>(raw_type);
  if (h.drep[0] != kDrepLittleEndianAscii || h.drep[1] != kDrepIeeeFloat) {
    return absl::InvalidArgumentError(absl::StrCat("RPC PDU data representation ", h.drep[0], "/", h.drep[1],
                                                   " is not little-endian ASCII IEEE (0x10/0x00)"));
  }
  const size_t max = std::min(max_frag_length, kMaxFragLength);
  if (h.frag_length < kCommonHeaderSize || h.frag_length > max) {
    return absl::InvalidArgumentError(
        absl::StrCat("RPC PDU frag_length ", h.frag_length, " is outside [", kCommonHeaderSize, ", ", max, "]"));
  }
  if (h.auth_length != 0 && kCommonHeaderSize + kSecTrailerSize + h.auth_length > h.frag_length) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RPC PDU auth_length ", h.auth_length, " plus the sec_trailer does not fit in frag_length ", h.frag_length));
  }
  return h;
}

absl::StatusOr<size_t> NextPduSize(ByteView buffered, size_t max_frag_length) {
  if (buffered.size() < kCommonHeaderSize) return kCommonHeaderSize;
  absl::StatusOr<CommonHeader> h = DecodeCommonHeader(buffered, max_frag_length);
  if (!h.ok()) return h.status();
  return h->frag_length;
}

absl::StatusOr<Pdu> DecodePdu(ByteView bytes, size_t max_frag_length) {
  absl::StatusOr<CommonHeader> header = DecodeCommonHeader(bytes, max_frag_length);
  if (!header.ok()) return header.status();
  const PduType type = header->type;
  if (bytes.size() != header->frag_length) {
    return PduError(type,
                    absl::StrCat("buffer holds ", bytes.size(), " bytes but frag_length is ", header->frag_length));
  }
  Pdu pdu;
  pdu.header = *header;
  absl::StatusOr<size_t> body_end = SplitAuth(bytes, *header, &pdu.auth);
  if (!body_end.ok()) return body_end.status();
  BodyReader r(bytes, kCommonHeaderSize, *body_end, type);

  // Stub PDUs: the stub runs to the sec_trailer minus the auth padding.
  auto read_stub = [&](Bytes* stub) -> absl::Status {
    const size_t pad = pdu.auth.has_value() ? pdu.auth->trailer.auth_pad_length : 0;
    if (pad > r.left()) {
      return PduError(type, absl::StrCat("auth_pad_length ", pad, " exceeds the ", r.left(), " stub bytes"));
    }
    ByteView view;
    if (absl::Status s = r.Raw("stub", r.left() - pad, &view); !s.ok()) return s;
    stub->assign(view.begin(), view.end());
    return absl::OkStatus();
  };

  switch (type) {
    case PduType::kRequest: {
      RequestBody b;
      if (absl::Status s = r.U32("alloc_hint", &b.alloc_hint); !s.ok()) return s;
      if (absl::Status s = r.U16("p_cont_id", &b.context_id); !s.ok()) return s;
      if (absl::Status s = r.U16("opnum", &b.opnum); !s.ok()) return s;
      if ((header->flags & pfc::kObjectUuid) != 0) {
        ByteView object;
        if (absl::Status s = r.Raw("object", kObjectUuidSize, &object); !s.ok()) return s;
        b.object = Uuid::FromWire(object);
      }
      if (absl::Status s = read_stub(&b.stub); !s.ok()) return s;
      pdu.body = std::move(b);
      break;
    }
    case PduType::kResponse: {
      ResponseBody b;
      if (absl::Status s = r.U32("alloc_hint", &b.alloc_hint); !s.ok()) return s;
      if (absl::Status s = r.U16("p_cont_id", &b.context_id); !s.ok()) return s;
      if (absl::Status s = r.U8("cancel_count", &b.cancel_count); !s.ok()) return s;
      if (absl::Status s = r.U8("reserved", &b.reserved); !s.ok()) return s;
      if (absl::Status s = read_stub(&b.stub); !s.ok()) return s;
      pdu.body = std::move(b);
      break;
    }
    case PduType::kFault: {
      FaultBody b;
      if (absl::Status s = r.U32("alloc_hint", &b.alloc_hint); !s.ok()) return s;
      if (absl::Status s = r.U16("p_cont_id", &b.context_id); !s.ok()) return s;
      if (absl::Status s = r.U8("cancel_count", &b.cancel_count); !s.ok()) return s;
      if (absl::Status s = r.U8("reserved", &b.reserved); !s.ok()) return s;
      if (absl::Status s = r.U32("status", &b.status); !s.ok()) return s;
      if (absl::Status s = r.U32("reserved2", &b.reserved2); !s.ok()) return s;
      if (absl::Status s = read_stub(&b.stub); !s.ok()) return s;
      pdu.body = std::move(b);
      break;
    }
    case PduType::kBind:
    case PduType::kAlterContext: {
      BindBody b;
      if (absl::Status s = DecodeBindBody(r, &b); !s.ok()) return s;
      pdu.body = std::move(b);
      break;
    }
    case PduType::kBindAck:
    case PduType::kAlterContextResp: {
      BindAckBody b;
      if (absl::Status s = DecodeBindAckBody(r, &b); !s.ok()) return s;
      pdu.body = std::move(b);
      break;
    }
    case PduType::kBindNak: {
      BindNakBody b;
      if (absl::Status s = r.U16("provider_reject_reason", &b.reject_reason); !s.ok()) return s;
      // The version list is optional in practice (DCE requires it; some stacks omit it).
      if (r.left() > 0) {
        uint8_t n = 0;
        if (absl::Status s = r.U8("n_protocols", &n); !s.ok()) return s;
        if (absl::Status s = r.Need(2 * static_cast<size_t>(n), "versions"); !s.ok()) return s;
        for (int i = 0; i < n; ++i) {
          uint8_t major = 0, minor = 0;
          if (absl::Status s = r.U8("major", &major); !s.ok()) return s;
          if (absl::Status s = r.U8("minor", &minor); !s.ok()) return s;
          b.versions.emplace_back(major, minor);
        }
        ByteView extra;
        if (absl::Status s = r.Raw("extra", r.left(), &extra); !s.ok()) return s;
        b.extra.assign(extra.begin(), extra.end());
      }
      pdu.body = std::move(b);
      break;
    }
    case PduType::kAuth3: {
      if (absl::Status s = r.Skip(kAuth3PadSize, "pad"); !s.ok()) return s;
      pdu.body = Auth3Body{};
      break;
    }
    case PduType::kShutdown:
    case PduType::kCoCancel:
    case PduType::kOrphaned:
      pdu.body = EmptyBody{};
      break;
  }
  return pdu;
}

// ---------------------------------------------------------------------------------------------
// Auth layout

absl::StatusOr<AuthLayout> LocateAuth(ByteView pdu, size_t max_frag_length) {
  absl::StatusOr<CommonHeader> h = DecodeCommonHeader(pdu, max_frag_length);
  if (!h.ok()) return h.status();
  if (pdu.size() != h->frag_length) {
    return PduError(h->type, absl::StrCat("buffer holds ", pdu.size(), " bytes but frag_length is ", h->frag_length));
  }
  if (h->auth_length == 0) return PduError(h->type, "has no auth verifier (auth_length 0)");
  AuthLayout layout;
  layout.trailer_offset = h->frag_length - h->auth_length - kSecTrailerSize;
  layout.auth_value_offset = layout.trailer_offset + kSecTrailerSize;
  layout.auth_value_length = h->auth_length;
  layout.pad_length = pdu[layout.trailer_offset + 2];
  layout.stub_offset = StubOffsetFor(h->type, h->flags);
  if (layout.stub_offset + layout.pad_length > layout.trailer_offset) {
    return PduError(h->type, absl::StrCat("header (", layout.stub_offset, " bytes) and auth_pad_length ",
                                          layout.pad_length, " overrun the sec_trailer at ", layout.trailer_offset));
  }
  layout.stub_length = layout.trailer_offset - layout.pad_length - layout.stub_offset;
  return layout;
}

absl::StatusOr<OutgoingPdu> EncodeWithAuthPlaceholder(const Pdu& pdu, const AuthSpec& spec) {
  AuthVerifier placeholder;
  placeholder.trailer.auth_type = spec.auth_type;
  placeholder.trailer.auth_level = spec.auth_level;
  placeholder.trailer.auth_context_id = spec.context_id;
  placeholder.auth_value.assign(spec.auth_value_length, 0);
  OutgoingPdu out;
  AuthLayout layout;
  absl::StatusOr<Bytes> bytes = EncodeInternal(pdu, &placeholder, &layout);
  if (!bytes.ok()) return bytes.status();
  out.bytes = *std::move(bytes);
  out.auth = layout;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Fragmentation

absl::StatusOr<std::vector<OutgoingPdu>> FragmentStub(const CallFragmentHeader& header, ByteView stub,
                                                      size_t max_frag_length, const std::optional<AuthSpec>& auth) {
  if (header.type != PduType::kRequest && header.type != PduType::kResponse) {
    return absl::InvalidArgumentError("only request and response stubs are fragmented");
  }
  const size_t max_frag = std::min(max_frag_length, kMaxFragLength);
  size_t overhead = header.type == PduType::kRequest
                        ? StubOffsetFor(PduType::kRequest, header.object ? pfc::kObjectUuid : 0)
                        : kResponseHeaderSize;
  if (auth.has_value()) overhead += kSecTrailerSize + auth->auth_value_length;
  size_t capacity = max_frag > overhead ? max_frag - overhead : 0;
  // With a verifier every non-final fragment carries whole 16-byte blocks so no padding is
  // needed there, and the final one can always pad up without overflowing.
  if (auth.has_value()) capacity -= capacity % kStubAuthPadAlignment;
  if (capacity == 0) {
    return absl::InvalidArgumentError(absl::StrCat("max fragment size ", max_frag_length,
                                                   " leaves no room for stub data after ", overhead,
                                                   " bytes of header and verifier"));
  }

  std::vector<OutgoingPdu> fragments;
  fragments.reserve(stub.size() / capacity + 1);
  size_t offset = 0;
  do {
    const size_t chunk = std::min(capacity, stub.size() - offset);
    const auto remaining = static_cast<uint32_t>(stub.size() - offset);
    uint8_t flags = header.extra_flags & static_cast<uint8_t>(~(pfc::kFirstFrag | pfc::kLastFrag | pfc::kObjectUuid));
    if (offset == 0) flags |= pfc::kFirstFrag;
    if (offset + chunk == stub.size()) flags |= pfc::kLastFrag;
    Bytes piece(stub.begin() + offset, stub.begin() + offset + chunk);
    Pdu pdu;
    pdu.header.type = header.type;
    pdu.header.call_id = header.call_id;
    pdu.header.flags = flags;
    if (header.type == PduType::kRequest) {
      pdu.body = RequestBody{remaining, header.context_id, header.opnum, header.object, std::move(piece)};
    } else {
      ResponseBody body;
      body.alloc_hint = remaining;
      body.context_id = header.context_id;
      body.stub = std::move(piece);
      pdu.body = std::move(body);
    }
    if (auth.has_value()) {
      absl::StatusOr<OutgoingPdu> out = EncodeWithAuthPlaceholder(pdu, *auth);
      if (!out.ok()) return out.status();
      fragments.push_back(*std::move(out));
    } else {
      absl::StatusOr<Bytes> bytes = EncodePdu(pdu);
      if (!bytes.ok()) return bytes.status();
      fragments.push_back(OutgoingPdu{*std::move(bytes), std::nullopt});
    }
    offset += chunk;
  } while (offset < stub.size());
  return fragments;
}

// ---------------------------------------------------------------------------------------------
// Reassembly

void Reassembler::Reset() {
  first_.reset();
  stub_.clear();
  complete_ = false;
}

Bytes Reassembler::TakeStub() {
  Bytes out = std::move(stub_);
  Reset();
  return out;
}

absl::StatusOr<bool> Reassembler::Add(const Pdu& fragment) {
  const PduType type = fragment.header.type;
  const Bytes* stub = nullptr;
  uint32_t alloc_hint = 0;
  uint16_t context_id = 0;
  uint16_t opnum = 0;
  if (const auto* req = std::get_if<RequestBody>(&fragment.body); req != nullptr && type == PduType::kRequest) {
    stub = &req->stub;
    alloc_hint = req->alloc_hint;
    context_id = req->context_id;
    opnum = req->opnum;
  } else if (const auto* resp = std::get_if<ResponseBody>(&fragment.body);
             resp != nullptr && type == PduType::kResponse) {
    stub = &resp->stub;
    alloc_hint = resp->alloc_hint;
    context_id = resp->context_id;
  } else {
    Reset();
    return PduError(type, "is not a request or response fragment");
  }

  const uint8_t flags = fragment.header.flags;
  if (complete_) Reset();  // the previous call's stub was not taken: start over
  if (!first_.has_value()) {
    if ((flags & pfc::kFirstFrag) == 0) {
      return PduError(type, absl::StrCat("call ", fragment.header.call_id,
                                         " starts without PFC_FIRST_FRAG (a fragment was lost or reordered)"));
    }
    if (alloc_hint > max_stub_size_) {
      return PduError(type, absl::StrCat("alloc_hint ", alloc_hint, " exceeds the ", max_stub_size_,
                                         "-byte limit on a call's stub"));
    }
    Pdu first = fragment;
    if (auto* req = std::get_if<RequestBody>(&first.body)) req->stub.clear();
    if (auto* resp = std::get_if<ResponseBody>(&first.body)) resp->stub.clear();
    first_ = std::move(first);
  } else {
    const Pdu& first = *first_;
    absl::Status mismatch;
    if ((flags & pfc::kFirstFrag) != 0) {
      mismatch = PduError(type, absl::StrCat("PFC_FIRST_FRAG in the middle of call ", first.header.call_id));
    } else if (fragment.header.call_id != first.header.call_id) {
      mismatch = PduError(type, absl::StrCat("fragment has call_id ", fragment.header.call_id, " but call ",
                                             first.header.call_id, " is being reassembled"));
    } else if (type != first.header.type) {
      mismatch = PduError(
          type, absl::StrCat("fragment type differs from the call's (", AbslView(PduTypeName(first.header.type)), ")"));
    } else if (type == PduType::kRequest) {
      const auto& f = std::get<RequestBody>(first.body);
      if (f.context_id != context_id || f.opnum != opnum) {
        mismatch = PduError(type, "fragment changes the presentation context or opnum mid-call");
      }
    } else if (std::get<ResponseBody>(first.body).context_id != context_id) {
      mismatch = PduError(type, "fragment changes the presentation context mid-call");
    }
    if (!mismatch.ok()) {
      Reset();
      return mismatch;
    }
  }
  if (stub->size() > max_stub_size_ - stub_.size()) {
    const size_t total = stub_.size() + stub->size();
    Reset();
    return PduError(
        type, absl::StrCat("reassembled stub would reach ", total, " bytes, over the ", max_stub_size_, "-byte limit"));
  }
  stub_.insert(stub_.end(), stub->begin(), stub->end());
  if ((flags & pfc::kLastFrag) != 0) {
    complete_ = true;
    return true;
  }
  return false;
}

}  // namespace adcsc::rpc
