#include "node/ops/store_integrity.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace adcsc::ops {

StoreIntegrity::StoreIntegrity(store::RequestStore* store, node::EventLog* log, std::chrono::milliseconds interval)
    : store_(store), log_(log), interval_(interval) {}

StoreIntegrity::~StoreIntegrity() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

absl::Status StoreIntegrity::CheckNow(const char* phase) {
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

void StoreIntegrity::StartSchedule() {
  if (interval_.count() <= 0 || thread_.joinable()) return;
  thread_ = std::thread([this] { Loop(); });
}

void StoreIntegrity::Loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    if (wake_.wait_for(lock, interval_, [this] { return stopping_; })) return;
    lock.unlock();
    CheckNow("scheduled").IgnoreError();  // logged, counted and kept in last()
    lock.lock();
  }
}

void StoreIntegrity::CountRepairAtStart() {
  std::lock_guard lock(mu_);
  ++failures_;
  ++repairs_;
}

absl::Status StoreIntegrity::last() const {
  std::lock_guard lock(mu_);
  return last_;
}

uint64_t StoreIntegrity::failures() const {
  std::lock_guard lock(mu_);
  return failures_;
}

uint64_t StoreIntegrity::repairs() const {
  std::lock_guard lock(mu_);
  return repairs_;
}

}  // namespace adcsc::ops
