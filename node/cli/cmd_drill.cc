// `adcsc drill`: runs a failover drill against a running cluster (node/drill/) and prints its
// report; the exit status says whether the scenario met its objectives.
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "node/cli/commands.h"
#include "node/drill/drill.h"

namespace adcsc::cli {

namespace {

struct DrillArgs {
  std::string config, scenario, node;
  bool json = false, allow_failures = false;
  double rate = 10;
  int concurrency = 16, max_enrollments = 5000;
  int64_t warmup_ms = 3000, hold_ms = 5000, tail_ms = 3000, recover_timeout_ms = 60000, retrieve_delay_ms = 1000;
  int max_failed = -1, max_duplicates = -2;
  int64_t max_failure_run_ms = -1, max_detect_ms = -1, max_back_ms = -1, max_converge_ms = -1;
  double max_p99_ms = -1;
  // Fault strength and the soak.
  int64_t disk_write_delay_ms = 50, disk_sync_delay_ms = 1000, clock_jump_s = 300, link_delay_ms = 300;
  int64_t flap_period_ms = 1000;
  double link_loss = 0.3;
  std::string duration = "10m", faults, plot;
  uint64_t seed = 1;
  int64_t soak_hold_min_ms = 4000, soak_hold_max_ms = 12000, soak_gap_min_ms = 5000, soak_gap_max_ms = 15000;
  int64_t timeline_s = 0;
};

// "90", "90s", "30m", "2h" as milliseconds; nullopt when it is none of these.
std::optional<int64_t> ParseDuration(const std::string& text) {
  if (text.empty()) return std::nullopt;
  int64_t unit = 1000;
  std::string number = text;
  switch (text.back()) {
    case 's':
      unit = 1000;
      number.pop_back();
      break;
    case 'm':
      unit = 60'000;
      number.pop_back();
      break;
    case 'h':
      unit = 3'600'000;
      number.pop_back();
      break;
    default:
      break;
  }
  int64_t n = 0;
  if (!absl::SimpleAtoi(number, &n) || n <= 0 || n > 24 * 3600) return std::nullopt;
  return n * unit;
}

// Draws the soak's timeline with gnuplot (gnuplot-nox) when it is installed; the script is
// kept beside the picture either way.
void Plot(const drill::DrillReport& report, const std::string& svg) {
  const std::string script = svg + ".gp";
  {
    std::ofstream out(script, std::ios::trunc);
    out << drill::TimelineGnuplot(report, svg);
    if (!out) {
      std::cerr << "adcsc drill: --plot: cannot write " << script << "\n";
      return;
    }
  }
  const std::string command = "gnuplot '" + absl::StrReplaceAll(script, {{"'", "'\\''"}}) + "' 2>&1";
  if (std::system(command.c_str()) == 0) {
    std::cerr << "adcsc drill: the timeline is drawn in " << svg << "\n";
  } else {
    std::cerr << "adcsc drill: gnuplot did not draw " << svg << " (is gnuplot-nox installed?); its script is " << script
              << "\n";
  }
}

int RunDrillCommand(const DrillArgs& a) {
  auto config = drill::LoadDrillConfig(a.config);
  if (!config.ok()) {
    std::cerr << "adcsc drill: " << config.status().message() << "\n";
    return kExitUsage;
  }
  drill::DrillOptions o;
  o.scenario = a.scenario;
  o.target = a.node;
  o.traffic.rate = a.rate;
  o.traffic.concurrency = a.concurrency;
  o.traffic.max_enrollments = a.max_enrollments;
  o.traffic.retrieve_delay = std::chrono::milliseconds(a.retrieve_delay_ms);
  o.warmup = std::chrono::milliseconds(a.warmup_ms);
  o.hold = std::chrono::milliseconds(a.hold_ms);
  o.tail = std::chrono::milliseconds(a.tail_ms);
  o.recover_timeout = std::chrono::milliseconds(a.recover_timeout_ms);
  o.disk_write_delay_ms = a.disk_write_delay_ms;
  o.disk_sync_delay_ms = a.disk_sync_delay_ms;
  o.clock_jump_s = a.clock_jump_s;
  o.link_loss = a.link_loss;
  o.link_delay_ms = a.link_delay_ms;
  o.flap_period = std::chrono::milliseconds(a.flap_period_ms);
  o.seed = a.seed;
  const auto duration = ParseDuration(a.duration);
  if (!duration.has_value()) {
    std::cerr << "adcsc drill: --duration: \"" << a.duration << "\" is not a duration (e.g. 600, 90s, 30m, 2h)\n";
    return kExitUsage;
  }
  o.duration = std::chrono::milliseconds(*duration);
  if (!a.faults.empty()) o.soak_faults = absl::StrSplit(a.faults, ',', absl::SkipEmpty());
  o.soak_hold_min = std::chrono::milliseconds(a.soak_hold_min_ms);
  o.soak_hold_max = std::chrono::milliseconds(a.soak_hold_max_ms);
  o.soak_gap_min = std::chrono::milliseconds(a.soak_gap_min_ms);
  o.soak_gap_max = std::chrono::milliseconds(a.soak_gap_max_ms);
  o.timeline_interval = std::chrono::milliseconds(a.timeline_s * 1000);
  drill::Objectives& obj = o.objectives;
  // A reload drops no connection whatever the load balancer does: nothing may fail.
  obj.zero_failed = (config->lb_mode == "tls-termination" || a.scenario == "reload") && !a.allow_failures;
  if (a.max_failed >= 0) obj.max_failed = a.max_failed;
  if (a.max_failure_run_ms >= 0) obj.max_failure_run_ms = a.max_failure_run_ms;
  if (a.max_p99_ms >= 0) obj.max_p99_ms = a.max_p99_ms;
  if (a.max_detect_ms >= 0) obj.max_lb_stopped_ms = a.max_detect_ms;
  if (a.max_back_ms >= 0) obj.max_node_back_ms = a.max_back_ms;
  if (a.max_converge_ms >= 0) obj.max_converged_ms = a.max_converge_ms;
  if (a.max_duplicates >= 0) {
    obj.max_duplicates = a.max_duplicates;
  } else if (a.max_duplicates == -2 && !config->ca_list_command.empty()) {
    obj.max_duplicates = 0;  // the CA can be asked: no CSR may reach it twice
  }
  if (!a.json) {
    const std::string on = a.scenario == "rolling-restart" || a.scenario == "reload" ? "every node"
                           : a.scenario == "soak" ? "nodes drawn from seed " + std::to_string(a.seed)
                           : a.node.empty()       ? config->nodes.back().id
                                                  : a.node;
    std::cerr << "adcsc drill: " << a.scenario << " on " << on << " through " << config->lb_url << " (warm-up "
              << a.warmup_ms << " ms, "
              << (a.scenario == "soak" ? "duration " + a.duration : "hold " + std::to_string(a.hold_ms) + " ms")
              << "); this takes a little while ...\n";
  }
  drill::ProcessControl control(*config);
  auto report = drill::RunDrill(*config, o, &control);
  if (!report.ok()) {
    std::cerr << "adcsc drill: " << report.status().message() << "\n";
    return report.status().code() == absl::StatusCode::kInvalidArgument ||
                   report.status().code() == absl::StatusCode::kFailedPrecondition
               ? kExitUsage
               : kExitFailure;
  }
  if (!a.plot.empty()) Plot(*report, a.plot);
  std::cout << (a.json ? drill::RenderJson(*report) + "\n" : drill::RenderText(*report));
  return report->passed ? kExitOk : kExitFailure;
}

}  // namespace

void AddDrillCommand(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<DrillArgs>();
  auto* cmd = app.add_subcommand(
      "drill",
      "Failover drill: Jamf-like traffic (submit, wait, retrieve, poll pending) through the load balancer\n"
      "while a scenario acts on one node, then every acknowledged request ID is retrieved from every\n"
      "node directly. Reports failed requests by phase and reason, the longest run of failures,\n"
      "latency per phase, when the load balancer stopped and resumed using the node, replication\n"
      "convergence, duplicate CA requests and lost requests.\n\n"
      "Scenarios: kill (SIGKILL, then start), freeze (SIGSTOP, then SIGCONT), drain (admin channel,\n"
      "then resume), partition (cut off from its peers, then heal), ca-outage (cut off from its CA,\n"
      "then heal), ca-slow (the CA answers slowly for every node: the drill file's ca.slow_command,\n"
      "then ca.restore_command), slow-disk (every write and fsync of its store waits), clock-jump (its\n"
      "wall clock steps +--clock-jump-s, then -, then right: the node's clock command), link (its peer\n"
      "links lossy, slow, one-way, then flapping), rolling-restart (each node in turn: drain, stop,\n"
      "start, resume), reload (Jamf Pro's client identity and every node's API identity rotate under\n"
      "the traffic through adcsc ctl reload: the drill file's reload_overlap, the traffic switches to\n"
      "[reload]'s identity, reload_final, then back; needs lb.mode = \"tcp\"), soak (faults drawn from --seed strike "
      "nodes one at a time for --duration; the\n"
      "report adds latency and failures per interval, and --plot draws them with gnuplot).\n"
      "Safe in production: drain, ca-outage, rolling-restart, reload. Lab only: the others. partition,\n"
      "ca-outage, slow-disk and link need cluster.allow_fault_injection = true.\n\n"
      "Objectives: zero lost requests always; zero failed requests when the drill file's lb.mode is\n"
      "tls-termination, and in reload (unless --allow-failures); zero duplicate CA requests when it has\n"
      "ca.list_command; and the limits given below.\n\n"
      "Example:\n  adcsc drill --config run/quickstart/drill.toml --scenario kill --node node-c\n"
      "  adcsc drill --config run/quickstart/drill.toml --scenario partition --json\n"
      "  adcsc drill --config run/quickstart/drill.toml --scenario soak --duration 30m --seed 7 "
      "--plot soak.svg\n\n"
      "Exit codes: 0 the objectives were met, 1 some were not (or the drill failed), 2 usage error or\n"
      "a drill file that lacks what the scenario needs.");
  cmd->add_option("--config,-c", a->config, "The drill file (see docs/operations.md; the quickstart writes one)")
      ->required();
  cmd->add_option("--scenario,-s", a->scenario,
                  "kill, freeze, drain, partition, ca-outage, ca-slow, slow-disk, clock-jump, link, rolling-restart, "
                  "reload or soak")
      ->required()
      ->check(CLI::IsMember({"kill", "freeze", "drain", "partition", "ca-outage", "ca-slow", "slow-disk", "clock-jump",
                             "link", "rolling-restart", "reload", "soak"}));
  cmd->add_option("--node,-n", a->node, "The node to act on (default: the last in the drill file)");
  cmd->add_flag("--json", a->json, "Print the report as JSON");
  cmd->add_option("--rate", a->rate, "Enrollments started per second")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 1000.0));
  cmd->add_option("--concurrency", a->concurrency, "Enrollments in progress at most")
      ->capture_default_str()
      ->check(CLI::Range(1, 512));
  cmd->add_option("--max-requests", a->max_enrollments, "Enrollments at most (each is a submit and a retrieve)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  cmd->add_option("--warmup-ms", a->warmup_ms, "Traffic before the fault")
      ->capture_default_str()
      ->check(CLI::Range(0, 600'000));
  cmd->add_option("--hold-ms", a->hold_ms, "How long the fault lasts")
      ->capture_default_str()
      ->check(CLI::Range(0, 600'000));
  cmd->add_option("--tail-ms", a->tail_ms, "Traffic after recovery")
      ->capture_default_str()
      ->check(CLI::Range(0, 600'000));
  cmd->add_option("--recover-timeout-ms", a->recover_timeout_ms,
                  "Bound on waiting for the node to be back and for convergence")
      ->capture_default_str()
      ->check(CLI::Range(1'000, 3'600'000));
  cmd->add_option("--retrieve-delay-ms", a->retrieve_delay_ms,
                  "Pause between a submit and its retrieve (Jamf Pro: about 1 s)")
      ->capture_default_str()
      ->check(CLI::Range(0, 60'000));
  cmd->add_flag("--allow-failures", a->allow_failures, "Do not require zero failed requests in tls-termination mode");
  cmd->add_option("--max-failed", a->max_failed, "Objective: failed requests at most")->check(CLI::Range(0, 1'000'000));
  cmd->add_option("--max-failure-run-ms", a->max_failure_run_ms, "Objective: longest run of failures, ms")
      ->check(CLI::Range(0, 3'600'000));
  cmd->add_option("--max-p99-ms", a->max_p99_ms, "Objective: p99 latency in every phase, ms")
      ->check(CLI::Range(0.0, 3.6e6));
  cmd->add_option("--max-detect-ms", a->max_detect_ms, "Objective: time until the load balancer stopped using the node")
      ->check(CLI::Range(0, 3'600'000));
  cmd->add_option("--max-back-ms", a->max_back_ms, "Objective: time until the node was back in service")
      ->check(CLI::Range(0, 3'600'000));
  cmd->add_option("--max-converge-ms", a->max_converge_ms, "Objective: time until replication converged")
      ->check(CLI::Range(0, 3'600'000));
  cmd->add_option("--max-duplicates", a->max_duplicates,
                  "Objective: duplicate CA requests at most (default 0 when the drill file has ca.list_command)")
      ->check(CLI::Range(0, 1'000'000));
  cmd->add_option("--disk-write-delay-ms", a->disk_write_delay_ms, "slow-disk: each write of the store waits")
      ->capture_default_str()
      ->check(CLI::Range(0, 60'000));
  cmd->add_option("--disk-sync-delay-ms", a->disk_sync_delay_ms, "slow-disk: each fsync of the store waits")
      ->capture_default_str()
      ->check(CLI::Range(0, 60'000));
  cmd->add_option("--clock-jump-s", a->clock_jump_s, "clock-jump: the step, forward then back, seconds")
      ->capture_default_str()
      ->check(CLI::Range(1, 86'400));
  cmd->add_option("--link-loss", a->link_loss, "link: the share of peer messages lost in the lossy quarter")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--link-delay-ms", a->link_delay_ms, "link: the delay of each peer request in the slow quarter")
      ->capture_default_str()
      ->check(CLI::Range(0, 60'000));
  cmd->add_option("--flap-period-ms", a->flap_period_ms, "link: one cut and one heal in the flapping quarter")
      ->capture_default_str()
      ->check(CLI::Range(100, 600'000));
  cmd->add_option("--duration", a->duration, "soak: how long faults strike (600, 90s, 30m, 2h)")->capture_default_str();
  cmd->add_option("--seed", a->seed, "soak: the schedule's seed (the same seed, the same schedule)")
      ->capture_default_str();
  cmd->add_option("--faults", a->faults,
                  "soak: the faults to draw from, comma-separated (default: every one the drill file allows)");
  cmd->add_option("--soak-hold-min-ms", a->soak_hold_min_ms, "soak: shortest fault")
      ->capture_default_str()
      ->check(CLI::Range(0, 3'600'000));
  cmd->add_option("--soak-hold-max-ms", a->soak_hold_max_ms, "soak: longest fault")
      ->capture_default_str()
      ->check(CLI::Range(0, 3'600'000));
  cmd->add_option("--soak-gap-min-ms", a->soak_gap_min_ms, "soak: shortest quiet time between faults")
      ->capture_default_str()
      ->check(CLI::Range(0, 3'600'000));
  cmd->add_option("--soak-gap-max-ms", a->soak_gap_max_ms, "soak: longest quiet time between faults")
      ->capture_default_str()
      ->check(CLI::Range(0, 3'600'000));
  cmd->add_option("--timeline-s", a->timeline_s, "Interval of the per-interval table (soak default: duration/120)")
      ->check(CLI::Range(1, 3600));
  cmd->add_option("--plot", a->plot, "Draw the timeline into this SVG file with gnuplot (gnuplot-nox)");
  cmd->callback([a, exit_code] { *exit_code = RunDrillCommand(*a); });
}

}  // namespace adcsc::cli
