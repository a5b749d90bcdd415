// NDR stubs of the endpoint mapper's ept_map (opnum 3; DCE 1.1 appendix O, MS-RPCE 2.2.1.2.5),
// both directions, plus building and reading ncacn_ip_tcp protocol towers.
// Thread-safety: pure functions over value types.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "node/rpc/uuid.h"

namespace adcsc::rpc {

inline constexpr uint16_t kEptMapOpnum = 3;
inline constexpr uint16_t kEndpointMapperPort = 135;
// MS-RPCE declares max_towers [range(0, 500)].
inline constexpr uint32_t kEptMaxTowersLimit = 500;
// ept_map status values: Windows answers EPT_S_NOT_REGISTERED (0x6d9) when the interface has
// no endpoint; DCE implementations use ept_s_not_registered.
inline constexpr uint32_t kEptStatusOk = 0;
inline constexpr uint32_t kEptNotRegisteredWin32 = 0x000006D9;
inline constexpr uint32_t kEptNotRegisteredDce = 0x16C9A0D6;

// Protocol identifiers of tower floors (DCE 1.1 appendix I).
namespace tower_protocol {
inline constexpr uint8_t kUuid = 0x0D;  // floors 1 and 2: interface / transfer syntax
inline constexpr uint8_t kRpcConnectionOriented = 0x0B;
inline constexpr uint8_t kTcp = 0x07;  // rhs: port, big-endian
inline constexpr uint8_t kIp = 0x09;   // rhs: IPv4 address, network order
}  // namespace tower_protocol

// ept_lookup_handle_t: a 20-byte context handle (attributes u32 + UUID), all zero when fresh.
using ContextHandle = std::array<uint8_t, 20>;

// One floor: left-hand side (protocol id + data) and right-hand side (address data).
struct TowerFloor {
  Bytes lhs;
  Bytes rhs;
  friend bool operator==(const TowerFloor&, const TowerFloor&) = default;
};

// The five floors of an ncacn_ip_tcp tower, decoded.
struct TcpTower {
  SyntaxId interface_id;
  SyntaxId transfer_syntax = kNdr20Syntax;
  uint16_t port = 0;
  std::array<uint8_t, 4> ipv4 = {0, 0, 0, 0};
  friend bool operator==(const TcpTower&, const TcpTower&) = default;
};

// Tower octets: floor count (u16 LE), then per floor lhs length (u16 LE), lhs, rhs length
// (u16 LE), rhs. Parsing is bounds-checked; trailing bytes are an error.
Bytes EncodeTowerFloors(const std::vector<TowerFloor>& floors);
absl::StatusOr<std::vector<TowerFloor>> DecodeTowerFloors(ByteView octets);

// Builds the ncacn_ip_tcp tower: interface, NDR transfer syntax, RPC CO (minor 0), TCP port,
// IPv4 address. Clients query with port 0 and 0.0.0.0; the server answers with its port/IP.
Bytes BuildTcpTower(const TcpTower& tower);
// Reads a tower that must be ncacn_ip_tcp (floors 3..5 as above).
absl::StatusOr<TcpTower> ParseTcpTower(ByteView octets);
// The TCP port a returned tower names (the client needs only that).
absl::StatusOr<uint16_t> TowerTcpPort(ByteView octets);

// ept_map [in] parameters. `object` is sent as a pointer to a UUID (impacket and Windows
// clients send the nil UUID, not a null pointer); `map_tower` nullopt is a null pointer.
// Referent IDs are 1 and 2, the values old Windows endpoint mappers insist on.
struct EptMapRequest {
  std::optional<Uuid> object = Uuid{};
  std::optional<Bytes> map_tower;
  ContextHandle entry_handle{};
  uint32_t max_towers = 1;
  friend bool operator==(const EptMapRequest&, const EptMapRequest&) = default;
};

// ept_map [out] parameters. `towers` are the tower octets (num_towers of them); `max_towers`
// is the array's conformance, which echoes the request's max_towers (encoded as at least
// towers.size()).
struct EptMapResponse {
  ContextHandle entry_handle{};
  uint32_t max_towers = 0;
  std::vector<Bytes> towers;
  uint32_t status = kEptStatusOk;
  friend bool operator==(const EptMapResponse&, const EptMapResponse&) = default;
};

Bytes EncodeEptMapRequest(const EptMapRequest& request);
absl::StatusOr<EptMapRequest> DecodeEptMapRequest(ByteView stub);
Bytes EncodeEptMapResponse(const EptMapResponse& response);
// Rejects num_towers != actual_count, null tower pointers, and a tower_length that differs
// from the octet array's conformance or overruns the stub.
absl::StatusOr<EptMapResponse> DecodeEptMapResponse(ByteView stub);

}  // namespace adcsc::rpc
