// Benchmark of the replicated request store side by side with etcd (issue 4, point 8).
//
// In one run, on 127.0.0.1 only:
//   1. etcd: three /usr/bin/etcd members (default durability: each fsyncs its raft WAL), and
//      writers in this process that Put over gRPC to the leader (tests/perf/etcd/).
//   2. the store: three `bench_replication member` processes (tests/perf/store_member.h), each
//      a durable RequestStore (synchronous=FULL) and a ClusterRuntime with mutual TLS under a
//      cluster CA made here; writers run inside one member and do what the API does per
//      outcome: Put, then Replicate until a write quorum (2 of 3) holds it durably.
//   For 1, 16 and 256 concurrent writers: replicated writes/s and p50/p99 latency of each,
//   and the ratio. Values are the same ~1.7 KB serialized records on both sides.
//   3. catch-up: records bulk-loaded on one store node (its peer copies them by
//      anti-entropy), then a fresh member with an empty data directory joins over gRPC (the
//      bulk join, node/cluster/bulk_join.h; --no-bulk-join: snapshot pages, as before it); the
//      time until its version vector covers the others'; every member's VmRSS / VmHWM, and the
//      fresh member's highest VmRSS while it joined. With etcd: the same number of records Put
//      into a 3-member etcd, then a 4th member added with an empty data directory (MemberAdd),
//      and the time until it has applied the leader's revision.
// Prints Markdown tables; asserts nothing about time. Exit 77 (ctest: skipped) when
// /usr/bin/etcd is missing.
//
// Usage: bench_replication [--smoke | --full] [--writers 1,16,256] [--cell-ms N]
//                          [--cell-max N] [--catchup-records N] [--etcd-channels N]
//                          [--skip-etcd] [--skip-store] [--skip-catchup] [--skip-write-cells]
//                          [--no-bulk-join]
//   --smoke  a few hundred writes per side, 10,000 records catch-up (< 60 s; ctest runs it)
//   --full   10 s cells, 1,000,000 records catch-up (the figures in docs/performance.md)
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "node/pki/cluster.h"
#include "store/request_store.h"
#include "tests/perf/child_process.h"
#include "tests/perf/etcd/etcd_cluster.h"
#include "tests/perf/store_member.h"
#include "tests/perf/write_load.h"
#include "tests/testing/free_port.h"
#include "tests/testing/temp_dir.h"

namespace adcsc::bench {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr char kClusterId[] = "bench";
constexpr int kExitSkipped = 77;  // ctest SKIP_RETURN_CODE
constexpr milliseconds kMemberStartTimeout{30'000};
constexpr milliseconds kMemberQueryTimeout{30'000};
constexpr milliseconds kPollInterval{100};
constexpr int kBulkBatch = 5000;  // records per transaction of the catch-up load
constexpr int kEtcdLoadWriters = 256;

struct Settings {
  std::string label = "default";
  std::vector<int> writers = {1, 16, 256};
  milliseconds cell{3000};
  size_t cell_max = 200'000;  // writes per cell at most
  size_t warmup = 2000;
  size_t catchup_records = 100'000;
  milliseconds catchup_timeout{15 * 60'000};
  int etcd_channels = 8;
  bool etcd = true, store = true, catchup = true;
  bool write_cells = true;  // false: the catch-up parts alone
  bool bulk_join = true;    // the fresh store node joins through the bulk path
};

void PrintHelp() {
  std::cout << R"(bench_replication: the replicated request store side by side with a 3-member etcd
(replicated writes/s, p50/p99 at 1, 16, 256 writers), then a fresh node's catch-up and each
node's memory. Everything runs on 127.0.0.1; prints Markdown tables.

  --smoke              a few hundred writes per cell, 10,000 records catch-up (< 60 s)
  --full               10 s cells, 1,000,000 records catch-up (docs/performance.md)
  --writers LIST       concurrent writers per cell, e.g. 1,16,256
  --cell-ms N          cell length in ms;  --cell-max N  writes per cell at most
  --catchup-records N  records loaded before the fresh node joins
  --etcd-channels N    gRPC connections the etcd writers spread over (default 8)
  --skip-etcd | --skip-store | --skip-catchup   leave a part out
  --skip-write-cells   no write cells on either side (the catch-ups alone)
  --no-bulk-join       the fresh store node copies snapshot pages instead (the path before
                       the bulk join), for a before/after on one build
Example: bench_replication --full
Exit codes: 0 done, 1 a part failed (message on stderr), 2 bad arguments, 77 no /usr/bin/etcd.
)";
}

bool ParseArgs(int argc, char** argv, Settings* s) {
  auto number = [&](int& i) -> long {
    if (i + 1 >= argc) return -1;
    long v = -1;
    return absl::SimpleAtoi(argv[++i], &v) ? v : -1;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    long v = 0;
    if (a == "--help" || a == "-h") {
      PrintHelp();
      std::exit(0);
    } else if (a == "--smoke") {
      s->label = "smoke";
      s->cell = milliseconds(1500);
      s->cell_max = 150;
      s->warmup = 100;
      s->catchup_records = 10'000;
      s->catchup_timeout = milliseconds(40'000);
    } else if (a == "--full") {
      s->label = "full";
      s->cell = milliseconds(10'000);
      s->cell_max = 1'000'000;
      s->warmup = 3000;
      s->catchup_records = 1'000'000;
      s->catchup_timeout = milliseconds(30 * 60'000);
    } else if (a == "--writers" && i + 1 < argc) {
      s->writers.clear();
      for (absl::string_view part : absl::StrSplit(argv[++i], ',')) {
        int w = 0;
        if (!absl::SimpleAtoi(part, &w) || w <= 0 || w > 1024) return false;
        s->writers.push_back(w);
      }
    } else if (a == "--cell-ms" && (v = number(i)) > 0) {
      s->cell = milliseconds(v);
    } else if (a == "--cell-max" && (v = number(i)) > 0) {
      s->cell_max = static_cast<size_t>(v);
    } else if (a == "--catchup-records" && (v = number(i)) > 0 && v < 4'000'000'000) {
      s->catchup_records = static_cast<size_t>(v);
    } else if (a == "--etcd-channels" && (v = number(i)) > 0 && v <= 256) {
      s->etcd_channels = static_cast<int>(v);
    } else if (a == "--skip-etcd") {
      s->etcd = false;
    } else if (a == "--skip-store") {
      s->store = false;
    } else if (a == "--skip-catchup") {
      s->catchup = false;
    } else if (a == "--skip-write-cells") {
      s->write_cells = false;
    } else if (a == "--no-bulk-join") {
      s->bulk_join = false;
    } else {
      std::cerr << "bench_replication: bad argument " << a << " (see --help)\n";
      return false;
    }
  }
  return true;
}

// Request IDs are never reused in a run: a Put of a record already stored changes nothing
// and would skip the fsync and the replication being measured.
class IdAllocator {
 public:
  uint32_t Take(size_t n) {
    const uint32_t first = next_;
    next_ += static_cast<uint32_t>(n);
    return first;
  }

 private:
  uint32_t next_ = 1;
};

// "key=value key=value" -> map (the members' answers).
std::map<std::string, std::string> Fields(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string word;
  while (in >> word) {
    const size_t eq = word.find('=');
    if (eq != std::string::npos) out[word.substr(0, eq)] = word.substr(eq + 1);
  }
  return out;
}

WriteCell CellFromAnswer(const std::string& answer) {
  std::map<std::string, std::string> f = Fields(answer);
  WriteCell c;
  c.writes = std::stoul(f["writes"]);
  c.errors = std::stoul(f["errors"]);
  c.seconds = std::stod(f["seconds"]);
  c.p50_ms = f.count("p50_ms") ? std::stod(f["p50_ms"]) : 0;
  c.p99_ms = f.count("p99_ms") ? std::stod(f["p99_ms"]) : 0;
  const size_t err = answer.find("error=");
  if (err != std::string::npos) c.first_error = answer.substr(err + 6);
  return c;
}

store::VersionVector ParseVector(const std::string& text) {
  store::VersionVector v;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(part, '=');
    uint64_t seq = 0;
    if (absl::SimpleAtoi(kv.second, &seq)) v[kv.first] = seq;
  }
  return v;
}

bool Covers(const store::VersionVector& a, const store::VersionVector& b) {
  for (const auto& [origin, seq] : b) {
    auto it = a.find(origin);
    if (seq > 0 && (it == a.end() || it->second < seq)) return false;
  }
  return true;
}

// A running store node process and its identity.
struct Member {
  StoreMemberSpec spec;
  std::unique_ptr<ChildProcess> process;
};

// Several store members of one cluster, with ports chosen up front so each knows its peers.
class StoreCluster {
 public:
  StoreCluster(const std::filesystem::path& root, const std::vector<std::string>& ids, bool bulk_join = true)
      : root_(root) {
    std::vector<int> ports;
    for (size_t i = 0; i < ids.size(); ++i) ports.push_back(testing::FreePort());
    for (size_t i = 0; i < ids.size(); ++i) {
      Member m;
      m.spec.node_id = ids[i];
      m.spec.cluster_id = kClusterId;
      m.spec.data_dir = (root / ids[i]).string();
      m.spec.pki_dir = (root / "pki").string();
      m.spec.port = ports[i];
      m.spec.bulk_join = bulk_join;
      for (size_t j = 0; j < ids.size(); ++j) {
        if (j != i) m.spec.peers.emplace_back(ids[j], ports[j]);
      }
      members_.push_back(std::move(m));
    }
  }

  absl::Status StartMember(size_t i, const std::string& self, milliseconds timeout = kMemberStartTimeout) {
    if (absl::Status s = Spawn(i, self); !s.ok()) return s;
    return WaitReady(i, timeout);
  }
  absl::Status Spawn(size_t i, const std::string& self) {
    Member& m = members_[i];
    std::filesystem::create_directories(m.spec.data_dir);
    auto child = ChildProcess::Start(StoreMemberArgs(self, m.spec), /*pipes=*/true, root_ / (m.spec.node_id + ".log"));
    if (!child.ok()) return child.status();
    m.process = std::move(*child);
    return absl::OkStatus();
  }
  // A member answers "ok ready" once its store is open (after its bulk join) and it serves.
  absl::Status WaitReady(size_t i, milliseconds timeout) {
    Member& m = members_[i];
    absl::StatusOr<std::string> ready = m.process->ReadLine(timeout);
    if (!ready.ok() || ready->rfind("ok ready", 0) != 0) {
      return absl::InternalError(absl::StrCat("store member ", m.spec.node_id,
                                              " did not start: ", ready.ok() ? *ready : ready.status().ToString(),
                                              " (log: ", (root_ / (m.spec.node_id + ".log")).string(), ")"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> Call(size_t i, const std::string& line, milliseconds timeout = kMemberQueryTimeout) {
    return members_[i].process->Call(line, timeout);
  }
  absl::StatusOr<store::VersionVector> Vector(size_t i) {
    absl::StatusOr<std::string> v = Call(i, "vv");
    if (!v.ok()) return v.status();
    return ParseVector(*v);
  }
  Member& member(size_t i) { return members_[i]; }
  // Bytes the running members have written to storage so far.
  double WriteBytes() const {
    double total = 0;
    for (const Member& m : members_) total += m.process ? m.process->WriteBytes() : 0;
    return total;
  }
  void StopAll() {
    for (Member& m : members_) {
      if (m.process) m.process->Stop(milliseconds(5000));
    }
  }

 private:
  std::filesystem::path root_;
  std::vector<Member> members_;
};

struct Row {
  int writers = 0;
  WriteCell etcd, store;
  double etcd_kib_per_write = 0, store_kib_per_write = 0;  // written to storage, all 3 nodes
};

double KibPerWrite(double bytes_before, double bytes_after, const WriteCell& cell) {
  return cell.writes > 0 ? (bytes_after - bytes_before) / 1024.0 / static_cast<double>(cell.writes) : 0;
}

std::string Ms(double v) { return absl::StrFormat("%.2f", v); }

void PrintCellLine(const char* side, int writers, const WriteCell& c) {
  std::cerr << absl::StrFormat(
      "  %-5s %4d writers: %6zu writes in %.2f s = %8.0f/s  p50 %s ms  p99 %s ms  errors %zu %s\n", side, writers,
      c.writes, c.seconds, c.per_second(), Ms(c.p50_ms), Ms(c.p99_ms), c.errors, c.first_error);
}

absl::Status RunEtcd(const Settings& s, const std::filesystem::path& dir, IdAllocator& ids, std::vector<Row>& rows,
                     std::vector<std::pair<double, double>>* rss) {
  std::filesystem::create_directories(dir);
  absl::StatusOr<std::unique_ptr<EtcdCluster>> etcd = EtcdCluster::Start(dir, 3);
  if (!etcd.ok()) return etcd.status();
  absl::StatusOr<std::string> leader = (*etcd)->LeaderAddress();
  if (!leader.ok()) return leader.status();
  std::cerr << "etcd: 3 members up, leader at " << *leader << "\n";
  EtcdWriter writer(*leader, s.etcd_channels);
  auto put_from = [&](uint32_t first) {
    return [&writer, first](size_t i) {
      const uint32_t id = first + static_cast<uint32_t>(i);
      return writer.Put(i, absl::StrCat("/adcsc/requests/", kBenchCaConfig, "/", id),
                        MakeBenchRecord(id).SerializeAsString());
    };
  };
  // Warm-up: connections made and the WAL past its first segment allocation.
  WriteCell warm = RunWriters(16, s.warmup, milliseconds(60'000), put_from(ids.Take(s.warmup)));
  if (warm.writes == 0) return absl::UnavailableError(absl::StrCat("etcd warm-up wrote nothing: ", warm.first_error));
  for (Row& row : rows) {
    const uint32_t first = ids.Take(s.cell_max);
    const double written = (*etcd)->WriteBytes();
    row.etcd = RunWriters(row.writers, s.cell_max, s.cell, put_from(first));
    row.etcd_kib_per_write = KibPerWrite(written, (*etcd)->WriteBytes(), row.etcd);
    PrintCellLine("etcd", row.writers, row.etcd);
  }
  *rss = (*etcd)->MemberRss();
  return absl::OkStatus();
}

absl::Status RunStore(const Settings& s, const std::string& self, const std::filesystem::path& root, IdAllocator& ids,
                      std::vector<Row>& rows, std::vector<std::pair<double, double>>* rss) {
  StoreCluster cluster(root, {"s1", "s2", "s3"});
  for (size_t i = 0; i < 3; ++i) {
    if (absl::Status st = cluster.StartMember(i, self); !st.ok()) return st;
  }
  std::cerr << "store: 3 members up\n";
  const milliseconds answer_timeout = s.cell + milliseconds(120'000);
  auto write = [&](int writers, size_t count, milliseconds time) -> absl::StatusOr<WriteCell> {
    absl::StatusOr<std::string> a = cluster.Call(
        0, absl::StrCat("write ", writers, " ", count, " ", time.count(), " ", ids.Take(count)), answer_timeout);
    if (!a.ok()) return a.status();
    return CellFromAnswer(*a);
  };
  absl::StatusOr<WriteCell> warm = write(16, s.warmup, milliseconds(60'000));
  if (!warm.ok()) return warm.status();
  if (warm->writes == 0)
    return absl::UnavailableError(absl::StrCat("store warm-up wrote nothing: ", warm->first_error));
  for (Row& row : rows) {
    const double written = cluster.WriteBytes();
    absl::StatusOr<WriteCell> cell = write(row.writers, s.cell_max, s.cell);
    if (!cell.ok()) return cell.status();
    row.store = *cell;
    row.store_kib_per_write = KibPerWrite(written, cluster.WriteBytes(), row.store);
    PrintCellLine("store", row.writers, row.store);
  }
  for (size_t i = 0; i < 3; ++i) {
    rss->emplace_back(cluster.member(i).process->StatusMiB("VmRSS"), cluster.member(i).process->StatusMiB("VmHWM"));
  }
  cluster.StopAll();
  return absl::OkStatus();
}

struct CatchUp {
  size_t records = 0;
  double load_seconds = 0;        // bulk load on c1
  double peer_copy_seconds = 0;   // c2 (running during the load) covers c1, after the load
  double fresh_seconds = 0;       // c3 from an empty directory to covering c1 and c2
  double fresh_records_seen = 0;  // c3 from start to holding every record (the snapshot commit)
  int64_t fresh_records = 0;
  double ready_seconds = 0;                                  // c3 from start to serving (its bulk join done)
  std::string join;                                          // c3's own account of its bulk join
  double join_rss_max = 0;                                   // c3's highest VmRSS sampled until it served, MiB
  std::vector<std::tuple<std::string, double, double>> rss;  // node, VmRSS, VmHWM
  // etcd, the same number of records: the Put load, and a 4th member added empty.
  bool etcd = false;
  double etcd_load_seconds = 0;
  double etcd_fresh_seconds = 0;
  std::vector<std::tuple<std::string, double, double>> etcd_rss;
};

// Polls until member `i`'s vector covers those of members `of`; returns the seconds since
// `since`. With `records_seen`, also notes when `i` first holds `records` records (a snapshot
// commits all its records at once, so that splits copying from catching up after).
absl::StatusOr<double> WaitCovered(StoreCluster& cluster, size_t i, const std::vector<size_t>& of,
                                   Clock::time_point since, milliseconds timeout, double* records_seen = nullptr,
                                   size_t records = 0) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (records_seen != nullptr && *records_seen == 0) {
      absl::StatusOr<std::string> count = cluster.Call(i, "count");
      if (!count.ok()) return count.status();
      if (std::stoull(*count) >= records) *records_seen = std::chrono::duration<double>(Clock::now() - since).count();
    }
    absl::StatusOr<store::VersionVector> mine = cluster.Vector(i);
    if (!mine.ok()) return mine.status();
    bool all = true;
    for (size_t j : of) {
      absl::StatusOr<store::VersionVector> theirs = cluster.Vector(j);
      if (!theirs.ok()) return theirs.status();
      all = all && Covers(*mine, *theirs);
    }
    if (all) return std::chrono::duration<double>(Clock::now() - since).count();
    std::this_thread::sleep_for(kPollInterval);
  }
  return absl::DeadlineExceededError(
      absl::StrCat(cluster.member(i).spec.node_id, " did not catch up within ", timeout.count() / 1000, " s"));
}

absl::Status RunCatchUp(const Settings& s, const std::string& self, const std::filesystem::path& root, IdAllocator& ids,
                        CatchUp* out) {
  StoreCluster cluster(root, {"c1", "c2", "c3"}, s.bulk_join);
  for (size_t i = 0; i < 2; ++i) {
    if (absl::Status st = cluster.StartMember(i, self); !st.ok()) return st;
  }
  out->records = s.catchup_records;
  std::cerr << "catch-up: loading " << s.catchup_records << " records on c1 (c2 copies them, c3 not started)\n";
  absl::StatusOr<std::string> bulk =
      cluster.Call(0, absl::StrCat("bulk ", s.catchup_records, " ", kBulkBatch, " ", ids.Take(s.catchup_records)),
                   s.catchup_timeout);
  if (!bulk.ok()) return bulk.status();
  WriteCell load = CellFromAnswer(*bulk);
  if (load.errors > 0) return absl::InternalError(absl::StrCat("bulk load failed: ", load.first_error));
  out->load_seconds = load.seconds;
  std::cerr << absl::StrFormat("  loaded in %.1f s (%.0f records/s)\n", load.seconds, load.per_second());
  // c1 and c2 cover each other (c2 logs what its snapshot brought as its own mutations, and
  // c1 pulls those), so the cluster is at rest before the fresh node starts.
  const auto loaded = Clock::now();
  absl::StatusOr<double> copied = WaitCovered(cluster, 1, {0}, loaded, s.catchup_timeout);
  if (!copied.ok()) return copied.status();
  out->peer_copy_seconds = *copied;
  std::cerr << absl::StrFormat("  c2 covered c1 %.1f s after the load ended\n", *copied);
  if (absl::StatusOr<double> settled = WaitCovered(cluster, 0, {1}, loaded, s.catchup_timeout); !settled.ok()) {
    return settled.status();
  }
  const auto start = Clock::now();
  if (absl::Status st = cluster.Spawn(2, self); !st.ok()) return st;
  {
    // c3's memory while it joins: it answers "ready" only once its store is in place.
    std::atomic<bool> joining{true};
    ChildProcess* c3 = cluster.member(2).process.get();
    std::thread sampler([&] {
      while (joining.load()) {
        out->join_rss_max = std::max(out->join_rss_max, c3->StatusMiB("VmRSS"));
        std::this_thread::sleep_for(milliseconds(50));
      }
    });
    absl::Status ready = cluster.WaitReady(2, s.catchup_timeout);
    joining = false;
    sampler.join();
    if (!ready.ok()) return ready;
  }
  out->ready_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  absl::StatusOr<std::string> joined = cluster.Call(2, "join");
  if (!joined.ok()) return joined.status();
  out->join = *joined;
  std::cerr << absl::StrFormat("  c3 serves %.1f s after its start; bulk join: %s; peak VmRSS until then %.0f MiB\n",
                               out->ready_seconds, *joined, out->join_rss_max);
  absl::StatusOr<double> fresh =
      WaitCovered(cluster, 2, {0, 1}, start, s.catchup_timeout, &out->fresh_records_seen, s.catchup_records);
  if (!fresh.ok()) return fresh.status();
  out->fresh_seconds = *fresh;
  absl::StatusOr<std::string> count = cluster.Call(2, "count");
  if (!count.ok()) return count.status();
  out->fresh_records = std::stoll(*count);
  std::cerr << absl::StrFormat("  c3 caught up in %.1f s (%d records; all of them held at %.1f s)\n", *fresh,
                               out->fresh_records, out->fresh_records_seen);
  for (size_t i = 0; i < 3; ++i) {
    ChildProcess& p = *cluster.member(i).process;
    out->rss.emplace_back(cluster.member(i).spec.node_id, p.StatusMiB("VmRSS"), p.StatusMiB("VmHWM"));
  }
  cluster.StopAll();
  return absl::OkStatus();
}

// etcd's figure for the same: `records` Puts of the same records into a 3-member etcd, then a
// 4th member added with an empty data directory; the time until it has applied the revision
// the leader had (every key), and its memory.
absl::Status RunEtcdCatchUp(const Settings& s, const std::filesystem::path& dir, IdAllocator& ids, CatchUp* out) {
  std::filesystem::create_directories(dir);
  // A million ~1.7 KB values pass etcd's default backend quota (2 GiB); 8 GiB is its
  // documented maximum. Otherwise defaults, as in the write cells.
  absl::StatusOr<std::unique_ptr<EtcdCluster>> etcd =
      EtcdCluster::Start(dir, 3, {"--quota-backend-bytes", "8589934592"});
  if (!etcd.ok()) return etcd.status();
  absl::StatusOr<std::string> leader = (*etcd)->LeaderAddress();
  if (!leader.ok()) return leader.status();
  std::cerr << "etcd catch-up: putting " << s.catchup_records << " records (" << kEtcdLoadWriters << " writers)\n";
  EtcdWriter writer(*leader, s.etcd_channels);
  const uint32_t first = ids.Take(s.catchup_records);
  WriteCell load = RunWriters(kEtcdLoadWriters, s.catchup_records, s.catchup_timeout, [&](size_t i) {
    const uint32_t id = first + static_cast<uint32_t>(i);
    return writer.Put(i, absl::StrCat("/adcsc/requests/", kBenchCaConfig, "/", id),
                      MakeBenchRecord(id).SerializeAsString());
  });
  if (load.errors > 0) return absl::InternalError(absl::StrCat("etcd load failed: ", load.first_error));
  out->etcd_load_seconds = load.seconds;
  std::cerr << absl::StrFormat("  put in %.1f s (%.0f records/s)\n", load.seconds, load.per_second());
  int64_t target = 0;
  for (size_t i = 0; i < 3; ++i) {
    absl::StatusOr<int64_t> revision = (*etcd)->Revision(i);
    if (!revision.ok()) return revision.status();
    target = std::max(target, *revision);
  }
  const auto start = Clock::now();
  absl::StatusOr<size_t> fresh = (*etcd)->AddMember();
  if (!fresh.ok()) return fresh.status();
  const auto deadline = start + s.catchup_timeout;
  while (true) {
    absl::StatusOr<int64_t> revision = (*etcd)->Revision(*fresh);
    if (revision.ok() && *revision >= target) break;
    if (Clock::now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("the added etcd member did not reach revision ", target,
                                                      " within ", s.catchup_timeout.count() / 1000, " s"));
    }
    std::this_thread::sleep_for(kPollInterval);
  }
  out->etcd = true;
  out->etcd_fresh_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::cerr << absl::StrFormat("  the 4th etcd member applied revision %d %.1f s after its start\n", target,
                               out->etcd_fresh_seconds);
  std::vector<std::pair<double, double>> rss = (*etcd)->MemberRss();
  for (size_t i = 0; i < rss.size(); ++i)
    out->etcd_rss.emplace_back(absl::StrCat("etcd-", i), rss[i].first, rss[i].second);
  return absl::OkStatus();
}

std::string Date() {
  char buf[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(buf, sizeof buf, "%Y-%m-%d", std::gmtime(&now));
  return buf;
}

void PrintReport(const Settings& s, const std::vector<Row>& rows,
                 const std::vector<std::pair<double, double>>& etcd_rss,
                 const std::vector<std::pair<double, double>>& store_rss, const CatchUp* catchup, int argc,
                 char** argv) {
  std::string command = "build/tests/bench_replication";
  for (int i = 1; i < argc; ++i) absl::StrAppend(&command, " ", argv[i]);
  std::cout << "\n## bench_replication (" << s.label << "), " << Date() << ", " << std::thread::hardware_concurrency()
            << " CPUs\n\n";
  std::cout << "Replicated writes, 3 nodes on loopback, fsync on commit, acknowledged once 2 of 3 hold the write.\n"
            << "Cells of " << s.cell.count() << " ms or " << s.cell_max << " writes; etcd over " << s.etcd_channels
            << " gRPC connections to the leader, store writers inside node s1.\n\n";
  if (!rows.empty() && (s.etcd || s.store)) {
    std::cout
        << "| writers | etcd writes/s | etcd p50 ms | etcd p99 ms | store writes/s | store p50 ms | store p99 ms | "
           "store/etcd writes/s | store/etcd p99 |\n";
    std::cout << "|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    std::string io_table =
        "\nWritten to storage per replicated write, all three nodes (/proc/PID/io write_bytes, KiB):\n\n"
        "| writers | etcd | store |\n|---:|---:|---:|\n";
    for (const Row& r : rows) {
      const double ratio = r.etcd.per_second() > 0 ? r.store.per_second() / r.etcd.per_second() : 0;
      const double p99_ratio = r.etcd.p99_ms > 0 ? r.store.p99_ms / r.etcd.p99_ms : 0;
      std::cout << absl::StrFormat("| %d | %.0f | %s | %s | %.0f | %s | %s | %.2fx | %.2fx |\n", r.writers,
                                   r.etcd.per_second(), Ms(r.etcd.p50_ms), Ms(r.etcd.p99_ms), r.store.per_second(),
                                   Ms(r.store.p50_ms), Ms(r.store.p99_ms), ratio, p99_ratio);
      absl::StrAppend(
          &io_table, absl::StrFormat("| %d | %.1f | %.1f |\n", r.writers, r.etcd_kib_per_write, r.store_kib_per_write));
    }
    std::cout << io_table;
    size_t errors = 0;
    for (const Row& r : rows) errors += r.etcd.errors + r.store.errors;
    if (errors > 0) std::cout << "\nFailed writes (not counted above): " << errors << "\n";
    std::cout << "\nMemory after the write cells (MiB, VmRSS / peak VmHWM):";
    for (size_t i = 0; i < etcd_rss.size(); ++i)
      std::cout << absl::StrFormat(" etcd-%d %.0f/%.0f", i, etcd_rss[i].first, etcd_rss[i].second);
    for (size_t i = 0; i < store_rss.size(); ++i)
      std::cout << absl::StrFormat(" s%d %.0f/%.0f", i + 1, store_rss[i].first, store_rss[i].second);
    std::cout << "\n";
  }
  if (catchup != nullptr) {
    std::cout << "\n| catch-up | records | loaded in s (store: on c1; etcd: Puts, 256 writers) | "
                 "c2 (running) covers c1, s after load | fresh node: every record at s | fresh node covers "
                 "the others at s |\n";
    std::cout << "|---|---:|---:|---:|---:|---:|\n";
    if (catchup->fresh_seconds > 0) {
      std::cout << absl::StrFormat("| store (%s) | %d | %.1f | %.1f | %.1f | %.1f |\n",
                                   s.bulk_join ? "bulk join" : "snapshot pages", catchup->records,
                                   catchup->load_seconds, catchup->peer_copy_seconds, catchup->fresh_records_seen,
                                   catchup->fresh_seconds);
    }
    if (catchup->etcd) {
      std::cout << absl::StrFormat("| etcd (4th member added) | %d | %.1f | - | %.1f | %.1f |\n", catchup->records,
                                   catchup->etcd_load_seconds, catchup->etcd_fresh_seconds,
                                   catchup->etcd_fresh_seconds);
    }
    if (catchup->fresh_seconds > 0) {
      std::cout << absl::StrFormat(
          "\nc3 served %.1f s after it started; its bulk join: %s. Highest VmRSS sampled until then: %.0f MiB.\n",
          catchup->ready_seconds, catchup->join, catchup->join_rss_max);
    }
    std::cout << "\n| node at " << catchup->records << " records | VmRSS MiB | VmHWM MiB |\n|---|---:|---:|\n";
    for (const auto& [node, rss, hwm] : catchup->rss)
      std::cout << absl::StrFormat("| %s | %.0f | %.0f |\n", node, rss, hwm);
    for (const auto& [node, rss, hwm] : catchup->etcd_rss)
      std::cout << absl::StrFormat("| %s | %.0f | %.0f |\n", node, rss, hwm);
  }
  std::cout << "\nReproduce: " << command << "\n";
}

// SIGINT, SIGTERM and SIGHUP are taken by one thread that kills the children and removes the
// working directory before exiting, so an interrupted run leaves nothing behind.
void CleanUpOnSignals(const std::filesystem::path& root) {
  static sigset_t signals;
  sigemptyset(&signals);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&signals, sig);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // before any other thread exists
  std::thread([root] {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) return;
    ChildProcess::KillAll();
    std::error_code ignored;
    std::filesystem::remove_all(root, ignored);
    std::cerr << "bench_replication: interrupted (signal " << sig << "); children killed, " << root << " removed\n";
    _exit(128 + sig);
  }).detach();
}

int Main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "member") return RunStoreMember(argc, argv);
  Settings s;
  if (!ParseArgs(argc, argv, &s)) return 2;
  if (s.etcd && access(kEtcdBinary, X_OK) != 0) {
    std::cout << "SKIPPED: " << kEtcdBinary << " is not installed (Debian package etcd-server; deploy/install-deps "
              << "installs it). Use --skip-etcd to run the store side alone.\n";
    return kExitSkipped;
  }
  const std::string self = std::filesystem::canonical("/proc/self/exe").string();
  testing::TempDir root;  // removed with everything in it on the way out
  CleanUpOnSignals(root.path());
  std::cerr << "bench_replication (" << s.label << "): working in " << root.path() << "\n";
  {
    pki::ClusterPkiOptions pki;
    pki.cluster_id = kClusterId;
    pki.node_ids = {"s1", "s2", "s3", "c1", "c2", "c3"};
    pki.out_dir = root.path() / "pki";
    if (auto made = pki::InitClusterPki(pki); !made.ok()) {
      std::cerr << "bench_replication: cluster PKI: " << made.status() << "\n";
      return 1;
    }
  }
  IdAllocator ids;
  std::vector<Row> rows;
  for (int w : s.writers) {
    Row row;
    row.writers = w;
    rows.push_back(row);
  }
  std::vector<std::pair<double, double>> etcd_rss, store_rss;
  bool failed = false;
  auto report = [&](const char* part, const absl::Status& st) {
    if (st.ok()) return;
    std::cerr << "bench_replication: " << part << ": " << st << "\n";
    failed = true;
  };
  if (!s.write_cells) rows.clear();
  if (s.etcd && !rows.empty()) report("etcd", RunEtcd(s, root.path() / "etcd", ids, rows, &etcd_rss));
  if (s.store && !rows.empty()) report("store", RunStore(s, self, root.path(), ids, rows, &store_rss));
  CatchUp catchup;
  if (s.catchup) {
    report("catch-up", RunCatchUp(s, self, root.path(), ids, &catchup));
    if (s.etcd) report("etcd catch-up", RunEtcdCatchUp(s, root.path() / "etcd-catchup", ids, &catchup));
  }
  PrintReport(s, rows, etcd_rss, store_rss,
              s.catchup && (catchup.fresh_seconds > 0 || catchup.etcd) ? &catchup : nullptr, argc, argv);
  return failed ? 1 : 0;
}

}  // namespace
}  // namespace adcsc::bench

int main(int argc, char** argv) {
  // A member whose benchmark went away must not die on SIGPIPE mid-answer; it sees EOF.
  signal(SIGPIPE, SIG_IGN);
  return adcsc::bench::Main(argc, argv);
}
