// One node of the replicated request store, run as its own process by bench_replication
// (`bench_replication member ...`) so that each node's memory is its own: a durable
// RequestStore in a directory and a ClusterRuntime (gRPC with mutual TLS) on a loopback port.
// The benchmark drives it over stdin/stdout, one command line and one answer line at a time
// ("ok ..." or "error ..."); it exits when its stdin closes. Commands:
//   write THREADS MAX_COUNT MAX_MS FIRST_ID  Put + Replicate new records from THREADS threads
//        -> ok writes=N errors=E seconds=S p50_ms=X p99_ms=Y [error=...]
//   bulk COUNT BATCH FIRST_ID                local load, BATCH records a transaction (peers
//                                            catch up by anti-entropy)
//        -> ok writes=N errors=E seconds=S
//   vv       -> ok ORIGIN=SEQ,ORIGIN=SEQ        the version vector
//   count    -> ok N                            records held
//   status   -> ok snapshots=N pulled=M quorum_writes=Q under_replicated=U
//   join     -> ok outcome=WORD peer=ID records=N held=H seconds=S   the bulk join at its start
//                                            (node/cluster/bulk_join.h), made before "ok ready"
// Thread-safety: single-threaded command loop; the writers are its own threads.
#pragma once

#include <string>
#include <vector>

namespace adcsc::bench {

// What a member needs to know; the benchmark turns it into arguments and back.
struct StoreMemberSpec {
  std::string node_id;
  std::string cluster_id;
  std::string data_dir;                            // exists, empty for a fresh node
  std::string pki_dir;                             // from InitClusterPki: cluster-ca.pem and <node_id>/node*.pem
  int port = 0;                                    // its cluster listener on 127.0.0.1
  std::vector<std::pair<std::string, int>> peers;  // (node id, port on 127.0.0.1)
  bool bulk_join = true;                           // an empty store joins through the bulk path
};

// argv for `self member ...` (argv[0] = self).
std::vector<std::string> StoreMemberArgs(const std::string& self, const StoreMemberSpec& spec);

// main() of `bench_replication member ...` (argv[1] == "member"); returns the exit code.
int RunStoreMember(int argc, char** argv);

}  // namespace adcsc::bench
