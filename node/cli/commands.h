// The `adcsc` command line: each file adds one subcommand to the CLI11 app and runs it.
// Exit codes (all commands): 0 success, 1 runtime failure, 2 usage or configuration error,
// 3 the server answered with an HTTP error (client commands).
#pragma once

#include <CLI/CLI.hpp>

namespace adcsc::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitHttpError = 3;
// `adcsc ctl status`: every node answered, but one reports a certificate critical or expired.
inline constexpr int kExitCertificateAttention = 4;

// Each Add* registers a subcommand whose callback stores its exit code in *exit_code.
void AddNodeCommand(CLI::App& app, int* exit_code);
void AddPkiCommand(CLI::App& app, int* exit_code);
void AddClientCommand(CLI::App& app, int* exit_code);
void AddCtlCommand(CLI::App& app, int* exit_code);
// `adcsc ctl revoke|approve|deny|ca-info` (cmd_ca_admin.cc), added to the ctl subcommand.
void AddCaAdminCommands(CLI::App* ctl, int* exit_code);
void AddDrillCommand(CLI::App& app, int* exit_code);

}  // namespace adcsc::cli
