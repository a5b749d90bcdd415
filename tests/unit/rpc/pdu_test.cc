#include "node/rpc/pdu.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace adcsc::rpc {
namespace {

using ::testing::HasSubstr;

// Produced by tests/unit/rpc/impacket_vectors.py (impacket 0.10), see there for how.
constexpr char kImpacketPduBind[] =
    "05000b03100000004800000001000000b810b8100000000001000000000001002060ae913c9ecf118d7c00aa00c091be"
    "00000000045d888aeb1cc9119fe808002b10486002000000";

constexpr char kImpacketNtlmNegotiate[] = "4e544c4d5353500001000000358288e000000000000000000000000000000000";

constexpr char kImpacketPduBindNtlm[] =
    "05000b07100000009c00200001000000d016d0160000000002000000000001002060ae913c9ecf118d7c00aa00c091be"
    "00000000045d888aeb1cc9119fe808002b10486002000000010001002060ae913c9ecf118d7c00aa00c091be00000000"
    "2c1cb76c129840450300000000000000010000000a0600007f3501004e544c4d5353500001000000358288e000000000"
    "000000000000000000000000";

constexpr char kImpacketPduBindAck[] =
    "05000c03100000005400000001000000d016d0164523010006003439363637000200000000000000045d888aeb1cc911"
    "9fe808002b10486002000000030003000000000000000000000000000000000000000000";

constexpr char kImpacketPduRequest[] =
    "05000003100000002b0000000200000013000000000003000102030405060708090a0b0c0d0e0f10111213";

constexpr char kImpacketPduRequestObject[] =
    "05000083100000003b00000005000000130000000100000078563412bc9af0de11223344556677880102030405060708"
    "090a0b0c0d0e0f10111213";

constexpr char kImpacketPduRequestAuth4[] =
    "0500000310000000440010000300000013000000000000000102030405060708090a0b0c0d0e0f10111213bb0a060100"
    "7f350100a0a1a2a3a4a5a6a7a8a9aaabacadaeaf";

constexpr char kImpacketPduResponse[] =
    "05000203100000002b0000000200000013000000000000000102030405060708090a0b0c0d0e0f10111213";

constexpr char kImpacketPduFault[] = "0500030310000000200000000200000020000000000000000200011c00000000";

constexpr char kImpacketPduBindNak[] = "05000d031000000015000000010000000400010500";

Bytes FromHex(std::string_view hex) {
  Bytes out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

std::string Message(const absl::Status& s) { return std::string(s.message()); }

Bytes Encode(const Pdu& pdu) {
  absl::StatusOr<Bytes> bytes = EncodePdu(pdu);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return bytes.ok() ? *bytes : Bytes{};
}

Pdu Decode(const Bytes& bytes) {
  absl::StatusOr<Pdu> pdu = DecodePdu(bytes);
  EXPECT_TRUE(pdu.ok()) << pdu.status();
  return pdu.ok() ? *pdu : Pdu{};
}

Bytes Iota(size_t n, uint8_t start = 0) {
  Bytes out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(start + i * 7);
  return out;
}

void SetU16(Bytes& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v);
  b[at + 1] = static_cast<uint8_t>(v >> 8);
}

// ---------------------------------------------------------------------------------------------
// Byte-exact against impacket

TEST(PduImpacketTest, Bind) {
  const Bytes expected = FromHex(kImpacketPduBind);
  BindBody body;
  body.max_xmit_frag = 4280;
  body.max_recv_frag = 4280;
  body.contexts.push_back(ContextElement{0, kIcprSyntax, {kNdr20Syntax}});
  EXPECT_EQ(Encode(MakePdu(PduType::kBind, 1, body)), expected);

  const Pdu decoded = Decode(expected);
  EXPECT_EQ(decoded.header.type, PduType::kBind);
  EXPECT_EQ(decoded.header.call_id, 1u);
  const auto& b = std::get<BindBody>(decoded.body);
  EXPECT_EQ(b.max_xmit_frag, 4280);
  ASSERT_EQ(b.contexts.size(), 1u);
  EXPECT_EQ(b.contexts[0].abstract_syntax, kIcprSyntax);
  ASSERT_EQ(b.contexts[0].transfer_syntaxes.size(), 1u);
  EXPECT_EQ(b.contexts[0].transfer_syntaxes[0], kNdr20Syntax);
  EXPECT_FALSE(decoded.auth.has_value());
}

TEST(PduImpacketTest, BindWithFeatureNegotiationAndNtlmNegotiate) {
  const Bytes expected = FromHex(kImpacketPduBindNtlm);
  Pdu pdu = MakePdu(PduType::kBind, 1,
                    BindBody{5840,
                             5840,
                             0,
                             {ContextElement{0, kIcprSyntax, {kNdr20Syntax}},
                              ContextElement{1, kIcprSyntax, {kBindTimeFeatureSyntax}}}});
  pdu.header.flags |= pfc::kSupportHeaderSign;
  pdu.auth =
      AuthVerifier{SecTrailer{authn::kWinNt, authn_level::kPktPrivacy, 0, 0, 79231}, FromHex(kImpacketNtlmNegotiate)};
  EXPECT_EQ(Encode(pdu), expected);

  const Pdu decoded = Decode(expected);
  EXPECT_EQ(decoded.header.flags, pfc::kFirstFrag | pfc::kLastFrag | pfc::kSupportHeaderSign);
  EXPECT_EQ(decoded.header.auth_length, 32);
  const auto& b = std::get<BindBody>(decoded.body);
  ASSERT_EQ(b.contexts.size(), 2u);
  EXPECT_EQ(BindTimeFeatureBits(b.contexts[1].transfer_syntaxes[0].uuid), 3u);
  ASSERT_TRUE(decoded.auth.has_value());
  EXPECT_EQ(decoded.auth->trailer.auth_type, authn::kWinNt);
  EXPECT_EQ(decoded.auth->trailer.auth_level, authn_level::kPktPrivacy);
  EXPECT_EQ(decoded.auth->trailer.auth_context_id, 79231u);
  EXPECT_EQ(decoded.auth->auth_value, FromHex(kImpacketNtlmNegotiate));
}

TEST(PduImpacketTest, BindAckWithSecondaryAddressAndNegotiateAck) {
  const Bytes expected = FromHex(kImpacketPduBindAck);
  BindAckBody body;
  body.assoc_group_id = 0x12345;
  body.secondary_address = "49667";
  body.results.push_back(ContextResult{context_result::kAcceptance, 0, kNdr20Syntax});
  body.results.push_back(ContextResult{context_result::kNegotiateAck, 3, SyntaxId{}});
  EXPECT_EQ(Encode(MakePdu(PduType::kBindAck, 1, body)), expected);

  const Pdu decoded = Decode(expected);
  const auto& b = std::get<BindAckBody>(decoded.body);
  EXPECT_EQ(b.max_xmit_frag, 5840);
  EXPECT_EQ(b.assoc_group_id, 0x12345u);
  EXPECT_EQ(b.secondary_address, "49667");
  ASSERT_EQ(b.results.size(), 2u);
  EXPECT_EQ(b.results[0].transfer_syntax, kNdr20Syntax);
  EXPECT_EQ(b.results[1].result, context_result::kNegotiateAck);
  EXPECT_EQ(b.results[1].reason, 3);
}

TEST(PduImpacketTest, Request) {
  const Bytes stub = FromHex("0102030405060708090a0b0c0d0e0f10111213");
  Pdu pdu = MakePdu(PduType::kRequest, 2, RequestBody{19, 0, 3, std::nullopt, stub});
  EXPECT_EQ(Encode(pdu), FromHex(kImpacketPduRequest));

  const Pdu decoded = Decode(FromHex(kImpacketPduRequest));
  const auto& b = std::get<RequestBody>(decoded.body);
  EXPECT_EQ(b.opnum, 3);
  EXPECT_EQ(b.alloc_hint, 19u);
  EXPECT_EQ(b.stub, stub);
  EXPECT_FALSE(b.object.has_value());
}

TEST(PduImpacketTest, RequestWithObjectUuid) {
  const Bytes stub = FromHex("0102030405060708090a0b0c0d0e0f10111213");
  const Uuid object = *Uuid::Parse("12345678-9abc-def0-1122-334455667788");
  Pdu pdu = MakePdu(PduType::kRequest, 5, RequestBody{19, 1, 0, object, stub});
  EXPECT_EQ(Encode(pdu), FromHex(kImpacketPduRequestObject));

  const Pdu decoded = Decode(FromHex(kImpacketPduRequestObject));
  EXPECT_NE(decoded.header.flags & pfc::kObjectUuid, 0);
  const auto& b = std::get<RequestBody>(decoded.body);
  EXPECT_EQ(b.object, object);
  EXPECT_EQ(b.stub, stub);
}

TEST(PduImpacketTest, RequestWithImpacketsFourBytePadding) {
  // impacket pads the stub to 4 (not 16) before the sec_trailer; the decoder accepts any pad
  // the trailer announces.
  const Bytes bytes = FromHex(kImpacketPduRequestAuth4);
  const Pdu decoded = Decode(bytes);
  const auto& b = std::get<RequestBody>(decoded.body);
  EXPECT_EQ(b.stub, FromHex("0102030405060708090a0b0c0d0e0f10111213"));
  ASSERT_TRUE(decoded.auth.has_value());
  EXPECT_EQ(decoded.auth->trailer.auth_pad_length, 1);
  EXPECT_EQ(decoded.auth->auth_value.size(), 16u);
  EXPECT_EQ(decoded.auth->auth_value[0], 0xA0);

  absl::StatusOr<AuthLayout> layout = LocateAuth(bytes);
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_EQ(layout->stub_offset, 24u);
  EXPECT_EQ(layout->stub_length, 19u);
  EXPECT_EQ(layout->pad_length, 1u);
  EXPECT_EQ(layout->trailer_offset, 44u);
  EXPECT_EQ(layout->auth_value_offset, 52u);
  EXPECT_EQ(layout->auth_value_length, 16u);
  EXPECT_EQ(layout->seal_length(), 20u);
  EXPECT_EQ(layout->sign_length(), 52u);
}

TEST(PduImpacketTest, Response) {
  const Bytes stub = FromHex("0102030405060708090a0b0c0d0e0f10111213");
  ResponseBody body;
  body.alloc_hint = 19;
  body.stub = stub;
  EXPECT_EQ(Encode(MakePdu(PduType::kResponse, 2, body)), FromHex(kImpacketPduResponse));
  EXPECT_EQ(std::get<ResponseBody>(Decode(FromHex(kImpacketPduResponse)).body).stub, stub);
}

TEST(PduImpacketTest, Fault) {
  FaultBody body;
  body.alloc_hint = 32;
  body.status = fault::kOpRangeError;
  EXPECT_EQ(Encode(MakePdu(PduType::kFault, 2, body)), FromHex(kImpacketPduFault));
  const Pdu decoded = Decode(FromHex(kImpacketPduFault));
  const auto& f = std::get<FaultBody>(decoded.body);
  EXPECT_EQ(f.status, fault::kOpRangeError);
  EXPECT_EQ(FaultStatusName(f.status), "nca_s_op_rng_error");
  EXPECT_TRUE(f.stub.empty());
}

TEST(PduImpacketTest, BindNak) {
  BindNakBody body;
  body.reject_reason = bind_nak_reason::kProtocolVersionNotSupported;
  body.versions = {{5, 0}};
  EXPECT_EQ(Encode(MakePdu(PduType::kBindNak, 1, body)), FromHex(kImpacketPduBindNak));
  const BindNakBody nak = std::get<BindNakBody>(Decode(FromHex(kImpacketPduBindNak)).body);
  EXPECT_EQ(nak.reject_reason, bind_nak_reason::kProtocolVersionNotSupported);
  EXPECT_EQ(BindNakReasonName(nak.reject_reason), "protocol_version_not_supported");
  ASSERT_EQ(nak.versions.size(), 1u);
  EXPECT_EQ(nak.versions[0], std::make_pair(uint8_t{5}, uint8_t{0}));
}

// ---------------------------------------------------------------------------------------------
// Round trips of every PDU type

std::vector<Pdu> EveryPduType() {
  const AuthVerifier verifier{SecTrailer{authn::kWinNt, authn_level::kPktPrivacy, 0, 0, 7}, Iota(16, 3)};
  std::vector<Pdu> pdus;
  pdus.push_back(MakePdu(PduType::kRequest, 1, RequestBody{5, 0, 0, std::nullopt, Iota(5)}));
  Pdu sealed_request = MakePdu(PduType::kRequest, 2, RequestBody{33, 1, 0, kEpmSyntax.uuid, Iota(33)});
  sealed_request.auth = verifier;
  pdus.push_back(sealed_request);
  ResponseBody response;
  response.alloc_hint = 70;
  response.cancel_count = 1;
  response.stub = Iota(70);
  pdus.push_back(MakePdu(PduType::kResponse, 3, response));
  Pdu sealed_response = MakePdu(PduType::kResponse, 3, response);
  sealed_response.auth = verifier;
  pdus.push_back(sealed_response);
  FaultBody fault_body;
  fault_body.status = fault::kNdr;
  fault_body.reserved = 1;
  fault_body.stub = Iota(12);
  pdus.push_back(MakePdu(PduType::kFault, 4, fault_body));
  Pdu bind = MakePdu(PduType::kBind, 5,
                     BindBody{5840,
                              5840,
                              0,
                              {ContextElement{0, kIcprSyntax, {kNdr20Syntax, kNdr64Syntax}},
                               ContextElement{1, kIcprSyntax, {kBindTimeFeatureSyntax}}}});
  bind.auth = AuthVerifier{SecTrailer{authn::kWinNt, authn_level::kPktPrivacy, 0, 0, 0}, Iota(40)};
  pdus.push_back(bind);
  pdus.push_back(
      MakePdu(PduType::kAlterContext, 6, BindBody{4280, 4280, 0x55, {ContextElement{2, kEpmSyntax, {kNdr20Syntax}}}}));
  BindAckBody ack;
  ack.assoc_group_id = 9;
  ack.secondary_address = "135";
  ack.results = {ContextResult{context_result::kProviderRejection,
                               context_reason::kProposedTransferSyntaxesNotSupported, SyntaxId{}},
                 ContextResult{}};
  Pdu bind_ack = MakePdu(PduType::kBindAck, 5, ack);
  bind_ack.auth = AuthVerifier{SecTrailer{authn::kWinNt, authn_level::kPktPrivacy, 0, 0, 0}, Iota(200)};
  pdus.push_back(bind_ack);
  BindAckBody alter_resp;  // empty secondary address: length 0 then 2 pad bytes
  alter_resp.results = {ContextResult{context_result::kAcceptance, 0, kNdr20Syntax}};
  pdus.push_back(MakePdu(PduType::kAlterContextResp, 6, alter_resp));
  BindNakBody nak;
  nak.reject_reason = bind_nak_reason::kAuthenticationTypeNotRecognized;
  nak.versions = {{5, 0}, {5, 1}};
  nak.extra = Iota(20);
  pdus.push_back(MakePdu(PduType::kBindNak, 5, nak));
  Pdu auth3 = MakePdu(PduType::kAuth3, 5, Auth3Body{});
  auth3.auth = AuthVerifier{SecTrailer{authn::kWinNt, authn_level::kPktPrivacy, 0, 0, 0}, Iota(300)};
  pdus.push_back(auth3);
  pdus.push_back(MakePdu(PduType::kShutdown, 0, EmptyBody{}));
  Pdu cancel = MakePdu(PduType::kCoCancel, 2, EmptyBody{});
  cancel.auth = verifier;
  pdus.push_back(cancel);
  pdus.push_back(MakePdu(PduType::kOrphaned, 2, EmptyBody{}));
  return pdus;
}

TEST(PduRoundTripTest, EveryTypeSurvivesEncodeDecodeEncode) {
  for (const Pdu& pdu : EveryPduType()) {
    SCOPED_TRACE(PduTypeName(pdu.header.type));
    const Bytes first = Encode(pdu);
    ASSERT_FALSE(first.empty());
    absl::StatusOr<size_t> size = NextPduSize(first);
    ASSERT_TRUE(size.ok()) << size.status();
    EXPECT_EQ(*size, first.size());
    const Pdu decoded = Decode(first);
    EXPECT_EQ(decoded.header.type, pdu.header.type);
    EXPECT_EQ(decoded.header.call_id, pdu.header.call_id);
    EXPECT_EQ(decoded.header.frag_length, first.size());
    EXPECT_EQ(decoded.body.index(), pdu.body.index());
    EXPECT_EQ(decoded.auth.has_value(), pdu.auth.has_value());
    if (pdu.auth.has_value()) {
      EXPECT_EQ(decoded.auth->auth_value, pdu.auth->auth_value);
      EXPECT_EQ(decoded.header.auth_length, pdu.auth->auth_value.size());
      EXPECT_EQ(decoded.auth->trailer.auth_context_id, pdu.auth->trailer.auth_context_id);
    }
    EXPECT_EQ(Encode(decoded), first);
  }
}

TEST(PduRoundTripTest, DecodedBodiesMatchWhatWasEncoded) {
  const std::vector<Pdu> pdus = EveryPduType();
  const Pdu sealed_request = Decode(Encode(pdus[1]));
  const auto& req = std::get<RequestBody>(sealed_request.body);
  EXPECT_EQ(req.stub, Iota(33));  // padding removed
  EXPECT_EQ(req.object, kEpmSyntax.uuid);
  EXPECT_EQ(sealed_request.auth->trailer.auth_pad_length, 15);  // 33 -> 48

  const FaultBody fault_body = std::get<FaultBody>(Decode(Encode(pdus[4])).body);
  EXPECT_EQ(fault_body.stub, Iota(12));
  EXPECT_EQ(fault_body.reserved, 1);

  const BindBody bind = std::get<BindBody>(Decode(Encode(pdus[5])).body);
  ASSERT_EQ(bind.contexts.size(), 2u);
  EXPECT_EQ(bind.contexts[0].transfer_syntaxes[1], kNdr64Syntax);

  const Pdu ack = Decode(Encode(pdus[7]));
  EXPECT_EQ(std::get<BindAckBody>(ack.body).secondary_address, "135");
  EXPECT_EQ(std::get<BindAckBody>(ack.body).results[0].reason, context_reason::kProposedTransferSyntaxesNotSupported);

  const Bytes alter = Encode(pdus[8]);
  EXPECT_EQ(alter.size(), 16u + 8u + 2u + 2u + 4u + 24u);
  EXPECT_EQ(std::get<BindAckBody>(Decode(alter).body).secondary_address, "");

  const BindNakBody nak = std::get<BindNakBody>(Decode(Encode(pdus[9])).body);
  EXPECT_EQ(nak.versions.size(), 2u);
  EXPECT_EQ(nak.extra, Iota(20));
}

// ---------------------------------------------------------------------------------------------
// Auth padding and the sign/seal layout

TEST(AuthLayoutTest, StubIsPaddedToSixteenAndOffsetsAreConsistent) {
  const AuthSpec spec;  // NTLM, privacy, 16-byte signature
  for (size_t n = 0; n <= 40; ++n) {
    SCOPED_TRACE(n);
    Pdu pdu = MakePdu(PduType::kRequest, 9, RequestBody{static_cast<uint32_t>(n), 0, 0, std::nullopt, Iota(n)});
    absl::StatusOr<OutgoingPdu> out = EncodeWithAuthPlaceholder(pdu, spec);
    ASSERT_TRUE(out.ok()) << out.status();
    ASSERT_TRUE(out->auth.has_value());
    const AuthLayout& l = *out->auth;
    EXPECT_EQ(l.stub_offset, kRequestHeaderSize);
    EXPECT_EQ(l.stub_length, n);
    EXPECT_EQ(l.seal_length() % kStubAuthPadAlignment, 0u);
    EXPECT_LT(l.pad_length, kStubAuthPadAlignment);
    EXPECT_EQ(l.trailer_offset % kTrailerAlignment, 0u);
    EXPECT_EQ(l.sign_length(), l.trailer_offset + kSecTrailerSize);
    EXPECT_EQ(l.auth_value_offset + l.auth_value_length, out->bytes.size());
    EXPECT_EQ(l.auth_value_length, 16u);

    // The receiver locates the same regions and the decoder strips the padding.
    absl::StatusOr<AuthLayout> located = LocateAuth(out->bytes);
    ASSERT_TRUE(located.ok()) << located.status();
    EXPECT_EQ(located->stub_offset, l.stub_offset);
    EXPECT_EQ(located->stub_length, l.stub_length);
    EXPECT_EQ(located->pad_length, l.pad_length);
    EXPECT_EQ(located->trailer_offset, l.trailer_offset);
    EXPECT_EQ(located->auth_value_offset, l.auth_value_offset);
    const Pdu decoded = Decode(out->bytes);
    EXPECT_EQ(decoded.header.auth_length, 16);
    EXPECT_EQ(decoded.header.frag_length, out->bytes.size());
    EXPECT_EQ(std::get<RequestBody>(decoded.body).stub, Iota(n));
    EXPECT_EQ(decoded.auth->trailer.auth_pad_length, l.pad_length);
    EXPECT_EQ(decoded.auth->trailer.auth_level, authn_level::kPktPrivacy);
  }
}

TEST(AuthLayoutTest, ResponseAndObjectRequestOffsets) {
  ResponseBody body;
  body.stub = Iota(17);
  absl::StatusOr<OutgoingPdu> resp = EncodeWithAuthPlaceholder(MakePdu(PduType::kResponse, 1, body), AuthSpec{});
  ASSERT_TRUE(resp.ok());
  EXPECT_EQ(resp->auth->stub_offset, kResponseHeaderSize);
  EXPECT_EQ(resp->auth->seal_length(), 32u);

  absl::StatusOr<OutgoingPdu> obj = EncodeWithAuthPlaceholder(
      MakePdu(PduType::kRequest, 1, RequestBody{0, 0, 0, kIcprSyntax.uuid, Iota(3)}), AuthSpec{});
  ASSERT_TRUE(obj.ok());
  EXPECT_EQ(obj->auth->stub_offset, kRequestHeaderSize + 16);
  absl::StatusOr<AuthLayout> located = LocateAuth(obj->bytes);
  ASSERT_TRUE(located.ok());
  EXPECT_EQ(located->stub_offset, kRequestHeaderSize + 16);
}

TEST(AuthLayoutTest, NonStubPdusAlignTheTrailerToFour) {
  BindAckBody ack;
  ack.secondary_address = "4966";  // 5 bytes with NUL: the result list needs padding
  ack.results = {ContextResult{}};
  Pdu pdu = MakePdu(PduType::kBindAck, 1, ack);
  pdu.auth = AuthVerifier{SecTrailer{authn::kWinNt, authn_level::kPktPrivacy, 0, 0, 0}, Iota(7)};
  const Bytes bytes = Encode(pdu);
  absl::StatusOr<AuthLayout> l = LocateAuth(bytes);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->trailer_offset % 4, 0u);
  EXPECT_EQ(std::get<BindAckBody>(Decode(bytes).body).secondary_address, "4966");
}

TEST(AuthLayoutTest, LocateAuthRejectsBadLayouts) {
  EXPECT_FALSE(LocateAuth(FromHex(kImpacketPduRequest)).ok());  // no verifier
  Bytes bytes = FromHex(kImpacketPduRequestAuth4);
  bytes[44 + 2] = 40;  // auth_pad_length larger than the stub
  EXPECT_FALSE(LocateAuth(bytes).ok());
  EXPECT_FALSE(DecodePdu(bytes).ok());
}

// ---------------------------------------------------------------------------------------------
// Fragmentation and reassembly

void CheckFragmentsReassemble(const Bytes& stub, size_t max_frag, const std::optional<AuthSpec>& auth, PduType type) {
  SCOPED_TRACE(testing::Message() << "stub " << stub.size() << " max_frag " << max_frag << " auth " << auth.has_value()
                                  << " " << PduTypeName(type));
  CallFragmentHeader header;
  header.type = type;
  header.call_id = 77;
  header.context_id = 1;
  absl::StatusOr<std::vector<OutgoingPdu>> fragments = FragmentStub(header, stub, max_frag, auth);
  ASSERT_TRUE(fragments.ok()) << fragments.status();
  ASSERT_FALSE(fragments->empty());
  Reassembler reassembler;
  size_t remaining = stub.size();
  for (size_t i = 0; i < fragments->size(); ++i) {
    const OutgoingPdu& f = (*fragments)[i];
    EXPECT_LE(f.bytes.size(), max_frag);
    EXPECT_EQ(f.auth.has_value(), auth.has_value());
    const Pdu pdu = Decode(f.bytes);
    EXPECT_EQ(pdu.header.type, type);
    EXPECT_EQ(pdu.header.call_id, 77u);
    EXPECT_EQ((pdu.header.flags & pfc::kFirstFrag) != 0, i == 0);
    EXPECT_EQ((pdu.header.flags & pfc::kLastFrag) != 0, i + 1 == fragments->size());
    const Bytes& piece =
        type == PduType::kRequest ? std::get<RequestBody>(pdu.body).stub : std::get<ResponseBody>(pdu.body).stub;
    const uint32_t hint = type == PduType::kRequest ? std::get<RequestBody>(pdu.body).alloc_hint
                                                    : std::get<ResponseBody>(pdu.body).alloc_hint;
    EXPECT_EQ(hint, remaining);
    remaining -= piece.size();
    if (auth.has_value()) {
      EXPECT_EQ(pdu.header.auth_length, auth->auth_value_length);
      if (i + 1 < fragments->size()) {
        EXPECT_EQ(pdu.auth->trailer.auth_pad_length, 0);
      }
      EXPECT_EQ(f.auth->seal_length() % kStubAuthPadAlignment, 0u);
    }
    absl::StatusOr<bool> done = reassembler.Add(pdu);
    ASSERT_TRUE(done.ok()) << done.status();
    EXPECT_EQ(*done, i + 1 == fragments->size());
  }
  EXPECT_EQ(remaining, 0u);
  ASSERT_TRUE(reassembler.first_fragment().has_value());
  EXPECT_EQ(reassembler.first_fragment()->header.call_id, 77u);
  EXPECT_EQ(reassembler.TakeStub(), stub);
  EXPECT_FALSE(reassembler.in_progress());
}

TEST(FragmentTest, SplitsAndReassemblesAtSeveralSizes) {
  const AuthSpec ntlm;
  for (size_t stub_size : {0, 1, 15, 16, 100, 1432, 5000, 20000}) {
    const Bytes stub = Iota(stub_size);
    for (size_t max_frag : {size_t{kMustRecvFragSize}, size_t{4280}, size_t{5840}, size_t{65535}, size_t{200}}) {
      CheckFragmentsReassemble(stub, max_frag, std::nullopt, PduType::kRequest);
      CheckFragmentsReassemble(stub, max_frag, ntlm, PduType::kRequest);
      CheckFragmentsReassemble(stub, max_frag, ntlm, PduType::kResponse);
    }
  }
}

TEST(FragmentTest, TinyArtificialFragments) {
  const Bytes stub = Iota(50);
  // 25 bytes: a 24-byte header and one stub byte per fragment.
  CheckFragmentsReassemble(stub, 25, std::nullopt, PduType::kRequest);
  CheckFragmentsReassemble(stub, 31, std::nullopt, PduType::kResponse);
  // Smallest with a 16-byte NTLM verifier: 24 + 16 stub + 8 + 16 = 64.
  CheckFragmentsReassemble(stub, 64, AuthSpec{}, PduType::kRequest);
  CheckFragmentsReassemble(stub, 79, AuthSpec{}, PduType::kResponse);

  absl::StatusOr<std::vector<OutgoingPdu>> exact = FragmentStub(CallFragmentHeader{}, Iota(32), 64, AuthSpec{});
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(exact->size(), 2u);
}

TEST(FragmentTest, ObjectUuidIsInEveryFragment) {
  CallFragmentHeader header;
  header.object = kIcprSyntax.uuid;
  header.opnum = 0;
  absl::StatusOr<std::vector<OutgoingPdu>> fragments = FragmentStub(header, Iota(100), 60, std::nullopt);
  ASSERT_TRUE(fragments.ok()) << fragments.status();
  EXPECT_EQ(fragments->size(), 5u);  // 20 stub bytes each after a 40-byte header
  for (const OutgoingPdu& f : *fragments) {
    EXPECT_EQ(std::get<RequestBody>(Decode(f.bytes).body).object, kIcprSyntax.uuid);
  }
}

TEST(FragmentTest, RejectsSizesWithNoRoomForStub) {
  EXPECT_FALSE(FragmentStub(CallFragmentHeader{}, Iota(10), 24, std::nullopt).ok());
  EXPECT_FALSE(FragmentStub(CallFragmentHeader{}, Iota(10), 63, AuthSpec{}).ok());
  CallFragmentHeader bind;
  bind.type = PduType::kBind;
  EXPECT_FALSE(FragmentStub(bind, Iota(10), 5840, std::nullopt).ok());
}

Pdu Fragment(PduType type, uint32_t call_id, uint8_t flags, Bytes stub, uint32_t alloc_hint = 0, uint16_t opnum = 0) {
  Pdu pdu;
  pdu.header.type = type;
  pdu.header.call_id = call_id;
  pdu.header.flags = flags;
  if (type == PduType::kRequest) {
    pdu.body = RequestBody{alloc_hint, 0, opnum, std::nullopt, std::move(stub)};
  } else {
    ResponseBody body;
    body.alloc_hint = alloc_hint;
    body.stub = std::move(stub);
    pdu.body = std::move(body);
  }
  return pdu;
}

TEST(ReassemblerTest, RejectsMismatchedCallId) {
  Reassembler r;
  ASSERT_TRUE(r.Add(Fragment(PduType::kResponse, 1, pfc::kFirstFrag, Iota(8))).ok());
  absl::StatusOr<bool> bad = r.Add(Fragment(PduType::kResponse, 2, pfc::kLastFrag, Iota(8)));
  EXPECT_FALSE(bad.ok());
  EXPECT_THAT(Message(bad.status()), HasSubstr("call_id 2"));
  EXPECT_FALSE(r.in_progress());  // reset after an error
}

TEST(ReassemblerTest, RejectsMissingFirstFrag) {
  Reassembler r;
  absl::StatusOr<bool> bad = r.Add(Fragment(PduType::kResponse, 1, pfc::kLastFrag, Iota(8)));
  EXPECT_FALSE(bad.ok());
  EXPECT_THAT(Message(bad.status()), HasSubstr("PFC_FIRST_FRAG"));
}

TEST(ReassemblerTest, RejectsFirstFragInTheMiddle) {
  Reassembler r;
  ASSERT_TRUE(r.Add(Fragment(PduType::kResponse, 1, pfc::kFirstFrag, Iota(8))).ok());
  EXPECT_FALSE(r.Add(Fragment(PduType::kResponse, 1, pfc::kFirstFrag, Iota(8))).ok());
}

TEST(ReassemblerTest, RejectsTypeOrOpnumChange) {
  Reassembler r;
  ASSERT_TRUE(r.Add(Fragment(PduType::kRequest, 1, pfc::kFirstFrag, Iota(8), 16, 0)).ok());
  EXPECT_FALSE(r.Add(Fragment(PduType::kRequest, 1, pfc::kLastFrag, Iota(8), 8, 1)).ok());
  ASSERT_TRUE(r.Add(Fragment(PduType::kRequest, 1, pfc::kFirstFrag, Iota(8), 16, 0)).ok());
  EXPECT_FALSE(r.Add(Fragment(PduType::kResponse, 1, pfc::kLastFrag, Iota(8))).ok());
  EXPECT_FALSE(r.Add(MakePdu(PduType::kBind, 1, BindBody{})).ok());
}

TEST(ReassemblerTest, EnforcesTheTotalBound) {
  Reassembler r(/*max_stub_size=*/100);
  ASSERT_TRUE(r.Add(Fragment(PduType::kResponse, 1, pfc::kFirstFrag, Iota(60))).ok());
  absl::StatusOr<bool> bad = r.Add(Fragment(PduType::kResponse, 1, 0, Iota(60)));
  EXPECT_FALSE(bad.ok());
  EXPECT_THAT(Message(bad.status()), HasSubstr("limit"));

  // A lying alloc_hint is refused up front.
  absl::StatusOr<bool> hint = r.Add(Fragment(PduType::kResponse, 2, pfc::kFirstFrag, Iota(4), 0xFFFFFFFF));
  EXPECT_FALSE(hint.ok());
  EXPECT_THAT(Message(hint.status()), HasSubstr("alloc_hint"));

  // Exactly at the bound is fine, and a new call can follow an error.
  ASSERT_TRUE(r.Add(Fragment(PduType::kResponse, 3, pfc::kFirstFrag, Iota(50), 100)).ok());
  absl::StatusOr<bool> done = r.Add(Fragment(PduType::kResponse, 3, pfc::kLastFrag, Iota(50)));
  ASSERT_TRUE(done.ok());
  EXPECT_TRUE(*done);
  EXPECT_EQ(r.TakeStub().size(), 100u);
}

TEST(ReassemblerTest, SingleFragmentCallsAndUntakenStubs) {
  Reassembler r;
  absl::StatusOr<bool> done = r.Add(Fragment(PduType::kResponse, 1, pfc::kFirstFrag | pfc::kLastFrag, Iota(3)));
  ASSERT_TRUE(done.ok());
  EXPECT_TRUE(*done);
  // The next call starts over even if the previous stub was not taken.
  done = r.Add(Fragment(PduType::kResponse, 2, pfc::kFirstFrag | pfc::kLastFrag, Iota(5)));
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(r.TakeStub(), Iota(5));
}

// ---------------------------------------------------------------------------------------------
// Framing and malformed input

TEST(FramingTest, AsksForTheHeaderThenTheWholePdu) {
  const Bytes a = FromHex(kImpacketPduBind);
  const Bytes b = FromHex(kImpacketPduRequestAuth4);
  Bytes stream = a;
  stream.insert(stream.end(), b.begin(), b.end());
  EXPECT_EQ(*NextPduSize(ByteView(stream).first(0)), kCommonHeaderSize);
  EXPECT_EQ(*NextPduSize(ByteView(stream).first(15)), kCommonHeaderSize);
  EXPECT_EQ(*NextPduSize(ByteView(stream).first(16)), a.size());
  // Split the stream PDU by PDU as a socket reader would.
  ByteView rest(stream);
  std::vector<Bytes> pdus;
  while (!rest.empty()) {
    absl::StatusOr<size_t> need = NextPduSize(rest);
    ASSERT_TRUE(need.ok()) << need.status();
    ASSERT_LE(*need, rest.size());
    pdus.emplace_back(rest.begin(), rest.begin() + *need);
    rest = rest.subspan(*need);
  }
  ASSERT_EQ(pdus.size(), 2u);
  EXPECT_EQ(pdus[0], a);
  EXPECT_EQ(pdus[1], b);
}

TEST(FramingTest, RejectsBadHeaders) {
  const Bytes good = FromHex(kImpacketPduRequest);
  auto expect_bad = [](Bytes bytes, std::string_view why, size_t max = kMaxFragLength) {
    absl::StatusOr<size_t> n = NextPduSize(bytes, max);
    EXPECT_FALSE(n.ok()) << why;
    EXPECT_FALSE(DecodePdu(bytes, max).ok()) << why;
  };
  Bytes b = good;
  b[0] = 4;
  expect_bad(b, "rpc_vers 4");
  b = good;
  b[1] = 2;
  expect_bad(b, "minor version 2");
  b = good;
  b[2] = 1;  // connectionless ping
  expect_bad(b, "ptype 1");
  b = good;
  b[2] = 99;
  expect_bad(b, "ptype 99");
  b = good;
  b[4] = 0x00;  // big-endian integers
  expect_bad(b, "big-endian drep");
  b = good;
  SetU16(b, 8, 15);
  expect_bad(b, "frag_length below 16");
  b = good;
  SetU16(b, 8, 0);
  expect_bad(b, "frag_length 0");
  expect_bad(good, "frag_length above the negotiated maximum", 40);
  b = good;
  SetU16(b, 10, 20);  // 16 + 8 + 20 > 43
  expect_bad(b, "auth_length larger than the PDU");
  b = good;
  SetU16(b, 10, 0xFFFF);
  expect_bad(b, "auth_length 65535");
}

TEST(DecodeTest, RejectsTruncatedAndInconsistentPdus) {
  EXPECT_FALSE(DecodePdu(Bytes(10, 5)).ok());  // truncated header
  const Bytes good = FromHex(kImpacketPduRequest);
  EXPECT_FALSE(DecodePdu(ByteView(good).first(good.size() - 1)).ok());  // shorter than frag_length
  Bytes longer = good;
  longer.push_back(0);
  EXPECT_FALSE(DecodePdu(longer).ok());  // longer than frag_length

  // A request whose frag_length leaves no room for alloc_hint/p_cont_id/opnum.
  Bytes short_request = Bytes(good.begin(), good.begin() + 20);
  SetU16(short_request, 8, 20);
  EXPECT_FALSE(DecodePdu(short_request).ok());

  // Object UUID flag set but no room for the UUID.
  Bytes no_object = good;
  no_object[3] |= pfc::kObjectUuid;
  no_object.resize(30);
  SetU16(no_object, 8, 30);
  EXPECT_FALSE(DecodePdu(no_object).ok());

  // A bind announcing five contexts with none present.
  Bytes bind = FromHex(kImpacketPduBind);
  bind[24] = 5;
  EXPECT_FALSE(DecodePdu(bind).ok());
  // ... and a context announcing more transfer syntaxes than follow.
  bind = FromHex(kImpacketPduBind);
  bind[30] = 3;
  EXPECT_FALSE(DecodePdu(bind).ok());

  // A bind_ack whose secondary address length runs past the PDU.
  Bytes ack = FromHex(kImpacketPduBindAck);
  SetU16(ack, 24, 1000);
  EXPECT_FALSE(DecodePdu(ack).ok());
  // ... or announcing more results than present.
  ack = FromHex(kImpacketPduBindAck);
  ack[32] = 9;
  EXPECT_FALSE(DecodePdu(ack).ok());

  // A fault cut short before its status.
  Bytes fault_pdu = FromHex(kImpacketPduFault);
  fault_pdu.resize(26);
  SetU16(fault_pdu, 8, 26);
  EXPECT_FALSE(DecodePdu(fault_pdu).ok());

  // A bind_nak listing more versions than present.
  Bytes nak = FromHex(kImpacketPduBindNak);
  nak[18] = 4;
  EXPECT_FALSE(DecodePdu(nak).ok());

  // auth3 without its 4 pad bytes.
  Bytes auth3 = FromHex(
      "05001003100000002000080001000000"
      "0a060000"
      "00000000"
      "0102030405060708");
  EXPECT_FALSE(DecodePdu(auth3).ok());
}

TEST(EncodeTest, RejectsMismatchedBodiesAndOversizedPdus) {
  EXPECT_FALSE(EncodePdu(MakePdu(PduType::kBind, 1, RequestBody{})).ok());
  EXPECT_FALSE(EncodePdu(MakePdu(PduType::kShutdown, 1, Auth3Body{})).ok());
  Pdu big = MakePdu(PduType::kRequest, 1, RequestBody{0, 0, 0, std::nullopt, Bytes(65535)});
  absl::StatusOr<Bytes> out = EncodePdu(big);
  EXPECT_FALSE(out.ok());
  EXPECT_THAT(Message(out.status()), HasSubstr("65535"));
}

TEST(NamesTest, FaultStatusNamesAndPduTypes) {
  EXPECT_EQ(FaultStatusName(0x1c010002), "nca_s_op_rng_error");
  EXPECT_EQ(FaultStatusName(0x1c010003), "nca_s_unk_if");
  EXPECT_EQ(FaultStatusName(0x1c01000b), "nca_s_proto_error");
  EXPECT_EQ(FaultStatusName(0x00000005), "nca_s_fault_access_denied");
  EXPECT_EQ(FaultStatusName(0x000006f7), "nca_s_fault_ndr");
  EXPECT_EQ(FaultStatusName(0x000006e4), "rpc_s_cannot_support");
  EXPECT_EQ(FaultStatusName(0x1c00001a), "nca_s_fault_context_mismatch");
  EXPECT_EQ(FaultStatusName(0x00000721), "nca_s_fault_sec_pkg_error");
  EXPECT_EQ(FaultStatusName(0x12345678), "unknown");
  EXPECT_EQ(PduTypeName(PduType::kAlterContextResp), "alter_context_resp");
  EXPECT_EQ(PduTypeName(static_cast<PduType>(99)), "unknown");
  EXPECT_EQ(BindNakReasonName(77), "unknown");
}

}  // namespace
}  // namespace adcsc::rpc
