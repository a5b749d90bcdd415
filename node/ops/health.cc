#include "node/ops/health.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace adcsc::ops {
namespace {

constexpr int64_t kDayMs = 86'400'000;

// A probe that passed recently enough to be believed.
HealthCheck FromProbe(std::string name, const Probe& p, const HealthObservations& seen, const HealthPolicy& policy,
                      std::string_view what_to_check) {
  HealthCheck c{std::move(name), false, ""};
  if (p.at_ms == 0) {
    c.detail = "not checked yet";
  } else if (seen.now_ms - p.at_ms > policy.max_probe_age_ms) {
    c.detail = absl::StrCat("last checked ", (seen.now_ms - p.at_ms) / 1000, " s ago (the check itself is stuck; ",
                            std::string(what_to_check), ")");
  } else if (!p.ok) {
    c.detail =
        absl::StrCat(p.detail, " (", (seen.now_ms - p.at_ms) / 1000, " s ago; ", std::string(what_to_check), ")");
  } else {
    c.ok = true;
    c.detail = absl::StrCat(p.detail.empty() ? "ok" : p.detail, ", ", (seen.now_ms - p.at_ms) / 1000, " s ago");
  }
  return c;
}

}  // namespace

std::string_view ExpiryState(const CertificateExpiry& c, int64_t now_ms, int warn_days, int critical_days) {
  if (c.not_after_ms <= now_ms) return "expired";
  const int64_t left = c.not_after_ms - now_ms;
  if (left < critical_days * kDayMs) return "critical";
  if (left < warn_days * kDayMs) return "warning";
  return "ok";
}

std::string_view LbWord(LbState state) {
  switch (state) {
    case LbState::kUp:
      return "UP";
    case LbState::kDrain:
      return "DRAIN";
    case LbState::kDown:
      return "DOWN";
  }
  return "DOWN";
}

HealthReport Evaluate(const HealthObservations& seen, const HealthPolicy& policy) {
  HealthReport r;
  constexpr char kDisk[] = "the data directory's disk: space, permissions, errors, latency (iostat, dmesg)";
  r.checks.push_back(FromProbe("store", seen.store, seen, policy, kDisk));
  if (r.checks.back().ok && seen.store.duration_ms > policy.max_store_write_ms) {
    r.checks.back().ok = false;
    r.checks.back().detail = absl::StrCat("the durable write check took ", seen.store.duration_ms, " ms (more than ",
                                          policy.max_store_write_ms, " ms; ", kDisk, ")");
  }
  if (seen.cas.empty()) r.checks.push_back({"ca", false, "no CA is allowlisted (ca.allow)"});
  for (const CaProbe& ca : seen.cas) {
    r.ca_ping_ms = std::max(r.ca_ping_ms, ca.probe.duration_ms);
    r.checks.push_back(FromProbe(absl::StrCat("ca ", ca.ca_config), ca.probe, seen, policy,
                                 "run `adcsc ctl ca-ping` on this node: network path, account, CA service"));
  }
  if (seen.clustered) {
    HealthCheck c{"cluster", true, ""};
    c.detail = absl::StrCat(seen.peers_reachable, " of ", seen.peers, " peers reachable, lag ", seen.lag_mutations,
                            " mutations");
    if (seen.snapshot_in_progress) {
      c.ok = false;
      absl::StrAppend(&c.detail, "; copying a peer's snapshot: not caught up yet (see `adcsc ctl status`)");
    } else if (seen.peers > 0 && seen.peers_reachable == 0 && seen.refuse_on_quorum_loss) {
      c.ok = false;
      absl::StrAppend(&c.detail,
                      "; cut off from every peer with on_quorum_loss = \"refuse\": writes would be refused (check the "
                      "network between the nodes, and `adcsc ctl status`)");
    }
    // Not a failure of this node: it serves on with the peers it can read, and taking it out
    // of the load balancer would not bring the refused peer back.
    for (const std::string& refusal : seen.refused_for_version) {
      absl::StrAppend(&c.detail, "; REFUSED FOR VERSION: ", refusal);
    }
    r.checks.push_back(std::move(c));
  }
  {
    HealthCheck c{"certificate", true, "expiry unknown"};
    if (seen.certificate_not_after_ms != 0) {
      const int64_t days = (seen.certificate_not_after_ms - seen.now_ms) / kDayMs;
      if (seen.certificate_not_after_ms <= seen.now_ms) {
        c.ok = false;
        c.detail = "the API server certificate has expired: Jamf Pro cannot connect (replace api.cert_file)";
      } else {
        c.detail = absl::StrCat(days, " days until the API server certificate expires");
        if (days < policy.warn_certificate_days) absl::StrAppend(&c.detail, " (renew it soon)");
      }
    }
    // Every other certificate: named in the detail when it needs attention. Only the API
    // certificate fails the check: every node's certificates tend to expire together, and a
    // check that failed early would take the whole cluster out at once.
    for (const CertificateExpiry& cert : seen.certificates) {
      const std::string_view state =
          ExpiryState(cert, seen.now_ms, policy.warn_certificate_days, policy.critical_certificate_days);
      r.certificates.push_back({cert, (cert.not_after_ms - seen.now_ms) / kDayMs, std::string(state)});
      if (cert.mapped_until_ms != 0) {
        // The old identity of a rotation: say when the overlap ends (or that it has).
        absl::StrAppend(
            &c.detail, "; ", cert.role, " ", cert.subject,
            cert.mapped_until_ms <= seen.now_ms
                ? " is no longer mapped: its rotation overlap has ended (remove its pin)"
                : absl::StrCat(" is the old client identity of a rotation, mapped for ",
                               (cert.mapped_until_ms - seen.now_ms) / kDayMs, " more days (api.client_pins until)"));
      }
      if (state == "ok") continue;
      absl::StrAppend(&c.detail, "; ", cert.role, " ", cert.subject,
                      state == "expired" ? std::string(" has EXPIRED")
                                         : absl::StrCat(" expires in ", (cert.not_after_ms - seen.now_ms) / kDayMs,
                                                        " days (", std::string(state), ")"),
                      " (", cert.source, ")");
    }
    r.checks.push_back(std::move(c));
  }
  r.checks.push_back(
      {"mode", seen.mode == ServiceMode::kActive,
       seen.mode == ServiceMode::kActive
           ? "active"
           : absl::StrCat(std::string(ModeName(seen.mode)), " (set by an operator; `adcsc ctl resume` ends it)")});

  bool others_ok = true;
  for (const HealthCheck& c : r.checks) {
    if (c.name != "mode" && !c.ok) others_ok = false;
  }
  r.ready = others_ok && seen.mode == ServiceMode::kActive;
  if (!others_ok || seen.mode == ServiceMode::kMaint) {
    r.lb = LbState::kDown;
  } else {
    r.lb = seen.mode == ServiceMode::kDrain ? LbState::kDrain : LbState::kUp;
  }
  return r;
}

std::string HealthReport::ToJson() const {
  nlohmann::ordered_json j;
  j["ready"] = ready;
  j["lb"] = std::string(LbWord(lb));
  j["ca_ping_ms"] = ca_ping_ms;
  j["checks"] = nlohmann::ordered_json::array();
  for (const HealthCheck& c : checks) {
    j["checks"].push_back({{"name", c.name}, {"ok", c.ok}, {"detail", c.detail}});
  }
  j["certificates"] = nlohmann::ordered_json::array();
  for (const Certificate& c : certificates) {
    j["certificates"].push_back({{"role", c.certificate.role},
                                 {"subject", c.certificate.subject},
                                 {"source", c.certificate.source},
                                 {"not_after_ms", c.certificate.not_after_ms},
                                 {"days_left", c.days_left},
                                 {"state", c.state}});
    if (c.certificate.mapped_until_ms != 0) j["certificates"].back()["mapped_until_ms"] = c.certificate.mapped_until_ms;
  }
  return j.dump();
}

}  // namespace adcsc::ops
