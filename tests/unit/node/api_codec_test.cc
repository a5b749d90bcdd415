#include "node/api_codec.h"

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
    ::testing::Values(BadCase{"{", "body is not valid JSON"}, BadCase{"[1]", "body must be a JSON object"},
                      BadCase{R"({"template":"T","config":{"dc":"d","ca":"c"}})", "missing field \"pkcs10\""},
                      BadCase{R"({"pkcs10":5,"template":"T","config":{"dc":"d","ca":"c"}})",
                              "field \"pkcs10\" must be a string"},
                      BadCase{R"({"pkcs10":"","template":"T","config":{"dc":"d","ca":"c"}})",
                              "field \"pkcs10\" must not be empty"},
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
      R"({"request-id": "95", "config": {"dc": "d", "ca": "c"}})",
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

TEST(ApiCodec, ResponsesMatchTheOriginalConnectorByteForByte) {
  EXPECT_EQ(WithRequestIdJson(DispositionStatus(Disposition::kUnderSubmission),
                              DispositionMessage(Disposition::kUnderSubmission), 90),
            R"({"request-status":{"status":"CR_DISP_UNDER_SUBMISSION","message":"Request taken under submission"},"request-id":90})");
  EXPECT_EQ(WithRequestIdJson(DispositionStatus(Disposition::kIssued), DispositionMessage(Disposition::kIssued), 95),
            R"({"request-status":{"status":"CR_DISP_ISSUED","message":"Certificate issued"},"request-id":95})");
  EXPECT_EQ(WithX509Json(DispositionStatus(Disposition::kDenied), DispositionMessage(Disposition::kDenied), ""),
            R"({"request-status":{"status":"CR_DISP_DENIED","message":"Request denied"},"x509":null})");
  EXPECT_EQ(WithX509Json("CR_DISP_ISSUED", "Certificate issued", "MIID\r\nrTCC\r\n"),
            R"({"request-status":{"status":"CR_DISP_ISSUED","message":"Certificate issued"},"x509":"MIID\r\nrTCC\r\n"})");
  EXPECT_EQ(StatusOnlyJson("BAD_REQUEST", "x"), R"({"request-status":{"status":"BAD_REQUEST","message":"x"}})");
}

}  // namespace
}  // namespace adcsc::node
