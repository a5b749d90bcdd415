#include "node/pki/x509.h"

#include <arpa/inet.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/rsa.h>
#include <openssl/x509_vfy.h>
#include <time.h>

#include "absl/strings/str_cat.h"
#include "node/pki/absl_view.h"
#include "node/pki/keys.h"

namespace adcsc::pki {
namespace {

// notBefore is this far before the time of issue, so a host whose clock is behind, or was
// stepped back (NTP, an operator, a VM resume), accepts a certificate issued just now: TLS
// fails with "certificate is not yet valid" otherwise. Common practice (Let's Encrypt
// backdates by one hour); notAfter still counts from the time of issue.
constexpr int64_t kBackdateSeconds = 60 * 60;
constexpr int64_t kSecondsPerDay = 86'400;
constexpr size_t kSerialBytes = 16;
constexpr int kMaxYears = 100;

// keyUsage bit numbers (RFC 5280 4.2.1.3).
constexpr int kKuDigitalSignature = 0;
constexpr int kKuKeyEncipherment = 2;
constexpr int kKuKeyCertSign = 5;
constexpr int kKuCrlSign = 6;

int64_t NowUnix() { return static_cast<int64_t>(time(nullptr)); }

// The digest to sign with: SHA-256, or none for keys that hash internally (EdDSA).
const EVP_MD* SigningDigest(EVP_PKEY* key) {
  const int id = EVP_PKEY_get_base_id(key);
  if (id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448) return nullptr;
  return EVP_sha256();
}

bool IsRsa(EVP_PKEY* key) {
  const int id = EVP_PKEY_get_base_id(key);
  return id == EVP_PKEY_RSA || id == EVP_PKEY_RSA_PSS;
}

int64_t Asn1TimeToUnix(const ASN1_TIME* t) {
  if (t == nullptr) return 0;
  struct tm tm {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<int64_t>(timegm(&tm));
}

// `from` plus `years` calendar years (Feb 29 rolls to Mar 1).
int64_t AddYears(int64_t from, int years) {
  const time_t t = static_cast<time_t>(from);
  struct tm tm {};
  gmtime_r(&t, &tm);
  tm.tm_year += years;
  return static_cast<int64_t>(timegm(&tm));
}

absl::Status SetTime(ASN1_TIME* field, int64_t unix_seconds, std::string_view which) {
  if (ASN1_TIME_set(field, static_cast<time_t>(unix_seconds)) == nullptr) {
    return absl::InternalError(OpenSslFailure(absl::StrCat("setting ", AbslView(which))));
  }
  return absl::OkStatus();
}

absl::Status SetRandomSerial(X509* cert) {
  absl::StatusOr<Bytes> serial = SecureRandomBytes(kSerialBytes);
  if (!serial.ok()) return serial.status();
  // Positive (top bit clear) and exactly 16 bytes long (next bit set).
  (*serial)[0] = static_cast<uint8_t>(((*serial)[0] & 0x7f) | 0x40);
  BignumPtr bn(BN_bin2bn(serial->data(), static_cast<int>(serial->size()), nullptr));
  if (bn == nullptr) return absl::InternalError(OpenSslFailure("BN_bin2bn"));
  Asn1IntegerPtr integer(BN_to_ASN1_INTEGER(bn.get(), nullptr));
  if (integer == nullptr || X509_set_serialNumber(cert, integer.get()) != 1) {
    return absl::InternalError(OpenSslFailure("setting the serial number"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<X509NamePtr> CommonNameOnly(const std::string& cn) {
  if (cn.empty()) return absl::InvalidArgumentError("the common name must not be empty");
  X509NamePtr name(X509_NAME_new());
  if (name == nullptr || X509_NAME_add_entry_by_NID(name.get(), NID_commonName, MBSTRING_UTF8,
                                                    reinterpret_cast<const unsigned char*>(cn.c_str()),
                                                    static_cast<int>(cn.size()), -1, 0) != 1) {
    return absl::InvalidArgumentError(OpenSslFailure(absl::StrCat("cannot use \"", cn,
                                                                  "\" as a common name (at most 64 "
                                                                  "characters)")));
  }
  return name;
}

namespace {

absl::Status AddExtension(X509* cert, int nid, void* value, bool critical, std::string_view what) {
  if (X509_add1_ext_i2d(cert, nid, value, critical ? 1 : 0, X509V3_ADD_REPLACE) != 1) {
    return absl::InternalError(OpenSslFailure(absl::StrCat("adding the ", AbslView(what), " extension")));
  }
  return absl::OkStatus();
}

absl::Status AddBasicConstraints(X509* cert, bool ca) {
  std::unique_ptr<BASIC_CONSTRAINTS, OpenSslDeleter<BASIC_CONSTRAINTS_free>> bc(BASIC_CONSTRAINTS_new());
  if (bc == nullptr) return absl::InternalError(OpenSslFailure("BASIC_CONSTRAINTS_new"));
  bc->ca = ca ? 0xff : 0;
  return AddExtension(cert, NID_basic_constraints, bc.get(), true, "basicConstraints");
}

absl::Status AddKeyUsage(X509* cert, std::initializer_list<int> bits) {
  std::unique_ptr<ASN1_BIT_STRING, OpenSslDeleter<ASN1_BIT_STRING_free>> ku(ASN1_BIT_STRING_new());
  if (ku == nullptr) return absl::InternalError(OpenSslFailure("ASN1_BIT_STRING_new"));
  for (int bit : bits) {
    if (ASN1_BIT_STRING_set_bit(ku.get(), bit, 1) != 1) {
      return absl::InternalError(OpenSslFailure("ASN1_BIT_STRING_set_bit"));
    }
  }
  return AddExtension(cert, NID_key_usage, ku.get(), true, "keyUsage");
}

absl::Status AddEkus(X509* cert, const std::vector<std::string>& ekus) {
  if (ekus.empty()) return absl::OkStatus();
  ExtendedKeyUsagePtr usage(sk_ASN1_OBJECT_new_null());
  if (usage == nullptr) return absl::InternalError(OpenSslFailure("sk_ASN1_OBJECT_new_null"));
  for (const std::string& eku : ekus) {
    absl::StatusOr<std::string> oid = ResolveEku(eku);
    if (!oid.ok()) return oid.status();
    ASN1_OBJECT* obj = OBJ_txt2obj(oid->c_str(), 1);
    if (obj == nullptr || sk_ASN1_OBJECT_push(usage.get(), obj) == 0) {
      ASN1_OBJECT_free(obj);
      return absl::InternalError(OpenSslFailure("building the extendedKeyUsage extension"));
    }
  }
  return AddExtension(cert, NID_ext_key_usage, usage.get(), false, "extendedKeyUsage");
}

}  // namespace

absl::StatusOr<GeneralNamesPtr> BuildSubjectAltNames(const std::vector<std::string>& names) {
  GeneralNamesPtr gens(sk_GENERAL_NAME_new_null());
  if (gens == nullptr) return absl::InternalError(OpenSslFailure("sk_GENERAL_NAME_new_null"));
  for (const std::string& entry : names) {
    if (entry.empty()) return absl::InvalidArgumentError("empty subjectAltName entry");
    GENERAL_NAME* gen = nullptr;
    if (ASN1_OCTET_STRING* ip = a2i_IPADDRESS(entry.c_str()); ip != nullptr) {
      gen = GENERAL_NAME_new();
      if (gen != nullptr) {
        GENERAL_NAME_set0_value(gen, GEN_IPADD, ip);
      } else {
        ASN1_OCTET_STRING_free(ip);
      }
    } else {
      ERR_clear_error();  // a2i_IPADDRESS leaves no error, but be safe
      for (char c : entry) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f) {
          return absl::InvalidArgumentError(
              absl::StrCat("subjectAltName \"", entry, "\" is not a DNS name (spaces or non-ASCII characters)"));
        }
      }
      ASN1_IA5STRING* ia5 = ASN1_IA5STRING_new();
      if (ia5 != nullptr && ASN1_STRING_set(ia5, entry.data(), static_cast<int>(entry.size())) == 1) {
        gen = GENERAL_NAME_new();
        if (gen != nullptr) GENERAL_NAME_set0_value(gen, GEN_DNS, ia5);
      }
      if (gen == nullptr) ASN1_IA5STRING_free(ia5);
    }
    if (gen == nullptr || sk_GENERAL_NAME_push(gens.get(), gen) == 0) {
      GENERAL_NAME_free(gen);
      return absl::InternalError(OpenSslFailure("building the subjectAltName extension"));
    }
  }
  return gens;
}

namespace {

// SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2 method 1).
absl::StatusOr<std::unique_ptr<ASN1_OCTET_STRING, OpenSslDeleter<ASN1_OCTET_STRING_free>>> KeyIdentifier(X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_pubkey_digest(cert, EVP_sha1(), md, &len) != 1) {
    return absl::InternalError(OpenSslFailure("computing the key identifier"));
  }
  std::unique_ptr<ASN1_OCTET_STRING, OpenSslDeleter<ASN1_OCTET_STRING_free>> id(ASN1_OCTET_STRING_new());
  if (id == nullptr || ASN1_OCTET_STRING_set(id.get(), md, static_cast<int>(len)) != 1) {
    return absl::InternalError(OpenSslFailure("ASN1_OCTET_STRING_set"));
  }
  return id;
}

// Adds SKI for `cert` and AKI pointing at `issuer`'s key (issuer == cert for self-signed).
absl::Status AddKeyIdentifiers(X509* cert, X509* issuer) {
  auto ski = KeyIdentifier(cert);
  if (!ski.ok()) return ski.status();
  if (absl::Status s = AddExtension(cert, NID_subject_key_identifier, ski->get(), false, "subjectKeyIdentifier");
      !s.ok()) {
    return s;
  }
  std::unique_ptr<AUTHORITY_KEYID, OpenSslDeleter<AUTHORITY_KEYID_free>> aki(AUTHORITY_KEYID_new());
  if (aki == nullptr) return absl::InternalError(OpenSslFailure("AUTHORITY_KEYID_new"));
  const ASN1_OCTET_STRING* issuer_ski = issuer == cert ? ski->get() : X509_get0_subject_key_id(issuer);
  if (issuer_ski != nullptr) {
    aki->keyid = ASN1_OCTET_STRING_dup(issuer_ski);
  } else {
    auto computed = KeyIdentifier(issuer);
    if (!computed.ok()) return computed.status();
    aki->keyid = computed->release();
  }
  if (aki->keyid == nullptr) return absl::InternalError(OpenSslFailure("copying the key identifier"));
  return AddExtension(cert, NID_authority_key_identifier, aki.get(), false, "authorityKeyIdentifier");
}

absl::Status Sign(X509* cert, EVP_PKEY* key) {
  if (X509_sign(cert, key, SigningDigest(key)) <= 0) {
    return absl::InternalError(OpenSslFailure("signing the certificate"));
  }
  return absl::OkStatus();
}

std::string IpToText(const ASN1_OCTET_STRING* ip) {
  char buf[INET6_ADDRSTRLEN] = {};
  const int len = ASN1_STRING_length(ip);
  const unsigned char* data = ASN1_STRING_get0_data(ip);
  if (len == 4 && inet_ntop(AF_INET, data, buf, sizeof(buf)) != nullptr) return buf;
  if (len == 16 && inet_ntop(AF_INET6, data, buf, sizeof(buf)) != nullptr) return buf;
  return absl::StrCat("<", len, "-byte address>");
}

std::string Asn1StringText(const ASN1_STRING* s) {
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
}

std::vector<std::string> DescribeGeneralNames(const GENERAL_NAMES* gens) {
  std::vector<std::string> out;
  for (int i = 0; i < sk_GENERAL_NAME_num(gens); ++i) {
    const GENERAL_NAME* gen = sk_GENERAL_NAME_value(gens, i);
    switch (gen->type) {
      case GEN_DNS:
        out.push_back(absl::StrCat("DNS:", Asn1StringText(gen->d.dNSName)));
        break;
      case GEN_IPADD:
        out.push_back(absl::StrCat("IP:", IpToText(gen->d.iPAddress)));
        break;
      case GEN_EMAIL:
        out.push_back(absl::StrCat("email:", Asn1StringText(gen->d.rfc822Name)));
        break;
      case GEN_URI:
        out.push_back(absl::StrCat("URI:", Asn1StringText(gen->d.uniformResourceIdentifier)));
        break;
      case GEN_DIRNAME:
        out.push_back(absl::StrCat("dirName:", NameToString(gen->d.directoryName)));
        break;
      default:
        out.push_back("othername");
        break;
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> ResolveEku(std::string_view eku) {
  const std::string text(eku);
  Asn1ObjectPtr obj(text.empty() ? nullptr : OBJ_txt2obj(text.c_str(), 0));
  if (obj == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("unknown extended key usage \"", AbslView(eku),
                     "\"; use a dotted OID such as 1.3.6.1.5.5.7.3.2 or a name such as clientAuth or "
                     "serverAuth"));
  }
  char buf[128];
  const int len = OBJ_obj2txt(buf, sizeof(buf), obj.get(), 1);
  if (len <= 0 || static_cast<size_t>(len) >= sizeof(buf)) {
    return absl::InvalidArgumentError(absl::StrCat("extended key usage \"", AbslView(eku), "\" is too long"));
  }
  return std::string(buf, static_cast<size_t>(len));
}

absl::StatusOr<X509Ptr> MakeSelfSignedCa(EVP_PKEY* key, const SelfSignedCaOptions& options) {
  if (key == nullptr) return absl::InvalidArgumentError("MakeSelfSignedCa: no key");
  if (options.common_name.empty()) {
    return absl::InvalidArgumentError("the CA certificate needs a non-empty common name");
  }
  if (options.years < 1 || options.years > kMaxYears) {
    return absl::InvalidArgumentError(
        absl::StrCat("certificate validity of ", options.years, " years is out of range (1..", kMaxYears, ")"));
  }
  X509Ptr cert(X509_new());
  if (cert == nullptr) return absl::InternalError(OpenSslFailure("X509_new"));
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1) {
    return absl::InternalError(OpenSslFailure("X509_set_version"));
  }
  if (absl::Status s = SetRandomSerial(cert.get()); !s.ok()) return s;
  auto name = CommonNameOnly(options.common_name);
  if (!name.ok()) return name.status();
  if (X509_set_subject_name(cert.get(), name->get()) != 1 || X509_set_issuer_name(cert.get(), name->get()) != 1) {
    return absl::InternalError(OpenSslFailure("setting the CA certificate's names"));
  }
  const int64_t now = options.now_unix_seconds.value_or(NowUnix());
  if (absl::Status s = SetTime(X509_getm_notBefore(cert.get()), now - kBackdateSeconds, "notBefore"); !s.ok()) {
    return s;
  }
  if (absl::Status s = SetTime(X509_getm_notAfter(cert.get()), AddYears(now, options.years), "notAfter"); !s.ok()) {
    return s;
  }
  if (X509_set_pubkey(cert.get(), key) != 1) {
    return absl::InternalError(OpenSslFailure("X509_set_pubkey"));
  }
  if (absl::Status s = AddBasicConstraints(cert.get(), true); !s.ok()) return s;
  absl::Status ku = IsRsa(key)
                        ? AddKeyUsage(cert.get(), {kKuDigitalSignature, kKuKeyEncipherment, kKuKeyCertSign, kKuCrlSign})
                        : AddKeyUsage(cert.get(), {kKuDigitalSignature, kKuKeyCertSign, kKuCrlSign});
  if (!ku.ok()) return ku;
  if (absl::Status s = AddEkus(cert.get(), options.ekus); !s.ok()) return s;
  if (!options.san_dns.empty()) {
    auto sans = BuildSubjectAltNames(options.san_dns);
    if (!sans.ok()) return sans.status();
    if (absl::Status s = AddExtension(cert.get(), NID_subject_alt_name, sans->get(), false, "subjectAltName");
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = AddKeyIdentifiers(cert.get(), cert.get()); !s.ok()) return s;
  if (absl::Status s = Sign(cert.get(), key); !s.ok()) return s;
  return cert;
}

absl::StatusOr<X509Ptr> MakeSelfSignedCa(EVP_PKEY* key, std::string common_name, std::vector<std::string> san_dns,
                                         int years, std::vector<std::string> ekus) {
  SelfSignedCaOptions options;
  options.common_name = std::move(common_name);
  options.san_dns = std::move(san_dns);
  options.years = years;
  options.ekus = std::move(ekus);
  return MakeSelfSignedCa(key, options);
}

// Sets `key` as the certificate's public key. For RSA and EC keys it goes through a legacy
// (ASN1_METHOD) copy of the key: X509_set_pubkey on a provider key re-encodes it with
// OSSL_ENCODER and decodes it again with OSSL_DECODER, and in OpenSSL 3.0 setting those up
// was the costliest step of issuing a certificate (measured with perf: ~18% of a node's
// CPU under load). The legacy RSA/EC_KEY API is deprecated in 3.0 but still supported; other
// key types take the ordinary path.
static absl::Status SetPublicKeyFast(X509* cert, EVP_PKEY* key) {
  EvpPkeyPtr legacy;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA) {
    RSA* rsa = EVP_PKEY_get1_RSA(key);
    if (rsa != nullptr) {
      legacy.reset(EVP_PKEY_new());
      if (legacy == nullptr || EVP_PKEY_assign_RSA(legacy.get(), rsa) != 1) {
        RSA_free(rsa);
        legacy.reset();
      }
    }
  } else if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC) {
    EC_KEY* ec = EVP_PKEY_get1_EC_KEY(key);
    if (ec != nullptr) {
      legacy.reset(EVP_PKEY_new());
      if (legacy == nullptr || EVP_PKEY_assign_EC_KEY(legacy.get(), ec) != 1) {
        EC_KEY_free(ec);
        legacy.reset();
      }
    }
  }
#pragma GCC diagnostic pop
  ERR_clear_error();
  if (X509_set_pubkey(cert, legacy != nullptr ? legacy.get() : key) != 1) {
    return absl::InternalError(OpenSslFailure("X509_set_pubkey"));
  }
  return absl::OkStatus();
}

absl::StatusOr<X509Ptr> IssueCertificate(X509* issuer_cert, EVP_PKEY* issuer_key, X509_REQ* request,
                                         const IssueOptions& options) {
  if (issuer_cert == nullptr || issuer_key == nullptr || request == nullptr) {
    return absl::InvalidArgumentError("IssueCertificate: missing issuer certificate, key or request");
  }
  if (options.validity_days < 1) {
    return absl::InvalidArgumentError(absl::StrCat("validity of ", options.validity_days, " days: must be at least 1"));
  }
  EVP_PKEY* subject_key = X509_REQ_get0_pubkey(request);
  if (subject_key == nullptr) {
    return absl::InvalidArgumentError(OpenSslFailure("the request has no usable public key"));
  }
  X509Ptr cert(X509_new());
  if (cert == nullptr) return absl::InternalError(OpenSslFailure("X509_new"));
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1) {
    return absl::InternalError(OpenSslFailure("X509_set_version"));
  }
  if (absl::Status s = SetRandomSerial(cert.get()); !s.ok()) return s;
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(issuer_cert)) != 1) {
    return absl::InternalError(OpenSslFailure("setting the issuer name"));
  }
  bool empty_subject = false;
  if (options.copy_subject) {
    X509_NAME* subject = X509_REQ_get_subject_name(request);
    empty_subject = subject == nullptr || X509_NAME_entry_count(subject) == 0;
    if (X509_set_subject_name(cert.get(), subject) != 1) {
      return absl::InternalError(OpenSslFailure("copying the subject"));
    }
  } else {
    auto name = CommonNameOnly(options.subject_cn);
    if (!name.ok()) return name.status();
    if (X509_set_subject_name(cert.get(), name->get()) != 1) {
      return absl::InternalError(OpenSslFailure("setting the subject"));
    }
  }
  const int64_t now = options.now_unix_seconds.value_or(NowUnix());
  int64_t not_after = now + int64_t{options.validity_days} * kSecondsPerDay;
  const int64_t issuer_not_after = NotAfterUnix(issuer_cert);
  if (issuer_not_after > 0 && not_after > issuer_not_after) not_after = issuer_not_after;
  if (absl::Status s = SetTime(X509_getm_notBefore(cert.get()), now - kBackdateSeconds, "notBefore"); !s.ok()) {
    return s;
  }
  if (absl::Status s = SetTime(X509_getm_notAfter(cert.get()), not_after, "notAfter"); !s.ok()) {
    return s;
  }
  if (absl::Status s = SetPublicKeyFast(cert.get(), subject_key); !s.ok()) return s;
  if (absl::Status s = AddBasicConstraints(cert.get(), false); !s.ok()) return s;
  absl::Status ku = IsRsa(subject_key) ? AddKeyUsage(cert.get(), {kKuDigitalSignature, kKuKeyEncipherment})
                                       : AddKeyUsage(cert.get(), {kKuDigitalSignature});
  if (!ku.ok()) return ku;
  if (absl::Status s = AddEkus(cert.get(), options.ekus); !s.ok()) return s;
  if (options.copy_san) {
    X509ExtensionStackPtr exts(X509_REQ_get_extensions(request));
    if (exts != nullptr) {
      const int index = X509v3_get_ext_by_NID(exts.get(), NID_subject_alt_name, -1);
      if (index >= 0) {
        X509ExtensionPtr san(X509_EXTENSION_dup(sk_X509_EXTENSION_value(exts.get(), index)));
        if (san == nullptr) return absl::InternalError(OpenSslFailure("copying subjectAltName"));
        if (empty_subject) X509_EXTENSION_set_critical(san.get(), 1);
        if (X509_add_ext(cert.get(), san.get(), -1) != 1) {
          return absl::InternalError(OpenSslFailure("adding subjectAltName"));
        }
      }
    }
    ERR_clear_error();  // X509_REQ_get_extensions may leave "no extensions" noise
  }
  if (absl::Status s = AddKeyIdentifiers(cert.get(), issuer_cert); !s.ok()) return s;
  if (absl::Status s = Sign(cert.get(), issuer_key); !s.ok()) return s;
  return cert;
}

absl::Status VerifyChain(X509* leaf, const std::vector<X509*>& roots, const std::vector<X509*>& intermediates,
                         std::optional<int64_t> at_unix_seconds, unsigned long extra_flags) {
  if (leaf == nullptr) return absl::InvalidArgumentError("VerifyChain: no certificate");
  X509StorePtr store(X509_STORE_new());
  if (store == nullptr) return absl::InternalError(OpenSslFailure("X509_STORE_new"));
  for (X509* root : roots) {
    if (X509_STORE_add_cert(store.get(), root) != 1) {
      return absl::InternalError(OpenSslFailure("adding a trust anchor"));
    }
  }
  X509StackPtr untrusted(sk_X509_new_null());
  if (untrusted == nullptr) return absl::InternalError(OpenSslFailure("sk_X509_new_null"));
  for (X509* cert : intermediates) {
    X509Ptr ref = ShareX509(cert);
    if (sk_X509_push(untrusted.get(), ref.get()) == 0) {
      return absl::InternalError(OpenSslFailure("sk_X509_push"));
    }
    ref.release();
  }
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (ctx == nullptr || X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted.get()) != 1) {
    return absl::InternalError(OpenSslFailure("X509_STORE_CTX_init"));
  }
  if (at_unix_seconds.has_value()) {
    X509_STORE_CTX_set_time(ctx.get(), 0, static_cast<time_t>(*at_unix_seconds));
  }
  if (extra_flags != 0) X509_STORE_CTX_set_flags(ctx.get(), extra_flags);
  if (X509_verify_cert(ctx.get()) != 1) {
    const int err = X509_STORE_CTX_get_error(ctx.get());
    const int depth = X509_STORE_CTX_get_error_depth(ctx.get());
    ERR_clear_error();
    return absl::FailedPreconditionError(absl::StrCat("certificate ", NameToString(X509_get_subject_name(leaf)),
                                                      " does not verify: ", X509_verify_cert_error_string(err),
                                                      " (at chain depth ", depth, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Bytes> CertToDer(X509* cert) {
  if (cert == nullptr) return absl::InvalidArgumentError("CertToDer: no certificate");
  const int len = i2d_X509(cert, nullptr);
  if (len <= 0) return absl::InternalError(OpenSslFailure("encoding the certificate as DER"));
  Bytes der(static_cast<size_t>(len));
  unsigned char* p = der.data();
  if (i2d_X509(cert, &p) != len) {
    return absl::InternalError(OpenSslFailure("encoding the certificate as DER"));
  }
  return der;
}

absl::StatusOr<Bytes> CertsToPkcs7Der(const std::vector<X509*>& certs) {
  std::unique_ptr<PKCS7, OpenSslDeleter<PKCS7_free>> p7(PKCS7_new());
  if (p7 == nullptr || PKCS7_set_type(p7.get(), NID_pkcs7_signed) != 1 ||
      PKCS7_content_new(p7.get(), NID_pkcs7_data) != 1) {
    return absl::InternalError(OpenSslFailure("making a PKCS#7 SignedData"));
  }
  for (X509* cert : certs) {
    if (PKCS7_add_certificate(p7.get(), cert) != 1) return absl::InternalError(OpenSslFailure("PKCS7_add_certificate"));
  }
  const int len = i2d_PKCS7(p7.get(), nullptr);
  if (len <= 0) return absl::InternalError(OpenSslFailure("encoding PKCS#7"));
  Bytes out(static_cast<size_t>(len));
  unsigned char* p = out.data();
  if (i2d_PKCS7(p7.get(), &p) != len) return absl::InternalError(OpenSslFailure("encoding PKCS#7"));
  return out;
}

absl::StatusOr<std::vector<X509Ptr>> CertsFromPkcs7Der(ByteView der) {
  const unsigned char* p = der.data();
  std::unique_ptr<PKCS7, OpenSslDeleter<PKCS7_free>> p7(d2i_PKCS7(nullptr, &p, static_cast<long>(der.size())));
  if (p7 == nullptr) return absl::InvalidArgumentError(OpenSslFailure("not a DER PKCS#7 structure"));
  if (PKCS7_type_is_signed(p7.get()) == 0 || p7->d.sign == nullptr) {
    return absl::InvalidArgumentError("the PKCS#7 structure is not SignedData (no certificates in it)");
  }
  std::vector<X509Ptr> out;
  STACK_OF(X509)* certs = p7->d.sign->cert;
  for (int i = 0; certs != nullptr && i < sk_X509_num(certs); ++i) {
    X509* cert = sk_X509_value(certs, i);
    if (X509_up_ref(cert) != 1) return absl::InternalError(OpenSslFailure("X509_up_ref"));
    out.emplace_back(cert);
  }
  return out;
}

absl::StatusOr<X509Ptr> CertFromDer(ByteView der) {
  const unsigned char* p = der.data();
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (cert == nullptr) {
    return absl::InvalidArgumentError(OpenSslFailure("not a DER X.509 certificate"));
  }
  if (p != der.data() + der.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("DER certificate is followed by ", der.data() + der.size() - p, " unexpected bytes"));
  }
  return cert;
}

absl::StatusOr<std::string> CertToPem(X509* cert) {
  if (cert == nullptr) return absl::InvalidArgumentError("CertToPem: no certificate");
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_X509(bio.get(), cert) != 1) {
    return absl::InternalError(OpenSslFailure("encoding the certificate as PEM"));
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

absl::StatusOr<std::vector<X509Ptr>> CertsFromPem(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (bio == nullptr) return absl::InternalError(OpenSslFailure("BIO_new_mem_buf"));
  std::vector<X509Ptr> certs;
  while (true) {
    X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (cert == nullptr) break;
    certs.emplace_back(cert);
  }
  const unsigned long err = ERR_peek_last_error();
  const bool clean_end = ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE;
  if (certs.empty() || !clean_end) {
    std::string detail = LastOpenSslError();
    if (certs.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("no PEM \"CERTIFICATE\" block found: ", detail));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("malformed PEM certificate after the ", certs.size(), " good one(s): ", detail));
  }
  ERR_clear_error();
  return certs;
}

absl::StatusOr<X509Ptr> CertFromPem(std::string_view pem) {
  absl::StatusOr<std::vector<X509Ptr>> certs = CertsFromPem(pem);
  if (!certs.ok()) return certs.status();
  return std::move(certs->front());
}

std::string NameToString(const X509_NAME* name) {
  if (name == nullptr) return "";
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr) return "";
  // RFC 2253, but keep UTF-8 as is instead of escaping every non-ASCII byte.
  if (X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) {
    ERR_clear_error();
    return "";
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

std::string SerialHex(X509* cert) {
  if (cert == nullptr) return "";
  BignumPtr bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
  if (bn == nullptr) return "";
  std::unique_ptr<char, OpenSslFreeDeleter> hex(BN_bn2hex(bn.get()));
  if (hex == nullptr) return "";
  std::string out(hex.get());
  for (char& c : out) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  return out;
}

int64_t NotBeforeUnix(X509* cert) { return cert == nullptr ? 0 : Asn1TimeToUnix(X509_get0_notBefore(cert)); }

int64_t NotAfterUnix(X509* cert) { return cert == nullptr ? 0 : Asn1TimeToUnix(X509_get0_notAfter(cert)); }

std::vector<std::string> SubjectAltNames(X509* cert) {
  if (cert == nullptr) return {};
  GeneralNamesPtr gens(static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (gens == nullptr) return {};
  return DescribeGeneralNames(gens.get());
}

std::vector<std::string> SubjectAltNames(X509_REQ* request) {
  if (request == nullptr) return {};
  X509ExtensionStackPtr exts(X509_REQ_get_extensions(request));
  ERR_clear_error();
  if (exts == nullptr) return {};
  GeneralNamesPtr gens(static_cast<GENERAL_NAMES*>(X509V3_get_d2i(exts.get(), NID_subject_alt_name, nullptr, nullptr)));
  if (gens == nullptr) return {};
  return DescribeGeneralNames(gens.get());
}

std::vector<std::string> ExtendedKeyUsages(X509* cert) {
  std::vector<std::string> out;
  if (cert == nullptr) return out;
  ExtendedKeyUsagePtr usage(
      static_cast<EXTENDED_KEY_USAGE*>(X509_get_ext_d2i(cert, NID_ext_key_usage, nullptr, nullptr)));
  if (usage == nullptr) return out;
  for (int i = 0; i < sk_ASN1_OBJECT_num(usage.get()); ++i) {
    char buf[128];
    const int len = OBJ_obj2txt(buf, sizeof(buf), sk_ASN1_OBJECT_value(usage.get(), i), 1);
    if (len > 0 && static_cast<size_t>(len) < sizeof(buf)) out.emplace_back(buf, len);
  }
  return out;
}

std::string UtcDateTime(int64_t unix_seconds) {
  const time_t t = static_cast<time_t>(unix_seconds);
  struct tm utc {};
  gmtime_r(&t, &utc);
  char text[32];
  strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

}  // namespace adcsc::pki
