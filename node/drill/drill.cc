#include "node/drill/drill.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
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
void CountDuplicates(const DrillConfig& config, const std::string& cn_prefix, const std::vector<Acknowledged>& acked,
                     Verification* v) {
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
  // Every acknowledged request is at the CA: if the list lacks some, it is not the whole list
  // (or the CA lost requests), and a count on it could hide duplicates.
  int missing = 0;
  for (const Acknowledged& a : acked) {
    if (!a.common_name.empty() && per_cn.find("CN=" + a.common_name) == per_cn.end()) ++missing;
  }
  if (missing > 0) {
    v->duplicates_how = absl::StrCat("the CA's request list lacks ", missing,
                                     " acknowledged CSRs of this drill: an incomplete list (ca.list_command must "
                                     "print every request) or requests the CA lost");
    return;
  }
  int extra = 0;
  for (const auto& [cn, count] : per_cn) extra += count - 1;
  v->duplicates = extra;
  v->duplicates_how =
      absl::StrCat("the CA's request list: ", per_cn.size(), " CSRs of this drill, every acknowledged one among them");
}

// What a scenario needs from the drill file, checked before any traffic.
absl::Status CheckScenarioNeeds(const DrillConfig& config, const DrillOptions& options, const DrillNode* target) {
  auto need = [&](const DrillNode& n, bool ok, const std::string& key) -> absl::Status {
    if (ok) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat("scenario ", options.scenario, " needs ", key, " for node ", n.id,
                                                      " in ", config.source.string()));
  };
  const bool rolling = options.scenario == "rolling-restart";
  const bool every_node = rolling || options.scenario == "reload";
  if (options.scenario == "reload") {
    if (config.reload_client_cert.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "scenario reload needs a [reload] section (Jamf Pro's new client identity) in ", config.source.string()));
    }
    if (config.lb_mode != "tcp") {
      return absl::FailedPreconditionError(
          "scenario reload rotates the identities Jamf Pro meets at the nodes: with the load balancer terminating "
          "TLS, Jamf Pro's certificate is checked by the load balancer instead (its pin list), so run it with "
          "lb.mode = \"tcp\" (./deploy/quickstart --lb-mode tcp)");
    }
  }
  for (const DrillNode& n : config.nodes) {
    if (!every_node && &n != target) continue;
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
    if (options.scenario == "partition" || options.scenario == "ca-outage" || options.scenario == "slow-disk" ||
        options.scenario == "link") {
      if (auto s = need(n, !n.config.empty(), "config"); !s.ok()) return s;
    }
    if (options.scenario == "clock-jump") {
      if (auto s = need(n, !n.clock_command.empty(), "clock (a command that steps its clock)"); !s.ok()) return s;
    }
    if (options.scenario == "reload") {
      if (auto s = need(n, !n.config.empty(), "config"); !s.ok()) return s;
      if (auto s = need(n, !n.reload_overlap.empty() && !n.reload_final.empty(), "reload_overlap and reload_final");
          !s.ok()) {
        return s;
      }
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

// Fault switch changes, one switch each.
cluster::FaultChange CutOff(bool on) {
  cluster::FaultChange c;
  c.cut_off = on;
  return c;
}
cluster::FaultChange CaOutage(bool on) {
  cluster::FaultChange c;
  c.ca_outage = on;
  return c;
}
cluster::FaultChange Link(const cluster::v1::LinkFault& link) {
  cluster::FaultChange c;
  c.link = link;
  return c;
}
cluster::FaultChange Disk(const cluster::v1::DiskFault& disk) {
  cluster::FaultChange c;
  c.disk = disk;
  return c;
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
  // A fault left in place would outlast the drill (a frozen node, a slow CA, a skewed clock):
  // undo every one still struck, whatever happened.
  ~DrillRun() {
    for (auto& [what, undo] : undo_) (void)undo();
  }
  DrillRun(const DrillRun&) = delete;
  DrillRun& operator=(const DrillRun&) = delete;

  Run& run() { return run_; }

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

  // The fault of `scenario` strikes `target`. What undoes it is remembered (Restore runs it;
  // the destructor does if nothing else did).
  void Strike(const std::string& scenario, const DrillNode& target) {
    NodeControl* c = control_;
    const DrillNode* t = &target;
    auto strike = [&](const std::string& what, const std::function<absl::Status()>& action,
                      const std::string& undo_what, std::function<absl::Status()> undo) {
      if (Act(what, action) && undo) undo_.emplace_back(undo_what, std::move(undo));
    };
    if (scenario == "kill") {
      strike(
          "kill -9 " + target.id, [&] { return c->Kill(target); }, "start " + target.id,
          [c, t] { return c->Start(*t); });
    } else if (scenario == "freeze") {
      strike(
          "freeze " + target.id + " (SIGSTOP)", [&] { return c->Freeze(target); }, "thaw " + target.id + " (SIGCONT)",
          [c, t] { return c->Thaw(*t); });
    } else if (scenario == "drain") {
      strike(
          "drain " + target.id, [&] { return c->SetMode(target, "drain"); }, "resume " + target.id,
          [c, t] { return c->SetMode(*t, "active"); });
    } else if (scenario == "ca-slow") {
      strike(
          "slow the CA down", [&] { return c->SetCaSlow(true); }, "restore the CA's speed",
          [c] { return c->SetCaSlow(false); });
    } else if (scenario == "partition") {
      strike(
          "cut " + target.id + " off from its peers", [&] { return c->SetFault(target, CutOff(true)); },
          "heal " + target.id + " (peers)", [c, t] { return c->SetFault(*t, CutOff(false)); });
    } else if (scenario == "ca-outage") {
      strike(
          "cut " + target.id + " off from its CA", [&] { return c->SetFault(target, CaOutage(true)); },
          "heal " + target.id + " (CA)", [c, t] { return c->SetFault(*t, CaOutage(false)); });
    } else if (scenario == "slow-disk") {
      cluster::v1::DiskFault disk;
      disk.set_write_delay_ms(static_cast<uint32_t>(options_.disk_write_delay_ms));
      disk.set_sync_delay_ms(static_cast<uint32_t>(options_.disk_sync_delay_ms));
      strike(
          absl::StrCat("slow ", target.id, "'s disk (writes +", options_.disk_write_delay_ms, " ms, fsyncs +",
                       options_.disk_sync_delay_ms, " ms)"),
          [&] { return c->SetFault(target, Disk(disk)); }, "heal " + target.id + "'s disk",
          [c, t] { return c->SetFault(*t, Disk(cluster::v1::DiskFault())); });
    } else if (scenario == "clock-jump") {
      strike(
          absl::StrCat("step ", target.id, "'s clock +", options_.clock_jump_s, " s"),
          [&] { return c->SetClockOffset(target, options_.clock_jump_s); }, "set " + target.id + "'s clock right",
          [c, t] { return c->SetClockOffset(*t, 0); });
    } else if (scenario == "link") {
      cluster::v1::LinkFault loss;
      loss.set_loss(options_.link_loss);
      strike(
          absl::StrCat("make ", target.id, "'s peer links lose ", options_.link_loss * 100, "% of messages"),
          [&] { return c->SetFault(target, Link(loss)); }, "heal " + target.id + "'s peer links",
          [c, t] { return c->SetFault(*t, Link(cluster::v1::LinkFault())); });
    }
  }

  // Holds the fault for `hold`. clock-jump and link change it on the way (each step a phase
  // `phase` + " " + step); the others just wait.
  void Hold(const std::string& scenario, const DrillNode& target, std::chrono::milliseconds hold,
            const std::string& phase) {
    NodeControl* c = control_;
    const auto until = Clock::now() + hold;
    if (scenario == "clock-jump") {
      run_.SetPhase(phase + " +" + std::to_string(options_.clock_jump_s) + "s");
      std::this_thread::sleep_for(hold / 2);
      run_.SetPhase(phase + " -" + std::to_string(options_.clock_jump_s) + "s");
      Act(absl::StrCat("step ", target.id, "'s clock to -", options_.clock_jump_s, " s"),
          [&] { return c->SetClockOffset(target, -options_.clock_jump_s); });
    } else if (scenario == "link") {
      const auto quarter = hold / 4;
      run_.SetPhase(phase + " loss");
      std::this_thread::sleep_for(quarter);
      run_.SetPhase(phase + " delay");
      cluster::v1::LinkFault f;
      f.set_delay_ms(static_cast<uint32_t>(options_.link_delay_ms));
      Act(absl::StrCat("delay each peer request to ", target.id, " by ", options_.link_delay_ms, " ms"),
          [&] { return c->SetFault(target, Link(f)); });
      std::this_thread::sleep_for(quarter);
      run_.SetPhase(phase + " one-way");
      f.Clear();
      f.set_cut_in(true);
      Act(target.id + " refuses its peers' requests (one-way: in)", [&] { return c->SetFault(target, Link(f)); });
      std::this_thread::sleep_for(quarter / 2);
      f.Clear();
      f.set_cut_out(true);
      Act(target.id + "'s requests to its peers fail (one-way: out)", [&] { return c->SetFault(target, Link(f)); });
      std::this_thread::sleep_for(quarter / 2);
      run_.SetPhase(phase + " flap");
      bool cut = false;
      while (Clock::now() + options_.flap_period / 2 < until) {
        cut = !cut;
        (void)c->SetFault(target, CutOff(cut));  // not noted one by one: the phase says it
        std::this_thread::sleep_for(options_.flap_period / 2);
      }
      run_.Note(target.id + "'s peer links flapped every " + std::to_string(options_.flap_period.count() / 2) + " ms");
    }
    const auto left = until - Clock::now();
    if (left > Clock::duration::zero()) std::this_thread::sleep_for(left);
  }

  // Undoes every fault struck (in the order struck).
  void Restore() {
    auto undo = std::move(undo_);
    undo_.clear();
    for (auto& [what, fn] : undo) Act(what, fn);
  }

  // A single fault on `target`: struck, held, then undone. Returns when it struck and when it
  // was undone.
  std::pair<int64_t, int64_t> SingleNodeFault(const DrillNode& target) {
    run_.SetPhase("fault");
    const int64_t fault_at = run_.Now();
    Strike(options_.scenario, target);
    Hold(options_.scenario, target, options_.hold, "fault");
    run_.SetPhase("recovery");
    const int64_t restore_at = run_.Now();
    Restore();
    AwaitBack(target);
    return {fault_at, restore_at};
  }

  // reload: Jamf Pro's identity and every node's API identity rotate under the traffic, as
  // docs/operations.md walks an operator through it. Phase "overlap": each node gets its
  // reload_overlap configuration (the new API identity, the old and the new pin) and re-reads
  // it; then the traffic presents the new client identity (Jamf Pro after the upload). Phase
  // "new pin only": each node gets reload_final; the old client identity must now be refused
  // by every node. Phase "rotate back" (the recovery): the same steps backwards, to each node's
  // configuration as it was, so the drill leaves the cluster as it found it. Returns when the
  // rotation began and when the rotation back began.
  std::pair<int64_t, int64_t> Rotation(Traffic* traffic) {
    NodeControl* c = control_;
    std::map<std::string, std::string> original, overlap, final_text;
    for (const DrillNode& n : config_.nodes) {
      for (auto [path, out] : {std::pair{n.config, &original}, std::pair{n.reload_overlap, &overlap},
                               std::pair{n.reload_final, &final_text}}) {
        auto text = ReadText(path);
        if (!text.ok()) {
          report_->action_failures.push_back(std::string(text.status().message()));
          return {run_.Now(), run_.Now()};
        }
        (*out)[n.id] = std::move(*text);
      }
    }
    auto apply_all = [&](const std::map<std::string, std::string>& texts, const std::string& what) {
      for (const DrillNode& n : config_.nodes) {
        Act(absl::StrCat(n.id, ": ", what, ", adcsc ctl reload"), [&] { return c->ApplyConfig(n, texts.at(n.id)); });
      }
    };
    const int64_t rotation_at = run_.Now();
    run_.SetPhase("overlap");
    apply_all(overlap, "new API identity, old and new Jamf Pro pins");
    run_.Note("the traffic presents Jamf Pro's new client identity (the new .pfx uploaded)");
    traffic->SwitchIdentity(config_.reload_client_cert, config_.reload_client_key);
    AwaitSwitched(traffic);
    std::this_thread::sleep_for(options_.hold / 2);
    run_.SetPhase("new pin only");
    apply_all(final_text, "only the new Jamf Pro pin");
    for (const DrillNode& n : config_.nodes) {
      Act(n.id + " refuses Jamf Pro's old client identity", [&]() -> absl::Status {
        auto status = c->ApiStatusAs(n, config_.client_cert, config_.client_key);
        if (!status.ok()) return status.status();
        if (*status != 403) return absl::InternalError(absl::StrCat("it answered HTTP ", *status, ", not 403"));
        return absl::OkStatus();
      });
      Act(n.id + " accepts Jamf Pro's new client identity", [&]() -> absl::Status {
        auto status = c->ApiStatusAs(n, config_.reload_client_cert, config_.reload_client_key);
        if (!status.ok()) return status.status();
        if (*status != 200) return absl::InternalError(absl::StrCat("it answered HTTP ", *status, ", not 200"));
        return absl::OkStatus();
      });
    }
    std::this_thread::sleep_for(options_.hold / 2);
    run_.SetPhase("rotate back");
    const int64_t back_at = run_.Now();
    apply_all(overlap, "old and new Jamf Pro pins again");
    run_.Note("the traffic presents Jamf Pro's original client identity again");
    traffic->SwitchIdentity(config_.client_cert, config_.client_key);
    AwaitSwitched(traffic);
    apply_all(original, "its configuration as it was");
    report_->faults.push_back({"reload", "every node", rotation_at, back_at});
    return {rotation_at, back_at};
  }

  // Jamf Pro's calls that began with the identity before the switch finish before the nodes
  // stop accepting it (as an operator waits for the access log to show only the new pin).
  void AwaitSwitched(Traffic* traffic) {
    if (!traffic->AwaitIdentitySwitched(std::chrono::seconds(60))) {
      report_->action_failures.push_back("calls with the previous client identity were still in flight after 60 s");
    }
  }

  static absl::StatusOr<std::string> ReadText(const std::filesystem::path& path) {
    std::ifstream in(path);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  // soak: the seeded schedule, one fault at a time, each followed by the node's return and
  // convergence, until the duration is up.
  void Soak(const std::vector<std::string>& scenarios) {
    std::vector<std::string> ids;
    for (const DrillNode& n : config_.nodes) ids.push_back(n.id);
    const int64_t smallest = std::max<int64_t>(1, (options_.soak_gap_min + options_.soak_hold_min).count());
    const auto plan = PlanSoak(options_.seed, static_cast<size_t>(options_.duration.count() / smallest) + 1, scenarios,
                               ids, options_);
    const int64_t end_ms = run_.Now() + options_.duration.count();
    int k = 0;
    for (const PlannedFault& f : plan) {
      if (run_.Now() + f.gap_ms + f.hold_ms >= end_ms) break;
      run_.SetPhase("quiet");
      std::this_thread::sleep_for(std::chrono::milliseconds(f.gap_ms));
      const DrillNode& target = *config_.Find(f.target);
      ++k;
      run_.SetPhase(f.scenario);
      run_.Note(absl::StrCat("fault ", k, ": ", f.scenario, " on ", f.target, " for ", f.hold_ms, " ms"));
      FaultSpan span{f.scenario, f.scenario == "ca-slow" ? "every node" : f.target, run_.Now(), 0};
      Strike(f.scenario, target);
      Hold(f.scenario, target, std::chrono::milliseconds(f.hold_ms), f.scenario);
      run_.SetPhase("recovery");
      Restore();
      span.end_ms = run_.Now();
      report_->faults.push_back(span);
      AwaitBack(target);
      const auto held = HeldNow(config_, control_);
      if (WaitFor([&] { return Converged(config_, control_, held); }, options_.recover_timeout)) {
        run_.Note(absl::StrCat("converged ", run_.Now() - span.end_ms, " ms after fault ", k, " was undone"));
      } else {
        run_.Note(absl::StrCat("NOT converged within the recovery timeout after fault ", k));
        report_->action_failures.push_back(absl::StrCat("replication did not converge after fault ", k));
      }
    }
    run_.SetPhase("quiet");
    const int64_t left = end_ms - run_.Now();
    if (left > 0) std::this_thread::sleep_for(std::chrono::milliseconds(left));
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
  // What undoes each fault struck and not undone yet, in the order struck.
  std::vector<std::pair<std::string, std::function<absl::Status()>>> undo_;
};

}  // namespace

bool KnownScenario(const std::string& s) {
  return s == "kill" || s == "freeze" || s == "drain" || s == "partition" || s == "ca-outage" || s == "ca-slow" ||
         s == "slow-disk" || s == "clock-jump" || s == "link" || s == "rolling-restart" || s == "reload" || s == "soak";
}

// A drill: checks, then traffic (baseline), the scenario, convergence, more traffic (after),
// then verification of every acknowledged request and the report.
absl::StatusOr<DrillReport> RunDrill(const DrillConfig& config, DrillOptions options, NodeControl* control) {
  if (!KnownScenario(options.scenario)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown scenario \"", options.scenario,
                     "\" (kill, freeze, drain, partition, ca-outage, ca-slow, slow-disk, clock-jump, link, "
                     "rolling-restart, reload, soak)"));
  }
  if (options.target.empty()) options.target = config.nodes.back().id;
  const DrillNode* target = config.Find(options.target);
  if (target == nullptr) {
    std::string ids;
    for (const DrillNode& n : config.nodes) ids += (ids.empty() ? "" : ", ") + n.id;
    return absl::InvalidArgumentError(
        absl::StrCat("node \"", options.target, "\" is not in ", config.source.string(), " (", ids, ")"));
  }
  const bool rolling = options.scenario == "rolling-restart";
  const bool soak = options.scenario == "soak";
  const bool reload = options.scenario == "reload";
  std::vector<std::string> soak_scenarios;
  if (soak) {
    soak_scenarios = options.soak_faults.empty() ? SoakScenarios(config) : options.soak_faults;
    if (soak_scenarios.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("scenario soak found no fault it can strike with ", config.source.string()));
    }
    for (const std::string& f : soak_scenarios) {
      if (!KnownScenario(f) || f == "soak" || f == "rolling-restart" || f == "reload") {
        return absl::InvalidArgumentError(
            absl::StrCat("soak cannot strike \"", f,
                         "\" (kill, freeze, drain, partition, ca-outage, ca-slow, slow-disk, clock-jump, link)"));
      }
      DrillOptions each = options;
      each.scenario = f;
      for (const DrillNode& n : config.nodes) {
        if (auto s = CheckScenarioNeeds(config, each, &n); !s.ok()) return s;
      }
    }
    if (options.soak_hold_min > options.soak_hold_max || options.soak_gap_min > options.soak_gap_max) {
      return absl::InvalidArgumentError("soak: a minimum hold or gap is above its maximum");
    }
  } else if (auto s = CheckScenarioNeeds(config, options, target); !s.ok()) {
    return s;
  }
  TrafficOptions& t = options.traffic;
  FillTrafficFromConfig(config, &t);
  if (soak) {
    // Traffic for the whole soak: the count bound follows the duration.
    const double seconds = static_cast<double>((options.warmup + options.duration + options.tail).count()) / 1000.0;
    t.max_enrollments = std::max(t.max_enrollments, static_cast<int>(t.rate * seconds) + 1);
  }

  DrillReport report;
  report.scenario = options.scenario;
  report.target = rolling || reload ? "every node" : soak ? "nodes drawn from the seed" : target->id;
  if (soak) report.seed = options.seed;
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
  } else if (reload) {
    std::tie(fault_at, restore_at) = drill.Rotation(&traffic);
  } else if (soak) {
    drill.Soak(soak_scenarios);
    restore_at = run.Now();
  } else {
    std::tie(fault_at, restore_at) = drill.SingleNodeFault(*target);
    report.faults.push_back({options.scenario, target->id, fault_at, restore_at});
  }
  drill.AwaitConvergence(restore_at, rolling || soak || reload);
  run.SetPhase("after");
  std::this_thread::sleep_for(options.tail);
  traffic.Stop();
  run.Note("traffic stopped");

  const std::vector<Sample> samples = traffic.samples();
  if (reload) {
    report.timings.lb_stopped_how = "no node leaves the rotation (a reload is not a restart)";
    report.timings.node_back_how = "no node leaves the rotation (a reload is not a restart)";
  } else if (rolling || soak) {
    report.timings.lb_stopped_how = "per node: see the timeline";
    report.timings.node_back_how = "per node: see the timeline";
  } else {
    drill.MeasureLbTimings(*target, samples, fault_at, restore_at);
  }
  report.verification = Verify(config, t, traffic.acknowledged());
  CountDuplicates(config, t.cn_prefix, traffic.acknowledged(), &report.verification);
  report.events = run.events();
  for (const std::string& phase : run.phases()) {  // each once, in the order first entered
    if (std::find(report.phases.begin(), report.phases.end(), phase) == report.phases.end()) {
      report.phases.push_back(phase);
    }
  }
  report.by_phase = Summarize(samples, report.phases);
  std::tie(report.longest_failure_run, report.longest_failure_run_ms) = LongestFailureRun(samples);
  report.duration_ms = run.Now();
  int64_t interval = options.timeline_interval.count();
  if (interval <= 0 && soak) interval = std::clamp<int64_t>(report.duration_ms / 120, 1'000, 60'000);
  if (interval > 0) report.timeline = Timeline(samples, report.faults, interval, report.duration_ms);
  Judge(options.objectives, &report);
  return report;
}

std::vector<std::string> SoakScenarios(const DrillConfig& config) {
  std::vector<std::string> out;
  auto every = [&](const std::function<bool(const DrillNode&)>& ok) {
    return std::all_of(config.nodes.begin(), config.nodes.end(), ok);
  };
  if (every([](const DrillNode& n) { return (!n.pid_file.empty() || !n.kill_command.empty()) && !n.start.empty(); })) {
    out.push_back("kill");
  }
  if (every([](const DrillNode& n) { return !n.pid_file.empty(); })) out.push_back("freeze");
  if (every([](const DrillNode& n) { return !n.config.empty(); })) {
    for (const char* s : {"partition", "ca-outage", "slow-disk", "link"}) out.push_back(s);
  }
  if (every([](const DrillNode& n) { return !n.clock_command.empty(); })) out.push_back("clock-jump");
  if (!config.ca_slow_command.empty() && !config.ca_restore_command.empty()) out.push_back("ca-slow");
  if (!config.admin_cert.empty()) out.push_back("drain");
  return out;
}

std::vector<PlannedFault> PlanSoak(uint64_t seed, size_t count, const std::vector<std::string>& scenarios,
                                   const std::vector<std::string>& nodes, const DrillOptions& options) {
  std::vector<PlannedFault> plan;
  if (scenarios.empty() || nodes.empty()) return plan;
  // A fixed generator and hand-made draws (not std::uniform_*_distribution, whose results the
  // standard leaves to the library): the same seed gives the same schedule everywhere.
  std::mt19937_64 rng(seed);
  auto draw = [&](uint64_t n) { return n == 0 ? 0 : rng() % n; };
  auto between = [&](std::chrono::milliseconds lo, std::chrono::milliseconds hi) {
    return lo.count() + static_cast<int64_t>(draw(static_cast<uint64_t>(hi.count() - lo.count()) + 1));
  };
  for (size_t i = 0; i < count; ++i) {
    PlannedFault f;
    f.gap_ms = between(options.soak_gap_min, options.soak_gap_max);
    f.scenario = scenarios[draw(scenarios.size())];
    f.target = nodes[draw(nodes.size())];
    f.hold_ms = between(options.soak_hold_min, options.soak_hold_max);
    plan.push_back(std::move(f));
  }
  return plan;
}

}  // namespace adcsc::drill
