// `adcsc client`: call a connector's API the way Jamf Pro does (for smoke tests, support
// and scripts). Prints the server's JSON answer on standard output.
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "node/cli/commands.h"
#include "node/client/https_client.h"
#include "node/pki/csr.h"
#include "node/pki/encoding.h"
#include "node/pki/keys.h"
#include "node/pki/x509.h"

namespace adcsc::cli {
namespace {

struct ClientArgs {
  std::string url;
  std::string pfx, password_file, cert, key, server_ca;
  bool no_verify_host = false;
  bool new_connection = false;
  std::string dc, ca, template_name;
  std::string csr_file, subject, key_out;
  std::vector<std::string> sans;
  int64_t request_id = 0;
  std::string out;
};

void AddConnectionOptions(CLI::App* cmd, ClientArgs& a) {
  cmd->add_option("--url", a.url, "Connector base URL, e.g. https://adcsc.example.com:8443")->required();
  cmd->add_option("--pfx", a.pfx, "Client identity (PKCS#12), e.g. client-cert.pfx from `adcsc pki init`");
  cmd->add_option("--password-file", a.password_file,
                  "File holding the PKCS#12 password (or set ADCSC_PFX_PASSWORD); never pass it as an argument");
  cmd->add_option("--cert", a.cert, "Client certificate (PEM), instead of --pfx");
  cmd->add_option("--key", a.key, "Client private key (PEM), with --cert");
  cmd->add_option("--server-ca", a.server_ca, "Trust for the server certificate, e.g. adcs-proxy-ca.pem")->required();
  cmd->add_flag("--no-verify-hostname", a.no_verify_host, "Do not check the URL host against the server certificate");
}

void AddCaOptions(CLI::App* cmd, ClientArgs& a) {
  cmd->add_option("--dc", a.dc, "CA host FQDN (config.dc)")->required();
  cmd->add_option("--ca", a.ca, "CA instance name (config.ca)")->required();
}

absl::StatusOr<std::string> ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<std::unique_ptr<adcsc::node::HttpsClient>> MakeClient(const ClientArgs& a) {
  adcsc::node::HttpsClientOptions o;
  o.url = a.url;
  o.server_ca_file = a.server_ca;
  o.verify_hostname = !a.no_verify_host;
  o.user_agent = "adcsc-client/" ADCSC_VERSION;
  if (!a.pfx.empty()) {
    o.pfx_file = a.pfx;
    if (!a.password_file.empty()) {
      auto pw = ReadText(a.password_file);
      if (!pw.ok()) return absl::InvalidArgumentError(absl::StrCat("--password-file: ", pw.status().message()));
      std::string p = *pw;
      while (!p.empty() && (p.back() == '\n' || p.back() == '\r')) p.pop_back();
      o.pfx_password = p;
    } else if (const char* env = std::getenv("ADCSC_PFX_PASSWORD")) {
      o.pfx_password = env;
    } else {
      return absl::InvalidArgumentError("--pfx needs --password-file or ADCSC_PFX_PASSWORD");
    }
  } else if (!a.cert.empty() && !a.key.empty()) {
    o.cert_file = a.cert;
    o.key_file = a.key;
  } else {
    return absl::InvalidArgumentError("give the client identity: --pfx (with --password-file) or --cert and --key");
  }
  return adcsc::node::HttpsClient::Create(o);
}

int Report(const absl::StatusOr<adcsc::node::HttpsResult>& r) {
  if (!r.ok()) {
    std::cerr << "adcsc client: " << r.status().message() << "\n";
    return kExitFailure;
  }
  std::cout << r->body << "\n";
  if (r->status != 200) {
    std::cerr << "adcsc client: HTTP " << r->status << "\n";
    return kExitHttpError;
  }
  return kExitOk;
}

int RunVersion(const ClientArgs& a) {
  auto client = MakeClient(a);
  if (!client.ok()) {
    std::cerr << "adcsc client: " << client.status().message() << "\n";
    return kExitUsage;
  }
  return Report((*client)->Get("/api/v1/version"));
}

int RunRequest(const ClientArgs& a) {
  std::string pkcs10;
  if (!a.csr_file.empty()) {
    auto text = ReadText(a.csr_file);
    if (!text.ok()) {
      std::cerr << "adcsc client: --csr: " << text.status().message() << "\n";
      return kExitUsage;
    }
    // PEM or DER on disk; the API wants base64 of the DER.
    if (text->find("-----BEGIN") != std::string::npos) {
      pkcs10 = *text;
    } else {
      pkcs10 = adcsc::pki::Base64Encode(adcsc::pki::AsBytes(*text));
    }
  } else if (!a.subject.empty()) {
    auto key = adcsc::pki::GenerateKey(adcsc::pki::KeyType::kRsa2048);
    if (!key.ok()) {
      std::cerr << "adcsc client: " << key.status().message() << "\n";
      return kExitFailure;
    }
    auto der = adcsc::pki::MakeCsr(key->get(), a.subject, a.sans);
    if (!der.ok()) {
      std::cerr << "adcsc client: " << der.status().message() << "\n";
      return kExitFailure;
    }
    pkcs10 = adcsc::pki::Base64Encode(*der);
    if (!a.key_out.empty()) {
      auto pem = adcsc::pki::PrivateKeyToPem(key->get());
      absl::Status written = pem.ok() ? adcsc::pki::WritePrivateFile(a.key_out, *pem, false) : pem.status();
      if (!written.ok()) {
        std::cerr << "adcsc client: --key-out: " << written.message() << "\n";
        return kExitFailure;
      }
    }
  } else {
    std::cerr << "adcsc client: give --csr FILE or --subject NAME (a fresh RSA-2048 key and CSR are made)\n";
    return kExitUsage;
  }
  auto client = MakeClient(a);
  if (!client.ok()) {
    std::cerr << "adcsc client: " << client.status().message() << "\n";
    return kExitUsage;
  }
  nlohmann::ordered_json body;
  body["pkcs10"] = pkcs10;
  body["template"] = a.template_name;
  body["config"] = {{"dc", a.dc}, {"ca", a.ca}};
  return Report((*client)->Post("/api/v1/certificate/request", body.dump()));
}

int RunRetrieve(const ClientArgs& a) {
  auto client = MakeClient(a);
  if (!client.ok()) {
    std::cerr << "adcsc client: " << client.status().message() << "\n";
    return kExitUsage;
  }
  nlohmann::ordered_json body;
  body["request-id"] = a.request_id;
  body["config"] = {{"dc", a.dc}, {"ca", a.ca}};
  auto r = (*client)->Post("/api/v1/certificate/retrieve", body.dump());
  int rc = Report(r);
  if (rc == kExitOk && !a.out.empty()) {
    auto doc = nlohmann::json::parse(r->body, nullptr, false);
    if (doc.is_object() && doc.contains("x509") && doc["x509"].is_string()) {
      auto der = adcsc::pki::Base64Decode(doc["x509"].get<std::string>());
      auto cert = der.ok() ? adcsc::pki::CertFromDer(*der) : absl::StatusOr<adcsc::pki::X509Ptr>(der.status());
      auto pem = cert.ok() ? adcsc::pki::CertToPem(cert->get()) : absl::StatusOr<std::string>(cert.status());
      if (!pem.ok()) {
        std::cerr << "adcsc client: the x509 field does not hold a certificate: " << pem.status().message() << "\n";
        return kExitFailure;
      }
      std::ofstream(a.out) << *pem;
      std::cerr << "adcsc client: certificate written to " << a.out << "\n";
    } else {
      std::cerr << "adcsc client: no certificate in the answer (not issued yet?); nothing written to " << a.out << "\n";
    }
  }
  return rc;
}

}  // namespace

void AddClientCommand(CLI::App& app, int* exit_code) {
  auto* client =
      app.add_subcommand("client",
                         "Call a connector's API like Jamf Pro does\n\n"
                         "Examples:\n"
                         "  adcsc client version --url https://localhost:8443 --pfx client-cert.pfx \\\n"
                         "      --password-file pfx.pass --server-ca adcs-proxy-ca.pem\n"
                         "  adcsc client request ... --dc ca1.example.com --ca Example-CA --template JamfDevice "
                         "--subject device-42\n"
                         "  adcsc client retrieve ... --dc ca1.example.com --ca Example-CA --id 95 --out cert.pem\n\n"
                         "Exit codes: 0 HTTP 200, 1 connection or TLS failure, 2 usage, 3 HTTP error status.");
  client->require_subcommand(1);
  auto args = std::make_shared<ClientArgs>();

  auto* version = client->add_subcommand("version", "GET /api/v1/version");
  AddConnectionOptions(version, *args);
  version->callback([=] { *exit_code = RunVersion(*args); });

  auto* request = client->add_subcommand("request", "POST /api/v1/certificate/request (submit a CSR)");
  AddConnectionOptions(request, *args);
  AddCaOptions(request, *args);
  request->add_option("--template", args->template_name, "Certificate template name (not its display name)");
  request->add_option("--csr", args->csr_file, "CSR file (PEM or DER)");
  request->add_option("--subject", args->subject, "Instead of --csr: make a key and a CSR with this CN");
  request->add_option("--san", args->sans, "With --subject: DNS subject alternative names (repeatable)");
  request->add_option("--key-out", args->key_out, "With --subject: write the new private key here (mode 0600)");
  request->callback([=] { *exit_code = RunRequest(*args); });

  auto* retrieve = client->add_subcommand("retrieve", "POST /api/v1/certificate/retrieve (fetch by request ID)");
  AddConnectionOptions(retrieve, *args);
  AddCaOptions(retrieve, *args);
  retrieve->add_option("--id", args->request_id, "Request ID returned by `request`")
      ->required()
      ->check(CLI::PositiveNumber);
  retrieve->add_option("--out", args->out, "Write the issued certificate here (PEM)");
  retrieve->callback([=] { *exit_code = RunRetrieve(*args); });
}

}  // namespace adcsc::cli
