#include "store/clock.h"

#include <algorithm>

namespace adcsc {

int64_t SystemClock::NowUnixMillis() const {
  // system_clock is the wall clock (it may step); the HLC above it keeps stamps monotonic.
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t SystemClock::NowMonotonicMillis() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool SystemClock::WaitFor(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                          std::chrono::milliseconds timeout, const std::function<bool()>& ready) const {
  return cv.wait_for(lock, timeout, ready);
}

SystemClock* SystemClock::Default() {
  // Leaked on purpose: callers may hold the pointer during static destruction.
  static SystemClock* const clock = new SystemClock();
  return clock;
}

bool FakeClock::WaitFor(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                        std::chrono::milliseconds timeout, const std::function<bool()>& ready) const {
  const int64_t deadline = NowMonotonicMillis() + timeout.count();
  // The registry is never taken while `lock` is held, and AdvanceMillis takes the registry,
  // then each waiter's mutex: one order, no deadlock, and a waiter's cv and mutex are not
  // touched after it has left.
  lock.unlock();
  {
    std::lock_guard registry(waiters_mu_);
    waiters_.push_back({&cv, lock.mutex()});
  }
  lock.lock();
  // `lock` is held from each check to the wait, and AdvanceMillis takes the same mutex to
  // notify, so no advance is missed between the two.
  while (!ready() && NowMonotonicMillis() < deadline) cv.wait(lock);
  lock.unlock();
  {
    std::lock_guard registry(waiters_mu_);
    auto it = std::find_if(waiters_.begin(), waiters_.end(), [&](const Waiter& w) { return w.cv == &cv; });
    if (it != waiters_.end()) waiters_.erase(it);
  }
  lock.lock();
  return ready();
}

void FakeClock::AdvanceMillis(int64_t ms) {
  now_ += ms;
  monotonic_ += ms;
  std::lock_guard registry(waiters_mu_);
  for (const Waiter& w : waiters_) {
    std::lock_guard lock(*w.mutex);
    w.cv->notify_all();
  }
}

size_t FakeClock::waiters() const {
  std::lock_guard registry(waiters_mu_);
  return waiters_.size();
}

}  // namespace adcsc
