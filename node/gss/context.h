// DCE-style GSS-API security contexts for DCE/RPC (MS-RPCE 3.3.1.5.2, MS-KILE 3.4.5.1) and the
// per-PDU protection they give, on MIT Kerberos: the initiator (the connector binding to
// ADCS), the acceptor (the ADCS emulator), and Protect/Unprotect laid out as Windows does.
// Thread-safety: a context is used by one thread at a time (MIT does not lock a context;
// the rpc connection makes one call at a time anyway).
//
// ## The exchange (GSS_C_DCE_STYLE)
// krb5 (auth type 16): the client's raw AP-REQ (no GSS framing, MS-KILE 3.4.5.1) goes in the
// bind; the server's AP-REP comes back in the bind_ack; the client answers with an AP-REP of
// its own, sent in an alter_context (or AUTH3, which servers also accept for type 16). The
// initiator is done after producing that third token; the acceptor after consuming it.
// SPNEGO (auth type 9): the same three tokens inside NegTokenInit / NegTokenResp, plus a
// fourth from the server (accept-completed) in the alter_context_resp; the initiator is done
// only after consuming it. So: the client sends whatever Step() returns while it is non-empty
// and keeps stepping with the server's answers until done(); the server answers each token
// with Step()'s output (possibly empty) until done().
//
// ## Protecting a PDU (MS-RPCE 2.2.2.11, 3.3.1.5.2.2; how MIT and Windows lay it out)
// A request/response PDU fragment is [header | stub + auth padding | sec_trailer | auth_value]:
// header = the 16-byte common header + alloc_hint, p_cont_id, opnum (+ object UUID), 24 bytes
// for a request; the stub is padded so the sec_trailer starts on a 16-byte boundary
// (auth_pad_length in the sec_trailer); the sec_trailer is 8 bytes; the auth_value is the
// whole GSS token. At packet privacy it is gss_wrap_iov with conf_req_flag=1 over, in PDU
// order, SIGN_ONLY(header), DATA(stub+pad, encrypted in place), SIGN_ONLY(sec_trailer) and a
// HEADER buffer = auth_value; with DCE_STYLE and no TRAILER buffer MIT puts the RFC 4121
// trailer (EC filler, encrypted token header, checksum) into the HEADER buffer too, rotated
// as Windows expects (RRC), so the auth_value carries the whole token: 76 bytes for
// AES-256/AES-128 (16 token header + 16 confounder + 16 EC + 16 encrypted header + 12 HMAC).
// Only the order of the DATA and SIGN_ONLY buffers matters to the checksum; MIT finds the
// HEADER buffer by its type, so where it sits in the array does not matter (Samba puts it
// first, as we do; the shared notes list it last). When the server did not echo PFC_SUPPORT_HEADER_SIGN, Windows and
// Samba protect the stub alone: HEADER + DATA, no SIGN_ONLY buffers. At packet integrity
// Windows sends a MIC token (RFC 4121 GetMIC, 28 bytes for AES), not a wrap token with
// conf_req_flag=0: gss_get_mic_iov over the same regions (the header and sec_trailer only
// with header signing), the MIC in the auth_value. auth_length sits in the header, which may
// be signed, so it must be known before protecting: AuthValueLength() asks gss_wrap_iov_length
// / gss_get_mic_iov_length rather than assuming 76 or 28. Each fragment is protected on its
// own, in send order (the token carries a sequence number the peer checks).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "node/gss/credentials.h"
#include "node/gss/mech.h"

namespace adcsc::gss {

// The stub is padded to this before the sec_trailer (Windows pads to 16 for Kerberos).
inline constexpr size_t kAuthPadAlignment = 16;
inline size_t AuthPadLength(size_t stub_length) {
  return (kAuthPadAlignment - stub_length % kAuthPadAlignment) % kAuthPadAlignment;
}

// Who the initiator authenticates to.
struct TargetName {
  enum class Type {
    kHostBasedService,  // "service@host" (GSS_C_NT_HOSTBASED_SERVICE), e.g. "host@ca1.example.test"
    kPrincipal,         // a full Kerberos principal, e.g. "host/ca1.example.test@EXAMPLE.TEST"
  };
  Type type = Type::kHostBasedService;
  std::string name;

  // host/<fqdn>: the SPN Windows clients use for the CA (its computer account holds it).
  static TargetName Host(std::string_view fqdn) { return {Type::kHostBasedService, "host@" + std::string(fqdn)}; }
  static TargetName Principal(std::string principal) { return {Type::kPrincipal, std::move(principal)}; }
};

enum class Level {
  kIntegrity,  // RPC_C_AUTHN_LEVEL_PKT_INTEGRITY: a MIC in the auth_value
  kPrivacy,    // RPC_C_AUTHN_LEVEL_PKT_PRIVACY: the stub encrypted, a wrap token in the auth_value
};

// The requested context flags: MUTUAL | REPLAY | SEQUENCE | INTEG | DCE_STYLE, and CONF at
// privacy. At integrity CONF is not requested: with credentials acquired with no_ci_flags
// (GSS_KRB5_CRED_NO_CI_FLAGS_X) the AP-REQ's checksum then carries INTEG alone, so an
// acceptor that sizes tokens from the flags expects a MIC. MIT asserts CONF|INTEG by default
// but still asserts any flag the caller asks for, option or not (MIT's t_ciflags.c).
uint32_t DceContextFlags(Level level);

struct Protection {
  Level level = Level::kPrivacy;
  // PFC_SUPPORT_HEADER_SIGN was echoed by the server: the header and sec_trailer are signed.
  bool header_signing = true;
};

// One PDU fragment as views into the caller's buffer; Protect/Unprotect change it in place.
struct PduRegions {
  std::span<uint8_t> header;       // common header + request/response header (+ object UUID)
  std::span<uint8_t> body;         // stub + auth padding (encrypted in place at privacy)
  std::span<uint8_t> sec_trailer;  // the 8-byte sec_trailer
  std::span<uint8_t> auth_value;   // exactly AuthValueLength() bytes
};

struct StepResult {
  Bytes token;        // to send to the peer when not empty
  bool done = false;  // the context is established (send `token` first if there is one)
};

class SecurityContext {
 public:
  virtual ~SecurityContext();
  SecurityContext(const SecurityContext&) = delete;
  SecurityContext& operator=(const SecurityContext&) = delete;

  // The next leg: consumes the peer's token (empty for the initiator's first call), produces
  // ours. After an error the context is unusable.
  virtual absl::StatusOr<StepResult> Step(ByteView input) = 0;

  bool done() const { return done_; }
  Mech mech() const { return mech_; }
  // For SPNEGO: whether krb5 was negotiated under it (always, with MIT and Windows).
  bool negotiated_krb5() const { return negotiated_krb5_; }
  // The flags GSS granted (GSS_C_*_FLAG), valid when done().
  uint32_t granted_flags() const { return granted_flags_; }

  // The auth_value length for a PDU whose body (stub + padding) is `body_length` bytes.
  absl::StatusOr<size_t> AuthValueLength(const Protection& protection, size_t header_length, size_t body_length,
                                         size_t sec_trailer_length) const;
  // Protects an outgoing fragment: at privacy encrypts `body` in place; writes the token into
  // `auth_value`, whose size must be AuthValueLength(). INVALID_ARGUMENT when the body is not
  // a multiple of kAuthPadAlignment or the auth_value has the wrong size.
  absl::Status Protect(const Protection& protection, const PduRegions& pdu);
  // Checks (and at privacy decrypts in place) a received fragment. PERMISSION_DENIED when the
  // token does not verify, is replayed or out of sequence, or was not encrypted at privacy;
  // the connection must then be dropped.
  absl::Status Unprotect(const Protection& protection, const PduRegions& pdu);

 protected:
  explicit SecurityContext(Mech mech) : mech_(mech) {}
  void* native_ = nullptr;  // gss_ctx_id_t; kept opaque so this header does not pull in GSS-API
  Mech mech_;
  bool done_ = false;
  bool failed_ = false;
  bool negotiated_krb5_ = false;
  uint32_t granted_flags_ = 0;
};

class InitiatorContext final : public SecurityContext {
 public:
  // Takes a snapshot of `credentials`' current handle (renewals do not disturb this context).
  // `level`: the RPC authentication level the connection will use (it decides CONF).
  static absl::StatusOr<std::unique_ptr<InitiatorContext>> Create(const Credentials& credentials, TargetName target,
                                                                  Mech mech, Level level = Level::kPrivacy);
  ~InitiatorContext() override;
  absl::StatusOr<StepResult> Step(ByteView input) override;
  const TargetName& target() const { return target_; }

 private:
  InitiatorContext(std::shared_ptr<const internal::CredHandle> cred, TargetName target, Mech mech, Level level,
                   std::string realm);
  std::shared_ptr<const internal::CredHandle> cred_;
  TargetName target_;
  Level level_;
  std::string realm_;
  void* target_name_ = nullptr;  // gss_name_t
};

class AcceptorContext final : public SecurityContext {
 public:
  // `mech`: what the bind's auth_type asked for (9 or 16); a token of the other kind fails.
  static std::unique_ptr<AcceptorContext> Create(std::shared_ptr<AcceptorCredentials> credentials, Mech mech);
  ~AcceptorContext() override;
  absl::StatusOr<StepResult> Step(ByteView input) override;
  // The authenticated client, e.g. "svc-adcsc@EXAMPLE.TEST", once done().
  const std::string& client_name() const { return client_name_; }

 private:
  AcceptorContext(std::shared_ptr<AcceptorCredentials> credentials, Mech mech);
  std::shared_ptr<AcceptorCredentials> credentials_;
  std::string client_name_;
};

}  // namespace adcsc::gss
