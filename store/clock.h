// Time as the store and the node see it. Production code uses SystemClock; tests use
// FakeClock and move time by hand. Implementations must be safe to call from any thread.
#pragma once

#include <atomic>
#include <cstdint>

namespace adcsc {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time in milliseconds since the Unix epoch.
  virtual int64_t NowUnixMillis() const = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t NowUnixMillis() const override;
  // A process-wide instance; never destroyed.
  static SystemClock* Default();
};

class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start_unix_millis = 1'700'000'000'000) : now_(start_unix_millis) {}
  int64_t NowUnixMillis() const override { return now_.load(); }
  void AdvanceMillis(int64_t ms) { now_ += ms; }
  void SetUnixMillis(int64_t ms) { now_ = ms; }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace adcsc
