// Benchmark of the `icpr` CA backend against the ADCS emulator on loopback: submit + retrieve
// round trips per second and p50/p99 latency, with pooled authenticated connections versus a
// new connection (endpoint already known: TCP connect, bind, NTLMv2 at packet privacy) for
// every call, at 1 and 8 concurrent callers. The emulator runs in this process with a P-256
// CA (durable database, as a CA keeps it). Each cell runs twice: against the bare emulator,
// which checks an NTLM logon in microseconds, and with the emulator's logon_latency knob at
// 1 ms, a model of the domain-controller round trip (NETLOGON pass-through) a Windows CA makes
// for every new NTLM logon. Then on Kerberos (SPNEGO and raw krb5, packet privacy with
// gss_wrap_iov) against a throw-away MIT KDC on loopback: a CA checks a Kerberos ticket
// itself, with no DC round trip, and the service ticket is fetched once and cached, so no
// latency knob applies. Prints a Markdown table; asserts nothing on time.
//
// Usage: bench_icpr [--smoke | --full]
//   --smoke  0.3 s per cell (ctest runs this to keep it working)
//   --full   3 s per cell (the figures in docs/performance.md)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <functional>
#include <iostream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "node/ca/icpr_backend.h"
#include "node/gss/credentials.h"
#include "node/pki/csr.h"
#include "node/pki/keys.h"
#include "tests/testing/mit_kdc.h"
#include "tests/testing/temp_dir.h"
#include "tools/adcs-emulator/emulator.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr char kCa[] = "Bench-CA";
constexpr char kTemplate[] = "JamfDevice";

struct Cell {
  std::string auth;
  std::string mode;
  int callers;
  double pairs_per_s, p50_ms, p99_ms, submit_p99_ms, retrieve_p99_ms;
  double caller_cpu_ms_per_pair;  // the connector side's CPU (the calling threads), per pair
  size_t pairs, errors;
  adcsc::ca::IcprBackendCounters counters;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
}

}  // namespace

int main(int argc, char** argv) {
  std::chrono::milliseconds cell{300};
  std::string label = "smoke";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--full") {
      cell = std::chrono::milliseconds(3000);
      label = "full";
    } else if (a != "--smoke") {
      std::cerr << "usage: bench_icpr [--smoke | --full]\n";
      return 2;
    }
  }
  adcsc::testing::TempDir dir;
  adcsc::emulator::EmulatorConfig config;
  config.data_dir = dir.path() / "emulator";
  config.ca.dir = config.data_dir / "ca";
  config.ca.ca_name = kCa;
  config.ca.key_type = adcsc::pki::KeyType::kEcP256;
  adcsc::ca::TemplatePolicy t;
  t.name = kTemplate;
  t.ekus = {"clientAuth"};
  config.ca.templates = {t};
  const auto nt_hash = adcsc::ntlm::NtHash("Bench-Password-1");
  config.accounts.push_back({"EXAMPLE", "svc-adcsc", *nt_hash});
  config.names = {"EXAMPLE", "CA01", "", ""};
  std::filesystem::create_directories(config.data_dir);

  // A Kerberos realm for the Kerberos rows: the CA's host/127.0.0.1 key for the emulator, the
  // service account's key for the connector.
  std::optional<adcsc::testing::MitKdc> kdc;
  std::shared_ptr<adcsc::gss::Credentials> kerberos;
  if (adcsc::testing::MitKdc::Installed()) {
    kdc.emplace("BENCH.TEST");
    std::string e = kdc->Start();
    if (e.empty()) {
      kdc->UseForThisProcess();
      const auto ca_keytab = kdc->dir() / "ca.keytab", svc_keytab = kdc->dir() / "svc.keytab";
      for (const std::string& step :
           {kdc->AddRandomKeyPrincipal("host/127.0.0.1"), kdc->ExportKeytab("host/127.0.0.1", ca_keytab),
            kdc->AddRandomKeyPrincipal("svc-adcsc"), kdc->ExportKeytab("svc-adcsc", svc_keytab)}) {
        e += step;
      }
      config.kerberos_keytab = ca_keytab;
      config.kerberos_realm_domain = "EXAMPLE";
      auto acquired = adcsc::gss::Credentials::Acquire(
          adcsc::gss::CredentialSource::Keytab("svc-adcsc@BENCH.TEST", svc_keytab.string()));
      if (acquired.ok())
        kerberos = *acquired;
      else
        e += std::string(acquired.status().message());
    }
    if (!e.empty()) std::cerr << "bench_icpr: no Kerberos rows, the test KDC failed: " << e << "\n";
  } else {
    std::cerr << "bench_icpr: no Kerberos rows (krb5kdc is not installed; deploy/install-deps installs it)\n";
  }
  adcsc::emulator::Emulator emulator(config);
  if (auto s = emulator.Start(); !s.ok()) {
    std::cerr << "bench_icpr: " << s << "\n";
    return 1;
  }

  // CSRs made before timing (RSA-2048 device keys, as Jamf Pro makes them).
  auto key = adcsc::pki::GenerateKey(adcsc::pki::KeyType::kRsa2048);
  std::vector<adcsc::pki::Bytes> csrs;
  // Used round-robin: a CA takes the same CSR again as a new request, so the pool only needs
  // to be large enough that concurrent callers rarely send the same one at once.
  const size_t pool_size = 2000;
  for (size_t i = 0; i < pool_size; ++i)
    csrs.push_back(*adcsc::pki::MakeCsr(key->get(), absl::StrCat("bench-", i), {}));
  std::atomic<size_t> next{0};

  std::vector<Cell> cells;
  struct Auth {
    std::string name;
    int logon_ms;
    std::shared_ptr<adcsc::ca::IcprAuthenticator> authenticator;
  };
  std::vector<Auth> auths;
  for (const int logon_ms : {0, 1}) {
    adcsc::ca::IcprAuthOptions a;
    a.ntlm = adcsc::ntlm::Credentials{"EXAMPLE", "svc-adcsc", *nt_hash, "BENCH"};
    auths.push_back({logon_ms == 0 ? "NTLM, logon local (emulator)" : "NTLM, logon +1 ms (modelled DC)", logon_ms,
                     *adcsc::ca::IcprAuthenticator::Create(a)});
  }
  if (kerberos) {
    for (const auto mech : {adcsc::gss::Mech::kSpnego, adcsc::gss::Mech::kKerberos}) {
      adcsc::ca::IcprAuthOptions a;
      a.mode = adcsc::ca::IcprAuthMode::kKerberos;
      a.kerberos = adcsc::gss::CredentialSource::Keytab("svc-adcsc@BENCH.TEST", (kdc->dir() / "svc.keytab").string());
      a.mech = mech;
      auths.push_back({absl::StrCat("Kerberos (", std::string(adcsc::gss::MechName(mech)), ")"), 0,
                       *adcsc::ca::IcprAuthenticator::Create(a)});
    }
  }
  // Warm-up, not measured: the CA database's first pages, the allocator, the KDC's first tickets.
  {
    adcsc::ca::IcprBackendOptions o;
    o.auth = auths.front().authenticator;
    o.epm_port = emulator.epm_port();
    adcsc::ca::IcprBackend backend(o);
    const adcsc::ca::CaTarget target{"127.0.0.1", kCa};
    const auto end = Clock::now() + cell / 2;
    while (Clock::now() < end) {
      auto s = backend.Submit({target, {"EXAMPLE\\svc-adcsc"}, csrs[next++ % csrs.size()], kTemplate});
      if (s.ok()) (void)backend.Retrieve({target, {"EXAMPLE\\svc-adcsc"}, s->request_id});
    }
  }
  for (const Auth& auth : auths) {
    adcsc::emulator::Faults faults;
    faults.logon_latency = std::chrono::milliseconds(auth.logon_ms);
    emulator.set_faults(faults);
    for (const bool pooled : {true, false}) {
      for (const int callers : {1, 8}) {
        adcsc::ca::IcprBackendOptions o;
        o.auth = auth.authenticator;
        o.epm_port = emulator.epm_port();
        o.max_idle_connections = pooled ? 16 : 0;
        adcsc::ca::IcprBackend backend(o);
        const adcsc::ca::CaTarget target{"127.0.0.1", kCa};
        // One call first so the endpoint lookup (and, pooled, a connection) is not in the figures.
        (void)backend.Ping(target, {"EXAMPLE\\svc-adcsc"});
        std::vector<std::vector<double>> pair_ms(callers), submit_ms(callers), retrieve_ms(callers);
        std::atomic<size_t> errors{0};
        std::vector<double> cpu_ms(callers, 0);
        const auto start = Clock::now();
        const auto end = start + cell;
        std::vector<std::thread> threads;
        for (int c = 0; c < callers; ++c) {
          threads.emplace_back([&, c] {
            // The calling thread's own CPU time: what the connector spends per pair (NDR, NTLM
            // sealing, sockets, connection set-up), without the emulator's CA work.
            auto thread_cpu_ms = [] {
              timespec ts{};
              clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
              return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
            };
            const double cpu_start = thread_cpu_ms();
            struct Done {
              std::function<void()> f;
              ~Done() { f(); }
            } done{[&] { cpu_ms[c] = thread_cpu_ms() - cpu_start; }};
            while (Clock::now() < end) {
              const size_t i = next++ % csrs.size();
              const auto t0 = Clock::now();
              auto s = backend.Submit({target, {"EXAMPLE\\svc-adcsc"}, csrs[i], kTemplate});
              const auto t1 = Clock::now();
              if (!s.ok() || s->disposition != adcsc::ca::Disposition::kIssued) {
                errors++;
                continue;
              }
              auto r = backend.Retrieve({target, {"EXAMPLE\\svc-adcsc"}, s->request_id});
              const auto t2 = Clock::now();
              if (!r.ok() || r->cert_der.empty()) {
                errors++;
                continue;
              }
              submit_ms[c].push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
              retrieve_ms[c].push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
              pair_ms[c].push_back(std::chrono::duration<double, std::milli>(t2 - t0).count());
            }
          });
        }
        for (auto& th : threads) th.join();
        const double secs = std::chrono::duration<double>(Clock::now() - start).count();
        auto merge = [](const std::vector<std::vector<double>>& v) {
          std::vector<double> all;
          for (auto& x : v) all.insert(all.end(), x.begin(), x.end());
          return all;
        };
        auto pairs = merge(pair_ms);
        double cpu_total = 0;
        for (double v : cpu_ms) cpu_total += v;
        cells.push_back({auth.name, pooled ? "pooled connections" : "new connection per call", callers,
                         pairs.size() / secs, Percentile(pairs, 0.5), Percentile(pairs, 0.99),
                         Percentile(merge(submit_ms), 0.99), Percentile(merge(retrieve_ms), 0.99),
                         pairs.empty() ? 0 : cpu_total / pairs.size(), pairs.size(), errors.load(),
                         backend.counters()});
      }
    }
  }
  emulator.Stop();

  std::cout << "\n### bench_icpr (" << label << ", " << cell.count() << " ms per cell, "
            << std::thread::hardware_concurrency() << " cores, emulator in-process, P-256 CA)\n\n"
            << "| authentication | mode | callers | pairs/s | pair p50 ms | pair p99 ms | submit p99 ms | "
               "retrieve p99 ms "
               "| connector CPU ms/pair | binds | errors |\n"
            << "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  size_t errors = 0;
  for (const Cell& c : cells) {
    std::cout << absl::StrFormat("| %s | %s | %d | %.1f | %.2f | %.2f | %.2f | %.2f | %.3f | %d | %d |\n", c.auth,
                                 c.mode, c.callers, c.pairs_per_s, c.p50_ms, c.p99_ms, c.submit_p99_ms,
                                 c.retrieve_p99_ms, c.caller_cpu_ms_per_pair, c.counters.connections_opened, c.errors);
    errors += c.errors;
  }
  for (const Auth& auth : auths) {
    for (const int callers : {1, 8}) {
      double pooled = 0, fresh = 0;
      for (const Cell& c : cells) {
        if (c.callers != callers || c.auth != auth.name) continue;
        (c.mode == "pooled connections" ? pooled : fresh) = c.pairs_per_s;
      }
      std::cout << absl::StrFormat("\n- %s, %d caller(s): pooling gives %.1fx the rate of a new connection per call",
                                   auth.name, callers, fresh > 0 ? pooled / fresh : 0);
    }
  }
  std::cout << "\n\nReproduce: build/tests/bench_icpr " << (label == "full" ? "--full" : "--smoke") << "\n";
  return errors == 0 ? 0 : 1;
}
