#include "node/ops/admin_client.h"

#include <chrono>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "node/client/https_client.h"

namespace adcsc::ops {

absl::StatusOr<ModeAnswer> SetServiceMode(const AdminEndpoint& endpoint, std::string_view mode) {
  node::HttpsClientOptions o;
  o.url = absl::StartsWith(endpoint.node, "https://") ? endpoint.node : absl::StrCat("https://", endpoint.node);
  o.cert_file = endpoint.cert_file;
  o.key_file = endpoint.key_file;
  o.server_ca_file = endpoint.ca_file;
  o.keep_alive = false;
  o.timeout = std::chrono::seconds(10);
  auto client = node::HttpsClient::Create(o);
  if (!client.ok()) return absl::InvalidArgumentError(client.status().message());
  auto answer = (*client)->Post("/admin/mode", nlohmann::json{{"mode", std::string(mode)}}.dump());
  if (!answer.ok()) {
    return absl::UnavailableError(absl::StrCat(o.url, ": ", answer.status().message(),
                                               " (is the node's [ops] listener at this address, with tls = true?)"));
  }
  const auto body = nlohmann::json::parse(answer->body, nullptr, /*allow_exceptions=*/false);
  if (answer->status != 200 || !body.is_object()) {
    const std::string why = body.is_object() && body.contains("error") && body["error"].is_string()
                                ? body["error"].get<std::string>()
                                : answer->body;
    return absl::PermissionDeniedError(absl::StrCat(o.url, " answered ", answer->status, ": ", why));
  }
  return ModeAnswer{body.value("node", std::string("node")), body.value("mode", std::string("?")),
                    body.value("lb", std::string("?"))};
}

absl::StatusOr<std::string> RunCaAdmin(const AdminEndpoint& endpoint, const std::string& request_json) {
  node::HttpsClientOptions o;
  o.url = absl::StartsWith(endpoint.node, "https://") ? endpoint.node : absl::StrCat("https://", endpoint.node);
  o.cert_file = endpoint.cert_file;
  o.key_file = endpoint.key_file;
  o.server_ca_file = endpoint.ca_file;
  o.keep_alive = false;
  // The node makes up to four CA calls (retrieve, activation, the operation, retrieve).
  o.timeout = std::chrono::seconds(60);
  auto client = node::HttpsClient::Create(o);
  if (!client.ok()) return absl::InvalidArgumentError(client.status().message());
  auto answer = (*client)->Post("/admin/ca", request_json);
  if (!answer.ok()) {
    return absl::UnavailableError(absl::StrCat(o.url, ": ", answer.status().message(),
                                               " (is the node's [ops] listener at this address, with tls = true?)"));
  }
  const auto body = nlohmann::json::parse(answer->body, nullptr, /*allow_exceptions=*/false);
  const std::string why = body.is_object() && body.contains("error") && body["error"].is_string()
                              ? body["error"].get<std::string>()
                              : answer->body;
  if (answer->status == 200 && body.is_object()) return answer->body;
  if (answer->status == 502) return absl::FailedPreconditionError(why);
  if (answer->status == 400) return absl::InvalidArgumentError(absl::StrCat(o.url, ": ", why));
  return absl::PermissionDeniedError(absl::StrCat(o.url, " answered ", answer->status, ": ", why));
}

}  // namespace adcsc::ops
