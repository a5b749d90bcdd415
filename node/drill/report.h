// What a drill measured, and the judgement on it: pure functions over the samples the
// traffic produced and the events the scenario recorded, so they can be tested without a
// cluster. Times are milliseconds since the drill started (steady clock).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace adcsc::drill {

// One HTTP call the traffic made through the load balancer.
struct Sample {
  int64_t start_ms = 0;
  int64_t end_ms = 0;
  std::string phase;  // the scenario's phase when the call started
  std::string op;     // "submit", "retrieve" or "poll"
  bool ok = false;
  std::string reason;       // why it failed: "http 503", "connection", "timeout", "tls", "answer"
  std::string node;         // who answered (X-Adcsc-Node), if anyone said
  uint32_t request_id = 0;  // the ID the call was about (a submit's answer, a retrieve's question)
};

// Something the scenario did, or saw: "kill node-c", "node-c ready", "haproxy: node-c DOWN".
struct Event {
  int64_t at_ms = 0;
  std::string what;
};

struct PhaseStats {
  std::string phase;
  int sent = 0, succeeded = 0, failed = 0;
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
  std::map<std::string, int> failures_by_reason;
};

// Milliseconds; nullopt when not measured (say why in the matching `_how`).
struct Timings {
  std::optional<int64_t> lb_stopped_ms;  // from the fault to the load balancer no longer using the node
  std::string lb_stopped_how;
  std::optional<int64_t> node_back_ms;  // from the restore to the node serving again
  std::string node_back_how;
  std::optional<int64_t> converged_ms;  // from the restore to every node holding the same writes
  std::string converged_how;
};

struct Verification {
  int acknowledged = 0;                  // submits answered with a request ID
  int lost = 0;                          // of those, not retrievable from some node
  std::vector<std::string> lost_detail;  // "request 17 on node-b: http 500 ..." (first few)
  std::vector<std::string> nodes_checked;
  std::optional<int> duplicates;  // CSRs the CA holds more than one request for
  std::string duplicates_how;
};

struct Objectives {
  bool zero_failed = false;  // TLS termination with L7 retries: no failed request
  std::optional<int> max_failed;
  std::optional<int64_t> max_failure_run_ms;
  std::optional<double> max_p99_ms;  // in every phase
  std::optional<int64_t> max_lb_stopped_ms;
  std::optional<int64_t> max_node_back_ms;
  std::optional<int64_t> max_converged_ms;
  std::optional<int> max_duplicates;
};

struct Judgement {
  std::string objective;  // "zero lost acknowledged requests", "--max-p99-ms 500", ...
  bool met = false;
  std::string detail;
};

// A fault as it happened: from the strike to the undo.
struct FaultSpan {
  std::string scenario, target;
  int64_t start_ms = 0, end_ms = 0;
};

// One interval of the timeline: the calls started in it, and the faults active in it.
struct Interval {
  int64_t start_ms = 0, end_ms = 0;
  int sent = 0, failed = 0;
  double p50_ms = 0, p99_ms = 0;
  std::vector<std::string> faults;  // "freeze node-c"
};

struct DrillReport {
  std::string scenario, target, lb_url, lb_mode, started_at;
  int64_t duration_ms = 0;
  std::vector<std::string> phases;     // in order
  std::vector<PhaseStats> by_phase;    // one per phase that saw traffic, then "total"
  int longest_failure_run = 0;         // consecutive failed calls, in start order
  int64_t longest_failure_run_ms = 0;  // from the first failure's start to the last's end
  std::vector<Event> events;
  Timings timings;
  Verification verification;
  std::vector<std::string> action_failures;  // scenario steps that failed, nodes not back in time
  std::vector<Judgement> judgements;
  bool passed = false;
  uint64_t seed = 0;               // soak: the schedule's seed
  std::vector<FaultSpan> faults;   // every fault struck, in order
  std::vector<Interval> timeline;  // soak (or asked for): per interval
};

// The calls per `interval_ms` from 0 to `end_ms`, with the faults active in each.
std::vector<Interval> Timeline(const std::vector<Sample>& samples, const std::vector<FaultSpan>& faults,
                               int64_t interval_ms, int64_t end_ms);

// The timeline as a gnuplot script that draws latency (p50, p99) and failures per interval
// with the faults shaded, into `svg_path`. The caller runs gnuplot on it when it is there.
std::string TimelineGnuplot(const DrillReport& report, const std::string& svg_path);

// The p-th percentile (0..100) of `values` by nearest rank; 0 when empty.
double Percentile(std::vector<double> values, double p);

// Per-phase and total statistics, phases in the order given (phases without calls skipped).
std::vector<PhaseStats> Summarize(const std::vector<Sample>& samples, const std::vector<std::string>& phases);

// The longest run of consecutive failed calls (by start time): its length and duration.
std::pair<int, int64_t> LongestFailureRun(std::vector<Sample> samples);

// Fills report->judgements and report->passed. Zero lost acknowledged requests, and a scenario
// whose every step succeeded, are always objectives; the rest as `objectives` says.
void Judge(const Objectives& objectives, DrillReport* report);

// A readable table, and the same as JSON.
std::string RenderText(const DrillReport& report);
std::string RenderJson(const DrillReport& report);

}  // namespace adcsc::drill
