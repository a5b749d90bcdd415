// The operator's side of fault injection (failover drills): sets a node's fault switches
// through its own cluster listener, with its own certificate, as `adcsc ctl fault` and
// `adcsc drill` do. The node accepts it only when its cluster.allow_fault_injection is true.
// Each call opens its own channel: safe from any thread.
#pragma once

#include <optional>

#include "absl/status/statusor.h"
#include "adcsc/cluster/v1/cluster.pb.h"
#include "node/config/config.h"

namespace adcsc::cluster {

// This node as a peer of itself: its cluster listener, reached on loopback when it listens
// on every address.
node::PeerConfig SelfAsPeer(const node::Config& config);

// The switches to set; unset ones keep their state. `link` and `disk` replace the whole link
// or disk fault (all zero heals it).
struct FaultChange {
  std::optional<bool> cut_off;
  std::optional<bool> ca_outage;
  std::optional<v1::LinkFault> link;
  std::optional<v1::DiskFault> disk;
};

// Sets the switches in `change` on the node whose configuration is `config` (it must have a
// [cluster] section) and returns their state. Errors name the node and say what it answered.
absl::StatusOr<v1::FaultState> SetNodeFault(const node::Config& config, const FaultChange& change);

}  // namespace adcsc::cluster
