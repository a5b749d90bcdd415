#include "node/cluster/link_fault.h"

#include <gtest/gtest.h>

namespace adcsc::cluster {
namespace {

TEST(LinkFaultTest, NoFaultAdmitsEverything) {
  LinkFaultSwitch link;
  EXPECT_FALSE(link.Get().active());
  for (int i = 0; i < 100; ++i) {
    EXPECT_TRUE(link.AdmitIncoming().ok());
    EXPECT_TRUE(link.AdmitOutgoing("node-b").ok());
  }
}

TEST(LinkFaultTest, AOneWayCutRefusesOneDirectionOnly) {
  LinkFaultSwitch link;
  link.Set({.cut_in = true, .cut_out = false, .loss = 0, .delay_ms = 0});
  EXPECT_EQ(link.AdmitIncoming().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(link.AdmitOutgoing("node-b").ok());
  EXPECT_FALSE(link.Get().cut_off()) << "one way is not a full partition";

  link.Set({.cut_in = false, .cut_out = true, .loss = 0, .delay_ms = 0});
  EXPECT_TRUE(link.AdmitIncoming().ok());
  const absl::Status out = link.AdmitOutgoing("node-b");
  EXPECT_EQ(out.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(std::string(out.message()).find("node-b"), std::string::npos) << out;

  link.Set({.cut_in = true, .cut_out = true, .loss = 0, .delay_ms = 0});
  EXPECT_TRUE(link.Get().cut_off());
  link.Set({});
  EXPECT_TRUE(link.AdmitIncoming().ok());
  EXPECT_TRUE(link.AdmitOutgoing("node-b").ok());
}

TEST(LinkFaultTest, LossDropsAboutItsShareInBothDirections) {
  LinkFaultSwitch link;
  link.Set({.cut_in = false, .cut_out = false, .loss = 1.0, .delay_ms = 0});
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(link.AdmitIncoming().code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(link.AdmitOutgoing("node-c").code(), absl::StatusCode::kUnavailable);
  }
  link.Set({.cut_in = false, .cut_out = false, .loss = 0.3, .delay_ms = 0});
  int lost = 0;
  const int n = 4000;
  for (int i = 0; i < n; ++i) lost += link.AdmitOutgoing("node-c").ok() ? 0 : 1;
  // 30% of 4000 is 1200; the binomial's standard deviation is about 29: far inside 6 sigma.
  EXPECT_GT(lost, 1000);
  EXPECT_LT(lost, 1400);
}

TEST(LinkFaultTest, SettingsAreClamped) {
  LinkFaultSwitch link;
  link.Set({.cut_in = false, .cut_out = false, .loss = 7, .delay_ms = 10'000'000});
  EXPECT_EQ(link.Get().loss, 1.0);
  EXPECT_EQ(link.Get().delay_ms, 60'000);
  link.Set({.cut_in = false, .cut_out = false, .loss = -1, .delay_ms = -5});
  EXPECT_EQ(link.Get().loss, 0.0);
  EXPECT_EQ(link.Get().delay_ms, 0);
  EXPECT_FALSE(link.Get().active());
}

}  // namespace
}  // namespace adcsc::cluster
