// Jamf-like traffic through the load balancer, as Jamf Pro's ADCS integration behaves: for
// each enrollment, submit a fresh CSR, wait about a second, retrieve by the request ID, and
// poll while the request is pending. Enrollments start at a fixed rate on a bounded number
// of workers, and stop at a count or when told; every HTTP call becomes a Sample.
// Thread-safety: Start/Stop from one thread; the accessors from any.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "node/drill/report.h"

namespace adcsc::drill {

struct TrafficOptions {
  std::string url;                             // the load balancer
  std::filesystem::path cert, key, server_ca;  // Jamf Pro's identity
  std::string dc, ca, template_name;
  double rate = 10;      // enrollments started per second
  int concurrency = 16;  // enrollments in progress at most
  int max_enrollments = 5000;
  std::chrono::milliseconds retrieve_delay{1000};
  std::chrono::milliseconds poll_interval{2000};
  int max_polls = 5;
  std::chrono::milliseconds call_timeout{30'000};
  std::string cn_prefix = "drill";  // CN of each CSR: <prefix>-<n>
};

struct Acknowledged {
  uint32_t request_id = 0;
  std::string common_name;
};

class Traffic {
 public:
  // `phase` names the scenario's current phase; `t0` is the drill's time zero.
  Traffic(TrafficOptions options, std::function<std::string()> phase, std::chrono::steady_clock::time_point t0);
  ~Traffic();

  // Checks the identity files (a clear error if they are unusable), then starts the workers.
  absl::Status Start();
  // Starts no new enrollment; waits for the ones under way to finish (bounded by their calls'
  // timeouts).
  void Stop();

  // From now on, every call presents this client identity (as Jamf Pro does once a new .pfx
  // is uploaded), including the retrieves of enrollments under way.
  void SwitchIdentity(const std::filesystem::path& cert, const std::filesystem::path& key);
  // Waits until no call that began before the last SwitchIdentity is in flight (at most
  // `timeout`); false when some still are.
  bool AwaitIdentitySwitched(std::chrono::milliseconds timeout);

  std::vector<Sample> samples() const;
  std::vector<Acknowledged> acknowledged() const;
  int enrollments_started() const { return started_.load(); }

 private:
  void Worker();
  bool WaitUntil(std::chrono::steady_clock::time_point when);  // false: stopping
  int64_t Now() const;

  const TrafficOptions options_;
  const std::function<std::string()> phase_;
  const std::chrono::steady_clock::time_point t0_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> started_{0};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::chrono::steady_clock::time_point next_start_;
  std::vector<Sample> samples_;
  std::vector<Acknowledged> acknowledged_;
  std::filesystem::path cert_, key_;   // the identity enrollments present; guarded by mu_
  uint64_t identity_generation_ = 0;   // bumped by SwitchIdentity; guarded by mu_
  std::map<uint64_t, int> in_flight_;  // calls in flight by the identity generation they present; mu_
  std::vector<std::thread> workers_;
};

}  // namespace adcsc::drill
