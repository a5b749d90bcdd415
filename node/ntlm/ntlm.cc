#include "node/ntlm/ntlm.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "node/ntlm/legacy_crypto.h"

namespace adcsc::ntlm {
namespace {

constexpr size_t kNtHashHexDigits = 32;
constexpr uint8_t kBlobResponseVersion = 1;  // RespType and HiRespType of NTLMv2_CLIENT_CHALLENGE.
// NTProofStr, then the blob's fixed part (RespType .. Reserved3) and at least an MsvAvEOL.
constexpr size_t kNtProofBytes = 16;
constexpr size_t kBlobFixedBytes = 28;
constexpr size_t kBlobAvPairsAt = 28;
constexpr size_t kMinNtlmV2ResponseBytes = kNtProofBytes + kBlobFixedBytes + 4;
constexpr size_t kNtlmV1ResponseBytes = 24;
constexpr size_t kLmResponseBytes = 24;

void Cleanse(std::span<uint8_t> secret) { OPENSSL_cleanse(secret.data(), secret.size()); }

// Windows upper-cases with its own table; this covers the scripts account names are commonly
// written in and leaves other code units alone.
uint16_t UpcaseUnit(uint16_t unit) {
  if (unit >= 'a' && unit <= 'z') return unit - 0x20;
  if (unit < 0x80) return unit;
  if (unit >= 0xe0 && unit <= 0xfe && unit != 0xf7) return unit - 0x20;  // Latin-1.
  if (unit == 0xff) return 0x178;
  if ((unit >= 0x100 && unit <= 0x137) || (unit >= 0x14a && unit <= 0x177)) {
    return (unit & 1) ? unit - 1 : unit;  // Latin Extended-A: upper even, lower odd.
  }
  if ((unit >= 0x139 && unit <= 0x148) || (unit >= 0x179 && unit <= 0x17e)) {
    return (unit & 1) ? unit : unit - 1;  // Latin Extended-A: upper odd, lower even.
  }
  if (unit >= 0x3b1 && unit <= 0x3c9 && unit != 0x3c2) return unit - 0x20;  // Greek.
  if (unit >= 0x430 && unit <= 0x44f) return unit - 0x20;                   // Cyrillic.
  if (unit >= 0x450 && unit <= 0x45f) return unit - 0x50;                   // Cyrillic Ѐ-Џ.
  return unit;
}

std::string FlagNames(uint32_t missing) {
  std::vector<std::string> names;
  if (missing & kNegotiateUnicode) names.push_back("UNICODE");
  if (missing & kNegotiateExtendedSessionSecurity) names.push_back("EXTENDED_SESSIONSECURITY");
  if (missing & kNegotiate128) names.push_back("128");
  if (missing & kNegotiateKeyExch) names.push_back("KEY_EXCH");
  if (missing & kNegotiateSign) names.push_back("SIGN");
  if (missing & kNegotiateSeal) names.push_back("SEAL");
  return absl::StrJoin(names, ", ");
}

Bytes BuildClientBlob(uint64_t timestamp, std::span<const uint8_t, kChallengeBytes> client_challenge,
                      ByteView av_pairs) {
  Bytes blob;
  blob.push_back(kBlobResponseVersion);
  blob.push_back(kBlobResponseVersion);
  blob.insert(blob.end(), 6, 0);  // Reserved1, Reserved2.
  AppendLe64(blob, timestamp);
  Append(blob, client_challenge);
  blob.insert(blob.end(), 4, 0);  // Reserved3.
  Append(blob, av_pairs);
  // MS-NLMP 3.3.2 appends four zero bytes after the AV pairs (Windows does too).
  blob.insert(blob.end(), 4, 0);
  return blob;
}

// MIC = HMAC_MD5(ExportedSessionKey, NEGOTIATE || CHALLENGE || AUTHENTICATE with MIC zeroed).
absl::StatusOr<Key16> ComputeMic(const Key16& exported_session_key, ByteView negotiate, ByteView challenge,
                                 ByteView authenticate) {
  Bytes zeroed(authenticate.begin(), authenticate.end());
  std::fill_n(zeroed.begin() + kAuthenticateMicOffset, kMicBytes, 0);
  return HmacMd5(exported_session_key, {negotiate, challenge, zeroed});
}

}  // namespace

absl::StatusOr<Key16> NtHash(std::string_view utf8_password) {
  absl::StatusOr<Bytes> utf16 = Utf8ToUtf16Le(utf8_password);
  if (!utf16.ok()) return absl::InvalidArgumentError("password is not valid UTF-8");
  absl::StatusOr<Key16> hash = Md4(*utf16);
  Cleanse(*utf16);
  return hash;
}

absl::StatusOr<Key16> ParseNtHashHex(std::string_view hex) {
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!hex.empty() && is_space(hex.front())) hex.remove_prefix(1);
  while (!hex.empty() && is_space(hex.back())) hex.remove_suffix(1);
  if (hex.size() != kNtHashHexDigits) {
    return absl::InvalidArgumentError(absl::StrCat("NT hash must be 32 hex digits, got ", hex.size(), " characters"));
  }
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  Key16 hash;
  for (size_t i = 0; i < hash.size(); ++i) {
    int high = nibble(hex[2 * i]);
    int low = nibble(hex[2 * i + 1]);
    if (high < 0 || low < 0) {
      Cleanse(hash);
      return absl::InvalidArgumentError("NT hash must be 32 hex digits, found a non-hex character");
    }
    hash[i] = static_cast<uint8_t>((high << 4) | low);
  }
  return hash;
}

RandomSource SystemRandom() {
  return [](std::span<uint8_t> out) -> absl::Status {
    size_t done = 0;
    while (done < out.size()) {
      int chunk = static_cast<int>(std::min<size_t>(out.size() - done, INT_MAX));
      if (RAND_bytes(out.data() + done, chunk) != 1) {
        return absl::InternalError("OpenSSL RAND_bytes failed: no randomness for NTLM");
      }
      done += static_cast<size_t>(chunk);
    }
    return absl::OkStatus();
  };
}

uint64_t FileTimeNow() {
  using FileTimeTicks = std::chrono::duration<int64_t, std::ratio<1, kFileTimeTicksPerSecond>>;
  int64_t since_unix_epoch =
      std::chrono::duration_cast<FileTimeTicks>(std::chrono::system_clock::now().time_since_epoch()).count();
  return kFileTimeOfUnixEpoch + static_cast<uint64_t>(since_unix_epoch);
}

absl::StatusOr<Key16> NtOwfV2(const Key16& nt_hash, std::string_view user, std::string_view domain) {
  absl::StatusOr<Bytes> user_utf16 = Utf8ToUtf16Le(user);
  if (!user_utf16.ok()) return absl::InvalidArgumentError("user name is not valid UTF-8");
  absl::StatusOr<Bytes> domain_utf16 = Utf8ToUtf16Le(domain);
  if (!domain_utf16.ok()) return absl::InvalidArgumentError("domain name is not valid UTF-8");
  for (size_t i = 0; i + 1 < user_utf16->size(); i += 2) {
    uint16_t upper = UpcaseUnit(LoadLe16(*user_utf16, i));
    (*user_utf16)[i] = static_cast<uint8_t>(upper);
    (*user_utf16)[i + 1] = static_cast<uint8_t>(upper >> 8);
  }
  return HmacMd5(nt_hash, {*user_utf16, *domain_utf16});
}

absl::StatusOr<Key16> NtProofStr(const Key16& response_key_nt,
                                 std::span<const uint8_t, kChallengeBytes> server_challenge, ByteView client_blob) {
  return HmacMd5(response_key_nt, {server_challenge, client_blob});
}

absl::StatusOr<Key16> SessionBaseKeyV2(const Key16& response_key_nt, const Key16& nt_proof_str) {
  return HmacMd5(response_key_nt, {nt_proof_str});
}

// ---------------------------------------------------------------------------------------------
// Client.

ClientContext::ClientContext(Credentials credentials, RandomSource random, FileTimeClock clock)
    : credentials_(std::move(credentials)), random_(std::move(random)), clock_(std::move(clock)) {}

ClientContext::~ClientContext() { Cleanse(credentials_.nt_hash); }

Bytes ClientContext::Negotiate() {
  // Later calls hand back the same message without restarting a handshake in progress or
  // reviving one that ended.
  if (state_ != State::kStart) return negotiate_message_;
  NegotiateMessage message;
  message.flags = kClientNegotiateFlags;
  message.version = kOurVersion;
  // Cannot fail: no strings and fixed flags.
  negotiate_message_ = EncodeNegotiate(message).value();
  state_ = State::kNegotiateSent;
  return negotiate_message_;
}

absl::StatusOr<Bytes> ClientContext::Authenticate(ByteView challenge) {
  if (state_ != State::kNegotiateSent) {
    return absl::FailedPreconditionError("NTLM client: Authenticate() needs exactly one Negotiate() before it");
  }
  absl::StatusOr<Bytes> authenticate = BuildAuthenticate(challenge);
  state_ = authenticate.ok() ? State::kDone : State::kFailed;
  return authenticate;
}

absl::StatusOr<Bytes> ClientContext::BuildAuthenticate(ByteView challenge_bytes) {
  if (credentials_.user.empty()) {
    return absl::InvalidArgumentError("NTLM client: no user name (anonymous logon is not supported)");
  }
  absl::StatusOr<ChallengeMessage> challenge = ParseChallenge(challenge_bytes);
  if (!challenge.ok()) return challenge.status();
  constexpr uint32_t kRequiredFromServer = kRequiredSessionFlags | kNegotiateUnicode | kNegotiateSign | kNegotiateSeal;
  if (uint32_t missing = kRequiredFromServer & ~challenge->flags; missing != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("NTLM server's CHALLENGE does not offer ", FlagNames(missing),
                     ": refusing, as packet privacy needs 128-bit extended session security with key exchange"));
  }

  // With a server timestamp, MS-NLMP 3.1.5.1.2 has the client use it, send no LM response and
  // protect the three messages with a MIC, announced in the target info the proof covers.
  std::optional<uint64_t> server_time = FindAvTimestamp(challenge->target_info);
  const bool send_mic = server_time.has_value();
  const uint64_t timestamp = server_time.has_value() ? *server_time : clock_();
  std::vector<AvPair> target_info = challenge->target_info;
  if (send_mic) {
    auto flags_pair = std::find_if(target_info.begin(), target_info.end(),
                                   [](const AvPair& p) { return p.id == static_cast<uint16_t>(AvId::kFlags); });
    if (flags_pair != target_info.end()) {
      *flags_pair = MakeFlagsAvPair(LoadLe32(flags_pair->value, 0) | kAvFlagMicPresent);
    } else {
      target_info.push_back(MakeFlagsAvPair(kAvFlagMicPresent));
    }
  }
  if (!target_name_.empty() && FindAvPair(target_info, AvId::kTargetName) == nullptr) {
    absl::StatusOr<AvPair> spn = MakeStringAvPair(AvId::kTargetName, target_name_);
    if (!spn.ok()) return spn.status();
    target_info.push_back(*std::move(spn));
  }
  absl::StatusOr<Bytes> av_pairs = EncodeAvPairs(target_info);
  if (!av_pairs.ok()) return av_pairs.status();

  std::array<uint8_t, kChallengeBytes> client_challenge;
  if (absl::Status s = random_(client_challenge); !s.ok()) return s;
  Bytes blob = BuildClientBlob(timestamp, client_challenge, *av_pairs);

  absl::StatusOr<Key16> response_key = NtOwfV2(credentials_.nt_hash, credentials_.user, credentials_.domain);
  if (!response_key.ok()) return response_key.status();
  absl::StatusOr<Key16> proof = NtProofStr(*response_key, challenge->server_challenge, blob);
  if (!proof.ok()) return proof.status();

  AuthenticateMessage message;
  message.flags = kClientNegotiateFlags & challenge->flags;
  message.flags |= kNegotiateUnicode | kNegotiateVersion;
  message.version = kOurVersion;
  message.domain = credentials_.domain;
  message.user = credentials_.user;
  message.workstation = credentials_.workstation;
  message.nt_response.assign(proof->begin(), proof->end());
  Append(message.nt_response, blob);
  if (send_mic) {
    message.lm_response.assign(kLmResponseBytes, 0);
  } else {
    absl::StatusOr<Key16> lm = HmacMd5(*response_key, {challenge->server_challenge, client_challenge});
    if (!lm.ok()) return lm.status();
    message.lm_response.assign(lm->begin(), lm->end());
    Append(message.lm_response, client_challenge);
  }

  absl::StatusOr<Key16> session_base_key = SessionBaseKeyV2(*response_key, *proof);
  Cleanse(*response_key);
  if (!session_base_key.ok()) return session_base_key.status();
  Key16 exported_session_key;
  absl::Status random_ok = random_(exported_session_key);
  absl::StatusOr<Bytes> encrypted_key =
      random_ok.ok() ? Rc4Once(*session_base_key, exported_session_key) : absl::StatusOr<Bytes>(random_ok);
  Cleanse(*session_base_key);
  if (!encrypted_key.ok()) {
    Cleanse(exported_session_key);
    return encrypted_key.status();
  }
  message.encrypted_random_session_key = *std::move(encrypted_key);
  if (send_mic) message.mic.emplace().fill(0);

  absl::StatusOr<Bytes> authenticate = EncodeAuthenticate(message);
  if (authenticate.ok() && send_mic) {
    absl::StatusOr<Key16> mic = ComputeMic(exported_session_key, negotiate_message_, challenge_bytes, *authenticate);
    if (!mic.ok()) {
      authenticate = mic.status();
    } else {
      std::copy(mic->begin(), mic->end(), authenticate->begin() + kAuthenticateMicOffset);
    }
  }
  if (authenticate.ok()) {
    absl::StatusOr<std::unique_ptr<Session>> session = Session::Create(exported_session_key, Role::kClient);
    if (session.ok()) {
      session_ = *std::move(session);
      negotiated_flags_ = message.flags;
    } else {
      authenticate = session.status();
    }
  }
  Cleanse(exported_session_key);
  return authenticate;
}

std::unique_ptr<Session> ClientContext::TakeSession() { return std::move(session_); }

// ---------------------------------------------------------------------------------------------
// Server.

ServerContext::ServerContext(AccountLookup lookup, ServerNames names, RandomSource random, FileTimeClock clock)
    : lookup_(std::move(lookup)), names_(std::move(names)), random_(std::move(random)), clock_(std::move(clock)) {}

ServerContext::~ServerContext() = default;

absl::StatusOr<Bytes> ServerContext::Challenge(ByteView negotiate) {
  if (state_ != State::kStart) {
    return absl::FailedPreconditionError("NTLM server: Challenge() may be called once, first");
  }
  absl::StatusOr<Bytes> challenge = BuildChallenge(negotiate);
  state_ = challenge.ok() ? State::kChallengeSent : State::kFailed;
  return challenge;
}

absl::StatusOr<Bytes> ServerContext::BuildChallenge(ByteView negotiate) {
  absl::StatusOr<NegotiateMessage> parsed = ParseNegotiate(negotiate);
  if (!parsed.ok()) return parsed.status();
  constexpr uint32_t kRequiredFromClient = kRequiredSessionFlags | kNegotiateUnicode;
  if (uint32_t missing = kRequiredFromClient & ~parsed->flags; missing != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("NTLM client's NEGOTIATE does not offer ", FlagNames(missing),
                     ": refusing, as packet privacy needs 128-bit extended session security with key exchange"));
  }
  if (names_.netbios_domain.empty() || names_.netbios_computer.empty()) {
    return absl::FailedPreconditionError("NTLM server: NetBIOS domain and computer names are required");
  }

  ChallengeMessage challenge;
  challenge.flags = kNegotiateUnicode | kRequestTarget | kNegotiateNtlm | kTargetTypeDomain | kNegotiateTargetInfo |
                    kNegotiateVersion | kRequiredSessionFlags;
  challenge.flags |= parsed->flags & (kNegotiateSign | kNegotiateSeal | kNegotiateAlwaysSign | kNegotiate56);
  challenge.target_name = names_.netbios_domain;
  challenge.version = kOurVersion;
  if (absl::Status s = random_(server_challenge_); !s.ok()) return s;
  challenge.server_challenge = server_challenge_;
  const std::pair<AvId, const std::string*> names[] = {
      {AvId::kNbDomainName, &names_.netbios_domain},
      {AvId::kNbComputerName, &names_.netbios_computer},
      {AvId::kDnsDomainName, &names_.dns_domain},
      {AvId::kDnsComputerName, &names_.dns_computer},
  };
  for (const auto& [id, name] : names) {
    if (name->empty()) continue;
    absl::StatusOr<AvPair> pair = MakeStringAvPair(id, *name);
    if (!pair.ok()) return absl::InvalidArgumentError(absl::StrCat("NTLM server name: ", pair.status().message()));
    challenge.target_info.push_back(*std::move(pair));
  }
  challenge.target_info.push_back(MakeTimestampAvPair(clock_()));

  absl::StatusOr<Bytes> encoded = EncodeChallenge(challenge);
  if (!encoded.ok()) return encoded.status();
  negotiate_message_.assign(negotiate.begin(), negotiate.end());
  challenge_message_ = *encoded;
  return encoded;
}

absl::StatusOr<AuthenticatedUser> ServerContext::Accept(ByteView authenticate) {
  if (state_ != State::kChallengeSent) {
    return absl::FailedPreconditionError("NTLM server: Accept() needs exactly one successful Challenge() before it");
  }
  absl::StatusOr<AuthenticatedUser> user = Verify(authenticate);
  state_ = user.ok() ? State::kDone : State::kFailed;
  return user;
}

absl::StatusOr<AuthenticatedUser> ServerContext::Verify(ByteView authenticate) {
  absl::StatusOr<AuthenticateMessage> message = ParseAuthenticate(authenticate);
  if (!message.ok()) return message.status();

  if (message->user.empty() || (message->flags & kNegotiateAnonymous) != 0) {
    return absl::PermissionDeniedError("NTLM: anonymous logon is not accepted");
  }
  if (message->nt_response.size() < kMinNtlmV2ResponseBytes) {
    return absl::PermissionDeniedError(message->nt_response.size() == kNtlmV1ResponseBytes
                                           ? "NTLM: client sent an NTLMv1 response; only NTLMv2 is accepted"
                                           : absl::StrCat("NTLM: no NTLMv2 response (NT response is ",
                                                          message->nt_response.size(),
                                                          " bytes); LM and NTLMv1 are not accepted"));
  }
  ByteView nt_response = message->nt_response;
  ByteView blob = nt_response.subspan(kNtProofBytes);
  if (blob[0] != kBlobResponseVersion || blob[1] != kBlobResponseVersion) {
    return absl::PermissionDeniedError(
        absl::StrCat("NTLM: NTLMv2 response has unknown version ", blob[0], ".", blob[1]));
  }
  absl::StatusOr<std::vector<AvPair>> client_target_info = ParseAvPairs(blob.subspan(kBlobAvPairsAt));
  if (!client_target_info.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("NTLMv2 response: client ", client_target_info.status().message()));
  }
  if (uint32_t missing = kRequiredSessionFlags & ~message->flags; missing != 0) {
    return absl::PermissionDeniedError(absl::StrCat("NTLM: client's AUTHENTICATE does not negotiate ",
                                                    FlagNames(missing), " (needed for packet privacy)"));
  }

  std::optional<Key16> nt_hash = lookup_(message->domain, message->user);
  if (!nt_hash.has_value()) {
    return absl::PermissionDeniedError("NTLM: unknown user");
  }
  absl::StatusOr<Key16> response_key = NtOwfV2(*nt_hash, message->user, message->domain);
  Cleanse(*nt_hash);
  if (!response_key.ok()) return response_key.status();
  absl::StatusOr<Key16> expected_proof = NtProofStr(*response_key, server_challenge_, blob);
  if (!expected_proof.ok()) {
    Cleanse(*response_key);
    return expected_proof.status();
  }
  if (CRYPTO_memcmp(expected_proof->data(), nt_response.data(), kNtProofBytes) != 0) {
    Cleanse(*response_key);
    return absl::PermissionDeniedError("NTLM: NTLMv2 response did not verify (wrong password)");
  }

  absl::StatusOr<Key16> session_base_key = SessionBaseKeyV2(*response_key, *expected_proof);
  Cleanse(*response_key);
  if (!session_base_key.ok()) return session_base_key.status();
  if (message->encrypted_random_session_key.size() != kKeyBytes) {
    Cleanse(*session_base_key);
    return absl::InvalidArgumentError(absl::StrCat(
        "NTLM: encrypted random session key is ", message->encrypted_random_session_key.size(), " bytes, expected 16"));
  }
  absl::StatusOr<Bytes> exported = Rc4Once(*session_base_key, message->encrypted_random_session_key);
  Cleanse(*session_base_key);
  if (!exported.ok()) return exported.status();
  Key16 exported_session_key;
  std::copy(exported->begin(), exported->end(), exported_session_key.begin());
  Cleanse(*exported);

  absl::Status result = absl::OkStatus();
  std::optional<uint32_t> av_flags = FindAvFlags(*client_target_info);
  if (av_flags.has_value() && (*av_flags & kAvFlagMicPresent) != 0) {
    if (!message->mic.has_value()) {
      result = absl::PermissionDeniedError("NTLM: client announced a MIC but the AUTHENTICATE message has none");
    } else {
      absl::StatusOr<Key16> mic =
          ComputeMic(exported_session_key, negotiate_message_, challenge_message_, authenticate);
      if (!mic.ok()) {
        result = mic.status();
      } else if (CRYPTO_memcmp(mic->data(), message->mic->data(), kMicBytes) != 0) {
        result = absl::PermissionDeniedError("NTLM: MIC did not verify (messages altered in transit)");
      }
    }
  }
  if (result.ok()) {
    absl::StatusOr<std::unique_ptr<Session>> session = Session::Create(exported_session_key, Role::kServer);
    if (session.ok()) {
      session_ = *std::move(session);
    } else {
      result = session.status();
    }
  }
  Cleanse(exported_session_key);
  if (!result.ok()) return result;
  AuthenticatedUser who{message->domain, message->user, message->workstation, {}};
  if (const AvPair* spn = FindAvPair(*client_target_info, AvId::kTargetName); spn != nullptr) {
    absl::StatusOr<std::string> name = Utf16LeToUtf8(spn->value);
    if (name.ok()) who.target_name = *std::move(name);
  }
  return who;
}

std::unique_ptr<Session> ServerContext::TakeSession() { return std::move(session_); }

}  // namespace adcsc::ntlm
