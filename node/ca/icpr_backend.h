// The `icpr` CA backend: submits and retrieves through MS-ICPR (ICertPassage::CertServerRequest)
// on the CA host named by each request's config.dc, over DCE/RPC on TCP at packet privacy, as
// the one domain service account of the cluster, with Kerberos or NTLMv2 (icpr_auth.h). Authenticated connections are
// pooled per CA host and reused; a dead pooled connection is replaced transparently; a
// retrieve (idempotent) is retried once on a transport failure, a submit never is.
// Thread-safety: all methods may be called concurrently from any thread; each call uses its
// own connection.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "node/ca/ca_backend.h"
#include "node/ca/icpr_auth.h"
#include "node/rpc/client.h"
#include "node/rpc/icpr_stub.h"

namespace adcsc::ca {

struct IcprBackendOptions {
  // How to authenticate (NTLM, Kerberos, negotiate) as the service account; required.
  std::shared_ptr<IcprAuthenticator> auth;
  uint16_t epm_port = 135;
  std::chrono::milliseconds connect_timeout{3'000};
  std::chrono::milliseconds call_timeout{10'000};
  size_t max_idle_connections = 4;  // per CA host
};

// What the backend has done, for metrics and tests.
struct IcprBackendCounters {
  uint64_t connections_opened = 0;  // authenticated binds made
  uint64_t connections_reused = 0;  // calls that used a pooled connection
  uint64_t endpoint_lookups = 0;    // ept_map calls
  uint64_t retries = 0;             // retrieves retried after a transport failure
  IcprAuthStats auth;               // mechanisms used, NTLM fallbacks, ticket renewals
};

class IcprBackend final : public CaBackend {
 public:
  explicit IcprBackend(IcprBackendOptions options);
  ~IcprBackend() override;

  // Submit: request ID 0, the DER CSR, attribute CertificateTemplate:<name>, authority =
  // target.ca. Retrieve: the request ID, empty request and attributes. Dispositions map to
  // Disposition; a CA answer carrying an HRESULT instead of a disposition (template denied,
  // key too short...) is kDenied with that hresult when the CA gave it a request ID, else an
  // error status carrying the HRESULT, as are the call's return value, faults (access denied
  // -> E_ACCESSDENIED) and transport failures (RPC_S_SERVER_UNAVAILABLE, RPC_S_CALL_FAILED,
  // ERROR_TIMEOUT).
  absl::StatusOr<CaResponse> Submit(const SubmitRequest& request) override;
  absl::StatusOr<CaResponse> Retrieve(const RetrieveRequest& request) override;

  // Endpoint lookup, authenticated bind, then a status call for a request ID no CA issues:
  // the CA answers CERTSRV_E_PROPERTY_EMPTY when it knows target.ca and accepted our logon;
  // anything else (access denied, unknown CA name, no answer) is returned as the error.
  absl::Status Ping(const CaTarget& target, const CallerIdentity& caller) override;

  std::string Kind() const override { return "icpr"; }
  std::string CallName() const override { return "ICertPassage::CertServerRequest"; }
  std::optional<CaConnectionStats> ConnectionStats() override;
  IcprBackendCounters counters() const;
  // Authenticated connections waiting in the pool, per CA host (lowercase).
  std::map<std::string, size_t> IdleConnections();

 private:
  struct HostPool {
    std::mutex mu;
    std::optional<uint16_t> port;  // ICertPassage's port from the endpoint mapper
    std::vector<std::unique_ptr<rpc::ClientConnection>> idle;
  };
  struct Lease {
    std::unique_ptr<rpc::ClientConnection> connection;
    bool reused = false;
  };

  HostPool& PoolFor(const std::string& host);
  absl::StatusOr<Lease> Acquire(const std::string& host);
  void Release(const std::string& host, std::unique_ptr<rpc::ClientConnection> connection);
  void ForgetEndpoint(const std::string& host);
  // One CertServerRequest; retried once on a transport failure when `idempotent`.
  absl::StatusOr<rpc::CertServerRequestOut> Call(const CaTarget& target, const rpc::CertServerRequestIn& in,
                                                 bool idempotent);

  IcprBackendOptions options_;
  std::mutex pools_mu_;
  std::map<std::string, std::unique_ptr<HostPool>> pools_;
  std::atomic<uint64_t> connections_opened_{0}, connections_reused_{0}, endpoint_lookups_{0}, retries_{0};
};

// The HRESULT an RPC-layer error stands for (see IcprBackend::Submit), and the status carrying
// it with `context` ("cannot reach the CA at ca01:135: ...").
absl::Status RpcErrorToCaError(const absl::Status& rpc_error, bool during_call);

}  // namespace adcsc::ca
