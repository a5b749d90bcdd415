#include "node/rpc/epm_stub.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace adcsc::rpc {
namespace {

using ::testing::HasSubstr;

// Produced by tests/unit/rpc/impacket_vectors.py: the tower and ept_map request exactly as
// impacket's epm.hept_map(..., protocol='ncacn_ip_tcp') builds them for MS-ICPR, and an
// ept_mapResponse naming port 49667 on 10.0.0.5. impacket pads with 0xAB/0xBF where we write
// zeros, so encoder comparisons zero those offsets first.
constexpr char kImpacketEpmQueryTower[] =
    "050013000d2060ae913c9ecf118d7c00aa00c091be00000200000013000d045d888aeb1cc9119fe808002b1048600200"
    "0200000001000b0200000001000702000000010009040000000000";

constexpr char kImpacketEpmRequest[] =
    "0100000000000000000000000000000000000000020000004b0000004b000000050013000d2060ae913c9ecf118d7c00"
    "aa00c091be00000200000013000d045d888aeb1cc9119fe808002b10486002000200000001000b020000000100070200"
    "0000010009040000000000ab000000000000000000000000000000000000000001000000";

constexpr char kImpacketEpmAnswerTower[] =
    "050013000d2060ae913c9ecf118d7c00aa00c091be00000200000013000d045d888aeb1cc9119fe808002b1048600200"
    "0200000001000b020000000100070200c20301000904000a000005";

constexpr char kImpacketEpmResponse[] =
    "000000000000000000000000000000000000000001000000010000000000000001000000000002004b0000004b000000"
    "050013000d2060ae913c9ecf118d7c00aa00c091be00000200000013000d045d888aeb1cc9119fe808002b1048600200"
    "0200000001000b020000000100070200c20301000904000a000005bf00000000";

// Offsets inside the ept_map stubs above.
constexpr size_t kRequestTowerMaxCount = 24;
constexpr size_t kRequestTowerLength = 28;
constexpr size_t kResponseNumTowers = 20;
constexpr size_t kResponseMaxCount = 24;
constexpr size_t kResponseOffset = 28;
constexpr size_t kResponseActualCount = 32;
constexpr size_t kResponseReferent = 36;
constexpr size_t kResponseTowerMaxCount = 40;
constexpr size_t kResponseTowerLength = 44;

Bytes FromHex(std::string_view hex) {
  Bytes out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

Bytes ZeroPadding(Bytes bytes, std::initializer_list<size_t> offsets) {
  for (size_t at : offsets) bytes.at(at) = 0;
  return bytes;
}

void PutU32(Bytes& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}

std::string Message(const absl::Status& s) { return std::string(s.message()); }

const TcpTower kQuery{kIcprSyntax, kNdr20Syntax, 0, {0, 0, 0, 0}};
const TcpTower kAnswer{kIcprSyntax, kNdr20Syntax, 49667, {10, 0, 0, 5}};

// ---------------------------------------------------------------------------------------------
// Towers

TEST(EpmTowerTest, BuildsTheTowersImpacketBuilds) {
  EXPECT_EQ(BuildTcpTower(kQuery), FromHex(kImpacketEpmQueryTower));
  EXPECT_EQ(BuildTcpTower(kAnswer), FromHex(kImpacketEpmAnswerTower));
}

TEST(EpmTowerTest, ParsesTowersAndExtractsThePort) {
  absl::StatusOr<TcpTower> tower = ParseTcpTower(FromHex(kImpacketEpmAnswerTower));
  ASSERT_TRUE(tower.ok()) << tower.status();
  EXPECT_EQ(*tower, kAnswer);
  EXPECT_EQ(*TowerTcpPort(FromHex(kImpacketEpmAnswerTower)), 49667);
  EXPECT_EQ(*TowerTcpPort(BuildTcpTower(TcpTower{kEpmSyntax, kNdr20Syntax, 135, {127, 0, 0, 1}})), 135);
}

TEST(EpmTowerTest, FloorsRoundTrip) {
  const std::vector<TowerFloor> floors = {{{1, 2, 3}, {}}, {{}, {4}}, {{5}, {6, 7}}};
  absl::StatusOr<std::vector<TowerFloor>> back = DecodeTowerFloors(EncodeTowerFloors(floors));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, floors);
}

TEST(EpmTowerTest, RejectsMalformedTowers) {
  const Bytes good = FromHex(kImpacketEpmAnswerTower);
  // Every truncation fails without reading past the end.
  for (size_t len = 0; len < good.size(); ++len) {
    EXPECT_FALSE(DecodeTowerFloors(ByteView(good).first(len)).ok()) << len;
  }
  Bytes trailing = good;
  trailing.push_back(0);
  EXPECT_FALSE(DecodeTowerFloors(trailing).ok());

  Bytes many = good;
  many[0] = 0xff;
  many[1] = 0xff;  // 65535 floors claimed
  EXPECT_FALSE(DecodeTowerFloors(many).ok());

  Bytes lhs = good;
  lhs[2] = 0xff;  // first lhs length 19 -> 255
  EXPECT_FALSE(DecodeTowerFloors(lhs).ok());

  // Structurally valid but not ncacn_ip_tcp.
  std::vector<TowerFloor> floors = *DecodeTowerFloors(good);
  std::vector<TowerFloor> four(floors.begin(), floors.begin() + 4);
  EXPECT_FALSE(ParseTcpTower(EncodeTowerFloors(four)).ok());
  std::vector<TowerFloor> udp = floors;
  udp[3].lhs = {0x08};  // UDP port
  absl::StatusOr<TcpTower> not_tcp = ParseTcpTower(EncodeTowerFloors(udp));
  EXPECT_FALSE(not_tcp.ok());
  EXPECT_THAT(Message(not_tcp.status()), HasSubstr("TCP"));
  std::vector<TowerFloor> short_port = floors;
  short_port[3].rhs = {0xc2};
  EXPECT_FALSE(TowerTcpPort(EncodeTowerFloors(short_port)).ok());
  std::vector<TowerFloor> ipv6 = floors;
  ipv6[4].rhs.resize(16);
  EXPECT_FALSE(ParseTcpTower(EncodeTowerFloors(ipv6)).ok());
  std::vector<TowerFloor> bad_uuid_floor = floors;
  bad_uuid_floor[0].lhs.pop_back();
  EXPECT_FALSE(ParseTcpTower(EncodeTowerFloors(bad_uuid_floor)).ok());
}

// ---------------------------------------------------------------------------------------------
// ept_map request

EptMapRequest QueryRequest() {
  EptMapRequest request;
  request.map_tower = BuildTcpTower(kQuery);
  request.max_towers = 1;
  return request;
}

TEST(EpmRequestTest, MatchesImpacketsHeptMap) {
  const Bytes impacket = FromHex(kImpacketEpmRequest);
  EXPECT_EQ(EncodeEptMapRequest(QueryRequest()), ZeroPadding(impacket, {107}));

  absl::StatusOr<EptMapRequest> decoded = DecodeEptMapRequest(impacket);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, QueryRequest());
  ASSERT_TRUE(decoded->object.has_value());
  EXPECT_TRUE(decoded->object->IsNil());
  ASSERT_TRUE(decoded->map_tower.has_value());
  EXPECT_EQ(ParseTcpTower(*decoded->map_tower)->interface_id, kIcprSyntax);
}

TEST(EpmRequestTest, NullPointersRoundTrip) {
  EptMapRequest request;
  request.object.reset();
  request.entry_handle[3] = 7;
  request.max_towers = 4;
  const Bytes stub = EncodeEptMapRequest(request);
  EXPECT_EQ(stub.size(), 4u + 4u + 20u + 4u);
  absl::StatusOr<EptMapRequest> back = DecodeEptMapRequest(stub);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, request);
}

TEST(EpmRequestTest, RejectsLyingTowerLength) {
  Bytes stub = FromHex(kImpacketEpmRequest);
  PutU32(stub, kRequestTowerMaxCount, 0x10000000);
  PutU32(stub, kRequestTowerLength, 0x10000000);
  EXPECT_FALSE(DecodeEptMapRequest(stub).ok());

  stub = FromHex(kImpacketEpmRequest);
  PutU32(stub, kRequestTowerLength, 74);  // differs from the conformance 75
  absl::StatusOr<EptMapRequest> r = DecodeEptMapRequest(stub);
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(Message(r.status()), HasSubstr("tower_length"));

  const Bytes good = FromHex(kImpacketEpmRequest);
  for (size_t len = 0; len < good.size(); ++len) {
    EXPECT_FALSE(DecodeEptMapRequest(ByteView(good).first(len)).ok()) << len;
  }
}

// ---------------------------------------------------------------------------------------------
// ept_map response

EptMapResponse AnswerResponse() {
  EptMapResponse response;
  response.max_towers = 1;
  response.towers.push_back(BuildTcpTower(kAnswer));
  return response;
}

TEST(EpmResponseTest, MatchesImpacket) {
  const Bytes impacket = FromHex(kImpacketEpmResponse);
  EXPECT_EQ(EncodeEptMapResponse(AnswerResponse()), ZeroPadding(impacket, {123}));

  absl::StatusOr<EptMapResponse> decoded = DecodeEptMapResponse(impacket);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, AnswerResponse());
  ASSERT_EQ(decoded->towers.size(), 1u);
  EXPECT_EQ(*TowerTcpPort(decoded->towers[0]), 49667);
}

TEST(EpmResponseTest, SeveralTowersAndNotRegistered) {
  EptMapResponse several;
  several.max_towers = 4;
  several.towers = {BuildTcpTower(kAnswer), BuildTcpTower(TcpTower{kIcprSyntax, kNdr20Syntax, 50001, {10, 0, 0, 6}}),
                    Bytes{1, 2, 3}};
  several.entry_handle[19] = 0xEE;
  const Bytes stub = EncodeEptMapResponse(several);
  absl::StatusOr<EptMapResponse> back = DecodeEptMapResponse(stub);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, several);
  EXPECT_EQ(*TowerTcpPort(back->towers[1]), 50001);

  EptMapResponse none;
  none.max_towers = 1;
  none.status = kEptNotRegisteredWin32;
  const Bytes empty = EncodeEptMapResponse(none);
  EXPECT_EQ(empty.size(), 20u + 4u + 12u + 4u);
  back = DecodeEptMapResponse(empty);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, none);
}

TEST(EpmResponseTest, RejectsLyingCounts) {
  Bytes stub = FromHex(kImpacketEpmResponse);
  PutU32(stub, kResponseTowerLength, 200);  // tower_length overruns the stub (and the conformance)
  PutU32(stub, kResponseTowerMaxCount, 200);
  absl::StatusOr<EptMapResponse> r = DecodeEptMapResponse(stub);
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(Message(r.status()), HasSubstr("ITowers[0]"));

  stub = FromHex(kImpacketEpmResponse);
  PutU32(stub, kResponseTowerLength, 10);
  EXPECT_FALSE(DecodeEptMapResponse(stub).ok());

  stub = FromHex(kImpacketEpmResponse);
  PutU32(stub, kResponseNumTowers, 2);  // num_towers != actual_count
  EXPECT_FALSE(DecodeEptMapResponse(stub).ok());

  stub = FromHex(kImpacketEpmResponse);
  PutU32(stub, kResponseNumTowers, 0x40000000);
  PutU32(stub, kResponseActualCount, 0x40000000);
  PutU32(stub, kResponseMaxCount, 0x40000000);
  r = DecodeEptMapResponse(stub);  // a billion pointers in 128 bytes
  EXPECT_FALSE(r.ok());

  stub = FromHex(kImpacketEpmResponse);
  PutU32(stub, kResponseMaxCount, 0);  // actual 1 > max 0
  EXPECT_FALSE(DecodeEptMapResponse(stub).ok());

  stub = FromHex(kImpacketEpmResponse);
  PutU32(stub, kResponseOffset, 1);
  EXPECT_FALSE(DecodeEptMapResponse(stub).ok());

  stub = FromHex(kImpacketEpmResponse);
  PutU32(stub, kResponseReferent, 0);  // null tower pointer
  r = DecodeEptMapResponse(stub);
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(Message(r.status()), HasSubstr("null"));

  const Bytes good = FromHex(kImpacketEpmResponse);
  for (size_t len = 0; len < good.size(); ++len) {
    EXPECT_FALSE(DecodeEptMapResponse(ByteView(good).first(len)).ok()) << len;
  }
}

}  // namespace
}  // namespace adcsc::rpc
