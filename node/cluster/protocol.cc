#include "node/cluster/protocol.h"

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace adcsc::cluster {

namespace {

using grpc::experimental::InterceptionHookPoints;

// A range a peer sent that does not parse: nothing reads it, so the peer is refused.
constexpr ProtocolRange kUnreadableRange{.speaks = 0, .oldest = 0};

ProtocolRange FromMetadata(const std::optional<std::string>& metadata) {
  if (!metadata.has_value()) return ProtocolRange{.speaks = kUnversionedProtocol, .oldest = kUnversionedProtocol};
  auto parsed = ParseProtocolRange(*metadata);
  return parsed.ok() ? *parsed : kUnreadableRange;
}

std::optional<std::string> FindRange(const std::multimap<grpc::string_ref, grpc::string_ref>* metadata) {
  if (metadata == nullptr) return std::nullopt;
  auto it = metadata->find(kProtocolMetadataKey);
  if (it == metadata->end()) return std::nullopt;
  return std::string(it->second.data(), it->second.size());
}

// Stamps requests with this node's range; reads the range of the answers.
class ClientStamp final : public grpc::experimental::Interceptor {
 public:
  ClientStamp(PeerProtocols* protocols, const std::string* peer, const ProtocolRange* self)
      : protocols_(protocols), peer_(peer), self_(self) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace(kProtocolMetadataKey, self_->ToMetadata());
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      if (auto found = FindRange(methods->GetRecvInitialMetadata())) seen_ = std::move(found);
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_STATUS)) {
      // An error-only answer carries the range in its trailers.
      if (auto found = FindRange(methods->GetRecvTrailingMetadata())) seen_ = std::move(found);
      grpc::Status* status = methods->GetRecvStatus();
      // Only an answer from the peer tells its range: no range on a failed call may mean the
      // call never reached it (down, cut off, out of time).
      if (protocols_ != nullptr && (seen_.has_value() || status->ok())) {
        protocols_->SawAnswer(*peer_, seen_);
        if (auto view = protocols_->Get(*peer_); view.has_value() && !view->refusal.empty() && status->ok()) {
          // An answer in a protocol this node does not read is not used.
          *status = grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, view->refusal);
        }
      }
    }
    methods->Proceed();
  }

 private:
  PeerProtocols* const protocols_;
  const std::string* const peer_;
  const ProtocolRange* const self_;
  std::optional<std::string> seen_;
};

class ClientStampFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  ClientStampFactory(std::shared_ptr<PeerProtocols> protocols, std::string peer, ProtocolRange self)
      : protocols_(std::move(protocols)), peer_(std::move(peer)), self_(self) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(grpc::experimental::ClientRpcInfo*) override {
    return new ClientStamp(protocols_.get(), &peer_, &self_);  // gRPC owns it; the factory outlives it
  }

 private:
  const std::shared_ptr<PeerProtocols> protocols_;
  const std::string peer_;
  const ProtocolRange self_;
};

// Stamps every answer with this node's range: in the initial metadata, and in the trailers
// for an answer that is only a status.
class ServerStamp final : public grpc::experimental::Interceptor {
 public:
  explicit ServerStamp(const std::string* metadata) : metadata_(metadata) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace(kProtocolMetadataKey, *metadata_);
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      if (auto* trailers = methods->GetSendTrailingMetadata()) trailers->emplace(kProtocolMetadataKey, *metadata_);
    }
    methods->Proceed();
  }

 private:
  const std::string* const metadata_;
};

class ServerStampFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit ServerStampFactory(ProtocolRange self) : metadata_(self.ToMetadata()) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo*) override {
    return new ServerStamp(&metadata_);
  }

 private:
  const std::string metadata_;
};

}  // namespace

std::string ProtocolRange::ToMetadata() const { return absl::StrCat(speaks, ";", oldest); }

std::string ProtocolRange::Describe() const {
  return absl::StrCat("speaks cluster protocol ", speaks, " and reads ", oldest, "..", speaks);
}

absl::StatusOr<ProtocolRange> ParseProtocolRange(const std::string& text) {
  std::vector<std::string> parts = absl::StrSplit(text, ';');
  ProtocolRange r;
  if (parts.empty() || parts.size() > 2 || !absl::SimpleAtoi(parts[0], &r.speaks)) {
    return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" is not a cluster protocol range (speaks;oldest)"));
  }
  r.oldest = r.speaks;
  if (parts.size() == 2 && !absl::SimpleAtoi(parts[1], &r.oldest)) {
    return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" is not a cluster protocol range (speaks;oldest)"));
  }
  if (r.speaks == 0 || r.oldest == 0 || r.oldest > r.speaks) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text, "\" is not a cluster protocol range (1 <= oldest <= speaks)"));
  }
  return r;
}

bool Compatible(const ProtocolRange& a, const ProtocolRange& b) {
  // The older of the two speaks a protocol the newer still reads (and writes for).
  return std::min(a.speaks, b.speaks) >= std::max(a.oldest, b.oldest);
}

ProtocolRange LocalProtocolRange() {
  static const ProtocolRange range = [] {
    const char* claimed = std::getenv(kTestOnlyProtocolEnv);
    if (claimed == nullptr || *claimed == '\0') return ProtocolRange{};
    auto parsed = ParseProtocolRange(claimed);
    if (!parsed.ok()) {
      std::cerr << kTestOnlyProtocolEnv << " ignored: " << parsed.status().message() << "\n";
      return ProtocolRange{};
    }
    std::cerr << kTestOnlyProtocolEnv << " (TEST ONLY): this process claims cluster protocol range "
              << parsed->ToMetadata() << "\n";
    return *parsed;
  }();
  return range;
}

std::string RefusalMessage(const std::string& self_id, const ProtocolRange& self, const std::string& peer,
                           const ProtocolRange& theirs) {
  const std::string what =
      absl::StrCat("peer ", peer, " ", theirs.Describe(), "; this node (", self_id, ", adcsc ", ADCSC_VERSION, ") ",
                   self.Describe(), ", so they cannot replicate with each other: ");
  if (theirs.speaks > self.speaks) {
    return absl::StrCat(what, "upgrade ", self_id, " to a release that reads protocol ", theirs.speaks, ", or roll ",
                        peer, " back to one that reads protocol ", self.speaks,
                        " (upgrade one release at a time; docs/operations.md, \"Upgrade\")");
  }
  return absl::StrCat(what, "upgrade ", peer, " to a release that reads protocol ", self.speaks, ", or roll ", self_id,
                      " back to one that reads protocol ", theirs.speaks,
                      " (upgrade one release at a time; docs/operations.md, \"Upgrade\")");
}

PeerProtocols::PeerProtocols(std::string self_id, ProtocolRange self) : self_id_(std::move(self_id)), self_(self) {}

std::string PeerProtocols::Record(const std::string& peer, const ProtocolRange& theirs, bool count_refusal) {
  const std::string refusal = Compatible(self_, theirs) ? "" : RefusalMessage(self_id_, self_, peer, theirs);
  bool changed = false;
  {
    std::lock_guard lock(mu_);
    View& v = peers_[peer];
    v.node_id = peer;
    v.range = theirs;
    changed = v.refusal != refusal;
    v.refusal = refusal;
    if (count_refusal && !refusal.empty()) ++v.refused_calls;
  }
  if (changed && on_change_) on_change_(peer, theirs, refusal);
  return refusal;
}

absl::Status PeerProtocols::AdmitIncoming(const grpc::ServerContext& context, const std::string& peer) {
  const std::string refusal = Record(peer, FromMetadata(FindRange(&context.client_metadata())), true);
  if (refusal.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(refusal);
}

void PeerProtocols::SawAnswer(const std::string& peer, const std::optional<std::string>& metadata) {
  Record(peer, FromMetadata(metadata), false);
}

absl::Status PeerProtocols::AdmitOutgoing(const std::string& peer) {
  std::lock_guard lock(mu_);
  auto it = peers_.find(peer);
  if (it == peers_.end() || it->second.refusal.empty()) return absl::OkStatus();
  ++it->second.refused_calls;
  return absl::FailedPreconditionError(it->second.refusal);
}

std::optional<PeerProtocols::View> PeerProtocols::Get(const std::string& peer) const {
  std::lock_guard lock(mu_);
  auto it = peers_.find(peer);
  if (it == peers_.end()) return std::nullopt;
  return it->second;
}

std::vector<PeerProtocols::View> PeerProtocols::All() const {
  std::lock_guard lock(mu_);
  std::vector<View> all;
  for (const auto& [id, v] : peers_) all.push_back(v);
  return all;
}

std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface> PeerProtocols::ClientInterceptor(
    std::shared_ptr<PeerProtocols> protocols, std::string peer, ProtocolRange self) {
  return std::make_unique<ClientStampFactory>(std::move(protocols), std::move(peer), self);
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> PeerProtocols::ServerInterceptor(
    ProtocolRange self) {
  return std::make_unique<ServerStampFactory>(self);
}

}  // namespace adcsc::cluster
