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

  Clock::time_point t0() const { return t0_; }
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

// What a scenario needs from the drill file, checked before any traffic.
absl::Status CheckScenarioNeeds(const DrillConfig& config, const DrillOptions& options, const DrillNode* target) {
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
    if (options.scenario == "freeze") {
      if (auto s = need(n, !n.pid_file.empty(), "pid_file"); !s.ok()) return s;
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
    if (options.scenario == "ca-slow" && (config.ca_slow_command.empty() || config.ca_restore_command.empty())) {
      return absl::FailedPreconditionError(
          absl::StrCat("scenario ca-slow needs ca.slow_command and ca.restore_command in ", config.source.string()));
    }
    if ((options.scenario == "drain" || rolling) && config.admin_cert.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("scenario ", options.scenario, " needs an [admin] section in ", config.source.string()));
    }
  }
  return absl::OkStatus();
}

// The traffic's settings from the drill file: where Jamf-like clients go and as whom.
void FillTrafficFromConfig(const DrillConfig& config, TrafficOptions* t) {
  t->url = config.lb_url;
  t->cert = config.client_cert;
  t->key = config.client_key;
  t->server_ca = config.server_ca;
  t->dc = config.dc;
  t->ca = config.ca;
  t->template_name = config.template_name;
  if (t->cn_prefix == "drill") t->cn_prefix = absl::StrCat("drill-", std::time(nullptr));
}

// One drill in progress: the timeline, HAProxy's view, the report being filled, and the
// steps a scenario is made of.
class DrillRun {
 public:
  DrillRun(const DrillConfig& config, const DrillOptions& options, NodeControl* control, DrillReport* report)
      : config_(config),
        options_(options),
        control_(control),
        report_(report),
        run_(Clock::now()),
        watcher_(config, &run_) {}
  // A node left frozen would stay so after the drill: thaw it whatever happened.
  ~DrillRun() {
    if (frozen_ != nullptr) (void)control_->Thaw(*frozen_);
    if (ca_slowed_) (void)control_->SetCaSlow(false);
  }
  DrillRun(const DrillRun&) = delete;
  DrillRun& operator=(const DrillRun&) = delete;

  Run& run() { return run_; }
  bool lb_watched() const { return watcher_.active(); }

  // Notes the action when it starts (the timeline orders it before what it causes), and a
  // failure when it ends. True when it succeeded.
  bool Act(const std::string& what, const std::function<absl::Status()>& action) {
    run_.Note(what);
    const absl::Status s = action();
    if (!s.ok()) {
      run_.Note(absl::StrCat(what, " FAILED: ", s.message()));
      report_->action_failures.push_back(absl::StrCat(what, ": ", s.message()));
    }
    return s.ok();
  }
  bool Ready(const DrillNode& n) { return control_->Probe(n).ready; }
  bool LbUp(const DrillNode& n) {
    auto st = run_.LbNow(n.lb_server);
    return !watcher_.active() || (st.has_value() && absl::StartsWith(*st, "UP"));
  }
  bool LbOut(const DrillNode& n) {
    auto st = run_.LbNow(n.lb_server);
    return st.has_value() && !absl::StartsWith(*st, "UP");
  }
  // Waits until `n` is ready and in rotation again; notes it either way.
  void AwaitBack(const DrillNode& n) {
    if (WaitFor([&] { return Ready(n) && LbUp(n); }, options_.recover_timeout)) {
      run_.Note(n.id + " ready" + (watcher_.active() ? " and UP in the load balancer" : ""));
    } else {
      run_.Note(n.id + " NOT back within " + std::to_string(options_.recover_timeout.count()) + " ms");
      report_->action_failures.push_back(n.id + " was not back within the recovery timeout");
    }
  }

  // kill, drain, partition, ca-outage: the fault on `target`, held, then undone. Returns when
  // the fault struck and when it was undone.
  std::pair<int64_t, int64_t> SingleNodeFault(const DrillNode& target) {
    const std::string& scenario = options_.scenario;
    NodeControl* c = control_;
    run_.SetPhase("fault");
    const int64_t fault_at = run_.Now();
    if (scenario == "kill") Act("kill -9 " + target.id, [&] { return c->Kill(target); });
    if (scenario == "freeze" && Act("freeze " + target.id + " (SIGSTOP)", [&] { return c->Freeze(target); })) {
      frozen_ = &target;
    }
    if (scenario == "drain") Act("drain " + target.id, [&] { return c->SetMode(target, "drain"); });
    if (scenario == "ca-slow" && Act("slow the CA down", [&] { return c->SetCaSlow(true); })) ca_slowed_ = true;
    if (scenario == "partition")
      Act("cut " + target.id + " off from its peers", [&] { return c->SetFault(target, true, std::nullopt); });
    if (scenario == "ca-outage")
      Act("cut " + target.id + " off from its CA", [&] { return c->SetFault(target, std::nullopt, true); });
    std::this_thread::sleep_for(options_.hold);
    run_.SetPhase("recovery");
    const int64_t restore_at = run_.Now();
    if (scenario == "kill") Act("start " + target.id, [&] { return c->Start(target); });
    if (scenario == "freeze" && frozen_ != nullptr) {
      if (Act("thaw " + target.id + " (SIGCONT)", [&] { return c->Thaw(target); })) frozen_ = nullptr;
    }
    if (scenario == "drain") Act("resume " + target.id, [&] { return c->SetMode(target, "active"); });
    if (scenario == "ca-slow" && ca_slowed_) {
      if (Act("restore the CA's speed", [&] { return c->SetCaSlow(false); })) ca_slowed_ = false;
    }
    if (scenario == "partition")
      Act("heal " + target.id + " (peers)", [&] { return c->SetFault(target, false, std::nullopt); });
    if (scenario == "ca-outage")
      Act("heal " + target.id + " (CA)", [&] { return c->SetFault(target, std::nullopt, false); });
    AwaitBack(target);
    return {fault_at, restore_at};
  }

  // rolling-restart: drain, stop, start and resume, node by node. Returns when the last was
  // back.
  int64_t RollingRestart() {
    NodeControl* c = control_;
    for (const DrillNode& n : config_.nodes) {
      run_.SetPhase("restart " + n.id);
      if (!Act("drain " + n.id, [&] { return c->SetMode(n, "drain"); })) continue;
      if (watcher_.active()) WaitFor([&] { return LbOut(n); }, std::chrono::seconds(10));
      Act("stop " + n.id + " (SIGTERM)", [&] { return c->Stop(n, std::chrono::seconds(30)); });
      Act("start " + n.id, [&] { return c->Start(n); });
      WaitFor([&] { return Ready(n) || c->Probe(n).answered; }, options_.recover_timeout);
      Act("resume " + n.id, [&] { return c->SetMode(n, "active"); });
      if (!WaitFor([&] { return Ready(n) && LbUp(n); }, options_.recover_timeout)) {
        run_.Note(n.id + " NOT back within " + std::to_string(options_.recover_timeout.count()) + " ms");
        report_->action_failures.push_back(n.id + " was not back within the recovery timeout");
      }
    }
    return run_.Now();
  }

  // Once the node is back: everything any node held by then must reach every node.
  void AwaitConvergence(int64_t restore_at, bool rolling) {
    const auto held = HeldNow(config_, control_);
    if (WaitFor([&] { return Converged(config_, control_, held); }, options_.recover_timeout)) {
      run_.Note("replication converged (every node holds every write made before the node was back)");
      report_->timings.converged_ms = run_.Now() - restore_at;
      report_->timings.converged_how = rolling ? "after the last restart" : "from the restore";
    } else {
      report_->timings.converged_how = "not within the recovery timeout";
    }
  }

  // When the load balancer stopped using `target`, and when it used it again: its own view
  // when we have it, else the answers the node signed.
  void MeasureLbTimings(const DrillNode& target, const std::vector<Sample>& samples, int64_t fault_at,
                        int64_t restore_at) {
    Timings& timings = report_->timings;
    if (watcher_.active()) {
      if (auto seen = run_.LbFirst(target.lb_server, /*up=*/false, fault_at)) {
        timings.lb_stopped_ms = seen->first - fault_at;
        timings.lb_stopped_how = "HAProxy marked it " + seen->second;
      } else {
        timings.lb_stopped_how = "HAProxy kept it in rotation";
      }
      if (!timings.lb_stopped_ms.has_value()) {
        timings.node_back_how = "it never left the rotation";
      } else if (auto seen = run_.LbFirst(target.lb_server, /*up=*/true, restore_at)) {
        timings.node_back_ms = seen->first - restore_at;
        timings.node_back_how = "HAProxy marked it UP again";
      } else {
        timings.node_back_how = "HAProxy did not mark it UP again in time";
      }
      return;
    }
    int64_t last = -1, first_back = -1;
    for (const Sample& s : samples) {
      if (s.node != target.id) continue;
      if (s.start_ms >= fault_at && s.start_ms < restore_at) last = std::max(last, s.end_ms);
      if (s.start_ms >= restore_at && (first_back < 0 || s.end_ms < first_back)) first_back = s.end_ms;
    }
    timings.lb_stopped_ms = std::max<int64_t>(0, last - fault_at);
    timings.lb_stopped_how = last < 0 ? "no answer from the node after the fault" : "its last answer";
    if (first_back >= 0) {
      timings.node_back_ms = first_back - restore_at;
      timings.node_back_how = "its first answer after the restore";
    }
  }

 private:
  const DrillConfig& config_;
  const DrillOptions& options_;
  NodeControl* control_;
  DrillReport* report_;
  Run run_;
  LbWatcher watcher_;
  const DrillNode* frozen_ = nullptr;  // frozen by this drill and not thawed yet
  bool ca_slowed_ = false;             // the CA slowed by this drill and not restored yet
};

}  // namespace

bool KnownScenario(const std::string& s) {
  return s == "kill" || s == "freeze" || s == "drain" || s == "partition" || s == "ca-outage" || s == "ca-slow" ||
         s == "rolling-restart";
}

// A drill: checks, then traffic (baseline), the scenario, convergence, more traffic (after),
// then verification of every acknowledged request and the report.
absl::StatusOr<DrillReport> RunDrill(const DrillConfig& config, DrillOptions options, NodeControl* control) {
  if (!KnownScenario(options.scenario)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown scenario \"", options.scenario,
                     "\" (kill, freeze, drain, partition, ca-outage, ca-slow, rolling-restart)"));
  }
  if (options.target.empty()) options.target = config.nodes.back().id;
  const DrillNode* target = config.Find(options.target);
  if (target == nullptr) {
    std::string ids;
    for (const DrillNode& n : config.nodes) ids += (ids.empty() ? "" : ", ") + n.id;
    return absl::InvalidArgumentError(
        absl::StrCat("node \"", options.target, "\" is not in ", config.source.string(), " (", ids, ")"));
  }
  if (auto s = CheckScenarioNeeds(config, options, target); !s.ok()) return s;
  const bool rolling = options.scenario == "rolling-restart";
  TrafficOptions& t = options.traffic;
  FillTrafficFromConfig(config, &t);

  DrillReport report;
  report.scenario = options.scenario;
  report.target = rolling ? "every node" : target->id;
  report.lb_url = config.lb_url;
  report.lb_mode = config.lb_mode;
  report.started_at = UtcNow();
  DrillRun drill(config, options, control, &report);
  Run& run = drill.run();
  run.SetPhase("baseline");
  Traffic traffic(
      t, [&run] { return run.Phase(); }, run.t0());
  if (auto s = traffic.Start(); !s.ok()) return s;
  std::this_thread::sleep_for(options.warmup);

  int64_t fault_at = -1, restore_at = -1;
  if (rolling) {
    restore_at = drill.RollingRestart();
  } else {
    std::tie(fault_at, restore_at) = drill.SingleNodeFault(*target);
  }
  drill.AwaitConvergence(restore_at, rolling);
  run.SetPhase("after");
  std::this_thread::sleep_for(options.tail);
  traffic.Stop();
  run.Note("traffic stopped");

  const std::vector<Sample> samples = traffic.samples();
  if (rolling) {
    report.timings.lb_stopped_how = "per node: see the timeline";
    report.timings.node_back_how = "per node: see the timeline";
  } else {
    drill.MeasureLbTimings(*target, samples, fault_at, restore_at);
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
