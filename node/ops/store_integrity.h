// Watches the request store's file for damage: RequestStore::QuickCheck at start and then
// every `interval` on its own thread. A failed check is logged and counted and fails
// readiness (health.h reads last()). REINDEX is tried first (it mends indexes whose entries
// went wrong); damage it cannot mend stays reported until a restart, where the node rebuilds
// the file from its tables (store/repair.h) or refuses to start (node/app/run_node.cc). A
// damaged index made dedupe lookups miss and go back to the CA. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "absl/status/status.h"
#include "node/log/logging.h"
#include "store/request_store.h"

namespace adcsc::ops {

class StoreIntegrity {
 public:
  // Borrows `store` and `log`; `interval` 0 checks at start only.
  StoreIntegrity(store::RequestStore* store, node::EventLog* log, std::chrono::milliseconds interval);
  ~StoreIntegrity();
  StoreIntegrity(const StoreIntegrity&) = delete;
  StoreIntegrity& operator=(const StoreIntegrity&) = delete;

  // Checks now (and repairs what REINDEX can); OK when the file is sound at the end.
  // `phase` ("start", "scheduled") goes into the log line.
  absl::Status CheckNow(const char* phase);
  // Checks every `interval` from now on, until destroyed.
  void StartSchedule();

  // The node found damage at start and mended it before this object existed: count it.
  void CountRepairAtStart();

  absl::Status last() const;
  uint64_t failures() const;  // checks that found damage
  uint64_t repairs() const;   // of those, repaired by REINDEX

 private:
  void Loop();

  store::RequestStore* store_;
  node::EventLog* log_;
  const std::chrono::milliseconds interval_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  absl::Status last_;
  uint64_t failures_ = 0;
  uint64_t repairs_ = 0;
  std::thread thread_;
};

}  // namespace adcsc::ops
