// Benchmark of what a node keeps on disk under steady load (issue 13, point 6): N submit-
// then-retrieve pairs spread evenly over D days of a fake clock, written to one RequestStore
// as the API writes them (a durable intent with the CSR, then the issued record with its
// certificate, settling the intent; the retrieve reads the store). Once a simulated day the
// node's maintenance runs as a single node's does: log compaction, then retention pruning.
// Three configurations on fresh stores:
//   - none:       no compaction, no retention (what a node did before this change);
//   - compaction: the mutation log compacted, every record kept (store.retention_days = 0);
//   - retention:  compaction and store.retention_days = 400 (the default).
// Prints bytes on disk (database + WAL), records and log rows at the end, and how the size
// grew over the second half of the run. Asserts nothing about time or size.
//
// Usage: bench_retention [--smoke] [--pairs N] [--days D] [--threads T]
//   default: 1,000,000 pairs over 800 days, 8 writer threads (the figures in
//   docs/performance.md); --smoke: 20,000 pairs (ctest runs it).
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "store/clock.h"
#include "store/request_store.h"
#include "tests/testing/temp_dir.h"

namespace adcsc::bench {
namespace {

constexpr int64_t kDayMs = 86'400'000;
constexpr size_t kCertBytes = 1'200;  // a typical issued device certificate, DER
constexpr size_t kCsrBytes = 420;     // a P-256 CSR with a subject and a SAN, DER

struct Setup {
  const char* name;
  bool compact;
  int64_t retention_days;  // 0: keep every record
};

struct Result {
  int64_t bytes = 0;
  int64_t bytes_at_half = 0;
  int64_t records = 0;
  int64_t log_rows = 0;
  double seconds = 0;
};

std::string Bytes(size_t n, std::mt19937_64& rng) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

int64_t LogRows(store::RequestStore& store) {
  auto vector = store.GetVersionVector();
  if (!vector.ok()) return -1;
  int64_t rows = 0;
  for (const auto& [origin, through] : *vector) {
    uint64_t after = 0;
    for (;;) {
      auto batch = store.MutationsSince(origin, after, 100'000);
      if (!batch.ok() || batch->empty()) break;
      rows += static_cast<int64_t>(batch->size());
      after = batch->back().sequence();
    }
  }
  return rows;
}

Result Run(const Setup& setup, int64_t pairs, int64_t days, int threads, const std::filesystem::path& dir) {
  FakeClock clock(1'700'000'000'000);
  store::StoreOptions o;
  o.path = dir / absl::StrFormat("%s.db", setup.name);
  o.node_id = "node-a";
  o.clock = &clock;
  o.fsync = false;  // size, not speed, is measured; fsync changes neither
  auto opened = store::RequestStore::Open(o);
  if (!opened.ok()) {
    std::fprintf(stderr, "open: %s\n", std::string(opened.status().message()).c_str());
    std::exit(1);
  }
  store::RequestStore& s = **opened;
  const int64_t step_ms = std::max<int64_t>(1, days * kDayMs / pairs);
  const int64_t per_day = std::max<int64_t>(1, kDayMs / step_ms);
  Result r;
  const auto started = std::chrono::steady_clock::now();
  std::atomic<uint32_t> next_id{1};
  for (int64_t done = 0; done < pairs;) {
    // One simulated day of pairs, spread over the writer threads, then the day's maintenance.
    const int64_t today = std::min(per_day, pairs - done);
    std::vector<std::thread> writers;
    std::atomic<int64_t> left{today};
    for (int t = 0; t < threads; ++t) {
      writers.emplace_back([&, t] {
        std::mt19937_64 rng(static_cast<uint64_t>(done) * 131 + static_cast<uint64_t>(t));
        while (left.fetch_sub(1) > 0) {
          store::SubmitIntentRow intent;
          intent.key = {"ca1.example.test\\Example-CA", "JamfDevice", Bytes(32, rng)};
          intent.requester = "EXAMPLE\\svc-adcsc";
          intent.csr_der = Bytes(kCsrBytes, rng);
          if (!s.RecordSubmitIntent(intent).ok()) std::abort();
          store::RequestRecord rec;
          rec.set_ca_config(intent.key.ca_config);
          rec.set_request_id(next_id.fetch_add(1));
          rec.set_status(store::v1::RECORD_STATUS_ISSUED);
          rec.set_disposition(3);
          rec.set_message("Issued");
          rec.set_certificate_der(Bytes(kCertBytes, rng));
          rec.set_csr_sha256(intent.key.csr_sha256);
          rec.set_template_name(intent.key.template_name);
          rec.set_requester(intent.requester);
          if (!s.Put(rec, &intent.key).ok()) std::abort();
          if (!s.Get(rec.ca_config(), rec.request_id()).ok()) std::abort();  // the retrieve
        }
      });
    }
    for (auto& w : writers) w.join();
    done += today;
    clock.AdvanceMillis(today * step_ms);
    if (setup.compact) {
      auto ours = s.GetVersionVector();
      if (ours.ok()) {
        while (true) {
          auto deleted = s.CompactLog(*ours, 100'000);
          if (!deleted.ok() || *deleted < 100'000) break;
        }
      }
    }
    if (setup.retention_days > 0) {
      const int64_t cutoff = clock.NowUnixMillis() - setup.retention_days * kDayMs;
      while (true) {
        auto pruned = s.PruneSettled(cutoff, 10'000);
        if (!pruned.ok() || *pruned < 10'000) break;
      }
    }
    if (r.bytes_at_half == 0 && done >= pairs / 2) r.bytes_at_half = s.BytesOnDisk();
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  r.bytes = s.BytesOnDisk();
  r.records = s.CountRecords().value_or(-1);
  r.log_rows = LogRows(s);
  return r;
}

int Main(int argc, char** argv) {
  int64_t pairs = 1'000'000, days = 800;
  int threads = 8;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](int64_t* out) {
      if (i + 1 >= argc || !absl::SimpleAtoi(argv[++i], out) || *out <= 0) {
        std::fprintf(stderr, "%s needs a positive number\n", a.c_str());
        std::exit(2);
      }
    };
    if (a == "--smoke") {
      pairs = 20'000;
    } else if (a == "--pairs") {
      value(&pairs);
    } else if (a == "--days") {
      value(&days);
    } else if (a == "--threads") {
      int64_t t = 0;
      value(&t);
      threads = static_cast<int>(t);
    } else {
      std::fprintf(stderr,
                   "usage: bench_retention [--smoke] [--pairs N] [--days D] [--threads T]\n"
                   "  e.g. bench_retention --pairs 1000000 --days 800\n");
      return a == "--help" ? 0 : 2;
    }
  }
  adcsc::testing::TempDir dir;
  std::printf("bench_retention --pairs %lld --days %lld --threads %d  (%lld pairs a day)\n\n",
              static_cast<long long>(pairs), static_cast<long long>(days), threads,
              static_cast<long long>(pairs / days));
  std::printf("| setup | bytes on disk at the end | at half time | records kept | log rows | run time |\n");
  std::printf("|---|---|---|---|---|---|\n");
  const Setup setups[] = {{"none", false, 0}, {"compaction", true, 0}, {"retention-400d", true, 400}};
  for (const Setup& setup : setups) {
    const Result r = Run(setup, pairs, days, threads, dir.path());
    std::printf("| %s | %.1f MiB | %.1f MiB | %lld | %lld | %.0f s |\n", setup.name, r.bytes / 1048576.0,
                r.bytes_at_half / 1048576.0, static_cast<long long>(r.records), static_cast<long long>(r.log_rows),
                r.seconds);
    std::fflush(stdout);
    std::filesystem::remove(dir.path() / absl::StrFormat("%s.db", setup.name));
    std::filesystem::remove(dir.path() / absl::StrFormat("%s.db-wal", setup.name));
    std::filesystem::remove(dir.path() / absl::StrFormat("%s.db-shm", setup.name));
  }
  return 0;
}

}  // namespace
}  // namespace adcsc::bench

int main(int argc, char** argv) { return adcsc::bench::Main(argc, argv); }
