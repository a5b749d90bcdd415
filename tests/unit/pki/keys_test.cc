#include "node/pki/keys.h"

#include <sys/stat.h>

#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/pki/x509.h"
#include "tests/testing/temp_dir.h"

namespace adcsc::pki {
namespace {

using ::adcsc::testing::FileMode;
using ScratchDir = ::adcsc::testing::TempDir;
using ::testing::HasSubstr;

TEST(KeysTest, GeneratesEachKeyType) {
  struct Case {
    KeyType type;
    const char* algorithm;
    int bits;
  };
  for (const Case& c :
       {Case{KeyType::kEcP256, "EC", 256}, Case{KeyType::kEcP384, "EC", 384}, Case{KeyType::kRsa2048, "RSA", 2048}}) {
    absl::StatusOr<EvpPkeyPtr> key = GenerateKey(c.type);
    ASSERT_TRUE(key.ok()) << key.status();
    EXPECT_EQ(KeyAlgorithmName(key->get()), c.algorithm);
    EXPECT_EQ(EVP_PKEY_get_bits(key->get()), c.bits);
  }
}

TEST(KeysTest, ParsesKeyTypeNames) {
  EXPECT_EQ(*ParseKeyType("p256"), KeyType::kEcP256);
  EXPECT_EQ(*ParseKeyType("P-256"), KeyType::kEcP256);
  EXPECT_EQ(*ParseKeyType("RSA-2048"), KeyType::kRsa2048);
  EXPECT_EQ(*ParseKeyType("rsa3072"), KeyType::kRsa3072);
  EXPECT_EQ(*ParseKeyType(KeyTypeName(KeyType::kEcP384)), KeyType::kEcP384);
  absl::StatusOr<KeyType> bad = ParseKeyType("dsa1024");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("p256"));
}

TEST(KeysTest, PrivateKeyPemRoundTrip) {
  absl::StatusOr<EvpPkeyPtr> key = GenerateKey(KeyType::kEcP256);
  ASSERT_TRUE(key.ok());
  absl::StatusOr<std::string> pem = PrivateKeyToPem(key->get());
  ASSERT_TRUE(pem.ok());
  EXPECT_THAT(*pem, HasSubstr("-----BEGIN PRIVATE KEY-----"));
  absl::StatusOr<EvpPkeyPtr> back = PrivateKeyFromPem(*pem);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(EVP_PKEY_eq(key->get(), back->get()), 1);
  EXPECT_FALSE(PrivateKeyFromPem("not a key").ok());
}

TEST(WritePrivateFileTest, CreatesMode0600EvenWithPermissiveUmask) {
  ScratchDir dir;
  const mode_t old = umask(0);
  const auto path = dir.path() / "secret.pem";
  absl::Status s = WritePrivateFile(path, std::string_view("hush"));
  umask(old);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(FileMode(path), 0600u);
  EXPECT_EQ(*ReadFileToString(path), "hush");
  // No temporary files are left behind.
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

TEST(WritePrivateFileTest, RefusesToOverwriteUnlessTold) {
  ScratchDir dir;
  const auto path = dir.path() / "secret.pem";
  ASSERT_TRUE(WritePrivateFile(path, std::string_view("first")).ok());
  absl::Status s = WritePrivateFile(path, std::string_view("second"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(s.message(), HasSubstr(path.string()));
  EXPECT_EQ(*ReadFileToString(path), "first");
  ASSERT_TRUE(WritePrivateFile(path, std::string_view("second"), /*overwrite=*/true).ok());
  EXPECT_EQ(*ReadFileToString(path), "second");
  EXPECT_EQ(FileMode(path), 0600u);
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

TEST(WritePrivateFileTest, MissingDirectoryIsAnError) {
  ScratchDir dir;
  absl::Status s = WritePrivateFile(dir.path() / "nope" / "x", std::string_view("x"));
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("nope"));
}

TEST(ReadPrivateKeyFileTest, RefusesGroupReadableKey) {
  ScratchDir dir;
  absl::StatusOr<EvpPkeyPtr> key = GenerateKey(KeyType::kEcP256);
  ASSERT_TRUE(key.ok());
  const auto path = dir.path() / "key.pem";
  ASSERT_TRUE(WritePrivateFile(path, *PrivateKeyToPem(key->get())).ok());
  absl::StatusOr<EvpPkeyPtr> loaded = ReadPrivateKeyFile(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(EVP_PKEY_eq(key->get(), loaded->get()), 1);

  ASSERT_EQ(chmod(path.c_str(), 0640), 0);
  loaded = ReadPrivateKeyFile(path);
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(loaded.status().message(), HasSubstr("chmod 600"));
  EXPECT_TRUE(ReadPrivateKeyFile(path, /*require_private_mode=*/false).ok());
}

TEST(PinTest, NormalisesCommonForms) {
  const std::string want = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  std::string colons;
  for (size_t i = 0; i < want.size(); i += 2) {
    if (!colons.empty()) colons += ':';
    colons += want.substr(i, 2);
  }
  std::string upper = want;
  for (char& c : upper) c = static_cast<char>(toupper(c));
  std::string upper_colons = colons;
  for (char& c : upper_colons) c = static_cast<char>(toupper(c));

  for (const std::string& in : {want, upper, colons, upper_colons, "  " + want + "\n", "sha256:" + want,
                                "SHA256 Fingerprint=" + upper_colons}) {
    absl::StatusOr<std::string> pin = NormalizePin(in);
    ASSERT_TRUE(pin.ok()) << in << ": " << pin.status();
    EXPECT_EQ(*pin, want) << in;
  }
}

TEST(PinTest, RejectsMalformedPins) {
  const std::string good = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  for (const std::string& in : {std::string(""), good.substr(2), good + "00", "g" + good.substr(1),
                                "01:23" + good.substr(4), "0:123" + good.substr(4), good.substr(0, 62) + "zz"}) {
    absl::StatusOr<std::string> pin = NormalizePin(in);
    EXPECT_FALSE(pin.ok()) << in;
    if (!pin.ok()) {
      EXPECT_THAT(pin.status().message(), HasSubstr("64 hex digits"));
    }
  }
}

TEST(PinTest, CertSha256HexMatchesSha256OfDer) {
  absl::StatusOr<EvpPkeyPtr> key = GenerateKey(KeyType::kEcP256);
  ASSERT_TRUE(key.ok());
  absl::StatusOr<X509Ptr> cert = MakeSelfSignedCa(key->get(), "pin.example", {}, 1, {});
  ASSERT_TRUE(cert.ok()) << cert.status();
  absl::StatusOr<Bytes> der = CertToDer(cert->get());
  ASSERT_TRUE(der.ok());
  const std::string pin = CertSha256Hex(cert->get());
  EXPECT_EQ(pin, Sha256Hex(*der));
  EXPECT_EQ(pin.size(), 64u);
  EXPECT_EQ(*NormalizePin(pin), pin);
}

}  // namespace
}  // namespace adcsc::pki
