#include "node/http/connection_admission.h"

#include <algorithm>

namespace adcsc::node {
namespace {

// Per-source entries kept before idle ones (no connection, a full budget) are swept.
constexpr size_t kMaxSources = 16384;
// The source key of exempt connections: they share no per-source state.
constexpr char kExemptSource[] = "";

}  // namespace

std::string_view RefusalName(Refusal r) {
  switch (r) {
    case Refusal::kConnectionCap:
      return "connection_cap";
    case Refusal::kSourceConnections:
      return "source_connections";
    case Refusal::kSourceRate:
      return "source_rate";
    case Refusal::kEvicted:
      return "evicted";
    case Refusal::kUnmappedCertificate:
      return "unmapped_certificate";
    case Refusal::kHandshakeFailed:
      return "handshake_failed";
    case Refusal::kSlowClient:
      return "slow_client";
  }
  return "unknown";
}

std::string_view RefusalReason(Refusal r) {
  switch (r) {
    case Refusal::kConnectionCap:
      return "api.max_connections held by mapped clients";
    case Refusal::kSourceConnections:
      return "the source holds api.max_connections_per_source connections not yet mapped";
    case Refusal::kSourceRate:
      return "the source spent its refusal budget (api.refusals_per_source_per_s, api.refusal_burst)";
    case Refusal::kEvicted:
      return "closed to make room for a new connection (api.max_connections - api.reserved_connections full)";
    case Refusal::kUnmappedCertificate:
      return "client certificate not mapped (api.client_pins)";
    case Refusal::kHandshakeFailed:
      return "TLS handshake failed or exceeded api.handshake_timeout_ms";
    case Refusal::kSlowClient:
      return "no complete request within api.header_timeout_ms";
  }
  return "unknown";
}

ConnectionAdmission::ConnectionAdmission(AdmissionLimits limits) : limits_(std::move(limits)) {}

bool ConnectionAdmission::Exempt(const text::Address16& a) const {
  return std::any_of(limits_.exempt.begin(), limits_.exempt.end(),
                     [&a](const text::AddressPrefix& p) { return p.Contains(a); });
}

void ConnectionAdmission::Refill(Source& s, Time now) const {
  if (now <= s.refilled) return;
  const double seconds = std::chrono::duration<double>(now - s.refilled).count();
  s.tokens = std::min(limits_.refusal_burst, s.tokens + seconds * limits_.refusals_per_s);
  s.refilled = now;
}

ConnectionAdmission::Source& ConnectionAdmission::SourceFor(const std::string& key, Time now) {
  auto [it, fresh] = sources_.try_emplace(key);
  if (fresh) {
    it->second.tokens = limits_.refusal_burst;
    it->second.refilled = now;
  } else {
    Refill(it->second, now);
  }
  return it->second;
}

void ConnectionAdmission::SweepSources(Time now) {
  if (sources_.size() < kMaxSources) return;
  for (auto it = sources_.begin(); it != sources_.end();) {
    Refill(it->second, now);
    if (it->second.unverified == 0 && it->second.tokens >= limits_.refusal_burst) {
      it = sources_.erase(it);
    } else {
      ++it;
    }
  }
}

ConnectionAdmission::Decision ConnectionAdmission::Admit(uint64_t id, const text::Address16& remote, Time now) {
  Decision d;
  const bool exempt = Exempt(remote);
  d.source = text::SourceKey(remote);
  std::lock_guard lock(mu_);
  SweepSources(now);
  if (!exempt) {
    Source& s = SourceFor(d.source, now);
    if (s.tokens < 1) {
      d.refusal = Refusal::kSourceRate;
      counts_[static_cast<int>(d.refusal)]++;
      return d;
    }
    if (s.unverified >= limits_.max_per_source) {
      d.refusal = Refusal::kSourceConnections;
      counts_[static_cast<int>(d.refusal)]++;
      return d;
    }
  }
  const size_t shared = limits_.max_connections - std::min(limits_.reserved_for_mapped, limits_.max_connections);
  if (unverified_ + mapped_ >= limits_.max_connections || unverified_ >= shared) {
    // Make room by closing the oldest unverified connection, if there is one.
    auto oldest =
        std::find_if(connections_.begin(), connections_.end(), [](const auto& entry) { return !entry.second.mapped; });
    if (oldest == connections_.end() || shared == 0) {
      d.refusal = Refusal::kConnectionCap;
      counts_[static_cast<int>(d.refusal)]++;
      return d;
    }
    d.evict = oldest->first;
    counts_[static_cast<int>(Refusal::kEvicted)]++;
    if (!oldest->second.source.empty()) Charge(oldest->second.source, now);
    Forget(oldest);
  }
  connections_[id] = Connection{exempt ? std::string(kExemptSource) : d.source, false};
  unverified_++;
  if (!exempt) sources_[d.source].unverified++;
  d.admitted = true;
  return d;
}

bool ConnectionAdmission::Mapped(uint64_t id) {
  std::lock_guard lock(mu_);
  auto it = connections_.find(id);
  if (it == connections_.end()) return false;
  if (it->second.mapped) return true;
  it->second.mapped = true;
  unverified_--;
  mapped_++;
  if (!it->second.source.empty()) {
    auto s = sources_.find(it->second.source);
    if (s != sources_.end() && s->second.unverified > 0) s->second.unverified--;
  }
  return true;
}

void ConnectionAdmission::Charge(const std::string& key, Time now) {
  Source& s = SourceFor(key, now);
  // The budget may go below zero (down to -burst): a source that had many connections
  // refused at once waits for all of them.
  s.tokens = std::max(-limits_.refusal_burst, s.tokens - 1);
}

void ConnectionAdmission::Refused(uint64_t id, Refusal kind, Time now) {
  std::lock_guard lock(mu_);
  auto it = connections_.find(id);
  // An evicted connection was counted (and charged) as evicted; its failed handshake that
  // follows is not another refusal.
  if (it == connections_.end()) return;
  counts_[static_cast<int>(kind)]++;
  // A mapped client is not charged: the budget is for clients nobody let in.
  if (!it->second.mapped && !it->second.source.empty()) Charge(it->second.source, now);
}

void ConnectionAdmission::Forget(std::map<uint64_t, Connection>::iterator it) {
  if (it->second.mapped) {
    mapped_--;
  } else {
    unverified_--;
    if (!it->second.source.empty()) {
      auto s = sources_.find(it->second.source);
      if (s != sources_.end() && s->second.unverified > 0) s->second.unverified--;
    }
  }
  connections_.erase(it);
}

void ConnectionAdmission::Closed(uint64_t id) {
  std::lock_guard lock(mu_);
  auto it = connections_.find(id);
  if (it != connections_.end()) Forget(it);
}

uint64_t ConnectionAdmission::refusals(Refusal kind) const {
  std::lock_guard lock(mu_);
  return counts_[static_cast<int>(kind)];
}

size_t ConnectionAdmission::unverified() const {
  std::lock_guard lock(mu_);
  return unverified_;
}

size_t ConnectionAdmission::mapped() const {
  std::lock_guard lock(mu_);
  return mapped_;
}

}  // namespace adcsc::node
