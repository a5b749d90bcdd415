// The clock seam: FakeClock's waits end by the test's time, not the machine's, and a step of
// the wall clock is not time passing.
#include "store/clock.h"

#include <gtest/gtest.h>

#include <future>

namespace adcsc {
namespace {

using namespace std::chrono_literals;

struct Waiting {
  std::mutex mu;
  std::condition_variable cv;
  bool ready = false;
};

// Runs clock.WaitFor(timeout) on another thread and returns its result.
std::future<bool> WaitOn(FakeClock& clock, Waiting& w, std::chrono::milliseconds timeout) {
  return std::async(std::launch::async, [&clock, &w, timeout] {
    std::unique_lock lock(w.mu);
    return clock.WaitFor(w.cv, lock, timeout, [&w] { return w.ready; });
  });
}

// Until `clock` has a waiter, with a deadline.
bool AWaiterArrives(const FakeClock& clock) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (clock.waiters() == 0) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

TEST(FakeClockTest, AWaitEndsWhenItsTimeHasPassedOnTheClock) {
  FakeClock clock;
  Waiting w;
  auto result = WaitOn(clock, w, 5s);
  ASSERT_TRUE(AWaiterArrives(clock));
  clock.AdvanceMillis(4999);
  EXPECT_EQ(result.wait_for(20ms), std::future_status::timeout) << "ended before its time";
  clock.AdvanceMillis(1);
  EXPECT_FALSE(result.get()) << "timed out, so not ready";
  EXPECT_EQ(clock.waiters(), 0u);
}

TEST(FakeClockTest, AWaitEndsAtOnceWhenTheConditionHolds) {
  FakeClock clock;
  Waiting w;
  auto result = WaitOn(clock, w, 1h);
  ASSERT_TRUE(AWaiterArrives(clock));
  {
    std::lock_guard lock(w.mu);
    w.ready = true;
  }
  w.cv.notify_all();
  EXPECT_TRUE(result.get());
}

TEST(FakeClockTest, AWallClockStepIsNotTimePassing) {
  FakeClock clock;
  Waiting w;
  auto result = WaitOn(clock, w, 1s);
  ASSERT_TRUE(AWaiterArrives(clock));
  const int64_t monotonic = clock.NowMonotonicMillis();
  clock.SetUnixMillis(clock.NowUnixMillis() + 3'600'000);  // an hour forward
  EXPECT_EQ(clock.NowMonotonicMillis(), monotonic);
  EXPECT_EQ(result.wait_for(20ms), std::future_status::timeout);
  clock.AdvanceMillis(1000);
  EXPECT_FALSE(result.get());
}

TEST(SystemClockTest, AWaitTimesOutOnTheMachinesClock) {
  Waiting w;
  std::unique_lock lock(w.mu);
  const int64_t before = SystemClock::Default()->NowMonotonicMillis();
  EXPECT_FALSE(SystemClock::Default()->WaitFor(w.cv, lock, 1ms, [&w] { return w.ready; }));
  EXPECT_GE(SystemClock::Default()->NowMonotonicMillis(), before);
}

}  // namespace
}  // namespace adcsc
