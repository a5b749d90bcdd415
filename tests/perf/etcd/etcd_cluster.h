// The etcd side of the replication benchmark: a 3-member etcd cluster (Debian's etcd-server,
// /usr/bin/etcd) on 127.0.0.1 with free ports and data directories under a given folder,
// default durability (each member fsyncs its raft WAL before acknowledging), and a client
// that Puts over several gRPC channels to the leader. The processes die with this object.
// Thread-safety: Start/Leader on one thread; Put from any number of threads at once.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "etcd_kv.grpc.pb.h"
#include "tests/perf/child_process.h"

namespace adcsc::bench {

inline constexpr char kEtcdBinary[] = "/usr/bin/etcd";

class EtcdCluster {
 public:
  // Starts `members` etcd processes (logs in <dir>/etcd-N.log) and waits until every one
  // reports the same leader. `extra_args` go to every member. Errors name the member and its log.
  static absl::StatusOr<std::unique_ptr<EtcdCluster>> Start(const std::filesystem::path& dir, int members,
                                                            const std::vector<std::string>& extra_args = {});
  ~EtcdCluster() = default;  // kills the members
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  // The client address ("127.0.0.1:PORT") of the current leader.
  absl::StatusOr<std::string> LeaderAddress() const;
  // Resident memory of each member, MiB: VmRSS and peak VmHWM.
  std::vector<std::pair<double, double>> MemberRss() const;
  // Bytes all members have written to storage so far (/proc/PID/io write_bytes).
  double WriteBytes() const;
  // Adds a member with an empty data directory the way etcd's docs say (Cluster.MemberAdd on
  // the leader, then the process with --initial-cluster-state existing); returns its index.
  absl::StatusOr<size_t> AddMember();
  // The store revision member `i` has applied (Maintenance.Status on it).
  absl::StatusOr<int64_t> Revision(size_t i) const;
  ChildProcess& member(size_t i) { return *members_[i]; }

 private:
  EtcdCluster() = default;
  absl::Status StartProcess(const std::string& name, int client_port, int peer_port, const std::string& state);

  std::filesystem::path dir_;
  std::vector<std::string> extra_args_;
  std::vector<std::string> initial_;  // name=peer URL, every member so far
  std::vector<std::unique_ptr<ChildProcess>> members_;
  std::vector<int> client_ports_;
};

// Puts to one etcd address over `channels` separate HTTP/2 connections (writer i uses
// channel i % channels), so many writers are not serialized on one connection.
class EtcdWriter {
 public:
  EtcdWriter(const std::string& address, int channels);
  absl::Status Put(size_t writer_index, const std::string& key, const std::string& value);

 private:
  std::vector<std::unique_ptr<etcdserverpb::KV::Stub>> stubs_;
};

}  // namespace adcsc::bench
