#include "tools/adcs-emulator/emulator_config.h"

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "node/config/toml_reader.h"
#include "node/pki/keys.h"

namespace adcsc::emulator {

using adcsc::node::TomlReader;

absl::StatusOr<std::vector<Account>> LoadAccounts(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path.string(), ": cannot read the accounts file"));
  std::vector<Account> accounts;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || text.front() == '#') continue;
    const size_t colon = text.rfind(':');
    const size_t slash = text.find('\\');
    if (colon == absl::string_view::npos || slash == absl::string_view::npos || slash > colon) {
      return absl::InvalidArgumentError(
          absl::StrCat(path.string(), ":", number, ": expected DOMAIN\\user:NTHASH (32 hex digits)"));
    }
    auto hash = ntlm::ParseNtHashHex(std::string(text.substr(colon + 1)));
    if (!hash.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(path.string(), ":", number, ": ", hash.status().message()));
    }
    accounts.push_back(
        {std::string(text.substr(0, slash)), std::string(text.substr(slash + 1, colon - slash - 1)), *hash});
  }
  return accounts;
}

absl::StatusOr<EmulatorConfig> LoadEmulatorConfig(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path.string(), ": cannot read the config file (does it exist?)"));
  std::stringstream text;
  text << in.rdbuf();
  const std::filesystem::path source = std::filesystem::absolute(path);
  toml::table root;
  try {
    root = toml::parse(text.str(), source.string());
  } catch (const toml::parse_error& err) {
    return absl::InvalidArgumentError(absl::StrCat(source.string(), ":", err.source().begin.line,
                                                   ": TOML syntax error: ", std::string(err.description())));
  }
  TomlReader r(source);
  EmulatorConfig c;
  c.source = source;
  r.CheckKnown(root, "", {"emulator", "kerberos", "ca", "permissions", "faults"});
  if (const toml::table* e = r.Table(root, "emulator", "emulator", true)) {
    r.CheckKnown(*e, "emulator.",
                 {"listen", "epm_port", "icpr_port", "dcom_port", "data_dir", "admin_socket", "accounts_file",
                  "netbios_domain", "netbios_computer", "dns_domain", "dns_computer", "max_connections", "ntlm"});
    r.String(*e, "listen", "emulator.listen", &c.listen_address, false);
    r.Int(*e, "epm_port", "emulator.epm_port", &c.epm_port, 0, 65535);
    r.Int(*e, "icpr_port", "emulator.icpr_port", &c.icpr_port, 0, 65535);
    r.Int(*e, "dcom_port", "emulator.dcom_port", &c.dcom_port, 0, 65535);
    r.Path(*e, "data_dir", "emulator.data_dir", &c.data_dir, true);
    r.Path(*e, "admin_socket", "emulator.admin_socket", &c.admin_socket, false);
    r.Path(*e, "accounts_file", "emulator.accounts_file", &c.accounts_file, false);
    r.Bool(*e, "ntlm", "emulator.ntlm", &c.ntlm);
    c.names.netbios_domain = "EXAMPLE";
    c.names.netbios_computer = "CA01";
    r.String(*e, "netbios_domain", "emulator.netbios_domain", &c.names.netbios_domain, false);
    r.String(*e, "netbios_computer", "emulator.netbios_computer", &c.names.netbios_computer, false);
    r.String(*e, "dns_domain", "emulator.dns_domain", &c.names.dns_domain, false);
    r.String(*e, "dns_computer", "emulator.dns_computer", &c.names.dns_computer, false);
    r.Int(*e, "max_connections", "emulator.max_connections", &c.max_connections, 1, 100'000);
  }
  if (c.admin_socket.empty() && !c.data_dir.empty()) c.admin_socket = c.data_dir / "admin.sock";
  if (const toml::table* k = r.Table(root, "kerberos", "kerberos", false)) {
    r.CheckKnown(*k, "kerberos.", {"keytab", "principal", "realm_domain"});
    r.Path(*k, "keytab", "kerberos.keytab", &c.kerberos_keytab, true);
    r.String(*k, "principal", "kerberos.principal", &c.kerberos_principal, false);
    r.String(*k, "realm_domain", "kerberos.realm_domain", &c.kerberos_realm_domain, false);
  }
  if (c.ntlm && c.accounts_file.empty()) {
    r.Error("emulator.accounts_file", "required while emulator.ntlm is true (who may log on with NTLM)");
  }
  if (!c.ntlm && c.kerberos_keytab.empty()) {
    r.Error("emulator.ntlm", "false leaves no way to log on: add a [kerberos] keytab");
  }
  if (const toml::table* ca = r.Table(root, "ca", "ca", true)) {
    r.CheckKnown(*ca, "ca.",
                 {"name", "common_name", "key_type", "default_template", "durable", "enroll", "officers", "templates"});
    r.String(*ca, "name", "ca.name", &c.ca.ca_name, true);
    r.String(*ca, "common_name", "ca.common_name", &c.ca.common_name, false);
    std::string key_type = "p256";
    r.String(*ca, "key_type", "ca.key_type", &key_type, false);
    if (auto kt = adcsc::pki::ParseKeyType(key_type); kt.ok()) {
      c.ca.key_type = *kt;
    } else {
      r.Error("ca.key_type", std::string(kt.status().message()));
    }
    r.String(*ca, "default_template", "ca.default_template", &c.ca.default_template, false);
    r.Bool(*ca, "durable", "ca.durable", &c.ca.durable);
    r.Strings(*ca, "enroll", "ca.enroll", &c.ca_enroll);
    r.Strings(*ca, "officers", "ca.officers", &c.ca_officers);
    adcsc::node::ReadLocalCaTemplates(r, *ca, "templates", "ca.templates", &c.ca);
  }
  c.ca.dir = c.data_dir / "ca";
  if (const toml::node* p = root.get("permissions")) {
    const toml::array* arr = p->as_array();
    if (arr == nullptr) {
      r.Error("permissions", "must be an array of tables ([[permissions]] with template and enroll)");
    } else {
      for (size_t i = 0; i < arr->size(); ++i) {
        const std::string key = absl::StrCat("permissions[", i, "]");
        const toml::table* t = (*arr)[i].as_table();
        if (t == nullptr) {
          r.Error(key, "must be a table");
          continue;
        }
        r.CheckKnown(*t, key + ".", {"template", "enroll"});
        std::string name;
        std::vector<std::string> who;
        r.String(*t, "template", key + ".template", &name, true);
        r.Strings(*t, "enroll", key + ".enroll", &who);
        c.template_enroll.emplace_back(name, who);
      }
    }
  }
  if (const toml::table* f = r.Table(root, "faults", "faults", false)) {
    r.CheckKnown(*f, "faults.",
                 {"latency_ms", "logon_latency_ms", "submit_reply_latency_ms", "failure_rate", "refuse_connections",
                  "fault_after_accept", "drop_after_accept", "drop_admin_after_apply"});
    int64_t latency = 0, logon_latency = 0;
    r.Int(*f, "latency_ms", "faults.latency_ms", &latency, 0, 600'000);
    r.Int(*f, "logon_latency_ms", "faults.logon_latency_ms", &logon_latency, 0, 600'000);
    c.faults.latency = std::chrono::milliseconds(latency);
    c.faults.logon_latency = std::chrono::milliseconds(logon_latency);
    int64_t reply_latency = 0;
    r.Int(*f, "submit_reply_latency_ms", "faults.submit_reply_latency_ms", &reply_latency, 0, 600'000);
    c.faults.submit_reply_latency = std::chrono::milliseconds(reply_latency);
    if (const toml::node* rate = f->get("failure_rate")) {
      if (auto v = rate->value<double>(); v && *v >= 0 && *v <= 1) {
        c.faults.failure_rate = *v;
      } else {
        r.Error("faults.failure_rate", "must be a number from 0 to 1");
      }
    }
    r.Bool(*f, "refuse_connections", "faults.refuse_connections", &c.faults.refuse_connections);
    int64_t fault_after = 0, drop_after = 0;
    r.Int(*f, "fault_after_accept", "faults.fault_after_accept", &fault_after, 0, 1'000'000);
    r.Int(*f, "drop_after_accept", "faults.drop_after_accept", &drop_after, 0, 1'000'000);
    c.faults.fault_after_accept = static_cast<int>(fault_after);
    c.faults.drop_after_accept = static_cast<int>(drop_after);
    int64_t drop_admin = 0;
    r.Int(*f, "drop_admin_after_apply", "faults.drop_admin_after_apply", &drop_admin, 0, 1'000'000);
    c.faults.drop_admin_after_apply = static_cast<int>(drop_admin);
  }
  if (r.ok()) {
    if (auto v = adcsc::ca::ValidateLocalCaOptions(c.ca); !v.ok()) {
      for (absl::string_view line : absl::StrSplit(v.message(), '\n')) r.Error("ca", std::string(line));
    }
    auto accounts = c.accounts_file.empty() ? std::vector<Account>{} : LoadAccounts(c.accounts_file);
    if (!accounts.ok()) {
      r.Error("emulator.accounts_file", std::string(accounts.status().message()));
    } else {
      c.accounts = std::move(*accounts);
    }
  }
  if (!r.ok()) return absl::InvalidArgumentError(r.Joined());
  return c;
}

}  // namespace adcsc::emulator
