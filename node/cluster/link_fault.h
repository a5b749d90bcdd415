// Fault injection on a node's peer links, for the link drill: one-way partitions (refuse what
// the peers send, or fail what this node sends), message loss, and added latency. The gRPC
// glue asks it before each peer message: the services before they handle a request from a
// peer ("in"), the transport before it sends one ("out"). A lost message fails its call with
// UNAVAILABLE at once, as a reset connection would; the callers already retry those (the
// replicator resends, lookups ask the other peers), which is what the drill exercises.
// Set through Peer.SetFault (adcsc ctl fault link ...); never active unless an operator sets
// it on a node that allows fault injection. Thread-safety: all methods are safe from any thread.
#pragma once

#include <cstdint>
#include <mutex>
#include <random>
#include <string>

#include "absl/status/status.h"

namespace adcsc::cluster {

struct LinkFault {
  bool cut_in = false;   // refuse every request from the peers
  bool cut_out = false;  // fail every request to the peers
  double loss = 0;       // 0..1, each message in either direction
  int64_t delay_ms = 0;  // before each request from a peer is handled (the peers see a slow link)

  bool active() const { return cut_in || cut_out || loss > 0 || delay_ms > 0; }
  bool cut_off() const { return cut_in && cut_out; }
};

class LinkFaultSwitch {
 public:
  // Loss is clamped to [0, 1] and the delay to [0, 60 s].
  void Set(LinkFault fault);
  LinkFault Get() const;

  // Before handling a request from a peer: UNAVAILABLE when refused or lost, after waiting
  // the delay when one is set.
  absl::Status AdmitIncoming();
  // Before sending to `peer`: UNAVAILABLE when cut or lost. Never waits: the senders include
  // the replicator's and a request's own threads, and the delay on the receiving side already
  // makes every exchange with this node slow for its peers.
  absl::Status AdmitOutgoing(const std::string& peer);

 private:
  bool Lose();
  mutable std::mutex mu_;
  LinkFault fault_;
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace adcsc::cluster
