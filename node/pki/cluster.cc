#include "node/pki/cluster.h"

#include <openssl/x509v3.h>

#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "node/pki/absl_view.h"
#include "node/pki/csr.h"
#include "node/pki/x509.h"

namespace adcsc::pki {
namespace {

constexpr char kSuffix[] = "adcsc-cluster";

absl::Status WritePublicFile(const std::filesystem::path& path, std::string_view data, bool overwrite) {
  return WriteFileAtomic(path, data, 0644, overwrite);
}

}  // namespace

std::string NodeSubjectName(const std::string& cluster_id, const std::string& node_id) {
  return absl::StrCat(node_id, ".", cluster_id, ".", kSuffix);
}

absl::Status CheckClusterLabel(const std::string& id, const std::string& what) {
  const bool chars_ok = !id.empty() && id.size() <= 63 &&
                        id.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") == std::string::npos &&
                        id.front() != '-' && id.back() != '-';
  if (!chars_ok) {
    return absl::InvalidArgumentError(absl::StrCat(what, " \"", id,
                                                   "\": use 1-63 lowercase letters, digits and '-', not starting or "
                                                   "ending with '-' (it becomes part of a certificate name)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ClusterPkiResult> InitClusterPki(const ClusterPkiOptions& o) {
  if (auto s = CheckClusterLabel(o.cluster_id, "cluster ID"); !s.ok()) return s;
  if (o.node_ids.empty()) return absl::InvalidArgumentError("give at least one node ID (--nodes a,b,c)");
  for (const std::string& id : o.node_ids) {
    if (auto s = CheckClusterLabel(id, "node ID"); !s.ok()) return s;
  }
  std::error_code ec;
  const auto ca_cert_path = o.out_dir / kClusterCaCertFile;
  const auto ca_key_path = o.out_dir / kClusterCaKeyFile;
  if (!o.force) {
    std::vector<std::string> existing;
    for (const std::string& id : o.node_ids) {
      for (const char* f : {kNodeCertFile, kNodeKeyFile}) {
        if (std::filesystem::exists(o.out_dir / id / f, ec)) existing.push_back((o.out_dir / id / f).string());
      }
    }
    if (!existing.empty()) {
      return absl::AlreadyExistsError(
          absl::StrCat("refusing to overwrite ", absl::StrJoin(existing, ", "), "; move them away or pass --force"));
    }
  }
  std::filesystem::create_directories(o.out_dir, ec);
  std::filesystem::permissions(o.out_dir, std::filesystem::perms::owner_all, ec);

  ClusterPkiResult result;
  X509Ptr ca_cert;
  EvpPkeyPtr ca_key;
  if (!o.new_ca && std::filesystem::exists(ca_cert_path, ec) && std::filesystem::exists(ca_key_path, ec)) {
    auto pem = ReadFileToString(ca_cert_path);
    if (!pem.ok()) return pem.status();
    auto cert = CertFromPem(*pem);
    if (!cert.ok())
      return absl::InvalidArgumentError(absl::StrCat(ca_cert_path.string(), ": ", cert.status().message()));
    auto key = ReadPrivateKeyFile(ca_key_path);
    if (!key.ok()) return key.status();
    if (X509_check_private_key(cert->get(), key->get()) != 1) {
      return absl::InvalidArgumentError(absl::StrCat(ca_key_path.string(), " does not match ", ca_cert_path.string(),
                                                     " (use --new-ca to start over)"));
    }
    ca_cert = std::move(*cert);
    ca_key = std::move(*key);
    result.reused_ca = true;
  } else {
    auto key = GenerateKey(o.key_type);
    if (!key.ok()) return key.status();
    SelfSignedCaOptions ca;
    ca.common_name = absl::StrCat("adcsc cluster CA ", o.cluster_id);
    ca.years = o.years;
    auto cert = MakeSelfSignedCa(key->get(), ca);
    if (!cert.ok()) return cert.status();
    auto key_pem = PrivateKeyToPem(key->get());
    auto cert_pem = CertToPem(cert->get());
    if (!key_pem.ok() || !cert_pem.ok()) return absl::InternalError("cannot encode the cluster CA");
    if (auto s = WritePrivateFile(ca_key_path, *key_pem, /*overwrite=*/true); !s.ok()) return s;
    if (auto s = WritePublicFile(ca_cert_path, *cert_pem, /*overwrite=*/true); !s.ok()) return s;
    result.files.push_back(ca_key_path);
    result.files.push_back(ca_cert_path);
    ca_cert = std::move(*cert);
    ca_key = std::move(*key);
  }

  for (const std::string& id : o.node_ids) {
    const auto dir = o.out_dir / id;
    std::filesystem::create_directories(dir, ec);
    std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
    auto key = GenerateKey(o.key_type);
    if (!key.ok()) return key.status();
    const std::string name = NodeSubjectName(o.cluster_id, id);
    auto csr_der = MakeCsr(key->get(), name, {name});
    if (!csr_der.ok()) return csr_der.status();
    auto csr = ParseCsr(*csr_der);
    if (!csr.ok()) return csr.status();
    IssueOptions issue;
    issue.validity_days = o.years * 365;
    issue.ekus = {"serverAuth", "clientAuth"};
    auto cert = IssueCertificate(ca_cert.get(), ca_key.get(), csr->request.get(), issue);
    if (!cert.ok()) return cert.status();
    auto key_pem = PrivateKeyToPem(key->get());
    auto cert_pem = CertToPem(cert->get());
    if (!key_pem.ok() || !cert_pem.ok()) return absl::InternalError("cannot encode a node certificate");
    if (auto s = WritePrivateFile(dir / kNodeKeyFile, *key_pem, /*overwrite=*/true); !s.ok()) return s;
    if (auto s = WritePublicFile(dir / kNodeCertFile, *cert_pem, /*overwrite=*/true); !s.ok()) return s;
    result.files.push_back(dir / kNodeKeyFile);
    result.files.push_back(dir / kNodeCertFile);
  }
  return result;
}

absl::Status CheckPeerIdentity(X509* peer, const std::string& cluster_id, const std::string& node_id) {
  const std::string expected = NodeSubjectName(cluster_id, node_id);
  // Exact match only: no wildcards, no partial labels.
  if (X509_check_host(peer, expected.data(), expected.size(), X509_CHECK_FLAG_NO_WILDCARDS, nullptr) == 1) {
    return absl::OkStatus();
  }
  std::vector<std::string> names;
  GENERAL_NAMES* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(peer, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; sans != nullptr && i < sk_GENERAL_NAME_num(sans); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
    if (g->type == GEN_DNS) {
      names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(g->d.dNSName)),
                         static_cast<size_t>(ASN1_STRING_length(g->d.dNSName)));
    }
  }
  GENERAL_NAMES_free(sans);
  return absl::PermissionDeniedError(absl::StrCat("the peer's certificate names ",
                                                  names.empty() ? "no node" : absl::StrJoin(names, ", "),
                                                  ", not node \"", node_id, "\" of cluster \"", cluster_id, "\""));
}

}  // namespace adcsc::pki
