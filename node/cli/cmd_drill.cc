// `adcsc drill`: runs a failover drill against a running cluster (node/drill/) and prints its
// report; the exit status says whether the scenario met its objectives.
#include <iostream>

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
};

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
  drill::Objectives& obj = o.objectives;
  obj.zero_failed = config->lb_mode == "tls-termination" && !a.allow_failures;
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
    const std::string on = a.scenario == "rolling-restart" ? "every node"
                           : a.node.empty()                ? config->nodes.back().id
                                                           : a.node;
    std::cerr << "adcsc drill: " << a.scenario << " on " << on << " through " << config->lb_url << " (warm-up "
              << a.warmup_ms << " ms, hold " << a.hold_ms << " ms); this takes a little while ...\n";
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
      "then ca.restore_command), rolling-restart (each node in turn: drain, stop, start, resume).\n"
      "Safe in production: drain, ca-outage, rolling-restart. Lab only: kill, freeze, partition,\n"
      "ca-slow. partition and ca-outage need cluster.allow_fault_injection = true.\n\n"
      "Objectives: zero lost requests always; zero failed requests when the drill file's lb.mode is\n"
      "tls-termination (unless --allow-failures); zero duplicate CA requests when it has\n"
      "ca.list_command; and the limits given below.\n\n"
      "Example:\n  adcsc drill --config run/quickstart/drill.toml --scenario kill --node node-c\n"
      "  adcsc drill --config run/quickstart/drill.toml --scenario partition --json\n\n"
      "Exit codes: 0 the objectives were met, 1 some were not (or the drill failed), 2 usage error or\n"
      "a drill file that lacks what the scenario needs.");
  cmd->add_option("--config,-c", a->config, "The drill file (see docs/operations.md; the quickstart writes one)")
      ->required();
  cmd->add_option("--scenario,-s", a->scenario, "kill, freeze, drain, partition, ca-outage, ca-slow or rolling-restart")
      ->required()
      ->check(CLI::IsMember({"kill", "freeze", "drain", "partition", "ca-outage", "ca-slow", "rolling-restart"}));
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
  cmd->callback([a, exit_code] { *exit_code = RunDrillCommand(*a); });
}

}  // namespace adcsc::cli
