// DCE-style contexts and PDU protection on MIT GSS-API; see context.h.
#include "node/gss/context.h"

#include <array>

#include "absl/strings/str_cat.h"
#include "node/gss/errors.h"
#include "node/gss/internal.h"

namespace adcsc::gss {
namespace {

using internal::OwnedBuffer;

constexpr OM_uint32 kSequenceProblems = GSS_S_DUPLICATE_TOKEN | GSS_S_OLD_TOKEN | GSS_S_UNSEQ_TOKEN | GSS_S_GAP_TOKEN;

gss_ctx_id_t* Ctx(void*& native) { return reinterpret_cast<gss_ctx_id_t*>(&native); }

gss_iov_buffer_desc Iov(OM_uint32 type, std::span<uint8_t> bytes) {
  return gss_iov_buffer_desc{type, gss_buffer_desc{bytes.size(), bytes.data()}};
}

// The buffers for one fragment in PDU order (the order the checksum covers them), with the
// token buffer first. Returns how many were filled.
size_t Layout(const Protection& protection, const PduRegions& pdu, std::array<gss_iov_buffer_desc, 4>& iov) {
  const OM_uint32 token_type =
      protection.level == Level::kPrivacy ? GSS_IOV_BUFFER_TYPE_HEADER : GSS_IOV_BUFFER_TYPE_MIC_TOKEN;
  size_t n = 0;
  iov[n++] = Iov(token_type, pdu.auth_value);
  if (protection.header_signing) iov[n++] = Iov(GSS_IOV_BUFFER_TYPE_SIGN_ONLY, pdu.header);
  iov[n++] = Iov(GSS_IOV_BUFFER_TYPE_DATA, pdu.body);
  if (protection.header_signing) iov[n++] = Iov(GSS_IOV_BUFFER_TYPE_SIGN_ONLY, pdu.sec_trailer);
  return n;
}

void ReleaseContext(void*& native) {
  OM_uint32 minor = 0;
  if (native != nullptr) gss_delete_sec_context(&minor, Ctx(native), GSS_C_NO_BUFFER);
  native = nullptr;
}

}  // namespace

uint32_t DceContextFlags(Level level) {
  return GSS_C_MUTUAL_FLAG | GSS_C_REPLAY_FLAG | GSS_C_SEQUENCE_FLAG | GSS_C_INTEG_FLAG | GSS_C_DCE_STYLE |
         (level == Level::kPrivacy ? GSS_C_CONF_FLAG : 0);
}

SecurityContext::~SecurityContext() { ReleaseContext(native_); }

absl::StatusOr<size_t> SecurityContext::AuthValueLength(const Protection& protection, size_t header_length,
                                                        size_t body_length, size_t sec_trailer_length) const {
  if (!done_) return absl::FailedPreconditionError("the security context is not established yet");
  std::array<gss_iov_buffer_desc, 4> iov{};
  // Lengths only: the *_length calls read no data.
  PduRegions sizes{{static_cast<uint8_t*>(nullptr), header_length},
                   {static_cast<uint8_t*>(nullptr), body_length},
                   {static_cast<uint8_t*>(nullptr), sec_trailer_length},
                   {}};
  const size_t n = Layout(protection, sizes, iov);
  OM_uint32 minor = 0;
  void* native = native_;
  const OM_uint32 major =
      protection.level == Level::kPrivacy
          ? gss_wrap_iov_length(&minor, *Ctx(native), 1, GSS_C_QOP_DEFAULT, nullptr, iov.data(), static_cast<int>(n))
          : gss_get_mic_iov_length(&minor, *Ctx(native), GSS_C_QOP_DEFAULT, iov.data(), static_cast<int>(n));
  if (GSS_ERROR(major)) {
    return GssError({"sizing the auth_value", Stage::kProtect, major, minor, mech_, ""});
  }
  return iov[0].buffer.length;
}

absl::Status SecurityContext::Protect(const Protection& protection, const PduRegions& pdu) {
  if (!done_ || failed_) return absl::FailedPreconditionError("the security context is not established");
  if (pdu.body.size() % kAuthPadAlignment != 0) {
    return absl::InvalidArgumentError(absl::StrCat("the stub and its padding are ", pdu.body.size(),
                                                   " bytes, not a multiple of ", kAuthPadAlignment));
  }
  absl::StatusOr<size_t> length =
      AuthValueLength(protection, pdu.header.size(), pdu.body.size(), pdu.sec_trailer.size());
  if (!length.ok()) return length.status();
  if (*length != pdu.auth_value.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the auth_value has room for ", pdu.auth_value.size(), " bytes; the token needs ", *length));
  }
  std::array<gss_iov_buffer_desc, 4> iov{};
  const size_t n = Layout(protection, pdu, iov);
  OM_uint32 minor = 0;
  int conf_state = 0;
  const OM_uint32 major =
      protection.level == Level::kPrivacy
          ? gss_wrap_iov(&minor, *Ctx(native_), 1, GSS_C_QOP_DEFAULT, &conf_state, iov.data(), static_cast<int>(n))
          : gss_get_mic_iov(&minor, *Ctx(native_), GSS_C_QOP_DEFAULT, iov.data(), static_cast<int>(n));
  if (GSS_ERROR(major)) {
    return GssError({"protecting a PDU", Stage::kProtect, major, minor, mech_, ""});
  }
  if (iov[0].buffer.length != pdu.auth_value.size() || (protection.level == Level::kPrivacy && conf_state != 1)) {
    return absl::InternalError("gss_wrap_iov produced a token other than gss_wrap_iov_length announced");
  }
  return absl::OkStatus();
}

absl::Status SecurityContext::Unprotect(const Protection& protection, const PduRegions& pdu) {
  if (!done_ || failed_) return absl::FailedPreconditionError("the security context is not established");
  std::array<gss_iov_buffer_desc, 4> iov{};
  const size_t n = Layout(protection, pdu, iov);
  OM_uint32 minor = 0;
  int conf_state = 0;
  gss_qop_t qop = 0;
  const OM_uint32 major =
      protection.level == Level::kPrivacy
          ? gss_unwrap_iov(&minor, *Ctx(native_), &conf_state, &qop, iov.data(), static_cast<int>(n))
          : gss_verify_mic_iov(&minor, *Ctx(native_), &qop, iov.data(), static_cast<int>(n));
  if (GSS_ERROR(major) || (major & kSequenceProblems) != 0) {
    failed_ = true;
    absl::Status status = GssError({"checking a received PDU", Stage::kUnprotect, major, minor, mech_, ""});
    if (status.code() == absl::StatusCode::kInternal) {
      status = absl::PermissionDeniedError(std::string(status.message()));
    }
    return status;
  }
  if (protection.level == Level::kPrivacy && conf_state != 1) {
    failed_ = true;
    return absl::PermissionDeniedError(
        "checking a received PDU: the peer signed but did not encrypt it at packet privacy (a downgrade)");
  }
  return absl::OkStatus();
}

// ---- initiator ----

InitiatorContext::InitiatorContext(std::shared_ptr<const internal::CredHandle> cred, TargetName target, Mech mech,
                                   Level level, std::string realm)
    : SecurityContext(mech),
      cred_(std::move(cred)),
      target_(std::move(target)),
      level_(level),
      realm_(std::move(realm)) {}

InitiatorContext::~InitiatorContext() {
  OM_uint32 minor = 0;
  auto name = static_cast<gss_name_t>(target_name_);
  gss_release_name(&minor, &name);
}

absl::StatusOr<std::unique_ptr<InitiatorContext>> InitiatorContext::Create(const Credentials& credentials,
                                                                           TargetName target, Mech mech, Level level) {
  const bool host_based = target.type == TargetName::Type::kHostBasedService;
  gss_buffer_desc text{target.name.size(), target.name.data()};
  gss_name_t name = GSS_C_NO_NAME;
  OM_uint32 minor = 0;
  const OM_uint32 major =
      gss_import_name(&minor, &text, host_based ? GSS_C_NT_HOSTBASED_SERVICE : GSS_KRB5_NT_PRINCIPAL_NAME, &name);
  if (GSS_ERROR(major)) {
    return GssError(
        {absl::StrCat("the target name '", target.name, "' is not valid"), Stage::kInitiate, major, minor, mech, ""});
  }
  std::string realm = internal::RealmOf(credentials.principal());
  std::unique_ptr<InitiatorContext> context(
      new InitiatorContext(credentials.Handle(), std::move(target), mech, level, std::move(realm)));
  context->target_name_ = name;
  return context;
}

absl::StatusOr<StepResult> InitiatorContext::Step(ByteView input) {
  if (done_ || failed_) return absl::FailedPreconditionError("the security context has no further legs");
  gss_buffer_desc in = internal::View(input);
  OwnedBuffer out;
  OM_uint32 minor = 0;
  OM_uint32 flags = 0;
  gss_OID actual_mech = GSS_C_NO_OID;
  const OM_uint32 major = gss_init_sec_context(
      &minor, cred_->get(), Ctx(native_), static_cast<gss_name_t>(target_name_), internal::MechOid(mech_),
      DceContextFlags(level_), GSS_C_INDEFINITE, GSS_C_NO_CHANNEL_BINDINGS, native_ == nullptr ? GSS_C_NO_BUFFER : &in,
      &actual_mech, out.get(), &flags, nullptr);
  if (GSS_ERROR(major)) {
    failed_ = true;
    return GssError(
        {absl::StrCat("authenticating to ", target_.name, " with Kerberos (", std::string(MechName(mech_)), ")"),
         Stage::kInitiate, major, minor, mech_, realm_});
  }
  StepResult result{out.ToBytes(), major == GSS_S_COMPLETE};
  if (result.done) {
    done_ = true;
    granted_flags_ = flags;
    negotiated_krb5_ = actual_mech != GSS_C_NO_OID && gss_oid_equal(actual_mech, gss_mech_krb5);
    const uint32_t needed =
        GSS_C_MUTUAL_FLAG | GSS_C_INTEG_FLAG | GSS_C_DCE_STYLE | (level_ == Level::kPrivacy ? GSS_C_CONF_FLAG : 0);
    if ((flags & needed) != needed) {
      failed_ = true;
      return absl::FailedPreconditionError(absl::StrCat("authenticating to ", target_.name,
                                                        ": the context lacks mutual authentication, confidentiality "
                                                        "or DCE style (granted flags 0x",
                                                        absl::Hex(flags), ")"));
    }
  }
  return result;
}

// ---- acceptor ----

AcceptorContext::AcceptorContext(std::shared_ptr<AcceptorCredentials> credentials, Mech mech)
    : SecurityContext(mech), credentials_(std::move(credentials)) {}

AcceptorContext::~AcceptorContext() = default;

std::unique_ptr<AcceptorContext> AcceptorContext::Create(std::shared_ptr<AcceptorCredentials> credentials, Mech mech) {
  return std::unique_ptr<AcceptorContext>(new AcceptorContext(std::move(credentials), mech));
}

absl::StatusOr<StepResult> AcceptorContext::Step(ByteView input) {
  if (done_ || failed_) return absl::FailedPreconditionError("the security context has no further legs");
  if (native_ == nullptr) {
    // The bind's auth_type names the mech; raw krb5 tokens start with [APPLICATION 14]
    // (AP-REQ, 0x6e), SPNEGO's NegTokenInit with [APPLICATION 0] (0x60).
    const bool spnego_token = !input.empty() && input[0] == 0x60;
    if (spnego_token != (mech_ == Mech::kSpnego)) {
      failed_ = true;
      return absl::PermissionDeniedError(absl::StrCat("the client's first token is not a ",
                                                      std::string(MechName(mech_)), " token (first byte 0x",
                                                      absl::Hex(input.empty() ? 0 : input[0]), ")"));
    }
  }
  gss_buffer_desc in = internal::View(input);
  OwnedBuffer out;
  internal::Name client;
  OM_uint32 minor = 0;
  OM_uint32 flags = 0;
  gss_OID actual_mech = GSS_C_NO_OID;
  const OM_uint32 major =
      gss_accept_sec_context(&minor, Ctx(native_), credentials_->Handle()->get(), &in, GSS_C_NO_CHANNEL_BINDINGS,
                             client.out(), &actual_mech, out.get(), &flags, nullptr, nullptr);
  if (GSS_ERROR(major)) {
    failed_ = true;
    return GssError({absl::StrCat("accepting a Kerberos (", std::string(MechName(mech_)), ") client"), Stage::kAccept,
                     major, minor, mech_, ""});
  }
  StepResult result{out.ToBytes(), major == GSS_S_COMPLETE};
  if (result.done) {
    done_ = true;
    granted_flags_ = flags;
    negotiated_krb5_ = actual_mech != GSS_C_NO_OID && gss_oid_equal(actual_mech, gss_mech_krb5);
    client_name_ = client.Display();
    if ((flags & GSS_C_DCE_STYLE) == 0) {
      failed_ = true;
      return absl::PermissionDeniedError("the client did not ask for a DCE-style context (GSS_C_DCE_STYLE)");
    }
  }
  return result;
}

}  // namespace adcsc::gss
