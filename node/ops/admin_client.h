// The operator's side of the admin channel: sets a node's service mode (active, drain,
// maint) with POST /admin/mode on its ops listener, and runs CA administration with
// POST /admin/ca, over TLS with an administrator's client
// certificate, as `adcsc ctl drain|resume|maint` and `adcsc drill` do. Each call opens its own
// connection: safe from any thread.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace adcsc::ops {

struct AdminEndpoint {
  std::string node;                 // HOST:PORT of the ops listener, or https://HOST:PORT
  std::filesystem::path cert_file;  // administrator's client certificate (PEM)
  std::filesystem::path key_file;
  std::filesystem::path ca_file;  // CA of the node's server certificate
};

struct ModeAnswer {
  std::string node;  // the node's ID, as it answered
  std::string mode;  // "active", "drain", "maint"
  std::string lb;    // what its /health/lb now says: "UP", "DRAIN", "DOWN"
};

// `mode`: "active", "drain" or "maint". InvalidArgument for unusable files; Unavailable when
// the node does not answer; PermissionDenied (with the node's reason) when it refuses.
absl::StatusOr<ModeAnswer> SetServiceMode(const AdminEndpoint& endpoint, std::string_view mode);

// POST /admin/ca with `request_json` (`adcsc ctl revoke|approve|deny --node`): the node runs the
// CA administration operation with its CA identity and records the outcome. Returns the node's
// JSON answer on 200; errors as SetServiceMode, and FailedPrecondition carrying the node's
// message when the CA refused or could not be reached (502, the CA's HRESULT text) or the
// cluster is not ready for the operation (409).
absl::StatusOr<std::string> RunCaAdmin(const AdminEndpoint& endpoint, const std::string& request_json);

}  // namespace adcsc::ops
