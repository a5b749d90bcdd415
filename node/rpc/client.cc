#include "node/rpc/client.h"

#include <algorithm>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace adcsc::rpc {
namespace {

constexpr char kFaultPayload[] = "adcsc.rpc_fault";
constexpr char kRequestSentPayload[] = "adcsc.rpc_request_sent";
constexpr char kAuthNotStartedPayload[] = "adcsc.rpc_auth_not_started";

}  // namespace

absl::Status FaultError(uint32_t fault_status, std::string_view context) {
  absl::Status s =
      absl::AbortedError(absl::StrFormat("%s: the server answered with fault 0x%08x (%s)", std::string(context),
                                         fault_status, std::string(FaultStatusName(fault_status))));
  s.SetPayload(kFaultPayload, absl::Cord(absl::StrFormat("%08x", fault_status)));
  return s;
}

std::optional<uint32_t> FaultOf(const absl::Status& status) {
  auto payload = status.GetPayload(kFaultPayload);
  if (!payload) return std::nullopt;
  uint32_t value = 0;
  if (!absl::SimpleHexAtoi(std::string(*payload), &value)) return std::nullopt;
  return value;
}

absl::Status MarkAuthNotStarted(absl::Status status) {
  status.SetPayload(kAuthNotStartedPayload, absl::Cord("1"));
  return status;
}

bool AuthFailedBeforeBind(const absl::Status& status) {
  return !status.ok() && status.GetPayload(kAuthNotStartedPayload).has_value();
}

bool RequestMayHaveRun(const absl::Status& status) {
  return !status.ok() && status.GetPayload(kRequestSentPayload).has_value();
}

ClientConnection::ClientConnection(ClientOptions options, std::unique_ptr<TcpStream> stream)
    : options_(std::move(options)),
      stream_(std::move(stream)),
      peer_(absl::StrCat(options_.host, ":", options_.port)) {}

ClientConnection::~ClientConnection() = default;

void ClientConnection::Abort() { stream_->Shutdown(); }

absl::Status ClientConnection::Fail(absl::Status status) {
  broken_ = true;
  return status;
}

absl::StatusOr<std::unique_ptr<ClientConnection>> ClientConnection::Connect(const ClientOptions& options,
                                                                            const SyntaxId& interface) {
  return Connect(options, std::vector<SyntaxId>{interface});
}

absl::StatusOr<std::unique_ptr<ClientConnection>> ClientConnection::Connect(const ClientOptions& options,
                                                                            const std::vector<SyntaxId>& interfaces) {
  if (interfaces.empty()) return absl::InvalidArgumentError("bind without an interface");
  auto stream = TcpStream::Connect(options.host, options.port, options.connect_timeout);
  if (!stream.ok()) return stream.status();
  std::unique_ptr<ClientConnection> c(new ClientConnection(options, std::move(*stream)));
  if (auto s = c->Bind(interfaces, DeadlineIn(options.call_timeout)); !s.ok()) return s;
  return c;
}

absl::Status ClientConnection::Send(Bytes bytes, Deadline deadline) {
  if (auto s = stream_->WriteAll(bytes, deadline); !s.ok()) return Fail(s);
  return absl::OkStatus();
}

absl::StatusOr<Bytes> ClientConnection::ReceivePdu(Deadline deadline) {
  Bytes pdu(kCommonHeaderSize);
  if (auto s = stream_->ReadExact(pdu, deadline); !s.ok()) return Fail(s);
  auto size = NextPduSize(pdu);
  if (!size.ok()) return Fail(absl::InternalError(absl::StrCat("bad PDU from ", peer_, ": ", size.status().message())));
  pdu.resize(*size);
  if (auto s = stream_->ReadExact(std::span<uint8_t>(pdu).subspan(kCommonHeaderSize), deadline); !s.ok())
    return Fail(s);
  return pdu;
}

absl::Status ClientConnection::SecurityError(std::string_view step, const absl::Status& status) {
  const std::string mech = security_ ? security_->mechanism() : "authentication";
  std::string message = absl::StrCat(mech == "ntlm" ? "NTLM" : "Kerberos (" + mech + ")", " with ", peer_, ", ",
                                     std::string(step), ": ", status.message());
  // NTLM failures are all the server refusing us; GSS errors keep their own code (an
  // unreachable KDC is UNAVAILABLE, clock skew FAILED_PRECONDITION, ...).
  if (mech == "ntlm" || status.code() == absl::StatusCode::kInternal ||
      status.code() == absl::StatusCode::kInvalidArgument) {
    return Fail(absl::PermissionDeniedError(message));
  }
  return Fail(absl::Status(status.code(), message));
}

absl::Status ClientConnection::Bind(const std::vector<SyntaxId>& interfaces, Deadline deadline) {
  const uint32_t call_id = next_call_id_++;
  BindBody bind;
  bind.max_xmit_frag = options_.max_frag;
  bind.max_recv_frag = options_.max_frag;
  for (size_t i = 0; i < interfaces.size(); ++i) {
    bind.contexts.push_back({static_cast<uint16_t>(i), interfaces[i], {kNdr20Syntax}});
  }
  Pdu pdu = MakePdu(PduType::kBind, call_id, bind);

  Leg leg;
  if (options_.auth) {
    const ClientAuth& auth = *options_.auth;
    if (auth.kerberos) {
      if (!auth.kerberos->credentials) return Fail(absl::InvalidArgumentError("Kerberos without credentials"));
      auto provider =
          GssClientSecurity(*auth.kerberos->credentials, auth.kerberos->target, auth.kerberos->mech, auth.level);
      if (!provider.ok()) return MarkAuthNotStarted(SecurityError("preparing the first leg", provider.status()));
      security_ = *std::move(provider);
    } else {
      security_ = NtlmClientSecurity(auth.credentials, auth.random, auth.target_spn);
    }
    auto first = security_->Step({});
    if (!first.ok()) return MarkAuthNotStarted(SecurityError("first leg", first.status()));
    leg = *std::move(first);
    SecTrailer trailer;
    trailer.auth_type = security_->auth_type();
    trailer.auth_level = auth.level;
    trailer.auth_context_id = kAuthContextId;
    pdu.auth = AuthVerifier{trailer, std::move(leg.token)};
    if (security_->negotiates_header_signing()) pdu.header.flags |= pfc::kSupportHeaderSign;
  }
  auto encoded = EncodePdu(pdu);
  if (!encoded.ok()) return Fail(encoded.status());
  if (auto s = Send(std::move(*encoded), deadline); !s.ok()) return s;

  auto reply_bytes = ReceivePdu(deadline);
  if (!reply_bytes.ok()) return reply_bytes.status();
  auto reply = DecodePdu(*reply_bytes);
  if (!reply.ok())
    return Fail(absl::InternalError(absl::StrCat("bad bind answer from ", peer_, ": ", reply.status().message())));
  if (reply->header.type == PduType::kBindNak) {
    const auto& nak = std::get<BindNakBody>(reply->body);
    std::string what = absl::StrCat("bind to ", peer_, " refused: ", std::string(BindNakReasonName(nak.reject_reason)));
    if (nak.reject_reason == bind_nak_reason::kAuthenticationTypeNotRecognized ||
        nak.reject_reason == bind_nak_reason::kInvalidChecksum) {
      if (security_ && security_->auth_type() != authn::kWinNt) {
        // Also what a server answers that does not take this auth type at all (an NTLM-only
        // emulator, or only the other mechanism): say so before the ticket.
        const std::string who =
            nak.reject_reason == bind_nak_reason::kAuthenticationTypeNotRecognized
                ? absl::StrCat("the CA may not accept auth type ", security_->auth_type(), " (",
                               std::string(AuthTypeName(security_->auth_type())),
                               "): check that Kerberos is enabled on it, or try the other kerberos_mechanism; or it")
                : std::string("the CA");
        absl::StrAppend(&what, " (", who, " did not accept our Kerberos ticket: check that it serves ",
                        options_.auth->kerberos->target.name,
                        " with the key the KDC has, and the clock skew between this host and the CA)");
      } else if (security_ && nak.reject_reason == bind_nak_reason::kAuthenticationTypeNotRecognized) {
        absl::StrAppend(&what,
                        " (the CA may not accept NTLM, as in a domain that restricts NTLM: check that it allows "
                        "NTLM, or authenticate with Kerberos)");
      }
      return Fail(absl::PermissionDeniedError(what));
    }
    return Fail(absl::UnavailableError(what));
  }
  if (reply->header.type != PduType::kBindAck || reply->header.call_id != call_id) {
    return Fail(absl::InternalError(absl::StrCat("bind to ", peer_, ": unexpected ",
                                                 std::string(PduTypeName(reply->header.type)), " PDU (call id ",
                                                 reply->header.call_id, ")")));
  }
  const auto& ack = std::get<BindAckBody>(reply->body);
  for (size_t i = 0; i < interfaces.size(); ++i) {
    if (ack.results.size() <= i || ack.results[i].result != context_result::kAcceptance) {
      const uint16_t reason = ack.results.size() <= i ? 0 : ack.results[i].reason;
      return Fail(absl::FailedPreconditionError(
          absl::StrCat("bind to ", peer_, ": the server does not serve interface ", interfaces[i].ToString(),
                       " (provider rejection reason ", reason, ")")));
    }
  }
  // We send fragments the server can receive, and expect ones we said we can receive.
  max_xmit_frag_ = std::max<uint16_t>(kMustRecvFragSize, std::min(options_.max_frag, ack.max_recv_frag));
  max_recv_frag_ = std::max<uint16_t>(kMustRecvFragSize, std::min(options_.max_frag, ack.max_xmit_frag));

  if (!options_.auth) return absl::OkStatus();
  // Header signing only when the server echoed the flag (MS-RPCE 3.3.1.5.2.1).
  security_->set_header_signing(security_->negotiates_header_signing() &&
                                (reply->header.flags & pfc::kSupportHeaderSign) != 0);
  if (!reply->auth || reply->auth->auth_value.empty()) {
    return Fail(absl::PermissionDeniedError(
        absl::StrCat("bind to ", peer_, ": the server answered without a ", security_->mechanism(), " token")));
  }
  auto second = security_->Step(reply->auth->auth_value);
  if (!second.ok()) return SecurityError("answering the server's token", second.status());
  leg = *std::move(second);
  // Kerberos may take one more round trip than the textbook three legs (SPNEGO's mechListMIC
  // with some acceptors): step until done, with a bound.
  constexpr int kMaxRoundTrips = 4;
  for (int round = 0;; ++round) {
    if (leg.token.empty()) {
      if (leg.done) break;
      return Fail(absl::PermissionDeniedError(
          absl::StrCat(security_->mechanism(), " with ", peer_, ": the exchange stopped before it was established")));
    }
    if (round == kMaxRoundTrips) {
      return Fail(absl::PermissionDeniedError(
          absl::StrCat(security_->mechanism(), " with ", peer_, ": not established after ", round, " round trips")));
    }
    SecTrailer trailer;
    trailer.auth_type = security_->auth_type();
    trailer.auth_level = options_.auth->level;
    trailer.auth_context_id = kAuthContextId;
    if (security_->third_leg_in_auth3()) {
      Pdu auth3 = MakePdu(PduType::kAuth3, call_id, Auth3Body{});
      auth3.auth = AuthVerifier{trailer, std::move(leg.token)};
      auto auth3_bytes = EncodePdu(auth3);
      if (!auth3_bytes.ok()) return Fail(auth3_bytes.status());
      if (auto s = Send(std::move(*auth3_bytes), deadline); !s.ok()) return s;
      break;  // AUTH3 has no answer
    }
    auto answer = AlterContext(call_id, bind, std::move(leg.token), deadline);
    if (!answer.ok()) return answer.status();
    if (leg.done) break;  // the server's answer to our last token carries nothing for us
    auto next = security_->Step(*answer);
    if (!next.ok()) return SecurityError("completing the exchange", next.status());
    leg = *std::move(next);
  }
  if (!security_->done()) {
    return Fail(
        absl::PermissionDeniedError(absl::StrCat(security_->mechanism(), " with ", peer_, ": not established")));
  }
  if (options_.auth->level >= authn_level::kPktIntegrity) {
    auto length = security_->AuthValueLength(options_.auth->level);
    if (!length.ok()) return SecurityError("sizing the per-call token", length.status());
    auth_value_length_ = *length;
  }
  return absl::OkStatus();
}

absl::StatusOr<Bytes> ClientConnection::AlterContext(uint32_t call_id, const BindBody& bind, Bytes token,
                                                     Deadline deadline) {
  Pdu alter = MakePdu(PduType::kAlterContext, call_id, bind);
  if (security_->header_signing()) alter.header.flags |= pfc::kSupportHeaderSign;
  SecTrailer trailer;
  trailer.auth_type = security_->auth_type();
  trailer.auth_level = options_.auth->level;
  trailer.auth_context_id = kAuthContextId;
  alter.auth = AuthVerifier{trailer, std::move(token)};
  auto bytes = EncodePdu(alter);
  if (!bytes.ok()) return Fail(bytes.status());
  if (auto s = Send(std::move(*bytes), deadline); !s.ok()) return s;
  auto reply_bytes = ReceivePdu(deadline);
  if (!reply_bytes.ok()) return reply_bytes.status();
  auto reply = DecodePdu(*reply_bytes);
  if (!reply.ok()) {
    return Fail(
        absl::InternalError(absl::StrCat("bad alter_context answer from ", peer_, ": ", reply.status().message())));
  }
  if (reply->header.type == PduType::kFault) {
    const auto& fault_body = std::get<FaultBody>(reply->body);
    return Fail(absl::PermissionDeniedError(absl::StrCat(
        security_->mechanism(), " with ", peer_, ": the server refused our token with fault 0x",
        absl::Hex(fault_body.status, absl::kZeroPad8), " (", std::string(FaultStatusName(fault_body.status)),
        "; check the CA's SPN and the clock skew between this host and the CA)")));
  }
  if (reply->header.type != PduType::kAlterContextResp || reply->header.call_id != call_id) {
    return Fail(absl::InternalError(absl::StrCat("alter_context to ", peer_, ": unexpected ",
                                                 std::string(PduTypeName(reply->header.type)), " PDU (call id ",
                                                 reply->header.call_id, ")")));
  }
  const auto& ack = std::get<BindAckBody>(reply->body);
  if (ack.results.empty() || ack.results.front().result != context_result::kAcceptance) {
    return Fail(absl::FailedPreconditionError(
        absl::StrCat("alter_context to ", peer_, ": the server no longer accepts the interface")));
  }
  return reply->auth ? reply->auth->auth_value : Bytes{};
}

absl::StatusOr<Bytes> ClientConnection::Call(uint16_t opnum, ByteView stub) { return Call(opnum, stub, CallTarget{}); }

absl::StatusOr<Bytes> ClientConnection::Call(uint16_t opnum, ByteView stub, const CallTarget& target) {
  bool sent = false;
  bool definite = false;
  absl::StatusOr<Bytes> answer = CallUnmarked(opnum, stub, target, &sent, &definite);
  if (answer.ok() || !sent || definite) return answer;
  absl::Status marked = answer.status();
  marked.SetPayload(kRequestSentPayload, absl::Cord("1"));
  return marked;
}

absl::StatusOr<Bytes> ClientConnection::CallUnmarked(uint16_t opnum, ByteView stub, const CallTarget& target,
                                                     bool* sent, bool* definite) {
  if (broken_) return absl::FailedPreconditionError(absl::StrCat("connection to ", peer_, " is broken"));
  const Deadline deadline = DeadlineIn(options_.call_timeout);
  const uint32_t call_id = next_call_id_++;
  const bool protect = options_.auth && options_.auth->level >= authn_level::kPktIntegrity;

  CallFragmentHeader header;
  header.type = PduType::kRequest;
  header.call_id = call_id;
  header.opnum = opnum;
  header.context_id = target.context_id;
  header.object = target.object;
  std::optional<AuthSpec> spec;
  if (protect) spec = AuthSpec{security_->auth_type(), options_.auth->level, kAuthContextId, auth_value_length_};
  auto fragments = FragmentStub(header, stub, max_xmit_frag_, spec);
  if (!fragments.ok()) return Fail(fragments.status());
  for (OutgoingPdu& f : *fragments) {
    if (protect) {
      if (auto s = security_->Protect(options_.auth->level, f); !s.ok()) {
        return Fail(absl::InternalError(absl::StrCat("protecting a call to ", peer_, ": ", s.message())));
      }
    }
    *sent = true;  // from the first byte on, the server may act on it
    if (auto s = Send(std::move(f.bytes), deadline); !s.ok()) return s;
  }

  Reassembler reassembler(options_.max_response_bytes);
  for (;;) {
    auto bytes = ReceivePdu(deadline);
    if (!bytes.ok()) return bytes.status();
    auto header_only = DecodeCommonHeader(*bytes);
    if (!header_only.ok())
      return Fail(absl::InternalError(absl::StrCat("bad PDU from ", peer_, ": ", header_only.status().message())));
    if (header_only->call_id != call_id) {
      return Fail(absl::InternalError(absl::StrCat("answer from ", peer_, " for call ", header_only->call_id,
                                                   " while waiting for call ", call_id)));
    }
    const bool is_fault = header_only->type == PduType::kFault;
    if (protect && header_only->auth_length != 0) {
      if (auto s = security_->Unprotect(options_.auth->level, *bytes, kMaxFragLength); !s.ok()) {
        return Fail(
            absl::PermissionDeniedError(absl::StrCat("answer from ", peer_, " failed verification: ", s.message())));
      }
    } else if (protect && !is_fault) {
      return Fail(absl::PermissionDeniedError(
          absl::StrCat("answer from ", peer_, " is not protected at the negotiated level")));
    }
    auto pdu = DecodePdu(*bytes);
    if (!pdu.ok()) return Fail(absl::InternalError(absl::StrCat("bad PDU from ", peer_, ": ", pdu.status().message())));
    if (is_fault) {
      const auto& fault_body = std::get<FaultBody>(pdu->body);
      // The call failed; the connection stays usable unless the fault says the protocol broke.
      if (fault_body.status == fault::kProtoError || fault_body.status == fault::kProtocolError) broken_ = true;
      // Verified above when signed; an unsigned fault could come from anyone on the path.
      *definite = protect && header_only->auth_length != 0;
      return FaultError(fault_body.status, absl::StrCat("call ", opnum, " on ", peer_));
    }
    if (pdu->header.type != PduType::kResponse) {
      return Fail(absl::InternalError(
          absl::StrCat("unexpected ", std::string(PduTypeName(pdu->header.type)), " PDU from ", peer_)));
    }
    auto done = reassembler.Add(*pdu);
    if (!done.ok())
      return Fail(absl::InternalError(absl::StrCat("answer from ", peer_, ": ", done.status().message())));
    if (*done) return reassembler.TakeStub();
  }
}

}  // namespace adcsc::rpc
