// What this node last saw of each CA's reachability: the outcome of its latest CA call or
// health probe per CA config. The Peer service reports the unreachable ones in its Info
// answer, so that peers fail a submit or retrieve over only to a node that reaches the CA.
// Thread-safe: every method may be called from any thread.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace adcsc::node {

class CaReachability {
 public:
  // `ca_config` ("dc\ca") answered (reachable) or could not be reached (nothing was sent).
  void Note(const std::string& ca_config, bool reachable) {
    std::lock_guard lock(mu_);
    reachable_[ca_config] = reachable;
  }

  // The CA configs whose latest observation was "unreachable", sorted.
  std::vector<std::string> Unreachable() const {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (const auto& [ca_config, ok] : reachable_) {
      if (!ok) out.push_back(ca_config);
    }
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, bool> reachable_;  // by CA config; absent: not observed yet
};

}  // namespace adcsc::node
