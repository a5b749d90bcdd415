// adcs-emulator: an ADCS CA stand-in (endpoint mapper + MS-ICPR) for tests, the quickstart and
// drills. See emulator.h for what it emulates, docs/adcs.md for the real thing.
#include <signal.h>

#include <fstream>
#include <iostream>

#include "CLI/CLI.hpp"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "node/ntlm/ntlm.h"
#include "tools/adcs-emulator/admin.h"
#include "tools/adcs-emulator/emulator.h"

namespace {

constexpr int kExitOk = 0, kExitFailure = 1, kExitConfig = 2;

int Run(const std::string& config_path, const std::string& ready_file) {
  auto config = adcsc::emulator::LoadEmulatorConfig(config_path);
  if (!config.ok()) {
    std::cerr << "adcs-emulator: " << config.status().message() << "\n";
    return kExitConfig;
  }
  // Signals are taken by sigwait below, not by whichever thread they land on.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const std::filesystem::path admin_socket = config->admin_socket;
  std::error_code ec;
  std::filesystem::create_directories(config->data_dir, ec);
  std::filesystem::permissions(config->data_dir, std::filesystem::perms::owner_all, ec);
  adcsc::emulator::Emulator emulator(std::move(*config));
  if (auto s = emulator.Start(); !s.ok()) {
    std::cerr << "adcs-emulator: " << s.message() << "\n";
    return kExitFailure;
  }
  auto admin = adcsc::emulator::AdminServer::Start(emulator, admin_socket);
  if (!admin.ok()) {
    std::cerr << "adcs-emulator: admin socket: " << admin.status().message() << "\n";
    return kExitFailure;
  }
  const std::string ready = nlohmann::ordered_json{
      {"event", "ready"},
      {"epm_port", emulator.epm_port()},
      {"icpr_port", emulator.icpr_port()},
      {"dcom_port", emulator.dcom_port()},
      {"admin_socket",
       admin_socket.string()}}.dump();
  std::cout << ready << std::endl;
  if (!ready_file.empty()) {
    const std::string tmp = ready_file + ".tmp";
    std::ofstream(tmp) << ready << "\n";
    std::filesystem::rename(tmp, ready_file, ec);
  }
  int sig = 0;
  sigwait(&signals, &sig);
  admin->reset();
  emulator.Stop();
  std::cout << nlohmann::ordered_json{{"event", "stopped"}, {"signal", sig}}.dump() << std::endl;
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"adcs-emulator: an ADCS certification authority stand-in speaking MS-ICPR (for tests and drills)"};
  app.require_subcommand(1);
  app.footer(
      "Examples:\n"
      "  adcs-emulator run --config emulator.toml\n"
      "  adcs-emulator ctl --config emulator.toml approve --id 7\n"
      "  adcs-emulator ctl --socket run/emulator/admin.sock set latency_ms 200\n"
      "  adcs-emulator nt-hash --password-file svc.pass\n"
      "Exit status: 0 success, 1 failure, 2 bad configuration or arguments.");

  std::string config_path, ready_file;
  auto* run = app.add_subcommand("run", "Serve the endpoint mapper and ICertPassage until SIGTERM or Ctrl-C");
  run->add_option("--config", config_path, "Emulator configuration (TOML)")->required();
  run->add_option("--ready-file", ready_file, "Also write the ready line (JSON with the ports) to this file");

  std::string socket_path, ctl_config;
  auto* ctl = app.add_subcommand("ctl", "Administer a running emulator (like certsrv.msc: approve, deny, list)");
  ctl->add_option("--socket", socket_path, "Admin socket of the emulator");
  ctl->add_option("--config", ctl_config, "Or: the emulator's configuration, to find its admin socket");
  ctl->require_subcommand(1);
  uint32_t id = 0;
  auto* approve = ctl->add_subcommand("approve", "Issue a pending request");
  approve->add_option("--id", id, "Request ID")->required();
  auto* deny = ctl->add_subcommand("deny", "Deny a pending request");
  deny->add_option("--id", id, "Request ID")->required();
  ctl->add_subcommand("list", "List every request");
  ctl->add_subcommand("stats", "Counters (calls, submits, refused calls) and fault knobs");
  std::string key, value;
  auto* set = ctl->add_subcommand("set",
                                  "Change a knob: latency_ms N, logon_latency_ms N, submit_reply_latency_ms N, "
                                  "failure_rate 0..1, refuse_connections true|false, fault_after_accept N, "
                                  "drop_after_accept N (the next N submits are taken, then their answer is lost), "
                                  "drop_admin_after_apply N (the next N approve/deny/revoke admin calls are carried "
                                  "out, then their answer is lost)");
  set->add_option("key", key)->required();
  set->add_option("value", value)->required();

  std::string password_file;
  auto* hash = app.add_subcommand("nt-hash", "Print the NT hash of a password (for the accounts file)");
  hash->add_option("--password-file", password_file, "File whose first line is the password")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitConfig;
  }

  if (run->parsed()) return Run(config_path, ready_file);
  if (hash->parsed()) {
    std::ifstream in(password_file);
    std::string password;
    if (!in || !std::getline(in, password)) {
      std::cerr << "adcs-emulator: cannot read " << password_file << "\n";
      return kExitConfig;
    }
    auto h = adcsc::ntlm::NtHash(password);
    if (!h.ok()) {
      std::cerr << "adcs-emulator: " << h.status().message() << "\n";
      return kExitFailure;
    }
    for (uint8_t b : *h) std::cout << absl::StrFormat("%02x", b);
    std::cout << "\n";
    return kExitOk;
  }
  // ctl
  if (socket_path.empty()) {
    if (ctl_config.empty()) {
      std::cerr << "adcs-emulator ctl: give --socket or --config\n";
      return kExitConfig;
    }
    auto c = adcsc::emulator::LoadEmulatorConfig(ctl_config);
    if (!c.ok()) {
      std::cerr << "adcs-emulator: " << c.status().message() << "\n";
      return kExitConfig;
    }
    socket_path = c->admin_socket.string();
  }
  std::string command;
  if (approve->parsed()) command = "approve " + std::to_string(id);
  if (deny->parsed()) command = "deny " + std::to_string(id);
  if (ctl->got_subcommand("list")) command = "list";
  if (ctl->got_subcommand("stats")) command = "stats";
  if (set->parsed()) command = "set " + key + " " + value;
  auto reply = adcsc::emulator::SendAdminCommand(socket_path, command);
  if (!reply.ok()) {
    std::cerr << "adcs-emulator ctl: " << reply.status().message() << "\n";
    return kExitFailure;
  }
  std::cout << *reply << "\n";
  auto parsed = nlohmann::json::parse(*reply, nullptr, false);
  return !parsed.is_discarded() && parsed.value("ok", false) ? kExitOk : kExitFailure;
}
