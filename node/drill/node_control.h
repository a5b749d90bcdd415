// What a drill does to a node, and how it looks at one: the seam between the drill's
// orchestration and the processes, admin channel and fault switches it acts on (tests can
// put a fake here). ProcessControl is the real one: signals from the pid file, the start
// command, POST /admin/mode, Peer.SetFault with the node's own certificate, and the ops
// listener's /health/ready and /status. Thread-safety: the drill calls one method at a time;
// Probe may run beside the others.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "node/cluster/fault_client.h"
#include "node/drill/drill_config.h"

namespace adcsc::drill {

struct NodeProbe {
  bool answered = false;                           // the ops listener answered
  bool ready = false;                              // /health/ready said 200
  bool has_vector = false;                         // /status had the cluster's version vector
  std::map<std::string, uint64_t> version_vector;  // origin -> mutations held from it
};

class NodeControl {
 public:
  virtual ~NodeControl() = default;
  virtual absl::Status Kill(const DrillNode& node) = 0;  // SIGKILL
  // SIGSTOP / SIGCONT: the process is there and holds its sockets, but does nothing (a VM
  // pause, a swap storm, a disk the kernel waits on). Freeze is undone by Thaw, whatever
  // happens in between: the drill thaws in every path, including its own errors.
  virtual absl::Status Freeze(const DrillNode& node) = 0;
  virtual absl::Status Thaw(const DrillNode& node) = 0;
  virtual absl::Status Stop(const DrillNode& node, std::chrono::milliseconds grace) = 0;  // SIGTERM, wait
  virtual absl::Status Start(const DrillNode& node) = 0;                                  // the start command
  virtual absl::Status SetMode(const DrillNode& node, const std::string& mode) = 0;       // active, drain, maint
  // The node's fault switches (Peer.SetFault): partition, CA outage, link and disk faults.
  virtual absl::Status SetFault(const DrillNode& node, const cluster::FaultChange& change) = 0;
  // Steps the node's wall clock to `offset_s` seconds from true time (its clock command).
  virtual absl::Status SetClockOffset(const DrillNode& node, int64_t offset_s) = 0;
  virtual NodeProbe Probe(const DrillNode& node) = 0;
  // The CA answers slowly (true) or as before (false): ca.slow_command / ca.restore_command.
  virtual absl::Status SetCaSlow(bool slow) = 0;
  // Installs `text` as the node's configuration file (written beside it, then renamed over it,
  // its mode kept) and has the node re-read it (its reload command); an error names what
  // failed, including a reload the node refused.
  virtual absl::Status ApplyConfig(const DrillNode& node, const std::string& text) = 0;
  // A call to the node's API directly (not through the load balancer) as the client identity
  // in `cert`/`key`: the HTTP status of GET /api/v1/version, or the transport error.
  virtual absl::StatusOr<int> ApiStatusAs(const DrillNode& node, const std::filesystem::path& cert,
                                          const std::filesystem::path& key) = 0;
};

class ProcessControl final : public NodeControl {
 public:
  explicit ProcessControl(const DrillConfig& config) : config_(config) {}
  absl::Status Kill(const DrillNode& node) override;
  absl::Status Freeze(const DrillNode& node) override;
  absl::Status Thaw(const DrillNode& node) override;
  absl::Status Stop(const DrillNode& node, std::chrono::milliseconds grace) override;
  absl::Status Start(const DrillNode& node) override;
  absl::Status SetMode(const DrillNode& node, const std::string& mode) override;
  absl::Status SetFault(const DrillNode& node, const cluster::FaultChange& change) override;
  absl::Status SetClockOffset(const DrillNode& node, int64_t offset_s) override;
  NodeProbe Probe(const DrillNode& node) override;
  absl::Status SetCaSlow(bool slow) override;
  absl::Status ApplyConfig(const DrillNode& node, const std::string& text) override;
  absl::StatusOr<int> ApiStatusAs(const DrillNode& node, const std::filesystem::path& cert,
                                  const std::filesystem::path& key) override;

 private:
  const DrillConfig& config_;
};

// True when `pid` runs (a zombie does not).
bool Alive(int pid);

// The process ID in `pid_file`, checked to be alive.
absl::StatusOr<int> ReadLivePid(const std::filesystem::path& pid_file);

}  // namespace adcsc::drill
