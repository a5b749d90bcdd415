#include "node/pki/x509.h"

#include <openssl/x509_vfy.h>
#include <time.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/pki/csr.h"
#include "node/pki/keys.h"

namespace adcsc::pki {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct Ca {
  EvpPkeyPtr key;
  X509Ptr cert;
};

Ca MakeCa(KeyType type, int years = 10) {
  Ca ca;
  auto key = GenerateKey(type);
  EXPECT_TRUE(key.ok());
  ca.key = std::move(*key);
  auto cert = MakeSelfSignedCa(ca.key.get(), "Test Root", {"adcsc.example.com", "127.0.0.1"}, years,
                               {"serverAuth", "clientAuth"});
  EXPECT_TRUE(cert.ok()) << cert.status();
  ca.cert = std::move(*cert);
  return ca;
}

bool HasKeyUsage(X509* cert, uint32_t bit) { return (X509_get_key_usage(cert) & bit) != 0; }

TEST(SelfSignedCaTest, HasTheServerIdentityExtensions) {
  for (KeyType type : {KeyType::kEcP256, KeyType::kRsa2048}) {
    Ca ca = MakeCa(type);
    X509* cert = ca.cert.get();
    EXPECT_EQ(NameToString(X509_get_subject_name(cert)), "CN=Test Root");
    EXPECT_EQ(X509_check_ca(cert), 1);
    EXPECT_TRUE(HasKeyUsage(cert, KU_KEY_CERT_SIGN));
    EXPECT_TRUE(HasKeyUsage(cert, KU_CRL_SIGN));
    EXPECT_TRUE(HasKeyUsage(cert, KU_DIGITAL_SIGNATURE));
    EXPECT_EQ(HasKeyUsage(cert, KU_KEY_ENCIPHERMENT), type == KeyType::kRsa2048);
    EXPECT_THAT(ExtendedKeyUsages(cert), ElementsAre(std::string(kEkuServerAuth), std::string(kEkuClientAuth)));
    EXPECT_THAT(SubjectAltNames(cert), ElementsAre("DNS:adcsc.example.com", "IP:127.0.0.1"));
    EXPECT_NE(X509_get0_subject_key_id(cert), nullptr);
    EXPECT_NE(X509_get0_authority_key_id(cert), nullptr);
    EXPECT_EQ(X509_get_extension_flags(cert) & EXFLAG_CRITICAL, 0u) << "no unknown critical ext";
    // basicConstraints and keyUsage are critical.
    const int bc = X509_get_ext_by_NID(cert, NID_basic_constraints, -1);
    ASSERT_GE(bc, 0);
    EXPECT_EQ(X509_EXTENSION_get_critical(X509_get_ext(cert, bc)), 1);
    const int ku = X509_get_ext_by_NID(cert, NID_key_usage, -1);
    ASSERT_GE(ku, 0);
    EXPECT_EQ(X509_EXTENSION_get_critical(X509_get_ext(cert, ku)), 1);
    // It verifies as its own trust anchor, with strict RFC 5280 checks.
    absl::Status v = VerifyChain(cert, {cert}, {}, std::nullopt, X509_V_FLAG_X509_STRICT);
    EXPECT_TRUE(v.ok()) << v;
    const int64_t now = time(nullptr);
    EXPECT_NEAR(NotBeforeUnix(cert), now - 3600, 5);
    EXPECT_NEAR(NotAfterUnix(cert), now + 10 * 365.25 * 86400, 2 * 86400);
  }
}

TEST(SelfSignedCaTest, RejectsBadArguments) {
  auto key = GenerateKey(KeyType::kEcP256);
  ASSERT_TRUE(key.ok());
  EXPECT_FALSE(MakeSelfSignedCa(key->get(), "", {}, 10, {}).ok());
  EXPECT_FALSE(MakeSelfSignedCa(key->get(), "x", {}, 0, {}).ok());
  absl::StatusOr<X509Ptr> bad_eku = MakeSelfSignedCa(key->get(), "x", {}, 1, {"notAnEku"});
  ASSERT_FALSE(bad_eku.ok());
  EXPECT_THAT(bad_eku.status().message(), HasSubstr("notAnEku"));
  EXPECT_FALSE(MakeSelfSignedCa(key->get(), "x", {"has space"}, 1, {}).ok());
}

TEST(ResolveEkuTest, NamesAndOids) {
  EXPECT_EQ(*ResolveEku("clientAuth"), "1.3.6.1.5.5.7.3.2");
  EXPECT_EQ(*ResolveEku("serverAuth"), "1.3.6.1.5.5.7.3.1");
  EXPECT_EQ(*ResolveEku("TLS Web Client Authentication"), "1.3.6.1.5.5.7.3.2");
  EXPECT_EQ(*ResolveEku("1.3.6.1.4.1.311.20.2.2"), "1.3.6.1.4.1.311.20.2.2");
  EXPECT_FALSE(ResolveEku("").ok());
  EXPECT_FALSE(ResolveEku("bogus").ok());
}

TEST(IssueCertificateTest, IssuedCertificateChainsAndCarriesRequest) {
  Ca ca = MakeCa(KeyType::kEcP256);
  auto leaf_key = GenerateKey(KeyType::kRsa2048);
  ASSERT_TRUE(leaf_key.ok());
  auto der = MakeCsr(leaf_key->get(), "device-7", {"device-7.example.com"});
  ASSERT_TRUE(der.ok());
  auto csr = ParseVerifiedCsr(*der);
  ASSERT_TRUE(csr.ok());
  IssueOptions options;
  options.validity_days = 30;
  options.ekus = {"clientAuth"};
  absl::StatusOr<X509Ptr> cert = IssueCertificate(ca.cert.get(), ca.key.get(), csr->request.get(), options);
  ASSERT_TRUE(cert.ok()) << cert.status();
  X509* leaf = cert->get();

  absl::Status v = VerifyChain(leaf, {ca.cert.get()}, {}, std::nullopt, X509_V_FLAG_X509_STRICT);
  EXPECT_TRUE(v.ok()) << v;
  EXPECT_EQ(NameToString(X509_get_subject_name(leaf)), "CN=device-7");
  EXPECT_EQ(NameToString(X509_get_issuer_name(leaf)), "CN=Test Root");
  EXPECT_THAT(SubjectAltNames(leaf), ElementsAre("DNS:device-7.example.com"));
  EXPECT_THAT(ExtendedKeyUsages(leaf), ElementsAre(std::string(kEkuClientAuth)));
  EXPECT_EQ(X509_check_ca(leaf), 0);
  EXPECT_TRUE(HasKeyUsage(leaf, KU_DIGITAL_SIGNATURE));
  EXPECT_TRUE(HasKeyUsage(leaf, KU_KEY_ENCIPHERMENT));
  EXPECT_FALSE(HasKeyUsage(leaf, KU_KEY_CERT_SIGN));
  EXPECT_EQ(X509_check_private_key(leaf, leaf_key->get()), 1);
  EXPECT_EQ(X509_get_signature_nid(leaf), NID_ecdsa_with_SHA256);

  // Serial: 16 bytes, positive.
  const std::string serial = SerialHex(leaf);
  EXPECT_EQ(serial.size(), 32u) << serial;
  const ASN1_INTEGER* raw = X509_get0_serialNumber(leaf);
  EXPECT_EQ(raw->type, V_ASN1_INTEGER) << "negative serial";

  const int64_t now = time(nullptr);
  EXPECT_NEAR(NotBeforeUnix(leaf), now - 3600, 5);
  EXPECT_NEAR(NotAfterUnix(leaf), now + 30 * 86400, 5);

  // AKI names the issuer's SKI.
  const ASN1_OCTET_STRING* aki = X509_get0_authority_key_id(leaf);
  ASSERT_NE(aki, nullptr);
  EXPECT_EQ(ASN1_OCTET_STRING_cmp(aki, X509_get0_subject_key_id(ca.cert.get())), 0);

  // A different root does not verify it.
  Ca other = MakeCa(KeyType::kEcP256);
  absl::Status wrong = VerifyChain(leaf, {other.cert.get()});
  EXPECT_FALSE(wrong.ok());
  EXPECT_THAT(wrong.message(), HasSubstr("does not verify"));
}

TEST(IssueCertificateTest, NotAfterIsCappedAtIssuer) {
  Ca ca = MakeCa(KeyType::kEcP256, /*years=*/1);
  auto leaf_key = GenerateKey(KeyType::kEcP256);
  ASSERT_TRUE(leaf_key.ok());
  auto csr = ParseVerifiedCsr(*MakeCsr(leaf_key->get(), "long-lived"));
  ASSERT_TRUE(csr.ok());
  IssueOptions options;
  options.validity_days = 3650;
  auto cert = IssueCertificate(ca.cert.get(), ca.key.get(), csr->request.get(), options);
  ASSERT_TRUE(cert.ok()) << cert.status();
  EXPECT_EQ(NotAfterUnix(cert->get()), NotAfterUnix(ca.cert.get()));
  EXPECT_TRUE(ExtendedKeyUsages(cert->get()).empty());
  EXPECT_FALSE(HasKeyUsage(cert->get(), KU_KEY_ENCIPHERMENT)) << "EC keys do not encipher";
}

TEST(IssueCertificateTest, SubjectOverrideAndExplicitTime) {
  Ca ca = MakeCa(KeyType::kRsa2048);
  auto leaf_key = GenerateKey(KeyType::kEcP256);
  ASSERT_TRUE(leaf_key.ok());
  auto csr = ParseVerifiedCsr(*MakeCsr(leaf_key->get(), "from-request", {"a.example"}));
  ASSERT_TRUE(csr.ok());
  IssueOptions options;
  options.copy_subject = false;
  options.subject_cn = "override";
  options.copy_san = false;
  options.validity_days = 10;
  const int64_t then = time(nullptr) - 86400;
  options.now_unix_seconds = then;
  auto cert = IssueCertificate(ca.cert.get(), ca.key.get(), csr->request.get(), options);
  ASSERT_TRUE(cert.ok()) << cert.status();
  EXPECT_EQ(NameToString(X509_get_subject_name(cert->get())), "CN=override");
  EXPECT_TRUE(SubjectAltNames(cert->get()).empty());
  EXPECT_EQ(NotBeforeUnix(cert->get()), then - 3600);
  EXPECT_EQ(NotAfterUnix(cert->get()), then + 10 * 86400);
  EXPECT_EQ(X509_get_signature_nid(cert->get()), NID_sha256WithRSAEncryption);
  // Verification at a time after expiry fails, naming the reason.
  absl::Status expired = VerifyChain(cert->get(), {ca.cert.get()}, {}, then + 11 * 86400);
  ASSERT_FALSE(expired.ok());
  EXPECT_THAT(expired.message(), HasSubstr("expired"));
}

// A host whose wall clock was stepped back 5 minutes (NTP, an operator, a VM resume) still
// accepts a CA and a certificate issued just before: TLS between the nodes and with Jamf Pro
// would fail with "certificate is not yet valid" otherwise. notBefore still holds further back.
TEST(IssueCertificateTest, ACertificateIssuedNowVerifiesOnAClockSteppedBackFiveMinutes) {
  const int64_t issued = 1'800'000'000;
  auto ca_key = GenerateKey(KeyType::kEcP256);
  ASSERT_TRUE(ca_key.ok());
  SelfSignedCaOptions ca_options;
  ca_options.common_name = "Stepped Root";
  ca_options.now_unix_seconds = issued;
  auto ca_cert = MakeSelfSignedCa(ca_key->get(), ca_options);
  ASSERT_TRUE(ca_cert.ok()) << ca_cert.status();
  auto leaf_key = GenerateKey(KeyType::kEcP256);
  ASSERT_TRUE(leaf_key.ok());
  auto csr = ParseVerifiedCsr(*MakeCsr(leaf_key->get(), "node-b"));
  ASSERT_TRUE(csr.ok());
  IssueOptions options;
  options.validity_days = 30;
  options.now_unix_seconds = issued;
  auto leaf = IssueCertificate(ca_cert->get(), ca_key->get(), csr->request.get(), options);
  ASSERT_TRUE(leaf.ok()) << leaf.status();

  for (int64_t at : {issued - 5 * 60, issued - 59 * 60, issued, issued + 5 * 60}) {
    absl::Status v = VerifyChain(leaf->get(), {ca_cert->get()}, {}, at);
    EXPECT_TRUE(v.ok()) << "at issue " << at - issued << " s: " << v;
  }
  absl::Status early = VerifyChain(leaf->get(), {ca_cert->get()}, {}, issued - 2 * 3600);
  EXPECT_FALSE(early.ok()) << "two hours before issue";
  EXPECT_EQ(NotAfterUnix(leaf->get()), issued + 30 * 86400) << "notAfter counts from the time of issue";
}

TEST(ConversionsTest, DerAndPemRoundTrip) {
  Ca ca = MakeCa(KeyType::kEcP256);
  absl::StatusOr<Bytes> der = CertToDer(ca.cert.get());
  ASSERT_TRUE(der.ok());
  absl::StatusOr<X509Ptr> from_der = CertFromDer(*der);
  ASSERT_TRUE(from_der.ok());
  EXPECT_EQ(X509_cmp(from_der->get(), ca.cert.get()), 0);
  absl::StatusOr<std::string> pem = CertToPem(ca.cert.get());
  ASSERT_TRUE(pem.ok());
  EXPECT_THAT(*pem, HasSubstr("-----BEGIN CERTIFICATE-----\n"));
  Ca other = MakeCa(KeyType::kEcP256);
  const std::string bundle = *pem + *CertToPem(other.cert.get());
  absl::StatusOr<std::vector<X509Ptr>> certs = CertsFromPem(bundle);
  ASSERT_TRUE(certs.ok()) << certs.status();
  ASSERT_EQ(certs->size(), 2u);
  EXPECT_EQ(X509_cmp((*certs)[0].get(), ca.cert.get()), 0);
  EXPECT_EQ(X509_cmp((*certs)[1].get(), other.cert.get()), 0);
  EXPECT_EQ(X509_cmp(CertFromPem(bundle)->get(), ca.cert.get()), 0);
  EXPECT_FALSE(CertsFromPem("nothing here").ok());
  Bytes trailing = *der;
  trailing.push_back(0);
  EXPECT_FALSE(CertFromDer(trailing).ok());
  EXPECT_FALSE(CertFromDer(AsBytes("junk")).ok());
}

// The certs-only PKCS#7 an ADCS CA answers with (pctbCertChain): what we write, OpenSSL's
// own tool reads, and what we read keeps the order.
TEST(ConversionsTest, Pkcs7ChainRoundTrip) {
  Ca ca = MakeCa(KeyType::kEcP256);
  Ca other = MakeCa(KeyType::kEcP256);
  absl::StatusOr<Bytes> p7 = CertsToPkcs7Der({ca.cert.get(), other.cert.get()});
  ASSERT_TRUE(p7.ok()) << p7.status();
  absl::StatusOr<std::vector<X509Ptr>> back = CertsFromPkcs7Der(*p7);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), 2u);
  EXPECT_EQ(X509_cmp((*back)[0].get(), ca.cert.get()), 0);
  EXPECT_EQ(X509_cmp((*back)[1].get(), other.cert.get()), 0);
  EXPECT_FALSE(CertsFromPkcs7Der(AsBytes("junk")).ok());
  EXPECT_FALSE(CertsFromPkcs7Der(*CertToDer(ca.cert.get())).ok()) << "a certificate is not a PKCS#7";
}

}  // namespace
}  // namespace adcsc::pki
