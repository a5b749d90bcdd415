// The monitor runs its probes and reports what they last said, with the service mode.
#include "node/ops/health_monitor.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

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
  sources.cluster = [] { return ClusterView{2, 1, false, false, 3, {}}; };
  sources.certificates = {{kApiIdentityRole, "CN=adcs", "server.pem", clock.NowUnixMillis() + 86'400'000LL * 90}};
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
  EXPECT_NE(r.ToJson().find("90 days until the API server certificate expires"), std::string::npos) << r.ToJson();

  // A reload replaces the certificates; the API certificate's expiry follows.
  monitor.SetCertificates({{kApiIdentityRole, "CN=adcs", "new.pem", clock.NowUnixMillis() - 1}});
  EXPECT_EQ(monitor.certificate_not_after_ms(), clock.NowUnixMillis() - 1);
  EXPECT_EQ(monitor.Report().lb, LbState::kDown) << "an expired API certificate";
  monitor.SetCertificates({{kApiIdentityRole, "CN=adcs", "server.pem", clock.NowUnixMillis() + 86'400'000LL * 90}});

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

// A stalled disk: the write check that has not returned fails the store check once it has run
// longer than the policy allows, without waiting for it; a check that returned but took too
// long fails too, until a quick one passes.
TEST(HealthMonitorTest, AStoreWriteCheckThatStallsTakesTheNodeOutOfRotation) {
  adcsc::testing::TempDir dir;
  auto mode = ServiceModeStore::Open(dir.path() / kServiceModeFile);
  ASSERT_TRUE(mode.ok());
  FakeClock clock(1'800'000'000'000);
  std::mutex mu;
  std::condition_variable cv;
  bool stall = false, stalled = false, release = false;
  int64_t slow_ms = 0;
  HealthSources sources;
  sources.store_check = [&] {
    std::unique_lock lock(mu);
    if (stall) {
      stalled = true;
      cv.notify_all();
      cv.wait(lock, [&] { return release; });
    }
    if (slow_ms > 0) clock.AdvanceMillis(slow_ms);
    return absl::OkStatus();
  };
  sources.cas = {{"ca01\\Issuing", [] { return absl::OkStatus(); }}};
  sources.mode = mode->get();
  sources.clock = &clock;
  HealthPolicy policy;
  policy.max_store_write_ms = 2'000;
  HealthMonitor monitor(sources, std::chrono::hours(1), policy);
  monitor.ProbeNow();
  ASSERT_EQ(monitor.Report().lb, LbState::kUp);

  {
    std::lock_guard lock(mu);
    stall = true;
  }
  std::thread probe([&] { monitor.ProbeNow(); });
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return stalled; }));
  }
  clock.AdvanceMillis(1'999);
  EXPECT_EQ(monitor.Report().lb, LbState::kUp) << "within the allowance";
  clock.AdvanceMillis(2);
  const HealthReport stuck = monitor.Report();
  EXPECT_EQ(stuck.lb, LbState::kDown) << stuck.ToJson();
  EXPECT_NE(stuck.ToJson().find("has not returned for 2001 ms"), std::string::npos) << stuck.ToJson();
  {
    std::lock_guard lock(mu);
    stall = false;
    release = true;
    slow_ms = 0;
  }
  cv.notify_all();
  probe.join();
  // It returned after 2001 ms: too slow still.
  EXPECT_EQ(monitor.Report().lb, LbState::kDown) << monitor.Report().ToJson();
  EXPECT_NE(monitor.Report().ToJson().find("took 2001 ms"), std::string::npos) << monitor.Report().ToJson();
  monitor.ProbeNow();  // a quick one
  EXPECT_EQ(monitor.Report().lb, LbState::kUp) << monitor.Report().ToJson();
  {
    std::lock_guard lock(mu);
    slow_ms = 2'500;
  }
  monitor.ProbeNow();
  EXPECT_EQ(monitor.Report().lb, LbState::kDown) << "slow, not stuck: still out";
}

// A reload's allowlist: a CA kept keeps its result, a CA removed leaves the report at once, and a
// CA added is pinged at once (on the probe thread, not after an interval) and judged from then.
TEST(HealthMonitorTest, AReloadedAllowlistChangesTheCasProbedAtOnce) {
  adcsc::testing::TempDir dir;
  auto mode = ServiceModeStore::Open(dir.path() / kServiceModeFile);
  ASSERT_TRUE(mode.ok());
  FakeClock clock(1'800'000'000'000);
  std::atomic<int> kept_pings{0}, added_pings{0};
  HealthSources sources;
  sources.store_check = [] { return absl::OkStatus(); };
  sources.cas = {{"ca01\\Kept",
                  [&] {
                    ++kept_pings;
                    return absl::OkStatus();
                  }},
                 {"ca02\\Removed", [] { return absl::OkStatus(); }}};
  sources.mode = mode->get();
  sources.clock = &clock;
  HealthMonitor monitor(sources, std::chrono::hours(1));
  monitor.Start();
  auto checks = [&] {
    std::vector<std::string> names;
    for (const HealthCheck& c : monitor.Report().checks) {
      if (c.name.rfind("ca ", 0) == 0) names.push_back(c.name + (c.ok ? " ok" : " failed"));
    }
    return names;
  };
  EXPECT_EQ(checks(), (std::vector<std::string>{"ca ca01\\Kept ok", "ca ca02\\Removed ok"}));

  monitor.SetCas({{"ca01\\Kept",
                   [&] {
                     ++kept_pings;
                     return absl::OkStatus();
                   }},
                  {"ca03\\Added", [&] {
                     ++added_pings;
                     return absl::UnavailableError("ca03 does not answer");
                   }}});
  const std::vector<std::string> right_after = checks();
  EXPECT_EQ(std::count(right_after.begin(), right_after.end(), "ca ca02\\Removed ok"), 0) << "removed at once";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (checks().size() < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  EXPECT_EQ(checks(), (std::vector<std::string>{"ca ca01\\Kept ok", "ca ca03\\Added failed"}))
      << "the added CA pinged without waiting for the hour";
  EXPECT_EQ(added_pings.load(), 1);
  EXPECT_EQ(monitor.Report().lb, LbState::kDown) << "an allowlisted CA that does not answer";
}

}  // namespace
}  // namespace adcsc::ops
