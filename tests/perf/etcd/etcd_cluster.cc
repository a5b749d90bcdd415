#include "tests/perf/etcd/etcd_cluster.h"

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/testing/free_port.h"

namespace adcsc::bench {
namespace {

constexpr auto kEtcdReadyTimeout = std::chrono::seconds(30);
constexpr auto kEtcdCallTimeout = std::chrono::seconds(10);

std::shared_ptr<grpc::Channel> Channel(const std::string& address, int index) {
  grpc::ChannelArguments args;
  // A distinct argument keeps gRPC from sharing one connection between the channels.
  args.SetInt("adcsc.bench.channel", index);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

absl::StatusOr<etcdserverpb::StatusResponse> MemberStatus(const std::string& address) {
  auto stub = etcdserverpb::Maintenance::NewStub(Channel(address, 0));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  etcdserverpb::StatusResponse reply;
  grpc::Status s = stub->Status(&context, etcdserverpb::StatusRequest(), &reply);
  if (!s.ok()) return absl::UnavailableError(absl::StrCat("etcd ", address, ": ", s.error_message()));
  return reply;
}

}  // namespace

absl::Status EtcdCluster::StartProcess(const std::string& name, int client_port, int peer_port,
                                       const std::string& state) {
  const std::string client_url = absl::StrCat("http://127.0.0.1:", client_port);
  const std::string peer_url = absl::StrCat("http://127.0.0.1:", peer_port);
  // Defaults otherwise: every member fsyncs its WAL before it acknowledges an entry.
  std::vector<std::string> argv = {kEtcdBinary,
                                   "--name",
                                   name,
                                   "--data-dir",
                                   (dir_ / (name + ".data")).string(),
                                   "--listen-client-urls",
                                   client_url,
                                   "--advertise-client-urls",
                                   client_url,
                                   "--listen-peer-urls",
                                   peer_url,
                                   "--initial-advertise-peer-urls",
                                   peer_url,
                                   "--initial-cluster",
                                   absl::StrJoin(initial_, ","),
                                   "--initial-cluster-state",
                                   state,
                                   "--initial-cluster-token",
                                   "adcsc-bench",
                                   "--logger",
                                   "zap",
                                   "--log-level",
                                   "warn"};
  argv.insert(argv.end(), extra_args_.begin(), extra_args_.end());
  auto child = ChildProcess::Start(argv, /*pipes=*/false, dir_ / (name + ".log"));
  if (!child.ok()) return child.status();
  members_.push_back(std::move(*child));
  client_ports_.push_back(client_port);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<EtcdCluster>> EtcdCluster::Start(const std::filesystem::path& dir, int members,
                                                                const std::vector<std::string>& extra_args) {
  std::unique_ptr<EtcdCluster> cluster(new EtcdCluster());
  cluster->dir_ = dir;
  cluster->extra_args_ = extra_args;
  std::vector<int> client_ports, peer_ports;
  for (int i = 0; i < members; ++i) {
    client_ports.push_back(testing::FreePort());
    peer_ports.push_back(testing::FreePort());
    cluster->initial_.push_back(absl::StrCat("etcd-", i, "=http://127.0.0.1:", peer_ports.back()));
  }
  for (int i = 0; i < members; ++i) {
    if (absl::Status s = cluster->StartProcess(absl::StrCat("etcd-", i), client_ports[i], peer_ports[i], "new");
        !s.ok()) {
      return s;
    }
  }
  const auto deadline = std::chrono::steady_clock::now() + kEtcdReadyTimeout;
  absl::Status last = absl::UnavailableError("not asked yet");
  while (std::chrono::steady_clock::now() < deadline) {
    std::vector<uint64_t> leaders;
    for (int port : cluster->client_ports_) {
      auto status = MemberStatus(absl::StrCat("127.0.0.1:", port));
      if (!status.ok()) {
        last = status.status();
        break;
      }
      leaders.push_back(status->leader());
    }
    if (leaders.size() == static_cast<size_t>(members) && leaders[0] != 0 &&
        std::all_of(leaders.begin(), leaders.end(), [&](uint64_t l) { return l == leaders[0]; })) {
      return cluster;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return absl::DeadlineExceededError(absl::StrCat("etcd cluster not ready within ", kEtcdReadyTimeout.count(),
                                                  " s (last: ", last.message(), "); see ", dir.string(),
                                                  "/etcd-*.log"));
}

absl::StatusOr<std::string> EtcdCluster::LeaderAddress() const {
  for (int port : client_ports_) {
    const std::string address = absl::StrCat("127.0.0.1:", port);
    auto status = MemberStatus(address);
    if (!status.ok()) return status.status();
    if (status->leader() == status->header().member_id()) return address;
  }
  return absl::UnavailableError("etcd: no member says it is the leader");
}

absl::StatusOr<size_t> EtcdCluster::AddMember() {
  absl::StatusOr<std::string> leader = LeaderAddress();
  if (!leader.ok()) return leader.status();
  const std::string name = absl::StrCat("etcd-", members_.size());
  const int client_port = testing::FreePort();
  const int peer_port = testing::FreePort();
  const std::string peer_url = absl::StrCat("http://127.0.0.1:", peer_port);
  auto stub = etcdserverpb::Cluster::NewStub(Channel(*leader, 0));
  etcdserverpb::MemberAddRequest request;
  request.add_peerurls(peer_url);
  // etcd refuses a new member until every member has been connected for 5 s ("unhealthy
  // cluster", its strict reconfiguration check): a cluster started moments ago waits.
  const auto deadline = std::chrono::steady_clock::now() + kEtcdReadyTimeout;
  while (true) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kEtcdCallTimeout);
    etcdserverpb::MemberAddResponse reply;
    grpc::Status added = stub->MemberAdd(&context, request, &reply);
    if (added.ok()) break;
    if (added.error_message().find("unhealthy cluster") == std::string::npos ||
        std::chrono::steady_clock::now() >= deadline) {
      return absl::UnavailableError(absl::StrCat("etcd MemberAdd: ", added.error_message()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  initial_.push_back(absl::StrCat(name, "=", peer_url));
  if (absl::Status s = StartProcess(name, client_port, peer_port, "existing"); !s.ok()) return s;
  return members_.size() - 1;
}

absl::StatusOr<int64_t> EtcdCluster::Revision(size_t i) const {
  auto status = MemberStatus(absl::StrCat("127.0.0.1:", client_ports_[i]));
  if (!status.ok()) return status.status();
  return status->header().revision();
}

std::vector<std::pair<double, double>> EtcdCluster::MemberRss() const {
  std::vector<std::pair<double, double>> out;
  for (const auto& m : members_) out.emplace_back(m->StatusMiB("VmRSS"), m->StatusMiB("VmHWM"));
  return out;
}

double EtcdCluster::WriteBytes() const {
  double total = 0;
  for (const auto& m : members_) total += m->WriteBytes();
  return total;
}

EtcdWriter::EtcdWriter(const std::string& address, int channels) {
  for (int i = 0; i < channels; ++i) stubs_.push_back(etcdserverpb::KV::NewStub(Channel(address, i)));
}

absl::Status EtcdWriter::Put(size_t writer_index, const std::string& key, const std::string& value) {
  etcdserverpb::PutRequest request;
  request.set_key(key);
  request.set_value(value);
  etcdserverpb::PutResponse reply;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kEtcdCallTimeout);
  grpc::Status s = stubs_[writer_index % stubs_.size()]->Put(&context, request, &reply);
  if (!s.ok()) return absl::UnavailableError(absl::StrCat("etcd Put: ", s.error_message()));
  return absl::OkStatus();
}

}  // namespace adcsc::bench
