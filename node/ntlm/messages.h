// NTLMSSP wire messages (MS-NLMP 2.2): NEGOTIATE, CHALLENGE and AUTHENTICATE, their AV-pair
// target info, and the UTF-8 <-> UTF-16LE conversions NTLM strings need. Parsers take
// untrusted bytes: they never read outside the buffer and name the field that is wrong.
// Thread-safety: pure functions and plain structs; no shared state.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "node/ntlm/bytes.h"
#include "node/text/utf16.h"

namespace adcsc::ntlm {

// NEGOTIATE flags (MS-NLMP 2.2.2.5).
inline constexpr uint32_t kNegotiateUnicode = 0x00000001;
inline constexpr uint32_t kNegotiateOem = 0x00000002;
inline constexpr uint32_t kRequestTarget = 0x00000004;
inline constexpr uint32_t kNegotiateSign = 0x00000010;
inline constexpr uint32_t kNegotiateSeal = 0x00000020;
inline constexpr uint32_t kNegotiateDatagram = 0x00000040;
inline constexpr uint32_t kNegotiateLmKey = 0x00000080;
inline constexpr uint32_t kNegotiateNtlm = 0x00000200;
inline constexpr uint32_t kNegotiateAnonymous = 0x00000800;
inline constexpr uint32_t kNegotiateOemDomainSupplied = 0x00001000;
inline constexpr uint32_t kNegotiateOemWorkstationSupplied = 0x00002000;
inline constexpr uint32_t kNegotiateAlwaysSign = 0x00008000;
inline constexpr uint32_t kTargetTypeDomain = 0x00010000;
inline constexpr uint32_t kTargetTypeServer = 0x00020000;
inline constexpr uint32_t kNegotiateExtendedSessionSecurity = 0x00080000;
inline constexpr uint32_t kNegotiateIdentify = 0x00100000;
inline constexpr uint32_t kRequestNonNtSessionKey = 0x00400000;
inline constexpr uint32_t kNegotiateTargetInfo = 0x00800000;
inline constexpr uint32_t kNegotiateVersion = 0x02000000;
inline constexpr uint32_t kNegotiate128 = 0x20000000;
inline constexpr uint32_t kNegotiateKeyExch = 0x40000000;
inline constexpr uint32_t kNegotiate56 = 0x80000000;

enum class MessageType : uint32_t { kNegotiate = 1, kChallenge = 2, kAuthenticate = 3 };

// AV_PAIR ids (MS-NLMP 2.2.2.1).
enum class AvId : uint16_t {
  kEol = 0,
  kNbComputerName = 1,
  kNbDomainName = 2,
  kDnsComputerName = 3,
  kDnsDomainName = 4,
  kDnsTreeName = 5,
  kFlags = 6,
  kTimestamp = 7,
  kSingleHost = 8,
  kTargetName = 9,
  kChannelBindings = 10,
};

// MsvAvFlags bit: the AUTHENTICATE message carries a MIC.
inline constexpr uint32_t kAvFlagMicPresent = 0x00000002;

inline constexpr size_t kChallengeBytes = 8;
inline constexpr size_t kMicBytes = 16;
// The MIC sits right after the 64-byte fixed AUTHENTICATE header and the 8-byte VERSION.
inline constexpr size_t kAuthenticateMicOffset = 72;

// VERSION (MS-NLMP 2.2.2.10): informative only, never used for decisions.
struct Version {
  uint8_t major = 0;
  uint8_t minor = 0;
  uint16_t build = 0;
  uint8_t ntlm_revision = 0x0f;  // NTLMSSP_REVISION_W2K3, the only revision in use.
  bool operator==(const Version&) const = default;
};

struct AvPair {
  uint16_t id = 0;
  Bytes value;
  bool operator==(const AvPair&) const = default;
};

// Parses an AV_PAIR list up to its MsvAvEOL; bytes after the EOL are ignored (the NTLMv2
// client blob has padding there). Known fixed-size pairs (flags: 4 bytes, timestamp: 8,
// channel bindings: 16, EOL: 0) are length-checked, so FindAv* below can trust them.
absl::StatusOr<std::vector<AvPair>> ParseAvPairs(ByteView bytes);

// Serializes `pairs` and appends MsvAvEOL. Fails if a value does not fit in 16 bits or a pair
// is itself an EOL.
absl::StatusOr<Bytes> EncodeAvPairs(std::span<const AvPair> pairs);

// The first pair with `id`, or nullptr.
const AvPair* FindAvPair(std::span<const AvPair> pairs, AvId id);
std::optional<uint64_t> FindAvTimestamp(std::span<const AvPair> pairs);
std::optional<uint32_t> FindAvFlags(std::span<const AvPair> pairs);

// A pair holding `utf8` as UTF-16LE (the names in target info).
absl::StatusOr<AvPair> MakeStringAvPair(AvId id, std::string_view utf8);
AvPair MakeTimestampAvPair(uint64_t filetime);
AvPair MakeFlagsAvPair(uint32_t flags);

struct NegotiateMessage {
  uint32_t flags = 0;
  std::string domain;       // OEM (sent only with kNegotiateOemDomainSupplied).
  std::string workstation;  // OEM (sent only with kNegotiateOemWorkstationSupplied).
  std::optional<Version> version;
};

struct ChallengeMessage {
  uint32_t flags = 0;
  std::string target_name;  // UTF-8.
  std::array<uint8_t, kChallengeBytes> server_challenge{};
  std::vector<AvPair> target_info;
  std::optional<Version> version;
};

struct AuthenticateMessage {
  uint32_t flags = 0;
  Bytes lm_response;
  Bytes nt_response;
  std::string domain;       // UTF-8.
  std::string user;         // UTF-8.
  std::string workstation;  // UTF-8.
  Bytes encrypted_random_session_key;
  std::optional<Version> version;
  // On parse: the 16 bytes at kAuthenticateMicOffset when the layout leaves room for them
  // (every payload field starts at or after offset 88). Whether they are a MIC is known only
  // from the MsvAvFlags inside the NTLMv2 response. On encode: written when set.
  std::optional<std::array<uint8_t, kMicBytes>> mic;
};

// The message type of an NTLMSSP message, after checking the "NTLMSSP\0" signature.
absl::StatusOr<MessageType> PeekMessageType(ByteView message);

// Encoders fail only on inputs that cannot be represented (a field over 65535 bytes, invalid
// UTF-8). Strings are written as UTF-16LE when the message's flags carry kNegotiateUnicode,
// else as OEM (only ASCII is accepted then).
absl::StatusOr<Bytes> EncodeNegotiate(const NegotiateMessage& message);
absl::StatusOr<Bytes> EncodeChallenge(const ChallengeMessage& message);
absl::StatusOr<Bytes> EncodeAuthenticate(const AuthenticateMessage& message);

absl::StatusOr<NegotiateMessage> ParseNegotiate(ByteView message);
absl::StatusOr<ChallengeMessage> ParseChallenge(ByteView message);
absl::StatusOr<AuthenticateMessage> ParseAuthenticate(ByteView message);

// NTLMSSP strings are UTF-16LE (node/text).
using text::Utf16LeToUtf8;
using text::Utf8ToUtf16Le;

}  // namespace adcsc::ntlm
