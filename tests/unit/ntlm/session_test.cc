// Session security over DCE/RPC-shaped messages: the whole PDU is signed, only the stub is
// sealed, sequence numbers and RC4 state carry across messages in each direction, and any
// change, replay or reordering is refused.
#include "node/ntlm/session.h"

#include <gtest/gtest.h>

#include <string>

#include "node/ntlm/ntlm.h"
#include "tests/unit/ntlm/ntlm_test_util.h"

namespace adcsc::ntlm {
namespace {

using testing::CountingRandom;
using testing::FixedClock;
using testing::FromHex;
using testing::ToVector;

constexpr size_t kPduHeaderBytes = 24;  // DCE/RPC request header.
constexpr size_t kSecTrailerBytes = 8;  // sec_trailer before the auth verifier.

// A request-shaped PDU: header, stub (the sealed part), sec_trailer.
struct Pdu {
  Bytes bytes;
  size_t stub_offset = kPduHeaderBytes;
  size_t stub_length = 0;

  ByteView stub() const { return ByteView(bytes).subspan(stub_offset, stub_length); }
};

Pdu MakePdu(size_t stub_length, uint8_t fill) {
  Pdu pdu;
  pdu.stub_length = stub_length;
  for (size_t i = 0; i < kPduHeaderBytes; ++i) pdu.bytes.push_back(static_cast<uint8_t>(0x05 + i));
  for (size_t i = 0; i < stub_length; ++i) pdu.bytes.push_back(static_cast<uint8_t>(fill + i * 7));
  for (size_t i = 0; i < kSecTrailerBytes; ++i) pdu.bytes.push_back(static_cast<uint8_t>(0xa0 + i));
  return pdu;
}

struct SessionPair {
  std::unique_ptr<Session> client;
  std::unique_ptr<Session> server;
};

// Two ends of one real handshake.
SessionPair Handshake() {
  Key16 hash = NtHash("pw").value();
  ServerContext server([&](std::string_view, std::string_view) -> std::optional<Key16> { return hash; },
                       ServerNames{"CORP", "CA01", "", ""}, CountingRandom(7), FixedClock(1));
  ClientContext client(Credentials{"CORP", "bob", hash, "WS"}, CountingRandom(9), FixedClock(2));
  Bytes authenticate = client.Authenticate(server.Challenge(client.Negotiate()).value()).value();
  EXPECT_TRUE(server.Accept(authenticate).ok());
  return SessionPair{client.TakeSession(), server.TakeSession()};
}

void ExpectSignatureRefused(const absl::Status& status) {
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
  EXPECT_NE(status.message().find("signature did not verify"), absl::string_view::npos) << status;
}

TEST(SessionTest, ManyMessagesBothDirectionsKeepSequenceAndKeystream) {
  SessionPair pair = Handshake();
  ASSERT_NE(pair.client, nullptr);
  ASSERT_NE(pair.server, nullptr);
  constexpr int kRounds = 64;
  for (int round = 0; round < kRounds; ++round) {
    // Stub sizes from 0 up, so the keystream positions of the two ends must track exactly.
    Pdu request = MakePdu(static_cast<size_t>(round * 13 % 97), static_cast<uint8_t>(round));
    const Pdu plain_request = request;
    Signature request_signature = pair.client->SealMessage(request.bytes, request.stub_offset, request.stub_length);
    EXPECT_EQ(LoadLe32(request_signature, 12), static_cast<uint32_t>(round));
    // Only the stub changed.
    EXPECT_TRUE(
        std::equal(request.bytes.begin(), request.bytes.begin() + kPduHeaderBytes, plain_request.bytes.begin()));
    EXPECT_TRUE(std::equal(request.bytes.end() - kSecTrailerBytes, request.bytes.end(),
                           plain_request.bytes.end() - kSecTrailerBytes));
    if (request.stub_length > 8) {
      EXPECT_NE(ToVector(request.stub()), ToVector(plain_request.stub()));
    }
    ASSERT_TRUE(
        pair.server->UnsealMessage(request.bytes, request.stub_offset, request.stub_length, request_signature).ok())
        << "round " << round;
    EXPECT_EQ(request.bytes, plain_request.bytes);

    // The server sometimes sends two PDUs in a row (fragmented responses).
    for (int fragment = 0; fragment < 1 + round % 2; ++fragment) {
      Pdu response = MakePdu(static_cast<size_t>(1 + round * 5 % 41), static_cast<uint8_t>(0x80 + round));
      const Pdu plain_response = response;
      Signature response_signature =
          pair.server->SealMessage(response.bytes, response.stub_offset, response.stub_length);
      ASSERT_TRUE(
          pair.client->UnsealMessage(response.bytes, response.stub_offset, response.stub_length, response_signature)
              .ok())
          << "round " << round;
      EXPECT_EQ(response.bytes, plain_response.bytes);
    }
  }
  EXPECT_EQ(pair.client->outgoing_sequence(), static_cast<uint32_t>(kRounds));
  EXPECT_EQ(pair.server->incoming_sequence(), static_cast<uint32_t>(kRounds));
  EXPECT_EQ(pair.client->incoming_sequence(), pair.server->outgoing_sequence());
}

TEST(SessionTest, SignAndSealShareTheKeystream) {
  SessionPair pair = Handshake();
  for (int i = 0; i < 10; ++i) {
    Pdu pdu = MakePdu(32, static_cast<uint8_t>(i));
    if (i % 3 == 0) {
      Signature signature = pair.client->SignMessage(pdu.bytes);
      ASSERT_TRUE(pair.server->VerifyMessage(pdu.bytes, signature).ok()) << i;
    } else {
      Signature signature = pair.client->SealMessage(pdu.bytes, pdu.stub_offset, pdu.stub_length);
      ASSERT_TRUE(pair.server->UnsealMessage(pdu.bytes, pdu.stub_offset, pdu.stub_length, signature).ok()) << i;
    }
  }
}

enum class Tamper { kChecksum, kSequence, kVersion, kSealedStub, kSignedHeader, kSignedTrailer };

class SessionTamperTest : public ::testing::TestWithParam<Tamper> {};

TEST_P(SessionTamperTest, AnyChangeIsRefusedAndTheSessionStaysClosed) {
  SessionPair pair = Handshake();
  // A first message goes through, so the tampering hits a session with state behind it.
  Pdu first = MakePdu(40, 1);
  Signature first_signature = pair.client->SealMessage(first.bytes, first.stub_offset, first.stub_length);
  ASSERT_TRUE(pair.server->UnsealMessage(first.bytes, first.stub_offset, first.stub_length, first_signature).ok());

  Pdu pdu = MakePdu(40, 2);
  Signature signature = pair.client->SealMessage(pdu.bytes, pdu.stub_offset, pdu.stub_length);
  switch (GetParam()) {
    case Tamper::kChecksum:
      signature[6] ^= 0x10;
      break;
    case Tamper::kSequence:
      signature[12] ^= 0x01;
      break;
    case Tamper::kVersion:
      signature[0] = 2;
      break;
    case Tamper::kSealedStub:
      pdu.bytes[pdu.stub_offset + 17] ^= 0x80;
      break;
    case Tamper::kSignedHeader:
      pdu.bytes[3] ^= 0x01;
      break;
    case Tamper::kSignedTrailer:
      pdu.bytes.back() ^= 0x04;
      break;
  }
  absl::Status status = pair.server->UnsealMessage(pdu.bytes, pdu.stub_offset, pdu.stub_length, signature);
  ExpectSignatureRefused(status);
  // Unauthenticated plaintext is not left behind.
  EXPECT_EQ(ToVector(pdu.stub()), Bytes(pdu.stub_length, 0));
  // The incoming keystream is now out of step: the session refuses everything after.
  Pdu next = MakePdu(8, 3);
  Signature next_signature = pair.client->SealMessage(next.bytes, next.stub_offset, next.stub_length);
  EXPECT_EQ(pair.server->UnsealMessage(next.bytes, next.stub_offset, next.stub_length, next_signature).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(pair.server->VerifyMessage(next.bytes, next_signature).code(), absl::StatusCode::kFailedPrecondition);
  // The other direction is unaffected.
  Pdu back = MakePdu(8, 4);
  Signature back_signature = pair.server->SealMessage(back.bytes, back.stub_offset, back.stub_length);
  EXPECT_TRUE(pair.client->UnsealMessage(back.bytes, back.stub_offset, back.stub_length, back_signature).ok());
}

INSTANTIATE_TEST_SUITE_P(AllTampering, SessionTamperTest,
                         ::testing::Values(Tamper::kChecksum, Tamper::kSequence, Tamper::kVersion, Tamper::kSealedStub,
                                           Tamper::kSignedHeader, Tamper::kSignedTrailer));

TEST(SessionTest, ReplayedMessageIsRefused) {
  SessionPair pair = Handshake();
  Pdu pdu = MakePdu(20, 5);
  Signature signature = pair.client->SealMessage(pdu.bytes, pdu.stub_offset, pdu.stub_length);
  Pdu replay = pdu;
  ASSERT_TRUE(pair.server->UnsealMessage(pdu.bytes, pdu.stub_offset, pdu.stub_length, signature).ok());
  absl::Status status = pair.server->UnsealMessage(replay.bytes, replay.stub_offset, replay.stub_length, signature);
  ExpectSignatureRefused(status);
  EXPECT_NE(status.message().find("sequence number 0, expected 1"), absl::string_view::npos) << status;
}

TEST(SessionTest, ReorderedMessagesAreRefused) {
  SessionPair pair = Handshake();
  Pdu first = MakePdu(20, 5);
  Pdu second = MakePdu(20, 6);
  Signature first_signature = pair.client->SealMessage(first.bytes, first.stub_offset, first.stub_length);
  Signature second_signature = pair.client->SealMessage(second.bytes, second.stub_offset, second.stub_length);
  ExpectSignatureRefused(
      pair.server->UnsealMessage(second.bytes, second.stub_offset, second.stub_length, second_signature));
  (void)first_signature;
}

TEST(SessionTest, MessageForTheOtherDirectionIsRefused) {
  // A client's own message reflected back at it must not verify (directional keys).
  SessionPair pair = Handshake();
  Pdu pdu = MakePdu(20, 5);
  Signature signature = pair.client->SealMessage(pdu.bytes, pdu.stub_offset, pdu.stub_length);
  ExpectSignatureRefused(pair.client->UnsealMessage(pdu.bytes, pdu.stub_offset, pdu.stub_length, signature));
}

TEST(SessionTest, BadArgumentsChangeNothing) {
  SessionPair pair = Handshake();
  Pdu pdu = MakePdu(20, 5);
  Signature signature = pair.client->SealMessage(pdu.bytes, pdu.stub_offset, pdu.stub_length);
  EXPECT_EQ(pair.server->UnsealMessage(pdu.bytes, pdu.bytes.size() - 4, 5, signature).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pair.server->UnsealMessage(pdu.bytes, SIZE_MAX, 2, signature).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      pair.server->UnsealMessage(pdu.bytes, pdu.stub_offset, pdu.stub_length, ByteView(signature).first(15)).code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pair.server->VerifyMessage(pdu.bytes, Bytes(17, 0)).code(), absl::StatusCode::kInvalidArgument);
  // The keystream did not move: the real message still opens.
  EXPECT_TRUE(pair.server->UnsealMessage(pdu.bytes, pdu.stub_offset, pdu.stub_length, signature).ok());
}

TEST(SessionTest, VerifyRefusesTamperedSignedMessage) {
  SessionPair pair = Handshake();
  Bytes message = FromHex("0500000310000000");
  Signature signature = pair.client->SignMessage(message);
  message[1] ^= 1;
  ExpectSignatureRefused(pair.server->VerifyMessage(message, signature));
}

TEST(SessionTest, EmptyRegionsWork) {
  SessionPair pair = Handshake();
  Bytes empty;
  Signature signature = pair.client->SealMessage(empty, 0, 0);
  EXPECT_TRUE(pair.server->UnsealMessage(empty, 0, 0, signature).ok());
  Pdu pdu = MakePdu(0, 0);
  signature = pair.client->SealMessage(pdu.bytes, pdu.stub_offset, 0);
  EXPECT_TRUE(pair.server->UnsealMessage(pdu.bytes, pdu.stub_offset, 0, signature).ok());
}

TEST(SessionDeathTest, SealRegionOutsideMessageAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        auto session = Session::Create(Key16{}, Role::kClient).value();
        Bytes message(10, 0);
        session->SealMessage(message, 8, 3);
      },
      "outside a 10-byte message");
}

}  // namespace
}  // namespace adcsc::ntlm
