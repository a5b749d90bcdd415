// The UTF-8 <-> UTF-16 conversions shared by NTLM and NDR.
#include "node/text/utf16.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace adcsc::text {
namespace {

std::vector<uint8_t> FromHex(std::string_view hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  return out;
}

TEST(TextTest, Utf8AndUtf16RoundTrip) {
  const std::string utf8 = "Issued \xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80";
  absl::StatusOr<std::u16string> wide = Utf8ToUtf16(utf8);
  ASSERT_TRUE(wide.ok());
  EXPECT_EQ(*wide, u"Issued \u00e9 \u20ac \U0001F600");
  absl::StatusOr<std::string> back = Utf16ToUtf8(*wide);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, utf8);
}

TEST(TextTest, RejectsMalformedUtf8) {
  for (const char* bad : {"\xC0\x80", "\x80", "\xED\xA0\x80", "\xE2\x82", "\xF4\x90\x80\x80", "\xFF"}) {
    EXPECT_FALSE(Utf8ToUtf16(bad).ok()) << testing::PrintToString(std::string(bad));
  }
}

TEST(TextTest, UnpairedSurrogates) {
  const std::u16string lone = {u'a', static_cast<char16_t>(0xD800), u'b'};
  EXPECT_FALSE(Utf16ToUtf8(lone).ok());
  EXPECT_EQ(Utf16ToUtf8Lossy(lone),
            "a\xEF\xBF\xBD"
            "b");
}

TEST(TextTest, LittleEndianBytes) {
  EXPECT_EQ(Utf16ToLeBytes(u"A\u20ac"), FromHex("4100ac20"));
  absl::StatusOr<std::u16string> text = LeBytesToUtf16(FromHex("4100ac20"));
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, u"A\u20ac");
  absl::StatusOr<std::u16string> odd = LeBytesToUtf16(FromHex("410042"));
  EXPECT_FALSE(odd.ok());
  EXPECT_THAT(std::string(odd.status().message()), ::testing::HasSubstr("UTF-16LE string has odd length 3"));
}

TEST(TextTest, Utf16LeBytesBothWays) {
  auto bytes = Utf8ToUtf16Le("A\xE2\x82\xAC");
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(*bytes, FromHex("4100ac20"));
  auto back = Utf16LeToUtf8(*bytes);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, "A\xE2\x82\xAC");
  EXPECT_THAT(std::string(Utf16LeToUtf8(FromHex("00dc")).status().message()),
              ::testing::HasSubstr("unpaired low surrogate"));
}

}  // namespace
}  // namespace adcsc::text
