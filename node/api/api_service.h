// The Jamf-facing API as a function from request to response, with no sockets: it checks
// the caller's client-certificate authorization, validates input, enforces the CA
// allowlist, talks to the CA backend, records every outcome in the request store before
// answering, and logs. The HTTPS server (https_server.h) only moves bytes.
// Thread-safe: Handle() is called concurrently from the worker pool.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "node/api/ca_reachability.h"
#include "node/api/ca_request_search.h"
#include "node/api/client_identity.h"
#include "node/api/peer_lookup.h"
#include "node/api/submit_leases.h"
#include "node/api/unserved_calls.h"
#include "node/ca/ca_backend.h"
#include "node/config/config.h"
#include "node/log/log_throttle.h"
#include "node/log/logging.h"
#include "node/pki/csr_policy.h"
#include "store/clock.h"
#include "store/request_store.h"

namespace adcsc::node {

struct CallLog;  // the one log line (and metrics) of an API call; api_service.cc

struct ApiRequest {
  std::string_view method;  // "GET", "POST", ...
  std::string_view target;  // path with optional query
  std::string_view body;
  std::string_view user_agent;
  std::string_view remote;                 // client address, for logs
  const ClientAuthResult* auth = nullptr;  // must be set
  // When a trusted TLS-terminating proxy forwarded the request (forwarded_caller.h): its pin,
  // for logs; `auth` and `remote` then describe the client behind it.
  std::string_view proxy_pin;
  // Set (to the peer's node ID) when a peer forwarded this submit because it could not reach
  // the CA: such a request is never forwarded again (one hop).
  std::string_view forwarded_by;
  // The request's header names as received (no values), for the shape of an unserved call
  // (unserved_calls.h). May be left empty.
  std::vector<std::string_view> header_names;
};

struct ApiResponse {
  int status = 200;
  std::string body;     // JSON
  std::string allow;    // "Allow" header value for 405
  std::string outcome;  // short word for logs and metrics: issued, pending, denied, bad_request, ...
  std::string node;     // the node that answered: the X-Adcsc-Node header (drills see who served)
  // For a refused client certificate: IIS's sub-status and Windows error code, for the access
  // log's sc-substatus and sc-win32-status (client_auth.h); 0 otherwise.
  int iis_substatus = 0;
  uint32_t win32_status = 0;
  // The connection is closed after this answer (a refused client gets one answer only).
  bool close_connection = false;
};

// Makes a recorded outcome durable on a write quorum of the cluster before the API answers.
// A single node has none. Replicate blocks until the quorum holds the write, or the quorum
// timeout passes (then OK under policy serve, UNAVAILABLE under refuse).
class WriteReplication {
 public:
  virtual ~WriteReplication() = default;
  virtual absl::Status Replicate(const adcsc::store::WriteResult& write) = 0;
};

// Told about every API call once it is answered: the metrics. Implementations are called
// concurrently from the worker threads and must be cheap.
class ApiObserver {
 public:
  virtual ~ApiObserver() = default;
  // `endpoint`: "request" or "retrieve"; `outcome` as in ApiResponse; `ca_ms` < 0 when the
  // call made no CA call.
  virtual void ObserveCall(std::string_view endpoint, std::string_view outcome, int http_status, double latency_ms,
                           double ca_ms) = 0;
  // A submit the signing policy denied (before ObserveCall for it); `rule` as in
  // pki::PolicyDecision, e.g. "san_upn".
  virtual void ObservePolicyDenial(std::string_view rule) {}
  // An authorized call under /api/ that adcsc does not serve (404 or 405), by method and path
  // label (unserved_calls.h: at most UnservedCalls::kMaxShapes paths, then "other").
  virtual void ObserveUnserved(std::string_view method, std::string_view path_label) {}
  // Every call once answered (after ObserveCall), with the error text it was logged with
  // (empty when none): the status page's recent failures. Never the request's contents.
  virtual void ObserveResult(std::string_view endpoint, std::string_view outcome, int http_status,
                             std::string_view error) {}
};

// Tells each of several observers (the metrics and the status page's activity log).
class ApiObserverFanout final : public ApiObserver {
 public:
  explicit ApiObserverFanout(std::vector<ApiObserver*> observers) : observers_(std::move(observers)) {}
  void ObserveCall(std::string_view endpoint, std::string_view outcome, int http_status, double latency_ms,
                   double ca_ms) override {
    for (ApiObserver* o : observers_) o->ObserveCall(endpoint, outcome, http_status, latency_ms, ca_ms);
  }
  void ObservePolicyDenial(std::string_view rule) override {
    for (ApiObserver* o : observers_) o->ObservePolicyDenial(rule);
  }
  void ObserveUnserved(std::string_view method, std::string_view path_label) override {
    for (ApiObserver* o : observers_) o->ObserveUnserved(method, path_label);
  }
  void ObserveResult(std::string_view endpoint, std::string_view outcome, int http_status,
                     std::string_view error) override {
    for (ApiObserver* o : observers_) o->ObserveResult(endpoint, outcome, http_status, error);
  }

 private:
  std::vector<ApiObserver*> observers_;
};

// What a service talks to besides the CA and its own store; each is optional.
struct ApiServiceLinks {
  // In a cluster: every recorded outcome is replicated through this before the answer.
  WriteReplication* replication = nullptr;
  // In a cluster: asked when this node's store lacks a record or a dedupe match, and to
  // forward a retrieve to a node with the submitter's CA identity.
  PeerLookup* peers = nullptr;
  // Told about every call (the metrics).
  ApiObserver* observer = nullptr;
};

class ApiService {
 public:
  // Borrows everything; all must outlive the service.
  ApiService(const Config& config, adcsc::ca::CaBackend* backend, adcsc::store::RequestStore* store, EventLog* log,
             const Clock* clock, ApiServiceLinks links = {});
  ApiService(const ApiService&) = delete;
  ApiService& operator=(const ApiService&) = delete;

  ApiResponse Handle(const ApiRequest& request);

  // The CA allowlist (with each entry's templates and signing policy) the service enforces:
  // the configuration's ca.allow until a reload replaces it. Calls already past their check
  // finish under the list they were checked against; later calls see the new one.
  std::shared_ptr<const std::vector<AllowedCa>> Allowlist() const;
  void ReplaceAllowlist(std::vector<AllowedCa> allow);

  // This node's table of leases on CSRs (submit_leases.h): its own submits' and those it
  // granted its peers (the Peer service answers their claims from it).
  SubmitLeases& leases() { return leases_; }

  // Looks for the CA's answer to each submit this node began but never recorded (its intent
  // is still in the store: the node died, or the answer was lost), and records what it
  // finds, so any node's dedupe answers the client's retry. Run once after start; returns
  // how many it settled.
  int ResolveOpenIntents();

  // A peer's forwarded submit (PeerLookup::ForwardSubmit on its side): the client's body run
  // through this node's full submit path (checks, dedupe, lease, intent, CA), never forwarded
  // again; `client_pin` and `remote` describe the client for the log.
  ApiResponse SubmitForPeer(const std::string& peer_id, std::string_view body, std::string_view client_pin,
                            std::string_view remote);

  // This node's latest view of each CA's reachability (its CA calls; the health probes add
  // theirs), which the Peer service reports to the peers.
  CaReachability& ca_reachability() { return ca_reachability_; }

  // A peer's forwarded retrieve (PeerLookup::ForwardRetrieve on its side): runs the CA
  // retrieve as this node's identity, records the outcome (replicated like any other) and
  // returns the record. Refused with FAILED_PRECONDITION when `identity` is not this node's
  // or the CA config is not on this node's allowlist; a CA failure is returned as CaError.
  absl::StatusOr<adcsc::store::RequestRecord> RetrieveForPeer(const std::string& peer_id, const std::string& identity,
                                                              const adcsc::ca::CaTarget& target, uint32_t request_id);

 private:
  ApiResponse Route(const ApiRequest& request);
  ApiResponse Version();
  // Records the shape of an authorized call under /api/ that is answered `status` (404 or
  // 405) because adcsc does not serve it: logged once per shape, counted always.
  void NoteUnserved(const ApiRequest& request, const std::string& path, int status);
  ApiResponse Submit(const ApiRequest& request);

  // A submit's request, checked: parsed, on the allowlist, its CSR decoded and verified.
  struct CheckedSubmit {
    std::shared_ptr<const std::vector<AllowedCa>> allowlist;  // the list it was checked against
    const AllowedCa* allowed = nullptr;                       // its entry (in `allowlist`); null for an open intent
    adcsc::pki::CsrFacts csr;                                 // what the CSR asks for (empty for an open intent)
    std::string ca_config;
    std::string template_name;
    adcsc::ca::CaTarget target;
    std::vector<uint8_t> csr_der;
    std::string csr_sha256;  // raw 32 bytes
    adcsc::store::SubmitKey key() const { return {ca_config, template_name, csr_sha256}; }
  };
  // A checked submit within the CSR's dedupe, lease and intent; returns finished answers,
  // except (with call->defer_unreachable) for a CA it could not reach and sent nothing to:
  // then call->unreachable holds the error, and Submit fails the submit over to a peer once
  // this node's lease is released.
  ApiResponse SubmitChecked(const CheckedSubmit& s, CallLog* call);
  // Hands the client's submit to a peer that reaches the CA (this node could not: `unreachable`);
  // answers with the peer's answer, or with this node's error when no peer could take it.
  ApiResponse FailSubmitOver(const ApiRequest& request, const CheckedSubmit& s, const absl::Status& unreachable,
                             CallLog* call);
  // InvalidArgument with the BAD_REQUEST message when the request is not acceptable.
  absl::StatusOr<CheckedSubmit> CheckSubmit(const ApiRequest& request, nlohmann::json* fields) const;
  // The answer to a CSR its allowlist entry's signing policy refuses: what a CA denial looks
  // like (CR_DISP_DENIED, request-id 0) with the rule named, logged at warn and counted; or
  // nullopt when the policy allows it.
  std::optional<ApiResponse> DenyOutsidePolicy(const CheckedSubmit& s, CallLog* call);
  // An earlier request of the same CSR (CA config, template, digest) since `not_before_ms`, in
  // this node's store or (with `ask_peers`) at a peer; nullopt when there is none to reuse.
  absl::StatusOr<std::optional<adcsc::store::RequestRecord>> FindEarlierSubmit(const CheckedSubmit& s,
                                                                               int64_t not_before_ms, bool ask_peers,
                                                                               nlohmann::json* fields);
  // Sends `s` to the CA once and records the answer. With `intent`, writes it durably first
  // (refusing the submit if it cannot) and settles it with the answer; a lost answer is
  // looked for at the CA at once, and if it is not there `*settled` turns false.
  ApiResponse SubmitOnce(const CheckedSubmit& s, const adcsc::store::SubmitIntentRow* intent, CallLog* call,
                         bool* settled = nullptr);

  // The lease on a CSR, as AcquireLease ends: held (`claim`), or the rival's answer found
  // while waiting for it (`found`), or neither (`error`: the wait ran out, no majority
  // answered, or the CA failed during the search).
  struct Lease {
    std::optional<SubmitIntent> claim;
    std::optional<SubmitIntent> lapsed;  // a claim that lapsed unreleased: search from it first
    std::optional<adcsc::store::RequestRecord> found;
    absl::Status error;
  };
  Lease AcquireLease(const CheckedSubmit& s, nlohmann::json* fields);
  // Ends `claim` here and at the peers.
  void ReleaseLease(const SubmitIntent& claim, bool settled);
  // Why the process that made `rival` is gone (its node restarted since, or has been silent
  // for rounds spanning a while, tracked in `silent_since`), or "" while it may be alive.
  std::string RivalGone(const SubmitIntent& rival, const std::vector<LeaseAnswer>& answers,
                        std::map<std::pair<std::string, uint64_t>, int64_t>* silent_since) const;
  // While `rival` holds the lease: looks for its record in the store and (one pass of
  // `search`) its request at the CA, then waits until `until_ms` (monotonic) or a change in
  // the lease table. The record found; nullopt to claim again; a CA failure of the search.
  absl::StatusOr<std::optional<adcsc::store::RequestRecord>> AwaitRival(const SubmitIntent& rival,
                                                                        const CheckedSubmit& s, CaRequestSearch* search,
                                                                        int64_t until_ms, nlohmann::json* fields);
  // Searches the CA for `s`'s request among the IDs after `after_request_id` (one pass) and
  // records what it finds (RecordFound). nullopt: not at the CA.
  absl::StatusOr<std::optional<adcsc::store::RequestRecord>> FindAtCa(const CheckedSubmit& s, uint32_t after_request_id,
                                                                      const std::string& requester,
                                                                      nlohmann::json* fields);
  // The answer and log fields of a submit whose CA call failed (CaFailureAnswer), finished;
  // or, with call->defer_unreachable and a CA that could not be reached, left to Submit.
  ApiResponse SubmitCaFailure(const absl::Status& status, CallLog* call);
  // The answer to a CA call that failed (docs/api.md, "Errors"): HTTP 200 with the original's
  // INTERNAL_ERROR message naming `original_call`; when the CA was unreachable or the outcome
  // is unknown and api.ca_unreachable_status is 503, 503 SERVICE_UNAVAILABLE. `body` shapes
  // the JSON from (status, message); `extra` is appended to the message.
  ApiResponse CaFailureAnswer(const absl::Status& status, std::string_view original_call,
                              std::string (*body)(std::string_view, std::string_view), std::string_view extra,
                              CallLog* call) const;
  // A search of the CA for `s`'s request among the IDs after `after_request_id`; IDs this
  // node's store holds for another CSR cost no CA call.
  std::unique_ptr<CaRequestSearch> NewCaSearch(const CheckedSubmit& s, uint32_t after_request_id);
  // Records what a search found (as `s`'s request, submitted by `requester`), settling `s`'s
  // submit intent; returns the stored record.
  absl::StatusOr<adcsc::store::RequestRecord> RecordFound(const CheckedSubmit& s, const adcsc::ca::CaResponse& found,
                                                          const std::string& requester);
  // 200 with the request's disposition and ID: a submit answered by an earlier request.
  ApiResponse AnswerWithRecord(const adcsc::store::RequestRecord& rec, CallLog* call);
  int ClusterSize() const;
  static uint64_t NextClaimId();
  static SubmitLeases::Options LeaseOptions(const Config& config, const ApiServiceLinks& links);
  ApiResponse Retrieve(const ApiRequest& request);

  const Config& config_;
  adcsc::ca::CaBackend* backend_;
  adcsc::store::RequestStore* store_;
  EventLog* log_;
  const Clock* clock_;
  WriteReplication* const replication_;
  PeerLookup* const peers_;
  ApiObserver* const observer_;
  SubmitLeases leases_;
  mutable std::mutex allowlist_mutex_;
  std::shared_ptr<const std::vector<AllowedCa>> allowlist_;  // guarded by allowlist_mutex_
  UnservedCalls unserved_;                                   // the shapes of calls not served, logged once each
  LogThrottle refusal_log_;                                  // client_refused: once per caller address per interval
  CaReachability ca_reachability_;

  // Records `record` durably (and on a write quorum in a cluster); when `settles` is set,
  // removes that submit intent in the same commit.
  absl::Status Record(const adcsc::store::RequestRecord& record, const adcsc::store::SubmitKey* settles = nullptr);
  // The same for an administrator's action (RequestStore::PutAdminOutcome).
  absl::Status RecordAdminAction(const adcsc::store::RequestRecord& record);

 public:
  // Records what the CA answers for a request after an administrator changed it (approved,
  // denied, revoked, released from hold): over what the store knows of it, stamped as an
  // administrator's action (RequestStore::PutAdminOutcome, so a release moves a revoked record
  // back to issued), replicated as any CA answer, so a retrieve on any node answers it without the
  // CA. Errors: the store's.
  absl::Status RecordCaAdminOutcome(const adcsc::ca::CaTarget& target, const adcsc::ca::CaResponse& answer);

  // The request ID of the certificate with serial number `serial_hex` (as the CA writes it)
  // among the records of `target` this node holds, or nullopt. A scan of the CA's records:
  // for an administrator's revoke by serial, not the API path. Errors: the store's.
  absl::StatusOr<std::optional<uint32_t>> FindRequestBySerial(const adcsc::ca::CaTarget& target,
                                                              const std::string& serial_hex) const;

 private:
  // A CA retrieve as this node's identity; the call's duration goes into `fields`.
  absl::StatusOr<adcsc::ca::CaResponse> CaRetrieve(const adcsc::ca::CaTarget& target, uint32_t request_id,
                                                   nlohmann::json* fields);
  // Records a CA retrieve's answer over what was `known` of the request (may be null).
  absl::Status RecordRetrieved(const adcsc::ca::CaTarget& target, const adcsc::ca::CaResponse& answer,
                               const adcsc::store::RequestRecord* known,
                               const adcsc::store::SubmitKey* settles = nullptr);
};

}  // namespace adcsc::node
