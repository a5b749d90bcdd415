// Unit tests for node/pki/csr_policy: what CheckCsr reads from a request for a policy (subject,
// every SAN type, name/value pairs, key and curve), each rule of a signing policy, the
// restrictive defaults, glob patterns, and how reasons quote what the CSR says.
#include "node/pki/csr_policy.h"

#include <openssl/asn1.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/pki/keys.h"

namespace adcsc::pki {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

// Builds signed requests with what a hostile client may put in one.
class CsrBuilder {
 public:
  explicit CsrBuilder(EVP_PKEY* key)
      : key_(key), name_(X509_NAME_new()), sans_(sk_GENERAL_NAME_new_null()), exts_(sk_X509_EXTENSION_new_null()) {}

  // RDNs in the order added; RFC 2253 text lists them last first.
  CsrBuilder& Rdn(const char* field, const std::string& value) {
    EXPECT_EQ(X509_NAME_add_entry_by_txt(name_.get(), field, MBSTRING_UTF8,
                                         reinterpret_cast<const unsigned char*>(value.data()),
                                         static_cast<int>(value.size()), -1, 0),
              1);
    return *this;
  }
  CsrBuilder& Text(int type, const std::string& value) {
    ASN1_IA5STRING* s = ASN1_IA5STRING_new();
    ASN1_STRING_set(s, value.data(), static_cast<int>(value.size()));
    return Add(type, s);
  }
  CsrBuilder& Dns(const std::string& v) { return Text(GEN_DNS, v); }
  CsrBuilder& Email(const std::string& v) { return Text(GEN_EMAIL, v); }
  CsrBuilder& Uri(const std::string& v) { return Text(GEN_URI, v); }
  CsrBuilder& Ip(const std::string& v) { return Add(GEN_IPADD, a2i_IPADDRESS(v.c_str())); }
  CsrBuilder& OtherName(int nid, const std::string& utf8) {
    OTHERNAME* other = OTHERNAME_new();
    ASN1_OBJECT_free(other->type_id);
    other->type_id = OBJ_nid2obj(nid);
    ASN1_UTF8STRING* s = ASN1_UTF8STRING_new();
    ASN1_STRING_set(s, utf8.data(), static_cast<int>(utf8.size()));
    ASN1_TYPE_set(other->value, V_ASN1_UTF8STRING, s);
    return Add(GEN_OTHERNAME, other);
  }
  CsrBuilder& Upn(const std::string& v) { return OtherName(NID_ms_upn, v); }
  CsrBuilder& DirName() {
    X509_NAME* n = X509_NAME_new();
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>("admin"), -1, -1, 0);
    return Add(GEN_DIRNAME, n);
  }
  // An extension whose value is `der`, by dotted OID.
  CsrBuilder& Extension(const char* oid, const std::string& der) {
    Asn1ObjectPtr obj(OBJ_txt2obj(oid, 1));
    ASN1_OCTET_STRING* value = ASN1_OCTET_STRING_new();
    ASN1_OCTET_STRING_set(value, reinterpret_cast<const unsigned char*>(der.data()), static_cast<int>(der.size()));
    sk_X509_EXTENSION_push(exts_.get(), X509_EXTENSION_create_by_OBJ(nullptr, obj.get(), 0, value));
    ASN1_OCTET_STRING_free(value);
    return *this;
  }
  // Microsoft's enrollment name/value pair attribute.
  CsrBuilder& NameValue(const std::string& name, const std::string& value) {
    std::string seq = Bmp(name) + Bmp(value);
    seq = std::string("\x30", 1) + static_cast<char>(seq.size()) + seq;
    pairs_.push_back(seq);
    return *this;
  }

  Bytes Build() {
    X509ReqPtr req(X509_REQ_new());
    X509_REQ_set_version(req.get(), X509_REQ_VERSION_1);
    X509_REQ_set_subject_name(req.get(), name_.get());
    X509_REQ_set_pubkey(req.get(), key_);
    if (sk_GENERAL_NAME_num(sans_.get()) > 0) {
      sk_X509_EXTENSION_push(exts_.get(), X509V3_EXT_i2d(NID_subject_alt_name, 0, sans_.get()));
    }
    if (sk_X509_EXTENSION_num(exts_.get()) > 0) {
      EXPECT_EQ(X509_REQ_add_extensions(req.get(), exts_.get()), 1);
    }
    if (!pairs_.empty()) {
      // One attribute, one value per pair (OpenSSL refuses an attribute type twice).
      Asn1ObjectPtr nvp(OBJ_txt2obj("1.3.6.1.4.1.311.13.2.1", 1));
      X509_ATTRIBUTE* attr = X509_ATTRIBUTE_create_by_OBJ(nullptr, nvp.get(), V_ASN1_SEQUENCE, pairs_[0].data(),
                                                          static_cast<int>(pairs_[0].size()));
      for (size_t i = 1; i < pairs_.size(); ++i) {
        EXPECT_EQ(X509_ATTRIBUTE_set1_data(attr, V_ASN1_SEQUENCE, pairs_[i].data(), static_cast<int>(pairs_[i].size())),
                  1);
      }
      EXPECT_EQ(X509_REQ_add1_attr(req.get(), attr), 1);
      X509_ATTRIBUTE_free(attr);
    }
    EXPECT_GT(X509_REQ_sign(req.get(), key_, EVP_sha256()), 0);
    return *CsrToDer(req.get());
  }

 private:
  CsrBuilder& Add(int type, void* value) {
    GENERAL_NAME* gen = GENERAL_NAME_new();
    GENERAL_NAME_set0_value(gen, type, value);
    sk_GENERAL_NAME_push(sans_.get(), gen);
    return *this;
  }
  static std::string Bmp(const std::string& utf8) {
    ASN1_STRING* s = nullptr;
    ASN1_mbstring_copy(&s, reinterpret_cast<const unsigned char*>(utf8.data()), static_cast<int>(utf8.size()),
                       MBSTRING_UTF8, B_ASN1_BMPSTRING);
    unsigned char* der = nullptr;
    const int len = i2d_ASN1_BMPSTRING(s, &der);
    std::string out(reinterpret_cast<const char*>(der), static_cast<size_t>(len));
    OPENSSL_free(der);
    ASN1_STRING_free(s);
    return out;
  }

  EVP_PKEY* key_;
  X509NamePtr name_;
  GeneralNamesPtr sans_;
  X509ExtensionStackPtr exts_;
  std::vector<std::string> pairs_;
};

EVP_PKEY* P256() {
  static EVP_PKEY* key = GenerateKey(KeyType::kEcP256)->release();
  return key;
}

CsrFacts Facts(CsrBuilder& b) {
  absl::StatusOr<CsrFacts> facts = CheckCsr(b.Build());
  EXPECT_TRUE(facts.ok()) << facts.status();
  return facts.ok() ? *facts : CsrFacts();
}

// A Jamf-like request: CN=<cn>, one DNS SAN, EC P-256.
CsrFacts JamfLike(const std::string& cn = "device-1") {
  CsrBuilder b(P256());
  b.Rdn("CN", cn).Dns(cn + ".example.test");
  return Facts(b);
}

// The default policy with the SANs JamfLike() and the profiles below send listed, as an
// operator would list them.
CsrPolicy JamfPolicy() {
  CsrPolicy p;
  p.san_dns = {"*.example.test"};
  p.san_email = {"*@example.test"};
  return p;
}

PolicyDecision Judge(const CsrFacts& facts, const CsrPolicy& policy = JamfPolicy()) {
  return EvaluateCsrPolicy(policy, "ca.allow[0]", facts);
}

TEST(CsrPolicyFactsTest, CheckCsrReadsSubjectEverySanTypeNameValuePairsAndExtensions) {
  CsrBuilder b(P256());
  b.Rdn("O", "Example")
      .Rdn("CN", "device, 7")
      .Dns("d.example.test")
      .Email("d@example.test")
      .Uri("https://example.test/d")
      .Ip("10.1.2.3")
      .Upn("admin@corp.example")
      .OtherName(NID_id_on_SmtpUTF8Mailbox, "x@example.test")
      .DirName()
      .Extension("1.3.6.1.4.1.311.21.10", std::string("\x30\x00", 2))
      .NameValue("ValidityPeriod", "Years")
      .NameValue("ValidityPeriodUnits", "20");
  const CsrFacts f = Facts(b);
  EXPECT_EQ(f.key_type, "EC");
  EXPECT_EQ(f.ec_curve, "P-256");
  EXPECT_EQ(f.subject, "CN=device\\, 7,O=Example");
  using T = CsrSan::Type;
  ASSERT_EQ(f.subject_alt_names.size(), 7u);
  const std::vector<std::pair<T, std::string>> want = {
      {T::kDns, "d.example.test"}, {T::kEmail, "d@example.test"},   {T::kUri, "https://example.test/d"},
      {T::kIp, "10.1.2.3"},        {T::kUpn, "admin@corp.example"}, {T::kOtherName, "1.3.6.1.5.5.7.8.9"},
      {T::kOther, "directoryName"}};
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(f.subject_alt_names[i].type, want[i].first) << i;
    EXPECT_EQ(f.subject_alt_names[i].value, want[i].second) << i;
  }
  EXPECT_THAT(f.other_extension_oids, ElementsAre("1.3.6.1.4.1.311.21.10"));
  EXPECT_THAT(f.name_value_pairs, ElementsAre(Pair("ValidityPeriod", "Years"), Pair("ValidityPeriodUnits", "20")));
  EXPECT_TRUE(f.undecodable.empty()) << f.undecodable;
}

TEST(CsrPolicyFactsTest, CheckCsrReadsRsaSizeAndOtherCurves) {
  EvpPkeyPtr rsa_key = std::move(*GenerateKey(KeyType::kRsa2048));
  CsrBuilder rsa(rsa_key.get());
  rsa.Rdn("CN", "r");
  EXPECT_EQ(Facts(rsa).key_type, "RSA");
  EvpPkeyPtr p384 = std::move(*GenerateKey(KeyType::kEcP384));
  CsrBuilder ec(p384.get());
  ec.Rdn("CN", "e");
  EXPECT_EQ(Facts(ec).ec_curve, "P-384");
  EvpPkeyPtr k1(EVP_EC_gen("secp256k1"));
  ASSERT_NE(k1, nullptr);
  CsrBuilder other(k1.get());
  other.Rdn("CN", "k");
  const CsrFacts f = Facts(other);
  EXPECT_EQ(f.ec_curve, "secp256k1");
  EXPECT_EQ(Judge(f).rule, "ec_curves");
}

TEST(CsrPolicyTest, TheDefaultAllowsAnySubjectAndTheUsualKeysButNoSan) {
  EvpPkeyPtr rsa_key = std::move(*GenerateKey(KeyType::kRsa2048));
  CsrBuilder bare(rsa_key.get());
  bare.Rdn("O", "Example").Rdn("OU", "Macs").Rdn("CN", "C02XK0AAJG5H");
  PolicyDecision d = EvaluateCsrPolicy(CsrPolicy(), "ca.allow[0]", Facts(bare));
  EXPECT_TRUE(d.allowed) << d.reason;
  // A DNS SAN can map to a computer account, an email SAN to a user: none until listed.
  d = EvaluateCsrPolicy(CsrPolicy(), "ca.allow[0]", JamfLike());
  EXPECT_EQ(d.reason, "ca.allow[0].san_dns: DNS SAN \"device-1.example.test\" is not allowed");
  CsrBuilder mail(rsa_key.get());
  mail.Rdn("CN", "C02XK0AAJG5H").Email("user@example.test");
  EXPECT_EQ(EvaluateCsrPolicy(CsrPolicy(), "ca.allow[0]", Facts(mail)).rule, "san_email");
  // Listed, they pass.
  EXPECT_TRUE(Judge(JamfLike()).allowed) << Judge(JamfLike()).reason;
  d = Judge(Facts(mail));
  EXPECT_TRUE(d.allowed) << d.reason;
}

TEST(CsrPolicyTest, UpnSanIsRefusedUnlessAPatternAllowsIt) {
  CsrBuilder b(P256());
  b.Rdn("CN", "device-1").Upn("admin@corp");
  const CsrFacts f = Facts(b);
  const PolicyDecision d = Judge(f);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.rule, "san_upn");
  EXPECT_EQ(d.reason, "ca.allow[0].san_upn: UPN SAN \"admin@corp\" is not allowed");

  CsrPolicy p;
  p.san_upn = {"*@devices.corp"};
  EXPECT_EQ(Judge(f, p).reason, "ca.allow[0].san_upn: UPN SAN \"admin@corp\" matches no pattern");
  p.san_upn = {"*@CORP"};
  EXPECT_TRUE(Judge(f, p).allowed) << "UPN patterns ignore case";
}

TEST(CsrPolicyTest, ForeignSubjectIsRefusedAndStarStaysInsideOneRdn) {
  CsrPolicy p;
  p.subject_patterns = {"CN=*,OU=Devices,O=Example"};
  auto subject = [](std::vector<std::pair<const char*, std::string>> rdns) {
    CsrBuilder b(P256());
    for (const auto& [field, value] : rdns) b.Rdn(field, value);
    return Facts(b);
  };
  EXPECT_TRUE(Judge(subject({{"O", "Example"}, {"OU", "Devices"}, {"CN", "mac-1"}}), p).allowed);
  const PolicyDecision foreign = Judge(subject({{"O", "Evil"}, {"OU", "Devices"}, {"CN", "mac-1"}}), p);
  EXPECT_EQ(foreign.rule, "subject_patterns");
  EXPECT_EQ(foreign.reason, "ca.allow[0].subject_patterns: subject \"CN=mac-1,OU=Devices,O=Evil\" matches no pattern");
  // `*` must not swallow extra RDNs, escaped commas are part of a value.
  EXPECT_FALSE(
      Judge(subject({{"O", "Example"}, {"OU", "Devices"}, {"CN", "Administrator"}, {"CN", "mac-1"}}), p).allowed);
  EXPECT_FALSE(Judge(subject({{"O", "Example"}, {"OU", "Devices"}, {"CN", "a+b"}, {"UID", "x"}}), p).allowed);
  EXPECT_TRUE(Judge(subject({{"O", "Example"}, {"OU", "Devices"}, {"CN", "a,b"}}), p).allowed);
  p.subject_patterns = {"**,O=Example"};
  EXPECT_TRUE(Judge(subject({{"O", "Example"}, {"OU", "Devices"}, {"CN", "mac-1"}}), p).allowed);
}

TEST(CsrPolicyTest, RsaKeysOutsideTheSizeLimitsAreRefused) {
  CsrFacts f = JamfLike();
  f.key_type = "RSA";
  f.ec_curve.clear();
  f.key_bits = 8192;
  EXPECT_EQ(Judge(f).reason, "ca.allow[0].max_rsa_bits: RSA key of 8192 bits is above the maximum of 4096");
  f.key_bits = 1024;
  EXPECT_EQ(Judge(f).reason, "ca.allow[0].min_rsa_bits: RSA key of 1024 bits is below the minimum of 2048");
  f.key_bits = 3072;
  EXPECT_TRUE(Judge(f).allowed);
  CsrPolicy p = JamfPolicy();
  p.max_rsa_bits = 2048;
  EXPECT_EQ(Judge(f, p).rule, "max_rsa_bits");
}

TEST(CsrPolicyTest, CurvesAndKeyTypesOutsideTheListsAreRefused) {
  CsrFacts f = JamfLike();
  f.ec_curve = "P-521";
  EXPECT_EQ(Judge(f).reason, "ca.allow[0].ec_curves: EC curve \"P-521\" is not allowed");
  CsrPolicy p = JamfPolicy();
  p.ec_curves = {"P-256", "P-384", "P-521"};
  EXPECT_TRUE(Judge(f, p).allowed);
  f.key_type = "ED25519";
  EXPECT_EQ(Judge(f).reason, "ca.allow[0].key_types: key type \"ed25519\" is not allowed");
  p.key_types = {"ec"};
  f = JamfLike();
  f.key_type = "RSA";
  EXPECT_EQ(Judge(f, p).rule, "key_types");
}

TEST(CsrPolicyTest, SidUriNeedsAllowSidUriAndOneWellFormedSid) {
  CsrBuilder b(P256());
  b.Rdn("CN", "device-1").Uri("tag:microsoft.com,2022-09-14:sid:S-1-5-21-1004336348-1177238915-682003330-512");
  const CsrFacts f = Facts(b);
  EXPECT_EQ(Judge(f).rule, "allow_sid_uri");
  CsrPolicy any_uri;
  any_uri.san_uri = {"*"};
  EXPECT_EQ(Judge(f, any_uri).rule, "allow_sid_uri") << "a URI pattern never allows a SID URI";
  CsrPolicy p;
  p.allow_sid_uri = true;
  EXPECT_TRUE(Judge(f, p).allowed) << Judge(f, p).reason;

  CsrBuilder bad(P256());
  bad.Rdn("CN", "d").Uri("tag:microsoft.com,2022-09-14:sid:S-1-5-21-x");
  EXPECT_THAT(Judge(Facts(bad), p).reason, HasSubstr("does not hold a SID"));
  CsrBuilder two(P256());
  two.Rdn("CN", "d")
      .Uri("tag:microsoft.com,2022-09-14:sid:S-1-5-21-1-2")
      .Uri("tag:microsoft.com,2022-09-14:sid:S-1-5-21-1-500");
  EXPECT_THAT(Judge(Facts(two), p).reason, HasSubstr("more than one SID URI"));
}

TEST(CsrPolicyTest, OtherUrisFollowSanUri) {
  CsrBuilder b(P256());
  b.Rdn("CN", "device-1").Uri("https://example.test/device-1");
  const CsrFacts f = Facts(b);
  EXPECT_EQ(Judge(f).rule, "san_uri");
  CsrPolicy p;
  p.san_uri = {"https://example.test/*"};
  EXPECT_TRUE(Judge(f, p).allowed);
}

TEST(CsrPolicyTest, UnknownSanTypesAreAlwaysRefused) {
  CsrBuilder dir(P256());
  dir.Rdn("CN", "d").DirName();
  EXPECT_EQ(Judge(Facts(dir)).reason, "ca.allow[0].san_other: \"directoryName\" SAN is not allowed");
  CsrBuilder other(P256());
  other.Rdn("CN", "d").OtherName(NID_id_on_SmtpUTF8Mailbox, "x@example.test");
  const PolicyDecision d = Judge(Facts(other));
  EXPECT_EQ(d.rule, "san_other");
  EXPECT_THAT(d.reason, HasSubstr("otherName SAN of type \"1.3.6.1.5.5.7.8.9\""));
}

TEST(CsrPolicyTest, IpSanIsRefusedUnlessAPatternAllowsIt) {
  CsrBuilder b(P256());
  b.Rdn("CN", "d").Ip("10.1.2.3");
  const CsrFacts f = Facts(b);
  EXPECT_EQ(Judge(f).reason, "ca.allow[0].san_ip: IP SAN \"10.1.2.3\" is not allowed");
  CsrPolicy p;
  p.san_ip = {"10.1.*"};
  EXPECT_TRUE(Judge(f, p).allowed);
  p.san_ip = {"10.2.*"};
  EXPECT_EQ(Judge(f, p).rule, "san_ip");
}

TEST(CsrPolicyTest, RequestedValidityIsRefusedOrIgnored) {
  CsrBuilder b(P256());
  b.Rdn("CN", "d").NameValue("validityperiod", "Years").NameValue("ValidityPeriodUnits", "50");
  const CsrFacts f = Facts(b);
  EXPECT_EQ(Judge(f).reason,
            "ca.allow[0].requested_validity: the request asks for its own validity period (\"validityperiod\" = "
            "\"Years\")");
  CsrPolicy p;
  p.requested_validity = RequestedValidity::kIgnore;
  EXPECT_TRUE(Judge(f, p).allowed);
}

TEST(CsrPolicyTest, SanRequestAttributeAndApplicationPoliciesAreAlwaysRefused) {
  CsrBuilder san(P256());
  san.Rdn("CN", "d").NameValue("SAN", "upn=administrator@corp");
  CsrPolicy lax;
  lax.san_upn = {"*"};
  lax.requested_validity = RequestedValidity::kIgnore;
  EXPECT_EQ(Judge(Facts(san), lax).rule, "san_attribute");
  CsrBuilder app(P256());
  app.Rdn("CN", "d").Extension("1.3.6.1.4.1.311.21.10", std::string("\x30\x00", 2));
  EXPECT_EQ(Judge(Facts(app), lax).rule, "extensions");
  CsrFacts undecodable = JamfLike();
  undecodable.undecodable = "a subjectAltName extension does not decode";
  EXPECT_EQ(Judge(undecodable).rule, "extensions");
}

TEST(CsrPolicyTest, DnsAndEmailPatternsAndControlCharacters) {
  CsrPolicy p;
  p.san_dns = {"*.devices.example.test"};
  p.san_email = {};
  CsrBuilder dns(P256());
  dns.Rdn("CN", "d").Dns("Mac-1.Devices.Example.Test");
  EXPECT_TRUE(Judge(Facts(dns), p).allowed);
  CsrBuilder evil(P256());
  evil.Rdn("CN", "d").Dns("dc01.corp.example.test");
  EXPECT_EQ(Judge(Facts(evil), p).rule, "san_dns");
  CsrBuilder nul(P256());
  nul.Rdn("CN", "d").Dns(std::string("dc01\0.devices.example.test", 26));
  EXPECT_EQ(Judge(Facts(nul), p).reason,
            "ca.allow[0].san_dns: DNS SAN \"dc01\\x00.devices.example.test\" holds control characters");
  CsrBuilder mail(P256());
  mail.Rdn("CN", "d").Email("a@example.test");
  EXPECT_EQ(Judge(Facts(mail), p).reason, "ca.allow[0].san_email: email SAN \"a@example.test\" is not allowed");
}

TEST(CsrPolicyTest, ReasonsCutLongCsrTextShort) {
  CsrBuilder b(P256());
  b.Rdn("CN", "d").Upn(std::string(900, 'a') + "@corp");
  const PolicyDecision d = Judge(Facts(b));
  EXPECT_EQ(d.rule, "san_upn");
  EXPECT_LT(d.reason.size(), kMaxQuotedChars + 80);
  EXPECT_THAT(d.reason, HasSubstr("\"... is not allowed"));
}

TEST(GlobTest, MatchesCaseInsensitivelyWithStarAndQuestionMark) {
  EXPECT_TRUE(GlobMatches("*.example.test", "A.B.EXAMPLE.test", false));
  EXPECT_FALSE(GlobMatches("*.example.test", "example.test", false));
  EXPECT_TRUE(GlobMatches("mac-??", "mac-01", false));
  EXPECT_FALSE(GlobMatches("mac-??", "mac-1", false));
  EXPECT_TRUE(GlobMatches("*", "", false));
  EXPECT_TRUE(GlobMatches("CN=*", "CN=a\\,b", true));
  EXPECT_FALSE(GlobMatches("CN=*", "CN=a,O=b", true));
  EXPECT_TRUE(GlobMatches("CN=**", "CN=a,O=b", true));
  EXPECT_FALSE(GlobMatches("CN=a?b", "CN=a+b", true));
  EXPECT_TRUE(GlobMatches("**", "", true));
}

TEST(GlobTest, CheckPatternRefusesUnusablePatterns) {
  EXPECT_TRUE(CheckPattern("CN=*,O=Example", true).ok());
  EXPECT_TRUE(CheckPattern("**", true).ok());
  EXPECT_THAT(CheckPattern("", false).message(), HasSubstr("must not be empty"));
  EXPECT_THAT(CheckPattern("**.example", false).message(), HasSubstr("only subject patterns"));
  EXPECT_THAT(CheckPattern("CN=***", true).message(), HasSubstr("***"));
  EXPECT_THAT(CheckPattern(std::string("a\tb"), false).message(), HasSubstr("control characters"));
  EXPECT_THAT(CheckPattern(std::string(300, 'a'), false).message(), HasSubstr("at most 256"));
}

TEST(GlobTest, CanonicalCurveNames) {
  EXPECT_EQ(CanonicalCurveName("p-256"), "P-256");
  EXPECT_EQ(CanonicalCurveName("prime256v1"), "P-256");
  EXPECT_EQ(CanonicalCurveName("secp384r1"), "P-384");
  EXPECT_EQ(CanonicalCurveName("P521"), "P-521");
  EXPECT_EQ(CanonicalCurveName("secp256k1"), "");
}

}  // namespace
}  // namespace adcsc::pki
