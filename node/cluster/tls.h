// Mutual TLS for node-to-node gRPC: server credentials that demand a client certificate from
// the cluster CA, channels that accept only the peer they meant to reach (the server's
// certificate must name "<peer>.<cluster>.adcsc-cluster"), and the server-side check of which
// configured peer is calling. There is no plaintext mode. Thread-safety: pure functions; the
// returned credentials and channels are thread-safe gRPC objects.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "node/cluster/protocol.h"
#include "node/config/config.h"

namespace adcsc::cluster {

// How often the cluster identity's files are read again: a node's certificate, key and the
// cluster CA replaced on disk (each written whole and renamed into place) serve new
// handshakes within this, without a restart or a reload.
inline constexpr unsigned kIdentityRefreshSeconds = 2;

// Reads the cluster CA, this node's certificate and key. Errors name the file.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(const node::ClusterConfig& config);

// Reconnect backoff of peer channels: first retry after the minimum, growing to the maximum.
inline constexpr int kPeerReconnectBackoffMinMs = 100;
inline constexpr int kPeerReconnectBackoffMaxMs = 1000;
// How long one connection attempt (TCP, TLS handshake, HTTP/2 settings) may take. gRPC takes
// it from GRPC_ARG_MIN_RECONNECT_BACKOFF_MS (its "minimum connect timeout"): set to the 100 ms
// backoff, it failed every attempt whose handshake took longer (a loaded node, a long link,
// "connection attempt timed out before receiving SETTINGS frame"), until the backoff grew.
inline constexpr int kPeerConnectTimeoutMs = 2000;

// Largest node-to-node message. A snapshot page is 512 records, about 1 MB with typical
// certificates, but a page (or a pull batch) of records with large certificates can pass
// gRPC's default limit of 4 MB, which would stall a catch-up for good.
inline constexpr int kPeerMaxMessageBytes = 32 * 1024 * 1024;

// A channel to `peer` that verifies its certificate chains to the cluster CA and names
// NodeSubjectName(config.id, peer.id), presenting this node's certificate. Every call on it
// carries this process's cluster protocol range; `protocols` (optional) learns the peer's
// from its answers and refuses answers in a protocol this node does not read (protocol.h).
// `tune` (optional) sets more channel arguments last: a channel for one purpose, like a bulk
// join's, which bounds its flow-control window.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakePeerChannel(
    const node::ClusterConfig& config, const node::PeerConfig& peer, std::shared_ptr<PeerProtocols> protocols = nullptr,
    const std::function<void(grpc::ChannelArguments&)>& tune = nullptr);

// Server side: the ID of the configured peer whose certificate the caller presented (gRPC has
// already verified it against the cluster CA); PERMISSION_DENIED for a certificate that names
// no configured peer of this cluster.
// `self_id`, when given, is accepted too (operator tools running on a node with its identity).
absl::StatusOr<std::string> AuthenticatedPeer(const grpc::ServerContext& context, const node::ClusterConfig& config,
                                              const std::string& self_id = "");

}  // namespace adcsc::cluster
