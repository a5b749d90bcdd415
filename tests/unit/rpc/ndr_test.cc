#include "node/rpc/ndr.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/rpc/uuid.h"

namespace adcsc::rpc {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

Bytes FromHex(std::string_view hex) {
  Bytes out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  return out;
}

std::string Message(const absl::Status& s) { return std::string(s.message()); }

// ---------------------------------------------------------------------------------------------
// UUIDs and syntaxes

TEST(UuidTest, WireLayoutSwapsTheFirstThreeFields) {
  EXPECT_EQ(Bytes(kNdr20Syntax.uuid.wire().begin(), kNdr20Syntax.uuid.wire().end()),
            FromHex("045d888aeb1cc9119fe808002b104860"));
  EXPECT_EQ(kNdr20Syntax.uuid.ToString(), "8a885d04-1ceb-11c9-9fe8-08002b104860");
  EXPECT_EQ(kIcprSyntax.ToString(), "91ae6020-9e3c-11cf-8d7c-00aa00c091be v0.0");
  EXPECT_EQ(kEpmSyntax.ToString(), "e1af8308-5d1f-11c9-91a4-08002b14a0fa v3.0");
}

TEST(UuidTest, ParseAcceptsBothCasesAndBraces) {
  absl::StatusOr<Uuid> a = Uuid::Parse("8A885D04-1CEB-11C9-9FE8-08002B104860");
  absl::StatusOr<Uuid> b = Uuid::Parse("{8a885d04-1ceb-11c9-9fe8-08002b104860}");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(*a, kNdr20Syntax.uuid);
  EXPECT_EQ(*b, kNdr20Syntax.uuid);
  EXPECT_TRUE(Uuid().IsNil());
  EXPECT_FALSE(a->IsNil());
}

TEST(UuidTest, ParseRejectsMalformedText) {
  for (const char* bad : {"", "8a885d04-1ceb-11c9-9fe8-08002b10486", "8a885d04x1ceb-11c9-9fe8-08002b104860",
                          "8a885d04-1ceb-11c9-9fe8-08002b10486g", "{8a885d04-1ceb-11c9-9fe8-08002b104860"}) {
    EXPECT_FALSE(Uuid::Parse(bad).ok()) << bad;
  }
}

TEST(UuidTest, BindTimeFeatureSyntaxCarriesTheBitmask) {
  EXPECT_EQ(BindTimeFeatureSyntax(bind_feature::kSecurityContextMultiplexing | bind_feature::kKeepConnectionOnOrphan),
            kBindTimeFeatureSyntax);
  EXPECT_EQ(BindTimeFeatureSyntax(1).uuid.ToString(), "6cb71c2c-9812-4540-0100-000000000000");
  EXPECT_EQ(BindTimeFeatureBits(kBindTimeFeatureSyntax.uuid), 3u);
  EXPECT_EQ(BindTimeFeatureBits(kNdr20Syntax.uuid), std::nullopt);
}

// ---------------------------------------------------------------------------------------------
// Writer

TEST(NdrWriterTest, AlignsPrimitivesToTheirSize) {
  NdrWriter w;
  w.WriteU8(0x11);
  w.WriteU32(0x44332211);  // 3 pad bytes
  w.WriteU8(0x22);
  w.WriteU16(0xBBAA);              // 1 pad byte
  w.WriteU64(0x0807060504030201);  // pads 12 -> 16
  EXPECT_EQ(w.data(), FromHex("11000000112233442200aabb000000000102030405060708"));
}

TEST(NdrWriterTest, ReferentIdsAreNonZeroAndIncrement) {
  NdrWriter w;
  EXPECT_EQ(w.WriteReferent(true), 0x00020000u);
  EXPECT_EQ(w.WriteReferent(false), 0u);
  EXPECT_EQ(w.WriteReferent(true), 0x00020004u);
  EXPECT_EQ(w.data(), FromHex("000002000000000004000200"));

  NdrWriter epm(NdrWriter::Options{1, 1});
  EXPECT_EQ(epm.WriteReferent(true), 1u);
  EXPECT_EQ(epm.WriteReferent(true), 2u);
  NdrWriter zero(NdrWriter::Options{0, 0});  // a zero start would read back as null
  EXPECT_NE(zero.WriteReferent(true), 0u);
}

TEST(NdrWriterTest, WideStringCountsTheTerminatingNul) {
  NdrWriter w;
  w.WriteWideString(u"AB");
  EXPECT_EQ(w.data(), FromHex("03000000"
                              "00000000"
                              "03000000"
                              "410042000000"));
  NdrWriter empty;
  empty.WriteWideString(u"");
  EXPECT_EQ(empty.data(), FromHex("01000000"
                                  "00000000"
                                  "01000000"
                                  "0000"));
}

TEST(NdrWriterTest, ConformantAndVaryingArrays) {
  NdrWriter w;
  const Bytes data = {1, 2, 3};
  w.WriteConformantBytes(data);
  w.WriteConformantVaryingBytes(data, 8);
  EXPECT_EQ(w.data(), FromHex("03000000010203"
                              "00"
                              "08000000"
                              "00000000"
                              "03000000"
                              "010203"));
}

// struct Outer { long a; [unique] Inner* p1; [unique] long* p2; } with Inner { long b;
// [unique] long* p3; }: the pointees follow Outer; Inner's own pointee follows Inner, before
// p2's pointee (depth-first).
void WriteNested(NdrWriter& w) {
  w.WriteU32(0xA);
  w.WriteUniquePointer(true, [](NdrWriter& pw) {
    pw.WriteU32(0xB);
    pw.WriteUniquePointer(true, [](NdrWriter& ppw) { ppw.WriteU32(0xC3); });
  });
  w.WriteUniquePointer(true, [](NdrWriter& pw) { pw.WriteU32(0xC2); });
  w.FlushDeferred();
}

TEST(NdrWriterTest, DefersEmbeddedPointeesUntilAfterTheStructure) {
  NdrWriter w;
  WriteNested(w);
  EXPECT_EQ(w.data(), FromHex("0a000000"
                              "00000200"
                              "04000200"  // a, p1, p2
                              "0b000000"
                              "08000200"     // *p1 = {b, p3}
                              "c3000000"     // *p3
                              "c2000000"));  // *p2
}

TEST(NdrReaderTest, ReadsNestedDeferredPointeesInTheSameOrder) {
  NdrWriter w;
  WriteNested(w);
  const Bytes stub = w.Finish();
  NdrReader r(stub);
  uint32_t a = 0, p1 = 0, p2 = 0, b = 0, p3 = 0, c3 = 0, c2 = 0;
  ASSERT_TRUE(r.ReadU32("a", &a).ok());
  ASSERT_TRUE(r.ReadReferent("p1", &p1).ok());
  r.Defer([&](NdrReader& pr) -> absl::Status {
    if (absl::Status s = pr.ReadU32("b", &b); !s.ok()) return s;
    if (absl::Status s = pr.ReadReferent("p3", &p3); !s.ok()) return s;
    pr.Defer([&](NdrReader& ppr) { return ppr.ReadU32("c3", &c3); });
    return absl::OkStatus();
  });
  ASSERT_TRUE(r.ReadReferent("p2", &p2).ok());
  r.Defer([&](NdrReader& pr) { return pr.ReadU32("c2", &c2); });
  ASSERT_TRUE(r.FlushDeferred().ok());
  EXPECT_EQ(a, 0xAu);
  EXPECT_EQ(b, 0xBu);
  EXPECT_EQ(c3, 0xC3u);
  EXPECT_EQ(c2, 0xC2u);
  EXPECT_EQ(p1, 0x00020000u);
  EXPECT_EQ(p3, 0x00020008u);
  EXPECT_TRUE(r.ExpectEnd("nested").ok());
  EXPECT_EQ(r.remaining(), 0u);
}

// ---------------------------------------------------------------------------------------------
// Reader

TEST(NdrReaderTest, RoundTripsPrimitivesStringsAndArrays) {
  NdrWriter w;
  w.WriteU8(7);
  w.WriteU16(0x1234);
  w.WriteU64(0x1122334455667788);
  w.WriteUuid(kIcprSyntax.uuid);
  w.WriteWideString(u"corp-CA1-CA \u00e9\U0001F600");
  w.WriteConformantBytes(Bytes{9, 8, 7, 6, 5});
  w.WriteConformantVaryingBytes(Bytes{1, 2}, 4);
  const Bytes stub = w.Finish();

  NdrReader r(stub);
  uint8_t u8 = 0;
  uint16_t u16 = 0;
  uint64_t u64 = 0;
  Uuid uuid;
  std::u16string text;
  Bytes conformant, varying;
  uint32_t max_count = 0;
  ASSERT_TRUE(r.ReadU8("u8", &u8).ok());
  ASSERT_TRUE(r.ReadU16("u16", &u16).ok());
  ASSERT_TRUE(r.ReadU64("u64", &u64).ok());
  ASSERT_TRUE(r.ReadUuid("uuid", &uuid).ok());
  ASSERT_TRUE(r.ReadWideString("text", &text).ok());
  ASSERT_TRUE(r.ReadConformantBytes("conformant", &conformant).ok());
  ASSERT_TRUE(r.ReadConformantVaryingBytes("varying", &varying, &max_count).ok());
  EXPECT_EQ(u8, 7);
  EXPECT_EQ(u16, 0x1234);
  EXPECT_EQ(u64, 0x1122334455667788u);
  EXPECT_EQ(uuid, kIcprSyntax.uuid);
  EXPECT_EQ(text, u"corp-CA1-CA \u00e9\U0001F600");
  EXPECT_THAT(conformant, ElementsAre(9, 8, 7, 6, 5));
  EXPECT_THAT(varying, ElementsAre(1, 2));
  EXPECT_EQ(max_count, 4u);
  EXPECT_EQ(r.remaining(), 0u);
}

TEST(NdrReaderTest, TruncatedReadNamesTheField) {
  const Bytes stub = {1, 2};
  NdrReader r(stub);
  uint32_t v = 0;
  absl::Status s = r.ReadU32("dwFlags", &v);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("dwFlags"));
  EXPECT_THAT(Message(s), HasSubstr("needs 4 bytes"));
}

TEST(NdrReaderTest, AlignmentPastTheEndFails) {
  const Bytes stub = {1};
  NdrReader r(stub);
  uint8_t b = 0;
  ASSERT_TRUE(r.ReadU8("b", &b).ok());
  uint16_t v = 0;
  EXPECT_FALSE(r.ReadU16("v", &v).ok());
}

TEST(NdrReaderTest, CountLargerThanTheBufferIsRejectedBeforeAllocating) {
  const Bytes stub = FromHex("ffffffff01020304");
  NdrReader r(stub);
  Bytes out;
  absl::Status s = r.ReadConformantBytes("pb", &out);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(Message(s), HasSubstr("count 4294967295"));
  EXPECT_TRUE(out.empty());

  // Wide strings: actual count 0x40000000 units would be 2 GiB.
  const Bytes wide = FromHex(
      "00000040"
      "00000000"
      "00000040"
      "4100");
  NdrReader rw(wide);
  std::u16string text;
  EXPECT_FALSE(rw.ReadWideString("pwszAuthority", &text).ok());
}

TEST(NdrReaderTest, StringOffsetMustBeZero) {
  const Bytes stub = FromHex(
      "03000000"
      "01000000"
      "02000000"
      "42000000");
  NdrReader r(stub);
  std::u16string text;
  absl::Status s = r.ReadWideString("pwszAuthority", &text);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(Message(s), HasSubstr("offset"));
}

TEST(NdrReaderTest, ActualCountAboveMaxCountIsRejected) {
  const Bytes stub = FromHex(
      "01000000"
      "00000000"
      "02000000"
      "41000000");
  NdrReader r(stub);
  std::u16string text;
  absl::Status s = r.ReadWideString("pwszAuthority", &text);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(Message(s), HasSubstr("exceeds maximum count"));

  NdrReader rb(stub);
  Bytes bytes;
  EXPECT_FALSE(rb.ReadConformantVaryingBytes("varying", &bytes).ok());
}

TEST(NdrReaderTest, StringsMustEndWithNul) {
  const Bytes unterminated = FromHex(
      "02000000"
      "00000000"
      "02000000"
      "41004200");
  NdrReader r(unterminated);
  std::u16string text;
  EXPECT_FALSE(r.ReadWideString("s", &text).ok());

  const Bytes empty = FromHex(
      "00000000"
      "00000000"
      "00000000");
  NdrReader re(empty);
  EXPECT_FALSE(re.ReadWideString("s", &text).ok());
}

TEST(NdrReaderTest, OddByteStringBodyIsTruncation) {
  // Two wchar units announced but only three bytes of body remain.
  const Bytes stub = FromHex(
      "02000000"
      "00000000"
      "02000000"
      "410000");
  NdrReader r(stub);
  std::u16string text;
  EXPECT_FALSE(r.ReadWideString("s", &text).ok());
}

TEST(NdrReaderTest, ExpectEndRejectsTrailingData) {
  const Bytes stub(12, 0);
  NdrReader r(stub);
  uint32_t v = 0;
  ASSERT_TRUE(r.ReadU32("v", &v).ok());
  EXPECT_FALSE(r.ExpectEnd("stub").ok());
  ASSERT_TRUE(r.ReadU32("v", &v).ok());
  EXPECT_TRUE(r.ExpectEnd("stub").ok());  // 4 bytes: alignment padding at most
}

TEST(NdrReaderTest, DeferredErrorsPropagate) {
  const Bytes stub = FromHex("00000200");
  NdrReader r(stub);
  uint32_t ref = 0, v = 0;
  ASSERT_TRUE(r.ReadReferent("p", &ref).ok());
  r.Defer([&](NdrReader& pr) { return pr.ReadU32("pointee", &v); });
  absl::Status s = r.FlushDeferred();
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(Message(s), HasSubstr("pointee"));
}

}  // namespace
}  // namespace adcsc::rpc
