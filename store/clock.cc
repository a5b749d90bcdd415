#include "store/clock.h"

#include <chrono>

namespace adcsc {

int64_t SystemClock::NowUnixMillis() const {
  // system_clock is the wall clock (it may step); the HLC above it keeps stamps monotonic.
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

SystemClock* SystemClock::Default() {
  // Leaked on purpose: callers may hold the pointer during static destruction.
  static SystemClock* const clock = new SystemClock();
  return clock;
}

}  // namespace adcsc
