#include "store/hlc.h"

#include <algorithm>

namespace adcsc::store {
namespace {
constexpr uint64_t kSaturated = ~uint64_t{0};
}  // namespace

uint64_t HybridLogicalClock::WallStamp() const {
  const int64_t ms = clock_->NowUnixMillis();
  return ms <= 0 ? 0 : Pack(ms, 0);
}

uint64_t HybridLogicalClock::Now() {
  const uint64_t wall = WallStamp();
  uint64_t prev = last_.load(std::memory_order_acquire);
  uint64_t next;
  do {
    // If the wall clock has moved past everything seen, follow it (counter resets to 0);
    // otherwise stay on the last physical time and bump the counter.
    // Saturating: a corrupt remote stamp near 2^64 must not wrap the clock back to 0.
    next = std::max(wall, prev == kSaturated ? kSaturated : prev + 1);
  } while (!last_.compare_exchange_weak(prev, next, std::memory_order_acq_rel, std::memory_order_acquire));
  return next;
}

uint64_t HybridLogicalClock::Observe(uint64_t remote) {
  uint64_t prev = last_.load(std::memory_order_acquire);
  while (remote > prev) {
    if (last_.compare_exchange_weak(prev, remote, std::memory_order_acq_rel, std::memory_order_acquire)) {
      return remote;
    }
  }
  return prev;
}

}  // namespace adcsc::store
