// The ADCS emulator: an endpoint mapper and an MS-ICPR ICertPassage server on loopback, backed
// by the embedded CA engine, that behaves like a Windows enterprise CA where the connector can
// tell: NTLM logon against an accounts file, E_ACCESSDENIED below packet privacy (as with
// IF_ENFORCEENCRYPTICERTREQUEST), CA and per-template Enroll permissions, minimum key sizes,
// pending templates, only the submitter may retrieve, E_INVALIDARG for an attribute blob
// whose length leaves out the terminating NUL. Knobs for drills: latency, a failure rate,
// refusing connections. It also serves the CA's admin interface the way a Windows CA does, over
// DCOM: IRemoteSCMActivator on the endpoint-mapper port (activation at packet integrity or
// higher), and an object exporter on its own port with ICertAdminD/ICertAdminD2 (approve,
// deny, revoke, CA properties; packet privacy as with IF_ENFORCEENCRYPTICERTADMIN, the
// Officer right per account) and IRemUnknown (RemRelease). Used by tests, the quickstart and
// drills; never in production.
// Thread-safety: Start/Stop from one thread; everything else from any thread.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "node/ca/local_ca.h"
#include "node/gss/credentials.h"
#include "node/rpc/server.h"
#include "node/rpc/tcp_stream.h"
#include "tools/adcs-emulator/emulator_config.h"

namespace adcsc::emulator {

struct EmulatorStats {
  uint64_t connections = 0;
  uint64_t calls = 0;
  uint64_t submits = 0;  // CertServerRequest with request ID 0 that reached the CA engine
  uint64_t retrieves = 0;
  uint64_t refused_calls = 0;  // answered E_ACCESSDENIED (auth level, permissions, identity)
  uint64_t dropped_calls = 0;  // dropped by the failure-rate knob
  uint64_t lost_answers = 0;   // submits taken, then answered by fault_after_accept or drop_after_accept
  uint64_t failed_logons = 0;
  // ICertPassage calls by how their connection authenticated ("ntlm"; "kerberos" or
  // "negotiate/kerberos"): which mechanism a client really used.
  uint64_t ntlm_calls = 0;
  uint64_t kerberos_calls = 0;
  // DCOM admin calls by operation ("RemoteCreateInstance", "RevokeCertificate", ...), and
  // how many of them were refused (auth level, Officer right).
  std::map<std::string, uint64_t> admin_calls;
  uint64_t admin_refused = 0;
};

class Emulator {
 public:
  explicit Emulator(EmulatorConfig config);
  ~Emulator();
  Emulator(const Emulator&) = delete;
  Emulator& operator=(const Emulator&) = delete;

  // Opens the CA and both listeners; after it returns OK the ports are final.
  absl::Status Start();
  // Closes the listeners and every connection, then waits for their threads.
  void Stop();

  uint16_t epm_port() const { return epm_port_; }
  uint16_t icpr_port() const { return icpr_port_; }
  uint16_t dcom_port() const { return dcom_port_; }
  adcsc::ca::LocalCa& ca() { return *ca_; }

  EmulatorStats stats() const;
  Faults faults() const;
  void set_faults(const Faults& faults);

  // The ICertPassage logic, callable without a network (tests).
  absl::StatusOr<rpc::Bytes> HandleCertPassage(const rpc::CallContext& caller, uint16_t opnum, rpc::ByteView stub);
  // IRemoteSCMActivator (on the endpoint-mapper port) and the object exporter's interfaces,
  // callable without a network too (cert_admin.cc).
  absl::StatusOr<rpc::Bytes> HandleActivation(const rpc::CallContext& caller, uint16_t opnum, rpc::ByteView stub);
  absl::StatusOr<rpc::Bytes> HandleExporter(const rpc::CallContext& caller, uint16_t opnum, rpc::ByteView stub);

 private:
  void AcceptLoop(rpc::TcpListener* listener, const rpc::ServerOptions* options, const rpc::CallHandler* handler);
  absl::StatusOr<rpc::Bytes> HandleEndpointMapper(uint16_t opnum, rpc::ByteView stub);
  bool MayEnroll(const std::string& account, const std::string& template_name) const;
  bool IsOfficer(const std::string& account) const;
  void CountAdminCall(const std::string& operation, bool refused);
  absl::StatusOr<rpc::Bytes> HandleCertAdmin(const rpc::CallContext& caller, uint16_t opnum, rpc::ByteView stub);
  // Counts one down from `knob` (fault_after_accept or drop_after_accept) when it is above 0.
  bool TakeOne(int Faults::*knob);

  EmulatorConfig config_;
  std::unique_ptr<adcsc::ca::LocalCa> ca_;
  std::unique_ptr<rpc::TcpListener> epm_listener_, icpr_listener_, dcom_listener_;
  uint16_t epm_port_ = 0, icpr_port_ = 0, dcom_port_ = 0;
  rpc::ServerOptions epm_options_, icpr_options_, dcom_options_;
  rpc::CallHandler epm_handler_, icpr_handler_, dcom_handler_;
  std::vector<std::thread> accept_threads_;

  mutable std::mutex mu_;
  std::condition_variable connections_done_;
  std::set<rpc::TcpStream*> open_;  // live connections, to shut down on Stop()
  Faults faults_;
  std::mt19937_64 rng_{std::random_device{}()};
  bool stopping_ = false;
  // DCOM: the one object exporter's OXID, its IRemUnknown IPID, and the live CCertAdminD
  // interface pointers (IPID wire bytes -> public references held by clients).
  uint64_t oxid_ = 0;
  std::array<uint8_t, 16> ipid_rem_unknown_{};
  std::map<std::array<uint8_t, 16>, uint32_t> objects_;
  std::map<std::string, uint64_t> admin_calls_;
  uint64_t admin_refused_ = 0;

  std::atomic<uint64_t> ntlm_calls_{0}, kerberos_calls_{0};
  std::atomic<uint64_t> connections_{0}, calls_{0}, submits_{0}, retrieves_{0}, refused_{0}, dropped_{0},
      failed_logons_{0}, lost_answers_{0};
};

}  // namespace adcsc::emulator
