// A hybrid logical clock: timestamps that follow wall-clock milliseconds but never go
// backwards and always exceed every stamp this node has issued or observed, so "newer"
// is well defined across nodes with skewed clocks. Thread-safe: all methods may be called
// concurrently; they are lock-free.
//
// Layout of a stamp: (physical Unix ms << 16) | logical counter. The counter orders events
// within one millisecond; if it overflows it carries into the physical part, which keeps
// stamps unique and increasing at the cost of running slightly ahead of the wall clock.
#pragma once

#include <atomic>
#include <cstdint>

#include "store/clock.h"

namespace adcsc::store {

class HybridLogicalClock {
 public:
  static constexpr int kLogicalBits = 16;
  static constexpr uint64_t kLogicalMask = (uint64_t{1} << kLogicalBits) - 1;

  // `clock` must outlive this object.
  explicit HybridLogicalClock(const Clock* clock) : clock_(clock) {}
  HybridLogicalClock(const HybridLogicalClock&) = delete;
  HybridLogicalClock& operator=(const HybridLogicalClock&) = delete;

  // A stamp for a local event: greater than every stamp returned by Now() before and
  // every stamp passed to Observe() before.
  uint64_t Now();

  // Folds in a stamp received from elsewhere (a peer's record, or a stamp read back from
  // disk at start-up) so later local events order after it. Returns the clock's value
  // after the update (not a new event stamp).
  uint64_t Observe(uint64_t remote);

  // The last stamp issued or observed; no side effects.
  uint64_t Peek() const { return last_.load(std::memory_order_acquire); }

  static constexpr uint64_t Pack(int64_t physical_ms, uint64_t logical) {
    return (static_cast<uint64_t>(physical_ms) << kLogicalBits) | (logical & kLogicalMask);
  }
  static constexpr int64_t PhysicalMillis(uint64_t stamp) { return static_cast<int64_t>(stamp >> kLogicalBits); }
  static constexpr uint64_t Logical(uint64_t stamp) { return stamp & kLogicalMask; }

 private:
  // The wall clock as a stamp with a zero counter; a clock before 1970 counts as 0.
  uint64_t WallStamp() const;

  const Clock* const clock_;
  std::atomic<uint64_t> last_{0};
};

}  // namespace adcsc::store
