#include "node/drill/drill.h"

#include <cstdio>
#include <ctime>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "node/client/https_client.h"
#include "node/drill/haproxy_stats.h"

namespace adcsc::drill {

namespace {

using Clock = std::chrono::steady_clock;

std::string UtcNow() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// The drill's shared state: the phase the traffic reads, the event log, and HAProxy's view.
class Run {
 public:
  explicit Run(Clock::time_point t0) : t0_(t0) {}

  int64_t Now() const { return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0_).count(); }
  void SetPhase(const std::string& phase) {
    std::lock_guard lock(mu_);
    phase_ = phase;
    phases_.push_back(phase);
    events_.push_back({Now(), "phase " + phase});
  }
  std::string Phase() const {
    std::lock_guard lock(mu_);
    return phase_;
  }
  void Note(const std::string& what) {
    std::lock_guard lock(mu_);
    events_.push_back({Now(), what});
  }
  // HAProxy's status of a server changed (the watcher calls this).
  void LbStatus(const std::string& server, const std::string& status) {
    std::lock_guard lock(mu_);
    auto& last = lb_[server];
    if (last == status) return;
    events_.push_back({Now(), absl::StrCat("load balancer: ", server, " ", last.empty() ? "" : last + " -> ", status)});
    last = status;
    lb_history_[server].push_back({Now(), status});
  }
  // When `server` was first seen not UP (or UP, with `up`) at or after `since_ms`, and as what.
  std::optional<std::pair<int64_t, std::string>> LbFirst(const std::string& server, bool up, int64_t since_ms) const {
    std::lock_guard lock(mu_);
    auto it = lb_history_.find(server);
    if (it == lb_history_.end()) return std::nullopt;
    for (const auto& [at, status] : it->second) {
      if (at >= since_ms && absl::StartsWith(status, "UP") == up) return std::make_pair(at, status);
    }
    return std::nullopt;
  }
  std::optional<std::string> LbNow(const std::string& server) const {
    std::lock_guard lock(mu_);
    auto it = lb_.find(server);
    if (it == lb_.end()) return std::nullopt;
    return it->second;
  }
  std::vector<Event> events() const {
    std::lock_guard lock(mu_);
    return events_;
  }
  std::vector<std::string> phases() const {
    std::lock_guard lock(mu_);
    return phases_;
  }

 private:
  const Clock::time_point t0_;
  mutable std::mutex mu_;
  std::string phase_;
  std::vector<std::string> phases_;
  std::vector<Event> events_;
  std::map<std::string, std::string> lb_;
  std::map<std::string, std::vector<std::pair<int64_t, std::string>>> lb_history_;
};

// Polls HAProxy's stats socket every 100 ms until stopped.
class LbWatcher {
 public:
  LbWatcher(const DrillConfig& config, Run* run) : config_(config), run_(run) {
    if (config_.haproxy_stats_socket.empty()) return;
    thread_ = std::thread([this] {
      while (!stop_) {
        if (auto status = ReadHaproxyStatus(config_.haproxy_stats_socket, config_.haproxy_backend); status.ok()) {
          for (const auto& [server, st] : *status) run_->LbStatus(server, st);
        }
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return stop_; });
      }
    });
  }
  ~LbWatcher() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  bool active() const { return !config_.haproxy_stats_socket.empty(); }

 private:
  const DrillConfig& config_;
  Run* run_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// Waits (bounded) until `done` holds, checking every 100 ms. True when it did.
bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds bound) {
  const auto deadline = Clock::now() + bound;
  for (;;) {
    if (done()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

// What the cluster held at a moment: for each origin, the most any node had from it.
std::map<std::string, uint64_t> HeldNow(const DrillConfig& config, NodeControl* control) {
  std::map<std::string, uint64_t> held;
  for (const DrillNode& n : config.nodes) {
    for (const auto& [origin, seq] : control->Probe(n).version_vector) held[origin] = std::max(held[origin], seq);
  }
  return held;
}

// Every node answers and holds at least `target` (traffic goes on, so "equal" would be a
// moving target; "everything written before the restore is everywhere" is not).
bool Converged(const DrillConfig& config, NodeControl* control, const std::map<std::string, uint64_t>& target) {
  for (const DrillNode& n : config.nodes) {
    const NodeProbe p = control->Probe(n);
    if (!p.answered || !p.has_vector) return false;
    for (const auto& [origin, seq] : target) {
      auto it = p.version_vector.find(origin);
      if (seq > 0 && (it == p.version_vector.end() || it->second < seq)) return false;
    }
  }
  return true;
}

// Retrieves every acknowledged request from every node directly.
Verification Verify(const DrillConfig& config, const TrafficOptions& traffic, const std::vector<Acknowledged>& acked) {
  Verification v;
  v.acknowledged = static_cast<int>(acked.size());
  std::map<uint32_t, std::vector<std::string>> missing;  // id -> "node: why"
  std::mutex mu;
  std::vector<std::thread> threads;
  for (const DrillNode& n : config.nodes) {
    v.nodes_checked.push_back(n.id);
    threads.emplace_back([&, n] {
      node::HttpsClientOptions o;
      o.url = n.api_url;
      o.cert_file = traffic.cert;
      o.key_file = traffic.key;
      o.server_ca_file = traffic.server_ca;
      o.verify_hostname = false;  // nodes are reached by address; the server CA still pins them
      o.timeout = std::chrono::seconds(10);
      auto client = node::HttpsClient::Create(o);
      for (const Acknowledged& a : acked) {
        std::string why;
        if (!client.ok()) {
          why = std::string(client.status().message());
        } else {
          const nlohmann::json body = {{"request-id", a.request_id},
                                       {"config", {{"dc", traffic.dc}, {"ca", traffic.ca}}}};
          auto r = (*client)->Post("/api/v1/certificate/retrieve", body.dump());
          if (!r.ok()) {
            why = std::string(r.status().message());
          } else {
            auto j = nlohmann::json::parse(r->body, nullptr, false);
            const std::string status = j.is_object() ? j["request-status"].value("status", "") : "";
            if (r->status != 200 || (status != "CR_DISP_ISSUED" && status != "CR_DISP_UNDER_SUBMISSION")) {
              why = absl::StrCat("http ", r->status, " ", status);
            }
          }
        }
        if (!why.empty()) {
          std::lock_guard lock(mu);
          missing[a.request_id].push_back(n.id + ": " + why);
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  v.lost = static_cast<int>(missing.size());
  for (const auto& [id, why] : missing) {
    if (v.lost_detail.size() >= 10) break;
    v.lost_detail.push_back(absl::StrCat("request ", id, " (", why.front(), why.size() > 1 ? ", ..." : "", ")"));
  }
  return v;
}

// Runs the CA list command and counts the extra requests for the drill's CSRs.
void CountDuplicates(const DrillConfig& config, const std::string& cn_prefix, Verification* v) {
  if (config.ca_list_command.empty()) {
    v->duplicates_how =
        "no ca.list_command in the drill file; count the CA's requests for CN " + cn_prefix + "-* by hand";
    return;
  }
  std::string command;
  for (const std::string& a : config.ca_list_command) {
    std::string quoted = "'";
    for (char c : a) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    command += quoted + "' ";
  }
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    v->duplicates_how = "ca.list_command could not be run";
    return;
  }
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  const int rc = pclose(pipe);
  auto j = nlohmann::json::parse(out, nullptr, false);
  if (rc != 0 || !j.is_object() || !j.contains("requests") || !j["requests"].is_array()) {
    v->duplicates_how = "ca.list_command failed or printed no {\"requests\": [...]}";
    return;
  }
  std::map<std::string, int> per_cn;
  const std::string needle = "CN=" + cn_prefix + "-";
  for (const auto& r : j["requests"]) {
    const std::string subject = r.value("subject", "");
    const auto at = subject.find(needle);
    if (at == std::string::npos) continue;
    // The CN runs to the next separator.
    const auto end = subject.find_first_of(",/+", at);
    ++per_cn[subject.substr(at, end == std::string::npos ? std::string::npos : end - at)];
  }
  int extra = 0;
  for (const auto& [cn, count] : per_cn) extra += count - 1;
  v->duplicates = extra;
  v->duplicates_how = absl::StrCat("the CA's request list: ", per_cn.size(), " CSRs of this drill");
}

}  // namespace

bool KnownScenario(const std::string& s) {
  return s == "kill" || s == "drain" || s == "partition" || s == "ca-outage" || s == "rolling-restart";
}

absl::StatusOr<DrillReport> RunDrill(const DrillConfig& config, DrillOptions options, NodeControl* control) {
  if (!KnownScenario(options.scenario)) {
    return absl::InvalidArgumentError(absl::StrCat("unknown scenario \"", options.scenario,
                                                   "\" (kill, drain, partition, ca-outage, rolling-restart)"));
  }
  if (options.target.empty()) options.target = config.nodes.back().id;
  const DrillNode* target = config.Find(options.target);
  if (target == nullptr) {
    std::string ids;
    for (const DrillNode& n : config.nodes) ids += (ids.empty() ? "" : ", ") + n.id;
    return absl::InvalidArgumentError(
        absl::StrCat("node \"", options.target, "\" is not in ", config.source.string(), " (", ids, ")"));
  }
  // What each scenario needs from the drill file, checked before any traffic.
  auto need = [&](const DrillNode& n, bool ok, const std::string& key) -> absl::Status {
    if (ok) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat("scenario ", options.scenario, " needs ", key, " for node ", n.id,
                                                      " in ", config.source.string()));
  };
  const bool rolling = options.scenario == "rolling-restart";
  for (const DrillNode& n : config.nodes) {
    if (!rolling && &n != target) continue;
    if (options.scenario == "kill") {
      if (auto s = need(n, !n.pid_file.empty() || !n.kill_command.empty(), "pid_file or kill"); !s.ok()) return s;
    }
    if (rolling) {
      if (auto s = need(n, !n.pid_file.empty() || !n.stop_command.empty(), "pid_file or stop"); !s.ok()) return s;
    }
    if (options.scenario == "kill" || rolling) {
      if (auto s = need(n, !n.start.empty(), "start"); !s.ok()) return s;
    }
    if (options.scenario == "partition" || options.scenario == "ca-outage") {
      if (auto s = need(n, !n.config.empty(), "config"); !s.ok()) return s;
    }
    if ((options.scenario == "drain" || rolling) && config.admin_cert.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("scenario ", options.scenario, " needs an [admin] section in ", config.source.string()));
    }
  }

  TrafficOptions& t = options.traffic;
  t.url = config.lb_url;
  t.cert = config.client_cert;
  t.key = config.client_key;
  t.server_ca = config.server_ca;
  t.dc = config.dc;
  t.ca = config.ca;
  t.template_name = config.template_name;
  if (t.cn_prefix == "drill") t.cn_prefix = absl::StrCat("drill-", std::time(nullptr));

  const Clock::time_point t0 = Clock::now();
  Run run(t0);
  DrillReport report;
  report.scenario = options.scenario;
  report.target = rolling ? "every node" : target->id;
  report.lb_url = config.lb_url;
  report.lb_mode = config.lb_mode;
  report.started_at = UtcNow();

  LbWatcher watcher(config, &run);
  run.SetPhase("baseline");
  Traffic traffic(
      t, [&run] { return run.Phase(); }, t0);
  if (auto s = traffic.Start(); !s.ok()) return s;
  std::this_thread::sleep_for(options.warmup);

  int64_t fault_at = -1, restore_at = -1;
  // Notes the action when it starts (the timeline orders it before what it causes), and a
  // failure when it ends.
  auto act = [&](const std::string& what, const std::function<absl::Status()>& action) {
    run.Note(what);
    const absl::Status s = action();
    if (!s.ok()) {
      run.Note(absl::StrCat(what, " FAILED: ", s.message()));
      report.action_failures.push_back(absl::StrCat(what, ": ", s.message()));
    }
    return s.ok();
  };
  auto ready = [&](const DrillNode& n) { return control->Probe(n).ready; };
  auto lb_up = [&](const DrillNode& n) {
    auto st = run.LbNow(n.lb_server);
    return !watcher.active() || (st.has_value() && absl::StartsWith(*st, "UP"));
  };
  auto lb_out = [&](const DrillNode& n) {
    auto st = run.LbNow(n.lb_server);
    return st.has_value() && !absl::StartsWith(*st, "UP");
  };

  if (!rolling) {
    run.SetPhase("fault");
    fault_at = run.Now();
    if (options.scenario == "kill") act("kill -9 " + target->id, [&] { return control->Kill(*target); });
    if (options.scenario == "drain") act("drain " + target->id, [&] { return control->SetMode(*target, "drain"); });
    if (options.scenario == "partition")
      act("cut " + target->id + " off from its peers", [&] { return control->SetFault(*target, true, std::nullopt); });
    if (options.scenario == "ca-outage")
      act("cut " + target->id + " off from its CA", [&] { return control->SetFault(*target, std::nullopt, true); });
    std::this_thread::sleep_for(options.hold);
    run.SetPhase("recovery");
    restore_at = run.Now();
    if (options.scenario == "kill") act("start " + target->id, [&] { return control->Start(*target); });
    if (options.scenario == "drain") act("resume " + target->id, [&] { return control->SetMode(*target, "active"); });
    if (options.scenario == "partition")
      act("heal " + target->id + " (peers)", [&] { return control->SetFault(*target, false, std::nullopt); });
    if (options.scenario == "ca-outage")
      act("heal " + target->id + " (CA)", [&] { return control->SetFault(*target, std::nullopt, false); });
    if (WaitFor([&] { return ready(*target) && lb_up(*target); }, options.recover_timeout)) {
      run.Note(target->id + " ready" + (watcher.active() ? " and UP in the load balancer" : ""));
    } else {
      run.Note(target->id + " NOT back within " + std::to_string(options.recover_timeout.count()) + " ms");
      report.action_failures.push_back(target->id + " was not back within the recovery timeout");
    }
  } else {
    for (const DrillNode& n : config.nodes) {
      run.SetPhase("restart " + n.id);
      if (!act("drain " + n.id, [&] { return control->SetMode(n, "drain"); })) continue;
      if (watcher.active()) WaitFor([&] { return lb_out(n); }, std::chrono::seconds(10));
      act("stop " + n.id + " (SIGTERM)", [&] { return control->Stop(n, std::chrono::seconds(30)); });
      act("start " + n.id, [&] { return control->Start(n); });
      WaitFor([&] { return ready(n) || control->Probe(n).answered; }, options.recover_timeout);
      act("resume " + n.id, [&] { return control->SetMode(n, "active"); });
      if (!WaitFor([&] { return ready(n) && lb_up(n); }, options.recover_timeout)) {
        run.Note(n.id + " NOT back within " + std::to_string(options.recover_timeout.count()) + " ms");
        report.action_failures.push_back(n.id + " was not back within the recovery timeout");
      }
    }
    restore_at = run.Now();
  }
  // Once the node is back: everything any node held by then must reach every node.
  const auto held = HeldNow(config, control);
  if (WaitFor([&] { return Converged(config, control, held); }, options.recover_timeout)) {
    run.Note("replication converged (every node holds every write made before the node was back)");
    report.timings.converged_ms = run.Now() - restore_at;
    report.timings.converged_how = rolling ? "after the last restart" : "from the restore";
  } else {
    report.timings.converged_how = "not within the recovery timeout";
  }
  run.SetPhase("after");
  std::this_thread::sleep_for(options.tail);
  traffic.Stop();
  run.Note("traffic stopped");

  const std::vector<Sample> samples = traffic.samples();
  // When the load balancer stopped using the node, and when it used it again: its own view
  // when we have it, else the answers the node signed.
  if (!rolling) {
    if (watcher.active()) {
      if (auto seen = run.LbFirst(target->lb_server, /*up=*/false, fault_at)) {
        report.timings.lb_stopped_ms = seen->first - fault_at;
        report.timings.lb_stopped_how = "HAProxy marked it " + seen->second;
      } else {
        report.timings.lb_stopped_how = "HAProxy kept it in rotation";
      }
      if (!report.timings.lb_stopped_ms.has_value()) {
        report.timings.node_back_how = "it never left the rotation";
      } else if (auto seen = run.LbFirst(target->lb_server, /*up=*/true, restore_at)) {
        report.timings.node_back_ms = seen->first - restore_at;
        report.timings.node_back_how = "HAProxy marked it UP again";
      } else {
        report.timings.node_back_how = "HAProxy did not mark it UP again in time";
      }
    } else {
      int64_t last = -1, first_back = -1;
      for (const Sample& s : samples) {
        if (s.node != target->id) continue;
        if (s.start_ms >= fault_at && s.start_ms < restore_at) last = std::max(last, s.end_ms);
        if (s.start_ms >= restore_at && (first_back < 0 || s.end_ms < first_back)) first_back = s.end_ms;
      }
      report.timings.lb_stopped_ms = std::max<int64_t>(0, last - fault_at);
      report.timings.lb_stopped_how = last < 0 ? "no answer from the node after the fault" : "its last answer";
      if (first_back >= 0) {
        report.timings.node_back_ms = first_back - restore_at;
        report.timings.node_back_how = "its first answer after the restore";
      }
    }
  } else {
    report.timings.lb_stopped_how = "per node: see the timeline";
    report.timings.node_back_how = "per node: see the timeline";
  }

  report.verification = Verify(config, t, traffic.acknowledged());
  CountDuplicates(config, t.cn_prefix, &report.verification);
  report.events = run.events();
  report.phases = run.phases();
  report.by_phase = Summarize(samples, report.phases);
  std::tie(report.longest_failure_run, report.longest_failure_run_ms) = LongestFailureRun(samples);
  report.duration_ms = run.Now();
  Judge(options.objectives, &report);
  return report;
}

}  // namespace adcsc::drill
