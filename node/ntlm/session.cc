#include "node/ntlm/session.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"

namespace adcsc::ntlm {
namespace {

constexpr uint32_t kSignatureVersion = 1;
constexpr size_t kChecksumBytes = 8;
constexpr size_t kChecksumAt = 4;
constexpr size_t kSequenceAt = 12;

// The magic constants are hashed with their terminating NUL (MS-NLMP 3.4.5.2-3).
constexpr std::string_view kClientSignMagic = "session key to client-to-server signing key magic constant";
constexpr std::string_view kServerSignMagic = "session key to server-to-client signing key magic constant";
constexpr std::string_view kClientSealMagic = "session key to client-to-server sealing key magic constant";
constexpr std::string_view kServerSealMagic = "session key to server-to-client sealing key magic constant";

ByteView WithNul(std::string_view magic) {
  return ByteView(reinterpret_cast<const uint8_t*>(magic.data()), magic.size() + 1);
}

// Once a Session exists its algorithms are fetched and keyed, so OpenSSL can fail only on
// memory exhaustion; the Seal/Sign signatures have no error channel for that.
void CheckOk(const absl::Status& status, const char* what) {
  if (status.ok()) return;
  std::fprintf(stderr, "adcsc_ntlm: %s failed: %s\n", what, std::string(status.message()).c_str());
  std::abort();
}

bool RegionFits(size_t message_size, size_t offset, size_t length) {
  return offset <= message_size && length <= message_size - offset;
}

}  // namespace

absl::StatusOr<Key16> DeriveSignKey(const Key16& exported_session_key, Direction direction) {
  return Md5(
      {exported_session_key, WithNul(direction == Direction::kClientToServer ? kClientSignMagic : kServerSignMagic)});
}

absl::StatusOr<Key16> DeriveSealKey(const Key16& exported_session_key, Direction direction) {
  return Md5(
      {exported_session_key, WithNul(direction == Direction::kClientToServer ? kClientSealMagic : kServerSealMagic)});
}

absl::StatusOr<std::unique_ptr<Session>> Session::Create(const Key16& exported_session_key, Role role) {
  Direction out = role == Role::kClient ? Direction::kClientToServer : Direction::kServerToClient;
  Direction in = role == Role::kClient ? Direction::kServerToClient : Direction::kClientToServer;
  absl::StatusOr<Key16> out_sign = DeriveSignKey(exported_session_key, out);
  if (!out_sign.ok()) return out_sign.status();
  absl::StatusOr<Key16> in_sign = DeriveSignKey(exported_session_key, in);
  if (!in_sign.ok()) return in_sign.status();
  absl::StatusOr<Key16> out_seal = DeriveSealKey(exported_session_key, out);
  if (!out_seal.ok()) return out_seal.status();
  absl::StatusOr<Key16> in_seal = DeriveSealKey(exported_session_key, in);
  if (!in_seal.ok()) return in_seal.status();
  absl::StatusOr<Rc4> out_rc4 = Rc4::Create(*out_seal);
  if (!out_rc4.ok()) return out_rc4.status();
  absl::StatusOr<Rc4> in_rc4 = Rc4::Create(*in_seal);
  if (!in_rc4.ok()) return in_rc4.status();
  OPENSSL_cleanse(out_seal->data(), out_seal->size());
  OPENSSL_cleanse(in_seal->data(), in_seal->size());
  DirectionState outgoing{*out_sign, *std::move(out_rc4), 0};
  DirectionState incoming{*in_sign, *std::move(in_rc4), 0};
  OPENSSL_cleanse(out_sign->data(), out_sign->size());
  OPENSSL_cleanse(in_sign->data(), in_sign->size());
  return std::unique_ptr<Session>(new Session(std::move(outgoing), std::move(incoming)));
}

Session::~Session() {
  OPENSSL_cleanse(outgoing_.sign_key.data(), outgoing_.sign_key.size());
  OPENSSL_cleanse(incoming_.sign_key.data(), incoming_.sign_key.size());
}

std::array<uint8_t, 8> Session::Checksum(const DirectionState& state, ByteView message) const {
  Bytes sequence;
  AppendLe32(sequence, state.sequence);
  absl::StatusOr<Key16> mac = HmacMd5(state.sign_key, {sequence, message});
  CheckOk(mac.status(), "HMAC-MD5 message signature");
  std::array<uint8_t, kChecksumBytes> checksum;
  std::copy_n(mac->begin(), kChecksumBytes, checksum.begin());
  return checksum;
}

Signature Session::FinishOutgoing(std::array<uint8_t, 8> checksum) {
  // Called after the region (if any) was encrypted: the checksum bytes come next on the
  // keystream, which is the order the peer decrypts in.
  CheckOk(outgoing_.seal.Apply(checksum), "RC4 checksum encryption");
  Signature signature{};
  StoreLe32(signature, 0, kSignatureVersion);
  std::copy(checksum.begin(), checksum.end(), signature.begin() + kChecksumAt);
  StoreLe32(signature, kSequenceAt, outgoing_.sequence);
  ++outgoing_.sequence;
  return signature;
}

Signature Session::SealMessage(std::span<uint8_t> message, size_t seal_offset, size_t seal_length) {
  if (!RegionFits(message.size(), seal_offset, seal_length)) {
    std::fprintf(stderr, "adcsc_ntlm: SealMessage region [%zu, +%zu) outside a %zu-byte message\n", seal_offset,
                 seal_length, message.size());
    std::abort();
  }
  std::array<uint8_t, kChecksumBytes> checksum = Checksum(outgoing_, message);
  CheckOk(outgoing_.seal.Apply(message.subspan(seal_offset, seal_length)), "RC4 sealing");
  return FinishOutgoing(checksum);
}

Signature Session::SignMessage(ByteView message) { return FinishOutgoing(Checksum(outgoing_, message)); }

absl::Status Session::CheckIncoming(ByteView plaintext_message, ByteView signature) {
  std::array<uint8_t, kChecksumBytes> expected = Checksum(incoming_, plaintext_message);
  std::array<uint8_t, kChecksumBytes> received;
  std::copy_n(signature.begin() + kChecksumAt, kChecksumBytes, received.begin());
  CheckOk(incoming_.seal.Apply(received), "RC4 checksum decryption");
  uint32_t version = LoadLe32(signature, 0);
  uint32_t sequence = LoadLe32(signature, kSequenceAt);
  if (version != kSignatureVersion) {
    return absl::PermissionDeniedError(
        absl::StrCat("NTLM message signature did not verify: signature version ", version, ", expected 1"));
  }
  if (sequence != incoming_.sequence) {
    return absl::PermissionDeniedError(absl::StrCat("NTLM message signature did not verify: sequence number ", sequence,
                                                    ", expected ", incoming_.sequence,
                                                    " (replayed, reordered or lost message)"));
  }
  if (CRYPTO_memcmp(expected.data(), received.data(), kChecksumBytes) != 0) {
    return absl::PermissionDeniedError("NTLM message signature did not verify: checksum mismatch");
  }
  ++incoming_.sequence;
  return absl::OkStatus();
}

absl::Status Session::UnsealMessage(std::span<uint8_t> message, size_t seal_offset, size_t seal_length,
                                    ByteView signature) {
  if (incoming_broken_) {
    return absl::FailedPreconditionError("NTLM session is unusable after a signature that did not verify");
  }
  if (!RegionFits(message.size(), seal_offset, seal_length)) {
    return absl::InvalidArgumentError(absl::StrCat("sealed region [", seal_offset, ", +", seal_length,
                                                   ") lies outside the ", message.size(), "-byte message"));
  }
  if (signature.size() != kSignatureBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("NTLM message signature is ", signature.size(), " bytes, expected ", kSignatureBytes));
  }
  std::span<uint8_t> region = message.subspan(seal_offset, seal_length);
  CheckOk(incoming_.seal.Apply(region), "RC4 unsealing");
  absl::Status verified = CheckIncoming(message, signature);
  if (!verified.ok()) {
    incoming_broken_ = true;
    OPENSSL_cleanse(region.data(), region.size());
  }
  return verified;
}

absl::Status Session::VerifyMessage(ByteView message, ByteView signature) {
  if (incoming_broken_) {
    return absl::FailedPreconditionError("NTLM session is unusable after a signature that did not verify");
  }
  if (signature.size() != kSignatureBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("NTLM message signature is ", signature.size(), " bytes, expected ", kSignatureBytes));
  }
  absl::Status verified = CheckIncoming(message, signature);
  if (!verified.ok()) incoming_broken_ = true;
  return verified;
}

}  // namespace adcsc::ntlm
