// The monitor runs its probes and reports what they last said, with the service mode.
#include "node/ops/health_monitor.h"

#include <gtest/gtest.h>

#include <atomic>

#include "tests/testing/temp_dir.h"

namespace adcsc::ops {
namespace {

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

}  // namespace
}  // namespace adcsc::ops
