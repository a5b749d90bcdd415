// Test harness for replication: a scheduler driven by a FakeClock (SimLoop), a fake network
// that delays, reorders, duplicates, drops and partitions messages as a seeded PRNG and the
// test decide (SimNetwork), and a cluster of real RequestStores on a temp dir with a
// Replicator each, which can crash (drop all memory, reopen from disk) and be destroyed.
// Single-threaded: everything runs on the test thread inside SimLoop::Run*.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "store/clock.h"
#include "store/replication.h"
#include "store/request_store.h"

namespace adcsc::store::sim {

// Events ordered by (clock time, insertion order); running one advances the clock (wall and
// monotonic alike) to it.
class SimLoop final : public Scheduler {
 public:
  explicit SimLoop(FakeClock* clock) : clock_(clock) {}

  void RunAfter(int64_t delay_ms, std::function<void()> fn) override {
    queue_.push(Event{clock_->NowUnixMillis() + std::max<int64_t>(delay_ms, 0), next_++, std::move(fn)});
  }
  // Runs every event due at or before `until_ms`, then sets the clock to `until_ms`.
  void RunUntil(int64_t until_ms) {
    while (!queue_.empty() && queue_.top().at_ms <= until_ms) {
      Event e = queue_.top();
      queue_.pop();
      if (e.at_ms > clock_->NowUnixMillis()) clock_->AdvanceMillis(e.at_ms - clock_->NowUnixMillis());
      e.fn();
    }
    if (until_ms > clock_->NowUnixMillis()) clock_->AdvanceMillis(until_ms - clock_->NowUnixMillis());
  }
  void RunFor(int64_t ms) { RunUntil(clock_->NowUnixMillis() + ms); }
  // Runs events until `done()` holds or `max_ms` of simulated time passed; true if it held.
  bool RunUntilCondition(const std::function<bool()>& done, int64_t max_ms) {
    const int64_t deadline = clock_->NowUnixMillis() + max_ms;
    while (!done()) {
      if (queue_.empty() || queue_.top().at_ms > deadline) {
        RunUntil(deadline);
        return done();
      }
      RunUntil(queue_.top().at_ms);
    }
    return true;
  }

 private:
  struct Event {
    int64_t at_ms;
    uint64_t order;
    std::function<void()> fn;
  };
  struct Later {
    bool operator()(const Event& a, const Event& b) const {
      return a.at_ms != b.at_ms ? a.at_ms > b.at_ms : a.order > b.order;
    }
  };
  FakeClock* clock_;
  std::priority_queue<Event, std::vector<Event>, Later> queue_;
  uint64_t next_ = 0;
};

struct NetworkFaults {
  double drop = 0;       // probability each message (request or reply) is lost
  double duplicate = 0;  // probability a request is delivered twice
  int64_t min_delay_ms = 1;
  int64_t max_delay_ms = 1;
};

class SimNetwork {
 public:
  SimNetwork(SimLoop* loop, std::mt19937_64* rng) : loop_(loop), rng_(rng) {}

  NetworkFaults& faults() { return faults_; }
  // nullptr: the node is down and its messages are lost.
  void SetHandler(const std::string& node, Replicator* replicator) { handlers_[node] = replicator; }
  // Nodes in different groups cannot talk; nodes not listed are in group 0.
  void Partition(std::map<std::string, int> groups) { groups_ = std::move(groups); }
  void Heal() { groups_.clear(); }
  bool Connected(const std::string& a, const std::string& b) const { return Group(a) == Group(b); }

  // Sends a request; `serve` runs on the receiver's replicator; `done` gets the reply once.
  template <typename Resp>
  void Send(const std::string& from, const std::string& to, std::function<absl::StatusOr<Resp>(Replicator&)> serve,
            ReplyCallback<Resp> done) {
    if (Lost()) return;
    const int copies = Chance(faults_.duplicate) ? 2 : 1;
    auto answered = std::make_shared<bool>(false);
    for (int i = 0; i < copies; ++i) {
      loop_->RunAfter(Delay(), [this, from, to, serve, done, answered] {
        auto it = handlers_.find(to);
        if (it == handlers_.end() || it->second == nullptr || !Connected(from, to)) return;
        absl::StatusOr<Resp> reply = serve(*it->second);
        if (Lost()) return;
        loop_->RunAfter(Delay(), [this, from, to, done, answered, reply = std::move(reply)] {
          if (*answered || !Connected(from, to)) return;
          *answered = true;
          done(reply);
        });
      });
    }
  }

 private:
  int Group(const std::string& node) const {
    auto it = groups_.find(node);
    return it == groups_.end() ? 0 : it->second;
  }
  bool Chance(double p) { return p > 0 && std::uniform_real_distribution<double>(0, 1)(*rng_) < p; }
  bool Lost() { return Chance(faults_.drop); }
  int64_t Delay() { return std::uniform_int_distribution<int64_t>(faults_.min_delay_ms, faults_.max_delay_ms)(*rng_); }

  SimLoop* loop_;
  std::mt19937_64* rng_;
  NetworkFaults faults_;
  std::map<std::string, Replicator*> handlers_;
  std::map<std::string, int> groups_;
};

class SimTransport final : public PeerTransport {
 public:
  SimTransport(SimNetwork* net, std::string self) : net_(net), self_(std::move(self)) {}
  void Push(const std::string& peer, PushRequest request, ReplyCallback<PushAck> done) override {
    net_->Send<PushAck>(
        self_, peer, [request](Replicator& r) { return r.HandlePush(request); }, std::move(done));
  }
  void Pull(const std::string& peer, PullRequest request, ReplyCallback<PullResponse> done) override {
    net_->Send<PullResponse>(
        self_, peer, [request](Replicator& r) { return r.HandlePull(request); }, std::move(done));
  }
  void FetchSnapshot(const std::string& peer, SnapshotRequest request, ReplyCallback<SnapshotPage> done) override {
    net_->Send<SnapshotPage>(
        self_, peer, [request](Replicator& r) { return r.HandleSnapshot(request); }, std::move(done));
  }

 private:
  SimNetwork* net_;
  std::string self_;
};

// Every record of a store, in key order, serialized: equal strings mean equal replicas.
inline absl::StatusOr<std::string> CanonicalDump(const RequestStore& store) {
  std::string dump;
  SnapshotCursor cursor;
  constexpr size_t kDumpPageRecords = 1024;
  while (true) {
    absl::StatusOr<SnapshotPage> page = store.ReadSnapshotPage(cursor, kDumpPageRecords);
    if (!page.ok()) return page.status();
    for (const RequestRecord& r : page->records) {
      std::string bytes;
      if (!r.SerializeToString(&bytes)) return absl::InternalError("serialize");
      absl::StrAppend(&dump, bytes.size(), ":", bytes);
    }
    if (page->done) return dump;
    cursor = page->next;
  }
}

// N nodes "n0".."n{N-1}", each a store file in `dir` plus a Replicator.
class SimCluster {
 public:
  SimCluster(std::filesystem::path dir, int nodes, ReplicatorOptions base, uint64_t seed)
      : dir_(std::move(dir)), rng_(seed), loop_(&clock_), net_(&loop_, &rng_), base_(std::move(base)) {
    for (int i = 0; i < nodes; ++i) ids_.push_back(absl::StrCat("n", i));
    for (const std::string& id : ids_) nodes_[id].id = id;
  }
  ~SimCluster() {
    for (const std::string& id : ids_) Crash(id);
  }

  struct Node {
    std::string id;
    std::unique_ptr<RequestStore> store;
    std::unique_ptr<SimTransport> transport;
    std::unique_ptr<Replicator> replicator;
    bool destroyed = false;
    bool up() const { return replicator != nullptr; }
  };

  absl::Status Start(const std::string& id) {
    Node& n = nodes_.at(id);
    if (n.up() || n.destroyed) return absl::OkStatus();
    StoreOptions so;
    so.path = dir_ / (id + ".db");
    so.node_id = id;
    so.clock = &clock_;
    so.fsync = false;
    absl::StatusOr<std::unique_ptr<RequestStore>> store = RequestStore::Open(so);
    if (!store.ok()) return store.status();
    n.store = *std::move(store);
    n.transport = std::make_unique<SimTransport>(&net_, id);
    ReplicatorOptions ro = base_;
    ro.peers.clear();
    for (const std::string& other : ids_) {
      if (other != id) ro.peers.push_back(other);
    }
    absl::StatusOr<std::unique_ptr<Replicator>> r =
        Replicator::Create(n.store.get(), n.transport.get(), &loop_, &clock_, ro);
    if (!r.ok()) return r.status();
    n.replicator = *std::move(r);
    net_.SetHandler(id, n.replicator.get());
    n.replicator->Start();
    return absl::OkStatus();
  }
  absl::Status StartAll() {
    for (const std::string& id : ids_) {
      if (absl::Status s = Start(id); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
  // Loses everything in memory; the store file stays.
  void Crash(const std::string& id) {
    Node& n = nodes_.at(id);
    net_.SetHandler(id, nullptr);
    n.replicator.reset();
    n.transport.reset();
    n.store.reset();
  }
  // Crash, then delete the node's files for good.
  void Destroy(const std::string& id) {
    Crash(id);
    nodes_.at(id).destroyed = true;
    for (const char* suffix : {".db", ".db-wal", ".db-shm"}) {
      std::filesystem::remove(dir_ / (id + suffix));
    }
  }

  std::vector<std::string> UpNodes() const {
    std::vector<std::string> up;
    for (const std::string& id : ids_) {
      if (nodes_.at(id).up()) up.push_back(id);
    }
    return up;
  }

  // True when every live node holds the same records.
  bool Converged() {
    std::optional<std::string> first;
    for (const std::string& id : UpNodes()) {
      absl::StatusOr<std::string> dump = CanonicalDump(*nodes_.at(id).store);
      if (!dump.ok()) return false;
      if (!first.has_value()) {
        first = *dump;
      } else if (*first != *dump) {
        return false;
      }
    }
    return true;
  }

  FakeClock& clock() { return clock_; }
  std::mt19937_64& rng() { return rng_; }
  SimLoop& loop() { return loop_; }
  SimNetwork& net() { return net_; }
  Node& node(const std::string& id) { return nodes_.at(id); }
  const std::vector<std::string>& ids() const { return ids_; }

 private:
  std::filesystem::path dir_;
  FakeClock clock_;
  std::mt19937_64 rng_;
  SimLoop loop_;
  SimNetwork net_;
  ReplicatorOptions base_;
  std::vector<std::string> ids_;
  std::map<std::string, Node> nodes_;
};

}  // namespace adcsc::store::sim
