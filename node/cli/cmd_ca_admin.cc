// `adcsc ctl revoke|approve|deny|ca-info`: CA administration through the CA's admin interface
// (MS-CSRA ICertAdminD2 over DCOM) with a node's CA identity. With --node (and an
// administrator's certificate) a node runs it through its admin channel and records the CA's
// answer in the replicated store, so every node answers the request's retrieve at once. With
// --config the command runs on this host, straight to the CA as ca-ping does; the store is not
// told.
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "node/app/backend_factory.h"
#include "node/app/ca_admin.h"
#include "node/ca/hresult.h"
#include "node/cli/commands.h"
#include "node/config/config.h"
#include "node/dcom/csra_stub.h"
#include "node/ops/admin_client.h"
#include "node/pki/x509.h"

namespace adcsc::cli {
namespace {

struct CaAdminArgs {
  std::string config;
  std::string node, cert_file, key_file, ca_file;  // --node: the admin channel
  std::string dc, ca;
  uint32_t request_id = 0;
  std::string serial;
  std::string reason = "unspecified";
  std::string date;  // revoke: when it takes effect (RFC 3339); empty = now
};

// --date: an RFC 3339 time after 1970 (Unix seconds), or nullopt.
std::optional<int64_t> ParseDate(const std::string& text) {
  absl::Time when;
  std::string why;
  if (!absl::ParseTime(absl::RFC3339_full, text, &when, &why) || absl::ToUnixSeconds(when) <= 0) return std::nullopt;
  return absl::ToUnixSeconds(when);
}

constexpr char kDateHelp[] = "RFC 3339 time after 1970, e.g. 2026-12-01T08:00:00Z";

std::string_view DispositionStatus(ca::Disposition d) {
  switch (d) {
    case ca::Disposition::kIssued:
      return "CR_DISP_ISSUED";
    case ca::Disposition::kDenied:
      return "CR_DISP_DENIED";
    case ca::Disposition::kRevoked:
      return "CR_DISP_REVOKED";
    case ca::Disposition::kUnderSubmission:
      return "CR_DISP_UNDER_SUBMISSION";
    case ca::Disposition::kIssuedOutOfBand:
      return "CR_DISP_ISSUED_OUT_OF_BAND";
    case ca::Disposition::kError:
      return "CR_DISP_ERROR";
    case ca::Disposition::kIncomplete:
      return "CR_DISP_INCOMPLETE";
  }
  return "CR_DISP_ERROR";
}

// Through a node's admin channel (POST /admin/ca on its ops port).
int RunRemote(node::CaAdminOp op, const CaAdminArgs& args) {
  const std::string command = op == node::CaAdminOp::kInfo ? "ca-info" : std::string(node::CaAdminOpName(op));
  if (args.cert_file.empty() || args.key_file.empty() || args.ca_file.empty()) {
    std::cerr << "adcsc ctl " << command << ": --node needs --cert, --key and --ca-file\n";
    return kExitUsage;
  }
  nlohmann::json request{{"op", std::string(node::CaAdminOpName(op))}, {"dc", args.dc}, {"ca", args.ca}};
  if (args.request_id != 0) request["request_id"] = args.request_id;
  if (!args.serial.empty()) request["serial"] = args.serial;
  if (op == node::CaAdminOp::kRevoke) request["reason"] = args.reason;
  if (!args.date.empty()) request["date"] = args.date;
  auto answer = ops::RunCaAdmin({args.node, args.cert_file, args.key_file, args.ca_file}, request.dump());
  if (!answer.ok()) {
    std::cerr << "adcsc ctl " << command << ": " << answer.status().message() << "\n";
    return absl::IsInvalidArgument(answer.status()) ? kExitUsage : kExitFailure;
  }
  const auto out = nlohmann::json::parse(*answer, nullptr, /*allow_exceptions=*/false);
  const std::string where = absl::StrCat("\"", args.dc, "\\", args.ca, "\"");
  const std::string by = out.value("node", std::string("the node"));
  if (op == node::CaAdminOp::kInfo) {
    std::cout << "CA " << out.value("ca_name", std::string()) << " (" << where << ", via " << by << ", "
              << out.value("mechanism", std::string()) << ")\n"
              << "certificate: " << out.value("subject", std::string()) << "\n"
              << "valid: " << pki::UtcDateTime(out.value("not_before_unix", int64_t{0})) << " to "
              << pki::UtcDateTime(out.value("not_after_unix", int64_t{0})) << "\n";
    return kExitOk;
  }
  std::cout << where << ", via " << by << ": " << command;
  if (out.contains("request_id")) std::cout << " request " << out["request_id"].get<uint64_t>();
  if (out.contains("serial")) std::cout << " certificate " << out["serial"].get<std::string>();
  std::cout << " done";
  if (out.contains("status")) std::cout << "; the CA now answers " << out["status"].get<std::string>();
  std::cout << "\nrecorded in the cluster's store: " << out.value("recorded", std::string("no")) << "\n";
  return kExitOk;
}

int Run(node::CaAdminOp op, const CaAdminArgs& args);

int RunLocal(node::CaAdminOp op, const CaAdminArgs& args) {
  const std::string command = op == node::CaAdminOp::kInfo ? "ca-info" : std::string(node::CaAdminOpName(op));
  auto config = node::LoadConfig(args.config);
  if (!config.ok()) {
    std::cerr << "adcsc ctl " << command << ": " << config.status().message() << "\n";
    return kExitUsage;
  }
  if (config->ca.backend != "icpr") {
    std::cerr << "adcsc ctl " << command << ": " << args.config << ": ca.backend is \"" << config->ca.backend
              << "\"; CA administration needs an ADCS CA (backend \"icpr\")\n";
    return kExitUsage;
  }
  auto auth = node::MakeIcprAuthenticator(*config);
  if (!auth.ok()) {
    std::cerr << "adcsc ctl " << command << ": " << args.config << ": " << auth.status().message() << "\n";
    return kExitUsage;
  }
  node::CaAdminRequest request;
  request.op = op;
  request.dc = args.dc;
  request.ca = args.ca;
  request.request_id = args.request_id;
  request.serial = args.serial;
  if (op == node::CaAdminOp::kRevoke) {
    auto reason = dcom::CrlReasonByName(args.reason);
    if (!reason) {
      std::cerr << "adcsc ctl revoke: unknown --reason \"" << args.reason << "\" (" << dcom::CrlReasonNames() << ")\n";
      return kExitUsage;
    }
    request.reason = *reason;
    if (!args.date.empty()) request.effective_unix_seconds = *ParseDate(args.date);
  }
  auto outcome = node::RunCaAdmin(*config, config->ca.allow, *auth, request);
  if (!outcome.ok()) {
    std::cerr << "adcsc ctl " << command << ": " << outcome.status().message() << "\n";
    return absl::IsInvalidArgument(outcome.status()) && !ca::HresultOf(outcome.status()) ? kExitUsage : kExitFailure;
  }
  const std::string where = absl::StrCat("\"", args.dc, "\\", args.ca, "\"");
  switch (op) {
    case node::CaAdminOp::kInfo:
      std::cout << "CA " << outcome->info.name << " (" << where << ", " << outcome->mechanism << ")\n"
                << "certificate: " << outcome->info.subject << "\n"
                << "valid: " << pki::UtcDateTime(outcome->info.not_before_unix) << " to "
                << pki::UtcDateTime(outcome->info.not_after_unix) << "\n";
      break;
    case node::CaAdminOp::kApprove:
    case node::CaAdminOp::kDeny:
      std::cout << where << ": request " << args.request_id << " is now " << DispositionStatus(outcome->disposition)
                << "\n";
      break;
    case node::CaAdminOp::kRevoke:
      std::cout << where << ": certificate " << outcome->serial
                << (outcome->request_id != 0 ? absl::StrCat(" (request ", outcome->request_id, ")") : std::string())
                << (request.reason == dcom::crl_reason::kReleaseFromHold ? std::string(" released from hold")
                                                                         : absl::StrCat(" revoked (", args.reason, ")"))
                << "\n";
      break;
  }
  if (op != node::CaAdminOp::kInfo) {
    std::cout << "note: run on this host (--config): the cluster's request store was not told; "
                 "use --node to go through a node's admin channel\n";
  }
  return kExitOk;
}

int Run(node::CaAdminOp op, const CaAdminArgs& args) {
  const std::string command = op == node::CaAdminOp::kInfo ? "ca-info" : std::string(node::CaAdminOpName(op));
  if (args.config.empty() == args.node.empty()) {
    std::cerr << "adcsc ctl " << command << ": give either --node (through a node's admin channel) or --config "
              << "(from this host)\n";
    return kExitUsage;
  }
  return args.node.empty() ? RunLocal(op, args) : RunRemote(op, args);
}

void Common(CLI::App* cmd, const std::shared_ptr<CaAdminArgs>& args) {
  cmd->add_option("--node", args->node, "HOST:PORT of a node's ops listener: the node runs it and records the outcome");
  cmd->add_option("--cert", args->cert_file, "With --node: administrator's client certificate (PEM)");
  cmd->add_option("--key", args->key_file, "With --node: its private key (PEM)");
  cmd->add_option("--ca-file", args->ca_file, "With --node: CA that issued the node's server certificate (PEM)");
  cmd->add_option("--config,-c", args->config,
                  "Instead of --node: run from this host with this node configuration (its CA identity, ca.allow, "
                  "ca.icpr); the cluster's store is not told");
  cmd->add_option("--dc", args->dc, "CA host, as in Jamf's config.dc")->required();
  cmd->add_option("--ca", args->ca, "CA name, as in Jamf's config.ca")->required();
}

}  // namespace

void AddCaAdminCommands(CLI::App* ctl, int* exit_code) {
  const std::string channel =
      "\nThe CA's admin interface (MS-CSRA over DCOM), with the node's CA account, which needs \"Issue and\n"
      "Manage Certificates\"; TCP 135 and the CA's DCOM port must be open from the node (docs/adcs.md).\n"
      "With --node the node runs it (its admin channel, an administrator's certificate in ops.admin_pins)\n"
      "and records the CA's answer in the cluster's store; with --config it runs from this host, and the\n"
      "store is not told (docs/operations.md).\n";
  const std::string exits =
      "\nExit codes: 0 done, 1 the CA refused or could not be reached (its HRESULT is shown), 2 usage or\n"
      "configuration error (a CA not in ca.allow included).";

  auto info_args = std::make_shared<CaAdminArgs>();
  auto* info = ctl->add_subcommand(
      "ca-info", "The CA's name and its certificate's validity, read through its admin interface." + channel +
                     "\nExample:\n  adcsc ctl ca-info --node adcsc1.example.com:9100 --cert admin.pem --key "
                     "admin-key.pem --ca-file adcs-proxy-ca.pem \\\n    --dc ca01.example.com --ca "
                     "\"Example Issuing CA\"\n" +
                     exits);
  Common(info, info_args);
  info->callback([=] { *exit_code = Run(node::CaAdminOp::kInfo, *info_args); });

  auto revoke_args = std::make_shared<CaAdminArgs>();
  auto* revoke =
      ctl->add_subcommand("revoke",
                          "Revoke a certificate (RevokeCertificate), named by its serial as the CA writes it (hex,\n"
                          "compared case-sensitively) or by its request ID. Revoking again changes the reason;\n"
                          "--reason release-from-hold takes a certificate-hold back." +
                              channel +
                              "\nExample:\n  adcsc ctl revoke --node adcsc1.example.com:9100 --cert admin.pem --key "
                              "admin-key.pem --ca-file adcs-proxy-ca.pem \\\n    --dc ca01.example.com --ca \"Example "
                              "Issuing CA\" --request-id 95 --reason key-compromise\n" +
                              exits);
  Common(revoke, revoke_args);
  auto* by_id = revoke->add_option("--request-id", revoke_args->request_id, "The request whose certificate to revoke");
  auto* by_serial = revoke->add_option("--serial", revoke_args->serial, "The certificate's serial number (hex)");
  by_id->excludes(by_serial);
  revoke->add_option("--reason", revoke_args->reason, "One of: " + dcom::CrlReasonNames())->capture_default_str();
  revoke
      ->add_option("--date", revoke_args->date,
                   "When the revocation takes effect (the CRL's revocation date), as an RFC 3339 time, e.g.\n"
                   "2026-12-01T08:00:00Z; default: now, at the CA")
      ->check([](const std::string& text) {
        return ParseDate(text) ? std::string() : absl::StrCat("\"", text, "\" is not an ", kDateHelp);
      });
  revoke->callback([=] {
    if (revoke_args->request_id == 0 && revoke_args->serial.empty()) {
      std::cerr << "adcsc ctl revoke: give --request-id or --serial\n";
      *exit_code = kExitUsage;
      return;
    }
    *exit_code = Run(node::CaAdminOp::kRevoke, *revoke_args);
  });

  for (const auto& [name, op, help] :
       {std::tuple{"approve", node::CaAdminOp::kApprove,
                   "Issue a pending request (ResubmitRequest), as \"Issue\" in the CA console does."},
        std::tuple{"deny", node::CaAdminOp::kDeny, "Deny a pending request (DenyRequest)."}}) {
    auto args = std::make_shared<CaAdminArgs>();
    auto* cmd =
        ctl->add_subcommand(name, std::string(help) + channel + "\nExample:\n  adcsc ctl " + name +
                                      " --node adcsc1.example.com:9100 --cert admin.pem --key admin-key.pem --ca-file "
                                      "adcs-proxy-ca.pem \\\n    --dc ca01.example.com --ca \"Example "
                                      "Issuing CA\" --request-id 90\n" +
                                      exits);
    Common(cmd, args);
    cmd->add_option("--request-id", args->request_id, "The pending request")->required()->check(CLI::PositiveNumber);
    const node::CaAdminOp the_op = op;
    cmd->callback([=] { *exit_code = Run(the_op, *args); });
  }
}

}  // namespace adcsc::cli
