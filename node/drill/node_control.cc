#include "node/drill/node_control.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "nlohmann/json.hpp"
#include "node/client/https_client.h"
#include "node/cluster/fault_client.h"
#include "node/config/config.h"
#include "node/ops/admin_client.h"

extern char** environ;

namespace adcsc::drill {

bool Alive(int pid) {
  if (kill(pid, 0) != 0) return false;
  // A killed process whose parent has not reaped it yet is a zombie: gone for our purposes.
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');
  if (close == std::string::npos || close + 2 >= text.size()) return true;
  const char state = text[close + 2];
  return state != 'Z' && state != 'X';
}

absl::StatusOr<int> ReadLivePid(const std::filesystem::path& pid_file) {
  if (pid_file.empty()) return absl::FailedPreconditionError("no pid_file in the drill file for this node");
  std::ifstream in(pid_file);
  std::string text;
  if (!in || !std::getline(in, text)) {
    return absl::NotFoundError(absl::StrCat(pid_file.string(), ": cannot read (is the node running?)"));
  }
  int pid = 0;
  if (!absl::SimpleAtoi(text, &pid) || pid <= 1) {
    return absl::InvalidArgumentError(absl::StrCat(pid_file.string(), ": not a process ID: \"", text, "\""));
  }
  if (!Alive(pid)) {
    return absl::NotFoundError(absl::StrCat(pid_file.string(), ": process ", pid, " is not running"));
  }
  return pid;
}

namespace {

// Waits (bounded) for `pid` to be gone; it may not be our child, so poll.
bool WaitGone(int pid, std::chrono::milliseconds bound) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (Alive(pid)) {
    int status = 0;
    waitpid(pid, &status, WNOHANG);  // reaps it if it is our child
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// Runs `argv` (stdout to /dev/null, stderr inherited) and waits, at most 60 s, for it to exit 0.
absl::Status RunCommand(const std::vector<std::string>& command, const std::string& what) {
  std::vector<char*> argv;
  for (const std::string& a : command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return absl::InternalError(absl::StrCat("cannot run ", command[0], ": ", strerror(rc)));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return absl::DeadlineExceededError(
          absl::StrCat(what, " did not return within 60 s: ", absl::StrJoin(command, " ")));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(
        absl::StrCat(what, " failed (status ", WEXITSTATUS(status), "): ", absl::StrJoin(command, " ")));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ProcessControl::Kill(const DrillNode& node) {
  if (!node.kill_command.empty()) return RunCommand(node.kill_command, "the kill command for " + node.id);
  auto pid = ReadLivePid(node.pid_file);
  if (!pid.ok()) return pid.status();
  if (kill(*pid, SIGKILL) != 0) return absl::InternalError(absl::StrCat("kill -9 ", *pid, ": ", strerror(errno)));
  if (!WaitGone(*pid, std::chrono::seconds(10))) {
    return absl::DeadlineExceededError(absl::StrCat("process ", *pid, " still there 10 s after SIGKILL"));
  }
  return absl::OkStatus();
}

absl::Status ProcessControl::ApplyConfig(const DrillNode& node, const std::string& text) {
  if (node.config.empty()) return absl::FailedPreconditionError("no config in the drill file for node " + node.id);
  std::error_code ec;
  const auto mode = std::filesystem::status(node.config, ec).permissions();
  if (ec) return absl::NotFoundError(absl::StrCat(node.config.string(), ": ", ec.message()));
  const std::filesystem::path tmp = node.config.string() + ".drill-tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.close();
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", tmp.string()));
  }
  std::filesystem::permissions(tmp, mode, ec);
  std::filesystem::rename(tmp, node.config, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot replace ", node.config.string(), ": ", ec.message()));
  std::vector<std::string> command = node.reload_command;
  if (command.empty()) {
    // This binary's `adcsc ctl reload`: for a node on this host.
    const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (ec) return absl::InternalError("cannot find this binary (/proc/self/exe) to run adcsc ctl reload");
    command = {self.string(), "ctl", "reload", "--config", node.config.string()};
  }
  return RunCommand(command, "the reload of " + node.id);
}

absl::StatusOr<int> ProcessControl::ApiStatusAs(const DrillNode& node, const std::filesystem::path& cert,
                                                const std::filesystem::path& key) {
  node::HttpsClientOptions o;
  o.url = node.api_url;
  o.cert_file = cert;
  o.key_file = key;
  o.server_ca_file = config_.server_ca;
  o.keep_alive = false;
  o.timeout = std::chrono::seconds(5);
  auto client = node::HttpsClient::Create(o);
  if (!client.ok()) return client.status();
  auto answer = (*client)->Get("/api/v1/version");
  if (!answer.ok()) return answer.status();
  return answer->status;
}

absl::Status ProcessControl::SetCaSlow(bool slow) {
  const std::vector<std::string>& command = slow ? config_.ca_slow_command : config_.ca_restore_command;
  if (command.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("no ca.", slow ? "slow" : "restore", "_command in ", config_.source.string()));
  }
  return RunCommand(command, slow ? "ca.slow_command" : "ca.restore_command");
}

absl::Status ProcessControl::Freeze(const DrillNode& node) {
  auto pid = ReadLivePid(node.pid_file);
  if (!pid.ok()) return pid.status();
  if (kill(*pid, SIGSTOP) != 0) return absl::InternalError(absl::StrCat("kill -STOP ", *pid, ": ", strerror(errno)));
  return absl::OkStatus();
}

absl::Status ProcessControl::Thaw(const DrillNode& node) {
  auto pid = ReadLivePid(node.pid_file);
  if (!pid.ok()) return pid.status();
  if (kill(*pid, SIGCONT) != 0) return absl::InternalError(absl::StrCat("kill -CONT ", *pid, ": ", strerror(errno)));
  return absl::OkStatus();
}

absl::Status ProcessControl::Stop(const DrillNode& node, std::chrono::milliseconds grace) {
  if (!node.stop_command.empty()) return RunCommand(node.stop_command, "the stop command for " + node.id);
  auto pid = ReadLivePid(node.pid_file);
  if (!pid.ok()) return pid.status();
  if (kill(*pid, SIGTERM) != 0) return absl::InternalError(absl::StrCat("kill -TERM ", *pid, ": ", strerror(errno)));
  if (!WaitGone(*pid, grace)) {
    return absl::DeadlineExceededError(
        absl::StrCat("node ", node.id, " (process ", *pid, ") did not stop within ", grace.count(), " ms of SIGTERM"));
  }
  return absl::OkStatus();
}

absl::Status ProcessControl::Start(const DrillNode& node) {
  if (node.start.empty())
    return absl::FailedPreconditionError("no start command in the drill file for node " + node.id);
  return RunCommand(node.start, "the start command for " + node.id);
}

absl::Status ProcessControl::SetMode(const DrillNode& node, const std::string& mode) {
  if (config_.admin_cert.empty()) {
    return absl::FailedPreconditionError("drain and resume need an [admin] section (cert_file, key_file, ca_file)");
  }
  if (node.ops_url.empty()) return absl::FailedPreconditionError("no ops URL in the drill file for node " + node.id);
  auto answer = ops::SetServiceMode({node.ops_url, config_.admin_cert, config_.admin_key, config_.ops_ca}, mode);
  return answer.ok() ? absl::OkStatus() : answer.status();
}

absl::Status ProcessControl::SetFault(const DrillNode& node, const cluster::FaultChange& change) {
  if (node.config.empty()) {
    return absl::FailedPreconditionError("fault injection needs the node's config file (config = ...) for " + node.id);
  }
  auto config = node::LoadConfig(node.config);
  if (!config.ok()) return config.status();
  auto state = cluster::SetNodeFault(*config, change);
  return state.ok() ? absl::OkStatus() : state.status();
}

absl::Status ProcessControl::SetClockOffset(const DrillNode& node, int64_t offset_s) {
  if (node.clock_command.empty()) {
    return absl::FailedPreconditionError("no clock command in the drill file for node " + node.id);
  }
  const std::string offset = absl::StrCat(offset_s < 0 ? "-" : "+", offset_s < 0 ? -offset_s : offset_s);
  std::vector<std::string> command = node.clock_command;
  for (std::string& a : command) a = absl::StrReplaceAll(a, {{"{offset}", offset}});
  return RunCommand(command, "the clock command for " + node.id);
}

NodeProbe ProcessControl::Probe(const DrillNode& node) {
  NodeProbe probe;
  if (node.ops_url.empty()) return probe;
  node::HttpsClientOptions o;
  o.url = node.ops_url;
  o.server_ca_file = config_.ops_ca.empty() ? config_.server_ca : config_.ops_ca;
  // /status shows the node's version vector only to an administrator's certificate.
  o.cert_file = config_.admin_cert;
  o.key_file = config_.admin_key;
  o.keep_alive = true;
  o.timeout = std::chrono::seconds(2);
  auto client = node::HttpsClient::Create(o);
  if (!client.ok()) return probe;
  auto ready = (*client)->Get("/health/ready");
  if (!ready.ok()) return probe;
  probe.answered = true;
  probe.ready = ready->status == 200;
  auto status = (*client)->Get("/status");
  if (!status.ok() || status->status != 200) return probe;
  const auto j = nlohmann::json::parse(status->body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("cluster")) return probe;
  const auto& c = j["cluster"];
  if (!c.contains("versionVector") || !c["versionVector"].is_object()) return probe;
  probe.has_vector = true;
  const auto& entries = c["versionVector"].value("entries", nlohmann::json::object());
  for (const auto& [origin, seq] : entries.items()) {
    uint64_t n = 0;
    // Protobuf's JSON writes 64-bit integers as strings.
    if (seq.is_string() ? absl::SimpleAtoi(seq.get<std::string>(), &n) : seq.is_number_unsigned()) {
      if (!seq.is_string()) n = seq.get<uint64_t>();
      probe.version_vector[origin] = n;
    }
  }
  return probe;
}

}  // namespace adcsc::drill
