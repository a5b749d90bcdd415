#include "node/ops/health_monitor.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace adcsc::ops {
namespace {

// `at_ms` of the result holds the clock's monotonic time; Observations turns it into wall time.
Probe Run(const std::function<absl::Status()>& probe, const Clock& clock, std::string_view what) {
  Probe p;
  const int64_t started = clock.NowMonotonicMillis();
  const absl::Status s = probe ? probe() : absl::UnimplementedError("no probe");
  p.duration_ms = clock.NowMonotonicMillis() - started;
  p.ok = s.ok();
  p.detail = s.ok() ? std::string(what) : std::string(s.message());
  p.at_ms = clock.NowMonotonicMillis();
  return p;
}

}  // namespace

HealthMonitor::HealthMonitor(HealthSources sources, std::chrono::milliseconds interval, HealthPolicy policy)
    : sources_(std::move(sources)), interval_(interval), policy_(policy), certificates_(sources_.certificates) {
  for (const HealthSources::Ca& ca : sources_.cas) cas_.push_back({ca.ca_config, {}});
  ca_sources_ = sources_.cas;
}

HealthMonitor::~HealthMonitor() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void HealthMonitor::Start() {
  ProbeNow();
  thread_ = std::thread([this] { Loop(); });
}

void HealthMonitor::Loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    sources_.clock->WaitFor(cv_, lock, interval_, [this] { return stopping_ || probe_requested_; });
    if (stopping_) return;
    probe_requested_ = false;
    lock.unlock();
    ProbeNow();
    lock.lock();
  }
}

void HealthMonitor::ProbeNow() {
  // Probes run outside the lock: a CA ping may take its connect timeout, and a write check
  // as long as the disk makes it (Observations watches that one while it runs).
  {
    std::lock_guard lock(mu_);
    store_started_ms_ = sources_.clock->NowMonotonicMillis();
  }
  const Probe store = Run(sources_.store_check, *sources_.clock, "durable write check");
  {
    std::lock_guard lock(mu_);
    store_started_ms_.reset();
  }
  std::vector<HealthSources::Ca> to_ping;
  {
    std::lock_guard lock(mu_);
    to_ping = ca_sources_;
  }
  std::vector<CaProbe> cas;
  for (const HealthSources::Ca& ca : to_ping) {
    cas.push_back({ca.ca_config, Run(ca.ping, *sources_.clock, "CA answered a ping")});
  }
  std::optional<ClusterView> cluster = sources_.cluster ? sources_.cluster() : std::nullopt;
  std::lock_guard lock(mu_);
  store_ = store;
  // A reload during the round may have removed some of them.
  std::erase_if(cas, [this](const CaProbe& p) {
    return std::none_of(ca_sources_.begin(), ca_sources_.end(),
                        [&](const HealthSources::Ca& c) { return c.ca_config == p.ca_config; });
  });
  cas_ = std::move(cas);
  cluster_ = cluster;
  probed_ = true;
}

HealthObservations HealthMonitor::Observations() const {
  HealthObservations o;
  o.now_ms = sources_.clock->NowUnixMillis();
  o.mode = sources_.mode->mode();
  std::vector<CertificateExpiry> seen_clients =
      sources_.seen_clients ? sources_.seen_clients() : std::vector<CertificateExpiry>{};
  std::lock_guard lock(mu_);
  o.certificate_not_after_ms = ApiNotAfterLocked();
  o.certificates = certificates_;
  o.certificates.insert(o.certificates.end(), seen_clients.begin(), seen_clients.end());
  o.store = store_;
  o.cas = cas_;
  const int64_t monotonic_now = sources_.clock->NowMonotonicMillis();
  if (probed_) {
    // A probe's age is monotonic time, so a wall clock step neither ages every result at once
    // (a node stepped forward would report DOWN) nor keeps a stuck probe fresh for minutes.
    auto to_wall = [&](Probe& p) { p.at_ms = o.now_ms - (monotonic_now - p.at_ms); };
    to_wall(o.store);
    for (CaProbe& ca : o.cas) to_wall(ca.probe);
  }
  if (store_started_ms_.has_value() && monotonic_now - *store_started_ms_ > policy_.max_store_write_ms) {
    // A write check that has not returned: the disk stalls now; no need to wait for it.
    o.store.ok = false;
    o.store.duration_ms = monotonic_now - *store_started_ms_;
    o.store.detail = absl::StrCat("the durable write check has not returned for ", o.store.duration_ms,
                                  " ms (the store's disk is stalled or very slow)");
    o.store.at_ms = o.now_ms;
  }
  if (cluster_.has_value()) {
    o.clustered = true;
    o.peers = cluster_->peers;
    o.peers_reachable = cluster_->peers_reachable;
    o.refuse_on_quorum_loss = cluster_->refuse_on_quorum_loss;
    o.snapshot_in_progress = cluster_->snapshot_in_progress;
    o.lag_mutations = cluster_->lag_mutations;
    o.refused_for_version = cluster_->refused_for_version;
  }
  return o;
}

void HealthMonitor::SetCertificates(std::vector<CertificateExpiry> certificates) {
  std::lock_guard lock(mu_);
  certificates_ = std::move(certificates);
}

void HealthMonitor::SetCas(std::vector<HealthSources::Ca> cas) {
  {
    std::lock_guard lock(mu_);
    std::erase_if(cas_, [&](const CaProbe& p) {
      return std::none_of(cas.begin(), cas.end(),
                          [&](const HealthSources::Ca& c) { return c.ca_config == p.ca_config; });
    });
    ca_sources_ = std::move(cas);
    probe_requested_ = true;
  }
  cv_.notify_all();
}

int64_t HealthMonitor::ApiNotAfterLocked() const {
  for (const CertificateExpiry& c : certificates_) {
    if (c.role == kApiIdentityRole) return c.not_after_ms;
  }
  return 0;
}

int64_t HealthMonitor::certificate_not_after_ms() const {
  std::lock_guard lock(mu_);
  return ApiNotAfterLocked();
}

HealthReport HealthMonitor::Report() const { return Evaluate(Observations(), policy_); }

}  // namespace adcsc::ops
