#include "node/rpc/icpr_stub.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/rpc/ndr.h"

namespace adcsc::rpc {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

// Produced by tests/unit/rpc/impacket_vectors.py with CertServerRequest declared from the
// MS-ICPR IDL on impacket's NDR classes. impacket fills alignment padding with 0xAB/0xBF where
// we write zeros (NDR leaves pad content unspecified), so the encoder comparisons zero those
// offsets in impacket's bytes first; the decoder reads impacket's bytes unchanged.
constexpr char kImpacketIcprRequest[] =
    "00000000000002000c000000000000000c00000063006f00720070002d004300410031002d0043004100000000000000"
    "32000000040002003200000043006500720074006900660069006300610074006500540065006d0070006c0061007400"
    "65003a0055007300650072000000abab2500000008000200250000000102030405060708090a0b0c0d0e0f1011121314"
    "15161718191a1b1c1d1e1f202122232425";

constexpr char kImpacketIcprRequestNullAuthority[] =
    "00010000000000000700000000000000000000000500000000000200050000003003020100";

constexpr char kImpacketIcprResponse[] =
    "2a000000030000000b000000000002000b000000303132333435363738393aab06000000040002000600000080818283"
    "8485abab0e000000080002000e0000004900730073007500650064000000bfbf00000000";

constexpr char kImpacketIcprResponseDenied[] =
    "2b0000000200000000000000000000000000000000000000300000000000020030000000440065006e00690065006400"
    "200062007900200050006f006c0069006300790020004d006f00640075006c006500000012400980";

Bytes FromHex(std::string_view hex) {
  Bytes out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

Bytes ZeroPadding(Bytes bytes, std::initializer_list<size_t> offsets) {
  for (size_t at : offsets) bytes.at(at) = 0;
  return bytes;
}

std::string Message(const absl::Status& s) { return std::string(s.message()); }

Bytes Iota(size_t n, uint8_t start) {
  Bytes out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(start + i);
  return out;
}

Bytes Utf16Le(std::u16string_view text) { return Utf16ToLeBytes(text); }

CertServerRequestIn ImpacketRequest() {
  CertServerRequestIn in;
  in.flags = 0;
  in.authority = "corp-CA1-CA";
  in.request_id = 0;
  in.attributes = Utf16Le(std::u16string(u"CertificateTemplate:User") + u'\0');
  in.request = Iota(37, 1);
  return in;
}

TEST(IcprImpacketTest, RequestMatchesImpacketByteForByte) {
  const Bytes impacket = FromHex(kImpacketIcprRequest);
  absl::StatusOr<Bytes> ours = EncodeCertServerRequestIn(ImpacketRequest());
  ASSERT_TRUE(ours.ok()) << ours.status();
  EXPECT_EQ(*ours, ZeroPadding(impacket, {110, 111}));

  absl::StatusOr<CertServerRequestIn> decoded = DecodeCertServerRequestIn(impacket);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, ImpacketRequest());
}

TEST(IcprImpacketTest, NullAuthorityAndEmptyAttributes) {
  CertServerRequestIn in;
  in.flags = cr_in::kPkcs10;
  in.request_id = 7;
  in.request = FromHex("3003020100");
  absl::StatusOr<Bytes> ours = EncodeCertServerRequestIn(in);
  ASSERT_TRUE(ours.ok());
  EXPECT_EQ(*ours, FromHex(kImpacketIcprRequestNullAuthority));

  absl::StatusOr<CertServerRequestIn> decoded = DecodeCertServerRequestIn(FromHex(kImpacketIcprRequestNullAuthority));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_FALSE(decoded->authority.has_value());
  EXPECT_TRUE(decoded->attributes.empty());
  EXPECT_EQ(*decoded, in);
}

TEST(IcprImpacketTest, IssuedResponse) {
  CertServerRequestOut out;
  out.request_id = 42;
  out.disposition = cr_disp::kIssued;
  out.cert_chain = Iota(11, 0x30);
  out.encoded_cert = Iota(6, 0x80);
  out.disposition_message = Utf16Le(std::u16string(u"Issued") + u'\0');
  const Bytes impacket = FromHex(kImpacketIcprResponse);
  EXPECT_EQ(EncodeCertServerRequestOut(out), ZeroPadding(impacket, {31, 50, 51, 78, 79}));

  absl::StatusOr<CertServerRequestOut> decoded = DecodeCertServerRequestOut(impacket);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, out);
  EXPECT_EQ(*DecodeDispositionMessage(decoded->disposition_message), "Issued");
}

TEST(IcprImpacketTest, DeniedResponse) {
  CertServerRequestOut out;
  out.request_id = 43;
  out.disposition = cr_disp::kDenied;
  out.disposition_message = Utf16Le(std::u16string(u"Denied by Policy Module") + u'\0');
  out.return_value = 0x80094012;
  EXPECT_EQ(EncodeCertServerRequestOut(out), FromHex(kImpacketIcprResponseDenied));

  absl::StatusOr<CertServerRequestOut> decoded = DecodeCertServerRequestOut(FromHex(kImpacketIcprResponseDenied));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, out);
  EXPECT_TRUE(decoded->cert_chain.empty());
}

TEST(IcprRoundTripTest, VariedSizesRoundTrip) {
  for (size_t n : {0, 1, 2, 3, 4, 5, 1000, 4097}) {
    SCOPED_TRACE(n);
    CertServerRequestIn in;
    in.flags = cr_in::kPkcs10 | cr_in::kRpc;
    in.authority = n % 2 == 0 ? std::optional<std::string>("CA \xC3\xA9\xF0\x9F\x98\x80") : std::nullopt;
    in.request_id = static_cast<uint32_t>(n);
    in.attributes = n == 0 ? Bytes{} : *CertificateTemplateAttribute("WebServer");
    in.request = Iota(n, 3);
    absl::StatusOr<Bytes> stub = EncodeCertServerRequestIn(in);
    ASSERT_TRUE(stub.ok());
    absl::StatusOr<CertServerRequestIn> back = DecodeCertServerRequestIn(*stub);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, in);

    CertServerRequestOut out;
    out.request_id = 9;
    out.disposition = cr_disp::kUnderSubmission;
    out.cert_chain = Iota(n, 1);
    out.encoded_cert = Iota(n / 2, 2);
    out.disposition_message = *EncodeDispositionMessage(n % 3 == 0 ? "" : "Taken Under Submission");
    out.return_value = 0;
    absl::StatusOr<CertServerRequestOut> out_back = DecodeCertServerRequestOut(EncodeCertServerRequestOut(out));
    ASSERT_TRUE(out_back.ok()) << out_back.status();
    EXPECT_EQ(*out_back, out);
  }
}

// ---------------------------------------------------------------------------------------------
// Rejections

TEST(IcprDecodeTest, BlobConformanceMustEqualCb) {
  Bytes stub = FromHex(kImpacketIcprRequestNullAuthority);
  stub[28] = 6;  // pctbRequest's array max_count 5 -> 6 (cb stays 5)
  stub.push_back(0);
  absl::StatusOr<CertServerRequestIn> in = DecodeCertServerRequestIn(stub);
  EXPECT_FALSE(in.ok());
  EXPECT_THAT(Message(in.status()), HasSubstr("pctbRequest"));
}

TEST(IcprDecodeTest, NullBlobWithNonZeroCb) {
  Bytes stub = FromHex(kImpacketIcprRequestNullAuthority);
  stub[12] = 4;  // pctbAttribs.cb = 4 while pb stays null
  absl::StatusOr<CertServerRequestIn> in = DecodeCertServerRequestIn(stub);
  EXPECT_FALSE(in.ok());
  EXPECT_THAT(Message(in.status()), HasSubstr("null"));
}

TEST(IcprDecodeTest, CountsBeyondTheBuffer) {
  Bytes stub = FromHex(kImpacketIcprRequestNullAuthority);
  for (size_t i : {20, 28}) stub[i + 3] = 0x7f;  // cb and max_count ~2 GiB
  EXPECT_FALSE(DecodeCertServerRequestIn(stub).ok());

  Bytes resp = FromHex(kImpacketIcprResponseDenied);
  resp[32] = 0xff;  // disposition message max_count 0x30 -> 0xff (cb differs too)
  resp[24] = 0xff;
  EXPECT_FALSE(DecodeCertServerRequestOut(resp).ok());
}

TEST(IcprDecodeTest, AuthorityStringChecks) {
  const Bytes good = FromHex(kImpacketIcprRequest);
  Bytes offset = good;
  offset[12] = 1;  // string offset must be 0
  absl::StatusOr<CertServerRequestIn> in = DecodeCertServerRequestIn(offset);
  EXPECT_FALSE(in.ok());
  EXPECT_THAT(Message(in.status()), HasSubstr("pwszAuthority"));

  Bytes actual = good;
  actual[16] = 13;  // actual 13 > max 12
  EXPECT_FALSE(DecodeCertServerRequestIn(actual).ok());

  Bytes lone_surrogate = good;
  lone_surrogate[20] = 0x00;
  lone_surrogate[21] = 0xD8;  // first character U+D800, unpaired
  in = DecodeCertServerRequestIn(lone_surrogate);
  EXPECT_FALSE(in.ok());
  EXPECT_THAT(Message(in.status()), HasSubstr("surrogate"));
}

TEST(IcprDecodeTest, TruncationAndTrailingBytes) {
  const Bytes good = FromHex(kImpacketIcprRequest);
  for (size_t len = 0; len < good.size(); ++len) {
    EXPECT_FALSE(DecodeCertServerRequestIn(ByteView(good).first(len)).ok()) << len;
  }
  Bytes trailing = good;
  trailing.resize(good.size() + 8, 0);
  EXPECT_FALSE(DecodeCertServerRequestIn(trailing).ok());

  const Bytes resp = FromHex(kImpacketIcprResponse);
  for (size_t len = 0; len < resp.size(); ++len) {
    EXPECT_FALSE(DecodeCertServerRequestOut(ByteView(resp).first(len)).ok()) << len;
  }
}

TEST(IcprEncodeTest, InvalidUtf8AuthorityIsAnError) {
  CertServerRequestIn in;
  in.authority = "bad \xC0\x80";
  EXPECT_FALSE(EncodeCertServerRequestIn(in).ok());
}

// ---------------------------------------------------------------------------------------------
// Attribute and message helpers

TEST(IcprAttributesTest, TemplateAttributeIsUtf16WithNul) {
  absl::StatusOr<Bytes> attr = CertificateTemplateAttribute("User");
  ASSERT_TRUE(attr.ok());
  EXPECT_EQ(*attr, Utf16Le(std::u16string(u"CertificateTemplate:User") + u'\0'));
  EXPECT_EQ(attr->size(), 50u);  // 24 characters + NUL, two bytes each: cb counts the NUL
}

TEST(IcprAttributesTest, PairsJoinWithNewlines) {
  absl::StatusOr<Bytes> attr =
      EncodeRequestAttributes({{"CertificateTemplate", "Machine"}, {"SAN", "dns=a.example.com"}});
  ASSERT_TRUE(attr.ok());
  EXPECT_EQ(*attr, Utf16Le(std::u16string(u"CertificateTemplate:Machine\nSAN:dns=a.example.com") + u'\0'));
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> pairs = DecodeRequestAttributes(*attr);
  ASSERT_TRUE(pairs.ok());
  EXPECT_THAT(*pairs, ElementsAre(Pair("CertificateTemplate", "Machine"), Pair("SAN", "dns=a.example.com")));
}

TEST(IcprAttributesTest, RejectsSeparatorsInsideNamesOrValues) {
  EXPECT_FALSE(EncodeRequestAttributes({{"Cert:Template", "x"}}).ok());
  EXPECT_FALSE(EncodeRequestAttributes({{"CertificateTemplate", "a\nSAN:evil"}}).ok());
  EXPECT_FALSE(EncodeRequestAttributes({{"", "x"}}).ok());
}

TEST(IcprAttributesTest, DecodeToleratesCrLfAndSkipsJunkLines) {
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> pairs =
      DecodeRequestAttributes(Utf16Le(u"CertificateTemplate:User\r\n\njunk\n:x\nA:b:c"));
  ASSERT_TRUE(pairs.ok());
  EXPECT_THAT(*pairs, ElementsAre(Pair("CertificateTemplate", "User"), Pair("A", "b:c")));
  EXPECT_FALSE(DecodeRequestAttributes(FromHex("410042")).ok());  // odd length
}

TEST(IcprMessageTest, DecodesDispositionMessages) {
  EXPECT_EQ(*DecodeDispositionMessage(Utf16Le(std::u16string(u"Issued") + u'\0')), "Issued");
  EXPECT_EQ(*DecodeDispositionMessage(Utf16Le(u"No NUL")), "No NUL");
  EXPECT_EQ(*DecodeDispositionMessage(Utf16Le(u"Refus\u00e9 \u20ac")), "Refus\xC3\xA9 \xE2\x82\xAC");
  EXPECT_EQ(*DecodeDispositionMessage(Bytes{}), "");
  EXPECT_EQ(*DecodeDispositionMessage(FromHex("4100"
                                              "00d8"
                                              "4200")),
            "A\xEF\xBF\xBD"
            "B");
  absl::StatusOr<std::string> odd = DecodeDispositionMessage(FromHex("4100420043"));
  EXPECT_FALSE(odd.ok());
  EXPECT_THAT(Message(odd.status()), HasSubstr("odd"));
}

TEST(IcprMessageTest, EncodesWithNul) {
  EXPECT_EQ(*EncodeDispositionMessage("Issued"), Utf16Le(std::u16string(u"Issued") + u'\0'));
  EXPECT_TRUE(EncodeDispositionMessage("")->empty());
}

}  // namespace
}  // namespace adcsc::rpc
