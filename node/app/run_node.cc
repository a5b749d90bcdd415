#include "node/app/run_node.h"

#include <google/protobuf/util/json_util.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "node/api/api_codec.h"
#include "node/app/backend_factory.h"
#include "node/app/ca_admin.h"
#include "node/app/cert_inventory.h"
#include "node/app/status_view.h"
#include "node/ca/chain_recorder.h"
#include "node/ca/hresult.h"
#include "node/ca/outage_switch.h"
#include "node/cluster/bulk_join.h"
#include "node/cluster/fault_client.h"
#include "node/cluster/runtime.h"
#include "node/config/config.h"
#include "node/dcom/csra_stub.h"
#include "node/http/client_auth.h"
#include "node/http/https_server.h"
#include "node/http/tls_settings.h"
#include "node/log/logging.h"
#include "node/ops/activity.h"
#include "node/ops/metrics.h"
#include "node/ops/ops_server.h"
#include "node/ops/status_page.h"
#include "node/ops/store_maintenance.h"
#include "node/pki/x509.h"
#include "store/dir_lock.h"
#include "store/repair.h"
#include "store/request_store.h"

namespace adcsc::node {
namespace {

// A health probe per allowlisted CA: a ping as the node's identity. Each also tells the peers
// (through the API's reachability view) whether this node can take their submits and
// retrieves to that CA.
std::vector<adcsc::ops::HealthSources::Ca> CaProbesFor(const std::vector<AllowedCa>& allow, const std::string& identity,
                                                       adcsc::ca::CaBackend* backend, CaReachability* reachability) {
  std::vector<adcsc::ops::HealthSources::Ca> probes;
  for (const AllowedCa& allowed : allow) {
    adcsc::ca::CaTarget target{allowed.dc, allowed.ca};
    adcsc::ca::CallerIdentity caller{identity};
    const std::string key = adcsc::store::CaConfigKey(allowed.dc, allowed.ca);
    probes.push_back({key, [backend, target, caller, reachability, key] {
                        absl::Status pinged = backend->Ping(target, caller);
                        if (pinged.ok()) {
                          reachability->Note(key, true);
                        } else if (pinged.code() == absl::StatusCode::kUnavailable ||
                                   pinged.code() == absl::StatusCode::kDeadlineExceeded) {
                          reachability->Note(key, false);
                        }
                        return pinged;
                      }});
  }
  return probes;
}

// The probes the health monitor runs for this node: a durable write to the store, a ping of
// every allowlisted CA as the node's identity, the cluster's state, and the API
// certificate's expiry.
adcsc::ops::HealthSources HealthSourcesFor(const Config& config, adcsc::store::RequestStore* store,
                                           const adcsc::ops::StoreMaintenance* integrity, adcsc::ca::CaBackend* backend,
                                           adcsc::cluster::ClusterRuntime* cluster, adcsc::ops::ServiceModeStore* mode,
                                           CaReachability* reachability) {
  adcsc::ops::HealthSources s;
  s.store_check = [store, integrity] {
    if (absl::Status damage = integrity->last(); !damage.ok()) return damage;
    return store->Check(/*write=*/true);
  };
  s.cas = CaProbesFor(config.ca.allow, config.ca.identity, backend, reachability);
  if (cluster != nullptr) {
    // A peer counts as reachable when it answered within a few anti-entropy rounds.
    const int64_t recent_ms = std::max<int64_t>(10'000, 3 * config.cluster.anti_entropy_interval.count());
    const bool refuse = config.cluster.on_quorum_loss == "refuse";
    s.cluster = [cluster, store, recent_ms, refuse]() -> std::optional<adcsc::ops::ClusterView> {
      adcsc::ops::ClusterView v;
      v.refuse_on_quorum_loss = refuse;
      // A store being rebuilt from the peers is not caught up until its snapshot commits.
      v.snapshot_in_progress = store->RebuildFromPeersPending().value_or(true);
      auto status = cluster->Status();
      if (!status.ok()) return v;
      v.peers = status->peers.size();
      for (const auto& p : status->peers) {
        // Monotonic: a wall clock stepped forward must not count every peer unreachable.
        if (p.since_last_ack_ms >= 0 && p.since_last_ack_ms <= recent_ms) ++v.peers_reachable;
        v.snapshot_in_progress = v.snapshot_in_progress || p.snapshot_in_progress;
        v.lag_mutations = std::max(v.lag_mutations, p.lag_mutations);
      }
      for (const auto& p : cluster->transport().protocols().All()) {
        if (!p.refusal.empty()) v.refused_for_version.push_back(p.refusal);
      }
      return v;
    };
  }
  s.certificates = CertificateInventory(config);
  s.mode = mode;
  s.clock = SystemClock::Default();
  return s;
}

// The signals the main thread waits for; every thread blocks them (BlockStopSignals), so none
// can kill the node by default action: SIGTERM and SIGINT stop it, SIGHUP reopens its logs.
sigset_t HandledSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}

void BlockStopSignals() {
  const sigset_t set = HandledSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

// A step of starting that failed: the exit code and what `adcsc node` prints.
struct StartError {
  int exit_code;
  std::string message;
};
using Step = std::optional<StartError>;

// Everything a running node owns. Built in the order RunNode's steps run; the members are
// declared so that they are destroyed in the right order: the API server and the ops
// listener first, the cluster before the API service it calls, the service before the
// metrics it reports to, the store and the logs last.
struct RunningNode {
  Config config;
  std::filesystem::path config_path;  // read again on SIGHUP
  bool check_only = false;            // --check: validate, never take the data directory
  uint64_t reloads = 0;               // SIGHUPs handled
  std::unique_ptr<EventLog> log;
  std::unique_ptr<AccessLog> access_log;
  std::unique_ptr<ClientAuthorizer> authorizer;
  std::optional<adcsc::store::DirLock> data_dir_lock;  // held while the node runs
  std::unique_ptr<adcsc::store::RequestStore> store;
  std::unique_ptr<adcsc::ca::CaBackend> backend;
  std::unique_ptr<adcsc::ca::ChainRecorder> ca_chains;  // learns each CA's certificates from its answers
  // The certificates of the configuration's files (the health monitor holds its own copy): for
  // `ctl status` on a node without [ops], and so a CA certificate learned from the CA's answers
  // is not listed twice when ca.allow[].ca_cert_file names it too. A reload replaces them.
  std::mutex file_certificates_mu;
  std::vector<adcsc::ops::CertificateExpiry> file_certificates;  // guarded by file_certificates_mu
  // With fault injection allowed, every CA call goes through a switch a drill can turn off.
  std::unique_ptr<adcsc::ca::OutageSwitch> ca_switch;
  adcsc::ca::CaBackend* ca = nullptr;  // the backend, or the switch in front of it
  std::unique_ptr<adcsc::ops::ServiceModeStore> mode;
  std::unique_ptr<adcsc::ops::NodeMetrics> metrics;
  std::unique_ptr<adcsc::ops::ActivityLog> activity;        // the status page's view of API calls
  std::unique_ptr<ApiObserverFanout> observers;             // metrics and activity
  std::unique_ptr<adcsc::ops::StoreMaintenance> integrity;  // integrity, retention, compaction
  std::unique_ptr<ApiService> service;
  std::unique_ptr<adcsc::cluster::ClusterRuntime> cluster;
  std::unique_ptr<adcsc::ops::HealthMonitor> health;
  std::unique_ptr<ClientAuthorizer> admin_authorizer;
  std::unique_ptr<adcsc::ops::OpsServer> ops;
  std::unique_ptr<HttpsServer> server;
  // The API server, for the metrics, once it exists (it starts after the ops listener).
  std::atomic<const HttpsServer*> api_server{nullptr};
  // Settles the submits a previous run left open (ApiService::ResolveOpenIntents).
  std::thread intent_resolver;

  // Peer.Info's certificate source reads the health monitor, which goes before the cluster.
  ~RunningNode() {
    if (cluster != nullptr) {
      cluster->SetCertificateSource(nullptr);
      cluster->SetStatusSource(nullptr);
    }
  }

  // A failure after the logs are open is logged too.
  StartError Fail(int exit_code, std::string message) {
    if (log != nullptr) log->Error("start_failed", {{"error", message}});
    return {exit_code, std::move(message)};
  }
  std::string InConfig(absl::string_view what) const { return absl::StrCat(config.source.string(), ": ", what); }
};

Step OpenLogs(RunningNode& n) {
  auto level = ParseLogLevel(n.config.log.level);  // checked when the configuration was read
  auto log = EventLog::Open(n.config.log.file, level.ok() ? *level : LogLevel::kInfo, n.config.node_id);
  if (!log.ok()) return StartError{kExitConfigError, std::string(log.status().message())};
  n.log = std::move(*log);
  if (!n.config.log.access_log.empty()) {
    auto access = AccessLog::Open(n.config.log.access_log);
    if (!access.ok()) return StartError{kExitConfigError, std::string(access.status().message())};
    n.access_log = std::move(*access);
  }
  return std::nullopt;
}

// The client-certificate mapping, the data directory (0700), the store and the CA backend:
// everything `adcsc node --check` proves before a node would start.
// Opens the request store and checks the file (PRAGMA quick_check). Damage confined to the
// indexes is mended before the node serves: REINDEX, or failing that a copy of every table into
// a fresh file (the damaged one kept beside it). Damage the tables share stops the node.
Step OpenStore(RunningNode& n, const adcsc::store::StoreOptions& options) {
  const Config& c = n.config;
  adcsc::ops::StoreMaintenanceOptions maintenance;
  maintenance.integrity_interval =
      std::chrono::duration_cast<std::chrono::milliseconds>(c.store.integrity_check_interval);
  maintenance.retention = std::chrono::hours(24) * c.store.retention_days;
  // A single node compacts its own log; a cluster's replicator compacts up to what every peer holds.
  if (!c.cluster.enabled) maintenance.compact_interval = std::chrono::minutes(1);
  auto refuse = [&](const std::string& what) {
    return StartError{kExitRuntimeError,
                      absl::StrCat("request store: ", what,
                                   ". The node does not start on a damaged store: follow docs/operations.md \"A "
                                   "damaged store\" (restore a copy, or in a cluster rebuild this node from its "
                                   "peers)")};
  };
  auto store = adcsc::store::RequestStore::Open(options);
  bool damaged = !store.ok() && store.status().code() == absl::StatusCode::kDataLoss;
  if (!store.ok() && !damaged)
    return StartError{kExitRuntimeError, absl::StrCat("request store: ", store.status().message())};
  std::string damage;
  if (store.ok()) {
    n.store = std::move(*store);
    n.integrity = std::make_unique<adcsc::ops::StoreMaintenance>(n.store.get(), n.log.get(), maintenance);
    absl::Status checked = n.integrity->CheckNow("start");
    if (checked.ok()) return std::nullopt;
    damage = std::string(checked.message());
    n.integrity.reset();
    n.store.reset();
  } else {
    damage = std::string(store.status().message());
    n.log->Log(LogLevel::kError, "store_integrity", {{"phase", "start"}, {"outcome", "damaged"}, {"error", damage}});
  }
  const int64_t now_ms = SystemClock::Default()->NowUnixMillis();
  auto kept = adcsc::store::RebuildStoreFromTables(options.path, now_ms);
  if (!kept.ok() && c.cluster.enabled) {
    // The tables are damaged too; the cluster holds copies of every record. Start empty,
    // marked, and copy them back before serving (BuildApi; store/replication.cc).
    auto aside = adcsc::store::MoveStoreAside(options.path, now_ms);
    if (!aside.ok()) return refuse(absl::StrCat(damage, "; moving it aside failed: ", aside.status().message()));
    store = adcsc::store::RequestStore::Open(options);
    if (!store.ok()) return refuse(absl::StrCat(damage, "; a new store does not open: ", store.status().message()));
    if (absl::Status marked = (*store)->MarkRebuildFromPeers(); !marked.ok()) {
      return refuse(absl::StrCat(damage, "; a new store cannot be marked for rebuilding: ", marked.message()));
    }
    n.store = std::move(*store);
    n.integrity = std::make_unique<adcsc::ops::StoreMaintenance>(n.store.get(), n.log.get(), maintenance);
    n.integrity->CountRepairAtStart();
    n.log->Log(LogLevel::kWarn, "store_integrity",
               {{"phase", "start"},
                {"outcome", "rebuilding"},
                {"how", "from the peers (its tables cannot be read)"},
                {"damaged_file_kept", aside->string()}});
    return std::nullopt;
  }
  if (!kept.ok()) {
    return refuse(absl::StrCat(damage, "; rebuilding it from its tables failed: ", kept.status().message()));
  }
  store = adcsc::store::RequestStore::Open(options);
  if (!store.ok()) return refuse(absl::StrCat(damage, "; the rebuilt store does not open: ", store.status().message()));
  n.store = std::move(*store);
  n.integrity = std::make_unique<adcsc::ops::StoreMaintenance>(n.store.get(), n.log.get(), maintenance);
  if (absl::Status again = n.integrity->CheckNow("after-rebuild"); !again.ok()) {
    return refuse(absl::StrCat(damage, "; the rebuilt store is damaged too: ", again.message()));
  }
  n.integrity->CountRepairAtStart();
  n.log->Log(LogLevel::kWarn, "store_integrity",
             {{"phase", "start"},
              {"outcome", "repaired"},
              {"how", "rebuilt from its tables"},
              {"damaged_file_kept", kept->string()}});
  return std::nullopt;
}

// A clustered node whose store holds nothing (a new node, or one that never wrote) copies a
// peer's whole store in one stream before it opens it (node/cluster/bulk_join.h); when no
// peer can serve that, the store opens as it was and the replicator copies snapshot pages.
// Never fails the start: the store's own open reports what is wrong with it.
void JoinClusterIfEmpty(RunningNode& n, const adcsc::store::StoreOptions& options) {
  EventLog* log = n.log.get();
  adcsc::cluster::BulkJoinOptions o;
  o.progress = [log](const std::string& peer, int64_t written, int64_t total) {
    log->Info("store_join", {{"phase", "progress"}, {"peer", peer}, {"records", written}, {"of", total}});
  };
  auto joined = adcsc::cluster::JoinIfEmpty(n.config, options, o);
  if (!joined.ok()) {
    log->Warn("store_join", {{"outcome", "skipped"}, {"error", std::string(joined.status().message())}});
    return;
  }
  if (joined->outcome == adcsc::cluster::BulkJoinResult::Outcome::kNotEmpty) return;
  nlohmann::json fields = {{"outcome", adcsc::cluster::OutcomeName(joined->outcome)},
                           {"seconds", std::round(joined->seconds * 1000) / 1000}};
  if (!joined->peer.empty()) fields["peer"] = joined->peer;
  if (joined->outcome == adcsc::cluster::BulkJoinResult::Outcome::kJoined) {
    fields["records"] = joined->records;
    fields["held_mutations"] = joined->held;
  }
  if (!joined->failures.empty()) fields["failures"] = absl::StrJoin(joined->failures, "; ");
  // Peers that are down (a new cluster starting) or older is ordinary; a join cut short is not.
  log->Log(joined->abandoned ? LogLevel::kWarn : LogLevel::kInfo, "store_join", std::move(fields));
}

Step OpenStateAndBackend(RunningNode& n) {
  const Config& c = n.config;
  auto authorizer = ClientAuthorizer::Create(c.api.client_ca_file.string(), c.api.client_pins, SystemClock::Default(),
                                             c.api.client_pin_until);
  if (!authorizer.ok()) return StartError{kExitConfigError, n.InConfig(authorizer.status().message())};
  n.authorizer = std::move(*authorizer);
  std::error_code ec;
  std::filesystem::create_directories(c.data_dir, ec);
  if (ec) {
    return StartError{kExitConfigError, n.InConfig(absl::StrCat("node.data_dir: cannot create ", c.data_dir.string(),
                                                                ": ", ec.message()))};
  }
  std::filesystem::permissions(c.data_dir, std::filesystem::perms::owner_all, ec);
  adcsc::store::StoreOptions store_options;
  store_options.path = c.data_dir / "store.db";
  store_options.node_id = c.node_id;
  store_options.min_free_bytes = c.store.min_free_bytes;
  // One node per data directory, and no restore under a running node.
  if (!n.check_only) {
    auto lock = adcsc::store::DirLock::Acquire(c.data_dir);
    if (!lock.ok()) return StartError{kExitRuntimeError, n.InConfig(lock.status().message())};
    n.data_dir_lock = std::move(*lock);
    if (c.cluster.enabled) JoinClusterIfEmpty(n, store_options);
  }
  if (auto e = OpenStore(n, store_options)) return e;
  auto backend = MakeCaBackend(c);
  if (!backend.ok()) {
    return StartError{kExitRuntimeError,
                      absl::StrCat("CA backend \"", c.ca.backend, "\": ", backend.status().message())};
  }
  n.backend = std::move(*backend);
  n.ca_chains = std::make_unique<adcsc::ca::ChainRecorder>(n.backend.get());
  n.ca = n.ca_chains.get();
  {
    std::lock_guard lock(n.file_certificates_mu);
    n.file_certificates = CertificateInventory(c);
  }
  if (c.cluster.enabled && c.cluster.allow_fault_injection) {
    n.ca_switch = std::make_unique<adcsc::ca::OutageSwitch>(n.ca);
    n.ca = n.ca_switch.get();
  }
  return std::nullopt;
}

// The API service, built with what it talks to: in a cluster the runtime's replication and
// peer lookups, with [ops] the metrics. The cluster starts serving its peers once the
// service exists, so a forwarded retrieve always finds it.
Step BuildApi(RunningNode& n) {
  auto mode = adcsc::ops::ServiceModeStore::Open(n.config.data_dir / adcsc::ops::kServiceModeFile);
  if (!mode.ok()) return StartError{kExitRuntimeError, std::string(mode.status().message())};
  n.mode = std::move(*mode);
  if (n.config.ops.enabled) n.metrics = std::make_unique<adcsc::ops::NodeMetrics>();
  // Kept with or without [ops]: a peer's status page asks for it.
  n.activity = std::make_unique<adcsc::ops::ActivityLog>(SystemClock::Default());
  std::vector<ApiObserver*> observers{n.activity.get()};
  if (n.metrics != nullptr) observers.push_back(n.metrics.get());
  n.observers = std::make_unique<ApiObserverFanout>(std::move(observers));
  ApiServiceLinks links;
  links.observer = n.observers.get();
  if (n.config.cluster.enabled) {
    auto cluster = adcsc::cluster::ClusterRuntime::Create(n.config, n.store.get());
    if (!cluster.ok()) return n.Fail(kExitConfigError, n.InConfig(cluster.status().message()));
    n.cluster = std::move(*cluster);
    // Once per change, not per call: a peer refused for its cluster protocol, or accepted again.
    n.cluster->transport().protocols().SetOnChange([log = n.log.get()](const std::string& peer,
                                                                       const adcsc::cluster::ProtocolRange& theirs,
                                                                       const std::string& refusal) {
      if (refusal.empty()) {
        log->Info("peer_version_accepted", {{"peer", peer}, {"peer_protocol", theirs.ToMetadata()}});
      } else {
        log->Error("peer_version_refused",
                   {{"peer", peer}, {"peer_protocol", theirs.ToMetadata()}, {"error", refusal}});
      }
    });
    // A store rebuilt empty after damage numbers its writes after every one its peers hold.
    if (absl::Status adopted = n.cluster->AdoptOwnSequenceFromPeers(std::chrono::seconds(30)); !adopted.ok()) {
      return n.Fail(kExitRuntimeError, absl::StrCat("request store: ", adopted.message()));
    }
    links.replication = n.cluster.get();
    links.peers = n.cluster->peers();
  }
  n.service = std::make_unique<ApiService>(n.config, n.ca, n.store.get(), n.log.get(), SystemClock::Default(), links);
  if (n.cluster != nullptr) {
    if (auto s = n.cluster->Serve(n.service.get(), n.ca_switch.get()); !s.ok()) {
      return n.Fail(kExitConfigError, n.InConfig(s.message()));
    }
  }
  return std::nullopt;
}

// POST /admin/ca: a CA administration operation with this node's CA identity (node/app/
// ca_admin.h); the CA's answer afterwards goes into the replicated store, so every node
// answers the request's retrieve without the CA. Logged with the administrator's pin and
// counted. Answers 200 with the outcome, 400 for a bad request (a CA not in ca.allow
// included), 502 with the CA's error (its HRESULT text).
std::pair<int, std::string> CaAdminAnswer(RunningNode& n, const std::shared_ptr<adcsc::ca::IcprAuthenticator>& auth,
                                          const std::string& body, const std::string& pin) {
  using Json = nlohmann::ordered_json;
  const auto in = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  CaAdminRequest request;
  std::string error;
  std::optional<CaAdminOp> op;
  if (!in.is_object() || !in.contains("op") || !in["op"].is_string() ||
      !(op = CaAdminOpByName(in["op"].get<std::string>()))) {
    error = "expected {\"op\": \"revoke\" | \"approve\" | \"deny\" | \"info\", \"dc\", \"ca\", ...}";
  } else {
    request.op = *op;
    request.dc = in.value("dc", std::string());
    request.ca = in.value("ca", std::string());
    if (in.contains("request_id") && in["request_id"].is_number_unsigned() &&
        in["request_id"].get<uint64_t>() <= 0xffffffffULL) {
      request.request_id = static_cast<uint32_t>(in["request_id"].get<uint64_t>());
    }
    request.serial = in.value("serial", std::string());
    const std::string reason = in.value("reason", std::string("unspecified"));
    if (auto code = adcsc::dcom::CrlReasonByName(reason)) {
      request.reason = *code;
    } else {
      error = absl::StrCat("unknown reason \"", reason, "\" (", adcsc::dcom::CrlReasonNames(), ")");
    }
    if (in.contains("date")) {
      absl::Time when;
      std::string why;
      if (!in["date"].is_string() || !absl::ParseTime(absl::RFC3339_full, in["date"].get<std::string>(), &when, &why) ||
          absl::ToUnixSeconds(when) <= 0) {
        error = "\"date\" must be an RFC 3339 time after 1970, e.g. \"2026-12-01T08:00:00Z\"";
      } else {
        request.effective_unix_seconds = absl::ToUnixSeconds(when);
      }
    }
  }
  const std::string op_name = op ? std::string(CaAdminOpName(*op)) : "unknown";
  nlohmann::json fields{{"operation", op_name}, {"dc", request.dc}, {"ca", request.ca}, {"admin_pin", pin}};
  if (request.request_id != 0) fields["request_id"] = request.request_id;
  if (!request.serial.empty()) fields["serial"] = request.serial;
  if (request.op == CaAdminOp::kRevoke) fields["reason"] = std::string(adcsc::dcom::CrlReasonName(request.reason));
  auto refuse = [&](int status, const std::string& why, std::string_view outcome) {
    fields["outcome"] = std::string(outcome);
    fields["error"] = why;
    n.log->Warn("ca_admin", fields);
    if (n.metrics) n.metrics->ObserveCaAdmin(op_name, outcome);
    return std::pair<int, std::string>(status, Json{{"error", why}}.dump());
  };
  if (!error.empty()) return refuse(400, error, "refused");
  if (request.op == CaAdminOp::kRevoke && request.reason == adcsc::dcom::crl_reason::kReleaseFromHold &&
      n.cluster != nullptr) {
    // A peer of protocol 2 would keep the certificate revoked in its store (store/record.h).
    for (const auto& p : n.cluster->transport().protocols().All()) {
      if (p.range && p.range->speaks < adcsc::cluster::kAdminStampProtocol) {
        return refuse(409,
                      absl::StrCat("peer ", p.node_id, " ", p.range->Describe(),
                                   ", which would keep the certificate revoked in its store after a release from "
                                   "hold: upgrade every node first (docs/operations.md, \"Upgrade\")"),
                      "refused");
      }
    }
  }
  if (request.op == CaAdminOp::kRevoke && request.request_id == 0 && !request.serial.empty()) {
    // The request the certificate belongs to, so that the store can record the revocation.
    auto found = n.service->FindRequestBySerial({request.dc, request.ca}, request.serial);
    if (found.ok() && found->has_value()) {
      request.request_id = **found;
      fields["request_id"] = request.request_id;
    }
  }
  auto outcome = RunCaAdmin(n.config, *n.service->Allowlist(), auth, request);
  if (!outcome.ok()) {
    const bool ours = absl::IsInvalidArgument(outcome.status()) && !adcsc::ca::HresultOf(outcome.status());
    return refuse(ours ? 400 : 502, std::string(outcome.status().message()), ours ? "refused" : "ca_error");
  }
  Json out{{"node", n.config.node_id}, {"operation", op_name}, {"mechanism", outcome->mechanism}};
  if (outcome->request_id != 0) out["request_id"] = outcome->request_id;
  if (!outcome->serial.empty()) out["serial"] = outcome->serial;
  if (request.op == CaAdminOp::kInfo) {
    out["ca_name"] = outcome->info.name;
    out["subject"] = outcome->info.subject;
    out["not_before_unix"] = outcome->info.not_before_unix;
    out["not_after_unix"] = outcome->info.not_after_unix;
  }
  std::string recorded = "no";
  if (outcome->after) {
    out["status"] = std::string(DispositionStatus(outcome->after->disposition));
    if (absl::Status put = n.service->RecordCaAdminOutcome({request.dc, request.ca}, *outcome->after); put.ok()) {
      recorded = "yes";
    } else {
      recorded = absl::StrCat("failed: ", put.message());
    }
  } else if (request.op != CaAdminOp::kInfo) {
    recorded = request.request_id == 0 ? "no: no request in this node's store has a certificate with this serial number"
                                       : "no: the CA's answer could not be read";
  }
  out["recorded"] = recorded;
  fields["outcome"] = "ok";
  fields["recorded"] = recorded;
  if (out.contains("status")) fields["status"] = out["status"].get<std::string>();
  n.log->Info("ca_admin", fields);
  if (n.metrics) n.metrics->ObserveCaAdmin(op_name, "ok");
  return {200, out.dump()};
}

// What /metrics shows: the health report, the service mode, replication, connections.
std::function<std::string()> MetricsScrape(RunningNode& n) {
  return [&n] {
    adcsc::ops::ScrapeState state;
    state.now_ms = SystemClock::Default()->NowUnixMillis();
    state.health = n.health->Report();
    state.mode = n.health->mode().mode();
    state.certificate_not_after_ms = n.health->certificate_not_after_ms();
    if (n.cluster != nullptr) {
      if (auto status = n.cluster->Status(); status.ok()) state.replication = *status;
      for (const auto& p : n.cluster->transport().protocols().All()) {
        state.peer_protocols.push_back({p.node_id, p.range ? p.range->speaks : 0, !p.refusal.empty()});
      }
    }
    if (const HttpsServer* server = n.api_server.load(); server != nullptr) {
      state.api_connections = static_cast<int64_t>(server->active_connections());
      for (int k = 0; k < kRefusalKinds; ++k) {
        const auto kind = static_cast<Refusal>(k);
        state.api_refusals[std::string(RefusalName(kind))] = server->refusals(kind);
      }
    }
    if (n.ops != nullptr) {
      state.ops_connections = static_cast<int64_t>(n.ops->open_connections());
      state.ops_refused_connections = n.ops->refused_connections();
    }
    if (auto pool = n.ca->ConnectionStats(); pool.has_value()) {
      state.ca_idle_connections = std::move(pool->idle_by_host);
      state.ca_connections_opened = pool->connections_opened;
      state.ca_connections_reused = pool->connections_reused;
      state.ca_binds_by_mechanism = std::move(pool->binds_by_mechanism);
      state.ca_ntlm_fallbacks = pool->ntlm_fallbacks;
      state.ca_ticket_renewals = pool->ticket_renewals;
      state.ca_ticket_expiry_unix = pool->ticket_expiry_unix;
    }
    state.store_integrity_failures = n.integrity->failures();
    // The data directory's volume against the floor below which the store check fails.
    std::error_code ec;
    const std::filesystem::space_info space = std::filesystem::space(n.config.data_dir, ec);
    if (!ec) state.store_free_bytes = static_cast<int64_t>(space.available);
    state.store_min_free_bytes = n.config.store.min_free_bytes;
    state.store_integrity_repairs = n.integrity->repairs();
    state.store_records_pruned = n.integrity->pruned();
    return n.metrics->Scrape(state);
  };
}

// What /status adds for an administrator: the identity the node uses at the CAs, the CAs it
// may talk to and, in a cluster, its view of the cluster (as `adcsc ctl status --json` shows).
std::string StatusDetailsJson(const Config& config, const std::vector<AllowedCa>& allow,
                              const adcsc::cluster::ClusterRuntime* cluster) {
  nlohmann::ordered_json details;
  details["ca_identity"] = config.ca.identity;
  details["ca_backend"] = config.ca.backend;
  nlohmann::ordered_json cas = nlohmann::ordered_json::array();
  for (const AllowedCa& allowed : allow) cas.push_back({{"dc", allowed.dc}, {"ca", allowed.ca}});
  details["cas"] = std::move(cas);
  if (cluster != nullptr) {
    adcsc::cluster::v1::NodeInfo info;
    std::string json;
    google::protobuf::util::JsonPrintOptions print;
    print.always_print_primitive_fields = true;
    if (cluster->Describe(&info).ok() && google::protobuf::util::MessageToJsonString(info, &json, print).ok()) {
      details["cluster"] = nlohmann::ordered_json::parse(json, nullptr, /*allow_exceptions=*/false);
    }
  }
  return details.dump();
}

// The certificates a node learns while it runs: the pinned client certificates presented at
// handshakes, and each CA's chain from its answers.
std::vector<adcsc::ops::CertificateExpiry> SeenCertificates(RunningNode& n) {
  std::vector<adcsc::ops::CertificateExpiry> seen;
  if (const HttpsServer* server = n.api_server.load(); server != nullptr) {
    for (const ClientAuthorizer::Seen& s : server->SeenClientCertificates()) {
      seen.push_back({"jamf client (pinned)", s.subject, "seen at a handshake, sha256:" + s.pin,
                      s.not_after_unix * 1000, s.until_unix * 1000});
    }
  }
  std::set<std::pair<std::string, int64_t>> in_files;  // a CA certificate also in ca.allow[].ca_cert_file
  {
    std::lock_guard lock(n.file_certificates_mu);
    for (const auto& f : n.file_certificates) in_files.insert({f.subject, f.not_after_ms});
  }
  for (const adcsc::ca::ChainRecorder::Known& k : n.ca_chains->Certificates()) {
    if (in_files.count({k.subject, k.not_after_unix * 1000}) != 0) continue;
    seen.push_back(
        {"ca certificate", k.subject, absl::StrCat("chain of an answer from ", k.ca_config), k.not_after_unix * 1000});
  }
  return seen;
}

// Peer.Info's certificates (`adcsc ctl status`): the health's list with its states, or without
// [ops] the configuration's files judged by the default thresholds.
std::vector<adcsc::cluster::v1::NodeCertificate> NodeCertificates(RunningNode& n) {
  std::vector<adcsc::cluster::v1::NodeCertificate> out;
  auto add = [&out](const adcsc::ops::CertificateExpiry& e, std::string_view state) {
    adcsc::cluster::v1::NodeCertificate& c = out.emplace_back();
    c.set_role(e.role);
    c.set_subject(e.subject);
    c.set_source(e.source);
    c.set_not_after_unix_ms(e.not_after_ms);
    c.set_state(std::string(state));
    c.set_mapped_until_unix_ms(e.mapped_until_ms);
  };
  if (n.health != nullptr) {
    for (const auto& c : n.health->Report().certificates) add(c.certificate, c.state);
  } else {
    const adcsc::ops::HealthPolicy defaults;
    const int64_t now_ms = SystemClock::Default()->NowUnixMillis();
    std::vector<adcsc::ops::CertificateExpiry> all;
    {
      std::lock_guard lock(n.file_certificates_mu);
      all = n.file_certificates;
    }
    for (auto& e : SeenCertificates(n)) all.push_back(std::move(e));
    for (const auto& e : all) {
      add(e, adcsc::ops::ExpiryState(e, now_ms, defaults.warn_certificate_days, defaults.critical_certificate_days));
    }
  }
  return out;
}

// What Peer.Info reports of this node besides the store: its health (with [ops]) and, when
// asked, its API activity of the last hour.
void DescribeNodeStatus(RunningNode& n, bool include_activity, adcsc::cluster::v1::NodeInfo* reply) {
  if (n.health != nullptr) FillNodeHealth(n.health->Report(), adcsc::ops::ModeName(n.mode->mode()), reply);
  if (include_activity && n.activity != nullptr) FillNodeActivity(n.activity->Snapshot(), reply);
}

void ShareCertificates(RunningNode& n) {
  if (n.cluster == nullptr) return;
  n.cluster->SetCertificateSource([&n] { return NodeCertificates(n); });
  n.cluster->SetStatusSource([&n](bool include_activity, adcsc::cluster::v1::NodeInfo* reply) {
    DescribeNodeStatus(n, include_activity, reply);
  });
}

// GET / on the ops port (administrators only): the cluster status page. Asks every peer for
// its Info with activity (in parallel, bounded by cluster.lookup_timeout), so it runs on an
// ops worker thread.
std::string StatusPageHtml(RunningNode& n) {
  adcsc::ops::StatusPageModel m;
  m.served_by = n.config.node_id;
  m.version = ADCSC_VERSION;
  m.now_ms = SystemClock::Default()->NowUnixMillis();
  const adcsc::ops::HealthPolicy thresholds;
  m.warn_days = thresholds.warn_certificate_days;
  m.critical_days = thresholds.critical_certificate_days;
  adcsc::cluster::v1::NodeInfo self;
  std::string self_address;
  if (n.cluster != nullptr) {
    m.cluster_id = n.config.cluster.id;
    self_address = adcsc::cluster::SelfAsPeer(n.config).address;
    (void)n.cluster->Describe(&self, /*include_activity=*/true);
  }
  // Without a cluster (or if Describe failed): this node from its own parts.
  self.mutable_from()->set_node_id(n.config.node_id);
  if (self.version().empty()) self.set_version(ADCSC_VERSION);
  if (self.ca_identity().empty()) self.set_ca_identity(n.config.ca.identity);
  if (!self.certificates_reported()) {
    for (auto& c : NodeCertificates(n)) *self.add_certificates() = std::move(c);
    self.set_certificates_reported(true);
  }
  if (!self.health_reported() || !self.activity_reported()) {
    self.clear_health();
    self.clear_activity();
    DescribeNodeStatus(n, /*include_activity=*/true, &self);
  }
  m.nodes.push_back(StatusPageNodeOf(self, self_address));
  if (n.cluster != nullptr) {
    for (adcsc::cluster::PeerSurvey& p : n.cluster->directory().Survey(/*include_activity=*/true)) {
      if (!p.error.empty()) {
        adcsc::ops::StatusPageNode down;
        down.node_id = p.node_id;
        down.address = p.address;
        down.error = p.error;
        m.nodes.push_back(std::move(down));
        continue;
      }
      m.nodes.push_back(StatusPageNodeOf(p.info, p.address));
    }
  }
  return adcsc::ops::RenderStatusPage(m);
}

// The health monitor and the ops listener ([ops]): health, metrics, /status and the admin
// channel for drain and maintenance.
Step StartOps(RunningNode& n) {
  const Config& c = n.config;
  if (!c.ops.enabled) {
    ShareCertificates(n);
    return std::nullopt;
  }
  adcsc::ops::HealthSources sources = HealthSourcesFor(c, n.store.get(), n.integrity.get(), n.ca, n.cluster.get(),
                                                       n.mode.get(), &n.service->ca_reachability());
  // A probe result is believed for 30 s, or three intervals when probes are rarer than that.
  adcsc::ops::HealthPolicy policy;
  policy.max_probe_age_ms = std::max<int64_t>(policy.max_probe_age_ms, 3 * c.ops.probe_interval.count());
  policy.max_store_write_ms = c.ops.max_store_write.count();
  sources.seen_clients = [&n] { return SeenCertificates(n); };
  n.health = std::make_unique<adcsc::ops::HealthMonitor>(std::move(sources), c.ops.probe_interval, policy);
  n.health->Start();
  ShareCertificates(n);
  adcsc::ops::OpsServerOptions o;
  o.listen_address = c.ops.listen_address;
  o.listen_port = c.ops.listen_port;
  o.max_connections = c.ops.max_connections;
  o.tls = c.ops.tls;
  o.cert_file = c.ops.cert_file;
  o.key_file = c.ops.key_file;
  o.node_id = c.node_id;
  o.version = ADCSC_VERSION;
  o.metrics = MetricsScrape(n);
  o.status_extra = [&c, service = n.service.get(), cluster = n.cluster.get()] {
    return StatusDetailsJson(c, *service->Allowlist(), cluster);
  };
  o.status_page = [&n] { return StatusPageHtml(n); };
  if (!c.ops.admin_pins.empty()) {
    auto admin = ClientAuthorizer::Create(c.ops.admin_ca_file.string(), c.ops.admin_pins);
    if (!admin.ok()) {
      return StartError{kExitConfigError, n.InConfig(absl::StrCat("ops.admin_ca_file: ", admin.status().message()))};
    }
    n.admin_authorizer = std::move(*admin);
    o.admin = n.admin_authorizer.get();
    o.on_mode_change = [log = n.log.get()](adcsc::ops::ServiceMode m, const std::string& pin) {
      log->Info("service_mode", {{"mode", std::string(adcsc::ops::ModeName(m))}, {"admin_pin", pin}});
    };
    if (c.ca.backend == "icpr") {
      auto auth = MakeIcprAuthenticator(c);
      if (!auth.ok()) return n.Fail(kExitConfigError, n.InConfig(auth.status().message()));
      o.on_ca_admin = [&n, auth = *auth](const std::string& body, const std::string& pin) {
        return CaAdminAnswer(n, auth, body, pin);
      };
    }
  }
  // The caller is told only "forbidden"; why is for the operator.
  o.on_refused = [log = n.log.get()](const std::string& remote, const std::string& path, const std::string& reason) {
    log->Warn("ops_admin_refused", {{"remote", remote}, {"path", path}, {"reason", reason}});
  };
  n.ops = std::make_unique<adcsc::ops::OpsServer>(o, n.health.get());
  if (auto s = n.ops->Start(); !s.ok()) return n.Fail(kExitConfigError, n.InConfig(s.message()));
  n.log->Info("ops_listening", {{"listen", c.ops.listen_address + ":" + std::to_string(n.ops->port())},
                                {"tls", c.ops.tls},
                                {"mode", std::string(adcsc::ops::ModeName(n.mode->mode()))}});
  return std::nullopt;
}

Step StartApiServer(RunningNode& n) {
  const Config& c = n.config;
  n.server = std::make_unique<HttpsServer>(c.api, n.service.get(), n.authorizer.get(), n.log.get(), n.access_log.get());
  if (auto s = n.server->Start(); !s.ok()) return n.Fail(kExitConfigError, n.InConfig(s.message()));
  n.api_server.store(n.server.get());
  n.log->Info("started", {{"version", ADCSC_VERSION},
                          {"cluster_protocol", adcsc::cluster::LocalProtocolRange().ToMetadata()},
                          {"listen", c.api.listen_address + ":" + std::to_string(n.server->port())},
                          {"backend", n.backend->Kind()},
                          {"data_dir", c.data_dir.string()}});
  return std::nullopt;
}

// Submits a previous run of this node began and never recorded (it was killed, or the CA's
// answer was lost) are looked for at the CA in the background, so that any node answers the
// client's retry with the request the CA already has.
Step ResolveOpenIntents(RunningNode& n) {
  n.integrity->StartSchedule();
  n.intent_resolver = std::thread([service = n.service.get()] { service->ResolveOpenIntents(); });
  return std::nullopt;
}

// The settings a reload leaves for the next restart that differ in `fresh`, by key.
std::vector<std::string> ChangedUntilRestart(const Config& running, const Config& fresh) {
  std::vector<std::string> keys;
  auto note = [&](bool changed, const char* key) {
    if (changed) keys.push_back(key);
  };
  note(running.api.listen_address != fresh.api.listen_address || running.api.listen_port != fresh.api.listen_port,
       "api.listen");
  note(running.api.max_connections != fresh.api.max_connections, "api.max_connections");
  note(running.ca.backend != fresh.ca.backend, "ca.backend");
  note(running.ca.identity != fresh.ca.identity, "ca.identity");
  note(running.cluster.enabled != fresh.cluster.enabled, "cluster");
  note(running.cluster.peers.size() != fresh.cluster.peers.size() ||
           !std::equal(running.cluster.peers.begin(), running.cluster.peers.end(), fresh.cluster.peers.begin(),
                       [](const PeerConfig& a, const PeerConfig& b) { return a.id == b.id && a.address == b.address; }),
       "cluster.peers");
  note(running.cluster.cert_file != fresh.cluster.cert_file || running.cluster.key_file != fresh.cluster.key_file ||
           running.cluster.ca_file != fresh.cluster.ca_file,
       "cluster.cert_file/key_file/ca_file");
  note(running.ops.enabled != fresh.ops.enabled || running.ops.tls != fresh.ops.tls ||
           running.ops.listen_address != fresh.ops.listen_address || running.ops.listen_port != fresh.ops.listen_port,
       "ops.listen/tls");
  note(running.log.file != fresh.log.file || running.log.access_log != fresh.log.access_log ||
           running.log.level != fresh.log.level,
       "log");
  return keys;
}

// Proves a TLS identity loads (key matches certificate, modes, chain) without using it.
absl::Status CheckIdentity(const std::filesystem::path& cert, std::string_view cert_key,
                           const std::filesystem::path& key, std::string_view key_key) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
  if (ctx == nullptr) return absl::InternalError("cannot allocate a TLS context");
  return LoadServerIdentity(ctx.get(), cert, cert_key, key, key_key);
}

// SIGHUP's second half: the configuration file again. Without a restart:
//  - new API connections get the new identity (api.cert_file, api.key_file, api.client_ca_file)
//    and are mapped by the new api.client_pins;
//  - new ops connections get the new ops identity (ops.cert_file, ops.key_file), and the admin
//    channel judges callers by the new ops.admin_ca_file and ops.admin_pins;
//  - submits and retrieves checked after it use the new CA allowlist (ca.allow: CAs, templates,
//    signing policy), the health probes ping its CAs, and /status lists them;
//  - the health report's certificates are read again from the new files.
// Connections and calls already under way keep what they had. Everything is checked before
// anything changes: a file that does not load (a syntax error, a key that does not match its
// certificate, an unreadable file, a changed node_id or data_dir) changes nothing; the
// running configuration stays, and the log and <data_dir>/reload.json say why. Other settings
// take effect at the next restart; the answer names those that changed.
void ReloadConfig(RunningNode& n) {
  ++n.reloads;
  std::string outcome = "reloaded", detail;
  auto refuse = [&](std::string why) {
    outcome = "refused";
    detail = std::move(why);
  };
  auto fresh = LoadConfig(n.config_path);
  std::unique_ptr<ClientAuthorizer> authorizer, admin;
  if (!fresh.ok()) {
    refuse(std::string(fresh.status().message()));
  } else if (fresh->node_id != n.config.node_id || fresh->data_dir != n.config.data_dir) {
    refuse("node_id and node.data_dir change only with a restart");
  } else if (auto api = ClientAuthorizer::Create(fresh->api.client_ca_file.string(), fresh->api.client_pins,
                                                 SystemClock::Default(), fresh->api.client_pin_until);
             !api.ok()) {
    refuse(absl::StrCat("api.client_ca_file: ", api.status().message()));
  } else if (absl::Status id =
                 CheckIdentity(fresh->api.cert_file, "api.cert_file", fresh->api.key_file, "api.key_file");
             !id.ok()) {
    refuse(std::string(id.message()));
  } else {
    authorizer = std::move(*api);
    if (n.ops != nullptr && n.config.ops.tls && !fresh->ops.cert_file.empty()) {
      if (absl::Status ops = CheckIdentity(fresh->ops.cert_file, "ops.cert_file", fresh->ops.key_file, "ops.key_file");
          !ops.ok()) {
        refuse(std::string(ops.message()));
      }
    }
    if (outcome == "reloaded" && !fresh->ops.admin_pins.empty()) {
      auto created = ClientAuthorizer::Create(fresh->ops.admin_ca_file.string(), fresh->ops.admin_pins);
      if (created.ok()) {
        admin = std::move(*created);
      } else {
        refuse(absl::StrCat("ops.admin_ca_file: ", created.status().message()));
      }
    }
  }
  if (outcome == "reloaded") {
    // Checked above; what could still fail here is a file replaced in the last milliseconds.
    absl::Status s = n.server->ReloadIdentity(fresh->api, std::move(authorizer));
    if (s.ok() && n.ops != nullptr) {
      const bool ops_tls_identity = n.config.ops.tls && !fresh->ops.cert_file.empty();
      s = n.ops->Reload(ops_tls_identity ? fresh->ops.cert_file : n.config.ops.cert_file,
                        ops_tls_identity ? fresh->ops.key_file : n.config.ops.key_file, std::move(admin));
    }
    if (!s.ok()) {
      refuse(std::string(s.message()));
    } else {
      n.service->ReplaceAllowlist(fresh->ca.allow);
      if (n.health != nullptr) {
        n.health->SetCertificates(CertificateInventory(*fresh));
        n.health->SetCas(CaProbesFor(fresh->ca.allow, n.config.ca.identity, n.ca, &n.service->ca_reachability()));
      }
      {
        std::lock_guard lock(n.file_certificates_mu);
        n.file_certificates = CertificateInventory(*fresh);
      }
      const std::vector<std::string> later = ChangedUntilRestart(n.config, *fresh);
      detail = absl::StrCat(
          "api identity ", fresh->api.cert_file.string(), ", client CA ", fresh->api.client_ca_file.string(), ", ",
          fresh->api.client_pins.size(), " client pins",
          fresh->api.client_pin_until.empty()
              ? std::string()
              : absl::StrCat(" (", fresh->api.client_pin_until.size(), " until the end of an overlap)"),
          ", ", fresh->ops.admin_pins.size(), " admin pins, ", fresh->ca.allow.size(), " allowlisted CAs; ",
          later.empty() ? std::string("nothing else changed")
                        : absl::StrCat("changed but applied only at the next restart: ", absl::StrJoin(later, ", ")));
    }
  }
  if (outcome == "reloaded") {
    n.log->Info("config_reloaded", {{"signal", "SIGHUP"}, {"outcome", outcome}, {"detail", detail}});
  } else {
    n.log->Error("config_reloaded", {{"signal", "SIGHUP"},
                                     {"outcome", outcome},
                                     {"error", detail},
                                     {"what_to_check",
                                      "fix the file (adcsc node --check --config ...), then reload "
                                      "again; the node keeps running as before"}});
  }
  // For `adcsc ctl reload`, which waits for this generation to appear.
  const nlohmann::json result = {{"generation", n.reloads},
                                 {"pid", static_cast<int64_t>(::getpid())},
                                 {"outcome", outcome},
                                 {"detail", detail},
                                 {"at_ms", SystemClock::Default()->NowUnixMillis()}};
  const std::filesystem::path file = n.config.data_dir / "reload.json", tmp = n.config.data_dir / "reload.json.tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << result.dump() << "\n";
  }
  std::error_code ec;
  std::filesystem::rename(tmp, file, ec);
}

// Waits for SIGTERM or SIGINT and returns it; on SIGHUP reopens the event and access logs
// (logrotate's postrotate sends it, deploy/logrotate/adcsc), reloads what can be reloaded
// (ReloadConfig) and goes on waiting.
int WaitForStopSignal(RunningNode& n) {
  const sigset_t set = HandledSignals();
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig != SIGHUP) return sig;
    absl::Status events = n.log->Reopen();
    absl::Status access = n.access_log ? n.access_log->Reopen() : absl::OkStatus();
    if (events.ok() && access.ok()) {
      n.log->Info("logs_reopened", {{"signal", "SIGHUP"}});
    } else {
      n.log->Error("logs_reopened",
                   {{"signal", "SIGHUP"},
                    {"error", absl::StrCat(events.ok() ? "" : events.message(), access.ok() ? "" : access.message())},
                    {"what_to_check", "the log directory exists, is writable by the service user and has space"}});
    }
    ReloadConfig(n);
  }
}

// Stops accepting, lets requests in progress finish within api.shutdown_grace_ms, then
// stops the ops listener (it reads the API server's connection count) and logs the totals.
void ShutDown(RunningNode& n, int sig) {
  HttpsServer& server = *n.server;
  n.log->Info("stopping", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"},
                           {"in_flight_connections", server.active_connections()},
                           {"grace_ms", n.config.api.shutdown_grace.count()}});
  server.BeginShutdown();
  const bool clean = server.WaitIdle(n.config.api.shutdown_grace);
  server.Stop();
  if (n.intent_resolver.joinable()) n.intent_resolver.join();
  if (n.ops) n.ops->Stop();
  n.api_server.store(nullptr);
  const ServerCounters& c = server.counters();
  n.log->Info("stopped", {{"clean", clean},
                          {"dropped_connections", server.active_connections()},
                          {"connections_accepted", c.connections_accepted.load()},
                          {"connections_refused", c.connections_refused.load()},
                          {"handshake_failures", c.handshake_failures.load()},
                          {"handshakes_resumed", c.handshakes_resumed.load()},
                          {"requests", c.requests.load()},
                          {"header_timeouts", c.header_timeouts.load()}});
  n.log->Flush();
  if (n.access_log) n.access_log->Flush();
}

int Failed(const StartError& e) {
  std::cerr << "adcsc node: " << e.message << "\n";
  return e.exit_code;
}

}  // namespace

int RunNode(const std::filesystem::path& config_path, bool check_only) {
  auto config = LoadConfig(config_path);
  if (!config.ok()) {
    std::cerr << "adcsc node: configuration errors:\n" << config.status().message() << "\n";
    return kExitConfigError;
  }
  // Signals are blocked before any thread starts, so only sigwait() below sees them.
  BlockStopSignals();
  RunningNode n;
  n.config = std::move(*config);
  n.config_path = config_path;
  n.check_only = check_only;
  if (auto e = OpenLogs(n)) return Failed(*e);
  if (auto e = OpenStateAndBackend(n)) return Failed(*e);
  if (check_only) {
    std::cout << n.config.source.string() << ": configuration OK\n";
    return kExitOk;
  }
  for (Step (*step)(RunningNode&) : {BuildApi, StartOps, StartApiServer, ResolveOpenIntents}) {
    if (auto e = step(n)) return Failed(*e);
  }
  ShutDown(n, WaitForStopSignal(n));
  return kExitOk;
}

}  // namespace adcsc::node
