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

namespace adcsc::pki {
namespace {

// CheckCsr's fast path must agree with OpenSSL's full parser on every input: the same
// verdict for good requests of each key type and for thousands of corrupted ones.
class CheckCsrTest : public ::testing::Test {
 protected:
  static Bytes Make(KeyType type, const std::string& cn, std::vector<std::string> sans = {}) {
    absl::StatusOr<EvpPkeyPtr> key = GenerateKey(type);
    EXPECT_TRUE(key.ok());
    absl::StatusOr<Bytes> der = MakeCsr(key->get(), cn, std::move(sans));
    EXPECT_TRUE(der.ok());
    return *der;
  }
};

TEST_F(CheckCsrTest, AcceptsGoodRequestsOfEveryKeyType) {
  struct Case {
    KeyType type;
    const char* key_type;
    int bits;
  };
  for (Case c :
       {Case{KeyType::kRsa2048, "RSA", 2048}, Case{KeyType::kEcP256, "EC", 256}, Case{KeyType::kEcP384, "EC", 384}}) {
    Bytes der = Make(c.type, "device-1", {"device-1.example.com"});
    absl::StatusOr<CsrFacts> facts = CheckCsr(der);
    ASSERT_TRUE(facts.ok()) << facts.status();
    EXPECT_EQ(facts->key_type, c.key_type);
    EXPECT_EQ(facts->key_bits, c.bits);
  }
}

TEST_F(CheckCsrTest, RejectsTrailingBytesTamperedSignatureAndEmptyInput) {
  Bytes der = Make(KeyType::kRsa2048, "device-2");
  Bytes trailing = der;
  trailing.push_back(0);
  EXPECT_THAT(CheckCsr(trailing).status().message(), HasSubstr("unexpected bytes follow"));
  Bytes tampered = der;
  tampered[tampered.size() - 4] ^= 0x01;
  EXPECT_THAT(CheckCsr(tampered).status().message(), HasSubstr("signature does not verify"));
  EXPECT_FALSE(CheckCsr(Bytes{}).ok());
}

TEST_F(CheckCsrTest, AgreesWithTheFullParserOnCorruptedRequests) {
  std::vector<Bytes> seeds = {Make(KeyType::kRsa2048, "seed-rsa", {"a.example.com"}),
                              Make(KeyType::kEcP256, "seed-ec", {"b.example.com", "10.0.0.1"})};
  uint64_t state = 0x9E3779B97F4A7C15ull;  // fixed seed: the test is deterministic
  auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  int accepted = 0, rejected = 0;
  for (int i = 0; i < 4000; ++i) {
    Bytes der = seeds[i % seeds.size()];
    switch (next() % 3) {
      case 0:  // flip one byte
        der[next() % der.size()] ^= static_cast<uint8_t>(1 + next() % 255);
        break;
      case 1:  // truncate
        der.resize(next() % der.size());
        break;
      default:  // flip two bytes in the header area, where lengths live
        der[next() % std::min<size_t>(der.size(), 16)] ^= static_cast<uint8_t>(1 + next() % 255);
        der[next() % der.size()] ^= static_cast<uint8_t>(1 + next() % 255);
        break;
    }
    const bool fast_ok = CheckCsr(der).ok();
    const bool full_ok = ParseVerifiedCsr(der).ok();
    ASSERT_EQ(fast_ok, full_ok) << "mutation " << i << " of seed " << i % seeds.size();
    (fast_ok ? accepted : rejected)++;
  }
  EXPECT_GT(rejected, 3000);
}

}  // namespace
}  // namespace adcsc::pki
