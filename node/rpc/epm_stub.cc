#include "node/rpc/epm_stub.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "node/rpc/ndr.h"

namespace adcsc::rpc {
namespace {

constexpr size_t kTcpTowerFloors = 5;
constexpr size_t kPointerSize = 4;
constexpr size_t kPortSize = 2;
constexpr size_t kIpv4Size = 4;
// lhs of a UUID floor: protocol id, UUID, major version (u16 LE); rhs: minor version (u16 LE).
constexpr size_t kUuidFloorLhsSize = 1 + Uuid::kWireSize + 2;
constexpr size_t kUuidFloorRhsSize = 2;

// Old Windows endpoint mappers reject ept_map unless obj and map_tower use referents 1 and 2.
constexpr NdrWriter::Options kEptMapRequestReferents{1, 1};

void PutU16Le(Bytes* out, uint16_t v) {
  out->push_back(static_cast<uint8_t>(v));
  out->push_back(static_cast<uint8_t>(v >> 8));
}

TowerFloor UuidFloor(const SyntaxId& syntax) {
  TowerFloor f;
  // Sized up front: GCC 12 warns (-Warray-bounds, a false positive) on push_back then insert.
  f.lhs.resize(1 + Uuid::kWireSize);
  f.lhs[0] = tower_protocol::kUuid;
  std::copy(syntax.uuid.wire().begin(), syntax.uuid.wire().end(), f.lhs.begin() + 1);
  PutU16Le(&f.lhs, syntax.major);
  PutU16Le(&f.rhs, syntax.minor);
  return f;
}

absl::StatusOr<SyntaxId> ReadUuidFloor(const TowerFloor& f, absl::string_view which) {
  if (f.lhs.size() != kUuidFloorLhsSize || f.lhs[0] != tower_protocol::kUuid || f.rhs.size() != kUuidFloorRhsSize) {
    return absl::InvalidArgumentError(absl::StrCat("tower floor ", which, " is not a UUID floor"));
  }
  SyntaxId s;
  s.uuid = Uuid::FromWire(ByteView(f.lhs).subspan(1, Uuid::kWireSize));
  s.major = static_cast<uint16_t>(f.lhs[1 + Uuid::kWireSize] | f.lhs[2 + Uuid::kWireSize] << 8);
  s.minor = static_cast<uint16_t>(f.rhs[0] | f.rhs[1] << 8);
  return s;
}

// twr_t { u32 tower_length; [size_is(tower_length)] byte tower_octet_string[]; } is a
// conformant structure, so its conformance comes first: max_count, tower_length, octets.
void WriteTwr(NdrWriter& w, const Bytes& octets) {
  w.WriteU32(static_cast<uint32_t>(octets.size()));
  w.WriteU32(static_cast<uint32_t>(octets.size()));
  w.WriteRaw(octets);
}

absl::Status ReadTwr(NdrReader& r, absl::string_view field, Bytes* octets) {
  uint32_t max_count = 0;
  uint32_t tower_length = 0;
  if (absl::Status s = r.ReadU32(absl::StrCat(field, " max_count"), &max_count); !s.ok()) return s;
  if (absl::Status s = r.ReadCount(absl::StrCat(field, " tower_length"), 1, &tower_length); !s.ok()) return s;
  if (tower_length != max_count) {
    return absl::InvalidArgumentError(absl::StrCat("NDR ", field, ": tower_length ", tower_length,
                                                   " differs from its array conformance ", max_count));
  }
  ByteView raw;
  if (absl::Status s = r.ReadRaw(absl::StrCat(field, " octets"), tower_length, &raw); !s.ok()) return s;
  octets->assign(raw.begin(), raw.end());
  return absl::OkStatus();
}

absl::Status ReadHandle(NdrReader& r, ContextHandle* handle) {
  if (absl::Status s = r.Align(4, "entry_handle"); !s.ok()) return s;
  ByteView raw;
  if (absl::Status s = r.ReadRaw("entry_handle", handle->size(), &raw); !s.ok()) return s;
  std::copy(raw.begin(), raw.end(), handle->begin());
  return absl::OkStatus();
}

void WriteHandle(NdrWriter& w, const ContextHandle& handle) {
  w.Align(4);  // attributes u32 first
  w.WriteRaw(handle);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Towers

Bytes EncodeTowerFloors(const std::vector<TowerFloor>& floors) {
  Bytes out;
  PutU16Le(&out, static_cast<uint16_t>(floors.size()));
  for (const TowerFloor& f : floors) {
    PutU16Le(&out, static_cast<uint16_t>(f.lhs.size()));
    out.insert(out.end(), f.lhs.begin(), f.lhs.end());
    PutU16Le(&out, static_cast<uint16_t>(f.rhs.size()));
    out.insert(out.end(), f.rhs.begin(), f.rhs.end());
  }
  return out;
}

absl::StatusOr<std::vector<TowerFloor>> DecodeTowerFloors(ByteView octets) {
  size_t pos = 0;
  auto read_u16 = [&](absl::string_view what, uint16_t* v) -> absl::Status {
    if (octets.size() - pos < 2) {
      return absl::InvalidArgumentError(absl::StrCat("tower truncated reading ", what, " at offset ", pos));
    }
    *v = static_cast<uint16_t>(octets[pos] | octets[pos + 1] << 8);
    pos += 2;
    return absl::OkStatus();
  };
  auto read_bytes = [&](absl::string_view what, size_t n, Bytes* v) -> absl::Status {
    if (octets.size() - pos < n) {
      return absl::InvalidArgumentError(
          absl::StrCat("tower ", what, " of ", n, " bytes overruns the tower at offset ", pos));
    }
    v->assign(octets.begin() + pos, octets.begin() + pos + n);
    pos += n;
    return absl::OkStatus();
  };
  uint16_t count = 0;
  if (absl::Status s = read_u16("floor count", &count); !s.ok()) return s;
  // Each floor takes at least 4 bytes (two length fields): bound the count before reserving.
  if (static_cast<size_t>(count) * 4 > octets.size() - pos) {
    return absl::InvalidArgumentError(absl::StrCat("tower claims ", count, " floors in ", octets.size(), " bytes"));
  }
  std::vector<TowerFloor> floors(count);
  for (TowerFloor& f : floors) {
    uint16_t n = 0;
    if (absl::Status s = read_u16("lhs length", &n); !s.ok()) return s;
    if (absl::Status s = read_bytes("lhs", n, &f.lhs); !s.ok()) return s;
    if (absl::Status s = read_u16("rhs length", &n); !s.ok()) return s;
    if (absl::Status s = read_bytes("rhs", n, &f.rhs); !s.ok()) return s;
  }
  if (pos != octets.size()) {
    return absl::InvalidArgumentError(absl::StrCat("tower has ", octets.size() - pos, " bytes after its floors"));
  }
  return floors;
}

Bytes BuildTcpTower(const TcpTower& tower) {
  std::vector<TowerFloor> floors;
  floors.push_back(UuidFloor(tower.interface_id));
  floors.push_back(UuidFloor(tower.transfer_syntax));
  floors.push_back(TowerFloor{{tower_protocol::kRpcConnectionOriented}, {0, 0}});  // rhs: minor version 0
  floors.push_back(
      TowerFloor{{tower_protocol::kTcp}, {static_cast<uint8_t>(tower.port >> 8), static_cast<uint8_t>(tower.port)}});
  floors.push_back(TowerFloor{{tower_protocol::kIp}, Bytes(tower.ipv4.begin(), tower.ipv4.end())});
  return EncodeTowerFloors(floors);
}

absl::StatusOr<TcpTower> ParseTcpTower(ByteView octets) {
  absl::StatusOr<std::vector<TowerFloor>> floors = DecodeTowerFloors(octets);
  if (!floors.ok()) return floors.status();
  if (floors->size() != kTcpTowerFloors) {
    return absl::InvalidArgumentError(
        absl::StrCat("tower has ", floors->size(), " floors; ncacn_ip_tcp has ", kTcpTowerFloors));
  }
  const std::vector<TowerFloor>& f = *floors;
  TcpTower tower;
  absl::StatusOr<SyntaxId> iface = ReadUuidFloor(f[0], "1 (interface)");
  if (!iface.ok()) return iface.status();
  absl::StatusOr<SyntaxId> transfer = ReadUuidFloor(f[1], "2 (transfer syntax)");
  if (!transfer.ok()) return transfer.status();
  tower.interface_id = *iface;
  tower.transfer_syntax = *transfer;
  if (f[2].lhs.size() != 1 || f[2].lhs[0] != tower_protocol::kRpcConnectionOriented) {
    return absl::InvalidArgumentError("tower floor 3 is not RPC connection-oriented (0x0b)");
  }
  if (f[3].lhs.size() != 1 || f[3].lhs[0] != tower_protocol::kTcp || f[3].rhs.size() != kPortSize) {
    return absl::InvalidArgumentError("tower floor 4 is not a TCP port (0x07, 2 bytes)");
  }
  if (f[4].lhs.size() != 1 || f[4].lhs[0] != tower_protocol::kIp || f[4].rhs.size() != kIpv4Size) {
    return absl::InvalidArgumentError("tower floor 5 is not an IPv4 address (0x09, 4 bytes)");
  }
  tower.port = static_cast<uint16_t>(f[3].rhs[0] << 8 | f[3].rhs[1]);
  std::copy(f[4].rhs.begin(), f[4].rhs.end(), tower.ipv4.begin());
  return tower;
}

absl::StatusOr<uint16_t> TowerTcpPort(ByteView octets) {
  absl::StatusOr<TcpTower> tower = ParseTcpTower(octets);
  if (!tower.ok()) return tower.status();
  return tower->port;
}

// ---------------------------------------------------------------------------------------------
// ept_map

Bytes EncodeEptMapRequest(const EptMapRequest& request) {
  NdrWriter w(kEptMapRequestReferents);
  w.WriteUniquePointer(request.object.has_value(), [&request](NdrWriter& pw) { pw.WriteUuid(*request.object); });
  w.FlushDeferred();
  w.WriteUniquePointer(request.map_tower.has_value(), [&request](NdrWriter& pw) { WriteTwr(pw, *request.map_tower); });
  w.FlushDeferred();
  WriteHandle(w, request.entry_handle);
  w.WriteU32(request.max_towers);
  return w.Finish();
}

absl::StatusOr<EptMapRequest> DecodeEptMapRequest(ByteView stub) {
  NdrReader r(stub);
  EptMapRequest request;
  uint32_t referent = 0;
  if (absl::Status s = r.ReadReferent("obj", &referent); !s.ok()) return s;
  request.object.reset();
  if (referent != 0) {
    Uuid object;
    if (absl::Status s = r.ReadUuid("obj", &object); !s.ok()) return s;
    request.object = object;
  }
  if (absl::Status s = r.ReadReferent("map_tower", &referent); !s.ok()) return s;
  if (referent != 0) {
    Bytes octets;
    if (absl::Status s = ReadTwr(r, "map_tower", &octets); !s.ok()) return s;
    request.map_tower = std::move(octets);
  }
  if (absl::Status s = ReadHandle(r, &request.entry_handle); !s.ok()) return s;
  if (absl::Status s = r.ReadU32("max_towers", &request.max_towers); !s.ok()) return s;
  if (absl::Status s = r.ExpectEnd("ept_map request"); !s.ok()) return s;
  return request;
}

Bytes EncodeEptMapResponse(const EptMapResponse& response) {
  NdrWriter w;
  WriteHandle(w, response.entry_handle);
  const auto count = static_cast<uint32_t>(response.towers.size());
  w.WriteU32(count);  // num_towers
  // ITowers: [size_is(max_towers), length_is(*num_towers)] twr_p_t[], a conformant varying
  // array of unique pointers whose pointees follow the whole array.
  w.WriteU32(std::max(response.max_towers, count));
  w.WriteU32(0);
  w.WriteU32(count);
  for (const Bytes& tower : response.towers) {
    w.WriteUniquePointer(true, [&tower](NdrWriter& pw) { WriteTwr(pw, tower); });
  }
  w.FlushDeferred();
  w.WriteU32(response.status);
  return w.Finish();
}

absl::StatusOr<EptMapResponse> DecodeEptMapResponse(ByteView stub) {
  NdrReader r(stub);
  EptMapResponse response;
  uint32_t num_towers = 0;
  if (absl::Status s = ReadHandle(r, &response.entry_handle); !s.ok()) return s;
  if (absl::Status s = r.ReadU32("num_towers", &num_towers); !s.ok()) return s;
  NdrReader::VaryingHeader array;
  if (absl::Status s = r.ReadVaryingHeader("ITowers", kPointerSize, &array); !s.ok()) return s;
  if (array.actual_count != num_towers) {
    return absl::InvalidArgumentError(
        absl::StrCat("NDR ITowers: actual count ", array.actual_count, " differs from num_towers ", num_towers));
  }
  response.max_towers = array.max_count;
  response.towers.resize(array.actual_count);  // bounded: 4 bytes per element were checked
  for (size_t i = 0; i < response.towers.size(); ++i) {
    uint32_t referent = 0;
    const std::string field = absl::StrCat("ITowers[", i, "]");
    if (absl::Status s = r.ReadReferent(field, &referent); !s.ok()) return s;
    if (referent == 0) return absl::InvalidArgumentError(absl::StrCat("NDR ", field, ": null tower pointer"));
    r.Defer([&response, i, field](NdrReader& pr) { return ReadTwr(pr, field, &response.towers[i]); });
  }
  if (absl::Status s = r.FlushDeferred(); !s.ok()) return s;
  if (absl::Status s = r.ReadU32("status", &response.status); !s.ok()) return s;
  if (absl::Status s = r.ExpectEnd("ept_map response"); !s.ok()) return s;
  return response;
}

}  // namespace adcsc::rpc
