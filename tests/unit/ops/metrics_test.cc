// The metrics text: the series a dashboard needs, and promtool (Debian's prometheus package)
// accepting the exposition.
#include "node/ops/metrics.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "tests/testing/temp_dir.h"

namespace adcsc::ops {
namespace {

constexpr char kPromtool[] = "/usr/bin/promtool";

ScrapeState State() {
  ScrapeState s;
  s.now_ms = 1'800'000'000'000;
  s.health.ready = true;
  s.health.lb = LbState::kUp;
  s.health.checks = {{"store", true, "ok"}, {"ca ca01\\Issuing CA", false, "refused"}};
  s.mode = ServiceMode::kDrain;
  s.certificate_not_after_ms = s.now_ms + 3'600'000;
  store::ReplicatorStatus r;
  r.quorum_writes = 7;
  r.under_replicated_writes = 2;
  store::PeerStatus p;
  p.node_id = "node-b";
  p.lag_mutations = 3;
  p.lag_ms = 1500;
  p.last_ack_ms = s.now_ms - 250;
  p.since_last_ack_ms = 250;
  r.peers.push_back(p);
  s.replication = r;
  s.peer_protocols = {{"node-b", 2, false}, {"node-c", 9, true}};
  s.api_connections = 5;
  s.ca_idle_connections = {{"ca01.example.com", 2}};
  s.ca_connections_opened = 3;
  s.ca_connections_reused = 40;
  s.store_free_bytes = 5'000'000'000;
  s.store_min_free_bytes = 268'435'456;
  return s;
}

TEST(MetricsTest, PolicyDenialsAreCountedByRule) {
  NodeMetrics m;
  m.ObservePolicyDenial("san_upn");
  m.ObservePolicyDenial("san_upn");
  m.ObservePolicyDenial("max_rsa_bits");
  const std::string text = m.Scrape(State());
  EXPECT_NE(text.find(R"(adcsc_policy_denials_total{rule="san_upn"} 2)"), std::string::npos) << text;
  EXPECT_NE(text.find(R"(adcsc_policy_denials_total{rule="max_rsa_bits"} 1)"), std::string::npos) << text;
}

TEST(MetricsTest, CallsAndScrapeTimeStateAppear) {
  NodeMetrics m;
  m.ObserveCall("request", "issued", 200, 12.0, 9.0);
  m.ObserveCall("request", "ca_error", 500, 3.0, 2.5);
  m.ObserveCall("retrieve", "issued", 200, 0.4, -1);
  const std::string text = m.Scrape(State());
  for (const char* line : {
           R"(adcsc_api_requests_total{endpoint="request",outcome="issued"} 1)",
           R"(adcsc_api_requests_total{endpoint="request",outcome="ca_error"} 1)",
           R"(adcsc_ca_errors_total{endpoint="request"} 1)",
           R"(adcsc_api_request_duration_seconds_count{endpoint="retrieve"} 1)",
           R"(adcsc_ca_call_duration_seconds_count{endpoint="request"} 2)",
           R"(adcsc_service_mode{mode="drain"} 1)",
           R"(adcsc_service_mode{mode="active"} 0)",
           R"(adcsc_health_check_ok{check="ca ca01\\Issuing CA"} 0)",
           R"(adcsc_api_certificate_expiry_seconds 3600)",
           R"(adcsc_replication_lag_mutations{peer="node-b"} 3)",
           R"(adcsc_replication_lag_seconds{peer="node-b"} 1.5)",
           R"(adcsc_replication_writes{result="under_replicated"} 2)",
           R"(adcsc_peer_cluster_protocol{peer="node-c"} 9)",
           R"(adcsc_peer_version_refused{peer="node-b"} 0)",
           R"(adcsc_peer_version_refused{peer="node-c"} 1)",
           R"(adcsc_api_open_connections 5)",
           R"(adcsc_ca_pool_idle_connections{host="ca01.example.com"} 2)",
           R"(adcsc_ca_connections{use="reused"} 40)",
           R"(adcsc_store_free_bytes 5000000000)",
           R"(adcsc_store_min_free_bytes 268435456)",
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
  }
  EXPECT_EQ(text.find(R"(adcsc_ca_call_duration_seconds_count{endpoint="retrieve"})"), std::string::npos)
      << "a call answered from the store made no CA call";
}

// Every family the node can export (each populated once), by name; histograms with their
// _bucket, _sum and _count series.
std::set<std::string> ExportedNames() {
  NodeMetrics m;
  m.ObserveCall("request", "ca_error", 200, 3.0, 2.5);
  m.ObservePolicyDenial("san_upn");
  m.ObserveUnserved("POST", "/api/v1/certificate/revoke");
  m.ObserveCaAdmin("revoke", "ok");
  ScrapeState s = State();
  s.ops_connections = 1;
  s.ops_refused_connections = 2;
  s.api_refusals = {{"source_rate", 3}};
  s.ca_binds_by_mechanism = {{"kerberos", 4}};
  s.ca_ticket_expiry_unix = 1'800'000'000;
  s.health.certificates = {{{"api identity", "CN=adcsc", "api.pem", s.now_ms + 86'400'000}, 1, "critical"}};
  s.store_integrity_failures = 1;
  const std::string text = m.Scrape(s);
  std::set<std::string> names;
  const std::regex type(R"(^# TYPE (\S+) (\S+)$)");
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::smatch match;
    if (!std::regex_match(line, match, type)) continue;
    names.insert(match[1]);
    if (match[2] == "histogram") {
      for (const char* suffix : {"_bucket", "_sum", "_count"}) names.insert(std::string(match[1]) + suffix);
    }
  }
  return names;
}

// deploy/prometheus/adcsc-rules.yml and deploy/grafana/adcsc-dashboard.json name only metrics
// the node exports (a renamed metric fails here, not in an operator's silent alert).
TEST(MetricsTest, TheAlertRulesAndTheDashboardNameOnlyExportedMetrics) {
  const std::set<std::string> exported = ExportedNames();
  ASSERT_TRUE(exported.count("adcsc_ready")) << "the scrape above exported nothing?";
  for (const char* file : {"deploy/prometheus/adcsc-rules.yml", "deploy/grafana/adcsc-dashboard.json"}) {
    std::ifstream in(std::string(ADCSC_SOURCE_DIR) + "/" + file);
    ASSERT_TRUE(in) << file;
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::regex metric(R"(\badcsc_[a-z0-9_]+)");
    size_t used = 0;
    for (auto it = std::sregex_iterator(text.begin(), text.end(), metric); it != std::sregex_iterator(); ++it) {
      const std::string name = it->str();
      ++used;
      EXPECT_TRUE(exported.count(name)) << file << " names " << name << ", which the node does not export";
    }
    EXPECT_GT(used, 10u) << file;
  }
}

TEST(MetricsTest, AnUnknownFreeSpaceIsLeftOutRatherThanShownAsZero) {
  NodeMetrics m;
  ScrapeState s = State();
  s.store_free_bytes = -1;
  const std::string text = m.Scrape(s);
  EXPECT_EQ(text.find("adcsc_store_free_bytes "), std::string::npos) << text;
  EXPECT_NE(text.find("adcsc_store_min_free_bytes 268435456"), std::string::npos) << text;
}

TEST(MetricsTest, PromtoolAcceptsTheExposition) {
  if (!std::ifstream(kPromtool)) GTEST_SKIP() << kPromtool << " missing (deploy/install-deps installs prometheus)";
  NodeMetrics m;
  m.ObserveCall("request", "issued", 200, 12.0, 9.0);
  m.ObserveCall("retrieve", "pending", 200, 1.0, 0.8);
  adcsc::testing::TempDir dir;
  const auto file = dir.path() / "metrics.txt";
  std::ofstream(file) << m.Scrape(State());
  const std::string command = std::string(kPromtool) + " check metrics < " + file.string() + " 2>&1";
  FILE* p = ::popen(command.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  EXPECT_EQ(status, 0) << out;
  EXPECT_EQ(out, "") << "promtool's lint found problems";
}

}  // namespace
}  // namespace adcsc::ops
