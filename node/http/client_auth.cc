#include "node/http/client_auth.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>
#include <time.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "node/pki/keys.h"
#include "node/pki/x509.h"

namespace adcsc::node {
namespace {

std::string CommonName(X509* cert) {
  X509_NAME* name = X509_get_subject_name(cert);
  int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (idx < 0) return "";
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
  unsigned char* utf8 = nullptr;
  int len = ASN1_STRING_to_UTF8(&utf8, data);
  if (len < 0) return "";
  std::string cn(reinterpret_cast<char*>(utf8), static_cast<size_t>(len));
  OPENSSL_free(utf8);
  return cn;
}

}  // namespace

ClientAuthorizer::ClientAuthorizer(X509_STORE* store, std::set<std::string> pins, const Clock* clock,
                                   std::map<std::string, int64_t> pin_until)
    : store_(store), pins_(std::move(pins)), clock_(clock), pin_until_(std::move(pin_until)) {}

ClientAuthorizer::~ClientAuthorizer() { X509_STORE_free(store_); }

absl::StatusOr<std::unique_ptr<ClientAuthorizer>> ClientAuthorizer::Create(const std::string& trust_pem_file,
                                                                           const std::vector<std::string>& pins,
                                                                           const Clock* clock,
                                                                           std::map<std::string, int64_t> pin_until) {
  X509_STORE* store = X509_STORE_new();
  if (store == nullptr) return absl::ResourceExhaustedError("X509_STORE_new failed");
  if (X509_STORE_load_file(store, trust_pem_file.c_str()) != 1) {
    X509_STORE_free(store);
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat("api.client_ca_file: cannot load certificates from ", trust_pem_file,
                                                   " (expect a PEM bundle of the CA(s) that issue Jamf Pro's client "
                                                   "certificate)"));
  }
  return std::unique_ptr<ClientAuthorizer>(
      new ClientAuthorizer(store, std::set<std::string>(pins.begin(), pins.end()), clock, std::move(pin_until)));
}

ClientAuthResult ClientAuthorizer::Authorize(X509* leaf, STACK_OF(X509) * chain) const {
  if (leaf == nullptr) {
    ClientAuthResult r;
    r.iis_substatus = kIisNoCertificate;
    r.win32_status = kWin32AccessDenied;
    r.reason =
        "403.7 Client certificate required: no client certificate was presented (Jamf Pro presents the identity "
        "uploaded as client-cert.pfx in its AD CS settings; curl needs --cert)";
    return r;
  }
  const std::string pin = adcsc::pki::CertSha256Hex(leaf);
  const auto now = std::chrono::system_clock::time_point(std::chrono::milliseconds(clock_->NowUnixMillis()));
  {
    std::lock_guard lock(cache_mu_);
    auto it = cache_.find(pin);
    if (it != cache_.end() && it->second.decided_at <= now && now < it->second.valid_until) return it->second.result;
  }
  ClientAuthResult r = Verify(leaf, chain, pin);
  if (r.ok) {
    auto valid_until =
        std::min(now + kDecisionTtl, std::chrono::system_clock::from_time_t(adcsc::pki::NotAfterUnix(leaf)));
    const auto until = pin_until_.find(pin);
    const int64_t until_unix = until == pin_until_.end() ? 0 : until->second;
    if (until_unix != 0) valid_until = std::min(valid_until, std::chrono::system_clock::from_time_t(until_unix));
    std::lock_guard lock(cache_mu_);
    if (cache_.size() >= kMaxCachedDecisions) cache_.clear();
    cache_[pin] = {r, now, valid_until};
    seen_[pin] = {pin, adcsc::pki::NameToString(X509_get_subject_name(leaf)), adcsc::pki::NotAfterUnix(leaf),
                  until_unix};
  }
  return r;
}

std::vector<ClientAuthorizer::Seen> ClientAuthorizer::SeenCertificates() const {
  std::lock_guard lock(cache_mu_);
  std::vector<Seen> out;
  for (const auto& [pin, seen] : seen_) out.push_back(seen);
  return out;
}

ClientAuthResult ClientAuthorizer::Verify(X509* leaf, STACK_OF(X509) * chain, const std::string& pin) const {
  ClientAuthResult r;
  r.pin = pin;
  r.subject = CommonName(leaf);

  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  if (ctx == nullptr || X509_STORE_CTX_init(ctx, store_, leaf, chain) != 1) {
    X509_STORE_CTX_free(ctx);
    r.reason = "internal error while verifying the client certificate";
    return r;
  }
  X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
  X509_STORE_CTX_set_time(ctx, 0, static_cast<time_t>(clock_->NowUnixMillis() / 1000));
  int verified = 0;
  {
    // One verification at a time on the shared store: OpenSSL 3.0 fills lazily cached name
    // encodings of the store's certificates under the store's lock but reads them without it
    // (ThreadSanitizer caught two handshakes racing there). Decisions are cached, so this is
    // rarely contended.
    std::lock_guard lock(verify_mu_);
    verified = X509_verify_cert(ctx);
  }
  int err = X509_STORE_CTX_get_error(ctx);
  X509_STORE_CTX_free(ctx);
  ERR_clear_error();
  if (verified != 1) {
    switch (err) {
      case X509_V_ERR_CERT_HAS_EXPIRED:
        r.iis_substatus = kIisExpired;
        r.win32_status = kCertEExpired;
        r.reason = absl::StrCat("403.17 Client certificate has expired: sha256:", r.pin,
                                " (issue a new client identity with `adcsc pki rotate` or your CA, and upload it to "
                                "Jamf Pro)");
        break;
      case X509_V_ERR_CERT_NOT_YET_VALID:
        r.iis_substatus = kIisExpired;
        r.win32_status = kCertEExpired;
        r.reason = absl::StrCat("403.17 Client certificate is not yet valid: sha256:", r.pin,
                                " (check the clocks of this node and of the issuing CA)");
        break;
      default:
        r.iis_substatus = kIisUntrusted;
        r.win32_status = err == X509_V_ERR_CERT_SIGNATURE_FAILURE ? kTrustECertSignature
                         : err == X509_V_ERR_INVALID_PURPOSE      ? kCertEWrongUsage
                                                                  : kCertEUntrustedRoot;
        r.reason = absl::StrCat("403.16 Client certificate is untrusted or invalid: sha256:", r.pin, " ",
                                X509_verify_cert_error_string(err), " (its issuing CA must be in api.client_ca_file)");
        break;
    }
    return r;
  }
  if (pins_.count(r.pin) == 0) {
    r.iis_substatus = kIisMapperDenied;
    r.win32_status = kWin32AccessDenied;
    r.reason = absl::StrCat("403.12 Client certificate is not mapped: sha256:", r.pin,
                            " is trusted but not one of api.client_pins (one-to-one mapping, as in IIS: add the "
                            "pin to map it)");
    return r;
  }
  if (auto until = pin_until_.find(r.pin);
      until != pin_until_.end() && clock_->NowUnixMillis() / 1000 >= until->second) {
    r.iis_substatus = kIisMapperDenied;
    r.win32_status = kWin32AccessDenied;
    r.reason = absl::StrCat(
        "403.12 Client certificate is no longer mapped: sha256:", r.pin,
        " was the old client identity of a rotation whose overlap ended at ", adcsc::pki::UtcDateTime(until->second),
        " (api.client_pins until); Jamf Pro must present the new client-cert.pfx (upload it in "
        "Settings > Global Settings > PKI Certificates), or move the until of this pin later and reload");
    return r;
  }
  r.ok = true;
  return r;
}

ClientAuthResult ClientAuthorizer::AuthorizeSsl(SSL* ssl) const {
  return Authorize(SSL_get0_peer_certificate(ssl), SSL_get_peer_cert_chain(ssl));
}

}  // namespace adcsc::node
