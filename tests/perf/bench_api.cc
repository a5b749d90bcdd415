// Benchmark of the single-node API against the embedded CA (`local` backend).
//
// For RSA-2048 and P-256 CA keys it measures request+retrieve pairs per second and p50/p99
// pair latency with 1, 8 and 32 concurrent clients, in three client modes:
//   keep-alive      one mTLS connection per client, reused
//   new-conn+resume a new TLS connection per request with session resumption (how Jamf
//                   Pro's Java client behaves when it presents a client certificate)
//   new-conn        a new full handshake per request (resumption off), for comparison
// beside the ceiling: the CA engine called in-process (submit + retrieve, no HTTP, no TLS,
// no request store). Then a run at half of each mode's peak rate for the latency target,
// and the node's peak RSS (VmHWM). Prints a Markdown table; asserts nothing about time.
// Each server is warmed up first (kWarmupPairs), so SQLite's write-ahead logs have reached
// their steady size: while a WAL file still grows, every fsync also commits file-size
// metadata and costs several times more than in the steady state a long-running node is in.
//
// Usage: bench_api [--smoke | --full] [--repeat N] [--cell-ms N] [--key rsa2048|p256] [--mode NAME]
//                  [--no-pin] [--adcsc PATH]
//   --smoke  a few hundred milliseconds per cell (ctest runs this to keep it working)
//   --full   3 s per cell (the figures in docs/performance.md)
//   --repeat N  run everything N times (a fresh node each round) and report the median of
//              each figure, with the range of "% of ceiling" over the rounds: single runs
//              on a shared 2-core VM vary by several percent
//   --cell-ms N  cell length (after --full / --smoke), e.g. to attach a profiler to one cell
//   --key, --mode  run only that CA key type / client mode (for profiling)
//   --no-pin   let the node (or in-process server side) and the clients share all CPUs;
//              by default the server side gets CPU 0 and the clients the others, as in
//              production where Jamf Pro runs on its own host
// Environment: BENCH_API_EXTRA, extra lines for the node's [api] table (e.g.
// "worker_threads = 2"), to compare settings.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "node/api/api_service.h"
#include "node/ca/local_ca.h"
#include "node/client/https_client.h"
#include "node/pki/bootstrap.h"
#include "node/pki/csr.h"
#include "node/pki/encoding.h"
#include "node/pki/keys.h"
#include "tests/testing/free_port.h"
#include "tests/testing/temp_dir.h"

extern char** environ;

namespace adcsc::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr char kDc[] = "ca.bench.test";
constexpr char kCa[] = "Bench-CA";
constexpr char kTemplate[] = "Bench";
constexpr int kCsrSigningKeys = 8;  // RSA-2048 keys the CSRs are made with (varied CNs)

struct Settings {
  std::chrono::milliseconds cell{300};
  size_t csr_pool = 4000;
  std::string adcsc = ADCSC_BIN;
  std::string label = "smoke";
  std::string only_key, only_mode;
  int repeat = 1;
  int warmup_pairs = 300;  // full: 3000, more than one WAL auto-checkpoint cycle (1000 pages)
  // Server side (node, or the engine / service in-process) on CPU 0, clients on the others,
  // as in production where Jamf Pro runs on its own host. --no-pin shares all CPUs.
  bool pin = true;
};

// Pins the calling thread (and the threads and processes it creates afterwards) to CPUs
// [first, last]. No-op when the range is empty.
void PinCurrentThread(unsigned first, unsigned last) {
  if (first > last) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  for (unsigned c = first; c <= last; ++c) CPU_SET(c, &set);
  sched_setaffinity(0, sizeof set, &set);
}

// What a pair function reports besides success.
struct PairTiming {
  bool resumed = false;  // the submit's TLS session was resumed
  double submit_ms = 0;  // the submit call alone; the retrieve is the rest of the pair
};

struct CellResult {
  double pairs_per_s = 0;
  double p50_ms = 0, p99_ms = 0;                  // per pair (submit + retrieve)
  double submit_p99_ms = 0, retrieve_p99_ms = 0;  // per request
  double server_cpu_ms_per_pair = 0;              // CPU time of the server side per pair
  size_t pairs = 0, errors = 0, resumed = 0;
};

// Pre-made CSRs (base64 DER, distinct CNs so dedupe never answers), handed out once each.
class CsrPool {
 public:
  explicit CsrPool(size_t n) {
    std::vector<adcsc::pki::EvpPkeyPtr> keys;
    for (int i = 0; i < kCsrSigningKeys; ++i)
      keys.push_back(std::move(*adcsc::pki::GenerateKey(adcsc::pki::KeyType::kRsa2048)));
    csrs_.reserve(n);
    static std::atomic<uint64_t> serial{0};
    for (size_t i = 0; i < n; ++i) {
      auto der = adcsc::pki::MakeCsr(keys[i % keys.size()].get(), absl::StrCat("bench-", getpid(), "-", serial++), {});
      csrs_.push_back(adcsc::pki::Base64Encode(*der));
    }
    ders_.reserve(n);
    for (auto& b64 : csrs_) ders_.push_back(*adcsc::pki::Base64Decode(b64));
  }
  // nullptr when exhausted.
  const std::string* NextBase64() {
    size_t i = next_++;
    return i < csrs_.size() ? &csrs_[i] : nullptr;
  }
  const adcsc::pki::Bytes* NextDer() {
    size_t i = next_++;
    return i < ders_.size() ? &ders_[i] : nullptr;
  }
  void Reset() { next_ = 0; }

 private:
  std::vector<std::string> csrs_;
  std::vector<adcsc::pki::Bytes> ders_;
  std::atomic<size_t> next_{0};
};

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t idx = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  return v[idx];
}

// Runs `clients` threads, each calling the pair function `make_worker(thread_index)` gives it,
// until `duration` passes or the function returns -1 (pool exhausted). `interval` > 0 paces
// each client.
template <typename PairFn>
CellResult RunCell(const std::string& label, int clients, std::chrono::milliseconds duration, PairFn make_worker,
                   const std::function<double()>& server_cpu_s,
                   std::chrono::microseconds interval = std::chrono::microseconds(0)) {
  // Progress on stderr (the table goes to stdout), so a profiler can be attached to one cell.
  std::cerr << "bench_api: cell \"" << label << "\" with " << clients << " clients, " << duration.count() << " ms (pid "
            << getpid() << ")" << std::endl;
  std::vector<std::vector<double>> lat(clients), submit_lat(clients), retrieve_lat(clients);
  std::atomic<size_t> errors{0}, resumed{0};
  const double cpu_before = server_cpu_s();
  const auto start = Clock::now();
  const auto end = start + duration;
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      auto pair = make_worker(t);
      auto next = Clock::now() + interval * t / std::max(1, clients);
      while (Clock::now() < end) {
        if (interval.count() > 0) {
          std::this_thread::sleep_until(next);
          next += interval;
        }
        const auto t0 = Clock::now();
        PairTiming timing;
        int r = pair(&timing);
        if (r < 0) break;  // out of CSRs
        if (r == 0) {
          errors++;
          continue;
        }
        if (timing.resumed) resumed++;
        const double total = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        lat[t].push_back(total);
        submit_lat[t].push_back(timing.submit_ms);
        retrieve_lat[t].push_back(total - timing.submit_ms);
      }
    });
  }
  for (auto& th : threads) th.join();
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  const double cpu_s = server_cpu_s() - cpu_before;
  auto merge = [](const std::vector<std::vector<double>>& per_thread) {
    std::vector<double> all;
    for (auto& v : per_thread) all.insert(all.end(), v.begin(), v.end());
    return all;
  };
  std::vector<double> all = merge(lat), submits = merge(submit_lat), retrieves = merge(retrieve_lat);
  CellResult r;
  r.pairs = all.size();
  r.errors = errors;
  r.resumed = resumed;
  r.pairs_per_s = all.size() / secs;
  r.p50_ms = Percentile(all, 0.50);
  r.p99_ms = Percentile(all, 0.99);
  r.submit_p99_ms = Percentile(submits, 0.99);
  r.retrieve_p99_ms = Percentile(retrieves, 0.99);
  r.server_cpu_ms_per_pair = r.pairs > 0 ? 1000.0 * cpu_s / r.pairs : 0;
  return r;
}

// Runs the pairs of `pool` once (8 clients) and discards the figures.
template <typename PairFn>
void Warmup(CsrPool& pool, PairFn make_worker) {
  pool.Reset();
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      auto pair = make_worker(t);
      PairTiming timing;
      while (pair(&timing) >= 0) {
      }
    });
  }
  for (auto& th : threads) th.join();
}

std::string Fmt(double v, int prec = 1) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", prec, v);
  return buf;
}

// CPU seconds (user + system) this process has used: the server side of the in-process cells.
double OwnCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

// CPU seconds (user + system) process `pid` has used, from /proc/<pid>/stat (clock ticks).
double ProcessCpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');  // the command name may contain spaces
  if (paren == std::string::npos) return 0;
  std::istringstream fields(stat.substr(paren + 2));
  std::string field;
  unsigned long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {  // fields 14 and 15 are utime and stime
    if (i == 14) utime = std::stoul(field);
    if (i == 15) stime = std::stoul(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

long VmHwmKb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

std::string NodeConfig(const std::filesystem::path& dir, const adcsc::pki::PkiInitResult& pki, int port,
                       const std::string& key_type) {
  std::ostringstream o;
  auto p = dir / "pki";
  o << "[node]\nid = \"bench\"\ndata_dir = \"" << (dir / "data").string() << "\"\n\n"
    << "[api]\nlisten = \"127.0.0.1:" << port << "\"\n"
    << "cert_file = \"" << (p / "adcs-proxy-ca.pem").string() << "\"\n"
    << "key_file = \"" << (p / "server-key.pem").string() << "\"\n"
    << "client_ca_file = \"" << (p / "adcs-proxy-ca.pem").string() << "\"\n"
    << "client_pins = [\"" << pki.client_pin << "\"]\n"
    << (getenv("BENCH_API_EXTRA") ? getenv("BENCH_API_EXTRA") : "") << "\n\n"
    << "[log]\nlevel = \"warn\"\nfile = \"" << (dir / "node.log").string() << "\"\n"
    << "access_log = \"" << (dir / "access.log").string() << "\"\n\n"
    << "[ca]\nbackend = \"local\"\nidentity = \"BENCH\\\\svc\"\n\n"
    << "[[ca.allow]]\ndc = \"" << kDc << "\"\nca = \"" << kCa << "\"\n\n"
    << "[ca.local]\nkey_type = \"" << key_type << "\"\n\n"
    << "[[ca.local.templates]]\nname = \"" << kTemplate << "\"\neku = [\"clientAuth\"]\n";
  return o.str();
}

// The embedded CA as the node's config in NodeConfig() sets it up: one template, kTemplate.
adcsc::ca::LocalCaOptions EngineOptions(const std::filesystem::path& dir, const std::string& key_type) {
  adcsc::ca::LocalCaOptions o;
  o.dir = dir;
  o.ca_name = kCa;
  o.key_type = *adcsc::pki::ParseKeyType(key_type);
  adcsc::ca::TemplatePolicy t;
  t.name = kTemplate;
  t.ekus = {"clientAuth"};
  o.templates = {t};
  return o;
}

using adcsc::testing::FreePort;

struct Row {
  std::string key, mode;
  int clients;
  CellResult r;
  int round = 0;
};

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

int Main(int argc, char** argv) {
  Settings s;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--full") {
      s.cell = std::chrono::milliseconds(3000);
      s.csr_pool = 60000;
      s.warmup_pairs = 3000;
      s.label = "full";
    } else if (a == "--repeat" && i + 1 < argc) {
      s.repeat = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--cell-ms" && i + 1 < argc) {
      s.cell = std::chrono::milliseconds(std::max(100, std::atoi(argv[++i])));
    } else if (a == "--no-pin") {
      s.pin = false;
    } else if (a == "--smoke") {
    } else if (a == "--adcsc" && i + 1 < argc) {
      s.adcsc = argv[++i];
    } else if (a == "--key" && i + 1 < argc) {
      s.only_key = argv[++i];
    } else if (a == "--mode" && i + 1 < argc) {
      s.only_mode = argv[++i];
    } else {
      std::cerr << "usage: bench_api [--smoke | --full] [--key rsa2048|p256] [--mode "
                   "keep-alive|new-conn+resume|new-conn] [--no-pin] [--repeat N] [--cell-ms N] "
                   "[--adcsc PATH]\n";
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  const unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
  if (cpus < 2) s.pin = false;
  auto server_side = [&] {
    if (s.pin) PinCurrentThread(0, 0);
  };
  auto client_side = [&] {
    if (s.pin) PinCurrentThread(1, cpus - 1);
  };
  std::cerr << "bench_api: preparing " << s.csr_pool << " CSRs (RSA-2048 keys, excluded from timing)\n";
  CsrPool pool(s.csr_pool);
  CsrPool warm_pool(s.warmup_pairs);
  CsrPool* active_pool = &pool;  // what the pair functions draw from
  auto warmup = [&](auto make_worker) {
    active_pool = &warm_pool;
    Warmup(warm_pool, make_worker);
    active_pool = &pool;
  };
  std::vector<Row> rows;
  std::vector<std::string> notes;
  const int kClients[] = {1, 8, 32};

  for (int round = 0; round < s.repeat; ++round)
    for (const std::string key_type : {"rsa2048", "p256"}) {
      if (!s.only_key.empty() && s.only_key != key_type) continue;
      adcsc::testing::TempDir dir;
      // Ceiling: the CA engine in-process.
      {
        server_side();
        auto ca = adcsc::ca::LocalCa::Open(EngineOptions(dir.path() / "ceiling-ca", key_type));
        if (!ca.ok()) {
          std::cerr << "bench_api: " << ca.status() << "\n";
          return 1;
        }
        auto engine_pair = [&](int) {
          return [&](PairTiming* timing) -> int {
            const adcsc::pki::Bytes* der = active_pool->NextDer();
            if (der == nullptr) return -1;
            adcsc::ca::SubmitRequest sub{{kDc, kCa}, {"BENCH\\svc"}, *der, kTemplate};
            const auto t0 = Clock::now();
            auto a = (*ca)->Submit(sub);
            timing->submit_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
            if (!a.ok()) return 0;
            auto b = (*ca)->Retrieve({{kDc, kCa}, {"BENCH\\svc"}, a->request_id});
            return b.ok() && !b->cert_der.empty() ? 1 : 0;
          };
        };
        warmup(engine_pair);
        for (int c : kClients) {
          pool.Reset();
          auto r = RunCell(key_type + " ceiling", c, s.cell, engine_pair, OwnCpuSeconds);
          rows.push_back({key_type, "ceiling (engine in-process)", c, r, round});
        }
      }
      // Reference: the API service in-process (store, CSR checks, JSON, logs; no TLS, no HTTP,
      // no threads hand-offs), to split the node's cost between the service and the transport.
      {
        server_side();
        auto ca = adcsc::ca::LocalCa::Open(EngineOptions(dir.path() / "service-ca", key_type));
        adcsc::store::StoreOptions so;
        so.path = dir.path() / "service-store.db";
        so.node_id = "bench";
        auto store = adcsc::store::RequestStore::Open(so);
        if (!ca.ok() || !store.ok()) {
          std::cerr << "bench_api: cannot open the in-process service\n";
          return 1;
        }
        adcsc::node::Config config;
        config.node_id = "bench";
        config.ca.identity = "BENCH\\svc";
        config.ca.allow.emplace_back();
        config.ca.allow.back().dc = kDc;
        config.ca.allow.back().ca = kCa;
        auto log = adcsc::node::EventLog::Open(dir.path() / "service.log", adcsc::node::LogLevel::kWarn, "bench");
        adcsc::node::ApiService service(config, ca->get(), store->get(), log->get(), SystemClock::Default());
        adcsc::node::ClientAuthResult auth;
        auth.ok = true;
        const std::string retrieve_prefix =
            absl::StrCat(R"({"config":{"dc":")", kDc, R"(","ca":")", kCa, R"("},"request-id":)");
        auto service_pair = [&](int) {
          return [&](PairTiming* timing) -> int {
            const std::string* csr = active_pool->NextBase64();
            if (csr == nullptr) return -1;
            nlohmann::json body = {{"pkcs10", *csr}, {"template", kTemplate}, {"config", {{"dc", kDc}, {"ca", kCa}}}};
            const std::string submit_body = body.dump();
            adcsc::node::ApiRequest req;
            req.method = "POST";
            req.target = "/api/v1/certificate/request";
            req.body = submit_body;
            req.auth = &auth;
            const auto t0 = Clock::now();
            auto a = service.Handle(req);
            timing->submit_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
            if (a.status != 200) return 0;
            auto id = nlohmann::json::parse(a.body)["request-id"].get<uint32_t>();
            const std::string retrieve_body = absl::StrCat(retrieve_prefix, id, "}");
            req.target = "/api/v1/certificate/retrieve";
            req.body = retrieve_body;
            auto b = service.Handle(req);
            return b.status == 200 && b.body.find("CR_DISP_ISSUED") != std::string::npos ? 1 : 0;
          };
        };
        warmup(service_pair);
        pool.Reset();
        for (int c : kClients) {
          auto r = RunCell(key_type + " service", c, s.cell, service_pair, OwnCpuSeconds);
          rows.push_back({key_type, "service in-process (no TLS/HTTP)", c, r, round});
        }
      }
      // The node as a separate process.
      adcsc::pki::PkiInitOptions po;
      po.fqdn = "localhost";
      po.jamf_pro_dn = "jamf.bench.test";
      po.out_dir = dir.path() / "pki";
      auto pki = adcsc::pki::InitConnectorPki(po);
      if (!pki.ok()) {
        std::cerr << "bench_api: " << pki.status() << "\n";
        return 1;
      }
      const int port = FreePort();
      const auto config_path = dir.path() / "node.toml";
      std::ofstream(config_path) << NodeConfig(dir.path(), *pki, port, key_type);
      pid_t pid = 0;
      std::string cfg = config_path.string();
      const char* args[] = {s.adcsc.c_str(), "node", "--config", cfg.c_str(), nullptr};
      server_side();  // the node inherits this thread's CPU set
      const int spawned = posix_spawn(&pid, s.adcsc.c_str(), nullptr, nullptr, const_cast<char**>(args), environ);
      client_side();
      if (spawned != 0) {
        std::cerr << "bench_api: cannot start " << s.adcsc << "\n";
        return 1;
      }
      adcsc::node::HttpsClientOptions base;
      base.url = absl::StrCat("https://localhost:", port);
      base.pfx_file = dir.path() / "pki" / "client-cert.pfx";
      base.pfx_password = pki->client_password;
      base.server_ca_file = dir.path() / "pki" / "adcs-proxy-ca.pem";
      base.user_agent = "Java-SDK";
      {
        auto deadline = Clock::now() + std::chrono::seconds(30);
        bool up = false;
        while (!up && Clock::now() < deadline) {
          auto c = adcsc::node::HttpsClient::Create(base);
          auto r = c.ok() ? (*c)->Get("/api/v1/version") : absl::StatusOr<adcsc::node::HttpsResult>(c.status());
          up = r.ok() && r->status == 200;
          if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        if (!up) {
          std::cerr << "bench_api: node did not come up on port " << port << "\n";
          kill(pid, SIGKILL);
          return 1;
        }
      }
      struct Mode {
        const char* name;
        bool keep_alive, resume;
      };
      const Mode modes[] = {{"keep-alive", true, true}, {"new-conn+resume", false, true}, {"new-conn", false, false}};
      const std::string retrieve_prefix =
          absl::StrCat(R"({"config":{"dc":")", kDc, R"(","ca":")", kCa, R"("},"request-id":)");
      auto worker_for = [&](const Mode& m) {
        return [&, m](int) {
          adcsc::node::HttpsClientOptions o = base;
          o.keep_alive = m.keep_alive;
          o.resume_sessions = m.resume;
          auto client = std::shared_ptr<adcsc::node::HttpsClient>(std::move(*adcsc::node::HttpsClient::Create(o)));
          return [&, client](PairTiming* timing) -> int {
            const std::string* csr = active_pool->NextBase64();
            if (csr == nullptr) return -1;
            nlohmann::json body = {{"pkcs10", *csr}, {"template", kTemplate}, {"config", {{"dc", kDc}, {"ca", kCa}}}};
            const std::string submit_body = body.dump();
            const auto t0 = Clock::now();
            auto a = client->Post("/api/v1/certificate/request", submit_body);
            timing->submit_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
            if (!a.ok() || a->status != 200) return 0;
            timing->resumed = a->resumed;
            auto id = nlohmann::json::parse(a->body)["request-id"].get<uint32_t>();
            auto b = client->Post("/api/v1/certificate/retrieve", absl::StrCat(retrieve_prefix, id, "}"));
            return b.ok() && b->status == 200 && b->body.find("CR_DISP_ISSUED") != std::string::npos ? 1 : 0;
          };
        };
      };
      warmup(worker_for(modes[0]));
      // Every CSR goes to this node once: a repeated CSR would be answered by submit dedupe
      // without a CA call. A cell that runs out of CSRs ends early (its rate stays right).
      pool.Reset();
      auto node_cpu = [pid] { return ProcessCpuSeconds(pid); };
      for (const Mode& m : modes) {
        if (!s.only_mode.empty() && s.only_mode != m.name) continue;
        double peak = 0;
        for (int c : kClients) {
          auto r = RunCell(key_type + " " + m.name, c, s.cell, worker_for(m), node_cpu);
          peak = std::max(peak, r.pairs_per_s);
          rows.push_back({key_type, m.name, c, r, round});
        }
        if (m.resume) {
          // Half of peak, spread over 8 paced clients.
          const int clients = 8;
          auto interval = std::chrono::microseconds(static_cast<int64_t>(1e6 * clients / std::max(1.0, peak / 2)));
          // A p99 needs many samples: this cell runs three times as long as the others.
          auto r = RunCell(key_type + " " + m.name + " @50%", clients, 3 * s.cell, worker_for(m), node_cpu, interval);
          rows.push_back({key_type, std::string(m.name) + " @50% of peak", clients, r, round});
        }
      }
      long hwm = VmHwmKb(pid);
      kill(pid, SIGTERM);
      int status = 0;
      waitpid(pid, &status, 0);
      notes.push_back(absl::StrCat("node peak RSS (VmHWM) with ", key_type, " CA key",
                                   s.repeat > 1 ? absl::StrCat(" (round ", round + 1, ")") : "", ": ",
                                   Fmt(hwm / 1024.0), " MB; exit status ",
                                   WIFEXITED(status) ? WEXITSTATUS(status) : -1));
    }

  // One line per (key, mode, clients): the median over the rounds of each figure. "% of
  // ceiling" compares a row with the best ceiling row of the same key in the same round; with
  // several rounds it shows the median and, in brackets, the range.
  struct Line {
    std::string key, mode;
    int clients;
    std::vector<const Row*> rounds;
  };
  std::vector<Line> lines;
  for (const Row& row : rows) {
    auto it = std::find_if(lines.begin(), lines.end(), [&](const Line& l) {
      return l.key == row.key && l.mode == row.mode && l.clients == row.clients;
    });
    if (it == lines.end()) {
      lines.push_back({row.key, row.mode, row.clients, {}});
      it = lines.end() - 1;
    }
    it->rounds.push_back(&row);
  }
  auto ceiling_of = [&](const Row& row) {
    double ceiling = 0;
    for (const Row& c : rows) {
      if (c.key == row.key && c.round == row.round && c.mode.rfind("ceiling", 0) == 0)
        ceiling = std::max(ceiling, c.r.pairs_per_s);
    }
    return ceiling;
  };
  std::cout << "\n### bench_api (" << s.label << ", " << s.cell.count() << " ms per cell, " << cpus << " cores, "
            << (s.pin ? "server side on CPU 0, clients on the other CPUs" : "server and clients share all CPUs")
            << (s.repeat > 1 ? absl::StrCat(", median of ", s.repeat, " rounds") : "") << ")\n\n"
            << "| CA key | mode | clients | pairs/s | pair p50 ms | pair p99 ms | submit p99 ms | retrieve p99 ms "
               "| % of ceiling | server CPU ms/pair | errors | resumed |\n"
            << "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const Line& line : lines) {
    auto median = [&](double CellResult::*field) {
      std::vector<double> v;
      for (const Row* r : line.rounds) v.push_back(r->r.*field);
      return Median(v);
    };
    std::vector<double> ratios;
    size_t errors = 0, resumed = 0;
    for (const Row* r : line.rounds) {
      const double ceiling = ceiling_of(*r);
      ratios.push_back(ceiling > 0 ? 100.0 * r->r.pairs_per_s / ceiling : 0);
      errors += r->r.errors;
      resumed += r->r.resumed;
    }
    std::string ratio = "-";
    if (line.mode.rfind("ceiling", 0) != 0) {
      ratio = Fmt(Median(ratios), 0) + "%";
      if (ratios.size() > 1) {
        ratio += absl::StrCat(" (", Fmt(*std::min_element(ratios.begin(), ratios.end()), 0), "–",
                              Fmt(*std::max_element(ratios.begin(), ratios.end()), 0), ")");
      }
    }
    std::cout << "| " << line.key << " | " << line.mode << " | " << line.clients << " | "
              << Fmt(median(&CellResult::pairs_per_s)) << " | " << Fmt(median(&CellResult::p50_ms), 2) << " | "
              << Fmt(median(&CellResult::p99_ms), 2) << " | " << Fmt(median(&CellResult::submit_p99_ms), 2) << " | "
              << Fmt(median(&CellResult::retrieve_p99_ms), 2) << " | " << ratio << " | "
              << Fmt(median(&CellResult::server_cpu_ms_per_pair), 3) << " | " << errors << " | "
              << resumed / line.rounds.size() << " |\n";
  }
  std::cout << "\n";
  for (auto& n : notes) std::cout << "- " << n << "\n";
  std::string args;
  for (int i = 1; i < argc; ++i) absl::StrAppend(&args, " ", argv[i]);
  std::cout << "\nReproduce: build/tests/bench_api" << args << "\n";
  size_t errors = 0;
  for (const Row& row : rows) errors += row.r.errors;
  return errors == 0 ? 0 : 1;
}

}  // namespace
}  // namespace adcsc::bench

int main(int argc, char** argv) { return adcsc::bench::Main(argc, argv); }
