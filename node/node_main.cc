#include "node/node_main.h"

#include <signal.h>

#include <cstdio>
#include <iostream>

#include "node/backend_factory.h"
#include "node/cluster/runtime.h"
#include "node/client_auth.h"
#include "node/config.h"
#include "node/https_server.h"
#include "node/logging.h"
#include "store/request_store.h"

namespace adcsc::node {
namespace {

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

  auto log = EventLog::Open(config->log, config->node_id);
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

  ApiService service(*config, backend->get(), store->get(), log->get(), SystemClock::Default());
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
  }
  HttpsServer server(config->api, &service, authorizer->get(), log->get(), access_log.get());
  if (auto s = server.Start(); !s.ok()) {
    (*log)->Error("start_failed", {{"error", s.message()}});
    std::cerr << "adcsc node: " << config->source.string() << ": " << s.message() << "\n";
    return kExitConfigError;
  }
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
