// The cluster status page an administrator opens on a node's ops port (GET /): every node
// with its mode, readiness and checks, the CA's health per node with its last error,
// replication lag and writes short of quorum, certificate expiry against the thresholds, API
// outcomes over the last hour and the latest failures. One server-rendered HTML document: no
// script, no external assets (it works on an isolated management network), a stylesheet
// allowed by its hash (StatusPageCsp), a meta refresh to keep it current, a layout that
// reads on a phone. Pure functions of the model; the node gathers it (node/app/status_view.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "node/ops/activity.h"

namespace adcsc::ops {

struct StatusPageCheck {
  std::string name;  // store, ca <dc\ca>, cluster, certificate, mode
  bool ok = false;
  std::string detail;
};

struct StatusPageCertificate {
  std::string role;
  std::string subject;
  std::string source;
  int64_t not_after_ms = 0;
  std::string state;  // ok, warning, critical, expired
};

struct StatusPagePeerLink {
  std::string peer;
  uint64_t lag_mutations = 0;
  int64_t lag_ms = 0;
  int64_t last_answer_ms = 0;  // Unix ms; 0: never
  uint32_t protocol = 0;       // 0: not heard from
  std::string refused;         // why the node refuses the peer's protocol; empty: it does not
};

struct StatusPageNode {
  std::string node_id;
  std::string address;  // the cluster address it was asked at
  std::string error;    // set: it did not answer (every other member is empty)
  std::string version;
  std::string ca_identity;
  bool cut_off = false;       // fault injection
  bool ca_outage = false;     // fault injection
  bool health_known = false;  // false: a node too old to report its health
  bool ready = false;
  std::string lb;    // UP, DRAIN, DOWN
  std::string mode;  // active, drain, maint
  std::vector<StatusPageCheck> checks;
  int64_t records = 0;
  uint32_t write_quorum = 0;
  uint64_t quorum_writes = 0;
  uint64_t under_replicated_writes = 0;
  uint64_t refused_writes = 0;
  std::vector<StatusPagePeerLink> peers;
  bool certificates_known = false;
  std::vector<StatusPageCertificate> certificates;
  bool activity_known = false;
  ActivitySnapshot activity;
};

struct StatusPageModel {
  std::string cluster_id;  // empty: a single node
  std::string served_by;   // the node that rendered the page
  std::string version;
  int64_t now_ms = 0;
  int warn_days = 30;     // ops.warn_certificate_days
  int critical_days = 7;  // ops.critical_certificate_days
  int refresh_seconds = 15;
  std::vector<StatusPageNode> nodes;  // the serving node first
};

std::string RenderStatusPage(const StatusPageModel& model);

// The Content-Security-Policy the page needs: nothing but its own stylesheet (by hash).
std::string StatusPageCsp();

// Text made safe inside HTML element content and quoted attribute values.
std::string HtmlEscape(std::string_view text);

}  // namespace adcsc::ops
