// ConnectionAdmission's rules with the time passed in: the shared pool and the reserve for
// mapped clients, eviction of the oldest unverified connection, the per-source cap and
// refusal budget, exempt sources, and the counts by kind.
#include "node/http/connection_admission.h"

#include <gtest/gtest.h>

namespace adcsc::node {
namespace {

using namespace std::chrono_literals;

text::Address16 Ip(const char* s) { return *text::ParseAddress(s); }

class AdmissionTest : public ::testing::Test {
 protected:
  AdmissionLimits Limits() {
    AdmissionLimits l;
    l.max_connections = 8;
    l.reserved_for_mapped = 3;
    l.max_per_source = 100;
    l.refusals_per_s = 1;
    l.refusal_burst = 2;
    return l;
  }
  ConnectionAdmission::Time t0_ = std::chrono::steady_clock::time_point{} + 1000s;
};

TEST_F(AdmissionTest, UnverifiedConnectionsNeverTakeTheReserve) {
  ConnectionAdmission a(Limits());
  // Five unverified connections fill the shared part (8 - 3).
  for (uint64_t id = 1; id <= 5; ++id) {
    auto d = a.Admit(id, Ip(("192.0.2." + std::to_string(id)).c_str()), t0_);
    ASSERT_TRUE(d.admitted);
    EXPECT_EQ(d.evict, 0u);
  }
  // A sixth gets in by closing the oldest: the pool stays at five.
  auto d = a.Admit(6, Ip("192.0.2.6"), t0_);
  ASSERT_TRUE(d.admitted);
  EXPECT_EQ(d.evict, 1u);
  EXPECT_EQ(a.unverified(), 5u);
  EXPECT_FALSE(a.Mapped(1)) << "an evicted connection cannot become mapped";
  a.Refused(1, Refusal::kHandshakeFailed, t0_);  // its handshake ends when it is closed
  EXPECT_EQ(a.refusals(Refusal::kEvicted), 1u);
  EXPECT_EQ(a.refusals(Refusal::kHandshakeFailed), 0u) << "an eviction is one refusal, not two";
  // Mapped connections use the shared part and the reserve, up to the cap.
  for (uint64_t id = 2; id <= 6; ++id) ASSERT_TRUE(a.Mapped(id));
  for (uint64_t id = 7; id <= 9; ++id) {
    d = a.Admit(id, Ip("198.51.100.1"), t0_);
    ASSERT_TRUE(d.admitted);
    ASSERT_TRUE(a.Mapped(id));
  }
  EXPECT_EQ(a.mapped(), 8u);
  d = a.Admit(10, Ip("198.51.100.1"), t0_);
  EXPECT_FALSE(d.admitted);
  EXPECT_EQ(d.refusal, Refusal::kConnectionCap);
  a.Closed(7);
  EXPECT_TRUE(a.Admit(11, Ip("198.51.100.1"), t0_).admitted);
}

TEST_F(AdmissionTest, TheOldestUnverifiedGoesFirstNeverAMappedOne) {
  ConnectionAdmission a(Limits());
  for (uint64_t id = 1; id <= 5; ++id) ASSERT_TRUE(a.Admit(id, Ip("192.0.2.1"), t0_).admitted);
  ASSERT_TRUE(a.Mapped(1));
  ASSERT_TRUE(a.Mapped(2));
  // Unverified: 3, 4, 5 (of 5 shared); mapped: 1, 2. Three more fill the cap of 8.
  for (uint64_t id = 6; id <= 7; ++id) EXPECT_EQ(a.Admit(id, Ip("192.0.2.2"), t0_).evict, 0u);
  auto d = a.Admit(8, Ip("192.0.2.3"), t0_);
  EXPECT_TRUE(d.admitted);
  EXPECT_EQ(d.evict, 3u);
}

TEST_F(AdmissionTest, ASourceHoldsAtMostItsShareOfUnverifiedConnections) {
  auto l = Limits();
  l.max_per_source = 2;
  ConnectionAdmission a(l);
  EXPECT_TRUE(a.Admit(1, Ip("192.0.2.1"), t0_).admitted);
  EXPECT_TRUE(a.Admit(2, Ip("192.0.2.1"), t0_).admitted);
  auto d = a.Admit(3, Ip("192.0.2.1"), t0_);
  EXPECT_FALSE(d.admitted);
  EXPECT_EQ(d.refusal, Refusal::kSourceConnections);
  EXPECT_TRUE(a.Admit(4, Ip("192.0.2.2"), t0_).admitted) << "another source is not affected";
  // Once mapped, a connection no longer counts against its source.
  ASSERT_TRUE(a.Mapped(1));
  EXPECT_TRUE(a.Admit(5, Ip("192.0.2.1"), t0_).admitted);
  EXPECT_EQ(a.refusals(Refusal::kSourceConnections), 1u);
}

TEST_F(AdmissionTest, IPv6SourcesCountByTheirSlash64) {
  auto l = Limits();
  l.max_per_source = 1;
  ConnectionAdmission a(l);
  EXPECT_TRUE(a.Admit(1, Ip("2001:db8:1:2::1"), t0_).admitted);
  EXPECT_FALSE(a.Admit(2, Ip("2001:db8:1:2:ffff::9"), t0_).admitted);
  EXPECT_TRUE(a.Admit(3, Ip("2001:db8:1:3::1"), t0_).admitted);
}

TEST_F(AdmissionTest, ASourceThatSpentItsRefusalBudgetIsClosedAtAcceptUntilItRefills) {
  ConnectionAdmission a(Limits());  // 1 per second, burst 2
  for (uint64_t id = 1; id <= 2; ++id) {
    ASSERT_TRUE(a.Admit(id, Ip("192.0.2.1"), t0_).admitted);
    a.Refused(id, Refusal::kUnmappedCertificate, t0_);
    a.Closed(id);
  }
  auto d = a.Admit(3, Ip("192.0.2.1"), t0_ + 100ms);
  EXPECT_FALSE(d.admitted);
  EXPECT_EQ(d.refusal, Refusal::kSourceRate);
  EXPECT_TRUE(a.Admit(4, Ip("192.0.2.2"), t0_ + 100ms).admitted) << "another source is not affected";
  EXPECT_TRUE(a.Admit(5, Ip("192.0.2.1"), t0_ + 1100ms).admitted) << "one refusal earned back per second";
  EXPECT_EQ(a.refusals(Refusal::kUnmappedCertificate), 2u);
  EXPECT_EQ(a.refusals(Refusal::kSourceRate), 1u);
}

TEST_F(AdmissionTest, RefusalsAtOnceOverdrawTheBudgetAndAreAllWaitedFor) {
  ConnectionAdmission a(Limits());  // 1 per second, burst 2
  // Four connections admitted while the budget was full, all refused at once: it goes to -2,
  // so the source waits three seconds for its next connection, not one.
  for (uint64_t id = 1; id <= 4; ++id) ASSERT_TRUE(a.Admit(id, Ip("192.0.2.1"), t0_).admitted);
  for (uint64_t id = 1; id <= 4; ++id) a.Refused(id, Refusal::kHandshakeFailed, t0_);
  EXPECT_FALSE(a.Admit(5, Ip("192.0.2.1"), t0_ + 2900ms).admitted);
  EXPECT_TRUE(a.Admit(6, Ip("192.0.2.1"), t0_ + 3100ms).admitted);
}

TEST_F(AdmissionTest, AMappedClientsRefusalsAreCountedButNotCharged) {
  ConnectionAdmission a(Limits());
  ASSERT_TRUE(a.Admit(1, Ip("192.0.2.1"), t0_).admitted);
  ASSERT_TRUE(a.Mapped(1));
  for (int i = 0; i < 10; ++i) a.Refused(1, Refusal::kSlowClient, t0_);
  EXPECT_EQ(a.refusals(Refusal::kSlowClient), 10u);
  EXPECT_TRUE(a.Admit(2, Ip("192.0.2.1"), t0_).admitted);
}

TEST_F(AdmissionTest, ExemptSourcesSkipThePerSourceRulesButNotThePool) {
  auto l = Limits();
  l.max_per_source = 1;
  l.exempt = {*text::ParseAddressPrefix("10.0.0.0/8")};
  ConnectionAdmission a(l);
  for (uint64_t id = 1; id <= 5; ++id) {
    auto d = a.Admit(id, Ip("10.1.2.3"), t0_);
    ASSERT_TRUE(d.admitted);
    a.Refused(id, Refusal::kUnmappedCertificate, t0_);
  }
  // Still the shared pool's rule: the sixth evicts the oldest.
  EXPECT_EQ(a.Admit(6, Ip("10.1.2.3"), t0_).evict, 1u);
  EXPECT_EQ(a.refusals(Refusal::kSourceRate), 0u);
}

}  // namespace
}  // namespace adcsc::node
