#include "node/app/cert_inventory.h"

#include <fstream>
#include <set>
#include <sstream>

#include "node/pki/x509.h"

namespace adcsc::node {
namespace {

void Add(std::vector<adcsc::ops::CertificateExpiry>* out, std::set<std::string>* done, const std::string& role,
         const std::filesystem::path& file, bool every_certificate) {
  if (file.empty() || !done->insert(role + "\n" + file.string()).second) return;
  std::ifstream in(file);
  if (!in) return;
  std::stringstream pem;
  pem << in.rdbuf();
  auto certs = adcsc::pki::CertsFromPem(pem.str());
  if (!certs.ok()) return;
  for (const auto& cert : *certs) {
    out->push_back({role, adcsc::pki::NameToString(X509_get_subject_name(cert.get())), file.string(),
                    adcsc::pki::NotAfterUnix(cert.get()) * 1000});
    if (!every_certificate) break;  // an identity: its leaf
  }
}

}  // namespace

std::vector<adcsc::ops::CertificateExpiry> CertificateInventory(const Config& c) {
  std::vector<adcsc::ops::CertificateExpiry> out;
  std::set<std::string> done;
  Add(&out, &done, adcsc::ops::kApiIdentityRole, c.api.cert_file, false);
  Add(&out, &done, "api client CA", c.api.client_ca_file, true);
  if (c.ops.enabled && c.ops.tls && c.ops.cert_file != c.api.cert_file) {
    Add(&out, &done, "ops identity", c.ops.cert_file, false);
  }
  if (c.ops.enabled) Add(&out, &done, "admin CA", c.ops.admin_ca_file, true);
  for (const AllowedCa& allowed : c.ca.allow) Add(&out, &done, "ca certificate", allowed.ca_cert_file, true);
  if (c.cluster.enabled) {
    Add(&out, &done, "cluster identity", c.cluster.cert_file, false);
    Add(&out, &done, "cluster CA", c.cluster.ca_file, true);
  }
  return out;
}

}  // namespace adcsc::node
