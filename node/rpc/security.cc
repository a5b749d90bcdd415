// NTLM and GSS-API (Kerberos) behind SecurityProvider; see security.h.
#include "node/rpc/security.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "node/rpc/protection.h"

namespace adcsc::rpc {
namespace {

// A request fragment's header (24 bytes), one 16-byte block of stub and the sec_trailer: the
// sizes GSS is asked about. No enctype GSS offers for DCE style sizes its token by the body
// once the body is a multiple of 16; Protect checks the real fragment against it anyway.
constexpr size_t kSizingHeader = kRequestHeaderSize;
constexpr size_t kSizingBody = kStubAuthPadAlignment;

// ---- NTLM ----

// What both sides of NTLM share: once the handshake yields a session, it signs (and seals)
// each PDU whole (protection.h).
class NtlmSecurity : public SecurityProvider {
 public:
  uint8_t auth_type() const override { return authn::kWinNt; }
  std::string mechanism() const override { return "ntlm"; }
  bool done() const override { return session_ != nullptr; }
  bool third_leg_in_auth3() const override { return true; }
  bool negotiates_header_signing() const override { return false; }

  absl::StatusOr<uint16_t> AuthValueLength(uint8_t) const override { return kNtlmSignatureSize; }
  absl::Status Protect(uint8_t level, OutgoingPdu& pdu) override {
    ProtectPdu(*session_, level, pdu);
    return absl::OkStatus();
  }
  absl::Status Unprotect(uint8_t level, Bytes& pdu, size_t max_frag_length) override {
    return UnprotectPdu(*session_, level, pdu, max_frag_length);
  }

 protected:
  std::unique_ptr<ntlm::Session> session_;
};

class NtlmClient final : public NtlmSecurity {
 public:
  NtlmClient(ntlm::Credentials credentials, ntlm::RandomSource random, std::string target_spn)
      : context_(std::move(credentials), random ? std::move(random) : ntlm::SystemRandom()) {
    context_.set_target_name(std::move(target_spn));
  }

  absl::StatusOr<Leg> Step(ByteView peer_token) override {
    if (!started_) {
      started_ = true;
      return Leg{context_.Negotiate(), false};
    }
    if (session_ != nullptr) return absl::FailedPreconditionError("NTLM has no further legs");
    if (peer_token.empty()) return absl::PermissionDeniedError("the server sent no NTLM challenge");
    auto authenticate = context_.Authenticate(peer_token);
    if (!authenticate.ok()) return authenticate.status();
    session_ = context_.TakeSession();
    return Leg{*std::move(authenticate), true};
  }

 private:
  ntlm::ClientContext context_;
  bool started_ = false;
};

class NtlmServer final : public NtlmSecurity {
 public:
  NtlmServer(const ntlm::AccountLookup& accounts, const ntlm::ServerNames& names) : context_(accounts, names) {}

  absl::StatusOr<Leg> Step(ByteView peer_token) override {
    if (!challenged_) {
      challenged_ = true;
      auto challenge = context_.Challenge(peer_token);
      if (!challenge.ok()) return challenge.status();
      return Leg{*std::move(challenge), false};
    }
    if (session_ != nullptr) return absl::FailedPreconditionError("NTLM has no further legs");
    auto user = context_.Accept(peer_token);
    if (!user.ok()) return user.status();
    identity_ = PeerIdentity{user->domain, user->user, absl::StrCat(user->domain, "\\", user->user), user->target_name};
    session_ = context_.TakeSession();
    return Leg{{}, true};
  }

  PeerIdentity identity() const override { return identity_; }

 private:
  ntlm::ServerContext context_;
  bool challenged_ = false;
  PeerIdentity identity_;
};

// ---- GSS-API ----

gss::Level GssLevel(uint8_t level) {
  return level >= authn_level::kPktPrivacy ? gss::Level::kPrivacy : gss::Level::kIntegrity;
}

class GssSecurity final : public SecurityProvider {
 public:
  GssSecurity(std::unique_ptr<gss::SecurityContext> context, std::string realm_domain)
      : context_(std::move(context)), realm_domain_(std::move(realm_domain)) {}

  uint8_t auth_type() const override { return gss::DceAuthType(context_->mech()); }
  std::string mechanism() const override {
    return context_->mech() == gss::Mech::kSpnego ? "negotiate/kerberos" : "kerberos";
  }
  bool done() const override { return context_->done(); }
  bool third_leg_in_auth3() const override { return false; }
  bool negotiates_header_signing() const override { return true; }

  absl::StatusOr<Leg> Step(ByteView peer_token) override {
    auto step = context_->Step(peer_token);
    if (!step.ok()) return step.status();
    return Leg{std::move(step->token), step->done};
  }

  absl::StatusOr<uint16_t> AuthValueLength(uint8_t level) const override {
    auto length = context_->AuthValueLength(Protection(level), kSizingHeader, kSizingBody, kSecTrailerSize);
    if (!length.ok()) return length.status();
    if (*length > kMaxFragLength / 4) {
      return absl::InternalError(absl::StrCat("GSS announces a ", *length, "-byte token per fragment"));
    }
    return static_cast<uint16_t>(*length);
  }

  absl::Status Protect(uint8_t level, OutgoingPdu& pdu) override {
    if (!pdu.auth) return absl::InternalError("a fragment to protect without a verifier placeholder");
    return context_->Protect(Protection(level), Regions(pdu.bytes, *pdu.auth));
  }

  absl::Status Unprotect(uint8_t level, Bytes& pdu, size_t max_frag_length) override {
    auto layout = LocateAuth(pdu, max_frag_length);
    if (!layout.ok()) return layout.status();
    return context_->Unprotect(Protection(level), Regions(pdu, *layout));
  }

  PeerIdentity identity() const override {
    const auto* acceptor = dynamic_cast<const gss::AcceptorContext*>(context_.get());
    if (acceptor == nullptr) return {};
    PeerIdentity id;
    id.principal = acceptor->client_name();
    const size_t at = id.principal.rfind('@');
    id.user = id.principal.substr(0, at);
    const std::string realm = at == std::string::npos ? "" : id.principal.substr(at + 1);
    id.domain = !realm_domain_.empty() ? realm_domain_ : absl::AsciiStrToUpper(realm.substr(0, realm.find('.')));
    return id;
  }

 private:
  gss::Protection Protection(uint8_t level) const { return gss::Protection{GssLevel(level), header_signing_}; }

  static gss::PduRegions Regions(Bytes& pdu, const AuthLayout& l) {
    std::span<uint8_t> all(pdu);
    return gss::PduRegions{all.subspan(0, l.stub_offset), all.subspan(l.stub_offset, l.seal_length()),
                           all.subspan(l.trailer_offset, kSecTrailerSize),
                           all.subspan(l.auth_value_offset, l.auth_value_length)};
  }

  std::unique_ptr<gss::SecurityContext> context_;
  std::string realm_domain_;
};

}  // namespace

std::unique_ptr<SecurityProvider> NtlmClientSecurity(ntlm::Credentials credentials, ntlm::RandomSource random,
                                                     std::string target_spn) {
  return std::make_unique<NtlmClient>(std::move(credentials), std::move(random), std::move(target_spn));
}

std::unique_ptr<SecurityProvider> NtlmServerSecurity(const ntlm::AccountLookup& accounts,
                                                     const ntlm::ServerNames& names) {
  return std::make_unique<NtlmServer>(accounts, names);
}

absl::StatusOr<std::unique_ptr<SecurityProvider>> GssClientSecurity(const gss::Credentials& credentials,
                                                                    gss::TargetName target, gss::Mech mech,
                                                                    uint8_t level) {
  auto context = gss::InitiatorContext::Create(credentials, std::move(target), mech, GssLevel(level));
  if (!context.ok()) return context.status();
  return std::unique_ptr<SecurityProvider>(std::make_unique<GssSecurity>(*std::move(context), ""));
}

std::unique_ptr<SecurityProvider> GssServerSecurity(std::shared_ptr<gss::AcceptorCredentials> credentials,
                                                    gss::Mech mech, std::string realm_domain) {
  return std::make_unique<GssSecurity>(gss::AcceptorContext::Create(std::move(credentials), mech),
                                       std::move(realm_domain));
}

std::string_view AuthTypeName(uint8_t auth_type) {
  switch (auth_type) {
    case authn::kWinNt:
      return "ntlm";
    case authn::kGssNegotiate:
      return "negotiate";
    case authn::kGssKerberos:
      return "kerberos";
    case authn::kNone:
      return "none";
    default:
      return "unknown";
  }
}

}  // namespace adcsc::rpc
