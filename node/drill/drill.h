// A failover drill: Jamf-like traffic through the load balancer while a scenario acts on a
// node, then the checks and timings of docs/operations.md "Failover drills". Scenarios:
//   kill             SIGKILL the node, hold, start it again
//   freeze           SIGSTOP the node, hold, SIGCONT (a VM pause, a swap storm: there but silent)
//   drain            drain it through the admin channel, hold, resume
//   partition        cut it off from its peers (fault switch), hold, heal
//   ca-outage        cut it off from its CA (fault switch), hold, heal
//   ca-slow          the CA answers slowly for every node (ca.slow_command), hold, restore
//   slow-disk        every write and fsync of the node's store waits (fault switch), hold, heal
//   clock-jump       the node's wall clock steps forward, then back, by minutes (its clock
//                    command), then to true time
//   link             the node's peer links: lossy, then slow, then one-way (in, then out), then
//                    flapping (cut and healed in turn), a quarter of the hold each; then healed
//   rolling-restart  every node in turn: drain, stop (SIGTERM), start, resume
//   reload           Jamf Pro's client identity and every node's API identity rotate under
//                    the traffic through `adcsc ctl reload` (an overlap with both pins, the
//                    traffic switches, only the new pin), then back the same way; no restart
//   soak             faults from the list above (kill included) strike nodes on a random
//                    schedule drawn from --seed, one at a time, for --duration; the report adds
//                    a timeline (latency and failures per interval, with the faults)
// Phases: "baseline" (warm-up), "fault" (the fault held), "recovery" (from the restore until
// the node is back and replication converged), "after" (a tail); rolling-restart has one
// "restart <node>" phase per node instead of fault and recovery, reload "overlap", "new pin
// only" and "rotate back".
// RunDrill blocks for the whole drill; it runs its own threads (traffic, HAProxy watcher) and
// joins them before it returns.
#pragma once

#include <chrono>
#include <string>
#include <vector>

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
  // The faults' strength.
  int64_t disk_write_delay_ms = 50, disk_sync_delay_ms = 1'000;  // slow-disk
  int64_t clock_jump_s = 300;                                    // clock-jump: +this, then -this
  double link_loss = 0.3;                                        // link: the lossy quarter
  int64_t link_delay_ms = 300;                                   // link: the slow quarter
  std::chrono::milliseconds flap_period{1'000};                  // link: cut, healed, cut, ...
  // soak: how long, the schedule's seed, the faults it draws from (empty: every one the drill
  // file allows), each fault's hold between the two bounds, and the quiet time between faults.
  std::chrono::milliseconds duration{600'000};
  uint64_t seed = 1;
  std::vector<std::string> soak_faults;
  std::chrono::milliseconds soak_hold_min{4'000}, soak_hold_max{12'000};
  std::chrono::milliseconds soak_gap_min{5'000}, soak_gap_max{15'000};
  std::chrono::milliseconds timeline_interval{0};  // 0: chosen from the duration
};

// One fault of a soak, as drawn from the seed: the quiet time before it, the scenario, its
// node and how long it is held.
struct PlannedFault {
  int64_t gap_ms = 0;
  std::string scenario;
  std::string target;
  int64_t hold_ms = 0;
};

// The soak's schedule: `count` faults drawn from `seed`, each a scenario from `scenarios` on a
// node from `nodes`, holds and gaps uniform within the options' bounds. The same seed gives the
// same schedule (a failed soak can be run again as it was).
std::vector<PlannedFault> PlanSoak(uint64_t seed, size_t count, const std::vector<std::string>& scenarios,
                                   const std::vector<std::string>& nodes, const DrillOptions& options);

// The single-fault scenarios a soak may draw from the drill file: each one whose needs the
// file meets (kill needs pid_file or kill and start, clock-jump a clock command, ...).
std::vector<std::string> SoakScenarios(const DrillConfig& config);

// The scenarios RunDrill knows.
bool KnownScenario(const std::string& scenario);

// Runs the drill. An error (not a failed report) when the drill cannot start: an unknown node
// or scenario, a drill file that lacks what the scenario needs, unusable identity files.
absl::StatusOr<DrillReport> RunDrill(const DrillConfig& config, DrillOptions options, NodeControl* control);

}  // namespace adcsc::drill
