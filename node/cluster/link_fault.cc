#include "node/cluster/link_fault.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"

namespace adcsc::cluster {

void LinkFaultSwitch::Set(LinkFault fault) {
  fault.loss = std::clamp(fault.loss, 0.0, 1.0);
  fault.delay_ms = std::clamp<int64_t>(fault.delay_ms, 0, 60'000);
  std::lock_guard lock(mu_);
  fault_ = fault;
}

LinkFault LinkFaultSwitch::Get() const {
  std::lock_guard lock(mu_);
  return fault_;
}

bool LinkFaultSwitch::Lose() {
  std::lock_guard lock(mu_);
  if (fault_.loss <= 0) return false;
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng_) < fault_.loss;
}

absl::Status LinkFaultSwitch::AdmitIncoming() {
  const LinkFault f = Get();
  if (!f.active()) return absl::OkStatus();
  if (f.cut_in) return absl::UnavailableError("this node is cut off from its peers (fault injection)");
  if (f.delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(f.delay_ms));
  if (Lose()) return absl::UnavailableError("message from the peer lost (fault injection)");
  return absl::OkStatus();
}

absl::Status LinkFaultSwitch::AdmitOutgoing(const std::string& peer) {
  const LinkFault f = Get();
  if (!f.active()) return absl::OkStatus();
  if (f.cut_out) return absl::UnavailableError(absl::StrCat("cut off from peer ", peer, " (fault injection)"));
  if (Lose()) return absl::UnavailableError(absl::StrCat("message to peer ", peer, " lost (fault injection)"));
  return absl::OkStatus();
}

}  // namespace adcsc::cluster
