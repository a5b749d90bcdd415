// A failover drill: Jamf-like traffic through the load balancer while a scenario acts on a
// node, then the checks and timings of docs/operations.md "Failover drills". Scenarios:
//   kill             SIGKILL the node, hold, start it again
//   freeze           SIGSTOP the node, hold, SIGCONT (a VM pause, a swap storm: there but silent)
//   drain            drain it through the admin channel, hold, resume
//   partition        cut it off from its peers (fault switch), hold, heal
//   ca-outage        cut it off from its CA (fault switch), hold, heal
//   ca-slow          the CA answers slowly for every node (ca.slow_command), hold, restore
//   rolling-restart  every node in turn: drain, stop (SIGTERM), start, resume
// Phases: "baseline" (warm-up), "fault" (the fault held), "recovery" (from the restore until
// the node is back and replication converged), "after" (a tail); rolling-restart has one
// "restart <node>" phase per node instead of fault and recovery.
// RunDrill blocks for the whole drill; it runs its own threads (traffic, HAProxy watcher) and
// joins them before it returns.
#pragma once

#include <chrono>
#include <string>

#include "absl/status/statusor.h"
#include "node/drill/drill_config.h"
#include "node/drill/node_control.h"
#include "node/drill/report.h"
#include "node/drill/traffic.h"

namespace adcsc::drill {

struct DrillOptions {
  std::string scenario;    // see above
  std::string target;      // node ID; empty: the last node in the drill file
  TrafficOptions traffic;  // url, identity and CA are filled from the drill file
  std::chrono::milliseconds warmup{3'000};
  std::chrono::milliseconds hold{5'000};
  std::chrono::milliseconds tail{3'000};
  std::chrono::milliseconds recover_timeout{60'000};  // for the node to be back, and for convergence
  Objectives objectives;
};

// The scenarios RunDrill knows.
bool KnownScenario(const std::string& scenario);

// Runs the drill. An error (not a failed report) when the drill cannot start: an unknown node
// or scenario, a drill file that lacks what the scenario needs, unusable identity files.
absl::StatusOr<DrillReport> RunDrill(const DrillConfig& config, DrillOptions options, NodeControl* control);

}  // namespace adcsc::drill
