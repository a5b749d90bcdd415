#include "node/drill/drill.h"

#include <gtest/gtest.h>

#include "nlohmann/json.hpp"
#include "node/drill/drill_config.h"
#include "node/drill/haproxy_stats.h"
#include "node/drill/report.h"

namespace adcsc::drill {
namespace {

Sample S(int64_t start, int64_t end, std::string phase, bool ok, std::string reason = "") {
  Sample s;
  s.start_ms = start;
  s.end_ms = end;
  s.phase = std::move(phase);
  s.op = "submit";
  s.ok = ok;
  s.reason = std::move(reason);
  return s;
}

TEST(DrillReportTest, PercentilesAreNearestRank) {
  EXPECT_EQ(Percentile({}, 50), 0);
  std::vector<double> v;
  for (int i = 1; i <= 100; ++i) v.push_back(i);
  EXPECT_EQ(Percentile(v, 50), 50);
  EXPECT_EQ(Percentile(v, 99), 99);
  EXPECT_EQ(Percentile(v, 100), 100);
  EXPECT_EQ(Percentile({7}, 99), 7);
}

TEST(DrillReportTest, SummarizeCountsByPhaseAndReasonInPhaseOrder) {
  std::vector<Sample> samples = {S(0, 10, "baseline", true), S(5, 25, "fault", false, "http 503"),
                                 S(6, 16, "fault", false, "connection"), S(7, 9, "fault", true),
                                 S(8, 30, "fault", false, "http 503")};
  auto stats = Summarize(samples, {"baseline", "fault", "recovery"});
  ASSERT_EQ(stats.size(), 3u) << "recovery saw no calls; total comes last";
  EXPECT_EQ(stats[0].phase, "baseline");
  EXPECT_EQ(stats[1].phase, "fault");
  EXPECT_EQ(stats[1].sent, 4);
  EXPECT_EQ(stats[1].failed, 3);
  EXPECT_EQ(stats[1].failures_by_reason.at("http 503"), 2);
  EXPECT_EQ(stats[1].failures_by_reason.at("connection"), 1);
  EXPECT_EQ(stats[1].max_ms, 22);
  EXPECT_EQ(stats[2].phase, "total");
  EXPECT_EQ(stats[2].sent, 5);
  EXPECT_EQ(stats[2].succeeded, 2);
}

TEST(DrillReportTest, TheLongestFailureRunIsFoundInStartOrder) {
  // Given out of order: the run is the three failures starting at 20, 30, 40.
  std::vector<Sample> samples = {S(40, 45, "f", false), S(0, 5, "f", false),   S(10, 12, "f", true),
                                 S(30, 90, "f", false), S(20, 25, "f", false), S(50, 55, "f", true)};
  auto [count, ms] = LongestFailureRun(samples);
  EXPECT_EQ(count, 3);
  EXPECT_EQ(ms, 70) << "from the first failure's start (20) to the latest end (90)";
  EXPECT_EQ(LongestFailureRun({S(0, 1, "f", true)}).first, 0);
}

DrillReport ReportWith(int failed, int lost) {
  DrillReport r;
  r.scenario = "kill";
  std::vector<Sample> samples = {S(0, 10, "fault", true)};
  for (int i = 0; i < failed; ++i) samples.push_back(S(1 + i, 20 + i, "fault", false, "http 503"));
  r.by_phase = Summarize(samples, {"fault"});
  r.verification.acknowledged = 10;
  r.verification.lost = lost;
  r.verification.nodes_checked = {"node-a", "node-b"};
  r.timings.lb_stopped_ms = 1500;
  return r;
}

TEST(DrillReportTest, JudgementFollowsTheObjectivesGiven) {
  Objectives none;
  DrillReport clean = ReportWith(0, 0);
  Judge(none, &clean);
  EXPECT_TRUE(clean.passed);
  ASSERT_EQ(clean.judgements.size(), 2u) << "zero lost and the scenario's steps are always judged";

  DrillReport broken = ReportWith(0, 0);
  broken.action_failures.push_back("kill -9 node-c: no such process");
  Judge(none, &broken);
  EXPECT_FALSE(broken.passed);

  DrillReport lost = ReportWith(0, 1);
  Judge(none, &lost);
  EXPECT_FALSE(lost.passed);

  DrillReport failures = ReportWith(2, 0);
  Judge(none, &failures);
  EXPECT_TRUE(failures.passed) << "failures are allowed unless an objective says otherwise";
  Objectives strict;
  strict.zero_failed = true;
  Judge(strict, &failures);
  EXPECT_FALSE(failures.passed);
  Objectives limit;
  limit.max_failed = 2;
  limit.max_lb_stopped_ms = 1000;
  Judge(limit, &failures);
  EXPECT_FALSE(failures.passed);
  EXPECT_TRUE(failures.judgements[2].met) << "2 failed is within --max-failed 2";
  EXPECT_FALSE(failures.judgements[3].met) << "1500 ms is over --max-detect-ms 1000";

  Objectives dup;
  dup.max_duplicates = 0;
  DrillReport unmeasured = ReportWith(0, 0);
  Judge(dup, &unmeasured);
  EXPECT_FALSE(unmeasured.passed) << "a limit on something not measured is not met";

  DrillReport nobody = ReportWith(0, 0);
  nobody.verification.nodes_checked.clear();
  Judge(none, &nobody);
  EXPECT_FALSE(nobody.passed) << "no node checked proves nothing";
}

TEST(DrillReportTest, TextAndJsonCarryTheFigures) {
  DrillReport r = ReportWith(1, 0);
  r.verification.duplicates = 0;
  r.events.push_back({2010, "kill -9 node-c"});
  Objectives o;
  o.zero_failed = true;
  Judge(o, &r);
  const std::string text = RenderText(r);
  EXPECT_NE(text.find("fault: 1 x http 503"), std::string::npos) << text;
  EXPECT_NE(text.find("kill -9 node-c"), std::string::npos) << text;
  EXPECT_NE(text.find("result: FAILED"), std::string::npos) << text;
  EXPECT_NE(text.find("[MISSED] zero failed requests"), std::string::npos) << text;
  auto j = nlohmann::json::parse(RenderJson(r));
  EXPECT_EQ(j["passed"], false);
  EXPECT_EQ(j["lost"], 0);
  EXPECT_EQ(j["duplicate_ca_requests"], 0);
  EXPECT_EQ(j["lb_stopped_using_node"]["ms"], 1500);
  EXPECT_EQ(j["node_back"]["ms"], nullptr);
  EXPECT_EQ(j["phases"][0]["failures_by_reason"]["http 503"], 1);
}

constexpr char kStat[] =
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight\n"
    "adcsc_api,FRONTEND,,,0,1,4096,5,0,0,0,0,0,,,,,OPEN,\n"
    "adcsc_nodes,node1,0,0,0,1,,2,0,0,,0,,0,0,0,0,UP,1\n"
    "adcsc_nodes,node2,0,0,0,1,,2,0,0,,0,,0,0,0,0,DRAIN (agent),1\n"
    "adcsc_nodes,node3,0,0,0,1,,2,0,0,,0,,0,0,0,0,DOWN 1/2,1\n"
    "adcsc_nodes,BACKEND,0,0,0,1,,2,0,0,0,0,,0,0,0,0,UP,3\n";

TEST(HaproxyStatsTest, ParsesTheServersOfOneBackend) {
  auto s = ParseHaproxyStat(kStat, "adcsc_nodes");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->size(), 3u);
  EXPECT_EQ(s->at("node1"), "UP");
  EXPECT_EQ(s->at("node2"), "DRAIN (agent)");
  EXPECT_EQ(s->at("node3"), "DOWN 1/2");
  EXPECT_FALSE(ParseHaproxyStat(kStat, "other").ok());
  EXPECT_FALSE(ParseHaproxyStat("not csv", "adcsc_nodes").ok());
  EXPECT_FALSE(ReadHaproxyStatus("/nonexistent/stats.sock", "adcsc_nodes").ok());
}

constexpr char kDrillFile[] = R"(
[lb]
url = "https://lb.example.com:8443"
mode = "tls-termination"

[client]
cert_file = "jamf.pem"
key_file = "jamf-key.pem"
ca_file = "ca.pem"

[ca]
dc = "ca1.example.com"
ca = "Example-CA"

[[node]]
id = "node-a"
api = "https://10.0.0.1:8443"
ops = "https://10.0.0.1:9100"
pid_file = "/run/adcsc/node.pid"
start = ["systemctl", "start", "adcsc-node"]

[[node]]
id = "node-b"
api = "https://10.0.0.2:8443"
lb_server = "adcsc2"

[[node]]
id = "node-c"
api = "https://10.0.0.3:8443"
kill = ["ssh", "adcsc3", "systemctl", "kill", "-s", "KILL", "adcsc-node"]
stop = ["ssh", "adcsc3", "systemctl", "stop", "adcsc-node"]
start = ["ssh", "adcsc3", "systemctl", "start", "adcsc-node"]
)";

TEST(DrillConfigTest, ReadsTheFileWithItsDefaultsAndRelativePaths) {
  auto c = ParseDrillConfig(kDrillFile, "/etc/adcsc/drill.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->lb_url, "https://lb.example.com:8443");
  EXPECT_EQ(c->client_cert, "/etc/adcsc/jamf.pem");
  EXPECT_EQ(c->template_name, "JamfDevice");
  ASSERT_EQ(c->nodes.size(), 3u);
  EXPECT_EQ(c->nodes[2].kill_command.size(), 7u);
  EXPECT_EQ(c->nodes[2].stop_command.back(), "adcsc-node");
  EXPECT_TRUE(c->nodes[2].pid_file.empty());
  EXPECT_EQ(c->nodes[0].lb_server, "node-a") << "defaults to the node ID";
  EXPECT_EQ(c->nodes[1].lb_server, "adcsc2");
  EXPECT_EQ(c->nodes[0].start.size(), 3u);
  EXPECT_NE(c->Find("node-b"), nullptr);
  EXPECT_EQ(c->Find("node-z"), nullptr);
}

TEST(DrillConfigTest, EveryProblemIsNamedWithFileAndKey) {
  std::string text = kDrillFile;
  auto replace = [&](const std::string& from, const std::string& to) {
    text.replace(text.find(from), from.size(), to);
  };
  replace("url = \"https://lb.example.com:8443\"", "url = \"http://lb.example.com:8443\"");
  replace("mode = \"tls-termination\"", "mode = \"magic\"\nspeed = 3");
  replace("id = \"node-b\"", "id = \"node-a\"");
  replace("[ca]\ndc = \"ca1.example.com\"", "[ca]");
  auto c = ParseDrillConfig(text, "/etc/adcsc/drill.toml");
  ASSERT_FALSE(c.ok());
  const std::string msg(c.status().message());
  for (const char* key : {"lb.url", "lb.mode", "lb.speed", "node[1].id", "ca.dc"}) {
    EXPECT_NE(msg.find(std::string("/etc/adcsc/drill.toml: ") + key + ":"), std::string::npos) << key << " in:\n"
                                                                                               << msg;
  }
  EXPECT_FALSE(LoadDrillConfig("/nonexistent/drill.toml").ok());
}

// The drill refuses, before any traffic, what it cannot do.
class NoControl : public NodeControl {
 public:
  absl::Status Kill(const DrillNode&) override { return absl::OkStatus(); }
  absl::Status Freeze(const DrillNode&) override { return absl::OkStatus(); }
  absl::Status Thaw(const DrillNode&) override { return absl::OkStatus(); }
  absl::Status Stop(const DrillNode&, std::chrono::milliseconds) override { return absl::OkStatus(); }
  absl::Status Start(const DrillNode&) override { return absl::OkStatus(); }
  absl::Status SetMode(const DrillNode&, const std::string&) override { return absl::OkStatus(); }
  absl::Status SetFault(const DrillNode&, std::optional<bool>, std::optional<bool>) override {
    return absl::OkStatus();
  }
  NodeProbe Probe(const DrillNode&) override { return {}; }
  absl::Status SetCaSlow(bool) override { return absl::OkStatus(); }
};

TEST(DrillTest, AScenarioThatLacksWhatItNeedsIsRefusedUpFront) {
  auto c = ParseDrillConfig(kDrillFile, "/etc/adcsc/drill.toml");
  ASSERT_TRUE(c.ok());
  NoControl control;
  DrillOptions o;
  o.scenario = "explode";
  EXPECT_EQ(RunDrill(*c, o, &control).status().code(), absl::StatusCode::kInvalidArgument);
  o.scenario = "kill";
  o.target = "node-z";
  auto unknown = RunDrill(*c, o, &control);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(unknown.status().message()).find("node-a, node-b, node-c"), std::string::npos);
  o.target = "node-b";  // no pid_file, no start command
  auto kill = RunDrill(*c, o, &control);
  EXPECT_EQ(kill.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(kill.status().message()).find("pid_file"), std::string::npos) << kill.status();
  o.scenario = "freeze";  // no pid_file either
  auto freeze = RunDrill(*c, o, &control);
  EXPECT_EQ(freeze.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(freeze.status().message()).find("pid_file"), std::string::npos) << freeze.status();
  o.scenario = "drain";  // no [admin]
  auto drain = RunDrill(*c, o, &control);
  EXPECT_NE(std::string(drain.status().message()).find("[admin]"), std::string::npos) << drain.status();
  o.scenario = "partition";
  auto partition = RunDrill(*c, o, &control);
  EXPECT_NE(std::string(partition.status().message()).find("config"), std::string::npos) << partition.status();
}

}  // namespace
}  // namespace adcsc::drill
