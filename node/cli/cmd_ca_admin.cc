// `adcsc ctl revoke|approve|deny|ca-info`: CA administration through the CA's admin interface
// (MS-CSRA ICertAdminD2 over DCOM) with a node's CA identity. With --config the command runs on
// this host, straight to the CA as ca-ping does; the replicated store is not told, so a record
// it already holds answers as before until the node's own admin channel (--node) is used.
#include <ctime>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "node/app/backend_factory.h"
#include "node/app/ca_admin.h"
#include "node/ca/hresult.h"
#include "node/cli/commands.h"
#include "node/config/config.h"
#include "node/dcom/csra_stub.h"

namespace adcsc::cli {
namespace {

struct CaAdminArgs {
  std::string config;
  std::string dc, ca;
  uint32_t request_id = 0;
  std::string serial;
  std::string reason = "unspecified";
};

std::string Utc(int64_t unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

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
  }
  auto outcome = node::RunCaAdmin(*config, *auth, request);
  if (!outcome.ok()) {
    std::cerr << "adcsc ctl " << command << ": " << outcome.status().message() << "\n";
    return absl::IsInvalidArgument(outcome.status()) && !ca::HresultOf(outcome.status()) ? kExitUsage : kExitFailure;
  }
  const std::string where = absl::StrCat("\"", args.dc, "\\", args.ca, "\"");
  switch (op) {
    case node::CaAdminOp::kInfo:
      std::cout << "CA " << outcome->info.name << " (" << where << ", " << outcome->mechanism << ")\n"
                << "certificate: " << outcome->info.subject << "\n"
                << "valid: " << Utc(outcome->info.not_before_unix) << " to " << Utc(outcome->info.not_after_unix)
                << "\n";
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

void Common(CLI::App* cmd, const std::shared_ptr<CaAdminArgs>& args) {
  cmd->add_option("--config,-c", args->config, "A node's configuration (its CA identity, ca.allow, ca.icpr)")
      ->required();
  cmd->add_option("--dc", args->dc, "CA host, as in Jamf's config.dc")->required();
  cmd->add_option("--ca", args->ca, "CA name, as in Jamf's config.ca")->required();
}

}  // namespace

void AddCaAdminCommands(CLI::App* ctl, int* exit_code) {
  const std::string channel =
      "\nThe CA's admin interface (MS-CSRA over DCOM): TCP 135 and the CA's DCOM port must be open from\n"
      "this host, and the node's CA account needs \"Issue and Manage Certificates\" (docs/adcs.md).\n";
  const std::string exits =
      "\nExit codes: 0 done, 1 the CA refused or could not be reached (its HRESULT is shown), 2 usage or\n"
      "configuration error (a CA not in ca.allow included).";

  auto info_args = std::make_shared<CaAdminArgs>();
  auto* info = ctl->add_subcommand(
      "ca-info", "The CA's name and its certificate's validity, read through its admin interface." + channel +
                     "\nExample:\n  adcsc ctl ca-info --config /etc/adcsc/node.toml --dc ca01.example.com --ca "
                     "\"Example Issuing CA\"\n" +
                     exits);
  Common(info, info_args);
  info->callback([=] { *exit_code = RunLocal(node::CaAdminOp::kInfo, *info_args); });

  auto revoke_args = std::make_shared<CaAdminArgs>();
  auto* revoke = ctl->add_subcommand(
      "revoke",
      "Revoke a certificate (RevokeCertificate), named by its serial as the CA writes it (hex,\n"
      "compared case-sensitively) or by its request ID. Revoking again changes the reason;\n"
      "--reason release-from-hold takes a certificate-hold back." +
          channel +
          "\nExample:\n  adcsc ctl revoke --config /etc/adcsc/node.toml --dc ca01.example.com --ca \"Example "
          "Issuing CA\" --request-id 95 --reason key-compromise\n" +
          exits);
  Common(revoke, revoke_args);
  auto* by_id = revoke->add_option("--request-id", revoke_args->request_id, "The request whose certificate to revoke");
  auto* by_serial = revoke->add_option("--serial", revoke_args->serial, "The certificate's serial number (hex)");
  by_id->excludes(by_serial);
  revoke->add_option("--reason", revoke_args->reason, "One of: " + dcom::CrlReasonNames())->capture_default_str();
  revoke->callback([=] {
    if (revoke_args->request_id == 0 && revoke_args->serial.empty()) {
      std::cerr << "adcsc ctl revoke: give --request-id or --serial\n";
      *exit_code = kExitUsage;
      return;
    }
    *exit_code = RunLocal(node::CaAdminOp::kRevoke, *revoke_args);
  });

  for (const auto& [name, op, help] :
       {std::tuple{"approve", node::CaAdminOp::kApprove,
                   "Issue a pending request (ResubmitRequest), as \"Issue\" in the CA console does."},
        std::tuple{"deny", node::CaAdminOp::kDeny, "Deny a pending request (DenyRequest)."}}) {
    auto args = std::make_shared<CaAdminArgs>();
    auto* cmd = ctl->add_subcommand(name, std::string(help) + channel + "\nExample:\n  adcsc ctl " + name +
                                              " --config /etc/adcsc/node.toml --dc ca01.example.com --ca \"Example "
                                              "Issuing CA\" --request-id 90\n" +
                                              exits);
    Common(cmd, args);
    cmd->add_option("--request-id", args->request_id, "The pending request")->required()->check(CLI::PositiveNumber);
    const node::CaAdminOp the_op = op;
    cmd->callback([=] { *exit_code = RunLocal(the_op, *args); });
  }
}

}  // namespace adcsc::cli
