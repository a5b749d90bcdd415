// Known-answer tests from MS-NLMP 4.2.4 (NTLMv2 authentication), cross-checked with impacket,
// and client <-> server handshake tests through ClientContext / ServerContext.
#include "node/ntlm/ntlm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>

#include "node/ntlm/legacy_crypto.h"
#include "node/ntlm/messages.h"
#include "node/ntlm/session.h"
#include "tests/unit/ntlm/ntlm_test_util.h"

namespace adcsc::ntlm {
namespace {

using testing::FixedClock;
using testing::FromHex;
using testing::KeyFromHex;
using testing::kSpecAuthenticate;
using testing::kSpecChallenge;
using testing::ScriptedRandom;
using testing::ToHex;
using testing::Utf16;

// ----- MS-NLMP 4.2.1 common values and 4.2.4 NTLMv2 results --------------------------------
// Every expected value below is printed in MS-NLMP 4.2.4 (or 4.2.1 / 4.2.4.3 / 4.2.4.4) and was
// recomputed independently with impacket 0.10 (impacket.ntlm) before being written here;
// values the spec does not print (server-to-client keys) come from impacket alone.
constexpr char kSpecNtHash[] = "a4f49c406510bdcab6824ee7c30fd852";                        // 4.2.2.1.2 (NTOWFv1).
constexpr char kSpecNtOwfV2[] = "0c868a403bfd7a93a3001ef22ef02e3f";                       // 4.2.4.1.1.
constexpr char kSpecSessionBaseKey[] = "8de40ccadbc14a82f15cb0ad0de95ca3";                // 4.2.4.1.2.
constexpr char kSpecNtProofStr[] = "68cd0ab851e51c96aabc927bebef6a1c";                    // 4.2.4.2.2.
constexpr char kSpecLmV2Response[] = "86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa";  // 4.2.4.2.1.
constexpr char kSpecEncryptedSessionKey[] = "c5dad2544fc9799094ce1ce90bc9d03e";           // 4.2.4.2.3.
constexpr char kSpecClientSignKey[] = "4788dc861b4782f35d43fd98fe1a2d39";                 // 4.2.4.4.
constexpr char kSpecClientSealKey[] = "59f600973cc4960a25480a7c196e4c58";                 // 4.2.4.4.
constexpr char kServerSignKeyFromImpacket[] = "d04d6f10741041d1d246d64188d7a8ad";
constexpr char kServerSealKeyFromImpacket[] = "9355f3a957c1583d25c4c2f11e40390e";
constexpr char kSpecSealedPlaintext[] = "54e50165bf1936dc996020c1811b0f06fb5f";  // 4.2.4.4.
constexpr char kSpecWrapSignature[] = "010000007fb38ec5c55d497600000000";        // 4.2.4.4.
// impacket: the server sealing the same "Plaintext" as its first message.
constexpr char kServerSealedPlaintextFromImpacket[] = "160871b730ba74e946c453d7465b54278dd0";
constexpr char kServerWrapSignatureFromImpacket[] = "01000000b298b847ce7c580700000000";
// impacket: SIGN() of "Plaintext" on a fresh client session (PKT_INTEGRITY).
constexpr char kClientSignOnlySignatureFromImpacket[] = "0100000074d045342c4f1cd500000000";

// The NTLMv2 "temp" (client blob) of 4.2.4.1.3: time 0, client challenge aa.., the
// server's AV pairs (Domain, Server, EOL) and the trailing four zero bytes.
constexpr char kSpecClientBlob[] =
    "0101000000000000 0000000000000000 aaaaaaaaaaaaaaaa 00000000"
    "02000c0044006f006d00610069006e00 01000c00530065007200760065007200 00000000 00000000";

constexpr uint8_t kSpecClientChallengeByte = 0xaa;
constexpr uint8_t kSpecRandomSessionKeyByte = 0x55;
constexpr uint64_t kSpecTime = 0;

Key16 SpecRandomSessionKey() {
  Key16 key;
  key.fill(kSpecRandomSessionKeyByte);
  return key;
}

Credentials SpecCredentials() {
  Credentials credentials;
  credentials.domain = "Domain";
  credentials.user = "User";
  credentials.nt_hash = NtHash("Password").value();
  credentials.workstation = "COMPUTER";
  return credentials;
}

RandomSource SpecClientRandom() {
  return ScriptedRandom(
      {Bytes(kChallengeBytes, kSpecClientChallengeByte), Bytes(kKeyBytes, kSpecRandomSessionKeyByte)});
}

TEST(KnownAnswerTest, NtHashOfPassword) {
  absl::StatusOr<Key16> hash = NtHash("Password");
  ASSERT_TRUE(hash.ok()) << hash.status();
  EXPECT_EQ(ToHex(*hash), kSpecNtHash);
}

TEST(KnownAnswerTest, NtHashOfNonAsciiPasswordMatchesImpacket) {
  // "Pässwörd€😀": Latin-1, a BMP symbol and a character needing a surrogate pair.
  absl::StatusOr<Key16> hash = NtHash("P\xc3\xa4sswo\xcc\x88rd");  // Decomposed ö: not the same password.
  ASSERT_TRUE(hash.ok());
  absl::StatusOr<Key16> precomposed = NtHash("P\xc3\xa4ssw\xc3\xb6rd\xe2\x82\xac\xf0\x9f\x98\x80");
  ASSERT_TRUE(precomposed.ok());
  EXPECT_EQ(ToHex(*precomposed), "cb8e3352db8e27c08e8260fc36afc39d");  // impacket compute_nthash.
  EXPECT_NE(*hash, *precomposed);
}

TEST(KnownAnswerTest, NtOwfV2) {
  absl::StatusOr<Key16> key = NtOwfV2(KeyFromHex(kSpecNtHash), "User", "Domain");
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(ToHex(*key), kSpecNtOwfV2);
  // Only the user name is upper-cased.
  EXPECT_EQ(ToHex(NtOwfV2(KeyFromHex(kSpecNtHash), "user", "Domain").value()), kSpecNtOwfV2);
  EXPECT_NE(ToHex(NtOwfV2(KeyFromHex(kSpecNtHash), "User", "DOMAIN").value()), kSpecNtOwfV2);
  // impacket NTOWFv2('ümlaut', 'Password', 'Domäne'): Latin-1 letters upper-cased too.
  EXPECT_EQ(ToHex(NtOwfV2(KeyFromHex(kSpecNtHash), "\xc3\xbcmlaut", "Dom\xc3\xa4ne").value()),
            "94cbc9f0af9a19cb218b85ff61820866");
}

TEST(KnownAnswerTest, NtProofStrAndSessionBaseKey) {
  Key16 response_key = KeyFromHex(kSpecNtOwfV2);
  Bytes server_challenge = FromHex("0123456789abcdef");
  absl::StatusOr<Key16> proof =
      NtProofStr(response_key, std::span<const uint8_t, kChallengeBytes>(server_challenge.data(), kChallengeBytes),
                 FromHex(kSpecClientBlob));
  ASSERT_TRUE(proof.ok()) << proof.status();
  EXPECT_EQ(ToHex(*proof), kSpecNtProofStr);
  absl::StatusOr<Key16> session_base_key = SessionBaseKeyV2(response_key, *proof);
  ASSERT_TRUE(session_base_key.ok());
  EXPECT_EQ(ToHex(*session_base_key), kSpecSessionBaseKey);
  // With NTLMv2 the key exchange key is the session base key.
  Key16 random_session_key = SpecRandomSessionKey();
  absl::StatusOr<Bytes> encrypted = Rc4Once(*session_base_key, random_session_key);
  ASSERT_TRUE(encrypted.ok());
  EXPECT_EQ(ToHex(*encrypted), kSpecEncryptedSessionKey);
}

TEST(KnownAnswerTest, SignAndSealKeysBothDirections) {
  Key16 exported = SpecRandomSessionKey();
  EXPECT_EQ(ToHex(DeriveSignKey(exported, Direction::kClientToServer).value()), kSpecClientSignKey);
  EXPECT_EQ(ToHex(DeriveSealKey(exported, Direction::kClientToServer).value()), kSpecClientSealKey);
  EXPECT_EQ(ToHex(DeriveSignKey(exported, Direction::kServerToClient).value()), kServerSignKeyFromImpacket);
  EXPECT_EQ(ToHex(DeriveSealKey(exported, Direction::kServerToClient).value()), kServerSealKeyFromImpacket);
}

TEST(KnownAnswerTest, GssWrapExSealsPlaintext) {
  absl::StatusOr<std::unique_ptr<Session>> client = Session::Create(SpecRandomSessionKey(), Role::kClient);
  ASSERT_TRUE(client.ok()) << client.status();
  Bytes message = Utf16("Plaintext");
  Signature signature = (*client)->SealMessage(message, 0, message.size());
  EXPECT_EQ(ToHex(message), kSpecSealedPlaintext);
  EXPECT_EQ(ToHex(signature), kSpecWrapSignature);
  EXPECT_EQ((*client)->outgoing_sequence(), 1u);

  // The server side of the same session opens it.
  absl::StatusOr<std::unique_ptr<Session>> server = Session::Create(SpecRandomSessionKey(), Role::kServer);
  ASSERT_TRUE(server.ok());
  ASSERT_TRUE((*server)->UnsealMessage(message, 0, message.size(), signature).ok());
  EXPECT_EQ(message, Utf16("Plaintext"));

  // And its answer matches what impacket computes for the server-to-client direction.
  Bytes answer = Utf16("Plaintext");
  Signature answer_signature = (*server)->SealMessage(answer, 0, answer.size());
  EXPECT_EQ(ToHex(answer), kServerSealedPlaintextFromImpacket);
  EXPECT_EQ(ToHex(answer_signature), kServerWrapSignatureFromImpacket);
  ASSERT_TRUE((*client)->UnsealMessage(answer, 0, answer.size(), answer_signature).ok());
  EXPECT_EQ(answer, Utf16("Plaintext"));
}

TEST(KnownAnswerTest, SignOnlyMatchesImpacket) {
  absl::StatusOr<std::unique_ptr<Session>> client = Session::Create(SpecRandomSessionKey(), Role::kClient);
  ASSERT_TRUE(client.ok());
  Bytes message = Utf16("Plaintext");
  EXPECT_EQ(ToHex((*client)->SignMessage(message)), kClientSignOnlySignatureFromImpacket);
  EXPECT_EQ(message, Utf16("Plaintext"));  // Signing leaves the message alone.
}

TEST(KnownAnswerTest, ClientAnswersSpecChallengeLikeTheSpec) {
  ClientContext client(SpecCredentials(), SpecClientRandom(), FixedClock(kSpecTime));
  client.Negotiate();
  absl::StatusOr<Bytes> authenticate = client.Authenticate(FromHex(kSpecChallenge));
  ASSERT_TRUE(authenticate.ok()) << authenticate.status();

  absl::StatusOr<AuthenticateMessage> ours = ParseAuthenticate(*authenticate);
  absl::StatusOr<AuthenticateMessage> spec = ParseAuthenticate(FromHex(kSpecAuthenticate));
  ASSERT_TRUE(ours.ok()) << ours.status();
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(ToHex(ours->lm_response), kSpecLmV2Response);
  EXPECT_EQ(ToHex(ours->nt_response), ToHex(spec->nt_response));
  EXPECT_EQ(ToHex(ByteView(ours->nt_response).first(16)), kSpecNtProofStr);
  EXPECT_EQ(ToHex(ours->encrypted_random_session_key), kSpecEncryptedSessionKey);
  EXPECT_EQ(ours->domain, "Domain");
  EXPECT_EQ(ours->user, "User");
  EXPECT_EQ(ours->workstation, "COMPUTER");
  // No server timestamp in 4.2.4's target info: no MIC, and the flags are ours and the
  // server's in common.
  EXPECT_FALSE(ours->mic.has_value());
  EXPECT_EQ(ours->flags, (kClientNegotiateFlags & 0xe28a8233u) | kNegotiateUnicode | kNegotiateVersion);

  std::unique_ptr<Session> session = client.TakeSession();
  ASSERT_NE(session, nullptr);
  EXPECT_EQ(client.TakeSession(), nullptr);
  Bytes message = Utf16("Plaintext");
  EXPECT_EQ(ToHex(session->SealMessage(message, 0, message.size())), kSpecWrapSignature);
  EXPECT_EQ(ToHex(message), kSpecSealedPlaintext);
}

ServerNames TestServerNames() { return ServerNames{"CORP", "CA01", "corp.example.com", "ca01.corp.example.com"}; }

TEST(KnownAnswerTest, ServerAcceptsSpecAuthenticate) {
  Key16 password_hash = NtHash("Password").value();
  ServerContext server(
      [&](std::string_view domain, std::string_view user) -> std::optional<Key16> {
        if (domain == "Domain" && user == "User") return password_hash;
        return std::nullopt;
      },
      TestServerNames(), ScriptedRandom({FromHex("0123456789abcdef")}), FixedClock(kSpecTime));
  ClientContext client(SpecCredentials(), SpecClientRandom(), FixedClock(kSpecTime));
  ASSERT_TRUE(server.Challenge(client.Negotiate()).ok());
  absl::StatusOr<AuthenticatedUser> user = server.Accept(FromHex(kSpecAuthenticate));
  ASSERT_TRUE(user.ok()) << user.status();
  EXPECT_EQ(user->domain, "Domain");
  EXPECT_EQ(user->user, "User");
  EXPECT_EQ(user->workstation, "COMPUTER");
  // The exported session key it derived is the spec's 55..55: it opens 4.2.4.4's message.
  std::unique_ptr<Session> session = server.TakeSession();
  ASSERT_NE(session, nullptr);
  Bytes sealed = FromHex(kSpecSealedPlaintext);
  ASSERT_TRUE(session->UnsealMessage(sealed, 0, sealed.size(), FromHex(kSpecWrapSignature)).ok());
  EXPECT_EQ(sealed, Utf16("Plaintext"));
}

TEST(NtHashHexTest, ParsesAndRejectsWithoutEchoingTheSecret) {
  absl::StatusOr<Key16> hash = ParseNtHashHex("  A4F49C406510BDCAB6824EE7C30FD852\n");
  ASSERT_TRUE(hash.ok()) << hash.status();
  EXPECT_EQ(ToHex(*hash), kSpecNtHash);
  absl::StatusOr<Key16> short_hash = ParseNtHashHex("a4f49c406510bdcab6824ee7c30fd8");
  EXPECT_EQ(short_hash.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(short_hash.status().message()).find("a4f4"), std::string::npos);
  absl::StatusOr<Key16> not_hex = ParseNtHashHex("a4f49c406510bdcab6824ee7c30fd85g");
  EXPECT_EQ(not_hex.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(not_hex.status().message()).find("a4f4"), std::string::npos);
}

TEST(NtHashTest, RejectsInvalidUtf8) { EXPECT_EQ(NtHash("\xff").status().code(), absl::StatusCode::kInvalidArgument); }

TEST(FileTimeTest, NowIsAfter2020) {
  constexpr uint64_t kFileTime2020 = 132'223'104'000'000'000;  // 2020-01-01T00:00:00Z.
  EXPECT_GT(FileTimeNow(), kFileTime2020);
}

// ----- Handshake through ClientContext and ServerContext ---------------------------------------

constexpr uint64_t kTestTime = 133'500'000'000'000'000;  // A FILETIME in 2024.
constexpr char kAlicePassword[] = "S3cret!pw";

class HandshakeTest : public ::testing::Test {
 protected:
  HandshakeTest() : alice_hash_(NtHash(kAlicePassword).value()) {}

  std::unique_ptr<ServerContext> MakeServer(uint8_t seed = 1) {
    return std::make_unique<ServerContext>(
        [this](std::string_view domain, std::string_view user) -> std::optional<Key16> {
          ++lookups_;
          if (domain == "CORP" && user == "alice") return alice_hash_;
          return std::nullopt;
        },
        TestServerNames(), testing::CountingRandom(seed), FixedClock(kTestTime));
  }

  std::unique_ptr<ClientContext> MakeClient(std::string_view password = kAlicePassword, std::string user = "alice",
                                            uint8_t seed = 2) {
    Credentials credentials{"CORP", std::move(user), NtHash(password).value(), "LINUX01"};
    return std::make_unique<ClientContext>(std::move(credentials), testing::CountingRandom(seed),
                                           FixedClock(kTestTime + 1));
  }

  Key16 alice_hash_;
  int lookups_ = 0;
};

TEST_F(HandshakeTest, RoundTripAuthenticatesAndDerivesMatchingSessions) {
  auto server = MakeServer();
  auto client = MakeClient();
  absl::StatusOr<Bytes> challenge = server->Challenge(client->Negotiate());
  ASSERT_TRUE(challenge.ok()) << challenge.status();
  absl::StatusOr<Bytes> authenticate = client->Authenticate(*challenge);
  ASSERT_TRUE(authenticate.ok()) << authenticate.status();

  // The server sent a timestamp, so the client used it, zeroed the LM response and sent a MIC.
  absl::StatusOr<AuthenticateMessage> parsed = ParseAuthenticate(*authenticate);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->lm_response, Bytes(24, 0));
  ASSERT_TRUE(parsed->mic.has_value());
  EXPECT_NE(*parsed->mic, (std::array<uint8_t, kMicBytes>{}));
  EXPECT_EQ(LoadLe64(parsed->nt_response, 16 + 8), kTestTime);
  absl::StatusOr<std::vector<AvPair>> blob_pairs = ParseAvPairs(ByteView(parsed->nt_response).subspan(16 + 28));
  ASSERT_TRUE(blob_pairs.ok());
  EXPECT_EQ(FindAvFlags(*blob_pairs), kAvFlagMicPresent);

  absl::StatusOr<AuthenticatedUser> user = server->Accept(*authenticate);
  ASSERT_TRUE(user.ok()) << user.status();
  EXPECT_EQ(user->domain, "CORP");
  EXPECT_EQ(user->user, "alice");
  EXPECT_EQ(user->workstation, "LINUX01");
  EXPECT_EQ(client->negotiated_flags() & kRequiredSessionFlags, kRequiredSessionFlags);

  std::unique_ptr<Session> client_session = client->TakeSession();
  std::unique_ptr<Session> server_session = server->TakeSession();
  ASSERT_NE(client_session, nullptr);
  ASSERT_NE(server_session, nullptr);
  EXPECT_EQ(server->TakeSession(), nullptr);

  Bytes request = {'p', 'i', 'n', 'g'};
  Signature request_signature = client_session->SealMessage(request, 0, request.size());
  ASSERT_TRUE(server_session->UnsealMessage(request, 0, request.size(), request_signature).ok());
  EXPECT_EQ(request, (Bytes{'p', 'i', 'n', 'g'}));
  Bytes response = {'p', 'o', 'n', 'g'};
  Signature response_signature = server_session->SealMessage(response, 0, response.size());
  ASSERT_TRUE(client_session->UnsealMessage(response, 0, response.size(), response_signature).ok());
  EXPECT_EQ(response, (Bytes{'p', 'o', 'n', 'g'}));
}

TEST_F(HandshakeTest, TheTargetSpnTravelsInTheProofCoveredTargetInfo) {
  auto server = MakeServer();
  auto client = MakeClient();
  client->set_target_name("host/ca01.corp.example.com");
  absl::StatusOr<Bytes> authenticate = client->Authenticate(server->Challenge(client->Negotiate()).value());
  ASSERT_TRUE(authenticate.ok()) << authenticate.status();
  absl::StatusOr<AuthenticateMessage> parsed = ParseAuthenticate(*authenticate);
  ASSERT_TRUE(parsed.ok());
  absl::StatusOr<std::vector<AvPair>> blob_pairs = ParseAvPairs(ByteView(parsed->nt_response).subspan(16 + 28));
  ASSERT_TRUE(blob_pairs.ok());
  const AvPair* spn = FindAvPair(*blob_pairs, AvId::kTargetName);
  ASSERT_NE(spn, nullptr) << "MsvAvTargetName in the NTLMv2 response's target info";
  EXPECT_EQ(Utf16LeToUtf8(spn->value).value(), "host/ca01.corp.example.com");
  absl::StatusOr<AuthenticatedUser> user = server->Accept(*authenticate);
  ASSERT_TRUE(user.ok()) << user.status();
  EXPECT_EQ(user->target_name, "host/ca01.corp.example.com");

  // The proof covers it: a relay that rewrites the SPN breaks the NTProofStr.
  auto server2 = MakeServer();
  auto client2 = MakeClient();
  client2->set_target_name("host/ca01.corp.example.com");
  Bytes auth2 = client2->Authenticate(server2->Challenge(client2->Negotiate()).value()).value();
  const std::string from = "ca01", to = "ca02";
  Bytes needle = Utf8ToUtf16Le(from).value(), replacement = Utf8ToUtf16Le(to).value();
  auto at = std::search(auth2.begin(), auth2.end(), needle.begin(), needle.end());
  ASSERT_NE(at, auth2.end());
  std::copy(replacement.begin(), replacement.end(), at);
  EXPECT_EQ(server2->Accept(auth2).status().code(), absl::StatusCode::kPermissionDenied);

  // Without a target name set, none is sent (as before).
  auto server3 = MakeServer();
  auto client3 = MakeClient();
  ASSERT_TRUE(server3->Accept(client3->Authenticate(server3->Challenge(client3->Negotiate()).value()).value()).ok());
}

TEST_F(HandshakeTest, WrongPasswordIsPermissionDenied) {
  auto server = MakeServer();
  auto client = MakeClient("not-the-password");
  absl::StatusOr<Bytes> authenticate = client->Authenticate(server->Challenge(client->Negotiate()).value());
  ASSERT_TRUE(authenticate.ok());
  absl::StatusOr<AuthenticatedUser> user = server->Accept(*authenticate);
  EXPECT_EQ(user.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(user.status().message().find("wrong password"), absl::string_view::npos) << user.status();
  EXPECT_EQ(server->TakeSession(), nullptr);
  // A failed handshake is over.
  EXPECT_EQ(server->Accept(*authenticate).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(HandshakeTest, UnknownUserIsPermissionDenied) {
  auto server = MakeServer();
  auto client = MakeClient(kAlicePassword, "mallory");
  absl::StatusOr<Bytes> authenticate = client->Authenticate(server->Challenge(client->Negotiate()).value());
  ASSERT_TRUE(authenticate.ok());
  absl::StatusOr<AuthenticatedUser> user = server->Accept(*authenticate);
  EXPECT_EQ(user.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(user.status().message().find("unknown user"), absl::string_view::npos) << user.status();
}

// A valid AUTHENTICATE from a real handshake, re-encoded after `edit`.
class EditedAuthenticateTest : public HandshakeTest {
 protected:
  absl::StatusOr<AuthenticatedUser> AcceptEdited(const std::function<void(AuthenticateMessage&)>& edit) {
    auto server = MakeServer();
    auto client = MakeClient();
    Bytes authenticate = client->Authenticate(server->Challenge(client->Negotiate()).value()).value();
    AuthenticateMessage message = ParseAuthenticate(authenticate).value();
    edit(message);
    return server->Accept(EncodeAuthenticate(message).value());
  }
};

TEST_F(EditedAuthenticateTest, AnonymousIsPermissionDenied) {
  absl::StatusOr<AuthenticatedUser> user = AcceptEdited([](AuthenticateMessage& m) {
    m.user.clear();
    m.nt_response.clear();
    m.lm_response.assign(1, 0);
  });
  EXPECT_EQ(user.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(user.status().message().find("anonymous"), absl::string_view::npos) << user.status();
  EXPECT_EQ(lookups_, 0);
}

TEST_F(EditedAuthenticateTest, NtlmV1ResponseIsPermissionDenied) {
  absl::StatusOr<AuthenticatedUser> user = AcceptEdited([](AuthenticateMessage& m) { m.nt_response.resize(24); });
  EXPECT_EQ(user.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(user.status().message().find("NTLMv1"), absl::string_view::npos) << user.status();
}

TEST_F(EditedAuthenticateTest, MissingNtResponseIsPermissionDenied) {
  absl::StatusOr<AuthenticatedUser> user = AcceptEdited([](AuthenticateMessage& m) { m.nt_response.clear(); });
  EXPECT_EQ(user.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(user.status().message().find("no NTLMv2 response"), absl::string_view::npos) << user.status();
}

TEST_F(EditedAuthenticateTest, MissingKeyExchangeIsPermissionDenied) {
  absl::StatusOr<AuthenticatedUser> user = AcceptEdited([](AuthenticateMessage& m) { m.flags &= ~kNegotiateKeyExch; });
  EXPECT_EQ(user.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(user.status().message().find("KEY_EXCH"), absl::string_view::npos) << user.status();
}

TEST_F(EditedAuthenticateTest, TamperedMicIsPermissionDenied) {
  absl::StatusOr<AuthenticatedUser> user = AcceptEdited([](AuthenticateMessage& m) { (*m.mic)[5] ^= 0x01; });
  EXPECT_EQ(user.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(user.status().message().find("MIC did not verify"), absl::string_view::npos) << user.status();
}

TEST_F(EditedAuthenticateTest, AlteredSignedFieldIsCaughtByTheMic) {
  // The workstation is not covered by the NTLMv2 proof, only by the MIC.
  absl::StatusOr<AuthenticatedUser> user = AcceptEdited([](AuthenticateMessage& m) { m.workstation = "EVIL"; });
  EXPECT_EQ(user.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(user.status().message().find("MIC"), absl::string_view::npos) << user.status();
}

TEST_F(EditedAuthenticateTest, DroppedMicIsCaught) {
  absl::StatusOr<AuthenticatedUser> user = AcceptEdited([](AuthenticateMessage& m) { m.mic.reset(); });
  EXPECT_EQ(user.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(user.status().message().find("has none"), absl::string_view::npos) << user.status();
}

TEST_F(EditedAuthenticateTest, ClearedMicPresentBitBreaksTheProof) {
  // Hiding the MIC means editing MsvAvFlags inside the blob, which the NTProofStr covers.
  absl::StatusOr<AuthenticatedUser> user = AcceptEdited([](AuthenticateMessage& m) {
    const Bytes flags_pair = {0x06, 0x00, 0x04, 0x00, 0x02, 0x00, 0x00, 0x00};
    auto at = std::search(m.nt_response.begin(), m.nt_response.end(), flags_pair.begin(), flags_pair.end());
    ASSERT_NE(at, m.nt_response.end());
    at[4] = 0;
    m.mic.reset();
  });
  EXPECT_EQ(user.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(user.status().message().find("did not verify"), absl::string_view::npos) << user.status();
}

TEST_F(EditedAuthenticateTest, WrongSizeEncryptedKeyIsInvalid) {
  absl::StatusOr<AuthenticatedUser> user =
      AcceptEdited([](AuthenticateMessage& m) { m.encrypted_random_session_key.resize(15); });
  EXPECT_EQ(user.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(HandshakeTest, NegotiateAlteredInTransitIsCaughtByTheMic) {
  auto server = MakeServer();
  auto client = MakeClient();
  Bytes negotiate = client->Negotiate();
  // An attacker strips NTLMSSP_NEGOTIATE_56 (a harmless-looking downgrade).
  StoreLe32(negotiate, 12, LoadLe32(negotiate, 12) & ~kNegotiate56);
  absl::StatusOr<Bytes> authenticate = client->Authenticate(server->Challenge(negotiate).value());
  ASSERT_TRUE(authenticate.ok());
  absl::StatusOr<AuthenticatedUser> user = server->Accept(*authenticate);
  EXPECT_EQ(user.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(user.status().message().find("MIC did not verify"), absl::string_view::npos) << user.status();
}

TEST_F(HandshakeTest, ClientRefusesChallengeWithoutSessionSecurity) {
  for (uint32_t flag : {kNegotiateKeyExch, kNegotiate128, kNegotiateExtendedSessionSecurity, kNegotiateSeal,
                        kNegotiateSign, kNegotiateUnicode}) {
    auto server = MakeServer();
    auto client = MakeClient();
    ChallengeMessage challenge = ParseChallenge(server->Challenge(client->Negotiate()).value()).value();
    challenge.flags &= ~flag;
    absl::StatusOr<Bytes> authenticate = client->Authenticate(EncodeChallenge(challenge).value());
    EXPECT_EQ(authenticate.status().code(), absl::StatusCode::kFailedPrecondition) << flag;
    EXPECT_NE(authenticate.status().message().find("does not offer"), absl::string_view::npos);
    EXPECT_EQ(client->TakeSession(), nullptr);
  }
}

TEST_F(HandshakeTest, ServerRefusesNegotiateWithoutSessionSecurity) {
  NegotiateMessage negotiate;
  negotiate.flags = kClientNegotiateFlags & ~kNegotiateExtendedSessionSecurity;
  auto server = MakeServer();
  absl::StatusOr<Bytes> challenge = server->Challenge(EncodeNegotiate(negotiate).value());
  EXPECT_EQ(challenge.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(challenge.status().message().find("EXTENDED_SESSIONSECURITY"), absl::string_view::npos);
}

TEST_F(HandshakeTest, ServerChallengeCarriesNamesAndTime) {
  auto server = MakeServer();
  auto client = MakeClient();
  ChallengeMessage challenge = ParseChallenge(server->Challenge(client->Negotiate()).value()).value();
  EXPECT_EQ(challenge.target_name, "CORP");
  EXPECT_EQ(challenge.flags & kRequiredSessionFlags, kRequiredSessionFlags);
  EXPECT_EQ(FindAvTimestamp(challenge.target_info), kTestTime);
  auto name = [&](AvId id) { return Utf16LeToUtf8(FindAvPair(challenge.target_info, id)->value).value(); };
  EXPECT_EQ(name(AvId::kNbDomainName), "CORP");
  EXPECT_EQ(name(AvId::kNbComputerName), "CA01");
  EXPECT_EQ(name(AvId::kDnsDomainName), "corp.example.com");
  EXPECT_EQ(name(AvId::kDnsComputerName), "ca01.corp.example.com");
}

TEST_F(HandshakeTest, ClientKeepsServerAvFlagsAndAddsMicBit) {
  ChallengeMessage challenge;
  challenge.flags = kClientNegotiateFlags;
  challenge.server_challenge = {1, 2, 3, 4, 5, 6, 7, 8};
  challenge.target_info = {MakeStringAvPair(AvId::kNbComputerName, "CA01").value(), MakeFlagsAvPair(0x1),
                           MakeTimestampAvPair(kTestTime)};
  auto client = MakeClient();
  client->Negotiate();
  AuthenticateMessage message =
      ParseAuthenticate(client->Authenticate(EncodeChallenge(challenge).value()).value()).value();
  std::vector<AvPair> pairs = ParseAvPairs(ByteView(message.nt_response).subspan(16 + 28)).value();
  EXPECT_EQ(FindAvFlags(pairs), 0x1u | kAvFlagMicPresent);
  EXPECT_EQ(pairs.size(), 3u);
}

TEST_F(HandshakeTest, CallsOutOfOrderAreRefused) {
  auto client = MakeClient();
  EXPECT_EQ(client->Authenticate(Bytes{}).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(client->TakeSession(), nullptr);
  auto server = MakeServer();
  EXPECT_EQ(server->Accept(Bytes{}).status().code(), absl::StatusCode::kFailedPrecondition);
  Bytes negotiate = client->Negotiate();
  ASSERT_TRUE(server->Challenge(negotiate).ok());
  EXPECT_EQ(server->Challenge(negotiate).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(HandshakeTest, RepeatedNegotiateDoesNotRestartTheHandshake) {
  auto server = MakeServer();
  auto client = MakeClient();
  Bytes negotiate = client->Negotiate();
  EXPECT_EQ(client->Negotiate(), negotiate);
  Bytes challenge = server->Challenge(negotiate).value();
  ASSERT_TRUE(client->Authenticate(challenge).ok());
  EXPECT_EQ(client->Negotiate(), negotiate);
  EXPECT_EQ(client->Authenticate(challenge).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(HandshakeTest, MalformedMessagesAreInvalidArgument) {
  auto client = MakeClient();
  client->Negotiate();
  EXPECT_EQ(client->Authenticate(Bytes{'N', 'T', 'L', 'M'}).status().code(), absl::StatusCode::kInvalidArgument);
  auto server = MakeServer();
  EXPECT_EQ(server->Challenge(Bytes(40, 0)).status().code(), absl::StatusCode::kInvalidArgument);
  auto server2 = MakeServer();
  auto client2 = MakeClient();
  ASSERT_TRUE(server2->Challenge(client2->Negotiate()).ok());
  EXPECT_EQ(server2->Accept(Bytes(100, 0)).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(HandshakeTest, ClientWithoutUserNameIsRefused) {
  auto server = MakeServer();
  auto client = MakeClient(kAlicePassword, "");
  absl::StatusOr<Bytes> authenticate = client->Authenticate(server->Challenge(client->Negotiate()).value());
  EXPECT_EQ(authenticate.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace adcsc::ntlm
