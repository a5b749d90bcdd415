#include "node/ops/store_maintenance.h"

#include <algorithm>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"

namespace adcsc::ops {

StoreMaintenance::StoreMaintenance(store::RequestStore* store, node::EventLog* log, StoreMaintenanceOptions options)
    : store_(store),
      log_(log),
      options_(options),
      clock_(options.clock != nullptr ? options.clock : SystemClock::Default()) {}

StoreMaintenance::~StoreMaintenance() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

absl::Status StoreMaintenance::CheckNow(const char* phase) {
  const auto started = std::chrono::steady_clock::now();
  absl::Status found = store_->QuickCheck();
  absl::Status result = found;
  bool repaired = false;
  if (!found.ok()) {
    log_->Log(node::LogLevel::kError, "store_integrity",
              {{"phase", phase}, {"outcome", "damaged"}, {"error", std::string(found.message())}});
    // Damage confined to indexes is mended by building them again from the tables.
    if (absl::Status rebuilt = store_->RebuildIndexes(); rebuilt.ok()) {
      result = store_->QuickCheck();
      repaired = result.ok();
    } else {
      result = absl::Status(found.code(),
                            absl::StrCat(found.message(), "; rebuilding the indexes failed: ", rebuilt.message()));
    }
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  if (found.ok()) {
    log_->Log(node::LogLevel::kDebug, "store_integrity", {{"phase", phase}, {"outcome", "ok"}, {"check_ms", ms}});
  } else if (repaired) {
    log_->Log(node::LogLevel::kWarn, "store_integrity",
              {{"phase", phase}, {"outcome", "repaired"}, {"how", "REINDEX"}, {"check_ms", ms}});
  } else {
    log_->Log(node::LogLevel::kError, "store_integrity",
              {{"phase", phase}, {"outcome", "unrepaired"}, {"error", std::string(result.message())}});
  }
  std::lock_guard lock(mu_);
  if (!found.ok()) ++failures_;
  if (repaired) ++repairs_;
  last_ = result;
  return result;
}

int64_t StoreMaintenance::PruneNow() {
  if (options_.retention.count() <= 0) return 0;
  constexpr size_t kBatch = 1'000;
  constexpr int kMaxBatches = 1'000;  // a million records a run at most; the rest next time
  const int64_t cutoff_ms = clock_->NowUnixMillis() - options_.retention.count();
  int64_t total = 0;
  for (int i = 0; i < kMaxBatches; ++i) {
    absl::StatusOr<int64_t> pruned = store_->PruneSettled(cutoff_ms, kBatch);
    if (!pruned.ok()) {
      log_->Log(node::LogLevel::kError, "store_retention", {{"error", std::string(pruned.status().message())}});
      break;
    }
    total += *pruned;
    if (*pruned < static_cast<int64_t>(kBatch)) break;
  }
  if (total > 0) {
    log_->Log(node::LogLevel::kInfo, "store_retention",
              {{"pruned", total}, {"older_than_days", options_.retention.count() / 86'400'000}});
  }
  std::lock_guard lock(mu_);
  pruned_ += static_cast<uint64_t>(total);
  return total;
}

int64_t StoreMaintenance::CompactNow() {
  constexpr size_t kBatch = 10'000;
  absl::StatusOr<store::VersionVector> ours = store_->GetVersionVector();
  if (!ours.ok()) return 0;
  int64_t total = 0;
  for (;;) {
    absl::StatusOr<int64_t> deleted = store_->CompactLog(*ours, kBatch);
    if (!deleted.ok()) return total;
    total += *deleted;
    if (*deleted < static_cast<int64_t>(kBatch)) return total;
  }
}

void StoreMaintenance::StartSchedule() {
  if (thread_.joinable()) return;
  if (options_.integrity_interval.count() <= 0 && options_.retention.count() <= 0 &&
      options_.compact_interval.count() <= 0) {
    return;
  }
  thread_ = std::thread([this] { Loop(); });
}

void StoreMaintenance::Loop() {
  using std::chrono::milliseconds;
  // Each duty's next time, on the monotonic clock; a duty turned off never comes due.
  const int64_t now = clock_->NowMonotonicMillis();
  auto first = [now](milliseconds every) { return every.count() > 0 ? now + every.count() : INT64_MAX; };
  int64_t next_check = first(options_.integrity_interval);
  int64_t next_prune = options_.retention.count() > 0 ? now : INT64_MAX;  // prune soon after start
  int64_t next_compact = first(options_.compact_interval);
  std::unique_lock lock(mu_);
  for (;;) {
    const int64_t due = std::min({next_check, next_prune, next_compact});
    const int64_t wait_ms = std::max<int64_t>(0, due - clock_->NowMonotonicMillis());
    if (clock_->WaitFor(wake_, lock, milliseconds(wait_ms), [this] { return stopping_; })) return;
    lock.unlock();
    const int64_t t = clock_->NowMonotonicMillis();
    if (t >= next_check) {
      CheckNow("scheduled").IgnoreError();  // logged, counted and kept in last()
      next_check = t + options_.integrity_interval.count();
    }
    if (t >= next_prune) {
      PruneNow();
      next_prune = t + std::max<int64_t>(options_.prune_interval.count(), 1'000);
    }
    if (t >= next_compact) {
      CompactNow();
      next_compact = t + options_.compact_interval.count();
    }
    lock.lock();
  }
}

void StoreMaintenance::CountRepairAtStart() {
  std::lock_guard lock(mu_);
  ++failures_;
  ++repairs_;
}

absl::Status StoreMaintenance::last() const {
  std::lock_guard lock(mu_);
  return last_;
}

uint64_t StoreMaintenance::failures() const {
  std::lock_guard lock(mu_);
  return failures_;
}

uint64_t StoreMaintenance::repairs() const {
  std::lock_guard lock(mu_);
  return repairs_;
}

uint64_t StoreMaintenance::pruned() const {
  std::lock_guard lock(mu_);
  return pruned_;
}

}  // namespace adcsc::ops
