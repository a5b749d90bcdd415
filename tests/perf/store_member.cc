#include "tests/perf/store_member.h"

#include <chrono>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "node/cluster/bulk_join.h"
#include "node/cluster/runtime.h"
#include "node/config/config.h"
#include "node/pki/cluster.h"
#include "store/request_store.h"
#include "tests/perf/write_load.h"

namespace adcsc::bench {

std::vector<std::string> StoreMemberArgs(const std::string& self, const StoreMemberSpec& spec) {
  std::vector<std::string> args = {self,        "member",        "--id",   spec.node_id,
                                   "--cluster", spec.cluster_id, "--dir",  spec.data_dir,
                                   "--pki",     spec.pki_dir,    "--port", std::to_string(spec.port)};
  for (const auto& [id, port] : spec.peers) {
    args.push_back("--peer");
    args.push_back(absl::StrCat(id, "=", port));
  }
  args.push_back("--bulk-join");
  args.push_back(spec.bulk_join ? "1" : "0");
  return args;
}

namespace {

absl::StatusOr<StoreMemberSpec> ParseMemberArgs(int argc, char** argv) {
  StoreMemberSpec spec;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string key = argv[i], value = argv[i + 1];
    if (key == "--id") {
      spec.node_id = value;
    } else if (key == "--cluster") {
      spec.cluster_id = value;
    } else if (key == "--dir") {
      spec.data_dir = value;
    } else if (key == "--pki") {
      spec.pki_dir = value;
    } else if (key == "--port") {
      spec.port = std::stoi(value);
    } else if (key == "--bulk-join") {
      spec.bulk_join = value != "0";
    } else if (key == "--peer" && value.find('=') != std::string::npos) {
      spec.peers.emplace_back(value.substr(0, value.find('=')), std::stoi(value.substr(value.find('=') + 1)));
    } else {
      return absl::InvalidArgumentError(absl::StrCat("member: unknown argument ", key, " ", value));
    }
  }
  if (spec.node_id.empty() || spec.data_dir.empty() || spec.pki_dir.empty() || spec.port == 0) {
    return absl::InvalidArgumentError("member: --id, --dir, --pki and --port are required");
  }
  return spec;
}

node::Config MemberConfig(const StoreMemberSpec& spec) {
  node::Config c;
  c.node_id = spec.node_id;
  c.data_dir = spec.data_dir;
  c.cluster.enabled = true;
  c.cluster.id = spec.cluster_id;
  c.cluster.listen_address = "127.0.0.1";
  c.cluster.listen_port = static_cast<uint16_t>(spec.port);
  c.cluster.ca_file = std::filesystem::path(spec.pki_dir) / pki::kClusterCaCertFile;
  c.cluster.cert_file = std::filesystem::path(spec.pki_dir) / spec.node_id / pki::kNodeCertFile;
  c.cluster.key_file = std::filesystem::path(spec.pki_dir) / spec.node_id / pki::kNodeKeyFile;
  for (const auto& [id, port] : spec.peers) c.cluster.peers.push_back({id, absl::StrCat("127.0.0.1:", port)});
  return c;
}

std::string Describe(const WriteCell& cell) {
  std::string out = absl::StrCat("writes=", cell.writes, " errors=", cell.errors, " seconds=", cell.seconds,
                                 " p50_ms=", cell.p50_ms, " p99_ms=", cell.p99_ms);
  if (!cell.first_error.empty()) absl::StrAppend(&out, " error=", cell.first_error);
  return out;
}

// Loads `count` records in transactions of `batch` through ApplySnapshot with an empty
// vector: each record is merged and logged as a mutation of this node, the state a Put of
// each would leave, with one fsync per batch instead of one per group of concurrent Puts.
WriteCell BulkLoad(store::RequestStore& store, size_t count, size_t batch, uint32_t first_id) {
  const auto start = std::chrono::steady_clock::now();
  const int64_t now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  WriteCell cell;
  std::vector<store::RequestRecord> records;
  for (size_t done = 0; done < count;) {
    records.clear();
    for (; records.size() < batch && done < count; ++done) {
      store::RequestRecord r = MakeBenchRecord(first_id + static_cast<uint32_t>(done));
      r.set_node_id(store.node_id());
      r.set_created_ms(now_ms);
      r.set_updated_ms(now_ms);
      // HLC layout is ms << 16 | counter; past 65,536 records the stamps run a few ms ahead.
      r.set_hlc((static_cast<uint64_t>(now_ms) << 16) + done);
      records.push_back(std::move(r));
    }
    if (absl::Status s = store.ApplySnapshot(records, {}); !s.ok()) {
      ++cell.errors;
      cell.first_error = s.ToString();
      break;
    }
    cell.writes += records.size();
  }
  cell.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return cell;
}

// One command line -> one answer line.
std::string Handle(const std::string& line, store::RequestStore& store, cluster::ClusterRuntime& runtime,
                   const std::string& joined) {
  std::istringstream in(line);
  std::string command;
  in >> command;
  if (command == "write") {
    int threads = 0;
    size_t max_count = 0;
    long max_ms = 0;
    uint32_t first_id = 0;
    if (!(in >> threads >> max_count >> max_ms >> first_id) || threads <= 0)
      return "error usage: write THREADS MAX_COUNT MAX_MS FIRST_ID";
    WriteCell cell = RunWriters(threads, max_count, std::chrono::milliseconds(max_ms), [&](size_t i) -> absl::Status {
      // The API's write path (ApiService::Record): commit locally, then wait for the quorum.
      absl::StatusOr<store::WriteResult> put = store.Put(MakeBenchRecord(first_id + static_cast<uint32_t>(i)));
      if (!put.ok()) return put.status();
      return runtime.Replicate(*put);
    });
    return "ok " + Describe(cell);
  }
  if (command == "bulk") {
    size_t count = 0, batch = 0;
    uint32_t first_id = 0;
    if (!(in >> count >> batch >> first_id) || batch == 0) return "error usage: bulk COUNT BATCH FIRST_ID";
    return "ok " + Describe(BulkLoad(store, count, batch, first_id));
  }
  if (command == "vv") {
    absl::StatusOr<store::VersionVector> vv = store.GetVersionVector();
    if (!vv.ok()) return "error " + vv.status().ToString();
    return "ok " + absl::StrJoin(*vv, ",", absl::PairFormatter("="));
  }
  if (command == "count") {
    absl::StatusOr<int64_t> n = store.CountRecords();
    return n.ok() ? absl::StrCat("ok ", *n) : "error " + n.status().ToString();
  }
  if (command == "join") return "ok " + joined;
  if (command == "status") {
    absl::StatusOr<store::ReplicatorStatus> s = runtime.Status();
    if (!s.ok()) return "error " + s.status().ToString();
    return absl::StrCat("ok snapshots=", s->snapshots_completed, " pulled=", s->mutations_pulled,
                        " quorum_writes=", s->quorum_writes, " under_replicated=", s->under_replicated_writes);
  }
  return "error unknown command: " + line;
}

}  // namespace

int RunStoreMember(int argc, char** argv) {
  absl::StatusOr<StoreMemberSpec> spec = ParseMemberArgs(argc, argv);
  if (!spec.ok()) {
    std::cerr << spec.status().message() << "\n";
    return 2;
  }
  store::StoreOptions options;
  options.path = std::filesystem::path(spec->data_dir) / "requests.db";
  options.node_id = spec->node_id;
  options.fsync = true;  // the durability under test: synchronous=FULL, fsync on every commit
  const node::Config config = MemberConfig(*spec);
  // As a node does before it opens its store (node/app/run_node.cc).
  std::string joined = "outcome=off";
  if (spec->bulk_join) {
    cluster::BulkJoinOptions join_options;
    auto result = cluster::JoinIfEmpty(config, options, join_options);
    if (!result.ok()) {
      joined = absl::StrCat("outcome=error error=", absl::StrReplaceAll(result.status().message(), {{" ", "_"}}));
    } else {
      joined = absl::StrCat("outcome=", cluster::OutcomeName(result->outcome), " peer=", result->peer,
                            " records=", result->records, " held=", result->held, " seconds=", result->seconds,
                            " index_seconds=", result->index_seconds, " sync_seconds=", result->sync_seconds,
                            " starved_seconds=", result->starved_seconds, " full_seconds=", result->full_seconds);
      for (const std::string& failure : result->failures) std::cerr << "bulk join: " << failure << "\n";
    }
    std::cerr << "bulk join: " << joined << "\n";
  }
  auto store = store::RequestStore::Open(options);
  if (!store.ok()) {
    std::cout << "error " << store.status() << std::endl;
    return 1;
  }
  auto runtime = cluster::ClusterRuntime::Start(config, store->get());
  if (!runtime.ok()) {
    std::cout << "error " << runtime.status() << std::endl;
    return 1;
  }
  std::cout << "ok ready " << (*runtime)->port() << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line == "quit") break;
    std::cout << Handle(line, **store, **runtime, joined) << std::endl;
  }
  runtime->reset();
  return 0;
}

}  // namespace adcsc::bench
