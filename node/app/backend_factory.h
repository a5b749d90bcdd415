// Builds the CA backend a node's configuration names: the embedded engine (`local`) or MS-ICPR
// to ADCS (`icpr`, reading the service account's secret from its 0600 file). Shared by
// `adcsc node` and `adcsc ctl ca-ping`. Thread-safety: pure functions.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "node/ca/ca_backend.h"
#include "node/ca/icpr_auth.h"
#include "node/config/config.h"
#include "node/ntlm/ntlm.h"

namespace adcsc::node {

absl::StatusOr<std::unique_ptr<adcsc::ca::CaBackend>> MakeCaBackend(const Config& config);

// The NTLM credentials of ca.identity with the secret from ca.icpr.password_file or
// nt_hash_file. Errors name the file, never its content.
absl::StatusOr<ntlm::Credentials> LoadIcprCredentials(const Config& config);

// How to authenticate to the CAs (ca.icpr.auth and its credentials), with secrets read from
// their files. Sets KRB5_CONFIG to ca.icpr.krb5_conf when given: call before threads start.
absl::StatusOr<std::shared_ptr<adcsc::ca::IcprAuthenticator>> MakeIcprAuthenticator(const Config& config);

}  // namespace adcsc::node
