// NodeInfo <-> the status page's model; see status_view.h.
#include "node/app/status_view.h"

namespace adcsc::node {

namespace v1 = adcsc::cluster::v1;

void FillNodeHealth(const ops::HealthReport& report, std::string_view mode, v1::NodeInfo* reply) {
  v1::NodeHealth* h = reply->mutable_health();
  h->set_ready(report.ready);
  h->set_lb(std::string(ops::LbWord(report.lb)));
  h->set_mode(std::string(mode));
  for (const ops::HealthCheck& c : report.checks) {
    v1::NodeHealthCheck* check = h->add_checks();
    check->set_name(c.name);
    check->set_ok(c.ok);
    check->set_detail(c.detail);
  }
  reply->set_health_reported(true);
}

void FillNodeActivity(const ops::ActivitySnapshot& activity, v1::NodeInfo* reply) {
  v1::NodeActivity* a = reply->mutable_activity();
  for (const ops::ActivityMinute& m : activity.minutes) {
    v1::ActivityMinute* minute = a->add_minutes();
    minute->set_start_unix_ms(m.start_unix_ms);
    for (const auto& [key, count] : m.counts) {
      v1::OutcomeCount* c = minute->add_counts();
      c->set_endpoint(key.first);
      c->set_outcome(key.second);
      c->set_count(count);
    }
  }
  for (const ops::ActivityFailure& f : activity.failures) {
    v1::ActivityFailure* failure = a->add_failures();
    failure->set_unix_ms(f.unix_ms);
    failure->set_endpoint(f.endpoint);
    failure->set_outcome(f.outcome);
    failure->set_http_status(f.http_status);
    failure->set_message(f.message);
  }
  reply->set_activity_reported(true);
}

ops::StatusPageNode StatusPageNodeOf(const v1::NodeInfo& info, const std::string& address) {
  ops::StatusPageNode n;
  n.node_id = info.from().node_id();
  n.address = address;
  n.version = info.version();
  n.ca_identity = info.ca_identity();
  n.cut_off = info.cut_off();
  n.ca_outage = info.ca_outage();
  n.health_known = info.health_reported();
  if (n.health_known) {
    n.ready = info.health().ready();
    n.lb = info.health().lb();
    n.mode = info.health().mode();
    for (const v1::NodeHealthCheck& c : info.health().checks()) n.checks.push_back({c.name(), c.ok(), c.detail()});
  }
  n.records = info.records();
  n.write_quorum = info.write_quorum();
  n.quorum_writes = info.quorum_writes();
  n.under_replicated_writes = info.under_replicated_writes();
  n.refused_writes = info.refused_writes();
  for (const v1::PeerState& p : info.peers()) {
    n.peers.push_back({p.node_id(), p.lag_mutations(), p.lag_ms(), p.last_ack_unix_ms(), p.cluster_protocol(),
                       p.refused_for_version()});
  }
  n.certificates_known = info.certificates_reported();
  for (const v1::NodeCertificate& c : info.certificates()) {
    n.certificates.push_back({c.role(), c.subject(), c.source(), c.not_after_unix_ms(), c.state()});
  }
  n.activity_known = info.activity_reported();
  for (const v1::ActivityMinute& m : info.activity().minutes()) {
    ops::ActivityMinute& minute = n.activity.minutes.emplace_back();
    minute.start_unix_ms = m.start_unix_ms();
    for (const v1::OutcomeCount& c : m.counts()) minute.counts[{c.endpoint(), c.outcome()}] += c.count();
  }
  for (const v1::ActivityFailure& f : info.activity().failures()) {
    n.activity.failures.push_back({f.unix_ms(), f.endpoint(), f.outcome(), f.http_status(), f.message()});
  }
  return n;
}

}  // namespace adcsc::node
