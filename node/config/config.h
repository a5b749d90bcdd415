// The node's configuration: the TOML file `adcsc node --config FILE` reads, parsed and
// validated in one pass. Every problem is reported at once, each naming the file and key.
// A Config is a plain value; share it read-only between threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "node/ca/local_ca.h"
#include "node/pki/csr_policy.h"

namespace adcsc::node {

// One CA the connector may talk to (the Jamf "config" object), with its templates and the
// signing policy every CSR sent to it must pass (node/pki/csr_policy.h; absent keys take the
// policy's restrictive defaults).
struct AllowedCa {
  std::string dc;                      // CA host FQDN, compared case-insensitively
  std::string ca;                      // CA instance name, compared exactly
  std::vector<std::string> templates;  // empty: any template; else only these
  // Optional PEM file of the CA's certificate (and the chain above it), for the expiry report
  // only; without it the node learns the certificate from the CA's answers.
  std::filesystem::path ca_cert_file;
  adcsc::pki::CsrPolicy policy;
  std::string key = "ca.allow";  // where it was configured, e.g. "ca.allow[0]": names the policy in denials
};

struct ApiConfig {
  std::string listen_address = "0.0.0.0";
  uint16_t listen_port = 8443;
  std::filesystem::path cert_file;       // server certificate (PEM, leaf first, chain may follow)
  std::filesystem::path key_file;        // server private key (PEM); must be mode 0600 or stricter
  std::filesystem::path client_ca_file;  // PEM bundle a client certificate must chain to
  std::vector<std::string> client_pins;  // SHA-256 of allowed client certificates, normalised hex
  // The pins written `{ pin = "...", until = <date-time> }`: the end of a rotation's overlap
  // (Unix seconds), after which that certificate is refused (docs/configuration.md).
  std::map<std::string, int64_t> client_pin_until;
  // Pins (each also in client_pins) of TLS-terminating load balancers whose X-Adcsc-Client-*
  // headers name the real caller (forwarded_caller.h); from anyone else they are ignored.
  std::vector<std::string> trusted_proxy_pins;
  size_t max_body_bytes = 64 * 1024;
  std::chrono::milliseconds handshake_timeout{10'000};
  std::chrono::milliseconds header_timeout{10'000};
  std::chrono::milliseconds idle_timeout{60'000};
  std::chrono::milliseconds request_timeout{60'000};
  size_t max_connections = 1024;
  // Admission (node/http/connection_admission.h). Of max_connections, this many only clients
  // whose certificate is mapped (in client_pins) may hold: connections still in their
  // handshake, or refused, share the rest, so they can never take the last slots. Unset in
  // the file: max_connections / 8.
  size_t reserved_connections = 128;
  // Per source address (an IPv6 source counts by its /64): how many connections not yet found
  // mapped it may hold, and how many refusals (unmapped certificate, failed handshake, a
  // request never sent) it earns per second beyond a burst before its new connections are
  // closed unanswered. Sources in source_limit_exempt (a TCP-mode load balancer: every
  // client arrives from its address) are limited by the shared pool only.
  size_t max_connections_per_source = 32;
  int refusals_per_source_per_s = 5;
  int refusal_burst = 20;
  std::vector<std::string> source_limit_exempt;  // addresses or CIDR prefixes
  // Refusals (and other events a client can cause at will) are logged at most once per
  // source and event in this interval, with the count of what was left out; 0: every one.
  // The access log still has a line for every request answered.
  std::chrono::seconds refusal_log_interval{60};
  // The HTTP status of an answer whose CA no node of the cluster reached (or whose outcome is
  // unknown): 200 with INTERNAL_ERROR as the original connector answered, or 503 (with
  // SERVICE_UNAVAILABLE) for a load balancer's L7 retry. Only 200 or 503.
  int ca_unreachable_status = 200;
  std::chrono::milliseconds shutdown_grace{30'000};
  unsigned io_threads = 0;      // 0: number of cores
  unsigned worker_threads = 0;  // 0: 4 x cores (CA calls may block)
  // Resumable TLS sessions kept in memory. A session from a full handshake holds its own
  // decoded client certificate (~10 KB), so this bounds that memory (~10 MB at 1024).
  int session_cache_size = 1024;
  std::chrono::seconds session_timeout{3600};
};

struct LogConfig {
  std::string level = "info";        // trace, debug, info, warn, error
  std::filesystem::path file;        // JSON lines; empty: standard output
  std::filesystem::path access_log;  // W3C extended log; empty: none
};

// For backend = "icpr": how to reach and authenticate to the ADCS CAs (MS-ICPR over
// DCE/RPC on TCP at packet privacy) as the service account ca.identity (DOMAIN\user), with
// Kerberos, NTLMv2, or negotiate (Kerberos; NTLM only when Kerberos cannot be used and an
// NTLM secret is configured). Secrets stay in 0600 files read when the backend starts.
struct IcprConfig {
  // "ntlm", "kerberos" or "negotiate". Default: "negotiate" when a Kerberos credential
  // (keytab or ccache) is set, else "ntlm".
  std::string auth;
  std::filesystem::path password_file;  // the account's password (one line): NTLM, and Kerberos
  std::filesystem::path nt_hash_file;   // its NT hash (32 hex digits): NTLM only
  std::string workstation;              // NetBIOS name sent in NTLM; empty: from node.id
  // Kerberos: one credential source, unless password_file serves.
  std::filesystem::path keytab;  // the account's keytab, or a realmd/adcli machine keytab
  std::string ccache;            // an existing ccache another tool renews ("FILE:/run/adcsc/krb5cc")
  // user@REALM; empty: the keytab's first principal, or ca.identity's user in the default realm.
  std::string kerberos_principal;
  std::string spn = "host/{host}";                // the CA's SPN; {host} is config.dc
  std::string kerberos_mechanism = "spnego";      // "spnego" (auth type 9, as Windows) or "krb5" (16)
  std::filesystem::path krb5_conf;                // KRB5_CONFIG for this process; empty: /etc/krb5.conf
  std::chrono::seconds ticket_renew_margin{300};  // renew the TGT this long before it expires
  uint16_t epm_port = 135;                        // endpoint mapper port (135 on every Windows CA)
  std::chrono::milliseconds connect_timeout{3'000};
  std::chrono::milliseconds call_timeout{10'000};
  int max_idle_connections = 4;  // authenticated connections kept per CA for reuse
};

struct CaConfig {
  std::string backend = "local";  // "local" (embedded engine) or "icpr" (ADCS over MS-ICPR)
  std::string identity;           // DOMAIN\user the CA sees
  std::vector<AllowedCa> allow;
  std::chrono::seconds dedupe_window{86'400};
  // A submit whose CSR's lease another submit holds (submit_leases.h) waits up to this long
  // for that submit's outcome, looking for it at the CA meanwhile, then answers 503; it
  // never submits without the lease. 0: answer at once.
  std::chrono::milliseconds in_flight_wait{5'000};
  int recovery_scan_limit = 256;  // request IDs one search may read from the CA
  // How long a node's lease on a CSR (node/api/submit_leases.h) holds without release: past
  // it, another node may take the CSR over (after searching the CA for the holder's request).
  // Must outlast a submit's CA call, its records and its replication; a node that restarts
  // grants no lease for this long.
  std::chrono::milliseconds submit_lease{30'000};
  adcsc::ca::LocalCaOptions local;  // for backend = "local"
  IcprConfig icpr;                  // for backend = "icpr"
};

// [cluster]: the other nodes and how this node reaches them (gRPC with mutual TLS under a
// cluster CA, see `adcsc pki cluster`). Absent: a single node.
struct PeerConfig {
  std::string id;       // the peer's node.id; its certificate must name it
  std::string address;  // host:port of its cluster listener
};

struct ClusterConfig {
  bool enabled = false;
  std::string id;  // cluster ID, as in the certificates
  std::string listen_address = "0.0.0.0";
  uint16_t listen_port = 9443;
  std::filesystem::path ca_file;         // cluster-ca.pem
  std::filesystem::path cert_file;       // this node's node.pem
  std::filesystem::path key_file;        // its node-key.pem (0600)
  std::vector<PeerConfig> peers;         // every other node (static membership)
  int write_quorum = 0;                  // nodes (self included) holding a write before it
                                         // is acknowledged; 0: a majority of all nodes
  std::string on_quorum_loss = "serve";  // "serve" (answer, count it under-replicated) or "refuse"
  std::chrono::milliseconds quorum_timeout{2'000};
  std::chrono::milliseconds anti_entropy_interval{1'000};
  // Bound on asking the peers for a record this node lacks (retrieve, submit dedupe) and on
  // a forwarded retrieve's wait for the peer that holds the right CA identity (plus its CA call).
  std::chrono::milliseconds lookup_timeout{1'000};
  bool allow_fault_injection = false;  // lets drills cut this node off from its peers

  // The quorum in effect: write_quorum, or a majority of peers + 1.
  int EffectiveQuorum() const { return write_quorum > 0 ? write_quorum : static_cast<int>(peers.size() + 1) / 2 + 1; }
};

// [ops]: the listener for load balancers and operators (node/ops/ops_server.h). Absent: none.
struct OpsConfig {
  bool enabled = false;
  std::string listen_address = "127.0.0.1";  // loopback unless the load balancer checks from afar
  uint16_t listen_port = 9100;
  bool tls = true;                                  // server-authenticated TLS; false: plain HTTP
  std::filesystem::path cert_file;                  // default: api.cert_file
  std::filesystem::path key_file;                   // default: api.key_file; mode 0600 or stricter
  std::chrono::milliseconds probe_interval{5'000};  // store write check, CA pings, cluster state
  // A store write check slower than this (or still running after it) makes the node not
  // ready: a stalled disk (gray failure) takes it out of the load balancer's rotation.
  std::chrono::milliseconds max_store_write{2'000};
  // Connections open at once; one more is closed at accept and counted
  // (adcsc_ops_refused_connections). Health checks open one connection per check.
  size_t max_connections = 64;
  // The admin channel (`adcsc ctl drain|resume|maint`): administrators' client certificates
  // must chain to admin_ca_file and have their pin listed. No pins: the channel is off.
  std::filesystem::path admin_ca_file;
  std::vector<std::string> admin_pins;
};

// [store]: the node's request store on disk.
struct StoreConfig {
  // Below this many free bytes on the data volume the node reports not ready (store check), so
  // the load balancer moves traffic elsewhere before writes start failing; it is ready again
  // once space returns. 0 turns the floor off.
  int64_t min_free_bytes = 256LL * 1024 * 1024;
  // PRAGMA quick_check of the store this often (and at start); 0: at start only.
  std::chrono::seconds integrity_check_interval{86'400};
  // Settled records (issued, denied, failed, revoked) last changed longer ago than this are
  // pruned on every node; longer than certificates usually live. 0: keep every record.
  int64_t retention_days = 400;
};

struct Config {
  std::filesystem::path source;  // the file this came from
  std::string node_id;
  std::filesystem::path data_dir;
  ApiConfig api;
  LogConfig log;
  CaConfig ca;
  ClusterConfig cluster;
  OpsConfig ops;
  StoreConfig store;

  // The allowlist entry for (dc, ca), or nullptr.
  const AllowedCa* FindAllowedCa(std::string_view dc, std::string_view ca) const;
};

// The entry of `allow` for (dc, ca): the host compared case-insensitively, the CA name exactly;
// nullptr when there is none.
const AllowedCa* FindAllowedCa(const std::vector<AllowedCa>& allow, std::string_view dc, std::string_view ca);

// Reads and validates `path`. On failure the status message lists every problem, one per
// line, as "<file>: <key>: <what is wrong>".
absl::StatusOr<Config> LoadConfig(const std::filesystem::path& path);

// Same, from TOML text (tests); `source_name` is used in messages.
absl::StatusOr<Config> ParseConfig(std::string_view toml_text, const std::filesystem::path& source_name);

}  // namespace adcsc::node
