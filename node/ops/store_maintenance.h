// Keeps a node's request store sound and bounded, on its own thread:
//   - integrity: RequestStore::QuickCheck at start and every `integrity_interval`. A failed
//     check is logged and counted and fails readiness (health.h reads last()). REINDEX is
//     tried first (it mends indexes whose entries went wrong); damage it cannot mend stays
//     reported until a restart, where the node rebuilds the file from its tables
//     (store/repair.h) or refuses to start (node/app/run_node.cc). A damaged index made dedupe
//     lookups miss and go back to the CA.
//   - retention: settled records last changed more than `retention` ago are pruned
//     (RequestStore::PruneSettled), every `prune_interval`; every node applies the same rule.
//   - a single node's mutation log is compacted every `compact_interval` (in a cluster the
//     replicator compacts it, up to what every peer holds).
// Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "absl/status/status.h"
#include "node/log/logging.h"
#include "store/clock.h"
#include "store/request_store.h"

namespace adcsc::ops {

struct StoreMaintenanceOptions {
  std::chrono::milliseconds integrity_interval{0};  // 0: at start only (CheckNow)
  std::chrono::milliseconds retention{0};           // 0: keep every record
  std::chrono::milliseconds prune_interval{3'600'000};
  std::chrono::milliseconds compact_interval{0};  // 0: never (a cluster's replicator compacts)
  const Clock* clock = nullptr;                   // nullptr: the system clock
};

class StoreMaintenance {
 public:
  // Borrows `store` and `log`.
  StoreMaintenance(store::RequestStore* store, node::EventLog* log, StoreMaintenanceOptions options);
  ~StoreMaintenance();
  StoreMaintenance(const StoreMaintenance&) = delete;
  StoreMaintenance& operator=(const StoreMaintenance&) = delete;

  // Checks now (and repairs what REINDEX can); OK when the file is sound at the end.
  // `phase` ("start", "scheduled") goes into the log line.
  absl::Status CheckNow(const char* phase);
  // Prunes what retention allows, in batches; returns how many records went.
  int64_t PruneNow();
  // Compacts this node's own log (a single node: it alone must hold it).
  int64_t CompactNow();
  // Runs each duty on its interval from now on, until destroyed.
  void StartSchedule();

  // The node found damage at start and mended it before this object existed: count it.
  void CountRepairAtStart();

  absl::Status last() const;
  uint64_t failures() const;  // checks that found damage
  uint64_t repairs() const;   // of those, mended
  uint64_t pruned() const;    // records pruned since start

 private:
  void Loop();

  store::RequestStore* store_;
  node::EventLog* log_;
  const StoreMaintenanceOptions options_;
  const Clock* clock_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  absl::Status last_;
  uint64_t failures_ = 0;
  uint64_t repairs_ = 0;
  uint64_t pruned_ = 0;
  std::thread thread_;
};

}  // namespace adcsc::ops
