// The status page's activity log: calls counted per minute within the last hour, failures
// newest first and bounded, the error text cut short, and a wall clock that steps back.
#include "node/ops/activity.h"

#include <gtest/gtest.h>

#include <string>

namespace adcsc::ops {
namespace {

constexpr int64_t kMinute = 60'000;
constexpr int64_t kStart = 1'800'000'000'000;  // a whole minute

uint64_t Count(const ActivitySnapshot& s, const std::string& endpoint, const std::string& outcome) {
  uint64_t n = 0;
  for (const auto& m : s.minutes) {
    auto it = m.counts.find({endpoint, outcome});
    if (it != m.counts.end()) n += it->second;
  }
  return n;
}

TEST(ActivityTest, SuccessesAreIssuedPendingAndRevokedAndEverythingElseFails) {
  EXPECT_FALSE(IsFailure("issued", 200));
  EXPECT_FALSE(IsFailure("pending", 200));
  EXPECT_FALSE(IsFailure("revoked", 200));
  EXPECT_TRUE(IsFailure("ca_error", 200)) << "the original answers CA errors with HTTP 200";
  EXPECT_TRUE(IsFailure("ca_unavailable", 200));
  EXPECT_TRUE(IsFailure("denied", 200)) << "the device did not get its certificate";
  EXPECT_TRUE(IsFailure("bad_request", 400));
  EXPECT_TRUE(IsFailure("issued", 500)) << "an HTTP error is a failure whatever the outcome says";
}

TEST(ActivityTest, CallsAreCountedPerMinuteForAnHour) {
  FakeClock clock(kStart + 5'000);
  ActivityLog log(&clock);
  log.ObserveResult("request", "issued", 200, "");
  log.ObserveResult("request", "issued", 200, "");
  log.ObserveResult("retrieve", "pending", 200, "");
  clock.AdvanceMillis(kMinute);
  log.ObserveResult("request", "ca_error", 200, "The RPC server is unavailable. 0x800706ba");
  ActivitySnapshot s = log.Snapshot();
  ASSERT_EQ(s.minutes.size(), 2u);
  EXPECT_EQ(s.minutes[0].start_unix_ms, kStart) << "oldest first, on the minute";
  EXPECT_EQ(s.minutes[1].start_unix_ms, kStart + kMinute);
  EXPECT_EQ(Count(s, "request", "issued"), 2u);
  EXPECT_EQ(Count(s, "retrieve", "pending"), 1u);
  EXPECT_EQ(Count(s, "request", "ca_error"), 1u);
  ASSERT_EQ(s.failures.size(), 1u);
  EXPECT_EQ(s.failures[0].outcome, "ca_error");
  EXPECT_EQ(s.failures[0].message, "The RPC server is unavailable. 0x800706ba");
  EXPECT_EQ(s.failures[0].unix_ms, kStart + 5'000 + kMinute);
  // A minute stays while any of it lies in the last hour: once the first has wholly left
  // the window it is gone, and the second follows a minute later.
  clock.AdvanceMillis(60 * kMinute);
  s = log.Snapshot();
  ASSERT_EQ(s.minutes.size(), 1u);
  EXPECT_EQ(s.minutes[0].start_unix_ms, kStart + kMinute);
  clock.AdvanceMillis(kMinute);
  EXPECT_TRUE(log.Snapshot().minutes.empty());
  EXPECT_EQ(log.Snapshot().failures.size(), 1u) << "failures are kept by count, not by age";
}

TEST(ActivityTest, TheLatestFiftyFailuresNewestFirstWithTheirMessageCutShort) {
  FakeClock clock(kStart);
  ActivityLog log(&clock);
  for (int i = 0; i < 60; ++i) {
    clock.AdvanceMillis(1000);
    log.ObserveResult("retrieve", "bad_request", 400, "failure " + std::to_string(i));
  }
  log.ObserveResult("request", "store_error", 500, std::string(1000, 'x'));
  const ActivitySnapshot s = log.Snapshot();
  ASSERT_EQ(s.failures.size(), ActivityLog::kMaxFailures);
  EXPECT_EQ(s.failures[0].outcome, "store_error");
  EXPECT_EQ(s.failures[0].message.size(), ActivityLog::kMaxMessageBytes);
  EXPECT_EQ(s.failures[1].message, "failure 59");
  EXPECT_EQ(s.failures.back().message, "failure 11") << "the oldest ten are gone";
  EXPECT_EQ(s.failures[1].http_status, 400);
}

TEST(ActivityTest, AWallClockSteppedBackDropsMinutesAheadOfIt) {
  FakeClock clock(kStart);
  ActivityLog log(&clock);
  log.ObserveResult("request", "issued", 200, "");
  clock.SetUnixMillis(kStart - 10 * kMinute);
  log.ObserveResult("request", "issued", 200, "");
  const ActivitySnapshot s = log.Snapshot();
  ASSERT_EQ(s.minutes.size(), 1u);
  EXPECT_EQ(s.minutes[0].start_unix_ms, kStart - 10 * kMinute);
}

}  // namespace
}  // namespace adcsc::ops
