// `adcsc pki`: create the connector's TLS identities (the equivalent of the original
// connector's installer).
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "node/cli/commands.h"
#include "node/pki/bootstrap.h"
#include "node/pki/cluster.h"
#include "node/pki/keys.h"

namespace adcsc::cli {
namespace {

struct PkiInitArgs {
  std::string fqdn, jamf_pro_dn, out, key_type = "p256", password_file;
  int client_years = 10, server_years = 10;
  bool force = false;
};

int RunPkiInit(const PkiInitArgs& a) {
  adcsc::pki::PkiInitOptions o;
  o.fqdn = a.fqdn;
  o.jamf_pro_dn = a.jamf_pro_dn;
  o.out_dir = a.out;
  o.client_years = a.client_years;
  o.server_years = a.server_years;
  o.password_file = a.password_file;
  o.force = a.force;
  auto kt = adcsc::pki::ParseKeyType(a.key_type);
  if (!kt.ok()) {
    std::cerr << "adcsc pki init: --key-type: " << kt.status().message() << "\n";
    return kExitUsage;
  }
  o.key_type = *kt;
  auto r = adcsc::pki::InitConnectorPki(o);
  if (!r.ok()) {
    std::cerr << "adcsc pki init: " << r.status().message() << "\n";
    return r.status().code() == absl::StatusCode::kAlreadyExists ? kExitUsage : kExitFailure;
  }
  std::cout << "Wrote:\n";
  for (const auto& f : r->files) std::cout << "  " << f.string() << "\n";
  std::cout << "\nClient certificate pin (put it in api.client_pins of every node):\n  " << r->client_pin << "\n";
  std::cout << "\nUpload to Jamf Pro (Settings > PKI Certificates > ADCS connector):\n"
            << "  server certificate:  " << (std::filesystem::path(a.out) / adcsc::pki::kServerCertDerFile).string()
            << "\n  client identity:     " << (std::filesystem::path(a.out) / adcsc::pki::kClientPfxFile).string()
            << "\n";
  if (a.password_file.empty()) {
    std::cout << "\n!!! Client identity (client-cert.pfx) password, shown only this once:\n  " << r->client_password
              << "\n";
  } else {
    std::cout << "\nThe client-cert.pfx password is in " << a.password_file << " (mode 0600).\n";
  }
  std::cout << "\nNode config snippet:\n"
            << "  [api]\n"
            << "  cert_file = \"" << (std::filesystem::path(a.out) / adcsc::pki::kServerCertPemFile).string() << "\"\n"
            << "  key_file = \"" << (std::filesystem::path(a.out) / adcsc::pki::kServerKeyFile).string() << "\"\n"
            << "  client_ca_file = \"" << (std::filesystem::path(a.out) / adcsc::pki::kServerCertPemFile).string()
            << "\"\n"
            << "  client_pins = [\"" << r->client_pin << "\"]\n";
  return kExitOk;
}

struct PkiClusterArgs {
  std::string cluster_id = "adcsc", nodes, out, key_type = "p256";
  int years = 10;
  bool force = false, new_ca = false;
};

int RunPkiCluster(const PkiClusterArgs& a) {
  adcsc::pki::ClusterPkiOptions o;
  o.cluster_id = a.cluster_id;
  for (absl::string_view n : absl::StrSplit(a.nodes, ',', absl::SkipWhitespace())) {
    o.node_ids.emplace_back(absl::StripAsciiWhitespace(n));
  }
  o.out_dir = a.out;
  o.years = a.years;
  o.force = a.force;
  o.new_ca = a.new_ca;
  auto kt = adcsc::pki::ParseKeyType(a.key_type);
  if (!kt.ok()) {
    std::cerr << "adcsc pki cluster: --key-type: " << kt.status().message() << "\n";
    return kExitUsage;
  }
  o.key_type = *kt;
  auto r = adcsc::pki::InitClusterPki(o);
  if (!r.ok()) {
    std::cerr << "adcsc pki cluster: " << r.status().message() << "\n";
    const auto code = r.status().code();
    return code == absl::StatusCode::kAlreadyExists || code == absl::StatusCode::kInvalidArgument ? kExitUsage
                                                                                                  : kExitFailure;
  }
  if (r->reused_ca) std::cout << "Using the existing cluster CA in " << a.out << "\n";
  std::cout << "Wrote:\n";
  for (const auto& f : r->files) std::cout << "  " << f.string() << "\n";
  std::cout << "\nCopy cluster-ca.pem and <node>/node.pem + node-key.pem to each node. Keep\n"
            << "cluster-ca-key.pem offline: it is needed only to add or replace a node.\n";
  return kExitOk;
}

}  // namespace

void AddPkiCommand(CLI::App& app, int* exit_code) {
  auto* pki = app.add_subcommand("pki", "Create TLS identities for the connector");
  pki->require_subcommand(1);
  auto args = std::make_shared<PkiInitArgs>();
  auto* init = pki->add_subcommand(
      "init",
      "Create the server identity and the Jamf Pro client identity (like the original installer)\n\n"
      "Example:\n"
      "  adcsc pki init --fqdn adcsc.example.com --jamf-pro-dn jamf.example.com --out /etc/adcsc/pki\n\n"
      "Writes adcs-proxy-ca.cer (DER, upload to Jamf Pro), adcs-proxy-ca.pem, server-key.pem (0600),\n"
      "client-cert.pfx (0600, upload to Jamf Pro with the printed password), client-cert.pem and\n"
      "client-cert.pin. Refuses to overwrite existing files unless --force.");
  init->add_option("--fqdn", args->fqdn, "The connector's DNS name as Jamf Pro reaches it (the load balancer VIP name)")
      ->required();
  init->add_option("--jamf-pro-dn", args->jamf_pro_dn, "Jamf Pro's host name (the client certificate's CN)")
      ->required();
  init->add_option("--out", args->out, "Output directory (created with mode 0700)")->required();
  init->add_option("--client-years", args->client_years, "Client certificate validity in years")
      ->capture_default_str()
      ->check(CLI::Range(1, 50));
  init->add_option("--server-years", args->server_years, "Server certificate validity in years")
      ->capture_default_str()
      ->check(CLI::Range(1, 50));
  init->add_option("--key-type", args->key_type, "Key type for both identities: p256, p384, rsa2048, rsa3072")
      ->capture_default_str();
  init->add_option("--password-file", args->password_file,
                   "Also write the PKCS#12 password to this file (mode 0600) instead of printing it");
  init->add_flag("--force", args->force, "Overwrite existing files");
  init->callback([=] { *exit_code = RunPkiInit(*args); });

  auto cargs = std::make_shared<PkiClusterArgs>();
  auto* cluster = pki->add_subcommand(
      "cluster",
      "Create the cluster CA and one mutual-TLS certificate per node (node-to-node gRPC)\n\n"
      "Example:\n"
      "  adcsc pki cluster --cluster-id prod --nodes a,b,c --out /etc/adcsc/cluster\n"
      "  adcsc pki cluster --cluster-id prod --nodes d --out /etc/adcsc/cluster   # add a node later\n\n"
      "Writes cluster-ca.pem, cluster-ca-key.pem (0600; reused when present) and for each node\n"
      "<node>/node.pem and <node>/node-key.pem (0600). Each certificate names\n"
      "<node>.<cluster-id>.adcsc-cluster; nodes accept a peer only under the name they expect.");
  cluster->add_option("--cluster-id", cargs->cluster_id, "Cluster ID (lowercase letters, digits, '-')")
      ->capture_default_str();
  cluster->add_option("--nodes", cargs->nodes, "Node IDs, comma-separated (as in each node's node.id)")->required();
  cluster->add_option("--out", cargs->out, "Output directory (created with mode 0700)")->required();
  cluster->add_option("--years", cargs->years, "Validity in years")->capture_default_str()->check(CLI::Range(1, 50));
  cluster->add_option("--key-type", cargs->key_type, "p256, p384, rsa2048, rsa3072")->capture_default_str();
  cluster->add_flag("--force", cargs->force, "Overwrite existing node files");
  cluster->add_flag("--new-ca", cargs->new_ca, "Make a new cluster CA even if one is present");
  cluster->callback([=] { *exit_code = RunPkiCluster(*cargs); });
}

}  // namespace adcsc::cli
