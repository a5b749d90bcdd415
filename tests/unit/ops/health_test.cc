// The health rules: what makes a node not ready, and what the load balancer is told.
#include "node/ops/health.h"

#include <gtest/gtest.h>

#include <functional>

#include "nlohmann/json.hpp"

namespace adcsc::ops {
namespace {

constexpr int64_t kNow = 1'800'000'000'000;
constexpr int64_t kDayMs = 86'400'000;

// A healthy clustered node: every probe passed a second ago.
HealthObservations Healthy() {
  HealthObservations o;
  o.now_ms = kNow;
  o.store = {true, "write check", kNow - 1000};
  o.cas = {{"ca01.example.com\\Issuing CA", {true, "ping", kNow - 1000}}};
  o.clustered = true;
  o.peers = 2;
  o.peers_reachable = 2;
  o.certificate_not_after_ms = kNow + 200 * kDayMs;
  return o;
}

const HealthCheck* Find(const HealthReport& r, std::string_view name) {
  for (const HealthCheck& c : r.checks) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

TEST(HealthTest, AHealthyNodeIsReadyAndUp) {
  HealthReport r = Evaluate(Healthy(), {});
  EXPECT_TRUE(r.ready);
  EXPECT_EQ(r.lb, LbState::kUp);
  for (const HealthCheck& c : r.checks) EXPECT_TRUE(c.ok) << c.name << ": " << c.detail;
  ASSERT_NE(Find(r, "ca ca01.example.com\\Issuing CA"), nullptr);
}

TEST(HealthTest, APeerRefusedForItsVersionIsNamedWithoutTakingTheNodeOut) {
  HealthObservations o = Healthy();
  o.refused_for_version = {"peer node-c speaks cluster protocol 9 and reads 9..9; ..."};
  HealthReport r = Evaluate(o, {});
  EXPECT_TRUE(r.ready);
  EXPECT_EQ(r.lb, LbState::kUp);
  EXPECT_TRUE(Find(r, "cluster")->ok);
  EXPECT_NE(Find(r, "cluster")->detail.find("REFUSED FOR VERSION: peer node-c speaks cluster protocol 9"),
            std::string::npos)
      << Find(r, "cluster")->detail;
}

TEST(HealthTest, DrainKeepsTheNodeOutOfNewWorkButNotDown) {
  HealthObservations o = Healthy();
  o.mode = ServiceMode::kDrain;
  HealthReport r = Evaluate(o, {});
  EXPECT_FALSE(r.ready);
  EXPECT_EQ(r.lb, LbState::kDrain);
  EXPECT_NE(Find(r, "mode")->detail.find("resume"), std::string::npos);
  o.mode = ServiceMode::kMaint;
  EXPECT_EQ(Evaluate(o, {}).lb, LbState::kDown);
}

TEST(HealthTest, EachFailingCheckTakesTheNodeDownAndSaysWhatToCheck) {
  struct Case {
    const char* name;
    std::function<void(HealthObservations&)> breaks;
    const char* check;
    const char* says;
  };
  const std::vector<Case> cases = {
      {"store write failed",
       [](auto& o) {
         o.store = {false, "disk I/O error", kNow - 1000};
       },
       "store", "disk"},
      {"store check stuck", [](auto& o) { o.store.at_ms = kNow - 60'000; }, "store", "stuck"},
      {"store never checked", [](auto& o) { o.store = {}; }, "store", "not checked yet"},
      {"CA unreachable",
       [](auto& o) {
         o.cas[0].probe = {false, "connection refused", kNow - 1000};
       },
       "ca ca01.example.com\\Issuing CA", "ca-ping"},
      {"no CA allowed", [](auto& o) { o.cas.clear(); }, "ca", "ca.allow"},
      {"joining", [](auto& o) { o.snapshot_in_progress = true; }, "cluster", "not caught up"},
      {"cut off under refuse",
       [](auto& o) {
         o.peers_reachable = 0;
         o.refuse_on_quorum_loss = true;
       },
       "cluster", "refuse"},
      {"certificate expired", [](auto& o) { o.certificate_not_after_ms = kNow - 1; }, "certificate", "expired"},
  };
  for (const Case& c : cases) {
    HealthObservations o = Healthy();
    c.breaks(o);
    HealthReport r = Evaluate(o, {});
    EXPECT_FALSE(r.ready) << c.name;
    EXPECT_EQ(r.lb, LbState::kDown) << c.name;
    const HealthCheck* check = Find(r, c.check);
    ASSERT_NE(check, nullptr) << c.name;
    EXPECT_FALSE(check->ok) << c.name;
    EXPECT_NE(check->detail.find(c.says), std::string::npos) << c.name << ": " << check->detail;
    // A drained node that is also broken is down, not draining.
    o.mode = ServiceMode::kDrain;
    EXPECT_EQ(Evaluate(o, {}).lb, LbState::kDown) << c.name;
  }
}

TEST(HealthTest, WhatOnlyWarnsKeepsTheNodeReady) {
  HealthObservations o = Healthy();
  o.peers_reachable = 0;  // under serve a lone node still answers (under-replicated)
  o.certificate_not_after_ms = kNow + 10 * kDayMs;
  o.lag_mutations = 500;
  HealthReport r = Evaluate(o, {});
  EXPECT_TRUE(r.ready);
  EXPECT_NE(Find(r, "certificate")->detail.find("renew"), std::string::npos);
  EXPECT_NE(Find(r, "cluster")->detail.find("0 of 2 peers"), std::string::npos);
  o.clustered = false;
  EXPECT_EQ(Find(Evaluate(o, {}), "cluster"), nullptr) << "a single node has no cluster check";
}

TEST(HealthTest, TheReportIsJsonNamingEveryCheck) {
  HealthObservations o = Healthy();
  o.mode = ServiceMode::kDrain;
  auto j = nlohmann::json::parse(Evaluate(o, {}).ToJson());
  EXPECT_EQ(j["ready"], false);
  EXPECT_EQ(j["lb"], "DRAIN");
  ASSERT_EQ(j["checks"].size(), 5u);
  EXPECT_EQ(j["checks"][0]["name"], "store");
  EXPECT_EQ(j["checks"][4]["name"], "mode");
  EXPECT_EQ(j["checks"][4]["ok"], false);
}

// Every certificate is reported with its state; only an expired API certificate fails the
// check (certificates of every node tend to expire together: failing early would take the
// whole cluster out at once).
TEST(HealthTest, EveryCertificateIsReportedAndOnlyTheApiCertificateFailsTheCheck) {
  HealthObservations o = Healthy();
  o.certificates = {{"api identity", "CN=adcs.example.com", "/etc/adcsc/server.pem", kNow + 200 * kDayMs},
                    {"cluster identity", "CN=node-c", "/etc/adcsc/node.pem", kNow + 20 * kDayMs},
                    {"cluster CA", "CN=cluster", "/etc/adcsc/cluster-ca.pem", kNow + 3 * kDayMs},
                    {"jamf client (pinned)", "CN=jamf", "seen at a handshake, sha256:ab", kNow - kDayMs}};
  HealthReport r = Evaluate(o, {});
  EXPECT_TRUE(r.ready) << r.ToJson();
  ASSERT_EQ(r.certificates.size(), 4u);
  EXPECT_EQ(r.certificates[0].state, "ok");
  EXPECT_EQ(r.certificates[1].state, "warning");
  EXPECT_EQ(r.certificates[2].state, "critical");
  EXPECT_EQ(r.certificates[3].state, "expired");
  EXPECT_EQ(r.certificates[1].days_left, 20);
  const HealthCheck* c = Find(r, "certificate");
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->ok);
  EXPECT_NE(c->detail.find("cluster CA CN=cluster expires in 3 days (critical)"), std::string::npos) << c->detail;
  EXPECT_NE(c->detail.find("jamf client (pinned) CN=jamf has EXPIRED"), std::string::npos) << c->detail;
  EXPECT_EQ(c->detail.find("CN=adcs.example.com"), std::string::npos) << "an ok certificate is not named";
  auto j = nlohmann::json::parse(r.ToJson());
  ASSERT_EQ(j["certificates"].size(), 4u);
  EXPECT_EQ(j["certificates"][2]["state"], "critical");
  HealthPolicy tight;
  tight.warn_certificate_days = 400;
  tight.critical_certificate_days = 300;
  EXPECT_EQ(Evaluate(o, tight).certificates[0].state, "critical");
  EXPECT_EQ(ExpiryState(o.certificates[0], kNow + 200 * kDayMs, 30, 7), "expired") << "at its notAfter";
}

// The old client identity of a rotation (mapped until the end of its overlap) and the CA's
// certificate learned from its answers are listed like the others; the overlap's end is in the
// JSON and named in the check's detail, before and after it, without failing the check.
TEST(HealthTest, TheOverlapOfAnOldClientIdentityAndTheCaCertificateAreReported) {
  HealthObservations o = Healthy();
  o.certificates = {
      {"api identity", "CN=adcs.example.com", "/etc/adcsc/server.pem", kNow + 200 * kDayMs},
      {"jamf client (pinned)", "CN=jamf", "seen at a handshake, sha256:aa", kNow + 300 * kDayMs, kNow + 5 * kDayMs},
      {"ca certificate", "CN=Example-Issuing-CA", "chain of an answer from ca1\\Example-Issuing-CA",
       kNow + 10 * kDayMs}};
  HealthReport r = Evaluate(o, {});
  EXPECT_TRUE(r.ready) << r.ToJson();
  const HealthCheck* c = Find(r, "certificate");
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->ok);
  EXPECT_NE(c->detail.find("CN=jamf is the old client identity of a rotation, mapped for 5 more days"),
            std::string::npos)
      << c->detail;
  EXPECT_NE(c->detail.find("ca certificate CN=Example-Issuing-CA expires in 10 days (warning)"), std::string::npos)
      << c->detail;
  auto j = nlohmann::json::parse(r.ToJson());
  EXPECT_EQ(j["certificates"][1]["mapped_until_ms"], kNow + 5 * kDayMs);
  EXPECT_FALSE(j["certificates"][0].contains("mapped_until_ms"));
  o.now_ms = kNow + 6 * kDayMs;
  o.store.at_ms = o.now_ms;
  for (auto& ca : o.cas) ca.probe.at_ms = o.now_ms;
  const HealthReport after = Evaluate(o, {});
  const HealthCheck* ended = Find(after, "certificate");
  ASSERT_NE(ended, nullptr);
  EXPECT_NE(ended->detail.find("CN=jamf is no longer mapped: its rotation overlap has ended"), std::string::npos)
      << ended->detail;
}

}  // namespace
}  // namespace adcsc::ops
