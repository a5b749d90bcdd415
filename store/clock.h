// Time as the store and the node see it: the wall clock, a monotonic clock for timeouts, and
// waiting on a condition with a timeout. Production code uses SystemClock; tests use
// FakeClock and move time by hand, so a timeout, a lease or an expiry is tested without
// waiting for it. Implementations must be safe to call from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

namespace adcsc {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time in milliseconds since the Unix epoch. It may step (an operator or NTP).
  virtual int64_t NowUnixMillis() const = 0;
  // Milliseconds from an arbitrary start, for deadlines and timeouts: never steps back.
  virtual int64_t NowMonotonicMillis() const = 0;
  // Waits on `cv` until `ready()` holds or `timeout` of this clock's monotonic time has
  // passed; returns ready(). `lock` (on the mutex `ready` reads under) is held on entry and on
  // return, as with std::condition_variable::wait_for; notifiers notify `cv` as usual.
  virtual bool WaitFor(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                       std::chrono::milliseconds timeout, const std::function<bool()>& ready) const = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t NowUnixMillis() const override;
  int64_t NowMonotonicMillis() const override;  // std::chrono::steady_clock
  bool WaitFor(std::condition_variable& cv, std::unique_lock<std::mutex>& lock, std::chrono::milliseconds timeout,
               const std::function<bool()>& ready) const override;
  // A process-wide instance; never destroyed.
  static SystemClock* Default();
};

// Time that moves only when the test says. AdvanceMillis moves the wall and the monotonic
// clock together and wakes every WaitFor, which then sees whether its timeout has passed;
// SetUnixMillis steps the wall clock alone (a clock jump), as NTP or an operator would.
// Call AdvanceMillis without holding a mutex that a waiter waits with.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start_unix_millis = 1'700'000'000'000) : now_(start_unix_millis) {}
  int64_t NowUnixMillis() const override { return now_.load(); }
  int64_t NowMonotonicMillis() const override { return monotonic_.load(); }
  bool WaitFor(std::condition_variable& cv, std::unique_lock<std::mutex>& lock, std::chrono::milliseconds timeout,
               const std::function<bool()>& ready) const override;
  void AdvanceMillis(int64_t ms);
  void SetUnixMillis(int64_t ms) { now_ = ms; }
  // How many threads wait in WaitFor now: a test advances time once its waiter is there.
  size_t waiters() const;

 private:
  struct Waiter {
    std::condition_variable* cv;
    std::mutex* mutex;
  };
  std::atomic<int64_t> now_;
  std::atomic<int64_t> monotonic_{0};
  mutable std::mutex waiters_mu_;
  mutable std::vector<Waiter> waiters_;
};

}  // namespace adcsc
