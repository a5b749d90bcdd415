#include "node/drill/drill.h"

#include <gtest/gtest.h>

#include <set>

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
  absl::Status SetFault(const DrillNode&, const cluster::FaultChange&) override { return absl::OkStatus(); }
  absl::Status SetClockOffset(const DrillNode&, int64_t) override { return absl::OkStatus(); }
  NodeProbe Probe(const DrillNode&) override { return {}; }
  absl::Status SetCaSlow(bool) override { return absl::OkStatus(); }
  absl::Status ApplyConfig(const DrillNode&, const std::string&) override { return absl::OkStatus(); }
  absl::StatusOr<int> ApiStatusAs(const DrillNode&, const std::filesystem::path&,
                                  const std::filesystem::path&) override {
    return 200;
  }
};

// reload: the rotation's files per node, Jamf Pro's next identity, and a load balancer that
// passes TLS through (with one terminating it, Jamf Pro's pin is the load balancer's).
TEST(DrillTest, TheReloadScenarioNeedsItsFilesAndTcpMode) {
  NoControl control;
  DrillOptions o;
  o.scenario = "reload";
  auto c = ParseDrillConfig(kDrillFile, "/etc/adcsc/drill.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  auto no_section = RunDrill(*c, o, &control);
  EXPECT_EQ(no_section.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(no_section.status().message()).find("[reload]"), std::string::npos);

  std::string text = kDrillFile;
  text.insert(text.find("[[node]]"),
              "[reload]\nclient_cert_file = \"next.pem\"\nclient_key_file = \"next-key.pem\"\n\n");
  c = ParseDrillConfig(text, "/etc/adcsc/drill.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->reload_client_cert, "/etc/adcsc/next.pem");
  auto tls = RunDrill(*c, o, &control);
  EXPECT_EQ(tls.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(tls.status().message()).find("lb.mode = \"tcp\""), std::string::npos) << tls.status();

  text.replace(text.find("tls-termination"), std::string("tls-termination").size(), "tcp");
  c = ParseDrillConfig(text, "/etc/adcsc/drill.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  auto no_files = RunDrill(*c, o, &control);
  EXPECT_EQ(no_files.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(no_files.status().message()).find("node-a"), std::string::npos) << no_files.status();

  // One of the pair alone is a mistake in the file.
  std::string half = text;
  half.insert(half.find("pid_file"), "reload_overlap = \"a-overlap.toml\"\n");
  auto refused = ParseDrillConfig(half, "/etc/adcsc/drill.toml");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(std::string(refused.status().message()).find("node[0].reload_final"), std::string::npos)
      << refused.status();
}

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
  for (const char* needs_config : {"slow-disk", "link"}) {
    o.scenario = needs_config;
    auto r = RunDrill(*c, o, &control);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << needs_config;
    EXPECT_NE(std::string(r.status().message()).find("config"), std::string::npos) << r.status();
  }
  o.scenario = "clock-jump";
  auto clock = RunDrill(*c, o, &control);
  EXPECT_EQ(clock.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(clock.status().message()).find("clock"), std::string::npos) << clock.status();
  // A soak told to strike what the file does not allow is refused too, naming what is missing.
  o.scenario = "soak";
  o.soak_faults = {"freeze"};
  auto soak = RunDrill(*c, o, &control);
  EXPECT_EQ(soak.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(soak.status().message()).find("pid_file"), std::string::npos) << soak.status();
  o.soak_faults = {"rolling-restart"};
  EXPECT_EQ(RunDrill(*c, o, &control).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DrillConfigTest, AClockCommandMustSayWhereTheOffsetGoes) {
  std::string file = std::string(kDrillFile) + "clock = [\"date\", \"-s\", \"now\"]\n";
  auto bad = ParseDrillConfig(file, "/etc/adcsc/drill.toml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("node[2].clock"), std::string::npos) << bad.status();
  file = std::string(kDrillFile) + "clock = [\"sh\", \"-c\", \"echo {offset} > /run/faketime\"]\n";
  auto good = ParseDrillConfig(file, "/etc/adcsc/drill.toml");
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(good->nodes[2].clock_command.size(), 3u);
}

TEST(DrillSoakTest, TheScheduleFollowsTheSeedAndStaysInItsBounds) {
  DrillOptions o;
  o.soak_hold_min = std::chrono::milliseconds(4'000);
  o.soak_hold_max = std::chrono::milliseconds(6'000);
  o.soak_gap_min = std::chrono::milliseconds(1'000);
  o.soak_gap_max = std::chrono::milliseconds(1'000);
  const std::vector<std::string> faults = {"kill", "freeze", "link", "clock-jump"};
  const std::vector<std::string> nodes = {"node-a", "node-b", "node-c"};
  const auto a = PlanSoak(7, 200, faults, nodes, o);
  const auto again = PlanSoak(7, 200, faults, nodes, o);
  const auto other = PlanSoak(8, 200, faults, nodes, o);
  ASSERT_EQ(a.size(), 200u);
  std::set<std::string> scenarios_seen, nodes_seen;
  bool differs = false;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].scenario, again[i].scenario);
    EXPECT_EQ(a[i].target, again[i].target);
    EXPECT_EQ(a[i].hold_ms, again[i].hold_ms);
    differs |= a[i].scenario != other[i].scenario || a[i].target != other[i].target || a[i].hold_ms != other[i].hold_ms;
    EXPECT_GE(a[i].hold_ms, 4'000);
    EXPECT_LE(a[i].hold_ms, 6'000);
    EXPECT_EQ(a[i].gap_ms, 1'000);
    scenarios_seen.insert(a[i].scenario);
    nodes_seen.insert(a[i].target);
  }
  EXPECT_TRUE(differs) << "another seed, another schedule";
  EXPECT_EQ(scenarios_seen.size(), faults.size()) << "every fault is drawn in 200";
  EXPECT_EQ(nodes_seen.size(), nodes.size());
  EXPECT_TRUE(PlanSoak(1, 5, {}, nodes, o).empty());
}

TEST(DrillSoakTest, TheFaultsASoakMayDrawFollowTheDrillFile) {
  auto c = ParseDrillConfig(kDrillFile, "/etc/adcsc/drill.toml");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(SoakScenarios(*c).empty()) << "node-b has neither pid_file, config nor clock";
  for (DrillNode& n : c->nodes) {
    n.pid_file = "/run/" + n.id + ".pid";
    n.start = {"true"};
    n.config = "/etc/" + n.id + ".toml";
  }
  c->ca_slow_command = {"true"};
  c->ca_restore_command = {"true"};
  const auto s = SoakScenarios(*c);
  const std::set<std::string> got(s.begin(), s.end());
  EXPECT_EQ(got, (std::set<std::string>{"kill", "freeze", "partition", "ca-outage", "slow-disk", "link", "ca-slow"}))
      << "no clock command: no clock-jump; no [admin]: no drain";
}

TEST(DrillReportTest, TheTimelineCountsCallsPerIntervalWithTheFaultsActiveInIt) {
  std::vector<Sample> samples = {S(100, 150, "quiet", true), S(900, 1900, "quiet", true),
                                 S(1200, 1300, "kill", false, "http 503"), S(1500, 1600, "kill", true),
                                 S(2500, 2600, "quiet", true)};
  const std::vector<FaultSpan> faults = {{"kill", "node-c", 1100, 2100}};
  const auto t = Timeline(samples, faults, 1000, 3000);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].sent, 2);
  EXPECT_EQ(t[0].failed, 0);
  EXPECT_TRUE(t[0].faults.empty());
  EXPECT_EQ(t[1].sent, 2);
  EXPECT_EQ(t[1].failed, 1);
  EXPECT_EQ(t[1].faults, std::vector<std::string>{"kill node-c"});
  EXPECT_EQ(t[2].faults, std::vector<std::string>{"kill node-c"}) << "it ended in the third interval";
  EXPECT_EQ(t[2].sent, 1);
  EXPECT_EQ(t[0].p99_ms, 1000);
  DrillReport r;
  r.scenario = "soak";
  r.timeline = t;
  r.faults = faults;
  const std::string gp = TimelineGnuplot(r, "/tmp/x.svg");
  EXPECT_NE(gp.find("set output '/tmp/x.svg'"), std::string::npos);
  EXPECT_NE(gp.find("title 'kill'"), std::string::npos) << "the key names each kind of fault";
  EXPECT_NE(RenderText(r).find("per interval"), std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(RenderJson(r))["timeline"].size(), 3u);
}

}  // namespace
}  // namespace adcsc::drill
