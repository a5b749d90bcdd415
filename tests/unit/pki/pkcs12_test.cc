#include "node/pki/pkcs12.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/pki/csr.h"
#include "node/pki/keys.h"
#include "node/pki/x509.h"

namespace adcsc::pki {
namespace {

TEST(Pkcs12Test, RoundTripWithChain) {
  auto ca_key = GenerateKey(KeyType::kEcP256);
  ASSERT_TRUE(ca_key.ok());
  auto ca_cert = MakeSelfSignedCa(ca_key->get(), "p12 root", {}, 5, {});
  ASSERT_TRUE(ca_cert.ok());
  auto key = GenerateKey(KeyType::kRsa2048);
  ASSERT_TRUE(key.ok());
  auto csr = ParseVerifiedCsr(*MakeCsr(key->get(), "jamf.example.com"));
  ASSERT_TRUE(csr.ok());
  IssueOptions options;
  options.ekus = {"clientAuth"};
  auto cert = IssueCertificate(ca_cert->get(), ca_key->get(), csr->request.get(), options);
  ASSERT_TRUE(cert.ok());

  absl::StatusOr<Bytes> p12 = ExportPkcs12(key->get(), cert->get(), {ca_cert->get()}, "s3cret", "jamf.example.com");
  ASSERT_TRUE(p12.ok()) << p12.status();

  absl::StatusOr<Pkcs12Contents> loaded = LoadPkcs12(*p12, "s3cret");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(EVP_PKEY_eq(loaded->key.get(), key->get()), 1);
  EXPECT_EQ(X509_cmp(loaded->cert.get(), cert->get()), 0);
  ASSERT_EQ(loaded->chain.size(), 1u);
  EXPECT_EQ(X509_cmp(loaded->chain[0].get(), ca_cert->get()), 0);

  absl::StatusOr<Pkcs12Contents> wrong = LoadPkcs12(*p12, "guess");
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(wrong.status().message(), ::testing::HasSubstr("wrong password"));

  EXPECT_EQ(LoadPkcs12(AsBytes("not a pfx"), "x").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Pkcs12Test, UsesAesAndSha256Mac) {
  auto key = GenerateKey(KeyType::kEcP256);
  ASSERT_TRUE(key.ok());
  auto cert = MakeSelfSignedCa(key->get(), "self", {}, 1, {});
  ASSERT_TRUE(cert.ok());
  absl::StatusOr<Bytes> der = ExportPkcs12(key->get(), cert->get(), {}, "pw", "");
  ASSERT_TRUE(der.ok());
  const unsigned char* p = der->data();
  Pkcs12Ptr p12(d2i_PKCS12(nullptr, &p, static_cast<long>(der->size())));
  ASSERT_NE(p12, nullptr);
  const X509_ALGOR* mac_alg = nullptr;
  PKCS12_get0_mac(nullptr, &mac_alg, nullptr, nullptr, p12.get());
  ASSERT_NE(mac_alg, nullptr);
  const ASN1_OBJECT* obj = nullptr;
  X509_ALGOR_get0(&obj, nullptr, nullptr, mac_alg);
  EXPECT_EQ(OBJ_obj2nid(obj), NID_sha256);
}

TEST(Pkcs12Test, RefusesMismatchedKey) {
  auto key = GenerateKey(KeyType::kEcP256);
  auto other = GenerateKey(KeyType::kEcP256);
  ASSERT_TRUE(key.ok() && other.ok());
  auto cert = MakeSelfSignedCa(key->get(), "self", {}, 1, {});
  ASSERT_TRUE(cert.ok());
  EXPECT_FALSE(ExportPkcs12(other->get(), cert->get(), {}, "pw", "x").ok());
}

}  // namespace
}  // namespace adcsc::pki
