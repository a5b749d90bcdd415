// `adcsc node`: run a connector node; `adcsc node restore`: put a store backup back on a
// node whose disk was lost (store/backup.h).
#include <ctime>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "node/app/run_node.h"
#include "node/cli/commands.h"
#include "node/config/config.h"
#include "store/backup.h"

namespace adcsc::cli {

namespace {

struct RestoreArgs {
  std::string config, from;
  bool replace = false;
};

std::string DescribeVector(const adcsc::store::VersionVector& vv) {
  std::vector<std::string> parts;
  for (const auto& [origin, seq] : vv) parts.push_back(absl::StrCat(origin, "=", seq));
  return parts.empty() ? "empty" : absl::StrJoin(parts, " ");
}

int Restore(const RestoreArgs& args) {
  auto config = adcsc::node::LoadConfig(args.config);
  if (!config.ok()) {
    std::cerr << "adcsc node restore: " << config.status().message() << "\n";
    return kExitUsage;
  }
  adcsc::store::RestoreOptions o;
  o.node_id = config->node_id;
  o.complete_from_peers = config->cluster.enabled;
  o.replace = args.replace;
  o.now_ms = static_cast<int64_t>(std::time(nullptr)) * 1000;
  const auto db = config->data_dir / "store.db";
  auto info = adcsc::store::RestoreStore(args.from, db, o);
  if (!info.ok()) {
    std::cerr << "adcsc node restore: " << info.status().message() << "\n";
    const auto code = info.status().code();
    return code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kFailedPrecondition ||
                   code == absl::StatusCode::kAlreadyExists || code == absl::StatusCode::kNotFound ||
                   code == absl::StatusCode::kDataLoss
               ? kExitUsage
               : kExitFailure;
  }
  std::cout << "restored " << args.from << " as " << db.string() << " for node " << config->node_id << ": "
            << info->records << " records, schema " << info->schema_version << ", version vector "
            << DescribeVector(info->version_vector) << "\n"
            << (config->cluster.enabled
                    ? "Start the node: before it serves it copies every record its peers hold and numbers its own "
                      "next writes after theirs (its health says \"copying a peer's snapshot\" until then).\n"
                    : "Start the node. A single node has no peers: what it recorded after the backup is not in it "
                      "(the CA still holds those requests).\n");
  return kExitOk;
}

}  // namespace

void AddNodeCommand(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand("node",
                                 "Run a connector node (HTTPS API for Jamf Pro)\n\n"
                                 "Example:\n  adcsc node --config /etc/adcsc/node.toml\n"
                                 "  adcsc node --config node.toml --check   # validate and exit\n"
                                 "  adcsc node restore --config node.toml --from store-backup.db\n\n"
                                 "Stops cleanly on SIGTERM or SIGINT. Exit codes: 0 stopped cleanly, 1 runtime\n"
                                 "failure (store, CA), 2 configuration error (every problem is listed).");
  auto config = std::make_shared<std::string>();
  auto check = std::make_shared<bool>(false);
  cmd->add_option("--config,-c", *config, "Node configuration file (TOML)");
  cmd->add_flag("--check", *check, "Validate the configuration and the files it names, then exit");

  auto r = std::make_shared<RestoreArgs>();
  auto* restore = cmd->add_subcommand(
      "restore",
      "Put a backup (adcsc ctl backup) in place as this node's store, after its disk was lost.\n"
      "Stop the node first. The backup must be this node's (its node_id); an existing store is\n"
      "refused unless --replace (then it is moved aside, never deleted). In a cluster the restored\n"
      "store is completed from the peers when the node starts: every record written after the\n"
      "backup comes back, and its own next writes are numbered after every one they hold.\n\n"
      "Example:\n  systemctl stop adcsc-node\n"
      "  adcsc node restore --config /etc/adcsc/node.toml --from /backup/adcsc-node-c.db\n"
      "  systemctl start adcsc-node\n\n"
      "Exit codes: 0 restored, 1 a file could not be written, 2 a usage, configuration or backup\n"
      "problem (not a backup, damaged, another node's, a store already there).");
  restore->add_option("--config,-c", r->config, "This node's configuration (node_id, node.data_dir)")->required();
  restore->add_option("--from", r->from, "The backup file")->required();
  restore->add_flag("--replace", r->replace,
                    "Move an existing store aside (store.db.replaced-<ms>) instead of refusing");
  restore->callback([=] { *exit_code = Restore(*r); });

  cmd->callback([=] {
    if (restore->parsed()) return;
    if (config->empty()) {
      std::cerr << "adcsc node: --config is required (adcsc node --config /etc/adcsc/node.toml)\n";
      *exit_code = kExitUsage;
      return;
    }
    *exit_code = adcsc::node::RunNode(*config, *check);
  });
}

}  // namespace adcsc::cli
