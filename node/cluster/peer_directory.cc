#include "node/cluster/peer_directory.h"

#include <algorithm>
#include <condition_variable>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "node/ca/hresult.h"
#include "node/cluster/lease_wire.h"
#include "store/clock.h"
#include "store/record.h"

namespace adcsc::cluster {

namespace v1 = adcsc::cluster::v1;

namespace {

// How long a peer that let a lookup run out its deadline is left out of lookups, unless it
// answers something (an Info refresh, a lookup) before.
constexpr int64_t kQuietForMs = 5'000;

// The state one fan-out shares with its calls' callbacks (which may outlive the wait).
struct Gather {
  std::mutex mu;
  std::condition_variable cv;
  size_t outstanding = 0;
  std::optional<store::RequestRecord> merged;
  bool stop = false;
};

// Waits below run to steady_clock deadlines: a wall clock stepped back must not stretch a
// lookup to minutes, nor one stepped forward cut it short. gRPC takes its deadline on the
// wall clock and turns it into its own monotonic time when the call starts, microseconds
// after it was computed here from the steady one.
using Deadline = std::chrono::steady_clock::time_point;

std::chrono::system_clock::time_point ForGrpc(Deadline deadline) {
  return std::chrono::system_clock::now() + (deadline - std::chrono::steady_clock::now());
}

// One call per reachable peer (a cut-off node reaches none; one refused for its cluster
// protocol only for a `handshake`), each with its own stub and `deadline`. Call must have members peer, stub and
// context.
template <typename Call>
std::vector<std::shared_ptr<Call>> CallsToEveryPeer(const node::ClusterConfig& config,
                                                    const GrpcPeerTransport& transport, Deadline deadline,
                                                    bool handshake = false) {
  const auto grpc_deadline = ForGrpc(deadline);
  std::vector<std::shared_ptr<Call>> calls;
  for (const node::PeerConfig& p : config.peers) {
    auto channel = transport.ChannelFor(p.id, handshake);
    if (!channel.ok()) continue;
    auto call = std::make_shared<Call>();
    call->peer = p.id;
    call->stub = v1::Peer::NewStub(*channel);
    call->context.set_deadline(grpc_deadline);
    calls.push_back(call);
  }
  return calls;
}

// Waits until every call answered, `enough` holds (under gather->mu) or `deadline` passes;
// then cancels the calls still running (their callbacks still come, and find `gather`).
template <typename Call>
void WaitThenCancel(Gather& gather, const std::vector<std::shared_ptr<Call>>& calls, Deadline deadline,
                    const std::function<bool()>& enough) {
  std::unique_lock lock(gather.mu);
  gather.cv.wait_until(lock, deadline, [&] { return gather.outstanding == 0 || enough(); });
  const bool cancel = gather.outstanding > 0;
  lock.unlock();
  if (cancel) {
    for (const std::shared_ptr<Call>& call : calls) call->context.TryCancel();
  }
}

}  // namespace

void PeerDirectory::Shared::Seen(const std::string& node_id, const std::string* identity) {
  std::lock_guard lock(mu);
  for (PeerView& p : peers) {
    if (p.node_id != node_id) continue;
    p.last_seen_ms = clock->NowMonotonicMillis();
    p.quiet_until_ms = 0;  // it answers again
    if (identity != nullptr) p.ca_identity = *identity;
  }
}

void PeerDirectory::Shared::WentQuiet(const std::string& node_id, int64_t for_ms) {
  std::lock_guard lock(mu);
  for (PeerView& p : peers) {
    if (p.node_id == node_id) p.quiet_until_ms = clock->NowMonotonicMillis() + for_ms;
  }
}

bool PeerDirectory::Shared::Quiet(const std::string& node_id) const {
  std::lock_guard lock(mu);
  for (const PeerView& p : peers) {
    if (p.node_id == node_id) return p.quiet_until_ms > clock->NowMonotonicMillis();
  }
  return false;
}

void PeerDirectory::Shared::SawVector(const std::string& node_id, store::VersionVector vector) {
  std::lock_guard lock(mu);
  for (PeerView& p : peers) {
    if (p.node_id != node_id) continue;
    p.version_vector = std::move(vector);
    p.has_vector = true;
  }
}

void PeerDirectory::Shared::SawCaHealth(const std::string& node_id, std::vector<std::string> cas_unreachable,
                                        bool ca_outage) {
  std::lock_guard lock(mu);
  for (PeerView& p : peers) {
    if (p.node_id != node_id) continue;
    p.cas_unreachable = std::move(cas_unreachable);
    p.ca_outage = ca_outage;
  }
}

void PeerDirectory::Shared::SawCaUnreachable(const std::string& node_id, const std::string& ca_config) {
  std::lock_guard lock(mu);
  for (PeerView& p : peers) {
    if (p.node_id == node_id && !ReportsCaUnreachable(p, ca_config)) p.cas_unreachable.push_back(ca_config);
  }
}

bool ReportsCaUnreachable(const PeerView& peer, const std::string& ca_config) {
  return peer.ca_outage ||
         std::find(peer.cas_unreachable.begin(), peer.cas_unreachable.end(), ca_config) != peer.cas_unreachable.end();
}

PeerDirectory::PeerDirectory(const node::Config& config, const GrpcPeerTransport* transport,
                             std::chrono::milliseconds lookup_timeout, std::chrono::milliseconds forward_timeout,
                             const Clock* clock)
    : config_(config),
      transport_(transport),
      lookup_timeout_(lookup_timeout),
      forward_timeout_(forward_timeout),
      shared_(std::make_shared<Shared>(clock)) {
  for (const node::PeerConfig& p : config_.cluster.peers) {
    PeerView view;
    view.node_id = p.id;
    shared_->peers.push_back(std::move(view));
  }
}

PeerDirectory::~PeerDirectory() = default;

void PeerDirectory::Stamp(v1::PeerHeader* header) const {
  header->set_cluster_id(config_.cluster.id);
  header->set_node_id(config_.node_id);
}

std::vector<PeerView> PeerDirectory::Peers() const {
  std::lock_guard lock(shared_->mu);
  return shared_->peers;
}

uint64_t PeerDirectory::skipped_lookups() const {
  std::lock_guard lock(shared_->mu);
  return shared_->skipped_lookups;
}

std::optional<store::RequestRecord> PeerDirectory::LookupAll(
    const StartLookup& start, const Accept& accept,
    const std::function<store::RequestRecord(const store::RequestRecord&, const store::RequestRecord&)>& merge,
    const Accept& stop_early) {
  struct Call {
    std::string peer;
    std::unique_ptr<v1::Peer::Stub> stub;
    grpc::ClientContext context;
    v1::LookupResponse reply;
    bool answered = false;  // under gather->mu
  };
  auto gather = std::make_shared<Gather>();
  const auto deadline = std::chrono::steady_clock::now() + lookup_timeout_;
  auto calls = CallsToEveryPeer<Call>(config_.cluster, *transport_, deadline);
  // A peer that let the last lookup run out its deadline is left out until it answers again:
  // waiting for it would cost every lookup the whole timeout, and going on without it is
  // what the timeout ends in anyway (a frozen node made every submit 1 s slower).
  const size_t before = calls.size();
  calls.erase(std::remove_if(calls.begin(), calls.end(),
                             [this](const std::shared_ptr<Call>& c) { return shared_->Quiet(c->peer); }),
              calls.end());
  if (calls.size() != before) {
    std::lock_guard lock(shared_->mu);
    shared_->skipped_lookups += before - calls.size();
  }
  {
    std::lock_guard lock(gather->mu);
    gather->outstanding = calls.size();
  }
  std::weak_ptr<Shared> shared = shared_;
  for (const std::shared_ptr<Call>& call : calls) {
    start(call->stub.get(), &call->context, &call->reply,
          [call, gather, shared, accept, merge, stop_early](grpc::Status status) {
            if (status.ok()) {
              if (auto s = shared.lock()) s->Seen(call->peer, nullptr);
            }
            std::lock_guard lock(gather->mu);
            // Cancelled or out of time is silence; any other answer, even an error, is not.
            call->answered = status.error_code() != grpc::StatusCode::CANCELLED &&
                             status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED;
            if (status.ok() && call->reply.has_record() && accept(call->reply.record())) {
              gather->merged = gather->merged ? merge(*gather->merged, call->reply.record()) : call->reply.record();
              if (stop_early(*gather->merged)) gather->stop = true;
            }
            --gather->outstanding;
            gather->cv.notify_all();
          });
  }
  WaitThenCancel(*gather, calls, deadline, [&] { return gather->stop; });
  std::lock_guard lock(gather->mu);
  if (!gather->stop) {
    // Still silent at the deadline (not merely outrun by an early stop): quiet for a while.
    for (const std::shared_ptr<Call>& call : calls) {
      if (!call->answered) shared_->WentQuiet(call->peer, kQuietForMs);
    }
  }
  return gather->merged;
}

std::optional<store::RequestRecord> PeerDirectory::Lookup(const std::string& ca_config, uint32_t request_id) {
  auto request = std::make_shared<v1::LookupRequest>();
  Stamp(request->mutable_from());
  request->set_ca_config(ca_config);
  request->set_request_id(request_id);
  return LookupAll(
      [request](v1::Peer::Stub* stub, grpc::ClientContext* context, v1::LookupResponse* reply,
                std::function<void(grpc::Status)> done) {
        // The request lives until the call ends.
        stub->async()->Lookup(context, request.get(), reply,
                              [request, done = std::move(done)](grpc::Status s) { done(s); });
      },
      [ca_config, request_id](const store::RequestRecord& r) {
        return r.ca_config() == ca_config && r.request_id() == request_id;
      },
      [](const store::RequestRecord& a, const store::RequestRecord& b) { return store::Merge(a, b); },
      [](const store::RequestRecord& r) { return store::IsSettled(r); });
}

std::optional<store::RequestRecord> PeerDirectory::LookupByDedupeKey(const std::string& ca_config,
                                                                     const std::string& template_name,
                                                                     const std::string& csr_sha256,
                                                                     int64_t not_before_ms) {
  auto request = std::make_shared<v1::DedupeLookupRequest>();
  Stamp(request->mutable_from());
  request->set_ca_config(ca_config);
  request->set_template_name(template_name);
  request->set_csr_sha256(csr_sha256);
  request->set_not_before_ms(not_before_ms);
  return LookupAll(
      [request](v1::Peer::Stub* stub, grpc::ClientContext* context, v1::LookupResponse* reply,
                std::function<void(grpc::Status)> done) {
        stub->async()->LookupByDedupeKey(context, request.get(), reply,
                                         [request, done = std::move(done)](grpc::Status s) { done(s); });
      },
      // A peer's answer is checked, not trusted: only a record for this very CSR may be reused.
      [ca_config, template_name, csr_sha256, not_before_ms](const store::RequestRecord& r) {
        return r.ca_config() == ca_config && r.template_name() == template_name && r.csr_sha256() == csr_sha256 &&
               r.created_ms() >= not_before_ms && r.request_id() != 0;
      },
      // The newest, as the local store's own dedupe picks (by created_ms, then request ID).
      [](const store::RequestRecord& a, const store::RequestRecord& b) {
        return std::make_pair(b.created_ms(), b.request_id()) > std::make_pair(a.created_ms(), a.request_id()) ? b : a;
      },
      [](const store::RequestRecord&) { return false; });
}

void PeerDirectory::Refresh() {
  // A survey is a handshake too: it asks a peer refused for its cluster protocol, to learn
  // when that changed.
  for (const PeerSurvey& s : Survey(/*include_activity=*/false)) {
    if (!s.error.empty()) continue;
    shared_->Seen(s.node_id, &s.info.ca_identity());
    const auto& entries = s.info.version_vector().entries();
    shared_->SawVector(s.node_id, store::VersionVector(entries.begin(), entries.end()));
    const auto& down = s.info.cas_unreachable();
    shared_->SawCaHealth(s.node_id, std::vector<std::string>(down.begin(), down.end()), s.info.ca_outage());
  }
}

std::vector<PeerSurvey> PeerDirectory::Survey(bool include_activity) const {
  struct Call {
    std::string peer;
    std::unique_ptr<v1::Peer::Stub> stub;
    grpc::ClientContext context;
    v1::NodeInfoRequest request;
    v1::NodeInfo reply;
    grpc::Status status;
  };
  auto gather = std::make_shared<Gather>();
  const auto deadline = std::chrono::steady_clock::now() + lookup_timeout_;
  const auto calls = CallsToEveryPeer<Call>(config_.cluster, *transport_, deadline, /*handshake=*/true);
  for (const auto& call : calls) {
    Stamp(call->request.mutable_from());
    call->request.set_include_activity(include_activity);
  }
  gather->outstanding = calls.size();
  for (const std::shared_ptr<Call>& call : calls) {
    call->stub->async()->Info(&call->context, &call->request, &call->reply, [call, gather](grpc::Status status) {
      std::lock_guard lock(gather->mu);
      call->status = std::move(status);
      --gather->outstanding;
      gather->cv.notify_all();
    });
  }
  WaitThenCancel(*gather, calls, deadline, [] { return false; });
  {
    // A cancelled call's callback follows the cancel at once; its reply is ours after it.
    std::unique_lock lock(gather->mu);
    gather->cv.wait(lock, [&] { return gather->outstanding == 0; });
  }
  std::vector<PeerSurvey> out;
  for (const node::PeerConfig& p : config_.cluster.peers) {
    PeerSurvey& s = out.emplace_back();
    s.node_id = p.id;
    s.address = p.address;
    auto call = std::find_if(calls.begin(), calls.end(), [&](const auto& c) { return c->peer == p.id; });
    if (call == calls.end()) {
      auto channel = transport_->ChannelFor(p.id, /*handshake=*/true);
      s.error = channel.ok() ? "not asked" : std::string(channel.status().message());
    } else if (!(*call)->status.ok()) {
      s.error = (*call)->status.error_message().empty() ? "no answer" : (*call)->status.error_message();
    } else if ((*call)->reply.from().node_id() != p.id) {
      s.error = "answered as " + (*call)->reply.from().node_id();
    } else {
      s.info = std::move((*call)->reply);
    }
  }
  return out;
}

namespace {
// A CA failure that says the peer's CA was unreachable (nothing done): another peer may do better.
bool CaUnreachableHresult(uint32_t hresult) {
  return hresult == ca::hr::kRpcServerUnavailable || hresult == ca::hr::kRpcCallFailed || hresult == ca::hr::kTimeout;
}

// The most recently heard from first.
void MostRecentFirst(std::vector<PeerView>* peers) {
  std::stable_sort(peers->begin(), peers->end(),
                   [](const PeerView& a, const PeerView& b) { return a.last_seen_ms > b.last_seen_ms; });
}
}  // namespace

absl::StatusOr<node::ForwardedRetrieve> PeerDirectory::ForwardRetrieve(const std::string& identity,
                                                                       const ca::CaTarget& target,
                                                                       uint32_t request_id) {
  const std::string ca_config = store::CaConfigKey(target.dc, target.ca);
  auto candidates = [&] {
    std::vector<PeerView> found;
    for (const PeerView& p : Peers()) {
      if (absl::EqualsIgnoreCase(p.ca_identity, identity)) found.push_back(p);
    }
    MostRecentFirst(&found);
    return found;
  };
  std::vector<PeerView> peers = candidates();
  if (peers.empty()) {
    Refresh();  // identities may not be known yet, or may have changed
    peers = candidates();
  }
  if (peers.empty()) {
    std::vector<std::string> known;
    for (const PeerView& p : Peers()) {
      known.push_back(absl::StrCat(p.node_id, "=", p.ca_identity.empty() ? "(not reachable)" : p.ca_identity));
    }
    return absl::UnavailableError(
        absl::StrCat("no peer runs as ", identity, " (peers: ", absl::StrJoin(known, ", "), ")"));
  }
  // Peers that report the CA unreachable would only say so again.
  std::vector<std::string> failures;
  std::erase_if(peers, [&](const PeerView& p) {
    if (!ReportsCaUnreachable(p, ca_config)) return false;
    failures.push_back(absl::StrCat(p.node_id, " reports the CA unreachable"));
    return true;
  });
  // The last CA-unreachable answer of a peer: the answer when no other peer does better.
  absl::Status ca_unreachable =
      peers.empty() ? ca::CaError(ca::hr::kRpcServerUnavailable, absl::StrJoin(failures, "; ")) : absl::OkStatus();
  for (const PeerView& p : peers) {
    auto channel = transport_->ChannelFor(p.node_id);
    if (!channel.ok()) {
      failures.push_back(std::string(channel.status().message()));
      continue;
    }
    auto stub = v1::Peer::NewStub(*channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + forward_timeout_);
    v1::ForwardRetrieveRequest request;
    Stamp(request.mutable_from());
    request.set_dc(target.dc);
    request.set_ca(target.ca);
    request.set_request_id(request_id);
    request.set_identity(identity);
    v1::ForwardRetrieveResponse reply;
    grpc::Status status = stub->ForwardRetrieve(&context, request, &reply);
    if (!status.ok()) {
      // Unreachable, too slow, or no longer running as `identity`: try the next one.
      failures.push_back(std::string(FromGrpc(status, p.node_id, "forwarded retrieve").message()));
      if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
        std::lock_guard lock(shared_->mu);
        for (PeerView& v : shared_->peers) {
          if (v.node_id == p.node_id) v.ca_identity.clear();
        }
      }
      continue;
    }
    shared_->Seen(p.node_id, nullptr);
    if (reply.has_record()) {
      const store::RequestRecord& r = reply.record();
      if (r.ca_config() != ca_config || r.request_id() != request_id) {
        failures.push_back(absl::StrCat("peer ", p.node_id, " answered for another request"));
        continue;
      }
      return node::ForwardedRetrieve{p.node_id, r};
    }
    if (reply.hresult() == 0) {
      failures.push_back(absl::StrCat("peer ", p.node_id, " answered with neither a record nor an error"));
      continue;
    }
    if (CaUnreachableHresult(reply.hresult())) {
      // That peer cannot reach the CA either: the next one may.
      shared_->SawCaUnreachable(p.node_id, ca_config);
      failures.push_back(absl::StrCat(p.node_id, ": ", reply.error()));
      ca_unreachable = ca::CaError(reply.hresult(), absl::StrCat("forwarded to ", p.node_id, ": ", reply.error()));
      continue;
    }
    // The CA answered the right identity with an error: that is the answer.
    return ca::CaError(reply.hresult(), absl::StrCat("forwarded to ", p.node_id, ": ", reply.error()));
  }
  if (!ca_unreachable.ok()) return ca_unreachable;
  return absl::UnavailableError(absl::StrJoin(failures, "; "));
}

absl::StatusOr<node::ForwardedSubmit> PeerDirectory::ForwardSubmit(const node::SubmitToForward& submit) {
  std::vector<PeerView> peers = Peers();
  std::vector<std::string> failures;
  std::vector<std::string> skipped;  // left out for their report of the CA
  std::erase_if(peers, [&](const PeerView& p) {
    if (!ReportsCaUnreachable(p, submit.ca_config)) return false;
    failures.push_back(absl::StrCat(p.node_id, " reports the CA unreachable"));
    skipped.push_back(p.node_id);
    return true;
  });
  MostRecentFirst(&peers);
  // One bound for every attempt: each includes the peer's lease round and CA call.
  const auto deadline = std::chrono::steady_clock::now() + forward_timeout_ + lookup_timeout_;
  // Tries `candidates` in order: the first answer that settles the submit, or nullopt.
  auto try_peers =
      [&](const std::vector<PeerView>& candidates) -> std::optional<absl::StatusOr<node::ForwardedSubmit>> {
    for (const PeerView& p : candidates) {
      if (std::chrono::steady_clock::now() >= deadline) {
        failures.push_back("no time left for " + p.node_id);
        break;
      }
      auto channel = transport_->ChannelFor(p.node_id);
      if (!channel.ok()) {
        failures.push_back(std::string(channel.status().message()));
        continue;
      }
      auto stub = v1::Peer::NewStub(*channel);
      grpc::ClientContext context;
      context.set_deadline(ForGrpc(deadline));
      v1::ForwardSubmitRequest request;
      Stamp(request.mutable_from());
      request.set_body(submit.body);
      request.set_client_pin(submit.client_pin);
      request.set_remote(submit.remote);
      v1::ForwardSubmitResponse reply;
      grpc::Status status = stub->ForwardSubmit(&context, request, &reply);
      if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
        // The peer may be submitting still; the client's retry finds its request.
        return ca::MarkOutcomeUnknown(absl::DeadlineExceededError(
            absl::StrCat("the submit forwarded to ", p.node_id, " did not finish in time")));
      }
      if (!status.ok()) {
        // Down, cut off, or an older node without ForwardSubmit: the next one. Should the call
        // have run there after all, the next peer's lease round finds its claim or its record.
        failures.push_back(std::string(FromGrpc(status, p.node_id, "forwarded submit").message()));
        continue;
      }
      shared_->Seen(p.node_id, nullptr);
      if (reply.ca_unreachable()) {
        shared_->SawCaUnreachable(p.node_id, submit.ca_config);
        failures.push_back(absl::StrCat(p.node_id, " cannot reach the CA either"));
        continue;
      }
      return node::ForwardedSubmit{p.node_id, reply.http_status(), reply.body(), reply.outcome()};
    }
    return std::nullopt;
  };
  if (auto settled = try_peers(peers)) return *std::move(settled);
  if (!skipped.empty() && std::chrono::steady_clock::now() < deadline) {
    // A report is up to a refresh interval old, and the CA may be back there since: before
    // giving up, ask those peers again and try the ones that now reach it.
    Refresh();
    std::vector<PeerView> again;
    for (const PeerView& p : Peers()) {
      if (std::find(skipped.begin(), skipped.end(), p.node_id) != skipped.end() &&
          !ReportsCaUnreachable(p, submit.ca_config)) {
        failures.push_back(absl::StrCat(p.node_id, " reaches it again"));
        again.push_back(p);
      }
    }
    if (auto settled = try_peers(again)) return *std::move(settled);
  }
  if (failures.empty()) failures.push_back("no peers");
  return absl::UnavailableError(absl::StrCat("no peer took the submit to the CA: ", absl::StrJoin(failures, "; ")));
}

namespace {
// One lease call (a claim or a release) to one peer.
struct LeaseCall {
  std::string peer;
  std::unique_ptr<v1::Peer::Stub> stub;
  grpc::ClientContext context;
  v1::AnnounceSubmitRequest request;
  v1::AnnounceSubmitResponse reply;
};
}  // namespace

std::vector<node::LeaseAnswer> PeerDirectory::ClaimSubmit(const node::SubmitIntent& claim, size_t grants_enough) {
  using Call = LeaseCall;
  const auto deadline = std::chrono::steady_clock::now() + lookup_timeout_;
  auto gather = std::make_shared<Gather>();
  auto answers = std::make_shared<std::vector<node::LeaseAnswer>>();
  const auto calls = CallsToEveryPeer<Call>(config_.cluster, *transport_, deadline);
  gather->outstanding = calls.size();
  for (const std::shared_ptr<Call>& call : calls) {
    Stamp(call->request.mutable_from());
    IntentToWire(claim, call->request.mutable_intent());
  }
  std::weak_ptr<Shared> shared = shared_;
  for (const std::shared_ptr<Call>& call : calls) {
    call->stub->async()->AnnounceSubmit(&call->context, &call->request, &call->reply,
                                        [call, gather, answers, shared](grpc::Status status) {
                                          if (status.ok()) {
                                            if (auto s = shared.lock()) s->Seen(call->peer, nullptr);
                                          }
                                          std::lock_guard lock(gather->mu);
                                          if (status.ok()) answers->push_back(AnswerFromWire(call->reply, call->peer));
                                          --gather->outstanding;
                                          gather->cv.notify_all();
                                        });
  }
  WaitThenCancel(*gather, calls, deadline, [&] {
    return std::count_if(answers->begin(), answers->end(), [](const node::LeaseAnswer& a) {
             return a.grant == node::LeaseGrant::kGranted;
           }) >= static_cast<std::ptrdiff_t>(grants_enough);
  });
  std::lock_guard lock(gather->mu);
  return *answers;
}

void PeerDirectory::LapseSubmit(const node::SubmitIntent& claim) { SendRelease(claim, false, true); }

void PeerDirectory::ReleaseSubmit(const node::SubmitIntent& claim, bool settled) { SendRelease(claim, settled, false); }

void PeerDirectory::SendRelease(const node::SubmitIntent& claim, bool settled, bool holder_gone) {
  using Call = LeaseCall;
  const auto deadline = std::chrono::steady_clock::now() + lookup_timeout_;
  for (const std::shared_ptr<Call>& call : CallsToEveryPeer<Call>(config_.cluster, *transport_, deadline)) {
    Stamp(call->request.mutable_from());
    IntentToWire(claim, call->request.mutable_intent());
    call->request.set_done(true);
    call->request.set_settled(settled);
    call->request.set_holder_gone(holder_gone);
    // Nobody waits: the call keeps itself alive until its callback.
    call->stub->async()->AnnounceSubmit(&call->context, &call->request, &call->reply, [call](grpc::Status) {});
  }
}

}  // namespace adcsc::cluster
