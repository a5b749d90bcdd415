// The NTLMv2 handshake (MS-NLMP 3.1.5 client side, 3.2.5 server side) producing a Session for
// NTLM2 sign/seal: ClientContext talks to ADCS, ServerContext lets tests and fake servers
// authenticate clients. Only NTLMv2 with extended session security, 128-bit keys and key
// exchange is spoken; anything weaker is refused.
// Thread-safety: a context is one handshake: use it from one thread at a time. The free
// functions are safe from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "node/ntlm/bytes.h"
#include "node/ntlm/messages.h"
#include "node/ntlm/session.h"

namespace adcsc::ntlm {

struct Credentials {
  std::string domain;  // UTF-8, as the account's domain should appear (e.g. "CORP").
  std::string user;    // UTF-8.
  Key16 nt_hash{};     // MD4 of the UTF-16LE password: a password equivalent, keep it secret.
  std::string workstation;
};

// The NT hash (NTOWFv1) of a password: MD4 of its UTF-16LE form.
absl::StatusOr<Key16> NtHash(std::string_view utf8_password);

// Parses an NT hash written as 32 hex digits (either case, surrounding whitespace ignored).
// Error messages never echo the input.
absl::StatusOr<Key16> ParseNtHashHex(std::string_view hex);

// Fills the span with random bytes. Injected so tests are deterministic.
using RandomSource = std::function<absl::Status(std::span<uint8_t>)>;
// OpenSSL's RAND_bytes.
RandomSource SystemRandom();

// The time as a Windows FILETIME: 100 ns ticks since 1601-01-01 UTC. Injected for tests.
using FileTimeClock = std::function<uint64_t()>;
inline constexpr uint64_t kFileTimeTicksPerSecond = 10'000'000;
inline constexpr uint64_t kFileTimeOfUnixEpoch = 116'444'736'000'000'000;  // 1970-01-01 in FILETIME.
uint64_t FileTimeNow();

// NTLMv2 building blocks (MS-NLMP 3.3.2), public for known-answer tests.
// NTOWFv2 = HMAC_MD5(nt_hash, UTF16LE(Upper(user) + domain)). Upper-casing covers ASCII,
// Latin-1, Latin Extended-A, Greek and Cyrillic; other letters are left as they are.
absl::StatusOr<Key16> NtOwfV2(const Key16& nt_hash, std::string_view user, std::string_view domain);
// NTProofStr = HMAC_MD5(NTOWFv2, server_challenge || client_blob).
absl::StatusOr<Key16> NtProofStr(const Key16& response_key_nt,
                                 std::span<const uint8_t, kChallengeBytes> server_challenge, ByteView client_blob);
// SessionBaseKey = HMAC_MD5(NTOWFv2, NTProofStr); with NTLMv2 it is also the key exchange key.
absl::StatusOr<Key16> SessionBaseKeyV2(const Key16& response_key_nt, const Key16& nt_proof_str);

// The VERSION we put in our messages (informative only; peers do not act on it).
inline constexpr Version kOurVersion{10, 0, 0, 0x0f};

// NEGOTIATE flags a ClientContext sends.
inline constexpr uint32_t kClientNegotiateFlags = kNegotiateUnicode | kRequestTarget | kNegotiateSign | kNegotiateSeal |
                                                  kNegotiateNtlm | kNegotiateAlwaysSign |
                                                  kNegotiateExtendedSessionSecurity | kNegotiateTargetInfo |
                                                  kNegotiateVersion | kNegotiate128 | kNegotiateKeyExch | kNegotiate56;

// Flags both sides insist on: without them there is no 128-bit sealing with key exchange.
inline constexpr uint32_t kRequiredSessionFlags = kNegotiateExtendedSessionSecurity | kNegotiate128 | kNegotiateKeyExch;

class ClientContext {
 public:
  explicit ClientContext(Credentials credentials, RandomSource random = SystemRandom(),
                         FileTimeClock clock = FileTimeNow);
  ClientContext(const ClientContext&) = delete;
  ClientContext& operator=(const ClientContext&) = delete;
  ~ClientContext();

  // The NEGOTIATE message. Call first; later calls return the same bytes and change nothing.
  Bytes Negotiate();

  // Answers the server's CHALLENGE with an NTLMv2 AUTHENTICATE message. Refuses a CHALLENGE
  // that does not offer Unicode, extended session security, 128-bit keys, key exchange,
  // signing and sealing. When the server sent a timestamp, that timestamp is used, the LM
  // response is zeros and a MIC over all three messages is sent; otherwise the clock's time is
  // used and no MIC. Any failure ends the handshake.
  absl::StatusOr<Bytes> Authenticate(ByteView challenge);

  // The SPN of the server being authenticated to (e.g. "host/ca01.corp.example.com"), sent as
  // MsvAvTargetName in the NTLMv2 response's target info (MS-NLMP 3.1.5.1.2), which the proof
  // covers: a server that checks it refuses a response relayed from a connection meant for
  // another service. Call before Authenticate(); empty (the default): not sent.
  void set_target_name(std::string spn) { target_name_ = std::move(spn); }

  // The session after a successful Authenticate(); nullptr before that or once taken.
  std::unique_ptr<Session> TakeSession();

  // The flags of the AUTHENTICATE message (0 before Authenticate succeeds).
  uint32_t negotiated_flags() const { return negotiated_flags_; }

 private:
  enum class State { kStart, kNegotiateSent, kDone, kFailed };

  absl::StatusOr<Bytes> BuildAuthenticate(ByteView challenge_bytes);

  Credentials credentials_;
  RandomSource random_;
  FileTimeClock clock_;
  std::string target_name_;
  State state_ = State::kStart;
  Bytes negotiate_message_;
  uint32_t negotiated_flags_ = 0;
  std::unique_ptr<Session> session_;
};

// Names the server puts in its CHALLENGE's target info (UTF-8). The NetBIOS names are
// required by MS-NLMP; empty DNS names are left out.
struct ServerNames {
  std::string netbios_domain;    // e.g. "CORP"; also the CHALLENGE's target name.
  std::string netbios_computer;  // e.g. "CA01".
  std::string dns_domain;        // e.g. "corp.example.com".
  std::string dns_computer;      // e.g. "ca01.corp.example.com".
};

// Who authenticated, as the client wrote it (no case folding).
struct AuthenticatedUser {
  std::string domain;
  std::string user;
  std::string workstation;
  std::string target_name;  // the client's MsvAvTargetName (the SPN it meant), empty if none
};

// Finds the NT hash of (domain, user), or nullopt for an unknown account. Case-insensitive
// matching, if wanted, is the lookup's job.
using AccountLookup = std::function<std::optional<Key16>(std::string_view domain, std::string_view user)>;

class ServerContext {
 public:
  ServerContext(AccountLookup lookup, ServerNames names, RandomSource random = SystemRandom(),
                FileTimeClock clock = FileTimeNow);
  ServerContext(const ServerContext&) = delete;
  ServerContext& operator=(const ServerContext&) = delete;
  ~ServerContext();

  // Answers a NEGOTIATE with a CHALLENGE (fresh server challenge, target info with our names
  // and the current time). Refuses a client that does not offer Unicode, extended session
  // security, 128-bit keys and key exchange.
  absl::StatusOr<Bytes> Challenge(ByteView negotiate);

  // Verifies the AUTHENTICATE message. PERMISSION_DENIED, each with its own message, for:
  // anonymous logon, no NTLMv2 response (LM / NTLMv1), missing session-security flags, an
  // unknown user, a wrong NTProofStr (wrong password), a missing or wrong MIC when the
  // client's target info announces one. Malformed messages are INVALID_ARGUMENT. Any failure
  // ends the handshake.
  absl::StatusOr<AuthenticatedUser> Accept(ByteView authenticate);

  // The session after a successful Accept(); nullptr before that or once taken.
  std::unique_ptr<Session> TakeSession();

 private:
  enum class State { kStart, kChallengeSent, kDone, kFailed };

  absl::StatusOr<Bytes> BuildChallenge(ByteView negotiate);
  absl::StatusOr<AuthenticatedUser> Verify(ByteView authenticate);

  AccountLookup lookup_;
  ServerNames names_;
  RandomSource random_;
  FileTimeClock clock_;
  State state_ = State::kStart;
  std::array<uint8_t, kChallengeBytes> server_challenge_{};
  Bytes negotiate_message_;
  Bytes challenge_message_;
  std::unique_ptr<Session> session_;
};

}  // namespace adcsc::ntlm
