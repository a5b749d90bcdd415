// The hybrid logical clock: monotonic under a frozen or backwards wall clock, ahead of
// observed stamps, and unique across threads.
#include "store/hlc.h"

#include <algorithm>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "store/clock.h"

namespace adcsc::store {
namespace {

using Hlc = HybridLogicalClock;

constexpr int64_t kStartMs = 1'700'000'000'000;

TEST(HlcTest, FollowsTheWallClockWithAZeroCounter) {
  FakeClock clock(kStartMs);
  Hlc hlc(&clock);
  const uint64_t t = hlc.Now();
  EXPECT_EQ(Hlc::PhysicalMillis(t), kStartMs);
  EXPECT_EQ(Hlc::Logical(t), 0u);
}

TEST(HlcTest, CountsEventsWithinOneMillisecond) {
  FakeClock clock(kStartMs);
  Hlc hlc(&clock);
  const uint64_t a = hlc.Now();
  const uint64_t b = hlc.Now();
  const uint64_t c = hlc.Now();
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  EXPECT_EQ(Hlc::PhysicalMillis(c), kStartMs);
  EXPECT_EQ(Hlc::Logical(c), 2u);

  clock.AdvanceMillis(1);
  const uint64_t d = hlc.Now();
  EXPECT_EQ(Hlc::PhysicalMillis(d), kStartMs + 1);
  EXPECT_EQ(Hlc::Logical(d), 0u);
}

TEST(HlcTest, StaysMonotonicWhenTheWallClockStepsBack) {
  FakeClock clock(kStartMs);
  Hlc hlc(&clock);
  const uint64_t before = hlc.Now();
  clock.SetUnixMillis(kStartMs - 60'000);
  const uint64_t after = hlc.Now();
  EXPECT_GT(after, before);
  EXPECT_EQ(Hlc::PhysicalMillis(after), kStartMs);
}

TEST(HlcTest, LocalEventsOrderAfterObservedRemoteStamps) {
  FakeClock clock(kStartMs);
  Hlc hlc(&clock);
  const uint64_t remote = Hlc::Pack(kStartMs + 5'000, 7);  // a peer whose clock runs ahead
  EXPECT_EQ(hlc.Observe(remote), remote);
  const uint64_t local = hlc.Now();
  EXPECT_GT(local, remote);
  EXPECT_EQ(Hlc::PhysicalMillis(local), kStartMs + 5'000);

  // An old stamp changes nothing.
  EXPECT_EQ(hlc.Observe(Hlc::Pack(kStartMs - 1, 0)), local);
  EXPECT_GT(hlc.Now(), local);
}

// A node whose wall clock steps 5 minutes forward and back (NTP, an operator, a VM resume):
// stamps stay increasing, and a peer's stamps from 5 minutes ahead are taken, not refused
// (there is no drift limit that could wedge replication); local events order after them.
TEST(HlcTest, StaysMonotoneThroughFiveMinuteStepsAndTakesAPeerFiveMinutesAhead) {
  constexpr int64_t kStepMs = 5 * 60'000;
  FakeClock clock(kStartMs);
  Hlc hlc(&clock);
  uint64_t last = hlc.Now();
  auto next = [&] {
    const uint64_t t = hlc.Now();
    EXPECT_GT(t, last);
    last = t;
    return t;
  };
  clock.SetUnixMillis(kStartMs + kStepMs);
  EXPECT_EQ(Hlc::PhysicalMillis(next()), kStartMs + kStepMs) << "forward: follows the wall clock";
  clock.SetUnixMillis(kStartMs);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Hlc::PhysicalMillis(next()), kStartMs + kStepMs) << "back: holds";
  clock.SetUnixMillis(kStartMs - kStepMs);
  next();

  const uint64_t ahead = Hlc::Pack(kStartMs + 2 * kStepMs, 3);  // a peer stepped further ahead
  EXPECT_EQ(hlc.Observe(ahead), ahead);
  EXPECT_GT(next(), ahead);
  clock.AdvanceMillis(1);
  EXPECT_EQ(Hlc::PhysicalMillis(next()), kStartMs + 2 * kStepMs) << "until the wall clock passes it";
}

TEST(HlcTest, CounterOverflowCarriesIntoThePhysicalPart) {
  FakeClock clock(kStartMs);
  Hlc hlc(&clock);
  hlc.Observe(Hlc::Pack(kStartMs, Hlc::kLogicalMask));
  const uint64_t next = hlc.Now();
  EXPECT_EQ(Hlc::PhysicalMillis(next), kStartMs + 1);
  EXPECT_EQ(Hlc::Logical(next), 0u);
}

TEST(HlcTest, SaturatesInsteadOfWrapping) {
  FakeClock clock(kStartMs);
  Hlc hlc(&clock);
  hlc.Observe(~uint64_t{0});
  EXPECT_EQ(hlc.Now(), ~uint64_t{0});
}

TEST(HlcTest, StampsAreUniqueAcrossThreads) {
  constexpr int kThreads = 8;
  constexpr int kStampsPerThread = 20'000;
  FakeClock clock(kStartMs);  // frozen: every stamp comes from the counter, the worst case
  Hlc hlc(&clock);
  std::vector<std::vector<uint64_t>> stamps(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      stamps[t].reserve(kStampsPerThread);
      for (int i = 0; i < kStampsPerThread; ++i) stamps[t].push_back(hlc.Now());
    });
  }
  for (std::thread& t : threads) t.join();

  std::vector<uint64_t> all;
  for (const auto& per_thread : stamps) {
    EXPECT_TRUE(std::is_sorted(per_thread.begin(), per_thread.end()));
    all.insert(all.end(), per_thread.begin(), per_thread.end());
  }
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end());
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kStampsPerThread));
}

}  // namespace
}  // namespace adcsc::store
