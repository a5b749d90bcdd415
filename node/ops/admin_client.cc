#include "node/ops/admin_client.h"

#include <chrono>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "node/client/https_client.h"

namespace adcsc::ops {
namespace {

struct AdminAnswer {
  std::string url;  // the node, as called
  int status = 0;
  std::string body;
  nlohmann::json json;  // the body parsed, or discarded when it is not JSON
  // The node's "error" text, or the body as it came.
  std::string Why() const {
    return json.is_object() && json.contains("error") && json["error"].is_string() ? json["error"].get<std::string>()
                                                                                   : body;
  }
};

// POST `body` to `path` on the node's ops listener with the administrator's certificate.
// InvalidArgument for unusable files; Unavailable when the node does not answer.
absl::StatusOr<AdminAnswer> AdminPost(const AdminEndpoint& endpoint, const std::string& path, const std::string& body,
                                      std::chrono::milliseconds timeout) {
  node::HttpsClientOptions o;
  o.url = absl::StartsWith(endpoint.node, "https://") ? endpoint.node : absl::StrCat("https://", endpoint.node);
  o.cert_file = endpoint.cert_file;
  o.key_file = endpoint.key_file;
  o.server_ca_file = endpoint.ca_file;
  o.keep_alive = false;
  o.timeout = timeout;
  auto client = node::HttpsClient::Create(o);
  if (!client.ok()) return absl::InvalidArgumentError(client.status().message());
  auto answer = (*client)->Post(path, body);
  if (!answer.ok()) {
    return absl::UnavailableError(absl::StrCat(o.url, ": ", answer.status().message(),
                                               " (is the node's [ops] listener at this address, with tls = true?)"));
  }
  AdminAnswer out{o.url, answer->status, answer->body,
                  nlohmann::json::parse(answer->body, nullptr, /*allow_exceptions=*/false)};
  return out;
}

}  // namespace

absl::StatusOr<ModeAnswer> SetServiceMode(const AdminEndpoint& endpoint, std::string_view mode) {
  auto answer =
      AdminPost(endpoint, "/admin/mode", nlohmann::json{{"mode", std::string(mode)}}.dump(), std::chrono::seconds(10));
  if (!answer.ok()) return answer.status();
  if (answer->status != 200 || !answer->json.is_object()) {
    return absl::PermissionDeniedError(absl::StrCat(answer->url, " answered ", answer->status, ": ", answer->Why()));
  }
  const nlohmann::json& body = answer->json;
  return ModeAnswer{body.value("node", std::string("node")), body.value("mode", std::string("?")),
                    body.value("lb", std::string("?"))};
}

absl::StatusOr<std::string> RunCaAdmin(const AdminEndpoint& endpoint, const std::string& request_json) {
  // The node makes up to four CA calls (retrieve, activation, the operation, retrieve).
  auto answer = AdminPost(endpoint, "/admin/ca", request_json, std::chrono::seconds(60));
  if (!answer.ok()) return answer.status();
  if (answer->status == 200 && answer->json.is_object()) return answer->body;
  if (answer->status == 502 || answer->status == 409) return absl::FailedPreconditionError(answer->Why());
  if (answer->status == 400) return absl::InvalidArgumentError(absl::StrCat(answer->url, ": ", answer->Why()));
  return absl::PermissionDeniedError(absl::StrCat(answer->url, " answered ", answer->status, ": ", answer->Why()));
}

}  // namespace adcsc::ops
