// The monitor runs its probes and reports what they last said, with the service mode.
#include "node/ops/health_monitor.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "tests/testing/temp_dir.h"

namespace adcsc::ops {
namespace {

// The probe interval runs on the clock seam: a probe every interval of the clock's time, none
// before, and no test waits an interval.
TEST(HealthMonitorTest, ProbesOnceEveryIntervalOfTheClocksTime) {
  adcsc::testing::TempDir dir;
  auto mode = ServiceModeStore::Open(dir.path() / kServiceModeFile);
  ASSERT_TRUE(mode.ok());
  FakeClock clock;
  std::atomic<int> store_checks{0};
  HealthSources sources;
  sources.store_check = [&] {
    ++store_checks;
    return absl::OkStatus();
  };
  sources.mode = mode->get();
  sources.clock = &clock;
  HealthMonitor monitor(sources, std::chrono::seconds(10));
  monitor.Start();  // probes once at once
  EXPECT_EQ(store_checks.load(), 1);
  auto wait_for_checks = [&](int n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (store_checks.load() < n && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    return store_checks.load() == n;
  };
  for (int i = 2; i <= 4; ++i) {
    const auto waiting = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (clock.waiters() == 0 && std::chrono::steady_clock::now() < waiting) std::this_thread::yield();
    clock.AdvanceMillis(9'999);
    EXPECT_EQ(store_checks.load(), i - 1) << "a probe before its interval";
    clock.AdvanceMillis(1);
    EXPECT_TRUE(wait_for_checks(i)) << "no probe after interval " << i - 1;
  }
}

TEST(HealthMonitorTest, ReportsTheLastProbesAndTheMode) {
  adcsc::testing::TempDir dir;
  auto mode = ServiceModeStore::Open(dir.path() / kServiceModeFile);
  ASSERT_TRUE(mode.ok());
  FakeClock clock(1'800'000'000'000);
  absl::Status ca_answer = absl::OkStatus();
  std::atomic<int> store_checks{0};
  HealthSources sources;
  sources.store_check = [&] {
    ++store_checks;
    return absl::OkStatus();
  };
  sources.cas = {{"ca01\\Issuing", [&] { return ca_answer; }}};
  sources.cluster = [] { return ClusterView{2, 1, false, false, 3}; };
  sources.certificate_not_after_ms = clock.NowUnixMillis() + 86'400'000LL * 90;
  sources.mode = mode->get();
  sources.clock = &clock;
  HealthMonitor monitor(sources, std::chrono::hours(1));

  HealthReport before = monitor.Report();
  EXPECT_FALSE(before.ready) << "nothing probed yet";

  monitor.ProbeNow();
  HealthReport r = monitor.Report();
  EXPECT_TRUE(r.ready) << r.ToJson();
  EXPECT_EQ(r.lb, LbState::kUp);
  EXPECT_EQ(store_checks.load(), 1);

  ca_answer = absl::UnavailableError("connection refused by ca01:135");
  monitor.ProbeNow();
  r = monitor.Report();
  EXPECT_EQ(r.lb, LbState::kDown);
  EXPECT_NE(r.ToJson().find("connection refused by ca01:135"), std::string::npos);

  ca_answer = absl::OkStatus();
  monitor.ProbeNow();
  ASSERT_TRUE(monitor.mode().Set(ServiceMode::kDrain).ok());
  EXPECT_EQ(monitor.Report().lb, LbState::kDrain);

  // Results age: a monitor whose probes stopped is not believed.
  clock.AdvanceMillis(HealthPolicy{}.max_probe_age_ms + 1);
  EXPECT_EQ(monitor.Report().lb, LbState::kDown);
}

// A probe's age is monotonic time: a wall clock stepped 5 minutes forward does not make every
// result stale (the node would go DOWN at the load balancer), and one stepped back does not
// keep a stuck probe fresh.
TEST(HealthMonitorTest, AWallClockStepNeitherAgesNorFreshensTheProbes) {
  adcsc::testing::TempDir dir;
  auto mode = ServiceModeStore::Open(dir.path() / kServiceModeFile);
  ASSERT_TRUE(mode.ok());
  constexpr int64_t kStart = 1'800'000'000'000;
  constexpr int64_t kStepMs = 5 * 60'000;
  FakeClock clock(kStart);
  HealthSources sources;
  sources.store_check = [] { return absl::OkStatus(); };
  sources.cas = {{"ca01\\Issuing", [] { return absl::OkStatus(); }}};
  sources.mode = mode->get();
  sources.clock = &clock;
  HealthMonitor monitor(sources, std::chrono::hours(1));
  monitor.ProbeNow();
  ASSERT_EQ(monitor.Report().lb, LbState::kUp);

  clock.SetUnixMillis(kStart + kStepMs);
  EXPECT_EQ(monitor.Report().lb, LbState::kUp) << monitor.Report().ToJson();
  EXPECT_EQ(monitor.Observations().store.at_ms, kStart + kStepMs) << "as old as it is, on the wall clock of now";
  clock.SetUnixMillis(kStart - kStepMs);
  EXPECT_EQ(monitor.Report().lb, LbState::kUp) << monitor.Report().ToJson();

  clock.AdvanceMillis(HealthPolicy{}.max_probe_age_ms + 1);
  EXPECT_EQ(monitor.Report().lb, LbState::kDown) << "the probes stopped: not believed, wall clock stepped back or not";
}

}  // namespace
}  // namespace adcsc::ops
