#include "node/rpc/endpoint_mapper.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "node/rpc/client.h"
#include "node/rpc/epm_stub.h"

namespace adcsc::rpc {

absl::StatusOr<uint16_t> MapTcpEndpoint(const std::string& host, uint16_t epm_port, const SyntaxId& interface,
                                        std::chrono::milliseconds connect_timeout,
                                        std::chrono::milliseconds call_timeout) {
  ClientOptions options;
  options.host = host;
  options.port = epm_port;
  options.connect_timeout = connect_timeout;
  options.call_timeout = call_timeout;
  auto connection = ClientConnection::Connect(options, kEpmSyntax);
  if (!connection.ok()) return connection.status();

  EptMapRequest request;
  TcpTower query;
  query.interface_id = interface;
  request.map_tower = BuildTcpTower(query);
  request.max_towers = 4;
  auto answer = (*connection)->Call(kEptMapOpnum, EncodeEptMapRequest(request));
  if (!answer.ok()) return answer.status();
  auto response = DecodeEptMapResponse(*answer);
  if (!response.ok()) {
    return absl::InternalError(
        absl::StrCat("endpoint mapper on ", host, ":", epm_port, ": ", response.status().message()));
  }
  if (response->status != kEptStatusOk || response->towers.empty()) {
    return absl::NotFoundError(absl::StrFormat(
        "the endpoint mapper on %s:%d has no TCP endpoint for interface %s (status 0x%08x): is the service running "
        "and does it accept RPC?",
        host, epm_port, interface.uuid.ToString(), response->status));
  }
  for (const Bytes& tower : response->towers) {
    auto port = TowerTcpPort(tower);
    if (port.ok() && *port != 0) return *port;
  }
  return absl::NotFoundError(
      absl::StrCat("the endpoint mapper on ", host, ":", epm_port, " returned no usable ncacn_ip_tcp tower"));
}

}  // namespace adcsc::rpc
