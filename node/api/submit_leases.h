// Who may send a CSR to the CA right now. Every node keeps a table of short leases, at most
// one holder per CSR (CA config, template, digest), and grants a claim only when no other
// claim holds that CSR. A node sends a CSR to the CA only with the grants of a majority of
// the cluster, itself included (TallyLease): two claims cannot both collect a majority, so
// two nodes that receive the same CSR at the same moment (a client retrying through a
// round-robin balancer) agree on one submitter, and the other waits for its answer.
//
// A lease lapses after `lease` unless its holder releases it; a lapsed claim is remembered,
// and the next claim granted for that CSR is told of it, so that it looks for the lapsed
// holder's request at the CA (node/api/ca_request_search.h) before submitting: the holder may
// have died after the CA took its request. A node that restarts has forgotten what it
// granted, so until every lease it may have granted has lapsed it grants nothing
// (kRestarting). It learns how long that is from a stamp file it rewrites (at most once per
// lease period) whenever it grants a peer's claim: "grants may live until T".
// See docs/architecture.md "One CA request per CSR". In memory, bounded. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "store/clock.h"

namespace adcsc::node {

// One attempt of one node to submit one CSR: the claim it sends for the lease, and what a
// node that finds it (held or lapsed) needs to find its request at the CA.
struct SubmitIntent {
  std::string ca_config;  // "dc\ca"
  std::string template_name;
  std::string csr_sha256;         // 32 bytes, binary
  uint32_t after_request_id = 0;  // highest request ID for ca_config the claimant held
  std::string ca_identity;        // who submits
  std::string node_id;            // the claimant
  uint64_t claim_id = 0;          // this attempt (random): one node's two attempts are rivals too
  int64_t ballot_ms = 0;          // when the attempt began (claimant's clock): orders rival claims
};

enum class LeaseGrant {
  kGranted,     // the claim holds the lease here (or already did)
  kHeld,        // another claim holds it: `holder`
  kRestarting,  // this node restarted less than `grace` ago and grants nothing yet
};

// One node's answer to a claim.
struct LeaseAnswer {
  std::string node_id;  // who answered
  LeaseGrant grant = LeaseGrant::kRestarting;
  std::optional<SubmitIntent> holder;  // kHeld: the claim holding the lease
  std::optional<SubmitIntent> lapsed;  // kGranted: a claim that held it and lapsed unreleased
  // When the answering node's process started (its wall clock): a claim of that node with
  // an earlier ballot belongs to a process that is gone (ClaimOutlivedItsNode).
  int64_t started_ms = 0;
};

// Whether `answer` (from `claim`'s own node) shows the process that made `claim` is gone: the
// node started after the claim began. Both times are that node's clock.
bool ClaimOutlivedItsNode(const SubmitIntent& claim, const LeaseAnswer& answer);

class SubmitLeases {
 public:
  struct Options {
    std::chrono::milliseconds lease{30'000};  // how long a grant holds without release
    // After construction, grant nothing this long; with `grant_stamp`, at most this long (as
    // far as the stamp says grants of a previous run may live).
    std::chrono::milliseconds grace{0};
    std::filesystem::path grant_stamp;            // empty: no stamp
    std::chrono::milliseconds remember{600'000};  // how long a lapsed claim is told of
    size_t max_count = 100'000;                   // leases and lapsed claims kept, in all
  };
  // `clock` (not owned) times leases on its monotonic clock.
  SubmitLeases(const Clock* clock, Options options);

  // Grants `claim` the lease on its CSR unless another claim holds it. The claim that holds
  // it already is granted again, and its lease starts over.
  LeaseAnswer Claim(const SubmitIntent& claim, const std::string& answering_node);
  // Ends `claim`'s lease if it holds one, and wakes waiters. `settled`: its outcome is
  // recorded, or nothing reached the CA. Otherwise the claim is remembered as lapsed, so the
  // next claimant searches the CA for its request first. A lapsed claim is forgotten only
  // after `remember`, or when that claim itself is released settled.
  void Release(const SubmitIntent& claim, bool settled);

  // The claim holding the lease on this CSR now, if any.
  std::optional<SubmitIntent> Holder(const std::string& ca_config, const std::string& template_name,
                                     const std::string& csr_sha256);
  // Blocks until a lease is released or `timeout` of the clock's time passes.
  void WaitForChange(std::chrono::milliseconds timeout);
  // Leases held now (lapsed ones not counted).
  size_t held() const;
  // The ballot for a claim this process makes now: the wall clock at start-up plus the
  // monotonic time since. It never steps back while the process runs, so it never precedes
  // the started_ms this table answers with: a wall clock stepped back must not make a peer
  // take this live process's claims for a dead one's (ClaimOutlivedItsNode) and submit the
  // same CSR beside it. Across processes it is the wall clock, as ballots need to be.
  int64_t BallotMs() const;

 private:
  using Key = std::tuple<std::string, std::string, std::string>;
  struct Entry {
    std::optional<SubmitIntent> holder;  // the claim holding the lease
    int64_t expires_ms = 0;              // monotonic
    std::optional<SubmitIntent> lapsed;  // the last claim that lapsed without release
    int64_t lapsed_ms = 0;               // monotonic, when it lapsed
  };
  // Moves an expired holder to `lapsed`; drops what is too old to tell of.
  void AgeLocked(Entry& e, int64_t now_ms) const;
  void TrimLocked(int64_t now_ms);

  // Called under mu_ when this node grants a peer's claim: keeps the stamp ahead of it.
  void StampGrantLocked();
  // Monotonic time until which the node grants nothing.
  static int64_t GraceUntil(const Clock* clock, const Options& options);

  const Clock* clock_;
  const Options options_;
  const int64_t grace_until_ms_;
  const int64_t started_unix_ms_;
  const int64_t started_monotonic_ms_;
  int64_t stamped_until_unix_ms_ = 0;  // guarded by mu_
  mutable std::mutex mu_;
  std::condition_variable changed_;
  uint64_t generation_ = 0;
  std::map<Key, Entry> entries_;
};

// Whether claim `a` goes before `b`: the earlier request (ballot), then node and claim IDs.
bool ClaimPrecedes(const SubmitIntent& a, const SubmitIntent& b);

// What a claimant makes of the answers to its claim (its own table's among them).
enum class LeaseOutcome {
  kWon,       // a majority of the cluster granted it: submit
  kWait,      // another claim holds the lease: wait for its answer (`wait_for`)
  kNoQuorum,  // neither: too few nodes answered to decide
};
struct LeaseTally {
  LeaseOutcome outcome = LeaseOutcome::kNoQuorum;
  int grants = 0;
  std::optional<SubmitIntent> wait_for;  // kWait: the earliest rival claim (ballot, node, id)
  std::optional<SubmitIntent> lapsed;    // a lapsed claim some granter told of: search first
};
// `cluster_size`: every node of the cluster, the claimant included; a majority is
// cluster_size / 2 + 1.
LeaseTally TallyLease(const std::vector<LeaseAnswer>& answers, int cluster_size);

}  // namespace adcsc::node
