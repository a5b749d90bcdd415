#include "node/drill/drill_config.h"

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "node/config/toml_reader.h"

namespace adcsc::drill {

const DrillNode* DrillConfig::Find(const std::string& id) const {
  for (const DrillNode& n : nodes) {
    if (n.id == id) return &n;
  }
  return nullptr;
}

absl::StatusOr<DrillConfig> ParseDrillConfig(std::string_view toml_text, const std::filesystem::path& source) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source.string());
  } catch (const toml::parse_error& err) {
    return absl::InvalidArgumentError(absl::StrCat(source.string(), ":", err.source().begin.line, ":",
                                                   err.source().begin.column,
                                                   ": TOML syntax error: ", adcsc::pki::AbslView(err.description())));
  }
  node::TomlReader r(source);
  DrillConfig c;
  c.source = source;
  r.CheckKnown(root, "", {"lb", "client", "admin", "ca", "reload", "node"});
  auto https_url = [&](const std::string& url, const std::string& key) {
    if (!url.empty() && !absl::StartsWith(url, "https://")) r.Error(key, "must be an https:// URL");
  };
  if (const toml::table* lb = r.Table(root, "lb", "lb", true)) {
    r.CheckKnown(*lb, "lb.", {"url", "mode", "haproxy_stats_socket", "haproxy_backend"});
    r.String(*lb, "url", "lb.url", &c.lb_url, true);
    https_url(c.lb_url, "lb.url");
    r.String(*lb, "mode", "lb.mode", &c.lb_mode, false);
    if (c.lb_mode != "tls-termination" && c.lb_mode != "tcp") r.Error("lb.mode", "use \"tls-termination\" or \"tcp\"");
    r.Path(*lb, "haproxy_stats_socket", "lb.haproxy_stats_socket", &c.haproxy_stats_socket, false);
    r.String(*lb, "haproxy_backend", "lb.haproxy_backend", &c.haproxy_backend, false);
  }
  if (const toml::table* client = r.Table(root, "client", "client", true)) {
    r.CheckKnown(*client, "client.", {"cert_file", "key_file", "ca_file"});
    r.Path(*client, "cert_file", "client.cert_file", &c.client_cert, true);
    r.Path(*client, "key_file", "client.key_file", &c.client_key, true);
    r.Path(*client, "ca_file", "client.ca_file", &c.server_ca, true);
  }
  if (const toml::table* admin = r.Table(root, "admin", "admin", false)) {
    r.CheckKnown(*admin, "admin.", {"cert_file", "key_file", "ca_file"});
    r.Path(*admin, "cert_file", "admin.cert_file", &c.admin_cert, true);
    r.Path(*admin, "key_file", "admin.key_file", &c.admin_key, true);
    r.Path(*admin, "ca_file", "admin.ca_file", &c.ops_ca, true);
  }
  if (const toml::table* ca = r.Table(root, "ca", "ca", true)) {
    r.CheckKnown(*ca, "ca.", {"dc", "ca", "template", "list_command", "slow_command", "restore_command"});
    r.String(*ca, "dc", "ca.dc", &c.dc, true);
    r.String(*ca, "ca", "ca.ca", &c.ca, true);
    r.String(*ca, "template", "ca.template", &c.template_name, false);
    r.Strings(*ca, "list_command", "ca.list_command", &c.ca_list_command);
    r.Strings(*ca, "slow_command", "ca.slow_command", &c.ca_slow_command);
    r.Strings(*ca, "restore_command", "ca.restore_command", &c.ca_restore_command);
  }
  if (const toml::table* reload = r.Table(root, "reload", "reload", false)) {
    r.CheckKnown(*reload, "reload.", {"client_cert_file", "client_key_file"});
    r.Path(*reload, "client_cert_file", "reload.client_cert_file", &c.reload_client_cert, true);
    r.Path(*reload, "client_key_file", "reload.client_key_file", &c.reload_client_key, true);
  }
  const toml::node* nodes = root.get("node");
  const toml::array* arr = nodes ? nodes->as_array() : nullptr;
  if (arr == nullptr || arr->empty()) {
    r.Error("node", "at least one [[node]] entry is required");
  } else {
    std::set<std::string> seen;
    for (size_t i = 0; i < arr->size(); ++i) {
      const std::string key = absl::StrCat("node[", i, "]");
      const toml::table* t = (*arr)[i].as_table();
      if (t == nullptr) {
        r.Error(key, "must be a table ([[node]])");
        continue;
      }
      r.CheckKnown(*t, key + ".",
                   {"id", "api", "ops", "config", "pid_file", "kill", "stop", "start", "lb_server", "clock",
                    "reload_overlap", "reload_final", "reload"});
      DrillNode n;
      r.String(*t, "id", key + ".id", &n.id, true);
      r.String(*t, "api", key + ".api", &n.api_url, true);
      https_url(n.api_url, key + ".api");
      r.String(*t, "ops", key + ".ops", &n.ops_url, false);
      https_url(n.ops_url, key + ".ops");
      r.Path(*t, "config", key + ".config", &n.config, false);
      r.Path(*t, "pid_file", key + ".pid_file", &n.pid_file, false);
      r.Strings(*t, "kill", key + ".kill", &n.kill_command);
      r.Strings(*t, "stop", key + ".stop", &n.stop_command);
      r.Strings(*t, "start", key + ".start", &n.start);
      r.String(*t, "lb_server", key + ".lb_server", &n.lb_server, false);
      r.Strings(*t, "clock", key + ".clock", &n.clock_command);
      r.Path(*t, "reload_overlap", key + ".reload_overlap", &n.reload_overlap, false);
      r.Path(*t, "reload_final", key + ".reload_final", &n.reload_final, false);
      r.Strings(*t, "reload", key + ".reload", &n.reload_command);
      if (n.reload_overlap.empty() != n.reload_final.empty()) {
        r.Error(key + (n.reload_overlap.empty() ? ".reload_overlap" : ".reload_final"),
                "reload_overlap and reload_final go together (the two configurations of a rotation)");
      }
      if (!n.clock_command.empty()) {
        bool has_offset = false;
        for (const std::string& a : n.clock_command) has_offset |= absl::StrContains(a, "{offset}");
        if (!has_offset) r.Error(key + ".clock", "must contain \"{offset}\" (the offset in seconds, e.g. +300)");
      }
      if (n.lb_server.empty()) n.lb_server = n.id;
      if (!n.id.empty() && !seen.insert(n.id).second) r.Error(key + ".id", "\"" + n.id + "\" is listed twice");
      c.nodes.push_back(std::move(n));
    }
  }
  if (!r.ok()) return absl::InvalidArgumentError(r.Joined());
  return c;
}

absl::StatusOr<DrillConfig> LoadDrillConfig(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path.string(), ": cannot read the drill file (does it exist?)"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseDrillConfig(ss.str(), std::filesystem::absolute(path));
}

}  // namespace adcsc::drill
