// MS-DCOM and MS-CSRA marshalling (node/dcom) against byte strings made by an independent
// implementation, impacket 0.10 (python3-impacket; tests/unit/dcom/impacket_vectors.py makes
// them and says how): ORPCTHIS, the standard OBJREF with its DUALSTRINGARRAY, RemRelease, the
// four ICertAdminD(2) calls byte for byte; impacket's RemoteCreateInstance request and reply,
// built with its own activation-property classes, decoded by ours. Then our own encoders
// against our decoders (what the emulator reads from the client and back).
#include "node/dcom/dcom_wire.h"

#include <gtest/gtest.h>

#include <string>

#include "absl/strings/escaping.h"
#include "node/dcom/csra_stub.h"

namespace adcsc::dcom {
namespace {

// From impacket_vectors.py (impacket 0.10); alignment padding zeroed where that script says.
constexpr char kResubmitRequest[] =
    "050007000000000000000000443322116655887799aabbccddeeff0000000000000002000c000000000000000c000000"
    "63006f00720070002d004300410031002d004300410000005f000000";
constexpr char kResubmitResponse[] = "00000000000000000300000000000000";
constexpr char kRevokeRequest[] =
    "050007000000000000000000443322116655887799aabbccddeeff0000000000000002000c000000000000000c000000"
    "63006f00720070002d004300410031002d00430041000000040002000b000000000000000b0000003100610032006200"
    "33006300340064003500650000000000010000000080209bcb82d801";
constexpr char kGetCaPropertyRequest[] =
    "050007000000000000000000443322116655887799aabbccddeeff0000000000000002000c000000000000000c000000"
    "63006f00720070002d004300410031002d00430041000000060000000000000004000000";
constexpr char kGetCaPropertyResponse[] =
    "000000000000000018000000000002001800000063006f00720070002d004300410031002d0043004100000000000000";
constexpr char kOrpcthis[] = "050007000000000000000000443322116655887799aabbccddeeff0000000000";
constexpr char kRemReleaseRequest[] =
    "050007000000000000000000443322116655887799aabbccddeeff000000000001000000010000000a7c00001c0b2e0d"
    "3f405a6b7c8d9eaf0500000000000000";
constexpr char kRemReleaseResponseDenied[] = "000000000000000005000780";
constexpr char kDualStringArray[] =
    "37003000070063006100300031002e0063006f00720070002e006500780061006d0070006c0065002e0063006f006d00"
    "5b00340039003700300032005d0000000700310030002e0030002e0030002e0035005b00340039003700300032005d00"
    "000000000a00ffff00001000ffff00000000";
constexpr char kStdObjref[] =
    "4d454f570100000035d9e07fa6dd3f4485d01cfb58fe41dd0000000005000000887766554433221101ffeeddccbbaa99"
    "0a7c00001c0b2e0d3f405a6b7c8d9eaf37003000070063006100300031002e0063006f00720070002e00650078006100"
    "6d0070006c0065002e0063006f006d005b00340039003700300032005d0000000700310030002e0030002e0030002e00"
    "35005b00340039003700300032005d00000000000a00ffff00001000ffff00000000";
constexpr char kRemoteCreateInstanceRequest[] =
    "050007000000000000000000443322116655887799aabbccddeeff00000000000000000048990000a0010000a0010000"
    "4d454f5704000000a201000000000000c0000000000000463803000000000000c0000000000000460000000078010000"
    "680100000000000001100800cccccccc88000000cccccccc680100009800000000000000020000000400000000000000"
    "000000000000000000000000bdef0000073300000000000004000000ab01000000000000c000000000000046a5010000"
    "00000000c000000000000046a401000000000000c000000000000046aa01000000000000c00000000000004604000000"
    "5800000028000000200000003000000001100800cccccccc44000000cccccccc736e9ed988fcd011b49800a0c90312f3"
    "00000000000000000000000001000000000000006200000058000000050007000100000035d9e07fa6dd3f4485d01cfb"
    "58fe41ddfafafafa01100800cccccccc18000000cccccccc000000000000000000000000000000000000000000000000"
    "01100800cccccccc10000000cccccccc0000000000000000000000000000000001100800cccccccc1a000000cccccccc"
    "000000007a720000000000000100aaaabc5e0000010000000700fafafafafafa";
constexpr char kRemoteCreateInstanceResponse[] =
    "00000000000000001189000060020000600200004d454f5704000000a301000000000000c00000000000004639030000"
    "00000000c0000000000000460000000038020000280200000000000001100800cccccccc60000000cccccccc28020000"
    "7000000000000000020000000200000000000000000000000000000000000000c7090000a0ab00000000000002000000"
    "3903000000000000c000000000000046b601000000000000c0000000000000460200000000010000b800000001100800"
    "ccccccccee000000cccccccc010000009bf300006dbf0000a00900000100000035d9e07fa6dd3f4485d01cfb58fe41dd"
    "0100000000000000010000007d540000b2000000b20000004d454f570100000035d9e07fa6dd3f4485d01cfb58fe41dd"
    "0000000005000000887766554433221101ffeeddccbbaa990a7c00001c0b2e0d3f405a6b7c8d9eaf3700300007006300"
    "6100300031002e0063006f00720070002e006500780061006d0070006c0065002e0063006f006d005b00340039003700"
    "300032005d0000000700310030002e0030002e0030002e0035005b00340039003700300032005d00000000000a00ffff"
    "00001000ffff00000000000001100800cccccccca2000000cccccccc0000000037da00008877665544332211e2630000"
    "01a00000020003000405060708090a0b06000000050007003700000037003000070063006100300031002e0063006f00"
    "720070002e006500780061006d0070006c0065002e0063006f006d005b00340039003700300032005d00000007003100"
    "30002e0030002e0030002e0035005b00340039003700300032005d00000000000a00ffff00001000ffff000000000000"
    "0000000000000000";

Bytes Hex(const char* hex) {
  const std::string raw = absl::HexStringToBytes(hex);
  return Bytes(raw.begin(), raw.end());
}

std::string ToHex(const Bytes& b) {
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
}

const Uuid kCid = Uuid::Literal("11223344-5566-7788-99aa-bbccddeeff00");
const Uuid kIpid = Uuid::Literal("00007c0a-0b1c-0d2e-3f40-5a6b7c8d9eaf");
const Uuid kIpidRemUnknown = Uuid::Literal("0000a001-0002-0003-0405-060708090a0b");

OrpcThis Orpc() {
  OrpcThis o;
  o.cid = kCid;
  return o;
}

TEST(DcomWireTest, OrpcThisMatchesImpacket) {
  rpc::NdrWriter w;
  WriteOrpcThis(w, Orpc());
  EXPECT_EQ(ToHex(w.Finish()), kOrpcthis);
  const Bytes bytes = Hex(kOrpcthis);
  rpc::NdrReader r(bytes);
  OrpcThis back;
  ASSERT_TRUE(ReadOrpcThis(r, &back).ok());
  EXPECT_EQ(back.cid, kCid);
  EXPECT_EQ(back.major, 5);
  EXPECT_EQ(back.minor, 7);
}

TEST(DcomWireTest, RemReleaseMatchesImpacket) {
  RemReleaseIn in;
  in.orpc = Orpc();
  in.refs.push_back({kIpid, 5, 0});
  auto stub = EncodeRemReleaseIn(in);
  ASSERT_TRUE(stub.ok());
  EXPECT_EQ(ToHex(*stub), kRemReleaseRequest);
  auto back = DecodeRemReleaseIn(Hex(kRemReleaseRequest));
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->refs.size(), 1u);
  EXPECT_EQ(back->refs[0].ipid, kIpid);
  EXPECT_EQ(back->refs[0].public_refs, 5);
  EXPECT_EQ(ToHex(EncodeOrpcThatAndHresult(0x80070005)), kRemReleaseResponseDenied);
  auto hr = DecodeOrpcThatAndHresult(Hex(kRemReleaseResponseDenied), "RemRelease response");
  ASSERT_TRUE(hr.ok());
  EXPECT_EQ(*hr, 0x80070005u);
}

DualStringArray CaBindings() {
  DualStringArray d;
  d.strings = {{kTowerIdTcp, "ca01.corp.example.com[49702]"}, {kTowerIdTcp, "10.0.0.5[49702]"}};
  d.security = {{10, ""}, {16, ""}};
  return d;
}

TEST(DcomWireTest, StandardObjrefAndBindingsMatchImpacket) {
  EXPECT_EQ(ToHex(EncodeDualStringArrayBody(CaBindings())), kDualStringArray);
  StandardObjRef o;
  o.iid = kCertAdminD2Syntax.uuid;
  o.std.public_refs = 5;
  o.std.oxid = 0x1122334455667788;
  o.std.oid = 0x99aabbccddeeff01;
  o.std.ipid = kIpid;
  o.resolver_address = CaBindings();
  EXPECT_EQ(ToHex(EncodeStandardObjRef(o)), kStdObjref);
  auto back = DecodeStandardObjRef(Hex(kStdObjref));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->std.ipid, kIpid);
  EXPECT_EQ(back->std.oxid, 0x1122334455667788u);
  ASSERT_EQ(back->resolver_address.strings.size(), 2u);
  EXPECT_EQ(back->resolver_address.strings[0].network_address, "ca01.corp.example.com[49702]");
  ASSERT_EQ(back->resolver_address.security.size(), 2u);
  EXPECT_EQ(back->resolver_address.security[1].authn_svc, 16);
  auto port = TcpPortOf(back->resolver_address);
  ASSERT_TRUE(port.ok());
  EXPECT_EQ(*port, 49702);
}

TEST(DcomWireTest, CertAdminCallsMatchImpacket) {
  auto resubmit = EncodeRequestIdIn({Orpc(), "corp-CA1-CA", 95});
  ASSERT_TRUE(resubmit.ok());
  EXPECT_EQ(ToHex(*resubmit), kResubmitRequest);
  auto resubmit_back = DecodeRequestIdIn(Hex(kResubmitRequest));
  ASSERT_TRUE(resubmit_back.ok()) << resubmit_back.status();
  EXPECT_EQ(resubmit_back->authority, "corp-CA1-CA");
  EXPECT_EQ(resubmit_back->request_id, 95u);
  EXPECT_EQ(ToHex(EncodeResubmitOut({3, 0})), kResubmitResponse);

  RevokeIn revoke;
  revoke.orpc = Orpc();
  revoke.authority = "corp-CA1-CA";
  revoke.serial = "1a2b3c4d5e";
  revoke.reason = crl_reason::kKeyCompromise;
  revoke.filetime = 133000000000000000ULL;
  auto revoke_stub = EncodeRevokeIn(revoke);
  ASSERT_TRUE(revoke_stub.ok());
  EXPECT_EQ(ToHex(*revoke_stub), kRevokeRequest);
  auto revoke_back = DecodeRevokeIn(Hex(kRevokeRequest));
  ASSERT_TRUE(revoke_back.ok()) << revoke_back.status();
  EXPECT_EQ(revoke_back->serial, "1a2b3c4d5e");
  EXPECT_EQ(revoke_back->reason, 1u);
  EXPECT_EQ(revoke_back->filetime, 133000000000000000ULL);

  GetCaPropertyIn get;
  get.orpc = Orpc();
  get.authority = "corp-CA1-CA";
  get.prop_id = ca_prop::kCaName;
  get.prop_type = ca_prop::kTypeString;
  auto get_stub = EncodeGetCaPropertyIn(get);
  ASSERT_TRUE(get_stub.ok());
  EXPECT_EQ(ToHex(*get_stub), kGetCaPropertyRequest);
  const std::u16string name = u"corp-CA1-CA";
  Bytes value = rpc::Utf16ToLeBytes(name);
  value.push_back(0);
  value.push_back(0);
  EXPECT_EQ(ToHex(EncodeGetCaPropertyOut({value, 0})), kGetCaPropertyResponse);
  auto get_back = DecodeGetCaPropertyOut(Hex(kGetCaPropertyResponse));
  ASSERT_TRUE(get_back.ok()) << get_back.status();
  EXPECT_EQ(get_back->value, value);
}

// impacket's activation request, as its IRemoteSCMActivator.RemoteCreateInstance sends it,
// read by the emulator's decoder.
TEST(DcomWireTest, DecodesImpacketsRemoteCreateInstanceRequest) {
  auto in = DecodeRemoteCreateInstanceIn(Hex(kRemoteCreateInstanceRequest));
  ASSERT_TRUE(in.ok()) << in.status();
  EXPECT_EQ(in->orpc.cid, kCid);
  EXPECT_EQ(in->clsid, kClsidCertAdminD);
  ASSERT_EQ(in->iids.size(), 1u);
  EXPECT_EQ(in->iids[0], kCertAdminD2Syntax.uuid);
  ASSERT_EQ(in->protseqs.size(), 1u);
  EXPECT_EQ(in->protseqs[0], kTowerIdTcp);
}

// An activation reply built with impacket's PropsOutInfo / ScmReplyInfoData, read by the
// client's decoder: the exporter's bindings, IRemUnknown's IPID and the object's OBJREF.
TEST(DcomWireTest, DecodesAnImpacketBuiltActivationReply) {
  auto out = DecodeRemoteCreateInstanceOut(Hex(kRemoteCreateInstanceResponse));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->error_code, 0u);
  EXPECT_EQ(out->oxid, 0x1122334455667788u);
  EXPECT_EQ(out->ipid_rem_unknown, kIpidRemUnknown);
  EXPECT_EQ(out->authn_hint, 6u);
  ASSERT_EQ(out->oxid_bindings.strings.size(), 2u);
  EXPECT_EQ(out->oxid_bindings.strings[1].network_address, "10.0.0.5[49702]");
  ASSERT_EQ(out->interfaces.size(), 1u);
  EXPECT_EQ(out->interfaces[0].iid, kCertAdminD2Syntax.uuid);
  ASSERT_TRUE(out->interfaces[0].objref.has_value());
  EXPECT_EQ(out->interfaces[0].objref->std.ipid, kIpid);
  EXPECT_EQ(out->interfaces[0].objref->std.public_refs, 5u);
}

// Our encoders read back by our decoders: what the client sends the emulator and back.
TEST(DcomWireTest, ActivationRoundTrips) {
  ActivationRequest request;
  request.orpc = Orpc();
  request.clsid = kClsidCertAdminD;
  request.iids = {kCertAdminD2Syntax.uuid, kCertAdminDSyntax.uuid};
  auto stub = EncodeRemoteCreateInstanceIn(request);
  ASSERT_TRUE(stub.ok());
  auto in = DecodeRemoteCreateInstanceIn(*stub);
  ASSERT_TRUE(in.ok()) << in.status();
  EXPECT_EQ(in->clsid, kClsidCertAdminD);
  EXPECT_EQ(in->iids, request.iids);
  EXPECT_EQ(in->protseqs, std::vector<uint16_t>{kTowerIdTcp});
  EXPECT_EQ(in->client_imp_level, kImpLevelImpersonate);

  ActivationReply reply;
  reply.oxid = 42;
  reply.oxid_bindings = CaBindings();
  reply.ipid_rem_unknown = kIpidRemUnknown;
  reply.authn_hint = 6;
  StandardObjRef objref;
  objref.iid = kCertAdminD2Syntax.uuid;
  objref.std.public_refs = 5;
  objref.std.ipid = kIpid;
  reply.interfaces.push_back({kCertAdminD2Syntax.uuid, 0, objref});
  reply.interfaces.push_back({kCertAdminDSyntax.uuid, 0x80004002, std::nullopt});
  auto encoded = EncodeRemoteCreateInstanceOut(reply);
  ASSERT_TRUE(encoded.ok());
  auto out = DecodeRemoteCreateInstanceOut(*encoded);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->oxid, 42u);
  EXPECT_EQ(out->ipid_rem_unknown, kIpidRemUnknown);
  ASSERT_EQ(out->interfaces.size(), 2u);
  EXPECT_EQ(out->interfaces[0].objref->std.ipid, kIpid);
  EXPECT_FALSE(out->interfaces[1].objref.has_value());
  EXPECT_EQ(out->interfaces[1].hresult, 0x80004002u);

  // A refused activation: ORPCTHAT, a null ppActProperties and the HRESULT.
  ActivationReply refused;
  refused.error_code = 0x80070005;
  auto refused_stub = EncodeRemoteCreateInstanceOut(refused);
  ASSERT_TRUE(refused_stub.ok());
  EXPECT_EQ(ToHex(*refused_stub), "00000000000000000000000005000780");
  auto refused_back = DecodeRemoteCreateInstanceOut(*refused_stub);
  ASSERT_TRUE(refused_back.ok());
  EXPECT_EQ(refused_back->error_code, 0x80070005u);
}

TEST(DcomWireTest, TruncatedStubsAreErrorsNotCrashes) {
  const Bytes full = Hex(kRemoteCreateInstanceRequest);
  for (size_t n = 0; n < full.size(); n += 7) {
    EXPECT_FALSE(DecodeRemoteCreateInstanceIn(rpc::ByteView(full.data(), n)).ok()) << n;
  }
  const Bytes reply = Hex(kRemoteCreateInstanceResponse);
  for (size_t n = 0; n + 4 < reply.size(); n += 7) {
    EXPECT_FALSE(DecodeRemoteCreateInstanceOut(rpc::ByteView(reply.data(), n)).ok()) << n;
  }
}

TEST(CsraStubTest, ReasonsByName) {
  EXPECT_EQ(CrlReasonByName("key-compromise"), 1u);
  EXPECT_EQ(CrlReasonByName("certificate-hold"), 6u);
  // MS-CSRA 3.1.4.1.8: removeFromCRL is reason 8; 0xffffffff releases a hold.
  EXPECT_EQ(CrlReasonByName("remove-from-crl"), 8u);
  EXPECT_EQ(CrlReasonByName("release-from-hold"), 0xffffffffu);
  EXPECT_FALSE(CrlReasonByName("compromised").has_value());
  EXPECT_EQ(CrlReasonName(5), "cessation-of-operation");
  EXPECT_EQ(UnixMillisFromFiletime(FiletimeFromUnixMillis(1'700'000'000'123)), 1'700'000'000'123);
}

}  // namespace
}  // namespace adcsc::dcom
