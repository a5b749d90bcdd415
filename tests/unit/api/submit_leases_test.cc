// SubmitLeases (one holder per CSR in each node's table, lapse, release, grace after a
// restart) and TallyLease (what a claimant makes of the answers). The seeded simulation of
// the whole protocol over a lossy network is in submit_leases_sim_test.cc.
#include "node/api/submit_leases.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "store/clock.h"
#include "tests/testing/temp_dir.h"

namespace adcsc::node {
namespace {

SubmitIntent Claim(std::string node, uint64_t id, char hash = 'h', uint32_t after = 0, int64_t ballot = 0) {
  SubmitIntent c;
  c.ca_config = "dc\\ca";
  c.template_name = "JamfDevice";
  c.csr_sha256 = std::string(32, hash);
  c.after_request_id = after;
  c.ca_identity = "EXAMPLE\\svc";
  c.node_id = std::move(node);
  c.claim_id = id;
  c.ballot_ms = ballot;
  return c;
}

SubmitLeases::Options Lease(int64_t lease_ms, int64_t grace_ms = 0) {
  SubmitLeases::Options o;
  o.lease = std::chrono::milliseconds(lease_ms);
  o.grace = std::chrono::milliseconds(grace_ms);
  return o;
}

TEST(SubmitLeasesTest, OneHolderPerCsrAndItsOwnClaimIsGrantedAgain) {
  FakeClock clock(1'000);
  SubmitLeases leases(&clock, Lease(30'000));
  EXPECT_EQ(leases.Claim(Claim("b", 1), "a").grant, LeaseGrant::kGranted);
  LeaseAnswer rival = leases.Claim(Claim("c", 2), "a");
  EXPECT_EQ(rival.grant, LeaseGrant::kHeld);
  ASSERT_TRUE(rival.holder.has_value());
  EXPECT_EQ(rival.holder->node_id, "b");
  EXPECT_EQ(rival.node_id, "a");
  // Two attempts of one node are rivals too (two requests for one CSR on one node).
  EXPECT_EQ(leases.Claim(Claim("b", 3), "a").grant, LeaseGrant::kHeld);
  EXPECT_EQ(leases.Claim(Claim("b", 1), "a").grant, LeaseGrant::kGranted);
  // Another CSR is another lease.
  EXPECT_EQ(leases.Claim(Claim("c", 2, 'x'), "a").grant, LeaseGrant::kGranted);
  EXPECT_EQ(leases.held(), 2u);
}

TEST(SubmitLeasesTest, ASettledReleaseFreesTheCsrAndLeavesNothingToSearch) {
  FakeClock clock(1'000);
  SubmitLeases leases(&clock, Lease(30'000));
  leases.Claim(Claim("b", 1), "a");
  leases.Release(Claim("c", 9), /*settled=*/true);  // not the holder: no effect
  EXPECT_TRUE(leases.Holder("dc\\ca", "JamfDevice", std::string(32, 'h')).has_value());
  leases.Release(Claim("b", 1), /*settled=*/true);
  EXPECT_FALSE(leases.Holder("dc\\ca", "JamfDevice", std::string(32, 'h')).has_value());
  LeaseAnswer next = leases.Claim(Claim("c", 2), "a");
  EXPECT_EQ(next.grant, LeaseGrant::kGranted);
  EXPECT_FALSE(next.lapsed.has_value());
}

TEST(SubmitLeasesTest, ALapsedLeaseIsToldToTheNextClaimantUntilItSettles) {
  FakeClock clock(1'000);
  SubmitLeases leases(&clock, Lease(30'000));
  leases.Claim(Claim("b", 1, 'h', /*after=*/41), "a");
  clock.AdvanceMillis(29'999);
  EXPECT_EQ(leases.Claim(Claim("c", 2), "a").grant, LeaseGrant::kHeld);
  clock.AdvanceMillis(1);  // b died: its lease lapses
  LeaseAnswer taken = leases.Claim(Claim("c", 2), "a");
  ASSERT_EQ(taken.grant, LeaseGrant::kGranted);
  ASSERT_TRUE(taken.lapsed.has_value()) << "c must look for b's request at the CA first";
  EXPECT_EQ(taken.lapsed->node_id, "b");
  EXPECT_EQ(taken.lapsed->after_request_id, 41u);
  // c settled, but this table cannot tell whether c won its round: the next claimant still
  // hears of b (and finds c's record before it would search).
  leases.Release(Claim("c", 2), /*settled=*/true);
  EXPECT_TRUE(leases.Claim(Claim("d", 3), "a").lapsed.has_value());
  leases.Release(Claim("d", 3), /*settled=*/true);
  // b itself settling (its release arriving late) ends it.
  leases.Release(Claim("b", 1, 'h', 41), /*settled=*/true);
  EXPECT_FALSE(leases.Claim(Claim("e", 4), "a").lapsed.has_value());
}

TEST(SubmitLeasesTest, AnUnsettledReleaseIsRememberedAsLapsed) {
  FakeClock clock(1'000);
  SubmitLeases leases(&clock, Lease(30'000));
  leases.Claim(Claim("b", 1, 'h', 7), "a");
  leases.Release(Claim("b", 1, 'h', 7), /*settled=*/false);  // the CA's answer was lost
  LeaseAnswer next = leases.Claim(Claim("c", 2), "a");
  EXPECT_EQ(next.grant, LeaseGrant::kGranted);
  ASSERT_TRUE(next.lapsed.has_value());
  EXPECT_EQ(next.lapsed->after_request_id, 7u);
  // Also when the release arrives at a node that never granted the claim.
  SubmitLeases other(&clock, Lease(30'000));
  other.Release(Claim("b", 1, 'h', 7), /*settled=*/false);
  EXPECT_TRUE(other.Claim(Claim("c", 2), "d").lapsed.has_value());
}

TEST(SubmitLeasesTest, ARestartedNodeGrantsNothingDuringItsGrace) {
  FakeClock clock(1'000);
  SubmitLeases leases(&clock, Lease(30'000, /*grace=*/30'000));
  EXPECT_EQ(leases.Claim(Claim("b", 1), "a").grant, LeaseGrant::kRestarting);
  clock.AdvanceMillis(30'000);
  EXPECT_EQ(leases.Claim(Claim("b", 1), "a").grant, LeaseGrant::kGranted);
}

// The grace is only as long as the grants of a previous run may live: a node that never
// granted a peer anything (a fresh cluster) grants at once after a restart.
TEST(SubmitLeasesTest, TheGraceLastsOnlyAsLongAsTheStampSaysGrantsMayLive) {
  adcsc::testing::TempDir dir;
  FakeClock clock(1'000'000);
  SubmitLeases::Options o = Lease(30'000, /*grace=*/30'000);
  o.grant_stamp = dir.File("lease-grants.stamp");
  {
    SubmitLeases fresh(&clock, o);
    EXPECT_EQ(fresh.Claim(Claim("a", 1), "a").grant, LeaseGrant::kGranted) << "no stamp: no grace";
    EXPECT_FALSE(std::filesystem::exists(o.grant_stamp)) << "its own claim is not a peer's";
    EXPECT_EQ(fresh.Claim(Claim("b", 2, 'x'), "a").grant, LeaseGrant::kGranted);
    EXPECT_TRUE(std::filesystem::exists(o.grant_stamp)) << "a peer's grant is stamped";
  }
  // The stamp runs two lease periods ahead of the grant (so it is rewritten at most once a
  // period); a restart waits for it, but never longer than the grace.
  clock.AdvanceMillis(40'000);
  SubmitLeases restarted(&clock, o);  // the stamp says 20 s more
  EXPECT_EQ(restarted.Claim(Claim("c", 3, 'x'), "a").grant, LeaseGrant::kRestarting);
  clock.AdvanceMillis(19'999);
  EXPECT_EQ(restarted.Claim(Claim("c", 3, 'x'), "a").grant, LeaseGrant::kRestarting);
  clock.AdvanceMillis(1);
  EXPECT_EQ(restarted.Claim(Claim("c", 3, 'x'), "a").grant, LeaseGrant::kGranted);
  // A stamp that cannot be read means the full grace.
  { std::ofstream(o.grant_stamp) << "garbage"; }
  SubmitLeases unsure(&clock, o);
  EXPECT_EQ(unsure.Claim(Claim("c", 4, 'y'), "a").grant, LeaseGrant::kRestarting);
  clock.AdvanceMillis(30'000);
  EXPECT_EQ(unsure.Claim(Claim("c", 4, 'y'), "a").grant, LeaseGrant::kGranted);
}

// Leases run on monotonic time: the wall clock stepping 5 minutes forward does not expire a
// lease (a rival would be granted the CSR beside its holder), nor stepping back keep one past
// its term (the CSR would stick until the wall clock caught up).
TEST(SubmitLeasesTest, AWallClockStepNeitherExpiresNorExtendsALease) {
  constexpr int64_t kStart = 1'800'000'000'000;
  constexpr int64_t kStepMs = 5 * 60'000;
  FakeClock clock(kStart);
  SubmitLeases leases(&clock, Lease(30'000));
  ASSERT_EQ(leases.Claim(Claim("b", 1), "a").grant, LeaseGrant::kGranted);
  clock.SetUnixMillis(kStart + kStepMs);
  EXPECT_EQ(leases.Claim(Claim("c", 2), "a").grant, LeaseGrant::kHeld) << "5 minutes forward: still b's";
  EXPECT_EQ(leases.held(), 1u);
  clock.SetUnixMillis(kStart - kStepMs);
  clock.AdvanceMillis(29'999);
  EXPECT_EQ(leases.Claim(Claim("c", 2), "a").grant, LeaseGrant::kHeld) << "29.999 s: still b's";
  clock.AdvanceMillis(1);
  LeaseAnswer after = leases.Claim(Claim("c", 2), "a");
  EXPECT_EQ(after.grant, LeaseGrant::kGranted) << "30 s of monotonic time, wall clock 5 minutes back: expired";
  ASSERT_TRUE(after.lapsed.has_value());
  EXPECT_EQ(after.lapsed->node_id, "b");
}

// A node's ballots never step back while it runs, so its own answer never shows a live claim
// of it as older than its process: with wall-clock ballots, a node stepped back 5 minutes had
// its claims taken for a dead process's and lapsed by its peers, which then submitted the
// same CSR beside it.
TEST(SubmitLeasesTest, AWallClockStepBackDoesNotMakeALiveClaimLookOlderThanItsProcess) {
  constexpr int64_t kStart = 1'800'000'000'000;
  FakeClock clock(kStart);
  SubmitLeases leases(&clock, Lease(30'000));
  clock.AdvanceMillis(1'000);
  const int64_t before_step = leases.BallotMs();
  EXPECT_EQ(before_step, kStart + 1'000) << "the wall clock, while it does not step";
  clock.SetUnixMillis(kStart - 5 * 60'000);
  clock.AdvanceMillis(1);
  const SubmitIntent claim = Claim("a", 7, 'h', 0, leases.BallotMs());
  EXPECT_EQ(claim.ballot_ms, before_step + 1) << "follows monotonic time, not the step";
  const LeaseAnswer own = leases.Claim(claim, "a");
  EXPECT_EQ(own.started_ms, kStart);
  EXPECT_FALSE(ClaimOutlivedItsNode(claim, own));
  clock.SetUnixMillis(kStart + 5 * 60'000);
  EXPECT_EQ(leases.BallotMs(), before_step + 1) << "nor a step forward";

  // A claim from before the process started (a previous run) is still recognised.
  EXPECT_TRUE(ClaimOutlivedItsNode(Claim("a", 6, 'h', 0, kStart - 1), own));
}

TEST(SubmitLeasesTest, TheTableIsBoundedAndDropsLapsedClaimsFirst) {
  FakeClock clock(1'000);
  SubmitLeases::Options o = Lease(30'000);
  o.max_count = 3;
  SubmitLeases leases(&clock, o);
  leases.Release(Claim("b", 1, '1'), /*settled=*/false);  // lapsed
  leases.Claim(Claim("b", 2, '2'), "a");
  leases.Claim(Claim("b", 3, '3'), "a");
  leases.Claim(Claim("b", 4, '4'), "a");  // full: the lapsed one goes
  EXPECT_EQ(leases.held(), 3u);
  EXPECT_FALSE(leases.Claim(Claim("c", 5, '1'), "a").lapsed.has_value());
}

TEST(SubmitLeasesTest, AReleaseWakesAWaiter) {
  FakeClock clock(1'000);
  SubmitLeases leases(&clock, Lease(30'000));
  leases.Claim(Claim("b", 1), "a");
  // On the fake clock only the release can end the wait; release once the waiter waits.
  std::thread waiter([&] { leases.WaitForChange(std::chrono::seconds(30)); });
  while (clock.waiters() == 0) std::this_thread::yield();
  leases.Release(Claim("b", 1), true);
  waiter.join();
  EXPECT_EQ(leases.held(), 0u);
}

LeaseAnswer Answer(std::string node, LeaseGrant grant, std::optional<SubmitIntent> holder = std::nullopt,
                   std::optional<SubmitIntent> lapsed = std::nullopt) {
  return LeaseAnswer{std::move(node), grant, std::move(holder), std::move(lapsed)};
}

TEST(TallyLeaseTest, AMajorityWinsAndTheLowestLapsedStartingPointIsKept) {
  const auto tally = TallyLease({Answer("a", LeaseGrant::kGranted, std::nullopt, Claim("x", 1, 'h', 50)),
                                 Answer("b", LeaseGrant::kGranted, std::nullopt, Claim("x", 1, 'h', 20)),
                                 Answer("c", LeaseGrant::kHeld, Claim("d", 2))},
                                3);
  EXPECT_EQ(tally.outcome, LeaseOutcome::kWon);
  EXPECT_EQ(tally.grants, 2);
  ASSERT_TRUE(tally.lapsed.has_value());
  EXPECT_EQ(tally.lapsed->after_request_id, 20u);
  EXPECT_EQ(TallyLease({Answer("a", LeaseGrant::kGranted)}, 1).outcome, LeaseOutcome::kWon) << "a single node";
}

TEST(TallyLeaseTest, WithoutAMajorityTheEarliestRivalIsWaitedFor) {
  const auto tally = TallyLease(
      {Answer("a", LeaseGrant::kGranted), Answer("b", LeaseGrant::kHeld, Claim("b", 7, 'h', 0, /*ballot=*/200)),
       Answer("c", LeaseGrant::kHeld, Claim("c", 8, 'h', 0, /*ballot=*/100))},
      3);
  EXPECT_EQ(tally.outcome, LeaseOutcome::kWait);
  ASSERT_TRUE(tally.wait_for.has_value());
  EXPECT_EQ(tally.wait_for->node_id, "c");
}

TEST(TallyLeaseTest, TooFewAnswersDecideNothing) {
  // Half of a 4-node cluster is not a majority; restarting nodes do not vote.
  EXPECT_EQ(TallyLease({Answer("a", LeaseGrant::kGranted), Answer("b", LeaseGrant::kGranted)}, 4).outcome,
            LeaseOutcome::kNoQuorum);
  EXPECT_EQ(TallyLease({Answer("a", LeaseGrant::kGranted), Answer("b", LeaseGrant::kRestarting)}, 3).outcome,
            LeaseOutcome::kNoQuorum);
}

}  // namespace
}  // namespace adcsc::node
