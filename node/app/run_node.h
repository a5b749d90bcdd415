// `adcsc node`: wires config, logs, the request store, the CA backend and the HTTPS server
// together and runs until SIGTERM/SIGINT. Called once from main().
#pragma once

#include <filesystem>

namespace adcsc::node {

// Exit codes of `adcsc node` (documented in docs/configuration.md).
inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntimeError = 1;
inline constexpr int kExitConfigError = 2;

// Loads the config, starts the node and blocks until a stop signal. On SIGTERM/SIGINT it
// stops accepting, lets in-flight requests finish within api.shutdown_grace_ms and
// returns kExitOk. `check_only`: validate the config and the files it names, then return.
int RunNode(const std::filesystem::path& config_path, bool check_only);

}  // namespace adcsc::node
