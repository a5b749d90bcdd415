#include "node/app/run_node.h"

#include <google/protobuf/util/json_util.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>

#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "node/app/backend_factory.h"
#include "node/app/cert_inventory.h"
#include "node/ca/outage_switch.h"
#include "node/cluster/bulk_join.h"
#include "node/cluster/runtime.h"
#include "node/config/config.h"
#include "node/http/client_auth.h"
#include "node/http/https_server.h"
#include "node/log/logging.h"
#include "node/ops/metrics.h"
#include "node/ops/ops_server.h"
#include "node/ops/store_maintenance.h"
#include "node/pki/x509.h"
#include "store/dir_lock.h"
#include "store/repair.h"
#include "store/request_store.h"

namespace adcsc::node {
namespace {

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
  for (const AllowedCa& allowed : config.ca.allow) {
    adcsc::ca::CaTarget target{allowed.dc, allowed.ca};
    adcsc::ca::CallerIdentity caller{config.ca.identity};
    const std::string key = adcsc::store::CaConfigKey(allowed.dc, allowed.ca);
    // Each probe also tells the peers (through the API's reachability view) whether this
    // node can take their submits and retrieves to the CA.
    s.cas.push_back({key, [backend, target, caller, reachability, key] {
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
  // With fault injection allowed, every CA call goes through a switch a drill can turn off.
  std::unique_ptr<adcsc::ca::OutageSwitch> ca_switch;
  adcsc::ca::CaBackend* ca = nullptr;  // the backend, or the switch in front of it
  std::unique_ptr<adcsc::ops::ServiceModeStore> mode;
  std::unique_ptr<adcsc::ops::NodeMetrics> metrics;
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
  auto authorizer = ClientAuthorizer::Create(c.api.client_ca_file.string(), c.api.client_pins);
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
  n.ca = n.backend.get();
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
  ApiServiceLinks links;
  links.observer = n.metrics.get();
  if (n.config.cluster.enabled) {
    auto cluster = adcsc::cluster::ClusterRuntime::Create(n.config, n.store.get());
    if (!cluster.ok()) return n.Fail(kExitConfigError, n.InConfig(cluster.status().message()));
    n.cluster = std::move(*cluster);
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
    state.store_integrity_repairs = n.integrity->repairs();
    state.store_records_pruned = n.integrity->pruned();
    return n.metrics->Scrape(state);
  };
}

// What /status adds for an administrator: the identity the node uses at the CAs, the CAs it
// may talk to and, in a cluster, its view of the cluster (as `adcsc ctl status --json` shows).
std::string StatusDetailsJson(const Config& config, const adcsc::cluster::ClusterRuntime* cluster) {
  nlohmann::ordered_json details;
  details["ca_identity"] = config.ca.identity;
  details["ca_backend"] = config.ca.backend;
  nlohmann::ordered_json cas = nlohmann::ordered_json::array();
  for (const AllowedCa& allowed : config.ca.allow) cas.push_back({{"dc", allowed.dc}, {"ca", allowed.ca}});
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

// The health monitor and the ops listener ([ops]): health, metrics, /status and the admin
// channel for drain and maintenance.
Step StartOps(RunningNode& n) {
  const Config& c = n.config;
  if (!c.ops.enabled) return std::nullopt;
  adcsc::ops::HealthSources sources = HealthSourcesFor(c, n.store.get(), n.integrity.get(), n.ca, n.cluster.get(),
                                                       n.mode.get(), &n.service->ca_reachability());
  // A probe result is believed for 30 s, or three intervals when probes are rarer than that.
  adcsc::ops::HealthPolicy policy;
  policy.max_probe_age_ms = std::max<int64_t>(policy.max_probe_age_ms, 3 * c.ops.probe_interval.count());
  policy.max_store_write_ms = c.ops.max_store_write.count();
  sources.seen_clients = [&n] {
    std::vector<adcsc::ops::CertificateExpiry> seen;
    const HttpsServer* server = n.api_server.load();
    if (server == nullptr) return seen;
    for (const ClientAuthorizer::Seen& s : server->SeenClientCertificates()) {
      seen.push_back(
          {"jamf client (pinned)", s.subject, "seen at a handshake, sha256:" + s.pin, s.not_after_unix * 1000});
    }
    return seen;
  };
  n.health = std::make_unique<adcsc::ops::HealthMonitor>(std::move(sources), c.ops.probe_interval, policy);
  n.health->Start();
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
  o.status_extra = [&c, cluster = n.cluster.get()] { return StatusDetailsJson(c, cluster); };
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

// SIGHUP's second half: the configuration file again. Without a restart, new connections get
// the new API identity (api.cert_file, api.key_file, api.client_ca_file) and are mapped by the
// new api.client_pins; connections already open keep what they had. A file that does not load
// (a syntax error, a key that does not match its certificate, an unreadable file) changes
// nothing: the running configuration stays, and the log and <data_dir>/reload.json say why.
// Other settings take effect at the next restart (the answer says so).
void ReloadConfig(RunningNode& n) {
  ++n.reloads;
  std::string outcome = "reloaded", detail;
  auto fresh = LoadConfig(n.config_path);
  if (!fresh.ok()) {
    outcome = "refused";
    detail = std::string(fresh.status().message());
  } else if (fresh->node_id != n.config.node_id || fresh->data_dir != n.config.data_dir) {
    outcome = "refused";
    detail = "node_id and node.data_dir change only with a restart";
  } else {
    auto authorizer = ClientAuthorizer::Create(fresh->api.client_ca_file.string(), fresh->api.client_pins);
    absl::Status s =
        authorizer.ok() ? n.server->ReloadIdentity(fresh->api, std::move(*authorizer)) : authorizer.status();
    if (!s.ok()) {
      outcome = "refused";
      detail = std::string(s.message());
    } else {
      if (n.health != nullptr) n.health->SetCertificates(CertificateInventory(*fresh));
      detail = absl::StrCat("api identity ", fresh->api.cert_file.string(), ", client CA ",
                            fresh->api.client_ca_file.string(), ", ", fresh->api.client_pins.size(),
                            " client pins; other settings take effect at the next restart");
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
