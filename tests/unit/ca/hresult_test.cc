#include "node/ca/hresult.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace adcsc::ca {
namespace {

TEST(HresultTest, FormatsEnrollDeniedExactlyLikeTheOriginalConnector) {
  EXPECT_EQ(FormatHresult(0x80094011),
            "The permissions on this certification authority do not allow the current user to "
            "enroll for certificates. 0x80094011 (-2146877423 CERTSRV_E_ENROLL_DENIED)");
}

TEST(HresultTest, FormatsOtherFamiliesLikeCertutil) {
  EXPECT_EQ(FormatHresult(hr::kPropertyEmpty),
            "The requested property value is empty. 0x80094004 (-2146877436 "
            "CERTSRV_E_PROPERTY_EMPTY)");
  EXPECT_EQ(FormatHresult(hr::kUnsupportedCertType),
            "The requested certificate template is not supported by this CA. 0x80094800 "
            "(-2146875392 CERTSRV_E_UNSUPPORTED_CERT_TYPE)");
  EXPECT_EQ(FormatHresult(hr::kRpcServerUnavailable),
            "The RPC server is unavailable. 0x800706ba (WIN32: 1722 RPC_S_SERVER_UNAVAILABLE)");
  EXPECT_EQ(FormatHresult(hr::kAccessDenied), "Access is denied. 0x80070005 (WIN32: 5 ERROR_ACCESS_DENIED)");
  EXPECT_EQ(FormatHresult(hr::kAsn1BadTag), "ASN1 bad tag value met. 0x8009310b (ASN: 267 CRYPT_E_ASN1_BADTAG)");
  EXPECT_EQ(FormatHresult(0x80001234), "0x80001234 (-2147478988 HRESULT)");
}

TEST(HresultTest, EveryHeaderCodeHasASymbolAndText) {
  for (uint32_t code : {hr::kOk,
                        hr::kAccessDenied,
                        hr::kInvalidArg,
                        hr::kFail,
                        hr::kUnexpected,
                        hr::kRpcServerUnavailable,
                        hr::kRpcCallFailed,
                        hr::kTimeout,
                        hr::kPropertyEmpty,
                        hr::kBadRequestSubject,
                        hr::kNoRequest,
                        hr::kBadRequestStatus,
                        hr::kEnrollDenied,
                        hr::kTemplateDenied,
                        hr::kAdminDeniedRequest,
                        hr::kUnsupportedCertType,
                        hr::kNoCertType,
                        hr::kKeyLength,
                        hr::kBadSignature,
                        hr::kAsn1BadTag,
                        hr::kRequestPending}) {
    EXPECT_NE(HresultSymbol(code), "HRESULT") << std::hex << code;
    EXPECT_FALSE(HresultText(code).empty()) << std::hex << code;
  }
  EXPECT_EQ(HresultSymbol(0x80001234), "HRESULT");
  EXPECT_TRUE(HresultText(0x80001234).empty());
  EXPECT_EQ(HresultSymbol(hr::kKeyLength), "CERTSRV_E_KEY_LENGTH");
}

TEST(HresultTest, CaErrorCarriesTheHresult) {
  absl::Status s = CaError(hr::kEnrollDenied, "CCertRequest::Submit");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(),
            "CCertRequest::Submit: The permissions on this certification authority do not allow "
            "the current user to enroll for certificates. 0x80094011 (-2146877423 "
            "CERTSRV_E_ENROLL_DENIED)");
  EXPECT_EQ(HresultOf(s), hr::kEnrollDenied);

  EXPECT_EQ(CaError(hr::kRpcServerUnavailable, "x").code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(CaError(hr::kRpcCallFailed, "x").code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(CaError(hr::kAccessDenied, "x").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(CaError(hr::kPropertyEmpty, "x").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(CaError(hr::kUnsupportedCertType, "x").code(), absl::StatusCode::kInternal);
  EXPECT_EQ(HresultOf(CaError(hr::kRequestPending, "")), hr::kRequestPending);
  EXPECT_EQ(CaError(hr::kFail, "").message(), "Unspecified error 0x80004005 (-2147467259 E_FAIL)");

  EXPECT_EQ(HresultOf(absl::InternalError("plain")), std::nullopt);
  EXPECT_EQ(HresultOf(absl::OkStatus()), std::nullopt);
  // The payload survives copies and a re-wrap that keeps payloads.
  absl::Status copy = s;
  EXPECT_EQ(HresultOf(copy), hr::kEnrollDenied);
}

}  // namespace
}  // namespace adcsc::ca
