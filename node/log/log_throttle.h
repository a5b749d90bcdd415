// Says when an event a client can cause at will (a refusal, a malformed request) may be
// logged: at most once per key (usually event and source) per interval, with the count of
// occurrences left out since the last line. The number of keys is bounded, so a flood from
// many sources cannot grow memory or the log without limit: past the bound, every new key
// shares one overflow key. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace adcsc::node {

class LogThrottle {
 public:
  using Time = std::chrono::steady_clock::time_point;
  // interval 0: every occurrence is logged.
  explicit LogThrottle(std::chrono::milliseconds interval, size_t max_keys = 4096);

  // True when this occurrence of `key` should be logged; then `*suppressed` is the number of
  // occurrences of the key not logged since the last logged one.
  bool ShouldLog(std::string_view key, Time now, uint64_t* suppressed);
  bool ShouldLog(std::string_view key, uint64_t* suppressed) {
    return ShouldLog(key, std::chrono::steady_clock::now(), suppressed);
  }

 private:
  struct Entry {
    Time last_logged;
    uint64_t suppressed = 0;
  };
  const std::chrono::milliseconds interval_;
  const size_t max_keys_;
  std::mutex mu_;
  std::map<std::string, Entry, std::less<>> entries_;
  // When the full table was last swept: at most once per interval, so that a flood of new
  // keys costs a lookup each, not a scan each.
  Time last_sweep_{};
};

// `value` cut to `max_bytes` (on a UTF-8 character boundary) with "...(N bytes)" appended
// when it was longer, and control characters replaced by '?': for fields a client chooses
// (User-Agent, path, a refused certificate's name) before they reach a log.
std::string UntrustedField(std::string_view value, size_t max_bytes = 256);

}  // namespace adcsc::node
