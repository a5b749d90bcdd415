// What `adcsc drill` needs to know about a cluster: the load balancer's URL (and, for
// HAProxy, its stats socket), the Jamf client identity, the administrator's identity for the
// admin channel, the CA config the traffic asks for, and for each node its direct API and
// ops URLs, its configuration (fault injection uses its own cluster certificate), its pid
// file and the command that starts it. `./deploy/quickstart` writes one for its cluster
// (run/quickstart/drill.toml); docs/operations.md describes every key. Plain data once loaded:
// read it from any thread.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace adcsc::drill {

struct DrillNode {
  std::string id;
  std::string api_url;                    // https://HOST:PORT of its API, for the final check
  std::string ops_url;                    // https://HOST:PORT of its ops listener (ops.tls = true)
  std::filesystem::path config;           // its node.toml (needed by partition and ca-outage)
  std::filesystem::path pid_file;         // kill and rolling-restart signal the process in it, or
  std::vector<std::string> kill_command;  // run "kill": argv that hard-crashes it (e.g. over ssh), and
  std::vector<std::string> stop_command;  // run "stop": argv that stops it gracefully (rolling-restart)
  std::vector<std::string> start;         // argv that starts it and returns (kill, rolling-restart)
  std::string lb_server;                  // its server name in the load balancer (default: id)
  // For clock-jump: argv that steps the node's wall clock; "{offset}" in any argument is
  // replaced by the signed offset in seconds from true time ("+300", "-300", "+0"). The
  // quickstart writes libfaketime's control file; on a real host, e.g. ssh ... date -s.
  std::vector<std::string> clock_command;
  // For reload: the node configurations of a rotation — `reload_overlap` with the new API
  // identity and both Jamf Pro pins (old and new), `reload_final` with only the new pin —
  // and argv that makes the node re-read its configuration (default: this binary's
  // `adcsc ctl reload --config <config>`, for nodes on this host).
  std::filesystem::path reload_overlap, reload_final;
  std::vector<std::string> reload_command;
};

struct DrillConfig {
  std::filesystem::path source;
  std::string lb_url;                          // what Jamf Pro is configured with
  std::string lb_mode = "tls-termination";     // or "tcp" (pass-through)
  std::filesystem::path haproxy_stats_socket;  // optional: times the LB's own view
  std::string haproxy_backend = "adcsc_nodes";
  // The Jamf Pro client identity (PEM), and the CA of the servers' certificates.
  std::filesystem::path client_cert, client_key, server_ca;
  // The administrator's identity for drain and resume (PEM), and the ops listeners' CA.
  std::filesystem::path admin_cert, admin_key, ops_ca;
  std::string dc, ca, template_name = "JamfDevice";
  // Optional: prints the CA's request list as JSON ({"requests":[{"subject":..},..]}, what
  // `adcs-emulator ctl list` prints), to count duplicate CA requests from the CA's own view.
  std::vector<std::string> ca_list_command;
  // Optional, for the ca-slow scenario: argv that makes the CA answer slowly (e.g. the
  // emulator's `ctl set latency_ms 1500`), and argv that puts it back.
  std::vector<std::string> ca_slow_command, ca_restore_command;
  // For reload: Jamf Pro's new client identity (PEM), which the traffic switches to once every
  // node holds both pins (as Jamf Pro does when the new .pfx is uploaded).
  std::filesystem::path reload_client_cert, reload_client_key;
  std::vector<DrillNode> nodes;

  const DrillNode* Find(const std::string& id) const;
};

// Every problem at once, each as "<file>: <key>: <what is wrong>".
absl::StatusOr<DrillConfig> LoadDrillConfig(const std::filesystem::path& path);
absl::StatusOr<DrillConfig> ParseDrillConfig(std::string_view toml_text, const std::filesystem::path& source);

}  // namespace adcsc::drill
