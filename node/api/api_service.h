// The Jamf-facing API as a function from request to response, with no sockets: it checks
// the caller's client-certificate authorization, validates input, enforces the CA
// allowlist, talks to the CA backend, records every outcome in the request store before
// answering, and logs. The HTTPS server (https_server.h) only moves bytes.
// Thread-safe: Handle() is called concurrently from the worker pool.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "node/api/client_identity.h"
#include "node/api/in_flight_submits.h"
#include "node/api/peer_lookup.h"
#include "node/ca/ca_backend.h"
#include "node/config/config.h"
#include "node/log/logging.h"
#include "store/clock.h"
#include "store/request_store.h"

namespace adcsc::node {

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

  // The submits in flight on this node and (as their nodes announced them) on its peers;
  // the Peer service adds and removes the peers' ones.
  InFlightSubmits& in_flight() { return in_flight_; }

  // A peer's forwarded retrieve (PeerLookup::ForwardRetrieve on its side): runs the CA
  // retrieve as this node's identity, records the outcome (replicated like any other) and
  // returns the record. Refused with FAILED_PRECONDITION when `identity` is not this node's
  // or the CA config is not on this node's allowlist; a CA failure is returned as CaError.
  absl::StatusOr<adcsc::store::RequestRecord> RetrieveForPeer(const std::string& peer_id, const std::string& identity,
                                                              const adcsc::ca::CaTarget& target, uint32_t request_id);

 private:
  ApiResponse Route(const ApiRequest& request);
  ApiResponse Version();
  ApiResponse Submit(const ApiRequest& request);

  // A submit's request, checked: parsed, on the allowlist, its CSR decoded and verified.
  struct CheckedSubmit {
    std::string ca_config;
    std::string template_name;
    adcsc::ca::CaTarget target;
    std::vector<uint8_t> csr_der;
    std::string csr_sha256;  // raw 32 bytes
  };
  // InvalidArgument with the BAD_REQUEST message when the request is not acceptable.
  absl::StatusOr<CheckedSubmit> CheckSubmit(const ApiRequest& request, nlohmann::json* fields) const;
  // An earlier request of the same CSR (CA config, template, digest) since `not_before_ms`, in
  // this node's store or at a peer; nullopt when there is none to reuse.
  absl::StatusOr<std::optional<adcsc::store::RequestRecord>> FindEarlierSubmit(const CheckedSubmit& s,
                                                                               int64_t not_before_ms,
                                                                               nlohmann::json* fields);
  // Records the CA's answer to `s` (durably, and on a write quorum in a cluster).
  absl::Status RecordCaAnswer(const CheckedSubmit& s, const adcsc::ca::CaResponse& answer);
  ApiResponse Retrieve(const ApiRequest& request);

  const Config& config_;
  adcsc::ca::CaBackend* backend_;
  adcsc::store::RequestStore* store_;
  EventLog* log_;
  const Clock* clock_;
  WriteReplication* const replication_;
  PeerLookup* const peers_;
  ApiObserver* const observer_;
  InFlightSubmits in_flight_;

  // A submit of the same CSR is in flight elsewhere, or was cut short (`other`): waits up to
  // ca.in_flight_wait for its record to arrive and meanwhile searches the CA for its answer
  // (ca_request_search.h). The record found (and recorded), or nullopt when none turned up.
  // A CA failure during the search is returned: this node could not submit either.
  absl::StatusOr<std::optional<adcsc::store::RequestRecord>> AwaitInFlight(const SubmitIntent& other,
                                                                           const adcsc::ca::CaTarget& target,
                                                                           const std::vector<uint8_t>& csr_der,
                                                                           nlohmann::json* fields);

  // Records `record` durably (and on a write quorum in a cluster).
  absl::Status Record(const adcsc::store::RequestRecord& record);
  // A CA retrieve as this node's identity; the call's duration goes into `fields`.
  absl::StatusOr<adcsc::ca::CaResponse> CaRetrieve(const adcsc::ca::CaTarget& target, uint32_t request_id,
                                                   nlohmann::json* fields);
  // Records a CA retrieve's answer over what was `known` of the request (may be null).
  absl::Status RecordRetrieved(const adcsc::ca::CaTarget& target, const adcsc::ca::CaResponse& answer,
                               const adcsc::store::RequestRecord* known);
};

}  // namespace adcsc::node
