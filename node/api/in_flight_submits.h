// Submits that have gone to the CA but whose outcome is not recorded yet, on this node and
// (announced over the Peer service) on the other nodes of the cluster.
//
// Why: a node killed after the CA accepted a submit but before the outcome reached any peer
// leaves the CA with a request no store knows. The client (or an L7-retrying load balancer)
// sends the same CSR again, to another node, whose dedupe finds nothing. Before it submits
// again, that node looks here: an intent for the same CSR tells it to wait for the record
// and to look for the CA's answer among the request IDs after the intent's after_request_id
// (ApiService::AwaitInFlight). See docs/architecture.md "Submits cut short".
//
// In memory only, bounded in count and age. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>

#include "store/clock.h"

namespace adcsc::node {

struct SubmitIntent {
  std::string ca_config;  // "dc\ca"
  std::string template_name;
  std::string csr_sha256;         // 32 bytes, binary
  uint32_t after_request_id = 0;  // highest request ID for ca_config the submitting node held
  std::string ca_identity;        // who submits
  std::string node_id;            // the submitting node
};

class InFlightSubmits {
 public:
  // `clock` (not owned) dates intents; an intent older than `max_age` is forgotten, and past
  // `max_count` intents the oldest goes first.
  InFlightSubmits(const Clock* clock, std::chrono::milliseconds max_age = std::chrono::minutes(10),
                  size_t max_count = 100'000);

  // Records (or refreshes) `intent`. Its key is (ca_config, template_name, csr_sha256,
  // node_id): one node's intent never hides another's.
  void Add(const SubmitIntent& intent);
  // Forgets the intent with that key, and wakes waiters.
  void Remove(const SubmitIntent& intent);

  // An intent for this CSR by a node other than `except_node` (empty: any), the newest, or
  // nullopt. `age_ms` (optional) gets how long ago it was added here.
  std::optional<SubmitIntent> Find(const std::string& ca_config, const std::string& template_name,
                                   const std::string& csr_sha256, const std::string& except_node,
                                   int64_t* age_ms = nullptr);

  // Blocks until an intent is removed or `timeout` of the clock's time passes.
  void WaitForChange(std::chrono::milliseconds timeout);

  size_t size() const;

 private:
  using Key = std::tuple<std::string, std::string, std::string, std::string>;
  struct Entry {
    SubmitIntent intent;
    int64_t added_ms = 0;
  };
  void ExpireLocked(int64_t now_ms);

  const Clock* clock_;
  const std::chrono::milliseconds max_age_;
  const size_t max_count_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  uint64_t generation_ = 0;
  std::map<Key, Entry> entries_;
};

}  // namespace adcsc::node
