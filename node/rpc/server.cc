#include "node/rpc/server.h"

#include <algorithm>
#include <map>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "node/rpc/client.h"
#include "node/rpc/security.h"

namespace adcsc::rpc {
namespace {

class Connection {
 public:
  Connection(TcpStream& stream, const ServerOptions& options, const CallHandler& handler)
      : stream_(stream), options_(options), handler_(handler), reassembler_(options.max_request_bytes) {
    context_.peer = stream.peer();
    context_.mechanism = "none";
  }

  // Returns when the connection should close; a non-OK status says why it closed early.
  absl::Status Run() {
    for (;;) {
      const Deadline deadline = DeadlineIn(options_.idle_timeout);
      Bytes pdu(kCommonHeaderSize);
      if (auto s = stream_.ReadExact(pdu, deadline); !s.ok()) {
        // The client closing between calls is the normal end of a connection.
        return absl::IsUnavailable(s) && s.message().find("closed by") != std::string_view::npos ? absl::OkStatus() : s;
      }
      auto size = NextPduSize(pdu, options_.max_frag);
      if (!size.ok()) return size.status();
      pdu.resize(*size);
      if (auto s = stream_.ReadExact(std::span<uint8_t>(pdu).subspan(kCommonHeaderSize), deadline); !s.ok()) return s;
      auto header = DecodeCommonHeader(pdu, options_.max_frag);
      if (!header.ok()) return header.status();
      absl::Status handled;
      switch (header->type) {
        case PduType::kBind:
        case PduType::kAlterContext:
          handled = OnBind(pdu, header->type == PduType::kAlterContext);
          break;
        case PduType::kAuth3:
          handled = OnAuth3(pdu);
          break;
        case PduType::kRequest:
          handled = OnRequest(pdu, *header);
          break;
        case PduType::kCoCancel:
        case PduType::kOrphaned:
        case PduType::kShutdown:
          handled = absl::OkStatus();  // nothing runs long enough here to cancel
          break;
        default:
          handled =
              absl::InvalidArgumentError(absl::StrCat("unexpected ", std::string(PduTypeName(header->type)), " PDU"));
      }
      if (!handled.ok()) return handled;
    }
  }

 private:
  absl::Status Send(const Bytes& bytes) { return stream_.WriteAll(bytes, DeadlineIn(options_.idle_timeout)); }

  absl::Status SendFault(uint32_t call_id, uint16_t context_id, uint32_t status, bool did_not_execute) {
    FaultBody body;
    body.context_id = context_id;
    body.status = status;
    Pdu fault = MakePdu(PduType::kFault, call_id, body);
    if (did_not_execute) fault.header.flags |= pfc::kDidNotExecute;
    auto bytes = EncodePdu(fault);
    if (!bytes.ok()) return bytes.status();
    return Send(*bytes);
  }

  absl::Status OnBind(const Bytes& bytes, bool alter_context) {
    auto pdu = DecodePdu(bytes, options_.max_frag);
    if (!pdu.ok()) return pdu.status();
    const uint32_t call_id = pdu->header.call_id;
    if (!alter_context && bound_) return absl::InvalidArgumentError("a second bind on one connection");
    const auto& bind = std::get<BindBody>(pdu->body);

    if (!alter_context && pdu->auth) {
      const uint8_t type = pdu->auth->trailer.auth_type;
      if (type == authn::kWinNt && options_.accounts) {
        security_ = NtlmServerSecurity(*options_.accounts, options_.names);
      } else if ((type == authn::kGssNegotiate || type == authn::kGssKerberos) && options_.kerberos) {
        security_ = GssServerSecurity(options_.kerberos,
                                      type == authn::kGssNegotiate ? gss::Mech::kSpnego : gss::Mech::kKerberos,
                                      options_.realm_domain);
      } else {
        Report(absl::PermissionDeniedError(absl::StrCat("bind with auth type ", type, " (",
                                                        std::string(AuthTypeName(type)), "), which is not enabled")));
        return SendBindNak(call_id, bind_nak_reason::kAuthenticationTypeNotRecognized);
      }
      level_ = pdu->auth->trailer.auth_level;
      // Windows treats the levels below integrity that still sign as integrity.
      if (level_ == authn_level::kCall || level_ == authn_level::kPkt) level_ = authn_level::kPktIntegrity;
      if (level_ < authn_level::kConnect || level_ > authn_level::kPktPrivacy) {
        return SendBindNak(call_id, bind_nak_reason::kNotSpecified);
      }
      auth_context_id_ = pdu->auth->trailer.auth_context_id;
      // Echo PFC_SUPPORT_HEADER_SIGN for a mechanism that signs headers only by agreement.
      security_->set_header_signing(security_->negotiates_header_signing() &&
                                    (pdu->header.flags & pfc::kSupportHeaderSign) != 0);
    }

    BindAckBody ack;
    ack.max_xmit_frag = std::max(kMustRecvFragSize, std::min(options_.max_frag, bind.max_recv_frag));
    ack.max_recv_frag = std::max(kMustRecvFragSize, std::min(options_.max_frag, bind.max_xmit_frag));
    ack.assoc_group_id = bind.assoc_group_id != 0 ? bind.assoc_group_id : kAssocGroupId;
    if (!alter_context) ack.secondary_address = std::to_string(options_.port);
    for (const ContextElement& c : bind.contexts) {
      ContextResult r;
      const bool ndr20 =
          std::find(c.transfer_syntaxes.begin(), c.transfer_syntaxes.end(), kNdr20Syntax) != c.transfer_syntaxes.end();
      const bool served = c.abstract_syntax == options_.interface ||
                          std::find(options_.more_interfaces.begin(), options_.more_interfaces.end(),
                                    c.abstract_syntax) != options_.more_interfaces.end();
      if (served && ndr20 && contexts_.size() >= kMaxContexts && contexts_.count(c.context_id) == 0) {
        r.result = context_result::kProviderRejection;
        r.reason = context_reason::kLocalLimitExceeded;
      } else if (served && ndr20) {
        r.result = context_result::kAcceptance;
        r.transfer_syntax = kNdr20Syntax;
        contexts_[c.context_id] = c.abstract_syntax;
      } else if (!c.transfer_syntaxes.empty() && c.transfer_syntaxes.front().uuid == kBindTimeFeatureSyntax.uuid) {
        r.result = context_result::kNegotiateAck;
        r.reason = 0;  // no optional features
      } else {
        r.result = context_result::kProviderRejection;
        r.reason = served ? context_reason::kProposedTransferSyntaxesNotSupported
                          : context_reason::kAbstractSyntaxNotSupported;
      }
      ack.results.push_back(r);
    }
    xmit_frag_ = ack.max_xmit_frag;
    Pdu reply = MakePdu(alter_context ? PduType::kAlterContextResp : PduType::kBindAck, call_id, ack);
    if (security_ && security_->header_signing()) reply.header.flags |= pfc::kSupportHeaderSign;
    // A token to consume: the bind's first leg, or a later Kerberos leg in an alter_context.
    if (pdu->auth && security_ && !security_->done() && !logon_failed_) {
      auto leg = security_->Step(pdu->auth->auth_value);
      if (!leg.ok()) {
        Report(leg.status());
        if (!alter_context) {
          return SendBindNak(call_id, security_->auth_type() == authn::kWinNt
                                          ? bind_nak_reason::kAuthenticationTypeNotRecognized
                                          : bind_nak_reason::kInvalidChecksum);
        }
        (void)SendFault(call_id, context_id_, fault::kAccessDenied, true);
        return absl::PermissionDeniedError(absl::StrCat("logon failed: ", leg.status().message()));
      }
      if (!leg->token.empty()) {
        SecTrailer trailer;
        trailer.auth_type = security_->auth_type();
        trailer.auth_level = level_;
        trailer.auth_context_id = auth_context_id_;
        reply.auth = AuthVerifier{trailer, std::move(leg->token)};
      }
      if (leg->done) {
        if (auto s = Established(); !s.ok()) return s;
      }
    }
    auto encoded = EncodePdu(reply);
    if (!encoded.ok()) return encoded.status();
    bound_ = true;
    return Send(*encoded);
  }

  // The security context is up: who the caller is, and the size of its per-call tokens.
  absl::Status Established() {
    const PeerIdentity id = security_->identity();
    context_.auth_level = level_;
    context_.domain = id.domain;
    context_.user = id.user;
    context_.principal = id.principal;
    context_.target_spn = id.target_spn;
    context_.mechanism = security_->mechanism();
    if (level_ >= authn_level::kPktIntegrity) {
      auto length = security_->AuthValueLength(level_);
      if (!length.ok()) return length.status();
      auth_value_length_ = *length;
    }
    return absl::OkStatus();
  }

  absl::Status SendBindNak(uint32_t call_id, uint16_t reason) {
    BindNakBody nak;
    nak.reject_reason = reason;
    nak.versions.push_back({kRpcVersion, kRpcVersionMinor});
    auto encoded = EncodePdu(MakePdu(PduType::kBindNak, call_id, nak));
    if (!encoded.ok()) return encoded.status();
    if (auto s = Send(*encoded); !s.ok()) return s;
    return absl::PermissionDeniedError(absl::StrCat("bind refused: ", std::string(BindNakReasonName(reason))));
  }

  absl::Status OnAuth3(const Bytes& bytes) {
    auto pdu = DecodePdu(bytes, options_.max_frag);
    if (!pdu.ok()) return pdu.status();
    if (!security_ || !pdu->auth) return absl::InvalidArgumentError("auth3 without an authenticated bind");
    if (security_->done() || logon_failed_) return absl::InvalidArgumentError("auth3 after the logon completed");
    auto leg = security_->Step(pdu->auth->auth_value);
    if (leg.ok() && !leg->done) {
      leg = absl::PermissionDeniedError(
          absl::StrCat(security_->mechanism(), " needs another leg, which auth3 cannot answer (use alter_context)"));
    }
    if (!leg.ok()) {
      // As Windows does, the connection stays up and its calls are refused.
      logon_failed_ = true;
      Report(leg.status());
      return absl::OkStatus();
    }
    return Established();
  }

  absl::Status OnRequest(Bytes& bytes, const CommonHeader& header) {
    if (!bound_) return absl::InvalidArgumentError("request before bind");
    const bool protect = security_ != nullptr && security_->done() && level_ >= authn_level::kPktIntegrity;
    if (protect) {
      if (header.auth_length == 0) {
        return SendFault(header.call_id, context_id_, fault::kAccessDenied, true);
      }
      absl::Status verified = security_->Unprotect(level_, bytes, options_.max_frag);
      if (!verified.ok()) {
        // The incoming keystream is out of step now: this connection cannot go on.
        (void)SendFault(header.call_id, context_id_, fault::kSecPkgError, true);
        return verified;
      }
    }
    auto pdu = DecodePdu(bytes, options_.max_frag);
    if (!pdu.ok()) return pdu.status();
    auto complete = reassembler_.Add(*pdu);
    if (!complete.ok()) return complete.status();
    if (!*complete) return absl::OkStatus();
    const auto& first = std::get<RequestBody>(reassembler_.first_fragment()->body);
    const uint16_t opnum = first.opnum;
    const uint16_t context_id = first.context_id;
    const std::optional<Uuid> object = first.object;
    Bytes stub = reassembler_.TakeStub();
    if (logon_failed_ || (security_ != nullptr && !security_->done())) {
      return SendFault(header.call_id, context_id, fault::kAccessDenied, true);
    }
    const auto bound = contexts_.find(context_id);
    if (bound == contexts_.end()) return SendFault(header.call_id, context_id, fault::kUnkIf, true);

    CallContext call = context_;
    call.interface = bound->second;
    call.object = object;
    absl::StatusOr<Bytes> answer = handler_(call, opnum, stub);
    if (!answer.ok()) {
      auto status = FaultOf(answer.status());
      if (!status && absl::IsUnavailable(answer.status())) return answer.status();  // drop, unanswered
      if (!status) Report(answer.status());
      return SendFault(header.call_id, context_id, status.value_or(fault::kCantPerform), false);
    }
    CallFragmentHeader out;
    out.type = PduType::kResponse;
    out.call_id = header.call_id;
    out.context_id = context_id;
    std::optional<AuthSpec> spec;
    if (protect) spec = AuthSpec{security_->auth_type(), level_, auth_context_id_, auth_value_length_};
    auto fragments = FragmentStub(out, *answer, xmit_frag_, spec);
    if (!fragments.ok()) return fragments.status();
    for (OutgoingPdu& f : *fragments) {
      if (protect) {
        if (auto s = security_->Protect(level_, f); !s.ok()) return s;
      }
      if (auto s = Send(f.bytes); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  void Report(const absl::Status& status) {
    if (options_.on_error) options_.on_error(context_.peer, status);
  }

  static constexpr uint32_t kAssocGroupId = 0x00001a2b;
  // Presentation contexts one connection may hold (DCOM binds two); more are rejected.
  static constexpr size_t kMaxContexts = 16;

  TcpStream& stream_;
  const ServerOptions& options_;
  const CallHandler& handler_;
  Reassembler reassembler_;
  CallContext context_;
  bool bound_ = false;
  bool logon_failed_ = false;
  uint8_t level_ = authn_level::kNone;
  uint32_t auth_context_id_ = 0;
  uint16_t context_id_ = 0;                // for faults before any context is known
  std::map<uint16_t, SyntaxId> contexts_;  // accepted presentation contexts
  uint16_t xmit_frag_ = kMustRecvFragSize;
  uint16_t auth_value_length_ = 0;
  std::unique_ptr<SecurityProvider> security_;
};

}  // namespace

void ServeConnection(TcpStream& stream, const ServerOptions& options, const CallHandler& handler) {
  Connection connection(stream, options, handler);
  absl::Status s = connection.Run();
  if (!s.ok() && options.on_error) options.on_error(stream.peer(), s);
}

}  // namespace adcsc::rpc
