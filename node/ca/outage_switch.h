// A CA backend that can be cut off on purpose: while the switch is on, every call fails at
// once with RPC_S_SERVER_UNAVAILABLE, as if the CA had gone away, and the node's health turns
// not ready. It is the `ca-outage` failover drill's fault (`adcsc ctl fault --config F
// ca-cut|ca-heal`), set through the node's Peer.SetFault and only when the config has
// cluster.allow_fault_injection = true. Nothing reaches the real CA while it is on.
// Thread-safe: the switch is an atomic; calls go straight through to `inner` otherwise.
#pragma once

#include <atomic>

#include "node/ca/ca_backend.h"
#include "node/ca/hresult.h"

namespace adcsc::ca {

class OutageSwitch final : public CaBackend {
 public:
  explicit OutageSwitch(CaBackend* inner) : inner_(inner) {}  // borrowed

  void set_outage(bool on) { outage_.store(on); }
  bool outage() const { return outage_.load(); }
  CaBackend* inner() const { return inner_; }

  absl::StatusOr<CaResponse> Submit(const SubmitRequest& r) override {
    if (outage()) return Down();
    return inner_->Submit(r);
  }
  absl::StatusOr<CaResponse> Retrieve(const RetrieveRequest& r) override {
    if (outage()) return Down();
    return inner_->Retrieve(r);
  }
  absl::Status Ping(const CaTarget& target, const CallerIdentity& caller) override {
    if (outage()) return Down();
    return inner_->Ping(target, caller);
  }
  std::string Kind() const override { return inner_->Kind(); }
  std::string CallName() const override { return inner_->CallName(); }
  std::optional<CaConnectionStats> ConnectionStats() override { return inner_->ConnectionStats(); }

 private:
  static absl::Status Down() {
    return CaError(hr::kRpcServerUnavailable,
                   "the CA is cut off from this node by fault injection (a ca-outage drill; heal with: adcsc ctl "
                   "fault --config NODE.toml ca-heal)");
  }

  CaBackend* inner_;
  std::atomic<bool> outage_{false};
};

}  // namespace adcsc::ca
