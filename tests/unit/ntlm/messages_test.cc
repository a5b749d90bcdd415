// NTLMSSP message encoding and parsing: round trips, the spec's messages, and untrusted input
// (truncation, fields pointing outside the buffer, huge lengths, wrong signature or type,
// malformed AV pairs and strings) which must give errors and never read out of bounds.
#include "node/ntlm/messages.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <random>

#include "node/ntlm/legacy_crypto.h"
#include "node/ntlm/ntlm.h"
#include "tests/unit/ntlm/ntlm_test_util.h"

namespace adcsc::ntlm {
namespace {

using testing::CountingRandom;
using testing::FixedClock;
using testing::FromHex;
using testing::kSpecChallenge;
using testing::ToHex;

void ExpectInvalid(const absl::Status& status, std::string_view mentions) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(std::string(status.message()).find(std::string(mentions)), std::string::npos)
      << "error \"" << status.message() << "\" does not mention \"" << mentions << "\"";
}

// One message of each type from a real handshake (the AUTHENTICATE carries a MIC).
struct Handshake {
  Bytes negotiate;
  Bytes challenge;
  Bytes authenticate;
};

Handshake RealHandshake() {
  Key16 hash = NtHash("pw").value();
  ServerContext server([&](std::string_view, std::string_view) -> std::optional<Key16> { return hash; },
                       ServerNames{"CORP", "CA01", "corp.example.com", "ca01.corp.example.com"}, CountingRandom(3),
                       FixedClock(133'000'000'000'000'000));
  ClientContext client(Credentials{"CORP", "alice", hash, "LINUX01"}, CountingRandom(4), FixedClock(5));
  Handshake h;
  h.negotiate = client.Negotiate();
  h.challenge = server.Challenge(h.negotiate).value();
  h.authenticate = client.Authenticate(h.challenge).value();
  EXPECT_TRUE(server.Accept(h.authenticate).ok());
  return h;
}

TEST(MessagesTest, SpecChallengeParses) {
  absl::StatusOr<ChallengeMessage> challenge = ParseChallenge(FromHex(kSpecChallenge));
  ASSERT_TRUE(challenge.ok()) << challenge.status();
  EXPECT_EQ(challenge->flags, 0xe28a8233u);
  EXPECT_EQ(challenge->target_name, "Server");
  EXPECT_EQ(ToHex(challenge->server_challenge), "0123456789abcdef");
  ASSERT_TRUE(challenge->version.has_value());
  EXPECT_EQ(*challenge->version, (Version{6, 0, 6000, 15}));
  ASSERT_EQ(challenge->target_info.size(), 2u);
  EXPECT_EQ(challenge->target_info[0].id, static_cast<uint16_t>(AvId::kNbDomainName));
  EXPECT_EQ(Utf16LeToUtf8(challenge->target_info[0].value).value(), "Domain");
  EXPECT_EQ(Utf16LeToUtf8(FindAvPair(challenge->target_info, AvId::kNbComputerName)->value).value(), "Server");
  EXPECT_FALSE(FindAvTimestamp(challenge->target_info).has_value());
  // Written back it is the same message.
  EXPECT_EQ(ToHex(EncodeChallenge(*challenge).value()), ToHex(FromHex(kSpecChallenge)));
}

TEST(MessagesTest, NegotiateRoundTrip) {
  NegotiateMessage message;
  message.flags = kNegotiateUnicode | kNegotiateNtlm;
  message.domain = "CORP";
  message.workstation = "WS01";
  message.version = Version{10, 0, 19041, 15};
  Bytes encoded = EncodeNegotiate(message).value();
  absl::StatusOr<NegotiateMessage> parsed = ParseNegotiate(encoded);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->flags,
            message.flags | kNegotiateVersion | kNegotiateOemDomainSupplied | kNegotiateOemWorkstationSupplied);
  EXPECT_EQ(parsed->domain, "CORP");
  EXPECT_EQ(parsed->workstation, "WS01");
  EXPECT_EQ(parsed->version, message.version);
  // OEM strings are ASCII only when encoding.
  message.domain = "D\xc3\xb6m";
  EXPECT_EQ(EncodeNegotiate(message).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MessagesTest, AuthenticateRoundTripWithAndWithoutMic) {
  AuthenticateMessage message;
  message.flags = kNegotiateUnicode;
  message.lm_response = Bytes(24, 0x11);
  message.nt_response = Bytes(60, 0x22);
  message.domain = "D\xc3\xb6main";  // Non-ASCII survives the UTF-16 round trip.
  message.user = "u\xf0\x9f\x98\x80";
  message.workstation = "WS";
  message.encrypted_random_session_key = Bytes(16, 0x33);
  message.mic = std::array<uint8_t, kMicBytes>{1, 2, 3};
  Bytes encoded = EncodeAuthenticate(message).value();
  EXPECT_EQ(encoded[kAuthenticateMicOffset], 1);
  absl::StatusOr<AuthenticateMessage> parsed = ParseAuthenticate(encoded);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->lm_response, message.lm_response);
  EXPECT_EQ(parsed->nt_response, message.nt_response);
  EXPECT_EQ(parsed->domain, message.domain);
  EXPECT_EQ(parsed->user, message.user);
  EXPECT_EQ(parsed->workstation, message.workstation);
  EXPECT_EQ(parsed->encrypted_random_session_key, message.encrypted_random_session_key);
  EXPECT_EQ(parsed->mic, message.mic);

  message.mic.reset();
  message.version.reset();
  parsed = ParseAuthenticate(EncodeAuthenticate(message).value());
  ASSERT_TRUE(parsed.ok());
  EXPECT_FALSE(parsed->mic.has_value());  // Payload starts at 64: no room for a MIC.
  EXPECT_FALSE(parsed->version.has_value());
}

TEST(MessagesTest, FieldLongerThan16BitsCannotBeEncoded) {
  AuthenticateMessage message;
  message.nt_response = Bytes(70000, 0);
  ExpectInvalid(EncodeAuthenticate(message).status(), "NT response");
}

TEST(MessagesTest, WrongSignatureIsRefused) {
  Handshake h = RealHandshake();
  for (Bytes* message : {&h.negotiate, &h.challenge, &h.authenticate}) {
    (*message)[3] = 'X';
  }
  ExpectInvalid(ParseNegotiate(h.negotiate).status(), "signature");
  ExpectInvalid(ParseChallenge(h.challenge).status(), "signature");
  ExpectInvalid(ParseAuthenticate(h.authenticate).status(), "signature");
}

TEST(MessagesTest, WrongMessageTypeIsRefused) {
  Handshake h = RealHandshake();
  ExpectInvalid(ParseChallenge(h.negotiate).status(), "expected an NTLMSSP CHALLENGE message (type 2), got type 1");
  ExpectInvalid(ParseAuthenticate(h.challenge).status(), "got type 2");
  ExpectInvalid(ParseNegotiate(h.authenticate).status(), "got type 3");
  Bytes unknown = h.negotiate;
  unknown[8] = 7;
  ExpectInvalid(PeekMessageType(unknown).status(), "unknown NTLMSSP message type 7");
  ExpectInvalid(ParseNegotiate(unknown).status(), "type 7");
}

TEST(MessagesTest, EveryTruncationIsHandled) {
  Handshake h = RealHandshake();
  const struct {
    const Bytes* message;
    std::function<absl::Status(ByteView)> parse;
  } cases[] = {
      {&h.negotiate, [](ByteView b) { return ParseNegotiate(b).status(); }},
      {&h.challenge, [](ByteView b) { return ParseChallenge(b).status(); }},
      {&h.authenticate, [](ByteView b) { return ParseAuthenticate(b).status(); }},
  };
  for (const auto& c : cases) {
    ASSERT_TRUE(c.parse(*c.message).ok());
    for (size_t length = 0; length < c.message->size(); ++length) {
      // A copy of exactly `length` bytes, so ASan catches any read past it.
      std::unique_ptr<uint8_t[]> prefix(new uint8_t[length == 0 ? 1 : length]);
      std::copy_n(c.message->begin(), length, prefix.get());
      absl::Status status = c.parse(ByteView(prefix.get(), length));
      // The NEGOTIATE has no payload; cut inside its VERSION it is still acceptable.
      if (c.message == &h.negotiate && length >= 32) continue;
      EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << "length " << length;
    }
  }
}

TEST(MessagesTest, FieldsPointingOutsideTheBufferAreRefused) {
  Handshake h = RealHandshake();
  // CHALLENGE target info: offset past the end, then a huge length, then into the header.
  Bytes challenge = h.challenge;
  StoreLe32(challenge, 44, 0xfffffff0u);
  ExpectInvalid(ParseChallenge(challenge).status(), "CHALLENGE target info field (offset 4294967280");
  challenge = h.challenge;
  challenge[40] = 0xff;
  challenge[41] = 0xff;
  ExpectInvalid(ParseChallenge(challenge).status(), "extends past the end");
  challenge = h.challenge;
  StoreLe32(challenge, 44, 8);
  ExpectInvalid(ParseChallenge(challenge).status(), "points into the 48-byte fixed header");

  // AUTHENTICATE: each field in turn.
  const struct {
    size_t descriptor_at;
    const char* name;
  } fields[] = {{12, "LM response"}, {20, "NT response"}, {28, "domain"},
                {36, "user"},        {44, "workstation"}, {52, "session key"}};
  for (const auto& field : fields) {
    Bytes authenticate = h.authenticate;
    StoreLe32(authenticate, field.descriptor_at + 4, static_cast<uint32_t>(authenticate.size()) - 1);
    if (LoadLe16(authenticate, field.descriptor_at) < 2) authenticate[field.descriptor_at] = 2;
    ExpectInvalid(ParseAuthenticate(authenticate).status(), field.name);
    StoreLe32(authenticate, field.descriptor_at + 4, 0xffffffffu);
    ExpectInvalid(ParseAuthenticate(authenticate).status(), field.name);
  }

  // NEGOTIATE with OEM fields announced but outside the message.
  NegotiateMessage negotiate;
  negotiate.flags = kNegotiateUnicode;
  negotiate.domain = "CORP";
  Bytes encoded = EncodeNegotiate(negotiate).value();
  StoreLe32(encoded, 20, 1000);
  ExpectInvalid(ParseNegotiate(encoded).status(), "NEGOTIATE domain");
}

TEST(MessagesTest, EmptyFieldOffsetsAreIgnored) {
  AuthenticateMessage message;
  message.flags = kNegotiateUnicode;
  message.user = "u";
  Bytes encoded = EncodeAuthenticate(message).value();
  StoreLe32(encoded, 28 + 4, 0xffffffffu);  // Empty domain with a wild offset.
  absl::StatusOr<AuthenticateMessage> parsed = ParseAuthenticate(encoded);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->user, "u");
}

TEST(MessagesTest, BadStringsAreRefused) {
  AuthenticateMessage message;
  message.flags = kNegotiateUnicode;
  message.user = "abc";
  Bytes encoded = EncodeAuthenticate(message).value();
  Bytes odd = encoded;
  odd[36] = 5;  // User length 5: not UTF-16.
  odd[37] = 0;
  ExpectInvalid(ParseAuthenticate(odd).status(), "AUTHENTICATE user: UTF-16LE string has odd length 5");
  Bytes lone = encoded;
  size_t user_at = LoadLe32(encoded, 40);
  lone[user_at] = 0x00;
  lone[user_at + 1] = 0xd8;  // A high surrogate followed by 'b'.
  ExpectInvalid(ParseAuthenticate(lone).status(), "unpaired high surrogate");
}

TEST(AvPairsTest, MalformedListsAreRefused) {
  ExpectInvalid(ParseAvPairs(Bytes{}).status(), "without MsvAvEOL");
  ExpectInvalid(ParseAvPairs(FromHex("010002004100")).status(), "without MsvAvEOL");
  ExpectInvalid(ParseAvPairs(FromHex("0100ff7f4100")).status(), "has length 32767 but only 2 bytes remain");
  ExpectInvalid(ParseAvPairs(FromHex("07000400 00000000 00000000")).status(), "AV pair 7 has length 4, expected 8");
  ExpectInvalid(ParseAvPairs(FromHex("06000800 0000000000000000 00000000")).status(), "expected 4");
  ExpectInvalid(ParseAvPairs(FromHex("00000200 0000")).status(), "AV pair 0 has length 2, expected 0");
  // Bytes after the EOL are padding.
  absl::StatusOr<std::vector<AvPair>> pairs = ParseAvPairs(FromHex("09000200 4100 00000000 deadbeef"));
  ASSERT_TRUE(pairs.ok()) << pairs.status();
  ASSERT_EQ(pairs->size(), 1u);
  EXPECT_EQ(pairs->front().id, 9);
  // Unknown ids are kept.
  EXPECT_TRUE(ParseAvPairs(FromHex("40000100 09 00000000")).ok());
}

TEST(AvPairsTest, EncodeRefusesEolAndOversizedValues) {
  std::vector<AvPair> eol = {AvPair{0, {}}};
  EXPECT_EQ(EncodeAvPairs(eol).status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<AvPair> big = {AvPair{1, Bytes(65536, 0)}};
  EXPECT_EQ(EncodeAvPairs(big).status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<AvPair> total_too_big = {AvPair{1, Bytes(40000, 0)}, AvPair{2, Bytes(40000, 0)}};
  EXPECT_EQ(EncodeAvPairs(total_too_big).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Utf16Test, RoundTripsIncludingSurrogatePairs) {
  const std::string text = "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z";  // A é € 😀 z
  absl::StatusOr<Bytes> utf16 = Utf8ToUtf16Le(text);
  ASSERT_TRUE(utf16.ok());
  EXPECT_EQ(ToHex(*utf16), "4100e900ac203dd800de7a00");
  EXPECT_EQ(Utf16LeToUtf8(*utf16).value(), text);
  EXPECT_EQ(Utf8ToUtf16Le("\xf4\x8f\xbf\xbf").value(), FromHex("ffdbffdf"));  // U+10FFFF.
}

TEST(Utf16Test, InvalidInputIsRefused) {
  ExpectInvalid(Utf8ToUtf16Le("\xc0\x80").status(), "overlong");
  ExpectInvalid(Utf8ToUtf16Le("\xe0\x80\x80").status(), "overlong");
  ExpectInvalid(Utf8ToUtf16Le("\xed\xa0\x80").status(), "surrogate");
  ExpectInvalid(Utf8ToUtf16Le("\xf4\x90\x80\x80").status(), "beyond U+10FFFF");
  ExpectInvalid(Utf8ToUtf16Le("\xe2\x82").status(), "truncated");
  ExpectInvalid(Utf8ToUtf16Le("a\x80").status(), "lead byte");
  ExpectInvalid(Utf8ToUtf16Le("\xc3(").status(), "continuation");
  ExpectInvalid(Utf16LeToUtf8(FromHex("410042")).status(), "odd length");
  ExpectInvalid(Utf16LeToUtf8(FromHex("00dc4100")).status(), "unpaired low surrogate");
  ExpectInvalid(Utf16LeToUtf8(FromHex("3dd8")).status(), "unpaired high surrogate");
  ExpectInvalid(Utf16LeToUtf8(FromHex("3dd84100")).status(), "unpaired high surrogate");
}

// A deterministic mini-fuzzer: random byte edits of real messages through every parser and
// through the two contexts. Under ASan this checks that nothing reads out of bounds.
TEST(MessagesTest, RandomMutationsNeverCrash) {
  Handshake h = RealHandshake();
  std::mt19937 rng(20240601);
  constexpr int kIterations = 3000;
  Key16 hash = NtHash("pw").value();
  for (int i = 0; i < kIterations; ++i) {
    const Bytes& original = i % 3 == 0 ? h.negotiate : (i % 3 == 1 ? h.challenge : h.authenticate);
    Bytes mutated = original;
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      switch (rng() % 4) {
        case 0:
          mutated[rng() % mutated.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
          break;
        case 1:
          mutated[rng() % mutated.size()] = static_cast<uint8_t>(rng());
          break;
        case 2:
          mutated.resize(rng() % (mutated.size() + 1));
          if (mutated.empty()) mutated.push_back(0);
          break;
        case 3:
          mutated.insert(mutated.begin() + rng() % mutated.size(), static_cast<uint8_t>(rng()));
          break;
      }
    }
    (void)ParseNegotiate(mutated);
    (void)ParseChallenge(mutated);
    (void)ParseAuthenticate(mutated);
    ClientContext client(Credentials{"CORP", "alice", hash, ""}, CountingRandom(1), FixedClock(1));
    client.Negotiate();
    (void)client.Authenticate(mutated);
    ServerContext server([&](std::string_view, std::string_view) -> std::optional<Key16> { return hash; },
                         ServerNames{"CORP", "CA01", "", ""}, CountingRandom(3), FixedClock(133'000'000'000'000'000));
    if (server.Challenge(i % 3 == 0 ? mutated : h.negotiate).ok()) (void)server.Accept(mutated);
  }
}

TEST(LegacyCryptoTest, Rc4KeystreamCarriesAcrossCalls) {
  Bytes key = FromHex("0102030405");
  Bytes whole(40, 0);
  ASSERT_TRUE(Rc4::Create(key).value().Apply(whole).ok());
  // RFC 6229 test vector, key 0x0102030405, keystream offset 0.
  EXPECT_EQ(ToHex(ByteView(whole).first(16)), "b2396305f03dc027ccc3524a0a1118a8");
  Rc4 pieces = Rc4::Create(key).value();
  Bytes first(13, 0);
  Bytes second(27, 0);
  ASSERT_TRUE(pieces.Apply(first).ok());
  ASSERT_TRUE(pieces.Apply(second).ok());
  first.insert(first.end(), second.begin(), second.end());
  EXPECT_EQ(first, whole);
  EXPECT_EQ(Rc4::Create(Bytes{}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(LegacyCryptoTest, DigestsMatchRfcVectors) {
  const std::string abc = "abc";
  ByteView abc_bytes(reinterpret_cast<const uint8_t*>(abc.data()), abc.size());
  EXPECT_EQ(ToHex(Md4(abc_bytes).value()), "a448017aaf21d8525fc10ae87aa6729d");    // RFC 1320.
  EXPECT_EQ(ToHex(Md5({abc_bytes}).value()), "900150983cd24fb0d6963f7d28e17f72");  // RFC 1321.
  const std::string jefe = "Jefe";
  const std::string what = "what do ya want for nothing?";
  EXPECT_EQ(ToHex(HmacMd5(ByteView(reinterpret_cast<const uint8_t*>(jefe.data()), jefe.size()),
                          {ByteView(reinterpret_cast<const uint8_t*>(what.data()), 10),
                           ByteView(reinterpret_cast<const uint8_t*>(what.data()) + 10, what.size() - 10)})
                      .value()),
            "750c783e6ab0b503eaa86e310a5db738");  // RFC 2104 test 2, fed in two parts.
}

TEST(LegacyCryptoDeathTest, MissingLegacyProviderGivesClearError) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // A fresh process that cannot find legacy.so: the error must say what to install.
  EXPECT_EXIT(
      {
        setenv("OPENSSL_MODULES", "/nonexistent-ossl-modules", 1);
        absl::Status status = EnsureLegacyCrypto();
        bool clear = status.code() == absl::StatusCode::kFailedPrecondition &&
                     status.message().find("legacy provider not available") != absl::string_view::npos &&
                     status.message().find("legacy.so") != absl::string_view::npos && Md4(Bytes{1}).status() == status;
        std::_Exit(clear ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace adcsc::ntlm
