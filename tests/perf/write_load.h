// The write load both sides of the replication benchmark run: records shaped like real ones
// (a ~1.5 KB certificate, a 32-byte CSR hash, template and requester), and a pool of writer
// threads that call one write function in a loop bounded by count and by time, timing each
// call. Thread-safety: MakeBenchRecord is pure; RunWriters runs on the caller's thread and
// calls `write` from `threads` threads at once.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "store/record.h"

namespace adcsc::bench {

inline constexpr char kBenchCaConfig[] = "ca01.corp.example.com\\Corp-Issuing-CA-01";
inline constexpr size_t kCertificateBytes = 1500;

// A deterministic byte stream (splitmix64), so records differ without costing a RNG per byte.
inline void FillBytes(uint64_t seed, std::string* out, size_t n) {
  out->resize(n);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; i += 8) {
    x += 0x9E3779B97F4A7C15ull;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    for (size_t j = 0; j < 8 && i + j < n; ++j) (*out)[i + j] = static_cast<char>(z >> (8 * j));
  }
}

// An issued request as the API records it after a retrieve.
inline store::RequestRecord MakeBenchRecord(uint32_t request_id) {
  store::RequestRecord r;
  r.set_ca_config(kBenchCaConfig);
  r.set_request_id(request_id);
  r.set_status(store::v1::RECORD_STATUS_ISSUED);
  r.set_disposition(3);  // CR_DISP_ISSUED
  r.set_message("Issued");
  FillBytes(request_id, r.mutable_certificate_der(), kCertificateBytes);
  FillBytes(~static_cast<uint64_t>(request_id), r.mutable_csr_sha256(), 32);
  r.set_template_name("JamfComputer");
  r.set_requester("CORP\\svc-jamf-adcs");
  return r;
}

struct WriteCell {
  size_t writes = 0;  // that succeeded
  size_t errors = 0;
  double seconds = 0;
  double p50_ms = 0, p99_ms = 0;
  std::string first_error;
  double per_second() const { return seconds > 0 ? writes / seconds : 0; }
};

// Calls write(i) for i = 0, 1, ... from `threads` threads until `max_count` calls were started
// or `max_time` has passed, whichever comes first; every call's latency counts.
inline WriteCell RunWriters(int threads, size_t max_count, std::chrono::milliseconds max_time,
                            const std::function<absl::Status(size_t)>& write) {
  using Clock = std::chrono::steady_clock;
  std::atomic<size_t> next{0}, errors{0};
  std::mutex mu;
  std::vector<double> all_ms;
  std::string first_error;
  const auto start = Clock::now();
  const auto stop_at = start + max_time;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      std::vector<double> ms;
      for (;;) {
        const size_t i = next.fetch_add(1);
        if (i >= max_count || Clock::now() >= stop_at) break;
        const auto t0 = Clock::now();
        absl::Status s = write(i);
        const auto t1 = Clock::now();
        if (s.ok()) {
          ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        } else if (errors.fetch_add(1) == 0) {
          std::lock_guard<std::mutex> lock(mu);
          first_error = s.ToString();
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      all_ms.insert(all_ms.end(), ms.begin(), ms.end());
    });
  }
  for (std::thread& t : pool) t.join();
  WriteCell cell;
  cell.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  cell.writes = all_ms.size();
  cell.errors = errors.load();
  cell.first_error = first_error;
  if (!all_ms.empty()) {
    std::sort(all_ms.begin(), all_ms.end());
    cell.p50_ms = all_ms[all_ms.size() / 2];
    cell.p99_ms = all_ms[std::min(all_ms.size() - 1, all_ms.size() * 99 / 100)];
  }
  return cell;
}

}  // namespace adcsc::bench
