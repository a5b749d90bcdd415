#include "node/api/submit_leases.h"

#include <algorithm>
#include <fstream>
#include <utility>

namespace adcsc::node {
namespace {

bool SameClaim(const SubmitIntent& a, const SubmitIntent& b) {
  return a.node_id == b.node_id && a.claim_id == b.claim_id;
}

}  // namespace

int64_t SubmitLeases::GraceUntil(const Clock* clock, const Options& options) {
  const int64_t full = std::max<int64_t>(options.grace.count(), 0);
  int64_t grace = full;
  if (!options.grant_stamp.empty()) {
    std::error_code ec;
    if (!std::filesystem::exists(options.grant_stamp, ec)) {
      grace = 0;  // this node never granted a peer anything: nothing to wait out
    } else {
      std::ifstream in(options.grant_stamp);
      int64_t until_unix_ms = 0;
      // Unreadable: assume the worst, the full grace. The stamp is wall time, the only clock
      // that outlives the process. A wall clock stepped back before a restart lengthens the
      // grace, at most to the full one (clamped). One stepped forward between the last grant
      // and the restart shortens it by up to the step; that matters only if the restart also
      // comes within a lease period of that grant (a peer's claim may still hold it). Known
      // edge, documented in docs/reliability.md; no clock that survives a reboot avoids it.
      if (in >> until_unix_ms) grace = std::clamp<int64_t>(until_unix_ms - clock->NowUnixMillis(), 0, full);
    }
  }
  return clock->NowMonotonicMillis() + grace;
}

SubmitLeases::SubmitLeases(const Clock* clock, Options options)
    : clock_(clock),
      options_(std::move(options)),
      grace_until_ms_(GraceUntil(clock, options_)),
      started_unix_ms_(clock->NowUnixMillis()),
      started_monotonic_ms_(clock->NowMonotonicMillis()) {}

int64_t SubmitLeases::BallotMs() const {
  return started_unix_ms_ + (clock_->NowMonotonicMillis() - started_monotonic_ms_);
}

void SubmitLeases::StampGrantLocked() {
  if (options_.grant_stamp.empty()) return;
  // A step of the wall clock while running only moves when the stamp is next written: one
  // stepped back leaves a stamp further ahead than needed (a longer grace, never a shorter
  // one); one stepped forward writes it at once. The leases themselves run on monotonic time.
  const int64_t now = clock_->NowUnixMillis();
  if (stamped_until_unix_ms_ >= now + options_.lease.count()) return;
  // Two lease periods ahead, so the next write is due one period from now. Not synced: it
  // must survive the process, and a machine that reboots takes longer than a lease anyway.
  const int64_t until = now + 2 * options_.lease.count();
  const std::filesystem::path tmp = options_.grant_stamp.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << until << "\n";
    if (!out) return;  // no stamp: a restart waits the full grace, which is safe
  }
  std::error_code ec;
  std::filesystem::rename(tmp, options_.grant_stamp, ec);
  if (!ec) stamped_until_unix_ms_ = until;
}

void SubmitLeases::AgeLocked(Entry& e, int64_t now_ms) const {
  if (e.holder.has_value() && e.expires_ms <= now_ms) {
    e.lapsed = std::move(e.holder);
    e.lapsed_ms = e.expires_ms;
    e.holder.reset();
  }
  if (e.lapsed.has_value() && e.lapsed_ms + options_.remember.count() <= now_ms) e.lapsed.reset();
}

void SubmitLeases::TrimLocked(int64_t now_ms) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    AgeLocked(it->second, now_ms);
    it = (!it->second.holder && !it->second.lapsed) ? entries_.erase(it) : std::next(it);
  }
  // Still full: drop lapsed claims first, oldest first, then the leases that expire first.
  while (entries_.size() >= std::max<size_t>(options_.max_count, 1)) {
    auto victim = entries_.begin();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      const bool it_held = it->second.holder.has_value();
      const bool victim_held = victim->second.holder.has_value();
      const int64_t it_at = it_held ? it->second.expires_ms : it->second.lapsed_ms;
      const int64_t victim_at = victim_held ? victim->second.expires_ms : victim->second.lapsed_ms;
      if (std::tie(it_held, it_at) < std::tie(victim_held, victim_at)) victim = it;
    }
    entries_.erase(victim);
  }
}

LeaseAnswer SubmitLeases::Claim(const SubmitIntent& claim, const std::string& answering_node) {
  LeaseAnswer answer;
  answer.node_id = answering_node;
  answer.started_ms = started_unix_ms_;
  const int64_t now = clock_->NowMonotonicMillis();
  std::lock_guard lock(mu_);
  if (now < grace_until_ms_) {
    answer.grant = LeaseGrant::kRestarting;
    return answer;
  }
  const Key key{claim.ca_config, claim.template_name, claim.csr_sha256};
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    if (entries_.size() >= options_.max_count) TrimLocked(now);
    it = entries_.emplace(key, Entry{}).first;
  }
  Entry& e = it->second;
  AgeLocked(e, now);
  if (e.holder.has_value() && !SameClaim(*e.holder, claim)) {
    answer.grant = LeaseGrant::kHeld;
    answer.holder = e.holder;
    return answer;
  }
  e.holder = claim;
  e.expires_ms = now + options_.lease.count();
  answer.grant = LeaseGrant::kGranted;
  if (claim.node_id != answering_node) StampGrantLocked();
  if (e.lapsed.has_value() && !SameClaim(*e.lapsed, claim)) answer.lapsed = e.lapsed;
  return answer;
}

void SubmitLeases::Release(const SubmitIntent& claim, bool settled) {
  const int64_t now = clock_->NowMonotonicMillis();
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(Key{claim.ca_config, claim.template_name, claim.csr_sha256});
    if (it != entries_.end()) {
      Entry& e = it->second;
      AgeLocked(e, now);
      if (e.holder.has_value() && SameClaim(*e.holder, claim)) {
        e.holder.reset();
        // A settled release leaves a lapsed claim alone: this holder may have lost the round
        // it was told of it in, so nobody has searched for that claim's request yet. Later
        // claimants find the record first if there is one; else they search, as they must.
        if (!settled) {
          e.lapsed = claim;
          e.lapsed_ms = now;
        }
      } else if (!settled && !e.holder.has_value()) {
        // Released here after its lease lapsed (or without a grant from this node): still
        // worth telling the next claimant about.
        e.lapsed = claim;
        e.lapsed_ms = now;
      }
      if (settled && e.lapsed.has_value() && SameClaim(*e.lapsed, claim)) e.lapsed.reset();
      if (!e.holder && !e.lapsed) entries_.erase(it);
    } else if (!settled) {
      Entry e;
      e.lapsed = claim;
      e.lapsed_ms = now;
      if (entries_.size() >= options_.max_count) TrimLocked(now);
      entries_.emplace(Key{claim.ca_config, claim.template_name, claim.csr_sha256}, std::move(e));
    }
    ++generation_;
  }
  changed_.notify_all();
}

std::optional<SubmitIntent> SubmitLeases::Holder(const std::string& ca_config, const std::string& template_name,
                                                 const std::string& csr_sha256) {
  const int64_t now = clock_->NowMonotonicMillis();
  std::lock_guard lock(mu_);
  auto it = entries_.find(Key{ca_config, template_name, csr_sha256});
  if (it == entries_.end()) return std::nullopt;
  AgeLocked(it->second, now);
  return it->second.holder;
}

void SubmitLeases::WaitForChange(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  const uint64_t seen = generation_;
  clock_->WaitFor(changed_, lock, timeout, [&] { return generation_ != seen; });
}

size_t SubmitLeases::held() const {
  const int64_t now = clock_->NowMonotonicMillis();
  std::lock_guard lock(mu_);
  return static_cast<size_t>(std::count_if(entries_.begin(), entries_.end(), [&](const auto& kv) {
    return kv.second.holder.has_value() && kv.second.expires_ms > now;
  }));
}

bool ClaimOutlivedItsNode(const SubmitIntent& claim, const LeaseAnswer& answer) {
  return answer.node_id == claim.node_id && answer.started_ms > claim.ballot_ms;
}

bool ClaimPrecedes(const SubmitIntent& a, const SubmitIntent& b) {
  return std::tie(a.ballot_ms, a.node_id, a.claim_id) < std::tie(b.ballot_ms, b.node_id, b.claim_id);
}

LeaseTally TallyLease(const std::vector<LeaseAnswer>& answers, int cluster_size) {
  LeaseTally tally;
  const int majority = std::max(cluster_size, 1) / 2 + 1;
  for (const LeaseAnswer& a : answers) {
    if (a.grant == LeaseGrant::kGranted) {
      ++tally.grants;
      if (a.lapsed.has_value() &&
          (!tally.lapsed.has_value() || a.lapsed->after_request_id < tally.lapsed->after_request_id)) {
        tally.lapsed = a.lapsed;
      }
    } else if (a.grant == LeaseGrant::kHeld && a.holder.has_value()) {
      if (!tally.wait_for.has_value() || ClaimPrecedes(*a.holder, *tally.wait_for)) tally.wait_for = a.holder;
    }
  }
  if (tally.grants >= majority) {
    tally.outcome = LeaseOutcome::kWon;
    tally.wait_for.reset();
  } else if (tally.wait_for.has_value()) {
    tally.outcome = LeaseOutcome::kWait;
  } else {
    tally.outcome = LeaseOutcome::kNoQuorum;
  }
  return tally;
}

}  // namespace adcsc::node
