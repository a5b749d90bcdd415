// The Jamf-facing API as a function from request to response, with no sockets: it checks
// the caller's client-certificate authorization, validates input, enforces the CA
// allowlist, talks to the CA backend, records every outcome in the request store before
// answering, and logs. The HTTPS server (https_server.h) only moves bytes.
// Thread-safe: Handle() is called concurrently from the worker pool.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "node/ca/ca_backend.h"
#include "node/client_auth.h"
#include "node/config.h"
#include "node/logging.h"
#include "store/clock.h"
#include "store/request_store.h"

namespace adcsc::node {

struct ApiRequest {
  std::string_view method;   // "GET", "POST", ...
  std::string_view target;   // path with optional query
  std::string_view body;
  std::string_view user_agent;
  std::string_view remote;   // client address, for logs
  const ClientAuthResult* auth = nullptr;  // must be set
};

struct ApiResponse {
  int status = 200;
  std::string body;          // JSON
  std::string allow;         // "Allow" header value for 405
  std::string outcome;       // short word for logs and metrics: issued, pending, denied, bad_request, ...
};

class ApiService {
 public:
  // Borrows everything; all must outlive the service.
  ApiService(const Config& config, adcsc::ca::CaBackend* backend, adcsc::store::RequestStore* store,
             EventLog* log, const Clock* clock);
  ApiService(const ApiService&) = delete;
  ApiService& operator=(const ApiService&) = delete;

  ApiResponse Handle(const ApiRequest& request);

 private:
  ApiResponse Version();
  ApiResponse Submit(const ApiRequest& request);
  ApiResponse Retrieve(const ApiRequest& request);

  const Config& config_;
  adcsc::ca::CaBackend* backend_;
  adcsc::store::RequestStore* store_;
  EventLog* log_;
  const Clock* clock_;
};

}  // namespace adcsc::node
