// GSS-API failures as statuses with a hint; see errors.h.
#include "node/gss/errors.h"

#include <krb5.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "node/gss/internal.h"

namespace adcsc::gss {
namespace {

std::string Display(uint32_t code, int type, gss_OID mech) {
  std::string text;
  OM_uint32 context = 0;
  do {
    OM_uint32 minor = 0;
    internal::OwnedBuffer message;
    if (GSS_ERROR(gss_display_status(&minor, code, type, mech, &context, message.get()))) break;
    if (!text.empty()) text += "; ";
    text += message.ToString();
  } while (context != 0);
  return text;
}

// MIT's mechglue hands back some minor codes as they are (krb5 com_err codes) and others
// renumbered per process (100000 and up, through SPNEGO or gss_acquire_cred_with_password),
// with no public way back. So a code that is not one we know is recognised by MIT's text for
// it (generic or extended, e.g. "Cannot contact any KDC for realm 'X'"). The texts are MIT's
// English ones: with a translated krb5 (krb5-locales and a non-English LANG) only the hints
// for unmapped codes are lost; MIT's own text is always in the message.
struct KnownCode {
  krb5_error_code code;
  const char* starts_with;  // the text starts with this...
  const char* contains;     // ...and contains this (either may be empty)
};
constexpr KnownCode kKnownCodes[] = {
    {KRB5_KDC_UNREACH, "Cannot contact any KDC", ""},
    {KRB5KRB_AP_ERR_SKEW, "Clock skew too great", ""},
    {KRB5KRB_AP_ERR_BAD_INTEGRITY, "Decrypt integrity check failed", ""},
    {KRB5KRB_AP_ERR_MODIFIED, "Message stream modified", ""},
    {KRB5KRB_AP_ERR_BADKEYVER, "Specified version of key is not available", ""},
    {KRB5_KT_KVNONOTFOUND, "", "not found in keytab; keytab is likely out of date"},
    {KRB5_KT_KVNONOTFOUND, "Key version number for principal in key table is incorrect", ""},
    {KRB5KDC_ERR_PREAUTH_FAILED, "Preauthentication failed", ""},
    {KRB5KDC_ERR_KEY_EXP, "Password has expired", ""},
    {KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN, "Client", "not found in Kerberos database"},
    {KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN, "Server", "not found in Kerberos database"},
    {KRB5KRB_AP_ERR_TKT_EXPIRED, "Ticket expired", ""},
    {KRB5_KT_NOTFOUND, "", "key table entry"},
    {KRB5_KT_NOTFOUND, "Key table entry not found", ""},
    {KRB5_FCC_NOFILE, "No credentials cache found", ""},
    {KRB5_CC_NOTFOUND, "Matching credential not found", ""},
    {KRB5_REALM_CANT_RESOLVE, "Cannot resolve network address for KDC", ""},
    {KRB5_REALM_UNKNOWN, "Cannot find KDC for", ""},
};

bool IsKnown(krb5_error_code code) {
  for (const KnownCode& known : kKnownCodes) {
    if (known.code == code) return true;
  }
  return false;
}

krb5_error_code Krb5Code(uint32_t minor, Mech mech) {
  const auto code = static_cast<krb5_error_code>(minor);
  if (code == 0 || IsKnown(code)) return code;
  const std::string text = DisplayMinor(minor, mech);
  for (const KnownCode& known : kKnownCodes) {
    if (text.rfind(known.starts_with, 0) == 0 && text.find(known.contains) != std::string::npos) return known.code;
  }
  return code;
}

bool IsAcquire(Stage stage) { return stage == Stage::kAcquireInitiator || stage == Stage::kAcquireAcceptor; }

struct Hint {
  absl::StatusCode code;
  std::string text;
};

// The operator's view of a krb5 code. Empty text: no specific advice.
Hint HintForMinor(const Failure& f) {
  const std::string realm = f.realm.empty() ? std::string("the client's realm") : "realm " + f.realm;
  switch (Krb5Code(f.minor, f.mech)) {
    case KRB5KRB_AP_ERR_SKEW:
    case KRB5_KDCREP_SKEW:
      return {absl::StatusCode::kFailedPrecondition,
              "clock skew too great between this host and the KDC/CA: check NTP (chronyc tracking) on this host, "
              "the domain controllers and the CA"};
    case KRB5_KDC_UNREACH:
      return {absl::StatusCode::kUnavailable,
              absl::StrCat("cannot reach the KDC for ", realm,
                           ": check krb5.conf ([realms] kdc, dns_lookup_kdc) and the network to the domain "
                           "controllers (port 88)")};
    case KRB5_REALM_CANT_RESOLVE:
    case KRB5_REALM_UNKNOWN:
      return {absl::StatusCode::kFailedPrecondition,
              absl::StrCat("no KDC is known for ", realm,
                           ": check krb5.conf ([libdefaults] default_realm, [realms], [domain_realm]) or DNS SRV "
                           "records _kerberos._tcp")};
    case KRB5KRB_AP_ERR_BAD_INTEGRITY:
    case KRB5KRB_AP_ERR_MODIFIED:
    case KRB5KRB_AP_ERR_BADKEYVER:
    case KRB5_KT_KVNONOTFOUND:
      if (f.stage == Stage::kAccept) {
        return {absl::StatusCode::kFailedPrecondition,
                "the service keytab's key does not match the key the KDC encrypted the ticket with (stale keytab "
                "or a password change): compare `klist -kt` with the account's kvno and re-export the keytab"};
      }
      if (IsAcquire(f.stage)) {
        return {absl::StatusCode::kUnauthenticated,
                "the password or the client keytab's key does not match the account's (was its password changed? "
                "re-export the keytab)"};
      }
      break;
    case KRB5KDC_ERR_PREAUTH_FAILED:
    case KRB5KDC_ERR_KEY_EXP:
      return {absl::StatusCode::kUnauthenticated,
              "the KDC refused the password or the client keytab's key (wrong password, changed password or stale "
              "keytab): check the credentials with kinit"};
    case KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN:
      return {absl::StatusCode::kUnauthenticated,
              "the KDC does not know the client principal: check its spelling and realm (user@REALM)"};
    case KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN:
      return {absl::StatusCode::kFailedPrecondition,
              "the KDC does not know the CA's service principal: check the CA host name (an FQDN, no alias "
              "without its own SPN) or set the target principal explicitly (setspn -L <ca host>)"};
    case KRB5_KT_NOTFOUND:
      return {absl::StatusCode::kFailedPrecondition,
              "the keytab has no key for this principal: check it with `klist -kt` and the configured principal"};
    case KRB5KRB_AP_ERR_TKT_EXPIRED:
      return {absl::StatusCode::kFailedPrecondition,
              "the Kerberos ticket expired: renew it (kinit, k5start) or use a keytab or password file so adcsc "
              "renews it"};
    case KRB5_FCC_NOFILE:
    case KRB5_CC_NOTFOUND:
    case KRB5_CC_BADNAME:
      return {absl::StatusCode::kFailedPrecondition,
              "no Kerberos credentials in the credential cache: run kinit or configure a keytab or password file"};
    default:
      break;
  }
  return {absl::StatusCode::kUnknown, ""};
}

Hint HintForMajor(const Failure& f) {
  const OM_uint32 routine = GSS_ROUTINE_ERROR(f.major);
  if (routine == GSS_S_BAD_SIG || routine == GSS_S_BAD_MIC) {
    return {absl::StatusCode::kPermissionDenied,
            "the PDU's signature did not verify: it was altered on the way, or the peers' keys or header-signing "
            "settings differ"};
  }
  if (routine == GSS_S_CREDENTIALS_EXPIRED || routine == GSS_S_CONTEXT_EXPIRED) {
    return {absl::StatusCode::kFailedPrecondition,
            "the Kerberos credentials expired: renew them (kinit) or use a keytab or password file"};
  }
  if (routine == GSS_S_NO_CRED) {
    return {absl::StatusCode::kFailedPrecondition,
            "no usable Kerberos credentials: check the keytab, password file or credential cache (klist)"};
  }
  if (routine == 0 && (f.major & (GSS_S_DUPLICATE_TOKEN | GSS_S_OLD_TOKEN | GSS_S_UNSEQ_TOKEN | GSS_S_GAP_TOKEN))) {
    return {absl::StatusCode::kPermissionDenied,
            "a PDU arrived replayed or out of sequence: someone on the path may be replaying traffic"};
  }
  if (routine == GSS_S_DEFECTIVE_TOKEN || routine == GSS_S_DEFECTIVE_CREDENTIAL) {
    return {absl::StatusCode::kPermissionDenied, "the peer sent a malformed or unexpected security token"};
  }
  return {absl::StatusCode::kInternal, ""};
}

}  // namespace

std::string DisplayMajor(uint32_t major) { return Display(major, GSS_C_GSS_CODE, GSS_C_NO_OID); }

std::string DisplayMinor(uint32_t minor, Mech mech) {
  if (minor == 0) return "";
  std::string text = Display(minor, GSS_C_MECH_CODE, internal::MechOid(mech));
  if (!text.empty()) return text;
  // A krb5 code the mechglue never saw (it only knows codes it mapped): libkrb5's own text.
  krb5_context context = nullptr;
  if (krb5_init_context(&context) != 0) return "";
  const char* message = krb5_get_error_message(context, static_cast<krb5_error_code>(minor));
  text = message;
  krb5_free_error_message(context, message);
  krb5_free_context(context);
  return text;
}

absl::Status GssError(const Failure& failure) {
  Hint hint = HintForMinor(failure);
  if (hint.text.empty()) hint = HintForMajor(failure);
  std::string message = failure.what;
  if (!hint.text.empty()) absl::StrAppend(&message, ": ", hint.text);
  absl::StrAppend(&message, " (GSS-API: ", DisplayMajor(failure.major));
  if (failure.minor != 0) {
    absl::StrAppend(&message, "; ", std::string(MechName(failure.mech)), ": ",
                    DisplayMinor(failure.minor, failure.mech),
                    absl::StrFormat(" [minor %d]", static_cast<int32_t>(failure.minor)));
  }
  absl::StrAppend(&message, ")");
  return absl::Status(hint.code, message);
}

}  // namespace adcsc::gss
