// `adcsc pki cluster`: the PKI for node-to-node gRPC with mutual TLS. A cluster CA signs one
// certificate per node; each certificate names its node and cluster in a DNS subjectAltName
// "<node>.<cluster>.adcsc-cluster", which a node checks against the peer it meant to reach
// (and which makes a certificate from another cluster useless here). No argument parsing
// here; the CLI fills ClusterPkiOptions. Thread-safety: do not run two calls on one directory.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "node/pki/keys.h"
#include "node/pki/openssl_ptr.h"

namespace adcsc::pki {

inline constexpr char kClusterCaCertFile[] = "cluster-ca.pem";     // public, every node needs it
inline constexpr char kClusterCaKeyFile[] = "cluster-ca-key.pem";  // 0600, keep offline after set-up
inline constexpr char kNodeCertFile[] = "node.pem";                // in <out>/<node-id>/
inline constexpr char kNodeKeyFile[] = "node-key.pem";             // 0600

struct ClusterPkiOptions {
  std::string cluster_id;             // lowercase letters, digits and '-'
  std::vector<std::string> node_ids;  // the same rule; node certificates to write
  std::filesystem::path out_dir;
  int years = 10;
  KeyType key_type = KeyType::kEcP256;
  // Replace existing node files. The cluster CA is reused when present (so a node can be
  // added or replaced later with the same CA), unless new_ca is set.
  bool force = false;
  bool new_ca = false;
};

struct ClusterPkiResult {
  std::vector<std::filesystem::path> files;  // written, in order
  bool reused_ca = false;
};

// Writes (creating directories 0700): cluster-ca.pem and cluster-ca-key.pem (unless a CA is
// already there), then for each node <node>/node.pem (EKU serverAuth+clientAuth, SAN
// NodeSubjectName(cluster, node)) and <node>/node-key.pem (0600). Without `force`, fails
// before writing anything if a node's files exist, naming them.
absl::StatusOr<ClusterPkiResult> InitClusterPki(const ClusterPkiOptions& options);

// "<node>.<cluster>.adcsc-cluster": the name a node's certificate carries.
std::string NodeSubjectName(const std::string& cluster_id, const std::string& node_id);

// Checks an ID for use in NodeSubjectName (a DNS label: 1-63 of a-z 0-9 '-', not starting or
// ending with '-'); `what` names it in the error ("node ID", "cluster ID").
absl::Status CheckClusterLabel(const std::string& id, const std::string& what);

// OK when `peer` (already verified against the cluster CA) names (cluster_id, node_id);
// PERMISSION_DENIED naming what it does name otherwise.
absl::Status CheckPeerIdentity(X509* peer, const std::string& cluster_id, const std::string& node_id);

}  // namespace adcsc::pki
