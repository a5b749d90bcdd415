#include "node/pki/csr.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/pki/keys.h"

namespace adcsc::pki {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(CsrTest, MakesAndParsesRsaRequestWithSans) {
  absl::StatusOr<EvpPkeyPtr> key = GenerateKey(KeyType::kRsa2048);
  ASSERT_TRUE(key.ok());
  absl::StatusOr<Bytes> der = MakeCsr(key->get(), "device-42", {"device-42.example.com", "10.1.2.3"});
  ASSERT_TRUE(der.ok()) << der.status();
  absl::StatusOr<ParsedCsr> csr = ParseVerifiedCsr(*der);
  ASSERT_TRUE(csr.ok()) << csr.status();
  EXPECT_EQ(csr->key_type, "RSA");
  EXPECT_EQ(csr->key_bits, 2048);
  EXPECT_EQ(csr->subject, "CN=device-42");
  EXPECT_THAT(csr->subject_alt_names, ElementsAre("DNS:device-42.example.com", "IP:10.1.2.3"));
  EXPECT_TRUE(csr->signature_valid);
  ASSERT_NE(csr->request, nullptr);
  EXPECT_EQ(*CsrToDer(csr->request.get()), *der);
}

TEST(CsrTest, ParsesEcRequestWithoutSans) {
  absl::StatusOr<EvpPkeyPtr> key = GenerateKey(KeyType::kEcP256);
  ASSERT_TRUE(key.ok());
  absl::StatusOr<Bytes> der = MakeCsr(key->get(), "Ünïcode name");
  ASSERT_TRUE(der.ok()) << der.status();
  absl::StatusOr<ParsedCsr> csr = ParseCsr(*der);
  ASSERT_TRUE(csr.ok()) << csr.status();
  EXPECT_EQ(csr->key_type, "EC");
  EXPECT_EQ(csr->key_bits, 256);
  EXPECT_EQ(csr->subject, "CN=Ünïcode name");
  EXPECT_TRUE(csr->subject_alt_names.empty());
  EXPECT_TRUE(csr->signature_valid);
}

TEST(CsrTest, CorruptedSignatureByteIsDetected) {
  absl::StatusOr<EvpPkeyPtr> key = GenerateKey(KeyType::kRsa2048);
  ASSERT_TRUE(key.ok());
  absl::StatusOr<Bytes> der = MakeCsr(key->get(), "tampered");
  ASSERT_TRUE(der.ok());
  // The RSA signature is the last 256 bytes of the DER; flip a bit in it.
  (*der)[der->size() - 10] ^= 0x01;
  absl::StatusOr<ParsedCsr> csr = ParseCsr(*der);
  ASSERT_TRUE(csr.ok()) << csr.status();
  EXPECT_FALSE(csr->signature_valid);
  absl::StatusOr<ParsedCsr> verified = ParseVerifiedCsr(*der);
  ASSERT_FALSE(verified.ok());
  EXPECT_EQ(verified.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(verified.status().message(), HasSubstr("CSR signature does not verify"));
}

TEST(CsrTest, CorruptedSubjectIsDetected) {
  absl::StatusOr<EvpPkeyPtr> key = GenerateKey(KeyType::kEcP256);
  ASSERT_TRUE(key.ok());
  absl::StatusOr<Bytes> der = MakeCsr(key->get(), "aaaaaaaa");
  ASSERT_TRUE(der.ok());
  std::string text(AsChars(*der));
  const size_t at = text.find("aaaaaaaa");
  ASSERT_NE(at, std::string::npos);
  (*der)[at] = 'b';
  absl::StatusOr<ParsedCsr> csr = ParseCsr(*der);
  ASSERT_TRUE(csr.ok()) << csr.status();
  EXPECT_EQ(csr->subject, "CN=baaaaaaa");
  EXPECT_FALSE(csr->signature_valid);
}

TEST(CsrTest, RejectsNonDer) {
  for (const Bytes& bad :
       {Bytes{}, Bytes{0x30, 0x03, 0x02, 0x01}, Bytes(AsBytes("MIIB").begin(), AsBytes("MIIB").end())}) {
    absl::StatusOr<ParsedCsr> csr = ParseCsr(bad);
    ASSERT_FALSE(csr.ok());
    EXPECT_EQ(csr.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(csr.status().message(), HasSubstr("pkcs10 is not a DER PKCS#10 request"));
  }
}

TEST(CsrTest, RejectsTrailingBytes) {
  absl::StatusOr<EvpPkeyPtr> key = GenerateKey(KeyType::kEcP256);
  ASSERT_TRUE(key.ok());
  absl::StatusOr<Bytes> der = MakeCsr(key->get(), "x");
  ASSERT_TRUE(der.ok());
  der->push_back(0);
  absl::StatusOr<ParsedCsr> csr = ParseCsr(*der);
  ASSERT_FALSE(csr.ok());
  EXPECT_THAT(csr.status().message(), HasSubstr("1 unexpected bytes"));
}

}  // namespace
}  // namespace adcsc::pki
