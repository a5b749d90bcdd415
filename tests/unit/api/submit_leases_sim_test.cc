// Deterministic simulation of the submit lease protocol (node/api/submit_leases.h) the way
// ApiService runs it: three nodes with real SubmitLeases tables, clients sending the same CSRs
// to several nodes at nearly the same moment and retrying, over a network that delays,
// reorders, duplicates and drops messages, while nodes crash (their table and their submits
// in flight lost) and restart (with the grace their stamp file asks for, and settling their
// open intents by a search of the CA). One seeded PRNG drives it all. We check:
//   - no CSR ever gets a second CA request (a submitter that won a majority of grants looks
//     in the store first, searches the CA when told of a lapsed claim, then submits);
//   - once the faults stop, every CSR ends with its request recorded.
// One node is down at a time (the guarantee is for any single failure). Seeds:
// ADCSC_SIM_SEED=<n> replays one; ADCSC_SIM_SEEDS=<count> runs more (default below), from
// ADCSC_SIM_FIRST_SEED (default 1).
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "node/api/submit_leases.h"
#include "store/clock.h"
#include "tests/testing/temp_dir.h"
#include "tests/unit/store/sim_cluster.h"

namespace adcsc::node {
namespace {

constexpr uint64_t kDefaultSeeds = 1000;
constexpr int kNodes = 3;
constexpr int kCsrs = 8;
constexpr int64_t kLeaseMs = 1'000;
constexpr int64_t kLookupTimeoutMs = 60;
constexpr int64_t kInFlightWaitMs = 400;
constexpr int64_t kFaultPhaseMs = 6'000;
constexpr int64_t kSettleMs = 30'000;
constexpr int kMaxClientTries = 40;
// A rival's node silent this long counts as gone (ApiService uses 2 s, with a 30 s lease).
constexpr int64_t kSilentRivalMs = 600;

struct SeedOutcome {
  std::string failure;  // empty: passed
  int submits = 0;      // CA requests made
  int takeovers = 0;    // CSRs found at the CA by a search instead of being submitted again
  int gone_lapses = 0;  // rivals lapsed early because their node restarted or fell silent
};

class LeaseSim {
 public:
  LeaseSim(uint64_t seed, const std::filesystem::path& dir, bool broken_majority)
      : rng_(seed), loop_(&clock_), dir_(dir), broken_majority_(broken_majority) {
    for (int n = 0; n < kNodes; ++n) {
      nodes_[n].id = absl::StrCat("n", n);
      Boot(n);
    }
  }

  SeedOutcome Run() {
    // Each CSR: two to three clients at nearly the same moment, at random nodes.
    for (int csr = 0; csr < kCsrs; ++csr) {
      const int64_t at = Uniform(0, kFaultPhaseMs / 2);
      const int clients = static_cast<int>(Uniform(2, 3));
      for (int c = 0; c < clients; ++c) {
        loop_.RunAfter(at + Uniform(0, 30), [this, csr] { Client(csr, static_cast<int>(Uniform(0, kNodes - 1)), 1); });
      }
    }
    // Faults: one node down at a time, restarted after a while.
    for (int64_t t = Uniform(100, 800); t < kFaultPhaseMs; t += Uniform(800, 2'500)) {
      loop_.RunAfter(t, [this] {
        if (std::any_of(std::begin(nodes_), std::end(nodes_), [](const Node& n) { return !n.up; })) return;
        const int victim = static_cast<int>(Uniform(0, kNodes - 1));
        Crash(victim);
        loop_.RunAfter(Uniform(50, 2 * kLeaseMs), [this, victim] { Boot(victim); });
      });
    }
    loop_.RunUntil(kFaultPhaseMs);
    drop_ = 0;
    duplicate_ = 0;
    loop_.RunUntilCondition([this] { return !failure_.empty() || recorded_.size() == kCsrs; }, kSettleMs);
    if (failure_.empty() && recorded_.size() != kCsrs) {
      failure_ = absl::StrCat("after the faults stopped, only ", recorded_.size(), " of ", kCsrs,
                              " CSRs were recorded within ", kSettleMs, " ms;");
      for (int csr = 0; csr < kCsrs; ++csr) {
        if (recorded_.count(csr) != 0) continue;
        absl::StrAppend(&failure_, " CSR ", csr, ": ", ca_requests_[csr], " CA requests, last try ", last_try_[csr],
                        ", open intent on");
        for (const Node& n : nodes_) {
          if (n.open_intents.count(csr) != 0) absl::StrAppend(&failure_, " ", n.id);
        }
        absl::StrAppend(&failure_, ";");
      }
    }
    return SeedOutcome{failure_, submits_, takeovers_, gone_lapses_};
  }

 private:
  struct Node {
    std::string id;
    bool up = false;
    uint64_t epoch = 0;  // bumps on a crash: what was running there dies with it
    std::unique_ptr<SubmitLeases> leases;
    std::set<int> open_intents;  // CSRs whose intent is durable here and not settled
  };
  // One attempt of one client request at one node.
  struct Attempt {
    int csr = 0;
    int node = 0;
    uint64_t epoch = 0;
    int try_number = 0;
    int64_t deadline_ms = 0;
    int64_t ballot_ms = 0;  // one per request: the older request goes first
    SubmitIntent claim;
    std::vector<LeaseAnswer> answers;
    int outstanding = 0;
    bool decided = false;
    std::map<uint64_t, int64_t> silent_since;  // rival claim -> when its node fell silent
  };
  using AttemptPtr = std::shared_ptr<Attempt>;

  template <typename... Args>
  void Trace(const Args&... args) {
    if (trace_)
      std::printf("%lld %s\n", static_cast<long long>(clock_.NowUnixMillis() % 100'000), absl::StrCat(args...).c_str());
  }
  int64_t Uniform(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng_); }
  bool Chance(double p) { return p > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  int64_t Delay() { return Uniform(1, 25); }
  bool Alive(const AttemptPtr& a) const { return nodes_[a->node].up && nodes_[a->node].epoch == a->epoch; }
  static std::string Digest(int csr) { return std::string(32, static_cast<char>('A' + csr)); }

  void Boot(int n) {
    Node& node = nodes_[n];
    SubmitLeases::Options o;
    o.lease = std::chrono::milliseconds(kLeaseMs);
    o.grace = std::chrono::milliseconds(kLeaseMs);
    o.grant_stamp = dir_ / (node.id + ".stamp");
    node.leases = std::make_unique<SubmitLeases>(&clock_, o);
    node.up = true;
    Trace("boot ", node.id);
    // ApiService::ResolveOpenIntents: what the CA took is recorded; the rest stays open for
    // the next attempt here, which searches before it submits.
    for (auto it = node.open_intents.begin(); it != node.open_intents.end();) {
      if (ca_requests_[*it] > 0) {
        Record(*it);
        it = node.open_intents.erase(it);
      } else {
        ++it;
      }
    }
  }

  void Crash(int n) {
    Trace("crash ", nodes_[n].id);
    nodes_[n].up = false;
    nodes_[n].epoch++;
    nodes_[n].leases.reset();
  }

  void Record(int csr) { recorded_.insert(csr); }

  // A message from `from` to `to`, maybe lost or duplicated; `deliver` runs on arrival at a
  // live `to` (not after it crashed and came back: its epoch is checked).
  void Send(int to, const std::function<void()>& deliver) {
    if (Chance(drop_)) return;
    const int copies = Chance(duplicate_) ? 2 : 1;
    const uint64_t epoch = nodes_[to].epoch;
    for (int i = 0; i < copies; ++i) {
      loop_.RunAfter(Delay(), [this, to, epoch, deliver] {
        if (nodes_[to].up && nodes_[to].epoch == epoch) deliver();
      });
    }
  }

  void Client(int csr, int node, int try_number) {
    if (recorded_.count(csr) != 0 || !failure_.empty()) return;  // the retry would find it
    if (!nodes_[node].up || try_number > kMaxClientTries) {
      // The balancer sends the retry elsewhere, a little later.
      if (try_number <= kMaxClientTries) {
        loop_.RunAfter(Uniform(100, 400), [this, csr, try_number] {
          Client(csr, static_cast<int>(Uniform(0, kNodes - 1)), try_number + 1);
        });
      }
      return;
    }
    last_try_[csr] = try_number;
    auto a = std::make_shared<Attempt>();
    a->csr = csr;
    a->node = node;
    a->epoch = nodes_[node].epoch;
    a->try_number = try_number;
    a->deadline_ms = clock_.NowMonotonicMillis() + kInFlightWaitMs;
    a->ballot_ms = clock_.NowUnixMillis();
    ClaimRound(a);
    // A node that dies under a request breaks the client's connection: it retries.
    loop_.RunAfter(kInFlightWaitMs + kLeaseMs, [this, a] {
      if (!Alive(a) && recorded_.count(a->csr) == 0) {
        Client(a->csr, static_cast<int>(Uniform(0, kNodes - 1)), a->try_number + 1);
      }
    });
  }

  void GiveUp(const AttemptPtr& a) {
    // A 503: the client retries later, at any node.
    loop_.RunAfter(Uniform(200, 800), [this, csr = a->csr, t = a->try_number] {
      Client(csr, static_cast<int>(Uniform(0, kNodes - 1)), t + 1);
    });
  }

  void ClaimRound(const AttemptPtr& a) {
    if (!Alive(a)) return;
    if (recorded_.count(a->csr) != 0) return;  // answered from the store
    a->claim = SubmitIntent{};
    a->claim.ca_config = "dc\\ca";
    a->claim.template_name = "JamfDevice";
    a->claim.csr_sha256 = Digest(a->csr);
    a->claim.node_id = nodes_[a->node].id;
    a->claim.claim_id = ++next_claim_;
    a->claim.ballot_ms = a->ballot_ms;
    a->answers = {nodes_[a->node].leases->Claim(a->claim, nodes_[a->node].id)};
    a->decided = false;
    a->outstanding = kNodes - 1;
    const uint64_t round = a->claim.claim_id;
    for (int p = 0; p < kNodes; ++p) {
      if (p == a->node) continue;
      Send(p, [this, a, p, round, claim = a->claim] {
        LeaseAnswer answer = nodes_[p].leases->Claim(claim, nodes_[p].id);
        Send(a->node, [this, a, round, answer] {
          if (!Alive(a) || a->decided || a->claim.claim_id != round) return;
          a->answers.push_back(answer);
          if (--a->outstanding == 0) Decide(a);
        });
      });
    }
    loop_.RunAfter(kLookupTimeoutMs, [this, a, round] {
      if (Alive(a) && !a->decided && a->claim.claim_id == round) Decide(a);
    });
  }

  void Release(const AttemptPtr& a, bool settled) {
    if (!Alive(a)) return;
    Trace("csr ", a->csr, " release ", nodes_[a->node].id, "#", a->claim.claim_id, settled ? " settled" : "");
    nodes_[a->node].leases->Release(a->claim, settled);
    const SubmitIntent claim = a->claim;
    for (int p = 0; p < kNodes; ++p) {
      if (p != a->node) Send(p, [this, p, claim, settled] { nodes_[p].leases->Release(claim, settled); });
    }
  }

  void Decide(const AttemptPtr& a) {
    a->decided = true;
    LeaseTally tally = TallyLease(a->answers, kNodes);
    std::string said;
    for (const LeaseAnswer& x : a->answers) {
      absl::StrAppend(&said, " ", x.node_id, "=", static_cast<int>(x.grant),
                      x.holder ? absl::StrCat("(", x.holder->node_id, "#", x.holder->claim_id, ")") : "",
                      x.lapsed ? absl::StrCat("[lapsed ", x.lapsed->node_id, "#", x.lapsed->claim_id, "]") : "");
    }
    Trace("csr ", a->csr, " claim ", nodes_[a->node].id, "#", a->claim.claim_id, " ->", said, " outcome ",
          static_cast<int>(tally.outcome));
    if (broken_majority_ && a->answers.front().grant == LeaseGrant::kGranted) tally.outcome = LeaseOutcome::kWon;
    switch (tally.outcome) {
      case LeaseOutcome::kWon:
        return Won(a, tally);
      case LeaseOutcome::kWait: {
        // As ApiService::AcquireLease: let go, look in the store, claim again soon if this is
        // the earlier request, later if the rival is. A rival whose process is gone (its
        // node answered as a newer process, or has been silent for a while) is lapsed
        // everywhere first (ApiService::RivalGone, Peer.AnnounceSubmit holder_gone).
        Release(a, /*settled=*/true);
        if (RivalGone(a, *tally.wait_for)) {
          const SubmitIntent rival = *tally.wait_for;
          Trace("csr ", a->csr, " lapse gone rival ", rival.node_id, "#", rival.claim_id);
          ++gone_lapses_;
          nodes_[a->node].leases->Release(rival, /*settled=*/false);
          for (int p = 0; p < kNodes; ++p) {
            if (p != a->node) Send(p, [this, p, rival] { nodes_[p].leases->Release(rival, false); });
          }
          if (clock_.NowMonotonicMillis() >= a->deadline_ms) return GiveUp(a);
          loop_.RunAfter(10, [this, a] { ClaimRound(a); });
          return;
        }
        if (clock_.NowMonotonicMillis() >= a->deadline_ms) return GiveUp(a);
        const int64_t pause = ClaimPrecedes(a->claim, *tally.wait_for) ? 10 : 100;
        loop_.RunAfter(pause, [this, a] { ClaimRound(a); });
        return;
      }
      case LeaseOutcome::kNoQuorum:
        // Policy "refuse": no submit without a majority.
        Release(a, /*settled=*/true);
        if (clock_.NowMonotonicMillis() >= a->deadline_ms) return GiveUp(a);
        loop_.RunAfter(Uniform(20, 80), [this, a] { ClaimRound(a); });
        return;
    }
  }

  bool RivalGone(const AttemptPtr& a, const SubmitIntent& rival) {
    for (const LeaseAnswer& x : a->answers) {
      if (x.node_id != rival.node_id) continue;
      a->silent_since.erase(rival.claim_id);
      return ClaimOutlivedItsNode(rival, x);
    }
    auto [it, first] = a->silent_since.try_emplace(rival.claim_id, clock_.NowMonotonicMillis());
    return !first && clock_.NowMonotonicMillis() - it->second >= kSilentRivalMs;
  }

  void Won(const AttemptPtr& a, const LeaseTally& tally) {
    Node& node = nodes_[a->node];
    // Look again now that it holds the lease (the store is shared: replication is instant here).
    if (recorded_.count(a->csr) != 0) return Release(a, true);
    // An earlier attempt's outcome is unknown: search the CA first.
    if (tally.lapsed.has_value() || node.open_intents.count(a->csr) != 0) {
      if (ca_requests_[a->csr] > 0) {
        ++takeovers_;
        Record(a->csr);
        node.open_intents.erase(a->csr);
        return Release(a, true);
      }
    }
    node.open_intents.insert(a->csr);  // durable before the CA call
    Trace("csr ", a->csr, " SUBMIT by ", node.id, "#", a->claim.claim_id);
    if (++ca_requests_[a->csr] > 1 && failure_.empty()) {
      failure_ = absl::StrCat("CSR ", a->csr, " got a second CA request, from node ", node.id, " at ",
                              clock_.NowUnixMillis(), " ms");
    }
    ++submits_;
    // The CA call, then the record and the release; a crash in between leaves the intent.
    loop_.RunAfter(Uniform(5, kLeaseMs / 3), [this, a] {
      if (!Alive(a)) return;
      Record(a->csr);
      nodes_[a->node].open_intents.erase(a->csr);
      Release(a, true);
    });
  }

  std::mt19937_64 rng_;
  FakeClock clock_{1'700'000'000'000};
  store::sim::SimLoop loop_;
  const std::filesystem::path dir_;
  const bool broken_majority_;
  const bool trace_ = std::getenv("ADCSC_SIM_TRACE") != nullptr;
  double drop_ = 0.05;
  double duplicate_ = 0.03;
  Node nodes_[kNodes];
  uint64_t next_claim_ = 0;
  std::map<int, int> ca_requests_;
  std::map<int, int> last_try_;
  std::set<int> recorded_;
  int submits_ = 0;
  int takeovers_ = 0;
  int gone_lapses_ = 0;
  std::string failure_;
};

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v == nullptr || *v == '\0' ? fallback : std::strtoull(v, nullptr, 10);
}

TEST(SubmitLeaseSim, RandomSeedsGiveEveryCsrExactlyOneCaRequest) {
  adcsc::testing::TempDir dir;
  const char* one = std::getenv("ADCSC_SIM_SEED");
  const bool replay = one != nullptr && *one != '\0';
  const uint64_t first = replay ? std::strtoull(one, nullptr, 10) : EnvOr("ADCSC_SIM_FIRST_SEED", 1);
  const uint64_t count = replay ? 1 : EnvOr("ADCSC_SIM_SEEDS", kDefaultSeeds);
  int submits = 0, takeovers = 0, gone_lapses = 0;
  for (uint64_t seed = first; seed < first + count; ++seed) {
    const std::filesystem::path seed_dir = dir.path() / absl::StrCat("seed_", seed);
    std::filesystem::create_directories(seed_dir);
    SeedOutcome r = LeaseSim(seed, seed_dir, /*broken_majority=*/false).Run();
    std::filesystem::remove_all(seed_dir);
    submits += r.submits;
    takeovers += r.takeovers;
    gone_lapses += r.gone_lapses;
    ASSERT_TRUE(r.failure.empty()) << "seed " << seed << ": " << r.failure << "\nreplay: ADCSC_SIM_SEED=" << seed
                                   << " build/tests/api_test --gtest_filter=SubmitLeaseSim.*";
  }
  if (count >= 50) {
    EXPECT_GT(takeovers, 0) << "no seed ever needed a search after a crash: the faults test nothing";
  }
  std::printf(
      "[ sim      ] %llu seeds, %d CA requests, %d found by a search after a crash, %d gone rivals lapsed early\n",
      static_cast<unsigned long long>(count), submits, takeovers, gone_lapses);
}

// The checks can fail: a claimant that goes ahead on its own grant alone makes duplicates.
TEST(SubmitLeaseSim, CatchesDuplicatesWhenOneGrantIsTakenForAMajority) {
  adcsc::testing::TempDir dir;
  std::string failure;
  for (uint64_t seed = 1; seed <= 100 && failure.empty(); ++seed) {
    const std::filesystem::path seed_dir = dir.path() / absl::StrCat("seed_", seed);
    std::filesystem::create_directories(seed_dir);
    failure = LeaseSim(seed, seed_dir, /*broken_majority=*/true).Run().failure;
    std::filesystem::remove_all(seed_dir);
  }
  EXPECT_NE(failure.find("second CA request"), std::string::npos) << failure;
  std::printf("[ sim      ] injected bug caught: %s\n", failure.c_str());
}

}  // namespace
}  // namespace adcsc::node
