// Interop with impacket: impacket as the client against our ServerContext, and our
// ClientContext against values impacket's primitives compute. The vectors come from
// generate_impacket_vectors.py (run by hand; see impacket_vectors.h).
#include <gtest/gtest.h>

#include <algorithm>

#include "node/ntlm/messages.h"
#include "node/ntlm/ntlm.h"
#include "node/ntlm/session.h"
#include "tests/unit/ntlm/impacket_vectors.h"
#include "tests/unit/ntlm/ntlm_test_util.h"

namespace adcsc::ntlm {
namespace {

using testing::FixedClock;
using testing::FromHex;
using testing::ScriptedRandom;
using testing::ToHex;

// Inputs the generator script used (see its header).
constexpr char kServerChallenge[] = "3f8a0c6b92d1e457";
constexpr uint64_t kServerFileTime = 0x01da5b2f8c3e1200;
constexpr char kClientChallenge[] = "0102030405060708";
constexpr char kRandomSessionKey[] = "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf";
constexpr char kPassword[] = "S3cret!pw";
constexpr size_t kPduHeaderBytes = 24;
constexpr size_t kSecTrailerBytes = 8;

// The stub (plus its padding) sits between the 24-byte header and the 8-byte sec_trailer.
size_t StubLength(const Bytes& pdu) { return pdu.size() - kPduHeaderBytes - kSecTrailerBytes; }

ServerNames ScriptServerNames() { return ServerNames{"CORP", "CA01", "corp.example.com", "ca01.corp.example.com"}; }

std::unique_ptr<ServerContext> ScriptServer(std::string_view password) {
  Key16 hash = NtHash(password).value();
  return std::make_unique<ServerContext>(
      [hash](std::string_view domain, std::string_view user) -> std::optional<Key16> {
        if (domain == "CORP" && user == "alice") return hash;
        return std::nullopt;
      },
      ScriptServerNames(), ScriptedRandom({FromHex(kServerChallenge)}), FixedClock(kServerFileTime));
}

TEST(ImpacketInteropTest, OurServerStillAnswersWithTheRecordedChallenge) {
  auto server = ScriptServer(kPassword);
  absl::StatusOr<Bytes> challenge = server->Challenge(FromHex(impacket::kImpacketNegotiate));
  ASSERT_TRUE(challenge.ok()) << challenge.status();
  // If this fails the CHALLENGE encoding changed: rerun generate_impacket_vectors.py with the
  // new bytes as OUR_CHALLENGE.
  EXPECT_EQ(ToHex(*challenge), ToHex(FromHex(impacket::kOurChallengeToImpacket)));
}

TEST(ImpacketInteropTest, ServerAcceptsImpacketClientAndTheSessionsInteroperate) {
  auto server = ScriptServer(kPassword);
  ASSERT_TRUE(server->Challenge(FromHex(impacket::kImpacketNegotiate)).ok());
  absl::StatusOr<AuthenticatedUser> user = server->Accept(FromHex(impacket::kImpacketAuthenticate));
  ASSERT_TRUE(user.ok()) << user.status();
  EXPECT_EQ(user->domain, "CORP");
  EXPECT_EQ(user->user, "alice");
  EXPECT_EQ(user->workstation, "WKSTN01");
  std::unique_ptr<Session> session = server->TakeSession();
  ASSERT_NE(session, nullptr);

  // impacket's sealed requests open with our server session, in order.
  const struct {
    const char* plain;
    const char* sealed;
    const char* signature;
  } requests[] = {
      {impacket::kImpacketRequest0Plain, impacket::kImpacketRequest0Sealed, impacket::kImpacketRequest0Signature},
      {impacket::kImpacketRequest1Plain, impacket::kImpacketRequest1Sealed, impacket::kImpacketRequest1Signature},
  };
  for (const auto& request : requests) {
    Bytes pdu = FromHex(request.sealed);
    absl::Status status = session->UnsealMessage(pdu, kPduHeaderBytes, StubLength(pdu), FromHex(request.signature));
    ASSERT_TRUE(status.ok()) << status;
    EXPECT_EQ(ToHex(pdu), ToHex(FromHex(request.plain)));
  }

  // Our server's sealed responses are byte for byte what impacket computes.
  const struct {
    const char* plain;
    const char* sealed;
    const char* signature;
  } responses[] = {
      {impacket::kServerResponse0Plain, impacket::kServerResponse0Sealed, impacket::kServerResponse0Signature},
      {impacket::kServerResponse1Plain, impacket::kServerResponse1Sealed, impacket::kServerResponse1Signature},
  };
  for (const auto& response : responses) {
    Bytes pdu = FromHex(response.plain);
    Signature signature = session->SealMessage(pdu, kPduHeaderBytes, StubLength(pdu));
    EXPECT_EQ(ToHex(pdu), ToHex(FromHex(response.sealed)));
    EXPECT_EQ(ToHex(signature), ToHex(FromHex(response.signature)));
  }
}

TEST(ImpacketInteropTest, ServerRefusesImpacketClientWithOtherPassword) {
  auto server = ScriptServer("a different password");
  ASSERT_TRUE(server->Challenge(FromHex(impacket::kImpacketNegotiate)).ok());
  absl::StatusOr<AuthenticatedUser> user = server->Accept(FromHex(impacket::kImpacketAuthenticate));
  EXPECT_EQ(user.status().code(), absl::StatusCode::kPermissionDenied) << user.status();
}

TEST(ImpacketInteropTest, OurClientComputesWhatImpacketComputes) {
  Credentials credentials{"CORP", "alice", NtHash(kPassword).value(), "LINUX01"};
  ClientContext client(std::move(credentials), ScriptedRandom({FromHex(kClientChallenge), FromHex(kRandomSessionKey)}),
                       FixedClock(0));  // The server's timestamp must win over the clock.
  client.Negotiate();
  absl::StatusOr<Bytes> authenticate = client.Authenticate(FromHex(impacket::kOurChallengeToImpacket));
  ASSERT_TRUE(authenticate.ok()) << authenticate.status();
  AuthenticateMessage message = ParseAuthenticate(*authenticate).value();
  EXPECT_EQ(ToHex(message.nt_response), ToHex(FromHex(impacket::kOurClientNtResponse)));
  EXPECT_EQ(ToHex(message.encrypted_random_session_key), ToHex(FromHex(impacket::kOurClientEncryptedSessionKey)));
  EXPECT_EQ(message.lm_response, Bytes(24, 0));
  // The MIC over the three messages is the one impacket's hmac_md5 computes.
  ASSERT_TRUE(message.mic.has_value());
  EXPECT_EQ(ToHex(*message.mic), ToHex(FromHex(impacket::kOurClientMic)));
  Bytes zeroed = *authenticate;
  std::fill_n(zeroed.begin() + kAuthenticateMicOffset, kMicBytes, 0);
  EXPECT_EQ(ToHex(zeroed), ToHex(FromHex(impacket::kOurClientAuthenticateMicZeroed)));

  std::unique_ptr<Session> session = client.TakeSession();
  ASSERT_NE(session, nullptr);
  Bytes pdu = FromHex(impacket::kOurClientRequestPlain);
  Signature signature = session->SealMessage(pdu, kPduHeaderBytes, StubLength(pdu));
  EXPECT_EQ(ToHex(pdu), ToHex(FromHex(impacket::kOurClientRequestSealed)));
  EXPECT_EQ(ToHex(signature), ToHex(FromHex(impacket::kOurClientRequestSignature)));
}

}  // namespace
}  // namespace adcsc::ntlm
