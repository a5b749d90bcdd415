#include "node/cluster/tls.h"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <map>
#include <mutex>
#include <tuple>

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

// One watcher per set of files in the process, shared by the server and every channel: gRPC
// reads the files again every kIdentityRefreshSeconds and uses a changed pair (when the key
// matches the certificate) for new handshakes.
std::shared_ptr<grpc::experimental::CertificateProviderInterface> WatchedIdentity(const node::ClusterConfig& c) {
  static std::mutex mu;
  static auto* providers = new std::map<std::tuple<std::string, std::string, std::string>,
                                        std::shared_ptr<grpc::experimental::CertificateProviderInterface>>();
  const auto key = std::make_tuple(c.key_file.string(), c.cert_file.string(), c.ca_file.string());
  std::lock_guard lock(mu);
  auto& provider = (*providers)[key];
  if (provider == nullptr) {
    provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        c.key_file.string(), c.cert_file.string(), c.ca_file.string(), kIdentityRefreshSeconds);
  }
  return provider;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(const node::ClusterConfig& config) {
  // Read here once to name a missing or unreadable file; gRPC's watcher reads them itself.
  if (auto m = Load(config); !m.ok()) return m.status();
  grpc::experimental::TlsServerCredentialsOptions options(WatchedIdentity(config));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  return grpc::experimental::TlsServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakePeerChannel(
    const node::ClusterConfig& config, const node::PeerConfig& peer, std::shared_ptr<PeerProtocols> protocols,
    const std::function<void(grpc::ChannelArguments&)>& tune) {
  if (auto m = Load(config); !m.ok()) return m.status();
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(WatchedIdentity(config));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  grpc::ChannelArguments args;
  // The server must prove it is this peer, whatever address it was reached at.
  args.SetSslTargetNameOverride(pki::NodeSubjectName(config.id, peer.id));
  // A peer that restarts must be reachable again within a second or two: gRPC's default
  // reconnect backoff grows to two minutes, and calls fail at once while it waits.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kPeerReconnectBackoffMinMs);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, kPeerConnectTimeoutMs);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kPeerReconnectBackoffMaxMs);
  args.SetMaxReceiveMessageSize(kPeerMaxMessageBytes);
  if (tune) tune(args);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(PeerProtocols::ClientInterceptor(std::move(protocols), peer.id, LocalProtocolRange()));
  return grpc::experimental::CreateCustomChannelWithInterceptors(
      peer.address, grpc::experimental::TlsCredentials(options), args, std::move(interceptors));
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
