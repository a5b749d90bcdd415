// LogThrottle: once per key per interval with the count left out, the bound on keys, and
// UntrustedField's cut and escaping.
#include "node/log/log_throttle.h"

#include <gtest/gtest.h>

namespace adcsc::node {
namespace {

using namespace std::chrono_literals;

TEST(LogThrottle, OncePerKeyPerIntervalWithTheCountLeftOut) {
  LogThrottle t(60s);
  const auto t0 = std::chrono::steady_clock::time_point{} + 1h;
  uint64_t suppressed = 99;
  EXPECT_TRUE(t.ShouldLog("a", t0, &suppressed));
  EXPECT_EQ(suppressed, 0u);
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(t.ShouldLog("a", t0 + 1s, &suppressed));
  EXPECT_TRUE(t.ShouldLog("b", t0 + 1s, &suppressed)) << "keys are separate";
  EXPECT_TRUE(t.ShouldLog("a", t0 + 60s, &suppressed));
  EXPECT_EQ(suppressed, 5u);
  EXPECT_FALSE(t.ShouldLog("a", t0 + 61s, &suppressed));
}

TEST(LogThrottle, ZeroIntervalLogsEverything) {
  LogThrottle t(0s);
  uint64_t suppressed = 0;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(t.ShouldLog("a", &suppressed));
}

TEST(LogThrottle, ManyKeysShareOneOverflowEntry) {
  LogThrottle t(60s, 4);
  const auto t0 = std::chrono::steady_clock::time_point{} + 1h;
  uint64_t suppressed = 0;
  int logged = 0;
  // 1,000 sources within one interval: the first few get their own line, the rest share one.
  for (int i = 0; i < 1000; ++i) logged += t.ShouldLog("source-" + std::to_string(i), t0, &suppressed) ? 1 : 0;
  EXPECT_LE(logged, 5);
  // The next interval's flood reports what the overflow entry left out.
  uint64_t reported = 0;
  for (int i = 0; i < 1000; ++i) {
    if (t.ShouldLog("next-" + std::to_string(i), t0 + 60s, &suppressed)) reported += suppressed;
  }
  EXPECT_GE(reported, 990u) << "the overflow entry counted what it left out";
}

TEST(UntrustedField, CutsLongValuesAndSaysHowLongTheyWere) {
  const std::string ua(8192, 'A');
  const std::string cut = UntrustedField(ua, 256);
  EXPECT_EQ(cut.substr(0, 256), std::string(256, 'A'));
  EXPECT_EQ(cut.substr(256), "...(8192 bytes)");
  EXPECT_EQ(UntrustedField("short"), "short");
}

TEST(UntrustedField, ReplacesControlCharactersAndCutsOnACharacterBoundary) {
  EXPECT_EQ(UntrustedField("a\r\nb\x1b[31m"), "a??b?[31m");
  // "é" is two bytes; a cut in its middle backs up before it.
  const std::string s =
      "ab\xc3\xa9"
      "cd";
  EXPECT_EQ(UntrustedField(s, 3), "ab...(6 bytes)");
}

}  // namespace
}  // namespace adcsc::node
