// What the API asks of the other nodes of its cluster when its own store cannot answer:
// a record it does not hold yet (replication is behind), a submit's dedupe key, and a CA
// retrieve that only a node running under another CA identity may make. The gRPC
// implementation is cluster::PeerDirectory; tests use a fake. Every call is bounded in time
// (cluster.lookup_timeout_ms): past it the API goes on without the peers.
// Thread-safety: implementations are called concurrently from the API's worker threads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "node/api/submit_leases.h"
#include "node/ca/ca_backend.h"
#include "store/request_store.h"

namespace adcsc::node {

// The answer of a node that ran a CA retrieve for another one.
struct ForwardedRetrieve {
  std::string node_id;                 // who ran it
  adcsc::store::RequestRecord record;  // the outcome it recorded
};

// The answer of a node that ran a submit for another one (its own full submit path).
struct ForwardedSubmit {
  std::string node_id;  // who ran it
  int http_status = 200;
  std::string body;     // the JSON answer, byte for byte
  std::string outcome;  // its outcome word
};

// What a node that could not reach the CA hands to a peer: the client's request as received.
struct SubmitToForward {
  std::string ca_config;  // "dc\ca": peers that report it unreachable are not asked
  std::string body;
  std::string client_pin;
  std::string remote;
};

class PeerLookup {
 public:
  virtual ~PeerLookup() = default;

  // Asks every peer at once for (ca_config, request_id). Returns the most advanced record any
  // of them holds (a settled one ends the wait early), or nullopt when none answered with
  // one before the bound.
  virtual std::optional<adcsc::store::RequestRecord> Lookup(const std::string& ca_config, uint32_t request_id) = 0;

  // Submit dedupe across the cluster: the newest record any peer holds for this CA config,
  // template and CSR SHA-256 (32 bytes) created at or after `not_before_ms`, or nullopt.
  virtual std::optional<adcsc::store::RequestRecord> LookupByDedupeKey(const std::string& ca_config,
                                                                       const std::string& template_name,
                                                                       const std::string& csr_sha256,
                                                                       int64_t not_before_ms) = 0;

  // Has a live peer whose CA identity is `identity` (compared case-insensitively, as Windows
  // does) run the CA retrieve for `target`/`request_id` and record it. UNAVAILABLE when no
  // live peer runs as that identity; a CA failure comes back as the CaError the peer's
  // backend returned (its HRESULT travels with it). Peers that report the CA unreachable
  // are not asked, and a peer whose CA call found the CA unreachable is followed by the
  // next one (a retrieve is a read: repeating it is harmless); also how a node whose own
  // CA is unreachable fails a retrieve over, with its own identity.
  virtual absl::StatusOr<ForwardedRetrieve> ForwardRetrieve(const std::string& identity,
                                                            const adcsc::ca::CaTarget& target, uint32_t request_id) = 0;

  // Hands a submit this node could not take to the CA (nothing was sent) to a live peer that
  // reaches it, trying them in turn (most recently heard from first, skipping those that
  // report the CA unreachable) within one bound. The peer runs its full submit path and
  // never forwards it again. UNAVAILABLE when no peer could take it to the CA; marked
  // ca::MarkOutcomeUnknown when a peer's call ran out of time (it may still submit: the
  // client's retry is deduplicated).
  virtual absl::StatusOr<ForwardedSubmit> ForwardSubmit(const SubmitToForward& /*submit*/) {
    return absl::UnavailableError("this node's peers take no forwarded submits");
  }

  // Asks every peer at once to grant `claim` the lease on its CSR (SubmitLeases::Claim on
  // their side) and returns the answers that came back within cluster.lookup_timeout, or as
  // soon as `grants_enough` peers granted it (a peer that is down then costs no wait); a
  // peer that cannot be reached is simply missing.
  virtual std::vector<LeaseAnswer> ClaimSubmit(const SubmitIntent& claim, size_t grants_enough) = 0;

  // Ends `claim`'s lease at every peer (SubmitLeases::Release), without waiting. `settled`:
  // its outcome is recorded or nothing reached the CA; otherwise the peers remember it as
  // lapsed so that the next claimant searches the CA for its request.
  virtual void ReleaseSubmit(const SubmitIntent& claim, bool settled) = 0;

  // Tells every peer that `claim`'s node is gone, so its lease lapses now (unsettled: the
  // next claimant searches the CA for its request). Not waited for.
  virtual void LapseSubmit(const SubmitIntent& claim) = 0;
};

}  // namespace adcsc::node
