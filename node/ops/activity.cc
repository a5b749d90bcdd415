// The status page's view of a node's API traffic; see activity.h.
#include "node/ops/activity.h"

namespace adcsc::ops {
namespace {
constexpr int64_t kMinuteMs = 60 * 1000;
}  // namespace

bool IsFailure(std::string_view outcome, int http_status) {
  if (http_status >= 400) return true;
  return !(outcome == "issued" || outcome == "pending" || outcome == "revoked");
}

void ActivityLog::ObserveResult(std::string_view endpoint, std::string_view outcome, int http_status,
                                std::string_view error) {
  const int64_t now_ms = clock_->NowUnixMillis();
  std::lock_guard lock(mu_);
  const int64_t start = now_ms - ((now_ms % kMinuteMs) + kMinuteMs) % kMinuteMs;
  ActivityMinute& minute = minutes_[start];
  minute.start_unix_ms = start;
  ++minute.counts[{std::string(endpoint), std::string(outcome)}];
  Trim(now_ms);
  if (!IsFailure(outcome, http_status)) return;
  ActivityFailure f{now_ms, std::string(endpoint), std::string(outcome), http_status,
                    std::string(error.substr(0, kMaxMessageBytes))};
  failures_.push_front(std::move(f));
  if (failures_.size() > kMaxFailures) failures_.pop_back();
}

void ActivityLog::Trim(int64_t now_ms) const {
  while (!minutes_.empty() && minutes_.begin()->first + kMinuteMs <= now_ms - kWindowMs) {
    minutes_.erase(minutes_.begin());
  }
  while (!minutes_.empty() && minutes_.rbegin()->first > now_ms) minutes_.erase(std::prev(minutes_.end()));
}

ActivitySnapshot ActivityLog::Snapshot() const {
  const int64_t now_ms = clock_->NowUnixMillis();
  std::lock_guard lock(mu_);
  Trim(now_ms);
  ActivitySnapshot s;
  for (const auto& [start, minute] : minutes_) s.minutes.push_back(minute);
  s.failures.assign(failures_.begin(), failures_.end());
  return s;
}

}  // namespace adcsc::ops
