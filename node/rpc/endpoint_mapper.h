// Asks a host's DCE endpoint mapper (ept_map over an unauthenticated ncacn_ip_tcp bind) which
// TCP port an interface listens on: the first step of every call to an ADCS CA, whose
// ICertPassage endpoint is dynamic. Thread-safety: a free function; safe from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "node/rpc/uuid.h"

namespace adcsc::rpc {

// NOT_FOUND when the endpoint mapper has no ncacn_ip_tcp endpoint for `interface`; transport
// errors as ClientConnection::Connect reports them.
absl::StatusOr<uint16_t> MapTcpEndpoint(const std::string& host, uint16_t epm_port, const SyntaxId& interface,
                                        std::chrono::milliseconds connect_timeout,
                                        std::chrono::milliseconds call_timeout);

}  // namespace adcsc::rpc
