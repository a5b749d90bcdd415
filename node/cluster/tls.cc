#include "node/cluster/tls.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "node/pki/cluster.h"
#include "node/pki/keys.h"

namespace adcsc::cluster {
namespace {

struct Material {
  std::string ca, cert, key;
};

absl::StatusOr<Material> Load(const node::ClusterConfig& c) {
  Material m;
  auto ca = pki::ReadFileToString(c.ca_file);
  if (!ca.ok()) return absl::Status(ca.status().code(), absl::StrCat("cluster.ca_file: ", ca.status().message()));
  auto cert = pki::ReadFileToString(c.cert_file);
  if (!cert.ok())
    return absl::Status(cert.status().code(), absl::StrCat("cluster.cert_file: ", cert.status().message()));
  auto key = pki::ReadFileToString(c.key_file);
  if (!key.ok()) return absl::Status(key.status().code(), absl::StrCat("cluster.key_file: ", key.status().message()));
  m.ca = std::move(*ca);
  m.cert = std::move(*cert);
  m.key = std::move(*key);
  return m;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(const node::ClusterConfig& config) {
  auto m = Load(config);
  if (!m.ok()) return m.status();
  grpc::SslServerCredentialsOptions options(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = m->ca;
  options.pem_key_cert_pairs.push_back({m->key, m->cert});
  return grpc::SslServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakePeerChannel(const node::ClusterConfig& config,
                                                               const node::PeerConfig& peer) {
  return MakePeerChannel(config, peer, nullptr);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakePeerChannel(
    const node::ClusterConfig& config, const node::PeerConfig& peer,
    const std::function<void(grpc::ChannelArguments&)>& tune) {
  auto m = Load(config);
  if (!m.ok()) return m.status();
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = m->ca;
  options.pem_private_key = m->key;
  options.pem_cert_chain = m->cert;
  grpc::ChannelArguments args;
  // The server must prove it is this peer, whatever address it was reached at.
  args.SetSslTargetNameOverride(pki::NodeSubjectName(config.id, peer.id));
  // A peer that restarts must be reachable again within a second or two: gRPC's default
  // reconnect backoff grows to two minutes, and calls fail at once while it waits.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kPeerReconnectBackoffMinMs);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, kPeerReconnectBackoffMinMs);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kPeerReconnectBackoffMaxMs);
  args.SetMaxReceiveMessageSize(kPeerMaxMessageBytes);
  if (tune) tune(args);
  return grpc::CreateCustomChannel(peer.address, grpc::SslCredentials(options), args);
}

absl::StatusOr<std::string> AuthenticatedPeer(const grpc::ServerContext& context, const node::ClusterConfig& config,
                                              const std::string& self_id) {
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) {
    return absl::PermissionDeniedError("the caller presented no certificate from the cluster CA");
  }
  std::vector<std::string> names;
  for (const grpc::string_ref& v : auth->FindPropertyValues(GRPC_X509_SAN_PROPERTY_NAME)) {
    const std::string name(v.data(), v.size());
    for (const node::PeerConfig& p : config.peers) {
      if (name == pki::NodeSubjectName(config.id, p.id)) return p.id;
    }
    if (!self_id.empty() && name == pki::NodeSubjectName(config.id, self_id)) return self_id;
    names.push_back(name);
  }
  return absl::PermissionDeniedError(absl::StrCat("the caller's certificate names ",
                                                  names.empty() ? "nothing" : absl::StrJoin(names, ", "),
                                                  ", which is no configured peer of cluster \"", config.id, "\""));
}

}  // namespace adcsc::cluster
