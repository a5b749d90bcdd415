// `adcsc ctl`: operator commands. `ca-ping` checks the way to an ADCS CA step by step, as
// `certutil -ping -config` does on Windows, and says which step failed.
#include <google/protobuf/util/json_util.h>
#include <netdb.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <optional>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "adcsc/cluster/v1/cluster.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "node/app/backend_factory.h"
#include "node/app/cert_inventory.h"
#include "node/ca/hresult.h"
#include "node/ca/icpr_backend.h"
#include "node/cli/commands.h"
#include "node/client/https_client.h"
#include "node/cluster/fault_client.h"
#include "node/cluster/tls.h"
#include "node/config/config.h"
#include "node/ops/admin_client.h"
#include "node/rpc/client.h"
#include "node/rpc/endpoint_mapper.h"
#include "node/rpc/icpr_stub.h"
#include "store/backup.h"
#include "store/dir_lock.h"

namespace adcsc::cli {
namespace {

struct PingArgs {
  std::string config;
  std::string dc;
  std::string ca;
};

void Step(int n, const std::string& what) { std::cout << n << ". " << what << " ... " << std::flush; }

int Failed(const absl::Status& s, const std::string& hint) {
  std::cout << "FAILED\n   " << s.message() << "\n";
  if (auto h = adcsc::ca::HresultOf(s)) std::cout << "   " << adcsc::ca::FormatHresult(*h) << "\n";
  if (!hint.empty()) std::cout << "   check: " << hint << "\n";
  std::cout << "CA ping: FAILED\n";
  return kExitFailure;
}

int CaPing(const PingArgs& args) {
  auto config = adcsc::node::LoadConfig(args.config);
  if (!config.ok()) {
    std::cerr << "adcsc ctl ca-ping: " << config.status().message() << "\n";
    return kExitUsage;
  }
  if (config->ca.backend != "icpr") {
    std::cerr << "adcsc ctl ca-ping: " << args.config << ": ca.backend is \"" << config->ca.backend
              << "\"; ca-ping checks an ADCS CA (backend \"icpr\")\n";
    return kExitUsage;
  }
  if (config->FindAllowedCa(args.dc, args.ca) == nullptr) {
    std::cerr << "adcsc ctl ca-ping: \"" << args.dc << "\\" << args.ca << "\" is not in ca.allow of " << args.config
              << " (the connector only talks to allowed CAs)\n";
    return kExitUsage;
  }
  auto auth = adcsc::node::MakeIcprAuthenticator(*config);
  if (!auth.ok()) {
    std::cerr << "adcsc ctl ca-ping: " << args.config << ": " << auth.status().message() << "\n";
    return kExitUsage;
  }
  const auto& icpr = config->ca.icpr;
  const auto started = std::chrono::steady_clock::now();
  std::cout << "Pinging \"" << args.dc << "\\" << args.ca << "\" as " << config->ca.identity << "\n"
            << "Authentication: " << (*auth)->Describe(args.dc) << "\n";

  Step(1, "resolve " + args.dc);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(args.dc.c_str(), nullptr, &hints, &found); rc != 0) {
    return Failed(absl::UnavailableError(gai_strerror(rc)), "DNS for the CA host name (Jamf's config.dc)");
  }
  char host[NI_MAXHOST] = {};
  getnameinfo(found->ai_addr, found->ai_addrlen, host, sizeof host, nullptr, 0, NI_NUMERICHOST);
  freeaddrinfo(found);
  std::cout << host << "\n";

  Step(2, absl::StrFormat("endpoint mapper %s:%d", args.dc, icpr.epm_port));
  auto port = adcsc::rpc::MapTcpEndpoint(args.dc, icpr.epm_port, adcsc::rpc::kIcprSyntax, icpr.connect_timeout,
                                         icpr.call_timeout);
  if (!port.ok()) {
    return Failed(port.status(),
                  "TCP 135 open from this node to the CA; the Certificate Services service is running; "
                  "IF_NORPCICERTREQUEST is not set (docs/adcs.md)");
  }
  std::cout << "ICertPassage on port " << *port << "\n";

  Step(3, absl::StrFormat("connect to %s:%d and bind (%s) at packet privacy", args.dc, *port,
                          std::string(adcsc::ca::IcprAuthModeName((*auth)->mode()))));
  adcsc::rpc::ClientOptions o;
  o.host = args.dc;
  o.port = *port;
  o.connect_timeout = icpr.connect_timeout;
  o.call_timeout = icpr.call_timeout;
  auto connection = (*auth)->Connect(o, adcsc::rpc::kIcprSyntax);
  if (!connection.ok()) {
    std::string hint = "the dynamic RPC port is open from this node to the CA (docs/adcs.md, Network)";
    if (adcsc::rpc::AuthFailedBeforeBind(connection.status())) {
      hint = absl::StrCat(
          "Kerberos from this host: the keytab/password/ccache in ca.icpr, the KDC in krb5.conf, "
          "that ",
          (*auth)->SpnFor(args.dc), " is registered (setspn -Q), clock sync (docs/adcs.md)");
    } else if (absl::IsPermissionDenied(connection.status())) {
      hint = "the CA refused our logon: the account's secret, the CA's SPN and keys, clock skew (docs/adcs.md)";
    }
    return Failed(connection.status(), hint);
  }
  std::cout << "OK, mechanism " << (*connection)->mechanism()
            << ((*connection)->header_signing() ? " (header signing)" : "") << "\n";

  Step(4, "status call (CertServerRequest for a request ID no CA has issued)");
  adcsc::rpc::CertServerRequestIn in;
  in.authority = args.ca;
  in.request_id = 0xFFFFFFFF;
  auto stub = adcsc::rpc::EncodeCertServerRequestIn(in);
  auto answer = stub.ok() ? (*connection)->Call(adcsc::rpc::kCertServerRequestOpnum, *stub) : stub.status();
  if (!answer.ok()) {
    return Failed(adcsc::ca::RpcErrorToCaError(answer.status(), true),
                  "the service account's secret or keytab; that the account is not locked; for NTLM, that NTLM is "
                  "allowed to the CA");
  }
  auto out = adcsc::rpc::DecodeCertServerRequestOut(*answer);
  if (!out.ok()) return Failed(out.status(), "");
  const uint32_t code = out->return_value != 0 ? out->return_value : out->disposition;
  if (code != adcsc::ca::hr::kPropertyEmpty && (code & 0x80000000u) != 0) {
    std::string hint = "the CA's permissions for the service account (docs/adcs.md)";
    if (code == adcsc::ca::hr::kInvalidArg)
      hint = "the CA name: it must be the CA's name exactly, as certutil -dump shows it";
    if (code == adcsc::ca::hr::kAccessDenied)
      hint = "the logon: password or NT hash file, account not locked, NTLM allowed";
    return Failed(adcsc::ca::CaError(code, "the CA answered"), hint);
  }
  std::cout << "the CA answered (" << adcsc::ca::HresultSymbol(code) << "): it knows \"" << args.ca
            << "\" and accepted the logon\n";
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  std::cout << "CA ping: OK (" << ms.count() << " ms, mechanism " << (*connection)->mechanism() << ")\n";
  return kExitOk;
}

// The node configuration at `path`, which must have a [cluster] section; nullopt after
// saying on stderr what is wrong (the caller exits with kExitUsage).
std::optional<adcsc::node::Config> LoadClusterConfig(const std::string& path, const char* command) {
  auto config = adcsc::node::LoadConfig(path);
  if (!config.ok()) {
    std::cerr << "adcsc ctl " << command << ": " << config.status().message() << "\n";
    return std::nullopt;
  }
  if (!config->cluster.enabled) {
    std::cerr << "adcsc ctl " << command << ": " << path << " has no [cluster] section: this node runs alone\n";
    return std::nullopt;
  }
  return *std::move(config);
}

std::string DescribeLink(const adcsc::cluster::v1::LinkFault& l) {
  if (l.cut_in() && l.cut_out()) return "cut off from its peers (both directions)";
  std::vector<std::string> parts;
  if (l.cut_in()) parts.push_back("refuses its peers' requests (one-way: in)");
  if (l.cut_out()) parts.push_back("its requests to the peers fail (one-way: out)");
  if (l.loss() > 0) parts.push_back(absl::StrCat("loses ", l.loss() * 100, "% of peer messages"));
  if (l.delay_ms() > 0) parts.push_back(absl::StrCat("delays each peer request by ", l.delay_ms(), " ms"));
  return parts.empty() ? "connected to its peers" : absl::StrJoin(parts, ", ");
}

// The cluster protocol range a node's answer carried (node/cluster/protocol.h).
std::string ProtocolOf(const grpc::ClientContext& ctx) {
  for (const auto* metadata : {&ctx.GetServerInitialMetadata(), &ctx.GetServerTrailingMetadata()}) {
    auto it = metadata->find(adcsc::cluster::kProtocolMetadataKey);
    if (it == metadata->end()) continue;
    auto range = adcsc::cluster::ParseProtocolRange(std::string(it->second.data(), it->second.size()));
    if (range.ok()) return range->Describe();
  }
  return "cluster protocol 1: a release from before protocol versioning";
}

struct StatusArgs {
  std::string config;
  bool json = false;
};

// Worse states sort later: ok < warning < critical < expired (unknown states count as ok).
int StateRank(std::string_view state) {
  if (state == "expired") return 3;
  if (state == "critical") return 2;
  if (state == "warning") return 1;
  return 0;
}

// A node's certificates as `ctl status` prints them: the worst state first, then one line
// each, states other than ok in capitals. Returns the worst state's rank.
int PrintNodeCertificates(const adcsc::cluster::v1::NodeInfo& info) {
  if (!info.certificates_reported()) {
    std::cout << "  certificates: unknown (adcsc " << info.version() << " does not report them; `adcsc ctl certs` on "
              << "that node)\n";
    return 0;
  }
  int worst = 0;
  std::string worst_state = "ok";
  for (const auto& c : info.certificates()) {
    if (StateRank(c.state()) > worst) {
      worst = StateRank(c.state());
      worst_state = c.state();
    }
  }
  std::cout << "  certificates: " << info.certificates_size() << ", worst "
            << (worst == 0 ? worst_state : absl::AsciiStrToUpper(worst_state)) << "\n";
  for (const auto& c : info.certificates()) {
    const int64_t days = (c.not_after_unix_ms() - info.now_unix_ms()) / 86'400'000;
    std::cout << absl::StrFormat("    %-9s %-22s %6d days  %s",
                                 StateRank(c.state()) == 0 ? c.state() : absl::AsciiStrToUpper(c.state()), c.role(),
                                 days, c.subject());
    if (c.mapped_until_unix_ms() != 0) {
      std::cout << (c.mapped_until_unix_ms() <= info.now_unix_ms()
                        ? "  (old client identity: overlap ENDED, refused)"
                        : absl::StrCat("  (old client identity: mapped ",
                                       (c.mapped_until_unix_ms() - info.now_unix_ms()) / 86'400'000, " more days)"));
    }
    std::cout << "\n";
  }
  return worst;
}

// Asks every node of the cluster (this one included) for its view, over mutual TLS with this
// node's identity, and prints what each says.
int ClusterStatus(const StatusArgs& args) {
  auto config = LoadClusterConfig(args.config, "status");
  if (!config.has_value()) return kExitUsage;
  const auto& c = config->cluster;
  std::vector<adcsc::node::PeerConfig> nodes;
  nodes.push_back(adcsc::cluster::SelfAsPeer(*config));
  nodes.insert(nodes.end(), c.peers.begin(), c.peers.end());

  int unreachable = 0, worst_certificate = 0;
  std::string json = "[";
  for (size_t i = 0; i < nodes.size(); ++i) {
    const auto& n = nodes[i];
    adcsc::cluster::v1::NodeInfo info;
    grpc::Status s;
    auto channel = adcsc::cluster::MakePeerChannel(c, n);
    if (!channel.ok()) {
      std::cerr << "adcsc ctl status: " << channel.status().message() << "\n";
      return kExitUsage;
    }
    auto stub = adcsc::cluster::v1::Peer::NewStub(*channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
    adcsc::cluster::v1::NodeInfoRequest request;
    request.mutable_from()->set_cluster_id(c.id);
    request.mutable_from()->set_node_id(config->node_id);
    s = stub->Info(&ctx, request, &info);
    if (s.ok()) {
      for (const auto& cert : info.certificates())
        worst_certificate = std::max(worst_certificate, StateRank(cert.state()));
    }
    if (args.json) {
      std::string one;
      if (s.ok()) {
        (void)google::protobuf::util::MessageToJsonString(info, &one);
      } else {
        // Escaped: an error names files and quotes words.
        one = nlohmann::json{{"from", {{"nodeId", n.id}}}, {"error", s.error_message()}}.dump();
      }
      absl::StrAppend(&json, i ? "," : "", one);
      if (!s.ok()) ++unreachable;
      continue;
    }
    if (!s.ok()) {
      ++unreachable;
      std::cout << n.id << " (" << n.address << "): "
                << (s.error_code() == grpc::StatusCode::FAILED_PRECONDITION ? "REFUSES this node: " : "UNREACHABLE: ")
                << s.error_message() << "\n";
      continue;
    }
    std::vector<std::string> vv;
    for (const auto& [origin, seq] : info.version_vector().entries()) vv.push_back(absl::StrCat(origin, "=", seq));
    std::sort(vv.begin(), vv.end());
    std::cout << n.id << " (" << n.address << "): up"
              << (info.cut_off() ? ", CUT OFF from its peers (fault injection)" : "")
              << (info.ca_outage() ? ", CUT OFF from its CA (fault injection)" : "")
              << (!info.cut_off() && DescribeLink(info.faults().link()) != "connected to its peers"
                      ? ", link fault: " + DescribeLink(info.faults().link())
                      : "")
              << (info.faults().disk().write_delay_ms() > 0 || info.faults().disk().sync_delay_ms() > 0
                      ? absl::StrCat(", disk fault: writes +", info.faults().disk().write_delay_ms(), " ms, fsyncs +",
                                     info.faults().disk().sync_delay_ms(), " ms")
                      : "")
              << ", adcsc " << info.version() << " (" << ProtocolOf(ctx) << ")"
              << ", CA identity " << info.ca_identity() << ", " << info.records() << " records, write quorum "
              << info.write_quorum() << "\n  writes: " << info.quorum_writes() << " at quorum, "
              << info.under_replicated_writes() << " under-replicated, " << info.refused_writes() << " refused"
              << "\n  version vector: " << absl::StrJoin(vv, " ") << "\n";
    for (const auto& p : info.peers()) {
      const std::string last = p.last_ack_unix_ms() == 0
                                   ? "never answered"
                                   : absl::StrCat("last answer ", info.now_unix_ms() - p.last_ack_unix_ms(), " ms ago");
      std::cout << "  sees " << p.node_id() << ": " << last << ", lag " << p.lag_mutations() << " mutations";
      if (p.lag_mutations() > 0) std::cout << " (oldest " << p.lag_ms() << " ms)";
      std::cout << (p.snapshot_in_progress() ? ", copying its snapshot" : "");
      if (p.cluster_protocol() != 0) std::cout << ", cluster protocol " << p.cluster_protocol();
      if (!p.refused_for_version().empty()) std::cout << "\n    REFUSED FOR VERSION: " << p.refused_for_version();
      std::cout << "\n";
    }
    PrintNodeCertificates(info);
  }
  if (args.json) std::cout << json << "]\n";
  if (unreachable != 0) return kExitFailure;
  return worst_certificate >= StateRank("critical") ? kExitCertificateAttention : kExitOk;
}

struct FaultArgs {
  std::string config;
  std::string action;  // cut, heal, ca-cut, ca-heal, link, link-heal, disk, disk-heal
  double loss = 0;
  uint32_t delay_ms = 0;
  std::string one_way;  // "", "in" or "out"
  uint32_t write_delay_ms = 0, sync_delay_ms = 0;
};

// Sets one of this node's fault switches through its own cluster listener.
int Fault(const FaultArgs& args) {
  auto config = LoadClusterConfig(args.config, "fault");
  if (!config.has_value()) return kExitUsage;
  adcsc::cluster::FaultChange change;
  if (args.action == "cut" || args.action == "heal") change.cut_off = args.action == "cut";
  if (args.action == "ca-cut" || args.action == "ca-heal") change.ca_outage = args.action == "ca-cut";
  if (args.action == "link" || args.action == "link-heal") {
    adcsc::cluster::v1::LinkFault link;
    if (args.action == "link") {
      if (args.loss < 0 || args.loss > 1) {
        std::cerr << "adcsc ctl fault: --loss must be between 0 and 1 (a probability), not " << args.loss << "\n";
        return kExitUsage;
      }
      link.set_loss(args.loss);
      link.set_delay_ms(args.delay_ms);
      link.set_cut_in(args.one_way == "in");
      link.set_cut_out(args.one_way == "out");
    }
    change.link = link;
  }
  if (args.action == "disk" || args.action == "disk-heal") {
    adcsc::cluster::v1::DiskFault disk;
    if (args.action == "disk") {
      disk.set_write_delay_ms(args.write_delay_ms);
      disk.set_sync_delay_ms(args.sync_delay_ms);
    }
    change.disk = disk;
  }
  auto state = adcsc::cluster::SetNodeFault(*config, change);
  if (!state.ok()) {
    std::cerr << "adcsc ctl fault: " << state.status().message() << "\n";
    return state.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitFailure;
  }
  const std::string heal = "adcsc ctl fault --config " + args.config;
  const auto& l = state->link();
  const bool link_faulty = l.cut_in() || l.cut_out() || l.loss() > 0 || l.delay_ms() > 0;
  const bool disk_faulty = state->disk().write_delay_ms() > 0 || state->disk().sync_delay_ms() > 0;
  std::cout << "node " << config->node_id << ": " << DescribeLink(l)
            << (state->cut_off() ? " (heal with: " + heal + " heal)"
                : link_faulty    ? " (heal with: " + heal + " link-heal)"
                                 : "")
            << "; " << (state->ca_outage() ? "cut off from its CA (heal with: " + heal + " ca-heal)" : "CA reachable")
            << "; "
            << (disk_faulty
                    ? absl::StrCat("store disk slowed: writes +", state->disk().write_delay_ms(), " ms, fsyncs +",
                                   state->disk().sync_delay_ms(), " ms (heal with: ", heal, " disk-heal)")
                    : "store disk as is")
            << "\n";
  return kExitOk;
}

struct BackupArgs {
  std::string config, out;
};

// A consistent copy of this node's store while it serves (store/backup.h).
int Backup(const BackupArgs& args) {
  auto config = adcsc::node::LoadConfig(args.config);
  if (!config.ok()) {
    std::cerr << "adcsc ctl backup: " << config.status().message() << "\n";
    return kExitUsage;
  }
  auto info = adcsc::store::BackupStore(config->data_dir / "store.db", args.out);
  if (!info.ok()) {
    std::cerr << "adcsc ctl backup: " << info.status().message() << "\n";
    return info.status().code() == absl::StatusCode::kAlreadyExists ||
                   info.status().code() == absl::StatusCode::kNotFound
               ? kExitUsage
               : kExitFailure;
  }
  std::vector<std::string> vv;
  for (const auto& [origin, seq] : info->version_vector) vv.push_back(absl::StrCat(origin, "=", seq));
  std::cout << "node " << info->node_id << ": " << info->records << " records, " << info->bytes
            << " bytes, version vector " << (vv.empty() ? "empty" : absl::StrJoin(vv, " ")) << ", written to "
            << args.out << " (mode 0600; restore with: adcsc node restore --config " << args.config << " --from "
            << args.out << ")\n";
  return kExitOk;
}

struct CertsArgs {
  std::string config;
  bool json = false;
  int warn_days = 30, critical_days = 7;
};

// Every certificate the node's configuration names, with its expiry (node/app/cert_inventory.h).
int Certs(const CertsArgs& args) {
  auto config = adcsc::node::LoadConfig(args.config);
  if (!config.ok()) {
    std::cerr << "adcsc ctl certs: " << config.status().message() << "\n";
    return kExitUsage;
  }
  const int64_t now_ms = static_cast<int64_t>(std::time(nullptr)) * 1000;
  int attention = 0;
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const auto& c : adcsc::node::CertificateInventory(*config)) {
    const std::string state(adcsc::ops::ExpiryState(c, now_ms, args.warn_days, args.critical_days));
    if (state == "critical" || state == "expired") ++attention;
    const int64_t days = (c.not_after_ms - now_ms) / 86'400'000;
    if (args.json) {
      list.push_back({{"role", c.role},
                      {"subject", c.subject},
                      {"source", c.source},
                      {"not_after_ms", c.not_after_ms},
                      {"days_left", days},
                      {"state", state}});
    } else {
      std::cout << absl::StrFormat("%-18s %-9s %6d days  %s  (%s)\n", c.role, state, days, c.subject, c.source);
    }
  }
  // The old client identity of a rotation: mapped until its end of overlap, then refused.
  for (const auto& [pin, until] : config->api.client_pin_until) {
    const int64_t until_ms = until * 1000;
    const std::string state = until_ms <= now_ms ? "ended" : "overlap";
    const int64_t days = (until_ms - now_ms) / 86'400'000;
    if (args.json) {
      list.push_back({{"role", "jamf client pin"},
                      {"subject", "sha256:" + pin},
                      {"source", "api.client_pins until"},
                      {"mapped_until_ms", until_ms},
                      {"days_left", days},
                      {"state", state}});
    } else {
      std::cout << absl::StrFormat(
          "%-18s %-9s %6d days  sha256:%s  (api.client_pins until: %s)\n", "jamf client pin", state, days, pin,
          state == "ended" ? "refused since then; remove the pin" : "the old client identity, refused from then on");
    }
  }
  if (args.json) std::cout << list.dump(2) << "\n";
  if (!args.json) {
    std::cout << "Jamf Pro's pinned client certificates are known once presented: see the running node's "
                 "/health/ready (\"certificates\") or adcsc_certificate_expiry_seconds.\n";
  }
  return attention == 0 ? kExitOk : kExitFailure;
}

struct ReloadArgs {
  std::string config;
  int64_t timeout_ms = 10'000;
};

// The node's last reload answer (<data_dir>/reload.json): its generation for process `pid`.
std::optional<nlohmann::json> ReadReloadAnswer(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) return std::nullopt;
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  return j;
}

// Checks the configuration, then sends the node SIGHUP and waits for its answer.
int Reload(const ReloadArgs& args) {
  auto config = adcsc::node::LoadConfig(args.config);
  if (!config.ok()) {
    std::cerr << "adcsc ctl reload: not reloading; the node keeps its configuration. " << config.status().message()
              << "\n";
    return kExitUsage;
  }
  auto pid = adcsc::store::DirLock::Holder(config->data_dir);
  if (!pid.ok()) {
    std::cerr << "adcsc ctl reload: " << pid.status().message() << "\n";
    return kExitFailure;
  }
  const auto answer_file = config->data_dir / "reload.json";
  uint64_t before = 0;
  if (auto last = ReadReloadAnswer(answer_file); last && (*last).value("pid", 0) == *pid) {
    before = (*last).value("generation", uint64_t{0});
  }
  if (::kill(*pid, SIGHUP) != 0) {
    std::cerr << "adcsc ctl reload: cannot signal process " << *pid << ": " << std::strerror(errno)
              << " (run as the service user or root)\n";
    return kExitFailure;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(args.timeout_ms);
  for (;;) {
    if (auto now = ReadReloadAnswer(answer_file);
        now && (*now).value("pid", 0) == *pid && (*now).value("generation", uint64_t{0}) > before) {
      const std::string outcome = (*now).value("outcome", "");
      std::cout << "node " << config->node_id << " (pid " << *pid << "): " << outcome << ": "
                << (*now).value("detail", "") << "\n";
      return outcome == "reloaded" ? kExitOk : kExitFailure;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      std::cerr << "adcsc ctl reload: node " << config->node_id << " (pid " << *pid << ") did not answer within "
                << args.timeout_ms << " ms; see its log (event config_reloaded)\n";
      return kExitFailure;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

struct ModeArgs {
  std::string node;  // host:port of the node's ops listener, or https://host:port
  std::string cert_file, key_file, ca_file;
};

// Sets a node's service mode through its admin channel (POST /admin/mode on the ops port,
// with an administrator's client certificate).
int SetMode(const ModeArgs& args, std::string_view mode, const char* command) {
  auto answer = adcsc::ops::SetServiceMode({args.node, args.cert_file, args.key_file, args.ca_file}, mode);
  if (!answer.ok()) {
    std::cerr << "adcsc ctl " << command << ": " << answer.status().message() << "\n";
    return answer.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitFailure;
  }
  std::cout << answer->node << ": mode " << answer->mode << ", the load balancer sees " << answer->lb << "\n";
  return kExitOk;
}

}  // namespace

void AddCtlCommand(CLI::App& app, int* exit_code) {
  auto* ctl = app.add_subcommand("ctl", "Operator commands");
  ctl->require_subcommand(1);
  auto args = std::make_shared<PingArgs>();
  auto* ping = ctl->add_subcommand("ca-ping",
                                   "Check the way to an ADCS CA step by step (like certutil -ping -config)\n\n"
                                   "Example:\n  adcsc ctl ca-ping --config /etc/adcsc/node.toml --dc ca01.example.com "
                                   "--ca \"Example Issuing CA\"\n\n"
                                   "Exit codes: 0 the CA answered, 1 a step failed (it is named), 2 usage or "
                                   "configuration error.");
  ping->add_option("--config,-c", args->config, "Node configuration (backend \"icpr\": account, secret, timeouts)")
      ->required();
  ping->add_option("--dc", args->dc, "CA host, as in Jamf's config.dc")->required();
  ping->add_option("--ca", args->ca, "CA name, as in Jamf's config.ca")->required();
  ping->callback([=] { *exit_code = CaPing(*args); });
  AddCaAdminCommands(ctl, exit_code);

  auto sargs = std::make_shared<StatusArgs>();
  auto* status =
      ctl->add_subcommand("status",
                          "Each node's view of the cluster: peers, version vectors, replication lag,\n"
                          "under-replicated writes, and every certificate it owns or trusts with its expiry\n"
                          "(run on any node, with its configuration)\n\n"
                          "Example:\n  adcsc ctl status --config /etc/adcsc/node.toml\n"
                          "  adcsc ctl status --config /etc/adcsc/node.toml --json\n\n"
                          "Exit codes: 0 every node answered and none reports a certificate critical or expired,\n"
                          "1 some node did not answer, 2 usage or configuration error, 4 every node answered but\n"
                          "one reports a certificate critical (under 7 days) or expired.");
  status->add_option("--config,-c", sargs->config, "This node's configuration (its [cluster] section)")->required();
  status->add_flag("--json", sargs->json, "One JSON object per node, for scripts");
  status->callback([=] { *exit_code = ClusterStatus(*sargs); });

  auto bargs = std::make_shared<BackupArgs>();
  auto* backup = ctl->add_subcommand(
      "backup",
      "A consistent copy of this node's request store, taken while it serves (SQLite's\n"
      "VACUUM INTO in one read transaction: the node's writes go on). Run it on the node,\n"
      "as a user that can read node.data_dir. The file (mode 0600) holds request records,\n"
      "no keys; keep it as you keep the node's data.\n\n"
      "Example:\n  adcsc ctl backup --config /etc/adcsc/node.toml --out /backup/adcsc-$(date +%F).db\n\n"
      "Exit codes: 0 written, 1 the store could not be read or the file written, 2 usage\n"
      "or configuration error (or the output file exists: backups never overwrite).");
  backup->add_option("--config,-c", bargs->config, "This node's configuration (node.data_dir)")->required();
  backup->add_option("--out,-o", bargs->out, "The backup file to write (must not exist)")->required();
  backup->callback([=] { *exit_code = Backup(*bargs); });

  auto cargs = std::make_shared<CertsArgs>();
  auto* certs =
      ctl->add_subcommand("certs",
                          "Every certificate this node owns or trusts, from the files its configuration names (API\n"
                          "identity and client CAs, ops identity and admin CAs, cluster identity and CA), with the\n"
                          "days left: ok, warning (under --warn-days), critical (under --critical-days) or expired.\n"
                          "For monitoring from cron as well as for people.\n\n"
                          "Example:\n  adcsc ctl certs --config /etc/adcsc/node.toml\n\n"
                          "Exit codes: 0 none critical or expired, 1 some are, 2 usage or configuration error.");
  certs->add_option("--config,-c", cargs->config, "The node's configuration")->required();
  certs->add_flag("--json", cargs->json, "A JSON array, for scripts");
  certs->add_option("--warn-days", cargs->warn_days, "Warning under this many days")
      ->capture_default_str()
      ->check(CLI::Range(1, 36500));
  certs->add_option("--critical-days", cargs->critical_days, "Critical under this many days")
      ->capture_default_str()
      ->check(CLI::Range(0, 36500));
  certs->callback([=] { *exit_code = Certs(*cargs); });

  auto rargs = std::make_shared<ReloadArgs>();
  auto* reload =
      ctl->add_subcommand("reload",
                          "Reload without a restart (the same as SIGHUP, with the answer): checks the\n"
                          "configuration first, then the node re-reads it. New connections get the new API\n"
                          "identity (api.cert_file, api.key_file), client CA and api.client_pins, and the new\n"
                          "ops identity; the admin channel takes the new ops.admin_pins and admin CA; calls\n"
                          "after it use the new CA allowlist and signing policy ([[ca.allow]]); open connections\n"
                          "keep theirs; the logs are reopened. The answer names the settings that changed but\n"
                          "wait for a restart. A configuration the node cannot use changes nothing (all or\n"
                          "nothing). Run it on the node, as the service user or root.\n\n"
                          "Example:\n  adcsc ctl reload --config /etc/adcsc/node.toml\n\n"
                          "Exit codes: 0 reloaded, 1 the node refused it or did not answer, 2 the configuration\n"
                          "has errors (nothing was sent).");
  reload->add_option("--config,-c", rargs->config, "The node's configuration (as it should be now)")->required();
  reload->add_option("--timeout-ms", rargs->timeout_ms, "How long to wait for the node's answer")
      ->capture_default_str()
      ->check(CLI::Range(100, 600'000));
  reload->callback([=] { *exit_code = Reload(*rargs); });

  auto fargs = std::make_shared<FaultArgs>();
  auto* fault =
      ctl->add_subcommand("fault",
                          "Failover drills: cut this node off from its peers (replication, lookups and\n"
                          "forwarding, both directions) while it keeps serving Jamf (cut), or from its CA\n"
                          "(ca-cut: every CA call fails, health turns not ready); make its peer links lossy,\n"
                          "slow or one-way (link), or its store's disk slow (disk); or heal each.\n"
                          "Needs cluster.allow_fault_injection = true in the node's configuration.\n\n"
                          "Example:\n  adcsc ctl fault --config /etc/adcsc/node.toml cut\n"
                          "  adcsc ctl fault --config /etc/adcsc/node.toml heal\n"
                          "  adcsc ctl fault --config /etc/adcsc/node.toml ca-cut\n"
                          "  adcsc ctl fault --config /etc/adcsc/node.toml link --loss 0.3 --delay-ms 200\n"
                          "  adcsc ctl fault --config /etc/adcsc/node.toml link --one-way in\n"
                          "  adcsc ctl fault --config /etc/adcsc/node.toml disk --sync-delay-ms 2000\n\n"
                          "Exit codes: 0 done, 1 the node refused or did not answer, 2 usage or configuration "
                          "error.");
  fault->add_option("--config,-c", fargs->config, "This node's configuration (its [cluster] section)")->required();
  fault->add_option("action", fargs->action, "cut, heal, ca-cut, ca-heal, link, link-heal, disk or disk-heal")
      ->required()
      ->check(CLI::IsMember({"cut", "heal", "ca-cut", "ca-heal", "link", "link-heal", "disk", "disk-heal"}));
  fault->add_option("--loss", fargs->loss, "link: probability (0..1) that each peer message is lost");
  fault->add_option("--delay-ms", fargs->delay_ms, "link: each request from a peer waits this long")
      ->check(CLI::Range(0, 60000));
  fault
      ->add_option("--one-way", fargs->one_way,
                   "link: in (refuse the peers' requests) or out (this node's requests fail)")
      ->check(CLI::IsMember({"in", "out"}));
  fault->add_option("--write-delay-ms", fargs->write_delay_ms, "disk: each write of the store waits this long")
      ->check(CLI::Range(0, 60000));
  fault->add_option("--sync-delay-ms", fargs->sync_delay_ms, "disk: each fsync of the store waits this long")
      ->check(CLI::Range(0, 60000));
  fault->callback([=] { *exit_code = Fault(*fargs); });

  struct ModeCommand {
    const char* name;
    const char* mode;
    const char* help;
  };
  for (const ModeCommand& m : {
           ModeCommand{"drain", "drain",
                       "Take a node out of the load balancer's rotation gently: /health/lb answers DRAIN, so it\n"
                       "gets no new connections; in-flight requests finish and retrieves that reach it are\n"
                       "still answered. Kept across restarts until `resume`."},
           ModeCommand{"resume", "active", "Put a drained node or one in maintenance back into rotation."},
           ModeCommand{"maint", "maint",
                       "Maintenance: /health/lb answers DOWN, so the load balancer stops using the node.\n"
                       "Kept across restarts until `resume`."},
       }) {
    auto margs = std::make_shared<ModeArgs>();
    auto* cmd = ctl->add_subcommand(
        m.name, absl::StrCat(m.help,
                             "\nSent over the node's admin channel (its ops port, TLS, with an administrator's client "
                             "certificate listed in its ops.admin_pins).\n\nExample:\n  adcsc ctl ",
                             m.name,
                             " --node adcsc2.example.com:9100 --cert admin.pem --key admin-key.pem --ca-file "
                             "adcs-proxy-ca.pem\n\nExit codes: 0 done, 1 the node refused or did not answer, 2 usage "
                             "error."));
    cmd->add_option("--node", margs->node, "HOST:PORT of the node's ops listener")->required();
    cmd->add_option("--cert", margs->cert_file, "Administrator's client certificate (PEM)")->required();
    cmd->add_option("--key", margs->key_file, "Its private key (PEM)")->required();
    cmd->add_option("--ca-file", margs->ca_file, "CA that issued the node's server certificate (PEM)")->required();
    const std::string mode = m.mode;
    const std::string name = m.name;
    cmd->callback([=] { *exit_code = SetMode(*margs, mode, name.c_str()); });
  }
}

}  // namespace adcsc::cli
