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

struct PkiRotateArgs {
  std::string from, out, jamf_pro_dn, key_type = "p256", password_file;
  int client_years = 10, server_years = 10, overlap_days = 14;
  bool new_server_key = false;
};

int RunPkiRotate(const PkiRotateArgs& a) {
  adcsc::pki::PkiRotateOptions o;
  o.from_dir = a.from;
  o.out_dir = a.out;
  o.jamf_pro_dn = a.jamf_pro_dn;
  o.client_years = a.client_years;
  o.server_years = a.server_years;
  o.overlap_days = a.overlap_days;
  o.new_server_key = a.new_server_key;
  o.password_file = a.password_file;
  auto kt = adcsc::pki::ParseKeyType(a.key_type);
  if (!kt.ok()) {
    std::cerr << "adcsc pki rotate: --key-type: " << kt.status().message() << "\n";
    return kExitUsage;
  }
  o.key_type = *kt;
  auto r = adcsc::pki::RotateConnectorPki(o);
  if (!r.ok()) {
    std::cerr << "adcsc pki rotate: " << r.status().message() << "\n";
    const auto code = r.status().code();
    return code == absl::StatusCode::kAlreadyExists || code == absl::StatusCode::kInvalidArgument ? kExitUsage
                                                                                                  : kExitFailure;
  }
  const std::filesystem::path out(a.out);
  std::cout << "Wrote:\n";
  for (const auto& f : r->files) std::cout << "  " << f.string() << "\n";
  std::cout << "\nOld client pin (mapped until " << r->overlap_until << "):\n  " << r->old_client_pin
            << "\nNew client pin:\n  " << r->client_pin << "\n";
  if (r->server_key_kept) {
    std::cout << "\nThe server certificate is renewed on the same key and name: the adcs-proxy-ca.cer Jamf Pro\n"
              << "holds still verifies it, so the nodes can switch to it at once.\n";
  } else {
    std::cout << "\nA NEW server key: Jamf Pro distrusts a node from its switch to it until Jamf Pro has the new\n"
              << "adcs-proxy-ca.cer. Upload it, then switch every node at once (docs/operations.md).\n";
  }
  std::cout << "\nUpload to Jamf Pro (Settings > Global Settings > PKI Certificates > the ADCS connector), before "
            << r->overlap_until << ":\n"
            << "  client identity:     " << (out / adcsc::pki::kClientPfxFile).string() << "\n"
            << "  server certificate:  " << (out / adcsc::pki::kServerCertDerFile).string() << "\n";
  if (a.password_file.empty()) {
    std::cout << "\n!!! Client identity (client-cert.pfx) password, shown only this once:\n  " << r->client_password
              << "\n";
  } else {
    std::cout << "\nThe client-cert.pfx password is in " << a.password_file << " (mode 0600).\n";
  }
  std::cout << "\nNode config (also in " << (out / adcsc::pki::kRotationSnippetFile).string() << "):\n" << r->snippet;
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

  auto rargs = std::make_shared<PkiRotateArgs>();
  auto* rotate = pki->add_subcommand(
      "rotate",
      "Make the successors of the identities `pki init` made, with an overlap for Jamf Pro's switch\n\n"
      "Example:\n"
      "  adcsc pki rotate --from /etc/adcsc/pki --out /etc/adcsc/pki-2027 --password-file /root/pfx-2027.pass\n\n"
      "Writes into --out: server-key.pem (0600; the same key unless --new-server-key), adcs-proxy-ca.cer/.pem\n"
      "(the server certificate renewed: same key and name, so Jamf Pro's uploaded copy still verifies it),\n"
      "client-ca.pem (new and old server certificate: api.client_ca_file during the overlap), a new\n"
      "client-cert.pfx (0600, new password, printed unless --password-file) with client-cert.pem and\n"
      "client-cert.pin, and api-rotation.toml: the [api] lines to set on every node, where the old client\n"
      "pin carries `until`, the end of the overlap, after which nodes refuse it. Never overwrites a file.\n"
      "Exit codes: 0 written, 1 failed (unreadable or foreign --from), 2 usage or files already there.\n"
      "Walk-through: docs/operations.md, \"Rotating the API identity and Jamf Pro's certificate\".");
  rotate->add_option("--from", rargs->from, "The directory `adcsc pki init` (or an earlier rotate) wrote")->required();
  rotate->add_option("--out", rargs->out, "A new output directory (created with mode 0700)")->required();
  rotate
      ->add_option("--overlap-days", rargs->overlap_days,
                   "Days the old client pin stays mapped (to the next midnight UTC after them)")
      ->capture_default_str()
      ->check(CLI::Range(1, 365));
  rotate->add_option("--jamf-pro-dn", rargs->jamf_pro_dn, "The new client certificate's CN (default: the old one's)");
  rotate->add_option("--client-years", rargs->client_years, "Client certificate validity in years")
      ->capture_default_str()
      ->check(CLI::Range(1, 50));
  rotate->add_option("--server-years", rargs->server_years, "Server certificate validity in years")
      ->capture_default_str()
      ->check(CLI::Range(1, 50));
  rotate->add_option("--key-type", rargs->key_type, "Key type of the new keys: p256, p384, rsa2048, rsa3072")
      ->capture_default_str();
  rotate->add_flag("--new-server-key", rargs->new_server_key,
                   "Also replace the server key (after a compromise); Jamf Pro then needs the new adcs-proxy-ca.cer "
                   "before the nodes switch");
  rotate->add_option("--password-file", rargs->password_file,
                     "Also write the PKCS#12 password to this file (mode 0600) instead of printing it");
  rotate->callback([=] { *exit_code = RunPkiRotate(*rargs); });

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
