#include "node/ntlm/messages.h"

#include <algorithm>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace adcsc::ntlm {
namespace {

constexpr uint8_t kSignature[8] = {'N', 'T', 'L', 'M', 'S', 'S', 'P', '\0'};
constexpr size_t kSignatureAndTypeBytes = 12;
constexpr size_t kNegotiateFixedBytes = 32;
constexpr size_t kChallengeFixedBytes = 48;
constexpr size_t kAuthenticateFixedBytes = 64;
constexpr size_t kVersionBytes = 8;
constexpr size_t kMaxFieldBytes = 0xffff;
constexpr size_t kAvHeaderBytes = 4;
constexpr size_t kAvTimestampBytes = 8;
constexpr size_t kAvFlagsBytes = 4;
constexpr size_t kAvChannelBindingsBytes = 16;

// Offsets of the 8-byte (length, max length, offset) field descriptors.
constexpr size_t kNegotiateDomainField = 16;
constexpr size_t kNegotiateWorkstationField = 24;
constexpr size_t kNegotiateFlagsAt = 12;
constexpr size_t kChallengeTargetNameField = 12;
constexpr size_t kChallengeFlagsAt = 20;
constexpr size_t kChallengeServerChallengeAt = 24;
constexpr size_t kChallengeTargetInfoField = 40;
constexpr size_t kAuthLmField = 12;
constexpr size_t kAuthNtField = 20;
constexpr size_t kAuthDomainField = 28;
constexpr size_t kAuthUserField = 36;
constexpr size_t kAuthWorkstationField = 44;
constexpr size_t kAuthSessionKeyField = 52;
constexpr size_t kAuthFlagsAt = 60;

const char* TypeName(MessageType type) {
  switch (type) {
    case MessageType::kNegotiate:
      return "NEGOTIATE";
    case MessageType::kChallenge:
      return "CHALLENGE";
    case MessageType::kAuthenticate:
      return "AUTHENTICATE";
  }
  return "?";
}

absl::Status CheckHeader(ByteView message, MessageType expected, size_t fixed_bytes) {
  absl::StatusOr<MessageType> type = PeekMessageType(message);
  if (!type.ok()) return type.status();
  if (*type != expected) {
    return absl::InvalidArgumentError(absl::StrCat("expected an NTLMSSP ", TypeName(expected), " message (type ",
                                                   static_cast<uint32_t>(expected), "), got type ",
                                                   static_cast<uint32_t>(*type)));
  }
  if (message.size() < fixed_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("truncated NTLMSSP ", TypeName(expected), " message: ",
                                                   message.size(), " bytes, the fixed part alone is ", fixed_bytes));
  }
  return absl::OkStatus();
}

// Reads the field whose descriptor is at `descriptor_at`. Empty fields are not located at all
// (their offset is often garbage). `lowest_offset` tracks where the payload starts.
absl::StatusOr<ByteView> ReadField(ByteView message, size_t descriptor_at, size_t fixed_bytes, const char* name,
                                   size_t* lowest_offset = nullptr) {
  uint16_t length = LoadLe16(message, descriptor_at);
  uint32_t offset = LoadLe32(message, descriptor_at + 4);
  if (length == 0) return ByteView();
  if (offset < fixed_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " field offset ", offset, " points into the ", fixed_bytes, "-byte fixed header"));
  }
  if (static_cast<uint64_t>(offset) + length > message.size()) {
    return absl::InvalidArgumentError(absl::StrCat(name, " field (offset ", offset, ", length ", length,
                                                   ") extends past the end of the ", message.size(), "-byte message"));
  }
  if (lowest_offset != nullptr) *lowest_offset = std::min<size_t>(*lowest_offset, offset);
  return message.subspan(offset, length);
}

std::optional<Version> ReadVersion(ByteView message, uint32_t flags, size_t at) {
  // VERSION is informative only, so a sender that sets the flag without room for it is
  // tolerated rather than refused.
  if ((flags & kNegotiateVersion) == 0 || message.size() < at + kVersionBytes) return std::nullopt;
  Version version;
  version.major = message[at];
  version.minor = message[at + 1];
  version.build = LoadLe16(message, at + 2);
  version.ntlm_revision = message[at + 7];
  return version;
}

void AppendVersion(Bytes& out, const std::optional<Version>& version) {
  Version v = version.value_or(Version{0, 0, 0, 0});
  out.push_back(v.major);
  out.push_back(v.minor);
  AppendLe16(out, v.build);
  out.insert(out.end(), 3, 0);
  out.push_back(v.ntlm_revision);
}

absl::StatusOr<std::string> DecodeString(ByteView bytes, bool unicode, const char* name) {
  if (unicode) {
    absl::StatusOr<std::string> text = Utf16LeToUtf8(bytes);
    if (!text.ok()) return absl::InvalidArgumentError(absl::StrCat(name, ": ", text.status().message()));
    return text;
  }
  // OEM code pages are unknown to us; Latin-1 maps every byte to one code point, so nothing
  // is lost and the result is valid UTF-8.
  std::string text;
  for (uint8_t byte : bytes) {
    if (byte < 0x80) {
      text.push_back(static_cast<char>(byte));
    } else {
      text.push_back(static_cast<char>(0xc0 | (byte >> 6)));
      text.push_back(static_cast<char>(0x80 | (byte & 0x3f)));
    }
  }
  return text;
}

absl::StatusOr<Bytes> EncodeString(std::string_view utf8, bool unicode, const char* name) {
  if (unicode) {
    absl::StatusOr<Bytes> encoded = Utf8ToUtf16Le(utf8);
    if (!encoded.ok()) return absl::InvalidArgumentError(absl::StrCat(name, ": ", encoded.status().message()));
    return encoded;
  }
  for (char c : utf8) {
    if (static_cast<uint8_t>(c) >= 0x80) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": only ASCII can be sent without NTLMSSP_NEGOTIATE_UNICODE"));
    }
  }
  return Bytes(utf8.begin(), utf8.end());
}

// Builds a message: fixed part first (with zeroed field descriptors), then each payload field
// appended and its descriptor filled in.
class MessageBuilder {
 public:
  MessageBuilder(MessageType type, size_t fixed_bytes) {
    out_.assign(kSignature, kSignature + sizeof(kSignature));
    AppendLe32(out_, static_cast<uint32_t>(type));
    out_.resize(fixed_bytes, 0);
  }

  Bytes& bytes() { return out_; }

  void SetLe32(size_t at, uint32_t value) { StoreLe32(out_, at, value); }

  absl::Status AddField(size_t descriptor_at, ByteView data, const char* name) {
    if (data.size() > kMaxFieldBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " is ", data.size(), " bytes; NTLMSSP fields hold at most ", kMaxFieldBytes));
    }
    uint16_t length = static_cast<uint16_t>(data.size());
    uint32_t offset = static_cast<uint32_t>(out_.size());
    out_[descriptor_at] = static_cast<uint8_t>(length);
    out_[descriptor_at + 1] = static_cast<uint8_t>(length >> 8);
    out_[descriptor_at + 2] = out_[descriptor_at];
    out_[descriptor_at + 3] = out_[descriptor_at + 1];
    StoreLe32(out_, descriptor_at + 4, offset);
    Append(out_, data);
    return absl::OkStatus();
  }

 private:
  Bytes out_;
};

}  // namespace

absl::StatusOr<std::vector<AvPair>> ParseAvPairs(ByteView bytes) {
  std::vector<AvPair> pairs;
  size_t at = 0;
  while (true) {
    if (bytes.size() - at < kAvHeaderBytes) {
      return absl::InvalidArgumentError("target info ends without MsvAvEOL");
    }
    uint16_t id = LoadLe16(bytes, at);
    uint16_t length = LoadLe16(bytes, at + 2);
    at += kAvHeaderBytes;
    if (length > bytes.size() - at) {
      return absl::InvalidArgumentError(absl::StrCat("target info AV pair ", id, " has length ", length, " but only ",
                                                     bytes.size() - at, " bytes remain"));
    }
    size_t required = 0;
    switch (static_cast<AvId>(id)) {
      case AvId::kEol:
        required = 0;
        break;
      case AvId::kFlags:
        required = kAvFlagsBytes;
        break;
      case AvId::kTimestamp:
        required = kAvTimestampBytes;
        break;
      case AvId::kChannelBindings:
        required = kAvChannelBindingsBytes;
        break;
      default:
        required = length;
    }
    if (length != required) {
      return absl::InvalidArgumentError(
          absl::StrCat("target info AV pair ", id, " has length ", length, ", expected ", required));
    }
    if (static_cast<AvId>(id) == AvId::kEol) return pairs;
    pairs.push_back(AvPair{id, Bytes(bytes.begin() + at, bytes.begin() + at + length)});
    at += length;
  }
}

absl::StatusOr<Bytes> EncodeAvPairs(std::span<const AvPair> pairs) {
  Bytes out;
  for (const AvPair& pair : pairs) {
    if (pair.id == static_cast<uint16_t>(AvId::kEol)) {
      return absl::InvalidArgumentError("MsvAvEOL is appended by the encoder, not passed in");
    }
    if (pair.value.size() > kMaxFieldBytes) {
      return absl::InvalidArgumentError(absl::StrCat("AV pair ", pair.id, " value is ", pair.value.size(),
                                                     " bytes; at most ", kMaxFieldBytes, " fit"));
    }
    AppendLe16(out, pair.id);
    AppendLe16(out, static_cast<uint16_t>(pair.value.size()));
    Append(out, pair.value);
  }
  AppendLe16(out, static_cast<uint16_t>(AvId::kEol));
  AppendLe16(out, 0);
  if (out.size() > kMaxFieldBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("target info is ", out.size(), " bytes; at most ", kMaxFieldBytes, " fit in a message"));
  }
  return out;
}

const AvPair* FindAvPair(std::span<const AvPair> pairs, AvId id) {
  for (const AvPair& pair : pairs) {
    if (pair.id == static_cast<uint16_t>(id)) return &pair;
  }
  return nullptr;
}

std::optional<uint64_t> FindAvTimestamp(std::span<const AvPair> pairs) {
  const AvPair* pair = FindAvPair(pairs, AvId::kTimestamp);
  if (pair == nullptr || pair->value.size() != kAvTimestampBytes) return std::nullopt;
  return LoadLe64(pair->value, 0);
}

std::optional<uint32_t> FindAvFlags(std::span<const AvPair> pairs) {
  const AvPair* pair = FindAvPair(pairs, AvId::kFlags);
  if (pair == nullptr || pair->value.size() != kAvFlagsBytes) return std::nullopt;
  return LoadLe32(pair->value, 0);
}

absl::StatusOr<AvPair> MakeStringAvPair(AvId id, std::string_view utf8) {
  absl::StatusOr<Bytes> value = Utf8ToUtf16Le(utf8);
  if (!value.ok()) return value.status();
  return AvPair{static_cast<uint16_t>(id), *std::move(value)};
}

AvPair MakeTimestampAvPair(uint64_t filetime) {
  AvPair pair{static_cast<uint16_t>(AvId::kTimestamp), {}};
  AppendLe64(pair.value, filetime);
  return pair;
}

AvPair MakeFlagsAvPair(uint32_t flags) {
  AvPair pair{static_cast<uint16_t>(AvId::kFlags), {}};
  AppendLe32(pair.value, flags);
  return pair;
}

absl::StatusOr<MessageType> PeekMessageType(ByteView message) {
  if (message.size() < kSignatureAndTypeBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("truncated NTLMSSP message: ", message.size(), " bytes, need at least ", kSignatureAndTypeBytes));
  }
  if (std::memcmp(message.data(), kSignature, sizeof(kSignature)) != 0) {
    return absl::InvalidArgumentError("not an NTLMSSP message: signature is not \"NTLMSSP\\0\"");
  }
  uint32_t type = LoadLe32(message, sizeof(kSignature));
  if (type < static_cast<uint32_t>(MessageType::kNegotiate) ||
      type > static_cast<uint32_t>(MessageType::kAuthenticate)) {
    return absl::InvalidArgumentError(absl::StrCat("unknown NTLMSSP message type ", type));
  }
  return static_cast<MessageType>(type);
}

absl::StatusOr<Bytes> EncodeNegotiate(const NegotiateMessage& message) {
  uint32_t flags = message.flags;
  if (message.version.has_value()) flags |= kNegotiateVersion;
  if (!message.domain.empty()) flags |= kNegotiateOemDomainSupplied;
  if (!message.workstation.empty()) flags |= kNegotiateOemWorkstationSupplied;
  MessageBuilder builder(MessageType::kNegotiate, kNegotiateFixedBytes);
  builder.SetLe32(kNegotiateFlagsAt, flags);
  if (message.version.has_value()) AppendVersion(builder.bytes(), message.version);
  absl::StatusOr<Bytes> domain = EncodeString(message.domain, /*unicode=*/false, "NEGOTIATE domain");
  if (!domain.ok()) return domain.status();
  absl::StatusOr<Bytes> workstation = EncodeString(message.workstation, /*unicode=*/false, "NEGOTIATE workstation");
  if (!workstation.ok()) return workstation.status();
  if (absl::Status s = builder.AddField(kNegotiateDomainField, *domain, "NEGOTIATE domain"); !s.ok()) return s;
  if (absl::Status s = builder.AddField(kNegotiateWorkstationField, *workstation, "NEGOTIATE workstation"); !s.ok()) {
    return s;
  }
  return std::move(builder.bytes());
}

absl::StatusOr<NegotiateMessage> ParseNegotiate(ByteView message) {
  if (absl::Status s = CheckHeader(message, MessageType::kNegotiate, kNegotiateFixedBytes); !s.ok()) return s;
  NegotiateMessage parsed;
  parsed.flags = LoadLe32(message, kNegotiateFlagsAt);
  parsed.version = ReadVersion(message, parsed.flags, kNegotiateFixedBytes);
  if (parsed.flags & kNegotiateOemDomainSupplied) {
    absl::StatusOr<ByteView> field =
        ReadField(message, kNegotiateDomainField, kNegotiateFixedBytes, "NEGOTIATE domain");
    if (!field.ok()) return field.status();
    absl::StatusOr<std::string> text = DecodeString(*field, /*unicode=*/false, "NEGOTIATE domain");
    if (!text.ok()) return text.status();
    parsed.domain = *std::move(text);
  }
  if (parsed.flags & kNegotiateOemWorkstationSupplied) {
    absl::StatusOr<ByteView> field =
        ReadField(message, kNegotiateWorkstationField, kNegotiateFixedBytes, "NEGOTIATE workstation");
    if (!field.ok()) return field.status();
    absl::StatusOr<std::string> text = DecodeString(*field, /*unicode=*/false, "NEGOTIATE workstation");
    if (!text.ok()) return text.status();
    parsed.workstation = *std::move(text);
  }
  return parsed;
}

absl::StatusOr<Bytes> EncodeChallenge(const ChallengeMessage& message) {
  bool unicode = (message.flags & kNegotiateUnicode) != 0;
  uint32_t flags = message.flags;
  if (message.version.has_value()) flags |= kNegotiateVersion;
  if (!message.target_info.empty()) flags |= kNegotiateTargetInfo;
  MessageBuilder builder(MessageType::kChallenge, kChallengeFixedBytes);
  builder.SetLe32(kChallengeFlagsAt, flags);
  std::copy(message.server_challenge.begin(), message.server_challenge.end(),
            builder.bytes().begin() + kChallengeServerChallengeAt);
  if (message.version.has_value()) AppendVersion(builder.bytes(), message.version);
  absl::StatusOr<Bytes> target_name = EncodeString(message.target_name, unicode, "CHALLENGE target name");
  if (!target_name.ok()) return target_name.status();
  if (absl::Status s = builder.AddField(kChallengeTargetNameField, *target_name, "CHALLENGE target name"); !s.ok()) {
    return s;
  }
  if (flags & kNegotiateTargetInfo) {
    absl::StatusOr<Bytes> target_info = EncodeAvPairs(message.target_info);
    if (!target_info.ok()) return target_info.status();
    if (absl::Status s = builder.AddField(kChallengeTargetInfoField, *target_info, "CHALLENGE target info"); !s.ok()) {
      return s;
    }
  }
  return std::move(builder.bytes());
}

absl::StatusOr<ChallengeMessage> ParseChallenge(ByteView message) {
  if (absl::Status s = CheckHeader(message, MessageType::kChallenge, kChallengeFixedBytes); !s.ok()) return s;
  ChallengeMessage parsed;
  parsed.flags = LoadLe32(message, kChallengeFlagsAt);
  std::copy_n(message.begin() + kChallengeServerChallengeAt, kChallengeBytes, parsed.server_challenge.begin());
  parsed.version = ReadVersion(message, parsed.flags, kChallengeFixedBytes);
  bool unicode = (parsed.flags & kNegotiateUnicode) != 0;
  absl::StatusOr<ByteView> target_name =
      ReadField(message, kChallengeTargetNameField, kChallengeFixedBytes, "CHALLENGE target name");
  if (!target_name.ok()) return target_name.status();
  absl::StatusOr<std::string> name = DecodeString(*target_name, unicode, "CHALLENGE target name");
  if (!name.ok()) return name.status();
  parsed.target_name = *std::move(name);
  absl::StatusOr<ByteView> target_info =
      ReadField(message, kChallengeTargetInfoField, kChallengeFixedBytes, "CHALLENGE target info");
  if (!target_info.ok()) return target_info.status();
  if (!target_info->empty()) {
    absl::StatusOr<std::vector<AvPair>> pairs = ParseAvPairs(*target_info);
    if (!pairs.ok()) return absl::InvalidArgumentError(absl::StrCat("CHALLENGE ", pairs.status().message()));
    parsed.target_info = *std::move(pairs);
  }
  return parsed;
}

absl::StatusOr<Bytes> EncodeAuthenticate(const AuthenticateMessage& message) {
  bool unicode = (message.flags & kNegotiateUnicode) != 0;
  uint32_t flags = message.flags;
  if (message.version.has_value()) flags |= kNegotiateVersion;
  MessageBuilder builder(MessageType::kAuthenticate, kAuthenticateFixedBytes);
  builder.SetLe32(kAuthFlagsAt, flags);
  // The MIC's position is fixed at 72, so a MIC without a version still needs the 8 bytes.
  if (message.version.has_value() || message.mic.has_value()) AppendVersion(builder.bytes(), message.version);
  if (message.mic.has_value()) Append(builder.bytes(), *message.mic);
  absl::StatusOr<Bytes> domain = EncodeString(message.domain, unicode, "AUTHENTICATE domain");
  if (!domain.ok()) return domain.status();
  absl::StatusOr<Bytes> user = EncodeString(message.user, unicode, "AUTHENTICATE user");
  if (!user.ok()) return user.status();
  absl::StatusOr<Bytes> workstation = EncodeString(message.workstation, unicode, "AUTHENTICATE workstation");
  if (!workstation.ok()) return workstation.status();
  // Payload order as Windows writes it: names, then responses, then the session key.
  const struct {
    size_t descriptor_at;
    ByteView data;
    const char* name;
  } fields[] = {
      {kAuthDomainField, *domain, "AUTHENTICATE domain"},
      {kAuthUserField, *user, "AUTHENTICATE user"},
      {kAuthWorkstationField, *workstation, "AUTHENTICATE workstation"},
      {kAuthLmField, message.lm_response, "AUTHENTICATE LM response"},
      {kAuthNtField, message.nt_response, "AUTHENTICATE NT response"},
      {kAuthSessionKeyField, message.encrypted_random_session_key, "AUTHENTICATE session key"},
  };
  for (const auto& field : fields) {
    if (absl::Status s = builder.AddField(field.descriptor_at, field.data, field.name); !s.ok()) return s;
  }
  return std::move(builder.bytes());
}

absl::StatusOr<AuthenticateMessage> ParseAuthenticate(ByteView message) {
  if (absl::Status s = CheckHeader(message, MessageType::kAuthenticate, kAuthenticateFixedBytes); !s.ok()) return s;
  AuthenticateMessage parsed;
  parsed.flags = LoadLe32(message, kAuthFlagsAt);
  parsed.version = ReadVersion(message, parsed.flags, kAuthenticateFixedBytes);
  bool unicode = (parsed.flags & kNegotiateUnicode) != 0;
  size_t payload_start = message.size();
  auto read = [&](size_t descriptor_at, const char* name) {
    return ReadField(message, descriptor_at, kAuthenticateFixedBytes, name, &payload_start);
  };
  absl::StatusOr<ByteView> lm = read(kAuthLmField, "AUTHENTICATE LM response");
  if (!lm.ok()) return lm.status();
  absl::StatusOr<ByteView> nt = read(kAuthNtField, "AUTHENTICATE NT response");
  if (!nt.ok()) return nt.status();
  absl::StatusOr<ByteView> domain = read(kAuthDomainField, "AUTHENTICATE domain");
  if (!domain.ok()) return domain.status();
  absl::StatusOr<ByteView> user = read(kAuthUserField, "AUTHENTICATE user");
  if (!user.ok()) return user.status();
  absl::StatusOr<ByteView> workstation = read(kAuthWorkstationField, "AUTHENTICATE workstation");
  if (!workstation.ok()) return workstation.status();
  absl::StatusOr<ByteView> session_key = read(kAuthSessionKeyField, "AUTHENTICATE session key");
  if (!session_key.ok()) return session_key.status();

  parsed.lm_response.assign(lm->begin(), lm->end());
  parsed.nt_response.assign(nt->begin(), nt->end());
  parsed.encrypted_random_session_key.assign(session_key->begin(), session_key->end());
  absl::StatusOr<std::string> text = DecodeString(*domain, unicode, "AUTHENTICATE domain");
  if (!text.ok()) return text.status();
  parsed.domain = *std::move(text);
  text = DecodeString(*user, unicode, "AUTHENTICATE user");
  if (!text.ok()) return text.status();
  parsed.user = *std::move(text);
  text = DecodeString(*workstation, unicode, "AUTHENTICATE workstation");
  if (!text.ok()) return text.status();
  parsed.workstation = *std::move(text);

  constexpr size_t kMicEnd = kAuthenticateMicOffset + kMicBytes;
  if (message.size() >= kMicEnd && payload_start >= kMicEnd) {
    std::array<uint8_t, kMicBytes> mic;
    std::copy_n(message.begin() + kAuthenticateMicOffset, kMicBytes, mic.begin());
    parsed.mic = mic;
  }
  return parsed;
}

}  // namespace adcsc::ntlm
