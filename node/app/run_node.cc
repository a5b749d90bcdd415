#include "node/app/run_node.h"

#include <google/protobuf/util/json_util.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "node/app/backend_factory.h"
#include "node/ca/outage_switch.h"
#include "node/cluster/runtime.h"
#include "node/config/config.h"
#include "node/http/client_auth.h"
#include "node/http/https_server.h"
#include "node/log/logging.h"
#include "node/ops/metrics.h"
#include "node/ops/ops_server.h"
#include "node/pki/x509.h"
#include "store/request_store.h"

namespace adcsc::node {
namespace {

// The probes the health monitor runs for this node: a durable write to the store, a ping of
// every allowlisted CA as the node's identity, the cluster's state, and the API
// certificate's expiry.
adcsc::ops::HealthSources HealthSourcesFor(const Config& config, adcsc::store::RequestStore* store,
                                           adcsc::ca::CaBackend* backend, adcsc::cluster::ClusterRuntime* cluster,
                                           adcsc::ops::ServiceModeStore* mode) {
  adcsc::ops::HealthSources s;
  s.store_check = [store] { return store->Check(/*write=*/true); };
  for (const AllowedCa& allowed : config.ca.allow) {
    adcsc::ca::CaTarget target{allowed.dc, allowed.ca};
    adcsc::ca::CallerIdentity caller{config.ca.identity};
    s.cas.push_back({adcsc::store::CaConfigKey(allowed.dc, allowed.ca),
                     [backend, target, caller] { return backend->Ping(target, caller); }});
  }
  if (cluster != nullptr) {
    // A peer counts as reachable when it answered within a few anti-entropy rounds.
    const int64_t recent_ms = std::max<int64_t>(10'000, 3 * config.cluster.anti_entropy_interval.count());
    const bool refuse = config.cluster.on_quorum_loss == "refuse";
    s.cluster = [cluster, recent_ms, refuse]() -> std::optional<adcsc::ops::ClusterView> {
      adcsc::ops::ClusterView v;
      v.refuse_on_quorum_loss = refuse;
      auto status = cluster->Status();
      if (!status.ok()) return v;
      const int64_t now = SystemClock::Default()->NowUnixMillis();
      v.peers = status->peers.size();
      for (const auto& p : status->peers) {
        if (p.last_ack_ms != 0 && now - p.last_ack_ms <= recent_ms) ++v.peers_reachable;
        v.snapshot_in_progress = v.snapshot_in_progress || p.snapshot_in_progress;
        v.lag_mutations = std::max(v.lag_mutations, p.lag_mutations);
      }
      return v;
    };
  }
  if (std::ifstream in(config.api.cert_file); in) {
    std::stringstream pem;
    pem << in.rdbuf();
    if (auto cert = adcsc::pki::CertFromPem(pem.str()); cert.ok()) {
      s.certificate_not_after_ms = adcsc::pki::NotAfterUnix(cert->get()) * 1000;
    }
  }
  s.mode = mode;
  s.clock = SystemClock::Default();
  return s;
}

// Blocks SIGTERM/SIGINT in every thread and returns the one that arrives.
int WaitForStopSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

void BlockStopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
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

  auto level = ParseLogLevel(config->log.level);  // checked when the configuration was read
  auto log = EventLog::Open(config->log.file, level.ok() ? *level : LogLevel::kInfo, config->node_id);
  if (!log.ok()) {
    std::cerr << "adcsc node: " << log.status().message() << "\n";
    return kExitConfigError;
  }
  std::unique_ptr<AccessLog> access_log;
  if (!config->log.access_log.empty()) {
    auto a = AccessLog::Open(config->log.access_log);
    if (!a.ok()) {
      std::cerr << "adcsc node: " << a.status().message() << "\n";
      return kExitConfigError;
    }
    access_log = std::move(*a);
  }
  auto authorizer = ClientAuthorizer::Create(config->api.client_ca_file.string(), config->api.client_pins);
  if (!authorizer.ok()) {
    std::cerr << "adcsc node: " << config->source.string() << ": " << authorizer.status().message() << "\n";
    return kExitConfigError;
  }
  std::error_code ec;
  std::filesystem::create_directories(config->data_dir, ec);
  if (ec) {
    std::cerr << "adcsc node: " << config->source.string() << ": node.data_dir: cannot create "
              << config->data_dir.string() << ": " << ec.message() << "\n";
    return kExitConfigError;
  }
  std::filesystem::permissions(config->data_dir, std::filesystem::perms::owner_all, ec);

  adcsc::store::StoreOptions store_options;
  store_options.path = config->data_dir / "store.db";
  store_options.node_id = config->node_id;
  auto store = adcsc::store::RequestStore::Open(store_options);
  if (!store.ok()) {
    std::cerr << "adcsc node: request store: " << store.status().message() << "\n";
    return kExitRuntimeError;
  }
  auto backend = MakeCaBackend(*config);
  if (!backend.ok()) {
    std::cerr << "adcsc node: CA backend \"" << config->ca.backend << "\": " << backend.status().message() << "\n";
    return kExitRuntimeError;
  }
  if (check_only) {
    std::cout << config->source.string() << ": configuration OK\n";
    return kExitOk;
  }

  // With fault injection allowed, every CA call goes through a switch a drill can turn off.
  std::unique_ptr<adcsc::ca::OutageSwitch> ca_switch;
  adcsc::ca::CaBackend* ca = backend->get();
  if (config->cluster.enabled && config->cluster.allow_fault_injection) {
    ca_switch = std::make_unique<adcsc::ca::OutageSwitch>(ca);
    ca = ca_switch.get();
  }
  ApiService service(*config, ca, store->get(), log->get(), SystemClock::Default());
  std::unique_ptr<adcsc::cluster::ClusterRuntime> cluster;
  if (config->cluster.enabled) {
    auto started = adcsc::cluster::ClusterRuntime::Start(*config, store->get());
    if (!started.ok()) {
      (*log)->Error("start_failed", {{"error", started.status().message()}});
      std::cerr << "adcsc node: " << config->source.string() << ": " << started.status().message() << "\n";
      return kExitConfigError;
    }
    cluster = std::move(*started);
    service.set_replication(cluster.get());
    service.set_peers(cluster->peers());
    cluster->set_api(&service);
    if (ca_switch) cluster->set_ca_switch(ca_switch.get());
  }
  auto mode = adcsc::ops::ServiceModeStore::Open(config->data_dir / adcsc::ops::kServiceModeFile);
  if (!mode.ok()) {
    std::cerr << "adcsc node: " << mode.status().message() << "\n";
    return kExitRuntimeError;
  }
  // The API server, for the metrics, once it exists (it starts after the ops listener).
  std::atomic<const HttpsServer*> api_server{nullptr};
  std::unique_ptr<adcsc::ops::HealthMonitor> health;
  std::unique_ptr<adcsc::ops::NodeMetrics> metrics;
  std::unique_ptr<ClientAuthorizer> admin_authorizer;
  std::unique_ptr<adcsc::ops::OpsServer> ops;
  if (config->ops.enabled) {
    adcsc::ops::HealthSources sources = HealthSourcesFor(*config, store->get(), ca, cluster.get(), mode->get());
    const int64_t certificate_not_after_ms = sources.certificate_not_after_ms;
    // A probe result is believed for 30 s, or three intervals when probes are rarer than that.
    adcsc::ops::HealthPolicy policy;
    policy.max_probe_age_ms = std::max<int64_t>(policy.max_probe_age_ms, 3 * config->ops.probe_interval.count());
    health = std::make_unique<adcsc::ops::HealthMonitor>(std::move(sources), config->ops.probe_interval, policy);
    health->Start();
    metrics = std::make_unique<adcsc::ops::NodeMetrics>();
    service.set_observer(metrics.get());
    adcsc::ops::OpsServerOptions o;
    o.listen_address = config->ops.listen_address;
    o.listen_port = config->ops.listen_port;
    o.tls = config->ops.tls;
    o.cert_file = config->ops.cert_file;
    o.key_file = config->ops.key_file;
    o.node_id = config->node_id;
    o.version = ADCSC_VERSION;
    o.metrics = [m = metrics.get(), h = health.get(), c = cluster.get(), certificate_not_after_ms, ca,
                 api = &api_server] {
      adcsc::ops::ScrapeState state;
      state.now_ms = SystemClock::Default()->NowUnixMillis();
      state.health = h->Report();
      state.mode = h->mode().mode();
      state.certificate_not_after_ms = certificate_not_after_ms;
      if (c != nullptr) {
        if (auto status = c->Status(); status.ok()) state.replication = *status;
      }
      if (const HttpsServer* server = api->load(); server != nullptr) {
        state.api_connections = static_cast<int64_t>(server->active_connections());
      }
      if (auto pool = ca->ConnectionStats(); pool.has_value()) {
        state.ca_idle_connections = std::move(pool->idle_by_host);
        state.ca_connections_opened = pool->connections_opened;
        state.ca_connections_reused = pool->connections_reused;
      }
      return m->Scrape(state);
    };
    if (cluster != nullptr) {
      // /status also shows this node's view of the cluster, as `adcsc ctl status --json` does.
      o.status_extra = [c = cluster.get()]() -> std::string {
        adcsc::cluster::v1::NodeInfo info;
        if (!c->Describe(&info).ok()) return "";
        std::string json;
        google::protobuf::util::JsonPrintOptions print;
        print.always_print_primitive_fields = true;
        if (!google::protobuf::util::MessageToJsonString(info, &json, print).ok()) return "";
        return absl::StrCat("{\"cluster\":", json, "}");
      };
    }
    if (!config->ops.admin_pins.empty()) {
      auto admin = ClientAuthorizer::Create(config->ops.admin_ca_file.string(), config->ops.admin_pins);
      if (!admin.ok()) {
        std::cerr << "adcsc node: " << config->source.string() << ": ops.admin_ca_file: " << admin.status().message()
                  << "\n";
        return kExitConfigError;
      }
      admin_authorizer = std::move(*admin);
      o.admin = admin_authorizer.get();
      o.on_mode_change = [l = log->get()](adcsc::ops::ServiceMode m, const std::string& pin) {
        l->Info("service_mode", {{"mode", std::string(adcsc::ops::ModeName(m))}, {"admin_pin", pin}});
      };
    }
    ops = std::make_unique<adcsc::ops::OpsServer>(o, health.get());
    if (auto s = ops->Start(); !s.ok()) {
      (*log)->Error("start_failed", {{"error", s.message()}});
      std::cerr << "adcsc node: " << config->source.string() << ": " << s.message() << "\n";
      return kExitConfigError;
    }
    (*log)->Info("ops_listening", {{"listen", config->ops.listen_address + ":" + std::to_string(ops->port())},
                                   {"tls", config->ops.tls},
                                   {"mode", std::string(adcsc::ops::ModeName((*mode)->mode()))}});
  }
  HttpsServer server(config->api, &service, authorizer->get(), log->get(), access_log.get());
  if (auto s = server.Start(); !s.ok()) {
    (*log)->Error("start_failed", {{"error", s.message()}});
    std::cerr << "adcsc node: " << config->source.string() << ": " << s.message() << "\n";
    return kExitConfigError;
  }
  api_server.store(&server);
  (*log)->Info("started", {{"version", ADCSC_VERSION},
                           {"listen", config->api.listen_address + ":" + std::to_string(server.port())},
                           {"backend", (*backend)->Kind()},
                           {"data_dir", config->data_dir.string()}});

  int sig = WaitForStopSignal();
  (*log)->Info("stopping", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"},
                            {"in_flight_connections", server.active_connections()},
                            {"grace_ms", config->api.shutdown_grace.count()}});
  server.BeginShutdown();
  bool clean = server.WaitIdle(config->api.shutdown_grace);
  server.Stop();
  // The ops listener reads the API server's connection count: it stops first.
  if (ops) ops->Stop();
  api_server.store(nullptr);
  const ServerCounters& c = server.counters();
  (*log)->Info("stopped", {{"clean", clean},
                           {"dropped_connections", server.active_connections()},
                           {"connections_accepted", c.connections_accepted.load()},
                           {"connections_refused", c.connections_refused.load()},
                           {"handshake_failures", c.handshake_failures.load()},
                           {"handshakes_resumed", c.handshakes_resumed.load()},
                           {"requests", c.requests.load()},
                           {"header_timeouts", c.header_timeouts.load()}});
  (*log)->Flush();
  if (access_log) access_log->Flush();
  return kExitOk;
}

}  // namespace adcsc::node
