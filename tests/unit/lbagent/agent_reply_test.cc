// From a node's /status to the agent-check line HAProxy 2.6 reads.
#include "lb-agent/agent_reply.h"

#include <gtest/gtest.h>

namespace adcsc::lbagent {
namespace {

constexpr int64_t kNow = 1'800'000'000'000;

std::string Status(const std::string& lb, const std::string& mode, int64_t ca_ping_ms, bool store_ok = true) {
  return R"({"node":"node-a","version":"x","mode":")" + mode + R"(","health":{"ready":true,"lb":")" + lb +
         R"(","ca_ping_ms":)" + std::to_string(ca_ping_ms) + R"(,"checks":[{"name":"store","ok":)" +
         (store_ok ? "true" : "false") + R"(,"detail":"disk I/O error\nat page 7"},{"name":"mode","ok":)" +
         (mode == "active" ? "true" : "false") + R"(,"detail":"x"}]}})";
}

std::string ReplyFor(const std::string& status_json, int64_t age_ms = 0) {
  return AgentReply(ParseStatus(status_json, kNow - age_ms), kNow, 3000);
}

TEST(AgentReplyTest, EachNodeStateHasItsLine) {
  EXPECT_EQ(ReplyFor(Status("UP", "active", 3)), "up ready 100%\n");
  EXPECT_EQ(ReplyFor(Status("DRAIN", "drain", 3)), "up drain\n");
  EXPECT_EQ(ReplyFor(Status("DOWN", "maint", 3)), "maint\n");
  EXPECT_EQ(ReplyFor(Status("DOWN", "active", 3, false)), "down#store: disk I/O error at page 7\n")
      << "the reason is the first failing check, on one line";
  EXPECT_EQ(ReplyFor(Status("DOWN", "drain", 3, false)), "down#store: disk I/O error at page 7\n")
      << "a broken node is down even while draining";
}

// What /status tells a caller without an administrator's certificate: health only. The
// failing check then comes from /health/ready.
std::string AnonymousStatus(const std::string& lb, const std::string& mode, int64_t ca_ping_ms) {
  return R"({"status":")" + lb + R"(","ready":)" + (lb == "UP" ? "true" : "false") + R"(,"live":true,"mode":")" + mode +
         R"(","ca_ping_ms":)" + std::to_string(ca_ping_ms) + "}";
}

TEST(AgentReplyTest, TheAnonymousStatusGivesTheSameLines) {
  EXPECT_EQ(ReplyFor(AnonymousStatus("UP", "active", 525)), "up ready 55%\n");
  EXPECT_EQ(ReplyFor(AnonymousStatus("DRAIN", "drain", 3)), "up drain\n");
  EXPECT_EQ(ReplyFor(AnonymousStatus("DOWN", "maint", 3)), "maint\n");
  EXPECT_EQ(ReplyFor(AnonymousStatus("DOWN", "active", 3)), "down#node not ready\n");
  auto view = ParseStatus(AnonymousStatus("DOWN", "active", 3), kNow);
  ASSERT_TRUE(view.has_value());
  view->reason = FirstFailingCheck(R"({"ready":false,"lb":"DOWN","checks":[{"name":"mode","ok":false,"detail":"m"},)"
                                   R"({"name":"store","ok":false,"detail":"disk full"}]})");
  EXPECT_EQ(AgentReply(view, kNow, 3000), "down#store: disk full\n");
  EXPECT_EQ(FirstFailingCheck("<html>"), "");
}

TEST(AgentReplyTest, NoAnswerOrAStaleOneIsDown) {
  EXPECT_EQ(AgentReply(std::nullopt, kNow, 3000), "down#node not answering\n");
  EXPECT_EQ(ReplyFor(Status("UP", "active", 3), 3001), "down#node not answering\n");
  EXPECT_EQ(ReplyFor(Status("UP", "active", 3), 2999), "up ready 100%\n");
  EXPECT_FALSE(ParseStatus("<html>", kNow).has_value());
  EXPECT_FALSE(ParseStatus(R"({"health":{}})", kNow).has_value());
}

TEST(AgentReplyTest, ASlowCaLowersTheWeight) {
  EXPECT_EQ(WeightPercent(0), 100);
  EXPECT_EQ(WeightPercent(50), 100);
  EXPECT_EQ(WeightPercent(525), 55);
  EXPECT_EQ(WeightPercent(1000), 10);
  EXPECT_EQ(WeightPercent(60'000), 10);
  EXPECT_EQ(ReplyFor(Status("UP", "active", 525)), "up ready 55%\n");
}

}  // namespace
}  // namespace adcsc::lbagent
