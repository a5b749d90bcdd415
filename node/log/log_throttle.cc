#include "node/log/log_throttle.h"

#include "absl/strings/str_cat.h"

namespace adcsc::node {
namespace {

constexpr char kOverflowKey[] = "*";

}  // namespace

LogThrottle::LogThrottle(std::chrono::milliseconds interval, size_t max_keys)
    : interval_(interval), max_keys_(std::max<size_t>(max_keys, 2)) {}

bool LogThrottle::ShouldLog(std::string_view key, Time now, uint64_t* suppressed) {
  *suppressed = 0;
  if (interval_.count() <= 0) return true;
  std::lock_guard lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    if (entries_.size() >= max_keys_ && now - last_sweep_ >= interval_) {
      // Drop keys whose interval has passed with nothing left out; if that frees nothing,
      // the key shares the overflow entry.
      last_sweep_ = now;
      for (auto e = entries_.begin(); e != entries_.end();) {
        if (e->second.suppressed == 0 && now - e->second.last_logged >= interval_) {
          e = entries_.erase(e);
        } else {
          ++e;
        }
      }
    }
    if (entries_.size() >= max_keys_) {
      it = entries_.find(std::string_view(kOverflowKey));
      if (it == entries_.end()) it = entries_.emplace(kOverflowKey, Entry{now - interval_, 0}).first;
    } else {
      entries_.emplace(std::string(key), Entry{now, 0});
      return true;
    }
  }
  Entry& e = it->second;
  if (now - e.last_logged >= interval_) {
    *suppressed = e.suppressed;
    e = Entry{now, 0};
    return true;
  }
  e.suppressed++;
  return false;
}

std::string UntrustedField(std::string_view value, size_t max_bytes) {
  size_t cut = value.size();
  if (cut > max_bytes) {
    cut = max_bytes;
    // Back up to the start of a UTF-8 character (continuation bytes are 10xxxxxx).
    while (cut > 0 && (static_cast<unsigned char>(value[cut]) & 0xC0) == 0x80) --cut;
  }
  std::string out(value.substr(0, cut));
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) c = '?';
  }
  if (cut < value.size()) absl::StrAppend(&out, "...(", value.size(), " bytes)");
  return out;
}

}  // namespace adcsc::node
