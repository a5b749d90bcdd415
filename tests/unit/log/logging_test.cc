#include "node/log/logging.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "tests/testing/temp_dir.h"

namespace adcsc::node {
namespace {

TEST(AccessLog, LineHasTheIisFieldsInOrder) {
  AccessEntry e;
  e.when = std::chrono::system_clock::time_point(std::chrono::milliseconds(1583595191000));  // 2020-03-07 15:33:11
  e.server_ip = "192.168.1.57";
  e.method = "POST";
  e.uri_stem = "/api/v1/certificate/request";
  e.server_port = 8443;
  e.username = "jamf.example.com";
  e.client_ip = "192.168.1.47";
  e.user_agent = "Java-SDK 1.0";
  e.status = 200;
  e.time_taken_ms = 12;
  EXPECT_EQ(AccessLog::FormatLine(e),
            "2020-03-07 15:33:11 192.168.1.57 POST /api/v1/certificate/request - 8443 jamf.example.com 192.168.1.47 "
            "Java-SDK+1.0 - 200 0 0 12");
}

// The 403.16 line of the original's troubleshooting section, field for field.
TEST(AccessLog, ARefusalReadsAsIisWroteIt) {
  AccessEntry e;
  e.when = std::chrono::system_clock::time_point(std::chrono::milliseconds(1583595191000));
  e.server_ip = "192.168.1.57";
  e.method = "POST";
  e.uri_stem = "/api/v1/certificate/request";
  e.server_port = 8443;
  e.username = "-";
  e.client_ip = "192.168.1.47";
  e.user_agent = "curl/7.54.0";
  e.status = 403;
  e.substatus = 16;
  e.win32_status = 2148204809u;
  e.time_taken_ms = 1203;
  EXPECT_EQ(AccessLog::FormatLine(e),
            "2020-03-07 15:33:11 192.168.1.57 POST /api/v1/certificate/request - 8443 - 192.168.1.47 curl/7.54.0 - "
            "403 16 2148204809 1203");
}

TEST(AccessLog, ClientChosenFieldsCannotBreakOrFloodALine) {
  AccessEntry e;
  e.when = std::chrono::system_clock::now();
  e.user_agent = std::string(5000, 'A') + "\n";
  e.uri_query = "a=b c\r\nforged line";
  e.referer = std::string("x\x01y");
  const std::string line = AccessLog::FormatLine(e);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_EQ(line.find('\r'), std::string::npos);
  EXPECT_NE(line.find(" a=b+c++forged+line "), std::string::npos) << line;
  EXPECT_NE(line.find(" x?y "), std::string::npos) << line;
  EXPECT_LT(line.size(), 1200u);
}

TEST(AccessLog, EveryOpenWritesTheW3cDirectives) {
  adcsc::testing::TempDir dir;
  auto path = dir.path() / "access.log";
  {
    auto log = AccessLog::Open(path);
    ASSERT_TRUE(log.ok()) << log.status();
    AccessEntry e;
    e.when = std::chrono::system_clock::now();
    (*log)->Write(e);
  }
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  EXPECT_EQ(text.rfind("#Software: adcsc", 0), 0u) << text;
  EXPECT_NE(text.find("#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip "
                      "cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken\n"),
            std::string::npos);
  // Reopening (a restart) appends the directives again, as IIS does when it starts a log, so
  // lines after an upgrade that changed the fields are read with the right ones.
  { auto again = AccessLog::Open(path); }
  std::ifstream in2(path);
  std::stringstream ss2;
  ss2 << in2.rdbuf();
  const std::string text2 = ss2.str();
  const size_t second = text2.find("#Software", 1);
  ASSERT_NE(second, std::string::npos);
  EXPECT_NE(text2.find("#Fields: ", second), std::string::npos);
}

TEST(EventLog, WritesOneJsonObjectPerLine) {
  adcsc::testing::TempDir dir;
  struct {
    std::filesystem::path file;
  } c;
  c.file = dir.path() / "events.log";
  {
    auto log = EventLog::Open(c.file, LogLevel::kInfo, "node-a");
    ASSERT_TRUE(log.ok());
    (*log)->Info("api", {{"request_id", 5}, {"outcome", "issued"}});
    (*log)->Debug("hidden");
  }
  std::ifstream in(c.file);
  std::string line;
  std::getline(in, line);
  auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["event"], "api");
  EXPECT_EQ(j["node"], "node-a");
  EXPECT_EQ(j["level"], "info");
  EXPECT_EQ(j["request_id"], 5);
  EXPECT_FALSE(std::getline(in, line)) << "debug lines are below the default level";
}

}  // namespace
}  // namespace adcsc::node
