// UnservedCalls: the shape of an API call adcsc does not serve holds names only, never values,
// and the table of shapes stays bounded whatever a client sends.
#include "node/api/unserved_calls.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace adcsc::node {
namespace {

using Names = std::vector<std::string>;

TEST(UnservedCallsTest, TheShapeHasTheNamesAndNoValue) {
  const std::string body =
      R"({"serialNumber":"61000000A1B2","reason":1,"device":{"udid":"00008030-0011","name":"Kim's Mac"},)"
      R"("items":[{"id":7,"tag":"tag-value-1"},{"id":8,"note":"note-value-2"}]})";
  UnservedShape s = UnservedCalls::ShapeOf("POST", "/api/v1/certificate/revoke?token=s3cret&dryRun=1&token=2",
                                           {"Host", "Content-Type", "Authorization", "content-type"}, body);
  EXPECT_EQ(s.method, "POST");
  EXPECT_EQ(s.path, "/api/v1/certificate/revoke");
  EXPECT_EQ(s.query_keys, (Names{"dryRun", "token"}));
  EXPECT_EQ(s.header_names, (Names{"authorization", "content-type", "host"}));
  EXPECT_EQ(s.body_kind, "json_object");
  EXPECT_EQ(s.body_bytes, body.size());
  EXPECT_EQ(s.body_keys, (Names{"device", "device.name", "device.udid", "items", "items[].id", "items[].note",
                                "items[].tag", "reason", "serialNumber"}));
  EXPECT_FALSE(s.body_keys_truncated);
  // No value anywhere in the shape.
  std::string all = s.method + s.path + s.body_kind;
  for (const auto* v : {&s.query_keys, &s.header_names, &s.body_keys}) {
    for (const std::string& x : *v) all += "|" + x;
  }
  for (const char* value : {"61000000A1B2", "s3cret", "Kim", "00008030", "tag-value", "note-value"}) {
    EXPECT_EQ(all.find(value), std::string::npos) << value << " leaked into " << all;
  }
}

TEST(UnservedCallsTest, IdentifierSegmentsAreShownAsIdAndOddBodiesAreNamed) {
  EXPECT_EQ(UnservedCalls::ShapeOf("DELETE", "/api/v1/certificate/61000000a1b2", {}, "").path,
            "/api/v1/certificate/{id}");
  EXPECT_EQ(UnservedCalls::ShapeOf("GET", "/api/v2/requests/12345/status", {}, "").path,
            "/api/v2/requests/{id}/status");
  EXPECT_EQ(UnservedCalls::ShapeOf("GET", "/api/v1/device/6f1c2e7a-93b4-4d0e-8f21-0a9b8c7d6e5f", {}, "").path,
            "/api/v1/device/{id}");
  // Short hex-looking words are words ("add", "cafe"), not identifiers.
  EXPECT_EQ(UnservedCalls::ShapeOf("POST", "/api/v1/add", {}, "").path, "/api/v1/add");
  EXPECT_EQ(UnservedCalls::ShapeOf("POST", "/api/v1/x", {}, "").body_kind, "empty");
  EXPECT_EQ(UnservedCalls::ShapeOf("POST", "/api/v1/x", {}, "serial=61").body_kind, "not_json");
  EXPECT_TRUE(UnservedCalls::ShapeOf("POST", "/api/v1/x", {}, "serial=61").body_keys.empty());
  EXPECT_EQ(UnservedCalls::ShapeOf("POST", "/api/v1/x", {}, "[1,2]").body_kind, "json_array");
  EXPECT_EQ(UnservedCalls::ShapeOf("POST", "/api/v1/x", {}, "\"61\"").body_kind, "json_scalar");
  EXPECT_EQ(UnservedCalls::ShapeOf("BREW", "/api/v1/x", {}, "").method, "OTHER");
  // Control characters a client put in a name do not reach the log as such.
  EXPECT_EQ(UnservedCalls::ShapeOf("GET", "/api/v1/a\nb", {}, "").path, "/api/v1/a?b");
}

TEST(UnservedCallsTest, ABodyWithManyKeysIsCutShortAndSaysSo) {
  std::string body = "{";
  for (int i = 0; i < 200; ++i) absl::StrAppend(&body, i ? "," : "", "\"k", i, "\":", i);
  body += "}";
  UnservedShape s = UnservedCalls::ShapeOf("POST", "/api/v1/x", {}, body);
  EXPECT_EQ(s.body_keys.size(), UnservedCalls::kMaxBodyKeys);
  EXPECT_TRUE(s.body_keys_truncated);
}

TEST(UnservedCallsTest, EachShapeIsFirstOnceAndTheTableIsBounded) {
  UnservedCalls calls;
  UnservedNote a = calls.Note("POST", "/api/v1/certificate/revoke", {}, "{}");
  EXPECT_TRUE(a.first);
  EXPECT_EQ(a.path_label, "/api/v1/certificate/revoke");
  EXPECT_FALSE(calls.Note("POST", "/api/v1/certificate/revoke?x=1", {}, "{\"a\":1}").first) << "same method and path";
  EXPECT_TRUE(calls.Note("PUT", "/api/v1/certificate/revoke", {}, "").first) << "another method";
  // One call per device is one shape.
  EXPECT_TRUE(calls.Note("DELETE", "/api/v1/device/1001", {}, "").first);
  EXPECT_FALSE(calls.Note("DELETE", "/api/v1/device/1002", {}, "").first);
  for (size_t i = 3; i < UnservedCalls::kMaxShapes; ++i) {
    EXPECT_TRUE(calls.Note("GET", absl::StrCat("/api/v1/p", i, "x"), {}, "").first);
  }
  // Full: new shapes count under "other", and only the first of them is logged (saying so).
  UnservedNote over = calls.Note("GET", "/api/v1/one-more", {}, "");
  EXPECT_TRUE(over.first);
  EXPECT_TRUE(over.table_full);
  EXPECT_EQ(over.path_label, "other");
  UnservedNote again = calls.Note("GET", "/api/v1/and-another", {}, "");
  EXPECT_FALSE(again.first);
  EXPECT_EQ(again.path_label, "other");
  // A shape seen before the table filled keeps its own label.
  EXPECT_EQ(calls.Note("POST", "/api/v1/certificate/revoke", {}, "").path_label, "/api/v1/certificate/revoke");
}

TEST(UnservedCallsTest, OnlyPathsUnderApiAreCovered) {
  EXPECT_TRUE(UnservedCalls::Covers("/api/v1/certificate/revoke"));
  EXPECT_FALSE(UnservedCalls::Covers("/wp-login.php"));
  EXPECT_FALSE(UnservedCalls::Covers("/api"));
  EXPECT_FALSE(UnservedCalls::Covers("/apix/"));
}

}  // namespace
}  // namespace adcsc::node
