// What adcsc-lb-agent tells HAProxy's agent-check (HAProxy 2.6 grammar): a line such as
// "up ready 100%", "drain", "maint" or "down#store: disk I/O error", built from the node's
// last /status answer (and, for a node that is down, the failing check from its
// /health/ready: /status names no checks to a caller without an administrator's certificate).
// Pure functions, so the mapping is unit-tested without sockets.
//
//   node UP                         -> "up ready <weight>%"
//   node DRAIN                      -> "up drain"    (no new connections; existing ones finish)
//   node in maintenance             -> "maint"
//   node DOWN for a failing check   -> "down#<check>: <what was seen>"
//   no answer for stale_ms, or none -> "down#node not answering"
//
// The weight falls from 100% as the CA's ping time grows (at most 50 ms: 100%; 1 s or
// more: 10%), so a node with a slow path to the CA gets less of the round-robin.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace adcsc::lbagent {

// The parts of a node's /status the agent uses.
struct NodeView {
  std::string lb;      // "UP", "DRAIN", "DOWN"
  std::string mode;    // "active", "drain", "maint"
  std::string reason;  // the first failing check, "name: detail"; empty when none
  int64_t ca_ping_ms = 0;
  int64_t at_ms = 0;  // when it was read (monotonic ms, compared with AgentReply's now_ms)
};

// Parses a /status body, as anyone gets it ({"status":"UP","mode":..,"ca_ping_ms":..}) or as an
// administrator does (with the health report under "health"); nullopt when it is neither (the
// node is then treated as not answering).
std::optional<NodeView> ParseStatus(std::string_view json, int64_t at_ms);

// The first failing check other than the service mode in a health report (the body of
// /health/ready), as "name: detail"; empty when none or not a report.
std::string FirstFailingCheck(std::string_view health_json);

int WeightPercent(int64_t ca_ping_ms);

// The agent-check line, ending in "\n". `last` is the newest answer the node gave, if any.
std::string AgentReply(const std::optional<NodeView>& last, int64_t now_ms, int64_t stale_ms);

}  // namespace adcsc::lbagent
