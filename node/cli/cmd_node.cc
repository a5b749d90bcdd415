// `adcsc node`: run a connector node.
#include "node/app/run_node.h"
#include "node/cli/commands.h"

namespace adcsc::cli {

void AddNodeCommand(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand("node",
                                 "Run a connector node (HTTPS API for Jamf Pro)\n\n"
                                 "Example:\n  adcsc node --config /etc/adcsc/node.toml\n"
                                 "  adcsc node --config node.toml --check   # validate and exit\n\n"
                                 "Stops cleanly on SIGTERM or SIGINT. Exit codes: 0 stopped cleanly, 1 runtime\n"
                                 "failure (store, CA), 2 configuration error (every problem is listed).");
  auto config = std::make_shared<std::string>();
  auto check = std::make_shared<bool>(false);
  cmd->add_option("--config,-c", *config, "Node configuration file (TOML)")->required();
  cmd->add_flag("--check", *check, "Validate the configuration and the files it names, then exit");
  cmd->callback([=] { *exit_code = adcsc::node::RunNode(*config, *check); });
}

}  // namespace adcsc::cli
