// What the status page shows of a node's API traffic: its calls of the last hour, counted per
// minute by endpoint and outcome, and its latest failures with the error each was logged with.
// Fed as an ApiObserver; never sees a request's contents. Thread-safety: every member may be
// called from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "node/api/api_service.h"
#include "store/clock.h"

namespace adcsc::ops {

struct ActivityFailure {
  int64_t unix_ms = 0;
  std::string endpoint;  // request, retrieve
  std::string outcome;   // as in ApiResponse: ca_error, bad_request, ...
  int http_status = 0;
  std::string message;  // the logged error, at most kMaxMessageBytes
};

struct ActivityMinute {
  int64_t start_unix_ms = 0;
  // (endpoint, outcome) -> calls answered in this minute
  std::map<std::pair<std::string, std::string>, uint64_t> counts;
};

struct ActivitySnapshot {
  std::vector<ActivityMinute> minutes;    // the last hour's minutes with calls, oldest first
  std::vector<ActivityFailure> failures;  // newest first
};

// Whether a call with this outcome and HTTP status is a failure on the status page: anything
// but a certificate issued, a request pending or an answer of revoked (a denial too: the
// device did not get its certificate). CA errors are HTTP 200, as the original's.
bool IsFailure(std::string_view outcome, int http_status);

class ActivityLog final : public node::ApiObserver {
 public:
  static constexpr size_t kMaxFailures = 50;
  static constexpr size_t kMaxMessageBytes = 300;
  static constexpr int64_t kWindowMs = 60 * 60 * 1000;

  // `clock` (not owned) must outlive the log.
  explicit ActivityLog(const Clock* clock) : clock_(clock) {}

  void ObserveCall(std::string_view, std::string_view, int, double, double) override {}
  void ObserveResult(std::string_view endpoint, std::string_view outcome, int http_status,
                     std::string_view error) override;

  ActivitySnapshot Snapshot() const;

 private:
  // Drops minutes that left the window (or lie ahead of it after the clock stepped back).
  void Trim(int64_t now_ms) const;

  const Clock* clock_;
  mutable std::mutex mu_;
  mutable std::map<int64_t, ActivityMinute> minutes_;  // by start; guarded by mu_
  std::deque<ActivityFailure> failures_;               // newest first; guarded by mu_
};

}  // namespace adcsc::ops
