#include "node/drill/report.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace adcsc::drill {

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = std::ceil(p / 100.0 * static_cast<double>(values.size()));
  const size_t index = rank < 1 ? 0 : std::min(values.size() - 1, static_cast<size_t>(rank) - 1);
  return values[index];
}

namespace {

PhaseStats Stats(const std::string& name, const std::vector<const Sample*>& samples) {
  PhaseStats s;
  s.phase = name;
  std::vector<double> latencies;
  for (const Sample* x : samples) {
    ++s.sent;
    if (x->ok) {
      ++s.succeeded;
    } else {
      ++s.failed;
      ++s.failures_by_reason[x->reason.empty() ? "unknown" : x->reason];
    }
    latencies.push_back(static_cast<double>(x->end_ms - x->start_ms));
  }
  s.p50_ms = Percentile(latencies, 50);
  s.p99_ms = Percentile(latencies, 99);
  s.max_ms = latencies.empty() ? 0 : *std::max_element(latencies.begin(), latencies.end());
  return s;
}

std::string Ms(std::optional<int64_t> ms, const std::string& how) {
  if (!ms.has_value()) return absl::StrCat("not measured", how.empty() ? "" : " (" + how + ")");
  return absl::StrCat(absl::StrFormat("%.2f s", static_cast<double>(*ms) / 1000.0),
                      how.empty() ? "" : " (" + how + ")");
}

}  // namespace

std::vector<PhaseStats> Summarize(const std::vector<Sample>& samples, const std::vector<std::string>& phases) {
  std::vector<PhaseStats> out;
  std::vector<const Sample*> all;
  for (const Sample& s : samples) all.push_back(&s);
  for (const std::string& phase : phases) {
    std::vector<const Sample*> in;
    for (const Sample& s : samples) {
      if (s.phase == phase) in.push_back(&s);
    }
    if (!in.empty()) out.push_back(Stats(phase, in));
  }
  out.push_back(Stats("total", all));
  return out;
}

std::pair<int, int64_t> LongestFailureRun(std::vector<Sample> samples) {
  std::stable_sort(samples.begin(), samples.end(),
                   [](const Sample& a, const Sample& b) { return a.start_ms < b.start_ms; });
  int best = 0, run = 0;
  int64_t best_ms = 0, run_start = 0, run_end = 0;
  for (const Sample& s : samples) {
    if (s.ok) {
      run = 0;
      continue;
    }
    if (run == 0) run_start = s.start_ms, run_end = s.end_ms;
    ++run;
    run_end = std::max(run_end, s.end_ms);
    if (run > best) best = run, best_ms = run_end - run_start;
  }
  return {best, best_ms};
}

void Judge(const Objectives& o, DrillReport* r) {
  r->judgements.clear();
  auto add = [&](std::string name, bool met, std::string detail) {
    r->judgements.push_back({std::move(name), met, std::move(detail)});
  };
  const Verification& v = r->verification;
  add("zero lost acknowledged requests", v.lost == 0 && !v.nodes_checked.empty(),
      v.nodes_checked.empty() ? "no node could be checked"
                              : absl::StrCat(v.lost, " of ", v.acknowledged, " not retrievable from every node (",
                                             absl::StrJoin(v.nodes_checked, ", "), ")"));
  add("the scenario ran as planned", r->action_failures.empty(),
      r->action_failures.empty() ? "every step succeeded and the node came back"
                                 : absl::StrJoin(r->action_failures, "; "));
  const PhaseStats& total = r->by_phase.back();
  if (o.zero_failed) {
    add(r->scenario == "reload" ? "zero failed requests (a reload drops no connection)"
                                : "zero failed requests (TLS termination with L7 retries)",
        total.failed == 0, absl::StrCat(total.failed, " failed of ", total.sent));
  }
  if (o.max_failed) {
    add(absl::StrCat("--max-failed ", *o.max_failed), total.failed <= *o.max_failed,
        absl::StrCat(total.failed, " failed"));
  }
  if (o.max_failure_run_ms) {
    add(absl::StrCat("--max-failure-run-ms ", *o.max_failure_run_ms),
        r->longest_failure_run_ms <= *o.max_failure_run_ms,
        absl::StrCat("longest run ", r->longest_failure_run_ms, " ms"));
  }
  if (o.max_p99_ms) {
    double worst = 0;
    std::string where;
    for (const PhaseStats& p : r->by_phase) {
      if (p.phase != "total" && p.p99_ms > worst) worst = p.p99_ms, where = p.phase;
    }
    add(absl::StrCat("--max-p99-ms ", *o.max_p99_ms), worst <= *o.max_p99_ms,
        absl::StrFormat("worst p99 %.0f ms (%s)", worst, where));
  }
  auto timing = [&](const char* flag, const std::optional<int64_t>& limit, const std::optional<int64_t>& got) {
    if (!limit) return;
    add(absl::StrCat(flag, " ", *limit), got.has_value() && *got <= *limit,
        got.has_value() ? absl::StrCat(*got, " ms") : "not measured");
  };
  timing("--max-detect-ms", o.max_lb_stopped_ms, r->timings.lb_stopped_ms);
  timing("--max-back-ms", o.max_node_back_ms, r->timings.node_back_ms);
  timing("--max-converge-ms", o.max_converged_ms, r->timings.converged_ms);
  if (o.max_duplicates) {
    add(absl::StrCat("--max-duplicates ", *o.max_duplicates),
        v.duplicates.has_value() && *v.duplicates <= *o.max_duplicates,
        v.duplicates.has_value() ? absl::StrCat(*v.duplicates, " duplicate CA requests")
                                 : absl::StrCat("not measured (", v.duplicates_how, ")"));
  }
  r->passed = std::all_of(r->judgements.begin(), r->judgements.end(), [](const Judgement& j) { return j.met; });
}

std::vector<Interval> Timeline(const std::vector<Sample>& samples, const std::vector<FaultSpan>& faults,
                               int64_t interval_ms, int64_t end_ms) {
  std::vector<Interval> out;
  if (interval_ms <= 0) return out;
  for (int64_t at = 0; at < end_ms; at += interval_ms) {
    Interval i;
    i.start_ms = at;
    i.end_ms = std::min(at + interval_ms, end_ms);
    for (const FaultSpan& f : faults) {
      if (f.start_ms < i.end_ms && f.end_ms > i.start_ms) i.faults.push_back(f.scenario + " " + f.target);
    }
    out.push_back(std::move(i));
  }
  std::vector<std::vector<double>> latencies(out.size());
  for (const Sample& s : samples) {
    if (s.start_ms < 0 || s.start_ms >= end_ms) continue;
    const size_t k = static_cast<size_t>(s.start_ms / interval_ms);
    if (k >= out.size()) continue;
    ++out[k].sent;
    if (!s.ok) ++out[k].failed;
    latencies[k].push_back(static_cast<double>(s.end_ms - s.start_ms));
  }
  for (size_t k = 0; k < out.size(); ++k) {
    out[k].p50_ms = Percentile(latencies[k], 50);
    out[k].p99_ms = Percentile(latencies[k], 99);
  }
  return out;
}

std::string TimelineGnuplot(const DrillReport& r, const std::string& svg_path) {
  // Inline data blocks ($name << EOD) keep the script self-contained.
  std::string out = "$calls << EOD\n";
  for (const Interval& i : r.timeline) {
    absl::StrAppend(&out, absl::StrFormat("%.1f %.0f %.0f %d %d\n", static_cast<double>(i.start_ms) / 1000.0, i.p50_ms,
                                          i.p99_ms, i.failed, i.sent));
  }
  absl::StrAppend(&out, "EOD\n");
  absl::StrAppend(&out, "set terminal svg size 1400,600 dynamic font 'sans,11'\n", "set output '", svg_path, "'\n",
                  "set title 'adcsc drill: ", r.scenario, " (seed ", r.seed, "), ", r.started_at, ", ", r.lb_mode,
                  "'\n", "set xlabel 'seconds'\nset ylabel 'latency ms (log)'\nset logscale y\n",
                  "set y2label 'failed requests'\nset y2tics\nset ytics nomirror\n",
                  "set key outside right top\nset grid\n");
  int max_failed = 1;
  for (const Interval& i : r.timeline) max_failed = std::max(max_failed, i.failed);
  absl::StrAppend(&out, "set y2range [0:", max_failed, "]\n",
                  absl::StrFormat("set xrange [0:%.1f]\n", static_cast<double>(r.duration_ms) / 1000.0));
  // One light band per fault, a colour per kind; the key names the kinds (the per-interval
  // table and the events name each fault).
  auto colour = [](const std::string& scenario) -> const char* {
    return scenario == "kill"         ? "f4cccc"
           : scenario == "freeze"     ? "d9d2e9"
           : scenario == "slow-disk"  ? "e6d5c3"
           : scenario == "clock-jump" ? "d0eef2"
           : scenario == "link"       ? "fde2c8"
           : scenario == "ca-slow"    ? "eeeecc"
           : scenario == "partition"  ? "f6d0e8"
           : scenario == "ca-outage"  ? "d9ead3"
                                      : "dddddd";
  };
  int n = 0;
  std::vector<std::string> kinds;
  for (const FaultSpan& f : r.faults) {
    ++n;
    absl::StrAppend(&out, absl::StrFormat("set object %d rect from %.1f, graph 0 to %.1f, graph 1 "
                                          "fc rgb '#%s' fs solid 1.0 noborder behind\n",
                                          n, static_cast<double>(f.start_ms) / 1000.0,
                                          static_cast<double>(f.end_ms) / 1000.0, colour(f.scenario)));
    if (std::find(kinds.begin(), kinds.end(), f.scenario) == kinds.end()) kinds.push_back(f.scenario);
  }
  absl::StrAppend(&out, "plot $calls using 1:($2>0?$2:1/0) with lines lw 1.5 title 'p50', ",
                  "$calls using 1:($3>0?$3:1/0) with lines lw 1.5 title 'p99', ",
                  "$calls using 1:4 axes x1y2 with impulses lw 3 lc rgb 'red' title 'failed'");
  for (const std::string& kind : kinds) {
    absl::StrAppend(&out, ", NaN with boxes fs solid 1.0 fc rgb '#", colour(kind), "' title '", kind, "'");
  }
  absl::StrAppend(&out, "\n");
  return out;
}

std::string RenderText(const DrillReport& r) {
  std::string out = absl::StrCat("adcsc drill: scenario ", r.scenario, r.target.empty() ? "" : " on " + r.target,
                                 " through ", r.lb_url, " (", r.lb_mode, "), ", r.started_at, ", ",
                                 absl::StrFormat("%.1f s", static_cast<double>(r.duration_ms) / 1000.0), "\n\n");
  absl::StrAppend(&out, absl::StrFormat("%-22s %6s %6s %6s %8s %8s %8s\n", "phase", "sent", "ok", "failed", "p50 ms",
                                        "p99 ms", "max ms"));
  for (const PhaseStats& p : r.by_phase) {
    absl::StrAppend(&out, absl::StrFormat("%-22s %6d %6d %6d %8.0f %8.0f %8.0f\n", p.phase, p.sent, p.succeeded,
                                          p.failed, p.p50_ms, p.p99_ms, p.max_ms));
  }
  bool any_failure = false;
  for (const PhaseStats& p : r.by_phase) {
    if (p.phase == "total") continue;
    for (const auto& [reason, n] : p.failures_by_reason) {
      if (!any_failure) absl::StrAppend(&out, "\nfailures by phase and reason:\n");
      any_failure = true;
      absl::StrAppend(&out, "  ", p.phase, ": ", n, " x ", reason, "\n");
    }
  }
  absl::StrAppend(&out, "\nlongest run of failures:       ", r.longest_failure_run, " requests",
                  r.longest_failure_run > 0 ? absl::StrCat(" over ", r.longest_failure_run_ms, " ms") : "", "\n");
  absl::StrAppend(&out, "load balancer stopped using:   ", Ms(r.timings.lb_stopped_ms, r.timings.lb_stopped_how), "\n");
  absl::StrAppend(&out, "node back in service:          ", Ms(r.timings.node_back_ms, r.timings.node_back_how), "\n");
  absl::StrAppend(&out, "replication converged:         ", Ms(r.timings.converged_ms, r.timings.converged_how), "\n");
  const Verification& v = r.verification;
  absl::StrAppend(
      &out, "duplicate CA requests:         ", v.duplicates.has_value() ? absl::StrCat(*v.duplicates) : "not measured",
      v.duplicates_how.empty() ? "" : " (" + v.duplicates_how + ")", "\n");
  absl::StrAppend(&out, "acknowledged requests:         ", v.acknowledged, ", lost: ", v.lost, " (each retrieved from ",
                  v.nodes_checked.empty() ? "no node" : absl::StrJoin(v.nodes_checked, ", "), ")\n");
  for (const std::string& d : v.lost_detail) absl::StrAppend(&out, "  lost: ", d, "\n");
  if (!r.timeline.empty()) {
    absl::StrAppend(
        &out, "\nper interval", r.seed != 0 ? absl::StrCat(" (seed ", r.seed, ")") : "", ":\n",
        absl::StrFormat("  %8s %6s %6s %8s %8s  %s\n", "from s", "sent", "failed", "p50 ms", "p99 ms", "faults"));
    for (const Interval& i : r.timeline) {
      absl::StrAppend(
          &out, absl::StrFormat("  %8.0f %6d %6d %8.0f %8.0f  %s\n", static_cast<double>(i.start_ms) / 1000.0, i.sent,
                                i.failed, i.p50_ms, i.p99_ms, absl::StrJoin(i.faults, ", ")));
    }
  }
  absl::StrAppend(&out, "\ntimeline:\n");
  for (const Event& e : r.events) {
    absl::StrAppend(&out, absl::StrFormat("  %8.2f s  %s\n", static_cast<double>(e.at_ms) / 1000.0, e.what));
  }
  absl::StrAppend(&out, "\nobjectives:\n");
  for (const Judgement& j : r.judgements) {
    absl::StrAppend(&out, "  [", j.met ? "met" : "MISSED", "] ", j.objective, ": ", j.detail, "\n");
  }
  absl::StrAppend(&out, "\nresult: ", r.passed ? "PASSED" : "FAILED", "\n");
  return out;
}

std::string RenderJson(const DrillReport& r) {
  nlohmann::ordered_json j;
  j["scenario"] = r.scenario;
  j["target"] = r.target;
  j["lb_url"] = r.lb_url;
  j["lb_mode"] = r.lb_mode;
  j["started_at"] = r.started_at;
  j["duration_ms"] = r.duration_ms;
  j["phases"] = nlohmann::ordered_json::array();
  for (const PhaseStats& p : r.by_phase) {
    nlohmann::ordered_json x;
    x["phase"] = p.phase;
    x["sent"] = p.sent;
    x["succeeded"] = p.succeeded;
    x["failed"] = p.failed;
    x["p50_ms"] = p.p50_ms;
    x["p99_ms"] = p.p99_ms;
    x["max_ms"] = p.max_ms;
    x["failures_by_reason"] = p.failures_by_reason;
    j["phases"].push_back(x);
  }
  j["longest_failure_run"] = {{"requests", r.longest_failure_run}, {"ms", r.longest_failure_run_ms}};
  auto timing = [](const std::optional<int64_t>& ms, const std::string& how) {
    nlohmann::ordered_json t;
    t["ms"] = ms.has_value() ? nlohmann::ordered_json(*ms) : nlohmann::ordered_json(nullptr);
    t["how"] = how;
    return t;
  };
  j["lb_stopped_using_node"] = timing(r.timings.lb_stopped_ms, r.timings.lb_stopped_how);
  j["node_back"] = timing(r.timings.node_back_ms, r.timings.node_back_how);
  j["replication_converged"] = timing(r.timings.converged_ms, r.timings.converged_how);
  const Verification& v = r.verification;
  j["acknowledged"] = v.acknowledged;
  j["lost"] = v.lost;
  j["lost_detail"] = v.lost_detail;
  j["nodes_checked"] = v.nodes_checked;
  j["duplicate_ca_requests"] = v.duplicates.has_value() ? nlohmann::ordered_json(*v.duplicates) : nullptr;
  j["duplicates_how"] = v.duplicates_how;
  j["events"] = nlohmann::ordered_json::array();
  for (const Event& e : r.events) j["events"].push_back({{"at_ms", e.at_ms}, {"what", e.what}});
  j["objectives"] = nlohmann::ordered_json::array();
  for (const Judgement& x : r.judgements) {
    j["objectives"].push_back({{"objective", x.objective}, {"met", x.met}, {"detail", x.detail}});
  }
  if (r.seed != 0) j["seed"] = r.seed;
  j["faults"] = nlohmann::ordered_json::array();
  for (const FaultSpan& f : r.faults) {
    j["faults"].push_back(
        {{"scenario", f.scenario}, {"target", f.target}, {"start_ms", f.start_ms}, {"end_ms", f.end_ms}});
  }
  j["timeline"] = nlohmann::ordered_json::array();
  for (const Interval& i : r.timeline) {
    j["timeline"].push_back({{"start_ms", i.start_ms},
                             {"end_ms", i.end_ms},
                             {"sent", i.sent},
                             {"failed", i.failed},
                             {"p50_ms", i.p50_ms},
                             {"p99_ms", i.p99_ms},
                             {"faults", i.faults}});
  }
  j["passed"] = r.passed;
  return j.dump(2);
}

}  // namespace adcsc::drill
