#include "node/ops/metrics.h"

#include <prometheus/text_serializer.h>

#include <algorithm>
#include <sstream>

namespace adcsc::ops {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

// Seconds, from a fast store answer to a CA at the end of a WAN link.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* const kBuckets = new prometheus::Histogram::BucketBoundaries{
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  return *kBuckets;
}

}  // namespace

NodeMetrics::NodeMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_(BuildCounter()
                    .Name("adcsc_api_requests_total")
                    .Help("API calls answered, by endpoint (request, retrieve) and outcome (issued, pending, denied, "
                          "bad_request, ca_error, store_error, ...)")
                    .Register(*registry_)),
      request_seconds_(BuildHistogram()
                           .Name("adcsc_api_request_duration_seconds")
                           .Help("Time to answer an API call, by endpoint")
                           .Register(*registry_)),
      ca_seconds_(BuildHistogram()
                      .Name("adcsc_ca_call_duration_seconds")
                      .Help("Time of the CA call an API call made, by endpoint")
                      .Register(*registry_)),
      ca_errors_(BuildCounter()
                     .Name("adcsc_ca_errors_total")
                     .Help("API calls that failed at the CA, by endpoint")
                     .Register(*registry_)),
      policy_denials_(BuildCounter()
                          .Name("adcsc_policy_denials_total")
                          .Help("Submits the signing policy of their [[ca.allow]] entry denied before any CA call, by "
                                "the rule that refused (san_upn, subject_patterns, max_rsa_bits, ...)")
                          .Register(*registry_)),
      ca_admin_actions_(BuildCounter()
                            .Name("adcsc_ca_admin_actions_total")
                            .Help("CA administration through the admin channel (adcsc ctl revoke|approve|deny "
                                  "--node), by operation and outcome (ok, ca_error, refused)")
                            .Register(*registry_)),
      unserved_(BuildCounter()
                    .Name("adcsc_api_unserved_requests_total")
                    .Help("Authorized calls under /api/ that adcsc does not serve (answered 404 or 405), by method "
                          "and path (identifier-like segments as {id}; beyond 32 paths, \"other\"); the first of "
                          "each is logged as unserved_api_call with its shape")
                    .Register(*registry_)),
      ready_(BuildGauge().Name("adcsc_ready").Help("1 when every health check passes").Register(*registry_)),
      check_ok_(BuildGauge()
                    .Name("adcsc_health_check_ok")
                    .Help("1 when the named health check passes (docs/operations.md, Health)")
                    .Register(*registry_)),
      mode_(BuildGauge()
                .Name("adcsc_service_mode")
                .Help("1 for the node's service mode (active, drain, maint), 0 for the others")
                .Register(*registry_)),
      certificate_expiry_(BuildGauge()
                              .Name("adcsc_api_certificate_expiry_seconds")
                              .Help("Seconds until the API server certificate expires")
                              .Register(*registry_)),
      certificates_expiry_(BuildGauge()
                               .Name("adcsc_certificate_expiry_seconds")
                               .Help("Seconds until each certificate the node owns or trusts expires (negative: "
                                     "expired), by role and subject")
                               .Register(*registry_)),
      lag_mutations_(BuildGauge()
                         .Name("adcsc_replication_lag_mutations")
                         .Help("Mutations this node holds that the peer's last known vector lacks")
                         .Register(*registry_)),
      lag_seconds_(BuildGauge()
                       .Name("adcsc_replication_lag_seconds")
                       .Help("How long the oldest mutation the peer lacks has waited")
                       .Register(*registry_)),
      peer_last_answer_(BuildGauge()
                            .Name("adcsc_replication_peer_last_answer_age_seconds")
                            .Help("Seconds since the peer last answered; -1 if it never has")
                            .Register(*registry_)),
      peer_protocol_(BuildGauge()
                         .Name("adcsc_peer_cluster_protocol")
                         .Help("The cluster protocol the peer speaks (docs/operations.md, \"Upgrade\"), once it "
                               "has been heard from")
                         .Register(*registry_)),
      peer_refused_(BuildGauge()
                        .Name("adcsc_peer_version_refused")
                        .Help("1 while this node refuses the peer for its cluster protocol (a release it cannot "
                              "replicate with), else 0")
                        .Register(*registry_)),
      replicated_writes_(BuildGauge()
                             .Name("adcsc_replication_writes")
                             .Help("Writes since the node started, by result: quorum, under_replicated (served "
                                   "without a quorum), refused")
                             .Register(*registry_)),
      api_connections_(BuildGauge()
                           .Name("adcsc_api_open_connections")
                           .Help("Connections open on the API port")
                           .Register(*registry_)),
      api_refusals_(BuildGauge()
                        .Name("adcsc_api_refusals")
                        .Help("Connections the API port turned away or ended, and refusals charged to a "
                              "source, since the node started, by kind: connection_cap, source_connections, "
                              "source_rate (closed at accept), evicted, unmapped_certificate, handshake_failed, "
                              "slow_client (docs/security.md, Connection admission)")
                        .Register(*registry_)),
      ops_connections_(BuildGauge()
                           .Name("adcsc_ops_open_connections")
                           .Help("Connections open on the ops port")
                           .Register(*registry_)),
      ops_refused_(BuildGauge()
                       .Name("adcsc_ops_refused_connections")
                       .Help("Connections the ops port closed at accept since the node started because "
                             "ops.max_connections were open")
                       .Register(*registry_)),
      ca_idle_(BuildGauge()
                   .Name("adcsc_ca_pool_idle_connections")
                   .Help("Authenticated CA connections waiting in the pool, by CA host")
                   .Register(*registry_)),
      ca_connections_(BuildGauge()
                          .Name("adcsc_ca_connections")
                          .Help("CA connections since the node started, by how they were used: opened (an "
                                "authenticated bind), reused (a call on a pooled connection)")
                          .Register(*registry_)),
      ca_binds_(BuildGauge()
                    .Name("adcsc_ca_auth_binds")
                    .Help("Authenticated binds to the CAs since the node started, by mechanism (kerberos, ntlm)")
                    .Register(*registry_)),
      ca_ntlm_fallbacks_(BuildGauge()
                             .Name("adcsc_ca_auth_ntlm_fallbacks")
                             .Help("Binds with ca.icpr.auth = \"negotiate\" that used NTLM because Kerberos could "
                                   "not start from this node (no ticket: KDC unreachable, keytab, SPN, clock)")
                             .Register(*registry_)),
      ca_ticket_renewals_(BuildGauge()
                              .Name("adcsc_ca_kerberos_ticket_renewals")
                              .Help("Times the service account's Kerberos TGT was renewed since the node started")
                              .Register(*registry_)),
      ca_ticket_expiry_(BuildGauge()
                            .Name("adcsc_ca_kerberos_ticket_expiry_timestamp_seconds")
                            .Help("When the service account's current Kerberos TGT ends (Unix time); renewal "
                                  "keeps it ahead of now by more than ca.icpr.ticket_renew_margin_s")
                            .Register(*registry_)),
      store_integrity_(
          BuildGauge()
              .Name("adcsc_store_integrity_checks")
              .Help("Store integrity checks (PRAGMA quick_check) since the node started that found "
                    "damage (result=\"damaged\"), and of those the ones mended, by REINDEX or by the rebuild at start "
                    "(result=\"repaired\")")
              .Register(*registry_)),
      store_pruned_(BuildGauge()
                        .Name("adcsc_store_pruned_records")
                        .Help("Settled records pruned by store.retention_days since the node started")
                        .Register(*registry_)),
      store_free_(BuildGauge()
                      .Name("adcsc_store_free_bytes")
                      .Help("Bytes free to the node on its data directory's volume")
                      .Register(*registry_)),
      store_min_free_(BuildGauge()
                          .Name("adcsc_store_min_free_bytes")
                          .Help("store.min_free_bytes: below it the store check fails and the node takes no requests "
                                "(0: no floor)")
                          .Register(*registry_)) {}

void NodeMetrics::ObserveCall(std::string_view endpoint, std::string_view outcome, int /*http_status*/,
                              double latency_ms, double ca_ms) {
  const std::string e(endpoint);
  requests_.Add({{"endpoint", e}, {"outcome", std::string(outcome)}}).Increment();
  request_seconds_.Add({{"endpoint", e}}, LatencyBuckets()).Observe(latency_ms / 1000.0);
  if (ca_ms >= 0) ca_seconds_.Add({{"endpoint", e}}, LatencyBuckets()).Observe(ca_ms / 1000.0);
  if (outcome == "ca_error") ca_errors_.Add({{"endpoint", e}}).Increment();
}

void NodeMetrics::ObserveCaAdmin(std::string_view operation, std::string_view outcome) {
  ca_admin_actions_.Add({{"operation", std::string(operation)}, {"outcome", std::string(outcome)}}).Increment();
}

void NodeMetrics::ObservePolicyDenial(std::string_view rule) {
  policy_denials_.Add({{"rule", std::string(rule)}}).Increment();
}

void NodeMetrics::ObserveUnserved(std::string_view method, std::string_view path_label) {
  unserved_.Add({{"method", std::string(method)}, {"path", std::string(path_label)}}).Increment();
}

std::string NodeMetrics::Scrape(const ScrapeState& state) {
  std::lock_guard lock(scrape_mu_);
  ready_.Add({}).Set(state.health.ready ? 1 : 0);
  for (const HealthCheck& c : state.health.checks) check_ok_.Add({{"check", c.name}}).Set(c.ok ? 1 : 0);
  for (ServiceMode m : {ServiceMode::kActive, ServiceMode::kDrain, ServiceMode::kMaint}) {
    mode_.Add({{"mode", std::string(ModeName(m))}}).Set(m == state.mode ? 1 : 0);
  }
  if (state.certificate_not_after_ms != 0) {
    certificate_expiry_.Add({}).Set(static_cast<double>(state.certificate_not_after_ms - state.now_ms) / 1000.0);
  }
  std::vector<prometheus::Gauge*> gauges;
  for (const HealthReport::Certificate& c : state.health.certificates) {
    prometheus::Gauge& g = certificates_expiry_.Add({{"role", c.certificate.role}, {"subject", c.certificate.subject}});
    g.Set(static_cast<double>(c.certificate.not_after_ms - state.now_ms) / 1000.0);
    gauges.push_back(&g);
  }
  for (prometheus::Gauge* old : certificate_gauges_) {
    if (std::find(gauges.begin(), gauges.end(), old) == gauges.end()) certificates_expiry_.Remove(old);
  }
  certificate_gauges_ = std::move(gauges);
  if (state.replication.has_value()) {
    const store::ReplicatorStatus& r = *state.replication;
    replicated_writes_.Add({{"result", "quorum"}}).Set(static_cast<double>(r.quorum_writes));
    replicated_writes_.Add({{"result", "under_replicated"}}).Set(static_cast<double>(r.under_replicated_writes));
    replicated_writes_.Add({{"result", "refused"}}).Set(static_cast<double>(r.refused_writes));
    for (const store::PeerStatus& p : r.peers) {
      lag_mutations_.Add({{"peer", p.node_id}}).Set(static_cast<double>(p.lag_mutations));
      lag_seconds_.Add({{"peer", p.node_id}}).Set(static_cast<double>(p.lag_ms) / 1000.0);
      peer_last_answer_.Add({{"peer", p.node_id}})
          .Set(p.since_last_ack_ms < 0 ? -1.0 : static_cast<double>(p.since_last_ack_ms) / 1000.0);
    }
  }
  for (const ScrapeState::PeerProtocol& p : state.peer_protocols) {
    peer_protocol_.Add({{"peer", p.node_id}}).Set(static_cast<double>(p.speaks));
    peer_refused_.Add({{"peer", p.node_id}}).Set(p.refused ? 1 : 0);
  }
  if (state.api_connections >= 0) api_connections_.Add({}).Set(static_cast<double>(state.api_connections));
  for (const auto& [kind, count] : state.api_refusals) {
    api_refusals_.Add({{"kind", kind}}).Set(static_cast<double>(count));
  }
  if (state.ops_connections >= 0) {
    ops_connections_.Add({}).Set(static_cast<double>(state.ops_connections));
    ops_refused_.Add({}).Set(static_cast<double>(state.ops_refused_connections));
  }
  for (const auto& [host, idle] : state.ca_idle_connections) {
    ca_idle_.Add({{"host", host}}).Set(static_cast<double>(idle));
  }
  if (state.ca_connections_opened + state.ca_connections_reused > 0) {
    ca_connections_.Add({{"use", "opened"}}).Set(static_cast<double>(state.ca_connections_opened));
    ca_connections_.Add({{"use", "reused"}}).Set(static_cast<double>(state.ca_connections_reused));
  }
  if (!state.ca_binds_by_mechanism.empty()) {
    for (const auto& [mechanism, binds] : state.ca_binds_by_mechanism) {
      ca_binds_.Add({{"mechanism", mechanism}}).Set(static_cast<double>(binds));
    }
    ca_ntlm_fallbacks_.Add({}).Set(static_cast<double>(state.ca_ntlm_fallbacks));
    ca_ticket_renewals_.Add({}).Set(static_cast<double>(state.ca_ticket_renewals));
    if (state.ca_ticket_expiry_unix > 0) {
      ca_ticket_expiry_.Add({}).Set(static_cast<double>(state.ca_ticket_expiry_unix));
    }
  }
  store_integrity_.Add({{"result", "damaged"}}).Set(static_cast<double>(state.store_integrity_failures));
  store_integrity_.Add({{"result", "repaired"}}).Set(static_cast<double>(state.store_integrity_repairs));
  store_pruned_.Add({}).Set(static_cast<double>(state.store_records_pruned));
  if (state.store_free_bytes >= 0) store_free_.Add({}).Set(static_cast<double>(state.store_free_bytes));
  store_min_free_.Add({}).Set(static_cast<double>(state.store_min_free_bytes));
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry_->Collect());
  return out.str();
}

}  // namespace adcsc::ops
