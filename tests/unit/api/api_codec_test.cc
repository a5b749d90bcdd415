#include "node/api/api_codec.h"

#include <gtest/gtest.h>

namespace adcsc::node {
namespace {

using adcsc::ca::Disposition;

TEST(ApiCodec, ParsesSubmitBody) {
  auto b = ParseSubmitBody(R"({"pkcs10":"MIIB","template":"T","config":{"dc":"ca.example.com","ca":"Ex-CA"}})");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->pkcs10, "MIIB");
  EXPECT_EQ(b->template_name, "T");
  EXPECT_EQ(b->dc, "ca.example.com");
  EXPECT_EQ(b->ca, "Ex-CA");
}

TEST(ApiCodec, EmptyTemplateIsAllowedForStandaloneCa) {
  auto b = ParseSubmitBody(R"({"pkcs10":"MIIB","template":"","config":{"dc":"d","ca":"c"}})");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->template_name, "");
}

struct BadCase {
  const char* body;
  const char* message;
};

class SubmitBodyErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(SubmitBodyErrors, NamesTheProblem) {
  auto b = ParseSubmitBody(GetParam().body);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().message(), GetParam().message);
}

INSTANTIATE_TEST_SUITE_P(
    All, SubmitBodyErrors,
    ::testing::Values(
        BadCase{"{",
                "body is not valid JSON at byte 1: syntax error while parsing object key - unexpected "
                "end of input; expected string literal"},
        BadCase{"[1]", "body must be a JSON object"},
        BadCase{R"({"template":"T","config":{"dc":"d","ca":"c"}})", "missing field \"pkcs10\""},
        BadCase{R"({"pkcs10":5,"template":"T","config":{"dc":"d","ca":"c"}})", "field \"pkcs10\" must be a string"},
        BadCase{R"({"pkcs10":"","template":"T","config":{"dc":"d","ca":"c"}})", "field \"pkcs10\" must not be empty"},
        BadCase{R"({"pkcs10":"A","config":{"dc":"d","ca":"c"}})", "missing field \"template\""},
        BadCase{R"({"pkcs10":"A","template":"T"})", "missing field \"config\""},
        BadCase{R"({"pkcs10":"A","template":"T","config":"x"})",
                "field \"config\" must be an object with \"dc\" and \"ca\""},
        BadCase{R"({"pkcs10":"A","template":"T","config":{"ca":"c"}})", "missing field \"config.dc\""},
        BadCase{R"({"pkcs10":"A","template":"T","config":{"dc":"d","ca":7}})",
                "field \"config.ca\" must be a string"}));

TEST(ApiCodec, ParsesRetrieveBody) {
  auto b = ParseRetrieveBody(R"({"request-id": 95, "config": {"dc": "d", "ca": "c"}})");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->request_id, 95u);
  auto max = ParseRetrieveBody(R"({"request-id": 4294967295, "config": {"dc": "d", "ca": "c"}})");
  ASSERT_TRUE(max.ok());
  EXPECT_EQ(max->request_id, 4294967295u);
}

TEST(ApiCodec, RejectsBadRequestIds) {
  const char* bodies[] = {
      R"({"request-id": 0, "config": {"dc": "d", "ca": "c"}})",
      R"({"request-id": -5, "config": {"dc": "d", "ca": "c"}})",
      R"({"request-id": "", "config": {"dc": "d", "ca": "c"}})",
      R"({"request-id": "0", "config": {"dc": "d", "ca": "c"}})",
      R"({"request-id": " 95", "config": {"dc": "d", "ca": "c"}})",
      R"({"request-id": "-95", "config": {"dc": "d", "ca": "c"}})",
      R"({"request-id": "+95", "config": {"dc": "d", "ca": "c"}})",
      R"({"request-id": "9.5", "config": {"dc": "d", "ca": "c"}})",
      R"({"request-id": "0x5f", "config": {"dc": "d", "ca": "c"}})",
      R"({"request-id": "4294967296", "config": {"dc": "d", "ca": "c"}})",
      R"({"request-id": "99999999999999999999999", "config": {"dc": "d", "ca": "c"}})",
      R"({"request-id": 1099511627776, "config": {"dc": "d", "ca": "c"}})",
      R"({"request-id": 9.5, "config": {"dc": "d", "ca": "c"}})",
      R"({"request-id": true, "config": {"dc": "d", "ca": "c"}})",
      R"({"config": {"dc": "d", "ca": "c"}})",
  };
  for (const char* body : bodies) {
    auto b = ParseRetrieveBody(body);
    EXPECT_FALSE(b.ok()) << body;
    EXPECT_NE(b.status().message().find("request-id"), std::string_view::npos) << b.status();
  }
}

// --- What the original's .NET reader accepted (docs/api.md, "What the API accepts") ---

// The original's public curl test script cuts the armour off `openssl req` output and puts the
// CSR, line breaks and all, inside the JSON string of a heredoc; curl --data sends it as is.
TEST(ApiCodecLenience, RawLineBreaksInsideStringsAsTheCurlTestScriptSendsThem) {
  const std::string body =
      "{ \"pkcs10\": \"MIIC\nabcd\r\nefgh\tij==\",\n\t\t\"template\": \"JamfDevice\",\n\t\t\"config\": {\n"
      "\t\t\t\"dc\": \"adcs.my.org\",\n\t\t\t\"ca\": \"My Issuing CA\" }\n}";
  auto b = ParseSubmitBody(body);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->pkcs10, "MIIC\nabcd\r\nefgh\tij==");
  EXPECT_EQ(b->template_name, "JamfDevice");
  EXPECT_EQ(b->ca, "My Issuing CA");
}

TEST(ApiCodecLenience, RawLineBreaksInKeysAndBothBodies) {
  auto r = ParseRetrieveBody("{\"request-id\": 7, \"config\": {\"dc\": \"d\", \"ca\": \"My\nCA\"}}");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->ca, "My\nCA");
}

TEST(ApiCodecLenience, EscapesOnlyInsideStringsAndKeepsExistingEscapes) {
  // Outside strings a line break is JSON whitespace and stays; an escaped quote does not end
  // the string; an escaped backslash before a quote does.
  EXPECT_EQ(EscapeRawLineBreaksInStrings("{\n\"a\": \"x\ny\"}"), "{\n\"a\": \"x\\ny\"}");
  EXPECT_EQ(EscapeRawLineBreaksInStrings(R"({"a": "q\"
"})"),
            R"({"a": "q\"\n"})");
  EXPECT_EQ(EscapeRawLineBreaksInStrings("{\"a\": \"b\\\\\"\n}"), "{\"a\": \"b\\\\\"\n}");
  EXPECT_EQ(EscapeRawLineBreaksInStrings("\"\t\r\""), "\"\\t\\r\"");
}

TEST(ApiCodecLenience, OtherControlCharactersStayA400) {
  auto b = ParseSubmitBody(
      std::string("{\"pkcs10\":\"MI\x01IB\",\"template\":\"T\",\"config\":{\"dc\":\"d\",\"ca\":\"c\"}}"));
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().message().rfind("body is not valid JSON at byte 14: ", 0), 0u) << b.status();
  EXPECT_NE(b.status().message().find("control character U+0001"), std::string_view::npos) << b.status();
}

TEST(ApiCodecLenience, ErrorPositionsCountTheClientsBytesNotTheEscapedOnes) {
  // Two raw line breaks before the error: the position is in the body as sent.
  auto b = ParseSubmitBody("{\"pkcs10\":\"A\nB\nC\", x}");
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().message().rfind("body is not valid JSON at byte 20: ", 0), 0u) << b.status();
}

TEST(ApiCodecLenience, UnknownKeysAreIgnored) {
  auto b = ParseSubmitBody(
      R"({"pkcs10":"MIIB","template":"T","config":{"dc":"d","ca":"c","port":135},"requester":"jamf","extra":[1,{}]})");
  ASSERT_TRUE(b.ok()) << b.status();
  auto r = ParseRetrieveBody(R"({"request-id":9,"config":{"dc":"d","ca":"c"},"comment":null})");
  ASSERT_TRUE(r.ok()) << r.status();
}

TEST(ApiCodecLenience, AUtf8ByteOrderMarkBeforeTheBody) {
  auto b = ParseRetrieveBody("\xEF\xBB\xBF{\"request-id\": 3, \"config\": {\"dc\": \"d\", \"ca\": \"c\"}}");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->request_id, 3u);
}

TEST(ApiCodecLenience, RequestIdAsAStringOfDigits) {
  auto r = ParseRetrieveBody(R"({"request-id": "95", "config": {"dc": "d", "ca": "c"}})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->request_id, 95u);
  auto max = ParseRetrieveBody(R"({"request-id": "4294967295", "config": {"dc": "d", "ca": "c"}})");
  ASSERT_TRUE(max.ok()) << max.status();
  EXPECT_EQ(max->request_id, 4294967295u);
}

TEST(ApiCodecLenience, WhatStaysStrict) {
  // Single quotes, comments, trailing commas and bare words were never part of the contract.
  const char* bodies[] = {
      "{'pkcs10':'MIIB','template':'T','config':{'dc':'d','ca':'c'}}",
      R"({"pkcs10":"MIIB","template":"T","config":{"dc":"d","ca":"c"},})",
      R"({"pkcs10":"MIIB" /* csr */,"template":"T","config":{"dc":"d","ca":"c"}})",
      R"({"pkcs10":MIIB,"template":"T","config":{"dc":"d","ca":"c"}})",
  };
  for (const char* body : bodies) {
    auto b = ParseSubmitBody(body);
    ASSERT_FALSE(b.ok()) << body;
    EXPECT_EQ(b.status().message().rfind("body is not valid JSON at byte ", 0), 0u) << b.status();
  }
}

TEST(ApiCodec, ResponsesMatchTheOriginalConnectorByteForByte) {
  EXPECT_EQ(
      WithRequestIdJson(DispositionStatus(Disposition::kUnderSubmission),
                        DispositionMessage(Disposition::kUnderSubmission), 90),
      R"({"request-status":{"status":"CR_DISP_UNDER_SUBMISSION","message":"Request taken under submission"},"request-id":90})");
  EXPECT_EQ(WithRequestIdJson(DispositionStatus(Disposition::kIssued), DispositionMessage(Disposition::kIssued), 95),
            R"({"request-status":{"status":"CR_DISP_ISSUED","message":"Certificate issued"},"request-id":95})");
  EXPECT_EQ(WithX509Json(DispositionStatus(Disposition::kDenied), DispositionMessage(Disposition::kDenied), ""),
            R"({"request-status":{"status":"CR_DISP_DENIED","message":"Request denied"},"x509":null})");
  EXPECT_EQ(
      WithX509Json("CR_DISP_ISSUED", "Certificate issued", "MIID\r\nrTCC\r\n"),
      R"({"request-status":{"status":"CR_DISP_ISSUED","message":"Certificate issued"},"x509":"MIID\r\nrTCC\r\n"})");
  EXPECT_EQ(StatusOnlyJson("BAD_REQUEST", "x"), R"({"request-status":{"status":"BAD_REQUEST","message":"x"}})");
}

}  // namespace
}  // namespace adcsc::node
