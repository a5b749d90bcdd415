#include "node/pki/encoding.h"

#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace adcsc::pki {
namespace {

using ::testing::HasSubstr;

Bytes Iota(size_t n) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i * 37 + 11);
  return b;
}

TEST(Base64Test, RoundTripsEveryLength) {
  for (size_t n = 1; n < 200; ++n) {
    const Bytes data = Iota(n);
    absl::StatusOr<Bytes> decoded = Base64Decode(Base64Encode(data));
    ASSERT_TRUE(decoded.ok()) << n << ": " << decoded.status();
    EXPECT_EQ(*decoded, data) << n;
    absl::StatusOr<Bytes> from_lines = Base64Decode(Base64EncodeLines(data));
    ASSERT_TRUE(from_lines.ok()) << n << ": " << from_lines.status();
    EXPECT_EQ(*from_lines, data) << n;
  }
}

TEST(Base64Test, KnownVectors) {
  EXPECT_EQ(Base64Encode(AsBytes("f")), "Zg==");
  EXPECT_EQ(Base64Encode(AsBytes("fo")), "Zm8=");
  EXPECT_EQ(Base64Encode(AsBytes("foo")), "Zm9v");
  EXPECT_EQ(Base64Encode(AsBytes("foobar")), "Zm9vYmFy");
  EXPECT_EQ(Base64Encode(AsBytes("")), "");
}

TEST(Base64Test, ToleratesWhitespaceAndLineBreaks) {
  absl::StatusOr<Bytes> d = Base64Decode(" Zm9v\r\nYm\tFy \n\n");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(AsChars(*d), "foobar");
}

TEST(Base64Test, ToleratesPemArmour) {
  const std::string pem =
      "-----BEGIN CERTIFICATE REQUEST-----\r\n"
      "Zm9vYmFy\r\n"
      "Zm8=\r\n"
      "-----END CERTIFICATE REQUEST-----\r\n";
  absl::StatusOr<Bytes> d = Base64Decode(pem);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(AsChars(*d), "foobarfo");
  // Armour without a trailing newline, and the NEW CERTIFICATE REQUEST variant.
  d = Base64Decode("-----BEGIN NEW CERTIFICATE REQUEST-----\nZm9v\n-----END NEW CERTIFICATE REQUEST-----");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(AsChars(*d), "foo");
}

TEST(Base64Test, RejectsCharactersOutsideTheAlphabetWithPosition) {
  absl::StatusOr<Bytes> d = Base64Decode("Zm9v\nYm*y");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(d.status().message(), HasSubstr("'*'"));
  EXPECT_THAT(d.status().message(), HasSubstr("offset 7"));
  EXPECT_THAT(d.status().message(), HasSubstr("line 2, column 3"));
}

TEST(Base64Test, RejectsUrlSafeAlphabetAndNonAscii) {
  EXPECT_FALSE(Base64Decode("ab-_").ok());
  absl::StatusOr<Bytes> d = Base64Decode("Zm9v\xc3\xa9");
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(d.status().message(), HasSubstr("0xc3"));
}

TEST(Base64Test, RejectsBadPadding) {
  EXPECT_FALSE(Base64Decode("Zm9vYg").ok());    // missing padding
  EXPECT_FALSE(Base64Decode("Zm9vY===").ok());  // too much padding
  EXPECT_FALSE(Base64Decode("Zg==Zg==").ok());  // data after padding
  EXPECT_FALSE(Base64Decode("Zh==").ok());      // non-zero bits under padding
  EXPECT_FALSE(Base64Decode("Zm9=").ok());      // non-zero bits under padding
  EXPECT_FALSE(Base64Decode("").ok());
  EXPECT_FALSE(Base64Decode("  \r\n").ok());
  EXPECT_FALSE(Base64Decode("-----BEGIN X-----\n-----END X-----\n").ok());
}

TEST(Base64Test, ArmourMustBeAWholeLine) {
  EXPECT_FALSE(Base64Decode("Zm9v-----BEGIN X-----").ok());
  EXPECT_FALSE(Base64Decode("-----Zm9v").ok());
}

TEST(Base64EncodeLinesTest, SixtyFourCharacterLinesEndedByCrLf) {
  const Bytes data = Iota(1000);
  const std::string text = Base64EncodeLines(data);
  const std::string flat = Base64Encode(data);
  std::string rejoined;
  size_t pos = 0;
  int lines = 0;
  while (pos < text.size()) {
    const size_t end = text.find("\r\n", pos);
    ASSERT_NE(end, std::string::npos) << "last line must end with \\r\\n";
    const size_t len = end - pos;
    if (end + 2 < text.size()) {
      EXPECT_EQ(len, 64u) << "line " << lines;
    } else {
      EXPECT_LE(len, 64u);
      EXPECT_GT(len, 0u);
    }
    EXPECT_EQ(text.substr(pos, len).find('\n'), std::string::npos);
    rejoined += text.substr(pos, len);
    pos = end + 2;
    ++lines;
  }
  EXPECT_EQ(rejoined, flat);
  EXPECT_EQ(lines, static_cast<int>((flat.size() + 63) / 64));
  EXPECT_EQ(text.substr(text.size() - 2), "\r\n");
}

TEST(Base64EncodeLinesTest, ExactMultipleOf64HasNoEmptyLine) {
  const std::string text = Base64EncodeLines(Iota(96));  // 128 base64 characters
  EXPECT_EQ(text.size(), 128u + 4u);
  EXPECT_EQ(text.substr(64, 2), "\r\n");
  EXPECT_EQ(text.substr(130, 2), "\r\n");
  EXPECT_EQ(Base64EncodeLines({}), "");
}

TEST(HexAndShaTest, KnownAnswers) {
  EXPECT_EQ(HexLower(AsBytes("\x01\xab\xff")), "01abff");
  EXPECT_EQ(Sha256Hex(AsBytes("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(HexLower(Sha256("abc")), Sha256Hex(AsBytes("abc")));
}

TEST(RandomTest, BytesAndPasswords) {
  absl::StatusOr<Bytes> a = SecureRandomBytes(32);
  absl::StatusOr<Bytes> b = SecureRandomBytes(32);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->size(), 32u);
  EXPECT_NE(*a, *b);

  std::set<std::string> seen;
  std::set<char> chars;
  for (int i = 0; i < 200; ++i) {
    absl::StatusOr<std::string> pw = RandomPassword(20);
    ASSERT_TRUE(pw.ok());
    ASSERT_EQ(pw->size(), 20u);
    for (char c : *pw) {
      ASSERT_TRUE(isalnum(static_cast<unsigned char>(c))) << *pw;
      chars.insert(c);
    }
    seen.insert(*pw);
  }
  EXPECT_EQ(seen.size(), 200u);
  EXPECT_EQ(chars.size(), 62u) << "4000 draws should hit every one of the 62 characters";
}

}  // namespace
}  // namespace adcsc::pki
