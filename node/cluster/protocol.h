// Cluster protocol versioning, so that nodes of adjacent releases replicate with each other
// during a rolling upgrade and a node refuses, with a message saying what to do, a peer whose
// messages it cannot read. Every node-to-node call carries the sender's range in gRPC
// metadata (request and answer alike): the protocol it speaks and the oldest it still reads
// and writes for. Two nodes get along when the older one's protocol lies in the newer one's
// range; both reach the same verdict, so both refuse. A node that sends no range (adcsc 0.1.0, from
// before the versioning) speaks protocol 1.
// Thread-safety: PeerProtocols may be used from any thread; the interceptor factories it
// makes are gRPC's, which calls them from its own threads.
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/client_interceptor.h>
#include <grpcpp/support/server_interceptor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace adcsc::cluster {

// The protocol this build speaks. Bump it when a node-to-node message changes meaning, a
// field becomes required, or the store's record gains a field whose loss an older node would
// not tolerate (docs/architecture.md, "Versions"). Adding an optional field does not need it.
// 3: records carry admin_hlc, which Merge compares first (store/record.h); a node of
// protocol 2 keeps a certificate released from hold revoked, so a release waits for every
// peer to speak 3 (node/app/run_node.cc, CaAdminAnswer).
inline constexpr uint32_t kClusterProtocol = 3;
// The first protocol whose nodes merge by admin_hlc.
inline constexpr uint32_t kAdminStampProtocol = 3;
// The oldest protocol this build still reads and writes for: 1 is adcsc 0.1.0.
inline constexpr uint32_t kOldestReadableProtocol = 1;
// A peer that sends no range: adcsc 0.1.0, which predates the versioning.
inline constexpr uint32_t kUnversionedProtocol = 1;

// The metadata key of the range, on every request and every answer: "<speaks>;<oldest>".
inline constexpr char kProtocolMetadataKey[] = "adcsc-cluster-protocol";

// TEST ONLY: makes this process claim another range ("<speaks>;<oldest>", e.g. "9;9") so a
// test can stand up a node of a release that does not exist yet. Never set it in production:
// a node claiming a range it does not implement breaks replication with its peers.
inline constexpr char kTestOnlyProtocolEnv[] = "ADCSC_TEST_ONLY_CLUSTER_PROTOCOL";

struct ProtocolRange {
  uint32_t speaks = kClusterProtocol;
  uint32_t oldest = kOldestReadableProtocol;  // <= speaks

  std::string ToMetadata() const;  // "3;1"
  std::string Describe() const;    // "speaks cluster protocol 3 and reads 1..3"
  bool operator==(const ProtocolRange&) const = default;
};

// "<speaks>;<oldest>" (or a bare "<speaks>", meaning oldest = speaks); INVALID_ARGUMENT
// otherwise.
absl::StatusOr<ProtocolRange> ParseProtocolRange(const std::string& text);

// Whether nodes of these two ranges can read each other: the older of the two speaks a
// protocol the newer still reads and writes for. Symmetric.
bool Compatible(const ProtocolRange& a, const ProtocolRange& b);

// This process's range: this build's, unless kTestOnlyProtocolEnv says otherwise (an
// unparsable value is ignored, with a line on stderr).
ProtocolRange LocalProtocolRange();

// The operator's message for refusing `peer`: both ranges and what to do.
std::string RefusalMessage(const std::string& self_id, const ProtocolRange& self, const std::string& peer,
                           const ProtocolRange& theirs);

// What this node knows of each peer's protocol, from the peer's calls and its answers, and
// which peers it refuses for it.
class PeerProtocols {
 public:
  // Called when a peer becomes refused (message set) or accepted again after a refusal
  // (message empty): once per change, not per call. Called without the lock held.
  using OnChange =
      std::function<void(const std::string& peer, const ProtocolRange& theirs, const std::string& message)>;

  PeerProtocols(std::string self_id, ProtocolRange self);
  PeerProtocols(const PeerProtocols&) = delete;
  PeerProtocols& operator=(const PeerProtocols&) = delete;

  // Set before any call runs (it is read without a lock afterwards).
  void SetOnChange(OnChange on_change) { on_change_ = std::move(on_change); }

  const ProtocolRange& self() const { return self_; }

  // A request from authenticated peer `peer`: records the range it sent (none: protocol 1)
  // and answers FAILED_PRECONDITION with RefusalMessage when the two do not get along.
  absl::Status AdmitIncoming(const grpc::ServerContext& context, const std::string& peer);
  // Records the range seen in `peer`'s answer (none: protocol 1).
  void SawAnswer(const std::string& peer, const std::optional<std::string>& metadata);
  // Before a call to `peer`: FAILED_PRECONDITION while its last known range does not get along
  // with this node's. (The Info refresh asks such a peer anyway, to learn when it changed.)
  absl::Status AdmitOutgoing(const std::string& peer);

  struct View {
    std::string node_id;
    std::optional<ProtocolRange> range;  // nullopt: not heard from yet
    std::string refusal;                 // empty: not refused
    uint64_t refused_calls = 0;          // calls refused either way, since start
  };
  std::optional<View> Get(const std::string& peer) const;
  std::vector<View> All() const;

  // The client interceptor for channels to `peer`: stamps every request with this node's
  // range, records the range of every answer, and turns an answer from a peer refused for its
  // version into FAILED_PRECONDITION. `protocols` may be null (operator tools: stamp only);
  // the channel's calls keep it alive.
  static std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface> ClientInterceptor(
      std::shared_ptr<PeerProtocols> protocols, std::string peer, ProtocolRange self);
  // The server interceptor that stamps every answer (initial and trailing metadata) with
  // `self`.
  static std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> ServerInterceptor(ProtocolRange self);

 private:
  // Records `theirs` for `peer`, refusing or accepting it; returns the refusal ("" if none).
  std::string Record(const std::string& peer, const ProtocolRange& theirs, bool count_refusal);

  const std::string self_id_;
  const ProtocolRange self_;
  OnChange on_change_;
  mutable std::mutex mu_;
  std::map<std::string, View> peers_;
};

}  // namespace adcsc::cluster
