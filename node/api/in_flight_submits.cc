#include "node/api/in_flight_submits.h"

namespace adcsc::node {

InFlightSubmits::InFlightSubmits(const Clock* clock, std::chrono::milliseconds max_age, size_t max_count)
    : clock_(clock), max_age_(max_age), max_count_(max_count == 0 ? 1 : max_count) {}

void InFlightSubmits::ExpireLocked(int64_t now_ms) {
  const int64_t oldest_allowed = now_ms - max_age_.count();
  for (auto it = entries_.begin(); it != entries_.end();) {
    it = it->second.added_ms < oldest_allowed ? entries_.erase(it) : std::next(it);
  }
}

void InFlightSubmits::Add(const SubmitIntent& intent) {
  const int64_t now = clock_->NowUnixMillis();
  std::lock_guard lock(mu_);
  Key key{intent.ca_config, intent.template_name, intent.csr_sha256, intent.node_id};
  if (entries_.size() >= max_count_ && entries_.find(key) == entries_.end()) {
    ExpireLocked(now);
    if (entries_.size() >= max_count_) {
      auto oldest = entries_.begin();
      for (auto it = entries_.begin(); it != entries_.end(); ++it) {
        if (it->second.added_ms < oldest->second.added_ms) oldest = it;
      }
      entries_.erase(oldest);
    }
  }
  entries_[key] = Entry{intent, now};
}

void InFlightSubmits::Remove(const SubmitIntent& intent) {
  {
    std::lock_guard lock(mu_);
    entries_.erase(Key{intent.ca_config, intent.template_name, intent.csr_sha256, intent.node_id});
    ++generation_;
  }
  changed_.notify_all();
}

std::optional<SubmitIntent> InFlightSubmits::Find(const std::string& ca_config, const std::string& template_name,
                                                  const std::string& csr_sha256, const std::string& except_node,
                                                  int64_t* age_ms) {
  const int64_t now = clock_->NowUnixMillis();
  std::lock_guard lock(mu_);
  const Entry* newest = nullptr;
  // Entries with this CSR are adjacent: the key's first three parts are equal.
  for (auto it = entries_.lower_bound(Key{ca_config, template_name, csr_sha256, ""});
       it != entries_.end() && std::get<0>(it->first) == ca_config && std::get<1>(it->first) == template_name &&
       std::get<2>(it->first) == csr_sha256;
       ++it) {
    if (it->second.added_ms < now - max_age_.count()) continue;
    if (!except_node.empty() && it->second.intent.node_id == except_node) continue;
    if (newest == nullptr || it->second.added_ms > newest->added_ms) newest = &it->second;
  }
  if (newest == nullptr) return std::nullopt;
  if (age_ms != nullptr) *age_ms = now - newest->added_ms;
  return newest->intent;
}

void InFlightSubmits::WaitForChange(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  const uint64_t seen = generation_;
  clock_->WaitFor(changed_, lock, timeout, [&] { return generation_ != seen; });
}

size_t InFlightSubmits::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

}  // namespace adcsc::node
